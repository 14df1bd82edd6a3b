"""Latency of live transcription through a real server, measured from the client side.

Streams recordings in real time (N concurrent calls of each) and writes
benchmarks/results/latency.json with:
- partial latency: for each final word, first partial containing it (found by aligning the
  partial's words with the final's) − wall time its audio (the word's end) had been sent;
- final latency: final received − wall time the end of its last word had been sent; p50/p95;
- CPU real-time factor of the server process (CPU seconds / seconds of call audio), peak RSS;
- WER of the finals on the recordings with references;
- what the server's /metrics say the time went to (`server_side`): mean wall time of a
  partial and of a final decode, and the server's own audio-received-to-emitted latency.

    .venv/bin/python -m benchmarks.latency [--calls 1] [--url ws://HOST:PORT --server-pid PID]
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audio.files import CallAudio, load_call_audio
from benchmarks.common import (
    DATA,
    REFERENCE_FILES,
    percentile,
    reference_text,
    word_errors,
    write_result,
)
from clients.native import StreamResult, stream_call
from models.scheduler import CHEAPER_WAYS
from tests.servers import ServerProcess

PAIR = ("cs_aws_auto_repairs_40_caller.wav", "cs_aws_auto_repairs_40_agent.wav")
_NORM = re.compile(r"[^\w']+")


def _key(word: str) -> str:
    return _NORM.sub("", word.lower())


@dataclass
class Workload:
    name: str
    audio: CallAudio
    channels: list[str]
    reference: str | None = None
    diarize: bool = False  # one mixed channel of both parties, told apart by the server


def workloads(pair_seconds: float) -> list[Workload]:
    loads = [
        Workload(name, load_call_audio([DATA / name], 1), ["customer"], reference_text(name))
        for name in REFERENCE_FILES
    ]
    pair = load_call_audio([DATA / PAIR[0], DATA / PAIR[1]])
    cut = int(pair_seconds * pair.sample_rate)
    loads.append(
        Workload(
            "aws_auto_repairs_40 (2ch)",
            CallAudio(pair.samples[:cut], pair.sample_rate),
            ["customer", "agent"],
        )
    )
    return loads


@dataclass
class Measured:
    partial: list[float] = field(default_factory=list)
    final: list[float] = field(default_factory=list)
    # wall time (time.time()) each latency above was observed, for a soak's per-window series
    partial_at: list[float] = field(default_factory=list)
    final_at: list[float] = field(default_factory=list)
    words_without_partial: int = 0
    words: int = 0
    errors: int = 0
    ref_words: int = 0
    audio_seconds: float = 0.0
    per_file: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # the finals' text of a referenced file
    per_load: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # every final's latency with what it was: to see what the tail is made of
    finals: list[dict[str, Any]] = field(default_factory=list)


def measure(result: StreamResult, load: Workload, into: Measured) -> None:
    events = list(zip(result.events, result.received_at, strict=True))
    finals = [(e, t) for e, t in events if e["type"] == "transcript.final"]
    partials = [(e, t) for e, t in events if e["type"] == "transcript.partial"]
    mine_load = into.per_load.setdefault(load.name, {"partial": [], "final": []})
    for final, received in finals:
        sent = result.sent_time(final["end"])
        if sent is not None:
            into.final.append(received - sent)
            into.final_at.append(received)
            mine_load["final"].append(received - sent)
            into.finals.append(
                {
                    "latency_s": round(received - sent, 3),
                    "workload": load.name,
                    "channel": final["channel"],
                    "speech_s": round(final["end"] - final["start"], 2),
                    "text": final["text"],
                }
            )
        mine = [
            (p, t)
            for p, t in partials
            if p["channel"] == final["channel"] and p["utterance"] == final["utterance"]
        ]
        # which final words each partial already had, by aligning the two word sequences
        final_keys = [_key(w["word"]) for w in final["words"]]
        first_seen: dict[int, float] = {}
        for p, t in mine:
            matcher = difflib.SequenceMatcher(
                a=final_keys, b=[_key(w) for w in p["text"].split()], autojunk=False
            )
            for block in matcher.get_matching_blocks():
                for i in range(block.a, block.a + block.size):
                    first_seen.setdefault(i, t)
        for i, word in enumerate(final["words"]):
            into.words += 1
            sent = result.sent_time(word["end"])
            if i not in first_seen or sent is None:
                into.words_without_partial += 1
            else:
                into.partial.append(first_seen[i] - sent)
                into.partial_at.append(first_seen[i])
                mine_load["partial"].append(first_seen[i] - sent)
    into.audio_seconds += load.audio.duration
    if load.reference:
        text = " ".join(e["text"] for e, _ in finals)
        errors, n = word_errors(load.reference, text)
        into.errors += errors
        into.ref_words += n
        into.texts[load.name] = text
        into.per_file.setdefault(load.name, []).append(round(errors / max(n, 1), 4))


class Sampler:
    """Polls a process's CPU time and RSS."""

    def __init__(self, pid: int | None) -> None:
        self.peak_rss = 0
        self._stop = threading.Event()
        self.proc = None
        if pid:
            import psutil

            self.proc = psutil.Process(pid)
            self.cpu_start = self._cpu()
            threading.Thread(target=self._run, daemon=True).start()

    def _cpu(self) -> float:
        assert self.proc is not None
        t = self.proc.cpu_times()
        return float(t.user + t.system)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            assert self.proc is not None
            self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)

    def stop(self) -> float | None:
        self._stop.set()
        return self._cpu() - self.cpu_start if self.proc else None


