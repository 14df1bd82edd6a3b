"""Scorecards: each kind of item, the weighted score, overrides, and the playbook's checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from assist.playbook import DEFAULT_PLAYBOOK, PlaybookError, parse_playbook
from assist.scorecard import ScoreItem, answer, score_call, score_with_overrides

FIGURES = {
    "talk_seconds": {"customer": 30.0, "agent": 10.0},
    "longest_silence_seconds": 4.0,
    "sentiment": {"customer_start": -0.5, "customer_end": 0.1},
    "agent_response_seconds": {"p50": None, "max": None, "count": 0},
}


@pytest.mark.parametrize(
    ("item", "passed", "reason"),
    [
        (ScoreItem("a", "A", category="cancel_risk"), True, "category cancel_risk matched"),
        (ScoreItem("a", "A", no_category="cancel_risk"), False, "cancel_risk matched"),
        (ScoreItem("a", "A", no_category="long_silence"), True, "did not match"),
        (ScoreItem("a", "A", checklist="recap"), True, "checklist item recap done"),
        (ScoreItem("a", "A", checklist="empathy"), False, "empathy not done"),
        (ScoreItem("a", "A", checklist="hold"), None, "not tracked"),
        (ScoreItem("a", "A", figure="agent_talk_share", at_most=0.7), True, "0.25 (within"),
        (ScoreItem("a", "A", figure="customer_talk_share", at_most=0.7), False, "0.75 (not"),
        (ScoreItem("a", "A", figure="customer_sentiment_change", at_least=0), True, "0.60"),
        (ScoreItem("a", "A", figure="agent_response_p50_seconds", at_most=2), None, "not known"),
    ],
)
def test_each_item_kind(item: ScoreItem, passed: bool | None, reason: str) -> None:
    got, why = answer(item, {"cancel_risk"}, {"recap": True, "empathy": False}, FIGURES)
    assert got is passed and reason in why, why


def test_weighted_score_leaves_out_what_cannot_be_answered() -> None:
    items = (
        ScoreItem("a", "A", weight=3, checklist="recap"),  # passed
        ScoreItem("b", "B", weight=1, checklist="empathy"),  # failed
        ScoreItem("c", "C", weight=5, checklist="hold"),  # not tracked: left out
    )
    scored = score_call(items, set(), {"recap": True, "empathy": False}, FIGURES)
    assert scored["score"] == 75.0
    assert [i["passed"] for i in scored["items"]] == [True, False, None]
    # a reviewer says B passed after all: kept beside the automatic answer
    card = score_with_overrides(scored, {"b": {"passed": True, "note": "it was said"}})
    assert card["automatic_score"] == 75.0 and card["score"] == 100.0
    b = card["items"][1]
    assert (b["passed"], b["final"], b["override"]["note"]) == (False, True, "it was said")
    assert score_call((), set(), {}, FIGURES)["score"] is None


def _with(scorecard: list[Any]) -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_PLAYBOOK.read_text())
    data["scorecard"] = scorecard
    return data


def test_the_shipped_scorecard_parses() -> None:
    playbook = parse_playbook(yaml.safe_load(DEFAULT_PLAYBOOK.read_text()), DEFAULT_PLAYBOOK)
    assert {"confirmed_resolution", "no_long_silence"} <= {i.id for i in playbook.scorecard}


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"id": "x", "label": "X"}, "scorecard[0] (x): needs exactly one of category"),
        ({"id": "x", "label": "X", "category": "nope"}, "(x).category: unknown category 'nope'"),
        ({"id": "x", "label": "X", "checklist": "nope"}, "(x).checklist: unknown checklist item"),
        ({"id": "x", "label": "X", "figure": "iq", "at_least": 1}, "(x).figure: unknown figure"),
        ({"id": "x", "label": "X", "figure": "overtalk_seconds"}, "needs at_least and/or at_most"),
        ({"id": "x", "label": "X", "checklist": "recap", "at_most": 2}, "at_most: goes with"),
        ({"id": "x", "label": "X", "checklist": "recap", "weight": 0}, "(x).weight: must be"),
        ({"id": "x", "label": "X", "checklist": "recap", "weight": math.inf}, "(x).weight"),
        (
            {"id": "x", "label": "X", "figure": "overtalk_seconds", "at_most": math.nan},
            "(x).at_most: must be a number",
        ),
        (
            {"id": "x", "label": "X", "checklist": "recap", "category": "cancel_risk"},
            "needs exactly one of category, no_category, checklist, figure (has 2)",
        ),
    ],
)
def test_validation_names_the_item_and_field(item: dict[str, Any], problem: str) -> None:
    with pytest.raises(PlaybookError) as raised:
        parse_playbook(_with([item]), Path("p.yaml"))
    assert any(problem in p for p in raised.value.problems), raised.value.problems
