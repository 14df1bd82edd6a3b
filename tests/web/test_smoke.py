"""The pages are served and load without script errors (the infrastructure works)."""

from __future__ import annotations

from typing import Any


def test_landing_page_loads(page: Any, web_server: Any) -> None:
    response = page.goto(web_server.http + "/")
    assert response.status == 200
    assert page.title()
    assert page.js_errors == []
