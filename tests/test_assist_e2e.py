"""A real call through the server: audio in, intent/sentiment/suggestions/actions out."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest
import websockets

from audio.files import CallAudio, load_call_audio
from clients.native import stream_call
from tests.conftest import AUDIO
from tests.servers import ServerProcess

PLAYBOOK = Path(__file__).parent / "fixtures" / "auto_repair.yaml"
PAIR = [AUDIO / "cs_aws_auto_repairs_40_caller.wav", AUDIO / "cs_aws_auto_repairs_40_agent.wav"]


@pytest.fixture(scope="module")
def repair_server():  # type: ignore[no-untyped-def]
    # every final at full beam: the assist checks read recognized words, whose text would
    # otherwise depend on how fast this machine decodes (see tests/conftest.py's server)
    proc = ServerProcess("--playbook", str(PLAYBOOK), env={"CALLCUE_FINAL_DEADLINE_MS": "0"})
    yield proc
    proc.stop()


async def test_call_yields_assist_events(repair_server) -> None:  # type: ignore[no-untyped-def]
    pair = load_call_audio(PAIR)
    audio = CallAudio(pair.samples[: 70 * pair.sample_rate], pair.sample_rate)
    result = await stream_call(
        repair_server.url,
        audio,
        ["customer", "agent"],
        realtime=False,
        metadata={"caller": "+1 617 555 0123"},  # Sanya Afzal in the sample directory
    )
    events = [e for e in result.events if "seq" in e]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    types = [e["type"] for e in events]
    started = events[0]
    assert started["type"] == "call.started" and started["customer"]["name"] == "Sanya Afzal"
    intents = [e for e in events if e["type"] == "intent"]
    assert any(e["intent"] == "warning_light" for e in intents), intents
    assert any(e["type"] == "sentiment" and e["channel"] == "customer" for e in events)
    suggestions = [e for e in events if e["type"] == "suggestion"]
    assert any(s["id"] == "light_sorry" and "Sanya" in s["text"] for s in suggestions)
    assert any(e["type"] == "action" and e["id"] == "offer_free_diagnostic" for e in events)
    checklists = [e for e in events if e["type"] == "checklist"]
    assert checklists[-1]["final"] and checklists[-1]["items"][0]["done"]  # greeting said
    # every assist event comes after the final it was read from, and before call.ended
    assert types[-1] == "call.ended"
    first_final = types.index("transcript.final")
    assert all(i > first_final for i, t in enumerate(types) if t in ("intent", "suggestion"))


async def test_feedback_from_a_screen(repair_server) -> None:  # type: ignore[no-untyped-def]
    pair = load_call_audio(PAIR)
    audio = CallAudio(pair.samples[: 45 * pair.sample_rate], pair.sample_rate)
    call = asyncio.ensure_future(
        stream_call(repair_server.url, audio, ["customer", "agent"], realtime=True, call_id="fb-1")
    )
    uri = repair_server.url + "/v1/calls/fb-1/events"
    await asyncio.sleep(1.0)
    replies: list[dict] = []  # type: ignore[type-arg]
    async with websockets.connect(uri) as screen:
        await screen.send("{not json")
        async for raw in screen:
            event = json.loads(raw)
            if event["type"] == "error":
                replies.append(event)
                if len(replies) > 1:
                    continue
                await screen.send(
                    json.dumps(
                        {"type": "feedback", "kind": "reply", "id": "nope", "action": "dismissed"}
                    )
                )
            if event["type"] == "suggestion" and not any(r["type"] == "feedback" for r in replies):
                await screen.send(
                    json.dumps(
                        {
                            "type": "feedback",
                            "kind": event["kind"],
                            "id": event["id"],
                            "action": "dismissed",
                        }
                    )
                )
            if event["type"] == "feedback":
                replies.append(event)
                break
    call.cancel()
    codes = [r.get("code") for r in replies]  # the two bad ones first, then the good one
    assert codes[:2] == ["bad_feedback", "bad_feedback"], replies
    assert "not valid JSON" in replies[0]["message"]
    assert "was shown in this call" in replies[1]["message"]
    assert replies[-1]["type"] == "feedback" and replies[-1]["action"] == "dismissed"


async def test_a_screen_cannot_flood_feedback(repair_server) -> None:  # type: ignore[no-untyped-def]
    """200 feedback messages at once: the burst is read (bad ones answered bad_feedback), the
    rest refused with feedback_limit and counted; the screen stays connected."""
    pair = load_call_audio(PAIR)
    audio = CallAudio(pair.samples[: 20 * pair.sample_rate], pair.sample_rate)
    call = asyncio.ensure_future(
        stream_call(repair_server.url, audio, ["customer", "agent"], realtime=True, call_id="fl-1")
    )
    before = metric_value(repair_server, 'callcue_limit_rejections_total{limit="feedback"}')
    flood = json.dumps({"type": "feedback", "kind": "reply", "id": "nope", "action": "dismissed"})
    codes: list[str] = []
    async with websockets.connect(repair_server.url + "/v1/calls/fl-1/events") as screen:
        async for raw in screen:  # the call is live once its screen sees call.started
            if json.loads(raw)["type"] == "call.started":
                break
        for _ in range(200):
            await screen.send(flood)
        async for raw in screen:
            event = json.loads(raw)
            if event["type"] == "error":
                codes.append(event["code"])
            if len(codes) == 200:
                break
    call.cancel()
    assert set(codes) == {"bad_feedback", "feedback_limit"}
    assert 30 <= codes.count("bad_feedback") <= 45, codes.count("bad_feedback")
    after = metric_value(repair_server, 'callcue_limit_rejections_total{limit="feedback"}')
    assert after - before == codes.count("feedback_limit")


def metric_value(server: ServerProcess, series: str) -> float:
    with urllib.request.urlopen(server.http + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0
