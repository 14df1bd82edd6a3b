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

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.encoder import Encoded, TextEncoder, has_branch
from models.heads import LinearHead, features, train_head

ARTIFACTS = Path(__file__).parent / "artifacts"
SENTIMENT_HEAD = ARTIFACTS / "sentiment.npz"
SENTIMENT_LABELS = ("negative", "neutral", "positive")
# Out of scope: below the calibrated confidence `threshold`, or farther than `min_similarity`
# (cosine) from what the intents were trained on: a softmax always picks *some* intent.
# - An untrained playbook: the nearest training example in the base embedding space.
# - A tuned playbook (`callcue train`): the nearest intent centre (the mean of its examples) in
#   the intent branch's space, where each intent's examples lie close together. A centre, not
#   the nearest example: with 100 examples per intent some example is near almost anything
#   (CLINC150 out-of-scope recall fell from 0.74 at 10 per intent to 0.52 at 100 with the
#   nearest example, 0.75 with centres).
# The tuned pair was chosen on the dev splits of HWU64 and CLINC150 (+ its out-of-scope dev
# rows) at 5, 10 and all examples per intent: the least in-scope loss that keeps out-of-scope
# recall ≥ 0.70 in every case (README, "Assist benchmarks").
DEFAULT_INTENT_THRESHOLD = 0.6
DEFAULT_MIN_SIMILARITY = 0.35
TUNED_INTENT_THRESHOLD = 0.3
TUNED_MIN_SIMILARITY = 0.55


# Words that carry no request on their own: backchannels, greetings, fillers, checks that the
# line works ("I'm here.", "Okay.", "Hello?", "Yes, I'm still on the line"). A turn made only
# of them gets no intent, whatever the head's nearest guess (English only, like the intents):
# a tuned encoder puts every such short turn near the playbook's shortest examples, and its
# answer there is confident and wrong (the shipped playbook's "Okay." was its closing intent).
# The exception: a turn with a word of thanks or farewell (`COURTESY`) keeps an intent whose
# own examples use that word ("Thank you so much." is the closing intent's).
COURTESY = frozenset(["thank", "thanks", "bye", "goodbye", "cheers"])
PHATIC = COURTESY | frozenset(
    """
    a ah all alright am and any are aha at be can cool do fine for go good got great hang hear
    hello here hey hi hmm hold huh i i'm im is it it's just let line me mhm minute mm moment
    much my no nope now of oh ok okay on one perfect please pardon really right sec second see
    so sorry still sure that that's the there this to uh uhm um understand very well what wait
    yeah yep yes you you're yup
    """.split()  # noqa: SIM905 - a word list reads better as text
)
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("\u2019", "'"))


def carries_no_request(text: str) -> bool:
    """True for a turn with no word outside `PHATIC` (an empty one included)."""
    return all(w in PHATIC for w in words(text))


@dataclass(frozen=True, slots=True)
class IntentScore:
    intent: str
    confidence: float


@dataclass(frozen=True, slots=True)
class IntentResult:
    intent: str | None  # None: out of scope (best confidence below the threshold)
    confidence: float
    top: tuple[IntentScore, ...]


def intent_features(encoded: Encoded, tuned: bool) -> np.ndarray:
    """The head's input: the frozen features, after the intent branch's normalized output when
    the playbook's intents were tuned (`models.train_intents`)."""
    base = features(encoded)
    if not tuned:
        return base
    if encoded.intent is None:
        raise RuntimeError(
            "these intents were trained on a tuned intent branch: encode with "
            "TextEncoder(intent_branch=…)"
        )
    return np.concatenate([_unit(encoded.intent), base], axis=1).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    return out


class IntentClassifier:
    def __init__(
        self,
        head: LinearHead,
        threshold: float = DEFAULT_INTENT_THRESHOLD,
        examples: np.ndarray | None = None,
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
        tuned: bool = False,
        courtesy: dict[str, frozenset[str]] | None = None,
    ) -> None:
        self.head = head
        self.threshold = threshold
        # [N, 384] unit embeddings of the training examples, or when tuned of the intents'
        # centres in the intent branch's space
        self.examples = examples
        self.min_similarity = min_similarity
        self.tuned = tuned  # the head reads the intent branch (TextEncoder.intent_branch)
        # intent → the COURTESY words its examples use (a phatic turn may keep such an intent)
        self.courtesy = courtesy or {}

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
        threshold: float | None = None,
    ) -> IntentClassifier:
        """`threshold` None: the default for the encoder's kind (tuned or not)."""
        encoded = encoder.encode(list(texts), sentiment_rows=())
        tuned = encoder.intent_branch is not None
        head = train_head(intent_features(encoded, tuned), list(intents))
        courtesy: dict[str, frozenset[str]] = {}
        for text, intent in zip(texts, intents, strict=True):
            courtesy[intent] = courtesy.get(intent, frozenset()) | (COURTESY & set(words(text)))
        if not tuned:
            return cls(
                head, threshold or DEFAULT_INTENT_THRESHOLD, encoded.embedding, courtesy=courtesy
            )
        assert encoded.intent is not None
        tuned_rows = _unit(encoded.intent)
        centres = np.stack(
            [
                tuned_rows[[k for k, i in enumerate(intents) if i == name]].mean(axis=0)
                for name in head.labels
            ]
        )
        return cls(
            head,
            threshold or TUNED_INTENT_THRESHOLD,
            _unit(centres),
            TUNED_MIN_SIMILARITY,
            tuned=True,
            courtesy=courtesy,
        )

    def classify(
        self, encoded: Encoded, *, top: int = 3, texts: Sequence[str] | None = None
    ) -> list[IntentResult]:
        """`texts`: the encoded texts; those that carry no request get no intent (but see
        `COURTESY`)."""
        turns = [words(t) for t in texts] if texts is not None else None
        probs = self.head.predict_proba(intent_features(encoded, self.tuned))
        space = _unit(encoded.intent) if self.tuned and encoded.intent is not None else None
        nearest = (
            ((space if space is not None else encoded.embedding) @ self.examples.T).max(axis=1)
            if self.examples is not None and len(self.examples) and len(encoded.embedding)
            else np.ones(len(probs))
        )
        results = []
        for k, (row, similarity) in enumerate(zip(probs, nearest, strict=True)):
            order = np.argsort(-row)[:top]
            scores = tuple(IntentScore(self.head.labels[i], round(float(row[i]), 4)) for i in order)
            best = scores[0]
            results.append(
                IntentResult(
                    best.intent
                    if best.confidence >= self.threshold
                    and similarity >= self.min_similarity
                    and not (turns is not None and self._phatic(turns[k], best.intent))
                    else None,
                    best.confidence,
                    scores,
                )
            )
        return results

    def _phatic(self, turn: list[str], intent: str) -> bool:
        """A turn of PHATIC words only, without a COURTESY word this intent's examples use."""
        return all(w in PHATIC for w in turn) and not (
            set(turn) & self.courtesy.get(intent, frozenset())
        )


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
