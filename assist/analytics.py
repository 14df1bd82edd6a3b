"""Call analytics: who talked how much, silences, overtalk, interruptions, pace, how fast the
agent answered and how the customer's mood went, from the finals' word timings.

Pure and synchronous: the live session feeds it finals, revisions and sentiment as they are
published; the QA API feeds it the same from the store. Times are seconds of call audio.

Definitions (documented in README, "Call analytics"):
- a channel *talks* over its timed words, pauses shorter than `JOIN_GAP` between two words of
  one utterance included (an utterance without word timings talks from its start to its end);
- *silence*: no channel talks (from 0 to the call's duration, the start and the end included);
- *overtalk*: two or more channels talk at once (a one-channel call has none);
- an *interruption* of channel A: A starts talking while another channel talks and the two
  overlap by at least `INTERRUPTION_OVERLAP` (a shorter overlap, such as a turn change that
  clips a word, is overtalk only);
- *agent response*: from the end of a customer turn to the start of the agent's next one (0
  when the agent started before the customer stopped), where the channels are named `agent`
  and `customer`; a customer "ok" while the agent talks starts no turn, and an agent span
  under `BACKCHANNEL` s or inside the customer's turn answers none;
- *sentiment* start/end: the mean score (p(positive) - p(negative)) of a channel's first and
  last `SENTIMENT_SPAN` utterances the sentiment model read.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

JOIN_GAP = 0.5  # seconds between two words of one utterance still counted as talking
INTERRUPTION_OVERLAP = 0.5  # seconds of overlap for a start to count as an interruption
SENTIMENT_SPAN = 3  # utterances averaged for a channel's starting and ending sentiment
BACKCHANNEL = 1.0  # seconds: an agent span shorter than this ("mm-hmm") answers no turn

Span = tuple[float, float]


@dataclass
class _Utterance:
    channel: str
    start: float
    end: float
    words: tuple[Span, ...]
    count: int  # words said (for the pace)


def utterance_spans(start: float, end: float, words: Sequence[Span]) -> list[Span]:
    """Where one utterance talks: its words, pauses under JOIN_GAP joined; no words: all."""
    timed = sorted((s, max(s, e)) for s, e in words)
    if not timed:
        return [(start, max(start, end))]
    spans = [timed[0]]
    for s, e in timed[1:]:
        last_s, last_e = spans[-1]
        if s - last_e < JOIN_GAP:
            spans[-1] = (last_s, max(last_e, e))
        else:
            spans.append((s, e))
    return spans


def merge(spans: Iterable[Span]) -> list[Span]:
    """The union of spans, as sorted disjoint spans."""
    out: list[Span] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def length(spans: Iterable[Span]) -> float:
    return sum(e - s for s, e in spans)


def overlap(a: Span, b: Span) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class CallAnalytics:
    """The figures of one call, updated as finals, revisions and sentiment arrive."""

    channels: tuple[str, ...]
    _utterances: dict[tuple[str, int], _Utterance] = field(default_factory=dict)
    _sentiment: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    # as of the last `summary` (what a once-a-second check reads without recomputing)
    longest_silence: Span = (0.0, 0.0)
    overtalk: float = 0.0
    talk_end: float = 0.0  # where the latest final ended

    def add_final(
        self,
        channel: str,
        utterance: int,
        start: float,
        end: float,
        words: Sequence[Any] = (),
        text: str = "",
    ) -> None:
        """A final (or a revision of it: the same channel and utterance replaces it). `words`:
        objects or dicts with `start` and `end`."""
        timed = tuple((float(_get(w, "start")), float(_get(w, "end"))) for w in words)
        count = len(timed) if timed else len(text.split())
        self._utterances[(channel, utterance)] = _Utterance(channel, start, end, timed, count)
        self.talk_end = max(self.talk_end, end)

    def relabel(self, previous: str, utterance: int, channel: str) -> None:
        """A diarized call's final was the other party's (`transcript.relabeled`)."""
        said = self._utterances.pop((previous, utterance), None)
        if said is not None:
            self._utterances[(channel, utterance)] = replace(said, channel=channel)
        mood = self._sentiment.pop((previous, utterance), None)
        if mood is not None:
            self._sentiment[(channel, utterance)] = mood

    def add_sentiment(self, channel: str, utterance: int, score: float) -> None:
        start = self._utterances.get((channel, utterance))
        self._sentiment[(channel, utterance)] = (start.start if start else 0.0, score)

    def talk(self) -> dict[str, list[Span]]:
        """Each channel's talking spans, merged."""
        spans: dict[str, list[Span]] = {c: [] for c in self.channels}
        for u in self._utterances.values():
            spans.setdefault(u.channel, []).extend(utterance_spans(u.start, u.end, u.words))
        return {c: merge(s) for c, s in spans.items()}

    def last_talk_end(self) -> float:
        return max((u.end for u in self._utterances.values()), default=0.0)

    def summary(self, duration: float) -> dict[str, Any]:
        """The figures as `GET /v1/calls/{id}/analytics` and `call.analytics` give them."""
        talk = self.talk()
        duration = max(duration, max((s[-1][1] for s in talk.values() if s), default=0.0))
        speech = merge(s for spans in talk.values() for s in spans)
        gaps: list[Span] = []
        cursor = 0.0
        for s, e in speech:
            if s > cursor:
                gaps.append((cursor, s))
            cursor = max(cursor, e)
        if duration > cursor:
            gaps.append((cursor, duration))
        self.longest_silence = max(gaps, key=lambda g: g[1] - g[0], default=(0.0, 0.0))
        self.overtalk = _overtalk(talk)
        words = {c: 0 for c in talk}
        for u in self._utterances.values():
            words[u.channel] = words.get(u.channel, 0) + u.count
        return {
            "duration_seconds": round(duration, 2),
            "talk_seconds": {c: round(length(s), 2) for c, s in talk.items()},
            "silence_seconds": round(max(0.0, duration - length(speech)), 2),
            "longest_silence_seconds": round(self.longest_silence[1] - self.longest_silence[0], 2),
            "overtalk_seconds": round(self.overtalk, 2),
            "interruptions": _interruptions(talk),
            "words_per_minute": {
                c: round(words[c] / length(s) * 60, 1) if length(s) >= 1.0 else None
                for c, s in talk.items()
            },
            "agent_response_seconds": _responses(talk),
            "sentiment": self._sentiment_summary(),
        }

    def timeline(self, duration: float, min_silence: float = 1.0) -> dict[str, Any]:
        """Who talked when (per channel), overtalk, and silences of `min_silence` s or more:
        the QA page's timeline. Spans are [start, end] in seconds."""
        talk = self.talk()
        duration = max(duration, max((s[-1][1] for s in talk.values() if s), default=0.0))
        speech = merge(s for spans in talk.values() for s in spans)
        silences = []
        cursor = 0.0
        for s, e in [*speech, (duration, duration)]:
            if s - cursor >= min_silence:
                silences.append((cursor, s))
            cursor = max(cursor, e)

        def rounded(spans: list[Span]) -> list[list[float]]:
            return [[round(s, 2), round(e, 2)] for s, e in spans]

        return {
            "talk": {c: rounded(spans) for c, spans in talk.items()},
            "overtalk": rounded(overtalk_spans(talk)),
            "silences": rounded(silences),
        }

    def _sentiment_summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for channel in self.channels:
            scores = [
                score
                for (c, _), (_, score) in sorted(self._sentiment.items(), key=lambda i: i[1][0])
                if c == channel
            ]
            if scores:
                head, tail = scores[:SENTIMENT_SPAN], scores[-SENTIMENT_SPAN:]
                out[f"{channel}_start"] = round(sum(head) / len(head), 2)
                out[f"{channel}_end"] = round(sum(tail) / len(tail), 2)
        return out


