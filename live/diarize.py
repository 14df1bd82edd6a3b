"""Agent and customer on one channel: the finals of a mixed call, split and labelled by voice.

A call whose start asks for `diarize` is recognized as one channel; each final of it comes
here before anything else sees it. Voice prints (`models.speaker`: 1.6 s windows starting
every 0.5 s of call time over the final's speech, computed on the diarization thread, never on
the event loop, and made while the speech is heard so that a final waits only for the windows
at its edges) put each word down to a speaker of the call (`SpeakerClusters`, none known at
the start); a final in which the speaker changes is cut at the change into parts, each of which
becomes a `transcript.final` on the channel `agent` or `customer`, exactly as on a two-channel
call.

Which voice is the agent comes from what each says (`assist.roles.RoleEvidence`) and, with
nothing to go on, who spoke first, or the agent's kept voice print. After every final the
call's prints are clustered again (k-means over the voices heard, at most three, weighted by
print length, from the current centres and from the k least alike prints; voices that come out
alike are one): a part whose speaker changes, or a speaker whose role changes, is corrected
with a `transcript.relabeled` (screens move the line, the store keeps the corrected channel).
A third voice is a party of its own: saying no agent phrase and heard only before both others
spoke, a recorded prompt (an IVR's menu before the agent answers), on the agent's line;
otherwise (a second agent after a transfer) the agent if it says what agents say, else the
customer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import permutations
from typing import Any

import numpy as np

from assist.roles import ANOTHER_AGENT, RoleEvidence
from audio.codec import TARGET_RATE, Float32Array
from models.speaker import HOP, WINDOW_FRAMES, Print, SpeakerClusters, SpeakerEncoder, raised
from models.whisper import WordTiming

log = logging.getLogger("callcue.diarize")

# The mixed channel's audio is kept from the start of the oldest final not yet split (a
# recognizer far behind, or a client sending faster than real time, must not lose it), at
# most this much (16 kHz float32: 19 MB)
KEEP_AUDIO_S = 300.0
KEEP_PRINTS = 1200  # prints kept for re-clustering (10 minutes of speech); older parts stay
MIN_PART_S = 0.8  # a speaker change shorter than this inside a final is not a cut
NEW_VOICE_S = 1.0  # a print shorter than this joins a voice heard already (it is noisy)
SAME_VOICE = 0.88  # refit centres more alike than this: one voice, not two
PAD_S = 0.1  # audio around a final's words that its prints include
# A final's prints are of 1.6 s windows starting every GRID_S call seconds. Those of speech are
# made as it is heard (`CallDiarizer.heard`), so a final waits only for the prints of its edges:
# a window of its own for words more than EDGE_S before its first window or after its last.
GRID_S = 0.5
WINDOW_S = WINDOW_FRAMES * HOP / TARGET_RATE
EDGE_S = 0.25
MIN_PRINT_S = 0.3  # a final shorter than this (with PAD_S) has no print: too short for a voice
ONE_PRINT_MARGIN = 0.1  # a part of one print moves to the voice it is this much nearer
# The agent's kept voice print decides: the voice it is this much nearer to than to the other
# (two voices heard); one voice heard so far is the agent's this near to it. (On the AWS call,
# a print kept from its first 90 s was 0.99 from the agent's voice in the rest and 0.82 from
# the customer's; one short print of the agent's was 0.76 from it: one voice far from the
# print is not taken for the customer's.)
VOICE_MARGIN = 0.05
VOICE_SAME = 0.9


@dataclass
class Speakers:
    """What diarization shares across a node's calls: the speaker encoder (read from disk
    for the first diarized call), the one thread voice prints are made on (beside Whisper,
    not behind it) and the CPU time they took."""

    default: bool = False  # one-channel calls that do not say are diarized (CALLCUE_DIARIZE)
    # agents' voice prints are kept from their two-channel calls (the store holds them) and
    # tell the agent on their mono calls (CALLCUE_VOICE_PRINTS; off: nothing is kept)
    keep_prints: bool = False
    encoder: SpeakerEncoder | None = None
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="callcue-speaker")
    )
    cpu_seconds: float = 0.0  # spent on voice prints

    async def load(self) -> SpeakerEncoder:
        """The speaker encoder, read from disk (in a thread) the first time it is needed."""
        if self.encoder is None:
            encoder = await asyncio.to_thread(SpeakerEncoder)
            if self.encoder is None:
                self.encoder = encoder
        return self.encoder

    def spent(self, seconds: float) -> None:
        self.cpu_seconds += seconds

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class RecentAudio:
    """One channel's audio from what its owner still needs (`release`), at most the last
    `keep_seconds`, addressed by call seconds."""

    def __init__(self, keep_seconds: float = KEEP_AUDIO_S) -> None:
        self._chunks: list[Float32Array] = []
        self._start = 0  # call sample of the first sample kept
        self._length = 0
        self._keep = int(keep_seconds * TARGET_RATE)

    def push(self, samples: Float32Array) -> None:
        self._chunks.append(np.asarray(samples, dtype=np.float32))
        self._length += len(samples)
        if self._length > self._keep:
            self._drop(self._length - self._keep)

    def release(self, before: float) -> None:
        """The audio before `before` call seconds is not needed any more."""
        self._drop(min(int(before * TARGET_RATE) - self._start, self._length))

    def _drop(self, count: int) -> None:
        """Forget the oldest `count` samples (cutting into a chunk where it must)."""
        while count > 0 and self._chunks:
            first = self._chunks[0]
            if len(first) <= count:
                self._chunks.pop(0)
                taken = len(first)
            else:
                self._chunks[0] = first[count:].copy()  # (a view would keep all of it)
                taken = count
            self._length -= taken
            self._start += taken
            count -= taken

    @property
    def seconds(self) -> float:
        """How much is kept."""
        return self._length / TARGET_RATE

    @property
    def start(self) -> float:
        """The call second of the first sample kept."""
        return self._start / TARGET_RATE

    @property
    def end(self) -> float:
        """The call second where the audio pushed so far ends."""
        return (self._start + self._length) / TARGET_RATE

    def between(self, start: float, end: float) -> Float32Array:
        """A copy of the audio from `start` to `end` call seconds (what is kept of it)."""
        lo = max(int(start * TARGET_RATE), self._start)
        hi = min(int(end * TARGET_RATE), self._start + self._length)
        if hi <= lo:
            return np.zeros(0, dtype=np.float32)
        pieces, at = [], self._start
        for chunk in self._chunks:
            if at >= hi:
                break
            if at + len(chunk) > lo:
                pieces.append(chunk[max(lo - at, 0) : hi - at])
            at += len(chunk)
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def voice_prints(
    encoder: SpeakerEncoder, audio: Float32Array, offset: float
) -> tuple[list[Print], float]:
    """(worker thread) Voice prints of a stretch of speech, quiet speech first raised to
    -30 dBFS as Resemblyzer does, and the CPU seconds they took."""
    started = time.thread_time()
    prints = encoder.prints(raised(audio), offset=offset, min_seconds=0.3)
    return prints, time.thread_time() - started


def span_prints(
    encoder: SpeakerEncoder, audio: Float32Array, offset: float, spans: list[tuple[float, float]]
) -> tuple[list[Print], float]:
    """(worker thread) `SpeakerEncoder.span_prints`, and the CPU seconds they took."""
    started = time.thread_time()
    prints = encoder.span_prints(audio, offset, spans)
    return prints, time.thread_time() - started


@dataclass(slots=True)
class Part:
    """One `transcript.final` of a diarized call: a speaker's run of words in one final."""

    utterance: int  # the id screens and the store know it by
    start: float
    end: float
    text: str
    words: tuple[WordTiming, ...]
    speaker: int
    role: str
    prints: list[int]  # indices (call-wide) of the prints that decided it
    seq: int = 0  # of its transcript.final, once published


