"""Scorecards: a playbook's weighted QA items, answered automatically when a call ends.

Each item is answered from one source:
- `category: NAME` — passes when the call matched that category; `no_category: NAME` — when
  it did not (e.g. no `long_silence`);
- `checklist: ID` — passes when the checklist item was done;
- `figure: NAME` with `at_least` and/or `at_most` — a call analytics figure in bounds (see
  `FIGURES`).

The score is the weighted share of items passed, 0-100. A QA reviewer may override an item;
the override is kept beside the automatic answer and the score follows it
(`score_with_overrides`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def _share(figures: Mapping[str, Any], channel: str) -> float | None:
    talk = figures.get("talk_seconds") or {}
    total = sum(talk.values())
    return talk.get(channel, 0.0) / total if total and channel in talk else None


def _get(figures: Mapping[str, Any], *path: str) -> Any:
    value: Any = figures
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


FIGURES: dict[str, Any] = {
    "longest_silence_seconds": lambda f: f.get("longest_silence_seconds"),
    "silence_seconds": lambda f: f.get("silence_seconds"),
    "overtalk_seconds": lambda f: f.get("overtalk_seconds"),
    "agent_interruptions": lambda f: _get(f, "interruptions", "agent"),
    "agent_talk_share": lambda f: _share(f, "agent"),
    "customer_talk_share": lambda f: _share(f, "customer"),
    "agent_words_per_minute": lambda f: _get(f, "words_per_minute", "agent"),
    "agent_response_p50_seconds": lambda f: _get(f, "agent_response_seconds", "p50"),
    "agent_response_max_seconds": lambda f: _get(f, "agent_response_seconds", "max"),
    "customer_sentiment_end": lambda f: _get(f, "sentiment", "customer_end"),
    "customer_sentiment_change": lambda f: (
        None
        if _get(f, "sentiment", "customer_end") is None
        else f["sentiment"]["customer_end"] - f["sentiment"]["customer_start"]
    ),
    "duration_seconds": lambda f: f.get("duration_seconds"),
}


@dataclass(frozen=True, slots=True)
class ScoreItem:
    id: str
    label: str
    weight: float = 1.0
    category: str = ""
    no_category: str = ""
    checklist: str = ""
    figure: str = ""
    at_least: float | None = None
    at_most: float | None = None


def answer(
    item: ScoreItem,
    categories: set[str],
    checklist: Mapping[str, bool],
    figures: Mapping[str, Any],
) -> tuple[bool | None, str]:
    """(passed, why); passed None: not answerable on this call (left out of the score)."""
    if item.category:
        hit = item.category in categories
        return hit, f"category {item.category} {'matched' if hit else 'did not match'}"
    if item.no_category:
        hit = item.no_category in categories
        return not hit, f"category {item.no_category} {'matched' if hit else 'did not match'}"
    if item.checklist:
        if item.checklist not in checklist:
            return None, f"checklist item {item.checklist} was not tracked on this call"
        done = checklist[item.checklist]
        return done, f"checklist item {item.checklist} {'done' if done else 'not done'}"
    value = FIGURES[item.figure](figures)
    if value is None:
        return None, f"{item.figure} is not known for this call"
    ok = (item.at_least is None or value >= item.at_least) and (
        item.at_most is None or value <= item.at_most
    )
    bounds = " and ".join(
        f"{word} {v:g}"
        for word, v in (("at least", item.at_least), ("at most", item.at_most))
        if v is not None
    )
    return ok, f"{item.figure} {value:.2f} ({'within' if ok else 'not'} {bounds})"


def score_call(
    items: tuple[ScoreItem, ...],
    categories: set[str],
    checklist: Mapping[str, bool],
    figures: Mapping[str, Any],
) -> dict[str, Any]:
    """{"score": 0-100 or None, "items": [{id, label, weight, passed, reason}]}."""
    answered = []
    for item in items:
        passed, reason = answer(item, categories, checklist, figures)
        answered.append(
            {
                "id": item.id,
                "label": item.label,
                "weight": item.weight,
                "passed": passed,
                "reason": reason,
            }
        )
    return {"score": weighted(answered), "items": answered}


def weighted(items: list[dict[str, Any]], key: str = "passed") -> float | None:
    """The weighted share of answered items passed, 0-100 (None: none answered)."""
    counted = [i for i in items if i.get(key) is not None]
    total = float(sum(i["weight"] for i in counted))
    if not total:
        return None
    return round(100 * float(sum(i["weight"] for i in counted if i[key])) / total, 1)


def score_with_overrides(
    scored: dict[str, Any], overrides: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """The automatic scorecard with reviewers' overrides beside each answer, and the score
    that follows them (`score`: with overrides; `automatic_score`: without)."""
    items = []
    for item in scored.get("items", []):
        override = overrides.get(item["id"])
        final = override["passed"] if override is not None else item["passed"]
        items.append({**item, "override": override, "final": final})
    return {
        "automatic_score": scored.get("score"),
        "score": weighted(items, "final"),
        "items": items,
    }
