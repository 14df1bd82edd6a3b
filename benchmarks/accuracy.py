"""Streaming WER vs offline faster-whisper on the recordings with references.

Runs the live pipeline in-process (VAD segmentation, cut encoder windows, finals) for each
encoder-window configuration, and faster-whisper's own offline `transcribe()` with the same
model as the baseline. Writes benchmarks/results/accuracy.json.

    .venv/bin/python -m benchmarks.accuracy [--windows "3,6,10,15,20,30" "30"] [--beam-size 1]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from benchmarks.common import DATA, REFERENCE_FILES, reference_text, word_errors, write_result


def offline(files: tuple[str, ...], beam_size: int) -> dict[str, Any]:
    from faster_whisper import WhisperModel

    from models.resolve import resolve_whisper_model

    model = WhisperModel(
        resolve_whisper_model("embedded:tiny.en"), device="cpu", compute_type="int8"
    )
    per_file, errors, total, seconds = {}, 0, 0, 0.0
    for name in files:
        started = time.perf_counter()
        segments, _ = model.transcribe(str(DATA / name), beam_size=beam_size, language="en")
        text = " ".join(s.text.strip() for s in segments)
        seconds += time.perf_counter() - started
        e, n = word_errors(reference_text(name), text)
        errors, total = errors + e, total + n
        per_file[name] = {"wer": round(e / n, 4), "text": text}
    return {"wer": round(errors / total, 4), "seconds": round(seconds, 2), "files": per_file}


async def streaming(files: tuple[str, ...], windows: str, beam_size: int) -> dict[str, Any]:
    from assist.settings import Settings
    from audio.files import load_call_audio
    from cli import transcribe_call

    # the same windows whether or not other work waits: each row measures exactly its windows
    settings = Settings.load(
        overrides={"final_windows": windows, "final_windows_busy": windows, "beam_size": beam_size}
    )
    per_file, errors, total, seconds = {}, 0, 0, 0.0
    for name in files:
        audio = load_call_audio([DATA / name], 1)
        started = time.perf_counter()
        call = await transcribe_call(settings, audio, ["customer"], "bench")
        seconds += time.perf_counter() - started
        text = " ".join(u["text"] for u in call["utterances"])
        e, n = word_errors(reference_text(name), text)
        errors, total = errors + e, total + n
        per_file[name] = {"wer": round(e / n, 4), "text": text}
    return {
        "windows": windows,
        "wer": round(errors / total, 4),
        "seconds": round(seconds, 2),
        "files": per_file,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", nargs="+", default=["3,6,10,15,20,30", "6,10,15,20,30", "30"])
    parser.add_argument("--beam-size", type=int, default=5, help="beam size for streaming finals")
    parser.add_argument("--offline-beam-size", type=int, default=5)
    args = parser.parse_args()
    files = REFERENCE_FILES
    base = offline(files, args.offline_beam_size)
    runs = [asyncio.run(streaming(files, w, args.beam_size)) for w in args.windows]
    for run in runs:
        run["relative_to_offline"] = round(run["wer"] / base["wer"], 3) if base["wer"] else None
    path = write_result(
        "accuracy",
        {
            "model": "embedded:tiny.en int8 cpu",
            "streaming_beam_size": args.beam_size,
            "offline": {"beam_size": args.offline_beam_size, **base},
            "streaming": runs,
        },
    )
    print(f"offline WER {base['wer']:.3f}")
    for run in runs:
        print(
            f"streaming windows={run['windows']:<18} WER {run['wer']:.3f} "
            f"({run['relative_to_offline']}x offline) in {run['seconds']}s"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
