"""Intent and sentiment on speech: how often does Whisper's text change what the agent is shown?

    python -m benchmarks.intent_asr [--configs two-pass tiny.en] [--shots 10] [--save intent_asr]

No recording here has both a reference transcript and labelled intents, so this measures the
fallback the issue names: the rate of intent (and sentiment) changes between a reference
transcript and the ASR transcript of the same speech, on the real two-party calls of
../shared/data/audio (the AWS auto-repair pair, the Genesys stereo call: an auto-repair shop
and an online store, each channel one party).

- **Reference**: offline faster-whisper Whisper base (beam 5, its VAD filter, word timings) of
  each customer channel: the best transcript available without a human one (it is not the
  truth; it favours base, the finals' model, by construction).
- **Units**: each customer final of the live pipeline (`callcue transcribe`'s code, in-process,
  as fast as it decodes), the stretch of speech the product classifies. Each reference word
  goes to the final nearest in time (inside its span, else at most 1 s from it); words farther
  from any final are counted apart (speech the live pipeline dropped). So both texts of a unit
  cover the same speech, and what differs is the recognition, not the segmentation.
- **Texts** of a unit: the reference words, the live final (`live`), and the revised text the
  store keeps (`revised`).
- **Classifiers**, trained as the product trains a playbook (`callcue train`'s tuning, then the
  head): the shipped retail playbook (its intents rarely fit these calls: it mostly measures
  whether "no intent" survives recognition) and a playbook of CLINC150's 150 intents from
  `--shots` training examples each (its domains include cars and travel, as these calls are).
  Sentiment is the shipped model's label.

Per classifier, configuration and text: `changed` (units whose intent differs from the
reference's, "no intent" counting as an answer), `kept` (of the units where the reference has
an intent, those given the same one), `spurious` (of the units where the reference has none,
those given one), `sentiment_changed`, and the units' word error rate against the reference.
Finals with no reference word near them are counted apart (`units_without_reference`). Each
unit is classified alone: the live engine also reads a short customer turn with the one
before it, which this does not do.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy import BASE, CALLS, CONFIGS, channels
from benchmarks.common import DATA, word_errors, write_result

CLINC = DATA.parent / "text" / "intent" / "clinc150"
NEAR_S = 1.0  # a reference word this far from every final is speech the live pipeline dropped


def reference_words(beam_size: int) -> dict[str, list[tuple[float, float, str]]]:
    """Offline base of each call's customer channel: (start, end, word) in call time."""
    from faster_whisper import WhisperModel

    from models.resolve import resolve_whisper_model

    model = WhisperModel(resolve_whisper_model(BASE), device="cpu", compute_type="int8")
    out: dict[str, list[tuple[float, float, str]]] = {}
    for call, (names, parties) in CALLS.items():
        audio = channels(names, parties)[parties.index("customer")]
        segments, _ = model.transcribe(
            audio, beam_size=beam_size, language="en", vad_filter=True, word_timestamps=True
        )
        out[call] = [(w.start, w.end, w.word.strip()) for s in segments for w in s.words or ()]
    return out


def assign(
    words: list[tuple[float, float, str]], spans: list[tuple[float, float]]
) -> tuple[list[str], int]:
    """Each reference word to the nearest span (by its middle); the texts per span and the
    count of words near none."""
    texts: list[list[str]] = [[] for _ in spans]
    dropped = 0
    for start, end, word in words:
        middle = (start + end) / 2
        gaps = [max(lo - middle, middle - hi, 0.0) for lo, hi in spans]
        k = int(np.argmin(gaps)) if gaps else -1
        if k < 0 or gaps[k] > NEAR_S:
            dropped += 1
        else:
            texts[k].append(word)
    return [" ".join(t) for t in texts], dropped


async def live_finals(config: str) -> dict[str, list[dict[str, Any]]]:
    """The customer finals of each call through the live pipeline, with their revision."""
    from audio.files import load_call_audio
    from cli import transcribe_call
    from service.settings import Settings

    partial_model, final_model, context_s = CONFIGS[config]
    settings = Settings.load(overrides={"model": partial_model, "final_model": final_model})
    settings = replace(settings, assist=False)
    streaming = replace(settings.streaming, context_s=context_s)
    out = {}
    for call, (names, parties) in CALLS.items():
        audio = load_call_audio([DATA / f for f in names], len(parties))
        result = await transcribe_call(settings, audio, list(parties), "bench", streaming=streaming)
        out[call] = [u for u in result["utterances"] if u["channel"] == "customer"]
    return out


