"""The landing page's browser softphone: a real recording is Chromium's microphone
(--use-file-for-fake-audio-capture); it streams through the native ingest protocol, the agent
screen of the call opens on the page with the words, and the call is stored."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from benchmarks.common import wer
from tests.conftest import AUDIO, reference
from tests.web.conftest import ARGS, CHROMIUM

CLIPS = [
    "ls_test-clean_4507-16021-0012.wav",
    "ls_test-clean_8455-210777-0068.wav",
    "ls_test-clean_2830-3980-0043.wav",
]
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: Any) -> tuple[Path, str]:
    """Three real LibriSpeech clips with pauses between them, as one 16 kHz WAV."""
    parts = []
    for name in CLIPS:
        audio, rate = sf.read(str(AUDIO / name), dtype="int16")
        assert rate == 16000
        parts += [np.zeros(8000, np.int16), audio, np.zeros(12000, np.int16)]
    parts.append(np.zeros(32000, np.int16))
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(str(path), np.concatenate(parts), 16000, subtype="PCM_16")
    return path, " ".join(reference(name) for name in CLIPS)


def test_test_call_from_the_browser(
    playwright_instance: Any, web_server: Any, microphone: tuple[Path, str]
) -> None:
    path, text = microphone
    browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            *ARGS,
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={path}%noloop",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(web_server.http + "/")
        page.select_option("#caller", "+1 415 555 0101")
        page.click("#start")
        page.wait_for_function(
            # a function, not an expression: an expression is eval()ed, which the CSP forbids
            "() => document.getElementById('call-status').textContent.startsWith('on a call')",
            timeout=20_000,
        )
        call_id = page.locator("#call-status").inner_text().split("(")[1].split(")")[0]
        frame = page.frame_locator("#agent-frame")
        # the words of the first clip show up on the agent screen while the call is live
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            body = frame.locator("body").inner_text().lower()
            if "halt" in body and "way" in body:
                break
            time.sleep(0.5)
        assert "halt" in body and "way" in body, body[:2000]
        time.sleep(6)  # the rest of the recording
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "landing-test-call.png"))
        page.click("#stop")
        page.wait_for_function(
            "() => document.getElementById('call-status').textContent.startsWith('call ended')",
            timeout=30_000,
        )
        assert errors == []
        context.close()
    finally:
        browser.close()
    with urllib.request.urlopen(
        f"{web_server.http}/v1/calls/{call_id}/transcript?format=json", timeout=10
    ) as response:
        stored = json.load(response)
    assert stored["call"]["source"] == "native"
    assert stored["call"]["customer_name"] == "Crystal Minh"
    said = " ".join(u["text"] for u in stored["utterances"])
    assert wer(text, said) <= 0.25, said
