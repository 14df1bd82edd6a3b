"""HTTP message signatures under random and mutated headers: the parsers raise only
SignatureSyntaxError, `verify` only answers a Verdict, and a valid signature still verifies."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from audio.protocols.httpsig import (
    AudioHookAuthenticator,
    SignatureSyntaxError,
    Verdict,
    parse_signature,
    parse_signature_input,
)
from clients.simulators import sign_audiohook_request
from tests.fuzz.strategies import fuzz_settings, text_mutations

NOW = 1_700_000_000
URL = "wss://callcue.example.com/v1/audiohook"
TARGET, AUTHORITY = "/v1/audiohook", "callcue.example.com"
KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
SECRET = base64.b64encode(b"a client secret of 32 bytes!!!!!").decode()
HEADER_NAMES = [
    "signature",
    "signature-input",
    "x-api-key",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "host",
]

# Header values as an ASGI server hands them over: bytes read as latin-1.
header_text = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=80)
# Structured-field shaped text: the pieces the parsers look for, in any order.
sf_text = st.lists(
    st.sampled_from(
        [
            *["sig1", "=", "(", ")", '"', "\\", ";", ",", ":", " ", "keyid", "created"],
            *["nonce", "alg", "expires", "@request-target", "x-api-key", "AAAA", "-1", "é"],
            "9" * 20,
        ]
    ),
    max_size=30,
).map("".join)


def headers_for(session: str, org: str, correlation: str, nonce: str, created: int) -> dict:
    headers = {
        "Audiohook-Organization-Id": org,
        "Audiohook-Correlation-Id": correlation,
        "Audiohook-Session-Id": session,
        "X-API-KEY": KEY,
    }
    signed = sign_audiohook_request(
        URL, headers, KEY, SECRET, created=created, expires=created + 60, nonce=nonce
    )
    return {k.lower(): v for k, v in signed.items()}


def authenticator() -> AudioHookAuthenticator:
    return AudioHookAuthenticator({KEY: SECRET, "plain-key": ""}, clock=lambda: NOW)


ids = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'),
    min_size=1,
    max_size=40,
)


@fuzz_settings(200)
@given(header_text | sf_text)
def test_parsers_raise_only_their_error(value: str) -> None:
    for parse in (parse_signature_input, parse_signature):
        try:
            parse(value)
        except SignatureSyntaxError as exc:
            assert str(exc)


@fuzz_settings(200)
@given(st.dictionaries(st.sampled_from(HEADER_NAMES) | header_text, header_text | sf_text))
def test_random_headers_get_a_verdict(headers: dict[str, str]) -> None:
    verdict = authenticator().verify(headers, TARGET, AUTHORITY)
    assert isinstance(verdict, Verdict)
    if verdict.ok:  # only the key without a secret can pass without a signature
        assert {k.lower(): v for k, v in headers.items()}["x-api-key"] == "plain-key"
    else:
        assert verdict.reason


@fuzz_settings(100)
@given(ids, ids, ids, ids, st.integers(min_value=NOW - 60, max_value=NOW + 5))
def test_a_valid_signature_verifies_once(
    session: str, org: str, correlation: str, nonce: str, created: int
) -> None:
    headers = headers_for(session, org, correlation, nonce, created)
    auth = authenticator()
    verdict = auth.verify(headers, TARGET, AUTHORITY)
    assert verdict.ok and verdict.api_key == KEY, verdict.reason
    replay = auth.verify(headers, TARGET, AUTHORITY)
    assert not replay.ok and "replayed" in replay.reason


@fuzz_settings(200)
@given(st.sampled_from(HEADER_NAMES).flatmap(lambda n: st.tuples(st.just(n), st.data())))
def test_mutated_signed_headers_never_raise_and_never_verify_changed(pick: Any) -> None:
    name, data = pick
    headers = headers_for("30b0e395", "d7934305", "e160e428", "nonce-1", NOW)
    original = headers.get(name, "")
    changed = data.draw(text_mutations(original) | header_text | sf_text)
    mutated = {**headers, name: changed}
    if name == "host":  # not signed: the authority comes from the request, not this header
        mutated.pop("host")
    verdict = authenticator().verify(mutated, TARGET, AUTHORITY)
    assert isinstance(verdict, Verdict)
    if name != "host" and meaning(name, changed) != meaning(name, original):
        assert not verdict.ok, (name, changed)


def meaning(name: str, value: str) -> Any:
    """What a header says once parsed (`created=01` is `created=1`; base64 may differ in
    unused bits), so a change that keeps the meaning may still verify."""
    try:
        if name == "signature-input":
            return parse_signature_input(value)
        if name == "signature":
            return parse_signature(value)
    except SignatureSyntaxError:
        return ("unparsable", value)
    return value.strip()
