"""The `callcue` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import wer
from tests.conftest import AUDIO, reference

CLI = [sys.executable, "-m", "cli"]


def test_transcribe_json() -> None:
    name = "ls_test-clean_4507-16021-0012.wav"
    out = subprocess.run(
        [*CLI, "transcribe", str(AUDIO / name), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    call = json.loads(out.stdout)
    assert call["channels"] == ["customer"] and call["duration"] > 2
    text = " ".join(u["text"] for u in call["utterances"])
    assert wer(reference(name), text) <= 0.2
    for u in call["utterances"]:
        assert set(u) >= {"channel", "start", "end", "text", "words"}


def test_transcribe_two_files_as_two_channels() -> None:
    out = subprocess.run(
        [
            *CLI,
            "transcribe",
            str(AUDIO / "ls_test-clean_2830-3980-0043.wav"),
            str(AUDIO / "wb_timit_LDC93S1.wav"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    call = json.loads(out.stdout)
    by_channel = {
        ch: " ".join(u["text"] for u in call["utterances"] if u["channel"] == ch)
        for ch in ("customer", "agent")
    }
    assert "experience" in by_channel["customer"].lower()
    assert "suit" in by_channel["agent"].lower() and "suit" not in by_channel["customer"].lower()


def test_transcribe_bad_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "not-audio.wav"
    bad.write_text("hello")
    out = subprocess.run([*CLI, "transcribe", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_stream_prints_every_event_as_json_lines(server) -> None:  # type: ignore[no-untyped-def]
    name = "wb_timit_LDC93S1.wav"
    out = subprocess.run(
        [*CLI, "stream", str(AUDIO / name), "--url", server.url, "--fast", "--call-id", "cli-1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events[0] == {"type": "started", "call_id": "cli-1"}
    assert events[-1]["type"] == "stopped"
    text = " ".join(e["text"] for e in events if e["type"] == "transcript.final")
    assert wer(reference(name), text) <= 0.3


def test_stream_unreachable_server() -> None:
    out = subprocess.run(
        [
            *CLI,
            "stream",
            str(AUDIO / "wb_timit_LDC93S1.wav"),
            "--url",
            "ws://127.0.0.1:9",
            "--fast",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "cannot connect" in out.stderr


def test_serve_rejects_bad_setting() -> None:
    out = subprocess.run(
        [*CLI, "serve", "--port", "http"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "--port='http'" in out.stderr


def test_simulate_audiohook(server) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import AUDIOHOOK_KEY, AUDIOHOOK_SECRET

    out = subprocess.run(
        [
            *CLI,
            "simulate",
            "audiohook",
            str(AUDIO / "wb_timit_LDC93S1.wav"),
            "--url",
            server.url,
            "--fast",
            "--api-key",
            AUDIOHOOK_KEY,
            "--secret",
            AUDIOHOOK_SECRET,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    messages = [json.loads(line) for line in out.stdout.splitlines()]
    assert messages[0]["type"] == "opened" and messages[-1]["type"] == "closed"
    texts = [
        m["parameters"]["entities"][0]["data"]["alternatives"][0]["interpretations"][0][
            "transcript"
        ]
        for m in messages
        if m["type"] == "event"
    ]
    assert "suit" in " ".join(texts).lower()


def test_simulate_refused(server) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [
            *CLI,
            "simulate",
            "audiohook",
            str(AUDIO / "wb_timit_LDC93S1.wav"),
            "--url",
            server.url,
            "--fast",
            "--api-key",
            "wrong",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "HTTP 401" in out.stderr


def test_import_stores_recordings_as_calls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from store.calls import CallQuery, CallStore

    url = f"sqlite:///{tmp_path}/import.db"
    files = [str(AUDIO / "wb_jfk_inaugural_1961.flac"), str(AUDIO / "wb_timit_LDC93S1.wav")]
    command = [
        *CLI,
        "import",
        *files,
        "--channels",
        "customer",
        "--database-url",
        url,
        "--agent",
        "qa-import",
        "--quiet",
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    assert json.loads(out.stdout.splitlines()[-1])["imported"] == 2
    store = CallStore(url)
    calls, total = store.search(CallQuery(q="country"))
    assert total == 1 and calls[0]["id"] == "wb_jfk_inaugural_1961"
    assert calls[0]["source"] == "import" and calls[0]["agent"] == "qa-import"
    assert calls[0]["outcome"] == "stop"
    text = " ".join(u["text"] for u in store.utterances("wb_jfk_inaugural_1961"))
    assert wer(reference("wb_jfk_inaugural_1961.flac"), text) <= 0.15
    assert store.events("wb_timit_LDC93S1", ["sentiment"])  # assist ran on imports too
    store.close()
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    assert json.loads(again.stdout.splitlines()[-1]) == {
        "imported": 0,
        "skipped": 2,
        "store": url.split("@")[-1],
    }
    assert "already stored" in again.stderr


def test_import_bad_database_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [*CLI, "import", str(AUDIO / "wb_timit_LDC93S1.wav"), "--database-url", "mysql://x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--database-url" in out.stderr and "sqlite:///PATH" in out.stderr


def test_transcribe_a_mono_call_saved_as_stereo_says_each_word_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Archives often save a mixed call as stereo, the same audio on both channels: as two
    parties every word would come out twice, once under each."""
    from tests.audio.test_files import dual_mono

    out = subprocess.run(
        [*CLI, "transcribe", str(dual_mono(tmp_path)), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    call = json.loads(out.stdout)
    assert call["channels"] == ["customer"], call["channels"]
    assert {u["channel"] for u in call["utterances"]} == {"customer"}
    text = " ".join(u["text"] for u in call["utterances"])
    assert wer(reference("ls_test-clean_4507-16021-0012.wav"), text) <= 0.2
    assert "same audio" in out.stderr and "--diarize" in out.stderr
