"""callcue's native ingest protocol (`/v1/ingest`) as a sans-I/O state machine.

A client sends one JSON `start` message, then binary frames of interleaved samples, then
`{"type": "stop"}`. Every message in maps to typed events; bad input becomes a
`ProtocolFailure` event (never an exception) carrying a code, a message and a close code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from websockets.frames import CloseCode

from audio.codec import ENCODINGS, MAX_RATE, MIN_RATE, AudioFormat, Encoding
from audio.protocols.events import Audio, ProtocolFailure, Stop
from audio.protocols.jsontext import parse_json_text
from audio.protocols.vocabulary import check_language, parse_vocabulary

CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}\Z")
CHANNEL = re.compile(r"^[a-z][a-z0-9_-]{0,31}\Z")
START_FIELDS = {
    "type",
    "call_id",
    "encoding",
    "sample_rate",
    "channels",
    "metadata",
    "vocabulary",
    "language",
    "diarize",
}
REQUIRED = ("call_id", "encoding", "sample_rate")
MAX_CHANNELS = 8
MAX_METADATA_BYTES = 16_384
MAX_TEXT_BYTES = 65_536


@dataclass(frozen=True, slots=True)
class StartCall:
    call_id: str
    format: AudioFormat
    channels: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    vocabulary: tuple[str, ...] = ()  # words the call is likely to contain (Whisper biasing)
    language: str = "en"  # a Whisper language code, or "auto" (detected per channel)
    # both parties on the one channel, to be told apart by voice (None: not said, the
    # server's default for one-channel calls applies)
    diarize: bool | None = None


NativeEvent = StartCall | Audio | Stop | ProtocolFailure


class NativeIngestProtocol:
    """State: `idle` → `streaming` → `stopped`; any error moves to `failed` for good."""

    def __init__(self, max_frame_bytes: int = 1_048_576) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.state = "idle"
        self.start: StartCall | None = None
        self.bytes_received = 0

    def receive_text(self, text: str) -> list[NativeEvent]:
        if self.state in ("failed", "stopped"):
            return []
        if len(text) > MAX_TEXT_BYTES:
            return self._fail(
                "message_too_large",
                f"text message of {len(text)} characters exceeds {MAX_TEXT_BYTES}",
                CloseCode.MESSAGE_TOO_BIG,
            )
        message, problem = parse_json_text(text)
        if problem is not None:
            return self._fail("bad_json", problem, CloseCode.INVALID_DATA)
        if not isinstance(message, dict):
            return self._fail(
                "bad_message",
                f"message must be a JSON object, got {type(message).__name__}",
                CloseCode.INVALID_DATA,
            )
        kind = message.get("type")
        if kind == "start":
            if self.state != "idle":
                return self._fail(
                    "already_started",
                    "a call was already started on this "
                    "connection; open a new connection for another call",
                )
            return self._start(message)
        if kind == "stop":
            if self.state != "streaming":
                return self._fail("not_started", "'stop' before 'start'")
            self.state = "stopped"
            return [Stop()]
        if kind is None:
            return self._fail("missing_field", "message has no 'type' (expected 'start' or 'stop')")
        return self._fail(
            "unknown_type", f"unknown message type {kind!r} (expected 'start' or 'stop')"
        )

    def receive_bytes(self, data: bytes) -> list[NativeEvent]:
        if self.state in ("failed", "stopped"):
            return []
        if self.state == "idle" or self.start is None:
            return self._fail(
                "audio_before_start",
                "binary audio received before the 'start' "
                'message; send {"type": "start", ...} first',
            )
        if len(data) > self.max_frame_bytes:
            return self._fail(
                "frame_too_large",
                f"audio frame of {len(data)} bytes exceeds the "
                f"limit of {self.max_frame_bytes} bytes (CALLCUE_MAX_FRAME_BYTES); "
                "send smaller frames",
                CloseCode.MESSAGE_TOO_BIG,
            )
        width = self.start.format.bytes_per_sample
        if len(data) % width:
            return self._fail(
                "bad_audio",
                f"{self.start.format.encoding} frame of {len(data)} "
                f"bytes is not a whole number of {width}-byte samples",
                CloseCode.INVALID_DATA,
            )
        self.bytes_received += len(data)
        return [Audio(data)] if data else []

    def _fail(
        self, code: str, message: str, close_code: CloseCode = CloseCode.POLICY_VIOLATION
    ) -> list[NativeEvent]:
        self.state = "failed"
        return [ProtocolFailure(code, message, close_code)]

    def _start(self, message: dict[str, Any]) -> list[NativeEvent]:
        unknown = sorted(set(message) - START_FIELDS)
        if unknown:
            return self._fail(
                "unknown_field",
                f"unknown field(s) in 'start': {', '.join(unknown)}"
                f" (allowed: {', '.join(sorted(START_FIELDS))})",
            )
        missing = [name for name in REQUIRED if name not in message]
        if missing:
            return self._fail("missing_field", f"'start' is missing {', '.join(missing)}")
        call_id = message["call_id"]
        if not isinstance(call_id, str) or not CALL_ID.match(call_id):
            return self._fail(
                "bad_call_id",
                "call_id must be 1-128 characters of letters, "
                f"digits and ._:@+- starting with a letter or digit, got {call_id!r}",
            )
        encoding = message["encoding"]
        if encoding not in ENCODINGS:
            return self._fail(
                "unsupported_encoding",
                f"encoding {encoding!r} is not supported (use one of {', '.join(ENCODINGS)})",
                CloseCode.UNSUPPORTED_DATA,
            )
        rate = message["sample_rate"]
        if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
            return self._fail(
                "bad_sample_rate",
                f"sample_rate must be an integer from {MIN_RATE} to {MAX_RATE} Hz, got {rate!r}",
            )
        channels = message.get("channels", ["customer"])
        if (
            not isinstance(channels, list)
            or not 1 <= len(channels) <= MAX_CHANNELS
            or not all(isinstance(c, str) and CHANNEL.match(c) for c in channels)
            or len(set(channels)) != len(channels)
        ):
            return self._fail(
                "bad_channels",
                "channels must be a list of 1 to "
                f"{MAX_CHANNELS} distinct lowercase names such as "
                f'["customer", "agent"], got {channels!r}',
            )
        metadata = message.get("metadata", {})
        if not isinstance(metadata, dict):
            return self._fail("bad_metadata", "metadata must be a JSON object")
        if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
            return self._fail("bad_metadata", f"metadata exceeds {MAX_METADATA_BYTES} bytes")
        vocabulary, problem = parse_vocabulary(message.get("vocabulary", []))
        if problem is not None:
            return self._fail("bad_vocabulary", problem)
        language, problem = check_language(message.get("language", "en"))
        if problem is not None:
            return self._fail("bad_language", problem)
        diarize = message.get("diarize")
        if diarize is not None and not isinstance(diarize, bool):
            return self._fail("bad_diarize", f"diarize must be true or false, got {diarize!r}")
        if diarize and len(channels) != 1:
            return self._fail(
                "bad_diarize",
                "diarize tells agent from customer on a one-channel call (both parties "
                f"mixed); this call has {len(channels)} channels ({', '.join(channels)}), "
                "each already one party: leave diarize out",
            )
        enc: Encoding = encoding
        self.start = StartCall(
            call_id=call_id,
            format=AudioFormat(encoding=enc, sample_rate=rate, channels=len(channels)),
            channels=tuple(channels),
            metadata=metadata,
            vocabulary=vocabulary,
            language=language,
            diarize=diarize,
        )
        self.state = "streaming"
        return [self.start]
