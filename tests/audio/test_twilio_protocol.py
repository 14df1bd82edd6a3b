"""Twilio Media Streams state machine with literal messages as Twilio documents them."""

import base64
import json
from typing import Any

from audio.protocols.events import Audio, ProtocolFailure, Stop
from audio.protocols.twilio import TwilioDtmf, TwilioMark, TwilioProtocol, TwilioStart

STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def start(seq: int = 1, **changes: Any) -> dict[str, Any]:
    body = {
        "accountSid": "AC123",
        "streamSid": STREAM,
        "callSid": "CA456",
        "tracks": ["inbound", "outbound"],
        "customParameters": {"call_id": "c-9", "token": "t0k"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    body.update(changes)
    return {"event": "start", "sequenceNumber": str(seq), "start": body, "streamSid": STREAM}


def media(seq: int, track: str, ts: int, payload: bytes = b"\xff" * 160) -> dict[str, Any]:
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


def feed(proto: TwilioProtocol, *messages: dict[str, Any]) -> list:
    events: list = []
    for m in messages:
        events += proto.receive_text(json.dumps(m))
    return events


def test_full_stream() -> None:
    proto = TwilioProtocol()
    events = feed(
        proto,
        CONNECTED,
        start(),
        media(2, "inbound", 0),
        media(3, "outbound", 0),
        {
            "event": "dtmf",
            "sequenceNumber": "4",
            "streamSid": STREAM,
            "dtmf": {"track": "inbound_track", "digit": "5"},
        },
        {"event": "mark", "sequenceNumber": "5", "streamSid": STREAM, "mark": {"name": "greeting"}},
        {
            "event": "stop",
            "sequenceNumber": "6",
            "streamSid": STREAM,
            "stop": {"accountSid": "AC123", "callSid": "CA456"},
        },
    )
    assert isinstance(events[0], TwilioStart)
    assert events[0].tracks == ("inbound", "outbound") and events[0].call_sid == "CA456"
    assert events[0].custom_parameters == {"call_id": "c-9", "token": "t0k"}
    assert [type(e) for e in events[1:]] == [
        Audio,
        Audio,
        TwilioDtmf,
        TwilioMark,
        Stop,
    ]
    assert events[1].data == b"\xff" * 160 and events[1].track == "inbound"
    assert events[3] == TwilioDtmf("inbound", "5")


def test_timestamp_gap_is_filled_with_silence() -> None:
    proto = TwilioProtocol()
    events = feed(proto, start(), media(2, "inbound", 0), media(3, "inbound", 100))
    assert len(events[2].data) == 160 + 80 * 8  # 80 ms missing, then the 20 ms chunk


def fails(*messages: dict[str, Any] | str) -> ProtocolFailure:
    proto = TwilioProtocol()
    events: list = []
    for m in messages:
        events += proto.receive_text(m if isinstance(m, str) else json.dumps(m))
    assert isinstance(events[-1], ProtocolFailure), events
    return events[-1]


def test_error_paths() -> None:
    assert fails(media(1, "inbound", 0)).code == "not_started"
    assert fails(start(), media(5, "inbound", 0)).code == "sequence_gap"
    assert fails("{oops").code == "bad_json"
    assert fails({"event": "party", "sequenceNumber": "1"}).code == "unknown_event"
    wrong = start(mediaFormat={"encoding": "audio/l16", "sampleRate": 16000, "channels": 1})
    failed = fails(wrong)
    assert failed.code == "unsupported_format" and failed.close_code == 1003
    assert fails(start(tracks=["sideways"])).code == "bad_tracks"
    assert (
        fails(
            start(), media(2, "outbound", 0) | {"media": {"track": "inbound", "payload": "***"}}
        ).code
        == "bad_media"
    )
    assert fails(start(tracks=["inbound"]), media(2, "outbound", 0)).code == "bad_media"
    assert fails(start(), start(2)).code == "already_started"
    proto = TwilioProtocol()
    [failed] = proto.receive_bytes(b"\x00")
    assert isinstance(failed, ProtocolFailure) and failed.code == "binary_message"
