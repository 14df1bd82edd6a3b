"""The call store on both backends: writes as events happen, search, exports, summary,
deletion, retention, migrations and crash marking. Real SQLite and real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from assist.events import (
    ActionEvent,
    CallEnded,
    CallStarted,
    ChecklistEvent,
    Event,
    FeedbackEvent,
    IntentEvent,
    SentimentEvent,
    SuggestionEvent,
    TranscriptFinal,
    TranscriptPartial,
    Word,
)
from live.hub import EventHub
from store.calls import MIGRATIONS, CallQuery, CallStore, StoreError, sqlite_path
from store.exports import export, summary


def play(store: CallStore, call_id: str, *, end: bool = True, agent: str = "a-17") -> list[Event]:
    """A short call through a real hub, each stamped event recorded as the server does."""
    hub = EventHub()
    hub.open(call_id)
    out: list[Event] = []

    def pub(event: Event) -> None:
        stamped = hub.publish(event)
        store.record(stamped)
        out.append(stamped)

    pub(
        CallStarted(
            call_id=call_id,
            channels=("customer", "agent"),
            metadata={"agent": agent},
            customer={"id": "C-1001", "name": "Crystal Minh"},
        )
    )
    pub(
        TranscriptPartial(
            call_id=call_id, channel="customer", utterance=0, start=0.5, end=1.0, text="I sent back"
        )
    )
    pub(
        TranscriptFinal(
            call_id=call_id,
            channel="customer",
            utterance=0,
            start=0.5,
            end=3.2,
            text="I sent back the boots and my refund never arrived.",
            words=(Word("I", 0.5, 0.6, 0.9),),
            confidence=0.9,
        )
    )
    pub(
        IntentEvent(
            call_id=call_id,
            channel="customer",
            utterance=0,
            intent="refund_status",
            label="Refund status",
            confidence=0.8,
            top=(),
            current="refund_status",
            current_label="Refund status",
            stage="middle",
        )
    )
    pub(
        SentimentEvent(
            call_id=call_id,
            channel="customer",
            utterance=0,
            label="negative",
            score=-0.6,
            probabilities={},
            trend=-0.6,
            negative_streak=1,
        )
    )
    pub(
        SuggestionEvent(
            call_id=call_id,
            kind="reply",
            id="ask_order",
            channel="customer",
            utterance=0,
            score=0.8,
            intent="refund_status",
            reason="r",
            text="Could you read me the order number?",
        )
    )
    pub(
        ActionEvent(
            call_id=call_id,
            id="validate",
            action="Validate the purchase",
            reason="policy",
            priority=1,
            channel="customer",
            utterance=0,
        )
    )
    pub(FeedbackEvent(call_id=call_id, target="validate", kind="action", action="done"))
    pub(
        TranscriptFinal(
            call_id=call_id,
            channel="agent",
            utterance=0,
            start=3.5,
            end=6.0,
            text="I'm sorry --> let me check that for you.",
            confidence=0.8,
        )
    )
    pub(
        ChecklistEvent(
            call_id=call_id,
            items=(
                {
                    "id": "recap",
                    "label": "Recap",
                    "due": "any",
                    "done": True,
                    "utterance": 0,
                    "at": 6.0,
                },
            ),
            changed=("recap",),
            stage="middle",
            final=True,
        )
    )
    if end:
        pub(CallEnded(call_id=call_id, reason="stop", duration=6.5))
    return out


def test_everything_but_partials_is_kept(store_url: str) -> None:
    store = CallStore(store_url)
    events = play(store, "c-1")
    stored = store.events("c-1")
    assert [e["seq"] for e in stored] == [e.seq for e in events if e.type != "transcript.partial"]
    call = store.get_call("c-1")
    assert call is not None
    assert call["agent"] == "a-17" and call["customer_name"] == "Crystal Minh"
    assert call["outcome"] == "stop" and call["duration"] == 6.5
    assert call["intents"] == ["refund_status"] and call["sentiment_label"] == "negative"
    assert call["checklist"] == {"done": 1, "total": 1}
    utterances = store.utterances("c-1")
    assert [u["channel"] for u in utterances] == ["customer", "agent"]
    assert utterances[0]["words"][0]["word"] == "I"
    assert store.last_seq("c-1") == events[-1].seq
    store.close()


def test_search_full_text_and_filters(store_url: str) -> None:
    store = CallStore(store_url)
    play(store, "c-1", agent="alice")
    play(store, "c-2", agent="bob")
    store.record(dataclass_replace_text(store, "c-2"))
    hits, total = store.search(CallQuery(q="refund arrived"))
    assert total == 2 and {c["id"] for c in hits} == {"c-1", "c-2"}
    assert store.search(CallQuery(q="boots", agent="bob"))[0][0]["id"] == "c-2"
    assert store.search(CallQuery(q="giraffe"))[1] == 0
    assert store.search(CallQuery(q='"; DROP TABLE calls; --'))[1] == 0  # never FTS syntax
    assert store.search(CallQuery(intent="refund_status"))[1] == 2
    assert store.search(CallQuery(intent="refund"))[1] == 0  # whole intent ids only
    assert store.search(CallQuery(sentiment="negative"))[1] == 2
    assert store.search(CallQuery(checklist_complete=True))[1] == 2
    assert store.search(CallQuery(has_alerts=True))[1] == 0
    today = datetime.now(UTC).date().isoformat()
    assert store.search(CallQuery(date_from=today, date_to=today))[1] == 2
    assert store.search(CallQuery(date_to="2000-01-01"))[1] == 0
    page, total = store.search(CallQuery(limit=1, offset=1))
    assert total == 2 and len(page) == 1
    # a customer search matches the name as typed: % and _ are not wildcards
    assert store.search(CallQuery(customer="crystal"))[1] == 2
    assert store.search(CallQuery(customer="%"))[1] == 0
    assert store.search(CallQuery(customer="cr_stal"))[1] == 0
    store.close()


def dataclass_replace_text(store: CallStore, call_id: str) -> Event:
    """One more final on call_id, stamped after the last stored event."""
    return TranscriptFinal(
        call_id=call_id,
        seq=store.last_seq(call_id) + 1,
        ts="t",
        channel="customer",
        utterance=5,
        start=7.0,
        end=8.0,
        text="also the second pair of boots",
        confidence=0.7,
    )


def test_exports_and_summary(store_url: str) -> None:
    store = CallStore(store_url)
    play(store, "c-1")
    call = store.get_call("c-1")
    assert call is not None
    utterances = store.utterances("c-1")
    vtt = export(call, utterances, "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.500 --> 00:00:03.200\n<v Customer>I sent back")
    assert "-->" not in vtt.split("\n")[-2]  # cue text cannot contain the arrow
    srt = export(call, utterances, "srt")
    assert srt.startswith("1\n00:00:00,500 --> 00:00:03,200\nCustomer: I sent back")
    assert "2\n00:00:03,500 --> 00:00:06,000\nAgent:" in srt
    rows = list(csv.DictReader(io.StringIO(export(call, utterances, "csv"))))
    assert [r["channel"] for r in rows] == ["customer", "agent"] and rows[0]["start"] == "0.50"
    txt = export(call, utterances, "txt")
    assert "[00:00:00] Customer: I sent back the boots" in txt
    assert json.loads(export(call, utterances, "json"))["utterances"][1]["channel"] == "agent"
    with pytest.raises(ValueError, match="unknown format"):
        export(call, utterances, "docx")
    result = summary(call, store.events("c-1"))
    assert result["reason"]["intent"] == "refund_status"
    assert result["actions"] == [
        {
            "id": "validate",
            "action": "Validate the purchase",
            "reason": "policy",
            "priority": 1,
            "status": "taken",
        }
    ]
    assert result["suggestions"][0]["status"] == "shown"
    assert result["sentiment"]["end"] == -0.6
    assert result["checklist"]["complete"] and result["utterances"] == 2
    store.close()


def test_reviews_delete_and_retention(store_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = CallStore(store_url)
    play(store, "old")
    play(store, "new")
    audio = tmp_path / "old.wav"
    audio.write_bytes(b"RIFF")
    store.add_recording("old", "customer", audio, 16000)
    review = store.add_review(
        "new",
        "qa-1",
        {"greeting": 5, "empathy": 3},
        [{"utterance": 0, "channel": "agent", "text": "good"}],
    )
    assert review["score"] == 4.0 and store.reviews("new")[0]["comments"][0]["text"] == "good"
    later = datetime.now(UTC) + timedelta(days=31)
    assert sorted(store.purge(30, now=later)) == ["new", "old"]
    assert store.get_call("old") is None and not audio.exists()
    assert store.events("new") == [] and store.utterances("old") == []
    assert store.search(CallQuery(q="boots"))[1] == 0  # the search index forgot them too
    play(store, "kept")
    assert store.purge(30) == []
    assert store.delete_call("kept") and not store.delete_call("kept")
    store.close()


def test_crashed_calls_are_marked_interrupted_on_open(store_url: str) -> None:
    store = CallStore(store_url)
    play(store, "live", end=False)
    assert store.get_call("live")["outcome"] == "in_progress"  # type: ignore[index]
    store.close()
    reopened = CallStore(store_url)  # migrations run again: nothing to do, nothing lost
    assert reopened.interrupted_at_open == ["live"]
    call = reopened.get_call("live")
    assert call is not None and call["outcome"] == "interrupted" and call["ended_at"]
    assert len(reopened.utterances("live")) == 2
    assert reopened.schema_version() == len(MIGRATIONS)
    reopened.close()


def test_bad_urls_are_named() -> None:
    with pytest.raises(StoreError, match="use sqlite:///PATH or postgresql://"):
        CallStore("mysql://x")
    with pytest.raises(StoreError, match=r"cannot connect to PostgreSQL at .*:\*\*\*@"):
        CallStore("postgresql://u:secret@127.0.0.1:1/none")
    assert sqlite_path("sqlite:////abs/x.db").as_posix() == "/abs/x.db"  # type: ignore[union-attr]
    assert sqlite_path("sqlite://") is None


def test_resumed_call_keeps_both_parts_and_never_reuses_a_seq(store_url: str) -> None:
    store = CallStore(store_url)
    hub = EventHub()
    hub.open("r-1")

    def pub(event: Event) -> Event:
        stamped = hub.publish(event)
        store.record(stamped)
        return stamped

    pub(CallStarted(call_id="r-1", channels=("customer",)))
    pub(
        TranscriptFinal(
            call_id="r-1",
            channel="customer",
            utterance=0,
            start=0.0,
            end=2.0,
            text="my card was stolen yesterday",
        )
    )
    for _ in range(3):  # partials a screen saw, never stored
        seen = pub(
            TranscriptPartial(
                call_id="r-1", channel="customer", utterance=1, start=2.5, end=3.0, text="and"
            )
        )
    store.close()
    store = CallStore(store_url)  # the process died; the platform reconnects the same call
    assert store.last_seq("r-1") == seen.seq == 5
    hub = EventHub()
    hub.open("r-1", base=store.last_seq("r-1"))
    again = pub(CallStarted(call_id="r-1", channels=("customer",)))
    assert again.seq == 6  # after everything a screen saw
    pub(
        TranscriptFinal(
            call_id="r-1", channel="customer", utterance=0, start=0.0, end=1.0, text="thanks, bye"
        )
    )
    assert [u["text"] for u in store.utterances("r-1")] == [
        "my card was stolen yesterday",
        "thanks, bye",
    ]
    assert store.search(CallQuery(q="stolen"))[1] == 1
    assert store.get_call("r-1")["outcome"] == "in_progress"  # type: ignore[index]
    assert not store.delete_call("r-1")  # never while in progress
    assert store.purge(0, now=datetime.now(UTC) + timedelta(days=1)) == []
    store.close()


def test_webvtt_escapes_markup() -> None:
    call = {"id": "x", "started_at": "t", "source": "native"}
    vtt = export(
        call,
        [
            {
                "channel": "agent",
                "utterance": 0,
                "start": 0.0,
                "end": 1.0,
                "text": "AT&T <3 you",
                "confidence": 1.0,
            }
        ],
        "vtt",
    )
    assert "<v Agent>AT&amp;T &lt;3 you" in vtt


def test_nodes_starting_at_once_migrate_a_new_database_once() -> None:
    """Several nodes of one service opening a new PostgreSQL database at the same moment."""
    import threading

    from tests.conftest import fresh_postgres, postgres_url

    url = postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL: set CALLCUE_TEST_DATABASE_URL (.ci/run does)")
    fresh_postgres(url)
    errors: list[Exception] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        start.wait()
        try:
            CallStore(url, recover=False).close()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = CallStore(url, recover=False)
    assert store.schema_version() == len(MIGRATIONS)
    store.close()


def test_the_language_of_each_final_is_stored_and_exported(store_url: str) -> None:
    store = CallStore(store_url)
    hub = EventHub()
    hub.open("lang-1")
    for event in (
        CallStarted(call_id="lang-1", channels=("customer",), language="auto"),
        TranscriptFinal(
            call_id="lang-1",
            channel="customer",
            utterance=1,
            start=0.2,
            end=1.9,
            text="Ich möchte meine Kreditkarte sperren lassen.",
            language="de",
        ),
    ):
        store.record(hub.publish(event))
    call = store.get_call("lang-1")
    assert call is not None
    [utterance] = store.utterances("lang-1")
    assert utterance["language"] == "de"
    rows = list(csv.DictReader(io.StringIO(export(call, [utterance], "csv"))))
    assert rows[0]["language"] == "de"
    assert json.loads(export(call, [utterance], "json"))["utterances"][0]["language"] == "de"
    started = store.events("lang-1", types=["call.started"])[0]
    assert started["language"] == "auto"
    store.close()


def test_the_owner_is_kept_for_resumes_and_never_sent_or_stored_with_the_event(
    store_url: str,
) -> None:
    from live.session import resume_refusal

    store = CallStore(store_url)
    assert store.ownership("o-1") is None
    hub = EventHub()
    hub.open("o-1")
    started = hub.publish(CallStarted(call_id="o-1", channels=("customer",), owner="digest-a"))
    assert "owner" not in started.to_dict() and "digest-a" not in started.to_json()
    store.record(started)
    stored = store.ownership("o-1")
    assert stored is not None and stored.owner == "digest-a" and stored.in_progress
    assert "digest-a" not in json.dumps(store.events("o-1"))
    store.record(hub.publish(CallEnded(call_id="o-1", reason="stop", duration=1.0)))
    stored = store.ownership("o-1")
    assert stored is not None and not stored.in_progress and stored.ended is not None
    assert stored.last_seq == 2
    now = stored.ended + 5
    assert resume_refusal(stored, "digest-a", 600, now) is None
    assert "taken" in str(resume_refusal(stored, "digest-b", 600, now))
    assert "too long ago" in str(resume_refusal(stored, "digest-a", 600, stored.ended + 601))
    # a resume by its owner keeps the owner; the row's owner is never rewritten
    again = EventHub()
    again.open("o-1", base=stored.last_seq)
    store.record(again.publish(CallStarted(call_id="o-1", channels=("customer",), owner="x")))
    assert store.ownership("o-1").owner == "digest-a"  # type: ignore[union-attr]
    store.close()


def test_the_writer_never_waits_for_a_locked_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`write` only queues: with the SQLite file locked by another process's transaction it
    returns at once, and the writer thread stores the events once the lock is gone."""
    import sqlite3
    import time as clock

    from store.calls import StoreWriter

    url = f"sqlite:///{tmp_path}/locked.db"
    store = CallStore(url)
    writer = StoreWriter(store)
    hub = EventHub()
    hub.open("w-1")
    blocker = sqlite3.connect(str(tmp_path / "locked.db"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        started = clock.monotonic()
        writer.write(hub.publish(CallStarted(call_id="w-1", channels=("customer",))))
        for i in range(50):
            writer.write(
                hub.publish(
                    TranscriptPartial(
                        call_id="w-1", channel="customer", utterance=1, start=0, end=i, text="x"
                    )
                )
            )
        queued = clock.monotonic() - started
        assert not writer.wait_written(writer.queued, 0.3)  # still held up by the lock
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert queued < 0.3, queued  # the busy timeout (5 s) would have been waited here before
    assert writer.wait_written(writer.queued, 30)
    assert store.last_seq("w-1") == 51 and writer.written == 51
    writer.close()
    store.close()


def test_a_full_buffer_drops_and_tells_the_call_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Past its limit the writer keeps nothing more: each event is counted, the call is
    told once (`on_loss`) and marked as one whose history the store does not hold whole."""
    import sqlite3

    from store.calls import StoreWriter

    store = CallStore(f"sqlite:///{tmp_path}/full.db")
    told: list[str] = []
    writer = StoreWriter(store, limit=2, on_loss=told.append)
    hub = EventHub()
    hub.open("f-1")
    blocker = sqlite3.connect(str(tmp_path / "full.db"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the database stops taking writes
    try:
        for _ in range(5):
            writer.write(hub.publish(CallEnded(call_id="f-1", reason="stop", duration=1.0)))
        assert writer.full and writer.dropped == 3
        assert told == ["f-1"] and writer.incomplete == {"f-1"}
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert writer.wait_written(writer.queued, 30)  # the two kept are written once it answers
    writer.close()
    store.close()


def test_an_event_the_database_refuses_does_not_hold_up_the_rest(store_url: str) -> None:
    from store.calls import StoreWriter

    store = CallStore(store_url)
    writer = StoreWriter(store)
    hub = EventHub()
    hub.open("ghost")
    hub.open("real")
    # an event of a call the store never had (deleted meanwhile): its row is refused
    writer.write(hub.publish(CallEnded(call_id="ghost", reason="stop", duration=1.0)))
    writer.write(hub.publish(CallStarted(call_id="real", channels=("customer",))))
    assert writer.wait_written(writer.queued, 30)
    assert store.get_call("real") is not None and store.events("ghost") == []
    assert writer.dropped == 1 and not writer.pending
    assert writer.incomplete == {"ghost"}  # its screens' history stays in memory
    writer.forget_incomplete(lambda call_id: call_id == "real")
    assert writer.incomplete == {"ghost"}
    writer.forget_incomplete(lambda call_id: hub.feed(call_id) is None)  # still in the hub
    assert writer.incomplete == {"ghost"}
    hub.drop(hub.feed("ghost"))  # type: ignore[arg-type]
    writer.forget_incomplete(lambda call_id: hub.feed(call_id) is None)  # let go: unmarked
    assert writer.incomplete == set()
    writer.close()
    store.close()


def test_a_resumed_call_keeps_the_agents_wrapup_and_the_overrides(store_url: str) -> None:
    from assist.events import CallScored, CallWrapup

    store = CallStore(store_url)
    hub = EventHub()

    def segment(seq_base: int, passed: bool) -> None:
        hub.open("r-1", base=seq_base)
        for event in (
            CallStarted(call_id="r-1", channels=("customer", "agent"), metadata={"agent": "a"}),
            CallScored(
                call_id="r-1",
                score=100.0 if passed else 0.0,
                items=({"id": "recap", "label": "Recap", "weight": 1.0, "passed": passed},),
            ),
            CallWrapup(
                call_id="r-1",
                disposition="general",
                label="General",
                reason="",
                note="predicted",
                choices=({"id": "general", "label": "General"}, {"id": "refund", "label": "R"}),
            ),
            CallEnded(call_id="r-1", reason="disconnect", duration=5.0),
        ):
            store.record(hub.publish(event))
        hub.end("r-1")

    segment(0, passed=False)
    store.override_score("r-1", "recap", True, "it was said", "qa")
    store.save_wrapup("r-1", "refund", "the agent's note", "agent")
    assert store.get_call("r-1")["score"] == 100.0
    segment(store.last_seq("r-1"), passed=False)  # the call id resumed, scored again
    call = store.get_call("r-1")
    assert call["wrapup"]["disposition"] == "refund" and call["wrapup"]["by"] == "agent"
    assert call["wrapup"]["note"] == "the agent's note"
    assert call["score"] == 100.0  # the override still counts
    card = store.scorecard("r-1")
    store.close()
    assert card is not None and card["automatic_score"] == 0.0 and card["score"] == 100.0
