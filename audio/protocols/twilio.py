"""Twilio Media Streams (`<Start><Stream>` / `<Connect><Stream>`) as a sans-I/O state machine.

Twilio sends JSON text messages only: `connected`, `start`, `media` (base64 μ-law 8 kHz, one
track per message), `dtmf`, `mark`, `stop`. Twilio reads nothing back on a unidirectional
stream, so a violation ends in a websocket close whose reason names the problem.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from websockets.frames import CloseCode

from audio.protocols.events import Audio, ProtocolFailure, Stop
from audio.protocols.jsontext import parse_json_text

TRACKS = ("inbound", "outbound")
SAMPLE_RATE = 8000
BYTES_PER_MS = SAMPLE_RATE // 1000  # μ-law: one byte a sample
MAX_GAP_MS = 60_000  # a larger jump in a track's timestamps is refused, not filled with silence


@dataclass(frozen=True, slots=True)
class TwilioStart:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TwilioDtmf:
    track: str
    digit: str


@dataclass(frozen=True, slots=True)
class TwilioMark:
    name: str


TwilioEvent = TwilioStart | Audio | TwilioDtmf | TwilioMark | Stop | ProtocolFailure


class TwilioProtocol:
    """States: `connecting` → `streaming` → `stopped`; `failed` on violations."""

    def __init__(self) -> None:
        self.state = "connecting"
        self.start: TwilioStart | None = None
        self.last_sequence = 0
        self.received_ms: dict[str, int] = {}  # per track: audio received so far, in ms

    def _fail(
        self, code: str, message: str, close: CloseCode = CloseCode.POLICY_VIOLATION
    ) -> list[TwilioEvent]:
        self.state = "failed"
        return [ProtocolFailure(code, message, close)]

    def receive_bytes(self, data: bytes) -> list[TwilioEvent]:
        if self.state in ("failed", "stopped"):
            return []
        return self._fail(
            "binary_message",
            "Twilio Media Streams sends JSON text only",
            CloseCode.UNSUPPORTED_DATA,
        )

    def receive_text(self, text: str) -> list[TwilioEvent]:
        if self.state in ("failed", "stopped"):
            return []
        message, problem = parse_json_text(text)
        if problem is not None:
            return self._fail("bad_json", problem, CloseCode.INVALID_DATA)
        if not isinstance(message, dict):
            return self._fail(
                "bad_message", "message must be a JSON object", CloseCode.INVALID_DATA
            )
        event = message.get("event")
        if event == "connected":
            return []
        if "sequenceNumber" in message:
            try:
                number = int(message["sequenceNumber"])
            except (TypeError, ValueError, OverflowError):
                return self._fail(
                    "bad_sequence", f"sequenceNumber {message['sequenceNumber']!r} is not a number"
                )
            if number != self.last_sequence + 1:
                return self._fail(
                    "sequence_gap",
                    f"sequenceNumber {number} after "
                    f"{self.last_sequence}: messages were lost or reordered",
                )
            self.last_sequence = number
        if event == "start":
            return self._on_start(message)
        if event in ("media", "dtmf", "mark", "stop") and self.state != "streaming":
            return self._fail("not_started", f"'{event}' before 'start'")
        if event == "media":
            return self._on_media(message.get("media"))
        if event in ("dtmf", "mark") and not isinstance(message.get(event) or {}, dict):
            return self._fail(
                "bad_message",
                f"{event!r} must be an object, not {type(message.get(event)).__name__}",
                CloseCode.INVALID_DATA,
            )
        if event == "dtmf":
            dtmf = message.get("dtmf") or {}
            track = str(dtmf.get("track", "inbound_track")).removesuffix("_track")
            return [TwilioDtmf(track, str(dtmf.get("digit", "")))]
        if event == "mark":
            return [TwilioMark(str((message.get("mark") or {}).get("name", "")))]
        if event == "stop":
            self.state = "stopped"
            return [Stop()]
        return self._fail("unknown_event", f"unknown event {event!r}")

    def _on_start(self, message: dict[str, Any]) -> list[TwilioEvent]:
        if self.state != "connecting":
            return self._fail("already_started", "a second 'start' on one stream")
        start = message.get("start")
        if not isinstance(start, dict):
            return self._fail("bad_start", "'start' has no start object")
        fmt = start.get("mediaFormat") or {}
        if (
            not isinstance(fmt, dict)
            or fmt.get("encoding") != "audio/x-mulaw"
            or fmt.get("sampleRate") != SAMPLE_RATE
            or fmt.get("channels", 1) != 1
        ):
            return self._fail(
                "unsupported_format",
                f"media format {fmt!r} is not supported "
                "(expected audio/x-mulaw, 8000 Hz, 1 channel)",
                CloseCode.UNSUPPORTED_DATA,
            )
        tracks = start.get("tracks", ["inbound"])
        if (
            not isinstance(tracks, list)
            or not tracks
            or not all(t in TRACKS for t in tracks)
            or len(set(tracks)) != len(tracks)
        ):
            return self._fail("bad_tracks", f"tracks {tracks!r}: expected inbound and/or outbound")
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            return self._fail("bad_start", "customParameters must be an object")
        call_sid = start.get("callSid") or ""
        stream_sid = start.get("streamSid") or message.get("streamSid") or ""
        if not call_sid or not stream_sid:
            return self._fail("bad_start", "'start' needs callSid and streamSid")
        self.start = TwilioStart(
            stream_sid=str(stream_sid),
            call_sid=str(call_sid),
            account_sid=str(start.get("accountSid", "")),
            tracks=tuple(str(t) for t in tracks),
            custom_parameters={str(k): str(v) for k, v in params.items()},
        )
        self.received_ms = {t: 0 for t in self.start.tracks}
        self.state = "streaming"
        return [self.start]

    def _on_media(self, media: Any) -> list[TwilioEvent]:
        assert self.start is not None
        if not isinstance(media, dict):
            return self._fail("bad_media", "'media' has no media object")
        track = media.get("track", "inbound")
        if not isinstance(track, str) or track not in self.received_ms:
            return self._fail(
                "bad_media",
                f"media for track {track!r}, which 'start' did not "
                f"announce ({', '.join(self.start.tracks)})",
            )
        try:
            data = base64.b64decode(media.get("payload", ""), validate=True)
            timestamp = int(media.get("timestamp", self.received_ms[track]))
        except (binascii.Error, TypeError, ValueError, OverflowError):
            return self._fail(
                "bad_media",
                "media payload is not base64 or timestamp is not a number",
                CloseCode.INVALID_DATA,
            )
        gap_ms = timestamp - self.received_ms[track]
        if gap_ms > MAX_GAP_MS:
            return self._fail(
                "bad_media",
                f"media timestamp {timestamp} ms on track {track!r} is {gap_ms} ms ahead of the "
                f"{self.received_ms[track]} ms of audio received (at most {MAX_GAP_MS} ms of "
                "lost audio is filled with silence)",
                CloseCode.INVALID_DATA,
            )
        if gap_ms > 20:  # Twilio skipped audio on this track: keep the tracks aligned
            data = b"\xff" * (gap_ms * BYTES_PER_MS) + data
        self.received_ms[track] += len(data) // BYTES_PER_MS
        return [Audio(data, track, timestamp)]
