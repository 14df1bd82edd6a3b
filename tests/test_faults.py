"""Faults, each on real components: SIGTERM mid-call, Whisper raising on an utterance, and the
call store going away mid-call (SQLite locked by another process; PostgreSQL cut off by a
proxy) — each call goes on, is told what happened, and nothing a screen saw is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect

from audio.codec import AudioFormat
from audio.files import CallAudio, load_call_audio
from clients.native import stream_call
from live.session import CallSession, Services
from service.node import load_services
from service.settings import Settings
from store.calls import CallStore
from tests.conftest import AUDIO, fresh_postgres, postgres_url
from tests.servers import ServerProcess

CALLER = AUDIO / "cs_aws_auto_repairs_40_caller.wav"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def metric(server: ServerProcess, name: str) -> float:
    with urllib.request.urlopen(server.http + "/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def watch(server: ServerProcess, call_id: str, seen: list[dict[str, Any]]) -> None:
    """A screen on the call, until call.ended (or the server goes away)."""
    for _ in range(100):  # the call may not have started yet: the screen waits for it
        try:
            async with connect(server.url + f"/v1/calls/{call_id}/events") as screen:
                async for raw in screen:
                    seen.append(json.loads(raw))
                return
        except OSError:
            await asyncio.sleep(0.1)


async def wait_for_finals(seen: list[dict[str, Any]], count: int, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while sum(e["type"] == "transcript.final" for e in seen) < count:
        assert time.monotonic() < deadline, "no finals reached the screen"
        await asyncio.sleep(0.1)


async def run_call(
    services: Services, call_id: str, path: Path, seconds: float | None = None
) -> list[Any]:
    """Stream a recording (its first `seconds`) through an in-process call in 100 ms frames,
    as fast as it is read; the call's events."""
    audio = load_call_audio([path], 1)
    end = None if seconds is None else int(seconds * audio.sample_rate)
    pcm = audio.samples[:end, 0].astype("<i2").tobytes()
    fmt = AudioFormat("pcm16", audio.sample_rate, 1)
    session = CallSession(services, call_id, fmt, ("customer",))
    await session.start()
    step = audio.sample_rate // 5  # 100 ms of 16-bit samples
    for lo in range(0, len(pcm), step):
        await session.push(pcm[lo : lo + step])
        await asyncio.sleep(0)  # let the assist worker run between frames
    await session.finish("stop")
    feed = services.hub.feed(call_id)
    assert feed is not None
    return list(feed.history)


async def test_sigterm_ends_calls_cleanly(tmp_path: Path) -> None:
    """SIGTERM mid-call: the call's last finals and `call.ended` (reason shutdown) reach the
    client, which is closed with 1001; the store has every final; the process exits 0."""
    db = tmp_path / "store.db"
    server = ServerProcess(env={"CALLCUE_DATABASE_URL": f"sqlite:///{db}"})
    audio = load_call_audio([CALLER], 1)
    clip = CallAudio(audio.samples[: 90 * audio.sample_rate], audio.sample_rate)
    seen: list[dict[str, Any]] = []
    try:
        call = asyncio.ensure_future(
            stream_call(server.url, clip, ["customer"], speed=2.0, call_id="term-1")
        )
        screen = asyncio.ensure_future(watch(server, "term-1", seen))
        await wait_for_finals(seen, 2)
        server.proc.send_signal(signal.SIGTERM)
        result = await asyncio.wait_for(call, 60)
        await asyncio.wait_for(screen, 30)
        code = await asyncio.to_thread(server.proc.wait, 60)
    finally:
        server.stop()
    assert code == 0, "\n".join(server.log[-20:])
    ended = [e for e in result.events if e["type"] == "call.ended"]
    assert ended and ended[0]["reason"] == "shutdown"
    assert result.close_code == 1001
    assert seen[-1]["type"] == "call.ended"
    store = CallStore(f"sqlite:///{db}", recover=False)
    try:
        assert store.get_call("term-1")["outcome"] == "shutdown"  # type: ignore[index]
        stored = {(u["utterance"], u["text"]) for u in store.utterances("term-1")}
        sent = {
            (e["utterance"], e["text"]) for e in result.events if e["type"] == "transcript.final"
        }
        assert sent and sent == stored
    finally:
        store.close()
    assert any("ending 1 call(s) in progress" in line for line in server.log)


