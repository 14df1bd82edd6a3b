"""Recognition on worker processes over Redis (CALLCUE_RECOGNITION=remote): a node hands its
decodes to a pool of `callcue worker` processes (e.g. on GPU machines) instead of running
Whisper itself, with the scheduler's rules kept across the network:

- finals go to the list `PREFIX:asr:finals`, partials to the hash `PREFIX:asr:partials`
  (one waiting partial per channel: a newer one overwrites it, the stale one is dropped and
  counted) with the channel's key queued once on `PREFIX:asr:partial_keys`;
- a worker takes with `BRPOP finals partial_keys`, which serves finals first;
- a final drops its channel's waiting partial (its utterance is being finalized);
- results come back on the node's stream `PREFIX:asr:reply:NODE`.

A final no worker answers within `final_timeout` fails (the call gets `recognition_failed`
and goes on); a partial that waits too long resolves to None like a superseded one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import asdict
from dataclasses import fields as dataclass_fields
from typing import Any

import numpy as np

from models.scheduler import (
    CHEAPER_WAYS,
    IDLE,
    OVERLOADED,
    FinalDeadline,
    RecognitionJob,
    RecognitionScheduler,
)
from models.whisper import Hypothesis, WhisperEngine, WordTiming

log = logging.getLogger("callcue.remote")

# HSET the channel's partial; queue its key only if none was waiting (else it replaced one)
_PUT_PARTIAL = """
local fresh = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if fresh == 1 then redis.call('LPUSH', KEYS[2], ARGV[1]) end
return fresh
"""
# take a channel's waiting partial (nil: a final took its place)
_TAKE_PARTIAL = """
local job = redis.call('HGET', KEYS[1], ARGV[1])
if job then redis.call('HDEL', KEYS[1], ARGV[1]) end
return job
"""


def encode_job(
    job: RecognitionJob, job_id: str, reply: str, deadline: float = 0.0, offset: float = 0.0
) -> bytes:
    """`offset`: Redis's clock minus this machine's (`clock_offset`): `submitted` is in Redis's
    time, so a worker on another machine measures the wait on the same clock."""
    header = {
        "id": job_id,
        "reply": reply,
        "key": job.key,
        "final": job.final,
        "prompt": list(job.prompt),
        "prefix": list(job.prefix),
        "context": list(job.context),
        "context_s": job.context_s,
        "language": job.language,
        "deadline": deadline,  # finals: seconds from `submitted` to the text (0: none)
        # the worker reports how long the job waited for it, and counts it against `deadline`
        "submitted": time.time() + offset,
    }
    audio = np.ascontiguousarray(job.audio, dtype=np.float32).tobytes()
    return json.dumps(header).encode() + b"\n" + audio


def decode_job(payload: bytes) -> tuple[dict[str, Any], np.ndarray]:
    header, _, audio = payload.partition(b"\n")
    return json.loads(header), np.frombuffer(audio, dtype=np.float32)


def hypothesis_to_json(hyp: Hypothesis) -> str:
    return json.dumps(asdict(hyp))


def hypothesis_from_json(text: str) -> Hypothesis:
    """(fields a worker of another version sends that this one does not know are ignored)"""
    data = json.loads(text)
    data["tokens"] = tuple(data["tokens"])
    data["words"] = tuple(WordTiming(**w) for w in data["words"])
    known = {f.name for f in dataclass_fields(Hypothesis)}
    return Hypothesis(**{k: v for k, v in data.items() if k in known})


# how often a process measures its clock against Redis's again
CLOCK_CHECK_S = 60.0


def clock_offset(client: Any) -> float:
    """Redis's clock minus this machine's, in seconds (TIME, taken at the middle of the
    round trip)."""
    before = time.time()
    seconds, micros = client.time()
    after = time.time()
    return float(seconds) + float(micros) / 1e6 - (before + after) / 2


def _client(url: str, timeout: float) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url, socket_connect_timeout=3, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


class RemoteScheduler(RecognitionScheduler):
    """A `RecognitionScheduler` whose decodes run on `callcue worker` processes."""

    def __init__(
        self,
        engine: WhisperEngine,
        url: str,
        prefix: str = "callcue",
        node: str = "",
        final_timeout: float = 30.0,
        final_engine: WhisperEngine | None = None,
        final_deadline: float = 0.0,
    ) -> None:
        # the engines only tokenize here: the workers decode with the same models (and apply
        # `final_deadline` with their own cost estimates)
        super().__init__(engine, final_engine=final_engine, final_deadline=final_deadline)
        self.url = url
        self.prefix = prefix
        self.node = node or uuid.uuid4().hex[:12]
        self.final_timeout = final_timeout
        self.reply_key = f"{prefix}:asr:reply:{self.node}"
        self._pending: dict[str, RecognitionJob] = {}
        self._waiting_partial: dict[str, str] = {}  # channel key -> id of its queued partial
        self._lock = threading.Lock()
        self._send = _client(url, 10.0)
        self._put_partial = self._send.register_script(_PUT_PARTIAL)
        self._reader: threading.Thread | None = None
        self._offset = 0.0  # Redis's clock minus ours, measured by the reader thread

    def _key(self, name: str) -> str:
        return f"{self.prefix}:asr:{name}"

    def start(self) -> None:
        self._reader = threading.Thread(target=self._read, name="callcue-asr-replies", daemon=True)
        self._reader.start()

    def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.join(timeout=5)
        with self._lock:
            pending, self._pending = self._pending, {}
        for job in pending.values():
            if not job.future.done():
                job.future.set_exception(RuntimeError("recognition scheduler closed"))
        self._send.close()

    @property
    def depths(self) -> tuple[int, int]:
        with self._lock:
            finals = sum(1 for job in self._pending.values() if job.final)
            return finals, len(self._pending) - finals

    def pressure(self) -> int:
        with self._lock:
            finals = [job for job in self._pending.values() if job.final]
        if finals and time.monotonic() - min(j.submitted for j in finals) > self.final_budget:
            return OVERLOADED
        return IDLE

    def submit(self, job: RecognitionJob) -> Future[Hypothesis | None]:
        if self._closed:
            raise RuntimeError("recognition scheduler closed")
        job_id = uuid.uuid4().hex
        payload = encode_job(
            job,
            job_id,
            self.reply_key,
            self.final_deadline if job.final else 0.0,
            self._offset,
        )
        with self._lock:
            stale_id = self._waiting_partial.pop(job.key, None)
            stale = self._pending.pop(stale_id, None) if stale_id else None
            self._pending[job_id] = job
            if not job.final:
                self._waiting_partial[job.key] = job_id
        if stale is not None and not stale.future.done():
            self.stats.partials_dropped += 1
            stale.future.set_result(None)
        try:
            if job.final:
                pipe = self._send.pipeline(transaction=False)
                pipe.hdel(self._key("partials"), job.key)
                pipe.lpush(self._key("finals"), payload)
                pipe.execute()
            else:
                self._put_partial(
                    keys=[self._key("partials"), self._key("partial_keys")], args=[job.key, payload]
                )
        except Exception as exc:
            with self._lock:
                self._pending.pop(job_id, None)
            job.future.set_exception(
                RuntimeError(f"cannot hand recognition work to Redis at {self.url}: {exc}")
            )
        return job.future

    def cancel_partial(self, key: str) -> None:
        with self._lock:
            stale_id = self._waiting_partial.pop(key, None)
            stale = self._pending.pop(stale_id, None) if stale_id else None
        if stale is not None and not stale.future.done():
            stale.future.set_result(None)
        try:
            self._send.hdel(self._key("partials"), key)
        except Exception as exc:  # the worker will decode it; its result is ignored
            log.warning("could not withdraw a partial of %s: %s", key, exc)

    def _read(self) -> None:
        client = _client(self.url, 5.0)
        last = "0-0"  # the stream is this node's: anything on it answers this process
        checked = -CLOCK_CHECK_S
        while not self._closed:
            if time.monotonic() - checked >= CLOCK_CHECK_S:
                try:
                    self._offset = clock_offset(client)
                    checked = time.monotonic()
                except Exception as exc:  # reported by the read below too
                    log.debug("could not read Redis's clock: %s", exc)
            try:
                reply = client.xread({self.reply_key: last}, count=100, block=500)
            except Exception as exc:
                log.error("reading recognition results from Redis failed: %s", exc)
                time.sleep(0.5)
                reply = []
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    self._take(fields)
            self._expire()
        client.close()

    def _take(self, fields: dict[bytes, bytes]) -> None:
        job_id = fields[b"id"].decode()
        with self._lock:
            job = self._pending.pop(job_id, None)
            if job is not None and self._waiting_partial.get(job.key) == job_id:
                del self._waiting_partial[job.key]
        if job is None or job.future.done():
            return  # superseded or timed out meanwhile
        if b"error" in fields:
            job.future.set_exception(RuntimeError(fields[b"error"].decode()))
            return
        hyp = hypothesis_from_json(fields[b"result"].decode())
        waited = float(fields.get(b"waited", b"0"))
        way = fields.get(b"way", b"").decode()
        if way in CHEAPER_WAYS:  # the worker met the deadline a cheaper way
            self.stats.finals_cheaper[way] += 1
        job.future.set_result(hyp)
        self.stats.count(job.final, waited)
        if self.observer is not None:
            self.observer([job], [hyp], time.monotonic() - hyp.seconds, hyp.seconds)

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [
                (job_id, job)
                for job_id, job in self._pending.items()
                if now - job.submitted > (self.final_timeout if job.final else 10.0)
            ]
            for job_id, job in late:
                del self._pending[job_id]
                if self._waiting_partial.get(job.key) == job_id:
                    del self._waiting_partial[job.key]
        for _, job in late:
            if job.future.done():
                continue
            if job.final:
                self.stats.finals_overdue += 1
                job.future.set_exception(
                    TimeoutError(
                        f"no recognition worker answered within {self.final_timeout:.0f} s "
                        "(are `callcue worker` processes running on this Redis?)"
                    )
                )
            else:
                self.stats.partials_skipped += 1
                job.future.set_result(None)


def run_worker(
    engine: WhisperEngine,
    url: str,
    prefix: str = "callcue",
    stop: threading.Event | None = None,
    final_engine: WhisperEngine | None = None,
) -> None:
    """Take recognition jobs from Redis (finals first) and decode them, partials with
    `engine` and finals with `final_engine` (default: `engine`), until `stop` is set (or the
    process is interrupted). A final that comes with a deadline (the node's
    CALLCUE_FINAL_DEADLINE_MS) is decoded as `FinalDeadline` chooses, from this worker's own
    decode costs, and the reply names the cheaper way if one was taken."""
    deadline = FinalDeadline()
    client = _client(url, 10.0)
    take_partial = client.register_script(_TAKE_PARTIAL)
    finals, partial_keys = f"{prefix}:asr:finals", f"{prefix}:asr:partial_keys"
    log.info("worker ready: taking recognition jobs from Redis (prefix %r)", prefix)
    offset, checked = 0.0, -CLOCK_CHECK_S  # Redis's clock minus ours: jobs are stamped in it
    while stop is None or not stop.is_set():
        if time.monotonic() - checked >= CLOCK_CHECK_S:
            checked = time.monotonic()
            try:
                offset = clock_offset(client)
            except Exception as exc:  # a server without TIME: this machine's clock, as before
                log.warning("could not read Redis's clock (%s): waits use this clock", exc)
        taken = client.brpop([finals, partial_keys], timeout=1)
        if taken is None:
            continue
        source, value = taken
        if source.decode() == finals:
            payload = value
        else:
            payload = take_partial(keys=[f"{prefix}:asr:partials"], args=[value])
            if payload is None:
                continue  # a final replaced it
        header, audio = decode_job(payload)
        started = time.monotonic()
        now = time.time() + offset
        waited = max(0.0, now - float(header.get("submitted", now)))
        busy = bool(client.llen(finals))
        fields: dict[str, str] = {"id": header["id"]}
        try:
            language = str(header.get("language", "en"))
            multilingual = final_engine or engine
            use = (
                multilingual
                if header["final"] or (not engine.multilingual and language != "en")
                else engine
            )
            if header["final"]:
                hyp, way = deadline.decode(
                    use,
                    engine,
                    audio,
                    deadline=float(header.get("deadline", 0.0)),
                    waited=waited,
                    prompt=tuple(header["prompt"]),
                    context=tuple(header.get("context", ())),
                    context_s=float(header.get("context_s", 0.0)),
                    language=language,
                    busy=busy,
                    key=header["key"],
                )
                if way is not None:
                    fields["way"] = way
            else:
                hyp = use.decode(
                    audio,
                    prompt=header["prompt"],
                    prefix=header["prefix"],
                    busy=busy,
                    language=language,
                )
            fields["result"] = hypothesis_to_json(hyp)
        except Exception as exc:
            log.exception("decode failed for %s", header["key"])
            fields["error"] = f"{type(exc).__name__}: {exc}"
        fields["waited"] = f"{waited:.4f}"
        client.xadd(header["reply"], fields, maxlen=10_000, approximate=True)
        client.expire(header["reply"], 3600)
        kind = "final" if header["final"] else "partial"
        log.debug("%s of %s in %.2fs", kind, header["key"], time.monotonic() - started)
    client.close()
