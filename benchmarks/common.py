"""Shared helpers for benchmarks: the data set, WER, percentiles, machine description."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CALLCUE_DATA", ROOT.parent / "shared" / "data")) / "audio"
RESULTS = ROOT / "benchmarks" / "results"

# Recordings with exact reference transcripts (../shared/data/audio/MANIFEST.tsv)
REFERENCE_FILES = (
    "wb_jfk_inaugural_1961.flac",
    "ls_test-clean_2830-3980-0043.wav",
    "ls_test-clean_4507-16021-0012.wav",
    "ls_test-clean_8455-210777-0068.wav",
    "wb_timit_LDC93S1.wav",
    "tel_asterisk_allison_demo-instruct.wav",
)


def reference_text(audio_file: str) -> str:
    return (DATA / (Path(audio_file).stem + ".txt")).read_text().strip()


def normalize(text: str) -> list[str]:
    """Whisper's English normalizer (numbers, spelling, punctuation) when installed."""
    try:
        from whisper_normalizer.english import EnglishTextNormalizer

        return str(EnglishTextNormalizer()(text)).split()
    except ImportError:  # pragma: no cover - a plain fallback
        return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference word count)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1], len(ref)


def wer(reference: str, hypothesis: str) -> float:
    errors, total = word_errors(reference, hypothesis)
    return errors / max(total, 1)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 4)


def speed_probe() -> dict[str, float]:
    """How fast this machine is right now, to compare results of different days: a shared VM's
    speed varies (seen here: the same commit at half the calls on another day). Best of 3."""
    loop = []
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        loop.append(time.perf_counter() - started)
    import numpy as np

    a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    matmul = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(10):
            a @ a
        matmul.append(time.perf_counter() - started)
    return {
        "python_loop_ns_per_iteration": round(min(loop) * 1000, 1),
        "numpy_matmul_gflops": round(10 * 2 * 512**3 / min(matmul) / 1e9, 1),
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        mem = 0
    commit = ""
    with contextlib.suppress(OSError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "speed": speed_probe(),
        "memory_mib": mem,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": commit,
    }


def write_result(name: str, payload: dict[str, Any], directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **payload,
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
