"""The call store: every call, final utterance, assist event, feedback and QA review.

One interface (`CallStore`), two real backends chosen by `CALLCUE_DATABASE_URL`:

- `sqlite:///path/to/callcue.db` (default): WAL journal, FTS5 index on utterance text;
- `postgresql://user:pass@host/db`: `tsvector` + GIN index for full-text search (psycopg 3).

Writes happen as events are published, synchronously and before any screen can have been sent
the event (the hub only queues; sends run after the publishing code returns), so a `kill -9`
loses nothing a screen saw. Schema migrations are numbered and run at start; a call still
`in_progress` when the store opens belonged to a process that died and is marked `interrupted`.

Everything is plain SQL both backends accept; the few differences (placeholders, full-text
search, auto-increment) live in `_Dialect`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from assist.events import Event
from assist.scorecard import score_with_overrides
from store.exports import analytics, summary

log = logging.getLogger("callcue.store")

# `_rows` (inside a write, seeing it) or `_read` (the reader connection)
Query = Callable[[str, Sequence[Any]], list[dict[str, Any]]]

USED = ("accepted", "copied", "done")  # feedback that counts as a suggestion used

# events kept: everything but partials (which a final replaces) and `call.analytics` (the
# figures of the call so far: the stored call's are computed from its finals, `analytics`)
STORED_EVENTS = frozenset(
    {
        "call.started",
        "transcript.final",
        "transcript.revised",
        "transcript.relabeled",
        "call.revised",
        "intent",
        "sentiment",
        "entities",
        "suggestion",
        "action",
        "checklist",
        "alert",
        "category.matched",
        "call.scored",
        "call.wrapup",
        "feedback",
        "call.ended",
        "error",
    }
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: calls, utterances, events, reviews, recordings
        """CREATE TABLE calls (
            id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            duration REAL,
            channels TEXT NOT NULL,
            source TEXT NOT NULL,
            agent TEXT NOT NULL DEFAULT '',
            customer_id TEXT NOT NULL DEFAULT '',
            customer_name TEXT NOT NULL DEFAULT '',
            metadata TEXT NOT NULL DEFAULT '{}',
            outcome TEXT NOT NULL DEFAULT 'in_progress',
            intent TEXT NOT NULL DEFAULT '',
            intents TEXT NOT NULL DEFAULT '[]',
            sentiment REAL,
            sentiment_label TEXT NOT NULL DEFAULT '',
            alerts INTEGER NOT NULL DEFAULT 0,
            checklist_done INTEGER NOT NULL DEFAULT 0,
            checklist_total INTEGER NOT NULL DEFAULT 0,
            last_seq INTEGER NOT NULL DEFAULT 0,
            segments INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX calls_started ON calls (started_at)",
        "CREATE INDEX calls_agent ON calls (agent)",
        "CREATE INDEX calls_customer ON calls (customer_id)",
        """CREATE TABLE utterances (
            call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            segment INTEGER NOT NULL DEFAULT 1,
            channel TEXT NOT NULL,
            utterance INTEGER NOT NULL,
            start_s REAL NOT NULL,
            end_s REAL NOT NULL,
            text TEXT NOT NULL,
            words TEXT NOT NULL DEFAULT '[]',
            confidence REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (call_id, seq)
        )""",
        """CREATE TABLE events (
            call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            type TEXT NOT NULL,
            ts TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (call_id, seq)
        )""",
        "CREATE INDEX events_type ON events (call_id, type)",
        """CREATE TABLE reviews (
            id {autoincrement},
            call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
            reviewer TEXT NOT NULL,
            created_at TEXT NOT NULL,
            scores TEXT NOT NULL,
            comments TEXT NOT NULL,
            score REAL
        )""",
        "CREATE INDEX reviews_call ON reviews (call_id)",
        """CREATE TABLE recordings (
            call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
            channel TEXT NOT NULL,
            path TEXT NOT NULL,
            sample_rate INTEGER NOT NULL,
            PRIMARY KEY (call_id, channel)
        )""",
        "{fts}",
    ),
    (  # 2: the language each final was recognized as
        "ALTER TABLE utterances ADD COLUMN language TEXT NOT NULL DEFAULT 'en'",
    ),
    (  # 3: who started each call (a digest of the credential): only they may resume it
        "ALTER TABLE calls ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
    ),
    (  # 4: a revised final keeps what was said live beside the revised text (NULL: unrevised)
        "ALTER TABLE utterances ADD COLUMN live_text TEXT",
        "ALTER TABLE calls ADD COLUMN revised_at TEXT",  # when the end-of-call revision ended
    ),
    (  # 5: the playbook categories a call matched (a JSON list of names, like intents)
        "ALTER TABLE calls ADD COLUMN categories TEXT NOT NULL DEFAULT '[]'",
    ),
    (  # 6: webhook deliveries, written with the event they announce (the outbox)
        """CREATE TABLE webhook_deliveries (
            id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            type TEXT NOT NULL,
            call_id TEXT NOT NULL,
            created {double} NOT NULL,
            body TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at {double} NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            last_error TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX webhook_due ON webhook_deliveries (status, next_at)",
    ),
    (  # 7: scorecards and what /qa/agents sums up per agent
        "ALTER TABLE calls ADD COLUMN score {double}",  # with the reviewers' overrides
        "ALTER TABLE calls ADD COLUMN agent_talk_share {double}",
        "ALTER TABLE calls ADD COLUMN sentiment_change {double}",  # the customer's, end - start
        "ALTER TABLE calls ADD COLUMN suggestions_used INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE score_overrides (
            call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
            item TEXT NOT NULL,
            passed BOOLEAN NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            reviewer TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (call_id, item)
        )""",
    ),
    (  # 8: the wrap-up: disposition and after-call note, predicted then confirmed or edited
        "ALTER TABLE calls ADD COLUMN disposition TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE calls ADD COLUMN disposition_label TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE calls ADD COLUMN note TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE calls ADD COLUMN wrapup_by TEXT NOT NULL DEFAULT ''",  # predicted | who
        "ALTER TABLE calls ADD COLUMN wrapup_at TEXT",
    ),
    (  # 9: agents' voice prints (CALLCUE_VOICE_PRINTS): a row a call, summed when read
        """CREATE TABLE agent_voices (
            agent TEXT NOT NULL,
            call_id TEXT NOT NULL,
            total TEXT NOT NULL,
            prints INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (agent, call_id)
        )""",
    ),
)