@dataclass(slots=True)
class Relabel:
    utterance: int
    final_seq: int
    channel: str
    previous: str


@dataclass
class CallDiarizer:
    """The speakers of one mixed call. `push` its audio (on the loop); `split` each final
    (awaits the prints, computed on `executor`)."""

    encoder: SpeakerEncoder
    executor: ThreadPoolExecutor
    evidence: RoleEvidence = field(default_factory=RoleEvidence)
    clusters: SpeakerClusters = field(default_factory=SpeakerClusters)
    on_seconds: Callable[[float], None] | None = None  # CPU seconds spent on voice prints
    # the recognizer says an utterance has ended this long after its speech (its VAD's
    # hangover): windows after that are not printed in the background (a final that needs
    # one makes it)
    hangover_s: float = 0.4
    # the agent's voice print kept from their two-channel calls (CALLCUE_VOICE_PRINTS)
    agent_voice: Any = None
    recent: RecentAudio = field(default_factory=RecentAudio)
    _prints: list[Print] = field(default_factory=list)
    _first_print: int = 0  # call-wide index of _prints[0]
    parts: list[Part] = field(default_factory=list)
    _ids: dict[int, int] = field(default_factory=dict)  # recognizer utterance → first part id
    _next_id: int = 0
    _provisional: dict[int, str] = field(default_factory=dict)  # recognizer utterance → role
    _last_split: int = -1  # the latest recognizer utterance split
    # prints of speech made as it is heard (`heard`): grid window (its start / GRID_S) → print
    _ready: dict[int, Print] = field(default_factory=dict)
    _grid_next: int = 0  # the first grid window not yet made (or passed over)
    _making: Future[tuple[list[Print], float]] | None = None
    _making_span: tuple[float, float] = (0.0, 0.0)  # (call seconds) what it is printing
    _speech: tuple[float, float | None] | None = None  # (from, until) call seconds, to print

    def push(self, samples: Float32Array) -> None:
        self.recent.push(samples)

    def heard(self, speech_from: float | None) -> None:
        """(on the loop, after each push) `speech_from`: the call second where the utterance
        the recognizer is hearing began (None: none). The grid windows of speech whose audio
        is in are printed in the background, a second at a time, and up to where speech
        ended once it has: a final then waits only for the prints of its edges."""
        self._collect()
        end = self.recent.end
        if speech_from is not None:
            self._speech = (speech_from, None)
        elif self._speech is not None and self._speech[1] is None:
            self._speech = (self._speech[0], end - self.hangover_s)  # it has just ended
        if self._speech is None or self._making is not None:
            return
        since, until = self._speech
        first = max(
            self._grid_next,
            math.ceil(max(since - PAD_S, self.recent.start) / GRID_S - 1e-6),
        )
        last = math.floor(((end if until is None else until) - WINDOW_S) / GRID_S + 1e-6)
        if until is None and last - first < 1:  # (in speech: two windows at a time)
            return
        if until is not None:
            self._speech = None
        if last < first:
            return
        self._grid_next = last + 1
        spans = [(k * GRID_S, k * GRID_S + WINDOW_S) for k in range(first, last + 1)]
        audio = self.recent.between(spans[0][0], spans[-1][1])
        try:
            self._making = self.executor.submit(
                span_prints, self.encoder, audio, spans[0][0], spans
            )
        except RuntimeError:  # (the node is closing: each final makes its own)
            return
        self._making_span = (spans[0][0], spans[-1][1])

    def _collect(self) -> None:
        """The background prints, once made."""
        making = self._making
        if making is None or not making.done():
            return
        self._making = None
        if making.cancelled():  # (the node is closing)
            return
        try:
            prints, seconds = making.result()
        except Exception:  # (each final's own prints are made when it is split)
            log.exception("voice prints of speech failed")
            return
        if self.on_seconds is not None:
            self.on_seconds(seconds)
        self._forget_prints_before(self.recent.start)
        for p in prints:
            self._ready[round(p.start / GRID_S)] = p

    def _forget_prints_before(self, seconds: float) -> None:
        """Background prints of windows that start before `seconds`: no final needs them."""
        self._ready = {k: p for k, p in self._ready.items() if k * GRID_S >= seconds}

    @staticmethod
    def _spans(lo: float, hi: float) -> list[tuple[float, float, int | None]]:
        """The windows (start, end, grid window or None) whose prints tell who said the words
        from `lo` to `hi`: the grid windows within, and one at an edge the grid leaves more
        than EDGE_S of; a stretch shorter than a window is one print."""
        if hi - lo < MIN_PRINT_S:
            return []
        if hi - lo < WINDOW_S:
            return [(lo, hi, None)]
        first = math.ceil(lo / GRID_S - 1e-6)
        last = math.floor((hi - WINDOW_S) / GRID_S + 1e-6)
        spans: list[tuple[float, float, int | None]] = [
            (k * GRID_S, k * GRID_S + WINDOW_S, k) for k in range(first, last + 1)
        ]
        if not spans or spans[0][0] - lo > EDGE_S:
            spans.insert(0, (lo, lo + WINDOW_S, None))
        if spans[-1][1] < hi - EDGE_S:
            spans.append((hi - WINDOW_S, hi, None))
        return spans

    # -- ids and provisional roles -----------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def partial_id(self, utterance: int) -> int:
        """The id a recognizer utterance's live line has (its final's first part keeps it)."""
        if utterance not in self._ids:
            self._ids[utterance] = self._new_id()
        return self._ids[utterance]

    def is_late(self, utterance: int) -> bool:
        """A partial of an utterance whose final was already split (it must not open a
        line that no final would replace)."""
        return utterance <= self._last_split

    def shown_id(self, utterance: int) -> int | None:
        """The id a recognizer utterance's partials were shown under (None: none shown)."""
        return self._ids.get(utterance)

    def forget(self, utterance: int, done: bool = False) -> None:
        """A recognizer utterance whose partials' line is gone (`done`: its final came, and
        will not be split: no speech after all, or its prints failed)."""
        self._ids.pop(utterance, None)
        self._provisional.pop(utterance, None)
        if done:
            self._last_split = max(self._last_split, utterance)

    def provisional_role(self, utterance: int) -> str:
        """The role a partial is shown under before its final is split: the last speaker's."""
        if utterance in self._provisional:
            return self._provisional[utterance]
        role = self.parts[-1].role if self.parts else "agent"
        self._provisional[utterance] = role
        return role

    # -- finals ------------------------------------------------------------------------------

    async def split(
        self, utterance: int, start: float, end: float, text: str, words: Sequence[WordTiming]
    ) -> list[Part]:
        """The parts of one final, in order (the first keeps the id its partials had)."""
        first_id = self._ids.get(utterance)
        self._last_split = max(self._last_split, utterance)
        for stale in [u for u in self._ids if u < utterance]:
            self.forget(stale)
        timed = bool(words)
        if not words:  # (untimed: one stretch, published without words)
            words = (WordTiming(text, start, end, 0.0),)
        lo = max(words[0].start - PAD_S, self.recent.start)
        hi = min(words[-1].end + PAD_S, self.recent.end)
        making = self._making
        if making is not None and self._making_span[0] < hi and lo < self._making_span[1]:
            await asyncio.wait([asyncio.wrap_future(making)])  # (prints of its speech)
            self._collect()
        spans = self._spans(lo, hi)
        missing = [(a, b) for a, b, k in spans if k is None or k not in self._ready]
        made: dict[tuple[float, float], Print] = {}
        if missing:
            loop = asyncio.get_running_loop()
            got, seconds = await loop.run_in_executor(
                self.executor, span_prints, self.encoder, self.recent.between(lo, hi), lo, missing
            )
            made = {(p.start, p.end): p for p in got}
            if self.on_seconds is not None:
                self.on_seconds(seconds)
        prints = []
        for a, b, k in spans:
            made_now = made.get((round(a, 3), round(b, 3)))
            kept = self._ready.get(k, made_now) if k is not None else made_now
            if kept is not None:  # (None: outside the audio kept)
                prints.append(kept)
        self.recent.release(lo)  # finals come in order: nothing before this one is needed
        self._forget_prints_before(lo)
        self.forget(utterance)
        base = self._first_print + len(self._prints)
        # (none: too short to hear a voice, the speaker before it goes on)
        labels = [
            self.clusters.assign(p.vector, may_start=p.end - p.start >= NEW_VOICE_S) for p in prints
        ]
        self._prints.extend(prints)
        runs = self._runs(words, prints, labels)
        out: list[Part] = []
        for k, (speaker, run_words, indices) in enumerate(runs):
            part_id = first_id if k == 0 and first_id is not None else self._new_id()
            part_text = _join(run_words) if len(runs) > 1 else text
            self.evidence.add(speaker, part_text)
            out.append(
                Part(
                    part_id,
                    run_words[0].start,
                    run_words[-1].end,
                    part_text,
                    tuple(run_words) if timed else (),
                    speaker,
                    "",
                    [base + i for i in indices],
                )
            )
        self.parts.extend(out)
        self._opening()
        self._hear_agent_voice()
        roles = self.evidence.roles(self._live())
        for part in out:
            part.role = roles.get(part.speaker, "customer")
        self._trim()
        return out

    def _runs(
        self, words: Sequence[WordTiming], prints: list[Print], labels: list[int]
    ) -> list[tuple[int, list[WordTiming], list[int]]]:
        """The final's words in runs of one speaker; short runs join the run before them (or
        after, at the start)."""
        if not prints:  # (no voice heard yet: every part so far is speaker 0)
            return [(self.parts[-1].speaker if self.parts else 0, list(words), [])]
        centres = np.array([(p.start + p.end) / 2 for p in prints])
        nearest = [int(np.argmin(np.abs(centres - (w.start + w.end) / 2))) for w in words]
        runs: list[tuple[int, list[WordTiming], list[int]]] = []
        for word, index in zip(words, nearest, strict=True):
            speaker = labels[index]
            if runs and runs[-1][0] == speaker:
                runs[-1][1].append(word)
                if index not in runs[-1][2]:
                    runs[-1][2].append(index)
            else:
                runs.append((speaker, [word], [index]))
        merged: list[tuple[int, list[WordTiming], list[int]]] = []
        for run in runs:
            span = run[1][-1].end - run[1][0].start
            if merged and (span < MIN_PART_S or merged[-1][0] == run[0]):
                merged[-1][1].extend(run[1])
                merged[-1][2].extend(i for i in run[2] if i not in merged[-1][2])
            else:
                merged.append(run)
        if len(merged) > 1:  # a short first run joins the next
            head = merged[0]
            if head[1][-1].end - head[1][0].start < MIN_PART_S:
                merged[1] = (merged[1][0], head[1] + merged[1][1], head[2] + merged[1][2])
                merged.pop(0)
        return merged

    def _hear_agent_voice(self) -> None:
        """With the agent's voice print known: the voice nearest to it is the agent's, once
        it is clearly nearer than the other (or, alone, close enough)."""
        live = self._live()
        if self.agent_voice is None or not live:
            return
        sims = self.clusters.similarities(self.agent_voice)[live]
        best = int(np.argmax(sims))
        self.evidence.voice_agent = None
        if len(sims) == 1:
            if sims[best] >= VOICE_SAME:
                self.evidence.voice_agent = live[best]
        elif float(sims[best] - np.delete(sims, best).max()) >= VOICE_MARGIN:
            self.evidence.voice_agent = live[best]

    def _opening(self) -> None:
        """Who spoke first, and a recorded prompt: of three voices, one that says nothing
        agents say and whose every part ended before either other voice's first began (an
        IVR's menu before the agent answers) is the company's (`RoleEvidence.prompt`), and
        who spoke first is then the first voice after it. A sub-second part later in its
        voice does not undo it (a stray print). Who spoke first: the first part of a second
        or more (a sub-second part's voice is too noisy to say), or until one comes the very
        first. Settled once the call's first prints, and so its first parts, are forgotten
        (10 minutes of speech)."""
        if self._first_print > 0:
            return
        live = self._live()
        first_heard: dict[int, float] = {}
        last_heard: dict[int, float] = {}
        for part in self.parts:  # (in call order)
            if part.speaker in live:
                first_heard.setdefault(part.speaker, part.start)
                if part.speaker not in last_heard or part.end - part.start >= NEW_VOICE_S:
                    last_heard[part.speaker] = part.end
        prompt = None
        if len(first_heard) > 2:
            for voice, last in last_heard.items():
                if self.evidence.agent_phrases_in(voice) < ANOTHER_AGENT and all(
                    last <= start + PAD_S for v, start in first_heard.items() if v != voice
                ):
                    prompt = voice
        self.evidence.prompt = prompt
        after = [p for p in self.parts if p.speaker != prompt]  # (in call order)
        long = (p for p in after if p.end - p.start >= NEW_VOICE_S)
        first = next(long, after[0] if after else None)
        if first is not None:
            self.evidence.first = first.speaker

    def _live(self) -> list[int]:
        """The voices that have prints (not merged into another)."""
        return [k for k, s in enumerate(self.clusters.speakers) if s.count > 0]

    def recluster(self) -> list[Relabel]:
        """(worker thread: the call's finals wait for it, nothing else changes its state)
        Cluster every kept print again; parts whose speaker or role changed, relabelled
        (only parts already published: their `seq` is set)."""
        changes: list[Relabel] = []
        refit = self._refit()
        if refit is not None:
            relabelled, centres, merged_into = refit
            for part in self.parts:
                kept = [i - self._first_print for i in part.prints if i >= self._first_print]
                gone = part.speaker in merged_into  # its voice was merged: it must move
                if not kept:
                    speaker = merged_into.get(part.speaker, part.speaker)
                else:
                    if len(kept) == 1 and not gone:  # one short print moves only when
                        sims = np.sort(centres @ self._prints[kept[0]].vector)  # clearly
                        if float(sims[-1] - sims[-2]) < ONE_PRINT_MARGIN:  # another voice
                            continue
                    votes = np.bincount([relabelled[i] for i in kept], minlength=len(centres))
                    speaker = int(np.argmax(votes))
                if speaker != part.speaker:
                    self.evidence.move(part.text, part.speaker, speaker)
                    part.speaker = speaker
            for speaker, into in merged_into.items():
                if self.evidence.first == speaker:  # (kept where the opening is settled)
                    self.evidence.first = into
                self.evidence.forget(speaker)
        self._opening()
        self._hear_agent_voice()
        roles = self.evidence.roles(self._live())
        log.debug(
            "voices %s, evidence %s (first %s, by voice print %s), roles %s",
            [s.count for s in self.clusters.speakers],
            {k: round(v, 2) for k, v in self.evidence.scores.items()},
            self.evidence.first,
            self.evidence.voice_agent,
            roles,
        )
        for part in self.parts:
            role = roles.get(part.speaker, "customer")
            if role != part.role:
                if part.seq:
                    changes.append(Relabel(part.utterance, part.seq, role, part.role))
                part.role = role
        return changes

    def _refit(self) -> tuple[Any, Any, dict[int, int]] | None:
        """K-means over the kept prints, k the live voices (each print weighted by its length:
        a short print is a noisy one), started from the voices' centres and from the k prints
        least alike, keeping the tighter result; of three voices, two whose centres come out
        alike are one. Each print's voice and the voices' centres (a row of zeros for a voice
        with no prints), in the speakers' order, and the voices merged into another (→ that
        one); None while there is one voice (or two that sound alike)."""
        speakers = self.clusters.speakers
        live = self._live()
        if len(live) < 2 or len(self._prints) < 2 * len(live):
            return None
        vectors = np.stack([p.vector for p in self._prints])
        weights = np.array([min(p.end - p.start, 1.6) / 1.6 for p in self._prints])
        current = np.stack([speakers[k].centre for k in live])
        best: tuple[float, Any, Any] | None = None
        for start in (current, vectors[_spread_out(vectors, weights, len(live))]):
            labels, centres = _k_means(vectors, weights, start)
            spread = float(weights @ (1 - (vectors * centres[labels]).sum(axis=1)))
            if best is None or spread < best[0]:
                best = (spread, labels, centres)
        assert best is not None
        _, labels, centres = best
        while len(centres) > 2:  # a voice alike to another is the same voice
            alike = centres @ centres.T - 2 * np.eye(len(centres))
            a, b = sorted(np.unravel_index(int(np.argmax(alike)), alike.shape))
            if alike[a, b] <= SAME_VOICE:
                break
            labels, centres = _k_means(vectors, weights, np.delete(centres, b, axis=0))
        if len(centres) == 2 and float(centres[0] @ centres[1]) > SAME_VOICE:
            return None
        # each fitted voice to the live voice it is most like
        to: tuple[int, ...]
        if len(live) == 2:  # (two voices: the one nearest the first voice's centre is it)
            first = int(np.argmax(current[0] @ centres.T))
            to = (live[0], live[1]) if first == 0 else (live[1], live[0])
        else:
            to = max(
                permutations(live, len(centres)),
                key=lambda to: sum(
                    float(speakers[j].centre @ centres[i]) for i, j in enumerate(to)
                ),
            )
        placed = np.zeros((len(speakers), centres.shape[1]))
        for i, j in enumerate(to):
            placed[j] = centres[i]
        labels = np.array([to[i] for i in labels])
        merged_into: dict[int, int] = {}
        for n, k in enumerate(live):  # the clusters follow the refit
            members = vectors[labels == k]
            if len(members):
                speakers[k].total = members.sum(axis=0).astype(np.float64)
                speakers[k].count = len(members)
            elif len(live) > 2:  # merged into another voice: its parts go there, no print
                kept = [j for j in to if j != k and (labels == j).any()]
                merged_into[k] = max(kept, key=lambda j: float(current[n] @ placed[j]))
                speakers[k].total = np.zeros_like(speakers[k].total)  # joins it (a new voice
                speakers[k].count = 0  # may take its place)
        return labels, placed, merged_into

    def _trim(self) -> None:
        extra = len(self._prints) - KEEP_PRINTS
        if extra > 0:
            del self._prints[:extra]
            self._first_print += extra
        oldest = self._first_print
        self.parts = [p for p in self.parts if not p.prints or p.prints[-1] >= oldest][-2000:]


