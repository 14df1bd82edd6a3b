"""AudioHook request authentication, starting from the example in the AudioHook spec."""

from audio.protocols.httpsig import AudioHookAuthenticator

# The "Establishing connection" example of the AudioHook protocol documentation.
API_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
TARGET, AUTHORITY = "/api/v1/voicebiometrics/ws", "audiohook.example.com"
HEADERS = {
    "Host": AUTHORITY,
    "Audiohook-Organization-Id": "d7934305-0972-4844-938e-9060eef73d05",
    "Audiohook-Correlation-Id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "Audiohook-Session-Id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "X-API-KEY": API_KEY,
    "Signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "Signature-Input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" '
    '"audiohook-session-id" "audiohook-correlation-id" "x-api-key");'
    'keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";'
    'alg="hmac-sha256";created=1641013200;expires=3282026430',
}
NOW = 1641013200 + 10


def auth(keys: dict[str, str] | None = None, now: float = NOW) -> AudioHookAuthenticator:
    return AudioHookAuthenticator(keys or {API_KEY: SECRET}, clock=lambda: now)


def test_spec_example_verifies() -> None:
    verdict = auth().verify(HEADERS, TARGET, AUTHORITY)
    assert verdict.ok, verdict.reason
    assert verdict.api_key == API_KEY


def test_replayed_nonce_is_refused() -> None:
    a = auth()
    assert a.verify(HEADERS, TARGET, AUTHORITY).ok
    verdict = a.verify(HEADERS, TARGET, AUTHORITY)
    assert not verdict.ok and "replayed" in verdict.reason


def test_a_signature_from_before_the_server_started_is_refused() -> None:
    """Nonces live in the process: one seen before a restart is unknown after it, so a
    signature created before the process started could be replayed. It is refused; one
    created after the start (or within the clock skew) is accepted, with its nonce."""
    created = 1641013200
    before = AudioHookAuthenticator({API_KEY: SECRET}, clock=lambda: NOW, not_before=created + 60)
    verdict = before.verify(HEADERS, TARGET, AUTHORITY)
    assert not verdict.ok and "before this server started" in verdict.reason
    after = AudioHookAuthenticator({API_KEY: SECRET}, clock=lambda: NOW, not_before=created + 3)
    verdict = after.verify(HEADERS, TARGET, AUTHORITY)
    assert verdict.ok and verdict.nonce == "VGhpc0lzQVVuaXF1ZU5vbmNl"
    assert verdict.nonce_until == created + 300  # MAX_SIGNATURE_AGE, sooner than `expires`


def test_tampered_header_path_or_host() -> None:
    tampered = {**HEADERS, "Audiohook-Session-Id": "30b0e395-84d3-4570-ac13-9a62d8f514c1"}
    assert auth().verify(tampered, TARGET, AUTHORITY).reason == "signature does not match"
    assert auth().verify(HEADERS, "/v1/audiohook", AUTHORITY).reason == "signature does not match"
    assert auth().verify(HEADERS, TARGET, "evil.example.com").reason == "signature does not match"


def test_wrong_secret() -> None:
    other = "c29tZSBvdGhlciBzZWNyZXQgdGhhdCBpcyBub3QgaXQ="
    assert not auth({API_KEY: other}).verify(HEADERS, TARGET, AUTHORITY).ok


def test_expired_and_future_signatures() -> None:
    expired = auth(now=3282026430 + 60).verify(HEADERS, TARGET, AUTHORITY)
    assert not expired.ok and "expired" in expired.reason
    future = auth(now=1641013200 - 600).verify(HEADERS, TARGET, AUTHORITY)
    assert not future.ok and "future" in future.reason
    # `expires` ten years ahead does not make a year-old signature good
    old = auth(now=1641013200 + 365 * 86400).verify(HEADERS, TARGET, AUTHORITY)
    assert not old.ok and "created more than 300 s ago" in old.reason
    assert not auth(now=1641013200 + 306).verify(HEADERS, TARGET, AUTHORITY).ok
    assert auth(now=1641013200 + 300).verify(HEADERS, TARGET, AUTHORITY).ok


def test_api_key_checks() -> None:
    missing = {k: v for k, v in HEADERS.items() if k != "X-API-KEY"}
    assert auth().verify(missing, TARGET, AUTHORITY).reason == "missing X-API-KEY header"
    assert auth({"other": SECRET}).verify(HEADERS, TARGET, AUTHORITY).reason == "unknown API key"
    unsigned = {k: v for k, v in HEADERS.items() if not k.startswith("Signature")}
    assert "not signed" in auth().verify(unsigned, TARGET, AUTHORITY).reason
    assert auth({API_KEY: ""}).verify(unsigned, TARGET, AUTHORITY).ok  # key without secret


def test_signature_must_cover_the_required_components() -> None:
    partial = {**HEADERS, "Signature-Input": HEADERS["Signature-Input"].replace(' "x-api-key"', "")}
    verdict = auth().verify(partial, TARGET, AUTHORITY)
    assert not verdict.ok and "x-api-key" in verdict.reason


def test_malformed_headers() -> None:
    for bad in (
        {"Signature": "sig1=notbytes"},
        {"Signature-Input": "sig1=nonsense"},
        {"Signature": "sig1=:!!!:"},
    ):
        verdict = auth().verify({**HEADERS, **bad}, TARGET, AUTHORITY)
        assert not verdict.ok and "malformed" in verdict.reason, verdict
