"""Streaming recognition of one channel: VAD-gated utterances, stable partials, timed finals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures import Future as ThreadFuture
from dataclasses import dataclass

import numpy as np

from audio.codec import TARGET_RATE, Float32Array
from audio.vad import WINDOW, SpeechEnded, SpeechStarted, VadSegmenter
from models.revise import AudioSpool, Reviser, Revision, assign, changed_text
from models.scheduler import BUSY, OVERLOADED, RecognitionJob, RecognitionScheduler
from models.whisper import (
    Hypothesis,
    WhisperEngine,
    WordTiming,
    norm_word,
    spells,
    text_from,
    without_spelling,
)

log = logging.getLogger("callcue.asr")


@dataclass(frozen=True, slots=True)
class StreamingOptions:
    """Cadence and segmentation of one channel's recognition."""

    partials: bool = True
    partial_interval_ms: int = 400  # new audio between two partial decodes
    min_partial_ms: int = 300  # speech needed before the first partial
    max_utterance_s: float = 10.0  # a final is forced at the quietest point before this
    pad_ms: int = 200  # audio kept after speech ends
    # The most audio kept before the VAD's start of speech. An utterance begins `pad_ms`
    # before the speech, or before the slow rise into it (windows of at least ONSET_SHARE of
    # the VAD's threshold just before it), at most this far back, never before the previous
    # utterance's end: on 8 kHz calls Silero's probability often stays under its threshold
    # for the first 250-500 ms of a turn's first word, and an utterance begun 200 ms before
    # the start it sees began inside that word ("Anything else I can help you with" came out
    # as "I can help you with"). Only there: 500 ms before every turn pulled Whisper's first
    # word times back into the silence (README "Benchmarks").
    speech_lead_ms: int = 500
    # Start decoding the final this long into a pause, before the VAD hangover confirms the
    # end of the utterance; if speech resumes the early result is thrown away.
    speculative_final_ms: int = 200
    prompt_words: int = 60  # previous finals of the channel given to Whisper as context
    # A final is decoded with up to this much of the channel's previous final before it (its
    # audio, its words forced), where the utterance's encoder window has room for it: a short
    # turn is heard with what led to it ("Ask not" alone came back as "IS NOT!"). 0: off.
    context_s: float = 5.0
    # Silence put before a channel's first utterance when it begins within `pad_ms` of the
    # channel's start (a call's first words, with little or no audio before them): without it
    # Whisper base often stopped after a few words ("She had a dark suit" of an 11-word
    # sentence at 8 kHz). Only there: before every final it cost accuracy on real calls.
    lead_ms: int = 300
    # A pause after words that leave a sentence open ("The first availability we have is",
    # "because about", "and I.") ends the utterance only once it has lasted this long: the
    # next words, if they come, are decoded with it instead of as a fragment of their own.
    # Known from the final's text, decoded as usual. 0: off (the default: on the real calls
    # here it left accuracy where it was and cost final latency, README "Benchmarks").
    hold_open_ms: int = 0
    # A long utterance's shorter pause (`VadOptions.long_min_silence_ms`, after
    # `long_speech_ms` of speech) ends it only where the early final's text closes a sentence:
    # an open text ("and I wanted to give") goes on with the speech after the pause, as
    # `hold_open_ms` does, until the pause reaches the VAD's full hangover. Off by default:
    # on the real calls here it made the live finals less like offline base (README).
    sentence_pauses: bool = False
    # Recordings: wait for the early final's text where the choice needs it, so the same
    # audio is always cut the same way. Live: never hold the audio up (the choice is made
    # when the text comes, and a turn taken for one is split again if its text was closed).
    wait_for_text: bool = False


@dataclass(frozen=True, slots=True)
class Partial:
    utterance: int
    start: float
    end: float
    text: str
    stable: str  # prefix agreed by two consecutive hypotheses: it will not change again
    received_at: float = 0.0  # monotonic time the last audio it covers had arrived


@dataclass(frozen=True, slots=True)
class Final:
    utterance: int
    start: float
    end: float
    text: str
    words: tuple[WordTiming, ...]
    avg_logprob: float
    no_speech_prob: float
    received_at: float = 0.0  # monotonic time the audio of its last word had arrived
    language: str = "en"


@dataclass(frozen=True, slots=True)
class RevisedFinal:
    """A final's text as offline decoding of its stretch of the channel heard it (words timed
    from the start of the call); sent only where it differs from the live text."""

    utterance: int
    text: str
    words: tuple[WordTiming, ...]
    language: str


