"""Access control and limits on a real server: ingest keys, platform credentials, per-call
links, browser origins, per-key call limits, the call-duration limit and the REST rate limit,
each refused with a clear error and counted in /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from audio.files import CallAudio, load_call_audio
from clients.native import stream_call
from tests.conftest import AUDIO
from tests.servers import ServerProcess

ADMIN = "admin-token-hardening-01"
AGENT = "agent-token-hardening-01"
QA = "qa-token-hardening-0001"
KEY_A = "ingest-key-aaaaaaaaaaaa"
KEY_B = "ingest-key-bbbbbbbbbbbb"
CRM = "https://crm.example.com"
JFK = AUDIO / "wb_jfk_inaugural_1961.flac"


@pytest.fixture(scope="module")
def secured() -> Iterator[ServerProcess]:
    server = ServerProcess(
        env={
            "CALLCUE_ADMIN_TOKEN": ADMIN,
            "CALLCUE_TOKENS": f"{AGENT}:agent,{QA}:qa",
            "CALLCUE_INGEST_KEYS": f"{KEY_A}:softphone,{KEY_B}:platform",
            "CALLCUE_MAX_CALLS_PER_KEY": "1",
            "CALLCUE_MAX_CALL_SECONDS": "10",
            "CALLCUE_RATE_LIMIT": "60",
            "CALLCUE_ALLOWED_ORIGINS": CRM,
        }
    )
    yield server
    server.stop()


def http(
    server: ServerProcess, path: str, token: str | None = ADMIN, method: str = "GET"
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(server.http + path, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            status, headers = response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        body, status, headers = exc.read(), exc.code, dict(exc.headers)
    ctype = headers.get("content-type", "")
    return status, headers, json.loads(body) if "json" in ctype and body else body


async def exchange(
    uri: str,
    messages: list[str] = (),  # type: ignore[assignment]
    *,
    token: str | None = None,
    origin: str | None = None,
    limit: float = 20.0,
) -> tuple[list[dict[str, Any]], int | None, str]:
    """Open a websocket, send `messages`, collect replies until it closes (or `limit` s)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    received: list[dict[str, Any]] = []
    async with connect(
        uri,
        additional_headers=headers,
        origin=origin,
        open_timeout=30,  # type: ignore[arg-type]
    ) as ws:
        try:
            for message in messages:
                await ws.send(message)
        except ConnectionClosed:
            pass  # refused at once: its reply is still there to read
        try:
            async with asyncio.timeout(limit):
                async for reply in ws:
                    received.append(json.loads(reply))
        except (ConnectionClosed, TimeoutError):
            pass
        return received, ws.close_code, ws.close_reason or ""


def start_message(call_id: str) -> str:
    return json.dumps(
        {
            "type": "start",
            "call_id": call_id,
            "encoding": "pcm16",
            "sample_rate": 16000,
            "channels": ["customer"],
        }
    )


def metric(server: ServerProcess, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(server.http + "/metrics", timeout=10) as response:
        text = response.read().decode()
    prefix = name + "{" + labels if labels else name
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and line[len(name)] in " {"
    )


async def test_ingest_needs_a_valid_key(secured: ServerProcess) -> None:
    before = metric(secured, "callcue_auth_failures_total", 'endpoint="ingest"')
    uri = secured.url + "/v1/ingest"
    replies, code, _ = await exchange(uri, [start_message("nokey-1")])
    assert code == 4401 and replies[0]["code"] == "unauthorized"
    assert "token" in replies[0]["message"]
    replies, code, _ = await exchange(uri, [start_message("badkey-1")], token="x" * 24)
    assert code == 4401 and "not valid" in replies[0]["message"]
    replies, code, _ = await exchange(uri, [start_message("agent-1")], token=AGENT)
    assert code == 4403 and "ingest key" in replies[0]["message"]
    after = metric(secured, "callcue_auth_failures_total", 'endpoint="ingest"')
    assert after - before == 3
    # nothing was started by the refused connections
    assert http(secured, "/v1/calls/nokey-1")[0] == 404


