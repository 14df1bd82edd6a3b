"""The agent screen (/agent/{call_id}): a real call streamed into a real server, watched in
Chromium. Live transcript, customer card, assist cards with feedback echoed by the server,
read-only mode, reconnection without gaps or duplicates, and the narrow side-panel layout."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import expect

CRYSTAL = {"caller": "+1 415 555 0101"}  # Crystal Minh: gold, open case CS-2291 (refund)
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SECONDS, SPEED = 60.0, 2.0
EVENTS_WS = re.compile(r"/v1/calls/[^/]+/events")

LINES_JS = """() => [...document.querySelectorAll('#transcript .line')].map(e => ({
    channel: e.dataset.channel, text: e.querySelector('.text').textContent,
    partial: e.classList.contains('partial')}))"""


def finals(result: Any) -> list[tuple[str, str]]:
    """The final utterances the call produced, in the screen's order (start time)."""
    events = [e for e in result.events if e.get("type") == "transcript.final" and e["text"]]
    events.sort(key=lambda e: (e["start"], e["channel"], e["utterance"]))
    return [(e["channel"], e["text"]) for e in events]


def screen_lines(page: Any) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = page.evaluate(LINES_JS)
    return lines


def watch_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def no_page_scroll(page: Any) -> dict[str, int]:
    sizes: dict[str, int] = page.evaluate(
        """() => { const d = document.documentElement;
            return {sw: d.scrollWidth, sh: d.scrollHeight, w: innerWidth, h: innerHeight}; }"""
    )
    return sizes


@pytest.fixture(scope="module")
def calls() -> dict[str, Any]:
    """Calls finished by earlier tests of this module, for the replay tests to reuse."""
    return {}


def finished_call(calls: dict[str, Any], web_server: Any, background_call: Any) -> Any:
    if "live" not in calls:  # this test runs alone: make a call of its own
        call_id = "agent-replay-1"
        call = background_call(web_server, call_id, SECONDS, speed=SPEED, metadata=CRYSTAL)
        calls["live"] = (call_id, call.join())
    return calls["live"]


