"""The call registry and node failure: which node runs which call (`PREFIX:calls`: call id →
node and wallboard row), each node's heartbeat (`PREFIX:node:NODE`, expiring after
CALLCUE_NODE_TIMEOUT), and the reaper: the calls of a node whose heartbeat expired are marked
`interrupted` in the store and get a `call.ended` with reason `node_failed` on their stream
(one node does it, holding `PREFIX:reap:CALL_ID`), so screens everywhere are told."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import socket
import time
from typing import Any

from assist.events import CallEnded, now_iso
from cluster.link import RedisLink, entry_seq
from cluster.outbox import Outbox

log = logging.getLogger("callcue.cluster")

REAP_LOCK_SECONDS = 30
SWEEP_EVERY = 10.0  # seconds between looks for stored calls no node has registered


class Registry:
    def __init__(self, link: RedisLink, outbox: Outbox) -> None:
        self.link = link
        self.outbox = outbox
        self._orphans: set[str] = set()

    # ------------------------------------------------------------------ calls
    async def claim(self, call_id: str) -> str | None:
        """Register a call starting here; a reason to refuse it when it is live on another
        node. A node that died holding it is reaped first (the call resumes here)."""
        link = self.link
        row = json.dumps({"node": link.node, "summary": {"call_id": call_id}})
        try:
            if await link.redis.hsetnx(link.calls_key, call_id, row):
                return None
            raw = await link.redis.hget(link.calls_key, call_id)
            owner = json.loads(raw).get("node", "") if raw else ""
            if raw is None or owner == link.node:
                return None  # ended meanwhile, or ours (the hub refuses a duplicate)
            if await link.redis.exists(link.node_key(owner)):
                return f"call {call_id!r} is already streaming on node {owner}"
            await self.reap(call_id, owner)
            await link.redis.hset(link.calls_key, call_id, row)
            return None
        except Exception as exc:
            link.failed("registering a call", exc)
            return None  # the call goes on here; the registry catches up with the heartbeat

    async def release(self, call_id: str) -> None:
        """A claimed call that did not start here after all leaves the registry (its row,
        if this node's: another node may have taken the id meanwhile)."""
        link = self.link
        try:
            raw = await link.redis.hget(link.calls_key, call_id)
            if raw is not None and json.loads(raw).get("node") == link.node:
                await link.redis.hdel(link.calls_key, call_id)
        except Exception as exc:
            link.failed("releasing a call", exc)

    async def claim_nonce(self, nonce: str, until: float) -> bool:
        """Whether no node has accepted this AudioHook signature nonce yet (it is recorded
        until `until`, epoch seconds). Redis away: True (this node's own check stands)."""
        ttl = max(1, math.ceil(until - time.time()) + 5)
        try:
            digest = hashlib.sha256(nonce.encode()).hexdigest()[:32]
            key = f"{self.link.options.prefix}:nonce:{digest}"
            return bool(await self.link.redis.set(key, "1", nx=True, ex=ttl))
        except Exception as exc:
            self.link.failed("recording a signature nonce", exc)
            return True

    async def live_calls(self) -> list[dict[str, Any]] | None:
        """Every node's live calls (the wallboard's rows, each with its `node`); None if
        Redis cannot be reached."""
        try:
            rows = await self.link.redis.hgetall(self.link.calls_key)
        except Exception as exc:
            self.link.failed("reading the call registry", exc)
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

    # ------------------------------------------------------------------ heartbeat
    async def beat(self) -> None:
        link = self.link
        info = {"node": link.node, "pid": os.getpid(), "host": socket.gethostname()}
        await link.redis.set(
            link.node_key(link.node),
            json.dumps({**info, "calls": len(link.sessions), "at": now_iso()}),
            px=int(link.options.node_timeout * 1000),
        )

    async def heartbeat(self) -> None:
        """Beat every fifth of CALLCUE_NODE_TIMEOUT, and refresh the calls' wallboard rows."""
        interval = self.link.options.node_timeout / 5
        while True:
            await asyncio.sleep(interval)
            try:
                await self.beat()
                self.link.ok()
            except Exception as exc:
                self.link.failed("heartbeat", exc)
            if self.link.sessions:
                self.outbox.refresh()

    # ------------------------------------------------------------------ reaper
    async def reaper(self) -> None:
        """Look for failed nodes' calls, and now and then for stored calls no node has."""
        interval = max(0.2, self.link.options.node_timeout / 5)
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
                self.link.failed("looking for failed nodes", exc)

    async def _reap_failed_nodes(self) -> None:
        link = self.link
        rows = await link.redis.hgetall(link.calls_key)
        owners: dict[str, str] = {}
        for call_id, raw in rows.items():
            with contextlib.suppress(ValueError, AttributeError):
                owners[call_id] = json.loads(raw)["node"]
        nodes = sorted(set(owners.values()) - {link.node})
        if not nodes:
            return
        beats = await link.redis.mget([link.node_key(n) for n in nodes])
        dead = {n for n, beat in zip(nodes, beats, strict=True) if beat is None}
        for call_id, node in owners.items():
            if node in dead:
                await self.reap(call_id, node)

    async def reap_leftovers(self) -> None:
        """Calls registered under this node's name by an earlier process of the same name."""
        link = self.link
        rows = await link.redis.hgetall(link.calls_key)
        for call_id, raw in rows.items():
            with contextlib.suppress(ValueError, AttributeError, KeyError):
                if json.loads(raw)["node"] == link.node:
                    await self.reap(call_id, link.node, force=True)

    async def _sweep_store(self) -> None:
        """Stored calls `in_progress` that no node has registered, twice in a row (their node
        died before registering them, or Redis lost the registry): interrupted."""
        link = self.link
        if link.store is None:
            return
        stored = set(await asyncio.to_thread(link.store.in_progress))
        registered = set(await link.redis.hkeys(link.calls_key))
        orphans = stored - registered - set(link.sessions)
        confirmed, self._orphans = orphans & self._orphans, orphans
        for call_id in sorted(confirmed):
            await self.reap(call_id, None)

    async def reap(self, call_id: str, node: str | None, force: bool = False) -> bool:
        """End a call whose node is gone: its stored events the stream lacks are added to it,
        then `call.ended` (reason `node_failed`) after the highest seq issued; the store marks
        it interrupted. One node does it (the lock); True if this one did."""
        link = self.link
        redis = link.redis
        lock = f"{link.options.prefix}:reap:{call_id}"
        if not await redis.set(lock, link.node, nx=True, ex=REAP_LOCK_SECONDS):
            return False
        try:
            raw = await redis.hget(link.calls_key, call_id)
            entry = json.loads(raw) if raw else None
            owner = entry.get("node") if entry else None
            if owner != node:
                return False  # reaped or taken over meanwhile
            if not force and owner is not None and await redis.exists(link.node_key(owner)):
                return False  # it came back
            key = link.events_key(call_id)
            top = await redis.xrevrange(key, count=1)
            last = entry_seq(top[0][0]) if top else 0
            stored: list[dict[str, Any]] = []
            store_last = 0
            if link.store is not None:
                stored = await asyncio.to_thread(link.store.events, call_id, (), last)
                store_last = await asyncio.to_thread(link.store.last_seq, call_id)
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
            if link.store is not None and not finished:
                await asyncio.to_thread(link.store.interrupt, ended)
            pipe = redis.pipeline(transaction=False)
            for event in stored:
                pipe.xadd(key, {"e": json.dumps(event, ensure_ascii=False)}, id=f"{event['seq']}-0")
            if not finished:
                pipe.xadd(key, {"e": ended.to_json()}, id=f"{end_seq}-0")
            pipe.expire(key, link.options.stream_ttl)
            pipe.hdel(link.calls_key, call_id)
            await pipe.execute()
        except BaseException:
            with contextlib.suppress(Exception):
                await redis.delete(lock)  # another node (or this one) tries again
            raise
        link.stats.reaped += 1
        log.warning(
            "call %s: node %s stopped beating; marked interrupted, screens told (seq %d)",
            call_id,
            node or "(unregistered)",
            end_seq,
        )
        return True
