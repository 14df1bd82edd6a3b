"""Bearer tokens with roles for the REST API and the screens.

Roles: `agent` (read calls, watch screens), `supervisor` (also QA reviews), `qa` (read, search,
review), `admin` (everything, including delete and purge). Tokens come from settings
(`CALLCUE_ADMIN_TOKEN`, `CALLCUE_TOKENS=TOKEN:ROLE,...`) and are sent as
`Authorization: Bearer TOKEN`, or as `?token=TOKEN` where a browser cannot set headers
(websockets, `<audio src>`). With no token configured every request is let in, and the server
binds to loopback only (server.py says so at start).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

READ = frozenset({"agent", "supervisor", "qa", "admin"})
REVIEW = frozenset({"supervisor", "qa", "admin"})
ADMIN = frozenset({"admin"})


@dataclass(frozen=True, slots=True)
class Denied(Exception):
    status: int  # 401 or 403
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    token_hint: str  # last 4 characters, for logs and reviews; never the token


class Authorizer:
    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = dict(tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def check(self, headers: Any, query: Any, allowed: frozenset[str], what: str) -> Principal:
        """The caller's principal if its role is in `allowed`; raises Denied otherwise."""
        if not self._tokens:
            return Principal("admin", "open")
        token = ""
        header = headers.get("authorization", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Denied(401, "unauthorized", "the Authorization header must be 'Bearer TOKEN'")
            token = value.strip()
        else:
            token = query.get("token", "")
        if not token:
            raise Denied(
                401,
                "unauthorized",
                f"{what} needs a token: send 'Authorization: Bearer TOKEN' (or ?token= for "
                "websockets and audio)",
            )
        role = None
        for known, known_role in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                role = known_role
        if role is None:
            raise Denied(401, "unauthorized", "the token is not valid")
        if role not in allowed:
            needs = " or ".join(sorted(allowed))
            raise Denied(403, "forbidden", f"role '{role}' may not {what} (needs {needs})")
        return Principal(role, token[-4:])