def test_agent_screen_follows_a_live_call(
    page: Any, web_server: Any, background_call: Any, calls: dict[str, Any]
) -> None:
    call_id = "agent-live-1"
    ARTIFACTS.mkdir(exist_ok=True)
    sockets: list[Any] = []  # the page's event websockets, proxied so that one can be dropped

    def proxy(ws: Any) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket(EVENTS_WS, proxy)
    page.goto(f"{web_server.http}/agent/{call_id}")

    # Opened before the call: the socket waits for it.
    expect(page.locator("#conn-text")).to_have_text("waiting for the call to start")
    expect(page.locator("#transcript-empty")).to_contain_text("Waiting for the call to start")
    call = background_call(web_server, call_id, SECONDS, speed=SPEED, metadata=CRYSTAL)

    # The customer card, from call.started.
    customer = page.locator("#customer")
    for text in ("Crystal", "gold", "Refund status", "CS-2291"):
        expect(customer).to_contain_text(text, timeout=15_000)
    expect(page.locator("#conn-text")).to_have_text("live")

    # Partials are visibly tentative while live (checked atomically: they are soon replaced).
    page.wait_for_function(
        """() => { const e = document.querySelector('#transcript .line.partial');
                   return !!e && e.querySelector('.text').textContent.length > 0
                       && getComputedStyle(e).fontStyle === 'italic'; }""",
        timeout=20_000,
    )

    # The open-case follow-up action: Done sends feedback; the card shows "done" only once the
    # server echoed the feedback event.
    action = page.locator('.card.action[data-id="open_case_followup"]')
    expect(action).to_contain_text("CS-2291", timeout=20_000)
    # (more urgent actions may push it under "More actions": open that, as the agent would)
    page.evaluate("document.getElementById('actions-more').open = true")
    action.locator('button[data-feedback="done"]').click()
    expect(action).to_have_attribute("data-state", "done")
    expect(action).to_contain_text("Done")

    # Drop the screen's connection mid-call: it reconnects by itself with after_seq.
    assert not page.evaluate("callcueAgent.ended")
    seq_at_drop = page.evaluate("callcueAgent.lastSeq")
    sockets[-1].close(code=4000, reason="test: connection dropped")
    page.wait_for_function("() => callcueAgent.connections >= 2", timeout=10_000)
    assert len(sockets) == 2
    resumed = parse_qs(urlparse(sockets[-1].url).query)
    assert int(resumed["after_seq"][0]) >= seq_at_drop > 0

    # A suggested reply: the key "1" uses the top one; it is marked used on the echo.
    expect(page.locator("#replies .card").first).to_be_visible(timeout=20_000)
    page.locator("body").press("1")
    used = page.locator('.card.reply[data-state="used"]')
    expect(used).to_have_count(1)
    reply_id = used.get_attribute("data-id")
    expect(used).to_contain_text("Used")

    # Every feedback button is reachable with Tab, with a visible focus ring.
    page.locator("body").focus()
    reached: set[str] = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """() => { const a = document.activeElement;
                       return a && a.dataset.feedback ? a.closest('.card').dataset.kind + ':'
                         + a.dataset.feedback + ':' + getComputedStyle(a).outlineStyle : ''; }"""
        )
        if focused:
            kind, action_name, outline = focused.split(":")
            assert outline != "none"
            reached.add(f"{kind}:{action_name}")
    assert {"reply:accepted", "reply:copied", "reply:dismissed"} <= reached, reached
    assert any(key.startswith("action:") for key in reached), reached

    # Intent, sentiment and checklist are shown.
    expect(page.locator("#intent .intent-label")).not_to_be_empty(timeout=20_000)
    expect(page.locator("#sentiment-word")).not_to_have_text("—", timeout=20_000)
    expect(page.locator("#sentiment-score")).to_contain_text(re.compile(r"[+−]\d\.\d\d"))
    expect(page.locator("#checklist .check")).not_to_have_count(0)
    expect(page.locator("#checklist")).to_contain_text("Recording disclosure")
    # Talk shares and silences from call.analytics: both parties, shares that add up to 100
    expect(page.locator("#talk-panel")).to_be_visible(timeout=20_000)
    expect(page.locator("#talk")).to_contain_text("Customer")
    shares = [int(m) for m in re.findall(r"(\d+)% ·", page.inner_text("#talk"))]
    assert len(shares) == 2 and abs(sum(shares) - 100) <= 1, shares
    expect(page.locator("#talk")).to_contain_text("Longest silence")
    assert page.locator("#talk-bar .talk-share").count() == 2

    # A supervisor watching read-only: the same call, no feedback buttons, and the agent's
    # feedback reflected (it came from another screen).
    supervisor = page.context.new_page()
    supervisor_errors = watch_errors(supervisor)
    supervisor.goto(f"{web_server.http}/agent/{call_id}?readonly=1")
    expect(supervisor.locator("#readonly-badge")).to_be_visible()
    supervisor_action = supervisor.locator('.card.action[data-id="open_case_followup"]')
    expect(supervisor_action).to_have_attribute("data-state", "done")
    expect(supervisor.locator("#replies .card").first).to_be_visible()
    expect(supervisor.locator("#customer")).to_contain_text("Crystal")
    assert supervisor.locator("[data-feedback]").count() == 0
    assert supervisor.locator(".card button").count() == 0

    # A narrow side panel: one column, actions and replies first, no horizontal scroll.
    narrow = page.context.new_page()
    narrow_errors = watch_errors(narrow)
    narrow.set_viewport_size({"width": 420, "height": 800})
    narrow.goto(f"{web_server.http}/agent/{call_id}")
    expect(narrow.locator("#actions .card").first).to_be_visible()
    expect(narrow.locator("#transcript .line").first).to_be_visible()
    sizes = no_page_scroll(narrow)
    assert sizes["sw"] <= sizes["w"] == 420, sizes
    boxes = {
        name: narrow.locator(selector).bounding_box()
        for name, selector in {
            "actions": "#actions-panel",
            "replies": "#replies-panel",
            "transcript": ".col-transcript",
            "customer": "#customer-panel",
        }.items()
    }
    assert boxes["actions"]["y"] < boxes["transcript"]["y"] < boxes["customer"]["y"]
    assert boxes["replies"]["y"] < boxes["transcript"]["y"]
    for box in boxes.values():  # stacked: every panel spans the width
        assert box["x"] >= 0 and box["x"] + box["width"] <= 420 and box["width"] > 360
    narrow.screenshot(path=str(ARTIFACTS / "agent-narrow.png"), full_page=True)

    for screen in (page, supervisor, narrow):  # live, partials included
        assert not re.search(r"\b(null|undefined|NaN)\b", screen.inner_text("body"))
    page.evaluate(
        "document.getElementById('actions-more').open = false; document.activeElement.blur(); "
        "document.querySelector('.col-assist').scrollTop = 0"
    )
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "agent-1280.png"))
    sizes = no_page_scroll(page)  # 1280×800: three columns, no page scroll
    assert sizes["sw"] <= sizes["w"] and sizes["sh"] <= sizes["h"], sizes
    columns = [
        page.locator(s).bounding_box() for s in (".col-context", ".col-transcript", ".col-assist")
    ]
    assert columns[0]["x"] < columns[1]["x"] < columns[2]["x"]

    # The call ends: every final on screen, once, word for word, in order; no partial left.
    result = call.join()
    expect(page.locator("#conn-text")).to_have_text("call ended", timeout=30_000)
    expected = finals(result)
    assert len(expected) >= 6
    for screen in (page, supervisor, narrow):
        expect(screen.locator("#conn-text")).to_have_text("call ended", timeout=30_000)
        lines = screen_lines(screen)
        assert [(line["channel"], line["text"]) for line in lines] == expected
        assert not any(line["partial"] for line in lines)
    assert {channel for channel, _ in expected} == {"customer", "agent"}
    last_seq = max(e.get("seq", 0) for e in result.events)  # call.ended
    assert page.evaluate("callcueAgent.lastSeq") == last_seq
    assert page.locator(".fb-live:visible").count() == 0  # nothing to send after the call

    # The wrap-up: the predicted disposition and note, editable by the agent (read-only for
    # the supervisor); saved to the store.
    wrapup = next(e for e in result.events if e["type"] == "call.wrapup")
    expect(page.locator("#wrapup-panel")).to_be_visible()
    assert page.input_value("#wrapup-disposition") == wrapup["disposition"]
    assert page.input_value("#wrapup-note") == wrapup["note"]
    expect(supervisor.locator("#wrapup-panel")).to_be_visible()
    assert supervisor.locator("#wrapup-save").is_hidden()
    other = next(c for c in wrapup["choices"] if c["id"] != wrapup["disposition"])
    page.select_option("#wrapup-disposition", other["id"])
    page.fill("#wrapup-note", "Refund checked; customer will call back.")
    page.click("#wrapup-save")
    expect(page.locator("#wrapup-status")).to_have_text("Saved: " + other["label"])
    saved = httpx.get(f"{web_server.http}/v1/calls/{call_id}").json()["wrapup"]
    assert saved["disposition"] == other["id"] and saved["by"] != "predicted"
    assert saved["note"] == "Refund checked; customer will call back."

    # The server stored the feedback the screen sent.
    stored = httpx.get(f"{web_server.http}/v1/calls/{call_id}/events?types=feedback").json()
    sent = {(e["kind"], e["target"], e["action"]) for e in stored["events"]}
    assert ("action", "open_case_followup", "done") in sent
    assert ("reply", reply_id, "accepted") in sent

    for screen in (page, supervisor, narrow):
        assert not re.search(r"\b(null|undefined|NaN)\b", screen.inner_text("body"))
    assert page.js_errors == [] and supervisor_errors == [] and narrow_errors == []
    calls["live"] = (call_id, result)


