"""A live call: decodes its audio, runs one streaming transcriber per channel, emits events."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assist.engine import AssistModels, CallAssist
from assist.entities import Entity
from assist.events import (
    CallEnded,
    CallStarted,
    ErrorEvent,
    Event,
    TranscriptFinal,
    TranscriptPartial,
    Word,
)
from assist.hub import EventHub
from assist.metrics import Metrics
from assist.recording import Recorder
from assist.settings import Settings
from assist.store import CallStore
from audio.codec import TARGET_RATE, AudioFormat, StreamDecoder
from audio.vad import VadOptions, VadSegmenter
from models.asr import Final, Partial, StreamingOptions, StreamingTranscriber
from models.scheduler import OVERLOADED, RecognitionJob, RecognitionScheduler
from models.vad import SileroVad
from models.whisper import Hypothesis, WhisperEngine

log = logging.getLogger("callcue.session")


@dataclass
class Services:
    """What every call shares: the Whisper engine and its scheduler, VAD, hub, thread pool."""

    engine: WhisperEngine
    scheduler: RecognitionScheduler
    vad_model: SileroVad
    vad_options: VadOptions
    streaming: StreamingOptions
    hub: EventHub
    executor: ThreadPoolExecutor
    max_calls: int = 200
    sessions: dict[str, CallSession] = field(default_factory=dict)
    warmup_seconds: float = 0.0
    metrics: Metrics = field(default_factory=Metrics)
    audio_seconds_in: float = 0.0  # call audio received, all channels
    store_errors: int = 0
    assist: AssistModels | None = None
    assist_worker: AssistWorker | None = None
    store: CallStore | None = None
    recordings_dir: Path | None = None  # set: each channel's audio is kept as WAV

    def __post_init__(self) -> None:
        m = self.metrics
        self.scheduler.observer = self._observe_decode
        if self.assist is not None and self.assist_worker is None:
            self.assist_worker = AssistWorker(self.assist, self.metrics)
        m.gauge("callcue_active_calls", "Calls in progress", lambda: len(self.sessions))
        m.labelled_gauge(
            "callcue_store_errors_total",
            "Events the store failed to write (logged; the call goes on)",
            (),
            lambda: [((), self.store_errors)],
            kind="counter",
        )
        m.gauge(
            "callcue_active_channels",
            "Channels in progress",
            lambda: sum(len(s.channels) for s in list(self.sessions.values())),
        )
        m.labelled_gauge(
            "callcue_queue_depth",
            "Recognition jobs waiting",
            ("kind",),
            lambda: [
                (("final",), self.scheduler.depths[0]),
                (("partial",), self.scheduler.depths[1]),
            ],
        )
        m.gauge(
            "callcue_scheduler_pressure", "0 idle, 1 busy, 2 overloaded", self.scheduler.pressure
        )
        m.gauge(
            "callcue_real_time_factor",
            "Whisper decode seconds per second of call audio received (all channels)",
            lambda: self.engine.stats.busy_seconds / max(self.audio_seconds_in, 1e-9),
        )
        stats = self.scheduler.stats
        m.labelled_gauge(
            "callcue_finals_overdue_total",
            "Finals that waited in the queue past their budget",
            (),
            lambda: [((), stats.finals_overdue)],
            kind="counter",
        )
        m.labelled_gauge(
            "callcue_partials_dropped_total",
            "Partials not decoded: superseded while queued, or skipped under load",
            ("reason",),
            lambda: [
                (("superseded",), stats.partials_dropped),
                (("load",), stats.partials_skipped),
            ],
            kind="counter",
        )

    def _observe_decode(
        self, job: RecognitionJob, hyp: Hypothesis, waited: float, seconds: float
    ) -> None:
        kind = "final" if job.final else "partial"
        self.metrics.decode.observe(seconds, kind)
        self.metrics.batch.observe(1, kind)

    def admit(self) -> tuple[int, str] | None:
        """None if a new call can start; else (close code, reason), counted as refused."""
        if len(self.sessions) >= self.max_calls:
            self.metrics.refused.inc(1, "max_calls")
            return 1013, (
                f"this server is at its limit of {self.max_calls} concurrent calls "
                "(CALLCUE_MAX_CALLS); try again later"
            )
        if self.scheduler.pressure() == OVERLOADED:
            self.metrics.refused.inc(1, "overloaded")
            return 1013, (
                "this server cannot keep up with the calls it has (finals are "
                "waiting); new calls are refused until it catches up"
            )
        return None

    @classmethod
    def load(
        cls, settings: Settings, *, warmup: bool = True, store: bool = True, recover: bool = True
    ) -> Services:
        """Load and warm every model and open the store (blocking: before the port opens).
        `recover`: mark calls a dead server left in progress as interrupted (the server only)."""
        engine = WhisperEngine(settings.whisper)
        warm = engine.warmup() if warmup else 0.0
        assist = None
        if settings.assist:
            assist = AssistModels.load(
                playbook_path=settings.playbook_path,
                customers_path=settings.customers_path,
                options=settings.assist_options,
            )
        call_store = CallStore(settings.database_url, recover=recover) if store else None
        scheduler = RecognitionScheduler(engine, workers=settings.asr_workers)
        scheduler.start()
        return cls(
            store=call_store,
            recordings_dir=Path(settings.recordings_dir).expanduser()
            if store and settings.record_audio
            else None,
            assist=assist,
            engine=engine,
            scheduler=scheduler,
            vad_model=SileroVad(),
            vad_options=settings.vad,
            streaming=settings.streaming,
            hub=EventHub(backlog=settings.events_backlog),
            executor=ThreadPoolExecutor(
                max_workers=min(8, (os.cpu_count() or 2)), thread_name_prefix="callcue-vad"
            ),
            max_calls=settings.max_calls,
            warmup_seconds=warm,
        )

    def close(self) -> None:
        self.scheduler.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self.assist_worker is not None:
            self.assist_worker.close()
        if self.store is not None:
            self.store.close()


@dataclass
class _AssistItem:
    session: CallSession
    channel: str
    utterance: int
    text: str
    end: float
    entities: list[Entity]
    published_at: float


class AssistWorker:
    """Runs assist for the finals of every call in one thread, a batch at a time.

    Finals are queued as they are published; the worker takes everything waiting (up to
    `max_batch`), encodes it in one model call, then applies each call's rules and publishes the
    events. Transcripts never wait for it; a failing batch sends an `error` event to the calls in
    it, is counted in `callcue_assist_errors_total`, and the next batch goes on.
    """

    def __init__(self, models: AssistModels, metrics: Metrics, max_batch: int = 32) -> None:
        self.models = models
        self.metrics = metrics
        self.max_batch = max_batch
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callcue-assist")
        self._queue: asyncio.Queue[_AssistItem] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, item: _AssistItem) -> None:
        loop = asyncio.get_running_loop()
        crashed = self._task is not None and self._task.done()
        if self._queue is None or self._loop is not loop or crashed:  # first use, new loop
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._run())
        item.session.assist_pending += 1
        item.session.assist_idle.clear()
        self._queue.put_nowait(item)

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            requests = [
                i.session.assist_state.request(i.channel, i.text)
                for i in batch
                if i.session.assist_state is not None
            ]
            try:
                analyses = await loop.run_in_executor(self.executor, self.models.analyze, requests)
            except Exception as exc:
                log.exception("assist failed for a batch of %d utterances", len(batch))
                self.metrics.assist_errors.inc()
                for item in batch:
                    try:
                        item.session.publish(
                            ErrorEvent(
                                call_id=item.session.call_id,
                                code="assist_failed",
                                message=f"assist could not read utterance {item.utterance} "
                                f"({type(exc).__name__}); transcripts go on",
                            )
                        )
                    except Exception:
                        log.exception("could not report the assist failure")
                    finally:
                        item.session.assist_done()
                continue
            self.metrics.batch.observe(len(batch), "assist")
            for item, analysis in zip(batch, analyses, strict=True):
                state = item.session.assist_state
                try:
                    if state is not None:
                        for event in state.on_final(
                            item.channel,
                            item.utterance,
                            item.text,
                            item.end,
                            analysis,
                            item.entities,
                        ):
                            item.session.publish(event)
                        self.metrics.latency.observe(time.monotonic() - item.published_at, "assist")
                except Exception:
                    log.exception("assist rules failed on %s", item.session.call_id)
                    self.metrics.assist_errors.inc()
                finally:
                    item.session.assist_done()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)


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
    ) -> None:
        self.services = services
        self.call_id = call_id
        self.format = fmt
        self.channels = channels
        self.metadata = metadata or {}
        self.source = source
        self.decoder = StreamDecoder(fmt)
        # platforms that send each party separately (Twilio) get one mono decoder a track
        self.track_decoders: dict[int, StreamDecoder] = {}
        self.started_at = time.time()
        self.finished = False
        self._finishing: asyncio.Task[None] | None = None
        self.finals: list[TranscriptFinal] = []
        self.recorder: Recorder | None = None
        self.assist_state: CallAssist | None = None
        self.assist_pending = 0
        self.assist_idle = asyncio.Event()
        self.assist_idle.set()
        if services.assist is not None:
            agent = self.metadata.get("agent_name") or self.metadata.get("agent") or ""
            self.assist_state = CallAssist(
                services.assist,
                call_id,
                customer=services.assist.lookup(self.metadata),
                agent_name=str(agent) if isinstance(agent, str) else "",
            )
        options = streaming or services.streaming
        self.transcribers = [
            StreamingTranscriber(
                key=f"{call_id}/{channel}",
                engine=services.engine,
                scheduler=services.scheduler,
                vad=VadSegmenter(services.vad_model, services.vad_options),
                executor=services.executor,
                on_partial=functools.partial(self._on_partial, channel),
                on_final=functools.partial(self._on_final, channel),
                options=options,
            )
            for channel in channels
        ]

    @property
    def audio_seconds(self) -> float:
        samples = max(
            [self.decoder.input_samples, *(d.input_samples for d in self.track_decoders.values())]
        )
        return samples / self.format.sample_rate

    def publish(self, event: Event) -> Event:
        """Stamp and fan out an event, and store it before any screen can have been sent it
        (the hub only queues; sends happen after this returns)."""
        stamped = self.services.hub.publish(event)
        store = self.services.store
        if store is not None:
            try:
                store.record(stamped)
            except Exception:
                self.services.store_errors += 1
                log.exception("the store could not write %s #%d", self.call_id, stamped.seq)
        return stamped

    def start(self) -> None:
        store = self.services.store
        base = store.last_seq(self.call_id) if store is not None else 0
        self.services.hub.open(self.call_id, base=base)
        self.services.sessions[self.call_id] = self
        self.services.metrics.calls.inc(1, self.source)
        self.publish(
            CallStarted(
                call_id=self.call_id,
                channels=self.channels,
                source=self.source,
                encoding=self.format.encoding,
                sample_rate=self.format.sample_rate,
                metadata=self.metadata,
                customer=self.assist_state.customer_card() if self.assist_state else None,
            )
        )
        if self.assist_state is not None and self.assist_state.checklist:
            self.publish(self.assist_state.checklist_event())
        if self.services.recordings_dir is not None and store is not None:
            self.recorder = Recorder(self.services.recordings_dir, self.call_id, self.channels)
            for channel, path in self.recorder.paths.items():
                store.add_recording(self.call_id, channel, path, TARGET_RATE)

    def live_summary(self) -> dict[str, Any]:
        """What the wallboard shows for this call."""
        state = self.assist_state
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
        }

    def assist_done(self) -> None:
        self.assist_pending -= 1
        if self.assist_pending <= 0:
            self.assist_pending = 0
            self.assist_idle.set()

    def feedback(self, message: dict[str, Any]) -> Event:
        """Record feedback from a screen; ValueError names what is wrong with it."""
        if self.assist_state is None:
            raise ValueError("assist is off on this server (CALLCUE_ASSIST=false)")
        event = self.assist_state.on_feedback(message)
        self.services.metrics.feedback.inc(1, event.kind, event.action)
        return self.publish(event)

    async def feed(self, data: bytes) -> None:
        """Decode one frame and hand each channel its samples (returns once VAD has run)."""
        await self._push(self.decoder.decode(data))

    async def feed_track(self, index: int, data: bytes) -> None:
        """Decode one frame of a single channel (sent on its own, not interleaved)."""
        decoder = self.track_decoders.get(index)
        if decoder is None:
            mono = AudioFormat(self.format.encoding, self.format.sample_rate, 1)
            decoder = self.track_decoders[index] = StreamDecoder(mono)
        audio = decoder.decode(data)
        if audio.shape[1] and self.recorder is not None:
            self.recorder.write_channel(index, audio[0])
        if audio.shape[1]:
            self.services.audio_seconds_in += audio.shape[1] / TARGET_RATE
            await self.transcribers[index].push(audio[0])

    async def settle(self) -> None:
        """Wait for every final submitted so far (batch transcription, not live calls)."""
        await asyncio.gather(*(t.settle() for t in self.transcribers))

    async def _push(self, audio: Any) -> None:
        if audio.shape[1] == 0:
            return
        if self.recorder is not None:
            self.recorder.write(audio)
        self.services.audio_seconds_in += audio.shape[1] * audio.shape[0] / TARGET_RATE
        await asyncio.gather(*(t.push(audio[i]) for i, t in enumerate(self.transcribers)))

    async def finish(self, reason: str = "stop") -> None:
        """Flush every pending final, then emit `call.ended`. Safe to call more than once."""
        if self._finishing is None:
            self._finishing = asyncio.ensure_future(self._finish(reason))
        await asyncio.shield(self._finishing)

    async def _finish(self, reason: str) -> None:
        try:
            await self._push(self.decoder.flush())
            for index, decoder in self.track_decoders.items():
                tail = decoder.flush()
                if tail.shape[1]:
                    await self.transcribers[index].push(tail[0])
        except Exception:  # a broken tail must not cost the finals already decoded
            log.exception("flushing the audio of %s failed", self.call_id)
        await asyncio.gather(*(t.close() for t in self.transcribers), return_exceptions=True)
        self.finished = True
        if self.assist_state is not None:
            try:  # the last finals' suggestions and the checklist result come before call.ended
                await asyncio.wait_for(self.assist_idle.wait(), timeout=10.0)
            except TimeoutError:
                log.warning("assist for %s did not finish in 10 s", self.call_id)
            if self.assist_state.checklist:
                self.publish(self.assist_state.checklist_event(final=True))
        self.publish(
            CallEnded(call_id=self.call_id, reason=reason, duration=round(self.audio_seconds, 3))
        )
        self.services.hub.end(self.call_id)
        self.services.sessions.pop(self.call_id, None)
        if self.recorder is not None:
            self.recorder.close()
        log.info(
            "call %s ended (%s) after %.1fs of audio", self.call_id, reason, self.audio_seconds
        )

    def _on_partial(self, channel: str, partial: Partial) -> None:
        if self.finished:
            return
        self.services.metrics.latency.observe(time.monotonic() - partial.received_at, "partial")
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

    def _on_final(self, channel: str, final: Final) -> None:
        if not final.text:
            # nothing was said after all: withdraw a partial that may be on screen
            self.publish(
                TranscriptPartial(
                    call_id=self.call_id,
                    channel=channel,
                    utterance=final.utterance,
                    start=final.start,
                    end=final.end,
                    text="",
                    stable="",
                )
            )
            return
        self.services.metrics.latency.observe(time.monotonic() - final.received_at, "final")
        words = tuple(Word(w.word, w.start, w.end, w.probability) for w in final.words)
        confidence = round(sum(w.probability for w in words) / len(words), 4) if words else 0.0
        text: str = final.text
        entities: list[Entity] = []
        if self.assist_state is not None:
            text, entities = self.assist_state.scan(final.text)
            if text != final.text:
                words = mask_words(words, final.text, text)
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
            )
        )
        assert isinstance(event, TranscriptFinal)
        self.finals.append(event)
        worker = self.services.assist_worker
        if worker is not None and self.assist_state is not None:
            worker.submit(
                _AssistItem(
                    self, channel, final.utterance, text, final.end, entities, time.monotonic()
                )
            )


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


def transcript_seconds(samples: int) -> float:
    return samples / TARGET_RATE
