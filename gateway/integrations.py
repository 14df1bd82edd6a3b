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

from audio.codec import AudioFormat
from audio.protocols.audiohook import (
    AudioHookAudio,
    AudioHookClientError,
    AudioHookClose,
    AudioHookDiscarded,
    AudioHookFailed,
    AudioHookOpen,
    AudioHookPaused,
    AudioHookProtocol,
    AudioHookResumed,
    AudioHookUpdate,
)
from audio.protocols.httpsig import AudioHookAuthenticator
from audio.protocols.native import CALL_ID, CLOSE_NORMAL, CLOSE_POLICY
from audio.protocols.twilio import (
    TwilioDtmf,
    TwilioFailed,
    TwilioMedia,
    TwilioProtocol,
    TwilioStart,
    TwilioStop,
)
from audio.protocols.vocabulary import check_language, parse_vocabulary
from gateway.ingest import START_SECONDS, Connection, receive
from live.hub import CallActiveError
from live.session import CallIdTaken, CallSession, Services
from service.settings import Settings, parse_keys, parse_roles

log = logging.getLogger("callcue.integrations")


async def _start_session(
    services: Services,
    call_id: str,
    fmt: AudioFormat,
    channels: tuple[str, ...],
    metadata: dict[str, Any],
    source: str,
    conn: Connection,
    credential: str,
    vocabulary: Any = None,
    language: Any = None,
    diarize: Any = None,
) -> CallSession | tuple[int, str]:
    """A started CallSession, or (close code, reason) why it could not be started.
    `vocabulary`: as the platform passed it (a list, or a comma-separated string);
    `diarize`: the platform's custom parameter (true/false, or "true"/"false"); not given,
    a one-channel call is diarized when CALLCUE_DIARIZE says so."""
    if not CALL_ID.match(call_id):
        return CLOSE_POLICY, f"call id {call_id[:40]!r} is not a valid call id"
    terms, problem = parse_vocabulary(vocabulary if vocabulary is not None else [])
    if problem is not None:
        return CLOSE_POLICY, f"bad_vocabulary: {problem}"
    code, problem = check_language(language if language is not None else "en")
    if problem is not None:
        return CLOSE_POLICY, f"bad_language: {problem}"
    if not services.scheduler.speaks(code):
        return CLOSE_POLICY, f"language_unavailable: {code!r} needs a multilingual model"
    if diarize is None:
        split = services.diarize and len(channels) == 1
    elif str(diarize).lower() in ("true", "false"):
        split = str(diarize).lower() == "true"
    else:
        return CLOSE_POLICY, f"bad_diarize: diarize must be true or false, got {diarize!r}"
    if split and len(channels) != 1:
        return CLOSE_POLICY, (
            f"bad_diarize: diarize is for one track with both parties; this call sends "
            f"{len(channels)} ({', '.join(channels)}), each already one party"
        )
    refusal = services.admit(credential)
    if refusal is not None:
        return refusal
    if services.cluster is not None and (elsewhere := await services.cluster.claim(call_id)):
        return CLOSE_POLICY, elsewhere
    session = CallSession(
        services,
        call_id,
        fmt,
        channels,
        metadata,
        source=source,
        credential=credential,
        vocabulary=terms,
        language=code,
        diarize=split,
    )
    try:
        await session.start()
    except CallActiveError:
        return CLOSE_POLICY, f"call {call_id!r} is already streaming"
    except CallIdTaken as taken:
        return CLOSE_POLICY, f"call {call_id!r}: {taken}"
    session.on_server_end = conn.close_for
    return session


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
    conn = Connection(ws)
    proto = AudioHookProtocol(session_id)
    roles = parse_roles(settings.audiohook_channels)
    session: CallSession | None = None
    forwarder: asyncio.Task[None] | None = None
    send_lock = asyncio.Lock()

    async def flush() -> None:
        async with send_lock:
            for message in proto.data_to_send():
                await conn.send_text(json.dumps(message))

    async def end_session(reason: str) -> None:
        if session is not None and not session.finished:
            await session.finish(reason)
        if forwarder is not None:
            await forwarder

    deadline = asyncio.get_running_loop().time() + START_SECONDS
    try:
        while True:
            message = await receive(ws, None if session is not None else deadline)
            if message is None:
                log.warning(
                    "AudioHook session %s: no open within %.0f s", session_id, START_SECONDS
                )
                await conn.close(CLOSE_POLICY, "start_timeout: no open message in time")
                return
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                events = proto.receive_text(message["text"])
            else:
                events = proto.receive_bytes(message.get("bytes") or b"")
            for event in events:
                if isinstance(event, AudioHookAudio):
                    if session is not None:
                        await session.feed(event.data)
                elif isinstance(event, AudioHookOpen):
                    if not event.probe:
                        fmt = AudioFormat(
                            "mulaw" if event.media.format == "PCMU" else "pcm16",
                            8000,
                            len(event.media.channels),
                        )
                        channels = tuple(roles[c] for c in event.media.channels)
                        metadata = {
                            "organization_id": event.organization_id,
                            "participant": event.participant,
                            "audiohook_session_id": session_id,
                            "language": event.language,
                            **(
                                {"custom_config": event.custom_config}
                                if event.custom_config
                                else {}
                            ),
                        }
                        started = await _start_session(
                            services,
                            event.conversation_id,
                            fmt,
                            channels,
                            metadata,
                            "audiohook",
                            conn,
                            credential,
                            vocabulary=event.custom_config.get("vocabulary"),
                            diarize=event.custom_config.get("diarize"),
                            # Genesys names the conversation's language ("de-DE"); a
                            # customConfig `language` ("auto", say) overrides it
                            language=event.custom_config.get("language") or event.language or None,
                        )
                        if isinstance(started, tuple):
                            proto.disconnect(
                                "error", f"callcue cannot take this call: {started[1]}"
                            )
                        else:
                            session = started
                            if settings.audiohook_transcripts:
                                forwarder = asyncio.create_task(
                                    _transcripts_to_genesys(
                                        services,
                                        session.call_id,
                                        proto,
                                        roles,
                                        flush,
                                        tuple(event.media.channels),
                                    )
                                )
                            log.info(
                                "AudioHook call %s started (%s, %s)",
                                session.call_id,
                                event.media.format,
                                ",".join(event.media.channels),
                            )
                elif isinstance(event, AudioHookClose):
                    # flush every final (and send them to Genesys) before `closed`
                    await end_session("stop")
                    proto.send_closed()
                elif isinstance(event, AudioHookFailed):
                    log.warning("AudioHook session %s: %s", session_id, event.info)
                    await flush()
                    await end_session("error")
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
                        session_id,
                        event.discarded,
                    )
                elif isinstance(event, AudioHookUpdate):
                    log.info("AudioHook session %s: language now %s", session_id, event.language)
            await flush()
            if proto.state == "closed":
                # Genesys closes the websocket after `closed`; don't wait forever for it
                with contextlib.suppress(asyncio.TimeoutError, WebSocketDisconnect):
                    await asyncio.wait_for(ws.receive(), timeout=10)
                await conn.close(CLOSE_NORMAL)
                return
    except WebSocketDisconnect:
        pass
    finally:
        if session is not None and not session.finished:
            await session.finish("disconnect")
        if forwarder is not None and not forwarder.done():
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder


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
    proto = TwilioProtocol()
    tokens = [t for t in settings.twilio_tokens.split(",") if t]
    if not tokens and settings.token_roles:
        log.warning("Twilio stream refused: CALLCUE_TWILIO_TOKENS is not set")
        await conn.close(CLOSE_POLICY, "Twilio streams are off: set CALLCUE_TWILIO_TOKENS")
        return
    roles = parse_roles(settings.twilio_tracks)
    session: CallSession | None = None
    track_index: dict[str, int] = {}
    reason = "disconnect"
    deadline = asyncio.get_running_loop().time() + START_SECONDS
    try:
        while True:
            message = await receive(ws, None if session is not None else deadline)
            if message is None:
                log.warning("Twilio stream: no start within %.0f s", START_SECONDS)
                await conn.close(CLOSE_POLICY, "start_timeout: no start message in time")
                return
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                events = proto.receive_text(message["text"])
            else:
                events = proto.receive_bytes(message.get("bytes") or b"")
            for event in events:
                if isinstance(event, TwilioMedia):
                    if session is not None:
                        await session.feed_track(track_index[event.track], event.data)
                elif isinstance(event, TwilioStart):
                    params = dict(event.custom_parameters)
                    token = str(params.pop("token", ""))
                    given = token.encode()  # compared as bytes: any text is just a wrong token
                    if tokens and not any(hmac.compare_digest(given, t.encode()) for t in tokens):
                        log.warning(
                            "Twilio stream %s refused: bad or missing token", event.stream_sid
                        )
                        reason = "error"
                        await conn.close(CLOSE_POLICY, "unauthorized: bad or missing token")
                        return
                    call_id = params.pop("call_id", "") or event.call_sid
                    vocabulary = params.pop("vocabulary", None)
                    language = params.pop("language", None)
                    diarize = params.pop("diarize", None)
                    track_index = {t: i for i, t in enumerate(event.tracks)}
                    channels = tuple(roles[t] for t in event.tracks)
                    metadata = {  # Twilio's own ids win over custom parameters of those names
                        **params,
                        "call_sid": event.call_sid,
                        "stream_sid": event.stream_sid,
                        "account_sid": event.account_sid,
                    }
                    started = await _start_session(
                        services,
                        call_id,
                        AudioFormat("mulaw", 8000, 1),
                        channels,
                        metadata,
                        "twilio",
                        conn,
                        f"twilio-{token[-4:]}" if tokens else "open",
                        vocabulary=vocabulary,
                        language=language,
                        diarize=diarize,
                    )
                    if isinstance(started, tuple):
                        log.warning("Twilio stream %s refused: %s", event.stream_sid, started[1])
                        await conn.close(*started)
                        return
                    session = started
                    log.info("Twilio call %s started (tracks %s)", call_id, ",".join(event.tracks))
                elif isinstance(event, TwilioDtmf):
                    log.info("Twilio DTMF %s on %s", event.digit, event.track)
                elif isinstance(event, TwilioStop):
                    reason = "stop"
                    if session is not None:
                        await session.finish("stop")
                    await conn.close(CLOSE_NORMAL)
                    return
                elif isinstance(event, TwilioFailed):
                    reason = "error"
                    log.warning("Twilio stream error %s: %s", event.code, event.message)
                    if session is not None:
                        await session.finish("error")
                    await conn.close(event.close_code, f"{event.code}: {event.message}")
                    return
    except WebSocketDisconnect:
        pass
    finally:
        if session is not None and not session.finished:
            await session.finish(reason)


def make_authenticator(settings: Settings) -> AudioHookAuthenticator | None:
    keys = parse_keys(settings.audiohook_keys)
    return AudioHookAuthenticator(keys, not_before=time.time()) if keys else None
