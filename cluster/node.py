"""Several callcue nodes as one service: events, call registry and node failure on Redis.

Set CALLCUE_REDIS_URL (and a PostgreSQL store every node shares) and each node:

- publishes every event of the calls it runs to its own screens at once, as alone, and to a
  Redis Stream per call (`PREFIX:events:CALL_ID`, entry id `SEQ-0`, field `e` the event's
  JSON), in order, from a background task: the call never waits for Redis;
- keeps the registry of live calls (`PREFIX:calls`: call id → node and wallboard row) and its
  heartbeat (`PREFIX:node:NODE`, expiring after CALLCUE_NODE_TIMEOUT);
- serves a screen of a call another node runs by mirroring that call's stream into its own
  hub (history with XRANGE, then XREAD from the last seq): late joiners and reconnects with
  `?after_seq=N` work as on the node that runs the call, with no gap and no duplicate;
- watches the heartbeats: the calls of a node whose heartbeat expired are marked
  `interrupted` in the store and get a `call.ended` with reason `node_failed` on their stream
  (one node does it, holding `PREFIX:reap:CALL_ID`), so screens everywhere are told.

Redis lost mid-call: calls go on and their own node's screens are served; events wait in
memory, in order (`CALLCUE_REDIS_BUFFER`), and are sent when Redis is back; errors are logged
and counted (`callcue_redis_errors_total`), `/healthz` says `unreachable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from redis.asyncio import Redis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.retry import Retry

from assist.events import CallEnded, Event, RelayedEvent, now_iso
from live.hub import CallFeed, EventHub
from live.metrics import Metrics
from live.session import CallSession
from store.calls import CallStore

log = logging.getLogger("callcue.cluster")

STREAM_MAXLEN = 20_000  # events kept per call stream (older ones: from the store)
BATCH = 512  # events sent to Redis in one round trip
MIRROR_LINGER = 10.0  # seconds a mirror nobody watches is kept for screens that come back
REAP_LOCK_SECONDS = 30
SWEEP_EVERY = 10.0  # seconds between looks for stored calls no node has registered
FEEDBACK_TIMEOUT = 3.0
REDIS_CONNECTIONS = 32  # per node
FOLLOW_BLOCK_MS = 200  # longest a newly followed call waits to join the shared XREAD


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    url: str
    prefix: str = "callcue"
    node_id: str = ""
    node_timeout: float = 5.0
    stream_ttl: int = 600
    buffer: int = 100_000


@dataclass(slots=True)
class ClusterStats:
    sent: int = 0  # events written to Redis
    errors: int = 0  # Redis commands or round trips that failed
    dropped: int = 0  # events not sent: Redis was away past the buffer
    rejected: int = 0  # events Redis already had a later seq for (see _send)
    reaped: int = 0  # calls of failed nodes this node marked interrupted
    relayed: int = 0  # events of other nodes' calls passed on to screens here


@dataclass(slots=True)
class _Out:
    """One thing to write to Redis, in the order it happened: an event, or a registry row."""

    kind: str  # "event" | "register" | "refresh"
    call_id: str = ""
    seq: int = 0
    type: str = ""
    data: str = ""


class _Mirror:
    """A call another node runs, copied from its stream into this node's hub."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.ready = asyncio.Event()  # its history is in the hub
        self.feed: CallFeed | None = None
        self.task: asyncio.Task[None] | None = None  # loads the history
        self.last = 0  # last seq relayed
        self.idle_since: float | None = None  # since when no screen here watches it


class ClusterUnavailable(RuntimeError):
    """Redis cannot be reached at start; the message names the URL (password hidden)."""


