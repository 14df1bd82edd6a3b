"""Transcript exports of any text a call may hold: every format keeps every utterance, cue
text can never break a WebVTT or SRT file, CSV and JSON give the text back exactly."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from store.exports import FORMATS, export
from tests.fuzz.strategies import NASTY_STRINGS, fuzz_settings

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            *NASTY_STRINGS,
            "a --> b",
            "a ---> b",
            "-->-->",
            "x\n\ny",
            "<b>&amp;</b>",
            "l1\r\nl2",
            "\u2028",
        ]
    ),
)
times = st.floats(min_value=-5, max_value=1e6, allow_nan=False, allow_infinity=False)
utterance = st.fixed_dictionaries(
    {
        "channel": st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True),
        "utterance": st.integers(0, 10_000),
        "start": times,
        "end": times,
        "text": texts,
        "confidence": st.floats(0, 1),
    }
)
call = {"id": "call-1", "started_at": "2026-11-23T10:00:00.000Z", "source": "native"}


@fuzz_settings(150)
@given(st.lists(utterance, max_size=6))
def test_every_format_keeps_every_utterance(utterances: list[dict[str, Any]]) -> None:
    outputs = {fmt: export(call, utterances, fmt) for fmt in FORMATS}
    assert json.loads(outputs["json"])["utterances"] == utterances
    rows = list(csv.reader(io.StringIO(outputs["csv"], newline="")))
    assert [r[5] for r in rows[1:]] == [u["text"] for u in utterances]
    vtt = outputs["vtt"]
    assert vtt.startswith("WEBVTT\n")
    cues = vtt.split("\n\n")[1:] if utterances else []
    assert len(cues) == len(utterances)
    for cue, u in zip(cues, utterances, strict=True):
        timing, payload = cue.strip("\n").split("\n")
        assert " --> " in timing and "-->" not in payload
        name = u["channel"].capitalize()  # trailing dashes would make '-->': one is kept
        voice = f"<v {name.rstrip('-')}{'-' if name.endswith('-') else ''}>"
        assert payload.startswith(voice) and "<" not in payload[len(voice) :]
    srt_blocks = [b for b in outputs["srt"].split("\n\n") if b]
    assert [b.split("\n")[0] for b in srt_blocks] == [str(i + 1) for i in range(len(utterances))]
    assert all(b.count("\n") == 2 and b.count("-->") == 1 for b in srt_blocks)


def test_regressions_arrows_that_one_replace_leaves() -> None:
    cue = {"channel": "a--", "utterance": 0, "start": 0.0, "end": 1.0, "confidence": 1.0}
    vtt = export(call, [{**cue, "text": "wait ---> here"}], "vtt")
    assert vtt.count("-->") == 1  # the timing line only
    srt = export(call, [{**cue, "text": "--->"}], "srt")
    assert srt.count("-->") == 1
