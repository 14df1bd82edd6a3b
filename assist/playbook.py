"""The playbook: what a contact-center team edits (YAML) to shape what agents are shown.

Schema (version 1; README "Playbook" documents it with examples):

    version: 1
    name, description
    settings: {intent_threshold: 0.6}                      optional
    intents:   [{id, label, group?, description?, examples: [≥3], entities?: [kinds],
                 closing?: bool}]
    replies:   [{id, intents: [ids], text, fallback?, when?}]
    articles:  [{id, title, body, link, intents?: [ids], tags?: [str]}]
    actions:   [{id, action, reason, when, priority?: 1..5, once?: bool}]
    checklist: [{id, label, description?, examples: [≥2], keywords?: [str],
                 due?: opening|before_closing|any}]
    vocabulary: [str]   company, product and plan names: Whisper is biased towards them
    categories: [{name, label?, channel?, phrases?, all_phrases?, intents?, sentiment_below?,
                  entities?, first_seconds? | last_seconds?, absent?, silence_over?,
                  overtalk_over?, alert?: info|warning|critical}]   (assist.categories)
    scorecard: [{id, label, weight?, category | no_category | checklist | figure
                 (+ at_least?/at_most?)}]                           (assist.scorecard)
    dispositions: [{id, label, intents?, categories?, default?}]    (assist.wrapup)

`when` conditions (all must hold) are listed in `CONDITIONS`. Text may use the slots in `SLOTS`
(`{preferred_name}` ...); a reply with a slot that cannot be filled uses its `fallback`, or is not
shown. `load_playbook` checks everything at start and raises `PlaybookError` listing every
problem as `file: path: problem`.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assist.categories import Category, words_of
from assist.entities import KINDS
from assist.scorecard import FIGURES, ScoreItem
from assist.wrapup import Disposition
from audio.protocols.vocabulary import MAX_TERM_CHARS, MAX_TERMS

DEFAULT_PLAYBOOK = Path(__file__).parent / "playbooks" / "retail.yaml"

SLOTS = frozenset(
    {
        "preferred_name",
        "customer_name",
        "tier",
        "agent_name",
        "order_id",
        "account_id",
        "amount",
        "date",
        "email",
        "phone",
        "zip_code",
        "open_case",
        "intent_label",
    }
)
STAGES = ("opening", "middle", "closing")
DUES = ("opening", "before_closing", "any")
SENTIMENTS = ("negative", "neutral", "positive")
ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Conditions:
    intent: tuple[str, ...] = ()
    sentiment: str | None = None
    sentiment_trend_below: float | None = None
    negative_streak_at_least: int | None = None
    entities: tuple[str, ...] = ()
    missing_entities: tuple[str, ...] = ()
    stage: tuple[str, ...] = ()
    checklist_done: tuple[str, ...] = ()
    checklist_missing: tuple[str, ...] = ()
    customer_tier: tuple[str, ...] = ()
    has_open_case: bool | None = None
    min_call_seconds: float | None = None

    @property
    def specificity(self) -> int:
        """How many conditions are set (a more specific match ranks higher)."""
        return sum(1 for name in CONDITIONS if getattr(self, name) not in (None, ()))


CONDITIONS: dict[str, str] = {
    "intent": "intent ids",
    "sentiment": "negative|neutral|positive",
    "sentiment_trend_below": "number in [-1, 1]",
    "negative_streak_at_least": "whole number ≥ 1",
    "entities": "entity kinds",
    "missing_entities": "entity kinds",
    "stage": "opening|middle|closing",
    "checklist_done": "checklist ids",
    "checklist_missing": "checklist ids",
    "customer_tier": "tier names",
    "has_open_case": "true|false",
    "min_call_seconds": "number ≥ 0",
}


@dataclass(frozen=True, slots=True)
class Intent:
    id: str
    label: str
    examples: tuple[str, ...]
    group: str = ""
    description: str = ""
    entities: tuple[str, ...] = ()
    closing: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    id: str
    intents: tuple[str, ...]
    text: str
    fallback: str = ""
    when: Conditions = field(default_factory=Conditions)


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    title: str
    body: str
    link: str
    intents: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionRule:
    id: str
    action: str
    reason: str
    when: Conditions
    priority: int = 3
    once: bool = True


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    id: str
    label: str
    examples: tuple[str, ...]
    description: str = ""
    keywords: tuple[str, ...] = ()
    due: str = "any"


@dataclass(frozen=True, slots=True)
class Playbook:
    name: str
    path: Path
    intents: tuple[Intent, ...]
    replies: tuple[Reply, ...]
    articles: tuple[Article, ...]
    actions: tuple[ActionRule, ...]
    checklist: tuple[ChecklistItem, ...]
    description: str = ""
    intent_threshold: float | None = None
    vocabulary: tuple[str, ...] = ()
    categories: tuple[Category, ...] = ()
    scorecard: tuple[ScoreItem, ...] = ()
    dispositions: tuple[Disposition, ...] = ()
    _by_id: dict[str, Intent] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {i.id: i for i in self.intents})

    def intent(self, intent_id: str) -> Intent:
        return self._by_id[intent_id]

    def intent_examples(self) -> tuple[list[str], list[str]]:
        """Every intent example and its intent id, in playbook order (what intents train on)."""
        return (
            [e for i in self.intents for e in i.examples],
            [i.id for i in self.intents for _ in i.examples],
        )

    def label(self, intent_id: str | None) -> str:
        """The intent's label ("" for none; the id itself for an unknown one)."""
        if not intent_id:
            return ""
        found = self._by_id.get(intent_id)
        return found.label if found is not None else intent_id


