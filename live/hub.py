"""In-process event hub: per-call ordered history plus live fan-out to bounded subscriber queues."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from assist.events import Event, RelayedEvent, now_iso
from store.calls import STORED_EVENTS

# A held event (published before the store has it) goes to screens once it is written, or
# after this long at the latest: a slow database delays screens this much, never the call.
HOLD_SECONDS = 0.25
# A partial is superseded by the next partial or the final of its utterance: only the newest
# of each utterance stays in a call's history, and of these at most this many (a mono call's
# partials and finals may name different parties, so a final does not always find its own).
OPEN_PARTIALS = 8


class CallActiveError(RuntimeError):
    """A call id that is already streaming."""


class Subscription:
    """A screen's view of one call. `overflowed` is set when it fell too far behind."""

    def __init__(self, hub: EventHub, feed: CallFeed, backlog: int) -> None:
        self.hub = hub
        self.feed = feed
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=backlog + 1)
        self.backlog = backlog
        self.overflowed = False
        self.last_seq = 0

    def _offer(self, event: Event | None) -> None:
        if self.overflowed:
            return
        if event is not None and self.queue.qsize() >= self.backlog:
            # The screen is not reading: cut it loose instead of stalling the call. It can
            # reconnect with ?after_seq=N and continue from where it was.
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(event)

    async def next(self) -> Event | None:
        """The next event, or None once the call has ended (or the screen overflowed)."""
        event = await self.queue.get()
        if event is not None:
            self.last_seq = event.seq
        return event

    def close(self) -> None:
        self.feed.subscribers.discard(self)
        self.hub._forget_if_unused(self.feed)


@dataclass(eq=False)
class CallFeed:
    call_id: str
    history: list[Event] = field(default_factory=list)
    subscribers: set[Subscription] = field(default_factory=set)
    live: bool = False
    ended: bool = False
    touched: float = field(default_factory=time.monotonic)
    # events up to this seq are in the store, not in `history` (a call resumed after a
    # restart, or a long call's oldest events: `trim`)
    base: int = 0
    stored: int = 0  # events up to this seq have been written to the store
    complete: bool = True  # False: the store lost one of its events (the history keeps all)
    # a copy of a call another node runs (multi-node): its events come stamped, `relay`ed in
    mirror: bool = False
    released: int = 0  # events up to this seq have gone to subscribers (the rest are held)
    closing: bool = False  # ended, with events still held: subscribers close after them
    seq: int = 0  # the last seq stamped (the history skips superseded partials)
    # (channel, utterance) → seq of the partial kept in the history, oldest first
    partials: dict[tuple[str, int], int] = field(default_factory=dict)
    superseded: list[int] = field(default_factory=list)  # seqs of partials to forget once sent
    analytics: int = 0  # seq of the `call.analytics` kept in the history (the newest)

    def __post_init__(self) -> None:
        self.seq = max(self.seq, self.base)

    def forget_superseded(self, kind: str, key: tuple[str, int], seq: int) -> None:
        """Drop from the history the partial that event `seq` (a partial or a final of
        utterance `key`: channel, number) replaces, and the oldest partials beyond
        OPEN_PARTIALS, once screens have had them: a screen that joins late or resumes needs
        the newest text of each utterance, not every step of it (a partial still held for
        the store is sent first, then forgotten). Of `call.analytics` (figures of the call so
        far) only the newest is kept."""
        if kind == "call.analytics":
            if self.analytics:
                self.superseded.append(self.analytics)
            self.analytics = seq
            self.forget_sent()
            return
        if kind not in ("transcript.partial", "transcript.final"):
            return
        if key in self.partials:
            self.superseded.append(self.partials.pop(key))
        if kind == "transcript.partial":
            self.partials[key] = seq
            while len(self.partials) > OPEN_PARTIALS:
                self.superseded.append(self.partials.pop(next(iter(self.partials))))
        self.forget_sent()

    def trim(self, keep: int) -> None:
        """Forget the oldest events beyond the newest `keep` that the store has written: a
        screen that asks for them reads them from there (`base` moves past them). What the
        store does not keep (the open partials, the newest analytics) stays."""
        excess = len(self.history) - keep
        if keep <= 0 or excess <= 0:
            return
        n = min(bisect.bisect_right(self.history, self.stored, key=_seq), excess)
        if n > 0:
            front = self.history[:n]
            self.base = max(self.base, front[-1].seq)
            self.history[:n] = [e for e in front if _type(e) not in STORED_EVENTS]

    def forget_sent(self) -> None:
        """Drop the superseded partials that have gone to screens from the history."""
        held = []
        for seq in self.superseded:
            if seq > self.released:
                held.append(seq)
                continue
            at = bisect.bisect_left(self.history, seq, key=_seq)
            if at < len(self.history) and self.history[at].seq == seq:
                del self.history[at]
        self.superseded = held


