"""Webhooks: configuration errors, signatures, and a real server delivering to a receiver that
fails first, across a kill -9 and restart, then accepts: every delivery arrives, signed, with
the same id it was first tried with."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from audio.files import CallAudio, load_call_audio
from clients.native import stream_call
from live.webhooks import parse_webhooks, shown, sign, verify
from service.settings import Settings, SettingsError
from tests.conftest import AUDIO, fresh_postgres, postgres_url
from tests.servers import ServerProcess

PAIR = [AUDIO / "cs_aws_auto_repairs_40_caller.wav", AUDIO / "cs_aws_auto_repairs_40_agent.wav"]
SECRET = "whsec-0123456789abcdef"


def hook(**fields: Any) -> str:
    """CALLCUE_WEBHOOKS with one webhook: a good one, changed by `fields` (None: removed)."""
    item = {"url": "http://x", "secret": SECRET, "events": ["alert"], **fields}
    return json.dumps([{k: v for k, v in item.items() if v is not None}])


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{", "not JSON"),
        ('{"url": "x"}', "must be a JSON list"),
        (hook(url="ftp://x"), "[0].url: must be an http(s) URL"),
        (hook(secret="short"), "[0].secret: must be"),
        (hook(events=[]), "[0].events: must be"),
        (hook(events=["nope"]), "unknown 'nope'"),
        (hook(secret=None, secret_file="/nonexistent"), "[0].secret_file: cannot read"),
        (hook(x=1), "[0]: unknown key 'x'"),
        (hook(events=[["alert"]]), "[0].events: ['alert'] is not an event type"),
    ],
)
def test_bad_configuration_names_the_entry_and_field(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.load(env={"CALLCUE_WEBHOOKS": value})
    message = str(raised.value)
    assert message.startswith("CALLCUE_WEBHOOKS=(hidden)") and problem in message, message
    assert SECRET not in message  # the setting holds secrets: never echoed


def test_secret_from_a_file(tmp_path: Any) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    [hook] = parse_webhooks(
        json.dumps(
            [{"url": "https://crm.example/h", "secret_file": str(path), "events": ["alert"]}]
        )
    )
    assert hook.secret == SECRET and hook.events == {"alert"}


def test_logs_show_a_webhook_by_scheme_and_host_only() -> None:
    assert shown("https://user:pw@crm.example.com:8443/hooks/t0ken?k=1") == (
        "https://crm.example.com:8443"
    )


def test_signature_is_an_hmac_of_time_and_body() -> None:
    body = b'{"id":"d_1"}'
    now = int(time.time())
    header = sign(SECRET, body, now)
    assert header.startswith(f"t={now},v1=") and verify(SECRET, body, header)
    assert not verify(SECRET, body + b" ", header)
    assert not verify("another-secret-0123", body, header)
    assert not verify(SECRET, body, sign(SECRET, body, now - 3600))  # too old: a replay


class Receiver:
    """An HTTP endpoint on loopback that answers `status` and keeps every request."""

    def __init__(self) -> None:
        self.status = 500
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    status = outer.status
                    outer.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/callcue"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seen(self) -> list[tuple[dict[str, str], dict[str, Any], int]]:
        with self.lock:
            return [(h, json.loads(b), s) for h, b, s in self.requests]

    def wait(self, ready: Any, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready(self.seen()):
            assert time.monotonic() < deadline, [(b["type"], s) for _, b, s in self.seen()]
            time.sleep(0.1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def metric(server: ServerProcess, line: str) -> float:
    with urllib.request.urlopen(server.http + "/metrics", timeout=10) as response:
        for row in response.read().decode().splitlines():
            if row.startswith(line + " "):
                return float(row.split()[-1])
    return 0.0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_deliveries_survive_failures_and_a_restart(
    backend: str, receiver: Receiver, tmp_path: Any
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        base = postgres_url()
        if base is None:
            pytest.skip("no PostgreSQL: set CALLCUE_TEST_DATABASE_URL (.ci/run does)")
        url = fresh_postgres(base)
    events = ["call.started", "call.ended", "category.matched", "call.wrapup"]
    env = {
        "CALLCUE_DATABASE_URL": url,
        "CALLCUE_WEBHOOKS": json.dumps([{"url": receiver.url, "secret": SECRET, "events": events}]),
        "CALLCUE_WEBHOOK_RETRY_SECONDS": "0.2",
    }
    server = ServerProcess(env=env)
    try:
        pair = load_call_audio(PAIR)
        audio = CallAudio(pair.samples[: 20 * pair.sample_rate], pair.sample_rate)
        asyncio.run(
            stream_call(server.url, audio, ["customer", "agent"], realtime=False, call_id="wh-1")
        )
        # the receiver is down (500): each delivery is tried, and tried again
        receiver.wait(lambda seen: sum(b["type"] == "call.ended" for _, b, _ in seen) >= 2)
    finally:
        server.kill9()  # with deliveries pending
        server.stop()  # (closes its log pipe)
    failed = {b["id"]: b["type"] for _, b, status in receiver.seen() if status == 500}
    assert {"call.started", "call.ended", "category.matched"} <= set(failed.values())

    receiver.status = 200
    server = ServerProcess(env=env)  # the same store: the outbox is still there
    try:
        receiver.wait(lambda seen: set(failed) <= {b["id"] for _, b, s in seen if s == 200})
        delivered = [(h, b) for h, b, s in receiver.seen() if s == 200]
        assert len({b["id"] for _, b in delivered}) == len(failed)  # each id once accepted
        for headers, raw, _ in receiver.requests:  # every attempt signed, over the exact body
            assert verify(SECRET, raw, headers["Callcue-Signature"]), headers
            assert headers["Content-Type"] == "application/json"
        ended = next(b for _, b in delivered if b["type"] == "call.ended")
        assert ended["call_id"] == "wh-1" and ended["data"]["type"] == "call.ended"
        assert ended["created_at"] and ended["summary"]["utterances"] >= 1
        assert set(ended["analytics"]["talk_seconds"]) == {"customer", "agent"}
        assert "no_early_disclosure" in {c["name"] for c in ended["categories"]}
        assert ended["call"]["id"] == "wh-1"
        assert ended["scorecard"] and ended["score"] == ended["call"]["score"]
        assert ended["disposition"]["by"] == "predicted" and ended["disposition"]["note"]
        started = next(b for _, b in delivered if b["type"] == "call.started")
        assert "owner" not in started["data"]  # what screens see, not the credential digest
        assert metric(server, 'callcue_webhook_deliveries_total{outcome="delivered"}') >= len(
            failed
        )
        # the agent saves the wrap-up: the CRM hears that too
        predicted = next(b for _, b in delivered if b["type"] == "call.wrapup")["data"]
        save = {"disposition": predicted["disposition"], "note": "done", "by": "tester"}
        request = urllib.request.Request(
            server.http + "/v1/calls/wh-1/wrapup",
            data=json.dumps(save).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        receiver.wait(
            lambda seen: any(b["data"].get("by") == "tester" for _, b, s in seen if s == 200)
        )
        saved = next(b for _, b, _ in receiver.seen() if b["data"].get("by") == "tester")
        assert saved["type"] == "call.wrapup" and saved["data"]["note"] == "done"
    finally:
        server.stop()


def test_the_readme_verification_snippet_works() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = next(b for b in readme.split("```python\n")[1:] if "def verified" in b)
    scope: dict[str, Any] = {}
    exec(block.split("```")[0], scope)
    body = b'{"id":"d_1","type":"alert"}'
    header = sign(SECRET, body, int(time.time()))
    assert scope["verified"](SECRET, body, header)
    assert not scope["verified"](SECRET, body.replace(b"alert", b"other"), header)
