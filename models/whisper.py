"""One Whisper engine shared by every call: cut encoder windows, guarded decoding, word timings."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from audio.codec import TARGET_RATE, Float32Array
from models.resolve import resolve_whisper_model

log = logging.getLogger("callcue.whisper")
T = TypeVar("T")

FRAMES_PER_SECOND = 100  # log-mel frames
MAX_WINDOW_S = 30.0
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True, slots=True)
class WhisperOptions:
    """Model and decoding settings (the `CALLCUE_MODEL`, `CALLCUE_DEVICE`, ... settings)."""

    model: str = "embedded:tiny.en"
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0  # 0: one per core
    # decodes CTranslate2 runs at once (one model replica each, `cpu_threads` threads each);
    # with one, concurrent `decode` calls wait for each other inside CTranslate2
    workers: int = 1
    # niceness added to the decode threads (Linux): the short, latency-bound work beside them
    # (the event loop, VAD, assist) gets a core first; 0 leaves them as they are
    nice: int = 0
    beam_size: int = 5  # finals; partials are always greedy
    language: str = "en"
    # Encoder windows in seconds: an utterance is encoded in the smallest one that holds it
    # (plus `window_margin_s`). Partials favour speed; finals favour accuracy.
    windows: tuple[float, ...] = (3.0, 6.0, 10.0, 15.0, 20.0, 30.0)
    final_windows: tuple[float, ...] = (10.0, 20.0, 30.0)
    # Finals decoded while other work waits use these cheaper windows (load shedding that
    # costs a little accuracy instead of latency).
    final_windows_busy: tuple[float, ...] = (10.0, 20.0, 30.0)
    window_margin_s: float = 1.0
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    final_temperatures: tuple[float, ...] = (0.0, 0.4)
    max_tokens_per_second: float = 6.0


@dataclass(frozen=True, slots=True)
class WordTiming:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """What one decode of one window produced (times relative to the window start)."""

    text: str
    tokens: tuple[int, ...]
    words: tuple[WordTiming, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    window_s: float = 0.0
    rejected: str | None = None  # why the text was dropped (no_speech, no_words, repetition, ...)
    seconds: float = 0.0  # wall time spent decoding

    @property
    def ok(self) -> bool:
        return self.rejected is None and bool(self.text)


@dataclass(frozen=True, slots=True)
class PartialRequest:
    """One channel's partial in a batch (see `WhisperEngine.decode_partials`)."""

    audio: Float32Array
    prompt: tuple[int, ...] = ()
    prefix: tuple[int, ...] = ()


@dataclass
class EngineStats:
    decodes: int = 0
    audio_seconds: float = 0.0
    busy_seconds: float = 0.0
    prompt_echoes: int = 0  # decodes that repeated their prompt and were done again without it
    windows: dict[float, int] = field(default_factory=dict)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


_WORD = re.compile(r"\S+")
_NOT_WORD = re.compile(r"[^\w']+")
ECHO_MIN_WORDS = 4  # a repeated opening this long (or longer) counts as an echo of the prompt


def _norm_word(word: str) -> str:
    return _NOT_WORD.sub("", word.lower())


def cut_repetition(text: str, max_period: int = 40) -> tuple[str, bool]:
    """Cut a looping tail: from some word on, the text repeats one phrase until it ends.

    "and so my fellow Americans and so my fellow Americans and" becomes "and so my fellow
    Americans"; a whole sentence said twice at the end (Whisper fills a window longer than the
    utterance that way) is kept once. A phrase of 3+ words must come back once, of 2 words
    twice, a single word three times (so "no, no" and "very very" survive).
    """
    words = _WORD.findall(text)
    keys = [w.lower().strip(".,!?;:") for w in words]
    for start in range(len(keys)):
        tail = keys[start:]
        for period in range(1, max_period + 1):
            need = 2 * period if period >= 3 else (3 * period if period == 2 else 4)
            if len(tail) < need:
                break
            if all(tail[i] == tail[i % period] for i in range(len(tail))):
                return " ".join(words[: start + period]), True
    return text, False


