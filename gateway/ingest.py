"""The native ingest connection: protocol events in, a call session, events back to the client."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from typing import Any
from urllib.parse import quote

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from audio.protocols.native import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    AudioData,
    NativeIngestProtocol,
    ProtocolFailure,
    StartCall,
    StopCall,
)
from gateway.auth import Authorizer, Denied, allowed_hosts, origin_allowed
from live.hub import CallActiveError
from live.session import CallIdTaken, CallSession, Services
from service.settings import Settings

log = logging.getLogger("callcue.ingest")
CLOSE_GOING_AWAY = 1001


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

    async def close_for(self, reason: str, message: str) -> None:
        """Close after the server ended the call: 1001 when shutting down, else 1008."""
        await self.close(CLOSE_GOING_AWAY if reason == "shutdown" else CLOSE_POLICY, message)

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if not self.open or self.ws.application_state == WebSocketState.DISCONNECTED:
            self.open = False
            return
        self.open = False
        async with self._lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(code=code, reason=close_reason(reason))


# A connection that has not started a call this long after it opened is closed
# (`start_timeout`): idle sockets would otherwise be held for ever
START_SECONDS = 10.0


async def receive(ws: WebSocket, deadline: float | None) -> Message | None:
    """The next websocket message; None when the loop's clock passes `deadline` first (None:
    no deadline, a call is running)."""
    if deadline is None:
        return await ws.receive()
    try:
        async with asyncio.timeout_at(deadline):
            return await ws.receive()
    except TimeoutError:
        return None


def close_reason(text: str) -> str:
    """`text` cut to what a close frame carries: 123 bytes of UTF-8, whole characters (a
    longer reason makes the websocket layer raise instead of closing)."""
    return text.encode("utf-8", "replace")[:123].decode("utf-8", "ignore")


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
    conn = Connection(ws)
    protocol = NativeIngestProtocol(max_frame_bytes=settings.max_frame_bytes)
    session: CallSession | None = None
    forwarder: asyncio.Task[None] | None = None
    reason = "disconnect"
    deadline = asyncio.get_running_loop().time() + START_SECONDS
    try:
        while True:
            message = await receive(ws, None if session is not None else deadline)
            if message is None:
                reason = "error"
                await _refuse(
                    conn,
                    ProtocolFailure(
                        "start_timeout",
                        f"no start message within {START_SECONDS:.0f} s of connecting",
                        CLOSE_POLICY,
                    ),
                )
                return
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
                    if not services.scheduler.speaks(event.language):
                        await _refuse(
                            conn,
                            ProtocolFailure(
                                "language_unavailable",
                                f"language {event.language!r} needs a multilingual Whisper "
                                "model for finals (CALLCUE_FINAL_MODEL=embedded:base); this "
                                "server's is English-only",
                                CLOSE_POLICY,
                            ),
                        )
                        return
                    refusal = services.admit(credential)
                    if refusal is not None:
                        await _refuse(conn, ProtocolFailure("capacity", refusal[1], refusal[0]))
                        return
                    if services.cluster is not None and (
                        elsewhere := await services.cluster.claim(event.call_id)
                    ):
                        await _refuse(conn, ProtocolFailure("call_active", elsewhere, CLOSE_POLICY))
                        return
                    session = CallSession(
                        services,
                        event.call_id,
                        event.format,
                        event.channels,
                        event.metadata,
                        credential=credential,
                        vocabulary=event.vocabulary,
                        language=event.language,
                        diarize=event.diarize
                        if event.diarize is not None
                        else services.diarize and len(event.channels) == 1,
                    )
                    try:
                        await session.start()
                    except CallActiveError:
                        session = None
                        await _refuse(
                            conn,
                            ProtocolFailure(
                                "call_active",
                                f"call {event.call_id!r} is already streaming on "
                                "another connection",
                                CLOSE_POLICY,
                            ),
                        )
                        return
                    except CallIdTaken as taken:
                        session = None
                        await _refuse(
                            conn, ProtocolFailure("call_id_taken", str(taken), CLOSE_POLICY)
                        )
                        return
                    started: dict[str, Any] = {"type": "started", "call_id": event.call_id}
                    if authorizer.enabled:  # a link for the agent's screen of this call
                        token, expires = authorizer.links.make(event.call_id)
                        started["screen"] = {
                            "path": f"/agent/{quote(event.call_id)}?token={token}",
                            "token": token,
                            "expires_at": expires,
                        }
                    await conn.send_json(started)
                    forwarder = asyncio.create_task(
                        forward_events(services, event.call_id, conn), name=f"fwd:{event.call_id}"
                    )
                    session.on_server_end = functools.partial(_server_end, conn, forwarder)
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
                elif isinstance(event, ProtocolFailure):
                    reason = "error"
                    if event.code in ("frame_too_large", "message_too_large"):
                        services.metrics.limited.inc(1, event.code.removesuffix("_too_large"))
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
            ProtocolFailure(
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


async def _server_end(
    conn: Connection, forwarder: asyncio.Task[None], reason: str, message: str
) -> None:
    """The server ended the call: the client gets every event up to `call.ended`, then the
    close with the reason."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(forwarder), timeout=10.0)
    await conn.close_for(reason, message)


async def _refuse(conn: Connection, error: ProtocolFailure) -> None:
    await conn.send_json(error.to_message())
    await conn.close(error.close_code, error.code)
