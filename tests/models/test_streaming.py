"""StreamingTranscriber's own logic, in process and without Whisper: the agreed prefix of
partials, finals decoded from audio alone, speculative finals kept or thrown away.

The VAD is the real segmenter over a loudness "model" (a loud window is speech), and the
scheduler hands each job to the test, which answers it with a scripted hypothesis."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from audio.codec import TARGET_RATE, Float32Array
from audio.vad import VadOptions, VadSegmenter
from models.asr import Final, Partial, StreamingOptions, StreamingTranscriber, leaves_open
from models.scheduler import IDLE, RecognitionJob
from models.whisper import Hypothesis, WhisperOptions, WordTiming

CHUNK = TARGET_RATE // 50  # 20 ms, as a softphone sends it


class LoudnessModel:
    """A SpeechModel whose probability of speech is 1 for a loud window, 0 for a quiet one."""

    def new_state(self) -> None:
        return None

    def probabilities(self, windows: Float32Array, state: None) -> tuple[Float32Array, None]:
        return (np.abs(windows).mean(axis=1) > 0.05).astype(np.float32), state


class GradedModel:
    """A SpeechModel whose probability of speech grows with loudness (level 0.3: 0.6, speech;
    level 0.15: 0.3, under the threshold)."""

    def new_state(self) -> None:
        return None

    def probabilities(self, windows: Float32Array, state: None) -> tuple[Float32Array, None]:
        return np.minimum(np.abs(windows).mean(axis=1) * 2, 1.0).astype(np.float32), state


class WordEngine:
    """What the transcriber asks of a Whisper engine: one token per word, the real windows."""

    options = WhisperOptions()
    multilingual = False

    def encode_text(self, text: str) -> list[int]:
        return [sum(map(ord, w.lower().strip(".,?!"))) for w in text.split()]

    def window_for(self, seconds: float, *, final: bool = False, busy: bool = False) -> float:
        windows = self.options.final_windows if final else self.options.windows
        need = seconds + self.options.window_margin_s
        return next((w for w in windows if w >= need), windows[-1])


class Answer(Future[Hypothesis | None]):
    """A decode the test answers; `watched` is set each time the transcriber starts waiting
    on it (asyncio.wrap_future adds a done callback), so a test can wait for that."""

    def __init__(self) -> None:
        super().__init__()
        self.watchers = 0
        self.watched = asyncio.Event()

    def add_done_callback(self, fn: Any) -> None:
        self.watchers += 1
        self.watched.set()
        super().add_done_callback(fn)

    async def watched_by(self, n: int) -> None:
        """Until `n` waiters are on it."""
        async with asyncio.timeout(5):
            while self.watchers < n:
                self.watched.clear()
                await self.watched.wait()


@dataclass
class HandScheduler:
    """Takes jobs and lets the test answer them, in the order it chooses."""

    final_engine: WordEngine = field(default_factory=WordEngine)
    jobs: list[tuple[RecognitionJob, Future[Hypothesis | None]]] = field(default_factory=list)
    stats: Any = field(default_factory=lambda: SimpleNamespace(partials_skipped=0))
    # partials a worker has begun decoding: a newer partial cannot supersede them
    decoding: list[Future[Hypothesis | None]] = field(default_factory=list)

    def engine_for(self, final: bool, language: str) -> WordEngine:
        return self.final_engine

    def pressure(self) -> int:
        return IDLE

    def cancel_partial(self, key: str) -> None:
        for job, future in self.jobs:
            if not job.final and not future.done() and future not in self.decoding:
                future.set_result(None)  # superseded, as the real scheduler does

    def submit(self, job: RecognitionJob) -> Future[Hypothesis | None]:
        if not job.final:
            self.cancel_partial(job.key)  # a newer partial of the channel supersedes it
        future = Answer()
        self.jobs.append((job, future))
        return future

    def waiting(self, *, final: bool) -> list[tuple[RecognitionJob, Future[Hypothesis | None]]]:
        return [(j, f) for j, f in self.jobs if j.final == final and not f.done()]

    def finals(self) -> list[tuple[RecognitionJob, Future[Hypothesis | None]]]:
        return [(j, f) for j, f in self.jobs if j.final]


def said(text: str, seconds: float) -> Hypothesis:
    """A hypothesis of `text`, its words spread over `seconds`."""
    words = text.split()
    step = seconds / max(len(words), 1)
    timed = tuple(
        WordTiming(f" {w}", round(i * step, 3), round((i + 1) * step, 3), 0.9)
        for i, w in enumerate(words)
    )
    return Hypothesis(text=text, tokens=tuple(range(len(words))), words=timed)


@dataclass
class HandReviser:
    """Takes the stretches sent to revision: (seconds of audio, language, prompt)."""

    options: Any = field(default_factory=lambda: SimpleNamespace(seconds=0.0))
    stretches: list[tuple[float, str, str]] = field(default_factory=list)

    def submit(
        self,
        audio: Any,
        language: str,
        prompt: str = "",
        hotwords: str = "",
        seconds: float | None = None,
    ) -> Future[Any]:
        samples = audio()  # (read, as the revision thread reads a spooled stretch)
        assert seconds is None or abs(samples.size / TARGET_RATE - seconds) < 1e-9
        self.stretches.append((samples.size / TARGET_RATE, language, prompt))
        return Future()  # never answered: the test looks at what was sent


class Channel:
    def __init__(
        self,
        language: str = "en",
        reviser: Any = None,
        model: Any = None,
        threshold: float = 0.5,
        **options: Any,
    ) -> None:
        self.scheduler = HandScheduler()
        self.partials: list[Partial] = []
        self.shown = asyncio.Event()
        self.finals: list[Final] = []
        self.final_out = asyncio.Event()
        self.transcriber = StreamingTranscriber(
            "call/customer",
            self.scheduler.final_engine,  # type: ignore[arg-type]
            self.scheduler,  # type: ignore[arg-type]
            VadSegmenter(
                model or LoudnessModel(), VadOptions(threshold=threshold, min_silence_ms=400)
            ),
            ThreadPoolExecutor(1),
            self.show,
            self.take_final,
            StreamingOptions(lead_ms=0, context_s=0, **options),
            language=language,
            reviser=reviser,
            on_revised=None if reviser is None else (lambda revised: None),
        )

    async def speak(self, seconds: float, loud: bool = True, level: float | None = None) -> None:
        """`seconds` of speech (loud) or of silence; `level`: that loudness instead (under
        0.05 the VAD hears no speech in it)."""
        level = (0.3 if loud else 0.0) if level is None else level
        for _ in range(round(seconds * TARGET_RATE / CHUNK)):
            await self.transcriber.push(np.full(CHUNK, level, dtype=np.float32))

    async def close(self) -> None:
        """Finalize and wait for every final; one that waits for a decode never answered
        fails the test instead of hanging it."""
        await asyncio.wait_for(self.transcriber.close(), timeout=10)

    async def answer_partial(self, text: str) -> RecognitionJob:
        [(job, future)] = self.scheduler.waiting(final=False)
        self.shown.clear()
        future.set_result(said(text, job.audio.size / TARGET_RATE))
        # the done callback runs on the loop: wait until the partial is out
        await asyncio.wait_for(self.shown.wait(), timeout=5)
        return job

    def take_final(self, final: Final) -> None:
        self.finals.append(final)
        self.final_out.set()

    def show(self, partial: Partial) -> None:
        self.partials.append(partial)
        self.shown.set()


async def test_partials_agree_on_a_prefix_that_is_forced_and_never_shrinks() -> None:
    ch = Channel(partial_interval_ms=200, min_partial_ms=200)
    engine = ch.scheduler.final_engine
    await ch.speak(0.5)
    first = await ch.answer_partial("I want to")
    assert first.prefix == ()  # nothing agreed yet
    await ch.speak(0.2)
    second = await ch.answer_partial("I want to cancel")
    assert second.prefix == ()
    # two hypotheses agreed on "I want to": it is stable and forced into the next decode
    assert [p.stable for p in ch.partials] == ["", "I want to"]
    await ch.speak(0.2)
    third = await ch.answer_partial("I want to cancel my plan")
    assert third.prefix == tuple(engine.encode_text("I want to"))
    assert ch.partials[-1].stable == "I want to cancel"
    await ch.speak(0.2)
    fourth = await ch.answer_partial("I want to cancel my plan")
    assert fourth.prefix == tuple(engine.encode_text("I want to cancel"))
    assert ch.partials[-1].stable == "I want to cancel my plan"
    assert all(p.text.startswith(p.stable) for p in ch.partials)


async def test_a_partial_decoded_before_the_prefix_grew_cannot_shrink_it() -> None:
    """Two partials in flight: the later one was submitted with the shorter prefix of its
    time. When the earlier one's answer makes more words stable first, the later answer, which
    disagrees with them, is not shown (it took the stable words back: CI saw "Like your" go
    back to "" under load)."""
    ch = Channel(partial_interval_ms=200, min_partial_ms=200)
    engine = ch.scheduler.final_engine
    await ch.speak(0.5)
    await ch.answer_partial("I want to")
    await ch.speak(0.2)
    await ch.answer_partial("I want to cancel")
    assert ch.partials[-1].stable == "I want to"
    await ch.speak(0.2)
    [(third, third_answer)] = ch.scheduler.waiting(final=False)
    ch.scheduler.decoding.append(third_answer)  # a worker is decoding it
    await ch.speak(0.2)
    fourth, fourth_answer = ch.scheduler.waiting(final=False)[-1]
    assert fourth.prefix == third.prefix == tuple(engine.encode_text("I want to"))
    ch.shown.clear()
    third_answer.set_result(said("I want to cancel my plan", 0.9))
    await asyncio.wait_for(ch.shown.wait(), timeout=5)
    assert ch.partials[-1].stable == "I want to cancel"
    fourth_answer.set_result(said("I want to counsel my plan", 1.1))
    for _ in range(5):  # its done callbacks run on the loop (wrap_future, then ours)
        await asyncio.sleep(0)
    assert [p.stable for p in ch.partials] == ["", "I want to", "I want to cancel"]
    await ch.speak(0.2)
    [(fifth, _)] = ch.scheduler.waiting(final=False)
    assert fifth.prefix == tuple(engine.encode_text("I want to cancel"))
    await ch.answer_partial("I want to cancel my plan today")
    assert ch.partials[-1].stable == "I want to cancel my plan"
    stable: dict[int, str] = {}
    for partial in ch.partials:
        assert partial.stable.startswith(stable.get(partial.utterance, ""))
        stable[partial.utterance] = partial.stable


async def test_a_decoder_that_runs_on_into_the_last_stable_word_keeps_partials_coming() -> None:
    """With "I want to can" stable and forced, the decoder continues the word ("can" + "cel"):
    the words disagree, the text does not. The partial is sent with the stable text it had, the
    next decode forces only the words kept, and stable grows again from there."""
    ch = Channel(partial_interval_ms=200, min_partial_ms=200)
    engine = ch.scheduler.final_engine
    await ch.speak(0.5)
    await ch.answer_partial("I want to can")
    await ch.speak(0.2)
    await ch.answer_partial("I want to can")
    assert ch.partials[-1].stable == "I want to can"
    await ch.speak(0.2)
    third = await ch.answer_partial("I want to cancel it")
    assert third.prefix == tuple(engine.encode_text("I want to can"))
    assert (ch.partials[-1].text, ch.partials[-1].stable) == (
        "I want to cancel it",
        "I want to can",
    )
    await ch.speak(0.2)
    fourth = await ch.answer_partial("I want to cancel it now")
    assert fourth.prefix == tuple(engine.encode_text("I want to"))  # the words it kept
    assert ch.partials[-1].stable == "I want to cancel it"
    await ch.speak(0.2)
    ch.shown.clear()
    [(fifth, answer)] = ch.scheduler.waiting(final=False)
    assert fifth.prefix == tuple(engine.encode_text("I want to cancel it"))
    answer.set_result(Hypothesis(text="", tokens=(), words=(), rejected="repetition"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not ch.shown.is_set()  # a rejected answer is not sent
    await ch.speak(0.2)
    sixth = await ch.answer_partial("I want to cancel it now please")
    assert sixth.prefix == ()  # nothing kept by the rejected one: nothing forced
    # and stable on screen did not go back
    assert ch.partials[-1].stable == "I want to cancel it"
    assert all(p.text.startswith(p.stable) for p in ch.partials)
    stable = ""
    for partial in ch.partials:
        assert partial.stable.startswith(stable)
        stable = partial.stable


async def test_a_final_is_decoded_from_the_audio_alone() -> None:
    ch = Channel(partial_interval_ms=200, min_partial_ms=200, speculative_final_ms=0)
    await ch.speak(0.5)
    await ch.answer_partial("I want to")
    await ch.speak(0.2)
    await ch.answer_partial("I want to cancel")
    await ch.speak(0.6, loud=False)  # past the 400 ms hangover: the utterance ended
    [(job, future)] = ch.scheduler.finals()
    assert job.prefix == ()  # the partials' agreed words are not forced into the final
    assert job.audio.size >= 0.7 * TARGET_RATE  # all its speech (and the pad around it)
    future.set_result(said("I want to cancel it", 0.7))
    await ch.close()
    assert [f.text for f in ch.finals] == ["I want to cancel it"]


async def test_an_utterance_keeps_a_slow_rise_into_its_speech_but_not_the_turn_before() -> None:
    ch = Channel(partials=False, speculative_final_ms=0, model=GradedModel())
    await ch.speak(2.0, loud=False)
    await ch.speak(1.0)  # speech from 2.0 s, a clean start: `pad_ms` (200 ms) before it
    await ch.speak(0.5, loud=False)  # the hangover (400 ms) ends it
    [(job, future)] = ch.scheduler.waiting(final=True)
    assert abs(job.audio.size / TARGET_RATE - (1.0 + 0.2 + 0.2)) <= 0.04
    future.set_result(said("Hello", 1.0))
    await ch.speak(1.5, loud=False)
    await ch.speak(0.3, level=0.15)  # a first word Silero hears rising slowly (at 0.3) ...
    await ch.speak(1.0)  # ... before the speech it hears (from 5.3 s)
    await ch.speak(0.45, level=0.15)  # (that utterance ends in the next one's slow rise)
    await ch.speak(1.0)  # speech from 6.75 s: its lead would reach back into the turn before
    await ch.speak(0.5, loud=False)
    [(second, future), (third, then)] = ch.scheduler.waiting(final=True)
    # from 200 ms before the rise: 500 ms before the speech (`speech_lead_ms`)
    assert abs(second.audio.size / TARGET_RATE - (0.5 + 1.0 + 0.2)) <= 0.04
    future.set_result(said("Anything else", 1.0))
    # from where the turn before ended (6.3 s + 200 ms of pad), not 500 ms before 6.75 s
    assert abs(third.audio.size / TARGET_RATE - (6.75 + 1.0 + 0.2 - 6.5)) <= 0.04
    then.set_result(said("I can help you with", 1.0))
    await ch.speak(1.5, loud=False)
    await ch.speak(0.8, level=0.15)  # a rise longer than the lead allows
    await ch.speak(1.0)
    await ch.speak(0.5, loud=False)
    [(fourth, last)] = ch.scheduler.waiting(final=True)
    # at most `speech_lead_ms` before the speech (to the VAD's 32 ms windows)
    assert 0.45 <= fourth.audio.size / TARGET_RATE - (1.0 + 0.2) <= 0.5
    last.set_result(said("Yes", 1.0))
    await ch.close()
    assert [f.text for f in ch.finals] == [
        "Hello",
        "Anything else",
        "I can help you with",
        "Yes",
    ]


async def test_the_slow_rise_is_told_from_noise_by_the_vad_threshold() -> None:
    """With the VAD's threshold raised to 0.7 (a noisy line), a slow rise counts from 0.28
    (`ONSET_SHARE` of it): windows at 0.2, the default threshold's bar, are the line's noise
    and give no lead; windows at 0.3 are a rise."""
    ch = Channel(partials=False, speculative_final_ms=0, model=GradedModel(), threshold=0.7)
    await ch.speak(1.0, loud=False)
    await ch.speak(0.4, level=0.1)  # noise at 0.2
    await ch.speak(1.0, level=0.4)  # speech (0.8) from 1.4 s
    await ch.speak(0.5, loud=False)
    [(first, future)] = ch.scheduler.waiting(final=True)
    assert abs(first.audio.size / TARGET_RATE - (0.2 + 1.0 + 0.2)) <= 0.04  # `pad_ms` only
    future.set_result(said("Hello", 1.0))
    await ch.speak(1.0, loud=False)
    await ch.speak(0.3, level=0.15)  # a rise at 0.3
    await ch.speak(1.0, level=0.4)
    await ch.speak(0.5, loud=False)
    [(second, then)] = ch.scheduler.waiting(final=True)
    # 200 ms before the rise (to the VAD's 32 ms windows, which these edges fall inside)
    assert 0.4 <= second.audio.size / TARGET_RATE - (1.0 + 0.2) <= 0.54
    then.set_result(said("Anything else", 1.0))
    await ch.close()
    assert [f.text for f in ch.finals] == ["Hello", "Anything else"]


async def test_a_blip_shorter_than_min_speech_gets_no_early_decode() -> None:
    ch = Channel(partials=False, speculative_final_ms=200)
    await ch.speak(1.0, loud=False)
    await ch.speak(0.1)  # a click: under `min_speech_ms` (200 ms) of speech
    await ch.speak(0.6, loud=False)
    await ch.close()
    assert ch.scheduler.finals() == [] and ch.finals == []


async def test_a_speculative_final_decodes_before_the_hangover_ends() -> None:
    ch = Channel(partials=False, speculative_final_ms=200)
    await ch.speak(1.0)
    await ch.speak(0.26, loud=False)  # 200 ms into the pause (the VAD sees 32 ms windows)
    [(job, future)] = ch.scheduler.finals()
    assert ch.transcriber.vad.in_speech  # submitted before the utterance is known to end
    assert job.audio.size >= 1.0 * TARGET_RATE  # the whole second of speech
    future.set_result(said("Thanks for calling", 1.0))
    await ch.speak(0.4, loud=False)  # the hangover confirms the end: that decode is used
    await ch.close()
    assert len(ch.scheduler.finals()) == 1
    assert [f.text for f in ch.finals] == ["Thanks for calling"]
    assert (ch.transcriber.speculative_used, ch.transcriber.speculative_wasted) == (1, 0)


async def test_a_speculative_final_is_thrown_away_when_speech_resumes() -> None:
    ch = Channel(partials=False, speculative_final_ms=200)
    await ch.speak(1.0)
    await ch.speak(0.3, loud=False)
    [(early, early_future)] = ch.scheduler.finals()
    early_future.set_result(said("My account", 1.0))  # done before the speaker goes on
    await ch.speak(1.0)  # a pause shorter than the hangover: the same utterance goes on
    await ch.speak(0.7, loud=False)
    finals = ch.scheduler.finals()
    assert len(finals) == 2
    job, future = finals[1]
    # the early decode covered the first second; the one used hears the whole utterance
    assert job.audio.size > early.audio.size + 0.9 * TARGET_RATE
    future.set_result(said("My account number is four", 2.3))
    await ch.close()
    assert [f.text for f in ch.finals] == ["My account number is four"]
    assert (ch.transcriber.speculative_used, ch.transcriber.speculative_wasted) == (1, 1)


@pytest.mark.parametrize("speculative_ms", [0, 200])
async def test_a_pause_shorter_than_the_hangover_makes_no_final(speculative_ms: int) -> None:
    ch = Channel(partials=False, speculative_final_ms=speculative_ms)
    await ch.speak(1.0)
    await ch.speak(0.3, loud=False)
    await ch.speak(1.0)
    assert ch.finals == []
    assert all(f.cancelled() or not f.done() for _, f in ch.scheduler.finals())


@pytest.mark.parametrize(
    ("detections", "fixed_after"),
    [
        # a short first "Allô ?" heard as English, unsure; the next final is sure
        ([("en", 0.30), ("fr", 0.89), ("fr", 0.97)], 2),
        # never sure: three finals decide by their summed probabilities
        ([("en", 0.30), ("fr", 0.45), ("fr", 0.40), ("fr", 0.49)], 3),
        ([("de", 0.99), ("en", 0.20)], 1),  # sure at once: fixed, what follows does not move it
    ],
)
async def test_auto_fixes_the_language_once_a_detection_is_sure(
    detections: list[tuple[str, float]], fixed_after: int
) -> None:
    ch = Channel(language="auto", partials=False, speculative_final_ms=0)
    asked = []
    for i, (language, probability) in enumerate(detections):
        await ch.speak(1.0)
        await ch.speak(0.6, loud=False)  # the utterance ends: its final is asked for
        [(job, future)] = ch.scheduler.waiting(final=True)
        asked.append(job.language)
        if job.language != "auto":  # decoded as asked (the engine detects only for auto)
            language, probability = job.language, 1.0
        hyp = said(f"utterance {i}", 1.0)
        future.set_result(replace(hyp, language=language, language_probability=probability))
        await asyncio.wait_for(ch.transcriber.settle(), timeout=5)
    await ch.close()
    assert asked == ["auto"] * fixed_after + ["fr" if fixed_after > 1 else "de"] * (
        len(detections) - fixed_after
    )
    assert [f.language for f in ch.finals] == [lang for lang, _ in detections][:fixed_after] + [
        asked[-1]
    ] * (len(detections) - fixed_after)


async def test_finals_heard_as_another_language_are_revised_once_it_is_fixed() -> None:
    """The first final was heard as English (unsure), the second fixes French: both go to
    revision at once, in French; the finals after that wait for the usual stretch (here the
    end of the call), and no stretch is prompted with the misheard text."""
    reviser = HandReviser()
    ch = Channel(language="auto", reviser=reviser, partials=False, speculative_final_ms=0)
    for language, probability in [("en", 0.30), ("fr", 0.89), ("fr", 1.0)]:
        await ch.speak(1.0)
        await ch.speak(0.6, loud=False)
        [(_, future)] = ch.scheduler.waiting(final=True)
        hyp = said("mots entendus", 1.0)
        future.set_result(replace(hyp, language=language, language_probability=probability))
        await asyncio.wait_for(ch.transcriber.settle(), timeout=5)
        if language == "fr":
            assert [(lang, prompt) for _, lang, prompt in reviser.stretches] == [("fr", "")]
            assert reviser.stretches[0][0] >= 2.5  # both finals' audio, the pause between
    assert [f.language for f in ch.finals] == ["en", "fr", "fr"]
    await ch.close()  # the rest of the channel: prompted by nothing misheard either
    assert [(lang, prompt) for _, lang, prompt in reviser.stretches] == [("fr", ""), ("fr", "")]


# -- a pause that leaves the sentence open (`hold_open_ms`) ---------------------------------


@pytest.mark.parametrize(
    ("text", "language", "is_open"),
    [
        ("The first availability we have is", "en", True),  # no closing punctuation
        ("Uh, I'm calling in today because about", "en", True),
        ("And I know you guys handle a lot of your.", "en", True),  # a word that needs more
        ("and I.", "en", True),
        ("That's my.", "en", True),
        ("We have some options right now, ", "en", True),
        ("Thanks for contacting the store.", "en", False),
        ("How can I help you?", "en", False),
        ("Yes, I can.", "en", False),
        ("What can I help you with?", "en", False),  # a question is complete
        ("I'd be happy to.", "en", False),
        ('He said "yes."', "en", False),
        ("Well, I...", "en", True),  # trailing off
        ("so…", "en", True),
        ("Ich rufe an wegen der.", "de", False),  # the word list is English: punctuation only
        ("Ich rufe an wegen", "de", True),
        ("هل يمكنك مساعدتي؟", "ar", False),
        ("मुझे मदद चाहिए।", "hi", False),
        ("", "en", False),
    ],
)
def test_which_texts_leave_a_sentence_open(text: str, language: str, is_open: bool) -> None:
    assert leaves_open(text, language) is is_open


async def emitted(ch: Channel, n: int) -> list[str]:
    """The texts of the first `n` finals, once that many are out (the emitter runs on the
    loop)."""
    async with asyncio.timeout(5):
        while len(ch.finals) < n:
            ch.final_out.clear()
            await ch.final_out.wait()
    return [f.text for f in ch.finals]


async def answer_final(ch: Channel, text: str, seconds: float) -> RecognitionJob:
    [(job, future)] = ch.scheduler.waiting(final=True)
    future.set_result(said(text, seconds))
    return job


async def test_speech_after_a_pause_that_left_the_sentence_open_continues_the_utterance() -> None:
    ch = Channel(partials=False, speculative_final_ms=200, hold_open_ms=1000)
    await ch.speak(1.0)
    await ch.speak(0.5, level=0.02)  # the hangover (400 ms) ends the speech
    early = await answer_final(ch, "The first availability we have is", 1.0)
    await ch.speak(0.2, level=0.02)  # 700 ms of pause: still held for what follows
    assert ch.finals == [] and ch.scheduler.waiting(final=True) == []
    await ch.speak(1.0)  # "2 days from now": the same utterance
    await ch.speak(0.5, loud=False)
    whole = await answer_final(ch, "The first availability we have is 2 days from now.", 2.7)
    await ch.speak(0.05, loud=False)  # the text is closed: final at once
    assert [f.text for f in ch.finals] == ["The first availability we have is 2 days from now."]
    # decoded as one: the audio from the first word to the end of the second part
    assert whole.audio.size > early.audio.size + 1.5 * TARGET_RATE
    # the pause's noise (0.7 s) is silence in it, but for `pad_ms` at each side of the speech
    noise = np.count_nonzero(whole.audio == np.float32(0.02)) / TARGET_RATE
    assert noise == pytest.approx(0.4, abs=0.04)
    assert ch.transcriber.held_joined == 1
    await ch.close()
    assert len(ch.finals) == 1


async def test_a_closed_sentence_is_final_as_soon_as_its_text_is_known() -> None:
    ch = Channel(partials=False, speculative_final_ms=200, hold_open_ms=1000)
    await ch.speak(1.0)
    await ch.speak(0.5, loud=False)
    await answer_final(ch, "Thanks for contacting the store.", 1.0)
    # final the moment its text is known, before any more audio comes
    assert await emitted(ch, 1) == ["Thanks for contacting the store."]
    await ch.speak(0.2, loud=False)
    await ch.speak(1.0)  # the next sentence is an utterance of its own
    await ch.speak(0.5, loud=False)
    await answer_final(ch, "How can I help you?", 1.0)
    await ch.close()
    assert [f.text for f in ch.finals] == [
        "Thanks for contacting the store.",
        "How can I help you?",
    ]
    assert ch.transcriber.held_joined == 0


async def test_an_open_sentence_with_nothing_after_it_is_final_once_the_hold_is_over() -> None:
    ch = Channel(partials=False, speculative_final_ms=200, hold_open_ms=1000)
    await ch.speak(1.0)
    await ch.speak(0.5, loud=False)
    await answer_final(ch, "Of course I'm", 1.0)
    await ch.speak(0.4, loud=False)  # 900 ms of pause
    assert ch.finals == []
    assert ch.scheduler.waiting(final=True) == [] and ch.transcriber.held_joined == 0
    await ch.speak(0.2, loud=False)  # 1.1 s: the hold is over
    assert await emitted(ch, 1) == ["Of course I'm"]
    await ch.speak(1.0)  # what comes now is a new utterance
    await ch.speak(0.5, loud=False)
    await answer_final(ch, "thinking about it.", 1.0)
    await ch.close()
    assert [f.text for f in ch.finals] == ["Of course I'm", "thinking about it."]


async def test_live_speech_resuming_before_the_text_is_known_is_cut_again_if_it_was_closed() -> (
    None
):
    """Live, the audio is never held up for a decode: speech that resumes before the held
    utterance's text is known goes on as the same utterance, and when the text turns out
    closed the utterance is final as it was and the new speech is an utterance of its own."""
    ch = Channel(partials=False, speculative_final_ms=200, hold_open_ms=1000)
    await ch.speak(1.0)
    await ch.speak(0.5, loud=False)
    [(_, first)] = ch.scheduler.waiting(final=True)  # not answered yet
    await ch.speak(1.0)  # speech again, 500 ms after the first ended
    first.set_result(said("Thanks for contacting the store.", 1.0))
    await ch.speak(0.02)  # the text is known at the next audio
    assert await emitted(ch, 1) == ["Thanks for contacting the store."]
    await ch.speak(0.5, loud=False)
    second = await answer_final(ch, "How can I help you?", 1.0)
    await ch.close()
    assert [f.text for f in ch.finals] == [
        "Thanks for contacting the store.",
        "How can I help you?",
    ]
    # the second utterance starts `pad_ms` before its speech (1.3 s), not at the first's start
    assert abs(second.audio.size / TARGET_RATE - 1.42) <= 0.04


async def test_live_speech_resuming_before_an_open_text_is_known_stays_one_utterance() -> None:
    ch = Channel(partials=False, speculative_final_ms=200, hold_open_ms=1000)
    await ch.speak(1.0)
    await ch.speak(0.9, level=0.02)  # a noisy pause
    [(_, first)] = ch.scheduler.waiting(final=True)
    await ch.speak(0.5)
    await ch.speak(0.3, loud=False)  # an early final of all of it, pause noise and all
    first.set_result(said("I'm calling because", 1.0))
    await ch.speak(0.02, loud=False)  # the text is open: one utterance
    assert ch.transcriber.held_joined == 1
    await ch.speak(0.3, loud=False)
    whole = await answer_final(ch, "I'm calling because my card was stolen.", 2.5)
    await ch.close()
    assert [f.text for f in ch.finals] == ["I'm calling because my card was stolen."]
    assert whole.audio.size > 2.4 * TARGET_RATE
    # decoded with the pause as silence (but for `pad_ms` at either side of the speech)
    noise = np.count_nonzero(whole.audio == np.float32(0.02)) / TARGET_RATE
    assert noise == pytest.approx(0.4, abs=0.04)


async def test_a_short_continuation_keeps_the_whole_utterance() -> None:
    """Speech after an open pause shorter than `min_speech_ms` (200 ms) is not a blip to
    drop: the utterance it continues goes with it."""
    ch = Channel(partials=False, speculative_final_ms=200, hold_open_ms=1000)
    await ch.speak(1.0)
    await ch.speak(0.5, loud=False)
    await answer_final(ch, "My name is", 1.0)
    await ch.speak(0.1, loud=False)
    await ch.speak(0.15)  # "Sam"
    await ch.speak(0.5, loud=False)
    await answer_final(ch, "My name is Sam.", 1.8)
    await ch.close()
    assert [f.text for f in ch.finals] == ["My name is Sam."]


# -- a long utterance's shorter pause (`sentence_pauses`) ---------------------------------


async def test_a_long_utterances_short_pause_inside_a_sentence_does_not_end_it() -> None:
    """After 5 s of speech a 200 ms pause ends an utterance, but where the text is open
    ("... I wanted to give") the speech after it goes on as the same utterance."""
    ch = Channel(partials=False, speculative_final_ms=200, sentence_pauses=True)
    await ch.speak(5.5)
    await ch.speak(0.25, level=0.02)  # 250 ms: the long utterance's shorter pause
    await answer_final(ch, "I was thinking about it all week and I wanted to give", 5.5)
    await ch.speak(1.0)  # speech again 300 ms into the pause, under the 400 ms hangover
    await ch.speak(0.5, loud=False)
    await answer_final(ch, "I was thinking about it all week and I wanted to give you a call.", 6.8)
    await ch.close()
    assert [f.text for f in ch.finals] == [
        "I was thinking about it all week and I wanted to give you a call."
    ]
    assert ch.transcriber.held_joined == 1


@pytest.mark.parametrize("sentence_pauses", [True, False])
async def test_a_long_utterances_short_pause_after_a_sentence_ends_it(
    sentence_pauses: bool,
) -> None:
    """A closed sentence (an IVR's, between its sentences) is final at that pause, and so
    is any text with `sentence_pauses` off."""
    ch = Channel(partials=False, speculative_final_ms=200, sentence_pauses=sentence_pauses)
    await ch.speak(5.5)
    await ch.speak(0.25, level=0.02)
    text = "For sales press one." if sentence_pauses else "For sales press"
    await answer_final(ch, text, 5.5)
    assert await emitted(ch, 1) == [text]  # before any more audio
    await ch.speak(0.05, level=0.02)
    await ch.speak(1.0)  # the next sentence is an utterance of its own
    await ch.speak(0.5, loud=False)
    await answer_final(ch, "For billing press two.", 1.0)
    await ch.close()
    assert [f.text for f in ch.finals] == [text, "For billing press two."]
    assert ch.transcriber.held_joined == 0


async def test_a_short_pause_near_the_longest_utterance_ends_it_whatever_the_text() -> None:
    """7.5 s in, a joined utterance would be cut again at 10 s at its quietest point, the
    same pause: no hold, the pause ends it as before."""
    ch = Channel(partials=False, speculative_final_ms=200, sentence_pauses=True)
    await ch.speak(7.5)
    await ch.speak(0.3, level=0.02)  # (under the 400 ms hangover)
    await answer_final(ch, "and then after that I wanted to give", 7.5)
    await ch.speak(1.0)
    await ch.speak(0.5, loud=False)
    await answer_final(ch, "you a call.", 1.0)
    await ch.close()
    assert [f.text for f in ch.finals] == ["and then after that I wanted to give", "you a call."]


@pytest.mark.parametrize("chunk_ms", [20, 13, 100])
async def test_a_recording_joins_an_open_short_pause_however_it_is_chunked(chunk_ms: int) -> None:
    """Recordings wait for the text (`wait_for_text`): the open sentence goes on through a
    370 ms pause (under the hangover), whatever the size of the chunks the audio comes in."""
    ch = Channel(partials=False, speculative_final_ms=200, wait_for_text=True, sentence_pauses=True)
    chunk = TARGET_RATE * chunk_ms // 1000

    async def speak(seconds: float, level: float) -> None:
        for _ in range(round(seconds * TARGET_RATE / chunk)):
            await ch.transcriber.push(np.full(chunk, level, dtype=np.float32))

    submitted = asyncio.Event()
    submit = ch.scheduler.submit

    def submit_and_tell(job: RecognitionJob) -> Future[Hypothesis | None]:
        future = submit(job)
        submitted.set()
        return future

    ch.scheduler.submit = submit_and_tell  # type: ignore[method-assign]

    async def answer(text: str, seconds: float) -> None:
        async with asyncio.timeout(5):
            while not ch.scheduler.waiting(final=True):
                submitted.clear()
                await submitted.wait()
        await answer_final(ch, text, seconds)

    speaking = asyncio.create_task(speak(5.5, 0.3))
    await speaking
    pause = asyncio.create_task(speak(0.37, 0.02))
    await answer("I was thinking about it all week and I wanted to give", 5.5)
    await pause
    await speak(1.0, 0.3)
    tail = asyncio.create_task(speak(0.6, 0.0))
    await answer("I was thinking about it all week and I wanted to give you a call.", 6.8)
    await tail
    await ch.close()
    assert [f.text for f in ch.finals] == [
        "I was thinking about it all week and I wanted to give you a call."
    ]


@pytest.mark.parametrize(
    ("text", "joined"), [("Ich rufe an wegen", False), ("Ich rufe an, wegen", True)]
)
async def test_outside_english_a_text_with_no_punctuation_cannot_hold_a_short_pause(
    text: str, joined: bool
) -> None:
    """Thai, or Chinese that Whisper left unpunctuated, would always look open: a text with
    no mark at all is cut as without the setting; one with punctuation is read as usual."""
    ch = Channel(language="de", partials=False, speculative_final_ms=200, sentence_pauses=True)
    await ch.speak(5.5)
    await ch.speak(0.3, level=0.02)
    [(_, future)] = ch.scheduler.waiting(final=True)
    future.set_result(replace(said(text, 5.5), language="de"))
    await ch.speak(1.0)
    await ch.speak(0.5, loud=False)
    [(_, future)] = ch.scheduler.waiting(final=True)
    future.set_result(replace(said("des Termins.", 1.0), language="de"))
    await ch.close()
    assert len(ch.finals) == (1 if joined else 2)
    assert ch.transcriber.held_joined == int(joined)


async def test_a_short_pause_before_five_seconds_of_speech_ends_nothing() -> None:
    ch = Channel(partials=False, speculative_final_ms=0)
    await ch.speak(3.0)
    await ch.speak(0.25, level=0.02)
    await ch.speak(1.0)
    assert ch.scheduler.waiting(final=True) == []  # (no final decode was started)
    await ch.speak(0.5, loud=False)
    await answer_final(ch, "One utterance.", 4.2)
    await ch.close()
    assert [f.text for f in ch.finals] == ["One utterance."]


async def test_a_recording_waits_for_the_text_so_it_is_cut_the_same_way_every_time() -> None:
    """`wait_for_text` (recordings): speech resuming before the held text is known waits
    for it, so where a recording is cut never depends on how fast the machine decodes."""
    ch = Channel(partials=False, speculative_final_ms=200, hold_open_ms=1000, wait_for_text=True)
    await ch.speak(1.0)
    await ch.speak(0.5, loud=False)
    [(_, first)] = ch.scheduler.waiting(final=True)

    async def go_on() -> None:  # the next words, and the pause after them
        await ch.speak(1.0)
        await ch.speak(0.5, loud=False)

    speaking = asyncio.ensure_future(go_on())
    # the held decode is watched from when it is held; the resumed speech waits on it too
    # (live, the audio would go on and the turn be cut in two, the text unknown)
    assert isinstance(first, Answer)
    await first.watched_by(2)
    assert not speaking.done()
    first.set_result(said("I'm calling because", 1.0))
    await asyncio.wait_for(speaking, timeout=5)
    await answer_final(ch, "I'm calling because my card was stolen.", 2.5)
    await ch.close()
    assert [f.text for f in ch.finals] == ["I'm calling because my card was stolen."]


async def test_settling_a_recording_waits_for_a_held_text() -> None:
    """`settle` (between the chunks of a recording) covers a held utterance: once its text
    is known to be closed, it is final before the next chunk, so the next utterance is
    decoded with it as its prompt and left context, however fast the decode was."""
    ch = Channel(partials=False, speculative_final_ms=200, hold_open_ms=1000, wait_for_text=True)
    await ch.speak(1.0)
    await ch.speak(0.5, loud=False)
    [(_, first)] = ch.scheduler.waiting(final=True)
    settling = asyncio.ensure_future(ch.transcriber.settle())
    assert isinstance(first, Answer)
    await first.watched_by(2)  # settling waits on the held decode
    assert not settling.done()
    first.set_result(said("Thanks for contacting the store.", 1.0))
    await asyncio.wait_for(settling, timeout=5)
    assert [f.text for f in ch.finals] == ["Thanks for contacting the store."]
    await ch.close()


async def test_closing_the_channel_emits_a_held_utterance() -> None:
    ch = Channel(partials=False, speculative_final_ms=200, hold_open_ms=1000)
    await ch.speak(1.0)
    await ch.speak(0.5, loud=False)
    await answer_final(ch, "My account number is", 1.0)
    await ch.close()  # the call ends inside the hold: the text is final as it is
    assert [f.text for f in ch.finals] == ["My account number is"]


async def test_a_turn_cut_again_keeps_its_own_audio_as_the_next_left_context() -> None:
    """Live, an early final of the joined audio (speech came back, then paused again before
    the held text was known) must not stand in for the held utterance's audio: that audio is
    the next final's left context."""
    ch = Channel(partials=False, speculative_final_ms=200, hold_open_ms=1000)
    await ch.speak(1.0)
    await ch.speak(0.5, loud=False)
    [(held_job, first)] = ch.scheduler.waiting(final=True)
    await ch.speak(1.0)  # speech again before the text is known
    await ch.speak(0.3, loud=False)  # and a pause: an early final of all of it
    assert len(ch.scheduler.waiting(final=True)) == 2
    first.set_result(said("Thanks for contacting the store.", 1.0))
    await ch.speak(0.02, loud=False)
    assert await emitted(ch, 1) == ["Thanks for contacting the store."]
    last = ch.transcriber._last_final
    assert last is not None and last[0].size == held_job.audio.size
    await ch.speak(0.3, loud=False)
    await answer_final(ch, "How can I help you?", 1.0)
    await ch.close()
    assert [f.text for f in ch.finals] == [
        "Thanks for contacting the store.",
        "How can I help you?",
    ]
