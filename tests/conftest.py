"""Shared fixtures: the real recordings, one real server on loopback, one real engine."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from tests.servers import RedisProcess, ServerProcess

# Revision (the finals' model decoding each channel again after the call, `transcript.revised`)
# is on for users. Here it is off unless a test turns it on (tests/test_revision.py,
# tests/models/test_revise.py, tests/web/test_revision_pages.py): it changes stored and
# replayed text some time after `call.ended`, which tests comparing them with the streamed
# finals would otherwise race with, and it costs CPU every other test would wait for.
os.environ.setdefault("CALLCUE_REVISE", "false")

DATA = Path(os.environ.get("CALLCUE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
AUDIO = DATA / "audio"


def pytest_configure(config: pytest.Config) -> None:
    if not AUDIO.is_dir():
        raise pytest.UsageError(
            f"test recordings not found at {AUDIO}; check out ../shared beside the repo "
            "or set CALLCUE_DATA to the shared data folder"
        )


def load_16k(name: str) -> np.ndarray:
    """A recording as mono float32 at 16 kHz."""
    data, rate = sf.read(str(AUDIO / name), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    return mono if rate == 16000 else soxr.resample(mono, rate, 16000).astype(np.float32)


def reference(name: str) -> str:
    return (AUDIO / (Path(name).stem + ".txt")).read_text().strip()


AUDIOHOOK_KEY = "ah-test-key"
AUDIOHOOK_SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
TWILIO_TOKEN = "twilio-test-token"


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess(
        env={
            "CALLCUE_AUDIOHOOK_KEYS": f"{AUDIOHOOK_KEY}:{AUDIOHOOK_SECRET}",
            "CALLCUE_TWILIO_TOKENS": TWILIO_TOKEN,
            # agents' voice prints kept from two-channel calls (tests/live/test_diarize.py)
            "CALLCUE_VOICE_PRINTS": "true",
            # every final at full beam on the finals' model: streamed as fast as it goes, a
            # final's queue wait decides which way CALLCUE_FINAL_DEADLINE_MS takes (base at
            # beam 5, base greedy, tiny.en), so the text of the tests' recordings would depend
            # on timing (TIMIT came back as "She had Jadaq Su in greasy washwater" twice in
            # CI). The deadline's choice has its own tests (tests/models/test_scheduler.py,
            # tests/models/test_remote.py).
            "CALLCUE_FINAL_DEADLINE_MS": "0",
        }
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    from models.whisper import WhisperEngine

    return WhisperEngine()


@pytest.fixture(scope="session")
def base_engine():  # type: ignore[no-untyped-def]
    """Whisper base (`embedded:base`), the default finals' model."""
    from models.resolve import EMBEDDED_BASE
    from models.whisper import WhisperEngine, WhisperOptions

    return WhisperEngine(WhisperOptions(model=EMBEDDED_BASE))


@pytest.fixture(scope="session")
def vad_model():  # type: ignore[no-untyped-def]
    from models.vad import SileroVad

    return SileroVad()


@pytest.fixture(scope="session")
def assist_models():  # type: ignore[no-untyped-def]
    """The real encoder, the shipped sentiment model and playbook, the sample customers."""
    from assist.customers import SAMPLE_DIRECTORY
    from assist.engine import AssistModels

    return AssistModels.load(customers_path=SAMPLE_DIRECTORY)


def postgres_url() -> str | None:
    """CALLCUE_TEST_DATABASE_URL (set by .ci/run, which starts PostgreSQL), or None."""
    url = os.environ.get("CALLCUE_TEST_DATABASE_URL")
    if not url and os.environ.get("CALLCUE_REQUIRE_POSTGRES"):
        raise pytest.UsageError(
            "CALLCUE_REQUIRE_POSTGRES is set but CALLCUE_TEST_DATABASE_URL is not"
        )
    return url


def fresh_postgres(url: str) -> str:
    """Empty the test database (drop and recreate its public schema)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each backend (PostgreSQL: a real server, see .ci/run)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/callcue.db"
    url = postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL: set CALLCUE_TEST_DATABASE_URL (.ci/run does)")
    return fresh_postgres(url)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """CALLCUE_TEST_REDIS_URL (.ci/run sets it), else a private redis-server on a free
    loopback port, started and stopped here (Debian's package: apt-get install redis-server)."""
    url = os.environ.get("CALLCUE_TEST_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CALLCUE_REQUIRE_REDIS"):
            raise pytest.UsageError(
                "CALLCUE_REQUIRE_REDIS is set but there is no redis-server and no "
                "CALLCUE_TEST_REDIS_URL"
            )
        pytest.skip("no Redis: apt-get install redis-server, or set CALLCUE_TEST_REDIS_URL")
    server = RedisProcess()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_prefix() -> str:
    """Keys of their own for each test (one Redis serves them all)."""
    return f"t{uuid.uuid4().hex[:10]}"


def assert_late_view(screen: list[dict[str, Any]], sent: list[dict[str, Any]]) -> None:
    """What a screen that joined a call late got, against every event of the call (`sent`,
    as its ingest client got them): the same events, in order, no duplicate; what it missed
    is only partials that a later partial or final of their utterance had replaced (the hub
    keeps the newest partial of each utterance) and `call.analytics` a later one replaced."""
    seqs = [e["seq"] for e in screen]
    assert seqs == sorted(set(seqs)), "out of order or repeated"
    by_seq = {e["seq"]: e for e in sent}
    assert all(by_seq[e["seq"]] == e for e in screen), "not the events the call sent"
    got = set(seqs)
    missed = [e for e in sent if e["seq"] not in got]
    assert all(e["type"] in ("transcript.partial", "call.analytics") for e in missed), missed
    newest = max((e["seq"] for e in sent if e["type"] == "call.analytics"), default=0)
    assert newest == 0 or newest in got, "the newest call.analytics is missing"
    for gone in missed:
        if gone["type"] == "call.analytics":
            continue
        assert any(
            e["seq"] > gone["seq"]
            and e["type"] in ("transcript.partial", "transcript.final")
            and (e["channel"], e["utterance"]) == (gone["channel"], gone["utterance"])
            for e in screen
        ), gone
