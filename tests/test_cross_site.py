"""Cross-site writes, DNS rebinding and page headers, on real servers: the `make run` default
(no tokens, every caller is admin) and one with tokens and an explicit host list.

Before these checks a page on another site purged every stored call of a server without
tokens with a `no-cors` POST, posted a review as text/plain, and a request with
`Host: rebind.attacker.example` was served."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from audio.files import load_call_audio
from clients.native import stream_call
from gateway.auth import LOOPBACK_HOSTS, allowed_hosts, hostname, same_origin
from tests.conftest import AUDIO
from tests.servers import ServerProcess

EVIL = "https://evil.example"
REBOUND = "rebind.attacker.example"


def request(
    server: ServerProcess,
    method: str,
    path: str,
    *,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request with the Host header chosen (urllib would always send the real one)."""
    address = server.http.removeprefix("http://")
    conn = http.client.HTTPConnection(address, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host or address)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        found = {k.lower(): v for k, v in response.getheaders()}
        parsed = json.loads(data) if "json" in found.get("content-type", "") and data else data
        return response.status, found, parsed
    finally:
        conn.close()


@pytest.fixture(scope="module")
def open_server() -> Iterator[ServerProcess]:
    """The `make run` default: no tokens, loopback only; one stored call (JFK)."""
    server = ServerProcess()
    try:
        audio = load_call_audio([AUDIO / "wb_jfk_inaugural_1961.flac"], 1)
        asyncio.run(stream_call(server.url, audio, ["customer"], realtime=False, call_id="keep-1"))
        yield server
    finally:
        server.stop()


def test_host_names_and_origins() -> None:
    assert hostname("LocalHost:8080") == "localhost" and hostname("[::1]:80") == "::1"
    assert hostname("example.com.") == "example.com" and hostname("::1") == "::1"
    assert allowed_hosts("", tokens=False) == LOOPBACK_HOSTS
    assert allowed_hosts("", tokens=True) is None  # tokens guard it: any host
    assert allowed_hosts("callcue.example.com, *", tokens=False) is None
    assert allowed_hosts("Callcue.Example.com:443", tokens=True) == {"callcue.example.com"}
    host = "127.0.0.1:8080"
    assert same_origin("http://127.0.0.1:8080", host, frozenset(), LOOPBACK_HOSTS)
    assert not same_origin("http://127.0.0.1:9999", host, frozenset(), LOOPBACK_HOSTS)
    assert not same_origin(EVIL, host, frozenset(), LOOPBACK_HOSTS)
    assert not same_origin("null", host, frozenset(), None)
    # a rebound name is its own "same origin", but not one of the allowed hosts
    rebound = f"{REBOUND}:8080"
    assert not same_origin(f"http://{rebound}", rebound, frozenset(), LOOPBACK_HOSTS)
    assert same_origin(EVIL, host, frozenset({EVIL}), LOOPBACK_HOSTS)


def test_a_rebound_host_name_is_refused(open_server: ServerProcess) -> None:
    for path in ("/healthz", "/qa", "/v1/calls"):
        status, _, body = request(open_server, "GET", path, host=f"{REBOUND}:80")
        assert status == 400 and body["error"] == "host_not_allowed", (path, status, body)
        assert REBOUND in body["message"] and "CALLCUE_ALLOWED_HOSTS" in body["message"]
    status, _, body = request(open_server, "POST", "/v1/admin/purge?days=0", host=REBOUND)
    assert status == 400
    port = open_server.http.rsplit(":", 1)[1]
    for name in ("localhost", "127.0.0.1"):
        assert request(open_server, "GET", "/healthz", host=f"{name}:{port}")[0] == 200


