"""One queue for all recognition work across calls: finals first, stale partials replaced."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from audio.codec import TARGET_RATE, Float32Array
from models.whisper import Hypothesis, PartialRequest, WhisperEngine, lower_priority

log = logging.getLogger("callcue.scheduler")


@dataclass(eq=False)
class RecognitionJob:
    """Decode `audio` for channel `key`. A partial's future gets None when it is superseded.
    `prompt` and `prefix` are tokens of the engine that decodes it (finals: `final_engine`)."""

    key: str
    audio: Float32Array
    final: bool
    prompt: tuple[int, ...] = ()
    prefix: tuple[int, ...] = ()
    # finals: `audio` opens with `context_s` s already transcribed as `context` (WhisperEngine)
    context: tuple[int, ...] = ()
    context_s: float = 0.0
    # "en", another Whisper language code, or "auto"; not English: decoded by the
    # multilingual engine whichever the kind (`RecognitionScheduler.engine_for`)
    language: str = "en"
    submitted: float = field(default_factory=time.monotonic)
    future: Future[Hypothesis | None] = field(default_factory=Future)


# The cheaper ways a live final may be decoded to meet its deadline, as stats and the metric
# `callcue_finals_cheaper_total{way}` name them: greedy on the finals' model, greedy on the
# partials' model.
CHEAPER_WAYS = ("greedy", "partials_model")


@dataclass
class SchedulerStats:
    finals_done: int = 0
    partials_done: int = 0
    partials_dropped: int = 0  # superseded by a newer partial while waiting
    partials_skipped: int = 0  # never submitted: the scheduler was overloaded
    finals_overdue: int = 0
    # finals decoded a cheaper way to meet `final_deadline`, by way (`CHEAPER_WAYS`);
    # revision decodes them again with the finals' model
    finals_cheaper: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHEAPER_WAYS, 0))
    final_wait_seconds: float = 0.0
    batches: int = 0  # model calls (a batch of partials is one)

    def count(self, final: bool, waited: float) -> None:
        """A decode finished (here or on a remote worker) after `waited` s in the queue."""
        if final:
            self.finals_done += 1
            self.final_wait_seconds += waited
        else:
            self.partials_done += 1


# Called after every model call: (its jobs, their results, monotonic time it started, seconds
# it took); a batch of partials is one call.
DecodeObserver = Callable[[list[RecognitionJob], list[Hypothesis], float, float], None]

IDLE, BUSY, OVERLOADED = 0, 1, 2

# A way to decode a final: the engine and its beam.
FinalMode = tuple[WhisperEngine, int]
# Cost estimates (decode seconds per audio second, per mode): a final is counted as at least
# this long; a decode dearer than the estimate replaces it, a cheaper one weighs this much.
# The other modes' estimates move by the same factor: the machine's load shows in whatever
# way ran last, so the accurate way is tried again once the cheaper ones run fast.
MIN_FINAL_S = 2.0
COST_WEIGHT = 0.3
# Moving together keeps the ways' costs relative to each other, so a way whose estimate is too
# high (a spike in its last decode) could be passed over for good. A way passed over for
# PROBE_S since its last decode is tried once more (a probe) on a final that did not wait in
# the queue (at most PROBE_WAIT of its deadline), if it is the way just before the chosen
# one: the probe's cost replaces its estimate alone.
PROBE_S = 60.0
PROBE_WAIT = 0.1


class FinalDeadline:
    """Decodes live finals against a deadline (seconds from being queued to the text): the
    first of (finals' model, full beam), (finals' model, greedy), (partials' model, greedy;
    English only) predicted to finish in what is left of it, or the last (the cheapest:
    the partials' model is the faster one) when all are late; predictions come from what
    each way cost per second of audio lately, on this machine, never less for a way than
    for a cheaper one. Thread-safe: one per process, shared by its decoding threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._costs: dict[tuple[int, int], float] = {}  # (id(engine), beam) -> s per audio s
        self._measured: dict[tuple[int, int], float] = {}  # when each way last decoded a final
        self._probing = False  # one probe at a time
        self._clock = clock
        self._lock = threading.Lock()

    def choose(
        self,
        accurate: WhisperEngine,
        fast: WhisperEngine,
        audio_s: float,
        language: str,
        deadline: float,
        waited: float = 0.0,
    ) -> tuple[FinalMode, str | None, bool]:
        """The way to decode a final of `audio_s` s that has waited `waited` s of its
        `deadline`, its name in `CHEAPER_WAYS` (None: full beam on the finals' model), and
        whether it is a probe (see PROBE_S; `measure` must be told). A way not measured yet
        counts as on time."""
        full: FinalMode = (accurate, accurate.options.beam_size)
        modes: list[tuple[FinalMode, str | None]] = [(full, None)]
        if full[1] > 1:
            modes.append(((accurate, 1), CHEAPER_WAYS[0]))
        if fast is not accurate and language == "en":
            modes.append(((fast, 1), CHEAPER_WAYS[1]))
        seconds = max(audio_s, MIN_FINAL_S)
        left = deadline - waited
        with self._lock:
            costs = [self._costs.get(_cost_key(mode)) for mode, _ in modes]
            # the ways are listed dearest first: an estimate under a cheaper way's was taken
            # at a lighter load than that one's, and counts as the cheaper way's
            cheaper = 0.0  # the dearest estimate among the cheaper ways
            for i in range(len(costs) - 1, -1, -1):
                cost = costs[i]
                if cost is not None:
                    costs[i] = cost = max(cost, cheaper)
                    cheaper = cost
            chosen = next(
                (i for i, cost in enumerate(costs) if cost is None or cost * seconds <= left),
                len(modes) - 1,  # all late (so each was measured): the cheapest
            )
            if chosen > 0 and not self._probing and waited <= PROBE_WAIT * deadline:
                before = _cost_key(modes[chosen - 1][0])
                if self._clock() - self._measured.get(before, -PROBE_S) >= PROBE_S:
                    self._probing = True
                    return (*modes[chosen - 1], True)
        return (*modes[chosen], False)

    def measure(self, mode: FinalMode, audio_s: float, seconds: float, probe: bool = False) -> None:
        """A final of `audio_s` s took `seconds` decoded by `mode` (`probe`: as `choose`
        said; a probe that failed is told with `seconds` < 0: it changes no estimate, and the
        way is not probed again for PROBE_S)."""
        cost = seconds / max(audio_s, MIN_FINAL_S)
        key = _cost_key(mode)
        with self._lock:
            if probe:
                self._probing = False
            self._measured[key] = self._clock()
            if seconds < 0:
                return
            old = self._costs.get(key)
            if old is None or probe:  # a probe corrects this way's estimate alone
                self._costs[key] = cost
                return
            # a dearer decode counts at once (a late final costs more than a cheap one gains)
            new = cost if cost > old else old + COST_WEIGHT * (cost - old)
            factor = new / old if old > 0 else 1.0
            # the others move by the same factor (their ratios to this way are kept; probes
            # correct them)
            for other in list(self._costs):
                self._costs[other] = new if other == key else self._costs[other] * factor

    def decode(
        self,
        accurate: WhisperEngine,
        fast: WhisperEngine,
        audio: Float32Array,
        *,
        deadline: float,
        waited: float,
        prompt: tuple[int, ...] = (),
        context: tuple[int, ...] = (),
        context_s: float = 0.0,
        language: str = "en",
        busy: bool = False,
        key: str = "",
    ) -> tuple[Hypothesis, str | None]:
        """Decode a final (`prompt` and `context` in `accurate`'s tokens) that has waited
        `waited` s of its `deadline` (0: no deadline, full beam); its text and the cheaper
        way taken, if one was."""
        audio_s = audio.size / TARGET_RATE
        if deadline > 0:
            mode, way, probe = self.choose(accurate, fast, audio_s, language, deadline, waited)
        else:
            mode, way, probe = (accurate, accurate.options.beam_size), None, False
        started = time.monotonic()
        try:
            engine, tokens, forced = mode[0], prompt, context
            if engine is not accurate:  # the tokens are the finals' model's
                tokens = _tokens_for(engine, accurate, prompt)
                forced = _tokens_for(engine, accurate, context)
            hyp = engine.decode(
                audio,
                prompt=tokens,
                final=True,
                busy=busy,
                context=forced,
                context_s=context_s,
                language=language,
                beam_size=mode[1],
            )
        except Exception:
            if not probe:
                raise
            # the probe failed: not that way again for PROBE_S; the final the way chosen
            log.exception("a probe of a final's way failed for %s; decoding it as chosen", key)
            self.measure(mode, audio_s, -1.0, probe=True)
            return self.decode(
                accurate,
                fast,
                audio,
                deadline=deadline,
                waited=waited + time.monotonic() - started,
                prompt=prompt,
                context=context,
                context_s=context_s,
                language=language,
                busy=busy,
                key=key,
            )
        except BaseException:
            if probe:
                self.measure(mode, audio_s, -1.0, probe=True)
            raise
        if deadline > 0:
            self.measure(mode, audio_s, time.monotonic() - started, probe=probe)
        if way is not None or probe:
            log.debug(
                "final for %s decoded %s%s, %.2fs left of its deadline",
                key,
                way or "at full beam",
                " (a probe)" if probe else "",
                deadline - waited,
            )
        return hyp, way


class RecognitionScheduler:
    """Runs every call's decodes on a few worker threads sharing the Whisper engines: partials
    on `engine` (the fast model), finals on `final_engine` (the accurate one; by default the
    same engine).

    Finals are served first and in order of arrival and are never dropped. With a
    `final_deadline` (seconds from a final's submission to its text), a final predicted to
    miss it on the finals' model at full beam is decoded greedily, or, if that is predicted
    late too, on the partials' model (English only); predictions come from what each way
    cost per second of audio lately (`FinalDeadline`). Each channel
    holds at most one waiting partial: a newer partial replaces the waiting one (whose
    future resolves to None and is counted as dropped), so partials never pile up. A worker
    that takes a partial also takes the other waiting partials of the same encoder window, up
    to `max_batch`, and decodes them in one model call (`WhisperEngine.decode_partials`).
    """

    def __init__(
        self,
        engine: WhisperEngine,
        workers: int = 1,
        final_budget: float = 1.0,
        observer: DecodeObserver | None = None,
        max_batch: int = 4,
        final_engine: WhisperEngine | None = None,
        final_deadline: float = 0.0,
    ) -> None:
        self.engine = engine
        self.final_engine = final_engine or engine
        self.final_deadline = final_deadline  # 0: every final at full beam on the finals' model
        self.deadline = FinalDeadline()
        self.workers = max(1, workers)
        self.max_batch = max(1, max_batch)
        self.final_budget = final_budget  # queue wait a final may have before it is overdue
        self.observer = observer
        self._finals: deque[RecognitionJob] = deque()
        self._partials: OrderedDict[str, RecognitionJob] = OrderedDict()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.busy = 0
        self.stats = SchedulerStats()

    def engine_for(self, final: bool, language: str) -> WhisperEngine:
        """Finals: the finals' engine. Partials: the partials' engine, or for a language it
        does not speak the finals' (multilingual) one. ValueError when neither speaks it."""
        if final or (language != "en" and not self.engine.multilingual):
            engine = self.final_engine
        else:
            engine = self.engine
        if language != "en" and not engine.multilingual:
            raise ValueError(
                f"language {language!r} needs a multilingual Whisper model; "
                f"{engine.options.model} is English-only (set CALLCUE_FINAL_MODEL=embedded:base)"
            )
        return engine

    def speaks(self, language: str) -> bool:
        """Whether calls in `language` ("auto" included) can be recognized here."""
        return language == "en" or self.final_engine.multilingual

    def start(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"callcue-asr-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        with self._cond:
            pending = list(self._finals) + list(self._partials.values())
            self._finals.clear()
            self._partials.clear()
        for job in pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("recognition scheduler closed"))

    @property
    def depths(self) -> tuple[int, int]:
        """(finals waiting, partials waiting)."""
        return len(self._finals), len(self._partials)

    def pressure(self) -> int:
        """IDLE, BUSY (finals waiting or partials piling up) or OVERLOADED (a final is waiting
        past half its budget, or more finals wait than workers can clear in one budget)."""
        with self._cond:
            finals = list(self._finals)
            partials = len(self._partials)
        if finals:
            oldest = time.monotonic() - finals[0].submitted
            if oldest > self.final_budget / 2 or len(finals) > 2 * self.workers:
                return OVERLOADED
            return BUSY
        return BUSY if partials > 2 * self.workers else IDLE

    def submit(self, job: RecognitionJob) -> Future[Hypothesis | None]:
        with self._cond:
            if self._closed:
                raise RuntimeError("recognition scheduler closed")
            if job.final:
                self._finals.append(job)
                stale = self._partials.pop(job.key, None)  # its utterance is being finalized
            else:
                stale = self._partials.pop(job.key, None)
                self._partials[job.key] = job
            if stale is not None:
                self.stats.partials_dropped += 1
            self._cond.notify()
        if stale is not None:
            stale.future.set_result(None)
        return job.future

    def cancel_partial(self, key: str) -> None:
        with self._cond:
            stale = self._partials.pop(key, None)
        if stale is not None:
            stale.future.set_result(None)

    def _next(self) -> list[RecognitionJob]:
        """The next work: one final, or partials of one encoder window ([] once closed)."""
        with self._cond:
            while not self._closed and not self._finals and not self._partials:
                self._cond.wait()
            if self._closed:
                return []
            self.busy += 1
            if self._finals:
                return [self._finals.popleft()]
            first = self._partials.popitem(last=False)[1]
            batch = [first]
            if self.max_batch > 1 and self._partials:
                engine = self._engine_or_none(first)
                window = self.engine.window_for(first.audio.size / TARGET_RATE)
                for key, job in list(self._partials.items()):
                    if len(batch) >= self.max_batch:
                        break
                    if (
                        self.engine.window_for(job.audio.size / TARGET_RATE) == window
                        and self._engine_or_none(job) is engine
                    ):
                        batch.append(self._partials.pop(key))
            return batch

    def _engine_or_none(self, job: RecognitionJob) -> WhisperEngine | None:
        try:
            return self.engine_for(job.final, job.language)
        except ValueError:
            return None

    def _run(self) -> None:
        lower_priority(self.engine.options.nice)  # feature extraction runs here
        while jobs := self._next():
            try:
                jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
                if jobs:
                    self._decode(jobs)
            except Exception as exc:  # a decode failure fails those jobs, not the worker
                log.exception("decode failed for %s", ", ".join(job.key for job in jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
            finally:
                with self._cond:
                    self.busy -= 1

    def _decode(self, jobs: list[RecognitionJob]) -> None:
        started = time.monotonic()
        job = jobs[0]
        waited = started - job.submitted
        if job.final and waited > self.final_budget:
            with self._cond:
                self.stats.finals_overdue += 1
            log.warning(
                "final for %s waited %.2fs in the queue (budget %.2fs): the machine is overloaded",
                job.key,
                waited,
                self.final_budget,
            )
        engine = self.engine_for(job.final, job.language)
        way = None
        if job.final:
            finals_waiting, partials_waiting = self.depths
            hyp, way = self.deadline.decode(
                engine,
                self.engine,
                job.audio,
                deadline=self.final_deadline,
                waited=waited,
                prompt=job.prompt,
                context=job.context,
                context_s=job.context_s,
                language=job.language,
                busy=finals_waiting > 0 or partials_waiting > self.workers,
                key=job.key,
            )
            results = [hyp]
        elif len(jobs) == 1:
            results = [
                engine.decode(
                    job.audio, prompt=job.prompt, prefix=job.prefix, language=job.language
                )
            ]
        else:
            results = engine.decode_partials(
                [PartialRequest(j.audio, j.prompt, j.prefix, j.language) for j in jobs]
            )
        seconds = time.monotonic() - started
        with self._cond:  # the decoding threads count into one SchedulerStats
            self.stats.batches += 1
            if way is not None:
                self.stats.finals_cheaper[way] += 1
            for job in jobs:
                self.stats.count(job.final, started - job.submitted)
        for job, result in zip(jobs, results, strict=True):
            job.future.set_result(result)
        if self.observer is not None:
            self.observer(jobs, results, started, seconds)


def _tokens_for(
    engine: WhisperEngine, source: WhisperEngine, tokens: tuple[int, ...]
) -> tuple[int, ...]:
    """`tokens` of `source`'s vocabulary as `engine`'s."""
    if not tokens:
        return ()
    return tuple(engine.encode_text(source.tokenizer.decode(list(tokens))))


def _cost_key(mode: FinalMode) -> tuple[int, int]:
    return id(mode[0]), mode[1]