async def test_platforms_without_credentials_are_off(secured: ServerProcess) -> None:
    """Tokens are set but no Twilio tokens / AudioHook keys: those endpoints refuse."""
    _, code, reason = await exchange(secured.url + "/v1/twilio")
    assert code == 1008 and "CALLCUE_TWILIO_TOKENS" in reason
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            secured.url + "/v1/audiohook", additional_headers={"Audiohook-Session-Id": "s-1"}
        ):
            pass
    assert refused.value.response.status_code == 403
    assert b"CALLCUE_AUDIOHOOK_KEYS" in refused.value.response.body


async def test_key_limit_and_call_links(secured: ServerProcess) -> None:
    audio = load_call_audio([JFK], 1)
    clip = CallAudio(audio.samples[: 8 * audio.sample_rate], audio.sample_rate)
    seen: list[dict[str, Any]] = []
    first = asyncio.ensure_future(
        stream_call(
            secured.url,
            clip,
            ["customer"],
            realtime=True,
            speed=1.0,
            call_id="linked-1",
            token=KEY_A,
            on_event=seen.append,
        )
    )
    for _ in range(300):
        if seen:
            break
        await asyncio.sleep(0.1)
    started = seen[0]
    assert started["type"] == "started"
    link = started["screen"]
    assert link["path"].startswith("/agent/linked-1?token=") and link["expires_at"] > 0

    # the same key may hold one call (CALLCUE_MAX_CALLS_PER_KEY=1); another key may start one
    replies, code, _ = await exchange(
        secured.url + "/v1/ingest", [start_message("linked-2")], token=KEY_A
    )
    assert code == 1013 and replies[0]["code"] == "capacity"
    assert (
        "softphone" in replies[0]["message"]
        and "CALLCUE_MAX_CALLS_PER_KEY" in (replies[0]["message"])
    )
    replies, code, _ = await exchange(
        secured.url + "/v1/ingest",
        [start_message("other-key-1"), json.dumps({"type": "stop"})],
        token=KEY_B,
    )
    assert replies[0]["type"] == "started" and code == 1000

    # the link opens that call's screen, and nothing else
    live, _, _ = await exchange(
        secured.url + "/v1/calls/linked-1/events", token=link["token"], limit=60
    )
    assert live[0]["type"] == "call.started" and live[-1]["type"] == "call.ended"
    replies, code, _ = await exchange(
        secured.url + "/v1/calls/other-key-1/events", token=link["token"]
    )
    assert code == 4403 and "linked-1" in replies[0]["message"]
    result = await first
    assert [e["type"] for e in result.events][-1] == "stopped"
    assert http(secured, "/v1/calls/linked-1/transcript", link["token"])[0] == 200
    assert http(secured, "/v1/calls/other-key-1/transcript", link["token"])[0] == 403
    status, _, body = http(secured, "/v1/calls", link["token"])
    assert status == 403 and "call link" in body["message"]
    assert http(secured, "/v1/calls/linked-1/link", link["token"], "POST")[0] == 403
    # staff make links for any stored call
    status, _, made = http(secured, "/v1/calls/linked-1/link", AGENT, "POST")
    assert status == 201 and made["call_id"] == "linked-1"
    status, _, call = http(secured, "/v1/calls/linked-1", made["token"])
    assert status == 200 and call["id"] == "linked-1"
    # a link opens the call, not its QA record: no reviews, no recordings
    assert "reviews" not in call and "recordings" not in call
    status, _, body = http(secured, "/v1/calls/linked-1/reviews", made["token"])
    assert status == 403 and "call link" in body["message"]
    assert http(secured, "/v1/calls/linked-1/audio/customer", made["token"])[0] == 403
    assert "reviews" in http(secured, "/v1/calls/linked-1", QA)[2]  # staff see them
    assert http(secured, "/v1/calls/nobody-1/link", AGENT, "POST")[0] == 404
    assert http(secured, "/v1/calls/linked-1", made["token"][:-3] + "AAA")[0] == 401


async def test_origin_checks(secured: ServerProcess) -> None:
    events = secured.url + "/v1/calls/linked-1/events"
    replies, code, _ = await exchange(events, token=ADMIN, origin="https://evil.example")
    assert code == 4403 and replies[0]["code"] == "origin_not_allowed"
    assert "evil.example" in replies[0]["message"]
    replies, code, _ = await exchange(
        secured.url + "/v1/ingest", token=KEY_B, origin="https://evil.example"
    )
    assert code == 4403 and replies[0]["code"] == "origin_not_allowed"
    # an allowed site and the server's own pages get in (the stored call replays, then ends)
    for origin in (CRM, secured.http):
        replies, code, _ = await exchange(events, token=ADMIN, origin=origin, limit=30)
        assert replies and replies[0]["type"] == "call.started", (origin, replies[:1])


