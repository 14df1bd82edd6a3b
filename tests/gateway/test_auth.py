"""Credentials without a server: call links, origins, ingest keys, rate buckets, secret files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.auth import READ, REVIEW, Authorizer, CallLinks, Denied, origin_allowed
from gateway.limits import TokenBuckets
from service.settings import Settings, SettingsError

ADMIN = "admin-token-0123456789"


def test_call_link_opens_its_call_until_it_expires() -> None:
    links = CallLinks("link-secret-0123456789", ttl=600)
    token, expires = links.make("call/é 1", now=1000.0)
    assert expires == 1600
    assert links.verify(token, now=1599.0) == "call/é 1"
    with pytest.raises(Denied) as late:
        links.verify(token, now=1601.0)
    assert late.value.code == "link_expired"
    body, _, mac = token.rpartition(".")
    forged = body.rsplit(".", 1)[0] + ".9999999999." + mac  # a later expiry, same signature
    with pytest.raises(Denied, match="not valid"):
        links.verify(forged, now=1000.0)
    other = CallLinks("another-secret-012345", ttl=600)  # another node's key
    with pytest.raises(Denied, match="not valid"):
        other.verify(token, now=1000.0)


def test_authorizer_limits_a_link_to_reading_its_call() -> None:
    auth = Authorizer({ADMIN: "admin"}, links=CallLinks("k" * 20, 600))
    token, _ = auth.links.make("c1")
    query = {"token": token}
    assert auth.check({}, query, READ, "read", call_id="c1").call_id == "c1"
    for allowed, call_id in ((READ, "c2"), (READ, None), (REVIEW, "c1")):
        with pytest.raises(Denied) as denied:
            auth.check({}, query, allowed, "do it", call_id=call_id)
        assert denied.value.status == 403


def test_ingest_credentials() -> None:
    auth = Authorizer({ADMIN: "admin", "agent-token-0123456789": "agent"}, {"k" * 20: "phone"})
    assert auth.ingest({"authorization": "Bearer " + "k" * 20}, {}) == "phone"
    assert auth.ingest({}, {"token": ADMIN}).startswith("admin-")
    with pytest.raises(Denied) as agent:
        auth.ingest({}, {"token": "agent-token-0123456789"})
    assert agent.value.status == 403 and "ingest key" in agent.value.message
    with pytest.raises(Denied) as missing:
        auth.ingest({}, {})
    assert missing.value.status == 401
    assert Authorizer({}).ingest({}, {}) == "open"  # nothing configured: loopback, open
    assert Authorizer({}, {"k" * 20: "phone"}).ingest({}, {"token": "k" * 20}) == "phone"
    with pytest.raises(Denied):
        Authorizer({}, {"k" * 20: "phone"}).ingest({}, {})


def test_origins() -> None:
    host = {"host": "callcue.example.com:8443"}
    assert origin_allowed(host, frozenset())  # not a browser: no Origin header
    assert origin_allowed({**host, "origin": "https://callcue.example.com:8443"}, frozenset())
    assert not origin_allowed({**host, "origin": "https://evil.example"}, frozenset())
    allowed = frozenset({"https://crm.example.com"})
    assert origin_allowed({**host, "origin": "https://CRM.example.com/"}, allowed)
    assert not origin_allowed({**host, "origin": "https://crm.example.com.evil.io"}, allowed)
    assert origin_allowed({**host, "origin": "null"}, frozenset({"*"}))


def test_token_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(60, clock=lambda: now[0])  # 1 a second, bursts of 15
    assert all(buckets.take("a") == 0 for _ in range(15))
    wait = buckets.take("a")
    assert 0.9 <= wait <= 1.0
    assert buckets.take("b") == 0  # another client has its own bucket
    now[0] += 2.0
    assert buckets.take("a") == 0 and buckets.take("a") == 0 and buckets.take("a") > 0


def test_secrets_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "admin_token"
    secret.write_text("file-admin-token-0123456789\n")
    settings = Settings.load(env={"CALLCUE_ADMIN_TOKEN_FILE": str(secret)})
    assert settings.token_roles == {"file-admin-token-0123456789": "admin"}
    assert "file-admin-token" not in repr(settings)
    secret.write_text("short\n")
    with pytest.raises(SettingsError) as bad:
        Settings.load(env={"CALLCUE_ADMIN_TOKEN_FILE": str(secret)})
    assert "short" not in str(bad.value) and "CALLCUE_ADMIN_TOKEN_FILE" in str(bad.value)
    with pytest.raises(SettingsError, match="cannot read"):
        Settings.load(env={"CALLCUE_ADMIN_TOKEN_FILE": str(tmp_path / "missing")})
    with pytest.raises(SettingsError, match="go together"):
        Settings.load(env={"CALLCUE_TLS_CERTFILE": str(secret)})
    with pytest.raises(SettingsError) as bad_key:
        Settings.load(env={"CALLCUE_INGEST_KEYS": "tiny:phone"})
    assert "tiny" not in str(bad_key.value) and "16 characters" in str(bad_key.value)
