"""Vocabulary: words a call is likely to contain, from the start message, the platforms'
parameters, the names and the playbook, given to Whisper as biasing."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr
from websockets.asyncio.client import connect

from assist.customers import Customer
from assist.playbook import PlaybookError, load_playbook
from audio.files import load_call_audio
from audio.protocols.native import NativeIngestProtocol, ProtocolFailure, StartCall
from audio.protocols.vocabulary import MAX_TERMS, parse_vocabulary
from clients.simulators import simulate_audiohook, simulate_twilio
from live.session import call_vocabulary
from models.asr import VOCABULARY_TOKENS, StreamingTranscriber
from models.scheduler import RecognitionScheduler
from tests.conftest import AUDIO, AUDIOHOOK_KEY, AUDIOHOOK_SECRET, TWILIO_TOKEN

START = {"type": "start", "call_id": "v-1", "encoding": "pcm16", "sample_rate": 16000}


def test_parse_vocabulary() -> None:
    assert parse_vocabulary(["Acme", " Zephyr  Plus ", "acme", ""]) == (
        ("Acme", "Zephyr Plus"),
        None,
    )
    assert parse_vocabulary("Acme, Zephyr Plus,") == (("Acme", "Zephyr Plus"), None)
    for bad, words in (
        ({"a": 1}, "list of strings"),
        (["ok", 3], "list of strings"),
        (["x" * 65], "at most 64"),
        ([f"t{i}" for i in range(MAX_TERMS + 1)], f"at most {MAX_TERMS}"),
        (["nul\x00here"], "control characters"),
    ):
        terms, problem = parse_vocabulary(bad)
        assert terms == () and problem is not None and words in problem, problem


def test_native_start_carries_the_vocabulary_and_refuses_a_bad_one() -> None:
    proto = NativeIngestProtocol()
    [event] = proto.receive_text(json.dumps({**START, "vocabulary": ["Acme", "Zephyr Plus"]}))
    assert isinstance(event, StartCall) and event.vocabulary == ("Acme", "Zephyr Plus")
    [error] = NativeIngestProtocol().receive_text(json.dumps({**START, "vocabulary": "x" * 80}))
    assert isinstance(error, ProtocolFailure) and error.code == "bad_vocabulary"
    assert "64" in error.message and error.close_code == 1008


def test_playbook_vocabulary_is_validated(tmp_path: Path) -> None:
    from assist.playbook import DEFAULT_PLAYBOOK

    text = DEFAULT_PLAYBOOK.read_text()
    good = tmp_path / "good.yaml"
    good.write_text(text + '\nvocabulary: ["Zephyr Plus", "Acme Rewards"]\n')
    assert load_playbook(good).vocabulary == ("Zephyr Plus", "Acme Rewards")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text + f'\nvocabulary: ["ok", "{"y" * 70}", 3]\n')
    with pytest.raises(PlaybookError, match=r"vocabulary: must be a list of non-empty strings"):
        load_playbook(bad)
    long = tmp_path / "long.yaml"
    long.write_text(text + f'\nvocabulary: ["ok", "{"y" * 70}"]\n')
    with pytest.raises(PlaybookError, match=r"vocabulary\[1\]: at most 64 characters"):
        load_playbook(long)


def test_call_vocabulary_puts_the_call_first_then_names_then_the_playbook() -> None:
    customer = Customer(id="c1", name="Crystal Minh", preferred_name="Crystal")
    terms = call_vocabulary(
        ("Zephyr Plus", "acme"),
        customer,
        {"agent_name": "Michelle Okafor"},
        ("Acme", "Platinum Motors"),
    )
    assert terms == (
        "Zephyr Plus",
        "acme",
        "Crystal Minh",
        "Crystal",
        "Michelle Okafor",
        "Platinum Motors",
    )


def genesys_agent_16k(lo: float, hi: float) -> np.ndarray:
    data, rate = sf.read(str(AUDIO / "cs_genesys_audiohook_stereo_pcmu.wav"), dtype="float32")
    track = soxr.resample(data[:, 0], rate, 16000).astype(np.float32)
    return track[int(lo * 16000) : int(hi * 16000)]


def test_the_vocabulary_opens_every_prompt_and_changes_a_real_recognition(
    engine: Any, base_engine: Any, vad_model: Any
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from audio.vad import VadSegmenter

    scheduler = RecognitionScheduler(engine, final_engine=base_engine)  # not started
    with ThreadPoolExecutor(1) as pool:
        many = tuple(f"Product{i} Plus" for i in range(60))
        tr = StreamingTranscriber(
            "v/customer",
            engine,
            scheduler,
            VadSegmenter(vad_model),
            pool,
            on_partial=lambda p: None,
            on_final=lambda f: None,
            vocabulary=("samplestore.com", *many),
        )
        prompt = tr._prompt(base_engine)
        assert 0 < len(prompt) <= VOCABULARY_TOKENS  # cut to its budget, the first terms kept
        assert base_engine.tokenizer.decode(list(prompt)).strip().startswith("samplestore.com,")
    # "... email in the photo of the affected sample to us at help at samplestore.com"
    clip = genesys_agent_16k(46.0, 57.2)
    plain = base_engine.decode(clip, final=True).text.lower()
    biased = base_engine.decode(clip, final=True, prompt=prompt).text.lower()
    assert "samplestore" not in plain, plain
    assert "samplestore" in biased, biased
    assert "affected sample" in biased  # the rest is not disturbed


async def started_event(server_url: str, call_id: str) -> dict[str, Any]:
    """The first event a screen of `call_id` gets, whenever it connects: `call.started` comes
    first from the live call, from its history, or from the store once it has ended."""
    async with connect(f"{server_url}/v1/calls/{call_id}/events") as ws:
        return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout=60)))


async def test_each_source_reaches_the_call(server: Any) -> None:
    """The start message (native), customParameters (Twilio), customConfig (AudioHook) and
    the playbook's terms all reach the call (its `call.started` lists what it is biased to)."""
    audio = load_call_audio([AUDIO / "ls_test-clean_4507-16021-0012.wav"], 1)
    # native
    call_id = "vocab-" + uuid.uuid4().hex[:6]
    async with connect(f"{server.url}/v1/ingest") as ws:
        await ws.send(json.dumps({**START, "call_id": call_id, "vocabulary": ["Zephyr Plus"]}))
        assert json.loads(await ws.recv())["type"] == "started"
        started = json.loads(await ws.recv())
        assert started["type"] == "call.started"
        assert started["vocabulary"][0] == "Zephyr Plus"
        await ws.send(json.dumps({"type": "stop"}))
    # Twilio
    call_id = "vocab-tw-" + uuid.uuid4().hex[:6]
    screen = asyncio.create_task(started_event(server.url, call_id))
    await simulate_twilio(
        server.url,
        audio,
        call_id=call_id,
        token=TWILIO_TOKEN,
        realtime=False,
        extra_parameters={"vocabulary": "Acme Rewards, Zephyr Plus"},
    )
    assert (await screen)["vocabulary"][:2] == ["Acme Rewards", "Zephyr Plus"]
    # AudioHook
    conversation = str(uuid.uuid4())
    screen = asyncio.create_task(started_event(server.url, conversation))
    await simulate_audiohook(
        server.url,
        audio,
        conversation_id=conversation,
        api_key=AUDIOHOOK_KEY,
        secret_b64=AUDIOHOOK_SECRET,
        realtime=False,
        custom_config={"vocabulary": ["Platinum Motors"]},
    )
    assert (await screen)["vocabulary"][0] == "Platinum Motors"


async def test_a_bad_vocabulary_is_refused_with_a_clear_error(server: Any) -> None:
    audio = load_call_audio([AUDIO / "ls_test-clean_4507-16021-0012.wav"], 1)
    result = await simulate_twilio(
        server.url,
        audio,
        token=TWILIO_TOKEN,
        realtime=False,
        extra_parameters={"vocabulary": ",".join(f"t{i}" for i in range(MAX_TERMS + 5))},
    )
    assert result.close_code == 1008 and "bad_vocabulary" in result.close_reason
    async with connect(f"{server.url}/v1/ingest") as ws:
        await ws.send(json.dumps({**START, "call_id": "vocab-bad", "vocabulary": [1, 2]}))
        error = json.loads(await ws.recv())
        assert error["code"] == "bad_vocabulary" and "list of strings" in error["message"]
