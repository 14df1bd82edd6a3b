"""Silero VAD (the ONNX file shipped inside faster-whisper) run with onnxruntime."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from audio.codec import Float32Array
from audio.vad import WINDOW

CONTEXT = 64  # samples of the previous window that Silero v5/v6 prepends to each window


def default_vad_path() -> str:
    from faster_whisper.utils import get_assets_path

    return os.path.join(get_assets_path(), "silero_vad_v6.onnx")


@dataclass(slots=True)
class SileroState:
    h: Float32Array
    c: Float32Array
    context: Float32Array


class SileroVad:
    """One ONNX session shared by every channel; each channel carries its own `SileroState`."""

    def __init__(self, path: str | None = None) -> None:
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self.path = path or default_vad_path()
        self.session = ort.InferenceSession(
            self.path, providers=["CPUExecutionProvider"], sess_options=opts
        )

    def new_state(self) -> SileroState:
        return SileroState(
            h=np.zeros((1, 1, 128), dtype=np.float32),
            c=np.zeros((1, 1, 128), dtype=np.float32),
            context=np.zeros(CONTEXT, dtype=np.float32),
        )

    def probabilities(
        self, windows: Float32Array, state: object
    ) -> tuple[Float32Array, SileroState]:
        assert isinstance(state, SileroState)
        assert windows.ndim == 2 and windows.shape[1] == WINDOW
        previous = np.concatenate([state.context[None, :], windows[:-1, -CONTEXT:]], axis=0)
        batch = np.ascontiguousarray(np.concatenate([previous, windows], axis=1), np.float32)
        probs, h, c = self.session.run(None, {"input": batch, "h": state.h, "c": state.c})
        next_state = SileroState(h=h, c=c, context=windows[-1, -CONTEXT:].copy())
        return np.asarray(probs, dtype=np.float32).reshape(-1), next_state
