"""Revision behind a real server (SQLite store): after a real two-party call ends, the finals'
model decodes each channel again; `transcript.revised` events replace finals' text in the
store, search, exports and a late screen's replay, the live text is kept beside it, and
`call.revised` says when it is all done."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from audio.files import CallAudio, load_call_audio
from clients.native import StreamResult, stream_call
from tests.conftest import AUDIO, assert_late_view
from tests.servers import ServerProcess

PAIR = [AUDIO / "cs_aws_auto_repairs_40_caller.wav", AUDIO / "cs_aws_auto_repairs_40_agent.wav"]
CALL = "rev-1"


def get(server: ServerProcess, path: str) -> Any:
    with urllib.request.urlopen(server.http + path, timeout=30) as response:
        return json.loads(response.read())


def wait_until_revised(server: ServerProcess, call_id: str, seconds: float = 300.0) -> dict:
    """Poll the stored call until its end-of-call revision is recorded (`revised_at`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        call = get(server, f"/v1/calls/{call_id}")
        if call["revised_at"]:
            return call
        time.sleep(0.5)
    raise AssertionError(f"{call_id} was not revised within {seconds:.0f} s")


@pytest.fixture(scope="module")
def revised(tmp_path_factory: Any) -> Iterator[tuple[ServerProcess, StreamResult]]:
    tmp = tmp_path_factory.mktemp("revision")
    server = ServerProcess(
        env={
            "CALLCUE_DATABASE_URL": f"sqlite:///{tmp}/store.db",
            "CALLCUE_REVISE": "true",
            "CALLCUE_REVISE_SECONDS": "20",
        }
    )
    try:
        pair = load_call_audio(PAIR)
        audio = CallAudio(pair.samples[: 60 * pair.sample_rate], pair.sample_rate)
        result = asyncio.run(
            stream_call(server.url, audio, ["customer", "agent"], realtime=False, call_id=CALL)
        )
        wait_until_revised(server, CALL)
        yield server, result
    finally:
        server.stop()


def test_revisions_replace_the_stored_text_and_keep_the_live_one(
    revised: tuple[ServerProcess, StreamResult],
) -> None:
    server, _ = revised
    events = get(server, f"/v1/calls/{CALL}/events")["events"]
    finals = {e["seq"]: e for e in events if e["type"] == "transcript.final" and e["text"]}
    revisions = [e for e in events if e["type"] == "transcript.revised"]
    assert revisions, "the accurate model changed nothing in a minute of a real call"
    done = [e for e in events if e["type"] == "call.revised"]
    assert len(done) == 1 and events[-1] is done[0]  # the last event of the call
    assert done[0]["revised"] == len({r["final_seq"] for r in revisions})
    assert done[0]["finals"] >= len(finals) and done[0]["skipped"] == 0
    ended = next(e for e in events if e["type"] == "call.ended")
    assert any(r["seq"] > ended["seq"] for r in revisions)  # the end-of-call revision
    for r in revisions:
        final = finals[r["final_seq"]]
        assert (r["channel"], r["utterance"]) == (final["channel"], final["utterance"])
        assert r["live_text"] == final["text"] and r["text"] != final["text"]
        assert r["words"] and r["seq"] > final["seq"]
    latest = {r["final_seq"]: r for r in revisions}  # a final revised twice: the last counts
    stored = get(server, f"/v1/calls/{CALL}/transcript?format=json")["utterances"]
    assert len(stored) == len(finals)
    for u in stored:
        final = finals[u["seq"]]
        if u["seq"] in latest:
            assert u["text"] == latest[u["seq"]]["text"] and u["live_text"] == final["text"]
        else:
            assert u["text"] == final["text"] and "live_text" not in u


def test_search_and_exports_use_the_revised_text(
    revised: tuple[ServerProcess, StreamResult],
) -> None:
    server, _ = revised
    stored = get(server, f"/v1/calls/{CALL}/transcript?format=json")["utterances"]

    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 4}

    live = set().union(*(words(u.get("live_text", u["text"])) for u in stored))
    new = sorted(set().union(*(words(u["text"]) for u in stored)) - live)
    assert new, "no word of the revised text is new"
    listing = get(server, f"/v1/calls?q={new[0]}")
    assert [c["id"] for c in listing["calls"]] == [CALL]
    with urllib.request.urlopen(
        server.http + f"/v1/calls/{CALL}/transcript?format=txt", timeout=30
    ) as response:
        txt = response.read().decode()
    assert all(u["text"] in txt for u in stored)


async def test_a_late_screen_replays_the_revisions_after_the_finals(
    revised: tuple[ServerProcess, StreamResult],
) -> None:
    server, result = revised
    async with websockets.connect(server.url + f"/v1/calls/{CALL}/events") as ws:
        replay = [json.loads(m) async for m in ws]
    seqs = [e["seq"] for e in replay]
    # the call as its client got it (only replaced partials and analytics left out), then
    # every revision after it: no gap, no duplicate
    sent = [e for e in result.events if "seq" in e]
    last = sent[-1]["seq"]
    assert_late_view([e for e in replay if e["seq"] <= last], sent)
    assert [s for s in seqs if s > last] == list(range(last + 1, seqs[-1] + 1))
    kinds = [e["type"] for e in replay]
    assert kinds[-1] == "call.revised" and "transcript.revised" in kinds
    shown = {e["seq"] for e in replay if e["type"] == "transcript.final"}
    assert all(e["final_seq"] in shown for e in replay if e["type"] == "transcript.revised")


def test_metrics_count_the_revisions(revised: tuple[ServerProcess, StreamResult]) -> None:
    server, _ = revised
    with urllib.request.urlopen(server.http + "/metrics", timeout=30) as response:
        text = response.read().decode()
    done = re.search(r'callcue_revisions_total\{outcome="done"\} (\d+)', text)
    changed = re.search(r"callcue_finals_revised_total (\d+)", text)
    assert done and int(done.group(1)) >= 2  # at least one stretch per channel
    assert changed and int(changed.group(1)) >= 1
