"""Request-rate limit for the REST API: a token bucket per client, as ASGI middleware.

A client is its bearer token (or `?token=`) when the token is a valid one, else its address:
a fresh made-up token on every request is limited as its address. Each may make `per_minute`
requests a minute in bursts of up to a quarter of that; beyond it the answer is
`429 rate_limited` with `Retry-After`, counted in `callcue_limit_rejections_total{limit="rate"}`.
Refused credentials (401/403) are counted in `callcue_auth_failures_total{endpoint="rest"}`.
Websockets and pages are not limited here (calls have their own limits).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from typing import Any

from live.metrics import Metrics

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


class TokenBuckets:
    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        burst: float | None = None,
    ) -> None:
        """`burst`: how many may come at once (default: a quarter of a minute's, at least 10)."""
        self.rate = per_minute / 60.0
        self.capacity = burst if burst is not None else max(10.0, per_minute / 4)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def take(self, client: str) -> float:
        """0 if the request may go on, else the seconds until it may."""
        now = self.clock()
        tokens, at = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:
            self._forget_idle(now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        # a bucket that has refilled is the same as no bucket
        full = self.capacity / self.rate
        for client, (_, at) in list(self._buckets.items()):
            if now - at > full:
                del self._buckets[client]


def client_key(scope: Scope, known: Callable[[str], bool] = lambda _: True) -> str:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    token = headers.get("authorization", "").partition(" ")[2].strip()
    if not token:
        for part in scope.get("query_string", b"").decode("latin-1").split("&"):
            if part.startswith("token="):
                token = part[6:]
    if token and known(token):  # hashed: the table never holds a secret
        return "t:" + hashlib.sha256(token.encode()).hexdigest()[:24]
    client = scope.get("client") or ("?", 0)
    return f"a:{client[0]}"


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        per_minute: int,
        metrics: Metrics,
        known: Callable[[str], bool] = lambda _: True,
    ) -> None:
        self.app = app
        self.known = known  # tokens that key a bucket of their own (valid ones)
        self.per_minute = per_minute
        self.buckets = TokenBuckets(per_minute) if per_minute else None
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if self.buckets is not None:
            wait = self.buckets.take(client_key(scope, self.known))
            if wait:
                self.metrics.limited.inc(1, "rate")
                await self._too_many(send, wait)
                return

        async def observed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                self.metrics.auth_failures.inc(1, "rest")
            await send(message)

        await self.app(scope, receive, observed)

    async def _too_many(self, send: Any, wait: float) -> None:
        retry = max(1, math.ceil(wait))
        body = json.dumps(
            {
                "error": "rate_limited",
                "message": f"more than {self.per_minute} requests a minute from this client "
                f"(CALLCUE_RATE_LIMIT); retry in {retry} s",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
