"""Who is speaking: the GE2E speaker encoder of Resemblyzer, in numpy, and online clustering.

The encoder (Wan et al., "Generalized End-to-End Loss for Speaker Verification", 2018) is the
pretrained model that the PyPI package `resemblyzer` (Apache-2.0) ships as a PyTorch file.
`models/convert_speaker.py` turned it once into plain arrays (`artifacts/speaker.npz`, with
the licence notice beside it), so serving needs no torch: a 40-band mel spectrogram (25 ms
windows, 10 ms hop, power, not log) goes through three LSTM layers of 256; the last hidden
state, through a linear layer and a ReLU, L2-normalized, is a 256-number voice print. On the
real 8 kHz calls here, the centres of two parties' prints were 0.76–0.77 alike, a print of
one party 0.82 from its own party's centre on average and 0.66 from the other's.

`SpeakerClusters` groups the prints of one call as they come: the call starts with no speaker
known; a print far from every speaker starts a new one (up to `max_speakers`), the others join
the nearest.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from audio.codec import TARGET_RATE, Float32Array

DEFAULT_SPEAKER_MODEL = Path(__file__).parent / "artifacts" / "speaker.npz"
# SHA-256 of the arrays file as `convert_speaker.py` writes it (a changed file is refused)
SPEAKER_SHA256 = "a03d8e93f6e7bba33ef919f047590b2b6fa5f988a44e9d21f4bfd19a744fc53d"
N_FFT = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
N_MELS = 40
WINDOW_FRAMES = 160  # 1.6 s: the span the encoder was trained on
LAYERS = 3
# A window printed alone (`SpeakerEncoder.span_prints`) is raised to -30 dBFS when quieter, as
# Resemblyzer raises a clip, but by at most this much: a window that is mostly a pause must not
# be printed at the level of speech
MAX_WINDOW_GAIN = 10.0
# The LSTM is hundreds of small matrix products: OpenBLAS spreading each over its threads
# made a 3 s stretch take 1.7 s instead of 0.07 s on 2 cores. One thread for them.
_BLAS = ThreadpoolController()


class SpeakerModelError(RuntimeError):
    """The speaker model's arrays are missing or not the ones the code was written for."""


@functools.cache
def mel_filters(sample_rate: int = TARGET_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> Any:
    """The Slaney-style mel filterbank (librosa's default), shape (n_mels, 1 + n_fft // 2)."""
    f_min, f_sp = 0.0, 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = (min_log_hz - f_min) / f_sp
    logstep = np.log(6.4) / 27.0

    def hz_to_mel(hz: Any) -> Any:
        hz = np.asarray(hz, dtype=np.float64)
        mel = (hz - f_min) / f_sp
        high = hz >= min_log_hz
        log_mel = min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep
        return np.where(high, log_mel, mel)

    def mel_to_hz(mel: Any) -> Any:
        mel = np.asarray(mel, dtype=np.float64)
        hz = f_min + f_sp * mel
        high = mel >= min_log_mel
        return np.where(high, min_log_hz * np.exp(logstep * (mel - min_log_mel)), hz)

    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def mel_spectrogram(audio: Float32Array) -> Any:
    """Power mel spectrogram, frames × 40, as the encoder was trained on (librosa's
    `melspectrogram` with a centred, zero-padded periodic Hann STFT)."""
    audio = np.asarray(audio, dtype=np.float32)
    padded = np.pad(audio, (N_FFT // 2, N_FFT // 2))
    n = 1 + (len(padded) - N_FFT) // HOP
    if n <= 0:
        return np.zeros((0, N_MELS), dtype=np.float32)
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0])
    )
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return (power.astype(np.float32) @ mel_filters().T).astype(np.float32)


def _sigmoid(x: Any) -> Any:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass(frozen=True, slots=True)
class Print:
    """A voice print of the audio from `start` to `end` (call seconds)."""

    start: float
    end: float
    vector: Any  # (256,) float32, L2-normalized


