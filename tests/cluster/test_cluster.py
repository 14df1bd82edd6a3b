"""Nodes of one service on a real Redis, in one process: a call published on one node is
watched on another (history, then live, no gap, no duplicate), a node that stops beating has
its calls ended and stored as interrupted, one call id runs on one node, and a Redis outage
is ridden out (events buffered in order, sent when it is back)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from assist.events import CallEnded, CallStarted, Event, TranscriptFinal, TranscriptPartial
from cluster.node import Cluster, ClusterOptions, ClusterUnavailable
from live.hub import Subscription
from live.metrics import Metrics
from store.calls import CallStore
from tests.servers import RedisProcess, free_port


def partial(call_id: str, i: int) -> TranscriptPartial:
    return TranscriptPartial(
        call_id=call_id, channel="customer", utterance=1, start=0, end=i, text=f"word {i}"
    )


def final(call_id: str, i: int) -> TranscriptFinal:
    return TranscriptFinal(
        call_id=call_id, channel="customer", utterance=i, start=i, end=i + 1, text=f"final {i}"
    )


class Node:
    """A cluster member as the server runs it, minus the models: its hub publishes and the
    store writes each event, in that order (as CallSession.publish does)."""

    def __init__(self, cluster: Cluster, store: CallStore | None) -> None:
        self.cluster = cluster
        self.store = store
        self.sessions: dict[str, Any] = {}
        cluster.attach(store, self.sessions)

    def publish(self, event: Event, to_redis: bool = True) -> Event:
        if to_redis:
            stamped = self.cluster.hub.publish(event)
        else:  # the node died before this event left its outbox
            stamped = self.cluster.hub.publish(event)
            self.cluster.outbox.queue.pop()
        if self.store is not None:
            self.store.record(stamped)
        return stamped


@pytest.fixture
async def make_node(redis_url: str, redis_prefix: str) -> AsyncIterator[Callable[..., Any]]:
    started: list[Cluster] = []

    async def make(
        name: str, store: CallStore | None = None, node_timeout: float = 5.0, url: str = ""
    ) -> Node:
        options = ClusterOptions(
            url=url or redis_url, prefix=redis_prefix, node_id=name, node_timeout=node_timeout
        )
        cluster = Cluster(options, Metrics())
        node = Node(cluster, store)
        await cluster.start()
        started.append(cluster)
        return node

    yield make
    for cluster in started:
        await cluster.stop(grace=1.0)


async def drain(sub: Subscription, limit: float = 10.0) -> list[Event]:
    got = []
    async with asyncio.timeout(limit):
        while (event := await sub.next()) is not None:
            got.append(event)
    return got


async def test_other_node_gets_history_then_live_in_order_without_duplicate(
    make_node: Callable[..., Any],
) -> None:
    a, b = await make_node("a"), await make_node("b")
    a.cluster.hub.open("c1")
    sent = [a.publish(CallStarted(call_id="c1", channels=("customer",)))]
    for i in range(5):
        sent.append(a.publish(partial("c1", i)))
    assert await a.cluster.flush()
    assert await b.cluster.follow("c1")
    backlog, sub = b.cluster.hub.subscribe("c1")  # late joiner: history...
    for i in range(5, 9):
        sent.append(a.publish(partial("c1", i)))  # ...then live
    sent.append(a.publish(final("c1", 1)))
    sent.append(a.publish(CallEnded(call_id="c1", reason="stop", duration=9.0)))
    a.cluster.hub.end("c1")
    live = await drain(sub)
    seen = backlog + live
    # all of utterance 1's partials but the newest were replaced before B's screen joined:
    # the late joiner gets that newest one (as it would on A), then everything live
    assert [e.seq for e in seen] == [1, 6, 7, 8, 9, 10, 11, 12]
    by_seq = {e.seq: e.to_json() for e in sent}
    assert [e.to_json() for e in seen] == [by_seq[e.seq] for e in seen]  # byte for byte
    assert [e.seq for e in a.cluster.hub.subscribe("c1")[0]] == [1, 11, 12]  # A: the same rule
    # a screen that reconnects to B with ?after_seq=N resumes from N (the partials the final
    # replaced are gone: it gets the final)
    rest, again = b.cluster.hub.subscribe("c1", after_seq=7)
    assert [e.seq for e in rest] == [11, 12] and await again.next() is None


async def test_screen_waiting_for_a_call_that_starts_on_another_node(
    make_node: Callable[..., Any],
) -> None:
    a, b = await make_node("a"), await make_node("b")
    assert await b.cluster.follow("c2")  # nothing anywhere yet: wait for it
    backlog, sub = b.cluster.hub.subscribe("c2")
    assert backlog == []
    a.cluster.hub.open("c2")
    a.publish(CallStarted(call_id="c2", channels=("customer",)))
    a.publish(final("c2", 1))
    a.publish(CallEnded(call_id="c2", reason="stop", duration=1.0))
    a.cluster.hub.end("c2")
    got = await drain(sub)
    assert [json.loads(e.to_json())["type"] for e in got] == [
        "call.started",
        "transcript.final",
        "call.ended",
    ]


class DownStore:
    """A call store that cannot be reached (its database is down)."""

    def get_call(self, call_id: str) -> None:
        raise ConnectionError("could not connect to the database")


async def test_following_with_the_store_down_says_so_instead_of_raising(
    make_node: Callable[..., Any],
) -> None:
    """A call not on Redis, and the store that would say whether it ended cannot be read:
    `follow` answers False (the screen then reads the store itself and tells its user it is
    down) instead of failing the screen's request before its websocket opens."""
    b = await make_node("b", DownStore())
    assert await b.cluster.follow("c-down") is False
    assert b.cluster.hub.feed("c-down") is None


