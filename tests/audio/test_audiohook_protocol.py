"""AudioHook v2 server state machine, literal messages in, events and replies out."""

import json
from typing import Any

from audio.protocols.audiohook import (
    PROBE_ID,
    AudioHookDiscarded,
    AudioHookOpen,
    AudioHookPaused,
    AudioHookProtocol,
    AudioHookResumed,
    AudioHookUpdate,
    duration,
)
from audio.protocols.events import Audio, ProtocolFailure, Stop

SID = "30b0e395-84d3-4570-ac13-9a62d8f514c0"
CONV = "090eaa2f-72fa-480a-83e0-8667ff89c0ec"
STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
MONO = {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}


class Client:
    """Writes client messages the way the Genesys client does (seq, serverseq, position)."""

    def __init__(self) -> None:
        self.proto = AudioHookProtocol(SID)
        self.seq = 0
        self.serverseq = 0
        self.position = 0.0
        self.replies: list[dict[str, Any]] = []

    def send(self, kind: str, parameters: dict[str, Any] | None = None, **override: Any) -> list:
        self.seq += 1
        msg = {
            "version": "2",
            "id": SID,
            "type": kind,
            "seq": self.seq,
            "serverseq": self.serverseq,
            "position": duration(self.position),
            "parameters": parameters or {},
        }
        msg.update(override)
        events = self.proto.receive_text(json.dumps(msg))
        self.collect()
        return events

    def audio(self, data: bytes) -> list:
        self.position += len(data) / 2 / 8000
        events = self.proto.receive_bytes(data)
        self.collect()
        return events

    def collect(self) -> None:
        for reply in self.proto.data_to_send():
            self.replies.append(reply)
            self.serverseq = reply["seq"]

    def open(self, media: list[dict[str, Any]] | None = None, conversation: str = CONV) -> list:
        return self.send(
            "open",
            {
                "organizationId": "d7934305-0972-4844-938e-9060eef73d05",
                "conversationId": conversation,
                "participant": {
                    "id": "883efee8-3d6c-4537-b500-6d7ca4b92fa0",
                    "ani": "+1-555-555-1234",
                    "aniName": "John Doe",
                    "dnis": "+1-800-555-6789",
                },
                "media": media or [STEREO, MONO],
                "language": "en-US",
            },
        )


def test_open_audio_close_sequence() -> None:
    c = Client()
    [opened_event] = c.open()
    assert isinstance(opened_event, AudioHookOpen) and not opened_event.probe
    assert opened_event.media.channels == ("external", "internal")
    opened = c.replies[-1]
    assert opened == {
        "version": "2",
        "id": SID,
        "type": "opened",
        "seq": 1,
        "clientseq": 1,
        "parameters": {"media": [STEREO], "startPaused": False},
    }
    [audio] = c.audio(b"\xff\x7f" * 800)
    assert isinstance(audio, Audio) and len(audio.data) == 1600
    assert c.send("ping") == [] and c.replies[-1]["type"] == "pong"
    assert c.replies[-1]["clientseq"] == 2 and c.replies[-1]["seq"] == 2
    [close] = c.send("close", {"reason": "end"})
    assert isinstance(close, Stop) and close.reason == "end"
    assert c.replies[-1]["type"] == "pong"  # `closed` waits until the finals are out
    c.proto.send_closed()
    c.collect()
    assert c.replies[-1]["type"] == "closed" and c.proto.state == "closed"


def test_media_negotiation_prefers_stereo_and_rejects_unsupported() -> None:
    c = Client()
    [event] = c.open([MONO, STEREO])
    assert isinstance(event, AudioHookOpen) and len(event.media.channels) == 2
    c = Client()
    [failed] = c.open(
        [{"type": "audio", "format": "opus", "channels": ["external"], "rate": 48000}]
    )
    assert isinstance(failed, ProtocolFailure) and "supported" in failed.message
    assert c.replies[-1]["type"] == "disconnect"
    assert c.replies[-1]["parameters"]["reason"] == "error"


