"""The native ingest protocol under arbitrary and mutated input: documented events or one
ProtocolFailure naming the problem, never an exception, never a value the server cannot send."""

from __future__ import annotations

import itertools
import re
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from websockets.frames import CloseCode

from audio.protocols.events import Audio, ProtocolFailure, Stop
from audio.protocols.native import CALL_ID, NativeIngestProtocol, StartCall
from tests.fuzz.strategies import (
    PATHOLOGICAL_TEXTS,
    any_text,
    dumps,
    fuzz_settings,
    json_sendable,
    json_values,
    mutated,
    sendable,
)

FIELDS = ["type", "call_id", "encoding", "sample_rate", "channels", "metadata"]
START = {
    "type": "start",
    "call_id": "call-1",
    "encoding": "pcm16",
    "sample_rate": 16000,
    "channels": ["customer", "agent"],
    "metadata": {"agent": "michelle", "caller": "+1 617 555 0123"},
}
STOP = '{"type": "stop"}'
CLOSE_CODES = {
    CloseCode.INVALID_DATA,
    CloseCode.POLICY_VIOLATION,
    CloseCode.MESSAGE_TOO_BIG,
    CloseCode.UNSUPPORTED_DATA,
}

Message = tuple[str, Any]
messages = st.one_of(
    st.tuples(
        st.just("text"),
        st.one_of(
            mutated(START, FIELDS).map(dumps),
            any_text([dumps(START), STOP], FIELDS),
            st.just(dumps(START)),
            st.just(STOP),
        ),
    ),
    st.tuples(st.just("bytes"), st.binary(max_size=64)),
)


def check_error(error: ProtocolFailure) -> None:
    """An error a client can act on: a code, a readable message, a close code that means it."""
    assert re.fullmatch(r"[a-z][a-z_]*", error.code), error
    assert error.message.strip() and sendable(error.message), error
    assert error.close_code in CLOSE_CODES, error
    assert json_sendable(error.to_message())


def run(sequence: list[Message], max_frame_bytes: int = 1024) -> list[Any]:
    """Feed the messages, checking the state machine's promises after each one."""
    proto = NativeIngestProtocol(max_frame_bytes=max_frame_bytes)
    seen: list[Any] = []
    for kind, payload in sequence:
        done = any(isinstance(e, ProtocolFailure | Stop) for e in seen)
        events = proto.receive_text(payload) if kind == "text" else proto.receive_bytes(payload)
        assert isinstance(events, list) and len(events) <= 1
        if done:
            assert events == [], "nothing may follow an error or a stop"
        started = any(isinstance(e, StartCall) for e in seen)
        for event in events:
            if isinstance(event, StartCall):
                assert not started and kind == "text"
                assert CALL_ID.match(event.call_id)
                assert 1 <= len(event.channels) == event.format.channels
                assert all(isinstance(c, str) and sendable(c) for c in event.channels)
                assert isinstance(event.metadata, dict) and json_sendable(event.metadata)
                assert proto.state == "streaming"
            elif isinstance(event, Audio):
                assert started and kind == "bytes" and event.data == payload
                assert proto.start is not None
                assert len(event.data) % proto.start.format.bytes_per_sample == 0
            elif isinstance(event, Stop):
                assert started and kind == "text"
            else:
                assert isinstance(event, ProtocolFailure), event
                check_error(event)
                assert proto.state == "failed"
        seen += events
    return seen


@fuzz_settings(300)
@given(st.lists(messages, max_size=8))
def test_any_message_sequence(sequence: list[Message]) -> None:
    run(sequence)


@fuzz_settings(200)
@given(mutated(START, FIELDS))
def test_mutated_start_is_accepted_or_refused_with_a_reason(start: Any) -> None:
    [event] = run([("text", dumps(start))])
    if isinstance(event, StartCall):
        # accepted only if every field still says what the protocol documents
        assert isinstance(start, dict) and set(start) <= set(FIELDS)
        assert start["encoding"] in ("pcm16", "mulaw", "alaw")
        assert type(start["sample_rate"]) is int and 4000 <= start["sample_rate"] <= 192_000
    else:
        assert isinstance(event, ProtocolFailure)


