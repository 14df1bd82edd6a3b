"""What the Redis hub adds: an event published on node A reaching a screen's queue on node B,
against the same event reaching a screen's queue on A through the in-process hub.

Both paths carry the same load: `--calls` calls at once, each publishing `--rate` events a
second for `--seconds` (partials, and every eighth event a final with its timed words, as a
two-channel call makes them), one screen per call. Each event carries its publish time
(time.time()); the screen side notes when `Subscription.next()` hands it over. The websocket
send to the browser that follows is the same on both paths and is not measured.

- in-process: one process, one event loop, `EventHub` (the default, one node);
- Redis: node A is a child process (its hub publishes; the cluster, its observer, sends the
  events to Redis from its outbox task), node B is this process (it follows each call from
  Redis into its own hub, where the screens subscribe) — two processes on this machine, Redis on
  loopback (a private `redis-server` unless `--redis-url`).

    .venv/bin/python -m benchmarks.redis_hub --calls 1 20 100 --seconds 10 --save redis_hub

Writes benchmarks/results/NAME.json (the machine recorded) and prints a table. Nothing is
asserted: the numbers are what this machine measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from typing import Any

from assist.events import CallEnded, CallStarted, Event, TranscriptFinal, TranscriptPartial, Word
from benchmarks.common import percentile, write_result
from cluster.node import Cluster, ClusterOptions
from live.hub import EventHub, Subscription
from live.metrics import Metrics
from tests.servers import RedisProcess

WORDS = [
    "thanks",
    "for",
    "calling",
    "I",
    "see",
    "the",
    "charge",
    "on",
    "your",
    "card",
    "from",
    "the",
    "third",
    "of",
    "last",
    "month",
]


def make_event(call_id: str, n: int) -> Event:
    """Event `n` of a call, stamped with the time it is published (first word of `text`)."""
    now = f"{time.time():.6f}"
    if n % 8 == 7:
        words = tuple(Word(w, i * 0.3, i * 0.3 + 0.25, 0.9) for i, w in enumerate(WORDS))
        return TranscriptFinal(
            call_id=call_id,
            channel="customer" if n % 16 == 7 else "agent",
            utterance=n // 8,
            start=n * 0.1,
            end=n * 0.1 + 4.0,
            text=" ".join([now, *WORDS]),
            words=words,
            confidence=0.9,
        )
    return TranscriptPartial(
        call_id=call_id,
        channel="customer" if n % 2 else "agent",
        utterance=n // 8,
        start=n * 0.1,
        end=n * 0.1 + 1.0,
        text=" ".join([now, *WORDS[: 3 + n % 8]]),
        stable=" ".join(WORDS[:2]),
    )


async def publish_calls(hub: EventHub, call_ids: list[str], rate: float, seconds: float) -> int:
    """Every call publishes `rate` events a second, on a schedule (no drift); the count."""
    for call_id in call_ids:
        hub.open(call_id)
        hub.publish(CallStarted(call_id=call_id, channels=("customer", "agent")))
    start = time.monotonic()
    ticks = int(rate * seconds)
    for n in range(ticks):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        for call_id in call_ids:
            hub.publish(make_event(call_id, n))
    for call_id in call_ids:
        hub.publish(CallEnded(call_id=call_id, reason="stop", duration=seconds))
        hub.end(call_id)
    return ticks * len(call_ids)


async def screen(sub: Subscription, latencies: list[float]) -> None:
    while (event := await sub.next()) is not None:
        received = time.time()
        text = event.to_dict().get("text")
        if text:
            latencies.append(received - float(text.split(" ", 1)[0]))


async def in_process(calls: int, rate: float, seconds: float) -> list[float]:
    hub = EventHub(backlog=100_000)
    call_ids = [f"bench-{i}" for i in range(calls)]
    latencies: list[float] = []
    screens = []
    for call_id in call_ids:
        _, sub = hub.subscribe(call_id)
        screens.append(asyncio.create_task(screen(sub, latencies)))
    await publish_calls(hub, call_ids, rate, seconds)
    await asyncio.gather(*screens)
    return latencies


def options(url: str, prefix: str, node: str) -> ClusterOptions:
    return ClusterOptions(url=url, prefix=prefix, node_id=node, node_timeout=5.0)


async def over_redis(url: str, calls: int, rate: float, seconds: float) -> list[float]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    node_b = Cluster(options(url, prefix, "b"), Metrics(), backlog=100_000)
    node_b.attach(None, {})
    await node_b.start()
    call_ids = [f"bench-{i}" for i in range(calls)]
    latencies: list[float] = []
    screens = []
    try:
        for call_id in call_ids:  # screens on B wait for calls node A has not started yet
            assert await node_b.follow(call_id)
            _, sub = node_b.hub.subscribe(call_id)
            screens.append(asyncio.create_task(screen(sub, latencies)))
        node_a = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.redis_hub",
            "--role",
            "publisher",
            "--redis-url",
            url,
            "--prefix",
            prefix,
            "--calls",
            str(calls),
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
        )
        if await node_a.wait() != 0:
            raise RuntimeError("node A (the publisher process) failed")
        async with asyncio.timeout(30):
            await asyncio.gather(*screens)
    finally:
        await node_b.stop()
    return latencies


async def publisher(url: str, prefix: str, calls: int, rate: float, seconds: float) -> None:
    node_a = Cluster(options(url, prefix, "a"), Metrics(), backlog=100_000)
    node_a.attach(None, {})
    await node_a.start()
    await publish_calls(node_a.hub, [f"bench-{i}" for i in range(calls)], rate, seconds)
    if not await node_a.flush(grace=30):
        raise SystemExit("node A could not send its events to Redis")
    await node_a.stop()


def summary(latencies: list[float]) -> dict[str, Any]:
    ms = [x * 1000 for x in latencies]
    return {
        "events": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": round(max(ms), 3) if ms else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 20, 100])
    parser.add_argument("--rate", type=float, default=8.0, help="events a second per call")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--redis-url", default="", help="default: a private redis-server")
    parser.add_argument("--save", default="", help="write benchmarks/results/NAME.json")
    parser.add_argument("--role", default="bench", choices=["bench", "publisher"])
    parser.add_argument("--prefix", default="")
    args = parser.parse_args(argv)
    if args.role == "publisher":
        asyncio.run(publisher(args.redis_url, args.prefix, args.calls[0], args.rate, args.seconds))
        return 0
    redis = None if args.redis_url else RedisProcess()
    url = args.redis_url or (redis.url if redis else "")
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    rows = []
    load_before = round(os.getloadavg()[0], 2)
    try:
        for calls in args.calls:
            local = summary(asyncio.run(in_process(calls, args.rate, args.seconds)))
            remote = summary(asyncio.run(over_redis(url, calls, args.rate, args.seconds)))
            added = {
                q: round(remote[q] - local[q], 3)
                for q in ("p50_ms", "p95_ms", "p99_ms")
                if remote[q] is not None and local[q] is not None
            }
            rows.append(
                {
                    "calls": calls,
                    "events_per_second": calls * args.rate,
                    "in_process": local,
                    "redis": remote,
                    "added": added,
                }
            )
            print(
                f"{calls:4d} calls, {calls * args.rate:6.0f} events/s: in-process p50 "
                f"{local['p50_ms']:.2f} ms p95 {local['p95_ms']:.2f} ms | Redis p50 "
                f"{remote['p50_ms']:.2f} ms p95 {remote['p95_ms']:.2f} ms | added p50 "
                f"{added['p50_ms']:.2f} ms p95 {added['p95_ms']:.2f} ms",
                flush=True,
            )
    finally:
        if redis is not None:
            redis.stop()
    if args.save:
        path = write_result(
            args.save,
            {
                "workload": f"{args.rate:g} events/s per call (7 partials : 1 final with "
                f"{len(WORDS)} timed words), {args.seconds:g} s, one screen per call",
                "redis": " ".join(v for v in version if v.startswith(("v=", "Redis"))),
                "load_average_1m_before": load_before,  # the machine is shared
                "note": "each tick, every call publishes at once (a burst of N events), "
                "which is harder than calls spread over time, for both paths",
                "paths": {
                    "in_process": "EventHub.publish -> Subscription.next, one process",
                    "redis": "node A EventHub.publish -> cluster outbox XADD (background task) "
                    "-> node B XREAD (mirror) -> EventHub.relay -> Subscription.next; "
                    "two processes",
                },
                "results": rows,
            },
        )
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