async def test_call_duration_limit(secured: ServerProcess) -> None:
    audio = load_call_audio([AUDIO / "cs_aws_auto_repairs_40_caller.wav"], 1)
    clip = CallAudio(audio.samples[: 60 * audio.sample_rate], audio.sample_rate)
    result = await stream_call(
        secured.url, clip, ["customer"], realtime=True, speed=4.0, call_id="long-1", token=KEY_B
    )
    types = [e["type"] for e in result.events]
    assert "stopped" not in types  # the server ended it, the client did not
    errors = [e for e in result.events if e["type"] == "error"]
    assert errors and errors[0]["code"] == "call_too_long"
    assert "CALLCUE_MAX_CALL_SECONDS" in errors[0]["message"]
    ended = [e for e in result.events if e["type"] == "call.ended"]
    assert ended and ended[0]["reason"] == "max_duration"
    assert result.close_code == 1008
    finals = [e for e in result.events if e["type"] == "transcript.final"]
    assert finals  # what was said before the limit is kept
    status, _, call = http(secured, "/v1/calls/long-1")
    assert status == 200 and call["outcome"] == "max_duration"
    assert 9.5 <= call["duration"] <= 12
    assert metric(secured, "callcue_limit_rejections_total", 'limit="call_duration"') >= 1


def test_rest_rate_limit(secured: ServerProcess) -> None:
    before = metric(secured, "callcue_limit_rejections_total", 'limit="rate"')
    statuses = []
    limited: tuple[int, dict[str, str], Any] | None = None
    for _ in range(40):  # 60 a minute in bursts of 15: the burst runs out
        answer = http(secured, "/v1/calls?limit=1", QA)
        statuses.append(answer[0])
        if answer[0] == 429 and limited is None:
            limited = answer
    assert statuses[:10] == [200] * 10 and 429 in statuses
    assert limited is not None
    _, headers, body = limited
    assert body["error"] == "rate_limited" and "CALLCUE_RATE_LIMIT" in body["message"]
    assert int(headers["retry-after"]) >= 1
    # another client (its own bucket) is not affected
    assert http(secured, "/v1/calls?limit=1", AGENT)[0] == 200
    after = metric(secured, "callcue_limit_rejections_total", 'limit="rate"')
    assert after - before == statuses.count(429)


def test_made_up_tokens_share_their_address_bucket(secured: ServerProcess) -> None:
    """A fresh invented token on every request used to get a fresh bucket each time, so it
    was never limited; now only valid tokens key a bucket, the rest count as the address."""
    statuses = [
        http(secured, "/v1/calls?limit=1", f"made-up-token-{n:04d}-xxxxxxxx")[0] for n in range(40)
    ]
    assert statuses[0] == 401 and 429 in statuses, statuses
    assert set(statuses) == {401, 429}
    assert http(secured, "/v1/calls?limit=1", AGENT)[0] == 200  # a valid token: its own bucket


def test_direct_tls(tmp_path: Any) -> None:
    """CALLCUE_TLS_CERTFILE/KEYFILE: HTTPS and WSS on the same port, verified by the client."""
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ServerProcess(env={"CALLCUE_TLS_CERTFILE": str(cert), "CALLCUE_TLS_KEYFILE": str(key)})
    try:
        assert server.http.startswith("https://") and server.url.startswith("wss://")
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(server.http + "/healthz", timeout=30, context=context) as r:
            assert json.load(r)["status"] == "ok"
        with pytest.raises(urllib.error.URLError):  # the client checks the certificate
            urllib.request.urlopen(server.http + "/healthz", timeout=30)

        async def call() -> list[dict[str, Any]]:
            async with connect(server.url + "/v1/ingest", ssl=context) as ws:
                await ws.send(start_message("tls-1"))
                await ws.send(json.dumps({"type": "stop"}))
                return [json.loads(m) async for m in ws]

        replies = asyncio.run(call())
        assert replies[0]["type"] == "started" and replies[-1]["type"] == "stopped"
    finally:
        server.stop()


