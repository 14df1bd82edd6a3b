"""HTTP Message Signatures (HMAC-SHA256) as Genesys AudioHook uses them, and the API-key check.

Pure: headers and the clock go in, a verdict comes out. The nonce cache is the only state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

REQUIRED_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
MAX_CLOCK_SKEW = 5  # seconds
# seconds a signature stays acceptable after its `created`, whatever its `expires` says: a
# signature created a year ago with `expires` ten years ahead was accepted, and since nonces
# are remembered only by this process, one replayed after a restart was too
MAX_SIGNATURE_AGE = 300


@dataclass(frozen=True, slots=True)
class SignatureInput:
    label: str
    components: tuple[str, ...]
    params: tuple[tuple[str, str | int], ...]

    def param(self, name: str) -> str | int | None:
        return next((v for k, v in self.params if k == name), None)

    def serialized(self) -> str:
        inner = " ".join(f'"{c}"' for c in self.components)
        params = "".join(
            f";{k}={v}" if isinstance(v, int) else f';{k}="{v}"' for k, v in self.params
        )
        return f"({inner}){params}"


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""
    api_key: str = ""
    # the accepted signature's nonce and until when it must stay unique (shared with other
    # nodes, where there are some: a nonce seen by this process only would replay on another)
    nonce: str = ""
    nonce_until: float = 0.0


class SignatureSyntaxError(ValueError):
    pass


_MEMBER = re.compile(r"\s*([a-z*][a-z0-9_.*-]*)\s*=\s*")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_INTEGER = re.compile(r"-?\d{1,15}")
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+.^_`|~-]*")
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")


def _split_members(value: str) -> list[str]:
    """Split a structured-field dictionary at top-level commas."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for i, ch in enumerate(value):
        if quoted:
            if ch == '"' and value[i - 1] != "\\":
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_signature_input(value: str) -> list[SignatureInput]:
    result = []
    for member in _split_members(value):
        m = _MEMBER.match(member)
        if not m or member[m.end() : m.end() + 1] != "(":
            raise SignatureSyntaxError(f"bad Signature-Input member {member!r}")
        label, pos = m.group(1), m.end() + 1
        components = []
        while True:
            while pos < len(member) and member[pos] == " ":
                pos += 1
            if pos < len(member) and member[pos] == ")":
                pos += 1
                break
            s = _STRING.match(member, pos)
            if not s:
                raise SignatureSyntaxError(f"bad component list in {member!r}")
            components.append(s.group(1))
            pos = s.end()
        params: list[tuple[str, str | int]] = []
        while pos < len(member):
            if member[pos] != ";":
                raise SignatureSyntaxError(f"unexpected {member[pos:]!r} in Signature-Input")
            key = re.compile(r";\s*([a-z*][a-z0-9_.*-]*)=").match(member, pos)
            if not key:
                raise SignatureSyntaxError(f"bad parameter in {member[pos:]!r}")
            pos = key.end()
            if (s := _STRING.match(member, pos)) is not None:
                params.append((key.group(1), s.group(1)))
            elif (i := _INTEGER.match(member, pos)) is not None:
                params.append((key.group(1), int(i.group(0))))
            else:
                raise SignatureSyntaxError(f"bad value for parameter {key.group(1)!r}")
            pos = (s or i).end()  # type: ignore[union-attr]
        result.append(SignatureInput(label, tuple(components), tuple(params)))
    return result


def parse_signature(value: str) -> dict[str, bytes]:
    result = {}
    for member in _split_members(value):
        m = _MEMBER.match(member)
        b = _BYTES.fullmatch(member[m.end() :]) if m else None
        if not m or not b:
            raise SignatureSyntaxError(f"bad Signature member {member!r}")
        try:
            result[m.group(1)] = base64.b64decode(b.group(1), validate=True)
        except binascii.Error as exc:
            raise SignatureSyntaxError("signature is not valid base64") from exc
    return result


