"""How many concurrent two-channel calls one machine holds at the latency budget.

For each N, streams N copies of the AWS auto-repair call pair (first `--pair-seconds`, real
time, starts staggered) plus one WER probe call (the Asterisk telephone prompt, which has a
reference), all at once, through a real server. Writes benchmarks/results/capacity.json with,
per N: partial and final latency p50/p95 (client side), server CPU use, peak RSS, partials the
server dropped or skipped, and the probe's WER. Reports the largest N that holds final
p95 ≤ 1.5 s and partial p50 ≤ 1 s with WER within 5 % of the single-call run.

The same ramp runs against a peer-style configuration of the same server (every step decodes
a full 30 s window, no cut windows, no batching across channels) as the baseline, and
against tiny.en for both passes (`callcue_tiny_only`: what the two passes cost).

`--diarize`: each call is the same pair mixed down to one channel and streamed with
`"diarize": true` (a mono call the server splits into agent and customer by voice); results
go to benchmarks/results/capacity_diarized.json.

    .venv/bin/python -m benchmarks.capacity [--calls 1 2 4 8 10 12] [--pair-seconds 60] [--diarize]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import urllib.request
from typing import Any

from audio.files import CallAudio, load_call_audio
from benchmarks.common import DATA, percentile, reference_text, write_result
from benchmarks.latency import PAIR, Measured, Sampler, Workload, measure
from clients.native import stream_call
from models.scheduler import CHEAPER_WAYS
from tests.servers import ServerProcess

PROBE = "tel_asterisk_allison_demo-instruct.wav"
CONFIGS = {
    "callcue": [],  # the default: tiny.en partials, base finals
    # one model for both passes (the default before the two passes)
    "callcue_tiny_only": ["--final-model", "embedded:tiny.en"],
    # the two passes with every final at full beam on base, however late (before the deadline)
    "callcue_no_deadline": ["--final-deadline-ms", "0"],
    # the default before one worker per core: one decode at a time using every core
    "callcue_one_worker": ["--asr-workers", "1"],
    # open-source streaming Whisper servers: every step decodes a full 30 s window, channels
    # one at a time (they still get this server's scheduler: stale partials replaced, VAD)
    "peer_full_window": [
        "--encoder-windows",
        "30",
        "--final-windows",
        "30",
        "--final-windows-busy",
        "30",
        "--asr-batch",
        "1",
    ],
}


def scrape(http: str) -> dict[str, float]:
    body = urllib.request.urlopen(http + "/metrics", timeout=10).read().decode()
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def one_level(
    url: str, n: int, pair: Workload, probe: Workload, stagger: float
) -> tuple[Measured, Measured]:
    calls, probe_m = Measured(), Measured()

    async def pair_call(i: int) -> None:
        await asyncio.sleep(i * stagger)
        result = await stream_call(
            url,
            pair.audio,
            pair.channels,
            realtime=True,
            call_id=f"cap-{n}-{i}-{int(time.time())}",
            diarize=pair.diarize or None,
        )
        measure(result, pair, calls)

    async def probe_call() -> None:
        result = await stream_call(
            url,
            probe.audio,
            probe.channels,
            realtime=True,
            call_id=f"cap-probe-{n}-{int(time.time())}",
        )
        measure(result, probe, probe_m)

    await asyncio.gather(probe_call(), *(pair_call(i) for i in range(n)))
    return calls, probe_m


def run_config(
    name: str, args: list[str], levels: list[int], pair: Workload, probe: Workload, stagger: float
) -> list[dict[str, Any]]:
    server = ServerProcess(*args)
    rows = []
    try:
        for n in levels:
            before = scrape(server.http)
            sampler = Sampler(server.pid)
            started = time.monotonic()
            calls, probe_m = asyncio.run(one_level(server.url, n, pair, probe, stagger))
            wall = time.monotonic() - started
            cpu = sampler.stop() or 0.0
            after = scrape(server.http)

            def delta(key: str, a: dict[str, float] = after, b: dict[str, float] = before) -> float:
                return a.get(key, 0.0) - b.get(key, 0.0)

            partial = calls.partial + probe_m.partial
            final = calls.final + probe_m.final
            row: dict[str, Any] = {
                "config": name,
                "concurrent_calls": n,
                "plus_probe_call": 1,
                "partial_latency_s": {
                    "p50": percentile(partial, 50),
                    "p95": percentile(partial, 95),
                    "n": len(partial),
                },
                "final_latency_s": {
                    "p50": percentile(final, 50),
                    "p95": percentile(final, 95),
                    "n": len(final),
                },
                "cpu_cores_busy": round(cpu / wall, 2),
                "peak_rss_mib": round(sampler.peak_rss / 2**20, 1),
                "partials_decoded": int(delta('callcue_decode_seconds_count{kind="partial"}')),
                "partials_dropped": int(
                    delta('callcue_partials_dropped_total{reason="superseded"}')
                ),
                "partials_skipped_under_load": int(
                    delta('callcue_partials_dropped_total{reason="load"}')
                ),
                "finals_overdue": int(delta("callcue_finals_overdue_total")),
                # finals decoded a cheaper way to meet CALLCUE_FINAL_DEADLINE_MS
                "finals_cheaper": {
                    way: int(delta(f'callcue_finals_cheaper_total{{way="{way}"}}'))
                    for way in CHEAPER_WAYS
                },
                "prompt_echoes": int(delta("callcue_prompt_echoes_total")),
                "prompt_loops": int(delta("callcue_prompt_loops_total")),
                # where the recognition time went (wall seconds inside decodes, by kind)
                "decode_seconds": {
                    kind: round(delta(f'callcue_decode_seconds_sum{{kind="{kind}"}}'), 1)
                    for kind in ("partial", "final")
                },
                "probe_wer": round(probe_m.errors / probe_m.ref_words, 4)
                if probe_m.ref_words
                else None,
                "probe_text": probe_m.texts.get(probe.name),
            }
            rows.append(row)
            print(
                f"[{name}] N={n}: partial p50 {row['partial_latency_s']['p50']} "
                f"p95 {row['partial_latency_s']['p95']} | final p50 "
                f"{row['final_latency_s']['p50']} p95 {row['final_latency_s']['p95']} | "
                f"CPU {row['cpu_cores_busy']} cores | RSS {row['peak_rss_mib']} MiB | "
                f"WER {row['probe_wer']} | overdue {row['finals_overdue']}",
                flush=True,
            )
    finally:
        server.stop()
    return rows


def holds(row: dict[str, Any], single_wer: float | None) -> bool:
    p95 = row["final_latency_s"]["p95"]
    p50 = row["partial_latency_s"]["p50"]
    wer_ok = (
        single_wer is None
        or row["probe_wer"] is None
        or (row["probe_wer"] <= single_wer * 1.05 + 1e-9)
    )
    return p95 is not None and p95 <= 1.5 and p50 is not None and p50 <= 1.0 and wer_ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 2, 4, 8, 10, 12])
    parser.add_argument("--pair-seconds", type=float, default=60.0)
    parser.add_argument("--stagger", type=float, default=1.0)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["callcue", "callcue_tiny_only", "peer_full_window"],
        choices=list(CONFIGS),
    )
    parser.add_argument(
        "--diarize",
        action="store_true",
        help="each call one mixed channel, diarized by the server (capacity_diarized.json)",
    )
    parser.add_argument(
        "--out", help="result name under benchmarks/results (capacity or capacity_diarized)"
    )
    args = parser.parse_args()
    if args.diarize:
        from benchmarks.diarization import parties

        full = parties("aws_auto_repairs_40")[0]
        channels = ["mixed"]
    else:
        full = load_call_audio([DATA / PAIR[0], DATA / PAIR[1]])
        channels = ["customer", "agent"]
    cut = int(args.pair_seconds * full.sample_rate)
    pair = Workload(
        "aws_auto_repairs_40" + (" mixed, diarized" if args.diarize else ""),
        CallAudio(full.samples[:cut], full.sample_rate),
        channels,
        diarize=args.diarize,
    )
    probe = Workload(PROBE, load_call_audio([DATA / PROBE], 1), ["customer"], reference_text(PROBE))
    results: dict[str, Any] = {}
    for name in args.configs:
        rows = run_config(name, CONFIGS[name], args.calls, pair, probe, args.stagger)
        single = next((r["probe_wer"] for r in rows if r["concurrent_calls"] == 1), None)
        held = [r["concurrent_calls"] for r in rows if holds(r, single)]
        results[name] = {
            "server_args": CONFIGS[name],
            "levels": rows,
            "max_calls_within_budget": max(held) if held else 0,
        }
    summary = {k: v["max_calls_within_budget"] for k, v in results.items()}
    if "callcue" in summary and "peer_full_window" in summary:
        # None: the peer-style server holds the budget at no N (the ratio has no finite value)
        peer = summary["peer_full_window"]
        summary["ratio"] = round(summary["callcue"] / peer, 2) if peer else None
    if "callcue" in summary and "callcue_tiny_only" in summary:
        tiny = summary["callcue_tiny_only"]
        summary["two_pass_vs_tiny_only"] = round(summary["callcue"] / tiny, 2) if tiny else None
    path = write_result(
        args.out or ("capacity_diarized" if args.diarize else "capacity"),
        {
            "workload": pair.name,
            "model": "partials embedded:tiny.en, finals embedded:base (callcue_tiny_only: "
            "tiny.en for both), int8 cpu",
            "pair_seconds": args.pair_seconds,
            "budget": {"final_p95_s": 1.5, "partial_p50_s": 1.0, "wer_vs_single_call": 1.05},
            "summary": summary,
            "configs": results,
        },
    )
    print("largest N within budget:", summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