class SpeakerEncoder:
    """GE2E voice prints from 16 kHz audio. Thread-safe (numpy only, no state between calls)."""

    def __init__(self, path: str | Path | None = None) -> None:
        path = Path(path) if path else DEFAULT_SPEAKER_MODEL
        if not path.is_file():
            raise SpeakerModelError(
                f"the speaker model {path} is missing; it ships with callcue "
                "(python -m models.convert_speaker rebuilds it from the resemblyzer package)"
            )
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if path == DEFAULT_SPEAKER_MODEL and digest != SPEAKER_SHA256:
            raise SpeakerModelError(
                f"the speaker model {path} has SHA-256 {digest}, not the {SPEAKER_SHA256} "
                "it shipped with; rebuild it: python -m models.convert_speaker"
            )
        self.path = path
        self.sha256 = digest
        with np.load(path) as arrays:
            self.w_ih = [arrays[f"w_ih_{k}"].astype(np.float32).T.copy() for k in range(LAYERS)]
            self.w_hh = [arrays[f"w_hh_{k}"].astype(np.float32).T.copy() for k in range(LAYERS)]
            self.bias = [arrays[f"b_{k}"].astype(np.float32) for k in range(LAYERS)]
            self.linear_w = arrays["linear_w"].astype(np.float32).T.copy()
            self.linear_b = arrays["linear_b"].astype(np.float32)
        self.hidden = self.w_hh[0].shape[0]

    def embed_mels(self, mels: Any, lengths: Any) -> Any:
        """Voice prints of a batch of mel windows (batch × frames × 40, zero-padded at the
        end; `lengths` the real frames of each): the LSTM's state after each window's last
        real frame."""
        mels = np.asarray(mels, dtype=np.float32)
        batch, steps, _ = mels.shape
        lengths = np.asarray(lengths)
        x = mels
        for layer in range(LAYERS):
            gates_in = x @ self.w_ih[layer] + self.bias[layer]  # batch × steps × 4H
            h = np.zeros((batch, self.hidden), dtype=np.float32)
            c = np.zeros((batch, self.hidden), dtype=np.float32)
            out = np.empty((batch, steps, self.hidden), dtype=np.float32)
            w_hh = self.w_hh[layer]
            hs = self.hidden
            for t in range(steps):
                g = gates_in[:, t] + h @ w_hh
                i = _sigmoid(g[:, :hs])
                f = _sigmoid(g[:, hs : 2 * hs])
                cand = np.tanh(g[:, 2 * hs : 3 * hs])
                o = _sigmoid(g[:, 3 * hs :])
                c = f * c + i * cand
                h = o * np.tanh(c)
                out[:, t] = h
            x = out
        h_last = x[np.arange(batch), np.maximum(lengths, 1) - 1]
        raw = np.maximum(h_last @ self.linear_w + self.linear_b, 0.0)
        norm = np.linalg.norm(raw, axis=1, keepdims=True)
        return (raw / np.maximum(norm, 1e-9)).astype(np.float32)

    def prints(
        self,
        audio: Float32Array,
        offset: float = 0.0,
        hop: float = 0.5,
        min_seconds: float = 0.4,
    ) -> list[Print]:
        """Voice prints of 1.6 s windows every `hop` seconds over `audio` (a stretch of speech
        starting at call second `offset`); a stretch shorter than a window gets one print of
        all of it, and none when shorter than `min_seconds`."""
        seconds = len(audio) / TARGET_RATE
        if seconds < min_seconds:
            return []
        mel = mel_spectrogram(audio)
        total = mel.shape[0]
        step = max(1, round(hop * TARGET_RATE / HOP))
        starts = list(range(0, max(1, total - WINDOW_FRAMES + 1), step))
        if total > WINDOW_FRAMES and starts[-1] + WINDOW_FRAMES < total:
            starts.append(total - WINDOW_FRAMES)  # the last window ends where the audio does
        lengths = [min(WINDOW_FRAMES, total - s) for s in starts]
        width = max(lengths)
        batch = np.zeros((len(starts), width, N_MELS), dtype=np.float32)
        for k, (s, n) in enumerate(zip(starts, lengths, strict=True)):
            batch[k, :n] = mel[s : s + n]
        with _BLAS.limit(limits=1, user_api="blas"):
            vectors = self.embed_mels(batch, lengths)
        frame = HOP / TARGET_RATE
        return [
            Print(round(offset + s * frame, 3), round(offset + min(s + n, total) * frame, 3), v)
            for s, n, v in zip(starts, lengths, vectors, strict=True)
        ]

    def span_prints(
        self,
        audio: Float32Array,
        offset: float,
        spans: list[tuple[float, float]],
        max_gain: float = MAX_WINDOW_GAIN,
    ) -> list[Print]:
        """One voice print for each span (start, end in call seconds, at most a window long)
        of `audio`, which starts at call second `offset`; each span's audio is raised to
        -30 dBFS first when quieter, by at most `max_gain` (`raised`), so a span's print does
        not depend on what else was computed with it. Spans outside `audio` get none."""
        mels, lengths, kept = [], [], []
        with _BLAS.limit(limits=1, user_api="blas"):  # (many small products: see `_BLAS`)
            for start, end in spans:
                lo = max(round((start - offset) * TARGET_RATE), 0)
                hi = min(round((end - offset) * TARGET_RATE), len(audio))
                if hi - lo < HOP:
                    continue
                mel = mel_spectrogram(raised(audio[lo:hi], max_gain))[:WINDOW_FRAMES]
                mels.append(mel)
                lengths.append(len(mel))
                kept.append((start, end))
            if not mels:
                return []
            batch = np.zeros((len(mels), max(lengths), N_MELS), dtype=np.float32)
            for k, mel in enumerate(mels):
                batch[k, : len(mel)] = mel
            vectors = self.embed_mels(batch, lengths)
        return [Print(round(s, 3), round(e, 3), v) for (s, e), v in zip(kept, vectors, strict=True)]


