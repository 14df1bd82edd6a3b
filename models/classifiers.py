"""Intent and sentiment classifiers on the shared sentence encoder.

- `IntentClassifier.train(encoder, texts, intents)`: the same code trains a playbook's intents at
  start-up (few-shot: its example utterances) and a head on a whole dataset
  (`benchmarks/intent_eval.py`, `callcue train-intents`). Below `threshold` calibrated
  confidence the answer is "none" (out of scope).
- `SentimentModel`: fine-tuned offline on GoEmotions + UCI sentences (+ CLINC requests as
  neutral): `make train` → `models/artifacts/sentiment.npz` holds LoRA factors of the encoder's
  top layers and a linear head. The encoder serves those layers as a branch of its own graph
  (`TextEncoder(branch=…)`, the default), so one pass gives intent features and sentiment; a
  head-only artifact (no branch) reads the base encoder's features instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.encoder import Encoded, TextEncoder, has_branch
from models.heads import LinearHead, features, train_head

ARTIFACTS = Path(__file__).parent / "artifacts"
SENTIMENT_HEAD = ARTIFACTS / "sentiment.npz"
SENTIMENT_LABELS = ("negative", "neutral", "positive")
DEFAULT_INTENT_THRESHOLD = 0.6
# An utterance whose nearest training example is less similar than this (cosine of sentence
# embeddings) is out of scope whatever the head says: a softmax always picks *some* intent.
DEFAULT_MIN_SIMILARITY = 0.35


@dataclass(frozen=True, slots=True)
class IntentScore:
    intent: str
    confidence: float


@dataclass(frozen=True, slots=True)
class IntentResult:
    intent: str | None  # None: out of scope (best confidence below the threshold)
    confidence: float
    top: tuple[IntentScore, ...]


class IntentClassifier:
    def __init__(
        self,
        head: LinearHead,
        threshold: float = DEFAULT_INTENT_THRESHOLD,
        examples: np.ndarray | None = None,
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
    ) -> None:
        self.head = head
        self.threshold = threshold
        self.examples = examples  # [N, 384] unit embeddings of the training examples
        self.min_similarity = min_similarity

    @property
    def intents(self) -> tuple[str, ...]:
        return self.head.labels

    @classmethod
    def train(
        cls,
        encoder: TextEncoder,
        texts: Sequence[str],
        intents: Sequence[str],
        *,
        threshold: float = DEFAULT_INTENT_THRESHOLD,
    ) -> IntentClassifier:
        encoded = encoder.encode(list(texts))
        return cls(train_head(features(encoded), list(intents)), threshold, encoded.embedding)

    def classify(self, encoded: Encoded, *, top: int = 3) -> list[IntentResult]:
        probs = self.head.predict_proba(features(encoded))
        nearest = (
            (encoded.embedding @ self.examples.T).max(axis=1)
            if self.examples is not None and len(self.examples) and len(encoded.embedding)
            else np.ones(len(probs))
        )
        results = []
        for row, similarity in zip(probs, nearest, strict=True):
            order = np.argsort(-row)[:top]
            scores = tuple(IntentScore(self.head.labels[i], round(float(row[i]), 4)) for i in order)
            best = scores[0]
            results.append(
                IntentResult(
                    best.intent
                    if best.confidence >= self.threshold and similarity >= self.min_similarity
                    else None,
                    best.confidence,
                    scores,
                )
            )
        return results


@dataclass(frozen=True, slots=True)
class SentimentResult:
    label: str
    score: float  # p(positive) - p(negative), in [-1, 1]
    probabilities: dict[str, float]


class SentimentModel:
    def __init__(self, head: LinearHead, branch: Path | None = None) -> None:
        if set(head.labels) != set(SENTIMENT_LABELS):
            raise ValueError(f"a sentiment head predicts {SENTIMENT_LABELS}, not {head.labels}")
        self.head = head
        self.branch = branch  # the artifact whose fine-tuned layers the head reads, if any
        self._order = [head.labels.index(label) for label in SENTIMENT_LABELS]

    @classmethod
    def load(cls, path: Path = SENTIMENT_HEAD) -> SentimentModel:
        if not path.exists():
            raise RuntimeError(
                f"{path}: the sentiment model is missing; `make train` trains it "
                "(from ../shared/data/text/sentiment)"
            )
        return cls(LinearHead.load(path), path if has_branch(path) else None)

    def probabilities(self, encoded: Encoded) -> np.ndarray:
        """[N, 3] in the order negative, neutral, positive."""
        if self.branch is None:
            x = features(encoded)
        elif encoded.sentiment is None:
            raise RuntimeError(
                f"this sentiment model reads the fine-tuned layers in {self.branch}: encode with "
                "TextEncoder(branch=that file) (the default for the shipped model)"
            )
        else:
            x = encoded.sentiment
        return self.head.predict_proba(x)[:, self._order]

    def classify(self, encoded: Encoded) -> list[SentimentResult]:
        return [_sentiment(row) for row in self.probabilities(encoded)]

    @staticmethod
    def combine(parts: Sequence[SentimentResult], weights: Sequence[float]) -> SentimentResult:
        """One result for an utterance read sentence by sentence: the probabilities averaged,
        weighted (by the sentences' words)."""
        rows = np.array([[r.probabilities[label] for label in SENTIMENT_LABELS] for r in parts])
        return _sentiment(np.average(rows, axis=0, weights=np.asarray(weights, float)))


def _sentiment(row: np.ndarray) -> SentimentResult:
    best = int(np.argmax(row))
    return SentimentResult(
        SENTIMENT_LABELS[best],
        round(float(row[2] - row[0]), 4),
        {label: round(float(p), 4) for label, p in zip(SENTIMENT_LABELS, row, strict=True)},
    )
