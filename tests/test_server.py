"""End to end through a real server on loopback: real model, real recordings."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from audio.files import CallAudio, load_call_audio
from benchmarks.common import wer
from clients.native import StreamResult, stream_call
from tests.conftest import AUDIO, assert_late_view, reference
from tests.servers import ServerProcess

PAIR = [AUDIO / "cs_aws_auto_repairs_40_caller.wav", AUDIO / "cs_aws_auto_repairs_40_agent.wav"]


async def until(event: asyncio.Event, task: asyncio.Future[Any]) -> None:
    """Wait for `event`, or for `task` to end first (then the caller's check fails)."""
    waiter = asyncio.ensure_future(event.wait())
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()


def finals(result: StreamResult) -> list[dict[str, Any]]:
    return [e for e in result.events if e["type"] == "transcript.final"]


def transcript(result: StreamResult) -> str:
    return " ".join(e["text"] for e in finals(result))


def check_stream_shape(result: StreamResult) -> None:
    """started first, seq contiguous from 1, call.ended then stopped last, clean close."""
    types = [e["type"] for e in result.events]
    assert types[0] == "started" and types[-1] == "stopped", types
    events = [e for e in result.events if "seq" in e]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "call.started" and events[-1]["type"] == "call.ended"
    assert result.close_code == 1000


def test_healthz(server) -> None:  # type: ignore[no-untyped-def]
    with urllib.request.urlopen(server.http + "/healthz", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "ok" and body["compute_type"] == "int8"


@pytest.mark.parametrize(
    ("name", "bound"),
    [
        ("wb_jfk_inaugural_1961.flac", 0.15),
        ("ls_test-clean_4507-16021-0012.wav", 0.2),
        ("ls_test-clean_8455-210777-0068.wav", 0.2),
        ("wb_timit_LDC93S1.wav", 0.3),
    ],
)
async def test_wideband_recordings(server, name: str, bound: float) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([AUDIO / name], 1)
    result = await stream_call(server.url, audio, ["customer"], realtime=False)
    check_stream_shape(result)
    assert wer(reference(name), transcript(result)) <= bound, transcript(result)
    for final in finals(result):
        assert final["channel"] == "customer" and final["words"]
        assert 0 <= final["start"] <= final["end"] <= audio.duration + 0.1
        assert all(0 < w["probability"] <= 1 for w in final["words"])


async def test_telephone_8khz_mulaw(server) -> None:  # type: ignore[no-untyped-def]
    name = "tel_asterisk_allison_demo-instruct.wav"
    audio = load_call_audio([AUDIO / name], 1)
    assert audio.sample_rate == 8000
    result = await stream_call(server.url, audio, ["customer"], realtime=False, encoding="mulaw")
    check_stream_shape(result)
    text = transcript(result)
    assert wer(reference(name), text) <= 0.15, text
    assert "500" in text  # numbers come through as digits


def energy(track: np.ndarray, rate: int, start: float, end: float) -> float:
    part = track[int(start * rate) : max(int(end * rate), int(start * rate) + 1)].astype(float)
    return float(np.sqrt(np.mean(part**2))) if part.size else 0.0


async def test_two_channel_call_keeps_channels_apart(server) -> None:  # type: ignore[no-untyped-def]
    pair = load_call_audio(PAIR)
    cut = 60 * pair.sample_rate
    audio = CallAudio(pair.samples[:cut], pair.sample_rate)
    result = await stream_call(server.url, audio, ["customer", "agent"], realtime=False)
    check_stream_shape(result)
    got = finals(result)
    assert {f["channel"] for f in got} == {"customer", "agent"}
    assert len(got) >= 6
    for final in got:
        # the two parties alternate without overlap: the channel a final is on must be the
        # one that carries the sound during it
        mine = 0 if final["channel"] == "customer" else 1
        own = energy(audio.samples[:, mine], audio.sample_rate, final["start"], final["end"])
        other = energy(audio.samples[:, 1 - mine], audio.sample_rate, final["start"], final["end"])
        assert own > 2 * other, (final, own, other)
    for e in result.events:
        if e["type"].startswith("transcript."):
            assert e["channel"] in ("customer", "agent")


async def test_late_screen_gets_the_call_in_order_without_duplicates(server) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([AUDIO / "wb_jfk_inaugural_1961.flac"], 1)
    call_id = "late-joiner-1"
    first_final = asyncio.Event()
    streaming = asyncio.create_task(
        stream_call(
            server.url,
            audio,
            ["customer"],
            realtime=True,
            speed=1.0,
            call_id=call_id,
            on_event=lambda e: e["type"] == "transcript.final" and first_final.set(),
        )
    )
    # mid-call: joined after the first utterance's partials were replaced by its final
    await until(first_final, streaming)
    assert not streaming.done(), streaming.result()  # the call ended before its first final
    screen: list[dict[str, Any]] = []
    async with connect(f"{server.url}/v1/calls/{call_id}/events") as ws:
        try:
            async for message in ws:
                screen.append(json.loads(message))
        except ConnectionClosed:
            pass
        assert ws.close_code == 1000
    result = await streaming
    ingest = [e for e in result.events if "seq" in e]
    assert_late_view(screen, ingest)
    assert len(screen) < len(ingest)  # it joined after partials had been replaced
    assert any(e["type"] == "transcript.partial" for e in screen)
    assert screen[-1]["type"] == "call.ended"


async def test_partials_grow_from_a_stable_prefix(server) -> None:  # type: ignore[no-untyped-def]
    """A partial's stable words never change until the final, and a partial never says more
    than was spoken: the forced prefix comes back once (a duplicated prefix once snowballed)."""
    audio = load_call_audio([AUDIO / "wb_jfk_inaugural_1961.flac"], 1)
    result = await stream_call(server.url, audio, ["customer"], realtime=True, speed=2.0)
    partials = [e for e in result.events if e["type"] == "transcript.partial"]
    final_words = {f["utterance"]: len(f["text"].split()) for f in finals(result)}
    assert len(partials) >= 3 and any(p["stable"] for p in partials)
    stable: dict[int, str] = {}
    for partial in partials:
        utterance, text = partial["utterance"], partial["text"]
        assert text.startswith(partial["stable"]), partial
        assert partial["stable"].startswith(stable.get(utterance, "")), (stable, partial)
        stable[utterance] = partial["stable"]
        rest = text[len(partial["stable"]) :].split()
        said = partial["stable"].split()
        assert not said or rest[: len(said)] != said, partial  # "And so And so my fellow"
        assert len(text.split()) <= final_words.get(utterance, 0) + 2, (partial, final_words)


async def test_events_resume_after_seq(server) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([AUDIO / "ls_test-clean_2830-3980-0043.wav"], 1)
    result = await stream_call(server.url, audio, ["customer"], realtime=False, call_id="resume-1")
    sent = [e for e in result.events if e.get("seq", 0) > 2]
    async with connect(f"{server.url}/v1/calls/resume-1/events?after_seq=2") as ws:
        replay = [json.loads(m) async for m in ws]
    assert replay[-1] == sent[-1]
    assert_late_view(replay, sent)  # from seq 3 on, all but replaced partials and analytics


async def raw_exchange(
    url: str, messages: list[str | bytes]
) -> tuple[list[dict[str, Any]], int | None]:
    """Send messages on a fresh ingest connection; return what came back and the close code."""
    received: list[dict[str, Any]] = []
    async with connect(f"{url}/v1/ingest", max_size=None) as ws:
        try:
            for message in messages:
                await ws.send(message)
            async for reply in ws:
                received.append(json.loads(reply))
        except ConnectionClosed:
            pass
        return received, ws.close_code


START = json.dumps(
    {
        "type": "start",
        "call_id": "bad-1",
        "encoding": "pcm16",
        "sample_rate": 16000,
        "channels": ["customer"],
    }
)
BAD_INPUTS = [
    ("malformed json", ['{"type": "start"'], "bad_json", 1007),
    (
        "missing field",
        ['{"type": "start", "call_id": "x", "encoding": "pcm16"}'],
        "missing_field",
        1008,
    ),
    ("unknown field", [START[:-1] + ', "rate": 1}'], "unknown_field", 1008),
    ("unknown encoding", [START.replace("pcm16", "opus")], "unsupported_encoding", 1003),
    ("sample rate 0", [START.replace("16000", "0")], "bad_sample_rate", 1008),
    ("absurd sample rate", [START.replace("16000", "99999999")], "bad_sample_rate", 1008),
    ("audio before start", [b"\x00\x00" * 160], "audio_before_start", 1008),
    ("odd pcm16 bytes", [START, b"\x00" * 321], "bad_audio", 1007),
    ("oversized frame", [START, b"\x00" * (2 * 1024 * 1024)], "frame_too_large", 1009),
]


async def test_bad_input_while_a_good_call_keeps_transcribing(server) -> None:  # type: ignore[no-untyped-def]
    name = "wb_jfk_inaugural_1961.flac"
    audio = load_call_audio([AUDIO / name], 1)
    good = asyncio.create_task(
        stream_call(server.url, audio, ["customer"], realtime=True, speed=2.0, call_id="good-1")
    )
    for label, messages, code, close in BAD_INPUTS:
        received, close_code = await raw_exchange(server.url, messages)
        errors = [m for m in received if m.get("type") == "error"]
        assert errors and errors[-1]["code"] == code, (label, received)
        assert errors[-1]["message"], label
        assert close_code == close, (label, close_code)
    result = await good
    check_stream_shape(result)
    assert wer(reference(name), transcript(result)) <= 0.15


async def test_bad_audio_mid_call_keeps_what_was_sent(server) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([AUDIO / "ls_test-clean_8455-210777-0068.wav"], 1)
    start = START.replace("bad-1", "bad-mid-1")
    pcm = audio.samples.reshape(-1).astype("<i2").tobytes()
    received, close_code = await raw_exchange(server.url, [start, pcm, b"\x00" * 3])
    types = [m["type"] for m in received]
    assert types[-1] == "error" and close_code == 1007
    assert "transcript.final" in types and "call.ended" in types
    text = " ".join(m["text"] for m in received if m["type"] == "transcript.final")
    assert wer(reference("ls_test-clean_8455-210777-0068.wav"), text) <= 0.2


async def test_abrupt_disconnect_keeps_finals(server) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([AUDIO / "wb_jfk_inaugural_1961.flac"], 1)
    call_id = "abrupt-1"
    async with connect(f"{server.url}/v1/ingest") as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "start",
                    "call_id": call_id,
                    "encoding": "pcm16",
                    "sample_rate": audio.sample_rate,
                    "channels": ["customer"],
                }
            )
        )
        await ws.send(audio.samples[: int(audio.sample_rate * 6.5)].reshape(-1).tobytes())
        # The audio is one message: once the server shows a transcript of it, it has it all.
        async with asyncio.timeout(120):
            async for raw in ws:
                if isinstance(raw, str) and json.loads(raw)["type"].startswith("transcript."):
                    break
        assert ws.transport is not None
        ws.transport.abort()  # no close frame, no stop: the softphone crashed
    async with connect(f"{server.url}/v1/calls/{call_id}/events") as events_ws:
        events = [json.loads(m) async for m in events_ws]
    assert events[-1]["type"] == "call.ended" and events[-1]["reason"] == "disconnect"
    text = " ".join(e["text"] for e in events if e["type"] == "transcript.final").lower()
    assert "fellow americans" in text and "country" in text  # spoken before the crash
    # the utterance cut off mid-word was finalized, and every final is in the store
    url = f"{server.http}/v1/calls/{call_id}/transcript"
    stored = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(url, timeout=30)))
    assert stored["call"]["outcome"] == "disconnect"
    assert [u["text"] for u in stored["utterances"]] == [
        e["text"] for e in events if e["type"] == "transcript.final"
    ]


