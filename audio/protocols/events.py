"""What every ingest protocol's parser yields, whatever its wire format: the call's audio, its
normal end, and a failure to answer. How a call starts stays each protocol's own (a native
`start`, an AudioHook `open`, a Twilio `start` carry different things)."""

from __future__ import annotations

from dataclasses import dataclass

from websockets.frames import CloseCode


@dataclass(frozen=True, slots=True)
class Audio:
    """A piece of the call's audio, in the encoding its start named."""

    data: bytes  # every channel interleaved; Twilio: one track's samples
    track: str = ""  # Twilio: the track it belongs to ("inbound", "outbound")
    timestamp_ms: int = 0  # Twilio: where it starts in the stream (gaps already filled)


@dataclass(frozen=True, slots=True)
class Stop:
    """The client ended the call as the protocol intends (not a dropped connection)."""

    reason: str = ""  # AudioHook's close reason ("end", "error", ...); "" where none is given


@dataclass(frozen=True, slots=True)
class ProtocolFailure:
    """What went wrong, to send back (an `error` message, a Twilio close reason, an AudioHook
    `disconnect`) before closing with `close_code`: an event the parser returns, never an
    exception. Refusals of a call's start use it too (`capacity`, `call_id_taken`, ...)."""

    code: str
    message: str
    close_code: CloseCode = CloseCode.POLICY_VIOLATION

    def to_message(self) -> dict[str, str]:
        return {"type": "error", "code": self.code, "message": self.message}
