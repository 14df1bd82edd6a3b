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
    # its JSON, encoded once for every screen, the store and Redis (a stamped copy, made by
    # `dataclasses.replace`, starts without it)
    _text: str = field(default="", init=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = {"type": self.type, **asdict(self)}
        del data["_text"]
        return data

    def to_json(self) -> str:
        if not self._text:
            text = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
            object.__setattr__(self, "_text", text)  # frozen: a cache, not a change
        return self._text


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayedEvent(Event):
    """An event of a call another node runs, as that node stamped and sent it (multi-node):
    passed on to screens byte for byte. `kind` is its `type`."""

    type: ClassVar[str] = "relayed"
    kind: str
    raw: str

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.raw)
        return data

    def to_json(self) -> str:
        return self.raw


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(Event):
    type: ClassVar[str] = "call.started"
    channels: tuple[str, ...]
    source: str = "native"
    encoding: str = "pcm16"
    sample_rate: int = 16000
    metadata: dict[str, Any] = field(default_factory=dict)
    # the caller from the customer directory, with `predicted_reason` (None: not found)
    customer: dict[str, Any] | None = None
    # words recognition is biased towards: the call's own, the names, the playbook's
    vocabulary: tuple[str, ...] = ()
    language: str = "en"  # as asked for: a Whisper language code, or "auto"
    # a digest of the credential that started the call: the store keeps it (who may resume
    # the call id); never sent to screens or stored with the event
    owner: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = Event.to_dict(self)
        del data["owner"]
        return data


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
    language: str = "en"  # what it was recognized as


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptRevised(Event):
    """A final's text as the accurate model heard it decoding the channel offline-style
    (long windows, the text before it): it replaces the text and words of the final with the
    same `channel` and `utterance` (`final_seq` is that final's seq); `live_text` is what
    the final said. Sent during a call (after each minute or so of a channel) and after
    `call.ended` for the rest of the call, only where the words changed."""

    type: ClassVar[str] = "transcript.revised"
    channel: str
    utterance: int
    final_seq: int
    start: float
    end: float
    text: str
    live_text: str
    words: tuple[Word, ...] = ()
    confidence: float = 0.0
    language: str = "en"


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptRelabeled(Event):
    """A diarized (one-channel) call's earlier finals were put down to the wrong party: each
    change moves the final with `utterance` from `previous` to `channel` (`final_seq` is that
    final's seq). Screens move the lines; the store keeps the corrected channel. Assist events
    already sent for those lines stay as they were."""

    type: ClassVar[str] = "transcript.relabeled"
    changes: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRevised(Event):
    """The end-of-call revision is done (it follows `call.ended`): every `transcript.revised`
    of the call has been sent and stored. `revised`: finals whose text changed, of `finals`;
    `skipped`: stretches not revised (the machine was too far behind: their live text stays)."""

    type: ClassVar[str] = "call.revised"
    revised: int
    finals: int
    skipped: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnalyticsEvent(Event):
    """The call's figures so far (`assist.analytics`: definitions there and in README): sent
    as they change, at most once a second, and once more before `call.ended`. Not stored
    (`GET /v1/calls/{id}/analytics` computes them from the stored finals).
    `current_silence_seconds`: how long nobody has spoken, at `duration_seconds`."""

    type: ClassVar[str] = "call.analytics"
    duration_seconds: float
    talk_seconds: dict[str, float]
    silence_seconds: float
    longest_silence_seconds: float
    overtalk_seconds: float
    interruptions: dict[str, int]
    words_per_minute: dict[str, float | None]
    agent_response_seconds: dict[str, Any] | None
    sentiment: dict[str, float]
    current_silence_seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(Event):
    type: ClassVar[str] = "call.ended"
    # stop | disconnect | error | shutdown | max_duration | idle | node_failed (another node
    # ended a call whose node stopped answering)
    reason: str
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent(Event):
    type: ClassVar[str] = "error"
    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentEvent(Event):
    """What the customer wants: this utterance's intent (None: out of scope) and the call's."""

    type: ClassVar[str] = "intent"
    channel: str
    utterance: int
    intent: str | None
    label: str
    confidence: float
    top: tuple[dict[str, Any], ...]
    current: str | None
    current_label: str
    stage: str
    # why the intent model did not read this utterance ("" when it did), e.g. its language
    unavailable: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SentimentEvent(Event):
    type: ClassVar[str] = "sentiment"
    channel: str
    utterance: int
    label: str  # negative | neutral | positive
    score: float  # p(positive) - p(negative)
    probabilities: dict[str, float]
    trend: float  # rolling score of this party
    negative_streak: int
    # why the sentiment model did not read this utterance ("" when it did); label "" then
    unavailable: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EntitiesEvent(Event):
    type: ClassVar[str] = "entities"
    channel: str
    utterance: int
    entities: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SuggestionEvent(Event):
    """A reply to say (`kind` reply: `text`) or an article to read (`title`, `body`, `link`)."""

    type: ClassVar[str] = "suggestion"
    kind: str
    id: str
    channel: str  # of the final it was read from (with `utterance`)
    utterance: int
    score: float
    intent: str | None
    reason: str
    text: str = ""
    title: str = ""
    body: str = ""
    link: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionEvent(Event):
    type: ClassVar[str] = "action"
    id: str
    action: str
    reason: str
    priority: int
    channel: str  # of the final after which the rule started to hold
    utterance: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecklistEvent(Event):
    type: ClassVar[str] = "checklist"
    items: tuple[dict[str, Any], ...]
    changed: tuple[str, ...]
    stage: str
    final: bool = False  # the result at the end of the call


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent(Event):
    type: ClassVar[str] = "alert"
    code: str
    severity: str  # info | warning | critical
    message: str
    channel: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CategoryMatched(Event):
    """A playbook category matched the call (once a call; `assist.categories`): `utterance`
    and `text` name the final that matched (None and "" for a silence, overtalk or a phrase
    that was *not* said), `start`/`end` the stretch of the call."""

    type: ClassVar[str] = "category.matched"
    name: str
    label: str
    channel: str
    start: float
    end: float
    utterance: int | None = None
    text: str = ""
    absent: bool = False  # matched because its conditions did not hold