def clinc_classifier(shots: int, seed: int) -> Any:
    """A playbook of CLINC150's intents, `shots` examples each, trained as `callcue train`
    trains one: a function from texts to intents (None: no intent)."""
    from benchmarks.textmetrics import read_csv
    from models.classifiers import IntentClassifier
    from models.encoder import TextEncoder
    from models.train_intents import train as train_intents_branch

    texts, intents = read_csv(CLINC / "train.csv", "intent")
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in zip(texts, intents, strict=True):
        if intent != "oos":
            by_intent[intent].append(text)
    rng = random.Random(seed)
    pairs = [(t, i) for i, ts in sorted(by_intent.items()) for t in rng.sample(ts, shots)]
    train_texts, train_intents = [t for t, _ in pairs], [i for _, i in pairs]
    branch = train_intents_branch(train_texts, train_intents)
    encoder = TextEncoder(threads=2, intent_branch=branch)
    classifier = IntentClassifier.train(encoder, train_texts, train_intents)

    def classify(batch: list[str]) -> list[str | None]:
        results = classifier.classify(encoder.encode(batch, sentiment_rows=()), texts=batch)
        return [r.intent for r in results]

    return classify


def pick(
    read_as: dict[str, dict[str, list[Any]]], keep: list[int], kind: str, model: str
) -> tuple[list[Any], list[Any]]:
    """The reference's answers and `kind`'s, from `model`, for the units in `keep`."""
    return (
        [read_as["reference"][model][k] for k in keep],
        [read_as[kind][model][k] for k in keep],
    )


def compare(reference: list[Any], other: list[Any]) -> dict[str, Any]:
    pairs = list(zip(reference, other, strict=True))
    with_intent = [(r, o) for r, o in pairs if r is not None]
    without = [(r, o) for r, o in pairs if r is None]
    return {
        "changed": round(sum(r != o for r, o in pairs) / max(len(pairs), 1), 4),
        "kept": round(sum(r == o for r, o in with_intent) / len(with_intent), 4)
        if with_intent
        else None,
        "spurious": round(sum(o is not None for _, o in without) / len(without), 4)
        if without
        else None,
        "reference_with_intent": len(with_intent),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["two-pass", "tiny.en"], choices=CONFIGS)
    parser.add_argument("--shots", type=int, default=10, help="CLINC150 examples per intent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beam-size", type=int, default=5, help="the reference's beam")
    parser.add_argument("--save", default="intent_asr")
    parser.add_argument("--units", type=Path, help="also write every unit's texts to this CSV")
    args = parser.parse_args()

    from assist.engine import AssistModels

    started = time.perf_counter()
    reference = reference_words(args.beam_size)
    shipped = AssistModels.load()
    clinc = clinc_classifier(args.shots, args.seed)

    def read(texts: list[str]) -> dict[str, list[Any]]:
        shipped_results = shipped.classify_text(texts)
        return {
            "playbook": [i.intent for i, _ in shipped_results],
            "sentiment": [s.label for _, s in shipped_results],
            "clinc150": clinc(texts),
        }

    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    for config in args.configs:
        finals = asyncio.run(live_finals(config))
        units: list[dict[str, str]] = []
        dropped = 0
        for call, lines in finals.items():
            spans = [(u["start"], u["end"]) for u in lines]
            texts, lost = assign(reference[call], spans)
            dropped += lost
            for u, ref in zip(lines, texts, strict=True):
                units.append(
                    {
                        "call": call,
                        "start": f"{u['start']:.2f}",
                        "reference": ref,
                        "live": u.get("live_text", u["text"]),
                        "revised": u["text"],
                    }
                )
        read_as = {
            kind: read([u[kind] for u in units]) for kind in ("reference", "live", "revised")
        }
        # a final with no reference word near it (speech offline decoding did not hear, or
        # words the live pass made up) has no text to compare with: counted apart
        heard = [k for k, u in enumerate(units) if u["reference"].strip()]
        entry: dict[str, Any] = {
            "units": len(heard),
            "units_without_reference": len(units) - len(heard),
            "reference_words_dropped": dropped,
            "reference_words": sum(len(r) for r in reference.values()),
        }

        for kind in ("live", "revised"):
            errors = words = 0
            for k in heard:
                e, n = word_errors(units[k]["reference"], units[k][kind])
                errors, words = errors + e, words + n
            entry[kind] = {
                "wer_vs_reference": round(errors / max(words, 1), 4),
                "playbook": compare(*pick(read_as, heard, kind, "playbook")),
                "clinc150": compare(*pick(read_as, heard, kind, "clinc150")),
                "sentiment_changed": compare(*pick(read_as, heard, kind, "sentiment"))["changed"],
            }
        results[config] = entry
        for k, u in enumerate(units):
            rows.append(
                {
                    "config": config,
                    **u,
                    **{
                        f"{kind}_{model}": read_as[kind][model][k] or ""
                        for kind in ("reference", "live", "revised")
                        for model in ("clinc150", "playbook", "sentiment")
                    },
                }
            )
        print(json.dumps({config: entry}, indent=2), flush=True)
    if args.units:
        with args.units.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    write_result(
        args.save,
        {
            "reference": f"offline faster-whisper base, beam {args.beam_size}, VAD filter",
            "clinc150_shots": args.shots,
            "seed": args.seed,
            "results": results,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )


if __name__ == "__main__":
    main()
