"""StreamDecoder on any bytes in any chunking: only CodecError (an odd pcm16 frame), and the
decoded audio of a stream is the same, sample for sample, however the stream was cut."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audio.codec import (
    MAX_RATE,
    MIN_RATE,
    TARGET_RATE,
    AudioFormat,
    CodecError,
    StreamDecoder,
    decode_alaw,
    decode_mulaw,
    decode_pcm16,
    encode_alaw,
    encode_mulaw,
)
from tests.fuzz.strategies import fuzz_settings

formats = st.builds(
    AudioFormat,
    encoding=st.sampled_from(["pcm16", "mulaw", "alaw"]),
    sample_rate=st.sampled_from([MIN_RATE, 8000, 11025, TARGET_RATE, 44100, MAX_RATE])
    | st.integers(min_value=MIN_RATE, max_value=MAX_RATE),
    channels=st.integers(min_value=1, max_value=4),
)


def decode_all(fmt: AudioFormat, chunks: list[bytes]) -> np.ndarray:
    decoder = StreamDecoder(fmt)
    parts = []
    for chunk in chunks:
        out = decoder.decode(chunk)
        assert out.dtype == np.float32 and out.ndim == 2 and out.shape[0] == fmt.channels
        parts.append(out)
    parts.append(decoder.flush())
    whole = np.concatenate(parts, axis=1)
    assert np.isfinite(whole).all()
    return whole


def cut(data: bytes, points: list[int], width: int) -> list[bytes]:
    edges = sorted({min(p * width, len(data)) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@fuzz_settings(100, slow_data=True)
@given(formats, st.binary(max_size=6000), st.lists(st.integers(0, 3000), max_size=20))
def test_any_bytes_any_chunking_decode_or_raise_codec_error(
    fmt: AudioFormat, data: bytes, points: list[int]
) -> None:
    decoder = StreamDecoder(fmt)
    for chunk in cut(data, points, 1):
        try:
            out = decoder.decode(chunk)
        except CodecError as exc:
            # only an odd pcm16 chunk, and the message says so
            assert fmt.encoding == "pcm16" and len(chunk) % 2 == 1
            assert f"got {len(chunk)}" in str(exc)
            return
        assert fmt.encoding != "pcm16" or len(chunk) % 2 == 0
        assert out.shape[0] == fmt.channels and np.isfinite(out).all()
    decoder.flush()


@fuzz_settings(100, slow_data=True)
@given(formats, st.binary(max_size=8000), st.lists(st.integers(0, 4000), max_size=25))
def test_decoded_stream_is_the_same_however_it_is_chunked(
    fmt: AudioFormat, data: bytes, points: list[int]
) -> None:
    width = fmt.bytes_per_sample
    data = data[: len(data) - len(data) % width]
    whole = decode_all(fmt, [data])
    chunked = decode_all(fmt, cut(data, points, width))
    assert chunked.shape == whole.shape
    assert np.array_equal(chunked, whole)
    # every whole interleaved frame is decoded; a trailing partial frame is dropped
    frames = len(data) // width // fmt.channels
    if fmt.sample_rate == TARGET_RATE:
        assert whole.shape[1] == frames
    else:
        expected = frames * TARGET_RATE / fmt.sample_rate
        assert abs(whole.shape[1] - expected) <= 2


@fuzz_settings(150)
@given(st.binary(max_size=512))
def test_g711_decode_encode_decode_is_stable(data: bytes) -> None:
    for decode, encode in ((decode_mulaw, encode_mulaw), (decode_alaw, encode_alaw)):
        pcm = decode(data)
        assert np.array_equal(decode(encode(pcm)), pcm)


@fuzz_settings(150)
@given(st.binary(max_size=512))
def test_pcm16_decodes_exactly_or_refuses_an_odd_length(data: bytes) -> None:
    if len(data) % 2:
        with pytest.raises(CodecError, match="even number of bytes"):
            decode_pcm16(data)
    else:
        assert decode_pcm16(data).astype("<i2").tobytes() == data
