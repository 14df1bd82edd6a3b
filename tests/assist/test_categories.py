"""Categories: phrase matching, every condition, time windows, negation, call-level figures,
and the playbook's validation naming the category and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from assist.categories import Category, CategoryMatcher, Utterance, has_phrase, words_of
from assist.playbook import DEFAULT_PLAYBOOK, PlaybookError, parse_playbook


def said(
    text: str,
    channel: str = "customer",
    start: float = 5.0,
    end: float = 7.0,
    n: int = 1,
    **facts: Any,
) -> Utterance:
    return Utterance(channel, n, start, end, text, **facts)


def test_phrases_match_whole_words_case_and_punctuation_aside() -> None:
    cancel = words_of("cancel my account")
    assert has_phrase(words_of("Well... I want to CANCEL my account!"), cancel)
    assert has_phrase(words_of("cancel, my account"), cancel)  # punctuation between words
    assert not has_phrase(words_of("cancel my accounts"), cancel)
    assert not has_phrase(words_of("I can't cancel it, my account is locked"), cancel)
    assert has_phrase(words_of("I DON'T want it"), words_of("dont want"))


def test_an_utterance_category_matches_once_with_what_was_said() -> None:
    matcher = CategoryMatcher([Category("cancel_risk", channel="customer", phrases=("cancel",))])
    assert matcher.on_utterance(said("please cancel it", channel="agent")) == []
    [match] = matcher.on_utterance(said("I want to cancel", n=4, start=12.3, end=15.0))
    assert (match.channel, match.utterance, match.start, match.end) == ("customer", 4, 12.3, 15.0)
    assert match.text == "I want to cancel"
    assert matcher.on_utterance(said("cancel it now", n=5)) == []  # once a call


@pytest.mark.parametrize(
    ("category", "utterance", "matches"),
    [
        (Category("a", all_phrases=("refund", "manager")), said("refund, or your manager"), True),
        (Category("a", all_phrases=("refund", "manager")), said("where is my refund"), False),
        (Category("i", intents=("refund_status",)), said("x", intent="refund_status"), True),
        (Category("i", intents=("refund_status",)), said("x", intent=None), False),
        (Category("s", sentiment_below=-0.5), said("x", sentiment=-0.8), True),
        (Category("s", sentiment_below=-0.5), said("x", sentiment=-0.2), False),
        (Category("s", sentiment_below=-0.5), said("x", sentiment=None), False),  # not read
        (Category("e", entities=("order_id",)), said("x", entities=("order_id",)), True),
        (Category("e", entities=("order_id",)), said("x", entities=("email",)), False),
        (Category("w", phrases=("hello",), first_seconds=10.0), said("hello", start=9.0), True),
        (Category("w", phrases=("hello",), first_seconds=10.0), said("hello", start=11.0), False),
        # every condition that is set must hold
        (
            Category("both", phrases=("refund",), sentiment_below=0.0),
            said("refund please", sentiment=0.4),
            False,
        ),
    ],
)
def test_each_condition(category: Category, utterance: Utterance, matches: bool) -> None:
    assert bool(CategoryMatcher([category]).on_utterance(utterance)) is matches


def test_not_said_in_the_first_seconds_is_decided_when_they_are_over() -> None:
    missing = Category("no_disclosure", channel="agent", phrases=("recorded",), first_seconds=30)
    missing = Category(**{**_fields(missing), "absent": True})
    matcher = CategoryMatcher([missing])
    assert matcher.timed
    assert matcher.on_utterance(said("hi, how can I help", channel="agent", start=2.0)) == []
    assert matcher.on_time(29.0, (0.0, 0.0), 0.0) == []  # not over yet
    # over, but what the agent said around 30 s is still being read: not decided yet
    assert matcher.on_time(30.5, (0.0, 0.0), 0.0) == []
    matcher.on_utterance(said("let me check", channel="agent", start=33.0, end=35.0, n=2))
    [match] = matcher.on_time(36.0, (0.0, 0.0), 0.0)
    assert (match.start, match.end, match.utterance, match.text) == (0.0, 30.0, None, "")
    # ... and one that was said in time never matches
    kept = CategoryMatcher([missing])
    kept.on_utterance(said("this call is recorded", channel="agent", start=3.0))
    assert kept.on_time(31.0, (0.0, 0.0), 0.0) == [] and kept.on_end(60.0, (0, 0), 0) == []


def test_last_seconds_and_absence_are_decided_at_the_end() -> None:
    closing = Category("thanked", channel="agent", phrases=("thank you",), last_seconds=20)
    never = Category("no_thanks", channel="agent", phrases=("thank you",), absent=True)
    matcher = CategoryMatcher([closing, never])
    matcher.on_utterance(said("thank you for waiting", channel="agent", start=10, end=12, n=2))
    matcher.on_utterance(said("thank you, bye", channel="agent", start=88, end=90, n=9))
    [match] = matcher.on_end(100.0, (0.0, 0.0), 0.0)  # "no_thanks" never: it was said
    assert (match.category.name, match.utterance) == ("thanked", 9)
    early = CategoryMatcher([closing, never])
    early.on_utterance(said("thank you", channel="agent", start=10, end=12))
    assert early.on_end(100.0, (0.0, 0.0), 0.0) == []  # said, but not in the last 20 s
    silent = CategoryMatcher([never])
    [absent] = silent.on_end(45.0, (0.0, 0.0), 0.0)
    assert (absent.start, absent.end) == (0.0, 45.0)


def test_silence_and_overtalk_categories() -> None:
    matcher = CategoryMatcher(
        [Category("long_silence", silence_over=20), Category("overtalk", overtalk_over=5)]
    )
    assert matcher.on_time(30.0, (4.0, 19.0), 2.0) == []
    [silence] = matcher.on_time(40.0, (18.0, 39.5), 2.0)  # an ongoing silence counts
    assert (silence.category.name, silence.start, silence.end) == ("long_silence", 18.0, 39.5)
    [overtalk] = matcher.on_end(60.0, (18.0, 39.5), 6.5)
    assert overtalk.category.name == "overtalk"


def _fields(category: Category) -> dict[str, Any]:
    return {name: getattr(category, name) for name in Category.__slots__}


def _playbook_with(categories: list[Any]) -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_PLAYBOOK.read_text())
    data["categories"] = categories
    return data


def test_the_shipped_playbook_has_categories() -> None:
    playbook = parse_playbook(yaml.safe_load(DEFAULT_PLAYBOOK.read_text()), DEFAULT_PLAYBOOK)
    names = {c.name for c in playbook.categories}
    assert {"cancel_risk", "long_silence", "no_early_disclosure"} <= names


@pytest.mark.parametrize(
    ("category", "problem"),
    [
        ({"name": "x"}, "categories[0] (x): needs a condition"),
        ({"name": "Bad Name", "phrases": ["a"]}, "categories[0].name: id 'Bad Name'"),
        ({"name": "x", "phrases": "cancel"}, "categories[0] (x).phrases"),
        ({"name": "x", "phrases": ["..."]}, "categories[0] (x).phrases[0]: '...' has no words"),
        ({"name": "x", "intents": ["nope"]}, "categories[0] (x).intents: unknown intent 'nope'"),
        ({"name": "x", "entities": ["shoe"]}, "categories[0] (x).entities: unknown entity kind"),
        ({"name": "x", "sentiment_below": 3}, "categories[0] (x).sentiment_below: must be"),
        ({"name": "x", "phrases": ["a"], "first_seconds": -1}, "(x).first_seconds: must be"),
        ({"name": "x", "phrases": ["a"], "alert": "loud"}, "(x).alert: must be one of info"),
        ({"name": "x", "phrases": ["a"], "absent": "yes"}, "(x).absent: must be true or false"),
        ({"name": "x", "phrases": ["a"], "silence_over": 5}, "cannot be combined with phrases"),
        ({"name": "x", "silence_over": 5, "absent": True}, "(x).absent: does not apply"),
        (
            {"name": "x", "phrases": ["a"], "first_seconds": 5, "last_seconds": 5},
            "first_seconds and last_seconds cannot both be set",
        ),
        ({"name": "x", "phrases": ["a"], "colour": "red"}, "categories[0].colour: unknown key"),
    ],
)
def test_validation_names_the_category_and_field(category: dict[str, Any], problem: str) -> None:
    with pytest.raises(PlaybookError) as raised:
        parse_playbook(_playbook_with([category]), Path("p.yaml"))
    assert any(problem in p for p in raised.value.problems), raised.value.problems


def test_duplicate_category_names_are_refused() -> None:
    twice = [{"name": "x", "phrases": ["a"]}, {"name": "x", "phrases": ["b"]}]
    with pytest.raises(PlaybookError) as raised:
        parse_playbook(_playbook_with(twice), Path("p.yaml"))
    assert any("duplicate id 'x'" in p for p in raised.value.problems)
