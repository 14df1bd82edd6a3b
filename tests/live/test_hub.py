"""The event hub: ordered history, late joiners without gap or duplicate, slow screens cut."""

import json

from assist.events import CallEnded, CallStarted, TranscriptFinal, TranscriptPartial, Word
from live.hub import CallActiveError, EventHub


def partial(i: int, utterance: int | None = None) -> TranscriptPartial:
    """(each of its own utterance unless told: a later partial of one replaces the earlier)"""
    return TranscriptPartial(
        call_id="c",
        channel="customer",
        utterance=i if utterance is None else utterance,
        start=0,
        end=i,
        text=f"word {i}",
    )


async def test_late_joiner_gets_history_then_live() -> None:
    hub = EventHub()
    hub.open("c")
    hub.publish(CallStarted(call_id="c", channels=("customer",)))
    for i in range(5):
        hub.publish(partial(i))
    backlog, sub = hub.subscribe("c")
    for i in range(5, 8):
        hub.publish(partial(i))
    hub.end("c")
    live = []
    while (event := await sub.next()) is not None:
        live.append(event)
    seqs = [e.seq for e in backlog + live]
    assert seqs == list(range(1, 10))
    assert backlog[0].type == "call.started" and all(e.ts for e in backlog + live)


async def test_resume_after_seq_and_ended_call_replay() -> None:
    hub = EventHub()
    hub.open("c")
    for i in range(6):
        hub.publish(partial(i))
    hub.end("c")
    backlog, sub = hub.subscribe("c", after_seq=4)
    assert [e.seq for e in backlog] == [5, 6]
    assert await sub.next() is None  # ended: nothing more will come


async def test_slow_screen_is_cut_loose_not_the_call() -> None:
    hub = EventHub(backlog=3)
    hub.open("c")
    _, slow = hub.subscribe("c")
    for i in range(10):
        hub.publish(partial(i))  # never blocks
    assert slow.overflowed
    got = []
    while (event := await slow.next()) is not None:
        got.append(event.seq)
    assert got == [1, 2, 3]
    assert hub.feed("c").seq == 10  # type: ignore[union-attr]


def test_duplicate_live_call_is_refused() -> None:
    hub = EventHub()
    hub.open("c")
    try:
        hub.open("c")
    except CallActiveError:
        pass
    else:
        raise AssertionError("a second open of a live call must fail")
    hub.end("c")
    hub.open("c")  # a finished id may be reused


def test_event_json_shape() -> None:
    event = TranscriptFinal(
        call_id="c",
        seq=3,
        ts="t",
        channel="agent",
        utterance=2,
        start=1.0,
        end=2.0,
        text="hi there",
        words=(Word("hi", 1.0, 1.4, 0.9),),
        confidence=0.9,
    )
    d = json.loads(event.to_json())
    assert d["type"] == "transcript.final" and d["seq"] == 3 and d["channel"] == "agent"
    assert d["words"] == [{"word": "hi", "start": 1.0, "end": 1.4, "probability": 0.9}]
    assert event.to_dict()["text"] == "hi there"


async def test_waiting_screen_for_unknown_call_leaves_nothing_behind() -> None:
    hub = EventHub()
    backlog, sub = hub.subscribe("never-started")
    assert backlog == [] and hub.feed("never-started") is not None
    sub.close()
    assert hub.feed("never-started") is None


async def test_screen_waiting_before_the_call_starts_gets_it_all() -> None:
    hub = EventHub()
    _, sub = hub.subscribe("c")
    hub.open("c")
    hub.publish(CallStarted(call_id="c", channels=("customer",)))
    hub.end("c")
    first = await sub.next()
    assert first is not None and first.type == "call.started" and await sub.next() is None


def test_resumed_call_continues_its_sequence() -> None:
    hub = EventHub()
    hub.open("c", base=7)  # 7 events of this call are already in the store
    event = hub.publish(CallEnded(call_id="c", reason="stop", duration=1.0))
    assert event.seq == 8
    backlog, sub = hub.subscribe("c", after_seq=7)
    assert [e.seq for e in backlog] == [8] and sub.feed.base == 7
    assert [e.seq for e in hub.subscribe("c", after_seq=0)[0]] == [8]  # older ones: the store