def _get(word: Any, key: str) -> Any:
    return word[key] if isinstance(word, dict) else getattr(word, key)


def _overtalk(talk: dict[str, list[Span]]) -> float:
    """Seconds during which two or more channels talk."""
    return length(overtalk_spans(talk))


def overtalk_spans(talk: dict[str, list[Span]]) -> list[Span]:
    """Where two or more channels talk at once."""
    edges = sorted(
        (t, +1 if i == 0 else -1) for spans in talk.values() for s in spans for i, t in enumerate(s)
    )
    out: list[Span] = []
    active, since = 0, 0.0
    for t, step in edges:  # at a tie the end (-1) sorts first: touching spans do not overlap
        if active >= 2 and t > since:
            out.append((since, t))
        active += step
        since = t
    return merge(out)


def _interruptions(talk: dict[str, list[Span]]) -> dict[str, int]:
    counts = {c: 0 for c in talk}
    starts = {c: [s for s, _ in spans] for c, spans in talk.items()}
    for channel, spans in talk.items():
        for span in spans:
            for other, theirs in talk.items():
                if other == channel:
                    continue
                # their span that began last before this one did (spans are disjoint, sorted)
                i = bisect.bisect_left(starts[other], span[0]) - 1
                if i >= 0 and overlap(span, theirs[i]) >= INTERRUPTION_OVERLAP:
                    counts[channel] += 1
                    break
    return counts


def _responses(talk: dict[str, list[Span]]) -> dict[str, float | int | None] | None:
    """From the end of each customer turn to the start of the agent's answer (None: no such
    roles). A customer "ok" while the agent talks does not start a turn; an agent
    backchannel (under BACKCHANNEL s, or inside the customer's turn) does not answer one."""
    if "agent" not in talk or "customer" not in talk:
        return None
    spans = sorted(
        [(s, e, "customer") for s, e in talk["customer"]]
        + [(s, e, "agent") for s, e in talk["agent"]]
    )
    times: list[float] = []
    customer_end: float | None = None  # end of the customer turn waiting for an answer
    agent_until = 0.0  # end of the agent's talk so far
    for s, e, who in spans:
        if who == "customer":
            if e <= agent_until:
                continue  # said while the agent was talking
            customer_end = e if customer_end is None else max(customer_end, e)
            continue
        agent_until = max(agent_until, e)
        if customer_end is None or e <= customer_end or e - s < BACKCHANNEL:
            continue
        times.append(max(0.0, s - customer_end))
        customer_end = None
    if not times:
        return {"p50": None, "max": None, "count": 0}
    return {
        "p50": round(_percentile(times, 0.5), 2),
        "max": round(max(times), 2),
        "count": len(times),
    }
