"""Streaming voice-activity state machine; the speech-probability model is injected."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from audio.codec import TARGET_RATE, Float32Array

WINDOW = 512  # samples at 16 kHz (32 ms): Silero's window size


class SpeechModel(Protocol):
    """Gives one speech probability per 512-sample window, carrying its own state."""

    def new_state(self) -> object: ...

    def probabilities(self, windows: Float32Array, state: object) -> tuple[Float32Array, object]:
        """`windows` has shape (k, 512); returns k probabilities and the next state."""
        ...


@dataclass(frozen=True, slots=True)
class VadOptions:
    """Voice activity thresholds. `min_silence_ms` is the hangover before an utterance ends."""

    threshold: float = 0.5
    min_silence_ms: int = 400
    # Once an utterance is this long, a shorter pause ends it: long monologues get cut at
    # sentence pauses instead of running to the maximum utterance length.
    long_speech_ms: int = 5000
    long_min_silence_ms: int = 200
    min_speech_ms: int = 200
    speech_pad_ms: int = 200

    @property
    def neg_threshold(self) -> float:
        return max(self.threshold - 0.15, 0.01)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    sample: int


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    start: int
    end: int  # first sample of the silence that ended the utterance
    # ended by the shorter pause of a long utterance (`long_min_silence_ms`), not the hangover
    short: bool = False


VadEvent = SpeechStarted | SpeechEnded


class VadSegmenter:
    """Turns a stream of 16 kHz samples into speech start/end events for one channel.

    Model state, the partial window and the speech state are carried across `push` calls,
    so any chunking of the same audio yields the same events.
    """

    def __init__(self, model: SpeechModel, options: VadOptions | None = None) -> None:
        self.model = model
        self.options = options or VadOptions()
        self._state = model.new_state()
        self._pending = np.zeros(0, dtype=np.float32)
        self.samples_seen = 0  # samples already run through the model
        self.in_speech = False
        self.speech_start = 0
        self._silence_start: int | None = None
        # (window start sample, probability) for the last 30 s, for choosing cut points
        self._history: deque[tuple[int, float]] = deque(maxlen=30 * TARGET_RATE // WINDOW)
        self._min_silence = self.options.min_silence_ms * TARGET_RATE // 1000
        self._long_speech = self.options.long_speech_ms * TARGET_RATE // 1000
        self._long_min_silence = min(
            self.options.long_min_silence_ms * TARGET_RATE // 1000, self._min_silence
        )

    def push(self, samples: Float32Array) -> list[VadEvent]:
        audio = np.concatenate([self._pending, samples]) if self._pending.size else samples
        n_windows = audio.size // WINDOW
        self._pending = audio[n_windows * WINDOW :].copy()
        if n_windows == 0:
            return []
        windows = audio[: n_windows * WINDOW].reshape(n_windows, WINDOW)
        probs, self._state = self.model.probabilities(windows, self._state)
        events: list[VadEvent] = []
        for prob in probs.tolist():
            start = self.samples_seen
            self.samples_seen += WINDOW
            self._history.append((start, prob))
            event = self._step(start, prob)
            if event is not None:
                events.append(event)
        return events

    def _step(self, position: int, prob: float) -> VadEvent | None:
        opts = self.options
        if not self.in_speech:
            if prob >= opts.threshold:
                self.in_speech = True
                self.speech_start = position
                self._silence_start = None
                return SpeechStarted(position)
            return None
        if prob >= opts.threshold:
            self._silence_start = None
        elif prob < opts.neg_threshold:
            if self._silence_start is None:
                self._silence_start = position
            long = self._silence_start - self.speech_start >= self._long_speech
            hangover = self._long_min_silence if long else self._min_silence
            if position + WINDOW - self._silence_start >= hangover:
                self.in_speech = False
                return SpeechEnded(
                    self.speech_start, self._silence_start, short=hangover < self._min_silence
                )
        return None

    @property
    def silence_start(self) -> int | None:
        """Inside speech: where the current run of silence began (None while speech goes on)."""
        return self._silence_start if self.in_speech else None

    def split(self, at: int) -> None:
        """Start a new utterance at sample `at` while speech goes on (max utterance length)."""
        self.speech_start = at

    def onset(self, sample: int, low: float, back: int) -> int:
        """Where the speech that crossed the threshold at `sample` began: the start of the run
        of windows just before it whose probability was at least `low`, at most `back`
        samples earlier (on phone audio Silero often rises slowly through a turn's first
        word)."""
        onset = sample
        for start, prob in reversed(self._history):
            if start >= sample:
                continue
            if prob < low or start < sample - back:
                break
            onset = start
        return onset

    def quietest(self, lo: int, hi: int) -> int:
        """Start of the least speech-like window in [lo, hi): where to cut a long utterance."""
        best, best_prob = hi, 2.0
        for start, prob in self._history:
            if lo <= start < hi and prob < best_prob:
                best, best_prob = start, prob
        return best
