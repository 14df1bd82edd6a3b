"""Recordings as calls: a mixed call saved as stereo (the same audio on both channels) is one
channel, not two parties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.files import AudioFileError, CallAudio, load_call_audio, same_audio
from tests.conftest import AUDIO

DUAL_MONO = [f"ml_callytics_example_{lang}.mp3" for lang in ("de", "fr", "ja", "tr")]


@pytest.mark.parametrize("name", DUAL_MONO)
def test_real_mixed_calls_saved_as_stereo_carry_the_same_audio_twice(name: str) -> None:
    audio = load_call_audio([AUDIO / name])
    assert audio.channels == 2 and same_audio(audio)


def test_real_two_party_recordings_are_two_parties() -> None:
    pair = load_call_audio(
        [AUDIO / "cs_aws_auto_repairs_40_agent.wav", AUDIO / "cs_aws_auto_repairs_40_caller.wav"]
    )
    stereo = load_call_audio([AUDIO / "cs_genesys_audiohook_stereo_pcmu.wav"])
    overlap = load_call_audio([AUDIO / "wb_stereo_2speaker_overlap.wav"])
    for audio in (pair, stereo, overlap):
        assert audio.channels == 2 and not same_audio(audio)
    mono = load_call_audio([AUDIO / "wb_timit_LDC93S1.wav"])
    assert not same_audio(mono)
    silent = CallAudio(np.zeros((8000, 2), dtype=np.int16), 8000)
    assert not same_audio(silent)
    # each party on its own channel with a tenth of the other leaking in: two parties
    a = load_call_audio([AUDIO / "cs_aws_auto_repairs_40_agent.wav"]).samples[:, 0]
    b = load_call_audio([AUDIO / "cs_aws_auto_repairs_40_caller.wav"]).samples[:, 0]
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    leak = np.stack([a + 0.1 * b, b + 0.1 * a], axis=1).astype(np.int16)
    assert not same_audio(CallAudio(leak, 8000))
    # the same audio at two levels is still one recording
    left = mono.samples[:, 0].astype(np.float64)
    louder = np.stack([left, 0.6 * left], axis=1).astype(np.int16)
    assert same_audio(CallAudio(louder, mono.sample_rate))


def dual_mono(tmp_path: Path) -> Path:
    """A real mono recording saved as stereo, each channel with its own coding noise."""
    audio = load_call_audio([AUDIO / "ls_test-clean_4507-16021-0012.wav"])
    rng = np.random.default_rng(7)
    left = audio.samples[:, 0].astype(np.float64)
    noise = rng.normal(0, 0.02 * left.std(), size=(len(left), 2))
    both = np.clip(left[:, None] + noise, -32768, 32767).astype(np.int16)
    path = tmp_path / "archived-call.wav"
    sf.write(path, both, audio.sample_rate, subtype="PCM_16")
    return path


def test_a_dual_mono_file_is_read_as_one_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli import _load

    path = dual_mono(tmp_path)
    audio, names = _load([str(path)], None)
    assert audio.channels == 1 and names == ["customer"]
    assert "same audio" in capsys.readouterr().err
    audio, names = _load([str(path)], None, diarize=True)
    assert audio.channels == 1 and names == ["agent", "customer"]
    capsys.readouterr()
    # a batch named "customer,agent" for its stereo files: this one is one channel, the first
    audio, names = _load([str(path)], "customer,agent")
    assert audio.channels == 1 and names == ["customer"]
    assert "named customer" in capsys.readouterr().err
    with pytest.raises(AudioFileError, match="drop --channels"):
        _load([str(path)], "agent", diarize=True)
    # two parties, one on each channel, are still two channels
    pair = [
        str(AUDIO / "cs_aws_auto_repairs_40_agent.wav"),
        str(AUDIO / "cs_aws_auto_repairs_40_caller.wav"),
    ]
    audio, names = _load(pair, None)
    assert audio.channels == 2 and names == ["customer", "agent"]
