"""Supervisor wallboard (/supervisor): a real call streamed in real time shows up live with its
agent, customer and a ticking duration, opens the agent screen read-only, and leaves the board
(for the "recently ended" list) when it ends."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).parent / "artifacts"
META = {"caller": "+1 415 555 0101", "agent": "michelle"}


def seconds(text: str) -> int:
    """'1:05' / '1:02:03' → seconds."""
    total = 0
    for part in text.strip().split(":"):
        total = total * 60 + int(part)
    return total


def test_wallboard_follows_a_live_call(page: Any, web_server: Any, background_call: Any) -> None:
    call_id = "wb-" + uuid.uuid4().hex[:8]
    response = page.goto(web_server.http + "/supervisor")
    assert response.status == 200
    page.wait_for_selector("#live-empty:not([hidden])")  # empty state before the call
    assert "No live calls" in page.inner_text("#live-empty")

    call = background_call(web_server, call_id, seconds=40, speed=2.0, metadata=META)
    row = page.locator(f'#live tr[data-call-id="{call_id}"]')
    row.wait_for(timeout=30_000)
    page.wait_for_function(
        "id => (document.querySelector(`#live tr[data-call-id='${id}']`) || {}).innerText"
        "?.includes('Crystal Minh')",
        arg=call_id,
        timeout=15_000,
    )
    text = row.inner_text()
    assert "michelle" in text
    assert "Crystal Minh" in text
    assert page.inner_text("#live-count") == "1"
    assert page.locator("#live-empty").is_hidden()

    duration = row.locator("td.duration")
    first = seconds(duration.inner_text())
    page.wait_for_timeout(3000)
    second = seconds(duration.inner_text())
    assert second > first, (first, second)

    # the intent column fills in once the customer has said something
    page.wait_for_function(
        "id => { const r = document.querySelector(`#live tr[data-call-id='${id}']`);"
        " return r && r.cells[3].innerText.trim() !== '—'; }",
        arg=call_id,
        timeout=20_000,
    )
    # talk shares (customer / agent), silence now and overtalk come from the call's analytics
    page.wait_for_function(
        "id => { const r = document.querySelector(`#live tr[data-call-id='${id}']`);"
        " return r && /\\d+ \\/ \\d+ %/.test(r.cells[5].innerText); }",
        arg=call_id,
        timeout=20_000,
    )
    customer_share, agent_share = map(
        int, re.findall(r"\d+", row.locator("td").nth(5).inner_text())
    )
    assert abs(customer_share + agent_share - 100) <= 1
    assert re.fullmatch(r"\d+ s", row.locator("td").nth(6).inner_text().strip())
    assert re.fullmatch(r"\d+\.\d s", row.locator("td").nth(7).inner_text().strip())
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "supervisor.png"))

    # a click on the row (not on its link) opens the agent screen, read-only, in this tab
    other = page.context.new_page()
    other.goto(web_server.http + "/supervisor")
    other_row = other.locator(f'#live tr[data-call-id="{call_id}"]')
    other_row.wait_for(timeout=10_000)
    other_row.locator("td").nth(1).click()
    other.wait_for_url(re.compile(rf"/agent/{call_id}\?readonly=1$"), timeout=10_000)
    link = row.locator("a.row-link")
    assert link.get_attribute("href") == f"/agent/{call_id}?readonly=1"
    other.close()

    result = call.join()
    assert any(e["type"] == "call.ended" for e in result.events)
    row.wait_for(state="detached", timeout=10_000)
    assert page.inner_text("#live-count") == "0"
    page.wait_for_selector("#live-empty:not([hidden])")
    # ... and it is listed under "recently ended", linking to its QA page
    ended = page.locator(f'#ended tr[data-call-id="{call_id}"]')
    ended.wait_for(timeout=15_000)
    assert ended.locator("a.row-link").get_attribute("href") == f"/qa/{call_id}"
    assert "michelle" in ended.inner_text()
    assert page.js_errors == []


def test_pages_show_access_errors(page: Any) -> None:
    """A 401 is shown as such (not as an empty board or list); ?token= once is kept for the tab."""
    from tests.servers import ServerProcess

    token = "s3cret-supervisor-token-0001"
    server = ServerProcess(env={"CALLCUE_TOKENS": f"{token}:supervisor"})
    try:
        page.goto(server.http + "/supervisor")
        banner = page.locator("#error")
        banner.wait_for(state="visible", timeout=10_000)
        assert "401" in banner.inner_text()
        assert "token" in banner.inner_text().lower()
        # the QA pages say so too (same server, to save a start)
        page.goto(server.http + "/qa/some-call")
        page.wait_for_selector("#error:not([hidden])", timeout=10_000)
        assert "Sign-in needed (401)" in page.inner_text("#error")
        page.goto(server.http + "/qa")
        page.wait_for_selector("#error:not([hidden])", timeout=10_000)
        assert "401" in page.inner_text("#error")
        page.goto(server.http + f"/supervisor?token={token}")
        page.wait_for_selector("#live-empty:not([hidden])", timeout=10_000)
        assert page.locator("#error").is_hidden()
        assert page.locator("#status").inner_text().startswith("Updated")
        # the nav keeps the token
        assert page.locator("nav a", has_text="QA search").get_attribute("href") == (
            f"/qa?token={token}"
        )
        page.goto(server.http + "/qa")  # the token is kept for the tab
        page.wait_for_selector("#empty:not([hidden])", timeout=10_000)
        assert page.locator("#error").is_hidden()
        page.goto(server.http + "/qa/no-such-call")
        page.wait_for_selector("#error:not([hidden])", timeout=10_000)
        assert "Call not found (404)" in page.inner_text("#error")
    finally:
        server.stop()
    assert page.js_errors == []


def test_alert_rows_come_first(page: Any, web_server: Any) -> None:
    """Calls with alerts are highlighted and sorted first (the live list is faked here: a real
    call that turns negative on cue would need audio made for it)."""
    now = time.time()

    def call(call_id: str, started: float, alerts: int, sentiment: float | None) -> dict[str, Any]:
        return {
            "call_id": call_id,
            "source": "native",
            "channels": ["customer", "agent"],
            "started_at": now - started,
            "duration": started,
            "agent": "agent-" + call_id,
            "customer": "Customer " + call_id,
            "tier": "gold",
            "intent": "refund_status",
            "intent_label": "Refund status",
            "sentiment": sentiment,
            "alerts": alerts,
            "stage": "middle",
            "metadata": {},
        }

    calls = [call("a", 300, 0, 0.5), call("b", 60, 2, -0.6), call("c", 120, 0, None)]
    page.route(
        "**/v1/calls/live",
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps({"calls": calls})
        ),
    )
    page.goto(web_server.http + "/supervisor")
    page.wait_for_selector("#live tbody tr")
    order = page.eval_on_selector_all("#live tbody tr", "rows => rows.map(r => r.dataset.callId)")
    assert order == ["b", "a", "c"]  # alerts first, then the longest-running
    hot = page.locator('#live tr[data-call-id="b"]')
    assert "alert-row" in (hot.get_attribute("class") or "")
    assert "2 alerts" in hot.inner_text()
    assert "negative" in hot.inner_text()
    assert "alert-row" not in (page.get_attribute('#live tr[data-call-id="a"]', "class") or "")
    assert page.inner_text("#live-count") == "3"
    assert page.inner_text("#alert-count") == "1"
    assert page.inner_text("#neg-count") == "1"
    assert page.js_errors == []
