"""Recognition scheduling with the real engine: finals first, stale partials replaced."""

import threading

from models.scheduler import FinalDeadline, RecognitionJob, RecognitionScheduler, _tokens_for
from tests.conftest import load_16k


def test_finals_first_and_stale_partials_dropped(engine) -> None:  # type: ignore[no-untyped-def]
    audio = load_16k("ls_test-clean_2830-3980-0043.wav")
    scheduler = RecognitionScheduler(engine, workers=1)
    order: list[str] = []
    lock = threading.Lock()

    def job(name: str, key: str, final: bool) -> RecognitionJob:
        j = RecognitionJob(key=key, audio=audio, final=final)
        j.future.add_done_callback(lambda f: (lock.acquire(), order.append(name), lock.release()))
        return j

    # queue everything before the worker starts, so the order is decided by the policy
    p1 = scheduler.submit(job("p1", "call/a", False))
    p2 = scheduler.submit(job("p2", "call/a", False))  # replaces p1
    p3 = scheduler.submit(job("p3", "call/b", False))
    f1 = scheduler.submit(job("f1", "call/b", True))  # finalizes b: p3 is dropped too
    f2 = scheduler.submit(job("f2", "call/c", True))
    assert p1.result(timeout=1) is None and p3.result(timeout=1) is None
    scheduler.start()
    try:
        assert f2.result(timeout=60) is not None and p2.result(timeout=60) is not None
        assert f1.result(timeout=60).text == "Experience proves this."
    finally:
        scheduler.close()
    assert order == ["p1", "p3", "f1", "f2", "p2"]
    assert scheduler.stats.partials_dropped == 2
    assert scheduler.stats.finals_done == 2 and scheduler.stats.partials_done == 1


def test_pressure_levels(engine) -> None:  # type: ignore[no-untyped-def]
    import time

    from models.scheduler import BUSY, IDLE, OVERLOADED

    audio = load_16k("ls_test-clean_2830-3980-0043.wav")
    # a budget long enough that a busy machine's pause between submit and the first check
    # cannot pass half of it
    scheduler = RecognitionScheduler(engine, workers=1, final_budget=2.0)  # not started
    assert scheduler.pressure() == IDLE
    scheduler.submit(RecognitionJob(key="a", audio=audio, final=True))
    assert scheduler.pressure() == BUSY  # a final is waiting, but not for long
    time.sleep(1.1)
    assert scheduler.pressure() == OVERLOADED  # waiting past half its budget
    time.sleep(1.0)
    scheduler.start()
    deadline = time.monotonic() + 30
    while scheduler.depths != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.close()
    assert scheduler.pressure() == IDLE
    assert scheduler.stats.finals_overdue == 1  # it was picked up after its budget


def test_waiting_partials_of_one_window_are_decoded_in_one_call(engine) -> None:  # type: ignore[no-untyped-def]
    short = load_16k("ls_test-clean_2830-3980-0043.wav")  # ~2 s: a 3 s window
    longer = load_16k("wb_jfk_inaugural_1961.flac")[: 16000 * 7]  # a 10 s window
    assert engine.window_for(short.size / 16000) != engine.window_for(longer.size / 16000)
    calls: list[list[str]] = []
    scheduler = RecognitionScheduler(
        engine,
        workers=1,
        max_batch=3,
        observer=lambda jobs, hyps, started, seconds: calls.append([j.key for j in jobs]),
    )
    futures = {
        key: scheduler.submit(RecognitionJob(key=key, audio=audio, final=False))
        for key, audio in [("a", short), ("b", short), ("c", longer), ("d", short), ("e", short)]
    }
    scheduler.start()
    try:
        texts = {key: future.result(timeout=60).text for key, future in futures.items()}
    finally:
        scheduler.close()
    # oldest first; its window's partials join it, up to max_batch; the rest wait their turn
    assert calls == [["a", "b", "d"], ["c"], ["e"]]
    assert scheduler.stats.batches == 3 and scheduler.stats.partials_done == 5
    assert {texts[k] for k in "abde"} == {"Experience proves this."}
    assert texts["c"].startswith("And so my fellow Americans")


