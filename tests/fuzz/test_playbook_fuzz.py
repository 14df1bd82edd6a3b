"""Mutated versions of the shipped playbook: valid, or a PlaybookError naming the file and the
place of every problem; never a KeyError, TypeError or any other exception."""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from assist.playbook import DEFAULT_PLAYBOOK, Playbook, PlaybookError, load_playbook, parse_playbook
from tests.fuzz.strategies import fuzz_settings, paths, text_mutations

RETAIL: dict[str, Any] = yaml.safe_load(DEFAULT_PLAYBOOK.read_text(encoding="utf-8"))
PATH = Path("retail-mutated.yaml")
NODES = [p for p in paths(RETAIL) if p]
REQUIRED = {
    None: {"version", "name", "intents", "replies"},
    "intents": {"id", "label", "examples"},
    "replies": {"id", "intents", "text"},
    "articles": {"id", "title", "body", "link"},
    "actions": {"id", "action", "reason", "when"},
    "checklist": {"id", "label", "examples"},
}
# Values of every YAML type, including what YAML makes of `2026-01-01`, `.nan` and `~`.
OTHER_VALUES = [
    None,
    0,
    -1,
    7,
    1.5,
    math.nan,
    math.inf,
    True,
    False,
    "",
    "Not An Id!",
    "{unknown_slot}",
    "{",
    [],
    ["x"],
    [1, 2],
    {},
    {"a": 1},
    datetime.date(2026, 1, 1),
]


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def with_change(root: Any, path: tuple[Any, ...], new: Any, *, delete: bool = False) -> Any:
    """`root` with the node at `path` replaced (or deleted); only the containers on the way
    are copied, so the shipped data is never changed."""
    head, rest = path[0], path[1:]
    copy: Any = dict(root) if isinstance(root, dict) else list(root)
    if rest:
        copy[head] = with_change(root[head], rest, new, delete=delete)
    elif delete:
        del copy[head]
    else:
        copy[head] = new
    return copy


def where(path: tuple[Any, ...]) -> str:
    """How a problem at `path` is located in PlaybookError: `name`, `settings...`,
    `intents`, `intents[3]...`."""
    if len(path) >= 2 and isinstance(path[1], int):
        return f"{path[0]}[{path[1]}]"
    return str(path[0])


def parse(data: Any) -> Playbook | PlaybookError:
    try:
        return parse_playbook(data, PATH)
    except PlaybookError as exc:
        assert exc.problems and exc.path == PATH
        text = str(exc)
        assert all(f"{PATH}: {p}" in text for p in exc.problems[:50])
        return exc


def test_the_shipped_playbook_is_valid() -> None:
    assert isinstance(parse(RETAIL), Playbook)


@fuzz_settings(200)
@given(st.sampled_from(NODES), st.sampled_from(OTHER_VALUES))
def test_a_value_of_another_type_anywhere_is_named(path: tuple[Any, ...], new: Any) -> None:
    old = node_at(path)
    result = parse(with_change(RETAIL, path, new))
    if new is not None and kind(new) != kind(old):
        assert isinstance(result, PlaybookError), (path, new)
        assert any(p.startswith(where(path)) for p in result.problems), result.problems


@fuzz_settings(200)
@given(st.sampled_from(NODES))
def test_a_deleted_node_anywhere(path: tuple[Any, ...]) -> None:
    result = parse(with_change(RETAIL, path, None, delete=True))
    section = path[0] if len(path) == 3 and isinstance(path[1], int) else None
    if len(path) in (1, 3) and path[-1] in REQUIRED.get(section, set()):
        assert isinstance(result, PlaybookError)
        missing = f"missing required key '{path[-1]}'"
        at = "(top level)" if section is None else where(path[:2])
        assert any(p.startswith(at) and missing in p for p in result.problems), result.problems


def reference_sites() -> list[tuple[tuple[Any, ...], str]]:
    sites = []
    for path in NODES:
        if not isinstance(path[-1], int) or len(path) < 3:
            continue
        if (path[0] in ("replies", "articles") and path[-2] == "intents") or (
            path[-2] == "intent" and "when" in path
        ):
            sites.append((path, "intent"))
        elif path[-2] in ("checklist_done", "checklist_missing"):
            sites.append((path, "checklist item"))
    return sites


SITES = reference_sites()


@fuzz_settings(100)
@given(st.sampled_from(SITES), st.from_regex(r"[a-z][a-z0-9_]{2,20}", fullmatch=True))
def test_a_reference_to_nothing_is_named(site: tuple[tuple[Any, ...], str], ident: str) -> None:
    path, what = site
    known = {i["id"] for i in RETAIL["intents"]} | {c["id"] for c in RETAIL["checklist"]}
    if ident in known:
        return
    result = parse(with_change(RETAIL, path, ident))
    assert isinstance(result, PlaybookError)
    assert any(
        p.startswith(where(path)) and f"unknown {what} '{ident}'" in p for p in result.problems
    ), result.problems