async def test_duplicate_call_id_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([AUDIO / "wb_jfk_inaugural_1961.flac"], 1)
    started = asyncio.Event()
    first = asyncio.create_task(
        stream_call(
            server.url,
            audio,
            ["customer"],
            realtime=True,
            speed=1.0,  # 11 s live: the duplicate comes while the first call is surely on
            call_id="dup-1",
            on_event=lambda e: e["type"] == "started" and started.set(),
        )
    )
    await until(started, first)  # the first call is registered once the server said so
    assert not first.done(), first.result()
    start = START.replace("bad-1", "dup-1")
    received, close_code = await raw_exchange(server.url, [start])
    assert received[-1]["code"] == "call_active" and close_code == 1008
    check_stream_shape(await first)


def metric(text: str, name: str) -> float:
    """The value of one sample (`name` with its labels, exactly as exported)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_metrics_after_calls(server) -> None:  # type: ignore[no-untyped-def]
    audio = load_call_audio([AUDIO / "wb_timit_LDC93S1.wav"], 1)
    await stream_call(server.url, audio, ["customer"], realtime=True, speed=2.0)
    body = await asyncio.to_thread(
        lambda: urllib.request.urlopen(server.http + "/metrics", timeout=10).read().decode()
    )
    assert metric(body, 'callcue_latency_seconds_count{stage="final"}') >= 1
    assert metric(body, 'callcue_latency_seconds_count{stage="partial"}') >= 1
    assert metric(body, 'callcue_calls_total{source="native"}') >= 1
    assert metric(body, 'callcue_decode_seconds_count{kind="final"}') >= 1
    assert 0 < metric(body, "callcue_real_time_factor") < 10
    for name in (
        "callcue_active_calls",
        'callcue_queue_depth{kind="final"}',
        'callcue_model_batch_size_count{kind="final"}',
    ):
        metric(body, name)
    assert "# TYPE callcue_latency_seconds histogram" in body


def test_without_a_token_the_server_binds_to_loopback_and_says_so() -> None:
    proc = ServerProcess("--host", "0.0.0.0")
    try:
        assert proc.http.startswith("http://127.0.0.1:")
        assert any("binding to 127.0.0.1 instead of 0.0.0.0" in line for line in proc.log)
    finally:
        proc.stop()


async def test_a_call_that_fails_half_way_through_its_start_holds_nothing(tmp_path: Any) -> None:
    """Its recording cannot be opened (the recordings folder is a file): the client is told
    (1011, `internal`), and the call is ended rather than left registered: the server
    counts no live call, and the same call id fails the same way again, not `call_active`."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    server = ServerProcess(
        env={
            "CALLCUE_DATABASE_URL": f"sqlite:///{tmp_path}/store.db",
            "CALLCUE_RECORD_AUDIO": "true",
            "CALLCUE_RECORDINGS_DIR": str(blocker),
        }
    )
    try:
        audio = load_call_audio([AUDIO / "wb_jfk_inaugural_1961.flac"], 1)
        clip = CallAudio(audio.samples[: 2 * audio.sample_rate], audio.sample_rate)
        for _ in range(2):
            result = await stream_call(server.url, clip, ["customer"], call_id="half-1")
            errors = [e for e in result.events if e["type"] == "error"]
            assert errors and errors[-1]["code"] == "internal", result.events
            assert result.close_code == 1011
            health = await asyncio.to_thread(read_json, server.http + "/healthz")
            assert health["active_calls"] == 0
    finally:
        server.stop()


def read_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())
