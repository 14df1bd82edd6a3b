"""What every part of a node's cluster work shares: the options, the node's name, the Redis
connection, the key names, the counters and whether Redis answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
from redis.asyncio import Redis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from live.session import CallSession
from store.calls import CallStore

log = logging.getLogger("callcue.cluster")

REDIS_CONNECTIONS = 32  # per node


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
    rejected: int = 0  # events Redis already had a later seq for (see Outbox.send)
    reaped: int = 0  # calls of failed nodes this node marked interrupted
    relayed: int = 0  # events of other nodes' calls passed on to screens here


class ClusterUnavailable(RuntimeError):
    """Redis cannot be reached at start; the message names the URL (password hidden)."""


@dataclass(eq=False)
class RedisLink:
    """This node on Redis: its name, the connection (`redis`, once `connect`ed), the keys,
    the counters, and the node's store and live sessions (set by `Cluster.attach`)."""

    options: ClusterOptions
    node: str = ""
    stats: ClusterStats = field(default_factory=ClusterStats)
    store: CallStore | None = None
    sessions: Mapping[str, CallSession] = field(default_factory=dict)
    reachable: bool = True
    last_error: str = ""
    on_back: list[Callable[[], None]] = field(default_factory=list)  # Redis answers again
    _redis: Redis | None = None

    def __post_init__(self) -> None:
        self.node = self.node or self.options.node_id or f"{socket.gethostname()}-{os.getpid()}"

    # ------------------------------------------------------------------ keys
    def events_key(self, call_id: str) -> str:
        return f"{self.options.prefix}:events:{call_id}"

    @property
    def calls_key(self) -> str:
        return f"{self.options.prefix}:calls"

    def node_key(self, node: str) -> str:
        return f"{self.options.prefix}:node:{node}"

    def inbox_key(self, node: str) -> str:
        return f"{self.options.prefix}:inbox:{node}"

    # ------------------------------------------------------------------ the connection
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
                f"cannot reach Redis at {redact(url)} (CALLCUE_REDIS_URL): {exc}"
            ) from None
        finally:
            client.close()
        if int(version.split(".")[0]) < 5:
            raise ClusterUnavailable(
                f"Redis at {redact(url)} is version {version}; streams need 5.0 or later"
            )
        return version

    def connect(self) -> None:
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

    async def close(self, grace: float) -> None:
        """Leave (the heartbeat key goes at once) and disconnect; each step bounded: with the
        pool's connections still held by cancelled readers, a command would wait for good."""
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.delete(self.node_key(self.node)), grace)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.aclose(close_connection_pool=True), grace)
            self._redis = None

    @property
    def redis(self) -> Any:  # redis-py's hints mix its sync and async replies: checked here
        if self._redis is None:
            raise RuntimeError("the cluster is not started (Cluster.start)")
        return self._redis

    # ------------------------------------------------------------------ health
    def failed(self, doing: str, exc: BaseException) -> None:
        self.stats.errors += 1
        self.last_error = f"{doing}: {type(exc).__name__}: {exc}"[:300]
        if self.reachable:
            self.reachable = False
            log.error(
                "Redis is unreachable (%s); calls go on here, their events wait in memory "
                "(CALLCUE_REDIS_BUFFER) and other nodes do not see them until it is back",
                self.last_error,
            )

    def ok(self) -> None:
        if not self.reachable:
            self.reachable = True
            for listener in self.on_back:
                listener()


def redact(url: str) -> str:
    """The URL with its password hidden (redis://:PASSWORD@host has no user name)."""
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def entry_seq(entry_id: str) -> int:
    """The seq of a call stream's entry (its id is `SEQ-0`)."""
    return int(str(entry_id).split("-", 1)[0])
