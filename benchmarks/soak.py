"""Soak: N concurrent two-channel calls for M minutes through one real server, with faults.

Each of `--calls` slots streams the AWS auto-repair call pair at real time over the native
ingest websocket, looped from a different offset each call, `--call-seconds` per call; then it
stops the call and starts a new call id, until `--minutes` are up (the first calls are cut
shorter so that call ends are spread out). A screen watches every call on
/v1/calls/{id}/events and keeps every event it is sent.

Every `--window` seconds it samples the server's RSS and CPU (psutil), active calls and queue
depths (/healthz); every partial and final latency (client side, measured as
benchmarks.latency does) goes into the window in which it was observed.

Every `--fault-every` seconds, on a connection of its own, the next of: an ingest client that
drops its TCP connection mid-utterance, a screen that does the same, and bad input (malformed
JSON, an unsupported encoding, a bad sample rate, audio before start, a truncated frame, an
oversized frame, the id of a call that is live, a wrong token on a screen and on ingest). Each
bad input must be answered with its error code and close code. The server gets an admin token
(used by the calls, screens and REST requests) unless `--no-token`.

At the end every call's stored transcript and events are fetched over the REST API and compared
with what its screen saw (nothing lost, seqs without gaps or duplicates). Writes
benchmarks/results/NAME.json (`--save`) and prints a summary. Nothing is asserted: the numbers
are reported as measured ("memory flat" is the RSS ratio of the last quarter to the first).

    .venv/bin/python -m benchmarks.soak --calls 4 --minutes 20 --save soak
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import os
import secrets
import statistics
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from audio.files import CallAudio, load_call_audio
from benchmarks.capacity import scrape
from benchmarks.common import DATA, RESULTS, percentile, write_result
from benchmarks.latency import PAIR, Measured, Sampler, Workload, measure
from clients.native import StreamResult, encode_frames, stream_call
from store.calls import STORED_EVENTS
from tests.servers import ServerProcess

CHANNELS = ["customer", "agent"]
WORKLOAD = "aws_auto_repairs_40 (2ch, looped)"
MAX_FRAME_BYTES = 1_048_576  # passed to the server, so the oversized frame is known to be one
ABRUPT_CUT_S = 9.5  # into the pair the caller is mid-sentence (one customer turn, 6-12 s)
SHORTEST_CALL_S = 5.0
WRONG_TOKEN = "not-the-token-0123456789"
VICTIM_LEFT_S = 5.0  # audio a call must still have to send to be a fault's victim
SCREEN_WAIT_S = 60.0  # a screen must see call.ended this long after its ingest client is done
FAULTS = ("abrupt_disconnect", "screen_abort")
BAD_INPUTS = {  # kind: (error code, close code)
    "bad_json": ("bad_json", 1007),
    "unsupported_encoding": ("unsupported_encoding", 1003),
    "bad_sample_rate": ("bad_sample_rate", 1008),
    "audio_before_start": ("audio_before_start", 1008),
    "truncated_frame": ("bad_audio", 1007),
    "oversized_frame": ("frame_too_large", 1009),
    "call_id_live": ("call_active", 1008),
    "bad_token": ("unauthorized", 4401),  # on a screen
    "bad_ingest_key": ("unauthorized", 4401),
}
ROTATION = (
    "abrupt_disconnect",
    "bad_json",
    "unsupported_encoding",
    "screen_abort",
    "bad_sample_rate",
    "audio_before_start",
    "truncated_frame",
    "oversized_frame",
    "call_id_live",
    "bad_token",
    "bad_ingest_key",
)
METRICS = {
    "store_errors": "callcue_store_errors_total",
    "assist_errors": "callcue_assist_errors_total",
    "finals_overdue": "callcue_finals_overdue_total",
    "partials_dropped_superseded": 'callcue_partials_dropped_total{reason="superseded"}',
    "partials_skipped_under_load": 'callcue_partials_dropped_total{reason="load"}',
    "calls_refused_max_calls": 'callcue_calls_refused_total{reason="max_calls"}',
    "calls_refused_overloaded": 'callcue_calls_refused_total{reason="overloaded"}',
}


def looped(audio: CallAudio, offset_s: float, seconds: float) -> CallAudio:
    """`seconds` of `audio` from `offset_s` on, wrapping around at its end."""
    n = audio.samples.shape[0]
    start = int(offset_s * audio.sample_rate) % n
    index = (np.arange(int(seconds * audio.sample_rate)) + start) % n
    return CallAudio(audio.samples[index], audio.sample_rate)


@dataclass
class Screen:
    """What one events websocket was sent."""

    events: list[dict[str, Any]] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    close_code: int | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class CallRecord:
    call_id: str
    kind: str  # good | disconnect | error (a bad frame mid-call)
    expect_outcome: str  # the stored call's outcome, and call.ended's reason
    screen: Screen = field(default_factory=Screen)
    audio_seconds: float = 0.0
    ingest: StreamResult | None = None
    refused: bool = False
    problem: str = ""  # an exception the client hit, or a screen that never saw the end
    checks: dict[str, Any] = field(default_factory=dict)


class Soak:
    def __init__(
        self, server: ServerProcess, args: argparse.Namespace, pair: CallAudio, token: str | None
    ) -> None:
        self.server = server
        self.args = args
        self.pair = pair
        self.token = token  # the server's admin token: ingest, screens and REST need it
        self.rate_limited = 0  # REST answers 429 (retried after Retry-After)
        self.calls_ended = 0  # the server keeps the events of recently ended calls in memory
        self.stamp = time.strftime("%H%M%S")
        self.records: list[CallRecord] = []
        self.faults: list[dict[str, Any]] = []
        self.windows: list[dict[str, Any]] = []
        self.measured = Measured()
        # good calls past call.started, oldest first: the monotonic time their audio ends
        self.live: dict[str, float] = {}
        self.stopping = asyncio.Event()
        self.t0 = 0.0
        self.deadline = 0.0

    # --- HTTP and websocket helpers -------------------------------------------------------

    def headers(self, token: str | None = None) -> dict[str, str]:
        token = token or self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.server.http + path, headers=self.headers())
        for attempt in range(6):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code != 429 or attempt == 5:
                    raise
                self.rate_limited += 1  # CALLCUE_RATE_LIMIT: wait as told, like a good client
                time.sleep(float(exc.headers.get("retry-after") or 1))

    async def healthy(self) -> bool:
        try:
            health = await asyncio.to_thread(self.get, "/healthz")
        except (OSError, ValueError):
            return False
        return bool(health.get("status") == "ok")

    def events_url(self, call_id: str, token: str | None) -> str:
        return f"{self.server.url}/v1/calls/{call_id}/events" + (f"?token={token}" if token else "")

    async def ingest(self, token: str | None = None) -> ClientConnection:
        return await connect(
            self.server.url + "/v1/ingest",
            additional_headers=self.headers(token),
            max_size=None,
            open_timeout=30,
            close_timeout=10,
        )

    def start_message(self, call_id: str, **fields: Any) -> str:
        start = {
            "type": "start",
            "call_id": call_id,
            "encoding": "pcm16",
            "sample_rate": self.pair.sample_rate,
            "channels": CHANNELS,
        }
        return json.dumps({**start, **fields})

    async def watch(self, call_id: str, screen: Screen) -> None:
        """A screen on the call from before it starts until the server closes it."""
        async with connect(
            self.events_url(call_id, self.token), max_size=None, open_timeout=30
        ) as ws:
            screen.connected.set()
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    if isinstance(message, str):
                        screen.events.append(json.loads(message))
                        screen.received_at.append(time.time())
        screen.close_code = ws.close_code

    async def attach(self, record: CallRecord) -> asyncio.Task[None]:
        self.records.append(record)
        watcher = asyncio.create_task(self.watch(record.call_id, record.screen))
        connected = asyncio.create_task(record.screen.connected.wait())
        await asyncio.wait({watcher, connected}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        connected.cancel()
        return watcher

    async def detach(self, record: CallRecord, watcher: asyncio.Task[None]) -> None:
        self.calls_ended += not record.refused
        # a refused call never starts: its screen would wait for it for good
        done, _ = await asyncio.wait({watcher}, timeout=0 if record.refused else SCREEN_WAIT_S)
        if not done:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if not record.refused:
                record.problem = record.problem or "screen saw no end of the call"
        elif watcher.exception() is not None:
            record.problem = record.problem or f"screen: {watcher.exception()!r}"

    # --- the calls ------------------------------------------------------------------------

    async def slot(self, i: int) -> None:
        await asyncio.sleep(i * self.args.stagger)
        length = max(SHORTEST_CALL_S, self.args.call_seconds * (1 - i / self.args.calls))
        k = 0
        while (left := self.deadline - time.monotonic()) >= SHORTEST_CALL_S:
            # the last call of a slot runs to the end instead of leaving a short one behind
            seconds = left if left - length < length / 2 else length
            offset = (i * 61.0 + k * 97.0) % self.pair.duration
            refused = await self.good_call(f"soak-{self.stamp}-{i}-{k}", offset, seconds)
            k += 1
            length = self.args.call_seconds
            if refused:
                await asyncio.sleep(5)

    async def good_call(self, call_id: str, offset: float, seconds: float) -> bool:
        audio = looped(self.pair, offset, seconds)
        record = CallRecord(call_id, "good", "stop", audio_seconds=audio.duration)
        watcher = await self.attach(record)

        def on_event(event: dict[str, Any]) -> None:
            if event.get("type") == "call.started":
                self.live[call_id] = time.monotonic() + audio.duration

        try:
            record.ingest = await stream_call(
                self.server.url,
                audio,
                CHANNELS,
                realtime=True,
                call_id=call_id,
                on_event=on_event,
                token=self.token,
            )
            record.refused = record.ingest.close_code == 1013
        except (OSError, WebSocketException, TimeoutError) as exc:
            record.problem = f"ingest: {exc!r}"
        finally:
            self.live.pop(call_id, None)
        await self.detach(record, watcher)
        if record.ingest is not None and not record.refused:
            measure(record.ingest, Workload(WORKLOAD, audio, CHANNELS), self.measured)
        return record.refused

    # --- faults and bad input -------------------------------------------------------------

    async def inject(self) -> None:
        """One fault or bad input every `fault_every` seconds, in ROTATION order."""
        n = 0
        next_at = time.monotonic() + self.args.fault_every
        while True:
            kind = ROTATION[n % len(ROTATION)]
            needs = ABRUPT_CUT_S + 10 if kind == "abrupt_disconnect" else 5
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if self.deadline - time.monotonic() < needs:
                return
            at = round(time.time() - self.t0, 1)
            try:
                outcome = await asyncio.wait_for(self.fault(kind, n), 120)
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 1013:
                    # the overload policy at work: a call beyond what the machine holds is
                    # refused, so this fault never happened
                    outcome = {"skipped": "refused: server at capacity (1013)"}
                else:
                    outcome = {"ok": False, "problem": repr(exc)}
            except (OSError, WebSocketException, TimeoutError) as exc:
                outcome = {"ok": False, "problem": repr(exc)}
            outcome = {"kind": kind, "at_s": at, **outcome}
            outcome["server_healthy_after"] = await self.healthy()
            self.faults.append(outcome)
            n += 1
            next_at = max(next_at + self.args.fault_every, time.monotonic())

    async def fault(self, kind: str, n: int) -> dict[str, Any]:
        call_id = f"soak-{self.stamp}-{kind.replace('_', '-')}-{n}"
        if kind == "abrupt_disconnect":
            return await self.abrupt_disconnect(call_id)
        if kind == "screen_abort":
            return await self.screen_abort()
        code, close = BAD_INPUTS[kind]
        starts: dict[str, dict[str, Any]] = {
            "bad_sample_rate": {"sample_rate": 1000},
            "unsupported_encoding": {"encoding": "opus"},
        }
        if kind in starts:
            return await self.bad_input(code, close, [self.start_message(call_id, **starts[kind])])
        if kind == "bad_json":
            return await self.bad_input(code, close, ['{"type": "start", "call_id": '])
        if kind == "audio_before_start":
            return await self.bad_input(code, close, [self.pair.samples[:800].tobytes()])
        if kind in ("truncated_frame", "oversized_frame"):
            # a call that has begun: what it had sent must still be decoded, sent and stored
            audio = encode_frames(self.pair, "pcm16")
            frames: list[str | bytes] = [self.start_message(call_id)]
            step = self.pair.sample_rate // 10
            frames += [audio(lo, lo + step) for lo in range(0, 2 * self.pair.sample_rate, step)]
            # over the limit (an even length: only the size is wrong), or half a sample short
            bad = MAX_FRAME_BYTES + 2 if kind == "oversized_frame" else 3
            frames.append(b"\x00" * bad)
            record = CallRecord(call_id, "error", "error", audio_seconds=2.0)
            watcher = await self.attach(record)
            result = await self.bad_input(code, close, frames)
            if result["got"]["code"] == "capacity" and result["got"]["close"] == 1013:
                # refused at capacity before its bad frame could be sent: not a bad-input
                # answer either way (the overload policy answered first)
                record.refused = True
                await self.detach(record, watcher)
                return {"call_id": call_id, "skipped": "refused: server at capacity (1013)"}
            await self.detach(record, watcher)
            return {"call_id": call_id, **result}
        if kind == "call_id_live":
            victim = await self.live_call()
            if victim is None:
                return {"skipped": "no live call to collide with"}
            result = await self.bad_input(code, close, [self.start_message(victim)])
            return {"victim": victim, **result}
        if not self.token:
            return {"skipped": "no tokens configured (--no-token): everyone is let in"}
        if kind == "bad_ingest_key":
            return await self.bad_input(code, close, [self.start_message(call_id)], WRONG_TOKEN)
        return await self.bad_token(code, close)

    async def live_call(self) -> str | None:
        """A good call with at least VICTIM_LEFT_S of its audio still to send. One about to
        end would not do: a start with its id that reaches the server after it ended is a
        resume by the same credential (allowed), not a collision, and it would end the
        stored call a second time with another reason."""
        for _ in range(50):
            now = time.monotonic()
            for call_id, ends in self.live.items():
                if ends - now >= VICTIM_LEFT_S:
                    return call_id
            await asyncio.sleep(0.2)
        return None

    async def bad_input(
        self, code: str, close: int, messages: list[str | bytes], token: str | None = None
    ) -> dict[str, Any]:
        """Send `messages` on a fresh ingest connection (with `token` instead of the right
        one, if given); answered: the expected error, then the expected close."""
        error: dict[str, Any] | None = None
        ws = await self.ingest(token)
        try:
            with contextlib.suppress(ConnectionClosed):
                for message in messages:
                    await ws.send(message)
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                async with asyncio.timeout(60):
                    async for text in ws:
                        event = json.loads(text) if isinstance(text, str) else {}
                        if event.get("type") == "error":
                            error = event
        finally:
            await ws.close()
        got = {
            "code": error.get("code") if error else None,
            "close": ws.close_code,
            "message": error.get("message") if error else None,
        }
        answered = got["code"] == code and got["close"] == close and bool(got["message"])
        return {"expected": {"code": code, "close": close}, "got": got, "answered": answered}

    async def bad_token(self, code: str, close: int) -> dict[str, Any]:
        victim = await self.live_call() or "no-such-call"
        got: dict[str, Any] = {}
        async with connect(self.events_url(victim, WRONG_TOKEN)) as ws:
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                async with asyncio.timeout(30):
                    async for text in ws:
                        event = json.loads(text)
                        got = {"code": event.get("code"), "message": event.get("message")}
        got["close"] = ws.close_code
        answered = got.get("code") == code and got["close"] == close and bool(got.get("message"))
        return {"expected": {"code": code, "close": close}, "got": got, "answered": answered}

    async def abrupt_disconnect(self, call_id: str) -> dict[str, Any]:
        """Stream the pair at real time, then drop the TCP connection mid-utterance (no stop,
        no close frame); the call must end with reason "disconnect" and flush its finals."""
        audio = looped(self.pair, 0.0, ABRUPT_CUT_S)
        record = CallRecord(call_id, "disconnect", "disconnect", audio_seconds=audio.duration)
        watcher = await self.attach(record)
        ws = await self.ingest()
        await ws.send(self.start_message(call_id))

        async def drain() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pass

        reader = asyncio.create_task(drain())
        frame = encode_frames(audio, "pcm16")
        step = audio.sample_rate // 10
        began = time.monotonic()
        try:
            for lo in range(0, audio.samples.shape[0], step):
                hi = min(lo + step, audio.samples.shape[0])
                await asyncio.sleep(max(0.0, began + hi / audio.sample_rate - time.monotonic()))
                await ws.send(frame(lo, hi))
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == 1013:  # refused at capacity
                record.refused = True
                await self.detach(record, watcher)
            raise
        ws.transport.abort()
        dropped = time.time()
        with contextlib.suppress(ConnectionClosed):
            await reader
        await self.detach(record, watcher)
        events = record.screen.events
        ended = events[-1] if events and events[-1].get("type") == "call.ended" else {}
        flushed = sum(
            1
            for e, t in zip(events, record.screen.received_at, strict=True)
            if e.get("type") == "transcript.final" and t >= dropped
        )
        return {
            "call_id": call_id,
            "ended_reason": ended.get("reason"),
            "finals_after_drop": flushed,
            "ok": ended.get("reason") == "disconnect" and flushed > 0,
        }

    async def screen_abort(self) -> dict[str, Any]:
        """A screen on a live call that drops its TCP connection after a few events."""
        victim = await self.live_call()
        if victim is None:
            return {"skipped": "no live call to watch"}
        seen = 0
        async with connect(self.events_url(victim, self.token), max_size=None) as ws:
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                async with asyncio.timeout(10):
                    async for _ in ws:
                        seen += 1
                        if seen >= 3:
                            break
            ws.transport.abort()
        return {"victim": victim, "events_read": seen, "ok": True}

    # --- sampling -------------------------------------------------------------------------

    async def sample(self) -> None:
        process = psutil.Process(self.server.pid)
        while not self.stopping.is_set():
            sampler = Sampler(self.server.pid)
            began = time.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.args.window)
            cpu = sampler.stop() or 0.0
            now = time.time()
            rss = process.memory_info().rss
            try:
                health = await asyncio.to_thread(self.get, "/healthz")
            except (OSError, ValueError):
                health = {}
            queue = health.get("queue", {})
            window = {
                "t_start_s": round(began - self.t0, 1),
                "t_end_s": round(now - self.t0, 1),
                "rss_mib": round(rss / 2**20, 1),
                "peak_rss_mib": round(max(rss, sampler.peak_rss) / 2**20, 1),
                "cpu_percent": round(100 * cpu / max(now - began, 1e-6), 1),
                # the machine's 1-minute load: other work on it shows here
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "active_calls": health.get("active_calls"),
                "calls_ended_so_far": self.calls_ended,
                "queue_finals": queue.get("finals"),
                "queue_partials": queue.get("partials"),
            }
            self.windows.append(window)
            print(
                f"[{window['t_end_s']:7.1f}s] RSS {window['rss_mib']:7.1f} MiB  CPU "
                f"{window['cpu_percent']:5.1f}%  active {window['active_calls']}  "
                f"queue {window['queue_finals']}/{window['queue_partials']}  "
                f"faults {len(self.faults)}",
                flush=True,
            )

    # --- the run --------------------------------------------------------------------------

    async def run(self) -> None:
        self.t0 = time.time()
        self.deadline = time.monotonic() + self.args.minutes * 60
        sampler = asyncio.create_task(self.sample())
        injector = asyncio.create_task(self.inject())
        await asyncio.gather(*(self.slot(i) for i in range(self.args.calls)))
        await injector
        self.stopping.set()
        await sampler

    def verify(self, record: CallRecord) -> dict[str, Any]:
        """Compare what the screen saw with what was stored."""
        events = record.screen.events
        seqs = [e["seq"] for e in events if isinstance(e.get("seq"), int)]
        last = events[-1] if events else {}
        checks: dict[str, Any] = {
            "events_on_screen": len(seqs),
            "seq_duplicates": len(seqs) - len(set(seqs)),
            "seq_gaps": len(set(range(1, max(seqs, default=0) + 1)) - set(seqs)),
            "seq_out_of_order": sum(1 for a, b in itertools.pairwise(seqs) if b <= a),
            "ended_reason": last.get("reason") if last.get("type") == "call.ended" else None,
        }
        finals = {e["seq"]: e for e in events if e.get("type") == "transcript.final"}
        try:
            call = self.get(f"/v1/calls/{record.call_id}")
            stored = self.get(f"/v1/calls/{record.call_id}/transcript?format=json")["utterances"]
            stored_events = self.get(f"/v1/calls/{record.call_id}/events")["events"]
        except (OSError, ValueError) as exc:  # HTTPError is an OSError: a 404 lands here
            checks.update(stored=False, problem=repr(exc), finals_on_screen=len(finals))
            checks["finals_lost"] = len(finals)
            return checks
        by_seq = {u["seq"]: u for u in stored}
        # every event a screen saw that the store keeps (not partials, not call.analytics)
        shown = {e["seq"] for e in events if "seq" in e and e.get("type") in STORED_EVENTS}
        kept = {e["seq"] for e in stored_events}
        checks.update(
            stored=True,
            outcome=call.get("outcome"),
            finals_on_screen=len(finals),
            finals_stored=len(stored),
            finals_lost=sum(1 for seq in finals if seq not in by_seq),
            finals_text_differs=sum(
                1 for seq, e in finals.items() if seq in by_seq and by_seq[seq]["text"] != e["text"]
            ),
            finals_stored_not_on_screen=sum(1 for seq in by_seq if seq not in finals),
            events_lost=len(shown - kept),
        )
        if record.ingest is not None and record.kind == "good":
            mine = {e["seq"] for e in record.ingest.events if e.get("type") == "transcript.final"}
            checks["ingest_finals_differ_from_screen"] = len(mine ^ set(finals))
            checks["ingest_close"] = record.ingest.close_code
            checks["stopped"] = any(e.get("type") == "stopped" for e in record.ingest.events)
        return checks


def quarters(values: list[tuple[float, float]], t_end: float) -> tuple[list[float], list[float]]:
    """Values (time, value) of the first and the last quarter of the run."""
    first = [v for t, v in values if t < t_end / 4]
    last = [v for t, v in values if t >= t_end * 3 / 4]
    return first, last


def latency_stats(values: list[float]) -> dict[str, Any]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}


def fill_latency(windows: list[dict[str, Any]], m: Measured, t0: float) -> None:
    """Each window gets the latencies observed in it."""
    for kind, values, at in (("partial", m.partial, m.partial_at), ("final", m.final, m.final_at)):
        pairs = sorted(zip(at, values, strict=True))
        times = [t for t, _ in pairs]
        for window in windows:
            lo = bisect.bisect_left(times, t0 + window["t_start_s"])
            hi = bisect.bisect_left(times, t0 + window["t_end_s"])
            window[f"{kind}_latency_s"] = latency_stats([v for _, v in pairs[lo:hi]])


def summarize(soak: Soak, health: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    windows, m, t0 = soak.windows, soak.measured, soak.t0
    t_end = windows[-1]["t_end_s"] if windows else 0.0
    rss_first, rss_last = quarters([(w["t_end_s"], w["rss_mib"]) for w in windows], t_end)
    rss_a = statistics.median(rss_first) if rss_first else None
    rss_b = statistics.median(rss_last) if rss_last else None
    later = [w for w in windows if w["t_end_s"] >= t_end / 4]  # after the warm-up quarter
    slope = None
    if len(later) >= 3:
        hours = np.array([w["t_end_s"] for w in later]) / 3600
        slope = round(float(np.polyfit(hours, [w["rss_mib"] for w in later], 1)[0]), 1)
    latency: dict[str, Any] = {}
    for kind, values, at in (("partial", m.partial, m.partial_at), ("final", m.final, m.final_at)):
        first, last = quarters([(t - t0, v) for t, v in zip(at, values, strict=True)], t_end)
        latency[kind] = {
            "all": latency_stats(values),
            "first_quarter": latency_stats(first),
            "last_quarter": latency_stats(last),
        }
    good = [r for r in soak.records if r.kind == "good" and not r.refused]
    checked = [r for r in soak.records if not r.refused and r.checks]

    def total(key: str, records: list[CallRecord] = checked) -> int:
        return int(sum(r.checks.get(key) or 0 for r in records))

    tried = [f for f in soak.faults if f["kind"] in BAD_INPUTS and "skipped" not in f]
    injected = [f for f in soak.faults if f["kind"] in FAULTS and "skipped" not in f]
    by_id = {r.call_id: r for r in soak.records}
    for fault in injected:  # a dropped call survived if its call also checks out in the store
        call = by_id.get(fault.get("call_id", ""))
        if call is not None:
            fault["ok"] = bool(
                fault.get("ok")
                and call.checks.get("outcome") == "disconnect"
                and call.checks.get("finals_lost") == 0
            )
    completed = [
        r
        for r in good
        if r.checks.get("outcome") == "stop"
        and r.checks.get("ingest_close") == 1000
        and r.checks.get("stopped")
        and r.checks.get("ended_reason") == "stop"
    ]
    return {
        "duration_s": t_end,
        "load": {
            "concurrent_calls": soak.args.calls,
            "calls_started": len(good),
            "calls_completed": len(completed),
            "calls_refused": sum(1 for r in soak.records if r.refused),
            "calls_with_problems": [
                {"call_id": r.call_id, "problem": r.problem} for r in soak.records if r.problem
            ],
            "audio_streamed_s": round(sum(r.audio_seconds for r in good), 1),
            "mean_active_calls": round(statistics.mean(w["active_calls"] or 0 for w in windows), 2)
            if windows
            else None,
        },
        "memory": {
            "rss_first_quarter_mib": rss_a,
            "rss_last_quarter_mib": rss_b,
            "rss_growth_mib": round(rss_b - rss_a, 1) if rss_a and rss_b else None,
            "rss_growth_pct": round(100 * (rss_b - rss_a) / rss_a, 1) if rss_a and rss_b else None,
            "rss_slope_after_first_quarter_mib_per_hour": slope,
            "peak_rss_mib": max((w["peak_rss_mib"] for w in windows), default=None),
        },
        "cpu_percent_mean": round(statistics.mean(w["cpu_percent"] for w in windows), 1)
        if windows
        else None,
        "machine_load_avg_mean": round(statistics.mean(w["load_avg_1m"] for w in windows), 2)
        if windows
        else None,
        "latency_s": latency,
        "nothing_lost": {
            "calls_checked": len(checked),
            "finals_seen_by_screens": total("finals_on_screen"),
            "finals_stored": total("finals_stored"),
            "finals_lost": total("finals_lost"),
            "finals_text_differs": total("finals_text_differs"),
            "finals_stored_not_on_screen": total("finals_stored_not_on_screen"),
            "events_lost": total("events_lost"),
            "seq_gaps": total("seq_gaps"),
            "seq_duplicates": total("seq_duplicates"),
            "seq_out_of_order": total("seq_out_of_order"),
            "ingest_finals_differ_from_screen": total("ingest_finals_differ_from_screen", good),
            "calls_not_stored": sum(1 for r in checked if not r.checks.get("stored")),
            "outcome_unexpected": [
                {"call_id": r.call_id, "expected": r.expect_outcome, "got": r.checks.get("outcome")}
                for r in checked
                if r.checks.get("outcome") != r.expect_outcome
            ],
        },
        "faults": {
            "injected": len(injected),
            "survived": sum(1 for f in injected if f.get("ok") and f["server_healthy_after"]),
            "by_kind": {k: sum(1 for f in injected if f["kind"] == k) for k in FAULTS},
            "refused_at_capacity": sum(
                1 for f in soak.faults if f["kind"] in FAULTS and "skipped" in f
            ),
        },
        "bad_inputs": {
            "tried": len(tried),
            "answered_with_error": sum(1 for f in tried if f.get("answered")),
            "by_kind": {k: sum(1 for f in tried if f["kind"] == k) for k in BAD_INPUTS},
            "skipped": sorted({f["kind"] for f in soak.faults if "skipped" in f}),
            "refused_at_capacity": sum(
                1 for f in soak.faults if f["kind"] in BAD_INPUTS and "skipped" in f
            ),
        },
        "server_at_end": health,
        "server_metrics_delta": metrics,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=4, help="concurrent calls (default 4)")
    parser.add_argument("--minutes", type=float, default=20.0, help="how long (default 20)")
    parser.add_argument("--call-seconds", type=float, default=180.0, help="length of one call")
    parser.add_argument("--window", type=float, default=10.0, help="sampling window, seconds")
    parser.add_argument("--fault-every", type=float, default=30.0, help="seconds between faults")
    parser.add_argument("--stagger", type=float, default=1.0, help="seconds between call starts")
    parser.add_argument("--save", default="soak", help="results name (default soak)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-token", action="store_true", help="no access token (bad-token checks are skipped)"
    )
    args = parser.parse_args(argv)
    pair = load_call_audio([DATA / PAIR[0], DATA / PAIR[1]])
    server_args = ["--max-frame-bytes", str(MAX_FRAME_BYTES)]
    token = None if args.no_token else "soak-" + secrets.token_hex(12)
    server = ServerProcess(*server_args, env={"CALLCUE_ADMIN_TOKEN": token} if token else None)
    try:
        before = scrape(server.http)
        soak = Soak(server, args, pair, token)
        print(
            f"soak: {args.calls} calls x {args.minutes} min, {args.call_seconds:.0f} s per call, "
            f"a fault every {args.fault_every:.0f} s; server pid {server.pid}",
            flush=True,
        )
        asyncio.run(soak.run())
        for record in soak.records:
            if not record.refused:
                record.checks = soak.verify(record)
        after = scrape(server.http)
        health = soak.get("/healthz")
        health["live_calls"] = len(soak.get("/v1/calls/live")["calls"])
        health["process_alive"] = server.proc.poll() is None
        health["rest_rate_limited"] = soak.rate_limited
        health["log_errors"] = [
            line
            for line in server.log
            if "Traceback" in line or " ERROR " in line or line.startswith("ERROR")
        ][:20]
    finally:
        server.stop()
    metrics = {k: after.get(v, 0.0) - before.get(v, 0.0) for k, v in METRICS.items()}
    fill_latency(soak.windows, soak.measured, soak.t0)
    summary = summarize(soak, health, metrics)
    path = write_result(
        args.save,
        {
            "model": "embedded:tiny.en int8 cpu",
            "settings": {
                "calls": args.calls,
                "minutes": args.minutes,
                "call_seconds": args.call_seconds,
                "window_s": args.window,
                "fault_every_s": args.fault_every,
                "stagger_s": args.stagger,
                "workload": WORKLOAD,
                "workload_seconds": round(pair.duration, 1),
                "server_args": server_args,
                "admin_token": bool(soak.token),
            },
            "summary": summary,
            "windows": soak.windows,
            "faults": soak.faults,
            "calls": [
                {
                    "call_id": r.call_id,
                    "kind": r.kind,
                    "audio_s": round(r.audio_seconds, 1),
                    "refused": r.refused,
                    **r.checks,
                }
                for r in soak.records
            ],
        },
        args.results_dir,
    )
    print_summary(summary)
    print(f"wrote {path}")


def print_summary(s: dict[str, Any]) -> None:
    load, mem, lat, lost = s["load"], s["memory"], s["latency_s"], s["nothing_lost"]
    print(
        f"load: {load['concurrent_calls']} concurrent calls for {s['duration_s']:.0f} s, "
        f"{load['calls_completed']}/{load['calls_started']} calls completed, "
        f"{load['calls_refused']} refused, {load['audio_streamed_s']:.0f} s of audio, "
        f"server CPU {s['cpu_percent_mean']}% of a core"
    )
    print(
        f"memory: RSS {mem['rss_first_quarter_mib']} MiB (first quarter) -> "
        f"{mem['rss_last_quarter_mib']} MiB (last quarter): {mem['rss_growth_mib']} MiB "
        f"({mem['rss_growth_pct']}%), peak {mem['peak_rss_mib']} MiB"
    )
    for kind in ("partial", "final"):
        a, b = lat[kind]["first_quarter"], lat[kind]["last_quarter"]
        print(
            f"{kind} latency p50/p95: first quarter {a['p50']}/{a['p95']} s -> "
            f"last quarter {b['p50']}/{b['p95']} s"
        )
    print(
        f"nothing lost: {lost['finals_stored']} finals stored of {lost['finals_seen_by_screens']} "
        f"seen by screens, lost {lost['finals_lost']}, events lost {lost['events_lost']}, seq "
        f"gaps {lost['seq_gaps']}, duplicates {lost['seq_duplicates']}, unexpected outcomes "
        f"{len(lost['outcome_unexpected'])}"
    )
    faults, bad, end = s["faults"], s["bad_inputs"], s["server_at_end"]
    print(
        f"faults survived {faults['survived']}/{faults['injected']}; bad inputs answered with "
        f"their error {bad['answered_with_error']}/{bad['tried']}"
        + (f" (skipped: {', '.join(bad['skipped'])})" if bad["skipped"] else "")
    )
    print(
        f"server at end: {end.get('status')}, active calls {end.get('active_calls')}, "
        f"errors logged {len(end.get('log_errors', []))}"
    )


if __name__ == "__main__":
    main()