async def test_a_rebound_websocket_is_refused(open_server: ServerProcess) -> None:
    port = open_server.http.rsplit(":", 1)[1]
    with pytest.raises(InvalidStatus) as refused:
        async with connect(  # the name resolves to this server (rebinding): TCP to loopback
            f"ws://{REBOUND}:{port}/v1/calls/keep-1/events",
            host="127.0.0.1",
            port=int(port),
            origin=f"http://{REBOUND}:{port}",  # the page's own origin after rebinding
            open_timeout=30,
        ):
            pass
    assert refused.value.response.status_code == 403
    # the server's own page (same host and port) still gets its events
    async with connect(
        open_server.url + "/v1/calls/keep-1/events", origin=open_server.http, open_timeout=30
    ) as ws:
        first = json.loads(await ws.recv())
    assert first["type"] == "call.started"


def test_cross_site_writes_are_refused_and_change_nothing(open_server: ServerProcess) -> None:
    # what a page on another site can send: a no-cors POST (with its Origin), a text/plain body
    status, _, body = request(
        open_server, "POST", "/v1/admin/purge?days=0", headers={"Origin": EVIL}
    )
    assert status == 403 and body["error"] == "origin_not_allowed" and EVIL in body["message"]
    review = json.dumps({"scores": {"greeting": 1}}).encode()
    status, _, body = request(
        open_server,
        "POST",
        "/v1/calls/keep-1/reviews",
        headers={"Content-Type": "text/plain"},
        body=review,
    )
    assert status == 415 and body["error"] == "unsupported_media_type"
    status, _, body = request(
        open_server,
        "DELETE",
        "/v1/calls/keep-1",
        headers={"Origin": "null"},  # a sandboxed frame
    )
    assert status == 403
    status, _, call = request(open_server, "GET", "/v1/calls/keep-1")
    assert status == 200 and call["reviews"] == []  # nothing was purged, posted or deleted
    # the server's own pages and programs (no Origin) still write
    status, _, body = request(
        open_server,
        "POST",
        "/v1/calls/keep-1/reviews",
        headers={"Content-Type": "application/json; charset=utf-8", "Origin": open_server.http},
        body=review,
    )
    assert status == 201, body
    assert body["reviewer"] == "admin"  # the role, never a piece of a token
    status, _, body = request(open_server, "POST", "/v1/admin/purge?days=30")
    assert status == 200 and body["deleted"] == []


def test_pages_and_answers_carry_security_headers(open_server: ServerProcess) -> None:
    for path in ("/", "/agent/keep-1", "/qa/keep-1", "/static/agent.js", "/v1/calls"):
        status, headers, _ = request(open_server, "GET", path)
        assert status == 200, path
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-eval" not in csp and "'unsafe-inline'" not in csp.split("style-src")[0]
        assert headers["x-frame-options"] == "SAMEORIGIN"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    # the pages' scripts are ES modules: a browser runs them only if served as JavaScript
    for path in ("/static/agent.js", "/static/events.js", "/static/agent/transcript.js"):
        status, headers, _ = request(open_server, "GET", path)
        assert status == 200 and headers["content-type"].startswith("text/javascript"), path
    status, _, health = request(open_server, "GET", "/healthz")
    assert (health["model"], health["final_model"]) == ("embedded:tiny.en", "embedded:base")
    status, headers, _ = request(open_server, "GET", "/healthz", host=REBOUND)
    assert status == 400 and headers["x-frame-options"] == "SAMEORIGIN"


def test_with_tokens_any_host_unless_a_list_is_set() -> None:
    token = "admin-token-cross-site-01"
    server = ServerProcess(env={"CALLCUE_ADMIN_TOKEN": token})
    try:
        status, _, _ = request(server, "GET", "/healthz", host="callcue.example.com")
        assert status == 200  # behind a proxy under its public name
    finally:
        server.stop()
    server = ServerProcess(
        env={"CALLCUE_ADMIN_TOKEN": token, "CALLCUE_ALLOWED_HOSTS": "callcue.example.com"}
    )
    try:
        assert request(server, "GET", "/healthz", host="callcue.example.com:443")[0] == 200
        status, _, body = request(server, "GET", "/healthz")  # 127.0.0.1 is not in the list
        assert status == 400 and body["error"] == "host_not_allowed"
    finally:
        server.stop()