class PlaybookError(ValueError):
    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        shown = "\n".join(f"  {path}: {p}" for p in problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"invalid playbook ({len(problems)} problems):\n{shown}{more}")


def template_slots(text: str) -> list[str]:
    """Slot names used in `text`; raises ValueError on malformed braces."""
    names = []
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            raise ValueError(f"malformed slot {{{name}}}")
        names.append(name)
    return names


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, problem: str) -> None:
        self.problems.append(f"{where}: {problem}")

    def mapping(self, value: Any, where: str, allowed: Mapping[str, bool]) -> dict[str, Any]:
        """`allowed` maps key → required."""
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, not {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(f"{where}.{key}", f"unknown key (allowed: {', '.join(allowed)})")
        for key, required in allowed.items():
            if required and key not in value:
                self.fail(where, f"missing required key '{key}'")
        return value

    def text(self, value: Any, where: str, *, required: bool = True) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(where, "must be a non-empty string")
            return ""
        return value.strip()

    def strings(self, value: Any, where: str, *, minimum: int = 0) -> tuple[str, ...]:
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(where, "must be a list of non-empty strings")
            return ()
        if len(value) < minimum:
            self.fail(where, f"needs at least {minimum} entries (has {len(value)})")
        return tuple(v.strip() for v in value)

    def ident(self, value: Any, where: str, seen: set[str]) -> str:
        if not isinstance(value, str) or not ID.match(value):
            self.fail(where, f"id {value!r} must be lower_snake_case (a-z, 0-9, _)")
            return str(value)
        if value in seen:
            self.fail(where, f"duplicate id '{value}'")
        seen.add(value)
        return value

    def slots(self, text: str, where: str) -> list[str]:
        try:
            names = template_slots(text)
        except ValueError as exc:
            self.fail(
                where, f"{exc} (use {{slot}} with a slot name; literal braces are not allowed)"
            )
            return []
        for name in names:
            if name not in SLOTS:
                self.fail(where, f"unknown slot {{{name}}} (slots: {', '.join(sorted(SLOTS))})")
        return names

    def refs(self, values: tuple[str, ...], known: set[str], what: str, where: str) -> None:
        for value in values:
            if value not in known:
                self.fail(where, f"unknown {what} '{value}'")


def _conditions(
    c: _Checker, raw: Any, where: str, intents: set[str], items: set[str]
) -> Conditions:
    data = c.mapping(raw, where, dict.fromkeys(CONDITIONS, False))
    kinds = set(KINDS)
    out: dict[str, Any] = {}
    for key in (
        "intent",
        "entities",
        "missing_entities",
        "stage",
        "checklist_done",
        "checklist_missing",
        "customer_tier",
    ):
        if key in data:
            out[key] = c.strings(data[key], f"{where}.{key}", minimum=1)
    c.refs(out.get("intent", ()), intents, "intent", f"{where}.intent")
    c.refs(out.get("entities", ()), kinds, "entity kind", f"{where}.entities")
    c.refs(out.get("missing_entities", ()), kinds, "entity kind", f"{where}.missing_entities")
    c.refs(out.get("stage", ()), set(STAGES), "stage", f"{where}.stage")
    c.refs(out.get("checklist_done", ()), items, "checklist item", f"{where}.checklist_done")
    c.refs(out.get("checklist_missing", ()), items, "checklist item", f"{where}.checklist_missing")
    if "sentiment" in data:
        if data["sentiment"] not in SENTIMENTS:
            c.fail(f"{where}.sentiment", f"must be one of {', '.join(SENTIMENTS)}")
        else:
            out["sentiment"] = data["sentiment"]
    if "sentiment_trend_below" in data:
        v = data["sentiment_trend_below"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not -1 <= v <= 1:
            c.fail(f"{where}.sentiment_trend_below", "must be a number in [-1, 1]")
        else:
            out["sentiment_trend_below"] = float(v)
    if "negative_streak_at_least" in data:
        v = data["negative_streak_at_least"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            c.fail(f"{where}.negative_streak_at_least", "must be a whole number ≥ 1")
        else:
            out["negative_streak_at_least"] = v
    if "has_open_case" in data:
        if not isinstance(data["has_open_case"], bool):
            c.fail(f"{where}.has_open_case", "must be true or false")
        else:
            out["has_open_case"] = data["has_open_case"]
    if "min_call_seconds" in data:
        v = data["min_call_seconds"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
            c.fail(f"{where}.min_call_seconds", "must be a number ≥ 0")
        else:
            out["min_call_seconds"] = float(v)
    return Conditions(**out)


def parse_playbook(data: Any, path: Path) -> Playbook:
    """Validate a loaded YAML document; raises PlaybookError naming every problem."""
    c = _Checker()
    top = c.mapping(
        data,
        "(top level)",
        {
            "version": True,
            "name": True,
            "description": False,
            "settings": False,
            "intents": True,
            "replies": True,
            "articles": False,
            "actions": False,
            "checklist": False,
            "vocabulary": False,
            "categories": False,
            "scorecard": False,
            "dispositions": False,
        },
    )
    version = top.get("version") if top else None
    if top and (type(version) is not int or version != 1):
        c.fail("version", f"unsupported version {top.get('version')!r} (this callcue reads 1)")
    name = c.text(top.get("name"), "name") if top else ""
    description = c.text(top.get("description"), "description", required=False) if top else ""
    threshold = None
    if "settings" in top:
        settings = c.mapping(top["settings"], "settings", {"intent_threshold": False})
        if "intent_threshold" in settings:
            v = settings["intent_threshold"]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1:
                c.fail("settings.intent_threshold", "must be a number in [0, 1)")
            else:
                threshold = float(v)

    def section(key: str, minimum: int = 0) -> list[Any]:
        value = top.get(key) if top else None
        if value is None:
            if minimum:
                c.fail(key, f"needs at least {minimum} entries")
            return []
        if not isinstance(value, list):
            c.fail(key, "must be a list")
            return []
        if len(value) < minimum:
            c.fail(key, f"needs at least {minimum} entries (has {len(value)})")
        return value

    intents: list[Intent] = []
    seen: set[str] = set()
    for i, raw in enumerate(section("intents", 2)):
        w = f"intents[{i}]"
        d = c.mapping(
            raw,
            w,
            {
                "id": True,
                "label": True,
                "group": False,
                "description": False,
                "examples": True,
                "entities": False,
                "closing": False,
            },
        )
        if not d:
            continue
        ident = c.ident(d.get("id"), f"{w}.id", seen)
        w = f"intents[{i}] ({ident})"
        entities = c.strings(d.get("entities"), f"{w}.entities")
        c.refs(entities, set(KINDS), "entity kind", f"{w}.entities")
        closing = d.get("closing", False)
        if not isinstance(closing, bool):
            c.fail(f"{w}.closing", "must be true or false")
        intents.append(
            Intent(
                id=ident,
                label=c.text(d.get("label"), f"{w}.label"),
                examples=c.strings(d.get("examples"), f"{w}.examples", minimum=3),
                group=c.text(d.get("group"), f"{w}.group", required=False),
                description=c.text(d.get("description"), f"{w}.description", required=False),
                entities=entities,
                closing=bool(closing),
            )
        )
    intent_ids = {i.id for i in intents}

    items: list[ChecklistItem] = []
    seen = set()
    for i, raw in enumerate(section("checklist")):
        w = f"checklist[{i}]"
        d = c.mapping(
            raw,
            w,
            {
                "id": True,
                "label": True,
                "description": False,
                "examples": True,
                "keywords": False,
                "due": False,
            },
        )
        if not d:
            continue
        ident = c.ident(d.get("id"), f"{w}.id", seen)
        w = f"checklist[{i}] ({ident})"
        due = d.get("due", "any")
        if due not in DUES:
            c.fail(f"{w}.due", f"must be one of {', '.join(DUES)}")
        items.append(
            ChecklistItem(
                id=ident,
                label=c.text(d.get("label"), f"{w}.label"),
                examples=c.strings(d.get("examples"), f"{w}.examples", minimum=2),
                description=c.text(d.get("description"), f"{w}.description", required=False),
                keywords=tuple(k.lower() for k in c.strings(d.get("keywords"), f"{w}.keywords")),
                due=due if due in DUES else "any",
            )
        )
    item_ids = {i.id for i in items}

    replies: list[Reply] = []
    seen = set()
    for i, raw in enumerate(section("replies", 1)):
        w = f"replies[{i}]"
        d = c.mapping(
            raw, w, {"id": True, "intents": True, "text": True, "fallback": False, "when": False}
        )
        if not d:
            continue
        ident = c.ident(d.get("id"), f"{w}.id", seen)
        w = f"replies[{i}] ({ident})"
        reply_intents = c.strings(d.get("intents"), f"{w}.intents", minimum=1)
        c.refs(reply_intents, intent_ids, "intent", f"{w}.intents")
        text = c.text(d.get("text"), f"{w}.text")
        c.slots(text, f"{w}.text")
        fallback = c.text(d.get("fallback"), f"{w}.fallback", required=False)
        if fallback:
            c.slots(fallback, f"{w}.fallback")
        when = (
            _conditions(c, d["when"], f"{w}.when", intent_ids, item_ids)
            if "when" in d
            else Conditions()
        )
        replies.append(Reply(ident, reply_intents, text, fallback, when))

    articles: list[Article] = []
    seen = set()
    for i, raw in enumerate(section("articles")):
        w = f"articles[{i}]"
        d = c.mapping(
            raw,
            w,
            {
                "id": True,
                "title": True,
                "body": True,
                "link": True,
                "intents": False,
                "tags": False,
            },
        )
        if not d:
            continue
        ident = c.ident(d.get("id"), f"{w}.id", seen)
        w = f"articles[{i}] ({ident})"
        link = c.text(d.get("link"), f"{w}.link")
        if link and not re.match(r"^(https?://|/)", link):
            c.fail(f"{w}.link", "must be an http(s) URL or a path starting with /")
        article_intents = c.strings(d.get("intents"), f"{w}.intents")
        c.refs(article_intents, intent_ids, "intent", f"{w}.intents")
        articles.append(
            Article(
                ident,
                c.text(d.get("title"), f"{w}.title"),
                c.text(d.get("body"), f"{w}.body"),
                link,
                article_intents,
                c.strings(d.get("tags"), f"{w}.tags"),
            )
        )

    actions: list[ActionRule] = []
    seen = set()
    for i, raw in enumerate(section("actions")):
        w = f"actions[{i}]"
        d = c.mapping(
            raw,
            w,
            {
                "id": True,
                "action": True,
                "reason": True,
                "when": True,
                "priority": False,
                "once": False,
            },
        )
        if not d:
            continue
        ident = c.ident(d.get("id"), f"{w}.id", seen)
        w = f"actions[{i}] ({ident})"
        action = c.text(d.get("action"), f"{w}.action")
        reason = c.text(d.get("reason"), f"{w}.reason")
        c.slots(action, f"{w}.action")
        c.slots(reason, f"{w}.reason")
        when = _conditions(c, d.get("when"), f"{w}.when", intent_ids, item_ids)
        if "when" in d and when.specificity == 0:
            c.fail(f"{w}.when", "needs at least one condition")
        priority = d.get("priority", 3)
        if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 5:
            c.fail(f"{w}.priority", "must be a whole number from 1 (most urgent) to 5")
            priority = 3
        once = d.get("once", True)
        if not isinstance(once, bool):
            c.fail(f"{w}.once", "must be true or false")
        actions.append(ActionRule(ident, action, reason, when, priority, bool(once)))

    vocabulary = c.strings(top.get("vocabulary"), "vocabulary") if top else ()
    for i, term in enumerate(vocabulary):
        if len(term) > MAX_TERM_CHARS:
            c.fail(f"vocabulary[{i}]", f"at most {MAX_TERM_CHARS} characters (has {len(term)})")
    if len(vocabulary) > MAX_TERMS:
        c.fail("vocabulary", f"at most {MAX_TERMS} terms (has {len(vocabulary)})")

    categories = _categories(c, section("categories"), intent_ids)
    scorecard = _scorecard(c, section("scorecard"), {x.name for x in categories}, item_ids)
    dispositions = _dispositions(
        c, section("dispositions"), intent_ids, {x.name for x in categories}
    )

    if c.problems:
        raise PlaybookError(path, c.problems)
    return Playbook(
        name=name,
        path=path,
        intents=tuple(intents),
        replies=tuple(replies),
        articles=tuple(articles),
        actions=tuple(actions),
        checklist=tuple(items),
        description=description,
        intent_threshold=threshold,
        vocabulary=vocabulary,
        categories=categories,
        scorecard=scorecard,
        dispositions=dispositions,
    )


def _dispositions(
    c: _Checker, raw: list[Any], intents: set[str], categories: set[str]
) -> tuple[Disposition, ...]:
    out: list[Disposition] = []
    seen: set[str] = set()
    keys = {"id": True, "label": True, "intents": False, "categories": False, "default": False}
    for i, entry in enumerate(raw):
        w = f"dispositions[{i}]"
        d = c.mapping(entry, w, keys)
        if not d:
            continue
        ident = c.ident(d.get("id"), f"{w}.id", seen)
        w = f"dispositions[{i}] ({ident})"
        chosen_by = c.strings(d.get("intents"), f"{w}.intents")
        c.refs(chosen_by, intents, "intent", f"{w}.intents")
        flagged = c.strings(d.get("categories"), f"{w}.categories")
        c.refs(flagged, categories, "category", f"{w}.categories")
        default = d.get("default", False)
        if not isinstance(default, bool):
            c.fail(f"{w}.default", "must be true or false")
        if not chosen_by and not flagged and default is not True:
            c.fail(w, "needs intents or categories to be chosen by (or default: true)")
        out.append(
            Disposition(
                ident, c.text(d.get("label"), f"{w}.label"), chosen_by, flagged, default is True
            )
        )
    if sum(d.default for d in out) > 1:
        c.fail("dispositions", "at most one may be the default")
    return tuple(out)


SCORE_SOURCES = ("category", "no_category", "checklist", "figure")


def _scorecard(
    c: _Checker, raw: list[Any], categories: set[str], items: set[str]
) -> tuple[ScoreItem, ...]:
    out: list[ScoreItem] = []
    seen: set[str] = set()
    keys = {"id": True, "label": True, "weight": False, "at_least": False, "at_most": False}
    for i, entry in enumerate(raw):
        w = f"scorecard[{i}]"
        d = c.mapping(entry, w, {**keys, **dict.fromkeys(SCORE_SOURCES, False)})
        if not d:
            continue
        ident = c.ident(d.get("id"), f"{w}.id", seen)
        w = f"scorecard[{i}] ({ident})"
        values: dict[str, Any] = {"id": ident, "label": c.text(d.get("label"), f"{w}.label")}
        weight = d.get("weight", 1)
        if not _number(weight) or not weight > 0:
            c.fail(f"{w}.weight", "must be a number > 0")
        else:
            values["weight"] = float(weight)
        sources = [k for k in SCORE_SOURCES if k in d]
        if len(sources) != 1:
            c.fail(w, f"needs exactly one of {', '.join(SCORE_SOURCES)} (has {len(sources)})")
        for key in sources:
            value = c.text(d[key], f"{w}.{key}")
            known = {"checklist": items, "figure": set(FIGURES)}.get(key, categories)
            what = {"checklist": "checklist item", "figure": "figure"}.get(key, "category")
            if value and value not in known:
                c.fail(
                    f"{w}.{key}", f"unknown {what} '{value}' (known: {', '.join(sorted(known))})"
                )
            values[key] = value
        for key in ("at_least", "at_most"):
            if key in d:
                v = d[key]
                if "figure" not in d:
                    c.fail(f"{w}.{key}", "goes with figure")
                elif not _number(v):
                    c.fail(f"{w}.{key}", "must be a number")
                else:
                    values[key] = float(v)
        if "figure" in d and "at_least" not in d and "at_most" not in d:
            c.fail(w, "a figure needs at_least and/or at_most")
        out.append(ScoreItem(**values))
    return tuple(out)


def _number(value: Any) -> bool:
    """A finite int or float (YAML's .inf and .nan are not)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


SEVERITIES = ("info", "warning", "critical")
CATEGORY_KEYS = {
    "name": True,
    "label": False,
    "channel": False,
    "phrases": False,
    "all_phrases": False,
    "intents": False,
    "sentiment_below": False,
    "entities": False,
    "first_seconds": False,
    "last_seconds": False,
    "absent": False,
    "silence_over": False,
    "overtalk_over": False,
    "alert": False,
}
UTTERANCE_CONDITIONS = ("phrases", "all_phrases", "intents", "sentiment_below", "entities")
CALL_CONDITIONS = ("silence_over", "overtalk_over")


def _categories(c: _Checker, raw: list[Any], intent_ids: set[str]) -> tuple[Category, ...]:
    out: list[Category] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        w = f"categories[{i}]"
        d = c.mapping(item, w, CATEGORY_KEYS)
        if not d:
            continue
        name = c.ident(d.get("name"), f"{w}.name", seen)
        w = f"categories[{i}] ({name})"
        values: dict[str, Any] = {"name": name}
        values["label"] = c.text(d.get("label"), f"{w}.label", required=False)
        values["channel"] = c.text(d.get("channel"), f"{w}.channel", required=False)
        for key in ("phrases", "all_phrases"):
            if key in d:
                values[key] = c.strings(d[key], f"{w}.{key}", minimum=1)
                for j, phrase in enumerate(values[key]):
                    if not words_of(phrase):
                        c.fail(f"{w}.{key}[{j}]", f"{phrase!r} has no words to match")
        if "intents" in d:
            values["intents"] = c.strings(d["intents"], f"{w}.intents", minimum=1)
            c.refs(values["intents"], intent_ids, "intent", f"{w}.intents")
        if "entities" in d:
            values["entities"] = c.strings(d["entities"], f"{w}.entities", minimum=1)
            c.refs(values["entities"], set(KINDS), "entity kind", f"{w}.entities")
        if "sentiment_below" in d:
            v = d["sentiment_below"]
            if not _number(v) or not -1 < v <= 1:
                c.fail(f"{w}.sentiment_below", "must be a number in (-1, 1] (a sentiment score)")
            else:
                values["sentiment_below"] = float(v)
        for key in ("first_seconds", "last_seconds", "silence_over", "overtalk_over"):
            if key in d:
                v = d[key]
                if not _number(v) or not v > 0:
                    c.fail(f"{w}.{key}", "must be a number of seconds > 0")
                else:
                    values[key] = float(v)
        absent = d.get("absent", False)
        if not isinstance(absent, bool):
            c.fail(f"{w}.absent", "must be true or false")
        values["absent"] = absent is True
        alert = d.get("alert", "")
        if alert and alert not in SEVERITIES:
            c.fail(f"{w}.alert", f"must be one of {', '.join(SEVERITIES)}")
        values["alert"] = alert if alert in SEVERITIES else ""
        per_utterance = [k for k in UTTERANCE_CONDITIONS if k in d]
        per_call = [k for k in CALL_CONDITIONS if k in d]
        if not per_utterance and not per_call:
            c.fail(w, f"needs a condition: {', '.join(UTTERANCE_CONDITIONS + CALL_CONDITIONS)}")
        if per_utterance and per_call:
            c.fail(
                w,
                f"{', '.join(per_call)} is about the whole call and cannot be combined with "
                f"{', '.join(per_utterance)} (make two categories)",
            )
        if len(per_call) > 1:
            c.fail(w, "silence_over and overtalk_over are two categories")
        if per_call:
            for key in ("first_seconds", "last_seconds", "absent", "channel"):
                if d.get(key):
                    c.fail(f"{w}.{key}", f"does not apply to {per_call[0]}")
        if "first_seconds" in d and "last_seconds" in d:
            c.fail(w, "first_seconds and last_seconds cannot both be set")
        out.append(Category(**values))
    return tuple(out)


@functools.cache
def _loader() -> type[Any]:
    """yaml's SafeLoader, but a value it cannot construct (2026-13-45 read as a date) is a
    YAML error at that value's line and column instead of whatever PyYAML raised."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep)
            except (yaml.YAMLError, RecursionError):
                raise
            except Exception as exc:  # ValueError (2026-13-45), AttributeError (!!timestamp x)
                kind = str(node.tag).rsplit(":", 1)[-1]
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{str(node.value)[:80]!r} is not a valid {kind} ({exc})",
                    node.start_mark,
                ) from exc

    return Loader


def load_playbook(path: Path | None = None) -> Playbook:
    import yaml

    path = path or DEFAULT_PLAYBOOK
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlaybookError(path, [f"cannot read the file ({exc.strerror or exc})"]) from exc
    except UnicodeDecodeError as exc:
        raise PlaybookError(
            path, [f"the file is not UTF-8 text (byte {exc.object[exc.start]:#04x} at {exc.start})"]
        ) from exc
    try:
        data = yaml.load(text, Loader=_loader())  # safe_load, with the place of a bad value
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlaybookError(path, [f"{where}: not valid YAML ({problem})"]) from exc
    except RecursionError as exc:
        raise PlaybookError(path, ["YAML: lists or mappings nested too deeply"]) from exc
    return parse_playbook(data, path)
