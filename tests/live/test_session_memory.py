"""What a call keeps in memory: its latest finals only (a call of hours stays bounded), while
every final still reaches the hub, and the end-of-call counts cover the whole call."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import replace
from types import SimpleNamespace

import pytest

import live.session
from assist.events import TranscriptFinal, TranscriptRevised
from audio.codec import AudioFormat
from audio.files import load_call_audio
from live.session import CallSession
from service.node import load_services
from service.settings import Settings
from tests.conftest import AUDIO

CALLER = AUDIO / "cs_aws_auto_repairs_40_caller.wav"  # a real call's customer channel


async def test_a_call_keeps_only_its_latest_finals(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 1 s of finals kept beyond a 10 s revision stretch, the older finals and revisions
    of a real call's first 120 s are let go of: the session holds only those that end within
    11 s of the newest, the hub got every one, and `call.revised` counts the whole call's."""
    monkeypatch.setattr(live.session, "FINALS_KEPT_S", 1.0)
    services = load_services(
        Settings.load(
            env={
                "CALLCUE_ASSIST": "false",
                "CALLCUE_CUSTOMERS": "none",
                "CALLCUE_REVISE": "true",
                "CALLCUE_REVISE_SECONDS": "10",
            }
        ),
        store=False,
    )
    try:
        audio = load_call_audio([CALLER], 1)
        fmt = AudioFormat("pcm16", audio.sample_rate, 1)
        session = CallSession(
            services,
            "memory-1",
            fmt,
            ("customer",),
            streaming=replace(services.recognition.streaming, partials=False),
        )
        await session.start()
        pcm = audio.samples[: 120 * audio.sample_rate, 0].astype("<i2").tobytes()
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
    horizon = finals[-1].end - 11.0
    assert finals[0].end < horizon, "the recording is long enough to let go"
    kept = list(session.finals)
    assert kept and len(kept) < len(finals)
    assert kept == [f for f in finals if f.end >= horizon], "the latest, all"
    assert session.finals_published == len(finals)
    revised = [e for e in events if e.type == "transcript.revised"]
    assert all(r.end >= horizon for r in session.revised.values())
    [ended] = [e for e in events if e.type == "call.revised"]
    assert ended.finals == len(finals)  # type: ignore[attr-defined]
    assert ended.revised == len({(r.channel, r.utterance) for r in revised})  # type: ignore[attr-defined]


def test_the_revisions_of_finals_let_go_are_let_go_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A final every 10 s of call time, each revised: with 30 s kept beyond a 10 s revision
    stretch, the session keeps the finals and revisions of the last 40 s; a diarized call's
    entities of the finals let go go with them."""
    monkeypatch.setattr(live.session, "FINALS_KEPT_S", 30.0)
    session = SimpleNamespace(
        finals=deque(),
        keep_finals=False,
        finals_published=0,
        revised={},
        _final_entities={},
        services=SimpleNamespace(
            recognition=SimpleNamespace(
                reviser=SimpleNamespace(options=SimpleNamespace(seconds=10))
            )
        ),
    )
    session._kept_from = lambda now: CallSession._kept_from(session, now)  # type: ignore[arg-type]
    for i in range(12):
        end = 10.0 * i + 5
        final = TranscriptFinal(
            call_id="c",
            seq=2 * i + 1,
            channel="customer",
            utterance=i,
            start=end - 3,
            end=end,
            text="x",
        )
        CallSession._keep_final(session, final)  # type: ignore[arg-type]
        session._final_entities[final.seq] = []
        session.revised[final.seq] = TranscriptRevised(
            call_id="c",
            seq=2 * i + 2,
            channel="customer",
            utterance=i,
            final_seq=final.seq,
            start=final.start,
            end=end,
            text="y",
            live_text="x",
        )
    assert [f.utterance for f in session.finals] == [7, 8, 9, 10, 11]  # ends 75 ... 115
    assert sorted(session.revised) == [f.seq for f in session.finals]
    assert sorted(session._final_entities) == [f.seq for f in session.finals]
    assert session.finals_published == 12
