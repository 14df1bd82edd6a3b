"""Train the shipped sentiment head: `make train` (or `python -m models.train_sentiment`).

Data: the permissively licensed sets in ../shared/data/text (set CALLCUE_DATA to the data folder
elsewhere): GoEmotions train (Apache-2.0, 3 classes) and the UCI review sentences train split
(CC BY 4.0, negative/positive). Neither has what most of a support call is: plain requests
("I need to change the address on my order"), which a Reddit/review model reads as positive or
negative. So 20 requests per CLINC150 intent from its train split (CC BY 3.0) are added as
*neutral* (weak labels; the few emotional intents such as thank_you or greeting are left out).
MELD (GPL repository) is never used for training.
Deterministic: the same data and encoder give the same `models/artifacts/sentiment.npz`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import time
from pathlib import Path

from models.classifiers import SENTIMENT_HEAD, SENTIMENT_LABELS
from models.encoder import TextEncoder
from models.heads import features, train_head

ROOT = Path(__file__).resolve().parent.parent
CLINC_TRAIN = "intent/clinc150/train.csv"
CLINC_PER_INTENT = 20
CLINC_NOT_NEUTRAL = {
    "thank_you",
    "greeting",
    "goodbye",
    "are_you_a_bot",
    "tell_joke",
    "fun_fact",
    "meaning_of_life",
    "what_is_your_name",
    "who_made_you",
    "how_old_are_you",
    "what_are_your_hobbies",
    "do_you_have_pets",
    "where_are_you_from",
    "who_do_you_work_for",
    "yes",
    "no",
    "maybe",
}
SETS = (
    "goemotions/normalized/train.csv",
    "uci_sentiment_sentences/normalized/all_train.csv",
)


def data_dir() -> Path:
    base = Path(os.environ.get("CALLCUE_DATA", ROOT.parent / "shared" / "data"))
    return base / "text"


def main() -> None:
    parser = argparse.ArgumentParser(description="train the sentiment head")
    parser.add_argument("--out", type=Path, default=SENTIMENT_HEAD)
    args = parser.parse_args()
    texts: list[str] = []
    labels: list[str] = []
    digest = hashlib.sha256()
    for name in SETS:
        path = data_dir() / "sentiment" / name
        if not path.exists():
            raise SystemExit(f"{path}: missing (set CALLCUE_DATA to the shared data folder)")
        digest.update(path.read_bytes())
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["label"] in SENTIMENT_LABELS and row["text"].strip():
                    texts.append(row["text"])
                    labels.append(row["label"])
    clinc = data_dir() / CLINC_TRAIN
    if not clinc.exists():
        raise SystemExit(f"{clinc}: missing (set CALLCUE_DATA to the shared data folder)")
    digest.update(clinc.read_bytes())
    taken: dict[str, int] = {}
    with clinc.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):  # the file's own order: deterministic
            intent = row["intent"]
            if intent in CLINC_NOT_NEUTRAL or taken.get(intent, 0) >= CLINC_PER_INTENT:
                continue
            taken[intent] = taken.get(intent, 0) + 1
            texts.append(row["text"])
            labels.append("neutral")
    started = time.perf_counter()
    encoder = TextEncoder(threads=os.cpu_count() or 1)
    print(f"encoding {len(texts)} sentences…", flush=True)
    x = features(encoder.encode(texts))
    print(f"encoded in {time.perf_counter() - started:.0f}s; training…", flush=True)
    head = train_head(x, labels)
    head.save(args.out)
    card = {
        "data": [*SETS, f"{CLINC_TRAIN} ({CLINC_PER_INTENT}/intent as neutral)"],
        "data_sha256": digest.hexdigest(),
        "examples": len(texts),
        "labels": list(head.labels),
        "temperature": round(head.temperature, 4),
        "features": "MiniLM embedding + mean of layer 4",
    }
    args.out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(
        f"wrote {args.out} ({args.out.stat().st_size // 1024} KB) in "
        f"{time.perf_counter() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
