"""`hold_open_ms` on real audio: the agent of the real auto-repair call pauses 0.5 s inside
"The first availability we have is ... 2 days from now." Without the hold that is two finals,
the first a fragment; with it, one."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from audio.files import CallAudio, load_call_audio
from service.settings import Settings
from tests.conftest import AUDIO


def finals(hold_ms: int) -> list[str]:
    from cli import transcribe_call

    audio = load_call_audio([AUDIO / "cs_aws_auto_repairs_40_agent.wav"], 1)
    clip = CallAudio(audio.samples[139 * audio.sample_rate : 147 * audio.sample_rate], 8000)
    assert audio.sample_rate == 8000
    settings = Settings.load(
        env={}, overrides={"assist": False, "revise": False, "hold_open_ms": hold_ms}
    )
    call: dict[str, Any] = asyncio.run(transcribe_call(settings, clip, ["agent"], "hold"))
    return [u["text"] for u in call["utterances"] if u["text"]]


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_a_pause_after_an_open_sentence_is_held_for_its_end() -> None:
    cut = finals(0)
    [opening] = [t for t in cut if "availability" in words(t)]
    assert not words(opening) & {"days", "2", "two"}, cut  # a fragment of its own
    whole = finals(1000)
    [sentence] = [t for t in whole if "availability" in words(t)]
    assert words(sentence) >= {"availability", "days", "from", "now"}, whole
    assert len(whole) < len(cut)
