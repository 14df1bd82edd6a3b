"""Reading recordings (WAV, FLAC, ...) as interleaved 16-bit channels for streaming."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr


class AudioFileError(ValueError):
    """A recording that cannot be used as a call."""


@dataclass(frozen=True, slots=True)
class CallAudio:
    samples: npt.NDArray[np.int16]  # shape (n, channels)
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        return float(self.samples.shape[0] / self.sample_rate)


def load_call_audio(paths: list[str | Path], channels: int | None = None) -> CallAudio:
    """One file (mono or stereo) or two mono files as two channels, as int16 frames.

    With `channels=1` a stereo file is mixed down; two files of different rates are
    resampled to the higher one; the shorter of two files is padded with silence.
    """
    if not 1 <= len(paths) <= 2:
        raise AudioFileError("give one recording, or two mono recordings as two channels")
    tracks: list[npt.NDArray[np.float32]] = []
    rates: list[int] = []
    for path in paths:
        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioFileError(f"cannot read {path}: {exc}") from exc
        if len(paths) == 2 and data.shape[1] != 1:
            data = data.mean(axis=1, keepdims=True)
        tracks.append(data)
        rates.append(int(rate))
    rate = max(rates)
    tracks = [
        t if r == rate else soxr.resample(t, r, rate).astype(np.float32)
        for t, r in zip(tracks, rates, strict=True)
    ]
    length = max(t.shape[0] for t in tracks)
    audio = np.concatenate([np.pad(t, ((0, length - t.shape[0]), (0, 0))) for t in tracks], axis=1)
    if channels is not None and channels != audio.shape[1]:
        if channels == 1:
            audio = audio.mean(axis=1, keepdims=True)
        else:
            raise AudioFileError(
                f"{channels} channel names given but the recording has {audio.shape[1]} channel(s)"
            )
    pcm = (np.clip(audio, -1.0, 1.0 - 1 / 32768) * 32768.0).astype(np.int16)
    return CallAudio(samples=pcm, sample_rate=rate)


# Two channels this alike carry one recording twice: 1 - r², r the channels' correlation (the
# share of one channel that a gain times the other does not explain). Archives and softphones
# often save a mixed call as "stereo" with the same audio on both channels, at times at
# different levels: the four real calls in ../shared/data (MP3, 44.1 kHz) are at 0.00000 to
# 0.004, lossy coding's noise; a real two-party recording, each party on its own channel, at
# about 1 (independent), and still over 0.9 with a tenth of each party leaking into the other.
SAME_AUDIO_UNEXPLAINED = 0.04
_BLOCK = 1 << 20


def same_audio(audio: CallAudio) -> bool:
    """Whether a two-channel recording carries the same audio on both channels, at any level
    (a mono call saved as stereo), so that its channels are not two parties. Silence is not."""
    if audio.channels != 2:
        return False
    both = left = right = 0.0
    for lo in range(0, len(audio.samples), _BLOCK):
        block = audio.samples[lo : lo + _BLOCK].astype(np.float64)
        both += float(block[:, 0] @ block[:, 1])
        left += float(block[:, 0] @ block[:, 0])
        right += float(block[:, 1] @ block[:, 1])
    if left == 0 or right == 0:
        return False
    return 1 - both * both / (left * right) <= SAME_AUDIO_UNEXPLAINED


def one_channel(audio: CallAudio) -> CallAudio:
    """The channels mixed down to one."""
    mixed = audio.samples.astype(np.int32).sum(axis=1) // audio.channels
    return CallAudio(mixed.astype(np.int16).reshape(-1, 1), audio.sample_rate)
