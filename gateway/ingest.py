"""The native ingest connection: protocol events in, a call session, events back to the client."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any
from urllib.parse import quote

from starlette.websockets import WebSocket
from websockets.frames import CloseCode

from audio.protocols.events import Audio, ProtocolFailure, Stop
from audio.protocols.native import NativeEvent, NativeIngestProtocol, StartCall
from gateway.auth import Authorizer, Denied, allowed_hosts, origin_allowed
from gateway.runner import (
    START_SECONDS,
    CallRequest,
    Connection,
    forward_events,
    run_connection,
    start_call,
    stop_task,
)
from live.session import CallSession, Services
from service.settings import Settings

log = logging.getLogger("callcue.ingest")


async def refuse_unauthorized(ws: WebSocket, denied: Denied) -> None:
    """Accept, say why, close: a refused handshake shows a browser only "1006"."""
    await ws.accept()
    await ws.send_json({"type": "error", "code": denied.code, "message": denied.message})
    await ws.close(4401 if denied.status == 401 else 4403, denied.code)


def check_origin(ws: WebSocket, settings: Settings) -> Denied | None:
    hosts = allowed_hosts(settings.allowed_hosts, bool(settings.token_roles))
    if origin_allowed(ws.headers, settings.origins, hosts):
        return None
    return Denied(
        403,
        "origin_not_allowed",
        f"pages from {ws.headers.get('origin', '')[:100]!r} may not open this websocket "
        "(CALLCUE_ALLOWED_ORIGINS)",
    )


async def serve_native_ingest(
    ws: WebSocket, services: Services, settings: Settings, authorizer: Authorizer
) -> None:
    try:
        denied = check_origin(ws, settings)
        if denied is not None:
            raise denied
        credential = authorizer.ingest(ws.headers, ws.query_params)
    except Denied as denied:
        services.metrics.auth_failures.inc(1, "ingest")
        log.warning("ingest connection refused: %s", denied.message)
        await refuse_unauthorized(ws, denied)
        return
    await ws.accept()
    ingest = NativeIngest(Connection(ws), services, settings, authorizer, credential)
    await run_connection(ws, ingest)


class NativeIngest:
    """callcue's own protocol: a `start` message, binary audio, `stop`; every event of the call
    goes back to the client (`forward_events`), which gets `stopped` once all are sent."""

    name = "native"

    def __init__(
        self,
        conn: Connection,
        services: Services,
        settings: Settings,
        authorizer: Authorizer,
        credential: str,
    ) -> None:
        self.conn = conn
        self.services = services
        self.authorizer = authorizer
        self.credential = credential
        self.protocol = NativeIngestProtocol(max_frame_bytes=settings.max_frame_bytes)
        self.session: CallSession | None = None
        self.reason = "disconnect"
        self.forwarder: asyncio.Task[None] | None = None

    async def handle(self, event: NativeEvent) -> bool:
        if isinstance(event, Audio):
            assert self.session is not None
            await self.session.push(event.data)
            return False
        if isinstance(event, StartCall):
            return await self._start(event)
        if isinstance(event, Stop):
            assert self.session is not None
            self.reason = "stop"
            await self.session.finish("stop")
            if self.forwarder is not None:
                await self.forwarder
            await self.conn.send_json({"type": "stopped", "call_id": self.session.call_id})
            await self.conn.close(CloseCode.NORMAL_CLOSURE)
            return True
        # a ProtocolFailure
        self.reason = "error"
        if event.code in ("frame_too_large", "message_too_large"):
            self.services.metrics.limited.inc(1, event.code.removesuffix("_too_large"))
        log.warning(
            "ingest error on %s: %s: %s",
            self.session.call_id if self.session else "(no call)",
            event.code,
            event.message,
        )
        if self.session is not None:
            # keep what the client had already sent: flush it before closing
            await self.session.finish("error")
            if self.forwarder is not None:
                await self.forwarder
        await self._refuse(event)
        return True

    async def _start(self, event: StartCall) -> bool:
        started = await start_call(
            self.services,
            self.conn,
            CallRequest(
                event.call_id,
                event.format,
                event.channels,
                event.metadata,
                "native",
                self.credential,
                event.vocabulary,
                event.language,
                event.diarize,
            ),
        )
        if isinstance(started, ProtocolFailure):
            self.reason = "error"
            await self._refuse(started)
            return True
        self.session = session = started
        message: dict[str, Any] = {"type": "started", "call_id": event.call_id}
        if self.authorizer.enabled:  # a link for the agent's screen of this call
            token, expires = self.authorizer.links.make(event.call_id)
            message["screen"] = {
                "path": f"/agent/{quote(event.call_id)}?token={token}",
                "token": token,
                "expires_at": expires,
            }
        await self.conn.send_json(message)
        self.forwarder = asyncio.create_task(
            forward_events(self.services, event.call_id, self.conn), name=f"fwd:{event.call_id}"
        )
        session.on_server_end = functools.partial(_server_end, self.conn, self.forwarder)
        log.info(
            "call %s started: %s %d Hz, channels %s",
            event.call_id,
            event.format.encoding,
            event.format.sample_rate,
            ",".join(event.channels),
        )
        return False

    async def after_message(self) -> bool:
        return False

    async def start_timeout(self) -> None:
        await self._refuse(
            ProtocolFailure(
                "start_timeout",
                f"no start message within {START_SECONDS:.0f} s of connecting",
                CloseCode.POLICY_VIOLATION,
            )
        )

    async def internal_error(self) -> None:
        await self._refuse(
            ProtocolFailure(
                "internal",
                "internal server error; the call was ended and its transcript kept",
                CloseCode.INTERNAL_ERROR,
            )
        )

    async def finished(self) -> None:
        await stop_task(self.forwarder)

    async def _refuse(self, error: ProtocolFailure) -> None:
        await self.conn.send_json(error.to_message())
        await self.conn.close(error.close_code, error.code)


async def _server_end(
    conn: Connection, forwarder: asyncio.Task[None], reason: str, message: str
) -> None:
    """The server ended the call: the client gets every event up to `call.ended`, then the
    close with the reason."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(forwarder), timeout=10.0)
    await conn.close_for(reason, message)
