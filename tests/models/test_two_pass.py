"""The embedded Whisper base and the two passes: tiny.en partials, base finals."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audio.codec import TARGET_RATE
from audio.vad import VadSegmenter
from models.asr import Final, StreamingOptions, StreamingTranscriber
from models.resolve import (
    BASE_PARTS,
    BASE_SHA256,
    EMBEDDED_BASE,
    ModelNotFoundError,
    base_model_dir,
    base_part_paths,
    resolve_whisper_model,
)
from models.scheduler import RecognitionScheduler
from tests.conftest import load_16k


def test_base_is_joined_once_and_checked(tmp_path: Path) -> None:
    out = base_model_dir(cache_dir=tmp_path)
    assert (out / "model.bin").stat().st_size == 145_217_532
    assert {p.name for p in out.iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
        "verified.json",
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    stamp = (out / "model.bin").stat().st_mtime_ns
    assert base_model_dir(cache_dir=tmp_path) == out
    assert (out / "model.bin").stat().st_mtime_ns == stamp  # trusted, not joined again
    # a damaged cached file (same size, other bytes) is noticed and joined again
    with open(out / "model.bin", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00" * 16)
    os.utime(out / "model.bin", ns=(stamp + 10**9, stamp + 10**9))
    again = base_model_dir(cache_dir=tmp_path)
    assert (again / "model.bin").stat().st_mtime_ns != stamp + 10**9
    assert "d01c3014" in BASE_SHA256


def test_a_corrupted_part_is_refused_with_the_packages_named(tmp_path: Path) -> None:
    first, second = base_part_paths()
    bad = tmp_path / "model.bin.part2"
    shutil.copyfile(second, bad)
    with open(bad, "r+b") as f:
        f.seek(12345)
        f.write(b"\xff\xfe")
    cache = tmp_path / "cache"
    with pytest.raises(ModelNotFoundError, match="SHA-256") as info:
        base_model_dir(cache_dir=cache, parts=[first, bad])
    assert all(package in str(info.value) for _, package, _ in BASE_PARTS)
    assert not list(cache.iterdir())  # nothing half-written stays in the cache
    with pytest.raises(ModelNotFoundError, match="SHA-256"):
        base_model_dir(cache_dir=cache, parts=[first])  # a missing half


def test_embedded_base_resolves_to_a_multilingual_model(base_engine: Any) -> None:
    path = resolve_whisper_model(EMBEDDED_BASE)
    assert (Path(path) / "model.bin").is_file()
    assert base_engine.model.model.is_multilingual
    hyp = base_engine.decode(load_16k("ls_test-clean_4507-16021-0012.wav"), final=True)
    assert "halt" in hyp.text.lower(), hyp.text


def run_channel(
    engine: Any, final_engine: Any, vad_model: Any, audio: np.ndarray, **options: Any
) -> tuple[list[Final], StreamingTranscriber]:
    from concurrent.futures import ThreadPoolExecutor

    async def main() -> tuple[list[Final], StreamingTranscriber]:
        scheduler = RecognitionScheduler(engine, workers=1, final_engine=final_engine)
        scheduler.start()
        finals: list[Final] = []
        with ThreadPoolExecutor(1) as pool:
            tr = StreamingTranscriber(
                "t/customer",
                engine,
                scheduler,
                VadSegmenter(vad_model),
                pool,
                on_partial=lambda p: None,
                on_final=finals.append,
                options=StreamingOptions(**options),
            )
            step = TARGET_RATE // 5
            for lo in range(0, audio.size, step):
                await tr.push(audio[lo : lo + step])
            await tr.close()
        scheduler.close()
        return finals, tr

    return asyncio.run(main())


def test_finals_come_from_the_finals_model(engine: Any, base_engine: Any, vad_model: Any) -> None:
    engine.stats.decodes = base_engine.stats.decodes = 0
    audio = load_16k("wb_jfk_inaugural_1961.flac")
    finals, _ = run_channel(engine, base_engine, vad_model, audio, partials=False)
    texts = [f.text for f in finals if f.text]
    assert len(texts) >= 3, texts
    # every final was decoded by base, none by tiny.en (partials are off here)
    assert base_engine.stats.decodes >= len(texts)
    assert engine.stats.decodes == 0
    said = " ".join(texts).lower()
    assert "fellow americans" in said and "your country" in said, said


def test_partials_stay_on_the_fast_model(engine: Any, base_engine: Any, vad_model: Any) -> None:
    engine.stats.decodes = 0
    audio = load_16k("wb_jfk_inaugural_1961.flac")
    finals, tr = run_channel(engine, base_engine, vad_model, audio)
    assert engine.stats.decodes > 0  # the partials
    assert tr.final_engine is base_engine
    assert any("country" in f.text.lower() for f in finals)


def test_a_final_is_decoded_with_the_previous_final_as_left_context(base_engine: Any) -> None:
    audio = load_16k("wb_jfk_inaugural_1961.flac")
    before = audio[int(0.0 * TARGET_RATE) : int(2.3 * TARGET_RATE)]  # "And so my fellow Americans"
    turn = audio[int(2.9 * TARGET_RATE) : int(4.5 * TARGET_RATE)]  # "ask not"
    context = tuple(base_engine.encode_text("And so, my fellow Americans,"))
    hyp = base_engine.decode(
        np.concatenate([before, turn]),
        final=True,
        context=context,
        context_s=before.size / TARGET_RATE,
    )
    assert hyp.ok, hyp
    text = hyp.text.lower()
    assert "ask" in text and "not" in text, hyp.text
    assert "fellow" not in text and "americans" not in text  # only the new words come back
    assert hyp.words and all(0.0 <= w.start <= w.end <= 1.7 for w in hyp.words), hyp.words
    assert " ".join(w.word for w in hyp.words) == hyp.text
