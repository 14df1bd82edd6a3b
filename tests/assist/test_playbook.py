"""The playbook schema: the shipped playbook is valid, and every kind of mistake is named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from assist.playbook import DEFAULT_PLAYBOOK, PlaybookError, load_playbook, parse_playbook

MINIMAL: dict[str, Any] = {
    "version": 1,
    "name": "test",
    "intents": [
        {"id": "refund", "label": "Refund", "examples": ["a", "b", "c"], "entities": ["order_id"]},
        {"id": "bye", "label": "Bye", "examples": ["a", "b", "c"], "closing": True},
    ],
    "replies": [
        {"id": "r1", "intents": ["refund"], "text": "Hi {preferred_name}", "fallback": "Hi"}
    ],
    "articles": [{"id": "a1", "title": "T", "body": "B", "link": "https://x.example/a"}],
    "actions": [
        {"id": "x1", "action": "Do", "reason": "Why", "when": {"intent": ["refund"]}, "priority": 2}
    ],
    "checklist": [{"id": "c1", "label": "C", "examples": ["one", "two"], "due": "opening"}],
}


def test_shipped_playbook_meets_the_counts() -> None:
    playbook = load_playbook()
    assert len(playbook.intents) >= 25
    assert len(playbook.replies) >= 50
    assert len(playbook.articles) >= 20
    assert len(playbook.actions) >= 15
    assert len(playbook.checklist) >= 5
    assert {"recording_disclosure", "identity_verification", "recap"} <= {
        c.id for c in playbook.checklist
    }


def test_minimal_playbook_parses() -> None:
    playbook = parse_playbook(copy.deepcopy(MINIMAL), Path("p.yaml"))
    assert playbook.intent("bye").closing
    assert playbook.actions[0].when.intent == ("refund",)


def mutate(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(MINIMAL)
    keys = path.split(".")
    target: Any = data
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is KeyError:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("version", 2, "version: unsupported version 2"),
        ("name", KeyError, "(top level): missing required key 'name'"),
        ("colour", "red", "(top level).colour: unknown key"),
        ("intents", "nope", "intents: must be a list"),
        (
            "intents.0.id",
            "Refund Status",
            "intents[0].id: id 'Refund Status' must be lower_snake_case",
        ),
        ("intents.1.id", "refund", "intents[1].id: duplicate id 'refund'"),
        ("intents.0.examples", ["only one"], "intents[0] (refund).examples: needs at least 3"),
        ("intents.0.entities", ["shoe_size"], "unknown entity kind 'shoe_size'"),
        ("intents.0.closing", "yes", "intents[0] (refund).closing: must be true or false"),
        ("intents.0.label", "", "intents[0] (refund).label: must be a non-empty string"),
        ("replies.0.intents", ["refnud"], "replies[0] (r1).intents: unknown intent 'refnud'"),
        ("replies.0.text", "Hi {nickname}", "unknown slot {nickname}"),
        ("replies.0.text", "Hi {preferred_name!r}", "malformed slot"),
        ("replies.0.text", "Use { braces", "literal braces are not allowed"),
        (
            "replies.0.when",
            {"sentiment": "angry"},
            "replies[0] (r1).when.sentiment: must be one of",
        ),
        ("replies.0.when", {"stage": ["end"]}, "unknown stage 'end'"),
        ("articles.0.link", "ftp://x", "articles[0] (a1).link: must be an http(s) URL"),
        ("articles.0.intents", ["nope"], "articles[0] (a1).intents: unknown intent 'nope'"),
        ("actions.0.when", {}, "actions[0] (x1).when: needs at least one condition"),
        ("actions.0.when", KeyError, "actions[0]: missing required key 'when'"),
        ("actions.0.when", {"checklist_missing": ["c9"]}, "unknown checklist item 'c9'"),
        ("actions.0.when", {"sentiment_trend_below": -3}, "must be a number in [-1, 1]"),
        ("actions.0.when", {"negative_streak_at_least": 0}, "must be a whole number ≥ 1"),
        ("actions.0.when", {"has_open_case": "y"}, "has_open_case: must be true or false"),
        ("actions.0.when", {"min_call_seconds": -1}, "min_call_seconds: must be a number ≥ 0"),
        ("actions.0.when", {"mood": "bad"}, "actions[0] (x1).when.mood: unknown key"),
        ("actions.0.priority", 9, "actions[0] (x1).priority: must be a whole number from 1"),
        ("actions.0.once", "no", "actions[0] (x1).once: must be true or false"),
        ("checklist.0.due", "later", "checklist[0] (c1).due: must be one of"),
        ("checklist.0.examples", ["x"], "checklist[0] (c1).examples: needs at least 2"),
        ("settings", {"intent_threshold": 1.5}, "settings.intent_threshold: must be a number"),
    ],
)
def test_every_problem_is_named(path: str, value: Any, message: str) -> None:
    with pytest.raises(PlaybookError) as raised:
        parse_playbook(mutate(path, value), Path("team.yaml"))
    text = str(raised.value)
    assert "team.yaml: " in text
    assert message in text, text


def test_all_problems_reported_at_once() -> None:
    data = mutate("version", 3)
    data["intents"][0]["id"] = "Bad Id"
    data["replies"][0]["text"] = "{nope}"
    with pytest.raises(PlaybookError) as raised:
        parse_playbook(data, Path("p.yaml"))
    assert len(raised.value.problems) >= 3


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("version: 1\nname: x\nintents: [\n  - id: a\n")
    with pytest.raises(PlaybookError) as raised:
        load_playbook(bad)
    assert str(bad) in str(raised.value) and "line" in str(raised.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="cannot read the file"):
        load_playbook(tmp_path / "nope.yaml")


def test_shipped_playbook_round_trips_through_yaml() -> None:
    data = yaml.safe_load(DEFAULT_PLAYBOOK.read_text())
    assert parse_playbook(data, DEFAULT_PLAYBOOK).name