@fuzz_settings(100, slow_data=True)
@given(
    st.sampled_from(["pcm16", "mulaw", "alaw"]),
    st.integers(min_value=1, max_value=3),
    st.binary(min_size=0, max_size=4000),
    st.lists(st.integers(min_value=0, max_value=700), max_size=30),
)
def test_valid_stream_in_any_chunking_reaches_the_session_intact(
    encoding: str, channels: int, audio: bytes, cuts: list[int]
) -> None:
    width = 2 if encoding == "pcm16" else 1
    audio = audio[: len(audio) - len(audio) % width]
    start = {**START, "encoding": encoding, "channels": ["customer", "agent", "x"][:channels]}
    points = sorted({min(c * width, len(audio)) for c in cuts} | {0, len(audio)})
    frames = [audio[a:b] for a, b in itertools.pairwise(points)]
    events = run(
        [("text", dumps(start)), *(("bytes", f) for f in frames), ("text", STOP)],
        max_frame_bytes=1_048_576,
    )
    assert isinstance(events[0], StartCall) and isinstance(events[-1], Stop)
    assert b"".join(e.data for e in events if isinstance(e, Audio)) == audio


@fuzz_settings(150)
@given(st.binary(max_size=300))
def test_any_frame_after_start_is_audio_or_a_named_error(frame: bytes) -> None:
    events = run([("text", dumps(START)), ("bytes", frame)], max_frame_bytes=256)
    if len(frame) > 256:
        assert events[-1].code == "frame_too_large"
    elif len(frame) % 2:
        assert events[-1].code == "bad_audio" and "2-byte samples" in events[-1].message
    else:
        assert len(events) == (2 if frame else 1)


@fuzz_settings(100)
@given(json_values(FIELDS))
@example({"\ud800": 1})
@example("\udfff")
def test_metadata_of_any_shape(metadata: Any) -> None:
    [event] = run([("text", dumps({**START, "metadata": metadata}))])
    if isinstance(metadata, dict) and json_sendable(metadata):
        assert isinstance(event, StartCall) and dumps(event.metadata) == dumps(metadata)
    else:
        assert isinstance(event, ProtocolFailure) and event.code in ("bad_metadata", "bad_json")


# -- regressions: inputs the fuzzing above found ------------------------------------------


def test_json_nested_too_deeply_is_bad_json() -> None:
    for text in PATHOLOGICAL_TEXTS[:3]:
        [error] = run([("text", text)])
        assert error.code == "bad_json" and "nested" in error.message


def test_number_with_too_many_digits_is_bad_json() -> None:
    [error] = run([("text", "1" * 5000)])
    assert error.code == "bad_json" and "digits" in error.message


def test_lone_surrogate_in_metadata_is_refused() -> None:
    text = dumps({**START, "metadata": {"agent": "\ud800"}})
    [error] = run([("text", text)])
    assert error.code == "bad_json" and "surrogate" in error.message
    # a surrogate pair is one real character, and fine
    [ok] = run([("text", dumps({**START, "metadata": {"agent": "\U0001f600"}}))])
    assert isinstance(ok, StartCall) and ok.metadata["agent"] == "\U0001f600"


def test_deep_metadata_is_refused() -> None:
    deep: Any = "x"
    for _ in range(200):
        deep = {"a": deep}
    [error] = run([("text", dumps({**START, "metadata": deep}))])
    assert error.code == "bad_json" and "nested deeper than" in error.message


def test_channel_name_with_a_trailing_newline_is_refused() -> None:
    [error] = run([("text", dumps({**START, "channels": ["customer\n"]}))])
    assert error.code == "bad_channels"
