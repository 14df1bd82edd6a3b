"""Limits on connections themselves, below HTTP routing: a connection must send a complete
request head within `CALLCUE_HEADER_TIMEOUT` seconds of opening (or of its previous response),
else it is closed. Without it, a client trickling one header byte at a time held a socket for
as long as it liked: 300 such connections stayed open for a minute in the attack pass.

The cap on connections (`CALLCUE_MAX_CONNECTIONS`) is uvicorn's `limit_concurrency`: beyond
it a request is answered `503 Service Unavailable`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("callcue.connections")


def with_header_timeout(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request head is late."""

    class HeaderTimeoutProtocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_timer: asyncio.TimerHandle | None = None
            self._expect_head()

        def _expect_head(self) -> None:
            self._cancel_head_timer()
            if seconds > 0:
                self._head_timer = self.loop.call_later(seconds, self._head_late)

        def _cancel_head_timer(self) -> None:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.cancel()
                self._head_timer = None

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle or self.transport.get_protocol() is not self:
                self._cancel_head_timer()  # a request head came (or a websocket took over)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._expect_head()  # the next request's head is due as promptly

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _head_late(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is being served
            client: Any = self.client
            log.info(
                "closed a connection from %s: no complete request head within %.0f s",
                client[0] if client else "?",
                seconds,
            )
            self.transport.close()

    return HeaderTimeoutProtocol
