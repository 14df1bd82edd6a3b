"""Every event callcue sends to screens, as frozen dataclasses; the JSON is derived from them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Common envelope: `seq` (+1 per event of a call) and `ts` are stamped by the hub."""

    type: ClassVar[str] = "event"
    call_id: str
    seq: int = 0
    ts: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(Event):
    type: ClassVar[str] = "call.started"
    channels: tuple[str, ...]
    source: str = "native"
    encoding: str = "pcm16"
    sample_rate: int = 16000
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptPartial(Event):
    """Tentative text of the utterance in progress; `stable` is the part that will not change."""

    type: ClassVar[str] = "transcript.partial"
    channel: str
    utterance: int
    start: float
    end: float
    text: str
    stable: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptFinal(Event):
    """A finished utterance; replaces the partials with the same `channel` and `utterance`."""

    type: ClassVar[str] = "transcript.final"
    channel: str
    utterance: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    confidence: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(Event):
    type: ClassVar[str] = "call.ended"
    reason: str  # stop | disconnect | error | shutdown
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent(Event):
    type: ClassVar[str] = "error"
    code: str
    message: str


EVENT_TYPES: tuple[type[Event], ...] = (
    CallStarted,
    TranscriptPartial,
    TranscriptFinal,
    CallEnded,
    ErrorEvent,
)