def node_at(path: tuple[Any, ...]) -> Any:
    node: Any = RETAIL
    for step in path:
        node = node[step]
    return node


MAPPINGS = [p for p in paths(RETAIL) if isinstance(node_at(p), dict)]


@fuzz_settings(100)
@given(st.sampled_from(MAPPINGS), st.text(max_size=8))
def test_an_unknown_key_in_any_mapping_is_named(path: tuple[Any, ...], key: str) -> None:
    node = node_at(path)
    if key in node:
        return
    changed = {**node, key: 1}
    result = parse(with_change(RETAIL, path, changed) if path else changed)
    assert isinstance(result, PlaybookError)
    assert any(f".{key}: unknown key" in p for p in result.problems), result.problems


# -- the file itself: YAML text, cut and spliced -----------------------------------------

SMALL_TEXT = yaml.safe_dump(
    {
        "version": 1,
        "name": "small",
        "intents": [{**i, "examples": i["examples"][:3]} for i in RETAIL["intents"][:2]],
        "replies": [r for r in RETAIL["replies"] if r["intents"] == ["refund_initiate"]][:1],
        "checklist": [{**c, "examples": c["examples"][:2]} for c in RETAIL["checklist"][:1]],
    },
    sort_keys=False,
)
YAML_SNIPPETS = [
    "2026-13-45",
    "!!binary x",
    "!!timestamp 2026-02-30",
    "!!python/object/apply:os.system ['true']",
    "&a [*a]",
    "*nowhere",
    "? [a, b]\n: c",
    "{a: 1, a: 2}",
    "\t",
    "[" * 3000,
    "- " * 3000,
    "\x00",
    "\ufeff",
    "%YAML 9.9\n---",
    "--- |\n  x",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("playbooks")


def load(folder: Path, content: bytes) -> Playbook | PlaybookError:
    path = folder / "playbook.yaml"
    path.write_bytes(content)
    try:
        return load_playbook(path)
    except PlaybookError as exc:
        assert exc.problems and str(path) in str(exc)
        return exc


def test_the_small_playbook_loads(folder: Path) -> None:
    assert isinstance(load(folder, SMALL_TEXT.encode()), Playbook)


@fuzz_settings(100)
@given(
    st.one_of(
        text_mutations(SMALL_TEXT),
        st.tuples(st.integers(0, len(SMALL_TEXT)), st.sampled_from(YAML_SNIPPETS)).map(
            lambda t: SMALL_TEXT[: t[0]] + t[1] + SMALL_TEXT[t[0] :]
        ),
        st.sampled_from(YAML_SNIPPETS),
    )
)
def test_yaml_text_cut_and_spliced(folder: Path, text: str) -> None:
    load(folder, text.encode("utf-8", "surrogatepass"))


# -- regressions ------------------------------------------------------------------------


def test_impossible_date_and_deep_nesting_are_playbook_errors(folder: Path) -> None:
    bad_date = load(folder, SMALL_TEXT.replace("version: 1", "version: 2026-13-45").encode())
    assert isinstance(bad_date, PlaybookError) and "2026-13-45" in str(bad_date)
    assert "line 1, column 10" in str(bad_date)
    deep = load(folder, ("name: " + "[" * 3000).encode())
    assert isinstance(deep, PlaybookError) and "nested" in str(deep)


def test_a_tagged_value_pyyaml_cannot_construct(folder: Path) -> None:
    text = SMALL_TEXT.replace("name: small", "name: !!timestamp 2026-02-30x")
    result = load(folder, text.encode())
    assert isinstance(result, PlaybookError)
    assert "line 2, column 7" in str(result) and "is not a valid timestamp" in str(result)


def test_a_file_that_is_not_utf8(folder: Path) -> None:
    result = load(folder, SMALL_TEXT.encode() + b"\xff\xfe")
    assert isinstance(result, PlaybookError) and "not UTF-8" in str(result)


def test_version_must_be_the_integer_one() -> None:
    for version in (True, 1.0, "1"):
        result = parse({**RETAIL, "version": version})
        assert isinstance(result, PlaybookError) and result.problems[0].startswith("version")


def test_min_call_seconds_is_not_nan() -> None:
    action = {**RETAIL["actions"][0], "when": {"min_call_seconds": math.nan}}
    result = parse({**RETAIL, "actions": [action]})
    assert isinstance(result, PlaybookError)
    assert result.problems[0].endswith("when.min_call_seconds: must be a number ≥ 0")


def test_description_must_be_text() -> None:
    result = parse({**RETAIL, "description": ["not", "text"]})
    assert isinstance(result, PlaybookError)
    assert result.problems == ["description: must be a non-empty string"]