class HubObserver(Protocol):
    """Told what the hub does (the cluster is one: it sends each event on to Redis)."""

    def opening(self, call_id: str) -> None:
        """A call is about to start publishing on this node."""

    def opened(self, feed: CallFeed) -> None:
        """It did: its feed is open."""

    def sent(self, feed: CallFeed, event: Event) -> None:
        """`event` went to this node's screens (so it is stored, where a store holds it)."""


class EventHub:
    """Stamps `seq`/`ts` on each call's events, keeps the history, and fans them out.

    `subscribe` hands back the history after `after_seq` and registers the live queue in
    the same step (no await between), so a late screen misses nothing the history holds and
    sees nothing twice; the history holds every event but the partials a later partial or
    final of their utterance replaced and all but the newest `call.analytics`. Ended calls
    stay replayable until `keep_ended` newer calls have ended. `keep_events` (with a store):
    a call's history keeps at most this many events once the older ones are written (`base`
    says where it begins: a screen reads the rest from the store); 0: all.
    """

    def __init__(
        self,
        backlog: int = 2000,
        keep_ended: int = 50,
        observers: Iterable[HubObserver] = (),
        keep_events: int = 0,
    ) -> None:
        self.backlog = backlog
        self.keep_ended = keep_ended
        self.keep_events = keep_events
        self.observers = list(observers)
        self._feeds: OrderedDict[str, CallFeed] = OrderedDict()

    def open(self, call_id: str, base: int = 0) -> CallFeed:
        """Start publishing a call; `base`: the last seq already stored for this call id (its
        events go on from there, so a resumed call keeps one gap-free sequence)."""
        for observer in self.observers:
            observer.opening(call_id)
        feed = self._feeds.get(call_id)
        if feed is not None and feed.live:
            raise CallActiveError(call_id)
        if feed is None or feed.ended or base or feed.mirror:
            # a reused id starts a fresh feed; screens of the old one have had call.ended
            # (a mirror's seqs belong to another node: `base`, from the store, counts)
            old = feed
            kept = old.seq if old is not None and not old.mirror else 0
            feed = CallFeed(call_id, base=max(base, kept), released=max(base, kept))
            if old is not None and not old.ended:
                feed.subscribers = old.subscribers  # screens waiting for the call
                for sub in feed.subscribers:
                    sub.feed = feed
            self._feeds[call_id] = feed
        feed.live = True
        self._feeds.move_to_end(call_id)
        for observer in self.observers:
            observer.opened(feed)
        return feed

    def publish(self, event: Event, feed: CallFeed | None = None, *, held: bool = False) -> Event:
        """Stamp and fan out; `feed`: the call's own feed (its session holds it: events
        published after `end`, such as revisions, still follow its seq). `held`: not sent
        until `release` (the store has written it) or HOLD_SECONDS have passed."""
        feed = feed if feed is not None else self._feeds[event.call_id]
        stamped = dataclasses.replace(event, seq=feed.seq + 1, ts=now_iso())
        feed.seq = stamped.seq
        feed.history.append(stamped)
        key = (getattr(stamped, "channel", ""), getattr(stamped, "utterance", 0))
        feed.forget_superseded(stamped.type, key, stamped.seq)
        feed.touched = time.monotonic()
        if held:
            asyncio.get_running_loop().call_later(HOLD_SECONDS, self.release, feed, stamped.seq)
        else:
            self.release(feed, stamped.seq)
        return stamped

    def release(self, feed: CallFeed, seq: int) -> None:
        """Send the held events of `feed` up to `seq` (in order; each once)."""
        if seq <= feed.released:
            return
        first = bisect.bisect_right(feed.history, feed.released, key=_seq)
        last = bisect.bisect_right(feed.history, seq, key=_seq)
        feed.released = seq
        for event in feed.history[first:last]:
            self._send(feed, event)
        if feed.superseded:
            feed.forget_sent()
        if feed.closing and feed.released >= feed.seq:
            feed.closing = False
            for sub in list(feed.subscribers):
                sub._offer(None)

    def release_written(self, call_id: str, seq: int, *, complete: bool = True) -> None:
        """The store has written the call's events up to `seq`; `complete` False: it lost
        one of them (its buffer was full, or it refused one), so none is let go from memory."""
        feed = self._feeds.get(call_id)
        if feed is not None and not feed.mirror:
            feed.stored = max(feed.stored, min(seq, feed.seq))
            feed.complete = feed.complete and complete
            self.release(feed, feed.stored)
            if feed.complete:
                feed.trim(self.keep_events)

    def _send(self, feed: CallFeed, event: Event) -> None:
        for sub in list(feed.subscribers):
            sub._offer(event)
        for observer in self.observers:
            observer.sent(feed, event)

    def open_mirror(self, call_id: str, base: int = 0) -> CallFeed:
        """A feed for a call another node runs: screens here subscribe to it as to a local
        call; its events arrive already stamped (`relay`). Screens already waiting for the
        call move to it."""
        old = self._feeds.get(call_id)
        feed = CallFeed(call_id, base=base, mirror=True)
        if old is not None and not old.ended and not old.live:
            feed.subscribers = old.subscribers
            for sub in feed.subscribers:
                sub.feed = feed
        self._feeds[call_id] = feed
        self._feeds.move_to_end(call_id)
        return feed

    def relay(
        self, feed: CallFeed, event: Event, kind: str = "", key: tuple[str, int] = ("", 0)
    ) -> None:
        """Add an event stamped by the node that runs the call (seq and ts kept) and send it
        on; `kind` and `key` (its type, and a transcript's channel and utterance) let the
        history forget partials as the node that runs the call does."""
        feed.seq = max(feed.seq, event.seq)
        feed.history.append(event)
        feed.touched = time.monotonic()
        for sub in list(feed.subscribers):
            sub._offer(event)
        feed.released = max(feed.released, event.seq)  # (sent: a mirror holds nothing back)
        feed.forget_superseded(kind, key, event.seq)
        if kind == "error" and "store_unavailable" in event.to_json():
            feed.complete = False  # the call's node told its screens its store lost events
        if self.keep_events and feed.complete:
            # the node that runs the call sent it once stored (or held it a moment): what
            # memory lets go of, 1000 events later, is read from the shared store, as what
            # the Redis stream let go of already is
            feed.stored = feed.seq
            feed.trim(self.keep_events)

    def drop(self, feed: CallFeed) -> None:
        """Forget a mirror nobody watches any more (its screens, if any, are ended)."""
        for sub in list(feed.subscribers):
            sub._offer(None)
        if self._feeds.get(feed.call_id) is feed:
            del self._feeds[feed.call_id]

    def end(self, call_id: str) -> None:
        feed = self._feeds.get(call_id)
        if feed is None:
            return
        feed.live = False
        feed.ended = True
        if not feed.mirror and feed.released < feed.seq:  # events still held: close after them
            feed.closing = True
        else:
            for sub in list(feed.subscribers):
                sub._offer(None)
        self._evict()

    def subscribe(self, call_id: str, after_seq: int = 0) -> tuple[list[Event], Subscription]:
        """History after `after_seq` plus a live subscription (a call may not have begun yet)."""
        feed = self._feeds.get(call_id)
        if feed is None:
            feed = CallFeed(call_id)
            self._feeds[call_id] = feed
            self._feeds.move_to_end(call_id, last=False)  # waiting screens are evicted first
        sub = Subscription(self, feed, self.backlog)
        # by seq, not by position: a mirrored call may lack partials its node never sent out
        lo = bisect.bisect_right(feed.history, after_seq, key=_seq)
        hi = len(feed.history)
        if not feed.mirror:  # held events come with their release
            hi = bisect.bisect_right(feed.history, feed.released, key=_seq)
        backlog = feed.history[lo:hi]
        if backlog:
            sub.last_seq = backlog[-1].seq
        if feed.ended and not feed.closing:
            sub.queue.put_nowait(None)
        else:
            feed.subscribers.add(sub)
        return backlog, sub

    def feed(self, call_id: str) -> CallFeed | None:
        """The call's feed on this node: live here, mirrored from another node, or kept."""
        return self._feeds.get(call_id)

    def live_calls(self) -> list[CallFeed]:
        """Calls running on this node (mirrors of other nodes' calls are not)."""
        return [feed for feed in self._feeds.values() if feed.live]

    def _forget_if_unused(self, feed: CallFeed) -> None:
        """A screen that waited for a call that never started leaves nothing behind."""
        unused = not feed.live and not feed.history and not feed.subscribers
        if unused and self._feeds.get(feed.call_id) is feed:
            del self._feeds[feed.call_id]

    def _evict(self) -> None:
        ended = [
            cid
            for cid, feed in self._feeds.items()
            if feed.ended or (not feed.live and not feed.history and not feed.subscribers)
        ]
        for call_id in ended[: max(0, len(ended) - self.keep_ended)]:
            del self._feeds[call_id]


def _seq(event: Event) -> int:
    return event.seq


def _type(event: Event) -> str:
    return event.kind if isinstance(event, RelayedEvent) else event.type
