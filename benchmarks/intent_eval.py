"""Intent accuracy on any CSVs with columns `text,intent`, trained exactly as a playbook is.

    python benchmarks/intent_eval.py --train TRAIN.csv --test TEST.csv [--shots K]
        [--oos-label oos] [--threshold T] [--frozen] [--json]

Trained as a playbook is after `callcue train PLAYBOOK`: the encoder's intent branch tuned on
the training rows (`models.train_intents`, cached by their hash), then the head; `--frozen`
measures a playbook that was not trained (the head on frozen features).

Training rows labelled with the out-of-scope label are ignored (a playbook has no "other"
examples); out-of-scope test rows measure rejection. Prints
`{"accuracy", "macro_f1", "oos_recall", ...}`:

- `accuracy`: in-scope test rows whose intent is right AND confident (a rejection is an error);
- `accuracy_no_rejection`: in-scope rows whose top intent is right, threshold ignored;
- `macro_f1`: over in-scope intents, rejections counting as errors;
- `oos_recall`: out-of-scope test rows rejected (below the threshold).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result
from benchmarks.textmetrics import accuracy, macro_f1, read_csv
from models.classifiers import IntentClassifier
from models.encoder import TextEncoder
from models.train_intents import train as train_intents_branch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument(
        "--test",
        type=Path,
        nargs="+",
        required=True,
        help="one or more CSVs (e.g. test.csv oos_test.csv)",
    )
    parser.add_argument("--shots", type=int, help="keep K training examples per intent")
    parser.add_argument("--oos-label", default="oos")
    parser.add_argument(
        "--threshold", type=float, help="confidence threshold (default: the product's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--frozen", action="store_true", help="no intent tuning: the head on frozen features"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--save", help="also write benchmarks/results/<SAVE>.json")
    args = parser.parse_args()

    texts, intents = read_csv(args.train, "intent")
    pairs = [(t, i) for t, i in zip(texts, intents, strict=True) if i != args.oos_label]
    if args.shots:
        by_intent: dict[str, list[str]] = defaultdict(list)
        for text, intent in pairs:
            by_intent[intent].append(text)
        rng = random.Random(args.seed)
        pairs = [
            (t, i)
            for i, ts in sorted(by_intent.items())
            for t in rng.sample(ts, min(args.shots, len(ts)))
        ]
    test_texts: list[str] = []
    gold: list[str] = []
    for path in args.test:
        t, g = read_csv(path, "intent")
        test_texts += t
        gold += g

    started = time.perf_counter()
    train_texts, train_intents = [t for t, _ in pairs], [i for _, i in pairs]
    # force: trained here, never a cached branch, so train_seconds is what training costs
    branch = None if args.frozen else train_intents_branch(train_texts, train_intents, force=True)
    encoder = TextEncoder(threads=2, intent_branch=branch)
    classifier = IntentClassifier.train(
        encoder, train_texts, train_intents, threshold=args.threshold
    )
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    results = classifier.classify(encoder.encode(test_texts, sentiment_rows=()), texts=test_texts)
    test_seconds = time.perf_counter() - started

    predicted = [r.intent or args.oos_label for r in results]
    top1 = [r.top[0].intent for r in results]
    in_scope = [k for k, g in enumerate(gold) if g != args.oos_label]
    oos = [k for k, g in enumerate(gold) if g == args.oos_label]
    labels = sorted({gold[k] for k in in_scope})
    payload = {
        "accuracy": round(
            accuracy([gold[k] for k in in_scope], [predicted[k] for k in in_scope]), 4
        ),
        "accuracy_no_rejection": round(
            accuracy([gold[k] for k in in_scope], [top1[k] for k in in_scope]), 4
        ),
        "macro_f1": round(
            macro_f1([gold[k] for k in in_scope], [predicted[k] for k in in_scope], labels), 4
        ),
        "oos_recall": round(sum(predicted[k] == args.oos_label for k in oos) / len(oos), 4)
        if oos
        else None,
        "method": "frozen" if args.frozen else "tuned",
        "threshold": classifier.threshold,
        "min_similarity": classifier.min_similarity,
        "temperature": round(classifier.head.temperature, 3),
        "train_examples": len(pairs),
        "shots": args.shots,
        "intents": len(classifier.intents),
        "test_in_scope": len(in_scope),
        "test_oos": len(oos),
        "train_seconds": round(train_seconds, 2),
        "test_ms_per_utterance": round(1000 * test_seconds / max(len(gold), 1), 3),
    }
    if args.save:
        write_result(
            args.save, {"train": str(args.train), "test": [str(p) for p in args.test], **payload}
        )
    if args.json:
        print(json.dumps(payload))
    else:
        print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
