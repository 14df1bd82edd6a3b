"""Languages: `language` in the start message ("en", a Whisper code, or "auto" detected per
channel), the multilingual model for both passes, and assist that does not guess in English."""

from __future__ import annotations

import asyncio
import json
import unicodedata
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import connect

from audio.files import load_call_audio
from audio.protocols.events import ProtocolFailure
from audio.protocols.native import NativeIngestProtocol, StartCall
from audio.protocols.vocabulary import check_language
from models.scheduler import RecognitionScheduler
from service.settings import Settings
from tests.conftest import AUDIO

START = {"type": "start", "call_id": "l-1", "encoding": "pcm16", "sample_rate": 16000}
CALLS = {  # the four real non-English calls (both parties on one channel)
    "de": "ml_callytics_example_de.mp3",
    "fr": "ml_callytics_example_fr.mp3",
    "ja": "ml_callytics_example_ja.mp3",
    "tr": "ml_callytics_example_tr.mp3",
}


def test_language_values() -> None:
    assert check_language("de") == ("de", None)
    assert check_language("auto") == ("auto", None)
    assert check_language("pt-BR") == ("pt", None)
    assert check_language("EN_us") == ("en", None)
    for bad in ("klingon", "", 7, None, "xx-YY"):
        code, problem = check_language(bad)
        assert code == "" and problem and "language" in problem
    [event] = NativeIngestProtocol().receive_text(json.dumps({**START, "language": "ja"}))
    assert isinstance(event, StartCall) and event.language == "ja"
    [event] = NativeIngestProtocol().receive_text(json.dumps(START))
    assert isinstance(event, StartCall) and event.language == "en"
    [error] = NativeIngestProtocol().receive_text(json.dumps({**START, "language": "elvish"}))
    assert isinstance(error, ProtocolFailure) and error.code == "bad_language"
    assert "elvish" in error.message


def test_an_english_only_server_says_so(engine: Any) -> None:
    scheduler = RecognitionScheduler(engine)  # tiny.en for both passes
    assert scheduler.speaks("en") and not scheduler.speaks("de")
    with pytest.raises(ValueError, match="English-only"):
        scheduler.engine_for(True, "de")


def test_non_english_partials_use_the_multilingual_engine(engine: Any, base_engine: Any) -> None:
    scheduler = RecognitionScheduler(engine, final_engine=base_engine)
    assert scheduler.engine_for(False, "en") is engine
    assert scheduler.engine_for(False, "de") is base_engine
    assert scheduler.engine_for(False, "auto") is base_engine
    assert scheduler.engine_for(True, "en") is base_engine


def scripts(text: str) -> set[str]:
    """The writing systems of the letters of `text` (LATIN, HIRAGANA, CJK, ...)."""
    out = set()
    for ch in text:
        if ch.isalpha():
            out.add(unicodedata.name(ch, "?").split()[0])
    return out


@pytest.mark.parametrize("language", sorted(CALLS))
def test_auto_detects_each_real_call_and_writes_its_script(language: str) -> None:
    from cli import transcribe_call

    audio = load_call_audio([AUDIO / CALLS[language]], 1)
    clip = type(audio)(audio.samples[: audio.sample_rate * 45], audio.sample_rate)
    settings = Settings.load(env={}, overrides={"assist": False})
    call = asyncio.run(
        transcribe_call(settings, clip, ["customer"], f"lang-{language}", language="auto")
    )
    finals = [u for u in call["utterances"] if u["text"]]
    assert finals, f"nothing recognized in {CALLS[language]}"
    assert {u["language"] for u in finals} == {language}, [u["language"] for u in finals]
    text = " ".join(u["text"] for u in finals)
    found = scripts(text)
    if language == "ja":
        assert found & {"HIRAGANA", "KATAKANA", "CJK"}, text
    else:
        assert found == {"LATIN"}, (found, text)
        marks = {"de": "äöüß", "fr": "éèàçê", "tr": "ğışçöü"}[language]
        assert any(c in text.lower() for c in marks), text


async def test_a_non_english_call_gets_no_english_intents(server: Any) -> None:
    """German named in the start message: German finals, and intent and sentiment events that
    say the models do not read it instead of an English guess."""
    audio = load_call_audio([AUDIO / CALLS["de"]], 1)
    pcm = audio.samples[audio.sample_rate * 14 : audio.sample_rate * 40, 0].tobytes()
    call_id = "lang-de-" + uuid.uuid4().hex[:6]
    events: list[dict[str, Any]] = []
    async with connect(f"{server.url}/v1/ingest") as ws:
        await ws.send(
            json.dumps(
                {
                    **START,
                    "call_id": call_id,
                    "sample_rate": audio.sample_rate,
                    "channels": ["customer"],
                    "language": "de",
                }
            )
        )
        step = audio.sample_rate // 5 * 2
        for i in range(0, len(pcm), step):
            await ws.send(pcm[i : i + step])
        await ws.send(json.dumps({"type": "stop"}))
        async for message in ws:
            events.append(json.loads(message))
    started = next(e for e in events if e["type"] == "call.started")
    assert started["language"] == "de"
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert finals and all(f["language"] == "de" for f in finals)
    text = " ".join(f["text"] for f in finals).lower()
    assert "kreditkarte" in text, text
    intents = [e for e in events if e["type"] == "intent"]
    sentiments = [e for e in events if e["type"] == "sentiment"]
    assert intents and all(e["intent"] is None and "English" in e["unavailable"] for e in intents)
    assert sentiments and all(e["label"] == "" and e["unavailable"] for e in sentiments)
