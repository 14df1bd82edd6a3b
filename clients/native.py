"""A native-protocol client: streams a recording to a callcue server as a live call."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from audio.codec import encode_alaw, encode_mulaw
from audio.files import CallAudio


@dataclass
class StreamResult:
    """What the server sent back, with the wall clock of each send for latency measurement."""

    call_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # time.time() per event
    sent: list[tuple[float, float]] = field(default_factory=list)  # (audio end s, wall time)
    close_code: int | None = None
    close_reason: str = ""

    def sent_time(self, audio_seconds: float) -> float | None:
        """Wall time at which the audio at `audio_seconds` had been sent."""
        for end, wall in self.sent:
            if end >= audio_seconds:
                return wall
        return None


def encode_frames(audio: CallAudio, encoding: str) -> Callable[[int, int], bytes]:
    def frame(lo: int, hi: int) -> bytes:
        chunk = audio.samples[lo:hi].reshape(-1)
        if encoding == "mulaw":
            return encode_mulaw(chunk)
        if encoding == "alaw":
            return encode_alaw(chunk)
        return chunk.astype("<i2").tobytes()

    return frame


async def stream_call(
    url: str,
    audio: CallAudio,
    channels: list[str],
    *,
    realtime: bool = True,
    chunk_ms: int = 100,
    encoding: str = "pcm16",
    call_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    stop: bool = True,
    speed: float = 1.0,
    token: str | None = None,
    vocabulary: list[str] | None = None,
    language: str | None = None,
    diarize: bool | None = None,
) -> StreamResult:
    """Stream `audio` as one call; returns once the server has said `stopped` and closed.
    `token`: an ingest key (CALLCUE_INGEST_KEYS) or admin token, for a server that needs one.
    `diarize`: a one-channel call of both parties, told apart by voice by the server."""
    call_id = call_id or f"call-{uuid.uuid4().hex[:12]}"
    result = StreamResult(call_id=call_id)
    endpoint = url.rstrip("/")
    if not endpoint.endswith("/v1/ingest"):
        endpoint += "/v1/ingest"
    frame = encode_frames(audio, encoding)
    step = max(1, audio.sample_rate * chunk_ms // 1000)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with connect(
        endpoint, max_size=None, open_timeout=30, close_timeout=60, additional_headers=headers
    ) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "start",
                    "call_id": call_id,
                    "encoding": encoding,
                    "sample_rate": audio.sample_rate,
                    "channels": channels,
                    "metadata": metadata or {},
                    **({"vocabulary": vocabulary} if vocabulary else {}),
                    **({"language": language} if language else {}),
                    **({"diarize": diarize} if diarize is not None else {}),
                }
            )
        )

        async def receive() -> None:
            try:
                async for message in ws:
                    if isinstance(message, bytes):
                        continue
                    event = json.loads(message)
                    result.events.append(event)
                    result.received_at.append(time.time())
                    if on_event is not None:
                        on_event(event)
            except ConnectionClosed:
                pass

        receiver = asyncio.create_task(receive())
        started = time.monotonic()
        try:
            for lo in range(0, audio.samples.shape[0], step):
                hi = min(lo + step, audio.samples.shape[0])
                if realtime:
                    due = started + hi / audio.sample_rate / speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await ws.send(frame(lo, hi))
                result.sent.append((hi / audio.sample_rate, time.time()))
            if stop:
                await ws.send(json.dumps({"type": "stop"}))
        except ConnectionClosed:
            pass
        if stop:
            await receiver
        else:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
        if ws.close_code is not None:
            result.close_code = ws.close_code
            result.close_reason = ws.close_reason or ""
    return result
