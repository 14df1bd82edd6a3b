"""AudioHook v2 under arbitrary and mutated messages: documented events, or one ProtocolFailure
with a `disconnect` (reason `error`) naming the problem queued for the client; never an
exception, never a reply that cannot be sent."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from audio.protocols.audiohook import (
    AudioHookClientError,
    AudioHookDiscarded,
    AudioHookOpen,
    AudioHookPaused,
    AudioHookProtocol,
    AudioHookResumed,
    AudioHookUpdate,
    duration,
)
from audio.protocols.events import Audio, ProtocolFailure, Stop
from tests.fuzz.strategies import (
    any_text,
    dumps,
    fuzz_settings,
    json_sendable,
    json_values,
    mutated,
    sendable,
)

SID = "30b0e395-84d3-4570-ac13-9a62d8f514c0"
STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
L16 = {"type": "audio", "format": "L16", "channels": ["external"], "rate": 8000}
PARAMETERS: dict[str, dict[str, Any]] = {
    "open": {
        "organizationId": "d7934305-0972-4844-938e-9060eef73d05",
        "conversationId": "090eaa2f-72fa-480a-83e0-8667ff89c0ec",
        "participant": {"id": "883efee8", "ani": "+1-555-555-1234", "aniName": "John Doe"},
        "media": [STEREO, L16],
        "language": "en-US",
        "customConfig": {"team": "billing"},
    },
    "close": {"reason": "end"},
    "ping": {"rtt": "PT0.05S"},
    "paused": {},
    "resumed": {"start": "PT1S", "discarded": "PT0.5S"},
    "discarded": {"start": "PT1S", "discarded": "PT0.25S"},
    "update": {"language": "es-ES"},
    "error": {"code": 500, "message": "something broke"},
}
FIELDS = sorted(
    {"version", "id", "type", "seq", "serverseq", "position", "parameters"}
    | {k for p in PARAMETERS.values() for k in p}
    | {"format", "channels", "rate"}
)
EVENT_TYPES = (
    AudioHookOpen,
    Audio,
    Stop,
    AudioHookPaused,
    AudioHookResumed,
    AudioHookDiscarded,
    AudioHookUpdate,
    AudioHookClientError,
    ProtocolFailure,
)

# One step of a session: a well-formed message whose parameters may be mutated, audio, or
# any text at all.
steps = st.one_of(
    st.tuples(
        st.just("message"),
        st.sampled_from(sorted(PARAMETERS)).flatmap(
            lambda kind: st.tuples(
                st.just(kind), st.just(PARAMETERS[kind]) | mutated(PARAMETERS[kind], FIELDS)
            )
        ),
    ),
    st.tuples(st.just("audio"), st.binary(max_size=50)),
    st.tuples(
        st.just("text"),
        any_text([dumps({"version": "2", "id": SID, "type": "ping", "seq": 1})], FIELDS),
    ),
)


class Driver:
    """Writes the envelope as the Genesys client does (seq, serverseq, position) and checks
    the protocol's promises after every message."""

    def __init__(self) -> None:
        self.proto = AudioHookProtocol(SID)
        self.seq = 0
        self.serverseq = 0
        self.events: list[Any] = []
        self.replies: list[dict[str, Any]] = []

    def envelope(self, kind: str, parameters: Any) -> dict[str, Any]:
        self.seq += 1
        return {
            "version": "2",
            "id": SID,
            "type": kind,
            "seq": self.seq,
            "serverseq": self.serverseq,
            "position": duration(self.proto.position),
            "parameters": parameters,
        }

    def text(self, text: str) -> list[Any]:
        return self._check(self.proto.receive_text(text))

    def audio(self, data: bytes) -> list[Any]:
        return self._check(self.proto.receive_bytes(data))

    def _check(self, events: list[Any]) -> list[Any]:
        failed_before = any(isinstance(e, ProtocolFailure) for e in self.events)
        state_before = self.proto.state
        assert isinstance(events, list)
        assert all(isinstance(e, EVENT_TYPES) for e in events), events
        if failed_before:
            assert events == [] and self.proto.data_to_send() == []
            return events
        replies = self.proto.data_to_send()
        for reply in replies:
            json.dumps(reply)  # the server writes replies with json.dumps
            assert reply["seq"] == self.serverseq + 1 and reply["id"] == SID
            self.serverseq = reply["seq"]
        self.replies += replies
        for event in events:
            if isinstance(event, ProtocolFailure):
                assert event.message.strip() and sendable(event.message)
                assert self.proto.state == "failed" and events == [event]
                if state_before in ("open", "paused", "connected"):
                    assert replies[-1]["type"] == "disconnect"
                    assert replies[-1]["parameters"] == {"reason": "error", "info": event.message}
            elif isinstance(event, AudioHookOpen):
                assert isinstance(event.conversation_id, str)
                assert isinstance(event.organization_id, str)
                assert isinstance(event.participant, dict)
                assert event.language is None or isinstance(event.language, str)
                assert isinstance(event.custom_config, dict)
                assert json_sendable(
                    [event.participant, event.language, event.custom_config, event.organization_id]
                )
                assert replies[-1]["type"] == "opened"
            elif isinstance(event, Audio):
                assert self.proto.media is not None
                assert event.data and len(event.data) % self.proto.media.frame_bytes == 0
            elif isinstance(event, AudioHookUpdate):
                assert event.language is None or isinstance(event.language, str)
            elif isinstance(event, AudioHookClientError):
                assert isinstance(event.code, int) and isinstance(event.message, str)
        self.events += events
        return events