def test_reload_replays_the_whole_call_once(
    page: Any, web_server: Any, background_call: Any, calls: dict[str, Any]
) -> None:
    call_id, result = finished_call(calls, web_server, background_call)
    expected = finals(result)
    page.goto(f"{web_server.http}/agent/{call_id}")
    for _ in range(2):  # the first load, then a reload
        expect(page.locator("#conn-text")).to_have_text("call ended", timeout=20_000)
        lines = screen_lines(page)
        assert [(line["channel"], line["text"]) for line in lines] == expected
        assert len(lines) == len(expected)
        assert not any(line["partial"] for line in lines)
        expect(page.locator("#customer")).to_contain_text("Crystal")
        expect(page.locator("#checklist .check")).not_to_have_count(0)
        assert page.evaluate("callcueAgent.connections") == 1  # ended: no reconnecting
        page.reload()
    assert page.js_errors == []


def test_resume_ignores_events_already_shown(page: Any, web_server: Any) -> None:
    """A (fake) server that drops the screen and then repeats events: nothing shows twice."""
    urls: list[str] = []

    def line(seq: int, utterance: int, text: str) -> str:
        return json.dumps(
            {
                "type": "transcript.final",
                "call_id": "fake-1",
                "seq": seq,
                "ts": "",
                "channel": "customer",
                "utterance": utterance,
                "start": float(utterance),
                "end": utterance + 0.8,
                "text": text,
                "words": [],
                "confidence": 0.9,
            }
        )

    started = json.dumps(
        {
            "type": "call.started",
            "call_id": "fake-1",
            "seq": 1,
            "ts": "",
            "channels": ["customer", "agent"],
            "metadata": {},
            "customer": None,
        }
    )

    def fake(ws: Any) -> None:
        urls.append(ws.url)
        if len(urls) == 1:
            for message in (started, line(2, 1, "one"), line(3, 2, "two")):
                ws.send(message)
            ws.close(code=1011, reason="server restarting")
        else:  # repeats 2 and 3 although the screen asked for after_seq=3
            for message in (line(2, 1, "one"), line(3, 2, "two"), line(4, 3, "three")):
                ws.send(message)

    page.route_web_socket(EVENTS_WS, fake)
    page.goto(f"{web_server.http}/agent/fake-1")
    expect(page.locator("#transcript .line")).to_have_count(3, timeout=10_000)
    assert [line["text"] for line in screen_lines(page)] == ["one", "two", "three"]
    assert parse_qs(urlparse(urls[1]).query)["after_seq"] == ["3"]
    expect(page.locator("#customer")).to_contain_text("Unknown caller")
    assert page.js_errors == []