async def test_held_events_go_out_once_written_in_order_then_the_end() -> None:
    """Events published `held` reach screens when the store has written them (`release`), in
    order, each once; a late joiner gets only what was released, the rest live; a call that
    ends with events still held closes its screens after them."""
    hub = EventHub()
    feed = hub.open("c")
    _, early = hub.subscribe("c")
    for i in range(4):
        hub.publish(partial(i), held=True)
    assert early.queue.empty()  # nothing was written yet
    hub.release_written("c", 2)
    backlog, late = hub.subscribe("c")
    assert [e.seq for e in backlog] == [1, 2]  # only what is stored
    hub.publish(CallEnded(call_id="c", reason="stop", duration=1.0), held=True)
    hub.end("c")
    assert feed.closing
    hub.release_written("c", 5)
    hub.release_written("c", 3)  # late and repeated news changes nothing
    for sub, first in ((early, 1), (late, 3)):
        got = []
        while (event := await sub.next()) is not None:
            got.append(event.seq)
        assert got == list(range(first, 6))


async def test_held_events_go_out_after_the_hold_if_the_store_is_slow() -> None:
    import asyncio

    from live.hub import HOLD_SECONDS

    hub = EventHub()
    hub.open("c")
    _, sub = hub.subscribe("c")
    hub.publish(partial(1), held=True)  # never written: the store is stalled
    async with asyncio.timeout(HOLD_SECONDS + 5):
        event = await sub.next()
    assert event is not None and event.seq == 1


async def test_history_keeps_the_newest_partial_of_each_utterance_only() -> None:
    from live.hub import OPEN_PARTIALS

    hub = EventHub()
    hub.open("c")
    hub.publish(CallStarted(call_id="c", channels=("customer",)))
    for i in range(5):  # seqs 2..6, all of utterance 1
        hub.publish(partial(i, utterance=1))
    backlog, _ = hub.subscribe("c")
    assert [(e.seq, e.type) for e in backlog] == [(1, "call.started"), (6, "transcript.partial")]
    # a screen that saw seq 3 resumes with the newest text of the utterance
    assert [e.seq for e in hub.subscribe("c", after_seq=3)[0]] == [6]
    hub.publish(
        TranscriptFinal(
            call_id="c", channel="customer", utterance=1, start=0, end=1, text="word 4", words=()
        )
    )
    feed = hub.feed("c")
    assert feed is not None and feed.seq == 7
    assert [e.type for e in feed.history] == ["call.started", "transcript.final"]
    for i in range(OPEN_PARTIALS + 3):  # utterances never finished: the oldest go
        hub.publish(partial(i, utterance=100 + i))
    kept = [e.utterance for e in feed.history if isinstance(e, TranscriptPartial)]
    assert kept == [100 + i for i in range(3, OPEN_PARTIALS + 3)]
    assert feed.seq == 7 + OPEN_PARTIALS + 3  # seqs go on: nothing is reused


async def test_partials_held_for_the_store_all_reach_screens_before_they_are_forgotten() -> None:
    hub = EventHub()
    feed = hub.open("c")
    _, sub = hub.subscribe("c")
    for i in range(4):  # a slow store: each partial is superseded while still held
        hub.publish(partial(i, utterance=1), held=True)
    assert [e.seq for e in feed.history] == [1, 2, 3, 4]  # none forgotten before it is sent
    hub.release_written("c", 4)
    assert [e.seq for e in feed.history] == [4]  # sent: only the newest is kept
    hub.end("c")
    got = []
    while (event := await sub.next()) is not None:
        got.append(event.seq)
    assert got == [1, 2, 3, 4]


def final(i: int) -> TranscriptFinal:
    return TranscriptFinal(
        call_id="c",
        channel="customer",
        utterance=i,
        start=0,
        end=i,
        text=f"word {i}",
        words=(Word(word="word", start=0, end=i, probability=1.0),),
    )


