"""Webhooks: tell other systems (a CRM, a ticketing system) what happens on calls.

`CALLCUE_WEBHOOKS` is a JSON list of `{"url": ..., "secret": ... | "secret_file": ...,
"events": [...]}`. The store writes one delivery per subscribed webhook in the same
transaction as the event (`store.calls.CallStore._queue_deliveries`: nothing a screen saw can
be lost to a crash, and a restart resumes the deliveries waiting). A `WebhookSender` thread
POSTs them:

    POST <url>
    Content-Type: application/json
    Callcue-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the secret>
    {"id": "d_...", "type": "call.ended", "call_id": "...", "created_at": "...", "data": {...}}

`id` is the same on every retry of one delivery (receivers drop duplicates by it). A 2xx answer
delivers it; anything else (another status, a timeout, a refused connection) is retried with
exponential backoff (`retry_seconds`, doubling, at most 10 minutes apart) until
`give_up_seconds` (a day) after the event, then counted as failed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from store.calls import CallStore

log = logging.getLogger("callcue.webhooks")

EVENTS = ("call.started", "call.ended", "category.matched", "alert", "call.scored", "call.wrapup")
NOT_YET: dict[str, str] = {}  # event types named by the design but not sent yet: why
MAX_WEBHOOKS = 20
TIMEOUT = 10.0  # seconds a receiver has to answer one delivery
MAX_BACKOFF = 600.0
LEASE = 60.0  # a claimed delivery is not sent again (by any node) for this long


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    secret: str
    events: frozenset[str]


def parse_webhooks(text: str) -> tuple[Webhook, ...]:
    """`CALLCUE_WEBHOOKS`; ValueError names the entry and field that is wrong."""
    if not text.strip():
        return ()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, list):
        raise ValueError('must be a JSON list of {"url", "secret", "events"} objects')
    if len(data) > MAX_WEBHOOKS:
        raise ValueError(f"at most {MAX_WEBHOOKS} webhooks (has {len(data)})")
    hooks: list[Webhook] = []
    for i, item in enumerate(data):
        where = f"[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: must be an object with url, secret and events")
        unknown = set(item) - {"url", "secret", "secret_file", "events"}
        if unknown:
            raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        url = item.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if not isinstance(url, str) or parts is None or parts.scheme not in ("http", "https"):
            raise ValueError(f"{where}.url: must be an http(s) URL, not {url!r}")
        if not parts.hostname:
            raise ValueError(f"{where}.url: must be an http(s) URL, not {url!r}")
        if any(h.url == url for h in hooks):
            raise ValueError(f"{where}.url: {url} is listed twice")
        secret = item.get("secret")
        if "secret_file" in item:
            if secret is not None:
                raise ValueError(f"{where}: give secret or secret_file, not both")
            secret = _read_secret(item["secret_file"], where)
        if not isinstance(secret, str) or len(secret) < 16:
            raise ValueError(f"{where}.secret: must be a string of at least 16 characters")
        events = item.get("events")
        if not isinstance(events, list) or not events:
            raise ValueError(f"{where}.events: must be a list of event types: {', '.join(EVENTS)}")
        for name in events:
            if not isinstance(name, str):
                raise ValueError(f"{where}.events: {name!r} is not an event type")
            if name in NOT_YET:
                raise ValueError(f"{where}.events: {name} is not sent yet ({NOT_YET[name]})")
            if name not in EVENTS:
                raise ValueError(f"{where}.events: unknown {name!r} (one of {', '.join(EVENTS)})")
        hooks.append(Webhook(url, secret, frozenset(events)))
    return tuple(hooks)


def _read_secret(path: Any, where: str) -> str:
    if not isinstance(path, str):
        raise ValueError(f"{where}.secret_file: must be a path")
    try:
        lines = [x.strip() for x in Path(path).expanduser().read_text().splitlines() if x.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{where}.secret_file: cannot read {path} ({type(exc).__name__})"
        ) from None
    if len(lines) != 1:
        raise ValueError(f"{where}.secret_file: {path} must hold the secret on one line")
    return lines[0]


def shown(url: str) -> str:
    """A webhook URL as logs show it: scheme and host (its path may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Callcue-Signature` header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, tolerance: float = 300.0) -> bool:
    """What a receiver does (README shows it): the HMAC matches and the time is recent."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer that is not 2xx: retried, never followed


class WebhookSender:
    """One thread that sends due deliveries (a few at a time) and records each outcome."""

    def __init__(
        self,
        store: CallStore,
        hooks: tuple[Webhook, ...],
        retry_seconds: float = 10.0,
        give_up_seconds: float = 86_400.0,
        poll: float = 0.5,
    ) -> None:
        self.store = store
        self.hooks = {h.url: h for h in hooks}
        self.retry_seconds = retry_seconds
        self.give_up_seconds = give_up_seconds
        self.poll = poll
        self.counts = {"delivered": 0, "retried": 0, "failed": 0}
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="callcue-webhook")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="callcue-webhooks", daemon=True)
        self._forgot = 0.0
        self.post: Callable[[str, bytes, dict[str, str]], int] = self._post

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=TIMEOUT + 2)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            try:
                self.send_due()
                if time.time() - self._forgot > 3600:  # keep a day of history
                    self._forgot = time.time()
                    self.store.forget_deliveries(self._forgot - 86_400)
            except Exception:  # the database is down: the deliveries wait in it
                log.exception("webhook deliveries could not be read or recorded")
                self._stop.wait(5.0)

    def send_due(self) -> int:
        """Send what is due now; how many were tried."""
        now = time.time()
        due = self.store.claim_deliveries(now, 16, LEASE)
        for ident, status, error, next_at in self._pool.map(self._attempt, due):
            self.store.delivery_result(ident, status, error, next_at)
            self.counts["retried" if status == "pending" else status] += 1
        return len(due)

    def _attempt(self, row: dict[str, Any]) -> tuple[str, str, str, float]:
        """(id, status, error, next attempt) for one try of one delivery."""
        hook = self.hooks.get(row["url"])
        where = shown(row["url"])
        if hook is None:  # (another node's configuration, or one being rolled out: retried)
            error = "this webhook is not configured on this node"
        else:
            body = row["body"].encode()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "callcue-webhooks/1",
                "Callcue-Signature": sign(hook.secret, body, int(time.time())),
            }
            try:
                status = self.post(hook.url, body, headers)
                error = "" if 200 <= status < 300 else f"HTTP {status}"
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            if not error:
                return row["id"], "delivered", "", 0.0
        now = time.time()
        if now - row["created"] >= self.give_up_seconds:
            log.error("webhook %s: gave up on delivery %s (%s)", where, row["id"], error)
            return row["id"], "failed", error, 0.0
        delay = min(MAX_BACKOFF, self.retry_seconds * 2 ** int(row["attempts"]))
        log.warning(
            "webhook %s: delivery %s failed (%s); retried in %.0f s",
            where,
            row["id"],
            error,
            delay,
        )
        return row["id"], "pending", error, now + delay

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=TIMEOUT) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
