"""What every call's recognition shares on one node: the Whisper engines and their scheduler,
the VAD model, the streaming options, the thread pool VAD and audio decoding run on, and
revision. A call builds its channels' transcribers from it (`CallSession`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from audio.vad import VadOptions, VadSegmenter
from live.measures import measure_engines, measure_reviser, measure_scheduler
from live.metrics import Metrics
from models.asr import StreamingOptions
from models.revise import Reviser
from models.scheduler import RecognitionJob, RecognitionScheduler
from models.vad import SileroVad
from models.whisper import Hypothesis, WhisperEngine


@dataclass
class Recognition:
    """`engine` decodes partials; finals are decoded by `scheduler.final_engine` (the
    accurate model), which is `engine` itself when one model does both."""

    engine: WhisperEngine
    scheduler: RecognitionScheduler
    vad_model: SileroVad
    vad_options: VadOptions
    streaming: StreamingOptions
    executor: ThreadPoolExecutor  # VAD and audio decoding, off the event loop
    reviser: Reviser | None = None  # set: finals are revised offline-style (transcript.revised)
    audio_seconds_in: float = 0.0  # call audio received, all channels

    @property
    def final_engine(self) -> WhisperEngine:
        return self.scheduler.final_engine

    @property
    def engines(self) -> list[WhisperEngine]:
        """The partials' engine, and the finals' where it is another model."""
        return (
            [self.engine] if self.final_engine is self.engine else [self.engine, self.final_engine]
        )

    def segmenter(self) -> VadSegmenter:
        """A new channel's VAD."""
        return VadSegmenter(self.vad_model, self.vad_options)

    def measure(self, metrics: Metrics) -> None:
        """Export the scheduler, the engines and revision to `/metrics`, and time each decode."""

        def observe(
            jobs: list[RecognitionJob], hyps: list[Hypothesis], started: float, seconds: float
        ) -> None:
            kind = "final" if jobs[0].final else "partial"
            for _ in jobs:  # a batch's time shared out among its channels
                metrics.decode.observe(seconds / len(jobs), kind)
            metrics.batch.observe(len(jobs), kind)

        self.scheduler.observer = observe
        measure_scheduler(metrics, self.scheduler)
        measure_engines(metrics, self.engines, lambda: self.audio_seconds_in)
        if self.reviser is not None:
            measure_reviser(metrics, self.reviser)

    def close(self) -> None:
        if self.reviser is not None:
            self.reviser.close()
        self.scheduler.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
