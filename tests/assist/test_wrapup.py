"""Wrap-up: the disposition predicted from intents and categories, and the playbook's checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from assist.playbook import DEFAULT_PLAYBOOK, PlaybookError, parse_playbook
from assist.wrapup import Disposition, predict

DISPOSITIONS = (
    Disposition("escalated", "Escalated", categories=("escalation_request",)),
    Disposition("refund", "Refund", intents=("refund_status", "refund_initiate")),
    Disposition("billing", "Billing", intents=("status_mystery_fee",)),
    Disposition("general", "General", default=True),
)


def test_intents_and_categories_choose_with_the_reason() -> None:
    got = predict(DISPOSITIONS, {"refund_status": 2, "status_mystery_fee": 1}, set())
    assert got is not None and got.disposition.id == "refund"
    assert got.reason == "intent refund_status (2×)"
    assert [d.id for d in got.alternatives] == ["billing"]
    # a matched category counts twice an intent: escalation wins over one refund turn
    got = predict(DISPOSITIONS, {"refund_status": 1}, {"escalation_request"})
    assert got is not None and got.disposition.id == "escalated"
    assert got.reason == "category escalation_request matched"


def test_ties_go_to_the_first_listed_and_nothing_to_the_default() -> None:
    got = predict(DISPOSITIONS, {"refund_status": 1, "status_mystery_fee": 1}, set())
    assert got is not None and got.disposition.id == "refund"
    fallback = predict(DISPOSITIONS, {"thanks_goodbye": 3}, set())
    assert fallback is not None and fallback.disposition.id == "general"
    assert fallback.reason == "no other disposition matched this call"
    assert predict(DISPOSITIONS[:3], {}, set()) is None  # no default
    assert predict((), {"refund_status": 1}, set()) is None


def _with(dispositions: list[Any]) -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_PLAYBOOK.read_text())
    data["dispositions"] = dispositions
    return data


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        ([{"id": "x", "label": "X"}], "dispositions[0] (x): needs intents or categories"),
        ([{"id": "x", "label": "X", "intents": ["nope"]}], "(x).intents: unknown intent 'nope'"),
        ([{"id": "x", "label": "X", "categories": ["nope"]}], "unknown category 'nope'"),
        ([{"id": "x", "label": "X", "default": "yes"}], "(x).default: must be true or false"),
        (
            [
                {"id": "a", "label": "A", "default": True},
                {"id": "b", "label": "B", "default": True},
            ],
            "dispositions: at most one may be the default",
        ),
    ],
)
def test_validation_names_the_disposition_and_field(items: list[Any], problem: str) -> None:
    with pytest.raises(PlaybookError) as raised:
        parse_playbook(_with(items), Path("p.yaml"))
    assert any(problem in p for p in raised.value.problems), raised.value.problems


def test_the_shipped_dispositions_cover_every_intent() -> None:
    playbook = parse_playbook(yaml.safe_load(DEFAULT_PLAYBOOK.read_text()), DEFAULT_PLAYBOOK)
    covered = {i for d in playbook.dispositions for i in d.intents}
    assert {i.id for i in playbook.intents} - covered == {"thanks_goodbye"}
    assert sum(d.default for d in playbook.dispositions) == 1
