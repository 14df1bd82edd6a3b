"""Platform simulators: stream a recording the way Genesys AudioHook or Twilio would.

Used by the tests and by `callcue simulate`, to check a deployment before pointing a real
contact-center platform at it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np
import soxr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from audio.codec import encode_mulaw
from audio.files import CallAudio
from audio.protocols.audiohook import duration
from audio.protocols.httpsig import REQUIRED_COMPONENTS, SignatureInput, signature_base


def at_8khz(audio: CallAudio) -> CallAudio:
    """Both platforms carry telephone audio: 8 kHz."""
    if audio.sample_rate == 8000:
        return audio
    resampled = soxr.resample(audio.samples.astype(np.float32) / 32768, audio.sample_rate, 8000)
    pcm = np.clip(resampled * 32768, -32768, 32767).astype(np.int16).reshape(-1, audio.channels)
    return CallAudio(samples=pcm, sample_rate=8000)


@dataclass
class SimulationResult:
    received: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    http_status: int | None = None  # set when the upgrade was refused
    call_id: str = ""


def sign_audiohook_request(
    url: str,
    headers: dict[str, str],
    api_key: str,
    secret_b64: str,
    *,
    created: int | None = None,
    expires: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Add Signature-Input and Signature headers as the Genesys AudioHook client does."""
    parsed = urlparse(url)
    created = int(time.time()) if created is None else created
    sig = SignatureInput(
        "sig1",
        REQUIRED_COMPONENTS,
        (
            ("keyid", api_key),
            ("nonce", nonce or uuid.uuid4().hex),
            ("alg", "hmac-sha256"),
            ("created", created),
            ("expires", created + 60 if expires is None else expires),
        ),
    )
    lower = {k.lower(): v for k, v in headers.items()}
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    base = signature_base(sig, lower, target, parsed.netloc)
    mac = hmac.new(base64.b64decode(secret_b64), base.encode(), hashlib.sha256).digest()
    return {
        **headers,
        "Signature-Input": f"sig1={sig.serialized()}",
        "Signature": f"sig1=:{base64.b64encode(mac).decode()}:",
    }


async def simulate_audiohook(
    url: str,
    audio: CallAudio,
    *,
    conversation_id: str | None = None,
    api_key: str = "test-key",
    secret_b64: str | None = None,
    realtime: bool = True,
    frame_ms: int = 100,
    probe: bool = False,
    extra_headers: dict[str, str] | None = None,
    custom_config: dict[str, Any] | None = None,
    pause_s: float = 0.0,
) -> SimulationResult:
    """One AudioHook session: open (PCMU 8 kHz, external+internal), audio, close → closed.
    `pause_s`: after the audio, Genesys pauses the stream this long (`paused`, `resumed`)."""
    endpoint = url.rstrip("/") + "/v1/audiohook"
    audio = at_8khz(audio)
    session_id = str(uuid.uuid4())
    conversation = (
        "00000000-0000-0000-0000-000000000000" if probe else (conversation_id or str(uuid.uuid4()))
    )
    headers = {
        "Audiohook-Organization-Id": str(uuid.uuid4()),
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "Audiohook-Session-Id": session_id,
        "X-API-KEY": api_key,
    }
    if secret_b64:
        headers = sign_audiohook_request(endpoint, headers, api_key, secret_b64)
    headers.update(extra_headers or {})
    result = SimulationResult(call_id=conversation)
    seq = 0
    server_seq = 0
    sent_samples = 0
    channels = ["external", "internal"][: audio.channels]

    def message(kind: str, parameters: dict[str, Any]) -> str:
        nonlocal seq
        seq += 1
        return json.dumps(
            {
                "version": "2",
                "id": session_id,
                "type": kind,
                "seq": seq,
                "serverseq": server_seq,
                "position": duration(sent_samples / 8000),
                "parameters": parameters,
            }
        )

    try:
        async with connect(endpoint, additional_headers=headers, max_size=None) as ws:

            async def receive() -> None:
                nonlocal server_seq
                with contextlib.suppress(ConnectionClosed):
                    async for raw in ws:
                        msg = json.loads(raw)
                        server_seq = msg.get("seq", server_seq)
                        result.received.append(msg)
                        if msg.get("type") == "closed":
                            await ws.close()
                            return

            receiver = asyncio.create_task(receive())
            await ws.send(
                message(
                    "open",
                    {
                        "organizationId": headers["Audiohook-Organization-Id"],
                        "conversationId": conversation,
                        "participant": {
                            "id": str(uuid.uuid4()),
                            "ani": "+15551230000",
                            "aniName": "Test Caller",
                            "dnis": "+15559870000",
                        },
                        "media": [
                            {"type": "audio", "format": "PCMU", "channels": channels, "rate": 8000},
                            {
                                "type": "audio",
                                "format": "PCMU",
                                "channels": ["external"],
                                "rate": 8000,
                            },
                        ],
                        "language": "en-US",
                        **({"customConfig": custom_config} if custom_config else {}),
                    },
                )
            )
            while not any(m.get("type") == "opened" for m in result.received):
                if receiver.done():
                    break
                await asyncio.sleep(0.01)
            if not probe and not receiver.done():
                step = 8000 * frame_ms // 1000
                started = time.monotonic()
                for lo in range(0, audio.samples.shape[0], step):
                    chunk = audio.samples[lo : lo + step]
                    if realtime:
                        delay = started + (lo + chunk.shape[0]) / 8000 - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    await ws.send(encode_mulaw(chunk.reshape(-1)))
                    sent_samples += chunk.shape[0]
                    if lo // step % 50 == 49:
                        await ws.send(message("ping", {}))
            if pause_s > 0 and not receiver.done():
                await ws.send(message("paused", {}))
                await asyncio.sleep(pause_s)
                position = duration(sent_samples / 8000)
                await ws.send(message("resumed", {"start": position, "discarded": "PT0S"}))
            if not receiver.done():
                await ws.send(message("close", {"reason": "end"}))
            await receiver
        result.close_code = ws.close_code
        result.close_reason = ws.close_reason or ""
    except InvalidStatus as exc:
        result.http_status = exc.response.status_code
    return result


