"""What a call may tell recognition in its start message (native), custom parameters (Twilio)
or open message (AudioHook): its `language`, and its `vocabulary` (words the call is likely
to contain, given to Whisper as biasing)."""

from __future__ import annotations

from typing import Any


def check_language(value: Any) -> tuple[str, str | None]:
    """(language, None) or ("", a problem): "en", "auto" or a Whisper language code; a
    regional tag ("de-DE", "pt_BR") is read as its language."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    if not isinstance(value, str) or not value.strip():
        return "", f'language must be a language code such as "en", "de" or "auto", got {value!r}'
    code = value.strip().replace("_", "-").split("-")[0].lower()
    if code == "auto" or code in _LANGUAGE_CODES:
        return code, None
    return "", (
        f'language {value[:20]!r} is not one Whisper knows (use "auto" or a code such as '
        "en, de, fr, es, ja, tr)"
    )


MAX_TERMS = 100  # per call, from the protocol (the playbook's and the names come on top)
MAX_TERM_CHARS = 64


def parse_vocabulary(value: Any) -> tuple[tuple[str, ...], str | None]:
    """(terms, None), or ((), a problem a person can act on). A list of strings, or one string
    of comma-separated terms (platforms that pass only strings); blanks and repeats dropped."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return (), f"vocabulary must be a list of strings, got {type(value).__name__}"
    terms: list[str] = []
    for raw in value:
        term = " ".join(raw.split())
        if not term:
            continue
        if len(term) > MAX_TERM_CHARS:
            return (), (
                f"vocabulary term {term[:20]!r}... has {len(term)} characters (at most "
                f"{MAX_TERM_CHARS})"
            )
        if not term.isprintable():
            return (), f"vocabulary term {term[:20]!r} has control characters"
        if term.lower() not in (t.lower() for t in terms):
            terms.append(term)
    if len(terms) > MAX_TERMS:
        return (), f"vocabulary has {len(terms)} terms (at most {MAX_TERMS})"
    return tuple(terms), None