SQLITE_FTS = (
    "CREATE VIRTUAL TABLE utterances_fts USING fts5(text, content='utterances', "
    "content_rowid='rowid', tokenize='porter unicode61')",
    """CREATE TRIGGER utterances_ai AFTER INSERT ON utterances BEGIN
        INSERT INTO utterances_fts (rowid, text) VALUES (new.rowid, new.text); END""",
    """CREATE TRIGGER utterances_ad AFTER DELETE ON utterances BEGIN
        INSERT INTO utterances_fts (utterances_fts, rowid, text)
        VALUES ('delete', old.rowid, old.text); END""",
    """CREATE TRIGGER utterances_au AFTER UPDATE ON utterances BEGIN
        INSERT INTO utterances_fts (utterances_fts, rowid, text)
        VALUES ('delete', old.rowid, old.text);
        INSERT INTO utterances_fts (rowid, text) VALUES (new.rowid, new.text); END""",
)
POSTGRES_FTS = (
    "ALTER TABLE utterances ADD COLUMN tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX utterances_tsv ON utterances USING GIN (tsv)",
)


MIGRATION_LOCK = 0x63616C6C637565  # PostgreSQL advisory lock key held while migrating


def normal_agent(value: str) -> str:
    """An agent id as voice prints are kept under it (calls' metadata and the REST path)."""
    return value.strip()[:128]


class StoreError(RuntimeError):
    """The store cannot be opened or written; the message says what and where."""


def unavailable_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean "the database is not answering" (as opposed to a bug)."""
    errors: list[type[Exception]] = [StoreError, sqlite3.OperationalError]
    try:
        import psycopg

        errors.append(psycopg.OperationalError)
    except ImportError:  # pragma: no cover - a dependency of callcue
        pass
    return tuple(errors)


def refused_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean "the database refuses this event" (a constraint, as when its call
    was deleted meanwhile, or a bug in what it holds): retrying would never help."""
    errors: list[type[Exception]] = [sqlite3.IntegrityError, KeyError, TypeError, ValueError]
    try:
        import psycopg

        errors += [psycopg.IntegrityError, psycopg.DataError]
    except ImportError:  # pragma: no cover - a dependency of callcue
        pass
    return tuple(errors)


@dataclass(frozen=True, slots=True)
class CallQuery:
    q: str = ""
    date_from: str = ""
    date_to: str = ""
    agent: str = ""
    customer: str = ""
    intent: str = ""
    category: str = ""  # a playbook category the call matched
    sentiment: str = ""  # negative | neutral | positive (the call's final customer mood)
    has_alerts: bool | None = None
    checklist_complete: bool | None = None
    outcome: str = ""
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class CallOwnership:
    owner: str  # digest of the credential that started the call ('' before migration 3)
    in_progress: bool
    ended: float | None  # epoch seconds
    last_seq: int


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Dialect:
    name = "sqlite"
    param = "?"

    def sql(self, text: str) -> str:
        return text if self.param == "?" else text.replace("?", "%s")


class _Postgres(_Dialect):
    name = "postgresql"
    param = "%s"