async def test_recognition_failure_is_reported_and_the_call_goes_on() -> None:
    """Whisper raises on the first final: an `error` event names the utterance, the metric
    counts it, and the utterances after it are transcribed as usual."""
    settings = Settings.load(env={"CALLCUE_ASSIST": "false"})
    services = load_services(settings, store=False)
    real = services.recognition.final_engine.decode
    failed: list[int] = []

    def flaky(audio: np.ndarray, **kwargs: Any) -> Any:
        if kwargs.get("final") and not failed:
            failed.append(len(audio))
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(audio, **kwargs)

    services.recognition.final_engine.decode = flaky  # type: ignore[method-assign]
    try:
        events = await run_call(services, "flaky-1", AUDIO / "wb_jfk_inaugural_1961.flac")
    finally:
        services.close()
    assert failed
    errors = [e for e in events if e.type == "error"]
    assert len(errors) == 1 and errors[0].code == "recognition_failed"  # type: ignore[attr-defined]
    assert "customer" in errors[0].message  # type: ignore[attr-defined]
    after = [e for e in events[events.index(errors[0]) :] if e.type == "transcript.final"]
    assert after, "the call stopped being transcribed after the failure"
    assert services.metrics.recognition_errors.value("final") == 1
    assert events[-1].type == "call.ended"


class TcpProxy:
    """Loopback proxy to PostgreSQL that a test can cut (connections dropped, port closed)
    and restore on the same port: a database that goes away and comes back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._flowing = threading.Event()  # cleared: connections stay open, nothing passes
        self._flowing.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        assert self._listener is not None
        with contextlib.suppress(OSError):  # wakes the accept() thread, which holds the port
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def stall(self) -> None:
        """Keep every connection open but forward nothing (a database that stops answering
        without closing anything: a network stall, a lock wait)."""
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class FaultyStore:
    """The call store of one backend, which a test can take away mid-call and give back:
    PostgreSQL behind a `TcpProxy` (cut: connections dropped; stalled: kept open, nothing
    forwarded), or a SQLite file locked by another process's transaction (either way)."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.proxy: TcpProxy | None = None
        self._locker: sqlite3.Connection | None = None
        self._path = tmp_path / "store.db"
        self._cut = False
        if kind == "sqlite":
            self.url = f"sqlite:///{self._path}"
            return
        pg = postgres_url()
        if pg is None:
            pytest.skip("no PostgreSQL: set CALLCUE_TEST_DATABASE_URL (.ci/run does)")
        fresh_postgres(pg)
        host_port = pg.split("@", 1)[1].split("/", 1)[0]
        host, _, port = host_port.partition(":")
        self.proxy = TcpProxy((host, int(port or 5432)))
        self.url = pg.replace(f"@{host_port}/", f"@127.0.0.1:{self.proxy.port}/")

    def take_away(self, *, stall: bool) -> None:
        if self.proxy is None:
            self._locker = sqlite3.connect(str(self._path), isolation_level=None)
            self._locker.execute("BEGIN EXCLUSIVE")
        elif stall:
            self.proxy.stall()
        else:
            self.proxy.cut()
            self._cut = True

    def give_back(self) -> None:
        """The database answers again (does nothing if it already does)."""
        if self._locker is not None:
            self._locker.execute("COMMIT")
            self._locker.close()
            self._locker = None
        if self.proxy is not None:
            self.proxy.flow()
            if self._cut:
                self.proxy.restore()
                self._cut = False

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.cut()


