"""Bearer tokens with roles for the REST API and the screens.

Roles: `agent` (read calls, watch screens), `supervisor` (also QA reviews), `qa` (read, search,
review), `admin` (everything, including delete and purge). Tokens come from settings
(`CALLCUE_ADMIN_TOKEN`, `CALLCUE_TOKENS=TOKEN:ROLE,...`) and are sent as
`Authorization: Bearer TOKEN`, or as `?token=TOKEN` where a browser cannot set headers
(websockets, `<audio src>`). With no token configured every request is let in, and the server
binds to loopback only (server.py says so at start).

Three more kinds of credential:

- *ingest keys* (`CALLCUE_INGEST_KEYS=KEY:NAME,...`) let a softphone or platform stream calls
  on the native ingest (an admin token may too: the test-call page). Once any token or key is
  configured, native ingest needs one.
- *call links*: a signed token that opens one call's screen and transcript for a limited time
  (`CALLCUE_LINK_TTL`), made by `POST /v1/calls/ID/link` or handed to the ingest client in its
  `started` reply. Signed with `CALLCUE_LINK_SECRET` (random per start if unset).
- browser *origins*: websockets from a browser page of another site are refused unless that
  site is in `CALLCUE_ALLOWED_ORIGINS` (clients that are not browsers send no Origin).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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
    call_id: str | None = None  # a call link: the one call it opens


LINK_PREFIX = "cl1."


class CallLinks:
    """Signed, expiring tokens that open one call: `cl1.<call id, base64url>.<expiry>.<mac>`."""

    def __init__(self, secret: str, ttl: int) -> None:
        self._key = (secret or secrets.token_urlsafe(32)).encode()
        self.ttl = ttl

    def make(self, call_id: str, now: float | None = None) -> tuple[str, int]:
        expires = int((time.time() if now is None else now) + self.ttl)
        cid = base64.urlsafe_b64encode(call_id.encode()).decode().rstrip("=")
        body = f"{LINK_PREFIX}{cid}.{expires}"
        return f"{body}.{self._mac(body)}", expires

    def verify(self, token: str, now: float | None = None) -> str:
        """The call id a valid link opens; Denied (401) naming what is wrong otherwise."""
        body, _, mac = token.rpartition(".")
        parts = body[len(LINK_PREFIX) :].split(".")
        if len(parts) != 2 or not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            raise Denied(401, "unauthorized", "the call link is not valid")
        cid, expires = parts
        if not expires.isdigit() or int(expires) < (time.time() if now is None else now):
            raise Denied(401, "link_expired", "the call link has expired; ask for a new one")
        try:
            return base64.urlsafe_b64decode(cid + "=" * (-len(cid) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            raise Denied(401, "unauthorized", "the call link is not valid") from None

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode()


def hostname(host: str) -> str:
    """The name in a Host header or URL netloc, without port, brackets or a trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def allowed_hosts(value: str, tokens: bool) -> frozenset[str] | None:
    """The host names of `CALLCUE_ALLOWED_HOSTS` (None: any). Empty: the loopback names on a
    server without tokens (it listens on loopback only), any host on one with tokens."""
    names = frozenset(hostname(h) for h in value.split(",") if h.strip())
    if "*" in names:
        return None
    if names:
        return names
    return None if tokens else LOOPBACK_HOSTS


def same_origin(
    origin: str, host: str, allowed: frozenset[str], hosts: frozenset[str] | None = None
) -> bool:
    """A browser's `Origin` is one of `allowed` (CALLCUE_ALLOWED_ORIGINS; '*': any) or this
    server's own: its host and port are the request's `Host`, and that host is one of `hosts`
    (CALLCUE_ALLOWED_HOSTS; None: any), so a rebound name never passes for this server."""
    origin = origin.strip().rstrip("/").lower()
    if "*" in allowed or origin in allowed:
        return True
    if not origin or origin == "null":
        return False
    netloc = urlsplit(origin).netloc
    if not netloc or netloc != host.strip().lower():
        return False
    return hosts is None or hostname(netloc) in hosts


def origin_allowed(
    headers: Any, allowed: frozenset[str], hosts: frozenset[str] | None = None
) -> bool:
    """A websocket's Origin (sent by browsers only) is this server's own or in `allowed`."""
    origin = headers.get("origin", "")
    return not origin or same_origin(origin, headers.get("host", ""), allowed, hosts)


class Authorizer:
    def __init__(
        self,
        tokens: dict[str, str],
        ingest_keys: dict[str, str] | None = None,
        links: CallLinks | None = None,
    ) -> None:
        self._tokens = dict(tokens)
        self._ingest = dict(ingest_keys or {})
        self.links = links or CallLinks("", 43_200)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def check(
        self,
        headers: Any,
        query: Any,
        allowed: frozenset[str],
        what: str,
        call_id: str | None = None,
    ) -> Principal:
        """The caller's principal if its role is in `allowed`; raises Denied otherwise.
        `call_id`: the call the request is about (a call link opens only that one)."""
        if not self._tokens:
            return Principal("admin", "open")
        token = self._token(headers, query, what)
        if token.startswith(LINK_PREFIX):
            linked = self.links.verify(token)
            if "agent" not in allowed or call_id is None:
                raise Denied(403, "forbidden", f"a call link may not {what}")
            if linked != call_id:
                raise Denied(403, "forbidden", f"this link opens call {linked!r} only")
            return Principal("agent", token[-4:], call_id=linked)
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

    def known(self, token: str) -> bool:
        """Whether `token` is one this server issued or was given: a role token, an ingest
        key or a call link that verifies (rate limits key on it only then)."""
        if token.startswith(LINK_PREFIX):
            try:
                self.links.verify(token)
            except Denied:
                return False
            return True
        return any(
            hmac.compare_digest(known.encode(), token.encode())
            for known in (*self._tokens, *self._ingest)
        )

    def ingest(self, headers: Any, query: Any) -> str:
        """The name of the credential that may stream a call (for limits and logs); Denied
        when one is needed and missing or wrong."""
        if not self._tokens and not self._ingest:
            return "open"
        token = self._token(headers, query, "stream calls")
        for key, name in self._ingest.items():
            if hmac.compare_digest(key.encode(), token.encode()):
                return name
        for known, role in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                if role != "admin":
                    raise Denied(
                        403,
                        "forbidden",
                        f"role '{role}' may not stream calls (needs an ingest key)",
                    )
                return f"admin-{token[-4:]}"
        raise Denied(401, "unauthorized", "the ingest key is not valid")

    def _token(self, headers: Any, query: Any, what: str) -> str:
        token: str = ""
        header = headers.get("authorization", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Denied(401, "unauthorized", "the Authorization header must be 'Bearer TOKEN'")
            token = value.strip()
        else:
            token = str(query.get("token", ""))
        if not token:
            raise Denied(
                401,
                "unauthorized",
                f"{what} needs a token: send 'Authorization: Bearer TOKEN' (or ?token= for "
                "websockets and audio)",
            )
        return token
