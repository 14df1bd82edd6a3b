"""Contact-center platforms: Genesys AudioHook and Twilio Media Streams connections.

Each maps its platform's protocol (sans-I/O, in audio/protocols/) onto the same CallSession
as the native protocol, with the source stored on the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from typing import Any

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.frames import CloseCode

from audio.codec import AudioFormat
from audio.protocols.audiohook import (
    AudioHookClientError,
    AudioHookDiscarded,
    AudioHookOpen,
    AudioHookPaused,
    AudioHookProtocol,
    AudioHookResumed,
    AudioHookUpdate,
)
from audio.protocols.events import Audio, ProtocolFailure, Stop
from audio.protocols.httpsig import AudioHookAuthenticator
from audio.protocols.native import CALL_ID
from audio.protocols.twilio import TwilioDtmf, TwilioProtocol, TwilioStart
from audio.protocols.vocabulary import check_language, parse_vocabulary
from gateway.runner import (
    CallRequest,
    Connection,
    run_connection,
    start_call,
    stop_task,
)
from live.session import CallSession, Services
from service.settings import Settings, parse_keys, parse_roles

log = logging.getLogger("callcue.integrations")


def _platform_request(
    call_id: str,
    fmt: AudioFormat,
    channels: tuple[str, ...],
    metadata: dict[str, Any],
    source: str,
    credential: str,
    vocabulary: Any = None,
    language: Any = None,
    diarize: Any = None,
) -> CallRequest | ProtocolFailure:
    """A platform's call, its custom parameters checked: `vocabulary` as the platform passed
    it (a list, or a comma-separated string), `language` a code or "auto", `diarize`
    true/false (or "true"/"false"); not given, a one-channel call is diarized when
    CALLCUE_DIARIZE says so."""
    if not CALL_ID.match(call_id):
        return ProtocolFailure("bad_call_id", f"call id {call_id[:40]!r} is not a valid call id")
    terms, problem = parse_vocabulary(vocabulary if vocabulary is not None else [])
    if problem is not None:
        return ProtocolFailure("bad_vocabulary", problem)
    code, problem = check_language(language if language is not None else "en")
    if problem is not None:
        return ProtocolFailure("bad_language", problem)
    split = None
    if diarize is not None:
        if str(diarize).lower() not in ("true", "false"):
            return ProtocolFailure("bad_diarize", f"diarize must be true or false, got {diarize!r}")
        split = str(diarize).lower() == "true"
    if split and len(channels) != 1:
        return ProtocolFailure(
            "bad_diarize",
            f"diarize is for one track with both parties; this call sends {len(channels)} "
            f"({', '.join(channels)}), each already one party",
        )
    return CallRequest(call_id, fmt, channels, metadata, source, credential, terms, code, split)


async def _start_platform_call(
    services: Services, conn: Connection, request: CallRequest | ProtocolFailure
) -> CallSession | ProtocolFailure:
    if isinstance(request, ProtocolFailure):
        return request
    return await start_call(services, conn, request)


# -- Genesys AudioHook ---------------------------------------------------------------------


async def serve_audiohook(
    ws: WebSocket, services: Services, settings: Settings, auth: AudioHookAuthenticator | None
) -> None:
    headers = {k.lower(): v for k, v in ws.headers.items()}
    session_id = headers.get("audiohook-session-id", "")
    credential = "open"
    if auth is None and settings.token_roles:
        await ws.send_denial_response(
            PlainTextResponse(
                "Forbidden: AudioHook is off on this server (set CALLCUE_AUDIOHOOK_KEYS)",
                status_code=403,
            )
        )
        return
    if auth is not None:
        target = ws.url.path + (f"?{ws.url.query}" if ws.url.query else "")
        verdict = auth.verify(headers, target, headers.get("host", ""))
        if not verdict.ok:
            # The AudioHook client reports a refused upgrade to the Genesys admin as is.
            log.warning("AudioHook session %s refused: %s", session_id or "?", verdict.reason)
            await ws.send_denial_response(
                PlainTextResponse(f"Unauthorized: {verdict.reason}", status_code=401)
            )
            return
        cluster = services.cluster  # a nonce must be unique across the nodes too
        if (
            verdict.nonce
            and cluster is not None
            and not await cluster.claim_nonce(verdict.nonce, verdict.nonce_until)
        ):
            log.warning("AudioHook session %s refused: replayed nonce", session_id or "?")
            await ws.send_denial_response(
                PlainTextResponse(
                    "Unauthorized: nonce was already used (replayed request)", status_code=401
                )
            )
            return
        credential = f"audiohook-{verdict.api_key[-4:]}"
    if not session_id:
        await ws.send_denial_response(
            PlainTextResponse("Bad Request: missing Audiohook-Session-Id header", status_code=400)
        )
        return
    await ws.accept()
    ingest = AudioHookIngest(Connection(ws), services, settings, session_id, credential)
    await run_connection(ws, ingest)


class AudioHookIngest:
    """Genesys AudioHook v2: `open` starts the call (a probe starts none), binary frames carry
    the audio, `close` ends it; each final goes back to Genesys as a `transcript` entity
    (CALLCUE_AUDIOHOOK_TRANSCRIPTS). Protocol replies are sent after each message."""

    name = "AudioHook"

    def __init__(
        self,
        conn: Connection,
        services: Services,
        settings: Settings,
        session_id: str,
        credential: str,
    ) -> None:
        self.conn = conn
        self.services = services
        self.transcripts = settings.audiohook_transcripts
        self.session_id = session_id
        self.credential = credential
        self.protocol = AudioHookProtocol(session_id)
        self.roles = parse_roles(settings.audiohook_channels)
        self.session: CallSession | None = None
        self.reason = "disconnect"
        self.forwarder: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()

    async def flush(self) -> None:
        """Send what the protocol has to say (replies, transcripts), in order."""
        async with self._send_lock:
            for message in self.protocol.data_to_send():
                await self.conn.send_text(json.dumps(message))

    async def _end(self, reason: str) -> None:
        """Finish the call (every final decoded, and sent to Genesys) before answering."""
        if self.session is not None and not self.session.finished:
            await self.session.finish(reason)
        if self.forwarder is not None:
            await self.forwarder

    async def handle(self, event: Any) -> bool:
        session, sid = self.session, self.session_id
        if isinstance(event, Audio):
            if session is not None:
                await session.push(event.data)
        elif isinstance(event, AudioHookOpen):
            if not event.probe:
                await self._open(event)
        elif isinstance(event, Stop):
            # flush every final (and send them to Genesys) before `closed`
            await self._end("stop")
            self.protocol.send_closed()
        elif isinstance(event, ProtocolFailure):
            log.warning("AudioHook session %s: %s", sid, event.message)
            await self.flush()
            await self._end("error")
        elif isinstance(event, AudioHookClientError):
            log.warning("AudioHook client error %s: %s", event.code, event.message)
        elif isinstance(event, AudioHookPaused):
            if session is not None:
                session.pause(True)
        elif isinstance(event, AudioHookDiscarded | AudioHookResumed):
            if session is not None and isinstance(event, AudioHookResumed):
                session.pause(False)
            log.info(
                "AudioHook session %s: %.2fs of audio discarded by the client",
                sid,
                event.discarded,
            )
        elif isinstance(event, AudioHookUpdate):
            log.info("AudioHook session %s: language now %s", sid, event.language)
        return False

    async def _open(self, event: AudioHookOpen) -> None:
        fmt = AudioFormat(
            "mulaw" if event.media.format == "PCMU" else "pcm16", 8000, len(event.media.channels)
        )
        metadata = {
            "organization_id": event.organization_id,
            "participant": event.participant,
            "audiohook_session_id": self.session_id,
            "language": event.language,
            **({"custom_config": event.custom_config} if event.custom_config else {}),
        }
        config = event.custom_config
        started = await _start_platform_call(
            self.services,
            self.conn,
            _platform_request(
                event.conversation_id,
                fmt,
                tuple(self.roles[c] for c in event.media.channels),
                metadata,
                "audiohook",
                self.credential,
                vocabulary=config.get("vocabulary"),
                # Genesys names the conversation's language ("de-DE"); a customConfig
                # `language` ("auto", say) overrides it
                language=config.get("language") or event.language or None,
                diarize=config.get("diarize"),
            ),
        )
        if isinstance(started, ProtocolFailure):
            log.warning(
                "AudioHook session %s refused: %s: %s",
                self.session_id,
                started.code,
                started.message,
            )
            self.protocol.disconnect(
                "error", f"callcue cannot take this call: {started.code}: {started.message}"
            )
            return
        self.session = started
        if self.transcripts:
            self.forwarder = asyncio.create_task(
                _transcripts_to_genesys(
                    self.services,
                    started.call_id,
                    self.protocol,
                    self.roles,
                    self.flush,
                    tuple(event.media.channels),
                )
            )
        log.info(
            "AudioHook call %s started (%s, %s)",
            started.call_id,
            event.media.format,
            ",".join(event.media.channels),
        )

    async def after_message(self) -> bool:
        await self.flush()
        if self.protocol.state != "closed":
            return False
        # Genesys closes the websocket after `closed`; don't wait forever for it
        with contextlib.suppress(asyncio.TimeoutError, WebSocketDisconnect):
            await asyncio.wait_for(self.conn.ws.receive(), timeout=10)
        await self.conn.close(CloseCode.NORMAL_CLOSURE)
        return True

    async def start_timeout(self) -> None:
        await self.conn.close(CloseCode.POLICY_VIOLATION, "start_timeout: no open message in time")

    async def internal_error(self) -> None:
        self.protocol.disconnect("error", "internal server error in callcue")
        await self.flush()
        await self.conn.close(CloseCode.INTERNAL_ERROR, "internal server error")

    async def finished(self) -> None:
        await stop_task(self.forwarder)


async def _transcripts_to_genesys(
    services: Services,
    call_id: str,
    proto: AudioHookProtocol,
    roles: dict[str, str],
    flush: Any,
    negotiated: tuple[str, ...] = (),
) -> None:
    """Send each final transcript back to Genesys as an AudioHook `transcript` entity, on
    the channel of its party (a one-channel call's finals, diarized into both parties, all on
    its one channel)."""
    index_of = {roles[source]: i for i, source in enumerate(negotiated) if source in roles}
    if len(negotiated) == 1:  # (diarized: both parties on the one channel)
        index_of = {role: 0 for role in ("agent", "customer", *roles.values())}
    backlog, sub = services.hub.subscribe(call_id)
    try:
        pending = list(backlog)
        while True:
            for event in pending:
                data = event.to_dict()
                if data["type"] == "transcript.final" and data["channel"] in index_of:
                    proto.send_transcript(
                        index_of[data["channel"]],
                        True,
                        data["start"],
                        data["end"],
                        data["text"],
                        data["confidence"],
                        data["words"],
                        transcript_id=str(
                            uuid.uuid5(
                                uuid.NAMESPACE_URL,
                                f"{call_id}/{data['channel']}/{data['utterance']}",
                            )
                        ),
                    )
                    await flush()
            nxt = await sub.next()
            if nxt is None:
                return
            pending = [nxt]
    finally:
        sub.close()


# -- Twilio Media Streams ------------------------------------------------------------------


async def serve_twilio(ws: WebSocket, services: Services, settings: Settings) -> None:
    await ws.accept()
    conn = Connection(ws)
    tokens = [t for t in settings.twilio_tokens.split(",") if t]
    if not tokens and settings.token_roles:
        log.warning("Twilio stream refused: CALLCUE_TWILIO_TOKENS is not set")
        await conn.close(
            CloseCode.POLICY_VIOLATION, "Twilio streams are off: set CALLCUE_TWILIO_TOKENS"
        )
        return
    await run_connection(ws, TwilioIngest(conn, services, settings, tokens))


class TwilioIngest:
    """Twilio Media Streams: `start` (with the custom parameters of `<Stream>`: the token,
    call id, vocabulary, language, diarize; the rest kept as metadata) starts the call,
    `media` carries each track's audio, `stop` ends it."""

    name = "Twilio"

    def __init__(
        self, conn: Connection, services: Services, settings: Settings, tokens: list[str]
    ) -> None:
        self.conn = conn
        self.services = services
        self.tokens = tokens
        self.protocol = TwilioProtocol()
        self.roles = parse_roles(settings.twilio_tracks)
        self.session: CallSession | None = None
        self.reason = "disconnect"
        self.track_index: dict[str, int] = {}

    async def handle(self, event: Any) -> bool:
        if isinstance(event, Audio):
            if self.session is not None:
                await self.session.push_track(self.track_index[event.track], event.data)
        elif isinstance(event, TwilioStart):
            return await self._start(event)
        elif isinstance(event, TwilioDtmf):
            log.info("Twilio DTMF %s on %s", event.digit, event.track)
        elif isinstance(event, Stop):
            self.reason = "stop"
            if self.session is not None:
                await self.session.finish("stop")
            await self.conn.close(CloseCode.NORMAL_CLOSURE)
            return True
        elif isinstance(event, ProtocolFailure):
            self.reason = "error"
            log.warning("Twilio stream error %s: %s", event.code, event.message)
            if self.session is not None:
                await self.session.finish("error")
            await self.conn.close(event.close_code, f"{event.code}: {event.message}")
            return True
        return False

    async def _start(self, event: TwilioStart) -> bool:
        params = dict(event.custom_parameters)
        token = str(params.pop("token", ""))
        given = token.encode()  # compared as bytes: any text is just a wrong token
        if self.tokens and not any(hmac.compare_digest(given, t.encode()) for t in self.tokens):
            log.warning("Twilio stream %s refused: bad or missing token", event.stream_sid)
            self.reason = "error"
            await self.conn.close(CloseCode.POLICY_VIOLATION, "unauthorized: bad or missing token")
            return True
        call_id = params.pop("call_id", "") or event.call_sid
        vocabulary = params.pop("vocabulary", None)
        language = params.pop("language", None)
        diarize = params.pop("diarize", None)
        self.track_index = {t: i for i, t in enumerate(event.tracks)}
        metadata = {  # Twilio's own ids win over custom parameters of those names
            **params,
            "call_sid": event.call_sid,
            "stream_sid": event.stream_sid,
            "account_sid": event.account_sid,
        }
        started = await _start_platform_call(
            self.services,
            self.conn,
            _platform_request(
                call_id,
                AudioFormat("mulaw", 8000, 1),
                tuple(self.roles[t] for t in event.tracks),
                metadata,
                "twilio",
                f"twilio-{token[-4:]}" if self.tokens else "open",
                vocabulary=vocabulary,
                language=language,
                diarize=diarize,
            ),
        )
        if isinstance(started, ProtocolFailure):
            log.warning(
                "Twilio stream %s refused: %s: %s", event.stream_sid, started.code, started.message
            )
            self.reason = "error"
            await self.conn.close(started.close_code, f"{started.code}: {started.message}")
            return True
        self.session = started
        log.info("Twilio call %s started (tracks %s)", call_id, ",".join(event.tracks))
        return False

    async def after_message(self) -> bool:
        return False

    async def start_timeout(self) -> None:
        await self.conn.close(CloseCode.POLICY_VIOLATION, "start_timeout: no start message in time")

    async def internal_error(self) -> None:
        await self.conn.close(CloseCode.INTERNAL_ERROR, "internal server error")

    async def finished(self) -> None:
        return None


def make_authenticator(settings: Settings) -> AudioHookAuthenticator | None:
    keys = parse_keys(settings.audiohook_keys)
    return AudioHookAuthenticator(keys, not_before=time.time()) if keys else None
