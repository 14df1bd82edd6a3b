"""Categories: a playbook's named conditions over what was said and how the call went
("calls where the customer mentions cancelling", "agent did not give the disclosure in the
first 30 s", "a silence over 20 s"). Each category matches a call at most once; the match is
the `category.matched` event (stored, searchable with `/v1/calls?category=NAME`, optionally an
alert).

Two kinds (a category is one or the other; `parse_playbook` checks):
- **utterance** conditions, all of which one final must meet: `phrases` (any of), `all_phrases`
  (every one, in that utterance), `intents` (the utterance's intent), `sentiment_below` (its
  score), `entities` (kinds it named), `channel`, and where in the call it may be:
  `first_seconds` (it starts within the first N s) or `last_seconds` (it ends within the last
  N s: decided when the call ends). With `absent: true` the category matches when **no**
  final met them (once the first N s are over, or at the end of the call);
- **call** conditions: `silence_over` (nobody spoke for longer than N s; an ongoing silence
  counts as soon as it is that long) and `overtalk_over` (more than N s of overtalk in all).

Phrases are matched case-insensitively on whole words, punctuation ignored: "cancel my
account" matches "...I want to CANCEL my account!" but not "cancel my accounts".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

WORD = re.compile(r"[\w']+")


def words_of(text: str) -> tuple[str, ...]:
    """Lowercase words, apostrophes dropped ("Don't" → "dont"), punctuation ignored."""
    return tuple(w.replace("'", "") for w in WORD.findall(text.lower()) if w.strip("'"))


def has_phrase(said: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return n > 0 and any(said[i : i + n] == phrase for i in range(len(said) - n + 1))


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    label: str = ""
    channel: str = ""  # "": any channel
    phrases: tuple[str, ...] = ()
    all_phrases: tuple[str, ...] = ()
    intents: tuple[str, ...] = ()
    sentiment_below: float | None = None
    entities: tuple[str, ...] = ()
    first_seconds: float | None = None
    last_seconds: float | None = None
    absent: bool = False
    silence_over: float | None = None
    overtalk_over: float | None = None
    alert: str = ""  # the severity of an alert when it matches ("": no alert)

    @property
    def per_call(self) -> bool:
        """Decided from the call's figures, not from one utterance."""
        return self.silence_over is not None or self.overtalk_over is not None

    def holds(self, u: Utterance) -> bool:
        """Whether one final meets the utterance conditions (not the time window)."""
        if self.channel and u.channel != self.channel:
            return False
        said = words_of(u.text)
        if self.phrases and not any(has_phrase(said, words_of(p)) for p in self.phrases):
            return False
        if self.all_phrases and not all(has_phrase(said, words_of(p)) for p in self.all_phrases):
            return False
        if self.intents and u.intent not in self.intents:
            return False
        if self.sentiment_below is not None and (
            u.sentiment is None or not u.sentiment < self.sentiment_below
        ):
            return False
        return not (self.entities and not set(self.entities) & set(u.entities))


@dataclass(frozen=True, slots=True)
class Utterance:
    channel: str
    utterance: int
    start: float
    end: float
    text: str
    intent: str | None = None
    sentiment: float | None = None  # None: not read (another language)
    entities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Match:
    category: Category
    channel: str
    start: float
    end: float
    utterance: int | None = None
    text: str = ""


@dataclass
class CategoryMatcher:
    """One call's categories: feed it finals, the call's time, and its end."""

    categories: Sequence[Category]
    decided: set[str] = field(default_factory=set)  # matched, or can no longer match
    matched: set[str] = field(default_factory=set)
    # utterances that met a `last_seconds` category's conditions (decided at the end)
    _late: dict[str, list[Utterance]] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)  # absent categories whose conditions held
    # per channel, the latest start of a final read: finals of a channel are read in order,
    # so everything said on it before then has been read
    _read_until: dict[str, float] = field(default_factory=dict)

    @property
    def timed(self) -> bool:
        """Whether any category is decided by the call's time (`on_time` must be called)."""
        return any(c.per_call or (c.absent and c.first_seconds) for c in self.categories)

    def on_utterance(self, u: Utterance) -> list[Match]:
        self._read_until[u.channel] = max(self._read_until.get(u.channel, 0.0), u.start)
        out = []
        for c in self.categories:
            if c.name in self.decided or c.per_call or not c.holds(u):
                continue
            if c.first_seconds is not None and u.start > c.first_seconds:
                continue
            if c.last_seconds is not None:
                self._late.setdefault(c.name, []).append(u)
                continue
            if c.absent:
                self._seen.add(c.name)
                continue
            out.append(self._match(c, u.channel, u.start, u.end, u.utterance, u.text))
        return out

    def on_time(
        self, now: float, longest_silence: tuple[float, float], overtalk: float
    ) -> list[Match]:
        """The call has reached `now` s; its longest silence so far (an ongoing one included)
        is the span `longest_silence`, its overtalk `overtalk` s."""
        out = []
        for c in self.categories:
            if c.name in self.decided:
                continue
            if c.silence_over is not None:
                start, end = longest_silence
                if end - start > c.silence_over:
                    out.append(self._match(c, c.channel, start, end))
            elif c.overtalk_over is not None:
                if overtalk > c.overtalk_over:
                    out.append(self._match(c, c.channel, 0.0, now))
            elif c.absent and c.first_seconds is not None and self._read_past(c, now):
                if c.name not in self._seen:
                    out.append(self._match(c, c.channel, 0.0, c.first_seconds))
                else:
                    self.decided.add(c.name)  # decided: it was said; never matches
        return out

    def _read_past(self, c: Category, now: float) -> bool:
        """Whether the first `c.first_seconds` of the call have been read on the channels `c`
        watches: the call is past them, and a final that started after them was read there
        (speech is read seconds after it is said: a disclosure begun at 57 s must count).
        A channel that never speaks again is decided at the end of the call."""
        assert c.first_seconds is not None
        if now < c.first_seconds:
            return False
        channels = [c.channel] if c.channel else list(self._read_until) or [""]
        return all(self._read_until.get(ch, -1.0) > c.first_seconds for ch in channels)

    def on_end(
        self, duration: float, longest_silence: tuple[float, float], overtalk: float
    ) -> list[Match]:
        """The call is over: the figures' last word, then `last_seconds` and `absent`."""
        out = self.on_time(duration, longest_silence, overtalk)
        for c in self.categories:
            if c.name in self.decided or c.per_call:
                continue
            if c.last_seconds is not None:
                window = duration - c.last_seconds
                late = [u for u in self._late.get(c.name, []) if u.end >= window]
                if c.absent and not late:
                    out.append(self._match(c, c.channel, max(0.0, window), duration))
                elif not c.absent and late:
                    u = late[0]
                    out.append(self._match(c, u.channel, u.start, u.end, u.utterance, u.text))
            elif c.absent and c.name not in self._seen:
                out.append(self._match(c, c.channel, 0.0, duration))
        return out

    def _match(
        self,
        c: Category,
        channel: str,
        start: float,
        end: float,
        utterance: int | None = None,
        text: str = "",
    ) -> Match:
        self.decided.add(c.name)
        self.matched.add(c.name)
        return Match(c, channel, round(start, 2), round(end, 2), utterance, text)
