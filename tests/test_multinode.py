"""Two callcue server processes as one service, on a real Redis and a real PostgreSQL (both on
loopback): a call streamed into node A is watched live from node B (early and late screens,
a reconnect), with every event the ingest client got, no gap, no duplicate; the wallboard of
B lists A's call; a node killed with SIGKILL is noticed, its call ended on B's screens and
stored as interrupted, and B goes on serving. Without PostgreSQL these are skipped (.ci/run
starts one); without Redis too (.ci/run installs redis-server, the fixture starts it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import websockets

from audio.files import CallAudio, load_call_audio
from clients.native import stream_call
from store.calls import CallStore
from tests.conftest import AUDIO, assert_late_view, fresh_postgres, postgres_url
from tests.servers import ROOT, ServerProcess, free_port

PAIR = [AUDIO / "cs_aws_auto_repairs_40_caller.wav", AUDIO / "cs_aws_auto_repairs_40_agent.wav"]
NODE_TIMEOUT = 2.0  # seconds without a heartbeat before a node counts as failed


def node_env(database: str, redis: str, prefix: str, name: str) -> dict[str, str]:
    return {
        "CALLCUE_DATABASE_URL": database,
        "CALLCUE_REDIS_URL": redis,
        "CALLCUE_REDIS_PREFIX": prefix,
        "CALLCUE_NODE_ID": name,
        "CALLCUE_NODE_TIMEOUT": str(NODE_TIMEOUT),
    }


@dataclass
class Service:
    a: ServerProcess
    b: ServerProcess
    database: str
    redis: str
    prefix: str


@pytest.fixture(scope="module")
def nodes(redis_url: str) -> Iterator[Service]:
    """Nodes A and B sharing a fresh PostgreSQL database and a Redis key prefix."""
    database = postgres_url()
    if database is None:
        pytest.skip("no PostgreSQL: set CALLCUE_TEST_DATABASE_URL (.ci/run does)")
    fresh_postgres(database)
    prefix = f"mn{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(2) as pool:  # both load their models at once
        starting = [
            pool.submit(ServerProcess, env=node_env(database, redis_url, prefix, name))
            for name in ("node-a", "node-b")
        ]
    started = [f.result() for f in starting if f.exception() is None]
    if len(started) < 2:  # one did not start: stop the other, report why
        for server in started:
            server.stop()
        next(f for f in starting if f.exception() is not None).result()
    a, b = started
    yield Service(a, b, database, redis_url, prefix)
    a.stop()
    b.stop()


def get_json(server: ServerProcess, path: str) -> Any:
    with urllib.request.urlopen(server.http + path, timeout=30) as response:
        return json.load(response)


async def watch(
    server: ServerProcess, call_id: str, after: int = 0, opened: asyncio.Event | None = None
) -> list[dict[str, Any]]:
    """Everything a screen on `server` receives for the call until it is closed, each event
    with `_at` (time.time() of arrival). `opened` is set once the websocket is open."""
    got = []
    uri = f"{server.url}/v1/calls/{call_id}/events?after_seq={after}"
    async with asyncio.timeout(180), websockets.connect(uri, max_size=None) as ws:
        if opened is not None:
            opened.set()
        async for raw in ws:
            got.append({**json.loads(raw), "_at": time.time()})
    return got


def plain(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "_at"} for e in events]


def first_audio(seconds: int) -> CallAudio:
    pair = load_call_audio(PAIR)
    return CallAudio(pair.samples[: seconds * pair.sample_rate], pair.sample_rate)


async def test_call_on_node_a_watched_live_from_node_b(nodes: Service) -> None:
    a, b = nodes.a, nodes.b
    opened = asyncio.Event()
    early = asyncio.ensure_future(watch(b, "mn-1", opened=opened))  # waits on B for the call
    # B follows the call and subscribes before it accepts the websocket: once it is open,
    # the screen misses nothing of the call
    await asyncio.wait_for(opened.wait(), 30)
    call = asyncio.ensure_future(
        stream_call(a.url, first_audio(30), ["customer", "agent"], call_id="mn-1", speed=2.0)
    )
    wallboard: list[dict[str, Any]] = []
    while not call.done():  # B's wallboard lists A's call
        await asyncio.sleep(0.2)
        wallboard = get_json(b, "/v1/calls/live")["calls"]
        if any(c["call_id"] == "mn-1" for c in wallboard):
            break
    assert [(c["call_id"], c["node"]) for c in wallboard] == [("mn-1", "node-a")]
    await asyncio.sleep(6.0)  # the call well under way: a late screen on B
    late = asyncio.ensure_future(watch(b, "mn-1"))
    result = await call
    seen_early, seen_late = await early, await late
    sent = [e for e in result.events if "seq" in e]  # what node A sent its own client
    assert [e["seq"] for e in sent] == list(range(1, len(sent) + 1))
    assert sum(e["type"] == "transcript.final" for e in sent) >= 3
    # B's screens got the same events, byte for byte as JSON values: the early one every
    # event, no gap, no duplicate; the late one the call so far as A's hub keeps it
    assert plain(seen_early) == sent
    assert_late_view(plain(seen_late), sent)  # the newest partial of each utterance
    # live, not replayed at the end: the first final was on B's screen before the last audio
    # left the client
    first_final = next(e for e in seen_early if e["type"] == "transcript.final")
    assert first_final["_at"] < result.sent[-1][1]
    # a screen that reconnects to B resumes after the last seq it had
    resumed = plain(await watch(b, "mn-1", after=5))
    assert_late_view(resumed, [e for e in sent if e["seq"] > 5])
    assert resumed[-1]["type"] == "call.ended"
    assert get_json(b, "/v1/calls/live")["calls"] == []
    assert get_json(b, "/v1/calls/mn-1")["outcome"] == "stop"  # the shared store


def test_a_worker_process_does_recognition_for_a_node(nodes: Service) -> None:
    """Node C runs no Whisper decode itself (CALLCUE_RECOGNITION=remote): a `callcue worker`
    process does them, taking the jobs from Redis."""
    flags = ["--redis-url", nodes.redis, "--redis-prefix", nodes.prefix, "--log-level", "debug"]
    worker = subprocess.Popen(
        [sys.executable, "cli.py", "worker", *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    env = node_env(nodes.database, nodes.redis, nodes.prefix, "node-c")
    node = ServerProcess(env={**env, "CALLCUE_RECOGNITION": "remote"})
    try:
        audio = load_call_audio([AUDIO / "wb_jfk_inaugural_1961.flac"], 1)
        result = asyncio.run(
            stream_call(node.url, audio, ["customer"], realtime=False, call_id="mn-w")
        )
        finals = [e for e in result.events if e["type"] == "transcript.final"]
        heard = set(re.findall(r"[a-z']+", " ".join(f["text"] for f in finals).lower()))
        reference = re.findall(
            r"[a-z']+", (AUDIO / "wb_jfk_inaugural_1961.txt").read_text().lower()
        )
        assert sum(word in heard for word in reference) >= 0.8 * len(reference)
        metrics = urllib.request.urlopen(node.http + "/metrics", timeout=30).read().decode()
        assert 'callcue_decode_seconds_count{kind="final"}' in metrics  # decodes came back
        assert "callcue_real_time_factor 0\n" in metrics  # none ran in the node
    finally:
        node.stop()
        worker.terminate()
        log, _ = worker.communicate(timeout=30)
    assert "final of mn-w/customer" in log  # the worker decoded it


async def test_killed_node_is_noticed_and_its_call_marked(nodes: Service) -> None:
    a, b, database = nodes.a, nodes.b, nodes.database
    call = asyncio.ensure_future(
        stream_call(a.url, first_audio(60), ["customer", "agent"], call_id="mn-2", speed=2.0)
    )
    seen: list[dict[str, Any]] = []
    killed_at = 0.0
    uri = f"{b.url}/v1/calls/mn-2/events"
    async with asyncio.timeout(120), websockets.connect(uri, max_size=None) as screen:
        async for raw in screen:  # until B closes it (a node that never noticed: TimeoutError)
            seen.append({**json.loads(raw), "_at": time.time()})
            finals = sum(e["type"] == "transcript.final" for e in seen)
            if finals == 2 and not killed_at:
                a.kill9()  # node A vanishes mid-call
                killed_at = time.time()
    with contextlib.suppress(ConnectionError, OSError, websockets.ConnectionClosed):
        await call  # the node vanished under the client: it may raise
    ended = seen[-1]
    assert ended["type"] == "call.ended" and ended["reason"] == "node_failed"
    # noticed within the heartbeat timeout plus a few reaper rounds (a loose bound)
    assert ended["_at"] - killed_at < NODE_TIMEOUT + 8.0
    seqs = [e["seq"] for e in seen]
    assert seqs == sorted(set(seqs))  # in order, no duplicate
    # the store: interrupted, and every stored event is what B's screen was shown
    call_row = get_json(b, "/v1/calls/mn-2")
    assert call_row["outcome"] == "interrupted"
    store = CallStore(database, recover=False)
    try:
        stored = store.events("mn-2")
    finally:
        store.close()
    by_seq = {e["seq"]: e for e in plain(seen)}
    assert stored and all(by_seq.get(e["seq"]) == e for e in stored)
    assert get_json(b, "/v1/calls/live")["calls"] == []
    # B goes on serving: a new call, streamed into B and watched there
    short = load_call_audio([AUDIO / "ls_test-clean_2830-3980-0043.wav"], 1)
    result = await stream_call(b.url, short, ["customer"], realtime=False, call_id="mn-3")
    assert result.events[-1]["type"] == "stopped"
    assert next(e for e in result.events if e["type"] == "call.ended")["reason"] == "stop"


def test_a_node_without_redis_or_a_shared_store_refuses_to_start() -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(RuntimeError) as raised:
        ServerProcess(
            env={
                "CALLCUE_REDIS_URL": unreachable,
                "CALLCUE_DATABASE_URL": "postgresql://callcue:x@127.0.0.1:1/none",
            },
            timeout=60,
        )
    assert f"cannot reach Redis at {unreachable} (CALLCUE_REDIS_URL)" in str(raised.value)
    with pytest.raises(RuntimeError) as raised:
        ServerProcess(env={"CALLCUE_REDIS_URL": unreachable}, timeout=60)  # SQLite store
    assert "set CALLCUE_DATABASE_URL to postgresql://" in str(raised.value)
