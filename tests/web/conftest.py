"""Browser tests: a real server, real Chromium (Debian's /usr/bin/chromium) through Playwright."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audio.files import CallAudio, load_call_audio
from clients.native import StreamResult, stream_call
from tests.conftest import AUDIO
from tests.servers import ServerProcess

CHROMIUM = os.environ.get("CALLCUE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PAIR = [AUDIO / "cs_aws_auto_repairs_40_caller.wav", AUDIO / "cs_aws_auto_repairs_40_agent.wav"]


def chromium_or_skip() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CALLCUE_REQUIRE_BROWSER"):
        raise pytest.UsageError(f"CALLCUE_REQUIRE_BROWSER is set but {CHROMIUM} is missing")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    raise AssertionError  # unreachable


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Any]:
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright_instance: Any) -> Iterator[Any]:
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # tests assert the page threw nothing
    yield page
    context.close()


@pytest.fixture(scope="module")
def web_server() -> Iterator[ServerProcess]:
    """A server with no tokens (loopback), its own temporary store."""
    server = ServerProcess()
    yield server
    server.stop()


class BackgroundCall:
    """Stream (part of) the AWS call pair into a server from a thread, in real time."""

    def __init__(
        self,
        server: ServerProcess,
        call_id: str,
        seconds: float = 60.0,
        speed: float = 1.0,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        pair = load_call_audio(PAIR)
        self.audio = CallAudio(pair.samples[: int(seconds * pair.sample_rate)], pair.sample_rate)
        self.result: StreamResult | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = asyncio.run(
                    stream_call(
                        server.url,
                        self.audio,
                        ["customer", "agent"],
                        realtime=True,
                        call_id=call_id,
                        speed=speed,
                        metadata=metadata,
                    )
                )
            except BaseException as exc:  # reported by join()
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 300) -> StreamResult:
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert self.result is not None, "the call did not finish in time"
        return self.result


@pytest.fixture
def background_call() -> Any:
    return BackgroundCall


def have_chromium() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None
