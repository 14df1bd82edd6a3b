"""One real server under malformed traffic while a real call streams, then schemathesis on its
REST API.

Hypothesis draws malformed sessions for /v1/ingest, /v1/audiohook, /v1/twilio and
/v1/calls/{id}/events; each one's own sans-I/O protocol, fed the same messages here, says what
the server must answer (the error code, the close code, the AudioHook `disconnect`). The good
call must still get its finals and `call.ended`, /healthz must answer, and the server's log
must hold no traceback. Schemathesis then checks every operation of /openapi.json (no 5xx, no
response that breaks the description) with calls in the store written through CallStore.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from assist.events import CallEnded, CallStarted, SentimentEvent, TranscriptFinal, Word, now_iso
from audio.files import CallAudio, load_call_audio
from audio.protocols.events import ProtocolFailure, Stop
from audio.protocols.native import StartCall
from audio.protocols.twilio import TwilioStart
from clients.simulators import sign_audiohook_request
from gateway.runner import close_reason
from store.calls import CallStore
from tests.conftest import AUDIO
from tests.fuzz import test_audiohook_fuzz as audiohook
from tests.fuzz import test_native_fuzz as native
from tests.fuzz import test_twilio_fuzz as twilio
from tests.fuzz.strategies import any_text, dumps, fuzz_settings, mutated
from tests.servers import ServerProcess

ADMIN = "fuzz-admin-token-0123456789"
QA = "fuzz-qa-token-0123456789ab"
AUDIOHOOK_KEY = "fuzz-audiohook-key"
AUDIOHOOK_SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
TWILIO_TOKEN = "t0k-twilio-token-0001"  # the token in the fuzzed Twilio `start` template
PAIR = [AUDIO / "cs_aws_auto_repairs_40_caller.wav", AUDIO / "cs_aws_auto_repairs_40_agent.wav"]
GOOD_CALL = "good-call-1"
STORED = ["stored:odd@id+1.x-y", "stored-2"]
# a server closes a bad connection with one of these; 1006 (no close frame: the handler died)
# and 1011 (internal error) mean the server broke
CLEAR_CLOSES = {1000, 1003, 1007, 1008, 1009, 1013, 4401, 4403}


def store_calls(url: str) -> None:
    """Two finished calls, with the text an export must escape, written as the server would."""
    store = CallStore(url)
    for n, call_id in enumerate(STORED):
        seq = 0

        def record(event: Any) -> None:
            nonlocal seq
            seq += 1
            store.record(dataclasses.replace(event, seq=seq, ts=now_iso()))

        record(
            CallStarted(
                call_id=call_id,
                channels=("customer", "agent"),
                metadata={"agent": "ånna", "note": "<b>&amp;</b>"},
            )
        )
        texts = ["I want a refund --> now", "<b>sure</b> & done\u2028ok", "\U0001f600 bye"]
        for i, text in enumerate(texts):
            record(
                TranscriptFinal(
                    call_id=call_id,
                    channel=("customer", "agent")[i % 2],
                    utterance=i,
                    start=i * 3.0,
                    end=i * 3.0 + 2.5,
                    text=text,
                    words=(Word(text.split()[0], i * 3.0, i * 3.0 + 0.4, 0.9),),
                    confidence=0.8,
                )
            )
        record(
            SentimentEvent(
                call_id=call_id,
                channel="customer",
                utterance=0,
                label="negative",
                score=-0.6,
                probabilities={"negative": 0.7, "neutral": 0.2, "positive": 0.1},
                trend=-0.6 + n,
                negative_streak=1,
            )
        )
        record(CallEnded(call_id=call_id, reason="stop", duration=9.0))
    store.add_review(STORED[0], "qa", {"greeting": 4.0}, [])
    store.close()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("fuzz-server")
    url = f"sqlite:///{tmp}/store.db"
    store_calls(url)
    proc = ServerProcess(
        env={
            "CALLCUE_DATABASE_URL": url,
            "CALLCUE_ADMIN_TOKEN": ADMIN,
            "CALLCUE_TOKENS": f"{QA}:qa",
            "CALLCUE_AUDIOHOOK_KEYS": f"{AUDIOHOOK_KEY}:{AUDIOHOOK_SECRET}",
            "CALLCUE_TWILIO_TOKENS": TWILIO_TOKEN,
            "CALLCUE_RECORD_AUDIO": "true",
            "CALLCUE_RECORDINGS_DIR": f"{tmp}/recordings",
            "CALLCUE_RATE_LIMIT": "0",
        }
    )
    yield proc
    proc.stop()


def tracebacks(server: ServerProcess) -> list[str]:
    return [line for line in server.log if "Traceback" in line or "Exception in ASGI" in line]


# -- the good call ------------------------------------------------------------------------


@dataclass
class GoodCall:
    """Streams the real AWS pair at twice real time until told to stop (after at least
    `min_seconds` of audio), reading every event the server sends back."""

    url: str
    min_seconds: float = 12.0
    done: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    events: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._stream())
        except BaseException as exc:  # reported by the test
            self.error = exc

    async def _stream(self) -> None:
        from websockets.asyncio.client import connect as aconnect

        pair: CallAudio = load_call_audio(PAIR)
        step = pair.sample_rate // 10
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with aconnect(
            f"{self.url}/v1/ingest", additional_headers=headers, max_size=None, proxy=None
        ) as ws:
            start = {
                "type": "start",
                "call_id": GOOD_CALL,
                "encoding": "pcm16",
                "sample_rate": pair.sample_rate,
                "channels": ["customer", "agent"],
            }
            await ws.send(json.dumps(start))

            async def receive() -> None:
                async for message in ws:
                    event = json.loads(message)
                    self.events.append(event)
                    if event.get("type") == "started":
                        self.started.set()

            reader = asyncio.create_task(receive())
            began = time.monotonic()
            for lo in range(0, pair.samples.shape[0], step):
                seconds = lo / pair.sample_rate
                if seconds >= self.min_seconds and self.done.is_set():
                    break
                await asyncio.sleep(max(0.0, began + seconds / 2 - time.monotonic()))
                await ws.send(pair.samples[lo : lo + step].astype("<i2").tobytes())
            await ws.send(json.dumps({"type": "stop"}))
            await asyncio.wait_for(reader, timeout=60)
            self.close_code = ws.close_code


# -- malformed sessions, with what the server must answer ---------------------------------


@dataclass
class Session:
    path: str
    sends: list[tuple[str, Any]]
    headers: dict[str, str] = field(default_factory=dict)
    # what must come back: a JSON error code, a close code, an AudioHook disconnect info
    error_code: str | None = None
    close_code: int | None = None
    disconnect_info: str | None = None
    replies: int = 0  # screens: one error reply a message
    until: str | None = None  # a message type that ends the conversation
    allowed_close: set[int] = field(default_factory=set)
    starts_call: bool = False  # so the server may refuse it (1013: it is catching up)


def ingest_session(sequence: list[tuple[str, Any]]) -> Session:
    call_id = f"fz-{uuid.uuid4().hex[:10]}"  # so fuzzed calls never collide
    sends = [(k, p.replace('"call-1"', f'"{call_id}"') if k == "text" else p) for k, p in sequence]
    session = Session("/v1/ingest", sends, {"Authorization": f"Bearer {ADMIN}"})
    for event in native.run(sends, max_frame_bytes=1_048_576):
        if isinstance(event, ProtocolFailure):
            session.error_code, session.close_code = event.code, event.close_code
        elif isinstance(event, Stop):
            session.until, session.close_code = "stopped", 1000
        elif isinstance(event, StartCall):
            session.starts_call = True
            session.until = session.until or "started"
    return session


def twilio_session(sequence: list[tuple[str, Any]]) -> Session:
    call_id = f"fz-{uuid.uuid4().hex[:10]}"
    sends = [(k, p.replace('"c-9"', f'"{call_id}"') if k == "text" else p) for k, p in sequence]
    session = Session("/v1/twilio", sends)
    started = False
    for event in twilio.run(sends):
        if isinstance(event, TwilioStart):
            started = session.starts_call = True
            session.allowed_close = {1008}  # a refused start: bad token or call id
        elif isinstance(event, ProtocolFailure):
            session.close_code = event.close_code
            session.error_code = None if started else event.code
        elif isinstance(event, Stop):
            session.close_code = 1000
    return session


def audiohook_session(steps: list[tuple[str, Any]]) -> Session:
    driver = audiohook.Driver()
    session_id = driver.proto.session_id
    sends: list[tuple[str, Any]] = []

    def text(message: str) -> None:
        sends.append(("text", message))
        driver.text(message)

    opening = {**audiohook.PARAMETERS["open"], "conversationId": str(uuid.uuid4())}
    text(dumps(driver.envelope("open", opening)))
    for step, payload in steps:
        if step == "message":
            kind, parameters = payload
            text(dumps(driver.envelope(kind, parameters)))
        elif step == "audio":
            sends.append(("bytes", payload))
            driver.audio(payload)
        else:
            text(payload)
    headers = {
        "Audiohook-Organization-Id": str(uuid.uuid4()),
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "Audiohook-Session-Id": session_id,
        "X-API-KEY": AUDIOHOOK_KEY,
    }
    session = Session("/v1/audiohook", sends, headers, starts_call=True)
    # a failure after the client's `close` queues no `disconnect`: the session is closing
    disconnects = [r for r in driver.replies if r["type"] == "disconnect"]
    if disconnects:
        session.disconnect_info = disconnects[0]["parameters"]["info"]
    elif any(isinstance(e, Stop) for e in driver.events):
        session.until = "closed"
    return session


screen_texts = st.one_of(
    any_text(['{"type": "feedback", "kind": "reply", "id": "x", "action": "accepted"}'], []),
    st.builds(
        lambda kind, ident, action: dumps(
            {"type": "feedback", "kind": kind, "id": ident, "action": action}
        ),
        st.sampled_from(["reply", "article", "action", "nope", ""]),
        st.text(max_size=10),
        st.sampled_from(["shown", "accepted", "dismissed", "done", "bad"]),
    ),
)


def screen_session(call_id: str, after: str, texts: list[str]) -> Session:
    from urllib.parse import quote

    path = f"/v1/calls/{quote(call_id, safe='')}/events?token={QA}&after_seq={quote(after)}"
    session = Session(path, [("text", t) for t in texts])
    valid = native.CALL_ID.match(call_id) and after.isascii() and after.isdigit()
    if not valid or len(after) > 10:
        session.error_code, session.close_code = "bad_request", 1008
        session.sends = []
    else:
        session.replies = len(texts)
    return session


@st.composite
def ingest_sequences(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Mostly a valid `start` first (so that audio and later mistakes reach a call), then
    audio frames and any messages, sometimes a `stop`."""
    start = draw(
        st.just(native.START) | st.just(native.START) | mutated(native.START, native.FIELDS)
    )
    frames = st.binary(max_size=400).map(lambda b: ("bytes", b[: len(b) // 2 * 2]))
    rest = draw(st.lists(frames | native.messages, max_size=5))
    stop = [("text", native.STOP)] if draw(st.booleans()) else []
    return [("text", dumps(start)), *rest, *stop]


@st.composite
def twilio_sequences(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """`connected`, a `start` (mostly valid), then media with the numbers and timestamps
    Twilio would give, other events, mutated and raw messages."""
    start = draw(
        st.just(twilio.START) | st.just(twilio.START) | mutated(twilio.START, twilio.FIELDS)
    )
    texts: list[str | bytes] = [dumps(twilio.OTHERS[0]), dumps(start)]
    steps = st.sampled_from(["media", "media", "media", "other", "mutated", "raw", "bytes"])
    for n, step in enumerate(draw(st.lists(steps, max_size=6)), 2):
        if step == "media":
            track = draw(st.sampled_from(["inbound", "outbound"]))
            payload = draw(st.binary(max_size=320))
            message: Any = twilio.media(
                n, track, (n - 2) * 20 + draw(st.integers(-40, 90)), payload
            )
        elif step in ("other", "mutated"):
            message = draw(st.sampled_from(twilio.OTHERS[2:]))
            if step == "mutated":
                message = draw(mutated(message, twilio.FIELDS))
            if isinstance(message, dict) and "sequenceNumber" in message:
                message = {**message, "sequenceNumber": str(n)}
        elif step == "raw":
            texts.append(draw(any_text(twilio.VALID_TEXTS, twilio.FIELDS)))
            continue
        else:
            texts.append(draw(st.binary(max_size=8)))
            continue
        texts.append(dumps(message))
    return [("bytes" if isinstance(t, bytes) else "text", t) for t in texts]


SESSIONS: dict[str, st.SearchStrategy[Session]] = {
    "ingest": ingest_sequences().map(ingest_session),
    "twilio": twilio_sequences().map(twilio_session),
    "audiohook": st.lists(audiohook.steps, max_size=6).map(audiohook_session),
    "events": st.builds(
        screen_session,
        st.sampled_from([GOOD_CALL, "fz-screen-1", "bad id", "x" * 200, "-lead"])
        | st.from_regex(r"fz-[a-z0-9]{1,8}", fullmatch=True),
        st.sampled_from(["0", "5", "-1", "abc", "99999999999", "", "٣"]),
        st.lists(screen_texts, min_size=1, max_size=4),
    ),
}
# regressions: a close reason over 123 UTF-8 bytes (the websocket layer raised), a lone
# surrogate in metadata (the store and the event stream could not encode it)
REGRESSIONS = {
    "twilio": twilio_session([("text", dumps({"event": "é" * 100}))]),
    "ingest": ingest_session([("text", dumps({**native.START, "metadata": {"a": "\ud800"}}))]),
}
EXAMPLES = 30  # connections per endpoint


def fuzz_endpoint(base: str, name: str, counts: dict[str, int]) -> None:
    # each example is a real connection: shrinking a failure would replay hundreds
    @settings(fuzz_settings(EXAMPLES, slow_data=True), phases=[Phase.explicit, Phase.generate])
    @given(SESSIONS[name])
    def bad_connection(session: Session) -> None:
        counts[name] = counts.get(name, 0) + 1
        converse(base, session)

    if name in REGRESSIONS:
        bad_connection = example(REGRESSIONS[name])(bad_connection)
    bad_connection()


def converse(base: str, session: Session) -> None:
    """Open the connection, send everything, read until the expected answer, then check it."""
    headers = dict(session.headers)
    if session.path == "/v1/audiohook":
        headers = sign_audiohook_request(
            base + session.path, headers, AUDIOHOOK_KEY, AUDIOHOOK_SECRET
        )
    received: list[Any] = []
    closed_by_server = False
    with connect(
        base + session.path,
        additional_headers=headers,
        open_timeout=10,
        close_timeout=5,
        max_size=None,
        proxy=None,
        compression=None,
    ) as ws:
        for _, payload in session.sends:
            try:
                ws.send(payload)
            except ConnectionClosed:
                closed_by_server = True
                break
        must_close = session.close_code is not None  # then read on until the close frame
        waiting = (
            must_close
            or session.until is not None
            or session.disconnect_info is not None
            or session.replies > 0
        )
        deadline = time.monotonic() + 15
        while waiting and time.monotonic() < deadline:
            try:
                message = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
            except ConnectionClosed:
                closed_by_server = True
                break
            except TimeoutError:
                break
            received.append(json.loads(message) if isinstance(message, str) else message)
            kinds = [m.get("type") for m in received if isinstance(m, dict)]
            errors = sum(1 for m in received if isinstance(m, dict) and m.get("type") == "error")
            if not must_close and (
                (session.until is not None and session.until in kinds)
                or (session.replies and errors >= session.replies)
                or "disconnect" in kinds  # AudioHook: the server ends the session
            ):
                break
    check(session, received, ws.close_code if closed_by_server else None, ws.close_reason or "")


def check(session: Session, received: list[Any], code: int | None, reason: str) -> None:
    """`code`: the close code when the server closed, None when the client did."""
    messages = [m for m in received if isinstance(m, dict)]
    errors = [m for m in messages if m.get("type") == "error"]
    disconnects = [m for m in messages if m.get("type") == "disconnect"]
    for error in errors:
        assert error.get("code") and error.get("message"), error
        assert error["code"] != "internal", error
    assert code is None or code in CLEAR_CLOSES, (session, received, code, reason)
    refused = code == 1013 or any(
        str(d["parameters"].get("info", "")).startswith("callcue cannot take this call")
        for d in disconnects
    )
    if refused:  # the server was catching up and refused a new call: fine, and said so
        assert session.starts_call, (session, received, code, reason)
        return
    if session.close_code is not None:
        assert code in {session.close_code} | session.allowed_close, (session, code, reason)
        if session.error_code is not None:
            assert any(e["code"] == session.error_code for e in errors) or reason.startswith(
                session.error_code
            ), (session, received, reason)
    if session.until is not None and session.close_code is None:
        assert session.until in [m.get("type") for m in messages], (session, received, code)
    if session.disconnect_info is not None:
        assert disconnects, (session, received)
        assert disconnects[0]["parameters"] == {
            "reason": "error",
            "info": session.disconnect_info,
        }
    if session.replies:
        assert [e["code"] for e in errors] == ["bad_feedback"] * session.replies, received


def get(server: ServerProcess, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(server.http + path)
    request.add_header("Authorization", f"Bearer {ADMIN}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def test_malformed_traffic_leaves_the_server_and_a_good_call_alone(
    fuzz_server: ServerProcess,
) -> None:
    good = GoodCall(fuzz_server.url)
    thread = threading.Thread(target=good.run, name="good-call")
    thread.start()
    try:
        assert good.started.wait(60), good.error
        counts: dict[str, int] = {}

        for name in SESSIONS:
            fuzz_endpoint(fuzz_server.url, name, counts)
        assert thread.is_alive(), "the good call ended before the bad traffic did"
        assert all(counts[name] >= EXAMPLES for name in SESSIONS), counts
        status, health = get(fuzz_server, "/healthz")
        assert status == 200 and health["status"] == "ok"
    finally:
        good.done.set()
        thread.join(120)
    assert good.error is None, repr(good.error)
    types = [e.get("type") for e in good.events]
    assert "error" not in types, good.events
    finals = [e for e in good.events if e.get("type") == "transcript.final"]
    assert len(finals) >= 2 and {f["channel"] for f in finals} <= {"customer", "agent"}
    ended = [e for e in good.events if e.get("type") == "call.ended"]
    assert len(ended) == 1 and ended[0]["reason"] == "stop"
    assert types[-1] == "stopped" and good.close_code == 1000
    assert tracebacks(fuzz_server) == []
    assert get(fuzz_server, "/healthz")[0] == 200


@fuzz_settings(200)
@given(st.text(max_size=200))
def test_a_close_reason_fits_a_close_frame(text: str) -> None:
    reason = close_reason(text)
    assert len(reason.encode("utf-8")) <= 123 and text.startswith(reason)
    if len(text.encode("utf-8")) <= 123:
        assert reason == text


# -- schemathesis ---------------------------------------------------------------------------


def fuzz_operation(operation: Any, auth: dict[str, str], ran: dict[str, int]) -> None:
    """Schemathesis cases for one operation (valid and invalid input, every default check:
    no 5xx, status codes, content types and bodies as described)."""

    @settings(
        fuzz_settings(25),
        phases=[Phase.explicit, Phase.generate],  # a failure is reported as schemathesis found it
        # schemathesis draws whole requests and filters out those its schema rules out; each
        # example is an HTTP round trip
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    @given(operation.as_strategy())
    def run(case: Any) -> None:
        ran[operation.label] = ran.get(operation.label, 0) + 1
        case.call_and_validate(headers=auth)

    run()


def test_openapi_description_holds_for_every_operation(fuzz_server: ServerProcess) -> None:
    import schemathesis

    schema = schemathesis.openapi.from_url(fuzz_server.http + "/openapi.json")
    auth = {"Authorization": f"Bearer {ADMIN}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    ran: dict[str, int] = {}
    for operation in operations:
        # the calls in the store, first: real bodies to check against the description
        if "{call_id}" in operation.path and operation.method.upper() == "GET":
            for call_id in [*STORED, GOOD_CALL]:
                params = {"call_id": call_id}
                if "{channel}" in operation.path:
                    params["channel"] = "customer"
                queries: list[dict[str, Any]] = [{}]
                if operation.path.endswith("/transcript"):
                    queries = [{"format": f} for f in ("json", "txt", "vtt", "srt", "csv")]
                for query in queries:
                    case = operation.Case(path_parameters=params, query=query)
                    response = case.call_and_validate(headers=auth)
                    if call_id in STORED and "{channel}" not in operation.path:
                        assert response.status_code == 200, (operation.label, query)

        fuzz_operation(operation, auth, ran)
    assert len(ran) == len(operations)
    assert tracebacks(fuzz_server) == []
