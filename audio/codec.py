"""G.711 and PCM16 codecs, channel de-interleaving and streaming resampling to 16 kHz."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
import soxr

Encoding = Literal["pcm16", "mulaw", "alaw"]
ENCODINGS: tuple[str, ...] = get_args(Encoding)
TARGET_RATE = 16_000
MIN_RATE = 4_000
MAX_RATE = 192_000

Float32Array = npt.NDArray[np.float32]


class CodecError(ValueError):
    """Audio bytes that cannot be decoded in the negotiated format."""


def _mulaw_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


MULAW_TO_PCM16 = _mulaw_table()
ALAW_TO_PCM16 = _alaw_table()


def decode_mulaw(data: bytes) -> npt.NDArray[np.int16]:
    """G.711 μ-law bytes to 16-bit linear samples."""
    return MULAW_TO_PCM16[np.frombuffer(data, dtype=np.uint8)]


def decode_alaw(data: bytes) -> npt.NDArray[np.int16]:
    """G.711 A-law bytes to 16-bit linear samples."""
    return ALAW_TO_PCM16[np.frombuffer(data, dtype=np.uint8)]


def decode_pcm16(data: bytes) -> npt.NDArray[np.int16]:
    """Little-endian signed 16-bit bytes to samples; an odd byte count is an error."""
    if len(data) % 2:
        raise CodecError(f"pcm16 audio must have an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def encode_mulaw(samples: npt.NDArray[np.int16]) -> bytes:
    """16-bit linear samples to G.711 μ-law (used by clients, tests and integrations)."""
    x = samples.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return bytes((~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes())


def encode_alaw(samples: npt.NDArray[np.int16]) -> bytes:
    """16-bit linear samples to G.711 A-law."""
    x = samples.astype(np.int32)
    sign = np.where(x >= 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), 32767)
    exponent = np.clip(np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 7, 0, 7)
    mantissa = np.where(exponent == 0, magnitude >> 4, magnitude >> (exponent + 3)) & 0x0F
    return bytes(((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8).tobytes())


def pcm16_to_float(samples: npt.NDArray[np.int16]) -> Float32Array:
    return (samples.astype(np.float32) / 32768.0).astype(np.float32)


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """What the client sends: sample encoding, rate and number of interleaved channels."""

    encoding: Encoding
    sample_rate: int
    channels: int

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "pcm16" else 1


class StreamDecoder:
    """Decodes interleaved frames of any size into per-channel float32 16 kHz audio.

    A message may end in the middle of an interleaved frame (e.g. the left sample of a
    stereo pair); those samples are carried into the next call, never dropped. Resampling
    state is carried across calls too, so chunk boundaries leave no clicks.
    """

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._carry = np.zeros(0, dtype=np.int16)
        self._resampler: soxr.ResampleStream | None = None
        if fmt.sample_rate != TARGET_RATE:
            self._resampler = soxr.ResampleStream(
                fmt.sample_rate, TARGET_RATE, fmt.channels, dtype="float32", quality="HQ"
            )
        self.input_samples = 0  # per channel, at the input rate

    def decode(self, data: bytes) -> Float32Array:
        """Return an array of shape (channels, n) at 16 kHz (n may be 0)."""
        if self.format.encoding == "pcm16":
            samples = decode_pcm16(data)
        elif self.format.encoding == "mulaw":
            samples = decode_mulaw(data)
        else:
            samples = decode_alaw(data)
        if self._carry.size:
            samples = np.concatenate([self._carry, samples])
        channels = self.format.channels
        whole = samples.size - samples.size % channels
        self._carry = samples[whole:].copy()
        frames = pcm16_to_float(samples[:whole]).reshape(-1, channels)
        self.input_samples += frames.shape[0]
        return self._resample(frames, last=False)

    def flush(self) -> Float32Array:
        """Drain the resampler at the end of the stream (an incomplete frame is dropped)."""
        empty = np.zeros((0, self.format.channels), dtype=np.float32)
        return self._resample(empty, last=True)

    def _resample(self, frames: Float32Array, *, last: bool) -> Float32Array:
        if self._resampler is not None:
            frames = self._resampler.resample_chunk(frames, last=last)
        return np.ascontiguousarray(frames.T, dtype=np.float32)