def test_a_final_late_for_its_deadline_is_decoded_a_cheaper_way(engine, base_engine) -> None:  # type: ignore[no-untyped-def]
    audio = load_16k("ls_test-clean_2830-3980-0043.wav")  # "Experience proves this."
    scheduler = RecognitionScheduler(
        engine, workers=1, final_engine=base_engine, final_deadline=60.0
    )
    scheduler.start()

    def cheaper() -> tuple[int, int]:
        return scheduler.stats.finals_cheaper["greedy"], scheduler.stats.finals_cheaper[
            "partials_model"
        ]

    def final(language: str = "en") -> tuple[str, str]:
        """(its text, which model decoded it)"""
        before = engine.stats.decodes, base_engine.stats.decodes
        # the prompt is in the finals' model's tokens, as the transcriber writes it
        job = RecognitionJob(
            key="call/customer",
            audio=audio,
            final=True,
            prompt=tuple(base_engine.encode_text("We talked about experience.")),
            language=language,
        )
        hyp = scheduler.submit(job).result(timeout=60)
        assert hyp is not None and hyp.ok, hyp
        by = "tiny" if engine.stats.decodes > before[0] else "base"
        assert (engine.stats.decodes > before[0]) != (base_engine.stats.decodes > before[1])
        return hyp.text, by

    try:
        assert final() == ("Experience proves this.", "base")  # on time: full beam
        assert cheaper() == (0, 0)
        scheduler.final_deadline = 1e-3  # no way is on time now
        assert final()[1] == "base"  # greedy: its cost is not known yet, so it may fit
        assert cheaper()[0] == 1
        # greedy is known to be late too: the partials' model, its prompt in its own tokens
        assert final() == ("Experience proves this.", "tiny")
        assert cheaper()[1] == 1
        # tiny.en speaks English only: base, the cheaper of its two ways (both are late)
        assert final("auto")[1] == "base"
        assert cheaper()[1] == 1
        counted = cheaper()
        scheduler.final_deadline = 60.0
        assert final()[1] == "base"  # time again: full beam on the finals' model
        assert cheaper() == counted
        # the prompt reached tiny.en as its own tokens for the same words
        said = tuple(base_engine.encode_text("We talked about experience."))
        assert _tokens_for(engine, base_engine, said) == tuple(
            engine.encode_text("We talked about experience.")
        )
        assert said != tuple(engine.encode_text("We talked about experience."))
    finally:
        scheduler.close()


def test_the_way_a_final_is_decoded_follows_the_cost_estimates_and_the_load() -> None:
    """The choice alone (no decode): on time at full beam, greedy, the partials' model, the
    cheapest when all are late; a load seen in the cheap way moves the accurate way's
    estimate too, and once the load is gone full beam comes back."""
    from types import SimpleNamespace

    now = [0.0]
    tiny = SimpleNamespace(options=SimpleNamespace(beam_size=5))
    base = SimpleNamespace(options=SimpleNamespace(beam_size=5))
    deadline = FinalDeadline(clock=lambda: now[0])
    full, greedy, fast = (base, 5), (base, 1), (tiny, 1)
    for mode, seconds in ((full, 0.6), (greedy, 0.4), (fast, 0.2)):  # 2 s of audio each
        deadline.measure(mode, 2.0, seconds)  # type: ignore[arg-type]

    def way(left: float, language: str = "en") -> tuple[object, str | None, bool]:
        return deadline.choose(base, tiny, 2.0, language, left)  # type: ignore[arg-type]

    assert way(0.9) == (full, None, False)  # 0.6 s predicted, 0.9 left
    assert way(0.5) == (greedy, "greedy", False)  # full (0.6) is late, greedy (0.4) is not
    assert way(0.15) == (fast, "partials_model", False)  # every way late: the cheapest
    # not English: never the English-only model
    assert way(0.15, "auto") == (greedy, "greedy", False)
    assert deadline.choose(base, base, 2.0, "en", 0.15)[:2] == (greedy, "greedy")  # type: ignore[arg-type]
    deadline.measure(fast, 2.0, 0.6)  # type: ignore[arg-type]  # the machine got 3x slower
    assert way(0.9)[1] == "partials_model"  # full now predicted at 1.8 s, greedy at 1.2 s
    for _ in range(30):  # the load goes: the cheap way runs fast again
        deadline.measure(fast, 2.0, 0.2)  # type: ignore[arg-type]
        if way(0.9)[1] is None:
            break
    assert way(0.9) == (full, None, False)
    # an estimate under a cheaper way's (taken at a lighter load) counts as that one's, and
    # when all are late the last way is taken whatever the estimates say
    odd = FinalDeadline()
    for mode, seconds in ((full, 0.2), (greedy, 0.8), (fast, 0.4)):
        odd.measure(mode, 2.0, seconds)  # type: ignore[arg-type]
    assert odd.choose(base, tiny, 2.0, "en", 0.5)[:2] == (fast, "partials_model")  # type: ignore[arg-type]
    assert odd.choose(base, tiny, 2.0, "en", 0.1)[:2] == (fast, "partials_model")  # type: ignore[arg-type]
    gap = FinalDeadline()  # ... across a way not measured yet (greedy, taken as on time)
    for mode, seconds in ((full, 0.2), (fast, 0.4)):
        gap.measure(mode, 2.0, seconds)  # type: ignore[arg-type]
    assert gap.choose(base, tiny, 2.0, "en", 0.3)[:2] == (greedy, "greedy")  # type: ignore[arg-type]
    # a short final counts as MIN_FINAL_S (2 s) long; a way not measured yet counts as on time
    fresh = FinalDeadline()
    fresh.measure(full, 2.0, 0.6)  # type: ignore[arg-type]
    assert fresh.choose(base, tiny, 0.5, "en", 0.5) == (greedy, "greedy", False)  # type: ignore[arg-type]


