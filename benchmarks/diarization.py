"""Mono calls: how well diarization tells the agent from the customer, and what it costs.

The mixed calls are built from the real two-channel calls in ../shared/data/audio (each
channel one party, so every word's true party is known): the AWS auto-repair pair and the
Genesys AudioHook stereo call, their channels added into one. For each:

- `word_role_accuracy`: the share of final words put down to the right party, after the
  call's `transcript.relabeled` corrections (as the store keeps them), and `as_first_shown`
  (before any correction). A word's true party is the channel louder over the word's span.
- `der`: diarization error rate over 10 ms frames: (missed speech + false alarm + party
  confusion) / reference speech, the reference being each channel's own speech (Silero VAD
  on that channel alone), 0.25 s either side of each reference boundary not scored (the
  usual collar); the hypothesis, the final words' spans with their party. Missed speech and
  false alarm come from the recognizer's word times and from what it did not transcribe.
- `print_cpu_seconds_per_audio_second`: the CPU the voice prints took.
- with `--revise` (whole calls only): the call as `callcue transcribe --diarize` keeps it,
  revised by the finals' model (each mixed utterance decoded again over long windows, its
  words given to the parts it was split into): `record` scores that transcript, and
  `party_wer` compares each party's words, live and revised, with offline faster-whisper
  base (beam 5, VAD filter) of that party's own channel, taken from an accuracy result
  (`--offline-from`, default benchmarks/results/accuracy_realtime.json): a word put down to
  the wrong party counts as missed in one and inserted in the other.

`--real [de fr tr]`: instead, real calls recorded with both parties on one channel (the
German, French and Turkish calls in ../shared/data/audio, saved as stereo with the same audio
on both channels), diarized with the language detected, scored against turns labelled by hand
in benchmarks/data/mono_calls.csv. No channel gives the truth here: each turn's party was
read from what is said (who greets and introduces themself for the company, who asks for
help), on the offline Whisper base transcript and its times; turns that could not be told
from their words are left out, and so are the words outside every labelled turn
(`scored_words` of `words`). The labels were written before the first scored run and
nothing was tuned on these calls. The Japanese call is left out: its words do not tell who
speaks (most of it is one side of a call). Writes `--out` (default
diarization_real.json). `--from-customer`: each call also from its
first labelled customer turn on, so that the first voice heard is the customer's and only
what is said can tell the roles.

`--ivr SECONDS`: also each call after the first SECONDS of a recorded IVR prompt (the
Asterisk demo in ../shared/data/audio, a third voice) and 0.5 s of silence, as a call that
reaches the agent through an IVR; the prompt's words are not scored (`prompt_words_as`
says which party they were put down to).

Offline (default): the live pipeline in-process (`callcue transcribe --diarize --live`), as
fast as it decodes. `--live`: also streams the first `--seconds` of the AWS mixed call in real
time through a server, once with `diarize` and once as a plain one-channel call, and
reports the final latency of each (final received minus the wall time its last word's audio
was sent) and the server's CPU.

    .venv/bin/python -m benchmarks.diarization [--live] [--seconds 120] [--skip 0 30 60]
        [--revise [--offline-from benchmarks/results/accuracy_realtime.json]] [--out NAME]
    .venv/bin/python -m benchmarks.diarization --real [de fr tr] [--from-customer] --out NAME

Writes benchmarks/results/diarization.json (`--out NAME`: NAME.json; the README's revised
rows are `--revise --out diarization_revised`).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import time
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from audio.codec import TARGET_RATE
from audio.files import CallAudio, load_call_audio, one_channel
from benchmarks.common import DATA, RESULTS, percentile, word_errors, write_result

# mixed calls: (files, the party of each channel in order)
CALLS: dict[str, tuple[tuple[str, ...], tuple[str, str]]] = {
    "aws_auto_repairs_40": (
        ("cs_aws_auto_repairs_40_agent.wav", "cs_aws_auto_repairs_40_caller.wav"),
        ("agent", "customer"),
    ),
    # channel 0 greets ("Thanks for contacting the store. How can I help you?"): the agent
    "genesys_audiohook_stereo": (("cs_genesys_audiohook_stereo_pcmu.wav",), ("agent", "customer")),
}
# real calls recorded with both parties on one channel (stored as stereo with the same audio
# twice), their turns labelled by hand in LABELS (see `real_call`)
REAL_CALLS = {
    "de": "ml_callytics_example_de.mp3",
    "fr": "ml_callytics_example_fr.mp3",
    "tr": "ml_callytics_example_tr.mp3",
}
LABELS = Path(__file__).parent / "data" / "mono_calls.csv"
PROMPT = "tel_asterisk_allison_demo-instruct.wav"  # a recorded IVR prompt: a third voice
FRAME = 0.01
COLLAR = 0.25  # seconds around each reference boundary left out of the DER (as NIST's)


def parties(name: str, skip: float = 0.0) -> tuple[CallAudio, np.ndarray, tuple[str, str]]:
    """The call as one mixed channel (int16, its own rate) and each party's 16 kHz audio,
    from `skip` seconds in (so that another voice may be heard first)."""
    files, roles = CALLS[name]
    both = load_call_audio([str(DATA / f) for f in files])
    both = CallAudio(both.samples[int(skip * both.sample_rate) :], both.sample_rate)
    mixed = np.clip(both.samples.astype(np.int32).sum(axis=1), -32768, 32767).astype(np.int16)
    tracks = both.samples.astype(np.float32) / 32768.0
    tracks = soxr.resample(tracks, both.sample_rate, TARGET_RATE).astype(np.float32)
    return CallAudio(mixed.reshape(-1, 1), both.sample_rate), tracks, roles


def activity(track: np.ndarray) -> np.ndarray:
    """10 ms frames of a party's speech, by Silero VAD (probability over 0.5) on its own
    channel."""
    from audio.vad import WINDOW
    from models.vad import SileroVad

    vad = SileroVad()
    n = len(track) // WINDOW
    windows = track[: n * WINDOW].reshape(n, WINDOW).astype(np.float32)
    state: object = vad.new_state()
    probs = []
    for lo in range(0, n, 32):
        p, state = vad.probabilities(windows[lo : lo + 32], state)
        probs.append(p)
    speech = np.concatenate(probs) > 0.5 if probs else np.zeros(0, dtype=bool)
    frames = len(track) * 100 // TARGET_RATE
    at = (np.arange(frames) * FRAME * TARGET_RATE // WINDOW).astype(int)
    return (
        np.asarray(speech[np.minimum(at, len(speech) - 1)])
        if len(speech)
        else np.zeros(frames, bool)
    )


def near_change(acts: list[np.ndarray], collar: float = COLLAR) -> np.ndarray:
    """Frames within `collar` seconds of a party starting or stopping (not scored)."""
    width = int(collar / FRAME)
    out = np.zeros(len(acts[0]), dtype=bool)
    for act in acts:
        for edge in np.flatnonzero(np.diff(act.astype(np.int8))):
            out[max(0, edge - width + 1) : edge + width + 1] = True
    return out


def true_party(tracks: np.ndarray, roles: tuple[str, str], start: float, end: float) -> str:
    lo, hi = int(start * TARGET_RATE), max(int(end * TARGET_RATE), int(start * TARGET_RATE) + 1)
    energy = (tracks[lo:hi] ** 2).sum(axis=0)
    return roles[int(np.argmax(energy))]


def score(
    utterances: list[dict[str, Any]], tracks: np.ndarray, roles: tuple[str, str]
) -> dict[str, Any]:
    """Word role accuracy and DER of finals (dicts with channel, words)."""
    right = total = 0
    frames = tracks.shape[0] * 100 // TARGET_RATE
    hyp = np.full(frames, -1)
    for u in utterances:
        for w in u["words"]:
            total += 1
            right += true_party(tracks, roles, w["start"], w["end"]) == u["channel"]
            lo, hi = int(w["start"] / FRAME), int(w["end"] / FRAME)
            hyp[lo:hi] = roles.index(u["channel"]) if u["channel"] in roles else -1
    acts = [activity(tracks[:, k])[:frames] for k in range(2)]
    scored = ~near_change(acts)
    ref = np.full(frames, -1)
    ref[acts[0] & ~acts[1]] = 0
    ref[acts[1] & ~acts[0]] = 1
    both = acts[0] & acts[1]
    speech = (acts[0] | acts[1]) & scored
    missed = int((speech & (hyp < 0)).sum())
    false_alarm = int((~(acts[0] | acts[1]) & scored & (hyp >= 0)).sum())
    confusion = int((scored & (ref >= 0) & (hyp >= 0) & (hyp != ref)).sum())
    return {
        "words": total,
        "word_role_accuracy": round(right / max(total, 1), 4),
        "der": round((missed + false_alarm + confusion) / max(int(speech.sum()), 1), 4),
        "der_parts": {
            "missed": round(missed / max(int(speech.sum()), 1), 4),
            "false_alarm": round(false_alarm / max(int(speech.sum()), 1), 4),
            "confusion": round(confusion / max(int(speech.sum()), 1), 4),
            "overlap_frames": int(both.sum()),
        },
    }


def apply_relabels(finals: list[dict[str, Any]], relabels: list[dict[str, Any]]) -> None:
    by_seq = {f["seq"]: f for f in finals}
    for event in relabels:
        for change in event["changes"]:
            if change["final_seq"] in by_seq:
                by_seq[change["final_seq"]]["channel"] = change["channel"]


def offline_base(path: Path) -> dict[tuple[str, str], str]:
    """Offline base text of each mixed call's parties, from an accuracy result (its calls
    name the same recordings' channels, in its own order)."""
    from benchmarks.accuracy import CALLS as ACCURACY_CALLS
    from benchmarks.accuracy import load_offline

    texts = load_offline(path)["base"]["calls"]
    out = {}
    for call, (files, roles) in CALLS.items():
        their_files, their_parties = ACCURACY_CALLS[call]
        for k, role in enumerate(roles):
            # one stereo file: the same channel index; one file a party: that file
            party = their_parties[k if len(files) == 1 else their_files.index(files[k])]
            out[(call, role)] = texts[f"{call}/{party}"]
    return out