def _k_means(vectors: Any, weights: Any, centres: Any) -> tuple[Any, Any]:
    """Weighted spherical k-means from `centres`: (each vector's cluster, the centres)."""
    labels = np.argmax(vectors @ centres.T, axis=1)
    for _ in range(30):
        new = []
        for k in range(len(centres)):
            mask = labels == k
            centre = weights[mask] @ vectors[mask] if mask.any() else centres[k]
            new.append(centre / max(float(np.linalg.norm(centre)), 1e-9))
        centres = np.stack(new)
        updated = np.argmax(vectors @ centres.T, axis=1)
        if np.array_equal(updated, labels):
            break
        labels = updated
    return labels, centres


def _spread_out(vectors: Any, weights: Any, count: int) -> list[int]:
    """`count` long prints as unlike each other as can be: the one least like the mean, then
    each time the one least like all chosen so far."""
    long = weights < 0.6  # (a long print: +1 keeps short ones out of the choice)
    chosen = [int(np.argmin(vectors @ (weights @ vectors) + long))]
    while len(chosen) < count:
        chosen.append(int(np.argmin((vectors @ vectors[chosen].T).max(axis=1) + long)))
    return chosen


def _join(words: Sequence[WordTiming]) -> str:
    """The text of a run of timed words (Whisper's words carry their leading space; words
    without one are spaced)."""
    if all(w.word[:1].isspace() for w in words[1:]):
        return "".join(w.word for w in words).strip()
    return " ".join(w.word.strip() for w in words if w.word.strip())
