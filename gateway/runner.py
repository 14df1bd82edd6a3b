"""One connection runner for the three ingest protocols (native, AudioHook, Twilio).

`run_connection` owns the receive loop (a call must start within START_SECONDS), hands each
message to the protocol's sans-I/O parser, gives each event it yields to the protocol's
handler, and tears the call down however the connection ends (its last finals are decoded,
stored and sent). `start_call` starts a call, written once for all three: admit (capacity) →
claim (no other node runs it) → session → start. A protocol supplies only what is its own:
parsing, what its events mean, and how it says no.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.frames import CloseCode

from audio.codec import AudioFormat
from audio.protocols.events import ProtocolFailure
from live.hub import CallActiveError
from live.session import CallIdTaken, CallSession, Services

log = logging.getLogger("callcue.ingest")

# A connection that has not started a call this long after it opened is closed
# (`start_timeout`): idle sockets would otherwise be held for ever
START_SECONDS = 10.0


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
        await self.close(
            CloseCode.GOING_AWAY if reason == "shutdown" else CloseCode.POLICY_VIOLATION, message
        )

    async def close(self, code: CloseCode = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        if not self.open or self.ws.application_state == WebSocketState.DISCONNECTED:
            self.open = False
            return
        self.open = False
        async with self._lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(code=code, reason=close_reason(reason))


def close_reason(text: str) -> str:
    """`text` cut to what a close frame carries: 123 bytes of UTF-8, whole characters (a
    longer reason makes the websocket layer raise instead of closing)."""
    return text.encode("utf-8", "replace")[:123].decode("utf-8", "ignore")


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


class Parser(Protocol):
    """A protocol's sans-I/O parser: a websocket message in, the protocol's events out."""

    def receive_text(self, text: str) -> Sequence[Any]: ...

    def receive_bytes(self, data: bytes) -> Sequence[Any]: ...


class Ingest(Protocol):
    """One protocol's side of an ingest connection."""

    name: str  # for the log: "native", "AudioHook", "Twilio"
    session: CallSession | None  # the call, once started
    reason: str  # how the call ends if the connection ends under it: disconnect, error, ...

    @property
    def protocol(self) -> Parser:
        """The protocol's parser (audio/protocols), which the runner feeds every message."""
        ...

    async def handle(self, event: Any) -> bool:
        """Act on one protocol event; True: the connection is done (closed)."""

    async def after_message(self) -> bool:
        """Every event of a message handled (send what the protocol has to say); True: done."""

    async def start_timeout(self) -> None:
        """No call started within START_SECONDS: say so and close."""

    async def internal_error(self) -> None:
        """Something broke on this side: say so and close (the call is then finished)."""

    async def finished(self) -> None:
        """The connection is over and its call finished: stop what the protocol runs beside
        it (an event forwarder)."""


async def run_connection(ws: WebSocket, ingest: Ingest) -> None:
    """Receive until the connection or the protocol ends; then the call, if one started and
    is still running, is finished with `ingest.reason` (what was received is transcribed)."""
    deadline = asyncio.get_running_loop().time() + START_SECONDS
    try:
        while True:
            message = await receive(ws, None if ingest.session is not None else deadline)
            if message is None:
                ingest.reason = "error"
                log.warning(
                    "%s connection: no call started within %.0f s", ingest.name, START_SECONDS
                )
                await ingest.start_timeout()
                return
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                events = ingest.protocol.receive_text(message["text"])
            else:
                events = ingest.protocol.receive_bytes(message.get("bytes") or b"")
            for event in events:
                if await ingest.handle(event):
                    return
            if await ingest.after_message():
                return
    except WebSocketDisconnect:
        pass
    except Exception:
        ingest.reason = "error"
        log.exception("%s connection failed", ingest.name)
        with contextlib.suppress(Exception):
            await ingest.internal_error()
    finally:
        session = ingest.session
        if session is not None and not session.finished:
            # abrupt disconnect: finals of what was received still reach screens and storage
            await session.finish(ingest.reason)
        await ingest.finished()


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A call a protocol asks to start, its values already checked by the protocol."""

    call_id: str
    format: AudioFormat
    channels: tuple[str, ...]
    metadata: dict[str, Any]
    source: str  # native | audiohook | twilio
    credential: str  # the key or token it came with ("open": none), for the per-key limit
    vocabulary: tuple[str, ...] = ()
    language: str = "en"  # a Whisper code, or "auto"
    diarize: bool | None = None  # None: as CALLCUE_DIARIZE says for a one-channel call


async def start_call(
    services: Services, conn: Connection, call: CallRequest
) -> CallSession | ProtocolFailure:
    """Admit → claim → session → start: the started call, or why it cannot start. The call
    closes `conn` when the server ends it (a protocol that must first send the rest of its
    events replaces `on_server_end`)."""
    if not services.recognition.scheduler.speaks(call.language):
        return ProtocolFailure(
            "language_unavailable",
            f"language {call.language!r} needs a multilingual Whisper model for finals "
            "(CALLCUE_FINAL_MODEL=embedded:base); this server's is English-only",
        )
    if (refusal := services.admit(call.credential)) is not None:
        return refusal
    if services.cluster is not None and (elsewhere := await services.cluster.claim(call.call_id)):
        return ProtocolFailure("call_active", elsewhere)
    diarize = call.diarize
    if diarize is None:
        diarize = services.speakers.default and len(call.channels) == 1
    session = CallSession(
        services,
        call.call_id,
        call.format,
        call.channels,
        call.metadata,
        source=call.source,
        credential=call.credential,
        vocabulary=call.vocabulary,
        language=call.language,
        diarize=diarize,
    )
    try:
        await session.start()
    except CallActiveError:  # (live here: its registry row is its own)
        return ProtocolFailure(
            "call_active", f"call {call.call_id!r} is already streaming on another connection"
        )
    except CallIdTaken as taken:
        await _unclaim(services, call.call_id)
        return ProtocolFailure("call_id_taken", str(taken))
    except BaseException:
        # it failed half-way (a recording that cannot be opened, say): a call already
        # registered here is ended, so it holds no capacity and its id can be used again
        if session.hub_feed is not None and not session.finished:
            with contextlib.suppress(Exception):
                await session.finish("error")
        else:
            await _unclaim(services, call.call_id)
        raise
    session.on_server_end = conn.close_for
    return session


async def _unclaim(services: Services, call_id: str) -> None:
    """A claimed call that did not start here leaves the registry (unless it runs here)."""
    if services.cluster is not None and call_id not in services.sessions:
        with contextlib.suppress(Exception):
            await services.cluster.release(call_id)


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


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a helper task that is still running, and wait for it."""
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