# a channel's language ("auto") is fixed by the first final whose detection is at least this
# likely, or after this many finals that were not (as what their detections sum up to)
LANGUAGE_SURE = 0.5
UNSURE_FINALS = 3
# the longest stretch of a channel held for revision (in its temporary file, 16-bit: 19 MB),
# whatever the setting
LONGEST_STRETCH_S = 600.0
# prompt tokens the vocabulary may take (Whisper keeps 223 of the prompt; the channel's
# previous words, `prompt_words`, take about 80)
VOCABULARY_TOKENS = 100
# Speech probability, as a share of the VAD's threshold, that counts as the slow start of a
# turn just before the threshold: on the 8 kHz calls here Silero stays at 0.2-0.45 through the
# first 250-500 ms of a turn's first word (`StreamingOptions.speech_lead_ms`), the default
# threshold being 0.5; a threshold raised for noisy lines raises it with it
ONSET_SHARE = 0.4


# What ends a sentence in the scripts Whisper writes (Latin, CJK, Arabic, Devanagari,
# Armenian, Ethiopic, Burmese, Greek), and the closing quotes and brackets after it
_ENDS = ".?!。？！｡؟۔।॥։።။\u037e"
_CLOSERS = "\"'”’»」』)]"
# any punctuation: a text with none (Thai, unpunctuated Chinese) says nothing about its end
_MARKS = _ENDS + ",;:，、；：،"
# English words a sentence does not end on: articles, possessives, conjunctions and
# prepositions that need what follows ("a lot of your.", "That's my.", "and I.")
_OPEN_WORDS = frozenset(
    {"a", "an", "the", "my", "your", "our", "their", "its", "and", "or", "but", "because"}
    | {"than", "of", "for", "with", "from", "at", "into", "i", "we"}
)


def leaves_open(text: str, language: str) -> bool:
    """Whether a final's text stops in the middle of a sentence: no sentence-ending mark
    ("You can", "Well, I...", "so…"), or (English) a statement whose last word no sentence
    ends on ("and I."; a question or exclamation is taken as complete)."""
    text = text.rstrip().rstrip(_CLOSERS).rstrip()
    if not text:
        return False
    if text[-1] not in _ENDS or text.endswith(".."):
        return True
    if language != "en" or text[-1] != ".":
        return False
    return text.split()[-1].strip(_ENDS + ",;:" + _CLOSERS).lower() in _OPEN_WORDS


@dataclass(slots=True)
class _Held:
    """An utterance whose speech has ended, waiting for its early final's text: closed, it
    is final; open, it is final only once the pause has lasted `open_ms` (`hold_open_ms`,
    or the full hangover after a long utterance's shorter pause), and speech before that
    continues it. `resumed`: speech came back before the text did (live), so
    the utterance goes on for now, and is cut again at `resumed` if the text was closed."""

    utt: int
    start: int
    end: int
    silence: int
    future: ThreadFuture[Hypothesis | None]
    open_ms: int  # an open text waits this long into the pause for speech to continue it
    short: bool = False  # ended by a long utterance's shorter pause (`sentence_pauses`)
    audio: Float32Array | None = None  # what was decoded (the next final's left context)
    resumed: int | None = None