def test_refused_screen_shows_why_and_stops(page: Any, web_server: Any) -> None:
    attempts: list[str] = []
    message = "role 'qa' may not watch calls (needs agent or supervisor)"

    def refuse(ws: Any) -> None:
        attempts.append(ws.url)
        ws.send(json.dumps({"type": "error", "code": "forbidden", "message": message}))
        ws.close(code=4403, reason="forbidden")

    page.route_web_socket(EVENTS_WS, refuse)
    page.goto(f"{web_server.http}/agent/denied-1")
    expect(page.locator("#conn-text")).to_have_text(message)
    time.sleep(1.5)  # longer than the first reconnect delay
    assert len(attempts) == 1
    assert page.js_errors == []


def test_live_call_logs_no_console_errors(page: Any, web_server: Any, background_call: Any) -> None:
    """The screen is ES modules (agent.js, agent/*.js, events.js, common.js): every one loads
    (served as JavaScript, allowed by the CSP) and a live call to its end logs no error."""
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    call_id = "agent-console-1"
    page.goto(f"{web_server.http}/agent/{call_id}")
    expect(page.locator("#conn-text")).to_have_text("waiting for the call to start")
    call = background_call(web_server, call_id, 20.0, speed=SPEED, metadata=CRYSTAL)
    expect(page.locator("#transcript .line.final").first).not_to_be_empty(timeout=30_000)
    expect(page.locator("#customer")).to_contain_text("Crystal")
    call.join()
    expect(page.locator("#conn-text")).to_have_text("call ended", timeout=30_000)
    assert console_errors == [] and page.js_errors == []
