"""Final transcript → assist events (suggestion/action), p50/p95, in the live server.

    python benchmarks/assist_latency.py [--calls N] [--seconds S]

Streams the AWS call pair (../shared/data/audio) in real time through a server on loopback, N
calls at once, and measures on the client, per final, the time from the `transcript.final`
event to the last assist event read from it (same `channel` and `utterance`: intent,
sentiment, entities, suggestion, action, category.matched). Also reads the server's own
`callcue_latency_seconds{stage="assist"}` histogram from /metrics. Writes
benchmarks/results/assist_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audio.files import CallAudio, load_call_audio
from benchmarks.common import DATA, percentile, write_result
from clients.native import stream_call
from tests.servers import ServerProcess

PAIR = ("cs_aws_auto_repairs_40_caller.wav", "cs_aws_auto_repairs_40_agent.wav")
ASSIST = {"intent", "sentiment", "entities", "suggestion", "action", "category.matched"}


async def one_call(url: str, audio: CallAudio, index: int) -> list[tuple[str, int, float]]:
    """(channel, words, seconds from the final to its last assist event) per final."""
    finals: dict[tuple[str, int], tuple[float, int]] = {}
    last: dict[tuple[str, int], float] = {}

    def on_event(event: dict[str, Any]) -> None:
        now = time.monotonic()
        if event["type"] == "transcript.final":
            key = (event["channel"], event["utterance"])
            finals[key] = (now, len(event.get("text", "").split()))
        elif event["type"] in ASSIST and "utterance" in event and "channel" in event:
            last[(event["channel"], event["utterance"])] = now

    await asyncio.sleep(index * 1.0)
    await stream_call(url, audio, ["customer", "agent"], on_event=on_event, call_id=f"al-{index}")
    return [(k[0], finals[k][1], last[k] - finals[k][0]) for k in last if k in finals]


def server_histogram(http: str) -> dict[str, float]:
    text = urllib.request.urlopen(http + "/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        for part in ("sum", "count"):
            if line.startswith(f'callcue_latency_seconds_{part}{{stage="assist"}}'):
                out[part] = float(line.rsplit(" ", 1)[1])
    return out


async def run(calls: int, seconds: float, server_log: list[str] | None = None) -> dict[str, Any]:
    full = load_call_audio([DATA / PAIR[0], DATA / PAIR[1]])
    audio = CallAudio(full.samples[: int(seconds * full.sample_rate)], full.sample_rate)
    server = ServerProcess()
    try:
        finals = [
            f
            for r in await asyncio.gather(*(one_call(server.url, audio, i) for i in range(calls)))
            for f in r
        ]
        histogram = server_histogram(server.http)
    finally:
        server.stop()
        if server_log is not None:
            server_log.extend(server.log)
    total = histogram.get("count")
    delays = [d for _, _, d in finals]
    by_channel = {
        channel: {
            "finals": len(ds),
            "p50": percentile(ds, 50),
            "p95": percentile(ds, 95),
        }
        for channel in ("customer", "agent")
        if (ds := [d for c, _, d in finals if c == channel])
    }
    slowest = sorted(finals, key=lambda f: -f[2])[:5]
    return {
        "calls": calls,
        "seconds_per_call": seconds,
        "finals_with_assist": len(delays),
        "final_to_assist_s": {
            "p50": percentile(delays, 50),
            "p95": percentile(delays, 95),
            "max": round(max(delays), 4) if delays else None,
        },
        "by_channel": by_channel,
        "slowest": [{"channel": c, "words": w, "s": round(d, 4)} for c, w, d in slowest],
        "server_assist_mean_s": round(histogram.get("sum", 0.0) / total, 4) if total else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--server-log", metavar="PATH", help="write the server's log there")
    args = parser.parse_args()
    log: list[str] = []
    result = asyncio.run(run(args.calls, args.seconds, log))
    if args.server_log:  # with CALLCUE_LOG_LEVEL=debug: where each assist batch spent its time
        Path(args.server_log).write_text("\n".join(log) + "\n")
    path = write_result("assist_latency", result)
    print(result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