def assert_every_final_stored(seen: list[dict[str, Any]], stored: Any, result: Any) -> None:
    """What the screen saw as finals is what the store has, and the call ended cleanly."""
    finals = [e for e in seen if e["type"] == "transcript.final"]
    utterances = stored["utterances"] if isinstance(stored, dict) else stored
    assert {(u["utterance"], u["text"]) for u in utterances} == {
        (e["utterance"], e["text"]) for e in finals
    }
    assert [e["type"] for e in result.events][-1] == "stopped"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_store_outage_buffers_and_writes_later(kind: str, tmp_path: Path) -> None:
    store = FaultyStore(kind, tmp_path)
    server = ServerProcess(env={"CALLCUE_DATABASE_URL": store.url})
    audio = load_call_audio([CALLER], 1)
    clip = CallAudio(audio.samples[: 70 * audio.sample_rate], audio.sample_rate)
    seen: list[dict[str, Any]] = []
    health: dict[str, Any] = {}
    try:
        call = asyncio.ensure_future(
            stream_call(server.url, clip, ["customer"], speed=2.0, call_id="outage-1")
        )
        screen = asyncio.ensure_future(watch(server, "outage-1", seen))
        await wait_for_finals(seen, 1)
        # the store goes away for ~10 s while the call goes on
        store.take_away(stall=False)
        finals_before = sum(e["type"] == "transcript.final" for e in seen)
        await wait_for_finals(seen, finals_before + 1)  # a final published during the outage
        await asyncio.sleep(1.0)
        health = await asyncio.to_thread(get_json, server.http + "/healthz")
        await asyncio.sleep(max(0.0, 6.0))
        store.give_back()
        result = await asyncio.wait_for(call, 120)
        await asyncio.wait_for(screen, 30)
        assert health["store"]["status"] == "unreachable" and health["store"]["buffered"] > 0
        stored = await asyncio.to_thread(
            get_json, server.http + "/v1/calls/outage-1/transcript?format=json"
        )
        errors, dropped = (
            metric(server, "callcue_store_errors_total"),
            metric(server, "callcue_store_dropped_total"),
        )
        healthy = await asyncio.to_thread(get_json, server.http + "/healthz")
    finally:
        store.give_back()
        server.stop()
        store.close()
    assert errors >= 1 and dropped == 0
    assert healthy["store"] == {"status": "ok", "buffered": 0, "dropped": 0, "last_error": ""}
    assert_every_final_stored(seen, stored, result)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_stalled_database_stalls_no_call(kind: str, tmp_path: Path) -> None:
    """The database stops answering mid-call without closing anything: PostgreSQL behind a
    proxy that forwards nothing for 15 s, or a SQLite file locked by another process. Writes
    were made on the event loop: every call's audio, partials and finals stopped meanwhile.
    Now screens keep getting partials and finals during the stall, and every final is stored
    once the database answers again."""
    store = FaultyStore(kind, tmp_path)
    server = ServerProcess(env={"CALLCUE_DATABASE_URL": store.url})
    audio = load_call_audio([CALLER], 1)
    clip = CallAudio(audio.samples[: 70 * audio.sample_rate], audio.sample_rate)
    seen: list[dict[str, Any]] = []
    try:
        call = asyncio.ensure_future(
            stream_call(server.url, clip, ["customer"], speed=2.0, call_id="stall-1")
        )
        screen = asyncio.ensure_future(watch(server, "stall-1", seen))
        await wait_for_finals(seen, 1)
        store.take_away(stall=True)
        at_stall = len(seen)
        # Screens go on during the stall: a final and partials arrive while nothing is
        # written, and health says the store is unreachable once a write has waited past its
        # bound. Waited for together (a final may come at once, before the bound has passed).
        deadline = time.monotonic() + 14
        while True:
            during = seen[at_stall:]
            if (
                sum(e["type"] == "transcript.final" for e in during) >= 1
                and sum(e["type"] == "transcript.partial" for e in during) >= 3
            ):
                health = await asyncio.to_thread(get_json, server.http + "/healthz")
                if health["store"]["status"] == "unreachable":
                    break
            assert time.monotonic() < deadline, "screens or health stalled with the store"
            await asyncio.sleep(0.1)
        store.give_back()
        result = await asyncio.wait_for(call, 120)
        await asyncio.wait_for(screen, 30)
        stored = await asyncio.to_thread(
            get_json, server.http + "/v1/calls/stall-1/transcript?format=json"
        )
    finally:
        store.give_back()
        server.stop()
        store.close()
    assert sum(e["type"] == "transcript.partial" for e in during) >= 3
    assert health["store"]["status"] == "unreachable"  # it said so while it waited
    assert_every_final_stored(seen, stored, result)


async def test_assist_failure_is_reported_and_transcripts_go_on() -> None:
    """The assist models raise on one batch: an `error` event `assist_failed`, the metric, and
    the transcript and later assist events carry on."""
    settings = Settings.load(env={"CALLCUE_CUSTOMERS": "none"})
    services = load_services(settings, store=False)
    assert services.assist is not None
    real = services.assist.analyze
    failed: list[int] = []

    def flaky(requests: Any) -> Any:
        if not failed:
            failed.append(len(requests))
            raise MemoryError("simulated")
        return real(requests)

    services.assist.analyze = flaky  # type: ignore[method-assign]
    try:
        events = await run_call(services, "assist-fail-1", CALLER, seconds=40)
    finally:
        services.close()
    errors = [e for e in events if e.type == "error"]
    assert failed and len(errors) == failed[0]
    assert all(e.code == "assist_failed" for e in errors)  # type: ignore[attr-defined]
    assert services.metrics.assist_errors.value() == 1
    later = events[events.index(errors[-1]) :]
    assert any(e.type == "transcript.final" for e in later)
    assert any(e.type == "sentiment" for e in later)
    assert events[-1].type == "call.ended"
