"""A playbook's intent branch: contrastive tuning on its examples, cached by their hash, served
in ONNX beside the sentiment branch, used by the engine when it matches the playbook."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from assist.engine import AssistModels
from assist.playbook import DEFAULT_PLAYBOOK, load_playbook
from models.classifiers import IntentClassifier
from models.encoder import DEFAULT_BRANCH, TextEncoder
from models.train_intents import (
    SHIPPED,
    IntentTuning,
    artifact_key,
    artifact_path,
    find_artifact,
    train,
)
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
QUICK = IntentTuning(steps=30)

# HWU64 intents a general-purpose encoder confuses (same scenario, different request)
CONFUSABLE = (
    "alarm_query",
    "alarm_remove",
    "alarm_set",
    "calendar_query",
    "calendar_remove",
    "calendar_set",
    "music_likeness",
    "music_query",
    "play_music",
    "iot_hue_lightoff",
    "iot_hue_lightdim",
    "iot_hue_lightup",
)


def hwu64(split: str, per_intent: int | None) -> tuple[list[str], list[str]]:
    rows: dict[str, list[str]] = defaultdict(list)
    with (DATA / "text" / "intent" / "hwu64" / f"{split}.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):  # file order: deterministic
            if row["intent"] in CONFUSABLE:
                rows[row["intent"]].append(row["text"])
    texts = [t for i in CONFUSABLE for t in rows[i][:per_intent]]
    labels = [i for i in CONFUSABLE for _ in rows[i][:per_intent]]
    return texts, labels


def test_key_follows_the_examples_and_the_cache_is_reused(tmp_path: Path) -> None:
    texts = ["where is my order", "has my parcel shipped", "I want my money back", "refund me"]
    labels = ["where", "where", "refund", "refund"]
    key = artifact_key(texts, labels, QUICK)
    assert key == artifact_key(list(texts), list(labels), QUICK)
    # the order draws the batches: another order is another artifact
    assert key != artifact_key(list(reversed(texts)), list(reversed(labels)), QUICK)
    assert key != artifact_key([*texts[:3], "refund me please"], labels, QUICK)
    assert key != artifact_key(texts, ["where", "refund", "refund", "refund"], QUICK)
    assert key != artifact_key(texts, labels, IntentTuning(steps=31))

    out = train(texts, labels, cache_dir=tmp_path, tuning=QUICK, threads=1)
    assert out == artifact_path(key, tmp_path) and out.exists()
    assert not list(out.parent.glob("*.tmp*"))  # written atomically
    with np.load(out, allow_pickle=False) as data:
        assert int(data["branch_start"]) == QUICK.start
        card = json.loads(str(data["card"]))
    assert card["examples"] == 4 and card["intents"] == 2
    assert out.stat().st_size < 3 * 1024 * 1024
    stamp = out.stat().st_mtime_ns
    assert train(texts, labels, cache_dir=tmp_path, tuning=QUICK) == out
    assert out.stat().st_mtime_ns == stamp  # cached: not trained again
    # the server looks for the default settings' artifact only
    assert find_artifact(texts, labels, tmp_path) is None
    with pytest.raises(ValueError, match="two intents"):
        train(texts, ["one"] * 4, cache_dir=tmp_path, tuning=QUICK)


def test_tuning_separates_intents_the_frozen_encoder_confuses(tmp_path: Path) -> None:
    """Real data: 10 examples of 12 close HWU64 intents; the tuned branch must beat the frozen
    features on their dev rows, and the branch runs only for the rows asked."""
    texts, labels = hwu64("train", 10)
    dev_texts, dev_labels = hwu64("val", None)
    frozen_encoder = TextEncoder(threads=2)
    frozen = IntentClassifier.train(frozen_encoder, texts, labels)
    branch = train(texts, labels, cache_dir=tmp_path, threads=2)
    tuned_encoder = TextEncoder(threads=2, cache_dir=tmp_path, intent_branch=branch)
    tuned = IntentClassifier.train(tuned_encoder, texts, labels)
    assert tuned.tuned and not frozen.tuned

    def accuracy(classifier: IntentClassifier, encoder: TextEncoder) -> float:
        results = classifier.classify(encoder.encode(dev_texts))
        return float(
            np.mean([r.top[0].intent == g for r, g in zip(results, dev_labels, strict=True)])
        )

    frozen_accuracy = accuracy(frozen, frozen_encoder)
    tuned_accuracy = accuracy(tuned, tuned_encoder)
    assert tuned_accuracy > frozen_accuracy + 0.01, (frozen_accuracy, tuned_accuracy)

    encoded = tuned_encoder.encode(dev_texts[:4], intent_rows=[1, 3])
    assert encoded.intent is not None
    assert not encoded.intent[[0, 2]].any() and encoded.intent[[1, 3]].any()
    # the base outputs are the frozen encoder's
    base = frozen_encoder.encode(dev_texts[:4])
    np.testing.assert_allclose(encoded.embedding, base.embedding, atol=1e-5)
    with pytest.raises(RuntimeError, match="intent_branch"):
        tuned.classify(base)  # features without the branch: a clear error, not a wrong answer


def test_intent_branch_needs_the_shared_trunk(tmp_path: Path) -> None:
    branch = train(
        ["a b", "a c", "x y", "x z"],
        ["a", "a", "x", "x"],
        cache_dir=tmp_path,
        tuning=QUICK,
        threads=1,
    )
    with pytest.raises(RuntimeError, match="sentiment"):
        TextEncoder(cache_dir=tmp_path, branch=None, intent_branch=branch)
    assert DEFAULT_BRANCH.exists()


def test_the_default_playbook_ships_its_tuned_intents(caplog: pytest.LogCaptureFixture) -> None:
    playbook = load_playbook()
    shipped = SHIPPED / f"{artifact_key(*playbook.intent_examples())}.npz"
    assert shipped.exists(), "run `callcue train` and ship models/artifacts/intents/<key>.npz"
    found = find_artifact(*playbook.intent_examples())  # the cache's copy, or the shipped one
    assert found is not None
    with caplog.at_level(logging.WARNING):
        models = AssistModels.load()
    assert models.encoder.intent_branch == found and models.intents.tuned
    assert "not tuned" not in caplog.text


def test_an_edited_playbook_falls_back_and_says_how_to_train(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    edited = tmp_path / "edited.yaml"
    text = DEFAULT_PLAYBOOK.read_text()
    marker = "examples:\n"
    at = text.index(marker) + len(marker)
    indent = text[at:].split("-", 1)[0]
    edited.write_text(
        text[:at] + f'{indent}- "I would like my money back for this order"\n' + text[at:]
    )
    with caplog.at_level(logging.WARNING):
        models = AssistModels.load(playbook_path=edited)
    assert models.encoder.intent_branch is None and not models.intents.tuned
    assert "callcue train" in caplog.text and "not tuned" in caplog.text


def test_cli_train(tmp_path: Path) -> None:
    playbook = tmp_path / "two.yaml"
    playbook.write_text(
        "version: 1\n"
        "name: two\n"
        "intents:\n"
        "  - id: refund\n    label: Refund\n"
        "    examples: [I want my money back, refund me, return it for a refund]\n"
        "  - id: where\n    label: Where is my order\n"
        "    examples: [where is my order, has my parcel shipped, when will it arrive]\n"
        "replies:\n"
        "  - id: refund_reply\n    intents: [refund]\n    text: I can help with that refund.\n"
    )
    env = {"CALLCUE_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}

    def train_cli(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", "train", str(path), "--quiet", "--threads", "1"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    run = train_cli(playbook)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["intents"] == 2 and result["examples"] == 6
    assert Path(result["artifact"]).exists()
    assert Path(result["artifact"]).is_relative_to(tmp_path / "cache")

    missing = train_cli(tmp_path / "nope.yaml")
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr
