import numpy as np
import pytest

from audio.codec import (
    AudioFormat,
    CodecError,
    StreamDecoder,
    decode_alaw,
    decode_mulaw,
    decode_pcm16,
    encode_alaw,
    encode_mulaw,
)


def test_mulaw_literal_bytes() -> None:
    # G.711 μ-law: 0xFF and 0x7F are the two zeros, 0x00 is the most negative value
    assert decode_mulaw(b"\xff\x7f\x00\x80").tolist() == [0, 0, -32124, 32124]
    assert decode_mulaw(b"\xfe\x7e\xef").tolist() == [8, -8, 132]


def test_alaw_literal_bytes() -> None:
    assert decode_alaw(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]


def test_g711_round_trip_is_close() -> None:
    x = np.array([0, 100, -100, 1000, -1000, 12000, -12000, 32000, -32000], dtype=np.int16)
    for enc, dec in ((encode_mulaw, decode_mulaw), (encode_alaw, decode_alaw)):
        y = dec(enc(x)).astype(np.int32)
        assert np.all(np.abs(y - x) <= np.maximum(np.abs(x) // 16, 16)), (enc.__name__, y)


def test_pcm16_little_endian_and_odd_bytes() -> None:
    assert decode_pcm16(b"\x01\x00\xff\xff\x00\x80").tolist() == [1, -1, -32768]
    with pytest.raises(CodecError, match="even number of bytes"):
        decode_pcm16(b"\x01\x00\x02")


def test_stereo_split_carries_half_frames() -> None:
    dec = StreamDecoder(AudioFormat("pcm16", 16000, 2))
    left, right = 1000, -2000
    frame = np.array([left, right] * 4, dtype="<i2").tobytes()
    a = dec.decode(frame[:6])  # one whole frame plus the left sample of the next
    b = dec.decode(frame[6:])
    out = np.concatenate([a, b], axis=1)
    assert out.shape == (2, 4)
    assert np.allclose(out[0], left / 32768) and np.allclose(out[1], right / 32768)


@pytest.mark.parametrize("rate", [8000, 11025, 44100, 48000])
def test_resampling_keeps_duration_and_pitch(rate: int) -> None:
    t = np.arange(rate * 2) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    dec = StreamDecoder(AudioFormat("pcm16", rate, 1))
    step = rate // 10 + 3  # odd chunk sizes: state must carry across calls
    parts = [dec.decode(tone[i : i + step].tobytes()) for i in range(0, tone.size, step)]
    out = np.concatenate([*parts, dec.flush()], axis=1)[0]
    assert abs(out.size - 32000) <= 2
    spectrum = np.abs(np.fft.rfft(out[4000:-4000]))
    peak_hz = np.argmax(spectrum) * 16000 / (out.size - 8000)
    assert abs(peak_hz - 440) < 3


def test_mulaw_8k_stream_decodes_to_16k() -> None:
    x = (np.sin(np.arange(800) / 5) * 8000).astype(np.int16)
    dec = StreamDecoder(AudioFormat("mulaw", 8000, 1))
    out = np.concatenate([dec.decode(encode_mulaw(x)), dec.flush()], axis=1)
    assert out.shape[0] == 1 and abs(out.shape[1] - 1600) <= 2