def party_wer(
    utterances: list[dict[str, Any]], references: dict[str, str]
) -> dict[str, float | int]:
    """Each party's words in time order against that party's reference text, pooled."""
    errors = total = 0
    for role, reference in references.items():
        said = sorted((u for u in utterances if u["channel"] == role), key=lambda u: u["start"])
        e, n = word_errors(reference, " ".join(u["text"] for u in said))
        errors, total = errors + e, total + n
    return {"wer": round(errors / max(total, 1), 4), "reference_words": total}


async def diarize_in_process(
    audio: CallAudio, name: str, *, revise: bool = False, language: str = "en"
) -> dict[str, Any]:
    """`callcue transcribe --diarize` on `audio`: its finals, relabels and revisions as
    events, the voice prints' CPU and the run's time."""
    from cli import transcribe_call
    from live.session import CallSession
    from service.node import load_services
    from service.settings import Settings

    settings = Settings.load(overrides={"revise": revise})
    services = await asyncio.to_thread(
        load_services, settings, warmup=False, store=False, live=False
    )
    seen: dict[str, list[dict[str, Any]]] = {
        "transcript.final": [],
        "transcript.relabeled": [],
        "transcript.revised": [],
    }
    publish = CallSession.publish

    def spy(self: CallSession, event: Any) -> Any:
        stamped = publish(self, event)
        data = stamped.to_dict()
        if data["type"] in seen:
            seen[data["type"]].append(data)
        return stamped

    started = time.perf_counter()
    CallSession.publish = spy  # type: ignore[method-assign]
    try:
        await transcribe_call(
            settings,
            audio,
            ["agent", "customer"],
            name,
            services=services,
            diarize=True,
            language=language,
        )
    finally:
        CallSession.publish = publish  # type: ignore[method-assign]
    elapsed = time.perf_counter() - started
    prints = services.speakers.cpu_seconds
    services.close()
    return {
        "finals": seen["transcript.final"],
        "relabels": seen["transcript.relabeled"],
        "revisions": seen["transcript.revised"],
        "print_cpu_seconds": prints,
        "seconds": elapsed,
    }


