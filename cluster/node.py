"""Several callcue nodes as one service: events, call registry and node failure on Redis.

Set CALLCUE_REDIS_URL (and a PostgreSQL store every node shares) and each node:

- publishes every event of the calls it runs to its own screens at once, as alone, and to a
  Redis Stream per call, in order, from a background task: the call never waits for Redis
  (`outbox.py`);
- keeps the registry of live calls and its heartbeat, and reaps the calls of nodes whose
  heartbeat expired (`registry.py`);
- serves a screen of a call another node runs by mirroring that call's stream into its own
  hub (`mirrors.py`), and hands feedback from such a screen to the node that runs the call
  (`inbox.py`).

`Cluster` wires these on one Redis connection (`link.py`) and is the hub's observer: an event
of a call run here goes to Redis as it goes to this node's screens.

Redis lost mid-call: calls go on and their own node's screens are served; events wait in
memory, in order (`CALLCUE_REDIS_BUFFER`), and are sent when Redis is back; errors are logged
and counted (`callcue_redis_errors_total`), `/healthz` says `unreachable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from assist.events import Event
from cluster.inbox import Inbox
from cluster.link import ClusterOptions, ClusterStats, ClusterUnavailable, RedisLink
from cluster.mirrors import Mirrors
from cluster.outbox import Out, Outbox
from cluster.registry import Registry
from live.hub import CallFeed, EventHub
from live.metrics import Metrics
from live.session import CallSession
from store.calls import CallStore

log = logging.getLogger("callcue.cluster")

__all__ = ["Cluster", "ClusterOptions", "ClusterStats", "ClusterUnavailable"]


class Cluster:
    """This node's part in a multi-node service (see the module docstring)."""

    check = staticmethod(RedisLink.check)

    def __init__(self, options: ClusterOptions, metrics: Metrics, backlog: int = 2000) -> None:
        self.options = options
        self.link = link = RedisLink(options)
        self.node = link.node
        self.metrics = metrics
        self.stats = link.stats
        self.hub = EventHub(backlog, observers=[self])
        self.outbox = Outbox(link)
        self.registry = Registry(link, self.outbox)
        self.mirrors = Mirrors(link, self.hub)
        self.inbox = Inbox(link)
        self._tasks: list[asyncio.Task[None]] = []
        self._register_metrics(metrics)

    def _register_metrics(self, metrics: Metrics) -> None:
        stats = self.stats
        metrics.labelled_gauge(
            "callcue_redis_events_total",
            "Events by what became of them on the way to or from Redis: sent (this node's "
            "calls), relayed (other nodes' calls, to screens here), dropped (Redis away past "
            "CALLCUE_REDIS_BUFFER), rejected (Redis had a later seq: the call was marked "
            "failed while this node was cut off)",
            ("outcome",),
            lambda: [
                (("sent",), stats.sent),
                (("relayed",), stats.relayed),
                (("dropped",), stats.dropped),
                (("rejected",), stats.rejected),
            ],
            kind="counter",
        )
        metrics.labelled_gauge(
            "callcue_redis_errors_total",
            "Redis round trips that failed (each is retried; see the log)",
            (),
            lambda: [((), stats.errors)],
            kind="counter",
        )
        metrics.gauge(
            "callcue_redis_buffered_events",
            "Events waiting in memory to be sent to Redis",
            lambda: len(self.outbox),
        )
        metrics.labelled_gauge(
            "callcue_calls_reaped_total",
            "Calls of failed nodes this node marked interrupted",
            (),
            lambda: [((), stats.reaped)],
            kind="counter",
        )
        metrics.gauge(
            "callcue_mirrored_calls", "Other nodes' calls followed here", lambda: len(self.mirrors)
        )

    # ------------------------------------------------------------------ the hub's observer
    def opening(self, call_id: str) -> None:
        """A call starts here: it takes over from a mirror of it (screens waiting for it move
        along)."""
        self.mirrors.stop(call_id)

    def opened(self, feed: CallFeed) -> None:
        """It started: into the registry."""
        self.outbox.put(Out("register", feed.call_id))

    def sent(self, feed: CallFeed, event: Event) -> None:
        """As an event of a call run here goes to this node's screens (once the store has it),
        it goes to Redis. (A mirror's events came from Redis.)"""
        if not feed.mirror:
            self.outbox.put(Out("event", event.call_id, event.seq, event.type, event.to_json()))

    # ------------------------------------------------------------------ life cycle
    @property
    def reachable(self) -> bool:
        return self.link.reachable

    @property
    def redis(self) -> Any:
        return self.link.redis

    def attach(self, store: CallStore | None, sessions: Mapping[str, CallSession]) -> None:
        self.link.store = store
        self.link.sessions = sessions

    async def start(self) -> None:
        """Connect, beat once (raises if Redis is gone), end leftovers of this node's name
        from an earlier life, then run the publisher, heartbeat, reaper, inbox and follower."""
        self.link.connect()
        self.outbox.start()
        self.mirrors.start()
        await self.registry.beat()
        await self.registry.reap_leftovers()
        loop = asyncio.get_running_loop()
        for name, job in (
            ("publisher", self.outbox.run()),
            ("heartbeat", self.registry.heartbeat()),
            ("reaper", self.registry.reaper()),
            ("inbox", self.inbox.run()),
            ("follower", self.mirrors.run()),
        ):
            self._tasks.append(loop.create_task(job, name=f"cluster-{name}"))
        log.info(
            "node %s joined the service on Redis (prefix %r; a node is failed after %.1fs "
            "without a heartbeat)",
            self.node,
            self.options.prefix,
            self.options.node_timeout,
        )

    async def flush(self, grace: float = 5.0) -> bool:
        """Wait up to `grace` seconds for every event so far to be in Redis; True if so."""
        return await self.outbox.flush(grace)

    async def stop(self, grace: float = 5.0) -> None:
        """Send what is buffered (up to `grace` seconds), leave the registry, disconnect."""
        if self.link.reachable:
            await self.flush(grace)
        if len(self.outbox):
            log.error(
                "stopping with %d event(s) not sent to Redis: other nodes' screens will fill "
                "them from the store",
                len(self.outbox),
            )
        tasks = [*self._tasks, *self.mirrors.tasks()]
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: a task stuck in a Redis call must not hold up the stop
            await asyncio.wait(tasks, timeout=grace)
        self._tasks.clear()
        await self.link.close(grace)

    def health(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "redis": "ok" if self.link.reachable else "unreachable",
            "buffered": len(self.outbox),
            "dropped": self.stats.dropped,
            "mirrored_calls": len(self.mirrors),
            "last_error": "" if self.link.reachable else self.link.last_error,
        }

    # ------------------------------------------------------------------ what the gateway asks
    async def claim(self, call_id: str) -> str | None:
        """Register a call starting here; a reason to refuse it when it runs elsewhere."""
        return await self.registry.claim(call_id)

    async def release(self, call_id: str) -> None:
        await self.registry.release(call_id)

    async def claim_nonce(self, nonce: str, until: float) -> bool:
        return await self.registry.claim_nonce(nonce, until)

    async def live_calls(self) -> list[dict[str, Any]] | None:
        return await self.registry.live_calls()

    async def follow(self, call_id: str) -> bool:
        return await self.mirrors.follow(call_id)

    async def forward_feedback(self, call_id: str, message: dict[str, Any]) -> str | None:
        return await self.inbox.forward(call_id, message)
