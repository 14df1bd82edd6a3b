"""The native ingest connection: protocol events in, a call session, events back to the client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from assist.hub import CallActiveError
from assist.session import CallSession, Services
from audio.protocols.native import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    AudioData,
    NativeIngestProtocol,
    ProtocolError,
    StartCall,
    StopCall,
)

log = logging.getLogger("callcue.ingest")


class Connection:
    """Serializes sends on one websocket and tolerates a peer that has gone away."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()
        self.open = True

    async def send_text(self, text: str) -> None:
        if not self.open:
            return
        async with self._lock:
            try:
                await self.ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.open = False

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send_text(json.dumps(message, ensure_ascii=False))

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if not self.open or self.ws.application_state == WebSocketState.DISCONNECTED:
            self.open = False
            return
        self.open = False
        async with self._lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(code=code, reason=reason[:120])


async def forward_events(services: Services, call_id: str, conn: Connection) -> None:
    """Send every event of the call to the ingest client until `call.ended`."""
    backlog, sub = services.hub.subscribe(call_id)
    try:
        for past in backlog:
            await conn.send_text(past.to_json())
        while (event := await sub.next()) is not None:
            await conn.send_text(event.to_json())
    finally:
        sub.close()


async def serve_native_ingest(ws: WebSocket, services: Services, max_frame_bytes: int) -> None:
    await ws.accept()
    conn = Connection(ws)
    protocol = NativeIngestProtocol(max_frame_bytes=max_frame_bytes)
    session: CallSession | None = None
    forwarder: asyncio.Task[None] | None = None
    reason = "disconnect"
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                events = protocol.receive_text(message["text"])
            else:
                events = protocol.receive_bytes(message.get("bytes") or b"")
            for event in events:
                if isinstance(event, AudioData):
                    assert session is not None
                    await session.feed(event.data)
                elif isinstance(event, StartCall):
                    refusal = services.admit()
                    if refusal is not None:
                        await _refuse(conn, ProtocolError("capacity", refusal[1], refusal[0]))
                        return
                    session = CallSession(
                        services, event.call_id, event.format, event.channels, event.metadata
                    )
                    try:
                        session.start()
                    except CallActiveError:
                        session = None
                        await _refuse(
                            conn,
                            ProtocolError(
                                "call_active",
                                f"call {event.call_id!r} is already streaming on "
                                "another connection",
                                CLOSE_POLICY,
                            ),
                        )
                        return
                    await conn.send_json({"type": "started", "call_id": event.call_id})
                    forwarder = asyncio.create_task(
                        forward_events(services, event.call_id, conn), name=f"fwd:{event.call_id}"
                    )
                    log.info(
                        "call %s started: %s %d Hz, channels %s",
                        event.call_id,
                        event.format.encoding,
                        event.format.sample_rate,
                        ",".join(event.channels),
                    )
                elif isinstance(event, StopCall):
                    assert session is not None
                    reason = "stop"
                    await session.finish("stop")
                    if forwarder is not None:
                        await forwarder
                    await conn.send_json({"type": "stopped", "call_id": session.call_id})
                    await conn.close(CLOSE_NORMAL)
                    return
                elif isinstance(event, ProtocolError):
                    reason = "error"
                    log.warning(
                        "ingest error on %s: %s: %s",
                        session.call_id if session else "(no call)",
                        event.code,
                        event.message,
                    )
                    if session is not None:
                        # keep what the client had already sent: flush it before closing
                        await session.finish("error")
                        if forwarder is not None:
                            await forwarder
                    await _refuse(conn, event)
                    return
    except WebSocketDisconnect:
        pass
    except Exception:
        reason = "error"
        log.exception("ingest connection failed")
        await _refuse(
            conn,
            ProtocolError(
                "internal",
                "internal server error; the call was ended and its transcript kept",
                CLOSE_INTERNAL,
            ),
        )
    finally:
        if session is not None and not session.finished:
            # abrupt disconnect: finals of what was received still reach screens and storage
            await session.finish(reason)
        if forwarder is not None and not forwarder.done():
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder


async def _refuse(conn: Connection, error: ProtocolError) -> None:
    await conn.send_json(error.to_message())
    await conn.close(error.close_code, error.code)