async def offline(
    name: str, skip: float = 0.0, references: dict[str, str] | None = None
) -> dict[str, Any]:
    """`references` (each party's offline base text; whole calls only): revise the call with
    the finals' model too, and score both records against them."""
    audio, tracks, roles = parties(name, skip)
    run = await diarize_in_process(audio, name, revise=references is not None)
    finals, relabels, revisions = run["finals"], run["relabels"], run["revisions"]
    shown = score([dict(f) for f in finals], tracks, roles)["word_role_accuracy"]
    apply_relabels(finals, relabels)
    row = {
        "audio_seconds": round(audio.duration, 1),
        "finals": len(finals),
        **score(finals, tracks, roles),
        "as_first_shown": shown,
        "relabel_events": len(relabels),
        "relabeled_finals": sum(len(r["changes"]) for r in relabels),
        "print_cpu_seconds": round(run["print_cpu_seconds"], 2),
        "print_cpu_seconds_per_audio_second": round(run["print_cpu_seconds"] / audio.duration, 4),
        "pipeline_seconds": round(run["seconds"], 1),
    }
    if references is not None:
        latest = {r["final_seq"]: r for r in revisions}  # (a final revised twice: the last)
        record = [
            {**f, "text": latest[f["seq"]]["text"], "words": latest[f["seq"]]["words"]}
            if f["seq"] in latest
            else f
            for f in finals
        ]
        row["revised_finals"] = len(latest)
        row["record"] = score(record, tracks, roles)
        row["party_wer"] = {
            "live": party_wer(finals, references),
            "revised": party_wer(record, references),
        }
    return row


