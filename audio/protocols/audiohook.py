"""Genesys Cloud AudioHook protocol (version 2), server side, as a sans-I/O state machine.

Feed it the client's text and binary messages; it returns typed events and queues the
server's replies (`data_to_send`). Protocol violations become a `ProtocolFailure` event
and a queued `disconnect` (reason `error`), never an exception.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from audio.protocols.events import Audio, ProtocolFailure, Stop
from audio.protocols.jsontext import parse_json_text

PROBE_ID = "00000000-0000-0000-0000-000000000000"
FORMATS = ("PCMU", "L16")
RATE = 8000
_DURATION = re.compile(r"^PT([0-9]+(?:\.[0-9]+)?)S\Z")
CLIENT_TYPES = {"open", "close", "discarded", "error", "paused", "ping", "resumed", "update"}


def duration(seconds: float) -> str:
    """ISO 8601 duration in seconds as AudioHook writes it: PT1.25S."""
    text = f"{max(seconds, 0.0):.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


def parse_duration(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    m = _DURATION.match(value)
    if m is None:
        return None
    seconds = float(m.group(1))  # 400 digits of seconds read as inf: not a duration
    return seconds if math.isfinite(seconds) else None


@dataclass(frozen=True, slots=True)
class MediaFormat:
    format: str  # PCMU | L16
    channels: tuple[str, ...]  # "external", "internal"
    rate: int = RATE

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "audio",
            "format": self.format,
            "channels": list(self.channels),
            "rate": self.rate,
        }

    @property
    def frame_bytes(self) -> int:
        return (2 if self.format == "L16" else 1) * len(self.channels)


@dataclass(frozen=True, slots=True)
class AudioHookOpen:
    session_id: str
    conversation_id: str
    organization_id: str
    participant: dict[str, Any]
    media: MediaFormat
    probe: bool
    language: str | None = None
    custom_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AudioHookPaused:
    pass


@dataclass(frozen=True, slots=True)
class AudioHookResumed:
    start: float
    discarded: float


@dataclass(frozen=True, slots=True)
class AudioHookDiscarded:
    start: float
    discarded: float


@dataclass(frozen=True, slots=True)
class AudioHookUpdate:
    language: str | None


@dataclass(frozen=True, slots=True)
class AudioHookClientError:
    code: int
    message: str


AudioHookEvent = (
    AudioHookOpen
    | Audio
    | Stop
    | AudioHookPaused
    | AudioHookResumed
    | AudioHookDiscarded
    | AudioHookUpdate
    | AudioHookClientError
    | ProtocolFailure
)


class AudioHookProtocol:
    """States: `connected` → `open` ⇄ `paused` → `closing` → `closed`; `failed` on violations."""

    def __init__(
        self, session_id: str, formats: tuple[str, ...] = FORMATS, position_tolerance: float = 1.0
    ) -> None:
        self.session_id = session_id
        self.formats = formats
        self.position_tolerance = position_tolerance
        self.state = "connected"
        self.client_seq = 0  # last seq received
        self.server_seq = 0  # last seq sent
        self.media: MediaFormat | None = None
        self.samples = 0  # per channel, received as audio
        self.discarded = 0.0  # seconds the client reported as discarded
        self._outbox: list[dict[str, Any]] = []
        self._carry = b""

    # -- output -------------------------------------------------------------------------
    def data_to_send(self) -> list[dict[str, Any]]:
        out, self._outbox = self._outbox, []
        return out

    def _send(self, kind: str, parameters: dict[str, Any]) -> dict[str, Any]:
        self.server_seq += 1
        message = {
            "version": "2",
            "id": self.session_id,
            "type": kind,
            "seq": self.server_seq,
            "clientseq": self.client_seq,
            "parameters": parameters,
        }
        self._outbox.append(message)
        return message

    @property
    def position(self) -> float:
        return self.samples / RATE + self.discarded

    # -- server-initiated messages --------------------------------------------------------
    def send_closed(self) -> None:
        """Answer the client's `close` once every final has been sent."""
        if self.state == "closing":
            self._send("closed", {})
            self.state = "closed"

    def send_pause(self) -> None:
        if self.state == "open":
            self._send("pause", {})

    def send_resume(self) -> None:
        if self.state == "paused":
            self._send("resume", {})

    def disconnect(self, reason: str, info: str = "") -> None:
        if self.state in ("open", "paused", "connected"):
            self._send("disconnect", {"reason": reason, **({"info": info} if info else {})})
            self.state = "disconnecting"

    def send_transcript(
        self,
        channel_id: int,
        final: bool,
        start: float,
        end: float,
        text: str,
        confidence: float,
        words: list[dict[str, Any]],
        language: str = "en-US",
        transcript_id: str | None = None,
    ) -> None:
        """A `transcript` entity in an `event` message (only while the session is open), on
        the negotiated media channel `channel_id` (its index in `open`'s `media.channels`,
        as Genesys' reference implementation has sent it since 2024)."""
        if self.state not in ("open", "paused", "closing"):
            return
        tokens = [
            {
                "type": "word",
                "value": w["word"],
                "confidence": round(w["probability"], 3),
                "offset": duration(w["start"]),
                "duration": duration(w["end"] - w["start"]),
                "language": language,
            }
            for w in words
        ]
        interpretation: dict[str, Any] = {"type": "display", "transcript": text}
        if tokens:
            interpretation["tokens"] = tokens
        self._send(
            "event",
            {
                "entities": [
                    {
                        "type": "transcript",
                        "data": {
                            "id": transcript_id or str(uuid.uuid4()),
                            "channelId": channel_id,
                            "isFinal": final,
                            "offset": duration(start),
                            "duration": duration(end - start),
                            "alternatives": [
                                {
                                    "confidence": round(confidence, 3),
                                    "languages": [language],
                                    "interpretations": [interpretation],
                                }
                            ],
                        },
                    }
                ]
            },
        )

    # -- input --------------------------------------------------------------------------
    def _fail(self, info: str) -> list[AudioHookEvent]:
        if self.state in ("open", "paused", "connected"):
            self._send("disconnect", {"reason": "error", "info": info})
        self.state = "failed"
        return [ProtocolFailure("protocol_error", info)]

    def receive_bytes(self, data: bytes) -> list[AudioHookEvent]:
        if self.state in ("failed", "disconnecting", "closing", "closed"):
            return []
        if self.state == "connected" or self.media is None:
            return self._fail("audio received before the session was opened")
        if self.state == "paused":
            return self._fail("audio received while the session is paused")
        data = self._carry + data
        whole = len(data) - len(data) % self.media.frame_bytes
        self._carry = data[whole:]
        self.samples += whole // self.media.frame_bytes
        return [Audio(data[:whole])] if whole else []

    def receive_text(self, text: str) -> list[AudioHookEvent]:
        if self.state in ("failed", "closed"):
            return []
        message, problem = parse_json_text(text)
        if problem is not None:
            return self._fail(problem)
        if not isinstance(message, dict):
            return self._fail("message is not a JSON object")
        if message.get("version") != "2":
            return self._fail(f"unsupported protocol version {message.get('version')!r}")
        kind = message.get("type")
        if not isinstance(kind, str) or kind not in CLIENT_TYPES:
            return self._fail(f"unknown message type {kind!r}")
        if message.get("id") != self.session_id:
            return self._fail(f"message id {message.get('id')!r} is not this session's id")
        seq = message.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq != self.client_seq + 1:
            return self._fail(f"seq {seq!r} out of order: expected {self.client_seq + 1}")
        serverseq = message.get("serverseq")
        if (
            isinstance(serverseq, bool)
            or not isinstance(serverseq, int)
            or serverseq < 0
            or serverseq > self.server_seq
        ):
            return self._fail(
                f"serverseq {serverseq!r} is not a seq this server has sent "
                f"(last sent {self.server_seq})"
            )
        position = parse_duration(message.get("position"))
        if position is None:
            return self._fail(f"position {message.get('position')!r} is not a duration PTnS")
        parameters = message.get("parameters", {})
        if not isinstance(parameters, dict):
            return self._fail("parameters must be an object")
        self.client_seq = seq
        # `resumed`/`discarded` report audio the client dropped; their position counts it
        gone = (
            parse_duration(parameters.get("discarded")) if kind in ("resumed", "discarded") else 0
        )
        expected = self.position + (gone or 0.0)
        if (
            kind != "open"
            and self.media is not None
            and (abs(position - expected) > self.position_tolerance)
        ):
            return self._fail(
                f"position {position:.3f}s does not match the "
                f"{self.position:.3f}s of audio received"
            )
        handler = getattr(self, f"_on_{kind}")
        result: list[AudioHookEvent] = handler(parameters)
        return result

    def _on_open(self, p: dict[str, Any]) -> list[AudioHookEvent]:
        if self.state != "connected":
            return self._fail("'open' on a session that is already open")
        conversation = p.get("conversationId")
        organization = p.get("organizationId")
        participant = p.get("participant", {})
        if not isinstance(conversation, str) or not isinstance(organization, str):
            return self._fail("'open' needs conversationId and organizationId")
        offers = p.get("media")
        if not isinstance(offers, list) or not offers:
            return self._fail("'open' offers no media")
        language, custom_config = p.get("language"), p.get("customConfig")
        if language is not None and not isinstance(language, str):
            return self._fail(f"'open' language must be a string, not {type(language).__name__}")
        if custom_config is not None and not isinstance(custom_config, dict):
            return self._fail(
                f"'open' customConfig must be an object, not {type(custom_config).__name__}"
            )
        chosen = self._choose(offers)
        if chosen is None:
            return self._fail(
                "none of the offered media formats is supported "
                f"(supported: {'/'.join(self.formats)} at {RATE} Hz, "
                "channels external/internal)"
            )
        self.media = chosen
        self.state = "open"
        self._send("opened", {"media": [chosen.to_json()], "startPaused": False})
        probe = conversation == PROBE_ID
        return [
            AudioHookOpen(
                session_id=self.session_id,
                conversation_id=conversation,
                organization_id=organization,
                participant=participant if isinstance(participant, dict) else {},
                media=chosen,
                probe=probe,
                language=language,
                custom_config=custom_config or {},
            )
        ]

    def _choose(self, offers: list[Any]) -> MediaFormat | None:
        candidates = []
        for offer in offers:
            if not isinstance(offer, dict) or offer.get("type", "audio") != "audio":
                continue
            channels = offer.get("channels")
            if (
                offer.get("format") not in self.formats
                or offer.get("rate") != RATE
                or not isinstance(channels, list)
                or not channels
                or not all(c in ("external", "internal") for c in channels)
                or len(set(channels)) != len(channels)
            ):
                continue
            candidates.append(MediaFormat(offer["format"], tuple(channels), RATE))
        # both parties beat one; PCMU (what Genesys sends) beats L16 on a tie
        candidates.sort(key=lambda m: (-len(m.channels), self.formats.index(m.format)))
        return candidates[0] if candidates else None

    def _on_ping(self, p: dict[str, Any]) -> list[AudioHookEvent]:
        self._send("pong", {})
        return []

    def _on_close(self, p: dict[str, Any]) -> list[AudioHookEvent]:
        reason = p.get("reason", "end")
        self.state = "closing"
        return [Stop(str(reason))]

    def _on_paused(self, p: dict[str, Any]) -> list[AudioHookEvent]:
        if self.state != "open":
            return self._fail("'paused' while not streaming")
        self.state = "paused"
        return [AudioHookPaused()]

    def _on_resumed(self, p: dict[str, Any]) -> list[AudioHookEvent]:
        if self.state != "paused":
            return self._fail("'resumed' while not paused")
        start, gone = parse_duration(p.get("start")), parse_duration(p.get("discarded"))
        if start is None or gone is None:
            return self._fail("'resumed' needs start and discarded durations")
        self.state = "open"
        self.discarded += gone
        return [AudioHookResumed(start, gone)]

    def _on_discarded(self, p: dict[str, Any]) -> list[AudioHookEvent]:
        if self.state not in ("open", "paused"):
            return self._fail("'discarded' before the session was opened")
        start, gone = parse_duration(p.get("start")), parse_duration(p.get("discarded"))
        if start is None or gone is None:
            return self._fail("'discarded' needs start and discarded durations")
        self.discarded += gone
        return [AudioHookDiscarded(start, gone)]

    def _on_update(self, p: dict[str, Any]) -> list[AudioHookEvent]:
        if self.state not in ("open", "paused"):
            return self._fail("'update' before the session was opened")
        self._send("updated", {})
        language = p.get("language")
        return [AudioHookUpdate(language if isinstance(language, str) else None)]

    def _on_error(self, p: dict[str, Any]) -> list[AudioHookEvent]:
        code = p.get("code")
        return [
            AudioHookClientError(code if isinstance(code, int) else 0, str(p.get("message", "")))
        ]
