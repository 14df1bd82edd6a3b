"""Optional call recording: each channel's audio as a 16 kHz PCM16 WAV file, written as it
arrives (the header is kept valid after every write, so a crash leaves a playable file)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf

from audio.codec import TARGET_RATE


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:100] or "call"


class Recorder:
    def __init__(self, folder: Path, call_id: str, channels: tuple[str, ...]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.paths: dict[str, Path] = {}
        self._files: list[sf.SoundFile] = []
        for index, channel in enumerate(channels):
            path = folder / f"{_safe(call_id)}.{index}-{_safe(channel)}.wav"
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