@dataclass(frozen=True, slots=True, kw_only=True)
class CallScored(Event):
    """The playbook's scorecard answered automatically at the end of the call (before
    `call.ended`; `assist.scorecard`): `score` 0-100 (None: no item could be answered) and
    each item with `passed` (None: not answerable on this call) and its `reason`."""

    type: ClassVar[str] = "call.scored"
    score: float | None
    items: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallWrapup(Event):
    """At the end of a call: the disposition it most likely gets (`assist.wrapup`), why, the
    runners-up, every disposition the agent may choose instead, and an after-call note. The
    agent accepts or edits them (`POST /v1/calls/{id}/wrapup`)."""

    type: ClassVar[str] = "call.wrapup"
    disposition: str
    label: str
    reason: str
    note: str
    alternatives: tuple[dict[str, str], ...] = ()
    choices: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedbackEvent(Event):
    """What a screen did with a suggestion or action (recorded, and shown to other screens)."""

    type: ClassVar[str] = "feedback"
    target: str
    kind: str  # reply | article | action
    action: str  # shown | copied | accepted | dismissed | done
    source: str = "screen"


EVENT_TYPES: tuple[type[Event], ...] = (
    CallStarted,
    TranscriptPartial,
    TranscriptFinal,
    TranscriptRelabeled,
    IntentEvent,
    SentimentEvent,
    EntitiesEvent,
    SuggestionEvent,
    ActionEvent,
    ChecklistEvent,
    AlertEvent,
    CategoryMatched,
    FeedbackEvent,
    CallAnalyticsEvent,
    CallScored,
    CallEnded,
    ErrorEvent,
)
