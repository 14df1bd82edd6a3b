"""Twilio Media Streams under arbitrary and mutated messages: documented events or one
ProtocolFailure naming the problem, never an exception, never unbounded audio."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import CloseCode

from audio.protocols.events import Audio, ProtocolFailure, Stop
from audio.protocols.twilio import (
    BYTES_PER_MS,
    MAX_GAP_MS,
    TwilioDtmf,
    TwilioMark,
    TwilioProtocol,
    TwilioStart,
)
from tests.fuzz.strategies import any_text, dumps, fuzz_settings, json_sendable, mutated, sendable

FIELDS = [
    "event",
    "sequenceNumber",
    "start",
    "media",
    "dtmf",
    "mark",
    "stop",
    "streamSid",
    "mediaFormat",
    "tracks",
    "customParameters",
    "callSid",
    "track",
    "payload",
    "timestamp",
    "digit",
    "name",
]
STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"
START = {
    "event": "start",
    "sequenceNumber": "1",
    "streamSid": STREAM,
    "start": {
        "accountSid": "AC123",
        "streamSid": STREAM,
        "callSid": "CA456",
        "tracks": ["inbound", "outbound"],
        "customParameters": {"call_id": "c-9", "token": "t0k-twilio-token-0001"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
}


def media(seq: int, track: str = "inbound", ts: int = 0, payload: bytes = b"\xff" * 160) -> dict:
    return {
        "event": "media",
        "sequenceNumber": str(seq),
        "streamSid": STREAM,
        "media": {
            "track": track,
            "chunk": "1",
            "timestamp": str(ts),
            "payload": base64.b64encode(payload).decode(),
        },
    }


OTHERS = [
    {"event": "connected", "protocol": "Call", "version": "1.0.0"},
    media(2),
    {"event": "dtmf", "sequenceNumber": "2", "dtmf": {"track": "inbound_track", "digit": "5"}},
    {"event": "mark", "sequenceNumber": "2", "mark": {"name": "greeting"}},
    {"event": "stop", "sequenceNumber": "2", "stop": {"callSid": "CA456"}},
]
VALID_TEXTS = [dumps(m) for m in [START, *OTHERS]]
messages = st.one_of(
    st.tuples(
        st.just("text"),
        st.one_of(
            mutated(START, FIELDS).map(dumps),
            st.sampled_from(OTHERS).flatmap(lambda m: mutated(m, FIELDS)).map(dumps),
            any_text(VALID_TEXTS, FIELDS),
            st.sampled_from(VALID_TEXTS),
        ),
    ),
    st.tuples(st.just("bytes"), st.binary(max_size=16)),
)


def run(sequence: list[tuple[str, Any]]) -> list[Any]:
    proto = TwilioProtocol()
    seen: list[Any] = []
    for kind, payload in sequence:
        done = any(isinstance(e, ProtocolFailure | Stop) for e in seen)
        events = proto.receive_text(payload) if kind == "text" else proto.receive_bytes(payload)
        assert isinstance(events, list) and len(events) <= 1
        if done:
            assert events == []
        started = any(isinstance(e, TwilioStart) for e in seen)
        for event in events:
            if isinstance(event, TwilioStart):
                assert not started
                assert event.call_sid and event.stream_sid
                assert set(event.tracks) <= {"inbound", "outbound"} and event.tracks
                assert all(isinstance(k, str) for k in event.custom_parameters)
                assert all(isinstance(v, str) for v in event.custom_parameters.values())
                assert json_sendable([event.call_sid, event.stream_sid, event.account_sid])
                assert json_sendable(event.custom_parameters)
            elif isinstance(event, Audio):
                assert started and event.track in ("inbound", "outbound")
                # a timestamp gap is filled with silence, but never more than MAX_GAP_MS of it
                assert len(event.data) <= len(payload) + MAX_GAP_MS * BYTES_PER_MS
            elif isinstance(event, TwilioDtmf):
                assert started and json_sendable([event.track, event.digit])
            elif isinstance(event, TwilioMark | Stop):
                assert started
            else:
                assert isinstance(event, ProtocolFailure), event
                assert re.fullmatch(r"[a-z][a-z_]*", event.code), event
                assert event.message.strip() and sendable(event.message)
                assert event.close_code in (
                    CloseCode.INVALID_DATA,
                    CloseCode.POLICY_VIOLATION,
                    CloseCode.UNSUPPORTED_DATA,
                )
                assert proto.state == "failed"
        seen += events
    return seen


@fuzz_settings(300)
@given(st.lists(messages, max_size=8))
def test_any_message_sequence(sequence: list[tuple[str, Any]]) -> None:
    run(sequence)


@fuzz_settings(200)
@given(st.sampled_from(OTHERS).flatmap(lambda m: mutated(m, FIELDS)))
def test_mutated_message_after_a_valid_start(message: Any) -> None:
    run([("text", dumps(START)), ("text", dumps(message))])


@fuzz_settings(100)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["inbound", "outbound"]),
            st.binary(max_size=200),
            st.integers(min_value=-(10**15), max_value=10**15) | st.integers(0, 1000),
        ),
        max_size=10,
    )
)
def test_media_with_any_timestamps_keeps_bounded_and_aligned(
    chunks: list[tuple[str, bytes, int]],
) -> None:
    sequence = [("text", dumps(START))]
    sequence += [
        ("text", dumps(media(i + 2, track, ts, data))) for i, (track, data, ts) in enumerate(chunks)
    ]
    events = run(sequence)
    failed = [e for e in events if isinstance(e, ProtocolFailure)]
    if failed:
        assert failed == [events[-1]] and failed[0].code == "bad_media"
        assert "ahead" in failed[0].message
    else:
        assert len(events) == len(chunks) + 1
    # a model of the alignment: a gap over 20 ms before a chunk is filled with μ-law silence
    received = {"inbound": 0, "outbound": 0}
    for event, (track, data, ts) in zip(events[1:], chunks, strict=False):
        if isinstance(event, ProtocolFailure):
            break
        gap = ts - received[track]
        silence = b"\xff" * (gap * BYTES_PER_MS) if gap > 20 else b""
        assert event.track == track and event.data == silence + data
        received[track] += len(event.data) // BYTES_PER_MS


# -- regressions ------------------------------------------------------------------------


def test_infinite_sequence_number_is_a_bad_sequence() -> None:
    [failed] = run([("text", '{"event": "media", "sequenceNumber": 1e400}')])
    assert failed.code == "bad_sequence"


def test_dtmf_mark_and_media_format_of_the_wrong_type() -> None:
    for message in (
        {"event": "dtmf", "sequenceNumber": "2", "dtmf": [1]},
        {"event": "mark", "sequenceNumber": "2", "mark": "x"},
    ):
        [_, failed] = run([("text", dumps(START)), ("text", dumps(message))])
        assert isinstance(failed, ProtocolFailure) and failed.code == "bad_message"
        assert repr(next(iter(set(message) - {"event", "sequenceNumber"}))) in failed.message
    bad_format = json.loads(dumps(START))
    bad_format["start"]["mediaFormat"] = ["audio/x-mulaw"]
    [failed] = run([("text", dumps(bad_format))])
    assert failed.code == "unsupported_format"


def test_timestamp_far_ahead_is_refused_not_filled() -> None:
    [_, failed] = run([("text", dumps(START)), ("text", dumps(media(2, ts=10**12)))])
    assert isinstance(failed, ProtocolFailure) and failed.code == "bad_media"
    assert "ahead" in failed.message
    # a short gap is still filled with silence to keep the tracks aligned
    [_, filled] = run([("text", dumps(START)), ("text", dumps(media(2, ts=1000)))])
    assert isinstance(filled, Audio) and len(filled.data) == 1000 * BYTES_PER_MS + 160


def test_track_of_the_wrong_type_is_bad_media() -> None:
    message = media(2)
    message["media"]["track"] = ["inbound"]
    [_, failed] = run([("text", dumps(START)), ("text", dumps(message))])
    assert isinstance(failed, ProtocolFailure) and failed.code == "bad_media"
    assert "track ['inbound']" in failed.message


def test_infinite_timestamp_is_bad_media() -> None:
    message = media(2)
    message["media"]["timestamp"] = float("inf")
    [_, failed] = run([("text", dumps(START)), ("text", dumps(message))])
    assert isinstance(failed, ProtocolFailure) and failed.code == "bad_media"
