"""Streaming WER of each model configuration against offline faster-whisper.

Two kinds of audio from ../shared/data/audio:

- the recordings with reference transcripts (read speech, an IVR prompt): WER against the
  reference, streamed and offline;
- the real two-party calls (each channel a party, no reference): each channel's streamed
  finals against offline decoding of the same channel by the accurate model (Whisper base,
  beam 5, faster-whisper's VAD filter on), and offline tiny.en against it for scale. This
  is a disagreement rate with the best offline transcript, not a WER against the truth.

Each configuration runs the live pipeline in-process (`callcue transcribe`'s code: VAD
segmentation, cut encoder windows, speculative finals, left context), as fast as it decodes:

- `tiny.en`: tiny.en for partials and finals (the old default);
- `base`: Whisper base for both;
- `two-pass`: tiny.en partials, base finals (the default);
- `two-pass, no context`: the default without the previous final as left context.

Each row has the live finals' WER and the revised transcript's (`revised_*`: after the call,
the finals' model decodes each channel again over long windows, `transcript.revised`; the
text the store keeps).

`--realtime` adds what a live call gets: a real server with the default settings (its own
SQLite store), each real call streamed through the native protocol at the speed of speech,
with a screen on its event stream from before it starts until it ends. The finals the screen
saw, and the stored transcript once the call's revision is done (`revised_at`), are compared
with offline base as above (`realtime` in the JSON; `--realtime-only` saves to
`accuracy_realtime` unless `--save` says otherwise). Run
in-process, a final is decoded as soon as its audio is in, with no other work beside it;
through a server in real time it is decoded while partials, the other channel and revision
compete for the cores, and it waits for the VAD's pause like a live call.

    .venv/bin/python -m benchmarks.accuracy [--configs two-pass tiny.en] [--beam-size 5]
        [--final-windows 10,20,30] [--offline-from benchmarks/results/accuracy.json]
        [--realtime] [--realtime-only]

Writes benchmarks/results/accuracy.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DATA, REFERENCE_FILES, reference_text, word_errors, write_result

TINY, BASE = "embedded:tiny.en", "embedded:base"
# (partials' model, finals' model, left context seconds)
CONFIGS: dict[str, tuple[str, str, float]] = {
    "tiny.en": (TINY, TINY, 5.0),
    "base": (BASE, BASE, 5.0),
    "two-pass": (TINY, BASE, 5.0),
    "two-pass, no context": (TINY, BASE, 0.0),
}
# real two-party calls: (file or files, channel names); one party per channel
CALLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "aws_auto_repairs_40": (
        ("cs_aws_auto_repairs_40_caller.wav", "cs_aws_auto_repairs_40_agent.wav"),
        ("customer", "agent"),
    ),
    # channel 0 greets ("Thanks for contacting the store. How can I help you?"): the agent
    "genesys_audiohook_stereo": (("cs_genesys_audiohook_stereo_pcmu.wav",), ("agent", "customer")),
}
# results written before commit b50a11e (no "parties" in them) named the Genesys call's
# channels the other way round: `load_offline` reads their texts under today's names, by channel
EARLIER_PARTIES = {"genesys_audiohook_stereo": ("customer", "agent")}


def channels(files: tuple[str, ...], names: tuple[str, ...]) -> list[np.ndarray]:
    """Each party's audio, 16 kHz float32."""
    import soxr

    from audio.files import load_call_audio

    audio = load_call_audio([DATA / f for f in files], len(names))
    out = []
    for i in range(audio.samples.shape[1]):
        track = audio.samples[:, i].astype(np.float32) / 32768.0
        out.append(soxr.resample(track, audio.sample_rate, 16_000).astype(np.float32))
    return out


def offline_text(model: Any, audio: np.ndarray, beam_size: int, vad: bool = False) -> str:
    segments, _ = model.transcribe(audio, beam_size=beam_size, language="en", vad_filter=vad)
    return " ".join(s.text.strip() for s in segments)


def load_offline(path: Path) -> dict[str, Any]:
    """The offline decodes of an earlier result JSON, each call channel's text keyed
    `call/party` with today's party names."""
    result = json.loads(path.read_text())
    baseline: dict[str, Any] = result["offline"]
    baseline.pop("beam_size", None)
    if "parties" in result:
        return baseline
    for row in baseline.values():
        calls = dict(row["calls"])
        for call, earlier in EARLIER_PARTIES.items():
            for k, party in enumerate(earlier):
                if f"{call}/{party}" in calls:
                    row["calls"][f"{call}/{CALLS[call][1][k]}"] = calls[f"{call}/{party}"]
    return baseline


