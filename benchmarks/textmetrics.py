"""Classification metrics shared by the intent and sentiment benchmarks (no sklearn needed)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


def read_csv(path: Path, label_column: str) -> tuple[list[str], list[str]]:
    """Rows of a CSV with a `text` column and `label_column`; a clear error otherwise."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "text" not in columns or label_column not in columns:
            raise SystemExit(f"{path}: needs columns text,{label_column} (has {','.join(columns)})")
        rows = [(r["text"], r[label_column]) for r in reader if r["text"].strip()]
    if not rows:
        raise SystemExit(f"{path}: no rows")
    return [t for t, _ in rows], [label for _, label in rows]


def macro_f1(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> float:
    """Mean F1 over `labels` (the gold label set: a prediction outside it counts as wrong)."""
    scores = []
    for label in labels:
        tp = sum(1 for g, p in zip(gold, predicted, strict=True) if g == label and p == label)
        fp = sum(1 for g, p in zip(gold, predicted, strict=True) if g != label and p == label)
        fn = sum(1 for g, p in zip(gold, predicted, strict=True) if g == label and p != label)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / max(len(scores), 1)


def accuracy(gold: Sequence[str], predicted: Sequence[str]) -> float:
    return sum(1 for g, p in zip(gold, predicted, strict=True) if g == p) / max(len(gold), 1)
