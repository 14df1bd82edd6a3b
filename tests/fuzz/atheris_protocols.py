"""Coverage-guided fuzzing (atheris, libFuzzer) of the wire protocols, the JSON reader, the
codec and the HTTP signature parsers.

    python -m tests.fuzz.atheris_protocols -atheris_runs=100000 [CORPUS_DIR]

Each input picks a target and, from its bytes, a session: a valid first message or random
text, then text and binary messages. A target may raise only its documented error (the
sans-I/O protocols none at all); anything else is a crash that libFuzzer reports and saves.
"""

from __future__ import annotations

import contextlib
import json
import sys

import atheris
import numpy  # noqa: F401 - imported first, so that only callcue's own modules get instrumented
import soxr  # noqa: F401

with atheris.instrument_imports(include=["audio"]):
    from audio.codec import AudioFormat, CodecError, StreamDecoder
    from audio.protocols.audiohook import AudioHookProtocol
    from audio.protocols.events import ProtocolFailure
    from audio.protocols.httpsig import (
        SignatureSyntaxError,
        parse_signature,
        parse_signature_input,
    )
    from audio.protocols.jsontext import parse_json_text
    from audio.protocols.native import NativeIngestProtocol
    from audio.protocols.twilio import TwilioProtocol

SID = "30b0e395-84d3-4570-ac13-9a62d8f514c0"
FIRST = {
    "native": json.dumps(
        {
            "type": "start",
            "call_id": "c-1",
            "encoding": "pcm16",
            "sample_rate": 8000,
            "channels": ["customer", "agent"],
        }
    ),
    "twilio": json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "streamSid": "MZ1",
                "callSid": "CA1",
                "tracks": ["inbound", "outbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    ),
    "audiohook": json.dumps(
        {
            "version": "2",
            "id": SID,
            "type": "open",
            "seq": 1,
            "serverseq": 0,
            "position": "PT0S",
            "parameters": {
                "organizationId": "o",
                "conversationId": "c",
                "media": [{"type": "audio", "format": "PCMU", "channels": ["external"]}],
            },
        }
    ),
}


def _messages(fdp: atheris.FuzzedDataProvider, first: str) -> list[str | bytes]:
    out: list[str | bytes] = [first if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(64)]
    while fdp.remaining_bytes() and len(out) < 8:
        if fdp.ConsumeBool():
            out.append(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 256)))
        else:
            out.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 256)))
    return out


def _session(name: str, fdp: atheris.FuzzedDataProvider) -> None:
    proto: NativeIngestProtocol | TwilioProtocol | AudioHookProtocol
    proto = {
        "native": NativeIngestProtocol(max_frame_bytes=4096),
        "twilio": TwilioProtocol(),
        "audiohook": AudioHookProtocol(SID),
    }[name]
    failures = 0
    for message in _messages(fdp, FIRST[name]):
        if isinstance(message, str):
            events = proto.receive_text(message)
        else:
            events = proto.receive_bytes(message)
        failures += sum(isinstance(e, ProtocolFailure) for e in events)
        if isinstance(proto, AudioHookProtocol):
            json.dumps(proto.data_to_send())
    assert failures <= 1, f"{name}: more than one failure event"


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    target = fdp.ConsumeIntInRange(0, 5)
    if target <= 2:
        _session(("native", "twilio", "audiohook")[target], fdp)
    elif target == 3:
        parse_json_text(fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes()))
    elif target == 4:
        fmt = AudioFormat(
            ("pcm16", "mulaw", "alaw")[fdp.ConsumeIntInRange(0, 2)],
            fdp.ConsumeIntInRange(4000, 192_000),
            fdp.ConsumeIntInRange(1, 4),
        )
        decoder = StreamDecoder(fmt)
        try:
            while fdp.remaining_bytes():
                decoder.decode(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512)))
            decoder.flush()
        except CodecError:
            pass
    else:
        value = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
        for parse in (parse_signature_input, parse_signature):
            with contextlib.suppress(SignatureSyntaxError):
                parse(value)


def main() -> None:
    # inputs up to 4 KiB from the first run on (libFuzzer would otherwise grow them slowly)
    atheris.Setup([*sys.argv, "-max_len=4096", "-len_control=0"], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
