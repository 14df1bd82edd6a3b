"""A live call: decodes its audio, runs one streaming transcriber per channel, emits events."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from websockets.frames import CloseCode

from assist.analytics import CallAnalytics
from assist.customers import Customer
from assist.engine import AssistModels, CallAssist
from assist.entities import Entity
from assist.events import (
    CallAnalyticsEvent,
    CallEnded,
    CallRevised,
    CallStarted,
    ErrorEvent,
    Event,
    SentimentEvent,
    TranscriptFinal,
    TranscriptPartial,
    TranscriptRelabeled,
    TranscriptRevised,
    Word,
)
from assist.roles import RoleEvidence
from audio.codec import TARGET_RATE, AudioFormat, StreamDecoder
from audio.protocols.events import ProtocolFailure
from live.assist_worker import AssistItem, AssistWorker
from live.diarize import CallDiarizer, Part, RecentAudio, Relabel, Speakers, voice_prints
from live.hub import EventHub
from live.measures import measure_speakers, measure_webhooks, measure_writer
from live.metrics import Metrics
from live.recognition import Recognition
from live.recording import Recorder
from live.webhooks import WebhookSender
from models.asr import (
    LONGEST_STRETCH_S,
    Final,
    Partial,
    RevisedFinal,
    StreamingOptions,
    StreamingTranscriber,
)
from models.revise import assign, changed_text
from models.scheduler import OVERLOADED
from models.speaker import SpeakerModelError
from models.whisper import WordTiming
from store.calls import CallOwnership, CallStore, StoreWriter, normal_agent

log = logging.getLogger("callcue.session")


# Feedback a call keeps at most (a person clicks a few times a minute; a script was seen sending
# 20,000 in a quarter of a second, which grew memory and the store and pushed screens off)
MAX_FEEDBACK_PER_CALL = 500
ANALYTICS_INTERVAL = 1.0  # `call.analytics` at most once a second a call
CATEGORY_TICK = 1.0  # seconds between checks of the categories decided by time
# a call's finals (and revised finals) kept in memory, by call time: revisions and relabels
# look them up. A relabel reaches back 10 minutes of speech, a revision one stretch
# (CALLCUE_REVISE_SECONDS, at most 600 s when 0) and the time it may wait behind others: the
# session keeps this much beyond its revision stretch; what is older is in the store and on
# screens. (After the call ends nothing is let go. During a call of more than 10 minutes on a
# machine so busy that a stretch waits longer than this for revision, behind up to
# `RevisionOptions.max_pending_s` of audio, its revision is dropped when it comes and the
# live text stays, as for a skipped one.)
FINALS_KEPT_S = 1800.0
ENROL_SECONDS = 60.0  # of an agent's speech a two-channel call adds to their voice print


class FeedbackLimit(ValueError):
    """A call that has had all the feedback it keeps (`feedback_limit`)."""


class CallIdTaken(RuntimeError):
    """A call id the store holds that this credential may not resume (`call_id_taken`)."""


def resume_refusal(stored: CallOwnership, owner: str, window: float, now: float) -> str | None:
    """Why a stored call may not be resumed by `owner` (None: it may). Only the credential
    that started it may, and only within `window` seconds of its end; the answer reveals
    nothing of the call."""
    if stored.owner != owner:
        return "this call id is taken: start the call with another id"
    if stored.ended is not None and now - stored.ended > window:
        return (
            "this call id is taken: the call ended too long ago to resume "
            "(CALLCUE_RESUME_SECONDS); start the call with another id"
        )
    return None


class Peers(Protocol):
    """The other nodes of a multi-node service, as calls, screens and the server use them.
    `cluster.node.Cluster` is the implementation (live/ sits below cluster/: the service wires
    it in, `service.node`)."""

    node: str

    async def start(self) -> None: ...

    async def stop(self, grace: float = 5.0) -> None: ...

    def health(self) -> dict[str, Any]: ...

    async def claim(self, call_id: str) -> str | None:
        """None: the call may start here; else why not (it runs on another node)."""

    async def release(self, call_id: str) -> None:
        """A claimed call that did not start after all: out of the registry."""

    async def claim_nonce(self, nonce: str, until: float) -> bool:
        """Whether no node has accepted this AudioHook signature nonce yet."""

    async def live_calls(self) -> list[dict[str, Any]] | None:
        """Every node's live calls; None when the others cannot be reached."""

    async def follow(self, call_id: str) -> bool:
        """Make a call another node runs watchable in this node's hub."""

    async def forward_feedback(self, call_id: str, message: dict[str, Any]) -> str | None:
        """Hand a screen's feedback to the node that runs the call; None, or what is wrong."""


@dataclass(frozen=True, slots=True)
class CallLimits:
    """How many calls a node takes and how long each may run (the `CALLCUE_MAX_CALLS`...
    settings)."""

    max_calls: int = 200
    max_calls_per_key: int = 0  # 0: no per-credential limit
    max_call_seconds: float = 14_400.0
    resume_seconds: float = 600.0  # how long after its end a call may be resumed by its owner
    idle_seconds: float = 60.0  # a call with no audio this long is ended (`watch_idle`); 0: never