@fuzz_settings(300)
@given(st.lists(steps, max_size=10))
def test_any_session(session: list[tuple[str, Any]]) -> None:
    driver = Driver()
    driver.text(dumps(driver.envelope("open", PARAMETERS["open"])))
    for step, payload in session:
        if step == "message":
            kind, parameters = payload
            driver.text(dumps(driver.envelope(kind, parameters)))
        elif step == "audio":
            driver.audio(payload)
        else:
            driver.text(payload)


@fuzz_settings(200)
@given(
    st.sampled_from(sorted(PARAMETERS)).flatmap(
        lambda kind: mutated(
            {
                "version": "2",
                "id": SID,
                "type": kind,
                "seq": 2,
                "serverseq": 1,
                "position": "PT0S",
                "parameters": PARAMETERS[kind],
            },
            FIELDS,
        )
    )
)
def test_mutated_envelope_after_open(message: Any) -> None:
    driver = Driver()
    driver.text(dumps(driver.envelope("open", PARAMETERS["open"])))
    driver.text(dumps(message))


@fuzz_settings(150)
@given(mutated(PARAMETERS["open"], FIELDS))
def test_mutated_open(parameters: Any) -> None:
    driver = Driver()
    [event] = driver.text(dumps(driver.envelope("open", parameters)))
    assert isinstance(event, AudioHookOpen | ProtocolFailure)


@fuzz_settings(100, slow_data=True)
@given(
    st.sampled_from(
        [
            (STEREO, 2),
            (L16, 2),
            ({**STEREO, "channels": ["internal"]}, 1),
            ({**L16, "channels": ["internal", "external"]}, 4),
        ]
    ),
    st.binary(max_size=3000),
    st.lists(st.integers(min_value=0, max_value=400), max_size=25),
)
def test_audio_in_any_chunking_arrives_whole_frames_in_order(
    offer: tuple[dict[str, Any], int], audio: bytes, cuts: list[int]
) -> None:
    media, frame = offer
    driver = Driver()
    driver.text(dumps(driver.envelope("open", {**PARAMETERS["open"], "media": [media]})))
    assert driver.proto.media is not None and driver.proto.media.frame_bytes == frame
    points = sorted({min(c, len(audio)) for c in cuts} | {0, len(audio)})
    out = b""
    for a, b in itertools.pairwise(points):
        out += b"".join(e.data for e in driver.audio(audio[a:b]))
    assert out == audio[: len(audio) - len(audio) % frame]
    assert driver.proto.samples == len(audio) // frame
    [closed] = driver.text(dumps(driver.envelope("close", {"reason": "end"})))
    assert isinstance(closed, Stop)


@fuzz_settings(100)
@given(json_values(FIELDS))
def test_language_and_custom_config_of_any_type(value: Any) -> None:
    for field in ("language", "customConfig"):
        driver = Driver()
        [event] = driver.text(dumps(driver.envelope("open", {**PARAMETERS["open"], field: value})))
        if not json_sendable(value):
            assert isinstance(event, ProtocolFailure) and "surrogate" in event.message
        elif field == "language" and (value is None or isinstance(value, str)):
            assert isinstance(event, AudioHookOpen) and event.language == value
        elif field == "customConfig" and (value is None or isinstance(value, dict)):
            assert isinstance(event, AudioHookOpen)
            assert dumps(event.custom_config) == dumps(value or {})
        else:
            assert isinstance(event, ProtocolFailure) and field in event.message


# -- regressions ------------------------------------------------------------------------


def test_unhashable_type_is_an_unknown_type() -> None:
    driver = Driver()
    [failed] = driver.text(dumps({"version": "2", "id": SID, "type": ["open"], "seq": 1}))
    assert isinstance(failed, ProtocolFailure) and "unknown message type ['open']" in failed.message


def test_nested_and_overlong_json() -> None:
    for text, words in (("[" * 5000, "nested"), ("9" * 5000, "digits")):
        [failed] = Driver().text(text)
        assert isinstance(failed, ProtocolFailure) and words in failed.message


def test_non_finite_durations_are_not_durations() -> None:
    driver = Driver()
    driver.text(dumps(driver.envelope("open", PARAMETERS["open"])))
    message = driver.envelope("discarded", {"start": "PT1S", "discarded": "PT" + "9" * 400 + "S"})
    [failed] = driver.text(dumps(message))
    assert isinstance(failed, ProtocolFailure) and "durations" in failed.message


def test_open_with_a_language_or_custom_config_of_the_wrong_type() -> None:
    for field, value in (("language", 5), ("customConfig", [1, 2])):
        driver = Driver()
        [failed] = driver.text(dumps(driver.envelope("open", {**PARAMETERS["open"], field: value})))
        assert isinstance(failed, ProtocolFailure) and field in failed.message
