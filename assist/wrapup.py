"""Wrap-up: when a call ends, the disposition it most likely gets (from the playbook's
`dispositions:`, chosen by the call's intents and categories, with the reason) and an
after-call note; the agent accepts or edits both (`POST /v1/calls/{id}/wrapup`).

A disposition matches through the categories the call matched (each counts 2) and the
customer intents it saw (each time counts 1); the best total wins, ties going to the one
listed first. With nothing matching, the one marked `default: true` is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Disposition:
    id: str
    label: str
    intents: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    default: bool = False


@dataclass(frozen=True, slots=True)
class Prediction:
    disposition: Disposition
    reason: str
    alternatives: tuple[Disposition, ...]


def predict(
    dispositions: tuple[Disposition, ...], intents: Mapping[str, int], categories: set[str]
) -> Prediction | None:
    """The best disposition for a call that saw `intents` (id → times) and matched
    `categories` (None: the playbook has no dispositions)."""
    if not dispositions:
        return None
    scored: list[tuple[int, int, Disposition, list[str]]] = []
    for order, d in enumerate(dispositions):
        why = [f"category {c} matched" for c in d.categories if c in categories]
        why += [
            f"intent {i} ({intents[i]}×)" if intents[i] > 1 else f"intent {i}"
            for i in d.intents
            if intents.get(i)
        ]
        points = 2 * sum(c in categories for c in d.categories)
        points += sum(intents.get(i, 0) for i in d.intents)
        if points:
            scored.append((points, -order, d, why))
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
    others = tuple(s[2] for s in scored[1:4])
    if scored:
        _, _, best, why = scored[0]
        return Prediction(best, "; ".join(why), others)
    fallback = next((d for d in dispositions if d.default), None)
    if fallback is None:
        return None
    return Prediction(fallback, "no other disposition matched this call", ())