class CallStore:
    """Thread-safe: one write connection behind a lock, and one for reads (the REST API and
    screens) so a slow search never holds up the writes. Every method blocks: the server calls
    them from threads (the writer thread, `asyncio.to_thread`), never on the event loop."""

    def __init__(
        self, url: str, *, recordings_dir: Path | None = None, recover: bool = True
    ) -> None:
        """`recover`: mark calls left in progress by a dead process as interrupted (the server
        does this at start; a second process on the same database, e.g. an import, must not)."""
        self.url = url
        self.recordings_dir = recordings_dir
        self._lock = threading.RLock()  # the write connection (and reads inside writes)
        self._read_lock = threading.Lock()
        self._reader: Any = None
        self.dialect: _Dialect
        self.interrupted_at_open: list[str] = []
        # webhook URL → the event types it subscribes to: `record_many` writes a delivery
        # for each, in the event's own transaction (set once, before the writer starts)
        self.webhooks: dict[str, frozenset[str]] = {}
        if url.startswith("sqlite:"):
            path = sqlite_path(url)
            self.path = path
            self.dialect = _Dialect()
            try:
                if self.path is not None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn: Any = sqlite3.connect(
                    str(self.path) if self.path else ":memory:",
                    check_same_thread=False,
                    isolation_level=None,  # autocommit; explicit BEGIN for multi-statement work
                )
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("PRAGMA foreign_keys=ON")
                self._conn.execute("PRAGMA busy_timeout=5000")
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(
                    f"cannot open the SQLite store at {path or ':memory:'}: {exc}"
                ) from exc
        elif url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg
            except ImportError as exc:  # pragma: no cover - a dependency of callcue
                raise StoreError("PostgreSQL needs the psycopg package") from exc
            self.path = None
            self.dialect = _Postgres()
            try:
                self._conn = self._connect_postgres()
            except psycopg.Error as exc:
                raise StoreError(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from exc
        else:
            raise StoreError(
                f"CALLCUE_DATABASE_URL={_redact(url)!r}: use sqlite:///PATH or postgresql://..."
            )
        self.migrate()
        if recover:
            self.interrupted_at_open = self.mark_interrupted()

    # ------------------------------------------------------------------ plumbing
    def _connect_postgres(self) -> Any:
        import psycopg

        # keepalives and a TCP timeout: a database that vanishes from the network is noticed
        # in seconds, not after the kernel's retransmission timeout
        return psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=5,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=3,
            keepalives_count=3,
            tcp_user_timeout=15_000,
        )

    def _healthy(self) -> None:
        """Reconnect to PostgreSQL if the connection was lost (a restart, a network cut)."""
        if self.dialect.name == "postgresql" and self._conn.closed:
            import psycopg

            try:
                self._conn = self._connect_postgres()
            except psycopg.Error as exc:
                raise StoreError(
                    f"PostgreSQL at {_redact(self.url)} is unreachable: {exc}"
                ) from None
            log.info("reconnected to PostgreSQL at %s", _redact(self.url))

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._lock:
            self._healthy()
            return self._conn.execute(self.dialect.sql(sql), tuple(params))

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            self._healthy()
            cursor = self._conn.execute(self.dialect.sql(sql), tuple(params))
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A query for the REST API and screens, on a connection of its own: a slow search
        never holds up the writes of live calls (SQLite WAL readers do not block the writer)."""
        if self.dialect.name == "sqlite" and self.path is None:
            return self._rows(sql, params)  # an in-memory database has one connection
        with self._read_lock:
            for attempt in (1, 2):
                conn = self._reader
                if conn is None or (self.dialect.name == "postgresql" and conn.closed):
                    conn = self._reader = self._open_reader()
                try:
                    cursor = conn.execute(self.dialect.sql(sql), tuple(params))
                except Exception:
                    # a connection the database dropped (restart, network cut) shows it only
                    # when used: reads are safe to retry once on a new one
                    if attempt == 2 or self.dialect.name != "postgresql" or not conn.closed:
                        raise
                    continue
                names = [d[0] for d in cursor.description or ()]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            raise AssertionError("unreachable")

    def _open_reader(self) -> Any:
        if self.dialect.name == "postgresql":
            import psycopg

            try:
                return self._connect_postgres()
            except psycopg.Error as exc:
                where = _redact(self.url)
                raise StoreError(f"PostgreSQL at {where} is unreachable: {exc}") from None
        conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA query_only=ON")
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._healthy()
            if self.dialect.name == "sqlite":
                self._conn.execute("BEGIN")
                try:
                    yield
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            else:
                with self._conn.transaction():
                    yield

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()

    def describe(self) -> str:
        if self.dialect.name == "sqlite":
            return f"SQLite at {self.path or ':memory:'}"
        return f"PostgreSQL at {_redact(self.url)}"

    # ------------------------------------------------------------------ schema
    def schema_version(self) -> int:
        self._execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        rows = self._rows("SELECT MAX(version) AS v FROM schema_migrations")
        return int(rows[0]["v"] or 0)

    def migrate(self) -> None:
        """Apply the migrations this database has not seen, each in one transaction. On
        PostgreSQL under an advisory lock: nodes of a service starting at once on a new
        database migrate it once, one after the other."""
        if self.dialect.name != "postgresql":
            self._migrate()
            return
        with self._lock:
            self._conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                self._migrate()
            finally:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def _migrate(self) -> None:
        current = self.schema_version()
        for version, statements in enumerate(MIGRATIONS, 1):
            if version <= current:
                continue
            with self._transaction():
                for statement in statements:
                    for sql in self._expand(statement):
                        self._conn.execute(sql)
                self._conn.execute(
                    self.dialect.sql("INSERT INTO schema_migrations VALUES (?, ?)"),
                    (version, now_iso()),
                )
            log.info("store: applied migration %d", version)

    def _expand(self, statement: str) -> list[str]:
        postgres = self.dialect.name == "postgresql"
        if statement == "{fts}":
            return list(POSTGRES_FTS if postgres else SQLITE_FTS)
        auto = "SERIAL PRIMARY KEY" if postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
        double = "DOUBLE PRECISION" if postgres else "REAL"  # PostgreSQL's REAL is 4 bytes
        return [statement.replace("{autoincrement}", auto).replace("{double}", double)]

    def mark_interrupted(self) -> list[str]:
        """Calls left `in_progress` by a process that died: marked `interrupted`."""
        rows = self._rows("SELECT id FROM calls WHERE outcome = 'in_progress'")
        ids = [r["id"] for r in rows]
        if ids:
            self._execute(
                "UPDATE calls SET outcome = 'interrupted', "
                "ended_at = COALESCE(ended_at, ?) WHERE outcome = 'in_progress'",
                (now_iso(),),
            )
            log.warning("store: %d call(s) were interrupted by a crash: %s", len(ids), ids[:10])
        return ids

    def in_progress(self) -> list[str]:
        """Ids of the calls the store holds as `in_progress`."""
        return [r["id"] for r in self._rows("SELECT id FROM calls WHERE outcome = 'in_progress'")]

    def interrupt(self, ended: Event) -> bool:
        """A call whose node died (multi-node): store its `call.ended` (written by the node
        that noticed) and mark it `interrupted`. False if the call is not in progress here."""
        data = ended.to_dict()
        with self._transaction():
            cursor = self._conn.execute(
                self.dialect.sql(
                    "UPDATE calls SET outcome = 'interrupted', ended_at = ?, duration = ?, "
                    "last_seq = ? WHERE id = ? AND outcome = 'in_progress' AND last_seq < ?"
                ),
                (ended.ts, data.get("duration"), ended.seq, ended.call_id, ended.seq),
            )
            if not cursor.rowcount:
                return False
            self._conn.execute(
                self.dialect.sql(
                    "INSERT INTO events (call_id, seq, type, ts, data) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (call_id, seq) DO NOTHING"
                ),
                (ended.call_id, ended.seq, ended.type, ended.ts, json.dumps(data)),
            )
        log.warning("store: call %s marked interrupted (%s)", ended.call_id, data.get("reason"))
        return True

    # ------------------------------------------------------------------ writes
    def record(self, event: Event) -> None:
        """Write one published event (and what it changes in the call's row)."""
        self.record_many([event])

    def record_many(self, events: Sequence[Event]) -> None:
        """Write published events in order, in one transaction. Events not kept (partials)
        still advance their call's `last_seq` (one UPDATE a call, not one an event), so a
        resumed call never reuses a seq a screen has seen."""
        last: dict[str, int] = {}
        with self._transaction():
            for event in events:
                # (an event written before, whose commit's answer was lost: applied once)
                if event.type in STORED_EVENTS and self._record_one(event) and self.webhooks:
                    self._queue_deliveries(event)
                last[event.call_id] = max(last.get(event.call_id, 0), event.seq)
            for call_id, seq in last.items():
                self._conn.execute(
                    self.dialect.sql("UPDATE calls SET last_seq = ? WHERE id = ? AND last_seq < ?"),
                    (seq, call_id, seq),
                )

    def _record_one(self, event: Event) -> bool:
        """Write one event and what it changes; False: it was stored already (nothing done)."""
        call_id = event.call_id
        data = event.to_dict()
        if event.type == "call.started":
            metadata = data.get("metadata") or {}
            customer = data.get("customer") or {}
            agent = _clean(metadata.get("agent_name") or metadata.get("agent") or "")
            self._conn.execute(
                self.dialect.sql(
                    "INSERT INTO calls (id, started_at, channels, source, agent, customer_id,"
                    " customer_name, metadata, outcome, segments, owner) VALUES (?, ?, ?, ?, "
                    "?, ?, ?, ?, 'in_progress', 1, ?) ON CONFLICT (id) DO UPDATE SET outcome "
                    "= 'in_progress', ended_at = NULL, segments = calls.segments + 1"
                ),
                (
                    call_id,
                    event.ts,
                    json.dumps(list(data["channels"])),
                    data["source"],
                    agent,
                    _clean(customer.get("id") or metadata.get("customer_id") or ""),
                    _clean(customer.get("name") or ""),
                    json.dumps(metadata, ensure_ascii=False),
                    getattr(event, "owner", ""),
                ),
            )
        cursor = self._conn.execute(
            self.dialect.sql(
                "INSERT INTO events (call_id, seq, type, ts, data) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (call_id, seq) DO NOTHING"
            ),
            (call_id, event.seq, event.type, event.ts, event.to_json()),
        )
        if cursor.rowcount == 0:
            return False
        self._apply(event.type, data)
        return True

    def _apply(self, kind: str, data: dict[str, Any]) -> None:
        call_id = data["call_id"]

        def update(sql: str, *params: Any) -> None:
            self._conn.execute(self.dialect.sql(sql), (*params, call_id))

        if kind == "transcript.final":
            self._conn.execute(
                self.dialect.sql(
                    "INSERT INTO utterances (call_id, channel, utterance, seq, start_s, end_s, "
                    "text, words, confidence, language, segment) VALUES (?, ?, ?, ?, ?, ?, ?, "
                    "?, ?, ?, (SELECT segments FROM calls WHERE id = ?)) "
                    "ON CONFLICT (call_id, seq) DO NOTHING"
                ),
                (
                    call_id,
                    data["channel"],
                    data["utterance"],
                    data["seq"],
                    data["start"],
                    data["end"],
                    data["text"],
                    json.dumps(data.get("words") or [], ensure_ascii=False),
                    data.get("confidence") or 0.0,
                    data.get("language") or "en",
                    call_id,
                ),
            )
        elif kind == "transcript.revised":
            self._conn.execute(
                self.dialect.sql(
                    "UPDATE utterances SET live_text = COALESCE(live_text, text), text = ?, "
                    "words = ?, confidence = ?, language = ? WHERE call_id = ? AND seq = ?"
                ),
                (
                    data["text"],
                    json.dumps(data.get("words") or [], ensure_ascii=False),
                    data.get("confidence") or 0.0,
                    data.get("language") or "en",
                    call_id,
                    data["final_seq"],
                ),
            )
        elif kind == "transcript.relabeled":
            for change in data.get("changes") or []:
                self._conn.execute(
                    self.dialect.sql(
                        "UPDATE utterances SET channel = ? WHERE call_id = ? AND seq = ?"
                    ),
                    (change["channel"], call_id, change["final_seq"]),
                )
        elif kind == "call.revised":
            update("UPDATE calls SET revised_at = ? WHERE id = ?", data["ts"])
        elif kind == "intent" and data.get("intent"):
            rows = self._rows("SELECT intents FROM calls WHERE id = ?", (call_id,))
            intents = json.loads(rows[0]["intents"]) if rows else []
            if data["intent"] not in intents:
                intents.append(data["intent"])
            update(
                "UPDATE calls SET intent = ?, intents = ? WHERE id = ?",
                data["intent"],
                json.dumps(intents),
            )
        elif kind == "sentiment" and data.get("channel") == "customer":
            trend = float(data["trend"])
            label = "negative" if trend < -0.2 else "positive" if trend > 0.2 else "neutral"
            update("UPDATE calls SET sentiment = ?, sentiment_label = ? WHERE id = ?", trend, label)
        elif kind == "alert":
            update("UPDATE calls SET alerts = alerts + 1 WHERE id = ?")
        elif kind == "category.matched":
            rows = self._rows("SELECT categories FROM calls WHERE id = ?", (call_id,))
            names = json.loads(rows[0]["categories"]) if rows else []
            if data["name"] not in names:
                update(
                    "UPDATE calls SET categories = ? WHERE id = ?",
                    json.dumps([*names, data["name"]]),
                )
        elif kind == "checklist":
            items = data.get("items") or []
            update(
                "UPDATE calls SET checklist_done = ?, checklist_total = ? WHERE id = ?",
                sum(1 for i in items if i.get("done")),
                len(items),
            )
        elif kind == "call.scored":  # (a resumed call's overrides still count)
            card = self.scorecard(call_id, self._rows)
            update("UPDATE calls SET score = ? WHERE id = ?", card["score"] if card else None)
        elif kind == "call.wrapup":  # a prediction never replaces what an agent saved
            update(
                "UPDATE calls SET disposition = ?, disposition_label = ?, note = ?, "
                "wrapup_by = 'predicted', wrapup_at = ? WHERE id = ? "
                "AND wrapup_by IN ('', 'predicted')",
                data["disposition"],
                data["label"],
                data["note"],
                data["ts"],
            )
        elif kind == "feedback" and data.get("action") in USED:
            update("UPDATE calls SET suggestions_used = suggestions_used + 1 WHERE id = ?")
        elif kind == "call.ended":
            update(
                "UPDATE calls SET ended_at = ?, duration = ?, outcome = ? WHERE id = ?",
                data["ts"],
                data["duration"],
                data["reason"],
            )
            figures = self._figures(call_id)
            if figures is not None:
                talk = figures["talk_seconds"]
                total = sum(talk.values())
                sentiment = figures["sentiment"]
                change = (
                    sentiment["customer_end"] - sentiment["customer_start"]
                    if "customer_end" in sentiment
                    else None
                )
                update(
                    "UPDATE calls SET agent_talk_share = ?, sentiment_change = ? WHERE id = ?",
                    round(talk["agent"] / total, 4) if total and "agent" in talk else None,
                    None if change is None else round(change, 4),
                )

    def _figures(self, call_id: str, events: list[dict[str, Any]] | None = None) -> Any:
        """(inside a write) The call's analytics from what is stored (None: no such call)."""
        rows = self._rows("SELECT * FROM calls WHERE id = ?", (call_id,))
        if not rows:
            return None
        if events is None:
            events = [
                json.loads(r["data"])
                for r in self._rows(
                    "SELECT data FROM events WHERE call_id = ? AND type IN (?, ?) ORDER BY seq",
                    (call_id, "sentiment", "category.matched"),
                )
            ]
        return analytics(_call(rows[0]), self._utterance_rows(call_id, self._rows), events)

    # ------------------------------------------------------------------ webhooks (outbox)
    def _queue_deliveries(self, event: Event) -> None:
        """(in the event's transaction) One delivery per webhook that subscribes to it; a
        `call.ended` carries the call's summary, analytics and categories, built now."""
        urls = [url for url, types in self.webhooks.items() if event.type in types]
        if not urls:
            return
        extra: dict[str, Any] = {}
        if event.type == "call.ended":
            rows = self._rows("SELECT * FROM calls WHERE id = ?", (event.call_id,))
            if rows:
                call = _call(rows[0])
                stored = [
                    json.loads(r["data"])
                    for r in self._rows(
                        "SELECT data FROM events WHERE call_id = ? ORDER BY seq", (event.call_id,)
                    )
                ]
                figures = self._figures(event.call_id, stored)
                scored = [e for e in stored if e["type"] == "call.scored"]
                extra = {
                    "call": call,
                    "summary": summary(call, stored),
                    "analytics": {k: v for k, v in figures.items() if k != "timeline"},
                    "categories": figures["categories"],
                    "score": scored[-1]["score"] if scored else None,
                    "scorecard": scored[-1]["items"] if scored else None,
                    "disposition": call["wrapup"] if call["wrapup"]["disposition"] else None,
                }
        for url in urls:
            data = event.to_dict()
            self._insert_delivery(url, event.type, event.call_id, str(event.seq), data, extra)

    def _insert_delivery(
        self,
        url: str,
        kind: str,
        call_id: str,
        key: str,
        data: dict[str, Any],
        extra: dict[str, Any],
    ) -> None:
        """(in a transaction) One delivery; its id is the same however often it is written
        (an event written again after a lost commit answer is not delivered twice)."""
        ident = "d_" + hashlib.sha256(f"{url}\n{call_id}\n{key}".encode()).hexdigest()[:32]
        now = time.time()
        body = {
            "id": ident,
            "type": kind,
            "call_id": call_id,
            "created_at": now_iso(),
            "data": data,
            **extra,
        }
        self._conn.execute(
            self.dialect.sql(
                "INSERT INTO webhook_deliveries (id, url, type, call_id, created, body, "
                "next_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
            ),
            (ident, url, kind, call_id, now, json.dumps(body), now),
        )

    def claim_deliveries(self, now: float, limit: int, lease: float) -> list[dict[str, Any]]:
        """Deliveries due at `now`, each claimed for `lease` seconds (another node sharing
        the database does not send it meanwhile; a crash mid-send retries it after)."""
        due = self._read(  # (the reader: the poll never waits on the writer's lock)
            "SELECT id, url, type, call_id, created, body, attempts, next_at FROM "
            "webhook_deliveries WHERE status = 'pending' AND next_at <= ? ORDER BY next_at "
            "LIMIT ?",
            (now, limit),
        )
        claimed = []
        for row in due:
            cursor = self._execute(
                "UPDATE webhook_deliveries SET next_at = ? WHERE id = ? AND next_at = ? "
                "AND status = 'pending'",
                (now + lease, row["id"], row["next_at"]),
            )
            if cursor.rowcount == 1:
                claimed.append(row)
        return claimed

    def delivery_result(
        self, ident: str, status: str, error: str = "", next_at: float = 0.0
    ) -> None:
        """`status`: delivered, failed (given up) or pending (retried at `next_at`)."""
        self._execute(
            "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, "
            "last_error = ?, next_at = ? WHERE id = ?",
            (status, error[:500], next_at, ident),
        )

    def deliveries(self, status: str = "") -> list[dict[str, Any]]:
        """Webhook deliveries (all, or of one status), oldest first."""
        sql = "SELECT id, url, type, call_id, attempts, status, last_error FROM webhook_deliveries"
        params: tuple[Any, ...] = ()
        if status:
            sql, params = sql + " WHERE status = ?", (status,)
        return self._read(sql + " ORDER BY created, id", params)

    def forget_deliveries(self, before: float) -> int:
        """Delete delivered and failed deliveries created before `before` (epoch seconds)."""
        cursor = self._execute(
            "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created < ?", (before,)
        )
        return int(cursor.rowcount or 0)

    # ------------------------------------------------------------------ wrap-up
    def save_wrapup(self, call_id: str, disposition: str, note: str, by: str) -> dict[str, Any]:
        """The agent's wrap-up (accepted or edited). KeyError: the call was not wrapped up
        (its playbook has no dispositions, or it has not ended) or no such disposition."""
        rows = self._read(
            "SELECT data FROM events WHERE call_id = ? AND type = 'call.wrapup' ORDER BY seq",
            (call_id,),
        )
        if not rows:
            raise KeyError(f"call {call_id!r} has no wrap-up (no dispositions, or not ended)")
        choices = {c["id"]: c["label"] for c in json.loads(rows[-1]["data"])["choices"]}
        if disposition not in choices:
            raise KeyError(f"no disposition {disposition!r} (choices: {', '.join(choices)})")
        at = now_iso()
        saved = {"disposition": disposition, "label": choices[disposition], "note": note}
        with self._transaction():
            self._conn.execute(
                self.dialect.sql(
                    "UPDATE calls SET disposition = ?, disposition_label = ?, note = ?, "
                    "wrapup_by = ?, wrapup_at = ? WHERE id = ?"
                ),
                (disposition, choices[disposition], note, by, at, call_id),
            )
            data = {"type": "call.wrapup", "call_id": call_id, **saved, "by": by, "at": at}
            for url, types in self.webhooks.items():  # the CRM hears the agent's answer too
                if "call.wrapup" in types:
                    self._insert_delivery(url, "call.wrapup", call_id, f"saved {at}", data, {})
        return {**saved, "by": by, "at": at}

    # ------------------------------------------------------------------ agents' voice prints
    VOICE_CALLS = 20  # an agent's voice print: the sum of their latest calls' prints

    def voice_print(self, agent: str) -> tuple[list[float], int] | None:
        """An agent's voice print (the unnormalized sum of the prints of their latest
        `VOICE_CALLS` calls) and how many prints it holds; None: none kept."""
        rows = self._read(
            "SELECT total, prints FROM agent_voices WHERE agent = ? "
            "ORDER BY created_at DESC LIMIT ?",
            (agent, self.VOICE_CALLS),
        )
        if not rows:
            return None
        totals = [json.loads(r["total"]) for r in rows]
        summed = [float(sum(values)) for values in zip(*totals, strict=True)]
        return summed, sum(int(r["prints"]) for r in rows)

    def add_voice_print(
        self, agent: str, call_id: str, total: Sequence[float], prints: int
    ) -> None:
        """Keep one call's prints of an agent (their sum); a row a call, so two nodes ending
        two calls of one agent at once cannot lose either (a resumed call replaces its
        row)."""
        with self._transaction():
            self._conn.execute(
                self.dialect.sql("DELETE FROM agent_voices WHERE agent = ? AND call_id = ?"),
                (agent, call_id),
            )
            self._conn.execute(
                self.dialect.sql(
                    "INSERT INTO agent_voices (agent, call_id, total, prints, created_at) "
                    "VALUES (?, ?, ?, ?, ?)"
                ),
                (
                    agent,
                    call_id,
                    json.dumps([round(float(x), 6) for x in total]),
                    prints,
                    now_iso(),
                ),
            )

    def forget_voice_print(self, agent: str) -> bool:
        """Delete an agent's voice print (consent withdrawn); False: there was none."""
        return bool(self._execute("DELETE FROM agent_voices WHERE agent = ?", (agent,)).rowcount)

    # ------------------------------------------------------------------ scorecards
    def scorecard(self, call_id: str, query: Query | None = None) -> dict[str, Any] | None:
        """The call's automatic scorecard with reviewers' overrides beside each item (None:
        the call was not scored: its playbook has no scorecard, or it has not ended).
        `query`: `_rows` inside a write (it sees that write), else the reader."""
        query = query or self._read
        scored = query(
            "SELECT data FROM events WHERE call_id = ? AND type = 'call.scored' ORDER BY seq",
            (call_id,),
        )
        if not scored:
            return None
        overrides = {
            r["item"]: {
                "passed": bool(r["passed"]),
                "note": r["note"],
                "reviewer": r["reviewer"],
                "at": r["created_at"],
            }
            for r in query(
                "SELECT item, passed, note, reviewer, created_at FROM score_overrides "
                "WHERE call_id = ?",
                (call_id,),
            )
        }
        return score_with_overrides(json.loads(scored[-1]["data"]), overrides)

    def override_score(
        self, call_id: str, item: str, passed: bool, note: str, reviewer: str
    ) -> dict[str, Any]:
        """Keep a reviewer's answer to one item beside the automatic one; the call's score
        follows it. KeyError: the call has no scorecard or no such item."""
        card = self.scorecard(call_id)
        if card is None:
            raise KeyError(f"call {call_id!r} has no scorecard")
        if item not in {i["id"] for i in card["items"]}:
            known = ", ".join(i["id"] for i in card["items"])
            raise KeyError(f"the scorecard has no item {item!r} (items: {known})")
        with self._transaction():  # (one at a time: the score follows every override)
            self._conn.execute(
                self.dialect.sql(
                    "INSERT INTO score_overrides (call_id, item, passed, note, reviewer, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (call_id, item) DO "
                    "UPDATE SET passed = excluded.passed, note = excluded.note, "
                    "reviewer = excluded.reviewer, created_at = excluded.created_at"
                ),
                (call_id, item, passed, note, reviewer, now_iso()),
            )
            card = self.scorecard(call_id, self._rows)
            assert card is not None
            self._conn.execute(
                self.dialect.sql("UPDATE calls SET score = ? WHERE id = ?"),
                (card["score"], call_id),
            )
        return card

    def agents(self, date_from: str = "", date_to: str = "") -> list[dict[str, Any]]:
        """Per agent over ended calls started in the period: calls, average handle time,
        agent's share of the talk, score, the customer's sentiment change, suggestions used."""
        where = ["agent <> ''", "outcome <> 'in_progress'"]
        params: list[Any] = []
        if date_from:
            where.append("started_at >= ?")
            params.append(date_from)
        if date_to:
            where.append("started_at <= ?")
            params.append(_end_of(date_to))
        rows = self._read(
            "SELECT agent, COUNT(*) AS calls, AVG(duration) AS handle, AVG(agent_talk_share) "
            "AS talk, AVG(score) AS score, COUNT(score) AS scored, AVG(sentiment_change) AS "
            "sentiment, SUM(suggestions_used) AS used FROM calls WHERE "
            + " AND ".join(where)
            + " GROUP BY agent ORDER BY agent",
            params,
        )

        def num(value: Any, digits: int) -> float | None:
            return None if value is None else round(float(value), digits)

        return [
            {
                "agent": r["agent"],
                "calls": int(r["calls"]),
                "average_handle_seconds": num(r["handle"], 1),
                "agent_talk_share": num(r["talk"], 3),
                "average_score": num(r["score"], 1),
                "scored_calls": int(r["scored"]),
                "customer_sentiment_change": num(r["sentiment"], 3),
                "suggestions_used": int(r["used"] or 0),
            }
            for r in rows
        ]

    def add_recording(self, call_id: str, channel: str, path: Path, sample_rate: int) -> None:
        self._execute(
            "INSERT INTO recordings (call_id, channel, path, sample_rate) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (call_id, channel) DO UPDATE SET path = excluded.path",
            (call_id, channel, str(path), sample_rate),
        )

    def add_review(
        self,
        call_id: str,
        reviewer: str,
        scores: dict[str, float],
        comments: list[dict[str, Any]],
    ) -> dict[str, Any]:
        score = round(sum(scores.values()) / len(scores), 4) if scores else None
        created = now_iso()
        with self._transaction():
            self._conn.execute(
                self.dialect.sql(
                    "INSERT INTO reviews (call_id, reviewer, created_at, scores, comments, score)"
                    " VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (
                    call_id,
                    reviewer,
                    created,
                    json.dumps(scores),
                    json.dumps(comments, ensure_ascii=False),
                    score,
                ),
            )
        rows = self._rows(
            "SELECT * FROM reviews WHERE call_id = ? ORDER BY id DESC LIMIT 1", (call_id,)
        )
        return _review(rows[0])

    # ------------------------------------------------------------------ reads
    def ownership(self, call_id: str) -> CallOwnership | None:
        """Who started a stored call, whether it is still in progress, when it ended, its last
        seq (None: no such call)."""
        rows = self._rows(
            "SELECT owner, outcome, ended_at, last_seq FROM calls WHERE id = ?", (call_id,)
        )
        if not rows:
            return None
        row = rows[0]
        ended = row["ended_at"]
        return CallOwnership(
            owner=str(row["owner"] or ""),
            in_progress=row["outcome"] == "in_progress",
            ended=datetime.fromisoformat(str(ended).replace("Z", "+00:00")).timestamp()
            if ended
            else None,
            last_seq=int(row["last_seq"] or 0),
        )

    def last_seq(self, call_id: str) -> int:
        """The highest seq issued for a call, partials included (0: unknown call)."""
        rows = self._rows("SELECT last_seq FROM calls WHERE id = ?", (call_id,))
        return int(rows[0]["last_seq"] or 0) if rows else 0

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT * FROM calls WHERE id = ?", (call_id,))
        return _call(rows[0]) if rows else None

    def utterances(self, call_id: str) -> list[dict[str, Any]]:
        return self._utterance_rows(call_id, self._read)

    def _utterance_rows(self, call_id: str, query: Query) -> list[dict[str, Any]]:
        rows = query(
            "SELECT channel, utterance, seq, start_s, end_s, text, words, confidence, language, "
            "live_text, segment FROM utterances WHERE call_id = ? ORDER BY segment, start_s, "
            "channel",
            (call_id,),
        )
        return [
            {
                "channel": r["channel"],
                "utterance": r["utterance"],
                "seq": r["seq"],
                "start": r["start_s"],
                "end": r["end_s"],
                "text": r["text"],
                "words": json.loads(r["words"]),
                "confidence": r["confidence"],
                "language": r["language"],
                "segment": r["segment"],  # 1, then +1 each time the call id was resumed
                # what the live final said, where a revision changed it (else absent)
                **({"live_text": r["live_text"]} if r["live_text"] is not None else {}),
            }
            for r in rows
        ]

    def events(
        self, call_id: str, types: Sequence[str] = (), after_seq: int = 0
    ) -> list[dict[str, Any]]:
        sql = "SELECT data FROM events WHERE call_id = ? AND seq > ?"
        params: list[Any] = [call_id, after_seq]
        if types:
            sql += f" AND type IN ({', '.join('?' for _ in types)})"
            params += list(types)
        rows = self._read(sql + " ORDER BY seq", params)
        return [json.loads(r["data"]) for r in rows]

    def reviews(self, call_id: str) -> list[dict[str, Any]]:
        rows = self._read("SELECT * FROM reviews WHERE call_id = ? ORDER BY id", (call_id,))
        return [_review(r) for r in rows]

    def recordings(self, call_id: str) -> dict[str, dict[str, Any]]:
        rows = self._read("SELECT * FROM recordings WHERE call_id = ?", (call_id,))
        return {r["channel"]: {"path": r["path"], "sample_rate": r["sample_rate"]} for r in rows}

    def search(self, query: CallQuery) -> tuple[list[dict[str, Any]], int]:
        """Calls matching `query`, newest first, with the total count; `q` is full text."""
        where: list[str] = []
        params: list[Any] = []
        if query.q.strip():
            if self.dialect.name == "sqlite":
                where.append(
                    "id IN (SELECT u.call_id FROM utterances u JOIN utterances_fts f "
                    "ON f.rowid = u.rowid WHERE utterances_fts MATCH ?)"
                )
                params.append(_fts5_query(query.q))
            else:
                where.append(
                    "id IN (SELECT call_id FROM utterances "
                    "WHERE tsv @@ websearch_to_tsquery('english', ?))"
                )
                params.append(query.q)
        for column, value, op in (
            ("started_at", query.date_from, ">="),
            ("started_at", _end_of(query.date_to), "<="),
            ("agent", query.agent, "="),
            ("outcome", query.outcome, "="),
        ):
            if value:
                where.append(f"{column} {op} ?")
                params.append(value)
        if query.customer:
            where.append("(customer_id = ? OR LOWER(customer_name) LIKE ? ESCAPE '!')")
            literal = re.sub(r"([!%_])", r"!\1", query.customer.lower())  # % and _ as typed
            params += [query.customer, f"%{literal}%"]
        for column, value in (("intents", query.intent), ("categories", query.category)):
            if value:  # a name in the JSON list, as typed (% and _ are not wildcards)
                where.append(f"{column} LIKE ? ESCAPE '!'")
                params.append('%"' + re.sub(r"([!%_])", r"!\1", value) + '"%')
        if query.sentiment:
            where.append("sentiment_label = ?")
            params.append(query.sentiment)
        if query.has_alerts is not None:
            where.append("alerts > 0" if query.has_alerts else "alerts = 0")
        if query.checklist_complete is not None:
            where.append(
                "(checklist_total > 0 AND checklist_done = checklist_total)"
                if query.checklist_complete
                else "checklist_done < checklist_total"
            )
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        total = int(self._read(f"SELECT COUNT(*) AS n FROM calls{clause}", params)[0]["n"])
        rows = self._read(
            f"SELECT * FROM calls{clause} ORDER BY started_at DESC, id LIMIT ? OFFSET ?",
            [*params, query.limit, query.offset],
        )
        return [_call(r) for r in rows], total

    # ------------------------------------------------------------------ deletion
    def delete_call(self, call_id: str) -> bool:
        """Delete a call, its utterances, events, reviews and audio files (not while it is in
        progress: returns False then, as for an unknown call)."""
        recordings = self.recordings(call_id)
        with self._transaction():
            live = self._conn.execute(
                self.dialect.sql("SELECT 1 FROM calls WHERE id = ? AND outcome = 'in_progress'"),
                (call_id,),
            ).fetchall()
            if live:
                return False
            for table in ("utterances", "events", "reviews", "recordings", "score_overrides"):
                self._conn.execute(
                    self.dialect.sql(f"DELETE FROM {table} WHERE call_id = ?"), (call_id,)
                )
            # its webhook deliveries hold its data too: not sent after it is deleted
            self._conn.execute(
                self.dialect.sql("DELETE FROM webhook_deliveries WHERE call_id = ?"), (call_id,)
            )
            cursor = self._conn.execute(
                self.dialect.sql("DELETE FROM calls WHERE id = ?"), (call_id,)
            )
            deleted = bool(cursor.rowcount)
        for info in recordings.values():
            Path(info["path"]).unlink(missing_ok=True)
        return deleted

    def purge(
        self,
        days: int,
        *,
        now: datetime | None = None,
        keep: Callable[[str], bool] = lambda _: False,
    ) -> list[str]:
        """Delete ended calls that started more than `days` days ago; returns their ids."""
        cutoff = ((now or datetime.now(UTC)) - timedelta(days=days)).isoformat()
        cutoff = cutoff.replace("+00:00", "Z")
        rows = self._rows(
            "SELECT id FROM calls WHERE started_at < ? AND outcome != 'in_progress'", (cutoff,)
        )
        ids = [r["id"] for r in rows if not keep(r["id"])]
        ids = [call_id for call_id in ids if self.delete_call(call_id)]
        if ids:
            log.info("store: purged %d call(s) older than %d days", len(ids), days)
        return ids


class StoreWriter:
    """One thread owns every write: `write` only queues the event (the event loop never waits
    on the database), and the thread writes what is queued, in order, a batch to a
    transaction. After each commit `on_written` gets the batch (from the writer thread): the
    server sends events to screens then, so a screen sees only what is stored (kill -9 safe)
    unless the store is too slow to wait for (`live.hub.HOLD_SECONDS`).

    When a write fails because the database is not answering (restarting, network cut, SQLite
    locked by another process) the events wait in memory, in order, up to `limit`, while the
    thread retries with backoff (reconnecting PostgreSQL). Beyond the limit events are not
    kept: each is counted (`dropped`), the calls are told once through `on_loss`, and `full`
    lets the server refuse new calls. An event the database refuses as such (a bug, or its
    call deleted meanwhile) is logged and counted as dropped instead of holding up the rest.
    Nothing is dropped silently.
    """

    BATCH = 500

    def __init__(
        self,
        store: CallStore,
        limit: int = 100_000,
        on_loss: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.limit = limit
        self.on_loss = on_loss
        # called from the writer thread with each batch once it is committed (or given up)
        self.on_written: Callable[[list[Event]], None] | None = None
        self.pending: deque[Event] = deque()
        self.failures = 0  # writes that failed (each outage counts its attempts)
        self.dropped = 0
        self.last_error = ""
        self._told: set[str] = set()
        # calls with an event not kept (buffer full, or refused): their history is not all
        # in the store, so the hub keeps theirs in memory (`EventHub.release_written`)
        self.incomplete: set[str] = set()
        self._cond = threading.Condition()
        self._stop = False
        self._writing = False  # a batch is being written (it is still in `pending`)
        self.queued = 0  # events ever queued; `written` catches up with it
        self.failing = False  # the last write failed: the database is not answering
        self._batch_started = 0.0  # monotonic time the batch being written was started
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="callcue-store-writer", daemon=True)
        self._thread.start()

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.limit

    def forget_incomplete(self, gone: Callable[[str], bool]) -> None:
        """Unmark the incomplete calls for which `gone(call_id)`: their history has left
        memory (the call ended and the hub let its feed go), so none is kept whole for them."""
        with self._cond:
            self.incomplete -= {call_id for call_id in self.incomplete if gone(call_id)}

    @property
    def unreachable(self) -> bool:
        """The last write failed, or the one under way has waited a second or more (a lock
        held elsewhere, a database that stopped answering)."""
        stuck = self._writing and time.monotonic() - self._batch_started >= 1.0
        return self.failing or stuck

    def write(self, event: Event) -> None:
        """Queue `event` (never blocks on the database)."""
        with self._cond:
            if len(self.pending) < self.limit:
                self.pending.append(event)
                self.queued += 1
                self._cond.notify()
                return
            self.dropped += 1
            self.incomplete.add(event.call_id)
            first = event.call_id not in self._told
            self._told.add(event.call_id)
        if first:
            log.error(
                "the store is unreachable and %d events are waiting (CALLCUE_STORE_BUFFER): "
                "events of call %s are no longer kept",
                len(self.pending),
                event.call_id,
            )
            if self.on_loss is not None:
                self.on_loss(event.call_id)

    def _run(self) -> None:
        delay = 0.2
        failing = False
        while True:
            with self._cond:
                while not self.pending and not self._stop:
                    self._cond.wait()
                if not self.pending:
                    return
                batch = list(itertools.islice(self.pending, self.BATCH))
                self._writing = True
                self._batch_started = time.monotonic()
            try:
                written = self._write(batch)
            except Exception as exc:  # the database is not answering: retry the same batch
                self._failed(exc)
                failing = self.failing = True
                with self._cond:
                    self._writing = False
                    if not self._stop:
                        self._cond.wait(delay)
                    stop = self._stop
                delay = min(delay * 2, 5.0)
                if stop:  # stopping while the database is down: what waits is lost
                    log.error(
                        "stopping with %d events the store could not take: they are lost",
                        len(self.pending),
                    )
                    return
                continue
            with self._cond:
                for _ in batch:
                    self.pending.popleft()
                self.written += len(batch)
                self._writing = False
                self._cond.notify_all()
            if failing:
                log.info("the store is back: buffered events written")
                with self._cond:
                    self._told.clear()
                failing, delay = False, 0.2
                self.failing = False
            if self.on_written is not None:
                try:
                    self.on_written(written)
                except Exception:
                    log.exception("after writing %d events", len(written))

    def _write(self, batch: list[Event]) -> list[Event]:
        """Write the batch; an event the database refuses as such is dropped and logged (the
        others are written one by one). Any other error (the database is not answering, or
        one not known) is raised: the batch is retried."""
        try:
            self.store.record_many(batch)
            return batch
        except refused_errors():  # which event? each on its own
            pass
        for event in batch:
            try:
                self.store.record_many([event])
            except refused_errors() as exc:
                with self._cond:
                    self.dropped += 1
                    self.incomplete.add(event.call_id)
                log.error(
                    "the store refused a %s event of call %s (seq %d), which is not kept: %s",
                    event.type,
                    event.call_id,
                    event.seq,
                    f"{type(exc).__name__}: {exc}"[:300],
                )
        return batch

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        log.error("the store could not write (events are kept and retried): %s", self.last_error)

    def wait_written(self, position: int, timeout: float) -> bool:
        """Wait (blocking) until the first `position` events queued are written; False when
        `timeout` passed first (the store is slow or down: they stay queued)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.written < position and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(min(left, 0.1))
            return self.written >= position

    def flush(self, timeout: float = 10.0) -> int:
        """Wait (blocking) for what is queued to be written; how many events still wait."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.pending and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(min(left, 0.1))
            return len(self.pending)

    def close(self) -> None:
        left = self.flush()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        if left and self._thread.is_alive():  # still inside a write the database holds up
            log.error("stopping with %d events the store could not take: they are lost", left)


def sqlite_path(url: str) -> Path | None:
    """`sqlite:///rel/path`, `sqlite:////abs/path`, `sqlite:///~/x`; None: in memory."""
    rest = url.removeprefix("sqlite:").removeprefix("//")
    if rest in ("", "/", "/:memory:"):
        return None
    if not rest.startswith("/"):
        raise StoreError(f"{url!r}: a SQLite URL looks like sqlite:///path/to/callcue.db")
    return Path(rest[1:]).expanduser()


def _clean(value: object) -> str:
    """Text for a column: PostgreSQL refuses NUL characters in TEXT."""
    return str(value).replace("\x00", "")


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _end_of(day: str) -> str:
    """`2026-11-23` → the last instant of that day (a full timestamp passes through)."""
    return day + "T23:59:59.999Z" if re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) else day