def signature_base(
    sig: SignatureInput, headers: Mapping[str, str], request_target: str, authority: str
) -> str:
    lines = []
    for component in sig.components:
        if component == "@request-target":
            value = request_target
        elif component == "@authority":
            value = authority.lower()
        elif component.startswith("@"):
            raise SignatureSyntaxError(f"unsupported derived component {component!r}")
        else:
            raw = headers.get(component)
            if raw is None:
                raise SignatureSyntaxError(f"signed header {component!r} is missing")
            value = raw.strip()
        lines.append(f'"{component}": {value}')
    lines.append(f'"@signature-params": {sig.serialized()}')
    return "\n".join(lines)


@dataclass
class AudioHookAuthenticator:
    """Checks `X-API-KEY` and, for keys with a client secret, the HTTP message signature.

    `keys` maps API key → base64 client secret ("" for a key without signature). A nonce
    is accepted once while its signature is valid; a replay is refused.
    """

    keys: Mapping[str, str]
    clock: Callable[[], float] = time.time
    # signatures created before this (the process start) are refused: the nonces this
    # process would have seen before are unknown to it (a replay after a restart)
    not_before: float = 0.0
    _nonces: dict[str, float] = field(default_factory=dict)

    def verify(self, headers: Mapping[str, str], request_target: str, authority: str) -> Verdict:
        headers = {k.lower(): v for k, v in headers.items()}
        api_key = headers.get("x-api-key", "")
        if not api_key:
            return Verdict(False, "missing X-API-KEY header")
        if api_key not in self.keys:
            return Verdict(False, "unknown API key")
        secret = self.keys[api_key]
        if not secret:
            return Verdict(True, api_key=api_key)
        if "signature-input" not in headers or "signature" not in headers:
            return Verdict(False, "request is not signed (Signature and Signature-Input needed)")
        try:
            inputs = parse_signature_input(headers["signature-input"])
            signatures = parse_signature(headers["signature"])
        except SignatureSyntaxError as exc:
            return Verdict(False, f"malformed signature: {exc}")
        if not inputs or inputs[0].label not in signatures:
            return Verdict(False, "Signature has no value for the Signature-Input label")
        sig = inputs[0]
        missing = [c for c in REQUIRED_COMPONENTS if c not in sig.components]
        if missing:
            return Verdict(False, f"signature does not cover {', '.join(missing)}")
        if sig.param("keyid") != api_key:
            return Verdict(False, "signature keyid does not match X-API-KEY")
        if sig.param("alg") not in (None, "hmac-sha256"):
            return Verdict(False, f"unsupported signature algorithm {sig.param('alg')!r}")
        now = self.clock()
        created, expires, nonce = sig.param("created"), sig.param("expires"), sig.param("nonce")
        if not isinstance(created, int):
            return Verdict(False, "signature has no 'created' time")
        if created > now + MAX_CLOCK_SKEW:
            return Verdict(False, "signature 'created' is in the future")
        if created < self.not_before - MAX_CLOCK_SKEW:
            return Verdict(False, "signature was created before this server started; sign again")
        deadline = created + MAX_SIGNATURE_AGE
        if isinstance(expires, int):
            deadline = min(deadline, expires)
        if deadline < now - MAX_CLOCK_SKEW:
            return Verdict(
                False,
                f"signature has expired (past its 'expires', or created more than "
                f"{MAX_SIGNATURE_AGE} s ago)",
            )
        if not isinstance(nonce, str) or not nonce:
            return Verdict(False, "signature has no nonce")
        try:
            base = signature_base(sig, headers, request_target, authority)
            key = base64.b64decode(secret)
        except (SignatureSyntaxError, binascii.Error) as exc:
            return Verdict(False, f"cannot build the signature base: {exc}")
        expected = hmac.new(key, base.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signatures[sig.label]):
            return Verdict(False, "signature does not match")
        self._forget_old(now)
        if nonce in self._nonces:
            return Verdict(False, "nonce was already used (replayed request)")
        self._nonces[nonce] = float(deadline)  # at most MAX_SIGNATURE_AGE after `created`
        return Verdict(True, api_key=api_key, nonce=nonce, nonce_until=float(deadline))

    def _forget_old(self, now: float) -> None:
        for nonce in [n for n, until in self._nonces.items() if until < now - MAX_CLOCK_SKEW]:
            del self._nonces[nonce]
