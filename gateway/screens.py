"""The event stream for screens: `/v1/calls/{call_id}/events`, history first, then live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.frames import CloseCode

from assist.events import Event
from audio.protocols.jsontext import parse_json_text
from audio.protocols.native import CALL_ID
from gateway.limits import TokenBuckets
from gateway.runner import Connection
from live.session import FeedbackLimit, Services

log = logging.getLogger("callcue.screens")


async def serve_call_events(ws: WebSocket, services: Services, call_id: str) -> None:
    """A screen on one call. A screen on a call that is live (here or, with a cluster, on
    another node) is subscribed before its websocket is accepted: once the client sees the
    connection open, it misses no event of the call, even one that starts that instant."""
    conn = Connection(ws)
    raw = ws.query_params.get("after_seq", "0")
    if not CALL_ID.match(call_id) or not re.fullmatch(r"[0-9]{1,10}", raw):
        await ws.accept()
        problem = "call id" if not CALL_ID.match(call_id) else f"after_seq {raw!r}"
        await conn.send_json(
            {
                "type": "error",
                "code": "bad_request",
                "message": f"invalid {problem}; after_seq must be a whole number",
            }
        )
        await conn.close(CloseCode.POLICY_VIOLATION, "bad_request")
        return
    after = int(raw)
    accepted = False
    store = services.store
    feed = services.hub.feed(call_id)
    if services.cluster is not None and (feed is None or not (feed.live or feed.ended)):
        # not running here: follow it from Redis wherever it runs (or will start)
        await services.cluster.follow(call_id)
        feed = services.hub.feed(call_id)
    stored_call = None
    replay: list[dict[str, Any]] = []
    if feed is None and store is not None:
        # not in memory: a call from before this process started, or one not begun yet
        try:
            stored_call = await asyncio.to_thread(store.get_call, call_id)
            if stored_call is not None:
                replay = await asyncio.to_thread(store.events, call_id, (), after)
        except Exception as exc:
            await ws.accept()
            await _store_unavailable(
                conn,
                call_id,
                exc,
                f"call {call_id} is not in progress on this server and the call store, which "
                f"holds earlier calls, cannot be read now; reconnect later (with ?after_seq="
                f"{after})",
            )
            await conn.close(CloseCode.TRY_AGAIN_LATER, "store_unavailable")
            return
        feed = services.hub.feed(call_id)  # (it may have started while the store answered)
    if feed is None and stored_call is not None:
        # a call from before this process started: replay it from the store
        await ws.accept()
        accepted = True
        for stored in replay:
            await conn.send_json(stored)
        if replay:
            after = max(after, int(replay[-1]["seq"]))
        now = services.hub.feed(call_id)
        if now is None or not (now.live or now.ended):
            await conn.close(CloseCode.NORMAL_CLOSURE, "call ended")
            return
        # it resumed meanwhile: follow it live from what was replayed
    backlog, sub = services.hub.subscribe(call_id, after)
    base = sub.feed.base  # the stored events up to here are not in memory (same step)
    reader: asyncio.Task[None] | None = None
    try:
        if not accepted:
            await ws.accept()  # subscribed first: what happens from now on reaches the screen
        reader = asyncio.create_task(_read_screen(ws, conn, services, call_id))
        earlier: list[dict[str, Any]] = []
        if store is not None and after < base:
            # the call resumed after a restart, or a long call's oldest events were let go
            # from memory: that part is in the store
            try:
                earlier = [
                    stored
                    for stored in await asyncio.to_thread(store.events, call_id, (), after)
                    if stored["seq"] <= base
                ]
            except Exception as exc:  # the store is down: the screen still follows the call
                await _store_unavailable(
                    conn,
                    call_id,
                    exc,
                    f"events {after + 1} to {base} of this call are in the call store, which "
                    f"cannot be read now; the rest follow. Reconnect later with ?after_seq="
                    f"{after} for them",
                )
        # in seq order: what memory kept of that part (open partials, the newest analytics:
        # the store does not keep them) goes between the stored events
        ordered: list[dict[str, Any] | Event] = [*earlier, *backlog]
        ordered.sort(key=_seq_of)
        for event in ordered:
            if isinstance(event, dict):
                await conn.send_json(event)
            else:
                await conn.send_text(event.to_json())
        while conn.open:
            next_event = asyncio.ensure_future(sub.next())
            done, _ = await asyncio.wait({next_event, reader}, return_when=asyncio.FIRST_COMPLETED)
            if next_event not in done:
                next_event.cancel()
                return  # the screen went away
            live = next_event.result()
            if live is None:
                break
            await conn.send_text(live.to_json())
        if sub.overflowed:
            services.metrics.limited.inc(1, "screen_backlog")
            await conn.send_json(
                {
                    "type": "error",
                    "code": "slow_consumer",
                    "message": f"this screen fell {sub.backlog} events behind and was "
                    f"disconnected; reconnect with ?after_seq={sub.last_seq} to resume",
                }
            )
            await conn.close(CloseCode.POLICY_VIOLATION, "slow_consumer")
        else:
            await conn.close(CloseCode.NORMAL_CLOSURE, "call ended")
    finally:
        sub.close()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


# What one screen may send: a burst of FEEDBACK_BURST messages, then FEEDBACK_PER_MINUTE a
# minute (an agent clicks a few times a minute); more gets `feedback_limit` and is not stored
FEEDBACK_PER_MINUTE = 120
FEEDBACK_BURST = 30


async def _read_screen(ws: WebSocket, conn: Connection, services: Services, call_id: str) -> None:
    """Read what the screen sends: `feedback` messages; returns when it disconnects.

    A bad message gets an `error` reply naming the problem; the screen stays connected. A
    screen past its rate, or a call past `MAX_FEEDBACK_PER_CALL`, gets `feedback_limit`.
    """
    bucket = TokenBuckets(FEEDBACK_PER_MINUTE, burst=FEEDBACK_BURST)
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if (wait := bucket.take("screen")) > 0:
                services.metrics.limited.inc(1, "feedback")
                await conn.send_json(
                    {
                        "type": "error",
                        "code": "feedback_limit",
                        "message": f"more than {FEEDBACK_PER_MINUTE} messages a minute from "
                        f"this screen; not stored (try again in {wait:.1f} s)",
                    }
                )
                continue
            text = message.get("text")
            # bad JSON of every kind (too deep, too long a number) is a reply, not a crash
            data, problem = parse_json_text(text) if text else (None, None)
            if problem is None:
                if not isinstance(data, dict) or data.get("type") != "feedback":
                    problem = 'screens send only {"type":"feedback",...} text messages'
                elif (session := services.sessions.get(call_id)) is None:
                    if services.cluster is not None:  # maybe it runs on another node
                        problem = await services.cluster.forward_feedback(call_id, data)
                    else:
                        problem = f"call {call_id} is not live; feedback is taken during the call"
                else:
                    try:
                        session.feedback(data)
                    except FeedbackLimit as exc:
                        await conn.send_json(
                            {"type": "error", "code": "feedback_limit", "message": str(exc)}
                        )
                        continue
                    except ValueError as exc:
                        problem = str(exc)
            if problem is not None:
                await conn.send_json({"type": "error", "code": "bad_feedback", "message": problem})


async def _store_unavailable(conn: Connection, call_id: str, exc: Exception, message: str) -> None:
    """Tell a screen the call store cannot be read now (`message`: what it misses)."""
    log.warning("cannot read call %s from the store: %s", call_id, exc)
    await conn.send_json({"type": "error", "code": "store_unavailable", "message": message})


def _seq_of(event: dict[str, Any] | Event) -> int:
    return int(event["seq"]) if isinstance(event, dict) else event.seq
