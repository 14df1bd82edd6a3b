"""Revision: a channel's finals decoded again, offline-style, for the record QA reads.

Live finals are decoded one utterance at a time, as soon as it ends, with a few seconds of
the channel before it. Offline decoding of the whole channel hears every utterance with up to
30 s around it and the text before it, and is more accurate (README "Recognition").
`Reviser` runs that offline decode on each channel whole when its call ends (every 600 s of
a longer call; with `RevisionOptions.seconds`, also after each such stretch of a channel),
its audio held meanwhile in a temporary file (`AudioSpool`); `StreamingTranscriber` gives
each word back to the final whose audio holds it.

It runs beside the live work, never in its way: one thread, a model replica of its own
(the finals' model: a live final never waits for a revision inside CTranslate2), loaded on
first use from a thread at the lowest priority, so its compute threads get a core only when
partials and finals leave one free. On a machine that is busy all the time revisions fall
behind; past `max_pending_s` of audio waiting, new ones are skipped (the live text stays, and
`callcue_revisions_total{outcome="skipped"}` counts them).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from audio.codec import TARGET_RATE, Float32Array
from models.resolve import resolve_whisper_model
from models.whisper import WhisperOptions, WordTiming, lower_priority, norm_word

log = logging.getLogger("callcue.revise")

LOWEST = 19  # niceness of the revision thread and the compute threads it starts
SPOOL_CHUNK = 5 * TARGET_RATE  # samples a channel gathers in memory before they go to its file


@dataclass(frozen=True, slots=True)
class RevisionOptions:
    """When revisions run (the `CALLCUE_REVISE*` settings)."""

    enabled: bool = True
    # a channel is revised after each stretch of this much of its audio (at the end of an
    # utterance) and at the end of the call; 0 (the default): at the end of the call only, the
    # channel whole (every LONGEST_STRETCH_S on a longer call), as offline decoding hears it:
    # stretches of 60 s began mid-sentence and read the real calls here less like offline
    # decoding (README "Recognition")
    seconds: float = 0.0
    # audio waiting for revision, all calls (on disk, in the stretches' files); beyond it a
    # stretch is skipped, unless none waits (a channel of up to 600 s is one stretch)
    max_pending_s: float = 7200.0
    beam_size: int = 5


@dataclass(frozen=True, slots=True)
class Revision:
    """What the offline decode of one stretch heard (word times from the stretch's start)."""

    words: tuple[WordTiming, ...]
    language: str
    seconds: float  # wall time it took


@dataclass
class RevisionStats:
    done: int = 0
    skipped: int = 0  # the backlog was full
    failed: int = 0
    audio_seconds: float = 0.0
    busy_seconds: float = 0.0
    pending_seconds: float = 0.0
    decoded_seconds: float = 0.0  # of the stretch being revised, decoded so far
    load_seconds: float = 0.0
    changed: int = 0  # finals whose text a revision changed (counted by the transcribers)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Reviser:
    """Decodes stretches of call audio with faster-whisper's offline `transcribe` (beam
    search, its VAD filter, word timings), one at a time, at the lowest priority."""

    def __init__(self, whisper: WhisperOptions, options: RevisionOptions | None = None) -> None:
        self.whisper = whisper
        self.options = options or RevisionOptions()
        self.stats = RevisionStats()
        self._model: object | None = None
        self._multilingual = False
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="callcue-revise",
            initializer=lower_priority,
            initargs=(LOWEST,),
        )
        self._closed = False

    def submit(
        self,
        audio: Float32Array | Callable[[], Float32Array],
        language: str,
        prompt: str = "",
        hotwords: str = "",
        seconds: float | None = None,
    ) -> Future[Revision] | None:
        """Queue one stretch (its audio, or what reads it on the revision thread, `seconds`
        long); None when revisions are closed or too far behind (skipped)."""
        if seconds is None:
            if callable(audio):
                raise TypeError("a stretch to be read on the revision thread needs its seconds")
            seconds = audio.size / TARGET_RATE
        with self.stats.lock:
            if self._closed:
                return None
            waiting = self.stats.pending_seconds
            if waiting > 0 and waiting + seconds > self.options.max_pending_s:
                self.stats.skipped += 1
                log.warning(
                    "revision of %.0f s skipped: %.0f s of audio already wait for revision "
                    "(the machine has no spare CPU for it; the live text is kept)",
                    seconds,
                    self.stats.pending_seconds,
                )
                return None
            self.stats.pending_seconds += seconds
        try:
            return self._executor.submit(self._run, audio, language, prompt, hotwords, seconds)
        except RuntimeError:  # closed meanwhile
            with self.stats.lock:
                self.stats.pending_seconds -= seconds
            return None

    def preload(self) -> None:
        """Load the replica now (blocking; at start, before calls): loading reads the model
        file whole, a passing peak of memory better paid before calls than during one."""
        self._executor.submit(self._load).result()

    def _load(self) -> object:
        if self._model is None:
            from faster_whisper import WhisperModel

            started = time.perf_counter()
            opts = self.whisper
            # loaded from the revision thread (lowest priority): CTranslate2's compute threads
            # take its priority
            model = WhisperModel(
                resolve_whisper_model(opts.model),
                device=opts.device,
                compute_type=opts.compute_type,
                cpu_threads=opts.cpu_threads,
                num_workers=1,
            )
            self._multilingual = bool(model.model.is_multilingual)
            self._model = model
            _trim()  # loading held the file whole, and its float weights, for a moment
            self.stats.load_seconds = time.perf_counter() - started
            log.info(
                "revision model %s loaded in %.1fs (lowest priority)",
                opts.model,
                self.stats.load_seconds,
            )
        return self._model

    def _run(
        self,
        audio: Float32Array | Callable[[], Float32Array],
        language: str,
        prompt: str,
        hotwords: str,
        seconds: float,
    ) -> Revision:
        started = time.perf_counter()
        try:
            if callable(audio):
                audio = audio()
            model = self._load()
            if language != "en" and language != "auto" and not self._multilingual:
                raise ValueError(f"{self.whisper.model} is English-only: cannot revise {language}")
            segments, info = model.transcribe(  # type: ignore[attr-defined]
                np.ascontiguousarray(audio, dtype=np.float32),
                language=None if language == "auto" else language,
                beam_size=self.options.beam_size,
                vad_filter=True,
                word_timestamps=True,
                condition_on_previous_text=True,
                initial_prompt=prompt or None,
                hotwords=hotwords or None,
            )
            heard: list[WordTiming] = []
            for segment in segments:  # (decoded as they are read)
                heard.extend(
                    WordTiming(w.word, round(w.start, 3), round(w.end, 3), round(w.probability, 4))
                    for w in segment.words or ()
                )
                with self.stats.lock:
                    self.stats.decoded_seconds = min(max(segment.end, 0.0), seconds)
            words = tuple(heard)
            elapsed = time.perf_counter() - started
            with self.stats.lock:
                self.stats.done += 1
                self.stats.audio_seconds += seconds
                self.stats.busy_seconds += elapsed
            return Revision(words, info.language if language == "auto" else language, elapsed)
        except BaseException:
            with self.stats.lock:
                self.stats.failed += 1
            raise
        finally:
            with self.stats.lock:
                self.stats.pending_seconds -= seconds
                self.stats.decoded_seconds = 0.0
            _trim()

    def left_seconds(self) -> float:
        """Seconds of audio waiting for revision or not yet decoded in the one being revised
        (what a progress bar counts down)."""
        with self.stats.lock:
            return max(self.stats.pending_seconds - self.stats.decoded_seconds, 0.0)

    def close(self) -> None:
        """Stop: waiting revisions are cancelled, the one running finishes in its thread."""
        with self.stats.lock:
            self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