def test_probe_connection_is_opened() -> None:
    c = Client()
    [event] = c.open(conversation=PROBE_ID)
    assert isinstance(event, AudioHookOpen) and event.probe
    assert c.replies[-1]["type"] == "opened"


def test_audio_before_open() -> None:
    c = Client()
    [failed] = c.audio(b"\xff" * 160)
    assert isinstance(failed, ProtocolFailure) and "before" in failed.message
    assert c.replies[-1]["type"] == "disconnect"


def test_seq_gap_and_bad_serverseq() -> None:
    c = Client()
    c.open()
    [failed] = c.send("ping", seq=5)
    assert isinstance(failed, ProtocolFailure) and "expected 2" in failed.message
    c = Client()
    c.open()
    [failed] = c.send("ping", serverseq=9)
    assert isinstance(failed, ProtocolFailure) and "serverseq" in failed.message


def test_unknown_type_wrong_id_version_and_bad_json() -> None:
    for override in ({"type": "dance"}, {"id": "someone-else"}, {"version": "1"}):
        c = Client()
        [failed] = c.send("ping", **override)
        assert isinstance(failed, ProtocolFailure), override
    c = Client()
    [failed] = c.proto.receive_text("{nope")
    assert isinstance(failed, ProtocolFailure) and "JSON" in failed.message


def test_position_must_match_audio() -> None:
    c = Client()
    c.open()
    c.audio(b"\xff\x7f" * 8000)  # 1 s
    [failed] = c.send("ping", position="PT9.5S")
    assert isinstance(failed, ProtocolFailure) and "position" in failed.message


def test_pause_resume_discarded_update() -> None:
    c = Client()
    c.open()
    c.proto.send_pause()
    c.collect()
    assert c.replies[-1]["type"] == "pause"
    [paused] = c.send("paused")
    assert isinstance(paused, AudioHookPaused)
    [failed] = Client().audio(b"\xff\xff")  # (a fresh client: audio before open)
    assert isinstance(failed, ProtocolFailure)
    c.proto.send_resume()
    c.collect()
    assert c.replies[-1]["type"] == "resume"
    c.position += 2.0  # the paused stretch counts in the position
    [resumed] = c.send("resumed", {"start": "PT0S", "discarded": "PT2S"})
    assert isinstance(resumed, AudioHookResumed) and resumed.discarded == 2.0
    c.position += 1.5
    [discarded] = c.send("discarded", {"start": "PT2S", "discarded": "PT1.5S"})
    assert isinstance(discarded, AudioHookDiscarded)
    [update] = c.send("update", {"language": "es-ES"})
    assert isinstance(update, AudioHookUpdate) and update.language == "es-ES"
    assert c.replies[-1]["type"] == "updated"


def test_audio_while_paused_is_an_error() -> None:
    c = Client()
    c.open()
    c.send("paused")
    [failed] = c.audio(b"\xff\x7f" * 10)
    assert isinstance(failed, ProtocolFailure) and "paused" in failed.message


def test_transcript_event_shape() -> None:
    c = Client()
    c.open()
    c.proto.send_transcript(
        0,
        True,
        1.0,
        2.5,
        "hello there",
        0.9,
        [{"word": "hello", "start": 1.0, "end": 1.4, "probability": 0.95}],
        transcript_id="t-1",
    )
    c.collect()
    event = c.replies[-1]
    assert event["type"] == "event"
    entity = event["parameters"]["entities"][0]
    assert entity["type"] == "transcript"
    data = entity["data"]
    assert data["id"] == "t-1" and data["channelId"] == 0 and data["isFinal"] is True
    assert data["offset"] == "PT1S" and data["duration"] == "PT1.5S"
    interp = data["alternatives"][0]["interpretations"][0]
    assert interp["transcript"] == "hello there"
    assert interp["tokens"][0] == {
        "type": "word",
        "value": "hello",
        "confidence": 0.95,
        "offset": "PT1S",
        "duration": "PT0.4S",
        "language": "en-US",
    }


def test_disconnect_from_server() -> None:
    c = Client()
    c.open()
    c.proto.disconnect("completed", "transcription done")
    c.collect()
    assert c.replies[-1]["parameters"] == {"reason": "completed", "info": "transcription done"}