async def offline_after_prompt(name: str, seconds: float) -> dict[str, Any]:
    """The mixed call after a recorded prompt (a third voice: the first `seconds` of the
    Asterisk IVR demo, then 0.5 s of silence), as a call that reaches the agent through an
    IVR. The prompt's words are not scored; the call's are, as in `offline`."""
    audio, tracks, roles = parties(name)
    prompt = load_call_audio([DATA / PROMPT], 1)
    prompt_pcm = soxr.resample(
        prompt.samples[: int(seconds * prompt.sample_rate), 0],
        prompt.sample_rate,
        audio.sample_rate,
    ).astype(np.int16)
    gap = np.zeros(audio.sample_rate // 2, dtype=np.int16)
    shift = (len(prompt_pcm) + len(gap)) / audio.sample_rate
    joined = np.concatenate([prompt_pcm, gap, audio.samples[:, 0]]).reshape(-1, 1)
    run = await diarize_in_process(CallAudio(joined, audio.sample_rate), name)
    finals, relabels = run["finals"], run["relabels"]

    def on_the_call(utterances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for u in utterances:
            said = [
                {**w, "start": w["start"] - shift, "end": w["end"] - shift}
                for w in u["words"]
                if (w["start"] + w["end"]) / 2 >= shift
            ]
            if said:
                out.append({**u, "words": said})
        return out

    shown = score(on_the_call([dict(f) for f in finals]), tracks, roles)["word_role_accuracy"]
    apply_relabels(finals, relabels)
    prompt_words = [
        f["channel"] for f in finals for w in f["words"] if (w["start"] + w["end"]) / 2 < shift
    ]
    return {
        "prompt_seconds": seconds,
        "audio_seconds": round(len(joined) / audio.sample_rate, 1),
        "finals": len(finals),
        **score(on_the_call(finals), tracks, roles),
        "as_first_shown": shown,
        "relabeled_finals": sum(len(r["changes"]) for r in relabels),
        "prompt_words_as": {r: prompt_words.count(r) for r in ("agent", "customer")},
    }


def turns(call: str) -> list[tuple[float, float, str]]:
    """The hand-labelled turns of a real mono call: (start, end, party)."""
    with LABELS.open(encoding="utf-8") as f:
        return [
            (float(r["start"]), float(r["end"]), r["party"])
            for r in csv.DictReader(f)
            if r["call"] == call
        ]


def score_turns(
    utterances: list[dict[str, Any]], labelled: list[tuple[float, float, str]]
) -> dict[str, Any]:
    """Words whose middle falls in a labelled turn, put down to that turn's party or not."""
    right = scored = total = 0
    for u in utterances:
        for w in u["words"]:
            total += 1
            middle = (w["start"] + w["end"]) / 2
            party = next((p for lo, hi, p in labelled if lo <= middle <= hi), None)
            if party is not None:
                scored += 1
                right += party == u["channel"]
    return {
        "words": total,
        "scored_words": scored,
        "word_role_accuracy": round(right / max(scored, 1), 4),
    }


async def real_call(call: str, from_customer: bool = False) -> dict[str, Any]:
    """A real call recorded with both parties on one channel, diarized with its language
    detected, against the turns labelled by hand in benchmarks/data/mono_calls.csv.
    `from_customer`: from the customer's first labelled turn on, so that the first voice
    heard is the customer's."""
    audio = one_channel(load_call_audio([DATA / REAL_CALLS[call]]))
    labelled = turns(call)
    skip = 0.0
    if from_customer:
        skip = max(min(lo for lo, _, party in labelled if party == "customer") - 0.1, 0.0)
        audio = CallAudio(audio.samples[int(skip * audio.sample_rate) :], audio.sample_rate)
        labelled = [(lo - skip, hi - skip, party) for lo, hi, party in labelled if lo >= skip]
    run = await diarize_in_process(audio, call, language="auto")
    finals, relabels = run["finals"], run["relabels"]
    shown = score_turns([dict(f) for f in finals], labelled)["word_role_accuracy"]
    apply_relabels(finals, relabels)
    return {
        "file": REAL_CALLS[call],
        "from_seconds": round(skip, 2),
        "language": sorted({f.get("language") or "" for f in finals}),
        "audio_seconds": round(audio.duration, 1),
        "labelled_turns": len(labelled),
        "finals": len(finals),
        **score_turns(finals, labelled),
        "as_first_shown": shown,
        "relabeled_finals": sum(len(r["changes"]) for r in relabels),
        "print_cpu_seconds_per_audio_second": round(run["print_cpu_seconds"] / audio.duration, 4),
        "finals_by_party": {
            party: [f["text"] for f in finals if f["channel"] == party]
            for party in ("agent", "customer")
        },
    }


async def live(seconds: float) -> dict[str, Any]:
    from benchmarks.latency import Sampler
    from clients.native import stream_call
    from tests.servers import ServerProcess

    audio, tracks, roles = parties("aws_auto_repairs_40")
    n = int(seconds * audio.sample_rate)
    audio = CallAudio(audio.samples[:n], audio.sample_rate)
    tracks = tracks[: int(seconds * TARGET_RATE)]
    out: dict[str, Any] = {"audio_seconds": round(audio.duration, 1)}
    for label, diarize in (("mono", False), ("diarized", True)):
        server = ServerProcess(env={"CALLCUE_REVISE": "false"})
        try:
            sampler = Sampler(server.pid)
            result = await stream_call(
                server.url,
                audio,
                ["mixed"],
                diarize=diarize,
                call_id=f"diarize-bench-{label}",
            )
            cpu = sampler.stop()
        finally:
            server.stop()
        events = list(zip(result.events, result.received_at, strict=True))
        finals = [e for e, _ in events if e["type"] == "transcript.final"]
        latency = []
        for event, received in events:
            if event["type"] == "transcript.final":
                sent = result.sent_time(event["end"])
                if sent is not None:
                    latency.append(received - sent)
        row: dict[str, Any] = {
            "finals": len(finals),
            "final_latency_p50": percentile(latency, 50),
            "final_latency_p95": percentile(latency, 95),
            "server_cpu_seconds_per_audio_second": round(cpu / audio.duration, 3)
            if cpu is not None
            else None,
        }
        if diarize:
            shown = score([dict(f) for f in finals], tracks, roles)["word_role_accuracy"]
            apply_relabels(finals, [e for e, _ in events if e["type"] == "transcript.relabeled"])
            row.update(score(finals, tracks, roles))
            row["as_first_shown"] = shown
        out[label] = row
    mono, diarized = out["mono"], out["diarized"]
    if mono["final_latency_p50"] is not None and diarized["final_latency_p50"] is not None:
        out["added_final_latency_p50"] = round(
            diarized["final_latency_p50"] - mono["final_latency_p50"], 3
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", nargs="+", default=list(CALLS), choices=list(CALLS))
    parser.add_argument("--live", action="store_true", help="also stream through a server")
    parser.add_argument("--seconds", type=float, default=120.0, help="of the live call")
    parser.add_argument(
        "--skip",
        type=float,
        nargs="+",
        default=[0.0],
        help="start each call this many seconds in (each a row): another voice may come first",
    )
    parser.add_argument(
        "--revise",
        action="store_true",
        help="whole calls also revised by the finals' model, both records scored",
    )
    parser.add_argument(
        "--offline-from",
        type=Path,
        default=RESULTS / "accuracy_realtime.json",
        help="an accuracy result holding offline base text of the calls' channels",
    )
    parser.add_argument(
        "--ivr",
        type=float,
        metavar="SECONDS",
        help="also each call after that much of a recorded IVR prompt (a third voice)",
    )
    parser.add_argument(
        "--real",
        nargs="*",
        choices=list(REAL_CALLS),
        help="instead, the real mono calls with hand-labelled turns (no names: all of them)",
    )
    parser.add_argument(
        "--from-customer",
        action="store_true",
        help="with --real: each call also from its first customer turn (heard first)",
    )
    parser.add_argument(
        "--out", help="the result's name (default diarization, with --real diarization_real)"
    )
    args = parser.parse_args()
    args.out = args.out or ("diarization_real" if args.real is not None else "diarization")
    if args.real is not None:
        results: dict[str, Any] = {"real": {}}
        for call in args.real or list(REAL_CALLS):
            for from_customer in (False, True) if args.from_customer else (False,):
                row = f"{call} from the customer" if from_customer else call
                results["real"][row] = asyncio.run(real_call(call, from_customer))
                shown = {k: v for k, v in results["real"][row].items() if k != "finals_by_party"}
                print(row, shown, flush=True)
        rows = results["real"].values()
        scored = sum(r["scored_words"] for r in rows)
        right = sum(r["scored_words"] * r["word_role_accuracy"] for r in rows)
        results["pooled_word_role_accuracy"] = round(right / max(scored, 1), 4)
        print(f"wrote {write_result(args.out, results)}")
        return
    bases = offline_base(args.offline_from) if args.revise else {}
    results = {"offline": {}}
    for name in args.calls:
        for skip in args.skip:
            row = f"{name} from {skip:g} s" if skip else name
            if parties(name, skip)[0].duration < 20:
                continue  # (the call is shorter than that)
            references = None
            if args.revise and not skip:
                references = {role: bases[(name, role)] for role in CALLS[name][1]}
            results["offline"][row] = asyncio.run(offline(name, skip, references))
            print(row, results["offline"][row], flush=True)
        if args.ivr:
            row = f"{name} after an IVR prompt"
            results["offline"][row] = asyncio.run(offline_after_prompt(name, args.ivr))
            print(row, results["offline"][row], flush=True)
    if args.live:
        results["live"] = asyncio.run(live(args.seconds))
        print("live", results["live"], flush=True)
    two_voices = [r for r in results["offline"].values() if "prompt_seconds" not in r]
    words = sum(r["words"] for r in two_voices)
    right = sum(r["words"] * r["word_role_accuracy"] for r in two_voices)
    results["pooled_word_role_accuracy"] = round(right / max(words, 1), 4)
    path = write_result(args.out, results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