def agreed_prefix(a: list[str], b: list[str]) -> int:
    """Length of the common word prefix of two hypotheses (LocalAgreement-2)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if norm_word(x) != norm_word(y):
            break
        n += 1
    return n


class StreamingTranscriber:
    """Recognizes one channel of one call.

    `push` audio as it arrives; `on_partial` and `on_final` are called on the event loop.
    Finals come out in utterance order. Partials are decoded with the agreed words forced
    as a prefix, so the stable part of a partial never changes until its final replaces it.
    Finals are decoded by `final_engine` (the scheduler's, the accurate model) from the
    audio alone: nothing of the partials is forced into them.
    """

    def __init__(
        self,
        key: str,
        engine: WhisperEngine,
        scheduler: RecognitionScheduler,
        vad: VadSegmenter,
        executor: Executor,
        on_partial: Callable[[Partial], None],
        on_final: Callable[[Final], None],
        options: StreamingOptions | None = None,
        on_error: Callable[[str, int, BaseException], None] | None = None,
        vocabulary: tuple[str, ...] = (),
        language: str = "en",
        reviser: Reviser | None = None,
        on_revised: Callable[[RevisedFinal], None] | None = None,
    ) -> None:
        self.key = key
        self.engine = engine  # partials; finals are tokenized for the scheduler's final engine
        self.final_engine = scheduler.final_engine
        # "en", a Whisper language code, or "auto" until a final's detection is sure of one
        # (LANGUAGE_SURE), or UNSURE_FINALS finals were not: then it is fixed
        self.language = language
        self._unsure: dict[str, float] = {}  # language → summed probability, while unsure
        self._unsure_finals = 0
        self._misheard = False  # finals were heard as another language than the one fixed
        self.scheduler = scheduler
        self.vad = vad
        self.executor = executor
        self.on_partial = on_partial
        self.on_final = on_final
        # (kind "final"/"partial", utterance, exception) when a decode fails; the stream goes on
        self.on_error = on_error
        self.options = options or StreamingOptions()
        # words the call is likely to contain, opening every prompt (as faster-whisper's
        # `hotwords` do): as many as VOCABULARY_TOKENS holds, in the order given
        self.vocabulary = vocabulary
        self._vocabulary_tokens: dict[int, tuple[int, ...]] = {}
        self._pad = self.options.pad_ms * TARGET_RATE // 1000
        self._lead = self.options.speech_lead_ms * TARGET_RATE // 1000
        # audio kept between utterances (and a VAD window: speech it hears in the next push
        # may start in audio already pushed)
        self._keep = max(self._pad, self._lead) + WINDOW
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0
        self.total = 0  # samples pushed
        self._utt_id = 0
        self._utt_start: int | None = None  # None: not inside an utterance
        # first sample an utterance may begin at: where the last final's audio (or a dropped
        # blip's) ended
        self._floor = 0
        self._speech_at = 0  # where the VAD heard the current utterance's speech begin
        self._last_partial_at = 0
        self._partial_no = 0
        self._partial_shown = -1  # last utterance that had a partial on screen
        self._partial_number = 0  # number of the newest partial shown
        self._prev_words: list[str] = []
        self._stable: list[str] = []  # agreed words, forced as the next partial's prefix
        self._shown_stable = ""  # the stable text last sent: a sent partial never takes it back
        self._history: list[str] = []
        self._final_audio: dict[int, Float32Array] = {}  # utterance -> audio of its final job
        # audio, words (timed from its start) and text of the last final: left context
        self._last_final: tuple[Float32Array, tuple[WordTiming, ...], str] | None = None
        self._finals: asyncio.Queue[tuple[int, int, int, asyncio.Future[Hypothesis | None]] | None]
        self._finals = asyncio.Queue()
        self._emitter: asyncio.Task[None] | None = None
        self._arrivals: deque[tuple[int, float]] = deque()  # (total samples, monotonic time)
        self.partials_skipped = 0
        # (utterance, silence start, end sample, future) of an early final decode
        self._speculative: tuple[int, int, int, ThreadFuture[Hypothesis | None]] | None = None
        self._submitted = 0
        self._emitted = 0
        self._settled = asyncio.Event()
        self._settled.set()
        self.speculative_used = 0
        self.speculative_wasted = 0
        self._held: _Held | None = None  # an utterance waiting for its text (`_Held`)
        self._continued = False  # the utterance went on after a pause that left it open
        self._quiet: list[tuple[int, int]] = []  # (start, end) samples of its pauses
        self.held_joined = 0  # utterances continued after such a pause
        self._closed = False
        # revision (models/revise.py): the channel's audio not yet revised (in a temporary
        # file) and the finals emitted in it: (utterance, start, end sample, text)
        self.reviser = reviser if on_revised is not None else None
        self.on_revised = on_revised
        self._spool = AudioSpool()
        self._rev_finals: list[tuple[int, int, int, str]] = []
        self._rev_prompt = ""  # the live text before the stretch (faster-whisper's prompt)
        self._revisions: list[asyncio.Future[Revision]] = []
        self.revisions_skipped = 0

    @property
    def utterance_start(self) -> float | None:
        """The second (from the channel's start) where the utterance being heard began; None
        between utterances."""
        return None if self._utt_start is None else self._utt_start / TARGET_RATE

    # -- input --------------------------------------------------------------------------
    async def push(self, samples: Float32Array) -> None:
        if self._closed or samples.size == 0:
            return
        if self._emitter is None:
            self._emitter = asyncio.create_task(self._emit_finals(), name=f"finals:{self.key}")
        self._buf = np.concatenate([self._buf, samples]) if self._buf.size else samples.copy()
        self.total += samples.size
        if self.reviser is not None:
            self._keep_for_revision(samples)
        self._arrivals.append((self.total, time.monotonic()))
        while len(self._arrivals) > 2 and self._arrivals[0][0] < self._buf_start - TARGET_RATE:
            self._arrivals.popleft()
        loop = asyncio.get_running_loop()
        events = await loop.run_in_executor(self.executor, self.vad.push, samples)
        for event in events:
            if isinstance(event, SpeechStarted):
                if self._held is not None and await self._resume_held(event.sample):
                    continue
                self._begin(self._lead_in(event.sample), event.sample)
            elif isinstance(event, SpeechEnded) and self._utt_start is not None:
                if self._held is not None:  # (live) continued before its text came
                    self._settle_held()
                speech_ms = (event.end - event.start) * 1000 // TARGET_RATE
                end = min(event.end + self._pad, self.total)
                open_ms, short = self.options.hold_open_ms, False
                # (with room left before the longest utterance: a join the cut would undo
                # again at its quietest point only costs a decode)
                hangover = self.vad.options.min_silence_ms * TARGET_RATE // 1000
                room = (self.options.max_utterance_s - 3) * TARGET_RATE - hangover
                if (
                    event.short
                    and self.options.sentence_pauses
                    and self.options.hold_open_ms == 0  # (else held as `hold_open_ms` says)
                    and event.end - self._utt_start < room
                ):
                    open_ms, short = self.vad.options.min_silence_ms, True
                if (
                    speech_ms >= self.vad.options.min_speech_ms
                    or self._partial_shown == self._utt_id
                    or self._continued
                ):
                    self._finalize(
                        self._utt_start, end, silence=event.end, open_ms=open_ms, short=short
                    )
                else:
                    self._drop_speculative()
                    self._utt_start = None
                    self._floor = end
        if self._held is not None:
            self._check_held()
        if self._utt_start is not None and self.vad.in_speech:
            self._maybe_speculate()
            self._maybe_cut_or_partial()
        self._trim()

    def _maybe_speculate(self) -> None:
        assert self._utt_start is not None
        silence = self.vad.silence_start
        spec = self._speculative
        if spec is not None and (silence is None or spec[1] != silence or spec[0] != self._utt_id):
            self._drop_speculative()  # speech resumed: that early final is stale
            spec = None
        if silence is None or spec is not None or self.options.speculative_final_ms <= 0:
            return
        if self.total - silence < self.options.speculative_final_ms * TARGET_RATE // 1000:
            return
        end = min(silence + self._pad, self.total)
        if (silence - self._speech_at) * 1000 < self.vad.options.min_speech_ms * TARGET_RATE:
            return  # (a blip, dropped when it ends)
        job = self._final_job(self._utt_id, self._utt_start, self._slice(self._utt_start, end))
        self._speculative = (self._utt_id, silence, end, self.scheduler.submit(job))

    def _drop_speculative(self) -> None:
        if self._speculative is not None:
            self._speculative[3].cancel()  # no-op if already decoding; its result is ignored
            self._speculative = None
            self.speculative_wasted += 1

    # -- pauses that leave a sentence open -----------------------------------------------
    def _hold(self, held: _Held) -> None:
        held.audio = self._final_audio.get(held.utt)
        self._held = held
        self.scheduler.cancel_partial(self.key)  # the speech has ended: its final is coming
        # a closed text is final the moment it is known, not at the next audio
        asyncio.wrap_future(held.future).add_done_callback(lambda _: self._text_known(held))

    def _text_known(self, held: _Held) -> None:
        if self._held is held and held.resumed is None and self._verdict(held) is False:
            self._release_held()

    def _verdict(self, held: _Held) -> bool | None:
        """True: the held utterance's text leaves it open; None: not known yet."""
        if not held.future.done():
            return None
        if held.future.cancelled() or held.future.exception() is not None:
            return False
        hyp = held.future.result()
        if hyp is None or not hyp.ok:
            return False
        if held.short and hyp.language != "en" and not any(c in _MARKS for c in hyp.text):
            return False  # (a text with no punctuation at all cannot tell: cut, as without)
        return leaves_open(hyp.text, hyp.language)

    async def _resume_held(self, sample: int) -> bool:
        """Speech starts at `sample` after a held utterance: True if it continues it."""
        held = self._held
        assert held is not None
        if sample - held.silence >= held.open_ms * TARGET_RATE // 1000:
            self._release_held()
            return False
        verdict = self._verdict(held)
        if verdict is None and self.options.wait_for_text:
            with contextlib.suppress(Exception):  # (a failed decode: `_verdict` says closed)
                await asyncio.wrap_future(held.future)
            if self._held is not held:
                return False  # closed: final already (`_text_known`)
            verdict = self._verdict(held)
        if verdict is None:
            held.resumed = sample  # live: go on for now, cut again if the text was closed
            return True
        if not verdict:
            self._release_held()
            return False
        self._join_held(sample)
        return True

    def _check_held(self) -> None:
        """After new audio: a held utterance whose text is known, or whose pause has lasted
        its `open_ms` (as far as the VAD has judged the audio), is settled."""
        held = self._held
        assert held is not None
        if held.resumed is not None:
            if self._verdict(held) is not None:
                self._settle_held()
            return
        verdict = self._verdict(held)
        if (
            verdict is False
            or self.vad.samples_seen - held.silence >= held.open_ms * TARGET_RATE // 1000
        ):
            self._release_held()

    def _settle_held(self) -> None:
        """A held utterance that speech continued before its text came: joined if the text
        was open; else (or not known yet) it is final and the speech after the pause is an
        utterance of its own."""
        held = self._held
        assert held is not None and held.resumed is not None
        if self._verdict(held):
            self._join_held(held.resumed)
            return
        resumed = held.resumed
        self._drop_speculative()  # (an early final of the joined audio)
        self._release_held()
        self._begin(self._lead_in(resumed), resumed)

    def _release_held(self) -> None:
        """The held utterance is final: its early final is its final."""
        held = self._held
        assert held is not None
        self._held = None
        self.scheduler.cancel_partial(self.key)
        self._utt_start = None
        self._floor = held.end
        if held.audio is not None:  # (an early final of audio after it may have replaced it)
            self._final_audio[held.utt] = held.audio
        self._queue_final(held.utt, held.start, held.end, held.future)

    def _join_held(self, resumed: int) -> None:
        """The pause left the sentence open and speech came back at sample `resumed`: one
        utterance goes on. The pause itself is decoded as silence (what the VAD took for no
        speech, `pad_ms` from either side): Whisper hears words in the noise of a pause
        inside a clip ("Alhamdulillah" in a customer's 0.8 s pause), not at its edges."""
        held = self._held
        assert held is not None
        self._held = None
        held.future.cancel()
        self._continued = True
        self.held_joined += 1
        if resumed - self._pad > held.end:
            self._quiet.append((held.end, resumed - self._pad))
        # an early final decoded meanwhile (speech came back before the text) heard the pause
        self._drop_speculative()

    def _lead_in(self, speech: int) -> int:
        """Where an utterance whose speech the VAD heard from sample `speech` begins:
        `pad_ms` before the speech, or before a slow rise into it (windows of at least
        ONSET_SHARE of the VAD's threshold just before it), at most `speech_lead_ms` before
        it, never before the previous utterance's end."""
        before = min(self._pad, self._lead)
        low = ONSET_SHARE * self.vad.options.threshold
        onset = self.vad.onset(speech, low, self._lead - before)
        return max(onset - before, self._floor, self._buf_start)

    def _begin(self, start: int, speech: int | None = None) -> None:
        """A new utterance from sample `start`; `speech`: where the VAD heard it begin (the
        audio before it is the lead), else `start`."""
        self._utt_id += 1
        self._continued = False
        self._quiet = []
        self._utt_start = start
        self._speech_at = start if speech is None else speech
        # (partials come `partial_interval_ms` apart from `pad_ms` before the speech: the
        # lead does not make the first one due sooner)
        self._last_partial_at = max(start, self._speech_at - self._pad)
        self._prev_words = []
        self._stable = []
        self._shown_stable = ""

    def _maybe_cut_or_partial(self) -> None:
        assert self._utt_start is not None
        opts = self.options
        length = self.total - self._utt_start
        if length >= opts.max_utterance_s * TARGET_RATE and self._held is not None:
            self._settle_held()  # (live) continued before its text came: decide now
            length = self.total - self._utt_start
        if length >= opts.max_utterance_s * TARGET_RATE:
            lo = self.total - 3 * TARGET_RATE
            cut = self.vad.quietest(
                max(lo, self._utt_start + TARGET_RATE), self.total - TARGET_RATE // 4
            )
            cut = min(cut, self.total)
            self._finalize(self._utt_start, cut)
            self._begin(cut)
            self.vad.split(cut)
            return
        if not opts.partials:
            return
        speech = self.total - self.vad.speech_start
        # Under pressure partials come less often (finals first); overloaded: none at all.
        pressure = self.scheduler.pressure()
        interval = opts.partial_interval_ms * (2 if pressure == BUSY else 1)
        due = self.total - self._last_partial_at >= interval * TARGET_RATE // 1000
        if due and speech >= opts.min_partial_ms * TARGET_RATE // 1000:
            if pressure == OVERLOADED:
                self.partials_skipped += 1
                self.scheduler.stats.partials_skipped += 1
                self._last_partial_at = self.total
                return
            self._submit_partial()

    def arrival(self, sample: int) -> float:
        """Monotonic time at which audio up to `sample` had been received."""
        for total, at in self._arrivals:
            if total >= sample:
                return at
        return self._arrivals[-1][1] if self._arrivals else time.monotonic()

    def _slice(self, start: int, end: int) -> Float32Array:
        lo = max(start - self._buf_start, 0)
        audio = self._buf[lo : end - self._buf_start].copy()
        first = self._buf_start + lo
        for a, b in self._quiet:  # pauses inside a continued utterance
            audio[max(a - first, 0) : max(b - first, 0)] = 0.0
        return audio

    def _trim(self) -> None:
        keep_from = self._utt_start if self._utt_start is not None else self.total - self._keep
        keep_from = max(keep_from, self._buf_start)
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start :]
            self._buf_start = keep_from

    @property
    def partial_engine(self) -> WhisperEngine:
        """The engine the scheduler decodes this channel's partials with."""
        return self.scheduler.engine_for(False, self.language)

    def _prompt(self, engine: WhisperEngine, drop: int = 0) -> tuple[int, ...]:
        """The call's vocabulary, then the channel's previous final words (less the last
        `drop`), as tokens of `engine`."""
        words = " ".join(self._history).split()
        words = without_spelling(words[: len(words) - drop])[-self.options.prompt_words :]
        return self._vocabulary_prompt(engine) + tuple(engine.encode_text(" ".join(words)))

    def _vocabulary_prompt(self, engine: WhisperEngine) -> tuple[int, ...]:
        if not self.vocabulary:
            return ()
        cached = self._vocabulary_tokens.get(id(engine))
        if cached is not None:
            return cached
        terms = list(self.vocabulary)
        tokens: tuple[int, ...] = ()
        while terms:
            tokens = tuple(engine.encode_text(", ".join(terms) + "."))
            if len(tokens) <= VOCABULARY_TOKENS:
                break
            terms.pop()
        self._vocabulary_tokens[id(engine)] = tokens if terms else ()
        return self._vocabulary_tokens[id(engine)]

    def _final_job(self, utt: int, start: int, audio: Float32Array) -> RecognitionJob:
        """The final of utterance `utt` (audio from sample `start`), with the end of the
        previous final as left context when it is known (no final in flight) and fits the
        utterance's encoder window, or silence before it at the start of the channel."""
        self._final_audio[utt] = audio
        engine = self.final_engine

        def job(
            before: Float32Array | None = None, context: tuple[int, ...] = (), drop: int = 0
        ) -> RecognitionJob:
            """The job for `audio` with `before` (already heard as `context`) put first."""
            return RecognitionJob(
                key=self.key,
                audio=audio if before is None else np.concatenate([before, audio]),
                final=True,
                prompt=self._prompt(engine, drop=drop),
                context=context,
                context_s=0.0 if before is None else before.size / TARGET_RATE,
                language=self.language,
            )

        if start < self._pad and self.options.lead_ms > 0:
            return job(np.zeros(self.options.lead_ms * TARGET_RATE // 1000, dtype=np.float32))
        last = self._last_final
        if self.options.context_s <= 0 or last is None or self._emitted != self._submitted:
            return job()
        seconds = audio.size / TARGET_RATE
        window = engine.window_for(seconds, final=True)
        budget = min(self.options.context_s, window - engine.options.window_margin_s - seconds)
        previous, words, text = last
        end = previous.size / TARGET_RATE
        chosen = [w for w in words if end - (w.start - 0.1) <= budget]
        if not chosen:
            return job()
        said = text_from(text, words, len(words) - len(chosen))
        # letters heard before lead Whisper to hear letters (`spells`); with the word before
        # the context, a spelled run the context starts in the middle of
        history = " ".join(self._history).split()
        if spells(said) or spells(" ".join(history[-(len(chosen) + 1) :])):
            return job()
        return job(
            previous[max(int((chosen[0].start - 0.1) * TARGET_RATE), 0) :],
            tuple(engine.encode_text(said)),
            drop=len(chosen),
        )

    # -- partials -----------------------------------------------------------------------
    def _submit_partial(self) -> None:
        assert self._utt_start is not None
        self._partial_no += 1
        self._last_partial_at = self.total
        engine = self.partial_engine
        job = RecognitionJob(
            key=self.key,
            audio=self._slice(self._utt_start, self.total),
            final=False,
            prompt=self._prompt(engine),
            prefix=tuple(engine.encode_text(" ".join(self._stable))),
            language=self.language,
        )
        future = asyncio.wrap_future(self.scheduler.submit(job))
        utt, number, start, end = self._utt_id, self._partial_no, self._utt_start, self.total
        forced = len(self._stable)
        future.add_done_callback(lambda f: self._partial_done(f, utt, number, start, end, forced))

    def _partial_done(
        self,
        future: asyncio.Future[Hypothesis | None],
        utt: int,
        number: int,
        start: int,
        end: int,
        forced: int,
    ) -> None:
        """`forced`: how many stable words were forced into this decode."""
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            if self.on_error is not None:
                self.on_error("partial", utt, exc)
            return
        hyp = future.result()
        if (
            hyp is None
            or utt != self._utt_id
            or self._utt_start is None
            or number <= self._partial_number
        ):
            return
        words = hyp.text.split() if hyp.ok else []
        if agreed_prefix(words, self._stable) < len(self._stable):
            if forced < len(self._stable):
                # decoded with the shorter prefix of its time (submitted while the partial
                # before it was decoding): the next one is decoded with all of it forced
                return
            # Decoded with every stable word forced and still not saying them: the decoder
            # ran on into the last one ("can" + "cel"), cut a repetition, or the answer was
            # rejected. Force only the words it kept from now on.
            self._stable = words[: agreed_prefix(words, self._stable)]
        agreed = agreed_prefix(words, self._prev_words)
        if agreed > len(self._stable):
            self._stable = words[:agreed]
        self._prev_words = words
        if not words:
            return
        # What the screen was told is stable stays so: a partial is sent only with a stable
        # text that begins with the last one sent, and only if its text begins with that.
        stable = " ".join(self._stable)
        if not stable.startswith(self._shown_stable):
            stable = self._shown_stable
        if not hyp.text.startswith(stable):
            return
        self._shown_stable = stable
        self._partial_shown = utt
        self._partial_number = number
        self.on_partial(
            Partial(
                utterance=utt,
                start=round(start / TARGET_RATE, 3),
                end=round(end / TARGET_RATE, 3),
                text=hyp.text,
                stable=stable,
                received_at=self.arrival(end),
            )
        )

    # -- finals -------------------------------------------------------------------------
    def _finalize(
        self,
        start: int,
        end: int,
        *,
        silence: int | None = None,
        open_ms: int = 0,
        short: bool = False,
    ) -> None:
        """The utterance from `start` ends at `end` (`silence`: where its pause began, for
        the early final): its final is queued, or with `open_ms` held for its text
        (`hold_open_ms`, `sentence_pauses`)."""
        utt = self._utt_id
        decoded = self._final_decode(start, end, silence)
        if open_ms > 0 and decoded is not None and silence is not None:
            self._hold(_Held(utt, start, decoded[0], silence, decoded[1], open_ms, short))
            return
        self._utt_start = None
        self.scheduler.cancel_partial(self.key)
        self._floor = end if decoded is None else decoded[0]
        if decoded is not None:
            self._queue_final(utt, start, decoded[0], decoded[1])

    def _final_decode(
        self, start: int, end: int, silence: int | None
    ) -> tuple[int, ThreadFuture[Hypothesis | None]] | None:
        """The decode of the utterance's final and the end of its audio: the early final
        when it was of this pause, else one submitted now (None: too little audio)."""
        spec = self._speculative
        self._speculative = None
        if (
            spec is not None
            and spec[0] == self._utt_id
            and spec[1] == silence
            and not spec[3].cancelled()
        ):
            self.speculative_used += 1
            return spec[2], spec[3]
        if spec is not None:
            spec[3].cancel()
            self.speculative_wasted += 1
        audio = self._slice(start, end)
        if audio.size < TARGET_RATE // 10:
            return None
        return end, self.scheduler.submit(self._final_job(self._utt_id, start, audio))

    def _queue_final(
        self, utt: int, start: int, end: int, future: ThreadFuture[Hypothesis | None]
    ) -> None:
        self._submitted += 1
        self._settled.clear()
        self._finals.put_nowait((utt, start, end, asyncio.wrap_future(future)))

    async def settle(self) -> None:
        """Wait until every final submitted so far has been emitted (batch transcription uses
        this so that each utterance is decoded with the previous ones as its prompt). With
        `wait_for_text`, a held utterance's text is waited for too: closed, it is final and
        emitted before this returns; open, it stays held for the audio to come."""
        held = self._held
        if held is not None and held.resumed is None and self.options.wait_for_text:
            with contextlib.suppress(Exception):  # (a failed decode: `_verdict` says closed)
                await asyncio.wrap_future(held.future)
            if self._held is held and self._verdict(held) is False:
                self._release_held()
        await self._settled.wait()

    async def _emit_finals(self) -> None:
        while (item := await self._finals.get()) is not None:
            try:
                self._emit_final(item[0], item[1], item[2], await item[3])
            except Exception as exc:
                log.exception("final decode failed for %s utterance %d", self.key, item[0])
                if self.on_error is not None:
                    try:
                        self.on_error("final", item[0], exc)
                    except Exception:
                        log.exception("reporting the failed decode of %s failed", self.key)
            finally:
                self._emitted += 1
                if self._emitted == self._submitted:
                    self._settled.set()

    def _emit_final(self, utt: int, start: int, end: int, hyp: Hypothesis | None) -> None:
        audio = self._final_audio.pop(utt, None)
        for stale in [u for u in self._final_audio if u < utt]:
            del self._final_audio[stale]
        if hyp is None:
            return
        if audio is not None and hyp.ok and hyp.words:
            self._last_final = (audio, hyp.words, hyp.text)
        if self.language == "auto" and hyp.ok:
            self._detected(hyp)
        offset = start / TARGET_RATE
        words = tuple(
            WordTiming(
                word=w.word,
                start=round(offset + w.start, 3),
                end=round(offset + max(w.end, w.start), 3),
                probability=w.probability,
            )
            for w in hyp.words
        )
        text = hyp.text if hyp.ok else ""
        if text:
            self._history.append(text)
            del self._history[:-8]
            if self.reviser is not None:
                self._rev_finals.append((utt, start, end, text))
        self.on_final(
            Final(
                utterance=utt,
                start=words[0].start if words else round(offset, 3),
                end=words[-1].end if words else round(end / TARGET_RATE, 3),
                text=text,
                words=words if text else (),
                avg_logprob=round(hyp.avg_logprob, 4),
                no_speech_prob=round(hyp.no_speech_prob, 4),
                received_at=self.arrival(
                    int((words[-1].end if words else end / TARGET_RATE) * TARGET_RATE)
                ),
                language=hyp.language,
            )
        )
        if self.reviser is not None and text:
            if self.language != "auto" and (self._misheard or hyp.language != self.language):
                # finals heard as another language than the one the channel turned out to
                # speak (this one included): decoded again in it now, without their text as
                # the next stretch's prompt
                self._misheard = False
                self._rev_prompt = ""
                self._revise(end)
                self._rev_prompt = ""
                return
            # `seconds` 0 (at the end only) still cuts every LONGEST_STRETCH_S: what a channel
            # holds for revision stays bounded on a call of hours
            stretch = self.reviser.options.seconds or LONGEST_STRETCH_S
            if end - self._spool.start >= stretch * TARGET_RATE:
                self._revise(end)

    def _detected(self, hyp: Hypothesis) -> None:
        """A final decoded with its language detected: fix the channel's language once a
        detection is sure of it (a short first "Allô ?" may sound like English), or after
        UNSURE_FINALS finals that were not, as their detections sum up. Finals heard as
        another language (before it, or this one) go to revision at once, in the language
        fixed (`_emit_final`)."""
        votes = self._unsure
        earlier = set(votes)  # languages the finals before this one were decoded as
        votes[hyp.language] = votes.get(hyp.language, 0.0) + hyp.language_probability
        self._unsure_finals += 1
        if hyp.language_probability >= LANGUAGE_SURE:
            language = hyp.language
        elif self._unsure_finals >= UNSURE_FINALS:
            language = max(votes, key=votes.__getitem__)
        else:
            log.info(
                "%s: language not sure yet (%s, %.2f)",
                self.key,
                hyp.language,
                hyp.language_probability,
            )
            return
        self.language = language
        self._misheard = bool(earlier - {language})  # (revised once this final is emitted)
        log.info("%s: language detected as %s", self.key, language)

    async def close(self) -> None:
        """Finalize the utterance in progress and wait until every final has been emitted;
        then the rest of the channel goes to revision (`revised` waits for it)."""
        if self._closed:
            return
        self._closed = True
        if (held := self._held) is not None:
            if held.resumed is None:
                self._release_held()
            else:
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(held.future)
                if self._held is held:  # (a push meanwhile may have settled it)
                    self._settle_held()
        try:
            if self._utt_start is not None:
                self._finalize(self._utt_start, self.total)
            self._finals.put_nowait(None)
            if self._emitter is not None:
                await self._emitter
            if self.reviser is not None:
                self._revise(self.total)
        finally:
            self._spool.close()

    # -- revision -----------------------------------------------------------------------
    def _keep_for_revision(self, samples: Float32Array) -> None:
        spool = self._spool
        spool.append(samples)
        assert self.reviser is not None
        # a long stretch with no final in it and none in flight (hold music, a silent party):
        # only the audio an utterance may still need is kept
        limit = max(self.reviser.options.seconds, 30.0) * TARGET_RATE
        if spool.samples > limit and not self._rev_finals and self._emitted == self._submitted:
            keep_from = self._utt_start if self._utt_start is not None else self.total - self._keep
            spool.drop(keep_from)

    def _revise(self, upto: int) -> None:
        """Send the kept audio up to sample `upto` (the end of a final) to revision, with the
        finals emitted in it."""
        assert self.reviser is not None
        finals = [f for f in self._rev_finals if f[2] <= upto]
        self._rev_finals = [f for f in self._rev_finals if f[2] > upto]
        stretch = self._spool.take(upto)
        if not finals or stretch.hi - stretch.lo < TARGET_RATE // 2:
            stretch.discard()
            return
        prompt = self._rev_prompt
        words = without_spelling(" ".join(f[3] for f in finals).split())
        self._rev_prompt = " ".join(words[-self.options.prompt_words :])
        future = self.reviser.submit(
            stretch,
            self.language,
            prompt=prompt,
            hotwords=", ".join(self.vocabulary),
            seconds=stretch.seconds,
        )
        if future is None:
            stretch.discard()
            self.revisions_skipped += 1
            return
        revision = asyncio.wrap_future(future)
        self._revisions.append(revision)
        revision.add_done_callback(lambda f: self._revision_done(f, stretch.lo, finals))

    def _revision_done(
        self,
        future: asyncio.Future[Revision],
        start: int,
        finals: list[tuple[int, int, int, str]],
    ) -> None:
        if future in self._revisions:
            self._revisions.remove(future)
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            log.warning("revision of %s failed: %s (the live text is kept)", self.key, exc)
            return
        assert self.on_revised is not None
        revision = future.result()
        offset = start / TARGET_RATE
        heard = assign(
            revision.words,
            [(u, (s - start) / TARGET_RATE, (e - start) / TARGET_RATE, t) for u, s, e, t in finals],
        )
        for utt, _, _, live in finals:
            words = heard.get(utt) or []
            text = changed_text(words, live)  # None: the live text stays
            if text is None:
                continue
            self.on_revised(
                RevisedFinal(
                    utterance=utt,
                    text=text,
                    words=tuple(
                        WordTiming(
                            w.word,
                            round(offset + w.start, 3),
                            round(offset + max(w.end, w.start), 3),
                            w.probability,
                        )
                        for w in words
                    ),
                    language=revision.language,
                )
            )

    async def revised(self) -> None:
        """Wait until every revision submitted so far is done (after `close`: all of them)."""
        while self._revisions:
            await asyncio.gather(*list(self._revisions), return_exceptions=True)
            await asyncio.sleep(0)  # their done callbacks run