_SAMPLE = re.compile(
    r"^(callcue_(?:decode|latency)_seconds_(?:sum|count)|callcue_finals_cheaper_total)"
    r'\{(\w+)="(\w+)"\} (\S+)$'
)


def server_figures(url: str) -> dict[str, float]:
    """Sums and counts of the decode-time and server-latency histograms on /metrics."""
    import urllib.request

    http = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    try:
        with urllib.request.urlopen(f"{http}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}  # metrics behind a token, or not reachable: the breakdown is left out
    return parse_figures(text)


def parse_figures(text: str) -> dict[str, float]:
    """ "callcue_decode_seconds_sum/final" → value, from Prometheus text."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if match := _SAMPLE.match(line):
            name, _, label, value = match.groups()
            out[f"{name}/{label}"] = float(value)
    return out


def breakdown(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Mean seconds per decode kind and per latency stage over one run."""
    out: dict[str, Any] = {}
    for metric, labels in (("decode", ("partial", "final")), ("latency", ("partial", "final"))):
        for label in labels:
            total = f"callcue_{metric}_seconds_sum/{label}"
            count = f"callcue_{metric}_seconds_count/{label}"
            n = after.get(count, 0.0) - before.get(count, 0.0)
            if n > 0:
                mean = (after[total] - before.get(total, 0.0)) / n
                out[f"{metric}_{label}"] = {"mean_s": round(mean, 4), "n": int(n)}
    for way in CHEAPER_WAYS:  # finals decoded cheaper to meet their deadline
        key = f"callcue_finals_cheaper_total/{way}"
        if key in after:
            out[f"finals_{way}"] = int(after[key] - before.get(key, 0.0))
    return out


async def run(url: str, calls: int, loads: list[Workload], stagger: float) -> Measured:
    measured = Measured()
    for load in loads:

        async def one(i: int, load: Workload = load) -> tuple[StreamResult, Workload]:
            await asyncio.sleep(i * stagger)
            result = await stream_call(
                url,
                load.audio,
                load.channels,
                realtime=True,
                call_id=f"bench-{i}-{int(time.time() * 1000)}",
            )
            return result, load

        for result, done in await asyncio.gather(*(one(i) for i in range(calls))):
            measure(result, done, measured)
            if result.close_code not in (1000, None):
                raise RuntimeError(f"call closed with {result.close_code} {result.close_reason}")
    return measured


def summarize(m: Measured, calls: int, cpu: float | None, rss: int) -> dict[str, Any]:
    return {
        "concurrent_calls": calls,
        "partial_latency_s": {
            "p50": percentile(m.partial, 50),
            "p95": percentile(m.partial, 95),
            "n": len(m.partial),
        },
        "final_latency_s": {
            "p50": percentile(m.final, 50),
            "p95": percentile(m.final, 95),
            "n": len(m.final),
        },
        "final_words": m.words,
        "final_words_never_in_a_partial": m.words_without_partial,
        "audio_seconds_streamed": round(m.audio_seconds * calls, 1),
        "server_cpu_seconds": round(cpu, 2) if cpu is not None else None,
        "cpu_real_time_factor": round(cpu / (m.audio_seconds * calls), 4) if cpu else None,
        "peak_rss_mib": round(rss / 2**20, 1) if rss else None,
        "wer": round(m.errors / m.ref_words, 4) if m.ref_words else None,
        "wer_per_file": m.per_file,
        # the five slowest finals: speech_s is the final's length (its start to its last word)
        "slowest_finals": sorted(m.finals, key=lambda f: -f["latency_s"])[:5],
        "per_workload": {
            name: {
                kind: {"p50": percentile(v, 50), "p95": percentile(v, 95), "n": len(v)}
                for kind, v in lists.items()
            }
            for name, lists in m.per_load.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, nargs="+", default=[1])
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--server-pid", type=int, help="its pid, for CPU and RSS")
    parser.add_argument("--pair-seconds", type=float, default=60.0)
    parser.add_argument("--stagger", type=float, default=0.5)
    parser.add_argument("--out", default="latency")
    parser.add_argument("server_args", nargs="*", help="extra flags for the server it starts")
    args = parser.parse_args()
    server = None if args.url else ServerProcess(*args.server_args)
    url = args.url or (server.url if server else "")
    pid = args.server_pid or (server.pid if server else None)
    loads = workloads(args.pair_seconds)
    results = []
    try:
        for calls in args.calls:
            sampler = Sampler(pid)
            before = server_figures(url)
            measured = asyncio.run(run(url, calls, loads, args.stagger))
            cpu = sampler.stop()
            summary = summarize(measured, calls, cpu, sampler.peak_rss)
            summary["server_side"] = breakdown(before, server_figures(url))
            results.append(summary)
            print(
                f"{calls} call(s): partial p50 {summary['partial_latency_s']['p50']}s "
                f"p95 {summary['partial_latency_s']['p95']}s | final p50 "
                f"{summary['final_latency_s']['p50']}s p95 {summary['final_latency_s']['p95']}s"
                f" | RTF {summary['cpu_real_time_factor']} | RSS {summary['peak_rss_mib']} MiB"
                f" | WER {summary['wer']} | server side {summary['server_side']}",
                flush=True,
            )
    finally:
        if server:
            server.stop()
    path = write_result(
        args.out,
        {
            "model": "partials embedded:tiny.en, finals embedded:base, int8 cpu "
            "(unless server_args say otherwise)",
            "server_args": args.server_args,
            "workload": [w.name for w in loads],
            "runs": results,
        },
    )
    print(f"wrote {Path(path)}")


if __name__ == "__main__":
    main()
