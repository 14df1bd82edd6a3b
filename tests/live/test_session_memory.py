"""What a call keeps in memory: its latest finals only (a call of hours stays bounded), while
every final still reaches the hub, and the end-of-call counts cover the whole call."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

import live.session
from audio.codec import AudioFormat
from audio.files import load_call_audio
from live.session import CallSession
from service.node import load_services
from service.settings import Settings
from tests.conftest import AUDIO

PROMPT = AUDIO / "tel_asterisk_allison_demo-instruct.wav"


async def test_a_call_keeps_only_its_latest_finals(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 15 s of finals kept, a 73 s recording's older finals are let go of: the session
    holds only those that end within 15 s of the newest, the hub got every one, and
    `call.revised` counts the whole call's finals and revisions."""
    monkeypatch.setattr(live.session, "FINALS_KEPT_S", 15.0)
    services = load_services(
        Settings.load(
            env={"CALLCUE_ASSIST": "false", "CALLCUE_CUSTOMERS": "none", "CALLCUE_REVISE": "true"}
        ),
        store=False,
    )
    try:
        audio = load_call_audio([PROMPT], 1)
        fmt = AudioFormat("pcm16", audio.sample_rate, 1)
        session = CallSession(
            services,
            "memory-1",
            fmt,
            ("customer",),
            streaming=replace(services.recognition.streaming, partials=False),
        )
        await session.start()
        pcm = audio.samples[:, 0].astype("<i2").tobytes()
        step = audio.sample_rate * 2  # one second of 16-bit samples
        for lo in range(0, len(pcm), step):
            await session.push(pcm[lo : lo + step])
            await session.settle()
        await session.finish("stop")
        await asyncio.wait_for(session.revisions_done(), 300)
        feed = services.hub.feed("memory-1")
        assert feed is not None
        events = list(feed.history)
    finally:
        services.close()
    finals = [e for e in events if e.type == "transcript.final"]
    assert finals[-1].end - finals[0].end > 30, "the recording is long enough to let go"
    kept = list(session.finals)
    assert kept and len(kept) < len(finals)
    assert kept == [f for f in finals if f.end >= finals[-1].end - 15.0], "the latest, all"
    assert session.finals_published == len(finals)
    revised = [e for e in events if e.type == "transcript.revised"]
    assert all(r.end >= finals[-1].end - 15.0 for r in session.revised.values())
    [ended] = [e for e in events if e.type == "call.revised"]
    assert ended.finals == len(finals)  # type: ignore[attr-defined]
    assert ended.revised == len({(r.channel, r.utterance) for r in revised})  # type: ignore[attr-defined]