def test_a_way_passed_over_after_a_spike_is_tried_again_and_taken_back() -> None:
    """Full beam's first decode was a spike (3x its cost) and greedy is on time from then on:
    moving the estimates together would never bring full beam back. After PROBE_S a final
    that did not wait tries it once; its cost replaces full beam's estimate alone."""
    from types import SimpleNamespace

    from models.scheduler import PROBE_S

    now = [0.0]
    tiny = SimpleNamespace(options=SimpleNamespace(beam_size=5))
    base = SimpleNamespace(options=SimpleNamespace(beam_size=5))
    deadline = FinalDeadline(clock=lambda: now[0])
    full, greedy, fast = (base, 5), (base, 1), (tiny, 1)
    deadline.measure(full, 2.0, 1.8)  # type: ignore[arg-type]  # a spike: 0.6 s is usual

    def way(waited: float = 0.0) -> tuple[object, str | None, bool]:
        return deadline.choose(base, tiny, 2.0, "en", 0.9, waited)  # type: ignore[arg-type]

    for _ in range(5):  # greedy, on time, costs what it always does
        assert way()[:2] == (greedy, "greedy")
        deadline.measure(greedy, 2.0, 0.4)  # type: ignore[arg-type]
        now[0] += 5.0
    assert way() == (greedy, "greedy", False)  # not yet PROBE_S since full beam's decode
    now[0] = PROBE_S
    assert way(waited=0.3) == (greedy, "greedy", False)  # it waited in the queue: no probe
    assert way() == (full, None, True)  # the probe
    assert way() == (greedy, "greedy", False)  # one probe at a time
    deadline.measure(full, 2.0, 0.6, probe=True)  # type: ignore[arg-type]
    assert way() == (full, None, False)  # full beam is on time again
    # greedy's estimate was left alone by the probe: a late full beam still falls back to it
    assert deadline.choose(base, tiny, 2.0, "en", 0.5)[:2] == (greedy, "greedy")  # type: ignore[arg-type]
    # another spike moves greedy too: tiny.en (not measured yet) is taken, and the probe is
    # the way just before it; a probe that fails changes no estimate, and that way waits
    # PROBE_S again
    deadline.measure(full, 2.0, 1.8)  # type: ignore[arg-type]
    now[0] += PROBE_S
    assert way() == (greedy, "greedy", True)
    deadline.measure(greedy, 2.0, -1.0, probe=True)  # type: ignore[arg-type]
    assert way() == (fast, "partials_model", False)
    now[0] += PROBE_S
    assert way() == (greedy, "greedy", True)


def test_a_probe_that_fails_is_decoded_the_chosen_way_and_not_tried_again_at_once() -> None:
    """A decode that raises on a probe does not lose the final: it is decoded the way that
    was chosen, and that way is not probed again for PROBE_S."""
    from types import SimpleNamespace

    import numpy as np

    from models.scheduler import PROBE_S
    from models.whisper import Hypothesis

    now = [0.0]
    beams: list[int] = []

    def decode(audio: object, **kwargs: object) -> Hypothesis:
        beams.append(int(kwargs["beam_size"]))  # type: ignore[call-overload]
        if kwargs["beam_size"] == 5:
            raise RuntimeError("out of memory")
        return Hypothesis(text="Fine.", tokens=(), avg_logprob=-0.1, no_speech_prob=0.0)

    base = SimpleNamespace(options=SimpleNamespace(beam_size=5), decode=decode)
    deadline = FinalDeadline(clock=lambda: now[0])
    deadline.measure((base, 5), 2.0, 1.8)  # type: ignore[arg-type]  # full beam looks late
    deadline.measure((base, 1), 2.0, 0.4)  # type: ignore[arg-type]
    now[0] = PROBE_S
    audio = np.zeros(2 * 16000, np.float32)

    def final() -> tuple[str, str | None]:
        hyp, way = deadline.decode(base, base, audio, deadline=0.9, waited=0.0)  # type: ignore[arg-type]
        return hyp.text, way

    assert final() == ("Fine.", "greedy") and beams == [5, 1]  # the probe failed, then greedy
    assert final() == ("Fine.", "greedy") and beams == [5, 1, 1]  # no probe again at once
