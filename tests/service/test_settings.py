import pytest

from service.settings import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.load(env={})
    assert (s.host, s.port, s.model, s.compute_type) == (
        "127.0.0.1",
        8080,
        "embedded:tiny.en",
        "int8",
    )


def test_env_and_flags() -> None:
    s = Settings.load(
        env={"CALLCUE_PORT": "9000", "CALLCUE_HOST": "0.0.0.0"}, overrides={"port": "9100"}
    )
    assert (s.host, s.port) == ("0.0.0.0", 9100)
    assert Settings.load(env={"CALLCUE_ENCODER_WINDOWS": "30,5,10"}).encoder_windows == (5, 10, 30)
    streaming = Settings.load(env={"CALLCUE_SPECULATIVE_FINAL_MS": "0"}).streaming
    assert streaming.speculative_final_ms == 0  # finals decoded only once the pause has ended
    assert Settings.load(env={}).streaming.speculative_final_ms == 200


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"CALLCUE_PORT": "http"}, "CALLCUE_PORT='http'"),
        ({"CALLCUE_PORT": "70000"}, "CALLCUE_PORT='70000': must be between"),
        ({"CALLCUE_DEVICE": "tpu"}, "CALLCUE_DEVICE='tpu': must be one of"),
        ({"CALLCUE_VAD_THRESHOLD": "2"}, "CALLCUE_VAD_THRESHOLD"),
        ({"CALLCUE_ENCODER_WINDOWS": "5,10"}, "largest being 30"),
        ({"CALLCUE_MODEL": "./missing-model"}, "does not exist"),
        ({"CALLCUE_FINAL_MODEL": "embedded:large"}, "CALLCUE_FINAL_MODEL/--final-model="),
        ({"CALLCUE_FINAL_MODEL": "./missing-model"}, "does not exist"),
        ({"CALLCUE_TWILIO_TOKENS": "ab"}, "at least 16 characters"),
    ],
)
def test_errors_name_the_setting(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words.replace("(", r"\(")):
        Settings.load(env=env)


def test_two_passes_by_default_one_model_when_both_name_it() -> None:
    s = Settings.load(env={})
    assert (s.model, s.final_model, s.two_pass) == ("embedded:tiny.en", "embedded:base", True)
    assert s.final_whisper.model == "embedded:base"
    assert s.final_whisper.windows == s.whisper.windows  # same device, threads, windows
    one = Settings.load(env={"CALLCUE_FINAL_MODEL": "embedded"})
    assert not one.two_pass


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(SettingsError, match="--beam-size='0'"):
        Settings.load(env={}, overrides={"beam_size": "0"})


def test_recognition_workers_default_to_one_per_core(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from service import settings as module

    monkeypatch.setattr(module, "available_cores", lambda: 2)
    assert module.recognition_workers("cpu", 0, 0) == (2, 1)
    assert module.recognition_workers("cuda", 0, 0) == (1, 2)
    assert module.recognition_workers("cpu", 1, 0) == (1, 2)
    assert module.recognition_workers("cpu", 3, 4) == (3, 4)
    monkeypatch.setattr(module, "available_cores", lambda: 16)
    assert module.recognition_workers("cpu", 0, 0) == (4, 4)  # replicas cost memory: at most 4
    whisper = module.Settings(asr_workers=0, cpu_threads=0).whisper
    assert (whisper.workers, whisper.cpu_threads) == (4, 4)


def test_each_setting_declared_once_and_documented_in_readme_in_order() -> None:
    """The dataclass is the only declaration: flags, variables and defaults come from it, and
    README's settings table lists them in the same order with the same defaults."""
    import re
    from dataclasses import fields
    from pathlib import Path

    from service.settings import SETTINGS

    assert [s.name for s in SETTINGS] == [f.name for f in fields(Settings)]
    assert Settings.load(env={}) == Settings()  # no default is written anywhere else
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `--([a-z-]+)` \| `(CALLCUE_[A-Z_]+)` \| ([^|]+) \|", readme, re.M)
    assert [(flag.replace("-", "_"), env) for flag, env, _ in rows] == [
        (s.name, s.env) for s in SETTINGS
    ]
    for (_, _, shown), setting in zip(rows, SETTINGS, strict=True):
        if shown.strip().startswith("`"):  # a literal default (else a description of it)
            literal = shown.strip().strip("`")
            default = setting.default
            if isinstance(default, tuple):
                default = ",".join(f"{x:g}" for x in default)
            elif isinstance(default, bool):
                default = str(default).lower()
            elif isinstance(default, float):
                default = f"{default:g}"
            assert literal == str(default), setting.name


def test_malloc_arenas_are_limited_unless_the_environment_or_the_setting_says_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ctypes

    from service.node import M_ARENA_MAX, limit_malloc_arenas

    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    limit_malloc_arenas(Settings().malloc_arenas)
    limit_malloc_arenas(0)  # glibc's own number
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    limit_malloc_arenas(2)  # the environment's
    assert calls == [(M_ARENA_MAX, 2)]
