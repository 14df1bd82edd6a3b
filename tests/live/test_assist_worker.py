"""The assist worker on its own: a fake call and fake models, so its failure paths are
exercised in-process (the server-level test is tests/test_faults.py)."""

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from assist.events import ErrorEvent, Event
from live.assist_worker import AssistItem, AssistWorker
from live.metrics import Metrics


@dataclass(frozen=True, slots=True, kw_only=True)
class Read(Event):
    """What the fake rules make of a final."""

    type: ClassVar[str] = "read"
    text: str


class FakeRules:
    """A call's assist state: one intent event per final; `broken` raises instead."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken

    def request(self, channel: str, text: str) -> tuple[str, str]:
        return channel, text

    def on_final(self, channel: str, utterance: int, text: str, *_: Any) -> list[Event]:
        if self.broken:
            raise RuntimeError("a rule failed")
        return [Read(call_id="c", text=text)]


class FakeCall:
    def __init__(self, call_id: str, rules: FakeRules) -> None:
        self.call_id = call_id
        self.assist_state: Any = rules
        self.events: list[Event] = []
        self.pending = 0
        self.idle = asyncio.Event()

    def publish(self, event: Event) -> Event:
        self.events.append(event)
        return event

    def assist_queued(self) -> None:
        self.pending += 1
        self.idle.clear()

    def assist_done(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.idle.set()


class FakeModels:
    """Reads each batch; raises on the batches named in `fail`."""

    def __init__(self, fail: set[int]) -> None:
        self.fail = fail
        self.batches = 0

    def analyze(self, requests: list[Any]) -> list[Any]:
        self.batches += 1
        if self.batches in self.fail:
            raise ValueError("the encoder broke")
        return [None for _ in requests]


def item(call: FakeCall, utterance: int, text: str) -> AssistItem:
    return AssistItem(call, "customer", utterance, text, 1.0, [], 0.0)


async def test_a_failed_batch_is_reported_to_its_calls_and_the_next_goes_on() -> None:
    metrics = Metrics()
    worker = AssistWorker(FakeModels(fail={1}), metrics)  # type: ignore[arg-type]
    call = FakeCall("c", FakeRules())
    try:
        worker.submit(item(call, 1, "refund"))
        await asyncio.wait_for(call.idle.wait(), 10)
        assert [type(e) for e in call.events] == [ErrorEvent]
        error = call.events[0]
        assert isinstance(error, ErrorEvent) and error.code == "assist_failed"
        assert "utterance 1" in error.message
        worker.submit(item(call, 2, "exchange"))  # the worker goes on
        await asyncio.wait_for(call.idle.wait(), 10)
        assert [e.text for e in call.events[1:] if isinstance(e, Read)] == ["exchange"]
        assert metrics.assist_errors.value() == 1
    finally:
        worker.close()


async def test_one_calls_broken_rules_do_not_stop_another_calls_assist() -> None:
    metrics = Metrics()
    worker = AssistWorker(FakeModels(fail=set()), metrics)  # type: ignore[arg-type]
    broken, fine = FakeCall("a", FakeRules(broken=True)), FakeCall("b", FakeRules())
    try:
        worker.submit(item(broken, 1, "refund"))
        worker.submit(item(fine, 1, "exchange"))
        await asyncio.wait_for(asyncio.gather(broken.idle.wait(), fine.idle.wait()), 10)
        assert broken.events == [] and broken.pending == 0  # done, though its rules raised
        assert [e.text for e in fine.events if isinstance(e, Read)] == ["exchange"]
        assert metrics.assist_errors.value() == 1
    finally:
        worker.close()
