"""all-MiniLM-L6-v2's top layers in torch, for fine-tuning with LoRA (training only).

Both fine-tuned artifacts use it: the shipped sentiment model (`models.train_sentiment`) and a
playbook's intent branch (`models.train_intents`). The layers below `start` stay frozen and are
run once per sentence (`trunk`, kept in fp16); layers `start`… get LoRA factors (rank `rank` on
the six weight matrices of each layer) while their biases and LayerNorms are trained whole.
`arrays()` is what an artifact stores of them; `models.encoder.load_branch` merges those into
the base weights in numpy and serves them in ONNX, so serving needs no torch. Training does:
`pip install '.[train]'`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

import numpy as np

from models.encoder import BRANCH_LINEARS, package_model_dir

PARAMS = (
    *(name + part for name in BRANCH_LINEARS for part in (".weight", ".bias")),
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
)


class LoraConfig(Protocol):
    @property
    def start(self) -> int: ...
    @property
    def rank(self) -> int: ...
    @property
    def alpha(self) -> float: ...
    @property
    def dropout(self) -> float: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def seed(self) -> int: ...


class TopLayers:
    """Frozen bottom, LoRA-tuned top. Create it after seeding torch (or with `seeded`): the
    LoRA factors are drawn here, in a fixed order, so a seed gives the same start."""

    @classmethod
    def seeded(cls, config: LoraConfig, threads: int) -> TopLayers:
        """torch seeded with `config.seed` and limited to `threads` (a fixed thread count keeps
        a run deterministic), then the layers."""
        import torch

        torch.manual_seed(config.seed)
        torch.set_num_threads(threads)
        return cls(
            start=config.start,
            rank=config.rank,
            alpha=config.alpha,
            dropout=config.dropout,
            max_tokens=config.max_tokens,
        )

    def __init__(
        self, *, start: int, rank: int, alpha: float, dropout: float, max_tokens: int
    ) -> None:
        import torch  # type: ignore[import-not-found, unused-ignore]  # the `train` extra
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        model_dir = package_model_dir()
        config = json.loads((model_dir / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.start = start
        self.dropout = dropout
        self.scale = alpha / rank
        self.base = {
            k: torch.from_numpy(np.asarray(v, np.float32))
            for k, v in load_file(str(model_dir / "model.safetensors")).items()
        }
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.no_padding()
        self.top = range(start, int(config["num_hidden_layers"]))
        self.params: dict[int, dict[str, Any]] = {}
        self.loras: dict[int, dict[str, tuple[Any, Any]]] = {}
        self.trainable: list[Any] = []
        for i in self.top:
            self.params[i] = {}
            for n in PARAMS:
                t = self.base[f"encoder.layer.{i}.{n}"].clone()
                if not n.endswith(".weight") or "LayerNorm" in n:
                    t.requires_grad_(True)
                    self.trainable.append(t)
                self.params[i][n] = t
            self.loras[i] = {}
            for n in BRANCH_LINEARS:
                out_dim, in_dim = self.params[i][n + ".weight"].shape
                a = (torch.randn(rank, in_dim) / math.sqrt(in_dim)).requires_grad_(True)
                b = torch.zeros(out_dim, rank, requires_grad=True)
                self.loras[i][n] = (a, b)
                self.trainable += [a, b]

    def _layer(
        self, x: Any, bias: Any, p: dict[str, Any], lora: dict[str, tuple[Any, Any]], train: bool
    ) -> Any:
        import torch.nn.functional as F  # type: ignore[import-not-found, unused-ignore]

        drop = self.dropout if train else 0.0
        hidden, heads = self.hidden, self.heads

        def linear(h: Any, name: str) -> Any:
            out = F.linear(h, p[name + ".weight"], p[name + ".bias"])
            if name in lora:
                a, b = lora[name]
                out = out + F.linear(F.linear(F.dropout(h, drop, train), a), b) * self.scale
            return out

        batch, width, _ = x.shape

        def split(t: Any) -> Any:
            return t.view(batch, width, heads, hidden // heads).transpose(1, 2)

        q = split(linear(x, "attention.self.query"))
        k = split(linear(x, "attention.self.key"))
        v = split(linear(x, "attention.self.value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hidden // heads) + bias
        ctx = (F.dropout(scores.softmax(-1), drop, train) @ v).transpose(1, 2)
        attn = F.dropout(
            linear(ctx.reshape(batch, width, hidden), "attention.output.dense"), drop, train
        )
        x = F.layer_norm(
            attn + x,
            (hidden,),
            p["attention.output.LayerNorm.weight"],
            p["attention.output.LayerNorm.bias"],
            self.eps,
        )
        ffn = linear(F.gelu(linear(x, "intermediate.dense")), "output.dense")
        return F.layer_norm(
            F.dropout(ffn, drop, train) + x,
            (hidden,),
            p["output.LayerNorm.weight"],
            p["output.LayerNorm.bias"],
            self.eps,
        )

    @staticmethod
    def padded(rows: list[Any]) -> tuple[Any, Any]:
        import torch

        width = max(r.shape[0] for r in rows)
        x = torch.zeros(len(rows), width, *rows[0].shape[1:], dtype=rows[0].dtype)
        mask = torch.zeros(len(rows), width)
        for i, r in enumerate(rows):
            x[i, : r.shape[0]] = r
            mask[i, : r.shape[0]] = 1
        return x, mask

    def trunk(self, texts: list[str]) -> list[Any]:
        """Output of the frozen layers, per sentence [tokens, hidden] in fp16."""
        import torch
        import torch.nn.functional as F

        base, hidden = self.base, self.hidden
        ids = [
            torch.tensor(e.ids)
            for e in self.tokenizer.encode_batch([t if t.strip() else "." for t in texts])
        ]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[Any] = [torch.empty(0)] * len(ids)
        with torch.no_grad():
            for s in range(0, len(order), 128):
                chunk = order[s : s + 128]
                tokens, mask = self.padded([ids[i] for i in chunk])
                bias = (1 - mask)[:, None, None, :] * -1e4
                x = (
                    base["embeddings.word_embeddings.weight"][tokens]
                    + base["embeddings.position_embeddings.weight"][: tokens.shape[1]]
                    + base["embeddings.token_type_embeddings.weight"][0]
                )
                x = F.layer_norm(
                    x,
                    (hidden,),
                    base["embeddings.LayerNorm.weight"],
                    base["embeddings.LayerNorm.bias"],
                    self.eps,
                )
                for i in range(self.start):
                    p = {n: base[f"encoder.layer.{i}.{n}"] for n in PARAMS}
                    x = self._layer(x, bias, p, {}, False)
                for row, i in enumerate(chunk):
                    out[i] = x[row, : len(ids[i])].to(torch.float16).clone()
        return out

    def pooled(self, rows: list[Any], train: bool) -> Any:
        """The tuned layers on trunk rows, mean-pooled over real tokens: [B, hidden]."""
        x, mask = self.padded(rows)
        x = x.float()
        bias = (1 - mask)[:, None, None, :] * -1e4
        for i in self.top:
            x = self._layer(x, bias, self.params[i], self.loras[i], train)
        return (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)

    def pooled_all(self, rows: list[Any], batch: int = 128) -> np.ndarray:
        """`pooled` without dropout or gradients for many rows (length-sorted batches)."""
        import torch

        out = np.zeros((len(rows), self.hidden), np.float32)
        order = sorted(range(len(rows)), key=lambda i: rows[i].shape[0])
        with torch.no_grad():
            for s in range(0, len(order), batch):
                chunk = order[s : s + batch]
                out[chunk] = self.pooled([rows[i] for i in chunk], False).numpy()
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """What an artifact keeps of the tuned layers (see `models.encoder.load_branch`)."""
        artifact: dict[str, np.ndarray] = {
            "branch_start": np.array(self.start, np.int64),
            "lora_scale": np.array(self.scale, np.float32),
        }
        for i in self.top:
            for n, t in self.params[i].items():
                if t.requires_grad:
                    artifact[f"encoder.layer.{i}.{n}"] = t.detach().numpy().copy()
            for n, (a, b) in self.loras[i].items():
                artifact[f"lora.{i}.{n}.A"] = a.detach().numpy().copy()
                artifact[f"lora.{i}.{n}.B"] = b.detach().numpy().copy()
        return artifact