async def test_registry_lists_every_nodes_calls_and_one_node_holds_a_call(
    make_node: Callable[..., Any],
) -> None:
    a, b = await make_node("a"), await make_node("b")
    assert await a.cluster.claim("c3") is None
    a.cluster.hub.open("c3")
    a.publish(CallStarted(call_id="c3", channels=("customer",)))
    assert await a.cluster.flush()
    refusal = await b.cluster.claim("c3")
    assert refusal is not None and "node a" in refusal
    calls = await b.cluster.live_calls()
    assert calls is not None and [(c["call_id"], c["node"]) for c in calls] == [("c3", "a")]
    a.publish(CallEnded(call_id="c3", reason="stop", duration=1.0))
    a.cluster.hub.end("c3")
    assert await a.cluster.flush()
    assert await b.cluster.live_calls() == []
    assert await b.cluster.claim("c3") is None  # ended: another node may take the id


async def test_failed_node_calls_are_ended_everywhere_and_stored_interrupted(
    make_node: Callable[..., Any], tmp_path: Path
) -> None:
    store = CallStore(f"sqlite:///{tmp_path}/store.db", recover=False)
    a = await make_node("a", store, node_timeout=1.0)
    b = await make_node("b", store, node_timeout=1.0)
    c = await make_node("c", store, node_timeout=1.0)  # b and c both watch for failures
    assert await a.cluster.claim("c4") is None
    a.cluster.hub.open("c4")
    a.publish(CallStarted(call_id="c4", channels=("customer",)))
    a.publish(final("c4", 1))
    assert await a.cluster.flush()
    assert await b.cluster.follow("c4")
    backlog, sub = b.cluster.hub.subscribe("c4")
    a.publish(partial("c4", 2))
    assert await a.cluster.flush()
    a.publish(final("c4", 2), to_redis=False)  # stored, but A died before sending it
    for task in a.cluster._tasks:  # A dies: no more heartbeats, nothing leaves it
        task.cancel()
    a.cluster._tasks.clear()
    a.cluster.outbox.queue.clear()
    seen = backlog + await drain(sub, limit=15.0)
    assert [e.seq for e in seen] == [1, 2, 3, 4, 5]  # the unsent final: from the store
    ended = json.loads(seen[-1].to_json())
    assert ended["type"] == "call.ended" and ended["reason"] == "node_failed"
    call = store.get_call("c4")
    assert call is not None and call["outcome"] == "interrupted"
    assert [e["seq"] for e in store.events("c4")] == [1, 2, 4, 5]  # partials are not stored
    assert await b.cluster.live_calls() == []
    await asyncio.sleep(1.0)  # a few more reaper rounds: one node ended it, once
    assert b.cluster.stats.reaped + c.cluster.stats.reaped == 1
    stream = await b.cluster.redis.xrange(b.cluster.link.events_key("c4"))
    assert [json.loads(f["e"])["type"] for _, f in stream].count("call.ended") == 1
    store.close()