async def test_size_limits_are_counted(secured: ServerProcess) -> None:
    before = metric(secured, "callcue_limit_rejections_total", 'limit="frame"')
    headers = {"Authorization": f"Bearer {KEY_B}"}
    async with connect(secured.url + "/v1/ingest", additional_headers=headers, max_size=None) as ws:
        await ws.send(start_message("big-frame-1"))
        await ws.send(b"\x00" * (2 * 1024 * 1024))
        replies = []
        with pytest.raises(ConnectionClosed):
            while True:
                replies.append(json.loads(await ws.recv()))
    assert replies[-1]["code"] == "frame_too_large" and ws.close_code == 1009
    assert metric(secured, "callcue_limit_rejections_total", 'limit="frame"') == before + 1


async def test_no_credential_from_a_url_reaches_the_log(secured: ServerProcess) -> None:
    """uvicorn logs every websocket's path with its query string: right and wrong tokens sent
    as `?token=` (ingest key, staff token, call link) must not appear in the server's log."""
    wrong = "wrong-secret-4b1d9c0e77"
    replies, code, _ = await exchange(
        f"{secured.url}/v1/ingest?token={KEY_B}",
        [start_message("query-token-1"), json.dumps({"type": "stop"})],
    )
    assert replies[0]["type"] == "started" and code == 1000
    link = replies[0]["screen"]["token"]
    for token in (AGENT, link, wrong):
        with contextlib.suppress(InvalidStatus):  # refused at the handshake: logged all the same
            await exchange(f"{secured.url}/v1/calls/query-token-1/events?token={token}", limit=5)
    with contextlib.suppress(InvalidStatus):
        await exchange(f"{secured.url}/v1/ingest?token={wrong}", [start_message("q-2")])
    for _ in range(200):  # the log is read by a thread: wait for the lines to arrive
        if sum("?token=[redacted]" in line for line in secured.log) >= 5:
            break
        await asyncio.sleep(0.05)
    text = "\n".join(secured.log)
    assert text.count("?token=[redacted]") >= 5, text[-3000:]
    for secret in (KEY_B, AGENT, link, wrong):
        assert secret not in text


async def test_a_call_id_belongs_to_the_credential_that_started_it(
    secured: ServerProcess,
) -> None:
    """Another key that starts a stored call's id is refused (call_id_taken) and learns and
    changes nothing; the key that started it may resume it."""
    say = json.dumps({"type": "stop"})
    replies, code, _ = await exchange(
        secured.url + "/v1/ingest", [start_message("owned-1"), say], token=KEY_B
    )
    assert replies[0]["type"] == "started" and code == 1000
    before = http(secured, "/v1/calls/owned-1")[2]
    events_before = http(secured, "/v1/calls/owned-1/events")[2]
    assert before["outcome"] == "stop"

    replies, code, _ = await exchange(
        secured.url + "/v1/ingest", [start_message("owned-1"), say], token=KEY_A
    )
    assert code == 1008 and [r["type"] for r in replies] == ["error"]
    assert replies[0]["code"] == "call_id_taken" and "screen" not in replies[0]
    assert replies[0]["message"] == "this call id is taken: start the call with another id"
    assert http(secured, "/v1/calls/owned-1")[2] == before  # nothing changed
    assert http(secured, "/v1/calls/owned-1/events")[2] == events_before

    replies, code, _ = await exchange(
        secured.url + "/v1/ingest", [start_message("owned-1"), say], token=KEY_B
    )
    assert replies[0]["type"] == "started" and code == 1000  # the owner resumes it
    assert http(secured, "/v1/calls/owned-1")[2]["outcome"] == "stop"


async def test_a_connection_that_starts_no_call_is_closed(secured: ServerProcess) -> None:
    """An authenticated ingest websocket that sends no start is closed after START_SECONDS
    with a reason, instead of being held for ever."""
    from gateway.runner import START_SECONDS

    started = asyncio.get_running_loop().time()
    replies, code, reason = await exchange(
        secured.url + "/v1/ingest", [], token=KEY_B, limit=START_SECONDS + 20
    )
    waited = asyncio.get_running_loop().time() - started
    assert code == 1008 and reason == "start_timeout", (code, reason)
    assert replies[0]["code"] == "start_timeout" and "start message" in replies[0]["message"]
    assert START_SECONDS - 1 <= waited < START_SECONDS + 15