async def test_a_long_call_keeps_only_its_newest_events_once_the_older_are_stored() -> None:
    """With `keep_events` (a store is configured) the history lets go of the oldest events the
    store has written, and `base` says where it begins: a screen reads the rest from the
    store. What is not yet written stays, however many events that is."""
    hub = EventHub(keep_events=3)
    feed = hub.open("c")
    for i in range(10):
        hub.publish(final(i), held=True)
    assert len(feed.history) == 10  # nothing written yet: nothing let go
    hub.release_written("c", 8)
    assert [e.seq for e in feed.history] == [8, 9, 10]
    assert feed.base == 7
    backlog, sub = hub.subscribe("c")
    assert [e.seq for e in backlog] == [8]  # 9 and 10 are still held for the store
    hub.release_written("c", 10)
    hub.end("c")
    live = []
    while (event := await sub.next()) is not None:
        live.append(event.seq)
    assert live == [9, 10]
    assert [e.seq for e in feed.history] == [8, 9, 10]


def test_without_a_store_every_event_is_kept() -> None:
    hub = EventHub()  # keep_events 0: screens have nowhere else to read the call from
    feed = hub.open("c")
    for i in range(50):
        hub.publish(final(i))
    assert len(feed.history) == 50 and feed.base == 0


def test_only_the_newest_call_analytics_stays_in_the_history() -> None:
    from assist.events import CallAnalyticsEvent

    hub = EventHub()
    feed = hub.open("c")
    for _ in range(5):
        hub.publish(
            CallAnalyticsEvent(
                call_id="c",
                duration_seconds=1.0,
                talk_seconds={},
                silence_seconds=0.0,
                longest_silence_seconds=0.0,
                overtalk_seconds=0.0,
                interruptions={},
                words_per_minute={},
                agent_response_seconds=None,
                sentiment={},
            )
        )
        hub.publish(final(len(feed.history)))
    kinds = [e.type for e in feed.history]
    assert kinds.count("call.analytics") == 1 and kinds.count("transcript.final") == 5
    assert feed.history[-2].type == "call.analytics"  # the newest


async def test_a_call_whose_store_lost_an_event_keeps_its_whole_history() -> None:
    """Once the store has lost one of a call's events (its buffer was full, or it refused
    one), the store no longer holds all of what memory would let go: nothing is let go."""
    hub = EventHub(keep_events=3)
    feed = hub.open("c")
    for i in range(10):
        hub.publish(final(i), held=True)
    hub.release_written("c", 5, complete=False)
    hub.release_written("c", 10)
    assert len(feed.history) == 10 and feed.base == 0


async def test_a_mirror_keeps_only_its_newest_events() -> None:
    """A copy of another node's call (multi-node) is bounded as the call's own node bounds
    it: the node sent each event once stored, so a screen here reads what the mirror let go
    of from the shared store (`base`), and the open partial stays. Without a store (0) the
    mirror keeps all: there is nowhere else to read it from."""
    from assist.events import RelayedEvent

    kinds = ["transcript.partial"] + ["transcript.final"] * 9
    hubs = {keep: EventHub(keep_events=keep) for keep in (3, 0)}
    for hub in hubs.values():
        feed = hub.open_mirror("c")
        for seq, kind in enumerate(kinds, start=1):
            event = RelayedEvent(call_id="c", seq=seq, ts="", kind=kind, raw="{}")
            hub.relay(feed, event, kind, ("customer", 100 if seq == 1 else seq))
    bounded, whole = hubs[3].feed("c"), hubs[0].feed("c")
    assert bounded is not None and whole is not None
    assert [e.seq for e in bounded.history] == [1, 8, 9, 10]  # 1: utterance 100's partial
    assert bounded.base == 7
    assert [e.seq for e in whole.history] == list(range(1, 11)) and whole.base == 0
    backlog, _ = hubs[3].subscribe("c", after_seq=8)
    assert [e.seq for e in backlog] == [9, 10]


def test_a_mirror_whose_node_lost_stored_events_keeps_them_all() -> None:
    """The node that runs the call told its screens its store lost events (an `error`
    store_unavailable, relayed here too): the mirror no longer lets any go, as that node."""
    from assist.events import RelayedEvent

    hub = EventHub(keep_events=3)
    feed = hub.open_mirror("c")
    lost = '{"type":"error","code":"store_unavailable","message":"not stored"}'
    for seq in range(1, 11):
        kind, raw = ("error", lost) if seq == 2 else ("transcript.final", "{}")
        hub.relay(feed, RelayedEvent(call_id="c", seq=seq, ts="", kind=kind, raw=raw), kind)
    assert [e.seq for e in feed.history] == list(range(1, 11)) and feed.base == 0