def raised(audio: Float32Array, max_gain: float | None = None) -> Float32Array:
    """Quiet speech raised to -30 dBFS, as Resemblyzer raises a clip before its prints (never
    lowered; by at most `max_gain`, if given)."""
    rms = float(np.sqrt(np.mean(audio**2))) if len(audio) else 0.0
    target = 10 ** (-30 / 20)
    if 0 < rms < target:
        gain = target / max(rms, 1e-6)
        out: Float32Array = audio * np.float32(gain if max_gain is None else min(gain, max_gain))
        return out
    return audio


@dataclass(slots=True)
class Speaker:
    total: Any  # sum of the prints assigned to it
    count: int = 0

    @property
    def centre(self) -> Any:
        norm = float(np.linalg.norm(self.total))
        return self.total / max(norm, 1e-9)


THIRD_VOICE_BELOW = 0.65


@dataclass(slots=True)
class SpeakerClusters:
    """The speakers of one call, found as its prints come (none known at the start).

    A print whose best similarity to the speakers so far is under `new_below` starts a new
    speaker, while there are fewer than `max_speakers`; otherwise it joins the most similar.
    Only a print that is clearly one speaker's (`margin` over the next) moves its centre.
    """

    new_below: float = 0.8  # (0.6 took the two parties of the AWS call for one voice)
    # two parties, and one more voice: an IVR prompt before the agent, a second agent after a
    # transfer (with two at most, such a voice was put down to the nearer party's)
    max_speakers: int = 3
    margin: float = 0.05
    speakers: list[Speaker] = field(default_factory=list)

    def similarities(self, vector: Any) -> Any:
        if not self.speakers:
            return np.zeros(0, dtype=np.float32)
        centres = np.stack([s.centre for s in self.speakers])
        return centres @ vector

    def assign(self, vector: Any, may_start: bool = True) -> int:
        """The speaker of a print (a new one if it is unlike all and `may_start`). A speaker
        with no prints (merged into another by a refit) is never joined; a new voice takes
        its place."""
        sims = self.similarities(vector)
        live = np.array([s.count > 0 for s in self.speakers], dtype=bool)
        sims = np.where(live, sims, -np.inf)
        free = [k for k, alive in enumerate(live) if not alive]
        # a voice beside two known ones must be unlike both by more than a party's own
        # prints often are (their centres are 0.76-0.77 alike on the real calls here)
        below = self.new_below if live.sum() < 2 else THIRD_VOICE_BELOW
        if not live.any() or (
            may_start and sims.max() < below and (free or len(sims) < self.max_speakers)
        ):
            if free:
                self.speakers[free[0]] = Speaker(vector.astype(np.float64).copy(), 1)
                return free[0]
            self.speakers.append(Speaker(vector.astype(np.float64).copy(), 1))
            return len(self.speakers) - 1
        best = int(np.argmax(sims))
        others = np.delete(sims[live], int(np.sum(live[:best])))
        if len(others) == 0 or sims[best] - others.max() >= self.margin:
            self.speakers[best].total = self.speakers[best].total + vector
            self.speakers[best].count += 1
        return best