async def simulate_twilio(
    url: str,
    audio: CallAudio,
    *,
    call_id: str | None = None,
    token: str | None = None,
    realtime: bool = True,
    extra_parameters: dict[str, str] | None = None,
) -> SimulationResult:
    """One Twilio Media Stream with both tracks: channel 0 inbound, channel 1 outbound."""
    endpoint = url.rstrip("/") + "/v1/twilio"
    audio = at_8khz(audio)
    call_sid = "CA" + uuid.uuid4().hex
    stream_sid = "MZ" + uuid.uuid4().hex
    tracks = ["inbound", "outbound"][: audio.channels]
    params = {
        **({"call_id": call_id} if call_id else {}),
        **({"token": token} if token else {}),
        **(extra_parameters or {}),
    }
    result = SimulationResult(call_id=call_id or call_sid)
    number = 0

    def message(event: str, body: dict[str, Any]) -> str:
        nonlocal number
        number += 1
        return json.dumps(
            {"event": event, "sequenceNumber": str(number), **body, "streamSid": stream_sid}
        )

    async with connect(endpoint, max_size=None) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(
            message(
                "start",
                {
                    "start": {
                        "accountSid": "AC" + uuid.uuid4().hex,
                        "streamSid": stream_sid,
                        "callSid": call_sid,
                        "tracks": tracks,
                        "customParameters": params,
                        "mediaFormat": {
                            "encoding": "audio/x-mulaw",
                            "sampleRate": 8000,
                            "channels": 1,
                        },
                    }
                },
            )
        )
        started = time.monotonic()
        chunk = 160  # 20 ms, as Twilio sends
        try:
            for lo in range(0, audio.samples.shape[0], chunk):
                if realtime and lo % (chunk * 5) == 0:  # pace every 100 ms
                    delay = started + lo / 8000 - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                for index, track in enumerate(tracks):
                    payload = encode_mulaw(audio.samples[lo : lo + chunk, index])
                    await ws.send(
                        message(
                            "media",
                            {
                                "media": {
                                    "track": track,
                                    "chunk": str(lo // chunk + 1),
                                    "timestamp": str(lo // 8),
                                    "payload": base64.b64encode(payload).decode(),
                                }
                            },
                        )
                    )
            await ws.send(message("stop", {"stop": {"accountSid": "", "callSid": call_sid}}))
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    result.received.append(json.loads(raw))
        except ConnectionClosed:
            pass
    result.close_code = ws.close_code
    result.close_reason = ws.close_reason or ""
    return result
