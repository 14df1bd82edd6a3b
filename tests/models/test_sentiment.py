"""The shipped sentiment model: LoRA-tuned top layers served as a branch of the ONNX encoder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.classifiers import SENTIMENT_HEAD, SentimentModel
from models.encoder import (
    BRANCH_LINEARS,
    TextEncoder,
    branch_path,
    ensure_onnx,
    load_branch,
    package_model_dir,
)


def test_artifact_is_small_and_has_a_branch() -> None:
    model = SentimentModel.load()
    assert model.branch == SENTIMENT_HEAD
    assert SENTIMENT_HEAD.stat().st_size < 3 * 1024 * 1024


def test_reads_contact_center_utterances(assist_models) -> None:  # type: ignore[no-untyped-def]
    cases = {
        "negative": [
            "this is ridiculous, I've been on hold for an hour and nobody can help me",
            "you charged me twice and I'm really upset about it",
            "I'm so frustrated, the replacement phone is broken too",
        ],
        "neutral": [
            "I'd like to check the status of my order",
            "my account number is four five six seven",
            "can you tell me when the technician will arrive",
            "I need to update the shipping address on my order",
        ],
        "positive": [
            "that's great, thank you so much for your help",
            "perfect, I really appreciate it",
            "wonderful, you've been very helpful today",
        ],
    }
    texts = [t for group in cases.values() for t in group]
    results = [s for _, s in assist_models.classify_text(texts)]
    got = {t: r.label for t, r in zip(texts, results, strict=True)}
    assert got == {t: label for label, group in cases.items() for t in group}
    for r in results:  # clear cases: confident, and the score's sign matches
        assert max(r.probabilities.values()) > 0.5
        if r.label != "neutral":
            assert (r.score > 0) == (r.label == "positive")


def test_branch_leaves_base_outputs_unchanged(assist_models) -> None:  # type: ignore[no-untyped-def]
    texts = ["where is my refund", "thanks, that fixed it", "the app keeps crashing on login"]
    branched = assist_models.encoder.encode(texts)
    base = TextEncoder(branch=None).encode(texts)
    assert base.sentiment is None and branched.sentiment is not None
    assert branched.sentiment.shape == (3, 384)
    assert np.abs(branched.embedding - base.embedding).max() < 1e-5
    assert np.abs(branched.layers - base.layers).max() < 1e-5
    with pytest.raises(RuntimeError, match="fine-tuned layers"):
        SentimentModel.load().probabilities(base)


def test_branch_merge_is_base_plus_lora() -> None:
    from safetensors.numpy import load_file

    branch = load_branch(SENTIMENT_HEAD)
    assert branch is not None
    base = load_file(str(package_model_dir() / "model.safetensors"))
    with np.load(SENTIMENT_HEAD) as data:
        i, name = int(data["branch_start"]), BRANCH_LINEARS[0]
        delta = data["lora_scale"] * (data[f"lora.{i}.{name}.B"] @ data[f"lora.{i}.{name}.A"])
    key = f"encoder.layer.{i}.{name}.weight"
    assert np.allclose(branch.weights[key], base[key] + delta, atol=1e-6)
    assert not np.allclose(branch.weights[key], base[key])  # really tuned
    assert f"encoder.layer.{i - 1}.output.dense.weight" not in branch.weights  # frozen below


def test_branch_export_is_cached_and_reproducible(tmp_path: Path) -> None:
    base = ensure_onnx(cache_dir=tmp_path)
    first = ensure_onnx(cache_dir=tmp_path, branch=SENTIMENT_HEAD)
    assert first != base and first.name.startswith(base.name.rsplit("-", 1)[0] + "-")
    stamp = first.stat().st_mtime_ns
    assert ensure_onnx(cache_dir=tmp_path, branch=SENTIMENT_HEAD).stat().st_mtime_ns == stamp
    again = ensure_onnx(cache_dir=tmp_path / "second", branch=SENTIMENT_HEAD)
    assert again.name == first.name and again.read_bytes() == first.read_bytes()
    assert branch_path(again).read_bytes() == branch_path(first).read_bytes()


def test_rows_without_sentiment_do_not_run_the_tuned_layers(tmp_path: Path) -> None:
    """onnxruntime runs a whole graph whatever is asked of it, so the tuned layers live in a
    graph of their own: the base graph has none of their nodes, the branch graph only them."""
    import onnx

    base = onnx.load(str(ensure_onnx(cache_dir=tmp_path, branch=SENTIMENT_HEAD)))
    top = onnx.load(str(branch_path(ensure_onnx(cache_dir=tmp_path, branch=SENTIMENT_HEAD))))
    assert [o.name for o in base.graph.output] == ["embedding", "layers", "branch_input"]
    assert not [n for n in base.graph.node if n.name.startswith("sentiment/")]
    assert [i.name for i in top.graph.input] == ["branch_input", "attention_mask"]
    assert [o.name for o in top.graph.output] == ["sentiment"]
    start = int(np.load(SENTIMENT_HEAD)["branch_start"])
    matmuls = [n for n in top.graph.node if n.op_type == "MatMul" and "_qk" not in n.name]
    # six weight matrices, attention-weighted values, per tuned layer; nothing below them
    assert len(matmuls) == 7 * (6 - start)


def test_serving_sentiment_needs_no_torch() -> None:
    code = (
        "import sys\n"
        "from models.classifiers import SentimentModel\n"
        "from models.encoder import TextEncoder\n"
        "model = SentimentModel.load()\n"
        "encoder = TextEncoder(branch=model.branch)\n"
        "result = model.classify(encoder.encode(['I want to cancel, this is a disaster']))\n"
        "print(result[0].label, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["negative", "False"]


def test_the_branch_runs_only_for_rows_that_need_it() -> None:
    """Contexts and agent sentences skip the sentiment layers; the rows that ask get the same
    features as a full pass, and the base outputs do not change."""
    import numpy as np

    from models.encoder import TextEncoder

    encoder = TextEncoder()
    texts = [
        "I was charged twice for my order",
        "hello there. thanks for calling",
        "my order number is 12345 and it is late",
    ]
    full = encoder.encode(texts)
    some = encoder.encode(texts, sentiment_rows=[0, 2])
    assert full.sentiment is not None and some.sentiment is not None
    assert np.allclose(full.embedding, some.embedding, atol=1e-5)
    assert np.allclose(full.layers, some.layers, atol=1e-5)
    assert np.allclose(full.sentiment[[0, 2]], some.sentiment[[0, 2]], atol=1e-5)
    assert not some.sentiment[1].any()