async def test_a_gap_on_redis_is_filled_from_the_store(
    make_node: Callable[..., Any], tmp_path: Path
) -> None:
    store = CallStore(f"sqlite:///{tmp_path}/store.db", recover=False)
    a, b = await make_node("a", store), await make_node("b", store)
    a.cluster.hub.open("c6")
    a.publish(CallStarted(call_id="c6", channels=("customer",)))
    assert await a.cluster.flush()
    assert await b.cluster.follow("c6")
    _, sub = b.cluster.hub.subscribe("c6")
    a.publish(final("c6", 1), to_redis=False)  # e.g. dropped past CALLCUE_REDIS_BUFFER
    a.publish(partial("c6", 2), to_redis=False)  # a partial: not stored, so not refilled
    a.publish(final("c6", 2))
    a.publish(CallEnded(call_id="c6", reason="stop", duration=3.0))
    a.cluster.hub.end("c6")
    got = await drain(sub)
    assert [e.seq for e in got] == [2, 4, 5]
    assert json.loads(got[0].to_json())["text"] == "final 1"
    store.close()


async def test_redis_outage_mid_call_buffers_in_order_then_sends(
    make_node: Callable[..., Any],
) -> None:
    redis = RedisProcess()
    try:
        a = await make_node("a", url=redis.url)
        a.cluster.hub.open("c5")
        a.publish(CallStarted(call_id="c5", channels=("customer",)))
        assert await a.cluster.flush()
        redis.stop()
        for i in range(20):  # the call goes on; its events wait
            a.publish(partial("c5", i))
        await asyncio.sleep(0.5)
        health = a.cluster.health()
        assert health["redis"] == "unreachable" and health["buffered"] == 20
        assert a.cluster.stats.errors >= 1
        redis = RedisProcess(redis.port)  # back (empty, as a restarted cache)
        assert await a.cluster.flush(grace=10.0)
        entries = await a.cluster.redis.xrange(a.cluster.link.events_key("c5"))
        assert [int(i.split("-")[0]) for i, _ in entries] == list(range(2, 22))
        assert a.cluster.health()["redis"] == "ok"
        assert "callcue_redis_errors_total" in a.cluster.metrics.render()
    finally:
        redis.stop()


def test_unreachable_redis_is_named_at_start() -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    with pytest.raises(ClusterUnavailable) as raised:
        Cluster.check(url)
    message = str(raised.value)
    assert "cannot reach Redis at redis://:***@127.0.0.1" in message and "secret" not in message


async def test_one_node_follows_many_calls_on_few_connections(
    make_node: Callable[..., Any],
) -> None:
    """Screens for 150 calls of another node: one shared read, not a connection per call."""
    a, b = await make_node("a"), await make_node("b")
    calls = [f"m{i}" for i in range(150)]
    subs = []
    for call_id in calls:
        assert await b.cluster.follow(call_id)
        subs.append(b.cluster.hub.subscribe(call_id)[1])
    for call_id in calls:
        a.cluster.hub.open(call_id)
        a.publish(CallStarted(call_id=call_id, channels=("customer",)))
        a.publish(final(call_id, 1))
        a.publish(CallEnded(call_id=call_id, reason="stop", duration=1.0))
        a.cluster.hub.end(call_id)
    got = await asyncio.gather(*(drain(sub, limit=30.0) for sub in subs))
    assert all([e.seq for e in events] == [1, 2, 3] for events in got)
    assert b.cluster.health()["mirrored_calls"] == 0  # each ended: nothing left to follow


async def test_feedback_from_a_screen_on_another_node_reaches_the_call(
    make_node: Callable[..., Any],
) -> None:
    a, b = await make_node("a"), await make_node("b")

    class Session:  # the one method of CallSession the node calls with a screen's feedback
        def __init__(self) -> None:
            self.got: list[dict[str, Any]] = []

        def feedback(self, message: dict[str, Any]) -> None:
            if "id" not in message:
                raise ValueError("feedback needs 'id'")
            self.got.append(message)

    session = Session()
    a.sessions["c7"] = session
    assert await a.cluster.claim("c7") is None
    message = {"type": "feedback", "id": "s1", "action": "accepted"}
    assert await b.cluster.forward_feedback("c7", message) is None
    assert session.got == [message]
    bad = await b.cluster.forward_feedback("c7", {"type": "feedback"})
    assert bad == "feedback needs 'id'"  # the answer of the node that runs the call
    gone = await b.cluster.forward_feedback("nope", message)
    assert gone is not None and "not live" in gone


async def test_a_signature_nonce_is_accepted_once_across_the_nodes(
    make_node: Callable[..., Any],
) -> None:
    """An AudioHook signature replayed on another node within its 300 s is refused there."""
    import time

    a, b = await make_node("a"), await make_node("b")
    until = time.time() + 300
    assert await a.cluster.claim_nonce("nonce-1", until)
    assert not await b.cluster.claim_nonce("nonce-1", until)  # the replay, on another node
    assert not await a.cluster.claim_nonce("nonce-1", until)
    assert await b.cluster.claim_nonce("nonce-2", until)
