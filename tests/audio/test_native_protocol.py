"""The native ingest protocol with literal messages: no sockets."""

import json

import pytest
from websockets.frames import CloseCode

from audio.protocols.events import Audio, ProtocolFailure, Stop
from audio.protocols.native import NativeIngestProtocol, StartCall

START = {
    "type": "start",
    "call_id": "c-1",
    "encoding": "pcm16",
    "sample_rate": 8000,
    "channels": ["customer", "agent"],
    "metadata": {"agent": "a7"},
}


def started(**changes: object) -> NativeIngestProtocol:
    proto = NativeIngestProtocol(max_frame_bytes=1024)
    [event] = proto.receive_text(json.dumps({**START, **changes}))
    assert isinstance(event, StartCall)
    return proto


def test_happy_path() -> None:
    proto = NativeIngestProtocol()
    [start] = proto.receive_text(json.dumps(START))
    assert isinstance(start, StartCall)
    assert start.call_id == "c-1" and start.channels == ("customer", "agent")
    assert start.format.channels == 2 and start.format.sample_rate == 8000
    assert start.metadata == {"agent": "a7"}
    assert proto.receive_bytes(b"\x00\x01" * 10) == [Audio(b"\x00\x01" * 10)]
    assert proto.receive_text('{"type":"stop"}') == [Stop()]
    assert proto.receive_bytes(b"\x00\x00") == []  # nothing after stop


def test_mono_default_channel() -> None:
    proto = NativeIngestProtocol()
    msg = {k: v for k, v in START.items() if k not in ("channels", "metadata")}
    [start] = proto.receive_text(json.dumps(msg))
    assert isinstance(start, StartCall) and start.channels == ("customer",)


def error_of(events: list[object]) -> ProtocolFailure:
    [event] = events
    assert isinstance(event, ProtocolFailure)
    return event


@pytest.mark.parametrize(
    ("text", "code", "close", "words"),
    [
        ('{"type": "start", ', "bad_json", CloseCode.INVALID_DATA, "not valid JSON"),
        ("[1, 2]", "bad_message", CloseCode.INVALID_DATA, "JSON object"),
        ('{"call_id": "x"}', "missing_field", CloseCode.POLICY_VIOLATION, "no 'type'"),
        ('{"type": "hello"}', "unknown_type", CloseCode.POLICY_VIOLATION, "'hello'"),
        ('{"type": "stop"}', "not_started", CloseCode.POLICY_VIOLATION, "before 'start'"),
        (
            json.dumps({k: v for k, v in START.items() if k != "encoding"}),
            "missing_field",
            CloseCode.POLICY_VIOLATION,
            "encoding",
        ),
        (
            json.dumps({**START, "samplerate": 8000}),
            "unknown_field",
            CloseCode.POLICY_VIOLATION,
            "samplerate",
        ),
        (
            json.dumps({**START, "encoding": "opus"}),
            "unsupported_encoding",
            CloseCode.UNSUPPORTED_DATA,
            "'opus'",
        ),
        (
            json.dumps({**START, "sample_rate": 0}),
            "bad_sample_rate",
            CloseCode.POLICY_VIOLATION,
            "got 0",
        ),
        (
            json.dumps({**START, "sample_rate": 10**9}),
            "bad_sample_rate",
            CloseCode.POLICY_VIOLATION,
            "1000000000",
        ),
        (
            json.dumps({**START, "sample_rate": "8000"}),
            "bad_sample_rate",
            CloseCode.POLICY_VIOLATION,
            "'8000'",
        ),
        (
            json.dumps({**START, "channels": ["a", "a"]}),
            "bad_channels",
            CloseCode.POLICY_VIOLATION,
            "distinct",
        ),
        (
            json.dumps({**START, "call_id": ""}),
            "bad_call_id",
            CloseCode.POLICY_VIOLATION,
            "call_id",
        ),
        (
            json.dumps({**START, "metadata": [1]}),
            "bad_metadata",
            CloseCode.POLICY_VIOLATION,
            "object",
        ),
    ],
)
def test_bad_messages(text: str, code: str, close: int, words: str) -> None:
    proto = NativeIngestProtocol()
    err = error_of(proto.receive_text(text))
    assert (err.code, err.close_code) == (code, close)
    assert words in err.message
    assert err.to_message() == {"type": "error", "code": code, "message": err.message}
    assert proto.state == "failed"
    assert proto.receive_text(json.dumps(START)) == []  # a failed connection stays failed


def test_audio_before_start() -> None:
    err = error_of(NativeIngestProtocol().receive_bytes(b"\x00\x00"))
    assert err.code == "audio_before_start" and "start" in err.message


def test_odd_byte_count_for_pcm16() -> None:
    err = error_of(started().receive_bytes(b"\x00" * 7))
    assert (err.code, err.close_code) == ("bad_audio", CloseCode.INVALID_DATA)
    assert "7 bytes" in err.message


def test_odd_byte_count_is_fine_for_mulaw() -> None:
    assert started(encoding="mulaw").receive_bytes(b"\xff" * 7) == [Audio(b"\xff" * 7)]


def test_oversized_frame() -> None:
    err = error_of(started().receive_bytes(b"\x00" * 2048))
    assert (err.code, err.close_code) == ("frame_too_large", CloseCode.MESSAGE_TOO_BIG)
    assert "2048 bytes" in err.message and "1024" in err.message


def test_second_start() -> None:
    err = error_of(started().receive_text(json.dumps(START)))
    assert err.code == "already_started"


def test_call_id_may_not_end_in_a_newline() -> None:
    from audio.protocols.native import CALL_ID

    assert CALL_ID.match("abc") and not CALL_ID.match("abc\n")
