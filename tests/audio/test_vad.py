"""Streaming VAD on real speech and silence, with the real Silero model."""

import numpy as np
import pytest

from audio.vad import WINDOW, SpeechEnded, SpeechStarted, VadOptions, VadSegmenter
from tests.conftest import load_16k


def push_all(seg: VadSegmenter, audio: np.ndarray, chunk: int) -> list[object]:
    events: list[object] = []
    for i in range(0, audio.size, chunk):
        events += seg.push(audio[i : i + chunk])
    return events


def test_jfk_speech_segments(vad_model) -> None:  # type: ignore[no-untyped-def]
    audio = load_16k("wb_jfk_inaugural_1961.flac")
    events = push_all(VadSegmenter(vad_model), audio, 1600)
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    # "And so, my fellow Americans / ask not / what your country ... / ask what you ..."
    assert 3 <= len(starts) <= 6 and len(ends) >= len(starts) - 1
    assert starts[0].sample / 16000 < 1.0
    speech = sum(e.end - e.start for e in ends) / 16000
    assert 6.0 < speech < 11.0


@pytest.mark.parametrize("chunk", [160, 512, 777, 16000])
def test_chunking_does_not_change_events(vad_model, chunk: int) -> None:  # type: ignore[no-untyped-def]
    audio = load_16k("ls_test-clean_4507-16021-0012.wav")
    audio = np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(16000, np.float32)])
    reference = push_all(VadSegmenter(vad_model), audio, WINDOW)
    assert push_all(VadSegmenter(vad_model), audio, chunk) == reference
    assert any(isinstance(e, SpeechEnded) for e in reference)


def test_silence_and_low_noise_are_not_speech(vad_model) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    silence = np.zeros(16000 * 5, np.float32)
    noise = (rng.standard_normal(16000 * 5) * 0.003).astype(np.float32)
    for audio in (silence, noise):
        seg = VadSegmenter(vad_model)
        assert push_all(seg, audio, 3200) == []
        assert not seg.in_speech


def test_hangover_sets_end_of_utterance(vad_model) -> None:  # type: ignore[no-untyped-def]
    speech = load_16k("wb_timit_LDC93S1.wav")
    audio = np.concatenate([speech, np.zeros(16000, np.float32)])
    short = push_all(VadSegmenter(vad_model, VadOptions(min_silence_ms=200)), audio, 512)
    long = push_all(VadSegmenter(vad_model, VadOptions(min_silence_ms=800)), audio, 512)
    assert isinstance(short[-1], SpeechEnded) and isinstance(long[-1], SpeechEnded)
    # a shorter hangover never merges more: at least as many utterances
    assert len(short) >= len(long)


def test_a_long_utterances_shorter_pause_says_so(vad_model) -> None:  # type: ignore[no-untyped-def]
    """A recorded IVR prompt pauses about 0.3 s between its sentences: under the hangover,
    so only an utterance already `long_speech_ms` long ends there, and its end says so."""
    audio = load_16k("tel_asterisk_allison_demo-instruct.wav")
    opts = VadOptions(long_speech_ms=3000)
    ends = [
        e for e in push_all(VadSegmenter(vad_model, opts), audio, 512) if isinstance(e, SpeechEnded)
    ]
    short = [e for e in ends if e.short]
    assert short and all(e.end - e.start >= 3 * 16000 for e in short)
    never = VadOptions(long_min_silence_ms=400)  # (the shorter pause is the hangover)
    plain = [
        e
        for e in push_all(VadSegmenter(vad_model, never), audio, 512)
        if isinstance(e, SpeechEnded)
    ]
    assert not any(e.short for e in plain) and len(plain) < len(ends)