def offline(beam_size: int) -> dict[str, Any]:
    """Offline faster-whisper `transcribe()` of every reference file and call channel."""
    from faster_whisper import WhisperModel

    from models.resolve import resolve_whisper_model

    out: dict[str, Any] = {}
    for label, spec in (("tiny.en", TINY), ("base", BASE)):
        model = WhisperModel(resolve_whisper_model(spec), device="cpu", compute_type="int8")
        errors = total = 0
        files: dict[str, Any] = {}
        started = time.perf_counter()
        for name in REFERENCE_FILES:
            audio = channels((name,), ("customer",))[0]
            text = offline_text(model, audio, beam_size)
            e, n = word_errors(reference_text(name), text)
            errors, total = errors + e, total + n
            files[name] = {"wer": round(e / n, 4), "text": text}
        calls: dict[str, str] = {}
        for call, (names, parties) in CALLS.items():
            for party, audio in zip(parties, channels(names, parties), strict=True):
                # with faster-whisper's VAD filter: without it, base stopped transcribing
                # the agent channel a minute before its end (a long silence, then nothing)
                calls[f"{call}/{party}"] = offline_text(model, audio, beam_size, vad=True)
        out[label] = {
            "reference_wer": round(errors / total, 4),
            "seconds": round(time.perf_counter() - started, 1),
            "files": files,
            "calls": calls,
        }
    return out


async def streaming(
    config: str, beam_size: int, base_calls: dict[str, str], final_windows: str = ""
) -> dict[str, Any]:
    """One configuration through the live pipeline: reference WER, and WER of each call
    channel against offline base."""
    from dataclasses import replace

    from audio.files import load_call_audio
    from cli import transcribe_call
    from service.settings import Settings

    partial_model, final_model, context_s = CONFIGS[config]
    overrides: dict[str, Any] = {
        "model": partial_model,
        "final_model": final_model,
        "beam_size": beam_size,
    }
    if final_windows:  # the finals' encoder windows (and those used under load) to measure
        overrides["final_windows"] = overrides["final_windows_busy"] = final_windows
    settings = Settings.load(overrides=overrides)
    settings = replace(settings, assist=False)
    streaming_options = replace(settings.streaming, context_s=context_s)
    started = time.perf_counter()
    # [errors, words] of the live finals and of the revised transcript
    ref = {"live": [0, 0], "revised": [0, 0]}
    files: dict[str, Any] = {}

    def texts(utterances: list[dict[str, Any]]) -> dict[str, str]:
        return {
            "live": " ".join(u.get("live_text", u["text"]) for u in utterances),
            "revised": " ".join(u["text"] for u in utterances),
        }

    for name in REFERENCE_FILES:
        audio = load_call_audio([DATA / name], 1)
        call = await transcribe_call(
            settings, audio, ["customer"], "bench", streaming=streaming_options
        )
        files[name] = {}
        for kind, text in texts(call["utterances"]).items():
            e, n = word_errors(reference_text(name), text)
            ref[kind][0] += e
            ref[kind][1] += n
            files[name][kind] = {"wer": round(e / n, 4), "text": text}
    on_calls = {"live": [0, 0], "revised": [0, 0]}
    calls: dict[str, Any] = {}
    for call_name, (names, parties) in CALLS.items():
        audio = load_call_audio([DATA / f for f in names], len(parties))
        call = await transcribe_call(
            settings, audio, list(parties), "bench", streaming=streaming_options
        )
        for party in parties:
            key = f"{call_name}/{party}"
            calls[key] = {}
            mine = [u for u in call["utterances"] if u["channel"] == party]
            for kind, text in texts(mine).items():
                e, n = word_errors(base_calls[key], text)
                on_calls[kind][0] += e
                on_calls[kind][1] += n
                calls[key][kind] = {"wer_vs_offline_base": round(e / max(n, 1), 4), "text": text}
    return {
        "config": config,
        "final_windows": list(settings.final_windows),
        "model": partial_model,
        "final_model": final_model,
        "context_s": context_s,
        "reference_wer": round(ref["live"][0] / ref["live"][1], 4),
        "calls_wer_vs_offline_base": round(on_calls["live"][0] / max(on_calls["live"][1], 1), 4),
        "revised_reference_wer": round(ref["revised"][0] / ref["revised"][1], 4),
        "revised_calls_wer_vs_offline_base": round(
            on_calls["revised"][0] / max(on_calls["revised"][1], 1), 4
        ),
        "seconds": round(time.perf_counter() - started, 1),
        "files": files,
        "calls": calls,
    }


async def watch(url: str, events: list[dict[str, Any]], connected: asyncio.Event) -> None:
    """A screen on a call from before it starts until the server closes it (the call ended)."""
    import json

    from websockets.asyncio.client import connect

    async with connect(url, max_size=None) as ws:
        connected.set()
        async for message in ws:
            events.append(json.loads(message))


