"""The ONNX export of all-MiniLM-L6-v2 matches sentence-transformers (torch) to float precision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.classifiers import SentimentModel
from models.encoder import TextEncoder, ensure_onnx, length_chunks

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "encoder_reference.json"


def test_matches_sentence_transformers(assist_models) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(REFERENCE.read_text())
    ours = assist_models.encoder.embed(data["sentences"])
    theirs = np.array(data["embeddings"], dtype=np.float32)
    assert np.abs(ours - theirs).max() < 1e-4
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batches_keep_order_and_values(assist_models) -> None:  # type: ignore[no-untyped-def]
    encoder: TextEncoder = assist_models.encoder
    texts = ["short", "a much longer sentence about a refund for a pair of boots", "", "ok then"]
    together = encoder.encode(texts, batch_size=2)
    alone = np.stack([encoder.encode([t]).embedding[0] for t in texts])
    assert np.abs(together.embedding - alone).max() < 1e-4
    assert together.layers.shape == (4, 7, 384)
    assert encoder.encode([]).embedding.shape == (0, 384)


def test_batches_are_cut_where_padding_would_cost_more_than_a_run() -> None:
    # an agent's final (41 tokens) and its three sentences: the long row goes alone
    assert length_chunks([41, 16, 10, 19], 64, run_cost=15) == [[2, 1, 3], [0]]
    assert length_chunks([12, 12, 13, 12], 64) == [[0, 1, 3, 2]]  # alike: one run
    assert [len(c) for c in length_chunks([8] * 10, 4)] == [2, 4, 4]  # at most batch_size
    chunks = length_chunks([5, 30, 7, 60, 6, 31], 64)
    assert sorted(i for c in chunks for i in c) == list(range(6))  # every row once
    assert length_chunks([], 64) == []


def test_export_is_cached_and_reproducible(tmp_path: Path) -> None:
    first = ensure_onnx(cache_dir=tmp_path)
    stamp = first.stat().st_mtime_ns
    again = ensure_onnx(cache_dir=tmp_path)
    assert again == first and again.stat().st_mtime_ns == stamp  # not exported twice
    other = tmp_path / "second"
    assert ensure_onnx(cache_dir=other).read_bytes() == first.read_bytes()


def test_sentiment_model_reads_plain_cases(assist_models) -> None:  # type: ignore[no-untyped-def]
    model: SentimentModel = assist_models.sentiment
    texts = [
        "this is the third time I'm calling and nobody has fixed it, I'm furious",
        "I need to update the shipping address on my order",
        "oh that's wonderful, thank you so much for your help",
    ]
    labels = [r.label for r in model.classify(assist_models.encoder.encode(texts))]
    assert labels == ["negative", "neutral", "positive"]


def test_no_torch_at_serve_time() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from assist.engine import AssistModels; AssistModels.load(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")
