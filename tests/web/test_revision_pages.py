"""Revised finals on the pages, in Chromium: the agent screen replaces a line's text when a
`transcript.revised` comes (live, from a fake server; replayed, from a real one), and the QA
call page shows the revised transcript with the live text beside each changed line."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from playwright.sync_api import expect

from audio.files import CallAudio, load_call_audio
from clients.native import stream_call
from tests.servers import ServerProcess
from tests.test_revision import get, wait_until_revised
from tests.web.conftest import PAIR

EVENTS_WS = re.compile(r"/v1/calls/[^/]+/events")
CALL = "rev-pages-1"


@pytest.fixture(scope="module")
def revised_server(tmp_path_factory: Any) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("revision-pages")
    server = ServerProcess(
        env={"CALLCUE_DATABASE_URL": f"sqlite:///{tmp}/store.db", "CALLCUE_REVISE": "true"}
    )
    try:
        pair = load_call_audio(PAIR)
        audio = CallAudio(pair.samples[: 40 * pair.sample_rate], pair.sample_rate)
        call = stream_call(server.url, audio, ["customer", "agent"], realtime=False, call_id=CALL)
        # in a thread of its own: Playwright's sync API runs an event loop in this one
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, call).result()
        wait_until_revised(server, CALL)
        yield server
    finally:
        server.stop()


def test_the_agent_screen_applies_a_revision_as_it_comes(page: Any, web_server: Any) -> None:
    def event(seq: int, kind: str, **data: Any) -> str:
        return json.dumps({"type": kind, "call_id": "fake-rev", "seq": seq, "ts": "", **data})

    line = {"channel": "customer", "utterance": 1, "start": 0.5, "end": 2.0, "words": []}
    sockets: list[Any] = []

    def fake(ws: Any) -> None:
        sockets.append(ws)
        ws.send(event(1, "call.started", channels=["customer", "agent"], metadata={}))
        ws.send(event(2, "transcript.final", text="I'm Shell.", confidence=0.9, **line))

    page.route_web_socket(EVENTS_WS, fake)
    page.goto(f"{web_server.http}/agent/fake-rev")
    first = page.locator("#transcript .line").first
    expect(first.locator(".text")).to_have_text("I'm Shell.", timeout=10_000)
    assert "revised" not in (first.get_attribute("class") or "")
    sockets[-1].send(
        event(
            3,
            "transcript.revised",
            final_seq=2,
            text="Hi, Michelle.",
            live_text="I'm Shell.",
            confidence=0.9,
            **line,
        )
    )
    expect(page.locator("#transcript .line.revised .text")).to_have_text(
        "Hi, Michelle.", timeout=10_000
    )
    assert "I'm Shell." in (first.get_attribute("title") or "")
    expect(page.locator("#transcript .line")).to_have_count(1)
    assert page.js_errors == []


def test_the_agent_screen_replays_the_revised_call(page: Any, revised_server: Any) -> None:
    stored = get(revised_server, f"/v1/calls/{CALL}/transcript?format=json")["utterances"]
    page.goto(f"{revised_server.http}/agent/{CALL}")
    expect(page.locator("#conn-text")).to_have_text("call ended", timeout=20_000)
    texts = page.locator("#transcript .line .text").all_text_contents()
    assert texts == [u["text"] for u in stored]
    changed = sum("live_text" in u for u in stored)
    assert changed >= 1
    expect(page.locator("#transcript .line.revised")).to_have_count(changed)
    assert page.js_errors == []


def test_the_qa_page_marks_revised_lines_with_the_live_text(page: Any, revised_server: Any) -> None:
    stored = get(revised_server, f"/v1/calls/{CALL}/transcript?format=json")["utterances"]
    page.goto(f"{revised_server.http}/qa/{CALL}")
    expect(page.locator("#lines li")).to_have_count(len(stored), timeout=20_000)
    assert page.locator("#lines li .said").all_text_contents() == [u["text"] for u in stored]
    marks = page.locator("#lines li .revised")
    changed = [u for u in stored if "live_text" in u]
    expect(marks).to_have_count(len(changed))
    titles = [marks.nth(i).get_attribute("title") or "" for i in range(len(changed))]
    assert all(u["live_text"] in t for u, t in zip(changed, titles, strict=True))
    assert page.js_errors == []