class Cluster:
    """This node's part in a multi-node service (see the module docstring)."""

    def __init__(self, options: ClusterOptions, metrics: Metrics, backlog: int = 2000) -> None:
        self.options = options
        self.node = options.node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.hub = EventHub(backlog, observers=[self])
        self.metrics = metrics
        self.stats = ClusterStats()
        self.store: CallStore | None = None
        self.sessions: Mapping[str, CallSession] = {}
        self.reachable = True
        self.last_error = ""
        self._redis: Redis | None = None
        self._outbox: deque[_Out] = deque()
        self._refresh_queued = False
        self._wake: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None  # set while the outbox is empty
        self._tasks: list[asyncio.Task[None]] = []
        self._mirrors: dict[str, _Mirror] = {}
        self._follow_wake: asyncio.Event | None = None
        self._orphans: set[str] = set()
        self._rejected_calls: set[str] = set()
        self._dropping = False
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
            lambda: len(self._outbox),
        )
        metrics.labelled_gauge(
            "callcue_calls_reaped_total",
            "Calls of failed nodes this node marked interrupted",
            (),
            lambda: [((), stats.reaped)],
            kind="counter",
        )
        metrics.gauge(
            "callcue_mirrored_calls", "Other nodes' calls followed here", lambda: len(self._mirrors)
        )

    # ------------------------------------------------------------------ the hub's observer
    def opening(self, call_id: str) -> None:
        """A call starts here: it takes over from a mirror of it (screens waiting for it move
        along)."""
        self._stop_mirror(call_id)

    def opened(self, feed: CallFeed) -> None:
        """It started: into the registry."""
        self._enqueue(_Out("register", feed.call_id))

    def sent(self, feed: CallFeed, event: Event) -> None:
        """As an event of a call run here goes to this node's screens (once the store has it),
        it goes to Redis. (A mirror's events came from Redis.)"""
        if not feed.mirror:
            self._enqueue(_Out("event", event.call_id, event.seq, event.type, event.to_json()))

    # ------------------------------------------------------------------ keys
    def _events_key(self, call_id: str) -> str:
        return f"{self.options.prefix}:events:{call_id}"

    @property
    def _calls_key(self) -> str:
        return f"{self.options.prefix}:calls"

    def _node_key(self, node: str) -> str:
        return f"{self.options.prefix}:node:{node}"

    def _inbox_key(self, node: str) -> str:
        return f"{self.options.prefix}:inbox:{node}"

    # ------------------------------------------------------------------ life cycle
    @staticmethod
    def check(url: str) -> str:
        """Connect once, before the port opens; the Redis version, or ClusterUnavailable."""
        client = redis.Redis.from_url(
            url, socket_connect_timeout=3, socket_timeout=3, retry=Retry(NoBackoff(), 0)
        )
        try:
            version = str(client.info("server").get("redis_version", "0"))
        except redis.RedisError as exc:
            raise ClusterUnavailable(
                f"cannot reach Redis at {_redact(url)} (CALLCUE_REDIS_URL): {exc}"
            ) from None
        finally:
            client.close()
        if int(version.split(".")[0]) < 5:
            raise ClusterUnavailable(
                f"Redis at {_redact(url)} is version {version}; streams need 5.0 or later"
            )
        return version

    def attach(self, store: CallStore | None, sessions: Mapping[str, CallSession]) -> None:
        self.store = store
        self.sessions = sessions

    async def start(self) -> None:
        """Connect, beat once (raises if Redis is gone), end leftovers of this node's name
        from an earlier life, then run the publisher, heartbeat, reaper and inbox."""
        timeout = self.options.node_timeout
        # a bounded pool that waits for a free connection (a burst of screens joining queues
        # up instead of failing); the long blocking reads are two, however many calls
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.options.url,
            max_connections=REDIS_CONNECTIONS,
            timeout=10,
            decode_responses=True,
            socket_connect_timeout=min(2.0, timeout),
            socket_timeout=max(5.0, timeout),
            health_check_interval=30,
            # no silent retries inside the client: every loop here retries on its own terms,
            # and an outage shows (logged, counted, /healthz) the moment it happens
            retry=AsyncRetry(NoBackoff(), 0),
        )
        self._redis = redis.asyncio.Redis(connection_pool=pool)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._follow_wake = asyncio.Event()
        await self._beat()
        await self._reap_leftovers()
        loop = asyncio.get_running_loop()
        for name, job in (
            ("publisher", self._publish_loop()),
            ("heartbeat", self._heartbeat_loop()),
            ("reaper", self._reaper_loop()),
            ("inbox", self._inbox_loop()),
            ("follower", self._follow_loop()),
        ):
            self._tasks.append(loop.create_task(job, name=f"cluster-{name}"))
        log.info(
            "node %s joined the service on Redis (prefix %r; a node is failed after %.1fs "
            "without a heartbeat)",
            self.node,
            self.options.prefix,
            timeout,
        )

    async def flush(self, grace: float = 5.0) -> bool:
        """Wait up to `grace` seconds for every event so far to be in Redis; True if so."""
        if self._drained is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    while self._outbox:
                        await self._drained.wait()
        return not self._outbox

    async def stop(self, grace: float = 5.0) -> None:
        """Send what is buffered (up to `grace` seconds), leave the registry, disconnect."""
        if self.reachable:
            await self.flush(grace)
        if self._outbox:
            log.error(
                "stopping with %d event(s) not sent to Redis: other nodes' screens will fill "
                "them from the store",
                len(self._outbox),
            )
        tasks = [*self._tasks, *(m.task for m in self._mirrors.values() if m.task)]
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: a task stuck in a Redis call must not hold up the stop
            await asyncio.wait(tasks, timeout=grace)
        self._tasks.clear()
        if self._redis is not None:
            # each bounded: with the pool's connections still held by cancelled readers, a
            # command would wait for a free connection for good
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.delete(self._node_key(self.node)), grace)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.aclose(close_connection_pool=True), grace)
            self._redis = None

    def health(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "redis": "ok" if self.reachable else "unreachable",
            "buffered": len(self._outbox),
            "dropped": self.stats.dropped,
            "mirrored_calls": len(self._mirrors),
            "last_error": "" if self.reachable else self.last_error,
        }

    def _failed(self, doing: str, exc: BaseException) -> None:
        self.stats.errors += 1
        self.last_error = f"{doing}: {type(exc).__name__}: {exc}"[:300]
        if self.reachable:
            self.reachable = False
            log.error(
                "Redis is unreachable (%s); calls go on here, their events wait in memory "
                "(CALLCUE_REDIS_BUFFER) and other nodes do not see them until it is back",
                self.last_error,
            )

    def _ok(self) -> None:
        if not self.reachable:
            self.reachable = True
            self._dropping = False
            log.info("Redis is back: %d buffered event(s) being sent", len(self._outbox))

    @property
    def redis(self) -> Any:  # redis-py's hints mix its sync and async replies: checked here
        if self._redis is None:
            raise RuntimeError("the cluster is not started (Cluster.start)")
        return self._redis

    # ------------------------------------------------------------------ publishing
    def _enqueue(self, out: _Out) -> None:
        bookkeeping = out.type in ("call.started", "call.ended")  # never dropped: few, vital
        if out.kind == "event" and not bookkeeping and len(self._outbox) >= self.options.buffer:
            self.stats.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.error(
                    "%d events wait for Redis (CALLCUE_REDIS_BUFFER): later events of this "
                    "node's calls are dropped on the way to Redis (screens here still get "
                    "them; screens on other nodes fill them from the store)",
                    len(self._outbox),
                )
            return
        self._outbox.append(out)
        if self._wake is not None and self._drained is not None:
            self._drained.clear()
            self._wake.set()

    async def _publish_loop(self) -> None:
        assert self._wake is not None and self._drained is not None
        delay = 0.05
        while True:
            if not self._outbox:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(itertools.islice(self._outbox, BATCH))
            try:
                await self._send(batch)
            except Exception as exc:  # RedisError, OSError: keep the batch, retry
                self._failed("sending events", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            for _ in batch:
                self._outbox.popleft()
            if not self._outbox and self._drained is not None:
                self._drained.set()
            self._ok()

    async def _send(self, batch: list[_Out]) -> None:
        ttl = self.options.stream_ttl
        pipe = self.redis.pipeline(transaction=False)
        xadds: list[tuple[int, _Out]] = []  # (index of the XADD's reply, its event)
        count = 0
        for out in batch:
            if out.kind == "event":
                key = self._events_key(out.call_id)
                if out.type == "call.started":  # a resumed call: its old stream must not expire
                    pipe.persist(key)
                    count += 1
                pipe.xadd(
                    key, {"e": out.data}, id=f"{out.seq}-0", maxlen=STREAM_MAXLEN, approximate=True
                )
                xadds.append((count, out))
                count += 1
                if out.type == "call.ended":
                    pipe.expire(key, ttl)
                    pipe.hdel(self._calls_key, out.call_id)
                    count += 2
            elif out.kind == "register":
                pipe.hset(self._calls_key, out.call_id, self._registry_row(out.call_id))
                count += 1
            elif out.kind == "refresh":
                self._refresh_queued = False
                rows = {cid: self._registry_row(cid) for cid in list(self.sessions)}
                if rows:
                    pipe.hset(self._calls_key, mapping=rows)
                    count += 1
        if not count:
            return
        replies = await pipe.execute(raise_on_error=False)
        for index, out in xadds:
            reply = replies[index]
            if isinstance(reply, ResponseError):
                # Redis holds this seq or a later one: sent before a reconnect (a retried
                # batch), or another node marked the call failed while this one was cut off
                if "equal or smaller" not in str(reply):
                    raise reply
                self.stats.rejected += 1
                if out.call_id not in self._rejected_calls and len(self._rejected_calls) < 1000:
                    self._rejected_calls.add(out.call_id)
                    log.warning(
                        "Redis already has seq %d of call %s or a later one (sent before a "
                        "reconnect, or the call was marked failed while this node was cut off)",
                        out.seq,
                        out.call_id,
                    )
            elif isinstance(reply, Exception):
                raise reply
            else:
                self.stats.sent += 1
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(reply, ResponseError):
                raise reply

    def _registry_row(self, call_id: str) -> str:
        session = self.sessions.get(call_id)
        summary = session.live_summary() if session is not None else {"call_id": call_id}
        return json.dumps({"node": self.node, "summary": summary}, ensure_ascii=False)

    # ------------------------------------------------------------------ registry
    async def claim(self, call_id: str) -> str | None:
        """Register a call starting here; a reason to refuse it when it is live on another
        node. A node that died holding it is reaped first (the call resumes here)."""
        row = json.dumps({"node": self.node, "summary": {"call_id": call_id}})
        try:
            if await self.redis.hsetnx(self._calls_key, call_id, row):
                return None
            raw = await self.redis.hget(self._calls_key, call_id)
            owner = json.loads(raw).get("node", "") if raw else ""
            if raw is None or owner == self.node:
                return None  # ended meanwhile, or ours (the hub refuses a duplicate)
            if await self.redis.exists(self._node_key(owner)):
                return f"call {call_id!r} is already streaming on node {owner}"
            await self._reap(call_id, owner)
            await self.redis.hset(self._calls_key, call_id, row)
            return None
        except Exception as exc:
            self._failed("registering a call", exc)
            return None  # the call goes on here; the registry catches up with the heartbeat

    async def claim_nonce(self, nonce: str, until: float) -> bool:
        """Whether no node has accepted this AudioHook signature nonce yet (it is recorded
        until `until`, epoch seconds). Redis away: True (this node's own check stands)."""
        ttl = max(1, math.ceil(until - time.time()) + 5)
        try:
            digest = hashlib.sha256(nonce.encode()).hexdigest()[:32]
            key = f"{self.options.prefix}:nonce:{digest}"
            return bool(await self.redis.set(key, "1", nx=True, ex=ttl))
        except Exception as exc:
            self._failed("recording a signature nonce", exc)
            return True

    async def live_calls(self) -> list[dict[str, Any]] | None:
        """Every node's live calls (the wallboard's rows, each with its `node`); None if
        Redis cannot be reached."""
        try:
            rows = await self.redis.hgetall(self._calls_key)
        except Exception as exc:
            self._failed("reading the call registry", exc)
            return None
        calls = []
        for call_id, raw in rows.items():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            summary = dict(entry.get("summary") or {})
            summary.setdefault("call_id", call_id)
            calls.append({**summary, "node": entry.get("node", "")})
        calls.sort(key=lambda c: (c.get("started_at") or 0, c["call_id"]))
        return calls

    # ------------------------------------------------------------------ heartbeat and reaper
    async def _beat(self) -> None:
        info = {"node": self.node, "pid": os.getpid(), "host": socket.gethostname()}
        await self.redis.set(
            self._node_key(self.node),
            json.dumps({**info, "calls": len(self.sessions), "at": now_iso()}),
            px=int(self.options.node_timeout * 1000),
        )

    async def _heartbeat_loop(self) -> None:
        interval = self.options.node_timeout / 5
        while True:
            await asyncio.sleep(interval)
            try:
                await self._beat()
                self._ok()
            except Exception as exc:
                self._failed("heartbeat", exc)
            if self.sessions and not self._refresh_queued:
                self._refresh_queued = True  # the wallboard rows, in order with the events
                self._enqueue(_Out("refresh"))

    async def _reaper_loop(self) -> None:
        interval = max(0.2, self.options.node_timeout / 5)
        swept = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._reap_failed_nodes()
                if time.monotonic() - swept >= SWEEP_EVERY:
                    swept = time.monotonic()
                    await self._sweep_store()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed("looking for failed nodes", exc)

    async def _reap_failed_nodes(self) -> None:
        rows = await self.redis.hgetall(self._calls_key)
        owners: dict[str, str] = {}
        for call_id, raw in rows.items():
            with contextlib.suppress(ValueError, AttributeError):
                owners[call_id] = json.loads(raw)["node"]
        nodes = sorted(set(owners.values()) - {self.node})
        if not nodes:
            return
        beats = await self.redis.mget([self._node_key(n) for n in nodes])
        dead = {n for n, beat in zip(nodes, beats, strict=True) if beat is None}
        for call_id, node in owners.items():
            if node in dead:
                await self._reap(call_id, node)

    async def _reap_leftovers(self) -> None:
        """Calls registered under this node's name by an earlier process of the same name."""
        rows = await self.redis.hgetall(self._calls_key)
        for call_id, raw in rows.items():
            with contextlib.suppress(ValueError, AttributeError, KeyError):
                if json.loads(raw)["node"] == self.node:
                    await self._reap(call_id, self.node, force=True)

    async def _sweep_store(self) -> None:
        """Stored calls `in_progress` that no node has registered, twice in a row (their node
        died before registering them, or Redis lost the registry): interrupted."""
        if self.store is None:
            return
        stored = set(await asyncio.to_thread(self.store.in_progress))
        registered = set(await self.redis.hkeys(self._calls_key))
        orphans = stored - registered - set(self.sessions)
        confirmed, self._orphans = orphans & self._orphans, orphans
        for call_id in sorted(confirmed):
            await self._reap(call_id, None)

    async def _reap(self, call_id: str, node: str | None, force: bool = False) -> bool:
        """End a call whose node is gone: its stored events the stream lacks are added to it,
        then `call.ended` (reason `node_failed`) after the highest seq issued; the store marks
        it interrupted. One node does it (the lock); True if this one did."""
        redis = self.redis
        lock = f"{self.options.prefix}:reap:{call_id}"
        if not await redis.set(lock, self.node, nx=True, ex=REAP_LOCK_SECONDS):
            return False
        try:
            raw = await redis.hget(self._calls_key, call_id)
            entry = json.loads(raw) if raw else None
            owner = entry.get("node") if entry else None
            if owner != node:
                return False  # reaped or taken over meanwhile
            if not force and owner is not None and await redis.exists(self._node_key(owner)):
                return False  # it came back
            key = self._events_key(call_id)
            top = await redis.xrevrange(key, count=1)
            last = _seq(top[0][0]) if top else 0
            stored: list[dict[str, Any]] = []
            store_last = 0
            if self.store is not None:
                stored = await asyncio.to_thread(self.store.events, call_id, (), last)
                store_last = await asyncio.to_thread(self.store.last_seq, call_id)
            end_seq = max([last, store_last, *(e["seq"] for e in stored)]) + 1
            summary = (entry or {}).get("summary") or {}
            ended = CallEnded(
                call_id=call_id,
                reason="node_failed",
                duration=float(summary.get("duration") or 0.0),
                seq=end_seq,
                ts=now_iso(),
            )
            # the node may have ended the call (stored) and died before telling Redis
            finished = bool(stored) and stored[-1]["type"] == "call.ended"
            if self.store is not None and not finished:
                await asyncio.to_thread(self.store.interrupt, ended)
            pipe = redis.pipeline(transaction=False)
            for event in stored:
                pipe.xadd(key, {"e": json.dumps(event, ensure_ascii=False)}, id=f"{event['seq']}-0")
            if not finished:
                pipe.xadd(key, {"e": ended.to_json()}, id=f"{end_seq}-0")
            pipe.expire(key, self.options.stream_ttl)
            pipe.hdel(self._calls_key, call_id)
            await pipe.execute()
        except BaseException:
            with contextlib.suppress(Exception):
                await redis.delete(lock)  # another node (or this one) tries again
            raise
        self.stats.reaped += 1
        log.warning(
            "call %s: node %s stopped beating; marked interrupted, screens told (seq %d)",
            call_id,
            node or "(unregistered)",
            end_seq,
        )
        return True

    # ------------------------------------------------------------------ following other nodes
    async def follow(self, call_id: str) -> bool:
        """Make a call that does not run here watchable through this node's hub: True when
        the hub has it (history loaded; live events follow). False: the caller serves it from
        the store (an ended call whose stream expired) or alone (Redis unreachable)."""
        feed = self.hub.feed(call_id)
        if feed is not None and (feed.live or feed.ended):
            return True
        mirror = self._mirrors.get(call_id)
        if mirror is None:
            try:
                streaming = await self.redis.exists(self._events_key(call_id))
            except Exception as exc:
                self._failed("following a call", exc)
                return False
            if not streaming and self.store is not None:
                call = await asyncio.to_thread(self.store.get_call, call_id)
                if call is not None and call["outcome"] != "in_progress":
                    return False
            feed = self.hub.feed(call_id)
            if feed is not None and (feed.live or feed.ended):
                return True  # it started here meanwhile
            mirror = self._mirrors.get(call_id)
            if mirror is None:
                mirror = self._mirrors[call_id] = _Mirror(call_id)
                mirror.task = asyncio.get_running_loop().create_task(
                    self._mirror(mirror), name=f"mirror:{call_id}"
                )
        ready = asyncio.ensure_future(mirror.ready.wait())
        assert mirror.task is not None
        await asyncio.wait({ready, mirror.task}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        return mirror.ready.is_set() and self.hub.feed(call_id) is not None

    def _stop_mirror(self, call_id: str) -> None:
        mirror = self._mirrors.pop(call_id, None)
        if mirror is not None and mirror.task is not None:
            mirror.task.cancel()

    async def _mirror(self, mirror: _Mirror) -> None:
        """Load a followed call's history into the hub; `_follow_loop` relays what comes next."""
        call_id = mirror.call_id
        key = self._events_key(call_id)
        feed = mirror.feed = self.hub.open_mirror(call_id)
        try:
            after = "-"  # everything the stream holds, in pages of 1000
            while True:
                entries = await self.redis.xrange(key, min=after, max="+", count=1000)
                await self._relay(mirror, entries)
                if len(entries) < 1000:
                    break
                after = f"({entries[-1][0]}"
        except Exception as exc:
            self._failed("following a call", exc)
            self._forget_mirror(mirror)
            if self.hub.feed(call_id) is feed:
                self.hub.drop(feed)
            return
        mirror.ready.set()
        if feed.history and _kind(feed.history[-1]) == "call.ended":
            self.hub.end(call_id)
            self._forget_mirror(mirror)
        elif self._follow_wake is not None:
            self._follow_wake.set()

    def _forget_mirror(self, mirror: _Mirror) -> None:
        if self._mirrors.get(mirror.call_id) is mirror:
            del self._mirrors[mirror.call_id]

    async def _follow_loop(self) -> None:
        """One XREAD over the streams of every call followed here (one connection, however
        many calls): each reply is relayed to its mirror's screens at once; a call that
        starts being followed joins within `FOLLOW_BLOCK_MS` (its history is loaded by then,
        and the read resumes from its last seq: nothing is missed)."""
        assert self._follow_wake is not None
        prefix = len(self._events_key(""))
        delay = 0.1
        while True:
            now = time.monotonic()
            live: dict[str, _Mirror] = {}
            for call_id, mirror in list(self._mirrors.items()):
                if not mirror.ready.is_set():
                    continue
                feed = mirror.feed
                if feed is None or self.hub.feed(call_id) is not feed:
                    self._forget_mirror(mirror)  # it started here, or was forgotten
                    continue
                if feed.subscribers:
                    mirror.idle_since = None
                elif mirror.idle_since is None:
                    mirror.idle_since = now
                elif now - mirror.idle_since > MIRROR_LINGER:
                    self.hub.drop(feed)
                    self._forget_mirror(mirror)
                    continue
                live[call_id] = mirror
            if not live:
                self._follow_wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._follow_wake.wait()
                continue
            streams = {self._events_key(cid): f"{m.last}-0" for cid, m in live.items()}
            try:
                reply = await self.redis.xread(streams, count=500, block=FOLLOW_BLOCK_MS)
            except Exception as exc:
                self._failed("following calls", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            self._ok()
            for key, entries in reply or []:
                mirror = live[key[prefix:]]
                if self._mirrors.get(mirror.call_id) is not mirror:
                    continue  # the call started here meanwhile
                if await self._relay(mirror, entries):
                    self.hub.end(mirror.call_id)
                    self._forget_mirror(mirror)

    async def _relay(self, mirror: _Mirror, entries: list[Any]) -> bool:
        """Pass stream entries on to the mirror's screens; True after `call.ended`. A gap in
        the seqs (events that never reached Redis) is filled from the store."""
        feed = mirror.feed
        assert feed is not None
        ended = False
        for entry_id, fields in entries:
            seq = _seq(entry_id)
            if seq <= mirror.last:
                continue
            raw = fields.get("e", "")
            if not feed.history and seq > 1:
                feed.base = seq - 1  # the stream begins later (trimmed, or a resumed call)
            elif seq > mirror.last + 1 and self.store is not None:
                stored = await asyncio.to_thread(self.store.events, mirror.call_id, (), mirror.last)
                for data in stored:
                    if data["seq"] < seq:
                        self._relay_one(mirror, data["seq"], json.dumps(data, ensure_ascii=False))
            kind = self._relay_one(mirror, seq, raw)
            ended = kind == "call.ended"
        return ended

    def _relay_one(self, mirror: _Mirror, seq: int, raw: str) -> str:
        assert mirror.feed is not None
        try:
            data = json.loads(raw)
            kind, ts = str(data.get("type", "")), str(data.get("ts", ""))
        except (ValueError, AttributeError):
            log.error("call %s: seq %d on Redis is not an event; skipped", mirror.call_id, seq)
            return ""
        event = RelayedEvent(call_id=mirror.call_id, seq=seq, ts=ts, kind=kind, raw=raw)
        self.hub.relay(mirror.feed, event)
        mirror.last = seq
        self.stats.relayed += 1
        return kind

    # ------------------------------------------------------------------ feedback from screens
    async def forward_feedback(self, call_id: str, message: dict[str, Any]) -> str | None:
        """Feedback from a screen here on a call another node runs: handed to that node;
        None when it took it, else what is wrong (as the node that runs it would say)."""
        try:
            raw = await self.redis.hget(self._calls_key, call_id)
            if raw is None:
                return f"call {call_id} is not live; feedback is taken during the call"
            node = json.loads(raw)["node"]
            reply_key = f"{self.options.prefix}:reply:{uuid.uuid4().hex}"
            await self.redis.xadd(
                self._inbox_key(node),
                {"call_id": call_id, "message": json.dumps(message), "reply": reply_key},
                maxlen=10_000,
                approximate=True,
            )
            answer = await self.redis.blpop([reply_key], timeout=FEEDBACK_TIMEOUT)
        except Exception as exc:
            self._failed("forwarding feedback", exc)
            return "the node running this call cannot be reached right now; try again"
        if answer is None:
            return f"node {node} running call {call_id} did not answer; try again"
        problem = json.loads(answer[1]).get("problem")
        return str(problem) if problem else None

    async def _inbox_loop(self) -> None:
        """Feedback other nodes' screens sent for the calls running here."""
        key = self._inbox_key(self.node)
        last = ""
        while True:
            try:
                if not last:  # what is there now was for an earlier process of this name
                    top = await self.redis.xrevrange(key, count=1)
                    last = top[0][0] if top else "0-0"
                reply = await self.redis.xread({key: last}, count=100, block=2000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed("reading feedback from other nodes", exc)
                await asyncio.sleep(1.0)
                continue
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    await self._take_feedback(fields)

    async def _take_feedback(self, fields: dict[str, str]) -> None:
        problem = None
        session = self.sessions.get(fields.get("call_id", ""))
        if session is None:
            problem = f"call {fields.get('call_id')} is not live; feedback is taken during the call"
        else:
            try:
                session.feedback(json.loads(fields.get("message", "{}")))
            except ValueError as exc:
                problem = str(exc)
        reply_key = fields.get("reply", "")
        if reply_key:
            try:
                pipe = self.redis.pipeline(transaction=False)
                pipe.rpush(reply_key, json.dumps({"problem": problem}))
                pipe.expire(reply_key, 30)
                await pipe.execute()
            except Exception as exc:
                self._failed("answering feedback", exc)


def _redact(url: str) -> str:
    """The URL with its password hidden (redis://:PASSWORD@host has no user name)."""
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def _seq(entry_id: str) -> int:
    return int(str(entry_id).split("-", 1)[0])


def _kind(event: Event) -> str:
    return event.kind if isinstance(event, RelayedEvent) else event.type
