"""A live call: decodes its audio, runs one streaming transcriber per channel, emits events."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from assist.events import (
    CallEnded,
    CallStarted,
    Event,
    TranscriptFinal,
    TranscriptPartial,
    Word,
)
from assist.hub import EventHub
from assist.metrics import Metrics
from assist.settings import Settings
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

    def __post_init__(self) -> None:
        m = self.metrics
        self.scheduler.observer = self._observe_decode
        m.gauge("callcue_active_calls", "Calls in progress", lambda: len(self.sessions))
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
    def load(cls, settings: Settings, *, warmup: bool = True) -> Services:
        """Load and warm every model (blocking: call it before the port opens)."""
        engine = WhisperEngine(settings.whisper)
        warm = engine.warmup() if warmup else 0.0
        scheduler = RecognitionScheduler(engine, workers=settings.asr_workers)
        scheduler.start()
        return cls(
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
        return self.services.hub.publish(event)

    def start(self) -> None:
        self.services.hub.open(self.call_id)
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
            )
        )

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
        if audio.shape[1]:
            self.services.audio_seconds_in += audio.shape[1] / TARGET_RATE
            await self.transcribers[index].push(audio[0])

    async def settle(self) -> None:
        """Wait for every final submitted so far (batch transcription, not live calls)."""
        await asyncio.gather(*(t.settle() for t in self.transcribers))

    async def _push(self, audio: Any) -> None:
        if audio.shape[1] == 0:
            return
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
        self.publish(
            CallEnded(call_id=self.call_id, reason=reason, duration=round(self.audio_seconds, 3))
        )
        self.services.hub.end(self.call_id)
        self.services.sessions.pop(self.call_id, None)
        log.info(
            "call %s ended (%s) after %.1fs of audio", self.call_id, reason, self.audio_seconds
        )

    def _on_partial(self, channel: str, partial: Partial) -> None:
        if self.finished:
            return
        self.services.metrics.latency.observe(time.monotonic() - partial.received_at, "partial")
        self.publish(
            TranscriptPartial(
                call_id=self.call_id,
                channel=channel,
                utterance=partial.utterance,
                start=partial.start,
                end=partial.end,
                text=partial.text,
                stable=partial.stable,
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
        event = self.publish(
            TranscriptFinal(
                call_id=self.call_id,
                channel=channel,
                utterance=final.utterance,
                start=final.start,
                end=final.end,
                text=final.text,
                words=words,
                confidence=confidence,
            )
        )
        assert isinstance(event, TranscriptFinal)
        self.finals.append(event)


def transcript_seconds(samples: int) -> float:
    return samples / TARGET_RATE
