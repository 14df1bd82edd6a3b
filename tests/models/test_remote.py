"""Recognition on a worker over a real Redis: the scheduler's rules hold across the network
(a newer partial replaces a waiting one, a final drops its channel's waiting partial, finals
are taken first) and a final decoded remotely is the one the engine decodes here."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from models.remote import RemoteScheduler, run_worker
from models.scheduler import RecognitionJob
from tests.conftest import load_16k


def test_worker_takes_finals_first_and_stale_partials_are_dropped(  # type: ignore[no-untyped-def]
    engine, redis_url: str, redis_prefix: str
) -> None:
    audio = load_16k("ls_test-clean_2830-3980-0043.wav")
    scheduler = RemoteScheduler(engine, redis_url, prefix=redis_prefix, final_timeout=60)
    scheduler.start()
    done: list[str] = []

    def submit(name: str, key: str, seconds: float, final: bool) -> Future:  # type: ignore[type-arg]
        job = RecognitionJob(key=key, audio=audio[: int(seconds * 16000)], final=final)
        future = scheduler.submit(job)
        future.add_done_callback(lambda f: done.append(name))
        return future

    try:
        first = submit("first", "c1/customer", 1.0, False)
        second = submit("second", "c1/customer", 2.0, False)
        other = submit("other", "c2/agent", 2.0, False)
        final = submit("final", "c1/customer", 30.0, True)
        # no worker yet: the rules are applied on Redis and here, before any decode
        assert first.result(timeout=0) is None and second.result(timeout=0) is None
        assert scheduler.stats.partials_dropped == 2
        assert scheduler.depths == (1, 1)
        stop = threading.Event()
        worker = threading.Thread(target=run_worker, args=(engine, redis_url, redis_prefix, stop))
        worker.start()
        try:
            hyp = final.result(timeout=120)
            partial = other.result(timeout=120)
        finally:
            stop.set()
            worker.join(timeout=30)
        assert done == ["first", "second", "final", "other"]  # the final was taken first
        assert hyp is not None and partial is not None and partial.text
        local = engine.decode(audio[: 30 * 16000], final=True)
        assert hyp.text == local.text and [w.word for w in hyp.words] == [
            w.word for w in local.words
        ]
        assert scheduler.stats.finals_done == 1 and scheduler.stats.partials_done == 1
    finally:
        scheduler.close()


def test_a_final_no_worker_takes_fails_with_a_reason(  # type: ignore[no-untyped-def]
    engine, redis_url: str, redis_prefix: str
) -> None:
    scheduler = RemoteScheduler(engine, redis_url, prefix=redis_prefix, final_timeout=1.0)
    scheduler.start()
    try:
        audio = load_16k("wb_timit_LDC93S1.wav")
        future = scheduler.submit(RecognitionJob(key="c/customer", audio=audio, final=True))
        started = time.monotonic()
        try:
            future.result(timeout=10)
            raise AssertionError("a final nobody decoded must fail")
        except TimeoutError as exc:
            assert "no recognition worker answered" in str(exc)
        assert time.monotonic() - started < 5 and scheduler.stats.finals_overdue == 1
    finally:
        scheduler.close()


def test_a_worker_meets_the_nodes_final_deadline_a_cheaper_way(  # type: ignore[no-untyped-def]
    engine, base_engine, redis_url: str, redis_prefix: str
) -> None:
    """The node's CALLCUE_FINAL_DEADLINE_MS travels with each final; the worker chooses the
    way from its own decode costs and the node counts the cheaper ways its reply names."""
    audio = load_16k("ls_test-clean_2830-3980-0043.wav")  # "Experience proves this."
    scheduler = RemoteScheduler(
        engine, redis_url, prefix=redis_prefix, final_engine=base_engine, final_deadline=1e-3
    )
    scheduler.start()
    stop = threading.Event()
    worker = threading.Thread(
        target=run_worker,
        args=(engine, redis_url, redis_prefix, stop),
        kwargs={"final_engine": base_engine},
    )
    worker.start()
    texts, ways = [], []
    try:
        prompt = tuple(base_engine.encode_text("We talked about experience."))
        for _ in range(3):  # full beam, then greedy (not measured yet), then tiny.en
            before = dict(scheduler.stats.finals_cheaper)
            job = RecognitionJob(key="c/customer", audio=audio, final=True, prompt=prompt)
            hyp = scheduler.submit(job).result(timeout=120)
            assert hyp is not None and hyp.ok, hyp
            texts.append(hyp.text)
            ways.append([w for w, n in scheduler.stats.finals_cheaper.items() if n > before[w]])
    finally:
        stop.set()
        worker.join(timeout=30)
        scheduler.close()
    assert ways == [[], ["greedy"], ["partials_model"]]
    assert texts == ["Experience proves this."] * 3


def test_jobs_are_stamped_in_redis_time(redis_url: str) -> None:
    """A worker on another machine measures a final's wait on Redis's clock, not on two
    machines' clocks: `submitted` is this machine's time plus its offset to Redis."""
    import numpy as np
    import redis

    from models.remote import clock_offset, decode_job, encode_job

    client = redis.Redis.from_url(redis_url)
    try:
        offset = clock_offset(client)
        seconds, micros = client.time()
        redis_now = float(seconds) + float(micros) / 1e6
    finally:
        client.close()
    assert abs(offset) < 1.0  # Redis runs on this machine here
    skewed = offset + 30.0  # as if Redis's clock were 30 s ahead of this machine's
    job = RecognitionJob(key="c/customer", audio=np.zeros(160, np.float32), final=True)
    header, audio = decode_job(encode_job(job, "id", "reply", deadline=0.9, offset=skewed))
    assert header["deadline"] == 0.9 and audio.size == 160
    assert abs(header["submitted"] - (time.time() + skewed)) < 1.0
    assert header["submitted"] > redis_now + 29.0
