"""Screens here of calls other nodes run: each such call is mirrored from its stream into this
node's hub (history with XRANGE, then one XREAD for every call followed here), so late
joiners and reconnects with `?after_seq=N` work as on the node that runs the call, with no
duplicate; a gap in the stream (events that never reached Redis) is filled from the store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from assist.events import Event, RelayedEvent
from cluster.link import RedisLink, entry_seq
from live.hub import CallFeed, EventHub

log = logging.getLogger("callcue.cluster")

MIRROR_LINGER = 10.0  # seconds a mirror nobody watches is kept for screens that come back
FOLLOW_BLOCK_MS = 200  # longest a newly followed call waits to join the shared XREAD


class Mirror:
    """A call another node runs, copied from its stream into this node's hub."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.ready = asyncio.Event()  # its history is in the hub
        self.feed: CallFeed | None = None
        self.task: asyncio.Task[None] | None = None  # loads the history
        self.last = 0  # last seq relayed
        self.idle_since: float | None = None  # since when no screen here watches it


class Mirrors:
    def __init__(self, link: RedisLink, hub: EventHub) -> None:
        self.link = link
        self.hub = hub
        self.mirrors: dict[str, Mirror] = {}
        self._wake: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self.mirrors)

    def tasks(self) -> list[asyncio.Task[None]]:
        return [m.task for m in self.mirrors.values() if m.task is not None]

    async def follow(self, call_id: str) -> bool:
        """Make a call that does not run here watchable through this node's hub: True when
        the hub has it (history loaded; live events follow). False: the caller serves it from
        the store (an ended call whose stream expired) or alone (Redis unreachable)."""
        link = self.link
        feed = self.hub.feed(call_id)
        if feed is not None and (feed.live or feed.ended):
            return True
        mirror = self.mirrors.get(call_id)
        if mirror is None:
            try:
                streaming = await link.redis.exists(link.events_key(call_id))
            except Exception as exc:
                link.failed("following a call", exc)
                return False
            if not streaming and link.store is not None:
                try:
                    call = await asyncio.to_thread(link.store.get_call, call_id)
                except Exception as exc:  # the caller reads the store too and says it is down
                    log.warning("cannot read call %s from the store: %s", call_id, exc)
                    return False
                if call is not None and call["outcome"] != "in_progress":
                    return False
            feed = self.hub.feed(call_id)
            if feed is not None and (feed.live or feed.ended):
                return True  # it started here meanwhile
            mirror = self.mirrors.get(call_id)
            if mirror is None:
                mirror = self.mirrors[call_id] = Mirror(call_id)
                mirror.task = asyncio.get_running_loop().create_task(
                    self._load(mirror), name=f"mirror:{call_id}"
                )
        ready = asyncio.ensure_future(mirror.ready.wait())
        assert mirror.task is not None
        await asyncio.wait({ready, mirror.task}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        return mirror.ready.is_set() and self.hub.feed(call_id) is not None

    def stop(self, call_id: str) -> None:
        """The call starts here: stop mirroring it."""
        mirror = self.mirrors.pop(call_id, None)
        if mirror is not None and mirror.task is not None:
            mirror.task.cancel()

    async def _load(self, mirror: Mirror) -> None:
        """Load a followed call's history into the hub; `run` relays what comes next."""
        call_id = mirror.call_id
        key = self.link.events_key(call_id)
        feed = mirror.feed = self.hub.open_mirror(call_id)
        try:
            after = "-"  # everything the stream holds, in pages of 1000
            while True:
                entries = await self.link.redis.xrange(key, min=after, max="+", count=1000)
                await self._relay(mirror, entries)
                if len(entries) < 1000:
                    break
                after = f"({entries[-1][0]}"
        except Exception as exc:
            self.link.failed("following a call", exc)
            self._forget(mirror)
            if self.hub.feed(call_id) is feed:
                self.hub.drop(feed)
            return
        mirror.ready.set()
        if feed.history and _kind(feed.history[-1]) == "call.ended":
            self.hub.end(call_id)
            self._forget(mirror)
        elif self._wake is not None:
            self._wake.set()

    def _forget(self, mirror: Mirror) -> None:
        if self.mirrors.get(mirror.call_id) is mirror:
            del self.mirrors[mirror.call_id]

    def start(self) -> None:
        """(on the event loop, before `run`)"""
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """One XREAD over the streams of every call followed here (one connection, however
        many calls): each reply is relayed to its mirror's screens at once; a call that
        starts being followed joins within `FOLLOW_BLOCK_MS` (its history is loaded by then,
        and the read resumes from its last seq: nothing is missed)."""
        assert self._wake is not None
        wake = self._wake
        link = self.link
        prefix = len(link.events_key(""))
        delay = 0.1
        while True:
            now = time.monotonic()
            live: dict[str, Mirror] = {}
            for call_id, mirror in list(self.mirrors.items()):
                if not mirror.ready.is_set():
                    continue
                feed = mirror.feed
                if feed is None or self.hub.feed(call_id) is not feed:
                    self._forget(mirror)  # it started here, or was forgotten
                    continue
                if feed.subscribers:
                    mirror.idle_since = None
                elif mirror.idle_since is None:
                    mirror.idle_since = now
                elif now - mirror.idle_since > MIRROR_LINGER:
                    self.hub.drop(feed)
                    self._forget(mirror)
                    continue
                live[call_id] = mirror
            if not live:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await wake.wait()
                continue
            streams = {link.events_key(cid): f"{m.last}-0" for cid, m in live.items()}
            try:
                reply = await link.redis.xread(streams, count=500, block=FOLLOW_BLOCK_MS)
            except Exception as exc:
                link.failed("following calls", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            link.ok()
            for key, entries in reply or []:
                mirror = live[key[prefix:]]
                if self.mirrors.get(mirror.call_id) is not mirror:
                    continue  # the call started here meanwhile
                if await self._relay(mirror, entries):
                    self.hub.end(mirror.call_id)
                    self._forget(mirror)

    async def _relay(self, mirror: Mirror, entries: list[Any]) -> bool:
        """Pass stream entries on to the mirror's screens; True after `call.ended`. A gap in
        the seqs (events that never reached Redis) is filled from the store."""
        feed = mirror.feed
        assert feed is not None
        store = self.link.store
        ended = False
        for entry_id, fields in entries:
            seq = entry_seq(entry_id)
            if seq <= mirror.last:
                continue
            raw = fields.get("e", "")
            if not feed.history and seq > 1:
                feed.base = seq - 1  # the stream begins later (trimmed, or a resumed call)
            elif seq > mirror.last + 1 and store is not None:
                stored = await asyncio.to_thread(store.events, mirror.call_id, (), mirror.last)
                for data in stored:
                    if data["seq"] < seq:
                        self._relay_one(mirror, data["seq"], json.dumps(data, ensure_ascii=False))
            kind = self._relay_one(mirror, seq, raw)
            ended = kind == "call.ended"
        return ended

    def _relay_one(self, mirror: Mirror, seq: int, raw: str) -> str:
        assert mirror.feed is not None
        try:
            data = json.loads(raw)
            kind, ts = str(data.get("type", "")), str(data.get("ts", ""))
            key = (str(data.get("channel", "")), int(data.get("utterance", 0) or 0))
        except (ValueError, AttributeError, TypeError):
            log.error("call %s: seq %d on Redis is not an event; skipped", mirror.call_id, seq)
            return ""
        event = RelayedEvent(call_id=mirror.call_id, seq=seq, ts=ts, kind=kind, raw=raw)
        self.hub.relay(mirror.feed, event, kind, key)
        mirror.last = seq
        self.link.stats.relayed += 1
        return kind


def _kind(event: Event) -> str:
    return event.kind if isinstance(event, RelayedEvent) else event.type
