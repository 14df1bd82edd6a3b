"""One Whisper engine shared by every call: cut encoder windows, guarded decoding, word timings."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

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
    language: str = "en"  # what it was decoded as (detected, where `auto` was asked for)
    # how likely the detection found `language` (1.0 where it was given, not detected)
    language_probability: float = 1.0

    @property
    def ok(self) -> bool:
        return self.rejected is None and bool(self.text)


@dataclass(frozen=True, slots=True)
class PartialRequest:
    """One channel's partial in a batch (see `WhisperEngine.decode_partials`)."""

    audio: Float32Array
    prompt: tuple[int, ...] = ()
    prefix: tuple[int, ...] = ()
    language: str | None = None  # None: the engine's; "auto": detected


@dataclass
class EngineStats:
    decodes: int = 0
    audio_seconds: float = 0.0
    busy_seconds: float = 0.0
    prompt_echoes: int = 0  # decodes that repeated their prompt and were done again without it
    # finals that looped (`loops`) with previous words as prompt or context: done again without
    prompt_loops: int = 0
    tails_recovered: int = 0  # finals that stopped short of their audio and were continued
    windows: dict[float, int] = field(default_factory=dict)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


# languages written without spaces between words (faster-whisper splits them by characters)
NO_SPACES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})


def languages() -> tuple[str, ...]:
    """Every language code Whisper knows ("en", "de", "ja", ...)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return tuple(_LANGUAGE_CODES)


_WORD = re.compile(r"\S+")
_NOT_WORD = re.compile(r"[^\w']+")
TAIL_S = 1.0  # a final whose last word ends this long before its audio is continued
ECHO_MIN_WORDS = 4  # a repeated opening this long (or longer) counts as an echo of the prompt


def norm_word(word: str) -> str:
    """A word as compared across hypotheses: lower case, punctuation gone."""
    return _NOT_WORD.sub("", word.lower())


# a letter said alone: a capital ("L", "L.", "T-", "E,"; not the pronoun "I" bare or with a
# comma, "I, I think"), or a small one with a dot or hyphen ("c."; not French "il y a")
_LETTER = re.compile(r"^(?:[A-HJ-Z][.,\-]?|I[.\-]|[a-z][.\-])$")
_LETTERS = re.compile(r"^[A-Za-z](?:[.\-][A-Za-z])+[.,\-]?$")  # "T.I.", "T-I-L-L-E."
_ABBREVIATIONS = frozenset(
    ["a.m", "p.m", "u.s", "u.s.a", "u.k", "e.g", "i.e", "d.c", "l.a", "i-i"]
)  # not spelling ("I-I": a stutter)


def _spelled(word: str) -> bool:
    return bool(_LETTERS.match(word)) and (word.lower().rstrip(",.-") not in _ABBREVIATIONS)


def without_spelling(words: list[str]) -> list[str]:
    """`words` less what spells something out letter by letter ("T.I. L. L. E.",
    "T-I-L-L-E.", "C M"; a lone capital, "I" and small letters without a dot stay). Given as
    a prompt or left context, spelled
    letters lead Whisper to hear letters in whatever follows ("Sure, this one was a 2018"
    came back as "L. E. L. E. L." after "T.I. L. L. E."), and the loop feeds the next
    prompt."""
    drop: set[int] = set()
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and (_LETTER.match(words[j]) or _spelled(words[j])):
            j += 1
        if j - i >= 2 or (j > i and _spelled(words[i])):
            drop.update(range(i, j))
        i = max(j, i + 1)
    return [w for k, w in enumerate(words) if k not in drop]


def spells(text: str) -> bool:
    """Whether `text` spells something out letter by letter (see `without_spelling`)."""
    words = text.split()
    return len(without_spelling(words)) < len(words)


def loops(text: str) -> bool:
    """Whether `text` is a few words over and over: four or more words all the same ("L. L.
    L. L."), or five or more of which at most two, or a third, are distinct ("L. E. L. E.
    L.", "T. I. L. L. E. L. E. L. L. E. L. L."). Whisper falls into this after previous
    words that spelled something out, given as its prompt or left context, and the loop then
    feeds the next finals' prompts. (A loop that runs to the end is cut by
    `cut_repetition`; this one need not.)"""
    words = [w for w in (norm_word(w) for w in text.split()) if w]
    if len(words) < 4:
        return False
    distinct = len(set(words))
    return distinct == 1 or (len(words) >= 5 and distinct <= max(2, len(words) / 3))


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
        self.multilingual = multilingual = bool(self.model.model.is_multilingual)
        self.tokenizer = Tokenizer(
            self.model.hf_tokenizer,
            multilingual,
            task="transcribe",
            language=opts.language if multilingual else "en",
        )
        self._tokenizers = {self.tokenizer.language_code: self.tokenizer}
        self._tokenizers_lock = threading.Lock()
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
    def tokenizer_for(self, language: str) -> Any:
        """The tokenizer whose start sequence names `language` (and splits its words)."""
        found = self._tokenizers.get(language)
        if found is not None:
            return found
        if not self.multilingual:
            raise ValueError(
                f"Whisper {self.options.model} is English-only; language {language!r} needs a "
                "multilingual model (CALLCUE_FINAL_MODEL=embedded:base)"
            )
        from faster_whisper.tokenizer import Tokenizer

        with self._tokenizers_lock:
            tokenizer = Tokenizer(
                self.model.hf_tokenizer, True, task="transcribe", language=language
            )
            self._tokenizers[language] = tokenizer
        return tokenizer

    def _languages_of(
        self, requested: Sequence[str | None], encoder_output: object
    ) -> list[tuple[str, float]]:
        """The language of each item of an encoder batch, and how likely: as requested (1.0),
        the engine's own for None, detected from the audio for "auto" (its probability)."""
        default = self.tokenizer.language_code
        out = [(default if r is None else r, 1.0) for r in requested]
        if any(r == "auto" for r, _ in out):
            if not self.multilingual:
                out = [(default if r == "auto" else r, 1.0) for r, _ in out]
            else:
                detected = self.model.model.detect_language(encoder_output)
                for i, (r, _) in enumerate(out):
                    if r == "auto":
                        token, probability = detected[i][0]
                        out[i] = (str(token)[2:-2], float(probability))  # "<|de|>" -> "de"
        return out

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

    def _without_context(self, hyp: Hypothesis, n: int) -> Hypothesis:
        """`hyp` less its first `n` tokens (the forced context)."""
        if hyp.rejected is not None:
            return hyp
        tokens = hyp.tokens[n:]
        return replace(hyp, text=self.tokenizer.decode(list(tokens)).strip(), tokens=tokens)

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
        self,
        best: Hypothesis,
        encoder_output: object,
        content_frames: int,
        final: bool,
        context: tuple[int, ...] = (),
        context_s: float = 0.0,
    ) -> Hypothesis:
        """Words aligned at the very end of the audio were invented after it ended (a short
        window lets Whisper "continue" the utterance): cut them. Finals keep the timings.
        `context`: tokens forced before `best.tokens` for the first `context_s` seconds of the
        audio; they are aligned with it, and the timings are given from `context_s` on."""
        if not best.ok:
            return best
        tk = self.tokenizer_for(best.language)
        full = (*context, *best.tokens)
        aligned = self._align_tokens(full, encoder_output, content_frames, tk)
        # each word after the context, moved to the utterance's time, with where its tokens
        # start and end in `full`; a word that began in the context ("then" + "?") is the
        # context's, its punctuation too
        words: list[WordTiming] = []
        starts: list[int] = []
        ends: list[int] = []
        seen = 0
        for word, n_tokens in aligned:
            seen += n_tokens
            if seen - n_tokens < len(context) or word is None:
                continue
            starts.append(seen - n_tokens)
            words.append(
                WordTiming(
                    word=word.word,
                    start=round(max(word.start - context_s, 0.0), 3),
                    end=round(max(word.end - context_s, 0.0), 3),
                    probability=word.probability,
                )
            )
            ends.append(seen)
        content_end = content_frames / FRAMES_PER_SECOND - 0.03 - context_s
        keep = len(words)
        while keep and words[keep - 1].start >= content_end:
            keep -= 1
        if not words and not context:
            return best  # nothing could be aligned: the text stands, untimed
        if not keep:
            return _rejected(best, "beyond_audio")
        if keep < len(words) or (
            context and (starts[0] > len(context) or ends[keep - 1] < len(full))
        ):
            tokens = full[starts[0] : ends[keep - 1]]
            best = _replace_text(best, tk.decode(list(tokens)).strip(), list(tokens))
        return _with_words(best, tuple(words[:keep])) if final else best

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
        context: tuple[int, ...] = (),
        context_s: float = 0.0,
        language: str | None = None,
        recover: int = 2,
        beam_size: int | None = None,
    ) -> Hypothesis:
        """Decode one utterance (≤ 30 s). Partials: greedy, no fallback, no word timings.

        `context` (finals): the audio opens with `context_s` seconds already transcribed as
        these tokens (the end of the channel's previous final; none for silence put before
        it); they are forced, so the model hears the utterance with what led to it, and only
        the words after them are returned, timed from `context_s`. `language`: a Whisper
        language code, "auto" (detected from this audio) or None (the engine's own, English
        unless configured otherwise). `recover`: how many times a final that stops short of
        its audio is continued (`_recover_tail`). `beam_size`: a final's beam, if not the
        engine's own (`RecognitionScheduler` asks for 1 when a final is late)."""
        import ctranslate2

        started = time.perf_counter()
        opts = self.options
        kind = "final" if final else "partial"
        given, given_context_s = audio, context_s  # for the decodes done again below
        audio = audio[: int(MAX_WINDOW_S * TARGET_RATE)]
        seconds = audio.size / TARGET_RATE
        window = self.window_for(seconds, final=final, busy=busy)
        features, content_frames = self._features(audio, window)
        encoder_output = self.model.model.encode(
            ctranslate2.StorageView.from_array(features[None]), to_cpu=False
        )
        language, sure = self._languages_of([language], encoder_output)[0]
        tk = self.tokenizer_for(language)
        forced = [*context, *prefix]
        full_prompt = [*self._context(prompt), *tk.sot_sequence, tk.no_timestamps, *forced]
        max_new = int(seconds * opts.max_tokens_per_second) + 8
        max_length = min(len(full_prompt) + max_new, self.model.max_length)

        temperatures = opts.final_temperatures if final else (0.0,)
        best: Hypothesis | None = None
        for temperature in temperatures:
            kwargs: dict[str, object]
            if temperature > 0:
                kwargs = {"beam_size": 1, "sampling_topk": 0, "sampling_temperature": temperature}
            else:
                kwargs = {"beam_size": (beam_size or opts.beam_size) if final else 1}
            result = self.model.model.generate(
                encoder_output,
                [full_prompt],
                max_length=max_length,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=not forced,
                suppress_tokens=self._suppress,
                **kwargs,
            )[0]
            hyp = replace(self._hypothesis(result, forced, temperature, window), language=language)
            if context:
                hyp = self._without_context(hyp, len(context))
            if hyp.rejected == "no_speech":
                best = hyp
                break
            # Only a text that loops is decoded again by sampling. Whisper also resamples a
            # text it is unsure of (`log_prob_threshold`), but sampling draws at random, so the
            # same recording came out differently from run to run, and on the calls and files
            # here the resampled text never came out closer to offline decoding (README
            # "Benchmarks"); the unsure text is kept.
            needs_fallback = hyp.compression_ratio > opts.compression_ratio_threshold
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
            again = self.decode(
                given,
                prefix=prefix,
                final=final,
                busy=busy,
                context=context,
                context_s=given_context_s,
                language=language,
                recover=recover,
                beam_size=beam_size,
            )
            return _with_seconds(
                replace(again, language_probability=sure), time.perf_counter() - started
            )
        best = self._cut_beyond_audio(
            best, encoder_output, content_frames, final, context, context_s
        )
        if context and not best.ok and best.rejected != "no_speech":
            # no words after the context ("?", or the model took the context for the whole
            # audio): the utterance alone
            log.debug("final with context gave %s; decoding it alone", best.rejected or "nothing")
            skip = int(given_context_s * TARGET_RATE)
            alone = self.decode(
                given[skip:],
                prompt=prompt,
                prefix=prefix,
                final=final,
                busy=busy,
                language=language,
                recover=recover,
                beam_size=beam_size,
            )
            return _with_seconds(
                replace(alone, language_probability=sure), time.perf_counter() - started
            )
        elapsed = time.perf_counter() - started
        self._count(seconds, elapsed, window)
        if final and recover > 0:
            skip = int(given_context_s * TARGET_RATE)
            best = self._recover_tail(best, given[skip:], prompt, busy, recover, beam_size)
        if final and (prompt or context) and not prefix and best.ok and loops(best.text):
            # the previous words led Whisper into a loop: the utterance alone, no prompt (kept
            # if it heard words and no loop: "No, no, no, no." said so comes back the same)
            alone = self.decode(
                given[int(given_context_s * TARGET_RATE) :],
                final=final,
                busy=busy,
                language=language,
                recover=recover,
                beam_size=beam_size,
            )
            if alone.ok and not loops(alone.text):
                log.info(
                    "final decode looped (%r); decoded again without the previous words", best.text
                )
                with self._stats_lock:
                    self.stats.prompt_loops += 1
                return _with_seconds(
                    replace(alone, language_probability=sure), time.perf_counter() - started
                )
        best = replace(best, language_probability=sure)
        return _with_seconds(best, time.perf_counter() - started)

    def _recover_tail(
        self,
        best: Hypothesis,
        utterance: Float32Array,
        prompt: list[int] | tuple[int, ...],
        busy: bool,
        recover: int,
        beam_size: int | None = None,
    ) -> Hypothesis:
        """A final whose words stop more than `TAIL_S` before its audio does ended early
        (Whisper emits its end-of-text after a few words of a longer turn: "The first
        availability we have is" of a 7 s sentence): the rest is decoded, with the last words
        heard as its left context, and joined on."""
        if not (best.ok and best.words):
            return best
        last_end = best.words[-1].end
        length = utterance.size / TARGET_RATE
        if length - last_end <= TAIL_S:
            return best
        kept = [w for w in best.words if w.start >= last_end - 3.0]
        lo = max(kept[0].start - 0.1, 0.0) if kept else last_end
        joiner = "" if best.language in NO_SPACES else " "
        context = tuple(
            self.encode_text(text_from(best.text, best.words, len(best.words) - len(kept)))
        )
        cut = min(last_end + 0.05, length)
        rest = self.decode(
            utterance[int(lo * TARGET_RATE) :],
            prompt=prompt,
            final=True,
            busy=busy,
            context=context,
            context_s=cut - lo,
            language=best.language,
            recover=recover - 1,
            beam_size=beam_size,
        )
        said = (*prompt, *self.encode_text(best.text))
        if (
            not rest.ok
            or rest.avg_logprob < self.options.log_prob_threshold
            or rest.no_speech_prob > self.options.no_speech_threshold
            or self.echoes_prompt(rest.text, said)
        ):
            # unsure, or what was said before once more: the tail was noise or a pause
            return best
        with self._stats_lock:
            self.stats.tails_recovered += 1
        words = tuple(
            WordTiming(w.word, round(w.start + cut, 3), round(w.end + cut, 3), w.probability)
            for w in rest.words
        )
        log.debug("final continued after %.2fs of %.2fs: %r", last_end, length, rest.text)
        return replace(
            best,
            text=f"{best.text}{joiner}{rest.text}",
            tokens=best.tokens + rest.tokens,
            words=best.words + words,
            compression_ratio=compression_ratio(f"{best.text}{joiner}{rest.text}"),
        )

    def decode_partials(self, jobs: Sequence[PartialRequest]) -> list[Hypothesis]:
        """Decode several channels' partials in one model call (greedy, as `decode` does one).

        The windows are stacked into one encoder batch and decoded together; CTranslate2 needs
        <|startoftranscript|> at the same position in every prompt, so the previous-text part
        of each is cut to the shortest among them (partials only: finals keep all of it).
        Each result is the partial `decode` would give but for that shorter context.
        """
        if len(jobs) == 1:
            job = jobs[0]
            return [
                self.decode(job.audio, prompt=job.prompt, prefix=job.prefix, language=job.language)
            ]
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
        langs = self._languages_of([job.language for job in jobs], encoder_output)
        tks = [self.tokenizer_for(lang) for lang, _ in langs]
        keep = min(len(job.prompt) for job in jobs)
        # every start sequence has the same length (with a language token or without)
        prompts = [
            [
                *self._context(job.prompt if keep else (), keep),
                *tk.sot_sequence,
                tk.no_timestamps,
                *job.prefix,
            ]
            for job, tk in zip(jobs, tks, strict=True)
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
            hyp = replace(
                self._hypothesis(result, job.prefix, 0.0, window),
                language=langs[i][0],
                language_probability=langs[i][1],
            )
            hyp = self._cut_repetition(hyp)
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
        said = [norm_word(w) for w in self.tokenizer.decode(list(prompt)).split()]
        heard = [norm_word(w) for w in text.split()]
        for k in range(min(len(said), len(heard)), ECHO_MIN_WORDS - 1, -1):
            if heard[:k] == said[-k:]:
                return True
        return False

    def _align_tokens(
        self, tokens: tuple[int, ...], encoder_output: object, num_frames: int, tk: Any = None
    ) -> list[tuple[WordTiming | None, int]]:
        """Each aligned word with the number of tokens it took (None: tokens of no word)."""
        from faster_whisper.transcribe import merge_punctuations

        if not tokens:
            return []
        alignment = self.model.find_alignment(
            tk or self.tokenizer, [list(tokens)], encoder_output, num_frames
        )[0]
        merge_punctuations(alignment, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)
        words: list[tuple[WordTiming | None, int]] = []
        for item in alignment:
            word = str(item["word"])
            n_tokens = len(item["tokens"])
            if not word.strip():
                words.append((None, n_tokens))
                continue
            timing = WordTiming(
                word=word.strip(),
                start=round(float(item["start"]), 3),
                end=round(float(item["end"]), 3),
                probability=round(float(item["probability"]), 4),
            )
            words.append((timing, n_tokens))
        return words

    def warmup(self, *, partials: bool = True, finals: bool = True) -> float:
        """Run every encoder window once (of partials, finals or both) so the first call pays
        no first-use cost."""
        started = time.perf_counter()
        rng = np.random.default_rng(0)
        opts = self.options
        windows = set(opts.windows) if partials else set()
        if finals:
            windows |= set(opts.final_windows) | set(opts.final_windows_busy)
        for window in sorted(windows):
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


def text_from(text: str, words: tuple[WordTiming, ...], first: int) -> str:
    """`text` from its word number `first` on, as written (timed words lose the spacing of
    "d'où" or of languages without spaces): each word is found from the end of the text."""
    pos = len(text)
    for word in reversed(words[first:]):
        found = text.rfind(word.word, 0, pos)
        if found < 0:  # the timed words were rewritten: fall back to them
            return " ".join(w.word for w in words[first:])
        pos = found
    return text[pos:]


def _rejected(hyp: Hypothesis, reason: str) -> Hypothesis:
    return replace(hyp, text="", tokens=(), words=(), rejected=reason)


def _replace_text(hyp: Hypothesis, text: str, tokens: list[int]) -> Hypothesis:
    return replace(
        hyp,
        text=text,
        tokens=tuple(tokens),
        words=(),
        compression_ratio=compression_ratio(text),
        rejected=None,
    )


def _with_words(hyp: Hypothesis, words: tuple[WordTiming, ...]) -> Hypothesis:
    return replace(hyp, words=words)


def _with_seconds(hyp: Hypothesis, seconds: float) -> Hypothesis:
    return replace(hyp, seconds=round(seconds, 4))
