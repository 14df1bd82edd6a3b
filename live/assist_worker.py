"""The assist worker: every call's finals read by the assist models in one thread, a batch
at a time, and each call's rules applied to what they make of them."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from assist.engine import AssistModels, CallAssist
from assist.entities import Entity
from assist.events import ErrorEvent, Event
from live.metrics import Metrics

log = logging.getLogger("callcue.assist")


class AssistedCall(Protocol):
    """What the assist worker needs of a call: its rules' state, where its events go, and
    that it be told when a final is queued and when it has been read."""

    call_id: str
    assist_state: CallAssist | None

    def publish(self, event: Event) -> Event: ...

    def assist_queued(self) -> None: ...

    def assist_done(self) -> None: ...


@dataclass
class AssistItem:
    session: AssistedCall
    channel: str
    utterance: int
    text: str
    end: float
    entities: list[Entity]
    published_at: float
    language: str = "en"
    start: float | None = None


class AssistWorker:
    """Runs assist for the finals of every call in one thread, a batch at a time.

    Finals are queued as they are published; the worker takes everything waiting (up to
    `max_batch`), encodes it in one model call, then applies each call's rules and publishes the
    events. Transcripts never wait for it; a failing batch sends an `error` event to the calls in
    it, is counted in `callcue_assist_errors_total`, and the next batch goes on.
    """

    def __init__(self, models: AssistModels, metrics: Metrics, max_batch: int = 32) -> None:
        self.models = models
        self.metrics = metrics
        self.max_batch = max_batch
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callcue-assist")
        self._queue: asyncio.Queue[AssistItem] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, item: AssistItem) -> None:
        loop = asyncio.get_running_loop()
        crashed = self._task is not None and self._task.done()
        if self._queue is None or self._loop is not loop or crashed:  # first use, new loop
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._run())
        item.session.assist_queued()
        self._queue.put_nowait(item)

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            # the models read English only: other finals get no analysis (see CallAssist)
            read = [i for i in batch if i.session.assist_state is not None and i.language == "en"]
            requests = [
                i.session.assist_state.request(i.channel, i.text)
                for i in read
                if i.session.assist_state is not None
            ]
            taken = time.monotonic()
            try:
                done = await loop.run_in_executor(self.executor, self.models.analyze, requests)
                by_item = {id(i): a for i, a in zip(read, done, strict=True)}
                analyses = [by_item.get(id(i)) for i in batch]
            except Exception as exc:
                log.exception("assist failed for a batch of %d utterances", len(batch))
                self.metrics.assist_errors.inc()
                for item in batch:
                    try:
                        item.session.publish(
                            ErrorEvent(
                                call_id=item.session.call_id,
                                code="assist_failed",
                                message=f"assist could not read utterance {item.utterance} "
                                f"({type(exc).__name__}); transcripts go on",
                            )
                        )
                    except Exception:
                        log.exception("could not report the assist failure")
                    finally:
                        item.session.assist_done()
                continue
            self.metrics.batch.observe(len(batch), "assist")
            analysed = time.monotonic()
            for item, analysis in zip(batch, analyses, strict=True):
                state = item.session.assist_state
                try:
                    if state is not None:
                        for event in state.on_final(
                            item.channel,
                            item.utterance,
                            item.text,
                            item.end,
                            analysis,
                            item.entities,
                            item.language,
                            item.start,
                        ):
                            item.session.publish(event)
                        self.metrics.latency.observe(time.monotonic() - item.published_at, "assist")
                except Exception:
                    log.exception("assist rules failed on %s", item.session.call_id)
                    self.metrics.assist_errors.inc()
                finally:
                    item.session.assist_done()
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "assist batch of %d: waited %.1f ms, encoded in %.1f ms, rules and "
                    "publishing %.1f ms",
                    len(batch),
                    (taken - min(i.published_at for i in batch)) * 1000,
                    (analysed - taken) * 1000,
                    (time.monotonic() - analysed) * 1000,
                )

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
