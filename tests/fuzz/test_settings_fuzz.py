"""Settings.load with random environment values: valid settings or a SettingsError that names
the variable, and never the value of a secret setting."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.settings import SETTINGS, Settings, SettingsError
from tests.fuzz.strategies import NASTY_STRINGS, fuzz_settings

SECRETS = [s for s in SETTINGS if s.secret]
VARIABLES = [s.env for s in SETTINGS]

# What environment values look like: any text (os.environ holds undecodable bytes as lone
# surrogates), numbers of every form, lists with separators, and known-good values.
env_text = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(codec="utf-8") | st.sampled_from(["\udcff", "\udc80"]), max_size=10),
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(["1", "0", "-1", "1e9", "nan", "inf", "0x10", "1_0", " 5 ", "٣", "true"]),
    st.sampled_from(["30", "3,30", ",", "5,10", "1,2,30", "customer=agent", "a=b,c=d"]),
    st.lists(st.text(max_size=12), max_size=4).map(",".join),
    st.lists(st.text(max_size=12), max_size=4).map(":".join),
    st.sampled_from(["~nosuchuser/model", "~" + "x" * 300, "a" * 5000, "./x\x00y", "/"]),
)
# Secret values carry a marker, so that any piece of one that shows up in a message is seen.
secret_piece = st.text(
    st.characters(codec="utf-8", exclude_characters=",:"), min_size=1, max_size=12
).map(lambda s: f"SeCrEt{s}")
secret_value = st.lists(
    st.tuples(secret_piece, st.sampled_from([":", ",", "", ":admin,", ":agent", ":@@@,"])),
    min_size=1,
    max_size=3,
).map(lambda parts: "".join(a + b for a, b in parts))


MODEL_SETTINGS = ("CALLCUE_MODEL/--model", "CALLCUE_FINAL_MODEL/--final-model")


def load(env: dict[str, str]) -> Settings | SettingsError:
    try:
        return Settings.load(env=env, overrides={})
    except SettingsError as exc:
        message = str(exc)
        assert re.match(r"^(CALLCUE_[A-Z_]+|CALLCUE_(FINAL_)?MODEL/--(final-)?model)=", message), (
            message
        )
        return exc


@fuzz_settings(300)
@given(st.dictionaries(st.sampled_from(VARIABLES), env_text, min_size=1, max_size=4))
def test_any_environment_gives_settings_or_a_settings_error(env: dict[str, str]) -> None:
    result = load(env)
    if isinstance(result, SettingsError):
        named = str(result).split("=", 1)[0]
        assert named in env or named in MODEL_SETTINGS
        if named in {s.env for s in SECRETS}:
            assert str(result).startswith(f"{named}=(hidden): ")


@fuzz_settings(200)
@given(st.sampled_from(SECRETS), secret_value)
def test_no_piece_of_a_secret_is_ever_shown(setting: object, value: str) -> None:
    result = load({setting.env: value})  # type: ignore[attr-defined]
    if isinstance(result, SettingsError):
        assert "SeCrEt" not in str(result), str(result)
        assert "(hidden)" in str(result)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"CALLCUE_AUDIOHOOK_KEYS": "key:sécret"}, "is not base64"),
        ({"CALLCUE_MODEL": "~nosuchuser-callcue/model"}, "CALLCUE_MODEL/--model="),
        ({"CALLCUE_MODEL": "m" * 5000}, "CALLCUE_MODEL/--model="),
        ({"CALLCUE_MODEL": "~x\x00y/model"}, "CALLCUE_MODEL/--model="),
    ],
)
def test_regressions(env: dict[str, str], words: str) -> None:
    result = load(env)
    assert isinstance(result, SettingsError) and words in str(result)


def test_a_token_written_backwards_is_not_echoed() -> None:
    result = load({"CALLCUE_TOKENS": "admin:SeCrEt-token-0123456789"})
    assert isinstance(result, SettingsError) and "SeCrEt" not in str(result)
    assert "unknown role" in str(result)