def assign(
    words: tuple[WordTiming, ...], finals: list[tuple[int, float, float, str]]
) -> dict[int, list[WordTiming]]:
    """Each revised word to one of the live finals (key, start, end in seconds, text).

    By text first: the revised words are aligned with the live ones (difflib); a word that
    matches a live word, or replaces words of one final only, goes to that final, so the
    utterances keep their live boundaries where the two agree (word times alone moved words
    across them). Any other word goes to the final whose span holds its middle, else the
    nearest one. Words keep their own times."""
    import difflib

    out: dict[int, list[WordTiming]] = {key: [] for key, _, _, _ in finals}
    if not finals:
        return out
    live: list[tuple[str, int]] = [
        (norm_word(w), key) for key, _, _, text in finals for w in text.split() if norm_word(w)
    ]
    revised = [norm_word(w.word) for w in words]
    owner: list[int | None] = [None] * len(words)
    matcher = difflib.SequenceMatcher(a=[w for w, _ in live], b=revised, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for j in range(j1, j2):
                owner[j] = live[i1 + j - j1][1]
        elif tag == "replace" and len({key for _, key in live[i1:i2]}) == 1:
            owner[j1:j2] = [live[i1][1]] * (j2 - j1)  # other words for one final's words

    def by_time(word: WordTiming) -> int:
        middle = (word.start + word.end) / 2

        def distance(final: tuple[int, float, float, str]) -> float:
            _, lo, hi, _ = final
            return 0.0 if lo <= middle <= hi else min(abs(middle - lo), abs(middle - hi))

        return min(finals, key=distance)[0]

    for word, key in zip(words, owner, strict=True):
        out[key if key is not None else by_time(word)].append(word)
    return out


def changed_text(words: list[WordTiming], live: str) -> str | None:
    """The text of the revised words given to a live final, where it replaces the live text:
    None when nothing was heard there, the text is the same, or the revision skipped speech."""
    text = "".join(w.word for w in words).strip()
    if not text or same_text(text, live) or skipped_speech(text, live):
        return None
    return text


def same_text(a: str, b: str) -> bool:
    """Equal but for case, spacing and punctuation (no revision is sent for that)."""

    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^\w']+", " ", text.lower()).split())

    return norm(a) == norm(b)


def skipped_speech(revised: str, live: str) -> bool:
    """The revision kept less than half of a live final of four words or more: offline
    long-form decoding skips stretches now and then (seen on real calls: a seven-word turn
    came back as one word), so the live text is kept there."""
    n = len(live.split())
    return n >= 4 and len(revised.split()) * 2 < n


def _trim() -> None:
    """Give the decode's freed working memory back to the system (glibc keeps it in the
    thread's arena otherwise: about 100 MB after a minute of audio, measured)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class _SpoolFile:
    """An anonymous temporary file of int16 samples; `base` is the channel sample at its
    start. Opened, written and closed on the spool thread only; read where a revision runs,
    once the writes before the read are done."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.handle: IO[bytes] | None = None
        self.error: OSError | None = None  # a write that failed (a full disk)

    def write(self, samples: np.ndarray, at: int) -> None:
        if self.error is not None:
            return
        try:
            if self.handle is None:
                self.handle = tempfile.TemporaryFile(prefix="callcue-revise-")  # noqa: SIM115
            os.pwrite(self.handle.fileno(), samples.tobytes(), (at - self.base) * 2)
        except OSError as exc:
            self.error = exc
            log.warning(
                "audio held for revision could not be written to %s: %s (that stretch keeps "
                "its live text)",
                tempfile.gettempdir(),
                exc,
            )

    def read(self, lo: int, hi: int) -> np.ndarray:
        if self.error is not None:
            raise OSError(f"the audio held for revision could not be written: {self.error}")
        if self.handle is None or hi <= lo:
            return np.zeros(0, np.int16)
        data = os.pread(self.handle.fileno(), (hi - lo) * 2, (lo - self.base) * 2)
        return np.frombuffer(data, np.int16).copy()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def __del__(self) -> None:
        # a stretch never read: its revision was cancelled when revisions closed
        self.close()


class Stretch:
    """Samples [`lo`, `hi`) of a spooled channel, read once as float32 (`Reviser.submit`);
    `discard` lets them go unread."""

    def __init__(self, file: _SpoolFile, lo: int, hi: int, done: Future[None] | None) -> None:
        self.file, self.lo, self.hi, self._done = file, lo, hi, done

    @property
    def seconds(self) -> float:
        return (self.hi - self.lo) / TARGET_RATE

    def __call__(self) -> Float32Array:
        try:
            if self._done is not None:
                self._done.result()  # the writes before it
            return self.file.read(self.lo, self.hi).astype(np.float32) / 32767.0
        finally:
            self.file.close()

    def discard(self) -> None:
        AudioSpool._thread().submit(self.file.close)


class AudioSpool:
    """A channel's audio held for revision, samples [`start`, `end`) of the channel: in an
    anonymous temporary file (int16), a few seconds in memory before they are written, so a
    channel can be held whole until its call ends at the cost of disk, not memory (16 kHz:
    1.9 MB a minute). Every file operation runs on one thread shared by all channels (no
    blocking I/O on the event loop); a stretch taken out is read on the revision thread, after
    the writes before it. Each `take` or `drop` starts a new file with what follows, so a file
    holds at most one stretch."""

    _writer: ThreadPoolExecutor | None = None
    _writer_lock = threading.Lock()

    def __init__(self) -> None:
        self.start = 0
        self.end = 0
        self._file = _SpoolFile(0)
        self._pending: list[np.ndarray] = []  # samples [self._written, self.end)
        self._written = 0  # samples before this are in the file (or dropped)
        self._last: Future[None] | None = None  # the latest file operation

    @property
    def samples(self) -> int:
        return self.end - self.start

    @classmethod
    def _thread(cls) -> ThreadPoolExecutor:
        with cls._writer_lock:
            if cls._writer is None:
                cls._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callcue-spool")
            return cls._writer

    def append(self, samples: Float32Array) -> None:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
        self._pending.append(pcm)
        self.end += pcm.size
        if self.end - self._written >= SPOOL_CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        data = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending = []
        self._last = self._thread().submit(self._file.write, data, self._written)
        self._written = self.end

    def _roll(self, upto: int) -> tuple[_SpoolFile, Future[None] | None]:
        """Move the start to `upto` (within what is held): what follows goes to a new file,
        copied on the spool thread. Returns the old file, and the operation to wait for
        before reading it: the last on it."""
        upto = min(max(upto, self.start), self.end)
        self._flush()
        old, new, end = self._file, _SpoolFile(upto), self.end
        if upto < end:
            self._last = self._thread().submit(lambda: new.write(old.read(upto, end), upto))
        self._file, self.start = new, upto
        return old, self._last

    def take(self, upto: int) -> Stretch:
        """Take the audio before sample `upto` out: the stretch that reads it (once, on a
        thread other than the event loop's), from `start` on."""
        lo = self.start
        hi = min(max(upto, lo), self.end)
        if hi == lo:
            return Stretch(_SpoolFile(lo), lo, lo, None)  # (nothing: no new file)
        old, done = self._roll(hi)
        return Stretch(old, lo, hi, done)

    def drop(self, upto: int) -> None:
        """Let the audio before sample `upto` go."""
        if min(upto, self.end) <= self.start:
            return
        old, _ = self._roll(upto)
        self._thread().submit(old.close)  # after what is queued on it

    def close(self) -> None:
        """Let everything go (the file is deleted)."""
        self._pending = []
        self.drop(self.end)
