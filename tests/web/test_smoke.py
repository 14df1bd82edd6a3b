"""The pages are served and load without script errors (the infrastructure works)."""

from __future__ import annotations

from typing import Any

import pytest


def test_landing_page_loads(page: Any, web_server: Any) -> None:
    response = page.goto(web_server.http + "/")
    assert response.status == 200
    assert page.title()
    assert page.js_errors == []


# Each page's script (an ES module importing common.js) has run: what it fills in at load.
LOADED = {
    "/": "document.querySelector('#live-calls li') !== null",
    "/supervisor": "document.getElementById('status').textContent.startsWith('Updated')",
    "/qa": "/\\d+ calls? (stored|match)/.test(document.getElementById('status').textContent)",
    "/qa/agents": "/\\d+ agents?/.test(document.getElementById('status').textContent)",
}


@pytest.mark.parametrize("path", list(LOADED))
def test_pages_run_their_modules_without_errors(page: Any, web_server: Any, path: str) -> None:
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    assert page.goto(web_server.http + path).status == 200
    page.wait_for_function(f"() => {LOADED[path]}", timeout=10_000)
    assert console_errors == [] and page.js_errors == []
