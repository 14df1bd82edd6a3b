"""QA pages: /qa finds a stored call by a word it contains and by agent (filters live in the page
URL); /qa/{id} shows the stored transcript, the sentiment chart, the summary, downloads every
export, takes a review; with recording on, a transcript line plays the audio from its start."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.servers import ServerProcess
from tests.web.conftest import BackgroundCall

ARTIFACTS = Path(__file__).parent / "artifacts"
META = {"caller": "+1 415 555 0101", "agent": "michelle"}


def finals(result: Any) -> list[dict[str, Any]]:
    return [e for e in result.events if e["type"] == "transcript.final" and e["text"].strip()]


def clock(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


@pytest.fixture(scope="module")
def stored_call(web_server: ServerProcess) -> tuple[str, list[dict[str, Any]]]:
    """One call streamed (45 s of the recording, at twice real time) and ended."""
    call_id = "qa-" + uuid.uuid4().hex[:8]
    result = BackgroundCall(web_server, call_id, seconds=45, speed=2.0, metadata=META).join()
    said = finals(result)
    assert len(said) >= 4, said
    return call_id, said


def search_word(said: list[dict[str, Any]]) -> str:
    words: list[str] = [w for e in said for w in re.findall(r"[A-Za-z]{5,}", e["text"])]
    assert words, said
    return max(words, key=len).lower()


def test_search_by_word_and_agent(page: Any, web_server: Any, stored_call: Any) -> None:
    call_id, said = stored_call
    word = search_word(said)
    page.goto(web_server.http + "/qa")
    row = page.locator(f'#results tr[data-call-id="{call_id}"]')
    row.wait_for()  # the newest calls, unfiltered
    assert "stored" in page.inner_text("#status")

    page.fill("input[name=q]", word)
    page.press("input[name=q]", "Enter")
    page.wait_for_url(re.compile(rf"/qa\?q={word}$"))
    # the unfiltered list still shows the row until the search answers: wait for its answer
    page.wait_for_function("() => /match/.test(document.getElementById('status').textContent)")
    row.wait_for()
    text = row.inner_text()
    assert "michelle" in text and "Crystal Minh" in text
    assert re.search(r"\d+/\d+", text)  # checklist done/total
    assert "match" in page.inner_text("#status")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "qa-search.png"))

    page.fill("input[name=q]", "zebrafishxyz")
    page.press("input[name=q]", "Enter")
    page.wait_for_selector("#empty:not([hidden])")
    assert row.count() == 0
    page.go_back()  # the previous search comes back from the URL
    row.wait_for()
    assert page.input_value("input[name=q]") == word

    # agent filter, from a bookmarked URL, then from the form
    page.goto(web_server.http + "/qa?agent=michelle&alerts=false")
    row.wait_for()
    assert page.input_value("input[name=agent]") == "michelle"
    assert page.input_value("select[name=alerts]") == "false"
    page.fill("input[name=agent]", "somebody-else")
    page.click("button[type=submit]")
    page.wait_for_selector("#empty:not([hidden])")
    assert "agent=somebody-else" in page.url
    page.fill("input[name=agent]", "michelle")
    page.select_option("select[name=alerts]", "")
    page.click("button[type=submit]")
    row.wait_for()

    # a bad filter is explained, not shown as "no calls"
    page.goto(web_server.http + "/qa?from=yesterday")
    page.wait_for_selector("#error:not([hidden])")
    assert "from" in page.inner_text("#error")

    page.goto(web_server.http + "/qa?agent=michelle")
    row.locator("td").nth(3).click()
    page.wait_for_url(re.compile(rf"/qa/{call_id}$"))
    page.wait_for_selector("#lines li")
    assert page.js_errors == []


def test_call_page(page: Any, web_server: Any, stored_call: Any) -> None:
    call_id, said = stored_call
    response = page.goto(f"{web_server.http}/qa/{call_id}")
    assert response.status == 200
    page.wait_for_selector("#lines li")
    assert page.inner_text("#call-title") == f"Call {call_id}"
    assert "michelle" in page.inner_text("#facts")
    assert "Crystal Minh" in page.inner_text("#facts")

    lines = page.eval_on_selector_all(
        "#lines li",
        "els => els.map(li => [li.dataset.channel, +li.dataset.utterance,"
        " li.querySelector('.said').innerText, li.querySelector('.t').innerText,"
        " li.querySelector('.who').innerText])",
    )
    shown = sorted((c, n, t) for c, n, t, _, _ in lines)
    expected = sorted((e["channel"], e["utterance"], e["text"]) for e in said)
    assert shown == expected
    by_key = {(e["channel"], e["utterance"]): e for e in said}
    for channel, n, _, time, who in lines:
        assert time == clock(by_key[(channel, n)]["start"])
        assert who == channel.capitalize()

    # sentiment timeline: an inline SVG with the customer's trend as a path
    trend = page.locator("#chart svg path.trend")
    assert trend.count() == 1
    assert trend.get_attribute("d").startswith("M")
    assert page.locator("#chart svg circle.score-dot").count() >= 1
    assert "Start" in page.inner_text("#sentiment-stats")

    # who spoke when: one talk span per stretch of speech, as the analytics endpoint has them
    expect(page.locator("#timeline-panel")).to_be_visible()
    analytics = page.evaluate(
        "id => fetch('/v1/calls/' + encodeURIComponent(id) + '/analytics').then(r => r.json())",
        call_id,
    )
    for channel in ("customer", "agent"):
        spans = analytics["timeline"]["talk"][channel]
        assert spans and page.locator(f"#timeline rect.tl-talk-{channel}").count() == len(spans)
    assert page.locator("#timeline rect.tl-silence").count() == len(
        analytics["timeline"]["silences"]
    )
    assert "customer talk" in page.inner_text("#talk-facts").lower()
    matched = [c["name"] for c in analytics["categories"]]
    shown = page.eval_on_selector_all("#categories li", "els => els.map(li => li.dataset.category)")
    assert shown == matched and page.locator("#categories-wrap").is_visible() == bool(matched)

    # the automatic scorecard: every item with its answer and reason; an override from the
    # page is kept beside the automatic answer
    expect(page.locator("#auto-score-panel")).to_be_visible()
    card = page.evaluate(
        "id => fetch('/v1/calls/' + encodeURIComponent(id) + '/scorecard').then(r => r.json())",
        call_id,
    )
    assert page.locator("#auto-scorecard tr").count() == len(card["items"])
    assert page.inner_text("#auto-score") == f"{math.floor(card['score'] + 0.5)} / 100"
    first = card["items"][0]
    assert first["reason"] in page.inner_text(f'#auto-scorecard tr[data-item="{first["id"]}"]')
    page.once("dialog", lambda dialog: dialog.accept("checked by hand"))
    page.click(f'#auto-scorecard button[data-item="{first["id"]}"]')
    flipped = page.locator(f'#auto-scorecard tr[data-item="{first["id"]}"]')
    expect(flipped).to_have_attribute("data-final", str(not first["final"]).lower())
    expect(flipped).to_contain_text("checked by hand")

    summary = page.inner_text("#summary")
    for heading in ("Reason for the call", "Intents", "Alerts"):
        assert heading in summary
    assert re.search(r"\d+ of \d+ done", page.inner_text("#checklist"))
    assert page.locator("#checklist li").count() >= 1
    assert page.locator("#actions, #suggestions").count() == 2
    assert page.locator("#players-panel").is_hidden()  # recording is off on this server
    # scorecard: the checklist items, then resolution and empathy
    items = page.eval_on_selector_all("#scorecard tr", "rows => rows.map(r => r.dataset.item)")
    assert items[-2:] == ["resolution", "empathy"] and len(items) > 2
    assert page.js_errors == []


def test_exports_download(page: Any, web_server: Any, stored_call: Any) -> None:
    call_id, said = stored_call
    page.goto(f"{web_server.http}/qa/{call_id}")
    page.wait_for_selector("#lines li")
    plain = [" ".join(e["text"].split()) for e in said if '"' not in e["text"]]
    sample = max(plain, key=len)
    for fmt in ("txt", "vtt", "srt", "csv", "json"):
        link = page.locator(f'#exports a[data-format="{fmt}"]')
        assert link.get_attribute("href") == f"/v1/calls/{call_id}/transcript?format={fmt}"
        with page.expect_download() as info:
            link.click()
        download = info.value
        assert download.suggested_filename == f"{call_id}.{fmt}"
        content = Path(download.path()).read_text(encoding="utf-8")
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(content)))
            assert sample in [" ".join(r["text"].split()) for r in rows]
        elif fmt == "json":
            texts = [" ".join(u["text"].split()) for u in json.loads(content)["utterances"]]
            assert sample in texts
        else:
            assert sample in content, (fmt, sample, content[:500])
    assert content.startswith("{")
    # the JSON also reads inline (fetch, as the API is used)
    data = page.evaluate(
        "url => fetch(url).then(r => r.json())", f"/v1/calls/{call_id}/transcript?format=json"
    )
    assert len(data["utterances"]) == len(said)
    assert page.js_errors == []


def test_review(page: Any, web_server: Any, stored_call: Any) -> None:
    call_id, _ = stored_call
    page.goto(f"{web_server.http}/qa/{call_id}")
    page.wait_for_selector("#lines li")
    assert "No reviews yet" in page.inner_text("#reviews")

    page.click("#submit-review")  # nothing scored
    assert "Score at least one item" in page.inner_text("#review-status")

    target = page.locator("#lines li").nth(1)
    channel = target.get_attribute("data-channel")
    utterance = int(target.get_attribute("data-utterance"))
    target.click()
    assert "selected" in (target.get_attribute("class") or "")
    assert "Comment on" in page.inner_text("#comment-target")

    page.fill("input[name=reviewer]", "Dana (QA)")
    page.locator('#scorecard tr[data-item="resolution"] label', has_text="4").click()
    page.locator('#scorecard tr[data-item="empathy"] label', has_text="5").click()
    first_item = page.eval_on_selector("#scorecard tr", "r => r.dataset.item")
    page.locator(f'#scorecard tr[data-item="{first_item}"] label', has_text="2").click()
    page.fill("#comment", "Good acknowledgement of the problem")
    page.click("#add-comment")
    assert page.locator("#pending-comments li").count() == 1
    page.fill("#comment", "Overall: calm and clear")
    page.click("button:has-text('general comment instead')")
    page.click("#submit-review")

    review = page.locator("#reviews li.review")
    review.wait_for()
    text = review.inner_text()
    assert "Dana (QA)" in text
    assert "Good acknowledgement of the problem" in text
    assert "Overall: calm and clear" in text
    assert "3.7 / 5" in text  # (4 + 5 + 2) / 3
    assert page.inner_text("#review-status") == "Review saved."
    assert page.locator("#pending-comments li").count() == 0
    assert target.locator(".notes").inner_text() == "1 comment"

    stored = page.evaluate("url => fetch(url).then(r => r.json())", f"/v1/calls/{call_id}/reviews")
    assert len(stored["reviews"]) == 1
    saved = stored["reviews"][0]
    assert saved["reviewer"] == "Dana (QA)"
    assert saved["scores"] == {"resolution": 4, "empathy": 5, first_item: 2}
    assert saved["comments"] == [
        {"text": "Good acknowledgement of the problem", "utterance": utterance, "channel": channel},
        {"text": "Overall: calm and clear", "utterance": None, "channel": ""},
    ]
    # a reload shows the stored review
    page.reload()
    page.wait_for_selector("#reviews li.review")
    assert page.text_content("#reviews-title") == "Reviews (1)"
    assert page.input_value("input[name=reviewer]") == "Dana (QA)"  # remembered
    assert page.js_errors == []


def test_unknown_call_is_reported(page: Any, web_server: Any) -> None:
    page.goto(web_server.http + "/qa/no-such-call")
    banner = page.locator("#error")
    banner.wait_for(state="visible")
    assert "Call not found (404)" in banner.inner_text()
    assert "no-such-call" in banner.inner_text()
    assert page.locator("#content").is_hidden()
    assert page.js_errors == []


@pytest.fixture(scope="module")
def recording_server() -> Iterator[ServerProcess]:
    server = ServerProcess(env={"CALLCUE_RECORD_AUDIO": "true"})
    yield server
    server.stop()


def test_audio_follows_the_transcript(page: Any, recording_server: ServerProcess) -> None:
    call_id = "rec-" + uuid.uuid4().hex[:8]
    result = BackgroundCall(recording_server, call_id, seconds=30, speed=2.0, metadata=META).join()
    assert finals(result)
    page.goto(f"{recording_server.http}/qa/{call_id}")
    page.wait_for_selector("#lines li")
    audio = page.locator("#players audio")
    assert audio.count() == 2
    assert sorted(audio.evaluate_all("els => els.map(a => a.dataset.channel)")) == [
        "agent",
        "customer",
    ]
    assert audio.first.get_attribute("src").startswith(f"/v1/calls/{call_id}/audio/")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#players audio')].every(a => a.readyState >= 1)"
    )
    durations = audio.evaluate_all("els => els.map(a => a.duration)")
    assert all(d > 25 for d in durations), durations

    lines = page.locator("#lines li")
    line = lines.nth(min(3, lines.count() - 1))
    channel = line.get_attribute("data-channel")
    start = float(line.get_attribute("data-start"))
    line.click()
    player = page.locator(f'#players audio[data-channel="{channel}"]')
    position = player.evaluate("a => a.currentTime")
    assert abs(position - start) < 0.5, (position, start)
    # it plays, and the line being heard is highlighted
    page.wait_for_function(
        "ch => { const a = document.querySelector(`#players audio[data-channel='${ch}']`);"
        " return !a.paused && a.currentTime > 0; }",
        arg=channel,
    )
    page.wait_for_selector("#lines li.playing", timeout=5000)
    assert "selected" in (line.get_attribute("class") or "")
    page.wait_for_timeout(600)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "qa-call.png"))
    audio.evaluate_all("els => els.forEach(a => a.pause())")
    assert page.js_errors == []


def test_agents_page(page: Any, web_server: Any, stored_call: Any) -> None:
    page.goto(web_server.http + "/qa/agents")
    row = page.locator('#agents tr[data-agent="michelle"]')
    row.wait_for()
    stats = page.evaluate("() => fetch('/v1/agents').then(r => r.json())")["agents"]
    michelle = next(a for a in stats if a["agent"] == "michelle")
    cells = row.locator("td")
    assert cells.nth(1).inner_text() == str(michelle["calls"]) and michelle["calls"] >= 1
    assert cells.nth(3).inner_text() == f"{math.floor(michelle['agent_talk_share'] * 100 + 0.5)}%"
    assert f"({michelle['scored_calls']} scored)" in cells.nth(4).inner_text()
    # a period with no calls
    page.fill("input[name=to]", "2020-01-01")
    page.click("#period button[type=submit]")
    page.wait_for_selector("#empty:not([hidden])")
    assert "to=2020-01-01" in page.url
    assert page.js_errors == []
