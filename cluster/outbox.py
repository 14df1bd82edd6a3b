"""The outbox: what this node writes to Redis, in the order it happened, from one task: each
event of the calls it runs (to the call's stream `PREFIX:events:CALL_ID`, entry id `SEQ-0`,
field `e` the event's JSON) and the registry rows of its calls. The call never waits for Redis:
while it is away the outbox holds what waits (CALLCUE_REDIS_BUFFER)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import deque
from dataclasses import dataclass

from redis.exceptions import ResponseError

from cluster.link import RedisLink

log = logging.getLogger("callcue.cluster")

STREAM_MAXLEN = 20_000  # events kept per call stream (older ones: from the store)
BATCH = 512  # events sent to Redis in one round trip


@dataclass(frozen=True, slots=True)
class Out:
    """One thing to write to Redis, in the order it happened: an event, or a registry row."""

    kind: str  # "event" | "register" | "refresh"
    call_id: str = ""
    seq: int = 0
    type: str = ""
    data: str = ""


class Outbox:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.queue: deque[Out] = deque()
        self.refresh_queued = False
        self._wake: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None  # set while the outbox is empty
        self._dropping = False
        self._rejected_calls: set[str] = set()
        link.on_back.append(self._back)

    def __len__(self) -> int:
        return len(self.queue)

    def _back(self) -> None:
        self._dropping = False
        log.info("Redis is back: %d buffered event(s) being sent", len(self.queue))

    def put(self, out: Out) -> None:
        bookkeeping = out.type in ("call.started", "call.ended")  # never dropped: few, vital
        if out.kind == "event" and not bookkeeping and len(self.queue) >= self.link.options.buffer:
            self.link.stats.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.error(
                    "%d events wait for Redis (CALLCUE_REDIS_BUFFER): later events of this "
                    "node's calls are dropped on the way to Redis (screens here still get "
                    "them; screens on other nodes fill them from the store)",
                    len(self.queue),
                )
            return
        self.queue.append(out)
        if self._wake is not None and self._drained is not None:
            self._drained.clear()
            self._wake.set()

    def refresh(self) -> None:
        """Queue this node's registry rows (the wallboard), in order with the events."""
        if not self.refresh_queued:
            self.refresh_queued = True
            self.put(Out("refresh"))

    async def flush(self, grace: float = 5.0) -> bool:
        """Wait up to `grace` seconds for every event so far to be in Redis; True if so."""
        if self._drained is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    while self.queue:
                        await self._drained.wait()
        return not self.queue

    def start(self) -> None:
        """(on the event loop, before `run`) From here on, what is put wakes the sender."""
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        if not self.queue:
            self._drained.set()

    async def run(self) -> None:
        """Send what is queued, in batches, for as long as the node runs; retry when Redis
        does not answer."""
        assert self._wake is not None and self._drained is not None
        delay = 0.05
        while True:
            if not self.queue:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(itertools.islice(self.queue, BATCH))
            try:
                await self._send(batch)
            except Exception as exc:  # RedisError, OSError: keep the batch, retry
                self.link.failed("sending events", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            for _ in batch:
                self.queue.popleft()
            if not self.queue:
                self._drained.set()
            self.link.ok()

    async def _send(self, batch: list[Out]) -> None:
        link = self.link
        ttl = link.options.stream_ttl
        pipe = link.redis.pipeline(transaction=False)
        xadds: list[tuple[int, Out]] = []  # (index of the XADD's reply, its event)
        count = 0
        for out in batch:
            if out.kind == "event":
                key = link.events_key(out.call_id)
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
                    pipe.hdel(link.calls_key, out.call_id)
                    count += 2
            elif out.kind == "register":
                pipe.hset(link.calls_key, out.call_id, self.registry_row(out.call_id))
                count += 1
            elif out.kind == "refresh":
                self.refresh_queued = False
                rows = {cid: self.registry_row(cid) for cid in list(link.sessions)}
                if rows:
                    pipe.hset(link.calls_key, mapping=rows)
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
                link.stats.rejected += 1
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
                link.stats.sent += 1
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(reply, ResponseError):
                raise reply

    def registry_row(self, call_id: str) -> str:
        """A live call's row in `PREFIX:calls`: its node and its wallboard summary."""
        session = self.link.sessions.get(call_id)
        summary = session.live_summary() if session is not None else {"call_id": call_id}
        return json.dumps({"node": self.link.node, "summary": summary}, ensure_ascii=False)