def _fts5_query(text: str) -> str:
    """Words as FTS5 terms (quoted: user text never becomes FTS syntax), all required."""
    words = re.findall(r"[\w']+", text.lower())
    return " ".join('"' + w.replace('"', "") + '"' for w in words) or '""'


def _call(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "duration": row["duration"],
        "channels": json.loads(row["channels"]),
        "source": row["source"],
        "agent": row["agent"],
        "customer_id": row["customer_id"],
        "customer_name": row["customer_name"],
        "metadata": json.loads(row["metadata"]),
        "outcome": row["outcome"],
        "intent": row["intent"] or None,
        "intents": json.loads(row["intents"]),
        "categories": json.loads(row.get("categories") or "[]"),
        "score": row.get("score"),
        # the wrap-up: predicted at the end of the call, then confirmed or edited by the agent
        "wrapup": {
            "disposition": row.get("disposition") or None,
            "label": row.get("disposition_label") or "",
            "note": row.get("note") or "",
            "by": row.get("wrapup_by") or "",
            "at": row.get("wrapup_at"),
        },
        "sentiment": row["sentiment"],
        "sentiment_label": row["sentiment_label"] or None,
        "alerts": row["alerts"],
        "checklist": {"done": row["checklist_done"], "total": row["checklist_total"]},
        "events": row["last_seq"],
        # when the accurate model's end-of-call revision finished (None: not yet, or off)
        "revised_at": row.get("revised_at"),
    }


def _review(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "call_id": row["call_id"],
        "reviewer": row["reviewer"],
        "created_at": row["created_at"],
        "scores": json.loads(row["scores"]),
        "comments": json.loads(row["comments"]),
        "score": row["score"],
    }
