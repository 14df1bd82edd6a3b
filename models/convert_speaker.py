"""Convert Resemblyzer's pretrained GE2E speaker encoder to the arrays callcue serves with.

    python -m models.convert_speaker [--weights PATH/pretrained.pt] [--out PATH/speaker.npz]

Without `--weights` it takes `pretrained.pt` from the installed `resemblyzer` package
(`pip install --no-deps resemblyzer==0.1.4`: only its weights file is read, none of its code
runs). Needs torch (the pinned CPU wheel) to read the file; serving never imports torch. The
output holds each LSTM layer's input and recurrent weights and their summed biases, and the
linear layer, as float32; `models/speaker.py` checks the result's SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import numpy as np

from models.speaker import DEFAULT_SPEAKER_MODEL, LAYERS

NOTICE = """The speaker encoder in speaker.npz is the pretrained GE2E voice encoder of Resemblyzer
(https://github.com/resemble-ai/Resemblyzer, PyPI `resemblyzer` 0.1.4, file
resemblyzer/pretrained.pt), converted to numpy arrays by models/convert_speaker.py.
Resemblyzer is Copyright 2019 Resemble AI and licensed under the Apache License, Version 2.0
(http://www.apache.org/licenses/LICENSE-2.0). The weights are unchanged apart from the format
and the two LSTM biases of each layer being added together.
"""


def package_weights() -> Path:
    try:
        import importlib.util

        spec = importlib.util.find_spec("resemblyzer")
    except (ImportError, ValueError):  # its __init__ imports librosa and webrtcvad
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "the resemblyzer package is not installed: pip install --no-deps resemblyzer==0.1.4 "
            "(or pass --weights PATH/pretrained.pt)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise SystemExit(f"{path} is missing from the resemblyzer package")
    return path


def convert(weights: Path) -> dict[str, np.ndarray]:
    import torch

    checkpoint = torch.load(weights, map_location="cpu", weights_only=False)
    state = checkpoint["model_state"]
    arrays: dict[str, np.ndarray] = {}
    for k in range(LAYERS):
        arrays[f"w_ih_{k}"] = state[f"lstm.weight_ih_l{k}"].numpy().astype(np.float32)
        arrays[f"w_hh_{k}"] = state[f"lstm.weight_hh_l{k}"].numpy().astype(np.float32)
        bias = state[f"lstm.bias_ih_l{k}"] + state[f"lstm.bias_hh_l{k}"]
        arrays[f"b_{k}"] = bias.numpy().astype(np.float32)
    arrays["linear_w"] = state["linear.weight"].numpy().astype(np.float32)
    arrays["linear_b"] = state["linear.bias"].numpy().astype(np.float32)
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="resemblyzer's pretrained.pt")
    parser.add_argument("--out", type=Path, default=DEFAULT_SPEAKER_MODEL)
    args = parser.parse_args(argv)
    weights = args.weights or package_weights()
    arrays = convert(weights)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # uncompressed: a stable hash
    data = buffer.getvalue()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(args.out)
    args.out.with_name("speaker.NOTICE").write_text(NOTICE)
    digest = hashlib.sha256(data).hexdigest()
    print(f"wrote {args.out} ({len(data):,} bytes), SHA-256 {digest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