class WhisperEngine:
    """faster-whisper's model with callcue's streaming decode on top.

    Thread-safe: CTranslate2 runs concurrent calls on its own workers; the feature extractor
    holds no state across calls.
    """

    def __init__(self, options: WhisperOptions | None = None) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.options = options or WhisperOptions()
        opts = self.options
        self.model_path = resolve_whisper_model(opts.model)
        started = time.perf_counter()

        def load() -> WhisperModel:
            return WhisperModel(
                self.model_path,
                device=opts.device,
                compute_type=opts.compute_type,
                cpu_threads=opts.cpu_threads,
                num_workers=max(1, opts.workers),
                local_files_only=False,
            )

        # CTranslate2's worker threads are started by the thread that loads the model and take
        # its priority: loaded from a lowered thread, every decode runs lowered
        self.model = _in_lowered_thread(load, opts.nice) if opts.nice > 0 else load()
        multilingual = self.model.model.is_multilingual
        self.tokenizer = Tokenizer(
            self.model.hf_tokenizer,
            multilingual,
            task="transcribe",
            language=opts.language if multilingual else "en",
        )
        from faster_whisper.transcribe import get_suppressed_tokens

        self._suppress = list(get_suppressed_tokens(self.tokenizer, (-1,)) or [])
        self.load_seconds = time.perf_counter() - started
        self.stats = EngineStats()
        self._stats_lock = threading.Lock()
        log.info(
            "loaded Whisper %s on %s/%s in %.1fs",
            self.model_path,
            opts.device,
            opts.compute_type,
            self.load_seconds,
        )

    # -- tokens -------------------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(" " + text.strip())) if text.strip() else []

    def window_for(self, seconds: float, *, final: bool = False, busy: bool = False) -> float:
        """Smallest window leaving `window_margin_s` of padding: Whisper was trained on audio
        followed by silence, and without that margin it tends to run on past the end."""
        opts = self.options
        sizes = (opts.final_windows_busy if busy else opts.final_windows) if final else opts.windows
        for window in sizes:
            if seconds + self.options.window_margin_s <= window:
                return window
        return MAX_WINDOW_S

    # -- decoding -----------------------------------------------------------------------
    def _features(self, audio: Float32Array, window: float) -> tuple[np.ndarray, int]:
        """Log-mel features of `audio` cut or padded to `window`, and its content frames."""
        n_frames = int(window * FRAMES_PER_SECOND)
        features = self.model.feature_extractor(audio, padding=160)
        content_frames = min(features.shape[-1] - 1, n_frames)
        if features.shape[-1] >= n_frames:
            features = features[:, :n_frames]
        else:
            features = np.pad(features, ((0, 0), (0, n_frames - features.shape[-1])))
        return np.ascontiguousarray(features, dtype=np.float32), content_frames

    def _context(self, prompt: list[int] | tuple[int, ...], keep: int | None = None) -> list[int]:
        """The previous-text part of a prompt (before <|startoftranscript|>), its last `keep`
        tokens at most."""
        if not prompt:
            return []
        limit = self.model.max_length // 2 - 1
        if keep is not None:
            limit = min(limit, keep)
        return [self.tokenizer.sot_prev, *(list(prompt)[-limit:] if limit > 0 else [])]

    def _hypothesis(
        self, result: object, prefix: list[int] | tuple[int, ...], temperature: float, window: float
    ) -> Hypothesis:
        tk = self.tokenizer
        sequence = result.sequences_ids[0]  # type: ignore[attr-defined]
        # CTranslate2 returns the forced prefix as part of the sequence
        out = [t for t in sequence if t < tk.eot]
        if prefix and out[: len(prefix)] != list(prefix):
            out = list(prefix) + out
        n_new = max(len(sequence) - len(prefix), 1)
        avg_logprob = result.scores[0] * n_new / (n_new + 1)  # type: ignore[attr-defined]
        text = tk.decode(out).strip()
        hyp = Hypothesis(
            text=text,
            tokens=tuple(out),
            avg_logprob=avg_logprob,
            no_speech_prob=result.no_speech_prob,  # type: ignore[attr-defined]
            compression_ratio=compression_ratio(text),
            temperature=temperature,
            window_s=window,
        )
        opts = self.options
        if hyp.no_speech_prob > opts.no_speech_threshold and avg_logprob < opts.log_prob_threshold:
            return _rejected(hyp, "no_speech")
        return hyp

    def _cut_repetition(self, best: Hypothesis) -> Hypothesis:
        if best.rejected is None and best.text and not any(c.isalnum() for c in best.text):
            # "." or "..." from a silent or noisy window: nothing was said
            return _rejected(best, "no_words")
        if best.rejected is None:
            text, cut = cut_repetition(best.text)
            if best.compression_ratio > self.options.compression_ratio_threshold and not cut:
                return _rejected(best, "repetition")
            if cut:
                return _replace_text(best, text, self.encode_text(text))
        return best

    def _cut_beyond_audio(
        self, best: Hypothesis, encoder_output: object, content_frames: int, final: bool
    ) -> Hypothesis:
        """Words aligned at the very end of the audio were invented after it ended (a short
        window lets Whisper "continue" the utterance): cut them. Finals keep the timings."""
        if not best.ok:
            return best
        words = self._align(best.tokens, encoder_output, content_frames)
        content_end = content_frames / FRAMES_PER_SECOND - 0.03
        keep = len(words)
        while keep and words[keep - 1].start >= content_end:
            keep -= 1
        if keep < len(words):
            text = " ".join(w.word for w in words[:keep])
            best = _replace_text(best, text, self.encode_text(text))
            words = words[:keep]
            if not words:
                best = _rejected(best, "beyond_audio")
        return _with_words(best, words) if final else best

    def _count(self, seconds: float, elapsed: float, window: float, decodes: int = 1) -> None:
        with self._stats_lock:
            self.stats.decodes += decodes
            self.stats.audio_seconds += seconds
            self.stats.busy_seconds += elapsed
            self.stats.windows[window] = self.stats.windows.get(window, 0) + decodes

    def decode(
        self,
        audio: Float32Array,
        *,
        prompt: list[int] | tuple[int, ...] = (),
        prefix: list[int] | tuple[int, ...] = (),
        final: bool = False,
        busy: bool = False,
    ) -> Hypothesis:
        """Decode one utterance (≤ 30 s). Partials: greedy, no fallback, no word timings."""
        import ctranslate2

        started = time.perf_counter()
        opts = self.options
        kind = "final" if final else "partial"
        audio = audio[: int(MAX_WINDOW_S * TARGET_RATE)]
        seconds = audio.size / TARGET_RATE
        window = self.window_for(seconds, final=final, busy=busy)
        features, content_frames = self._features(audio, window)
        encoder_output = self.model.model.encode(
            ctranslate2.StorageView.from_array(features[None]), to_cpu=False
        )
        tk = self.tokenizer
        full_prompt = [*self._context(prompt), *tk.sot_sequence, tk.no_timestamps, *prefix]
        max_new = int(seconds * opts.max_tokens_per_second) + 8
        max_length = min(len(full_prompt) + max_new, self.model.max_length)

        temperatures = opts.final_temperatures if final else (0.0,)
        best: Hypothesis | None = None
        for temperature in temperatures:
            kwargs: dict[str, object]
            if temperature > 0:
                kwargs = {"beam_size": 1, "sampling_topk": 0, "sampling_temperature": temperature}
            else:
                kwargs = {"beam_size": opts.beam_size if final else 1}
            result = self.model.model.generate(
                encoder_output,
                [full_prompt],
                max_length=max_length,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=not prefix,
                suppress_tokens=self._suppress,
                **kwargs,
            )[0]
            hyp = self._hypothesis(result, prefix, temperature, window)
            if hyp.rejected == "no_speech":
                best = hyp
                break
            needs_fallback = hyp.compression_ratio > opts.compression_ratio_threshold or (
                hyp.avg_logprob < opts.log_prob_threshold
            )
            if best is None or best.rejected or hyp.avg_logprob > best.avg_logprob:
                best = hyp
            if not needs_fallback:
                best = hyp
                break
        assert best is not None
        best = self._cut_repetition(best)
        if prompt and not prefix and best.ok and self.echoes_prompt(best.text, prompt):
            # decode again without the previous words: if the speaker really said them again,
            # the audio alone gives them back
            log.info("%s decode repeated its prompt (%r); decoding without it", kind, best.text)
            with self._stats_lock:
                self.stats.prompt_echoes += 1
            return self.decode(audio, prefix=prefix, final=final, busy=busy)
        best = self._cut_beyond_audio(best, encoder_output, content_frames, final)
        elapsed = time.perf_counter() - started
        self._count(seconds, elapsed, window)
        return _with_seconds(best, elapsed)

    def decode_partials(self, jobs: Sequence[PartialRequest]) -> list[Hypothesis]:
        """Decode several channels' partials in one model call (greedy, as `decode` does one).

        The windows are stacked into one encoder batch and decoded together; CTranslate2 needs
        <|startoftranscript|> at the same position in every prompt, so the previous-text part
        of each is cut to the shortest among them (partials only: finals keep all of it).
        Each result is the partial `decode` would give but for that shorter context.
        """
        if len(jobs) == 1:
            job = jobs[0]
            return [self.decode(job.audio, prompt=job.prompt, prefix=job.prefix)]
        import ctranslate2

        started = time.perf_counter()
        opts = self.options
        audios = [job.audio[: int(MAX_WINDOW_S * TARGET_RATE)] for job in jobs]
        seconds = [a.size / TARGET_RATE for a in audios]
        window = max(self.window_for(s) for s in seconds)
        prepared = [self._features(a, window) for a in audios]
        encoder_output = self.model.model.encode(
            ctranslate2.StorageView.from_array(np.stack([f for f, _ in prepared])), to_cpu=True
        )
        encoded = np.asarray(encoder_output)
        tk = self.tokenizer
        keep = min(len(job.prompt) for job in jobs)
        prompts = [
            [
                *self._context(job.prompt if keep else (), keep),
                *tk.sot_sequence,
                tk.no_timestamps,
                *job.prefix,
            ]
            for job in jobs
        ]
        budgets = [
            len(p) + int(s * opts.max_tokens_per_second) + 8
            for p, s in zip(prompts, seconds, strict=True)
        ]
        max_length = min(max(budgets), self.model.max_length)
        results = self.model.model.generate(
            encoder_output,
            prompts,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=not any(job.prefix for job in jobs),
            suppress_tokens=self._suppress,
            beam_size=1,
        )
        out = []
        for i, (job, result) in enumerate(zip(jobs, results, strict=True)):
            hyp = self._cut_repetition(self._hypothesis(result, job.prefix, 0.0, window))
            item = ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded[i : i + 1]))
            out.append(self._cut_beyond_audio(hyp, item, prepared[i][1], final=False))
        elapsed = time.perf_counter() - started
        self._count(sum(seconds), elapsed, window, decodes=len(jobs))
        return [_with_seconds(hyp, elapsed) for hyp in out]

    def echoes_prompt(self, text: str, prompt: list[int] | tuple[int, ...]) -> bool:
        """Whether `text` opens by repeating the end of the prompt (the channel's previous
        words): a known Whisper failure on a short utterance in a cut window, which then
        transcribes the previous sentence again before the new one."""
        if not prompt or not text:
            return False
        said = [_norm_word(w) for w in self.tokenizer.decode(list(prompt)).split()]
        heard = [_norm_word(w) for w in text.split()]
        for k in range(min(len(said), len(heard)), ECHO_MIN_WORDS - 1, -1):
            if heard[:k] == said[-k:]:
                return True
        return False

    def _align(
        self, tokens: tuple[int, ...], encoder_output: object, num_frames: int
    ) -> tuple[WordTiming, ...]:
        from faster_whisper.transcribe import merge_punctuations

        if not tokens:
            return ()
        alignment = self.model.find_alignment(
            self.tokenizer, [list(tokens)], encoder_output, num_frames
        )[0]
        merge_punctuations(alignment, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)
        words = []
        for item in alignment:
            word = str(item["word"])
            if not word.strip():
                continue
            words.append(
                WordTiming(
                    word=word.strip(),
                    start=round(float(item["start"]), 3),
                    end=round(float(item["end"]), 3),
                    probability=round(float(item["probability"]), 4),
                )
            )
        return tuple(words)

    def warmup(self) -> float:
        """Run every encoder window once so the first call pays no first-use cost."""
        started = time.perf_counter()
        rng = np.random.default_rng(0)
        opts = self.options
        for window in sorted(
            set(opts.windows) | set(opts.final_windows) | set(opts.final_windows_busy)
        ):
            noise = (rng.standard_normal(int(window * TARGET_RATE)) * 0.01).astype(np.float32)
            self.decode(noise, final=True)
        self.stats = EngineStats()
        return time.perf_counter() - started


