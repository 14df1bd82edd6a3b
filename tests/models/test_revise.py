"""Revision: the finals' model decodes a channel again over long windows (transcript.revised).

Unit tests for how revised words go back to the live finals; a real-model test that a
channel streamed with tiny.en finals is revised by Whisper base during the call and at its
end, closer to the reference than live."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from audio.codec import TARGET_RATE
from audio.vad import VadSegmenter
from benchmarks.common import reference_text, word_errors
from models.asr import Final, RevisedFinal, StreamingOptions, StreamingTranscriber
from models.revise import Reviser, RevisionOptions, assign, same_text, skipped_speech
from models.scheduler import RecognitionScheduler
from models.whisper import WhisperOptions, WordTiming
from tests.conftest import load_16k


def timed(text: str, start: float, step: float = 0.3) -> tuple[WordTiming, ...]:
    return tuple(
        WordTiming(" " + w, start + i * step, start + i * step + 0.25, 0.9)
        for i, w in enumerate(text.split())
    )


def test_words_go_to_the_final_whose_words_they_match() -> None:
    finals = [(1, 0.0, 2.0, "I'm calling in today because about"), (2, 2.0, 5.0, "two weeks ago")]
    # the offline word times put "two" inside the first final's span: the text decides
    words = timed("I'm calling in today because about two weeks ago", 0.0, step=0.21)
    heard = assign(words, finals)
    assert [w.word.strip() for w in heard[1]][-1] == "about"
    assert [w.word.strip() for w in heard[2]] == ["two", "weeks", "ago"]


def test_a_replaced_word_stays_in_its_utterance_and_new_words_go_by_time() -> None:
    finals = [(1, 0.0, 1.5, "I'm Shell. My name's Jack."), (2, 4.0, 6.0, "the service came on")]
    words = timed("Hi, Michelle. My name is Jack.", 0.0, step=0.2) + timed(
        "um the service light came on", 4.0
    )
    heard = assign(words, finals)
    assert "".join(w.word for w in heard[1]).strip() == "Hi, Michelle. My name is Jack."
    assert "".join(w.word for w in heard[2]).strip() == "um the service light came on"
    # a word nothing live matches, heard in no final's span: the nearest final takes it
    extra = (WordTiming(" okay", 7.0, 7.3, 0.8),)
    assert assign(extra, finals)[2] == list(extra)
    assert assign((), finals) == {1: [], 2: []}
    assert assign(words, []) == {}


def test_same_text_and_skipped_speech() -> None:
    assert same_text("Okay, so let's do it.", "okay so let's do it")
    assert not same_text("so let's do it", "so let's do that")
    # a revision that kept one word of a seven-word turn skipped speech: the live text stays
    assert skipped_speech("waste", "to days. Is it possible that I could make?")
    assert not skipped_speech("two weeks", "to weeks")  # short finals may change freely
    assert not skipped_speech("I could make it in two days", "I could make in to days")


def test_a_full_backlog_skips_a_revision_and_says_so() -> None:
    """Past `max_pending_s` of audio waiting, a stretch is skipped; one longer than that is
    taken when nothing waits (a whole channel is one stretch)."""
    import threading

    reviser = Reviser(WhisperOptions(model="embedded:tiny.en"), RevisionOptions(max_pending_s=5))
    held = threading.Event()
    try:
        reviser._executor.submit(held.wait)  # the revision thread is busy meanwhile
        first = reviser.submit(np.zeros(6 * TARGET_RATE, dtype=np.float32), "en")
        assert first is not None and reviser.stats.pending_seconds == 6
        assert reviser.submit(np.zeros(TARGET_RATE, dtype=np.float32), "en") is None
        assert reviser.stats.skipped == 1 and reviser.stats.pending_seconds == 6
        with pytest.raises(TypeError, match="seconds"):
            reviser.submit(lambda: np.zeros(1, dtype=np.float32), "en")
        held.set()
        assert first.result(timeout=120).words == ()
        assert reviser.stats.pending_seconds == 0
    finally:
        held.set()
        reviser.close()
    assert reviser.submit(np.zeros(TARGET_RATE, dtype=np.float32), "en") is None  # closed


@dataclass
class Streamed:
    """What a channel streamed through a transcriber with a reviser gave."""

    finals: list[Final]
    revised: list[RevisedFinal]
    finals_before_close: int  # finals out once all the audio was pushed
    submitted_before_close: int  # revisions submitted by then
    submitted: int  # revisions submitted once the channel closed


def stream_revised(engine: Any, vad_model: Any, audio: np.ndarray, reviser: Reviser) -> Streamed:
    """Push `audio` in 0.5 s steps (each settled: every utterance gets the ones before as
    its prompt) through a channel whose finals `reviser` revises; close it and wait for its
    revisions."""

    async def main() -> Streamed:
        from concurrent.futures import ThreadPoolExecutor

        scheduler = RecognitionScheduler(engine, workers=1)
        scheduler.start()
        finals: list[Final] = []
        revised: list[RevisedFinal] = []
        with ThreadPoolExecutor(1) as pool:
            tr = StreamingTranscriber(
                "t/customer",
                engine,
                scheduler,
                VadSegmenter(vad_model),
                pool,
                on_partial=lambda p: None,
                on_final=finals.append,
                options=StreamingOptions(partials=False),
                reviser=reviser,
                on_revised=revised.append,
            )
            step = TARGET_RATE // 2
            for lo in range(0, audio.size, step):
                await tr.push(audio[lo : lo + step])
                await tr.settle()
            before = (len(finals), reviser.stats.done + len(tr._revisions))
            await tr.close()
            submitted = reviser.stats.done + len(tr._revisions)
            await tr.revised()
        scheduler.close()
        return Streamed(finals, revised, *before, submitted)

    try:
        return asyncio.run(main())
    finally:
        reviser.close()


def test_tiny_finals_are_revised_by_base_during_and_after_the_call(
    engine: Any, vad_model: Any
) -> None:
    """Live finals from tiny.en (the finals' model is tiny here, to leave room to improve);
    the reviser runs base. A revision comes during the call (every 20 s of the channel) and
    at its end; the revised transcript is closer to the reference than the live one."""
    name = "tel_asterisk_allison_demo-instruct.wav"
    audio = load_16k(name)
    reviser = Reviser(
        WhisperOptions(model="embedded:base"), RevisionOptions(seconds=20.0, beam_size=5)
    )

    streamed = stream_revised(engine, vad_model, audio, reviser)
    finals, revised, submitted = streamed.finals, streamed.revised, streamed.submitted
    assert reviser.stats.done >= 3 and submitted >= 3  # two mid-call stretches and the rest
    assert revised, "nothing was revised"
    by_utterance = {f.utterance: f for f in finals}
    for r in revised:
        final = by_utterance[r.utterance]
        assert r.text and not same_text(r.text, final.text)
        assert all(final.start - 2.0 <= w.start <= final.end + 2.0 for w in r.words)
    changed = {r.utterance: r.text for r in revised}
    live = " ".join(f.text for f in finals)
    record = " ".join(changed.get(f.utterance, f.text) for f in finals)
    reference = reference_text(name)
    live_errors, n = word_errors(reference, live)
    revised_errors, _ = word_errors(reference, record)
    assert revised_errors < live_errors, (live_errors, revised_errors, n)


def test_the_spool_gives_back_each_stretch_as_it_was_heard() -> None:
    """A channel's audio held for revision: in a temporary file, a few seconds in memory at
    most. Stretches taken out (within the file, across samples not yet written, after drops
    before, inside and past what is held) read back exactly what was pushed (as int16), on
    another thread; every file is closed once its stretch is read or discarded, or dropped,
    and at `close`; a failed write makes its stretch fail instead of reading zeros."""
    import concurrent.futures

    from models.revise import SPOOL_CHUNK, AudioSpool, _SpoolFile

    rate = TARGET_RATE
    rng = np.random.default_rng(7)
    pushed = (rng.uniform(-1, 1, 40 * rate)).astype(np.float32)
    heard = (np.clip(pushed, -1, 1) * 32767).astype(np.int16).astype(np.float32) / 32767.0
    files: list[_SpoolFile] = []
    spool = AudioSpool()
    files.append(spool._file)
    # (sample, what): each done once that many samples are in
    cuts = [
        (3 * rate + 5, "take"),  # within the file
        (int(9.5 * rate), "take"),  # across the file and the samples still in memory
        (int(9.5 * rate), "take"),  # nothing since: an empty stretch
        (2 * rate, "drop"),  # before the start: nothing
        (11 * rate, "drop"),
        (23 * rate + 1, "take"),
        (60 * rate, "drop"),  # (checked at the end: past what is held)
    ]
    taken = []
    at = 0
    with concurrent.futures.ThreadPoolExecutor(1) as other:
        for size in (160, 320, 7 * rate, 800, 3 * rate, 480) * 20:
            if at >= pushed.size:
                break
            chunk = pushed[at : at + size]
            spool.append(chunk)
            at += chunk.size
            assert sum(p.size for p in spool._pending) < SPOOL_CHUNK + size  # not all of it
            while cuts and cuts[0][0] <= at:
                cut, what = cuts.pop(0)
                if what == "take":
                    in_memory = spool._written < cut
                    stretch = spool.take(cut)
                    taken.append((stretch, in_memory, other.submit(stretch)))
                else:
                    spool.drop(cut)
                files.append(spool._file)
        assert [c for c, _ in cuts] == [60 * rate] and at == pushed.size
        assert spool.samples == pushed.size - 23 * rate - 1
        results = [(s.lo, s.hi, in_memory, f.result()) for s, in_memory, f in taken]
    assert [(lo, hi) for lo, hi, _, _ in results] == [
        (0, 3 * rate + 5),
        (3 * rate + 5, int(9.5 * rate)),
        (int(9.5 * rate), int(9.5 * rate)),
        (11 * rate, 23 * rate + 1),  # (the drop let 9.5 s..11 s go)
    ]
    assert results[1][2], "the second take reached samples not yet written"
    for lo, hi, _, audio in results:
        np.testing.assert_array_equal(audio, heard[lo:hi])
    spool.drop(60 * rate)  # past the end: everything goes
    assert spool.samples == 0 and spool.start == pushed.size
    spool.append(pushed[:100])
    unread = spool.take(spool.end)
    unread.discard()
    spool.append(pushed[: 6 * rate])  # written (more than SPOOL_CHUNK), then closed
    files.append(spool._file)
    spool.close()
    AudioSpool._thread().submit(lambda: None).result()  # what was queued before it is done
    assert all(f.handle is None for f in [*files, unread.file])

    broken = AudioSpool()
    broken._file.error = OSError(28, "No space left on device")
    broken.append(pushed[: 6 * rate])
    stretch = broken.take(broken.end)
    with pytest.raises(OSError, match="No space left"):
        stretch()


def test_by_default_a_channel_is_revised_once_at_its_end_whole(engine: Any, vad_model: Any) -> None:
    """`RevisionOptions()` (CALLCUE_REVISE_SECONDS=0): no revision while the 73 s prompt
    plays, one when the channel closes, of all its audio, as offline decoding of the channel
    hears it (60 s stretches began mid-sentence: README "Recognition")."""
    name = "tel_asterisk_allison_demo-instruct.wav"
    audio = load_16k(name)
    reviser = Reviser(WhisperOptions(model="embedded:tiny.en"), RevisionOptions())

    streamed = stream_revised(engine, vad_model, audio, reviser)
    assert streamed.finals_before_close >= 5, "finals came during the call"
    during, revised = streamed.submitted_before_close, streamed.revised
    assert during == 0
    assert reviser.stats.done == 1 and reviser.stats.failed == 0
    assert abs(reviser.stats.audio_seconds - audio.size / TARGET_RATE) < 0.05
    assert revised and max(w.end for r in revised for w in r.words) > 60.0


def test_revision_progress_counts_down_as_its_segments_are_decoded() -> None:
    """`left_seconds` (the CLI's "revising" bar): the audio waiting, less what the stretch
    being revised has decoded so far, segment by segment; nothing once it is done."""
    import threading
    from types import SimpleNamespace

    reviser = Reviser(WhisperOptions(model="embedded:tiny.en"), RevisionOptions())
    step = threading.Semaphore(0)
    read = threading.Semaphore(0)  # a segment was taken in and the next one asked for

    def segments() -> Any:
        for end in (10.0, 25.0, 60.0):  # (the last one past the stretch's 50 s)
            word = SimpleNamespace(word=" so", start=end - 1, end=end, probability=0.9)
            yield SimpleNamespace(end=end, words=[word])
            read.release()
            step.acquire()  # the next segment is decoded when the test says so

    reviser._model = SimpleNamespace(  # a model whose decoding the test paces
        transcribe=lambda *a, **k: (segments(), SimpleNamespace(language="en")),
        model=SimpleNamespace(is_multilingual=False),
    )

    def left_once_read() -> float:
        assert read.acquire(timeout=30), "the revision never took the segment in"
        return reviser.left_seconds()

    try:
        future = reviser.submit(np.zeros(50 * TARGET_RATE, dtype=np.float32), "en")
        assert future is not None
        assert left_once_read() == 40.0
        step.release()
        assert left_once_read() == 25.0
        step.release()
        assert left_once_read() == 0.0  # (at most the stretch itself)
        step.release()
        assert len(future.result(timeout=30).words) == 3
        assert reviser.left_seconds() == 0.0 and reviser.stats.decoded_seconds == 0.0
    finally:
        for _ in range(3):
            step.release()
        reviser.close()
