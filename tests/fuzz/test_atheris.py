"""The atheris harness runs: a bounded coverage-guided campaign over the protocols, the JSON
reader, the codec and the signature parsers ends without a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bounded_atheris_campaign_finds_no_crash(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris installs from a manylinux wheel (Linux only)")
    runs = 4000
    done = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.atheris_protocols", f"-atheris_runs={runs}", "-seed=1"],
        cwd=tmp_path,  # libFuzzer writes crash-* files into the working directory
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert f"Done {runs} " in output, output[-2000:]
    assert not list(tmp_path.glob("crash-*"))
