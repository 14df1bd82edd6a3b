"""benchmarks.soak for half a minute: one call at a time (two in a row), every fault and bad
input once, then the invariants of its results file. Timing is reported there, not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.soak import BAD_INPUTS, FAULTS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_short_soak_loses_nothing_and_answers_every_fault(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.soak",
            "--calls=1",
            "--minutes=0.5",
            "--call-seconds=14",
            "--fault-every=0.5",
            "--window=5",
            "--save=soak_test",
            f"--results-dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((tmp_path / "soak_test.json").read_text())
    summary = result["summary"]

    load = summary["load"]
    assert load["calls_started"] >= 2  # a call ended and the next began
    good = [
        {k: c.get(k) for k in ("call_id", "outcome", "ingest_close", "stopped", "ended_reason")}
        for c in result["calls"]
        if c.get("kind") == "good" and not c.get("refused")
    ]
    # (when this fails, the message says which check each call missed, and what the run said)
    assert load["calls_completed"] == load["calls_started"], (good, run.stdout[-2000:])
    assert load["calls_with_problems"] == []

    lost = summary["nothing_lost"]
    assert lost["finals_seen_by_screens"] > 0
    assert lost["finals_stored"] >= lost["finals_seen_by_screens"]
    for key in (
        "finals_lost",
        "finals_text_differs",
        "finals_stored_not_on_screen",
        "events_lost",
        "seq_gaps",
        "seq_duplicates",
        "seq_out_of_order",
        "ingest_finals_differ_from_screen",
        "calls_not_stored",
    ):
        assert lost[key] == 0, key
    assert lost["outcome_unexpected"] == []

    faults = summary["faults"]
    assert all(faults["by_kind"][kind] >= 1 for kind in FAULTS), faults
    assert faults["survived"] == faults["injected"]
    dropped = [f for f in result["faults"] if f["kind"] == "abrupt_disconnect"]
    assert all(f["ended_reason"] == "disconnect" and f["finals_after_drop"] > 0 for f in dropped)

    bad = summary["bad_inputs"]
    tried = {k for k, n in bad["by_kind"].items() if n}
    assert tried | set(bad["skipped"]) == set(BAD_INPUTS), bad
    assert bad["answered_with_error"] == bad["tried"]

    end = summary["server_at_end"]
    assert end["status"] == "ok" and end["process_alive"]
    assert end["active_calls"] == 0 and end["live_calls"] == 0
    assert end["log_errors"] == []
    assert summary["server_metrics_delta"]["store_errors"] == 0

    windows = result["windows"]
    assert len(windows) >= 3
    assert all(w["rss_mib"] > 0 and "final_latency_s" in w for w in windows)
    assert summary["memory"]["rss_growth_pct"] is not None
