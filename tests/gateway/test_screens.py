"""The screens' event stream in process: a call whose oldest events were let go from memory,
read back from a store, and from a store that cannot be read."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from assist.events import TranscriptFinal
from gateway.screens import serve_call_events
from live.hub import EventHub
from live.metrics import Metrics


class Store:
    """What the stream asks of the call store: the stored events after a seq."""

    def __init__(self, events: list[dict[str, Any]], down: bool = False) -> None:
        self.stored = events
        self.down = down

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        if self.down:
            raise ConnectionError("the database does not answer")
        return {"id": call_id} if self.stored else None

    def events(self, call_id: str, types: Any = (), after_seq: int = 0) -> list[dict[str, Any]]:
        if self.down:
            raise ConnectionError("the database does not answer")
        return [e for e in self.stored if e["seq"] > after_seq]


def app(store: Store, hub: EventHub) -> Starlette:
    services = SimpleNamespace(hub=hub, store=store, cluster=None, metrics=Metrics(), sessions={})

    async def events(ws: WebSocket) -> None:
        await serve_call_events(ws, services, ws.path_params["call_id"])  # type: ignore[arg-type]

    return Starlette(routes=[WebSocketRoute("/v1/calls/{call_id}/events", events)])


def screen(store: Store, hub: EventHub, after: int = 0) -> list[dict[str, Any]]:
    got = []
    with (
        TestClient(app(store, hub)) as client,
        client.websocket_connect(f"/v1/calls/c/events?after_seq={after}") as ws,
    ):
        while (message := ws.receive_json())["type"] != "transcript.final" or message["seq"] < 10:
            got.append(message)
        got.append(message)
    return got


def a_long_call() -> tuple[EventHub, list[dict[str, Any]]]:
    """Ten finals, all written; the hub keeps the newest three."""
    hub = EventHub(keep_events=3)
    feed = hub.open("c")
    stored = []
    for i in range(10):
        event = hub.publish(
            TranscriptFinal(call_id="c", channel="agent", utterance=i, start=i, end=i, text="x")
        )
        stored.append(event.to_dict())
    hub.release_written("c", 10)
    assert feed.base == 7
    return hub, stored


def test_what_memory_let_go_is_read_from_the_store_in_order() -> None:
    hub, stored = a_long_call()
    assert [e["seq"] for e in screen(Store(stored), hub)] == list(range(1, 11))
    assert [e["seq"] for e in screen(Store(stored), hub, after=4)] == list(range(5, 11))


def test_a_store_that_cannot_be_read_is_named_and_the_call_follows() -> None:
    hub, stored = a_long_call()
    got = screen(Store(stored, down=True), hub, after=2)
    assert got[0]["type"] == "error" and got[0]["code"] == "store_unavailable"
    assert "events 3 to 7" in got[0]["message"] and "after_seq=2" in got[0]["message"]
    assert [e["seq"] for e in got[1:]] == [8, 9, 10]


def test_a_call_from_before_a_restart_is_replayed_from_the_store() -> None:
    _, stored = a_long_call()
    assert [e["seq"] for e in screen(Store(stored), EventHub())] == list(range(1, 11))


def test_a_call_not_in_memory_with_a_store_that_cannot_be_read_is_told_to_retry() -> None:
    """Not in progress here, and the store (which holds earlier calls) does not answer: the
    screen is told so and closed with 1013 (try again later), not with a server error."""
    _, stored = a_long_call()
    with (
        TestClient(app(Store(stored, down=True), EventHub())) as client,
        client.websocket_connect("/v1/calls/c/events?after_seq=4") as ws,
    ):
        message = ws.receive_json()
        assert message["code"] == "store_unavailable" and "after_seq=4" in message["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1013
