"""Recognition scheduling with the real engine: finals first, stale partials replaced."""

import threading

from models.scheduler import RecognitionJob, RecognitionScheduler
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
    scheduler = RecognitionScheduler(engine, workers=1, final_budget=0.2)  # not started
    assert scheduler.pressure() == IDLE
    scheduler.submit(RecognitionJob(key="a", audio=audio, final=True))
    assert scheduler.pressure() == BUSY  # a final is waiting, but not for long
    time.sleep(0.15)
    assert scheduler.pressure() == OVERLOADED  # waiting past half its budget
    time.sleep(0.1)
    scheduler.start()
    deadline = time.monotonic() + 30
    while scheduler.depths != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.close()
    assert scheduler.pressure() == IDLE
    assert scheduler.stats.finals_overdue == 1  # it was picked up after its budget