@dataclass
class Services:
    """What every call on this node shares: recognition, the hub, the assist worker, the
    store and its writer, diarization, webhooks; and the calls themselves (admission, idle
    calls, drain)."""

    recognition: Recognition
    hub: EventHub
    limits: CallLimits = field(default_factory=CallLimits)
    sessions: dict[str, CallSession] = field(default_factory=dict)
    warmup_seconds: float = 0.0
    metrics: Metrics = field(default_factory=Metrics)
    assist: AssistModels | None = None
    assist_worker: AssistWorker | None = None
    store: CallStore | None = None
    writer: StoreWriter | None = None
    recordings_dir: Path | None = None  # set: each channel's audio is kept as WAV
    # set: one node of several on Redis (`hub` is then the cluster's hub, which it observes)
    cluster: Peers | None = None
    _loop: asyncio.AbstractEventLoop | None = None  # where written events are released
    # ended calls whose revisions are still running (a resumed call id stops them)
    revising: dict[str, CallSession] = field(default_factory=dict)
    webhooks: WebhookSender | None = None  # set: deliveries to CALLCUE_WEBHOOKS are sent
    speakers: Speakers = field(default_factory=Speakers)

    def __post_init__(self) -> None:
        if self.store is not None and self.writer is None:
            self.writer = StoreWriter(self.store)
        if self.writer is not None:
            self.writer.on_loss = self._store_loss
            self.writer.on_written = self._written
        if self.assist is not None and self.assist_worker is None:
            self.assist_worker = AssistWorker(self.assist, self.metrics)
        m = self.metrics
        m.gauge("callcue_active_calls", "Calls in progress", lambda: len(self.sessions))
        m.gauge(
            "callcue_active_channels",
            "Channels in progress",
            lambda: sum(len(s.channels) for s in list(self.sessions.values())),
        )
        self.recognition.measure(m)
        measure_speakers(m, self.speakers)
        measure_writer(m, self.writer)
        if self.webhooks is not None:
            measure_webhooks(m, self.webhooks)

    def hold_until_written(self) -> bool:
        """Whether events go to screens only once stored (a store is configured); binds the
        writer's callbacks to the running loop."""
        if self.writer is None:
            return False
        # (the loop of the call being published: `callcue import` runs one loop a file)
        self._loop = asyncio.get_running_loop()
        return True

    def _written(self, events: list[Event]) -> None:
        """(writer thread) These events are stored: send them to screens."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        last: dict[str, int] = {}
        for event in events:
            last[event.call_id] = max(last.get(event.call_id, 0), event.seq)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._release, last)

    def _release(self, last: dict[str, int]) -> None:
        incomplete = self.writer.incomplete if self.writer is not None else set()
        for call_id, seq in last.items():
            self.hub.release_written(call_id, seq, complete=call_id not in incomplete)
        if incomplete and self.writer is not None:  # marks of calls memory has let go of
            self.writer.forget_incomplete(
                lambda call_id: call_id not in self.sessions and self.hub.feed(call_id) is None
            )

    def _store_loss(self, call_id: str) -> None:
        """The store's buffer is full: tell the call's screens its events are not kept."""
        if call_id in self.sessions:
            self.hub.publish(
                ErrorEvent(
                    call_id=call_id,
                    code="store_unavailable",
                    message="the call store has been unreachable for too long: this call's "
                    "events from here on are not stored (screens still get them)",
                )
            )

    def admit(self, credential: str = "open") -> ProtocolFailure | None:
        """None if a new call can start; else why not (code `capacity`, close code 1013),
        counted as refused by its reason. `credential`: the name of the key the call came
        with (per-key limit)."""
        reason, message = self._refusal(credential)
        if not reason:
            return None
        self.metrics.refused.inc(1, reason)
        return ProtocolFailure("capacity", message, CloseCode.TRY_AGAIN_LATER)

    def _refusal(self, credential: str) -> tuple[str, str]:
        """(reason, message) of a refusal, or ("", "")."""
        if self.limits.max_calls_per_key and credential != "open":
            held = sum(1 for s in list(self.sessions.values()) if s.credential == credential)
            if held >= self.limits.max_calls_per_key:
                return "max_calls_per_key", (
                    f"the credential {credential!r} already holds {held} calls, its limit "
                    "(CALLCUE_MAX_CALLS_PER_KEY); end one or try again later"
                )
        if len(self.sessions) >= self.limits.max_calls:
            return "max_calls", (
                f"this server is at its limit of {self.limits.max_calls} concurrent calls "
                "(CALLCUE_MAX_CALLS); try again later"
            )
        if self.writer is not None and self.writer.full:
            return "store_unavailable", (
                "the call store has been unreachable for too long to keep more calls; new "
                "calls are refused until it is back"
            )
        if self.recognition.scheduler.pressure() == OVERLOADED:
            return "overloaded", (
                "this server cannot keep up with the calls it has (finals are "
                "waiting); new calls are refused until it catches up"
            )
        return "", ""

    async def watch_idle(self) -> None:
        """End calls that have received no audio for `idle_seconds` (reason `idle`): a
        client that started a call and went quiet would hold its slot for ever (runs for the
        server's life)."""
        if self.limits.idle_seconds <= 0:
            return
        while True:
            await asyncio.sleep(min(5.0, max(0.25, self.limits.idle_seconds / 8)))
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if session.idle_for(now) > self.limits.idle_seconds:
                    session.end_by_limit(
                        "idle",
                        "call_idle",
                        "idle",
                        f"no audio for {self.limits.idle_seconds:.0f} s (CALLCUE_IDLE_SECONDS): "
                        "the call was ended; its transcript is kept",
                    )

    async def drain(self, seconds: float, forced: Callable[[], bool] = lambda: False) -> int:
        """End every call in progress with reason "shutdown" (finals first, then
        `call.ended`; each client is told); the number still running after `seconds`."""
        calls = list(self.sessions.values())
        ending = [s.end_by_server("shutdown") for s in calls]
        deadline = time.monotonic() + seconds
        pending = set(ending)
        while pending and not forced() and time.monotonic() < deadline:
            _, pending = await asyncio.wait(pending, timeout=0.2)
        # screens of those calls close by themselves once they have sent `call.ended`
        grace = min(deadline, time.monotonic() + 3.0)
        while not forced() and time.monotonic() < grace:
            feeds = [self.hub.feed(s.call_id) for s in calls]
            if not any(feed is not None and feed.subscribers for feed in feeds):
                break
            await asyncio.sleep(0.05)
        return len(pending)

    def close(self) -> None:
        self.speakers.close()
        if self.webhooks is not None:
            self.webhooks.close()
        self.recognition.close()
        if self.assist_worker is not None:
            self.assist_worker.close()
        if self.writer is not None:
            self.writer.close()  # waits a few seconds for anything buffered
        if self.store is not None:
            self.store.close()


def call_vocabulary(
    given: tuple[str, ...],
    customer: Customer | None,
    metadata: Mapping[str, Any],
    playbook: tuple[str, ...],
) -> tuple[str, ...]:
    """What Whisper is biased towards on a call, most specific first (the transcriber keeps
    as many as its token budget holds): the call's own `vocabulary`, the customer's and the
    agent's names, the playbook's `vocabulary`. Repeats (any case) are dropped."""
    names: list[str] = []
    if customer is not None:
        names += [customer.name, customer.preferred_name]
    for key in ("agent_name", "customer_name"):
        value = metadata.get(key)
        if isinstance(value, str) and 0 < len(value) <= 64:
            names.append(value)
    out: list[str] = []
    for term in (*given, *names, *playbook):
        term = " ".join(term.split())
        if term and term.lower() not in (t.lower() for t in out):
            out.append(term)
    return tuple(out)


class CallSession:
    """One call from `start` to `finish`. Audio in; transcript events out through the hub."""

    def __init__(
        self,
        services: Services,
        call_id: str,
        fmt: AudioFormat,
        channels: tuple[str, ...],
        metadata: dict[str, Any] | None = None,
        source: str = "native",
        streaming: StreamingOptions | None = None,
        credential: str = "open",
        vocabulary: tuple[str, ...] = (),
        language: str = "en",
        diarize: bool = False,
    ) -> None:
        """`diarize`: `fmt` has one channel carrying both parties, told apart by voice into
        the `channels` agent and customer (`live.diarize`)."""
        self.services = services
        self.call_id = call_id
        self.credential = credential  # name of the ingest key/token (per-key limits)
        self.feedback_count = 0
        # who may resume this call id: a digest of the credential (the store keeps it; a
        # credential's name can carry the tail of an admin token)
        self.owner = hashlib.sha256(credential.encode()).hexdigest()[:32]
        # set by the connection: called (on the loop) when the server ends the call itself
        # (max duration, shutdown) so the client's connection is closed with the reason
        self.on_server_end: Callable[[str, str], Awaitable[None]] | None = None
        self.end_reason = ""
        self.format = fmt
        self.diarize = diarize
        if diarize:
            if fmt.channels != 1:
                raise ValueError("diarize needs one-channel audio (both parties mixed)")
            channels = ("agent", "customer")
        self.channels = channels
        self.diarizer: CallDiarizer | None = None  # set by `start` when diarizing
        # the agent's voice print, kept from this two-channel call (CALLCUE_VOICE_PRINTS)
        self.agent_key = agent_key(metadata or {})
        self._enrolling: RecentAudio | None = None
        self._enrolled: list[Any] = []  # prints of the agent's finals
        self._enrolled_seconds = 0.0  # of the agent's finals enrolled
        self._enrol_tasks: list[asyncio.Future[None]] = []
        self._diarizing: asyncio.Queue[Final | None] | None = None
        # a diarized call's revision: each mixed utterance's published parts (final seq,
        # start, end, live text), and a revision that came before its utterance's parts
        self._parts: dict[int, list[tuple[int, float, float, str]]] = {}
        self._early_revisions: dict[int, RevisedFinal] = {}
        self._diarize_task: asyncio.Task[None] | None = None
        self.metadata = metadata or {}
        self.source = source
        self.decoder = StreamDecoder(fmt)
        # platforms that send each party separately (Twilio) get one mono decoder a track
        self.track_decoders: dict[int, StreamDecoder] = {}
        self.started_at = time.time()
        self.last_audio = time.monotonic()  # when audio last arrived (the idle check)
        self.paused = False  # the platform paused the stream (AudioHook): not idle
        self.finished = False
        self._finishing: asyncio.Task[None] | None = None
        # the call's latest finals (FINALS_KEPT_S of call time; every one with `keep_finals`,
        # as `callcue transcribe` needs them) and counts of all of them
        self.keep_finals = False
        self.finals: deque[TranscriptFinal] = deque()
        self.finals_published = 0
        # a diarized call's entities per final seq, read again if its line is relabeled
        self._final_entities: dict[int, list[Entity]] = {}
        self.revised: dict[int, TranscriptRevised] = {}  # of the kept finals, by final seq
        self.finals_revised = 0
        self._revising: asyncio.Future[None] | None = None
        self._revisions_stopped = False
        self.hub_feed: Any = None  # the hub's feed of this call (set by `start`)
        self.recorder: Recorder | None = None
        self.assist_state: CallAssist | None = None
        self.assist_pending = 0
        self.assist_idle = asyncio.Event()
        self.assist_idle.set()
        self.analytics = CallAnalytics(channels)
        self.last_heard = 0.0  # the call time at which the latest partial or final ended
        self._analytics_sent = 0.0  # monotonic time of the last `call.analytics`
        self._analytics_timer: asyncio.TimerHandle | None = None
        self._category_timer: asyncio.TimerHandle | None = None
        self._figures: dict[str, Any] | None = None  # of the last `call.analytics`
        if services.assist is not None:
            agent = self.metadata.get("agent_name") or self.metadata.get("agent") or ""
            self.assist_state = CallAssist(
                services.assist,
                call_id,
                customer=services.assist.lookup(self.metadata),
                agent_name=str(agent) if isinstance(agent, str) else "",
            )
        options = streaming or services.recognition.streaming
        if diarize:
            # one mixed channel: the slow rise before a turn may be the other voice's tail,
            # and the voice prints then put first words on the wrong party (AWS and Genesys
            # mixed calls, words on the right party: 0.999 / 1.000 with pad_ms before the
            # speech, 0.993 / 0.987 with the 500 ms lead; README "Mono calls")
            options = replace(options, speech_lead_ms=min(options.speech_lead_ms, options.pad_ms))
        self.language = language  # as asked for; each channel's finals say what was heard
        self.vocabulary = call_vocabulary(
            vocabulary,
            self.assist_state.customer if self.assist_state is not None else None,
            self.metadata,
            services.assist.playbook.vocabulary if services.assist is not None else (),
        )
        # a diarized call is recognized as its one mixed channel, split by voice afterwards
        heard = ("mixed",) if diarize else channels
        on_partial = self._on_mixed_partial if diarize else self._on_partial
        on_final = self._on_mixed_final if diarize else self._on_final
        self.transcribers = [
            StreamingTranscriber(
                key=f"{call_id}/{channel}",
                engine=services.recognition.engine,
                scheduler=services.recognition.scheduler,
                vad=services.recognition.segmenter(),
                executor=services.recognition.executor,
                on_partial=functools.partial(on_partial, channel),
                on_final=functools.partial(on_final, channel),
                on_error=functools.partial(self._on_recognition_error, channel),
                options=options,
                vocabulary=self.vocabulary,
                language=language,
                # (a diarized call's mixed utterances are revised, then split onto their
                # parts by `_on_mixed_revised`)
                reviser=services.recognition.reviser,
                on_revised=functools.partial(self._on_revised, channel),
            )
            for channel in heard
        ]

    @property
    def audio_seconds(self) -> float:
        samples = max(
            [self.decoder.input_samples, *(d.input_samples for d in self.track_decoders.values())]
        )
        return samples / self.format.sample_rate

    def publish(self, event: Event) -> Event:
        """Stamp an event and queue it for the store; screens get it once the store has
        written it (or after `HOLD_SECONDS` if the store is slow): the event loop never waits
        on the database, and a screen never sees what a crash would lose."""
        services = self.services
        if isinstance(event, SentimentEvent) and not event.unavailable:
            self.analytics.add_sentiment(event.channel, event.utterance, event.score)
            self._analytics_changed()
        if not services.hold_until_written():
            return services.hub.publish(event, self.hub_feed)
        stamped = services.hub.publish(event, self.hub_feed, held=True)
        assert services.writer is not None
        services.writer.write(stamped)
        return stamped

    async def start(self) -> None:
        """Open the call. Raises CallActiveError (streaming elsewhere) or CallIdTaken (a stored
        call of another credential, or one that ended too long ago to resume). The store is
        read in a worker thread: the event loop never waits on the database."""
        store = self.services.store
        base = 0
        if store is not None:
            try:
                stored = await asyncio.to_thread(store.ownership, self.call_id)
            except Exception as exc:  # the store is down: the call goes on, its events wait
                log.warning("cannot read the call %s from the store: %s", self.call_id, exc)
            else:
                if stored is not None:
                    refusal = resume_refusal(
                        stored, self.owner, self.services.limits.resume_seconds, time.time()
                    )
                    if refusal is not None:
                        raise CallIdTaken(refusal)
                    base = stored.last_seq
        earlier = self.services.revising.pop(self.call_id, None)
        if earlier is not None:  # resumed: the rest of the old session's revisions would
            earlier.stop_revisions()  # interleave seqs with this one; its live text stays
        if self.diarize:
            self.diarizer = CallDiarizer(
                await self.services.speakers.load(),
                self.services.speakers.executor,
                evidence=self._role_evidence(),
                on_seconds=self.services.speakers.spent,
                agent_voice=await self._agent_voice(),
                hangover_s=self.services.recognition.vad_options.min_silence_ms / 1000,
            )
            self._diarizing = asyncio.Queue()
        elif (
            self.services.speakers.keep_prints
            and store is not None
            and self.agent_key
            and "agent" in self.channels
        ):
            try:
                await self.services.speakers.load()
            except SpeakerModelError as exc:  # the voice print is optional: the call goes on
                log.error("no voice print for %s: %s", self.agent_key, exc)
            else:
                self._enrolling = RecentAudio()
        self.hub_feed = self.services.hub.open(self.call_id, base=base)
        if self._diarizing is not None:
            self._diarize_task = asyncio.ensure_future(self._diarize_finals())
        self.services.sessions[self.call_id] = self
        self.services.metrics.calls.inc(1, self.source)
        self.publish(
            CallStarted(
                call_id=self.call_id,
                owner=self.owner,
                channels=self.channels,
                source=self.source,
                encoding=self.format.encoding,
                sample_rate=self.format.sample_rate,
                metadata=self.metadata,
                customer=self.assist_state.customer_card() if self.assist_state else None,
                vocabulary=self.vocabulary,
                language=self.language,
            )
        )
        if self.assist_state is not None and self.assist_state.checklist:
            self.publish(self.assist_state.checklist_event())
        if self.assist_state is not None and self.assist_state.categories.timed:
            self._category_timer = asyncio.get_running_loop().call_later(
                CATEGORY_TICK, self._categories_tick
            )
        if self.services.recordings_dir is not None and store is not None:
            self.recorder = Recorder(
                self.services.recordings_dir,
                self.call_id,
                ("mixed",) if self.diarize else self.channels,
            )
            await asyncio.to_thread(self._index_recordings, self.recorder.paths)

    def _index_recordings(self, paths: dict[str, Path]) -> None:
        """(worker thread) Index the call's WAV files once the call's row is stored."""
        store, writer = self.services.store, self.services.writer
        assert store is not None
        if writer is not None:
            writer.wait_written(writer.queued, 5.0)  # `call.started` makes the call's row
        for channel, path in paths.items():
            try:
                store.add_recording(self.call_id, channel, path, TARGET_RATE)
            except Exception as exc:  # the WAV is still written; only its index is missing
                log.error("cannot index the recording %s in the store: %s", path, exc)

    def live_summary(self) -> dict[str, Any]:
        """What the wallboard shows for this call."""
        state = self.assist_state
        figures = self._figures or {"talk_seconds": {}, "overtalk_seconds": 0.0}
        customer = state.customer if state is not None else None
        agent = self.metadata.get("agent_name") or self.metadata.get("agent") or ""
        return {
            "call_id": self.call_id,
            "source": self.source,
            "channels": list(self.channels),
            "started_at": self.started_at,
            "duration": round(self.audio_seconds, 1),
            "agent": str(agent),
            "customer": customer.name if customer is not None else "",
            "tier": customer.tier if customer is not None else "",
            "intent": state.intent if state is not None else None,
            "intent_label": state._label(state.intent) if state is not None else "",
            "sentiment": state.trend.get("customer") if state is not None else None,
            "alerts": state.alerts if state is not None else 0,
            "stage": state.stage if state is not None else "",
            "metadata": self.metadata,
            "talk_seconds": figures["talk_seconds"],
            "overtalk_seconds": figures["overtalk_seconds"],
            "current_silence": round(self.current_silence(), 1),
        }

    def assist_queued(self) -> None:
        self.assist_pending += 1
        self.assist_idle.clear()

    def assist_done(self) -> None:
        self.assist_pending -= 1
        if self.assist_pending <= 0:
            self.assist_pending = 0
            self.assist_idle.set()

    def feedback(self, message: dict[str, Any]) -> Event:
        """Record feedback from a screen; ValueError names what is wrong with it,
        FeedbackLimit that the call has had all the feedback it may."""
        if self.assist_state is None:
            raise ValueError("assist is off on this server (CALLCUE_ASSIST=false)")
        if self.feedback_count >= MAX_FEEDBACK_PER_CALL:
            self.services.metrics.limited.inc(1, "feedback")
            raise FeedbackLimit(
                f"this call has had {MAX_FEEDBACK_PER_CALL} feedback messages, the most one "
                "call keeps; later ones are not stored"
            )
        event = self.assist_state.on_feedback(message)
        self.feedback_count += 1
        self.services.metrics.feedback.inc(1, event.kind, event.action)
        return self.publish(event)

    async def push(self, data: bytes) -> None:
        """Decode one frame and hand each channel its samples (returns once VAD has run).
        Audio that arrives once the call is ending is ignored."""
        if self._finishing is not None:
            return
        self.last_audio = time.monotonic()
        await self._push(self.decoder.decode(data))
        self._check_duration()

    def _check_duration(self) -> None:
        if self._finishing is None and self.audio_seconds >= self.services.limits.max_call_seconds:
            limit = self.services.limits.max_call_seconds
            self.end_by_limit(
                "call_duration",
                "call_too_long",
                "max_duration",
                f"the call reached the longest call allowed ({limit:.0f} s of audio, "
                "CALLCUE_MAX_CALL_SECONDS) and was ended; its transcript is kept",
            )

    def end_by_limit(self, limit: str, code: str, reason: str, message: str) -> None:
        """A limit ends the call: counted (`callcue_limit_rejections_total{limit}`), screens
        told (`error` `code`), then ended by the server with `reason`."""
        self.services.metrics.limited.inc(1, limit)
        self.publish(ErrorEvent(call_id=self.call_id, code=code, message=message))
        self.end_by_server(reason)

    def idle_for(self, now: float) -> float:
        """Seconds since audio last arrived (0 while paused or ending)."""
        if self.paused or self._finishing is not None:
            return 0.0
        return now - self.last_audio

    def pause(self, paused: bool) -> None:
        """The platform paused (or resumed) the stream: a pause is not idleness."""
        self.paused = paused
        self.last_audio = time.monotonic()

    def end_by_server(self, reason: str) -> asyncio.Future[None]:
        """End the call from this side (duration limit, shutdown): finals first, then
        `call.ended`, then the client's connection is closed with the reason."""

        async def run() -> None:
            await self.finish(reason)
            if self.on_server_end is not None:
                await self.on_server_end(reason, f"{reason}: call ended by the server")

        return asyncio.ensure_future(run())

    async def push_track(self, index: int, data: bytes) -> None:
        """Decode one frame of a single channel (sent on its own, not interleaved)."""
        decoder = self.track_decoders.get(index)
        if decoder is None:
            mono = AudioFormat(self.format.encoding, self.format.sample_rate, 1)
            decoder = self.track_decoders[index] = StreamDecoder(mono)
        if self._finishing is not None:
            return
        self.last_audio = time.monotonic()
        audio = decoder.decode(data)
        if audio.shape[1] and self.recorder is not None:
            self.recorder.write_channel(index, audio[0])
        if audio.shape[1]:
            self.services.recognition.audio_seconds_in += audio.shape[1] / TARGET_RATE
            if self.diarizer is not None:
                self.diarizer.push(audio[0])
            if self._enrolling is not None and self.channels[index] == "agent":
                self._enrolling.push(audio[0])
            await self.transcribers[index].push(audio[0])
            if self.diarizer is not None:
                self.diarizer.heard(self.transcribers[index].utterance_start)
            self._check_duration()

    async def settle(self) -> None:
        """Wait for every final submitted so far (batch transcription, not live calls)."""
        await asyncio.gather(*(t.settle() for t in self.transcribers))

    async def _push(self, audio: Any) -> None:
        if audio.shape[1] == 0:
            return
        if self.recorder is not None:
            self.recorder.write(audio)
        self.services.recognition.audio_seconds_in += audio.shape[1] * audio.shape[0] / TARGET_RATE
        if self.diarizer is not None:
            self.diarizer.push(audio[0])
        if self._enrolling is not None:
            self._enrolling.push(audio[self.channels.index("agent")])
        await asyncio.gather(*(t.push(audio[i]) for i, t in enumerate(self.transcribers)))
        if self.diarizer is not None:  # (its voice prints of speech, made as it is heard)
            self.diarizer.heard(self.transcribers[0].utterance_start)

    async def finish(self, reason: str = "stop") -> None:
        """Flush every pending final, then emit `call.ended`. Safe to call more than once."""
        if self._finishing is None:
            self._finishing = asyncio.ensure_future(self._finish(reason))
        await asyncio.shield(self._finishing)

    async def _finish(self, reason: str) -> None:
        self.end_reason = reason
        try:
            await self._push(self.decoder.flush())
            for index, decoder in self.track_decoders.items():
                tail = decoder.flush()
                if tail.shape[1]:
                    if self.diarizer is not None:
                        self.diarizer.push(tail[0])
                    await self.transcribers[index].push(tail[0])
        except Exception:  # a broken tail must not cost the finals already decoded
            log.exception("flushing the audio of %s failed", self.call_id)
        await asyncio.gather(*(t.close() for t in self.transcribers), return_exceptions=True)
        if self._diarize_task is not None and self._diarizing is not None:
            self._diarizing.put_nowait(None)  # every final is queued: split the rest
            try:
                await self._diarize_task
            except BaseException:  # (each final's failure is handled inside; not this)
                log.exception("diarizing the finals of %s stopped", self.call_id)
        self.finished = True
        if self._enrol_tasks:
            await asyncio.gather(*self._enrol_tasks, return_exceptions=True)
        if self._enrolled and self.services.store is not None:
            await self._keep_voice_print(self.services.store)
        if self.assist_state is not None:
            try:  # the last finals' suggestions and the checklist result come before call.ended
                await asyncio.wait_for(self.assist_idle.wait(), timeout=10.0)
            except TimeoutError:
                log.warning("assist for %s did not finish in 10 s", self.call_id)
            if self.assist_state.checklist:
                self.publish(self.assist_state.checklist_event(final=True))
        if self._category_timer is not None:
            self._category_timer.cancel()
            self._category_timer = None
        figures = self.analytics.summary(self.audio_seconds)  # once: the call's last figures
        if self.assist_state is not None:
            analytics = self.analytics  # (its longest silence and overtalk, as of `figures`)
            for event in self.assist_state.on_end(
                self.audio_seconds, analytics.longest_silence, analytics.overtalk
            ):
                self.publish(event)
            scored = self.assist_state.scored(figures)
            if scored is not None:
                self.publish(scored)
            wrapup = self.assist_state.wrapup()
            if wrapup is not None:
                self.publish(wrapup)
        if self._analytics_timer is not None:
            self._analytics_timer.cancel()
            self._analytics_timer = None
        self._publish_analytics(figures)
        self.publish(
            CallEnded(call_id=self.call_id, reason=reason, duration=round(self.audio_seconds, 3))
        )
        self.services.hub.end(self.call_id)
        writer = self.services.writer
        if writer is not None:  # the client is told the call ended once the store has it all
            await asyncio.to_thread(writer.wait_written, writer.queued, 5.0)
        self.services.sessions.pop(self.call_id, None)
        if self.recorder is not None:
            self.recorder.close()
        log.info(
            "call %s ended (%s) after %.1fs of audio", self.call_id, reason, self.audio_seconds
        )
        if self.services.recognition.reviser is not None:
            self.services.revising[self.call_id] = self
            self._revising = asyncio.ensure_future(self._await_revisions())

    async def _await_revisions(self) -> None:
        try:
            await asyncio.gather(*(t.revised() for t in self.transcribers))
            if not self._revisions_stopped:
                self.publish(
                    CallRevised(
                        call_id=self.call_id,
                        revised=self.finals_revised,
                        finals=self.finals_published,
                        skipped=sum(t.revisions_skipped for t in self.transcribers),
                    )
                )
        finally:
            if self.services.revising.get(self.call_id) is self:
                del self.services.revising[self.call_id]

    async def revisions_done(self) -> None:
        """Wait until the end-of-call revisions are published (after `finish`)."""
        if self._revising is not None:
            await asyncio.shield(self._revising)

    def stop_revisions(self) -> None:
        """Publish no more revisions (the call id was resumed by a new session)."""
        self._revisions_stopped = True

    def _on_revised(self, channel: str, revised: RevisedFinal) -> None:
        if self._revisions_stopped:
            return
        if self.diarize:
            self._on_mixed_revised(revised)
            return
        final = next(
            (
                f
                for f in reversed(self.finals)
                if f.channel == channel and f.utterance == revised.utterance
            ),
            None,
        )
        if final is not None:
            self._publish_revision(final, revised.text, revised.words, revised.language)

    def _on_mixed_revised(self, revised: RevisedFinal) -> None:
        """A diarized call's mixed utterance revised: its words go to the finals it was split
        into (by text where the two agree, else by time, as a channel's stretch goes to its
        utterances), and each part whose text changed is revised under its party now."""
        parts = self._parts.pop(revised.utterance, None)
        if parts is None:  # its parts are not published yet: `_keep_parts` applies it
            self._early_revisions[revised.utterance] = revised
            return
        heard = assign(revised.words, parts)
        wanted = {seq for seq, _, _, _ in parts}
        finals = {}
        for f in reversed(self.finals):  # (the parts are among the latest finals)
            if f.seq in wanted:
                finals[f.seq] = f
                if len(finals) == len(wanted):
                    break
        for seq, _, _, live in parts:
            words = heard.get(seq) or []
            text = changed_text(words, live)
            final = finals.get(seq)
            if final is not None and text is not None:
                self._publish_revision(final, text, tuple(words), revised.language)

    def _keep_parts(self, utterance: int, parts: list[tuple[int, float, float, str]]) -> None:
        """Keep the finals a mixed utterance was split into, for its revision (a revision
        that came first is applied now). What no revision will reach any more is let go:
        utterances are split in order, and a revision covers what ended before it."""
        if self.services.recognition.reviser is None or self._revisions_stopped:
            return
        for older in [u for u in self._early_revisions if u < utterance]:
            del self._early_revisions[older]  # (its utterance's split failed)
        if not parts:
            return
        horizon = self._kept_from(parts[-1][2])
        for older in [u for u, p in self._parts.items() if p[-1][2] < horizon]:
            del self._parts[older]  # (not revised: the live text stays)
        self._parts[utterance] = parts
        early = self._early_revisions.pop(utterance, None)
        if early is not None:
            self._on_mixed_revised(early)

    def _publish_revision(
        self,
        final: TranscriptFinal,
        raw_text: str,
        raw_words: tuple[WordTiming, ...],
        language: str,
    ) -> None:
        # what the live text masked, the revised one masks
        text, words, confidence, _ = self._masked(raw_text, raw_words)
        if text == final.text:
            return
        event = self.publish(
            TranscriptRevised(
                call_id=self.call_id,
                channel=final.channel,
                utterance=final.utterance,
                final_seq=final.seq,
                start=final.start,
                end=final.end,
                text=text,
                live_text=final.text,
                words=words,
                confidence=confidence,
                language=language,
            )
        )
        assert isinstance(event, TranscriptRevised)
        if final.seq not in self.revised:
            self.finals_revised += 1
        self.revised[final.seq] = event
        analytics = self.analytics
        analytics.add_final(final.channel, final.utterance, final.start, final.end, words, text)
        if self.services.recognition.reviser is not None:
            self.services.recognition.reviser.stats.changed += 1

    def current_silence(self) -> float:
        """Seconds of call audio since anyone was last heard (partials count)."""
        return max(0.0, self.audio_seconds - self.last_heard)

    def _analytics_changed(self) -> None:
        """Send `call.analytics` now, or once a second has passed since the last one."""
        if self.finished or self._analytics_timer is not None:
            return
        wait = self._analytics_sent + ANALYTICS_INTERVAL - time.monotonic()
        if wait <= 0:
            self._publish_analytics()
        else:
            self._analytics_timer = asyncio.get_running_loop().call_later(
                wait, self._on_analytics_timer
            )

    def _categories_tick(self) -> None:
        """Once a second while the call runs: categories decided by time (a silence going on,
        overtalk, what was not said in the first N s)."""
        self._category_timer = None
        gone = self.services.sessions.get(self.call_id) is not self  # (start failed)
        if self.finished or self.assist_state is None or gone:
            return
        # the figures as of the last `call.analytics` (they change with finals only), and the
        # silence going on now: no recomputation every second
        now = self.audio_seconds
        analytics = self.analytics
        silence = analytics.longest_silence
        since = max(analytics.talk_end, self.last_heard)
        if now - since > silence[1] - silence[0]:
            silence = (since, now)
        for event in self.assist_state.on_time(now, silence, analytics.overtalk):
            self.publish(event)
        self._category_timer = asyncio.get_running_loop().call_later(
            CATEGORY_TICK, self._categories_tick
        )

    def _on_analytics_timer(self) -> None:
        self._analytics_timer = None
        if not self.finished:
            self._publish_analytics()

    def _publish_analytics(self, figures: dict[str, Any] | None = None) -> None:
        self._analytics_sent = time.monotonic()
        if figures is None:
            figures = self.analytics.summary(self.audio_seconds)
        self._figures = figures
        self.publish(
            CallAnalyticsEvent(
                call_id=self.call_id,
                **figures,
                current_silence_seconds=round(self.current_silence(), 2),
            )
        )

    def _on_partial(self, channel: str, partial: Partial) -> None:
        if self.finished:
            return
        self.services.metrics.latency.observe(time.monotonic() - partial.received_at, "partial")
        self.last_heard = max(self.last_heard, partial.end)
        text, stable = partial.text, partial.stable
        if self.assist_state is not None:  # a card number must not flash up while spoken
            text = self.assist_state.scan(text)[0]
            stable = self.assist_state.scan(stable)[0] if stable else stable
        self.publish(
            TranscriptPartial(
                call_id=self.call_id,
                channel=channel,
                utterance=partial.utterance,
                start=partial.start,
                end=partial.end,
                text=text,
                stable=stable,
            )
        )

    def _withdraw_partial(self, channel: str, utterance: int, start: float, end: float) -> None:
        """An empty partial: screens take the utterance's live line away."""
        self.publish(
            TranscriptPartial(
                call_id=self.call_id,
                channel=channel,
                utterance=utterance,
                start=start,
                end=end,
                text="",
                stable="",
            )
        )

    def _on_recognition_error(
        self, channel: str, kind: str, utterance: int, exc: BaseException
    ) -> None:
        self.services.metrics.recognition_errors.inc(1, kind)
        if kind != "final":  # a failed partial is replaced by the next one or the final
            return
        self.publish(
            ErrorEvent(
                call_id=self.call_id,
                code="recognition_failed",
                message=f"utterance {utterance} on the {channel} channel could not be "
                f"transcribed ({type(exc).__name__}); the call goes on"
                if self.diarizer is None
                else f"utterance {utterance} of the call could not be transcribed "
                f"({type(exc).__name__}); the call goes on",
            )
        )
        diarizer = self.diarizer
        if diarizer is None:
            self._withdraw_partial(channel, utterance, 0.0, 0.0)  # a partial of it may be shown
            return
        shown = diarizer.shown_id(utterance)  # (on a diarized call, under its party's line)
        if shown is not None:
            self._withdraw_partial(diarizer.provisional_role(utterance), shown, 0.0, 0.0)
        diarizer.forget(utterance, done=True)

    def _masked(
        self, said: str, timed: tuple[WordTiming, ...]
    ) -> tuple[str, tuple[Word, ...], float, list[Entity]]:
        """`said` and its timed words as screens may see them (PII masked), their mean
        probability, and the entities found in it."""
        words = tuple(Word(w.word, w.start, w.end, w.probability) for w in timed)
        confidence = round(sum(w.probability for w in words) / len(words), 4) if words else 0.0
        if self.assist_state is None:
            return said, words, confidence, []
        text, entities = self.assist_state.scan(said)
        if text != said:
            words = mask_words(words, said, text)
        return text, words, confidence, entities

    def _on_final(self, channel: str, final: Final) -> None:
        if not final.text:  # nothing was said after all
            self._withdraw_partial(channel, final.utterance, final.start, final.end)
            return
        self.services.metrics.latency.observe(time.monotonic() - final.received_at, "final")
        text, words, confidence, entities = self._masked(final.text, final.words)
        event = self.publish(
            TranscriptFinal(
                call_id=self.call_id,
                channel=channel,
                utterance=final.utterance,
                start=final.start,
                end=final.end,
                text=text,
                words=words,
                confidence=confidence,
                language=final.language,
            )
        )
        assert isinstance(event, TranscriptFinal)
        self._keep_final(event)
        if self.diarize and entities:
            self._final_entities[event.seq] = entities
        if self._enrolling is not None and channel == "agent":
            self._enrol_tasks = [t for t in self._enrol_tasks if not t.done()]
            self._enrol_tasks.append(asyncio.ensure_future(self._enrol(final.start, final.end)))
        self.last_heard = max(self.last_heard, final.end)
        self.analytics.add_final(channel, final.utterance, final.start, final.end, words, text)
        self._analytics_changed()
        worker = self.services.assist_worker
        if worker is not None and self.assist_state is not None:
            worker.submit(
                AssistItem(
                    self,
                    channel,
                    final.utterance,
                    text,
                    final.end,
                    entities,
                    time.monotonic(),
                    final.language,
                    final.start,
                )
            )

    # -- a diarized call: one mixed channel, split by voice into agent and customer ---------

    def _role_evidence(self) -> RoleEvidence:
        """What tells the agent's voice: built-in phrases, the playbook checklist's keywords
        (what an agent says), and the agent's name from the metadata."""
        phrases: list[str] = []
        if self.services.assist is not None:
            for item in self.services.assist.playbook.checklist:
                phrases += item.keywords
        name = self.metadata.get("agent_name")
        return RoleEvidence.for_call(phrases, name if isinstance(name, str) else "")

    async def _agent_voice(self) -> Any:
        """The agent's kept voice print (normalized), if voice prints are on and one is
        kept; read in a thread."""
        store = self.services.store
        if not self.services.speakers.keep_prints or store is None or not self.agent_key:
            return None
        try:
            kept = await asyncio.to_thread(store.voice_print, self.agent_key)
        except Exception as exc:  # the store is down: the call goes on without it
            log.warning("cannot read the voice print of %s: %s", self.agent_key, exc)
            return None
        if kept is None:
            return None
        vector = np.asarray(kept[0], dtype=np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-9)

    async def _enrol(self, start: float, end: float) -> None:
        """Prints of one of the agent's finals, for their voice print (at most
        `ENROL_SECONDS` of speech a call)."""
        enrolling = self._enrolling
        if enrolling is None:  # (enough heard already)
            return
        if end - start < 1.0:
            enrolling.release(start)
            return
        self._enrolled_seconds += end - start
        if self._enrolled_seconds >= ENROL_SECONDS:  # this one is the last: stop keeping audio
            self._enrolling = None
        audio = enrolling.between(start, end)
        enrolling.release(start)  # (the agent's finals come in order)
        encoder = await self.services.speakers.load()
        loop = asyncio.get_running_loop()
        prints, seconds = await loop.run_in_executor(
            self.services.speakers.executor, voice_prints, encoder, audio, start
        )
        self.services.speakers.spent(seconds)
        self._enrolled.extend(prints)

    async def _keep_voice_print(self, store: CallStore) -> None:
        total = np.sum([p.vector for p in self._enrolled], axis=0)
        try:
            await asyncio.to_thread(
                store.add_voice_print,
                self.agent_key,
                self.call_id,
                total.tolist(),
                len(self._enrolled),
            )
        except Exception as exc:
            log.warning("cannot keep the voice print of %s: %s", self.agent_key, exc)

    def _on_mixed_partial(self, _channel: str, partial: Partial) -> None:
        diarizer = self.diarizer
        if diarizer is None or diarizer.is_late(partial.utterance):
            return
        role = diarizer.provisional_role(partial.utterance)
        self._on_partial(role, replace(partial, utterance=diarizer.partial_id(partial.utterance)))

    def _on_mixed_final(self, _channel: str, final: Final) -> None:
        if self._diarizing is not None:
            self._diarizing.put_nowait(final)

    async def _diarize_finals(self) -> None:
        """Split each final of the mixed channel by voice, in order, and publish the parts."""
        assert self._diarizing is not None and self.diarizer is not None
        diarizer = self.diarizer
        while (final := await self._diarizing.get()) is not None:
            try:
                await self._diarize_final(diarizer, final)
            except Exception:  # never the rest of the call's finals: log, go on
                log.exception("diarizing utterance %d of %s failed", final.utterance, self.call_id)

    async def _diarize_final(self, diarizer: CallDiarizer, final: Final) -> None:
        shown_id = diarizer.shown_id(final.utterance)
        shown = diarizer.provisional_role(final.utterance) if shown_id is not None else ""
        if not final.text:  # nothing was said after all
            diarizer.forget(final.utterance, done=True)
            if shown_id is not None:
                self._withdraw_partial(shown, shown_id, final.start, final.end)
            return
        try:
            parts = await diarizer.split(
                final.utterance, final.start, final.end, final.text, final.words
            )
        except Exception:  # its prints failed: the final is kept, as the last speaker's
            log.exception("voice prints of %s utterance %d failed", self.call_id, final.utterance)
            role = shown or next((p.role for p in reversed(diarizer.parts) if p.role), "agent")
            fallback = diarizer.partial_id(final.utterance) if shown_id is None else shown_id
            diarizer.forget(final.utterance, done=True)
            self._on_final(role, replace(final, utterance=fallback))
            if self.finals and self.finals[-1].utterance == fallback:
                kept = self.finals[-1]
                self._keep_parts(final.utterance, [(kept.seq, final.start, final.end, final.text)])
            return
        if shown_id is not None and parts[0].role != shown:
            self._withdraw_partial(shown, shown_id, final.start, final.end)
        for part in parts:
            self._publish_part(final, part)
        self._keep_parts(final.utterance, [(p.seq, p.start, p.end, p.text) for p in parts if p.seq])
        loop = asyncio.get_running_loop()  # (two-means over the call's prints: off the loop)
        changes = await loop.run_in_executor(self.services.speakers.executor, diarizer.recluster)
        if changes:
            self._relabel(changes)

    def _relabel(self, changes: list[Relabel]) -> None:
        """Finals heard as one party turned out to be the other's: screens and the store are
        told (`transcript.relabeled`), analytics move them, and assist reads each again as
        its new party's (with the entities it named: categories may need them). A line that
        was the customer's gets the customer's sentiment, intent and suggestions; one that
        was the agent's is heard by the checklist. What was read under the wrong party
        stays (cards already shown are not withdrawn)."""
        moved = {c.final_seq: c.channel for c in changes}
        self.finals = deque(  # what `callcue transcribe` prints follows the corrections
            replace(f, channel=moved[f.seq]) if f.seq in moved else f for f in self.finals
        )
        for change in changes:
            self.analytics.relabel(change.previous, change.utterance, change.channel)
        self.publish(
            TranscriptRelabeled(
                call_id=self.call_id,
                changes=tuple(
                    {
                        "utterance": c.utterance,
                        "final_seq": c.final_seq,
                        "channel": c.channel,
                        "previous": c.previous,
                    }
                    for c in changes
                ),
            )
        )
        self._analytics_changed()
        worker = self.services.assist_worker
        if worker is None or self.assist_state is None:
            return
        relabeled = [f for f in self.finals if f.seq in moved]
        for final in relabeled:
            worker.submit(
                AssistItem(
                    self,
                    final.channel,
                    final.utterance,
                    final.text,
                    final.end,
                    self._final_entities.get(final.seq, []),
                    time.monotonic(),
                    final.language,
                    final.start,
                )
            )

    def _kept_from(self, now: float) -> float:
        """Call time before which finals (and what revisions need of them) are let go, as of
        call time `now`: FINALS_KEPT_S beyond a revision stretch; nothing with `keep_finals`."""
        if self.keep_finals:
            return float("-inf")
        reviser = self.services.recognition.reviser
        stretch = (reviser.options.seconds or LONGEST_STRETCH_S) if reviser is not None else 0.0
        return now - FINALS_KEPT_S - stretch

    def _keep_final(self, event: TranscriptFinal) -> None:
        """Keep a published final for revisions and relabels, and let go of the finals (and
        their revisions) older than FINALS_KEPT_S of call time beyond a revision stretch: a
        call of hours holds a bounded share of its transcript in memory. A revision or
        relabel that comes for a final let go keeps the live text on screens (relabels still
        reach screens and store, but the line is not read again by assist)."""
        self.finals.append(event)
        self.finals_published += 1
        horizon = self._kept_from(event.end)
        while self.finals and self.finals[0].end < horizon:
            old = self.finals.popleft()
            self._final_entities.pop(old.seq, None)
        while self.revised:
            key, first = next(iter(self.revised.items()))
            if first.end >= horizon:
                break
            del self.revised[key]

    def _publish_part(self, final: Final, part: Part) -> None:
        self._on_final(
            part.role,
            replace(
                final,
                utterance=part.utterance,
                start=part.start,
                end=part.end,
                text=part.text,
                words=part.words,
            ),
        )
        if self.finals and self.finals[-1].utterance == part.utterance:
            part.seq = self.finals[-1].seq


def agent_key(metadata: Mapping[str, Any]) -> str:
    """Whose voice print a call's agent channel adds to, or uses: the metadata's `agent`
    (an id: names collide)."""
    value = metadata.get("agent") or ""
    return normal_agent(value) if isinstance(value, str) else ""


def mask_words(words: tuple[Word, ...], original: str, masked: str) -> tuple[Word, ...]:
    """Blank the timed words that a masked span covered (keeps times, drops the secret)."""
    import difflib

    spans = []
    matcher = difflib.SequenceMatcher(a=original, b=masked, autojunk=False)
    for tag, a0, a1, _, _ in matcher.get_opcodes():
        if tag != "equal":
            spans.append((a0, a1))
    out, pos = [], 0
    for word in words:
        token = word.word.strip()
        at = original.find(token, pos) if token else -1
        if at < 0:
            out.append(word)
            continue
        pos = at + len(token)
        if any(a0 < pos and at < a1 for a0, a1 in spans):
            out.append(Word("•••", word.start, word.end, word.probability))
        else:
            out.append(word)
    return tuple(out)
