"""Sockets and calls that hold the server without using it, on a real server: a call that
receives no audio is ended (`idle`), unless Genesys paused it; a connection that trickles its
request head is closed; past the connection cap requests get 503.

Before these limits, 300 websockets that never sent anything and 300 slow header trickles all
stayed open, and a call started without audio never ended."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from audio.files import CallAudio, load_call_audio
from clients.simulators import simulate_audiohook
from tests.conftest import AUDIO, AUDIOHOOK_KEY, AUDIOHOOK_SECRET
from tests.servers import ServerProcess

IDLE = 3


@pytest.fixture(scope="module")
def limited() -> Iterator[ServerProcess]:
    server = ServerProcess(
        env={
            "CALLCUE_IDLE_SECONDS": str(IDLE),
            "CALLCUE_HEADER_TIMEOUT": "2",
            "CALLCUE_AUDIOHOOK_KEYS": f"{AUDIOHOOK_KEY}:{AUDIOHOOK_SECRET}",
        }
    )
    yield server
    server.stop()


def get(server: ServerProcess, path: str) -> dict:
    with urllib.request.urlopen(server.http + path, timeout=30) as response:
        return json.loads(response.read())


async def test_a_call_without_audio_is_ended_as_idle(limited: ServerProcess) -> None:
    start = {
        "type": "start",
        "call_id": "idle-1",
        "encoding": "pcm16",
        "sample_rate": 16000,
        "channels": ["customer"],
    }
    received = []
    started = time.monotonic()
    async with connect(limited.url + "/v1/ingest", open_timeout=30) as ws:
        await ws.send(json.dumps(start))
        await ws.send(np.zeros(1600, np.int16).tobytes())  # 0.1 s, then nothing
        async with asyncio.timeout(60):  # bounded: the server must end it well before
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    received.append(json.loads(message))
    waited = time.monotonic() - started
    assert ws.close_code == 1008 and ws.close_reason.startswith("idle"), ws.close_reason
    assert waited >= IDLE
    errors = [m for m in received if m.get("code") == "call_idle"]
    assert errors and "CALLCUE_IDLE_SECONDS" in errors[0]["message"]
    assert get(limited, "/v1/calls/idle-1")["outcome"] == "idle"


async def test_a_paused_audiohook_session_is_not_idle(limited: ServerProcess) -> None:
    pair = load_call_audio(
        [AUDIO / "cs_aws_auto_repairs_40_caller.wav", AUDIO / "cs_aws_auto_repairs_40_agent.wav"]
    )
    audio = CallAudio(pair.samples[: 4 * pair.sample_rate], pair.sample_rate)
    result = await simulate_audiohook(
        limited.url,
        audio,
        api_key=AUDIOHOOK_KEY,
        secret_b64=AUDIOHOOK_SECRET,
        realtime=False,
        pause_s=2 * IDLE,  # paused twice as long as a call may be idle
    )
    kinds = [m.get("type") for m in result.received]
    assert "closed" in kinds, result.received  # ended by its own close, not by the server
    call = get(limited, f"/v1/calls/{result.call_id}")
    assert call["outcome"] == "stop"


def test_a_trickled_request_head_is_closed(limited: ServerProcess) -> None:
    host, port = limited.http.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        deadline = time.monotonic() + 30  # bounded; the server's limit is 2 s
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"X")  # a header byte now and then, never the end of the head
            except OSError:
                closed = True
                break
            sock.settimeout(0.5)
            try:
                closed = sock.recv(1024) == b""
            except TimeoutError:
                pass
            except OSError:  # closed with the trickled bytes unread: a reset, not a FIN
                closed = True
    assert closed, "the connection was still open after 30 s of trickling"
    # a prompt client on a fresh connection is served
    assert get(limited, "/healthz")["status"] == "ok"


def test_past_the_connection_cap_requests_get_503() -> None:
    # no header timeout here: the held connections must stay until the test lets them go
    server = ServerProcess(env={"CALLCUE_MAX_CONNECTIONS": "4", "CALLCUE_HEADER_TIMEOUT": "0"})
    try:
        host, port = server.http.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port)), timeout=30) for _ in range(4)]
        try:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(server.http + "/healthz", timeout=30)
            assert refused.value.code == 503
            refused.value.close()
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 30  # served again once the server has seen them go
        while True:
            try:
                assert get(server, "/healthz")["status"] == "ok"
                break
            except urllib.error.HTTPError as busy:
                busy.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        server.stop()