def lower_priority(nice: int) -> None:
    """Add `nice` to the calling thread's niceness (Linux: per thread); elsewhere a no-op."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + nice, 19))
    except OSError as exc:  # pragma: no cover - a sandbox without the call
        log.warning("could not lower the priority of the decode threads: %s", exc)


def _in_lowered_thread(fn: Callable[[], T], nice: int) -> T:
    box: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        lower_priority(nice)
        try:
            box.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="callcue-whisper-load")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


def _rejected(hyp: Hypothesis, reason: str) -> Hypothesis:
    return Hypothesis(
        text="",
        tokens=(),
        avg_logprob=hyp.avg_logprob,
        no_speech_prob=hyp.no_speech_prob,
        compression_ratio=hyp.compression_ratio,
        temperature=hyp.temperature,
        window_s=hyp.window_s,
        rejected=reason,
    )


def _replace_text(hyp: Hypothesis, text: str, tokens: list[int]) -> Hypothesis:
    return Hypothesis(
        text=text,
        tokens=tuple(tokens),
        avg_logprob=hyp.avg_logprob,
        no_speech_prob=hyp.no_speech_prob,
        compression_ratio=compression_ratio(text),
        temperature=hyp.temperature,
        window_s=hyp.window_s,
    )


def _with_words(hyp: Hypothesis, words: tuple[WordTiming, ...]) -> Hypothesis:
    return Hypothesis(
        text=hyp.text,
        tokens=hyp.tokens,
        words=words,
        avg_logprob=hyp.avg_logprob,
        no_speech_prob=hyp.no_speech_prob,
        compression_ratio=hyp.compression_ratio,
        temperature=hyp.temperature,
        window_s=hyp.window_s,
        rejected=hyp.rejected,
    )


def _with_seconds(hyp: Hypothesis, seconds: float) -> Hypothesis:
    from dataclasses import replace

    return replace(hyp, seconds=round(seconds, 4))
