"""What every request passes first: the Host allow-list, cross-site write checks and the
security headers of every response, as one ASGI middleware.

- **Host** (DNS rebinding): a request or websocket whose `Host` names a host not in
  `CALLCUE_ALLOWED_HOSTS` gets `400 host_not_allowed` (a websocket is refused before it is
  accepted). The default is the loopback names on a server without tokens (which listens on
  loopback only), any host on one with tokens.
- **Cross-site writes**: a REST write (POST, PUT, PATCH, DELETE under `/v1/`) that a browser
  sends from another site (its `Origin` is neither this server's nor in
  `CALLCUE_ALLOWED_ORIGINS`) gets `403 origin_not_allowed`; one with a body that is not
  `application/json` gets `415 unsupported_media_type` (an HTML form or a `no-cors` fetch
  cannot send JSON). Programs that are not browsers send no `Origin` and are unaffected.
- **Headers** on every HTTP response: a Content-Security-Policy that fits the pages (scripts
  from this server only; framed by its own pages only: the landing page frames the agent
  screen), `X-Frame-Options: SAMEORIGIN`, `X-Content-Type-Options: nosniff`,
  `Referrer-Policy: no-referrer` (page URLs can carry a token).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gateway.auth import hostname, same_origin
from live.metrics import Metrics

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        hosts: frozenset[str] | None,
        origins: frozenset[str],
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.hosts = hosts  # None: any
        self.origins = origins
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.hosts is not None and hostname(host) not in self.hosts:
            self.metrics.limited.inc(1, "host")
            message = (
                f"this server does not answer to the host {host[:100]!r}; add it to "
                "CALLCUE_ALLOWED_HOSTS"
            )
            if kind == "websocket":  # refused before it is accepted (HTTP 403)
                await send({"type": "websocket.close", "code": 1008, "reason": "host_not_allowed"})
            else:
                await _reply(send, 400, "host_not_allowed", message)
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        if scope["method"] in WRITES and scope["path"].startswith("/v1/"):
            origin = headers.get("origin")
            if origin is not None and not same_origin(origin, host, self.origins, self.hosts):
                self.metrics.limited.inc(1, "origin")
                await _reply(
                    send,
                    403,
                    "origin_not_allowed",
                    f"pages from {origin[:100]!r} may not change anything here (add the site "
                    "to CALLCUE_ALLOWED_ORIGINS to allow it)",
                )
                return
            has_body = headers.get("content-length", "0") not in ("", "0") or (
                "transfer-encoding" in headers
            )
            media = headers.get("content-type", "").partition(";")[0].strip().lower()
            if has_body and media != "application/json":
                self.metrics.limited.inc(1, "content_type")
                await _reply(
                    send,
                    415,
                    "unsupported_media_type",
                    f"a request body must be JSON sent with Content-Type: application/json "
                    f"(got {media[:60]!r})",
                )
                return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _reply(send: Any, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
