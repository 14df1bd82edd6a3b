"""Optional call recording: each channel's audio as a 16 kHz PCM16 WAV file, written as it
arrives (the header is kept valid after every write, so a crash leaves a playable file).

A file's name is a readable part of the call id and channel name followed by a hash of the
exact strings (`file_name`): two calls never share a file, whatever their ids (`a_b` and
`a@b`, or ids that differ only after their first hundred characters, once did)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from audio.codec import TARGET_RATE


def _safe(name: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:limit].strip(".") or "x"


def file_name(call_id: str, index: int, channel: str) -> str:
    """`{call id, readable}-{hash}.{index}-{channel, readable}-{hash}.wav`: the hashes (of the
    exact call id and channel name) make it unique; the readable parts are for people."""
    call_hash = hashlib.sha256(call_id.encode()).hexdigest()[:16]
    channel_hash = hashlib.sha256(channel.encode()).hexdigest()[:8]
    return f"{_safe(call_id, 64)}-{call_hash}.{index}-{_safe(channel, 32)}-{channel_hash}.wav"


class Recorder:
    def __init__(self, folder: Path, call_id: str, channels: tuple[str, ...]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.paths: dict[str, Path] = {}
        self._files: list[sf.SoundFile] = []
        for index, channel in enumerate(channels):
            path = folder / file_name(call_id, index, channel)
            self.paths[channel] = path
            mode = "r+" if path.exists() else "w"  # a resumed call appends
            handle = (
                sf.SoundFile(
                    str(path),
                    mode,
                    samplerate=TARGET_RATE,
                    channels=1,
                    subtype="PCM_16",
                    format="WAV",
                )
                if mode == "w"
                else sf.SoundFile(str(path), "r+")
            )
            if mode == "r+":
                handle.seek(0, sf.SEEK_END)
            self._files.append(handle)

    def write(self, audio: np.ndarray) -> None:
        """`audio`: [channels, samples] float32 at 16 kHz."""
        for index in range(min(len(self._files), audio.shape[0])):
            self.write_channel(index, audio[index])

    def write_channel(self, index: int, samples: np.ndarray) -> None:
        if index < len(self._files) and samples.size:
            handle = self._files[index]
            handle.write(np.clip(samples, -1.0, 1.0).astype(np.float32))
            handle.flush()

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        self._files = []
