"""Sentiment accuracy of the shipped model against the VADER baseline on any labelled CSV.

    python benchmarks/sentiment_eval.py --test TEST.csv [--exclude OTHER.csv] [--json]
        [--save NAME] [--model PATH]

`--model`: a sentiment artifact other than the shipped one (a `models.train_sentiment --out`).

`--exclude`: leave out the rows whose text is in OTHER.csv (DynaSent's test without its Round 2
rows, which the shipped model trains on the Round 2 train split of).

CSV columns `text,label`, labels negative/neutral/positive. Macro-F1 is over the labels the test
set uses; when a set has no neutral label (UCI), both models choose between the labels it has
(ours: the likelier of negative/positive; VADER: the sign of its compound score), so neither is
marked wrong for an answer the set cannot contain. VADER otherwise uses its documented ±0.05
compound thresholds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result
from benchmarks.textmetrics import accuracy, macro_f1, read_csv
from models.classifiers import SENTIMENT_HEAD, SENTIMENT_LABELS, SentimentModel
from models.encoder import TextEncoder


def vader(texts: list[str], labels: list[str]) -> list[str]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    out = []
    for text in texts:
        compound = analyzer.polarity_scores(text)["compound"]
        if "neutral" not in labels:
            out.append("positive" if compound >= 0 else "negative")
        else:
            out.append(
                "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--exclude", type=Path, help="leave out the rows whose text is here")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", help="also write benchmarks/results/<SAVE>.json")
    parser.add_argument("--model", type=Path, default=SENTIMENT_HEAD, help="sentiment artifact")
    args = parser.parse_args()
    texts, gold = read_csv(args.test, "label")
    if args.exclude:
        drop = set(read_csv(args.exclude, "label")[0])
        kept = [k for k, t in enumerate(texts) if t not in drop]
        texts, gold = [texts[k] for k in kept], [gold[k] for k in kept]
    bad = sorted(set(gold) - set(SENTIMENT_LABELS))
    if bad:
        raise SystemExit(f"{args.test}: labels must be negative/neutral/positive, found {bad}")
    labels = sorted(set(gold))
    model = SentimentModel.load(args.model)
    probs = model.probabilities(TextEncoder(threads=2, branch=args.model).encode(texts))
    allowed = [i for i, label in enumerate(SENTIMENT_LABELS) if label in labels]
    ours = [SENTIMENT_LABELS[allowed[int(row[allowed].argmax())]] for row in probs]
    theirs = vader(texts, labels)
    payload = {
        "model": {
            "macro_f1": round(macro_f1(gold, ours, labels), 4),
            "accuracy": round(accuracy(gold, ours), 4),
        },
        "vader": {
            "macro_f1": round(macro_f1(gold, theirs, labels), 4),
            "accuracy": round(accuracy(gold, theirs), 4),
        },
        "rows": len(gold),
        "labels": labels,
    }
    if args.save:
        write_result(
            args.save,
            {
                "test": str(args.test),
                "exclude": str(args.exclude) if args.exclude else None,
                **payload,
            },
        )
    print(json.dumps(payload) if args.json else json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