def stored_when_revised(http: str, call_id: str, seconds: float = 900.0) -> list[dict[str, Any]]:
    """The stored transcript's utterances once the call's end-of-call revision is recorded
    (it runs after the call ends, at the lowest priority)."""
    import json
    import urllib.request

    def get(path: str) -> Any:
        with urllib.request.urlopen(f"{http}{path}", timeout=30) as response:
            return json.loads(response.read())

    deadline = time.monotonic() + seconds
    while not get(f"/v1/calls/{call_id}").get("revised_at"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{call_id} was not revised within {seconds:.0f} s")
        time.sleep(1.0)
    utterances: list[dict[str, Any]] = get(f"/v1/calls/{call_id}/transcript?format=json")[
        "utterances"
    ]
    return utterances


async def realtime(base_calls: dict[str, str], server_args: list[str]) -> dict[str, Any]:
    """Each real call streamed in real time through a server: the finals its screen saw, and
    the stored transcript once revised, of each channel against offline base. One call at a
    time: the next starts once the last one's revision is done."""
    from audio.files import load_call_audio
    from clients.native import stream_call
    from tests.servers import ServerProcess

    server = ServerProcess(*server_args)
    calls: dict[str, Any] = {}
    totals = {"live": [0, 0], "revised": [0, 0]}
    started = time.perf_counter()
    try:
        for call_name, (names, parties) in CALLS.items():
            audio = load_call_audio([DATA / f for f in names], len(parties))
            call_id = f"accuracy-{call_name}-{int(time.time())}"
            events: list[dict[str, Any]] = []
            connected = asyncio.Event()
            screen = asyncio.create_task(
                watch(f"{server.url}/v1/calls/{call_id}/events", events, connected)
            )
            await asyncio.wait_for(connected.wait(), 30)
            result = await stream_call(server.url, audio, list(parties), call_id=call_id)
            if result.close_code != 1000:
                raise RuntimeError(f"{call_name}: closed {result.close_code} {result.close_reason}")
            await asyncio.wait_for(screen, 120)
            stored = await asyncio.to_thread(stored_when_revised, server.http, call_id)
            for party in parties:
                key = f"{call_name}/{party}"
                live = " ".join(
                    e["text"]
                    for e in events
                    if e.get("type") == "transcript.final" and e["channel"] == party
                )
                revised = " ".join(u["text"] for u in stored if u["channel"] == party)
                calls[key] = {}
                for kind, text in (("live", live), ("revised", revised)):
                    errors, words = word_errors(base_calls[key], text)
                    totals[kind][0] += errors
                    totals[kind][1] += words
                    calls[key][kind] = {
                        "wer_vs_offline_base": round(errors / max(words, 1), 4),
                        "text": text,
                    }
    finally:
        server.stop()
    return {
        "server_args": server_args,
        "calls_wer_vs_offline_base": round(totals["live"][0] / max(totals["live"][1], 1), 4),
        "revised_calls_wer_vs_offline_base": round(
            totals["revised"][0] / max(totals["revised"][1], 1), 4
        ),
        "seconds": round(time.perf_counter() - started, 1),
        "calls": calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--beam-size", type=int, default=5, help="beam size for streaming finals")
    parser.add_argument("--offline-beam-size", type=int, default=5)
    parser.add_argument("--save", default="accuracy", help="result name under benchmarks/results")
    parser.add_argument(
        "--final-windows", default="", help="finals' encoder windows in s, e.g. 30 or 10,20,30"
    )
    parser.add_argument(
        "--offline-from", default="", help="reuse the offline decodes of an earlier result JSON"
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="also stream the real calls in real time through a server (default settings)",
    )
    parser.add_argument(
        "--realtime-only", action="store_true", help="only that (no in-process configurations)"
    )
    args = parser.parse_args()
    if args.offline_from:
        baseline = load_offline(Path(args.offline_from))
    else:
        baseline = offline(args.offline_beam_size)
    base_calls = baseline["base"]["calls"]
    tiny_errors = tiny_total = 0
    for key, text in baseline["tiny.en"]["calls"].items():
        e, n = word_errors(base_calls[key], text)
        tiny_errors, tiny_total = tiny_errors + e, tiny_total + n
    baseline["tiny.en"]["calls_wer_vs_offline_base"] = round(tiny_errors / tiny_total, 4)
    configs = [] if args.realtime_only else args.configs
    if args.realtime_only and args.save == "accuracy":  # keep the in-process rows' file
        args.save = "accuracy_realtime"
    runs = [
        asyncio.run(streaming(c, args.beam_size, base_calls, args.final_windows)) for c in configs
    ]
    live = asyncio.run(realtime(base_calls, [])) if args.realtime or args.realtime_only else None
    path = write_result(
        args.save,
        {
            "compute_type": "int8",
            "device": "cpu",
            "parties": {call: parties for call, (_, parties) in CALLS.items()},
            "streaming_beam_size": args.beam_size,
            "offline": {"beam_size": args.offline_beam_size, **baseline},
            "streaming": runs,
            **({"realtime": live} if live is not None else {}),
        },
    )
    for label, row in baseline.items():
        print(f"offline {label:<22} reference WER {row['reference_wer']:.3f}")
    print(f"offline tiny.en vs offline base on the calls: {tiny_errors / tiny_total:.3f}")
    for run in runs:
        print(
            f"streaming {run['config']:<22} reference WER {run['reference_wer']:.3f} "
            f"(revised {run['revised_reference_wer']:.3f})  calls vs offline base "
            f"{run['calls_wer_vs_offline_base']:.3f} (revised "
            f"{run['revised_calls_wer_vs_offline_base']:.3f})  in {run['seconds']}s"
        )
    if live is not None:
        print(
            f"real time through a server: calls vs offline base "
            f"{live['calls_wer_vs_offline_base']:.3f} (revised "
            f"{live['revised_calls_wer_vs_offline_base']:.3f})  in {live['seconds']}s"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
