"""Genesys AudioHook and Twilio Media Streams end to end, with simulators of both platforms."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
import uuid
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from audio.files import load_call_audio
from clients.simulators import simulate_audiohook, simulate_twilio
from tests.conftest import AUDIO, AUDIOHOOK_KEY, AUDIOHOOK_SECRET, TWILIO_TOKEN

GENESYS = AUDIO / "cs_genesys_audiohook_stereo_pcmu.wav"


async def watch(url: str, call_id: str) -> list[dict[str, Any]]:
    """A screen that connects before the call starts and reads it to the end."""
    events: list[dict[str, Any]] = []
    async with connect(f"{url}/v1/calls/{call_id}/events") as ws:
        try:
            async for message in ws:
                events.append(json.loads(message))
        except ConnectionClosed:
            pass
    return events


def check_roles(audio: Any, finals: list[dict[str, Any]]) -> None:
    """Each final sits on the channel that carries the sound while it was spoken."""
    for final in finals:
        mine = 0 if final["channel"] == "customer" else 1
        lo = int(final["start"] * 8000)
        hi = max(int(final["end"] * 8000), lo + 1)
        own = np.sqrt(np.mean(audio.samples[lo:hi, mine].astype(float) ** 2))
        other = np.sqrt(np.mean(audio.samples[lo:hi, 1 - mine].astype(float) ** 2))
        assert own > other, (final["channel"], final["text"], own, other)


async def test_both_platforms_stream_the_genesys_recording_in_real_time(server) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([GENESYS])
    assert audio.channels == 2 and audio.sample_rate == 8000
    conversation = str(uuid.uuid4())
    twilio_call = "twilio-" + uuid.uuid4().hex[:8]
    screens = [asyncio.create_task(watch(server.url, c)) for c in (conversation, twilio_call)]
    await asyncio.sleep(0.2)
    genesys, twilio = await asyncio.gather(
        simulate_audiohook(
            server.url,
            audio,
            conversation_id=conversation,
            api_key=AUDIOHOOK_KEY,
            secret_b64=AUDIOHOOK_SECRET,
        ),
        simulate_twilio(
            server.url,
            audio,
            call_id=twilio_call,
            token=TWILIO_TOKEN,
            extra_parameters={"agent": "a-17"},
        ),
    )
    genesys_screen, twilio_screen = await asyncio.gather(*screens)

    # AudioHook: opened first, transcripts for both parties, every final before `closed`
    types = [m["type"] for m in genesys.received]
    assert types[0] == "opened" and types[-1] == "closed", types
    assert "pong" in types
    entities = [
        m["parameters"]["entities"][0]["data"] for m in genesys.received if m["type"] == "event"
    ]
    assert {e["channelId"] for e in entities} == {0, 1}  # the negotiated channels' indices
    finals = [e for e in genesys_screen if e["type"] == "transcript.final"]
    assert len(entities) == len(finals) >= 4
    assert [e["alternatives"][0]["interpretations"][0]["transcript"] for e in entities] == [
        f["text"] for f in finals
    ]
    assert [m["seq"] for m in genesys.received] == list(range(1, len(genesys.received) + 1))
    assert genesys_screen[0]["source"] == "audiohook"
    assert genesys_screen[-1]["type"] == "call.ended" and genesys_screen[-1]["reason"] == "stop"
    check_roles(audio, finals)

    # Twilio: the call appears like any other, with its source and custom parameters
    assert twilio.close_code == 1000
    started = twilio_screen[0]
    assert started["type"] == "call.started" and started["source"] == "twilio"
    assert started["channels"] == ["customer", "agent"]
    assert started["metadata"]["agent"] == "a-17" and "token" not in started["metadata"]
    twilio_finals = [e for e in twilio_screen if e["type"] == "transcript.final"]
    assert {f["channel"] for f in twilio_finals} == {"customer", "agent"}
    assert twilio_screen[-1]["type"] == "call.ended" and twilio_screen[-1]["reason"] == "stop"
    check_roles(audio, twilio_finals)
    # the same recording through both platforms gives nearly the same words
    words = [" ".join(f["text"] for f in fs).lower().split() for fs in (finals, twilio_finals)]
    assert len(set(words[0]) & set(words[1])) >= 0.7 * len(set(words[0]))


async def test_audiohook_refuses_bad_credentials(server) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([AUDIO / "wb_timit_LDC93S1.wav"], 1)
    wrong_secret = await simulate_audiohook(
        server.url, audio, api_key=AUDIOHOOK_KEY, secret_b64="c29tZSBvdGhlciBzZWNyZXQ="
    )
    unknown_key = await simulate_audiohook(
        server.url, audio, api_key="nobody", secret_b64=AUDIOHOOK_SECRET
    )
    unsigned = await simulate_audiohook(server.url, audio, api_key=AUDIOHOOK_KEY)
    assert wrong_secret.http_status == unknown_key.http_status == unsigned.http_status == 401


async def test_audiohook_replayed_request_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    from clients.simulators import sign_audiohook_request

    url = server.url + "/v1/audiohook"
    headers = {
        "Audiohook-Organization-Id": str(uuid.uuid4()),
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "Audiohook-Session-Id": str(uuid.uuid4()),
        "X-API-KEY": AUDIOHOOK_KEY,
    }
    signed = sign_audiohook_request(url, headers, AUDIOHOOK_KEY, AUDIOHOOK_SECRET)
    async with connect(url, additional_headers=signed):
        pass  # first use: accepted
    try:
        async with connect(url, additional_headers=signed):
            raise AssertionError("a replayed signature must be refused")
    except Exception as exc:  # websockets.exceptions.InvalidStatus
        assert "401" in str(exc)


async def test_audiohook_probe_creates_no_call(server) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([AUDIO / "wb_timit_LDC93S1.wav"], 1)
    probe_id = "00000000-0000-0000-0000-000000000000"
    async with connect(f"{server.url}/v1/calls/{probe_id}/events") as screen:
        result = await simulate_audiohook(
            server.url, audio, api_key=AUDIOHOOK_KEY, secret_b64=AUDIOHOOK_SECRET, probe=True
        )
        assert [m["type"] for m in result.received] == ["opened", "closed"]
        try:
            event = await asyncio.wait_for(screen.recv(), timeout=1.0)
        except TimeoutError:
            event = None
        assert event is None, f"the probe created a call: {event}"


def test_live_calls_endpoint(server) -> None:  # type: ignore[no-untyped-def]
    with urllib.request.urlopen(server.http + "/v1/calls/live", timeout=10) as response:
        body = json.load(response)
    assert isinstance(body["calls"], list)


async def test_twilio_refuses_a_missing_token(server) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([AUDIO / "wb_timit_LDC93S1.wav"], 1)
    result = await simulate_twilio(server.url, audio, realtime=False)
    assert result.close_code == 1008 and "token" in result.close_reason


async def test_twilio_refuses_a_non_ascii_token_cleanly(server) -> None:  # type: ignore[no-untyped-def]
    """Compared as text it raised TypeError (a 1006 close); now it is a wrong token."""
    audio = load_call_audio([AUDIO / "wb_timit_LDC93S1.wav"], 1)
    result = await simulate_twilio(server.url, audio, token="tökén-ünïcødé", realtime=False)
    assert result.close_code == 1008 and "token" in result.close_reason


async def test_twilio_ids_are_not_overwritten_by_custom_parameters(server) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([AUDIO / "wb_timit_LDC93S1.wav"], 1)
    call_id = "twilio-ids-" + uuid.uuid4().hex[:6]
    result = await simulate_twilio(
        server.url,
        audio,
        call_id=call_id,
        token=TWILIO_TOKEN,
        realtime=False,
        extra_parameters={"call_sid": "CAforged", "account_sid": "ACforged", "crm": "42"},
    )
    assert result.close_code == 1000

    def stored() -> dict:
        with urllib.request.urlopen(f"{server.http}/v1/calls/{call_id}", timeout=10) as answer:
            return dict(json.load(answer)["metadata"])

    metadata = await asyncio.to_thread(stored)
    assert metadata["call_sid"].startswith("CA") and metadata["call_sid"] != "CAforged"
    assert metadata["account_sid"] != "ACforged" and metadata["crm"] == "42"


async def test_twilio_mono_inbound_only(server) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([AUDIO / "ls_test-clean_4507-16021-0012.wav"], 1)
    call_id = "twilio-mono-" + uuid.uuid4().hex[:6]
    screen = asyncio.create_task(watch(server.url, call_id))
    await asyncio.sleep(0.2)
    result = await simulate_twilio(
        server.url, audio, call_id=call_id, token=TWILIO_TOKEN, realtime=False
    )
    events = await screen
    assert result.close_code == 1000
    text = " ".join(e["text"] for e in events if e["type"] == "transcript.final").lower()
    assert "halt on the way" in text  # 16 kHz audio, resampled to 8 kHz μ-law like a phone
    assert events[0]["channels"] == ["customer"]


async def test_a_twilio_stream_that_never_starts_is_closed(server) -> None:  # type: ignore[no-untyped-def]
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from gateway.runner import START_SECONDS

    async with connect(f"{server.url}/v1/twilio") as ws:  # its token comes with `start`
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(START_SECONDS + 20):
                async for _ in ws:
                    pass
    assert ws.close_code == 1008 and (ws.close_reason or "").startswith("start_timeout")
