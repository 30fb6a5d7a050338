"""The message journal: where every message has been and when, in a hash-chained SQLite file.

Each step of a message — received, rejected, published (or not_published: the broker did not
confirm it, the sender was told to send again), delivered, retried, dead-lettered, replayed — and
every read of its payload body by an operator (operator_read, naming the account) — is one entry
naming the message, its receipt (the exchange it came in with), the source system, the target,
the reason and the attempt:

    journal = Journal(data_dir / "journal.sqlite3")
    journal.record(Step.PUBLISHED, message_id=m, receipt=r, system="eco-env-penalty")
    journal.trace(m)                        # its history, oldest first
    journal.trace(m, system="grassroots")   # [] unless grassroots sent it
    journal.verify()                        # ChainReport: ok, or the first bad entry

**Hash chain.** Entry n stores `hash = sha256(prev_hash + "\\n" + content)`, where content is the
entry's columns as stored and prev_hash is entry n-1's hash (64 zeros for the first). Editing an
entry breaks its own hash; rewriting its hash too breaks the next entry's link; deleting one
leaves a gap in `seq` and a broken link. Deleting the newest entries leaves a shorter valid
chain, which only an anchor kept elsewhere reveals: `head()` gives (seq, hash) to write down,
`verify(anchor=...)` checks the journal still reaches it unchanged.

**Group commit.** `record` puts the entry on an in-memory queue and returns; a writer thread
appends whole batches in one transaction (WAL mode, `BEGIN IMMEDIATE`, so `serve` and several
`worker` processes on one machine append to one chain in turn). `flush` returns once everything
queued before it is committed; the hub calls it (`Observer.durable`) before it acknowledges a
step to anyone, so concurrent requests and deliveries share one commit and an entry is on disk
before its step is acknowledged: a process killed after answering a sender or acking a message
has journalled that step. A reader in the same process sees its own entries (`trace` flushes
first); other processes see them after the next batch.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from monitor import metrics
from monitor.errors import JournalUnavailable
from standard.errors import render_value

log = logging.getLogger("monitor.journal")

GENESIS = "0" * 64
"""The previous hash of the first entry of a journal never pruned."""

JOURNAL_FILE = "journal.sqlite3"


class Step(StrEnum):
    """Where a message has been."""

    RECEIVED = "received"
    REJECTED = "rejected"
    PUBLISHED = "published"
    NOT_PUBLISHED = "not_published"
    DELIVERED = "delivered"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    REPLAYED = "replayed"
    OPERATOR_READ = "operator_read"
    """An operator read the message's payload body (detail: by, via)."""


class JournalOptions(BaseModel):
    """How the journal batches its writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flush_interval_s: float = Field(
        default=0.2,
        gt=0,
        le=60,
        description=(
            "Longest time an entry waits in memory before its batch is written; other processes "
            "see it after at most this long (plus the write)."
        ),
    )
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Most entries written in one transaction.",
    )
    max_pending: int = Field(
        default=100_000,
        ge=1,
        description=(
            "Entries that may wait in memory. When the file cannot keep up (disk full, locked), "
            "record() waits up to full_wait_s and then drops the entry, counting it in "
            "jghub_journal_entries_total{outcome='dropped'}: messages keep moving."
        ),
    )
    full_wait_s: float = Field(
        default=1.0,
        ge=0,
        description="Seconds record() waits for room when max_pending entries wait.",
    )
    busy_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a write waits for another process's transaction on the same file.",
    )
    durable_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds a step waits for its entries to be written before it is acknowledged (an "
            "HTTP answer, a broker ack); past it the step goes on, logged and counted as late."
        ),
    )


@dataclass(frozen=True)
class Entry:
    """One step of one message, as stored.

    Attributes:
      seq: position in the chain, from 1.
      at: when the step happened (UTC).
      step: what happened.
      message_id: the message (None for a record or payload refused before it became one).
      receipt: the exchange it came in with (the ingress receipt id, also its correlation id).
      system: the source system that sent it.
      target: the target system, for delivery steps.
      dataset: the canonical dataset.
      reason: why (a rejection's rule and field, a failure's reason, a replay's why).
      attempt: which delivery attempt, from 1 (delivery steps).
      detail: anything else, as JSON data.
      prev_hash: the previous entry's hash.
      hash: this entry's hash.
    """

    seq: int
    at: datetime
    step: Step
    message_id: str | None
    receipt: str | None
    system: str | None
    target: str | None
    dataset: str | None
    reason: str | None
    attempt: int | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainHead:
    """The newest entry's position and hash: an anchor to keep outside the journal."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> ChainHead:
        """Read "SEQ:HASH" as printed by `jghub journal head`; ValueError saying why not."""
        seq, sep, digest = text.strip().partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64:
            raise ValueError(
                f"anchor {text!r} is not SEQ:HASH (a number, a colon, 64 hex digits) as "
                "`jghub journal head` prints it"
            )
        return cls(int(seq), digest.lower())


@dataclass(frozen=True)
class ChainBreak:
    """The first entry found bad, and how.

    Attributes:
      seq: the bad entry's seq (for deleted entries: the first missing one).
      kind: edited (content does not match its hash), rewritten (its hash was recomputed, so the
        next link breaks), deleted (entries missing), anchor (the chain no longer reaches the
        anchor).
      explanation: what was found, in words.
    """

    seq: int
    kind: str
    explanation: str


@dataclass(frozen=True)
class Gap:
    """A message whose journal is incomplete (`Journal.gaps`).

    Attributes:
      message_id: the message.
      kind: missing (a step was acknowledged while an earlier one is not journalled: a
        delivery without its publishing) or unfinished (received, then neither published nor
        refused: the process stopped before the broker confirmed; the sender got no answer).
      explanation: what was found, in words.
    """

    message_id: str
    kind: str
    explanation: str


@dataclass(frozen=True)
class ChainReport:
    """The outcome of `Journal.verify`."""

    checked: int
    head: ChainHead | None
    broken: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


class _Note(NamedTuple):
    """An entry not yet chained: what `record` queues (formatted by the writer thread)."""

    at: datetime
    step: Step
    message_id: str | None
    receipt: str | None
    system: str | None
    target: str | None
    dataset: str | None
    reason: str | None
    attempt: int | None
    detail: Mapping[str, Any] | None


@dataclass
class _Flush:
    """A flush request in the queue: set once every entry queued before it is written."""

    done: threading.Event = field(default_factory=threading.Event)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    step TEXT NOT NULL,
    message_id TEXT,
    receipt TEXT,
    system TEXT,
    target TEXT,
    dataset TEXT,
    reason TEXT,
    attempt INTEGER,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_message ON journal (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS journal_receipt ON journal (receipt) WHERE receipt IS NOT NULL;
CREATE INDEX IF NOT EXISTS journal_at ON journal (at);
CREATE TABLE IF NOT EXISTS journal_base (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"""
# journal_base: where the chain starts after pruning (the last pruned entry's seq and hash).

_COLUMNS = "seq, at, step, message_id, receipt, system, target, dataset, reason, attempt, detail"


def timestamp(at: datetime) -> str:
    """A journal time: UTC, microseconds, fixed width (so text order is time order)."""
    if at.tzinfo is None:
        raise ValueError(f"journal times must be timezone-aware, got {at!r}")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(prev_hash: str, row: Iterable[Any]) -> str:
    """The hash of an entry whose stored columns (seq .. detail, in _COLUMNS order) are `row`."""
    content = json.dumps(list(row), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


# What one entry stores at most: a journal entry is evidence of a step, not a copy of what a
# sender wrote. Longer values are cut (render_value: "… (N characters)") before they are chained.
ID_CHARS = 200
REASON_CHARS = 2000
DETAIL_CHARS = 16_384


def _stored(text: str | None, limit: int) -> str | None:
    """`text` as the journal keeps it: cut to `limit`, a lone surrogate (which no UTF-8 file can
    hold; JSON's "\\ud800" makes one) written as its escape."""
    if text is None:
        return None
    cut = render_value(text, limit=limit)
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


def _detail_text(detail: Mapping[str, Any] | None) -> str:
    text = json.dumps(dict(detail or {}), ensure_ascii=False, sort_keys=True, default=str)
    if len(text) > DETAIL_CHARS:
        # Still a JSON object, so readers need not know it was cut.
        text = json.dumps({"excerpt": text[:DETAIL_CHARS], "characters": len(text)})
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _transient(error: Exception) -> bool:
    """True for a write the file may take later (locked, busy, disk I/O, disk full); False for an
    entry it refuses whatever happens (too big, a constraint, a value SQLite cannot hold)."""
    return isinstance(error, sqlite3.OperationalError)


def _refusal(error: Exception) -> str:
    """The `reason` label of jghub_journal_refused_total for a permanent write error."""
    if isinstance(error, sqlite3.DataError):
        return "too-big" if "too big" in str(error) else "invalid-value"
    if isinstance(error, sqlite3.IntegrityError):
        return "constraint"
    return "invalid-value"


class Journal:
    """The message journal in one SQLite file; thread-safe, shared by processes on one machine.

    Parameters:
      path: the SQLite file (created with its folder when missing).
      options: batching (JournalOptions; defaults work).
    """

    def __init__(self, path: Path, options: JournalOptions | None = None) -> None:
        self.path = Path(path)
        self.options = options or JournalOptions()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise JournalUnavailable(f"cannot open the journal {self.path}: {exc}") from exc
        # A deque, not a queue.Queue: appending is atomic and takes no lock, so record() costs
        # the caller almost nothing; the writer wakes every flush_interval_s (or when a batch
        # is full, or on flush/close) and drains it.
        self._pending: deque[_Note | _Flush] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._writer: threading.Thread | None = None
        self._writer_pid = 0
        self._start_lock = threading.Lock()
        self._closed = False
        atexit.register(self.close)

    @classmethod
    def in_data_dir(cls, data_dir: Path, options: JournalOptions | None = None) -> Journal:
        """The hub's journal: `data_dir/journal.sqlite3`."""
        return cls(Path(data_dir) / JOURNAL_FILE, options)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path,
            timeout=self.options.busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- writing ----------------------------------------------------------------------------------

    def record(
        self,
        step: Step,
        *,
        message_id: str | None = None,
        receipt: str | None = None,
        system: str | None = None,
        target: str | None = None,
        dataset: str | None = None,
        reason: str | None = None,
        attempt: int | None = None,
        detail: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Queue one entry; it is chained and written by the next batch. Never raises for I/O:
        an entry recorded after `close` (a thread still working at exit) is dropped and counted.
        `detail` is serialised later by the writer: do not change it after the call."""
        if self._closed:
            metrics.JOURNAL_ENTRIES.labels("dropped").inc()
            log.warning("journal %s is closed; dropped a %s entry", self.path, step)
            return
        if at is not None and at.tzinfo is None:
            raise ValueError(f"journal times must be timezone-aware, got {at!r}")
        self._ensure_writer()
        pending = self._pending
        if len(pending) >= self.options.max_pending and not self._room():
            metrics.JOURNAL_ENTRIES.labels("dropped").inc()
            log.error(
                "journal %s: %d entries wait to be written; dropped a %s entry of message %s",
                self.path,
                self.options.max_pending,
                step,
                message_id or receipt,
            )
            return
        note = _Note(
            at or datetime.now(UTC), Step(step), message_id, receipt, system, target,
            dataset, reason, attempt, detail,
        )  # fmt: skip
        pending.append(note)
        if len(pending) >= self.options.batch_size and not self._wake.is_set():
            # Setting an Event takes its lock and wakes waiters: once per batch is enough, not
            # once per entry of a payload of thousands (a fifth of its time, measured).
            self._wake.set()

    def _room(self) -> bool:
        """Wait up to full_wait_s for the writer to make room; True when there is some."""
        deadline = time.monotonic() + self.options.full_wait_s
        self._wake.set()
        while len(self._pending) >= self.options.max_pending:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write every entry queued so far; True when they are written within `timeout`."""
        if self._writer is None or not self._writer.is_alive():
            return not self._pending
        request = _Flush()
        self._pending.append(request)
        self._wake.set()
        return request.done.wait(timeout)

    def close(self) -> None:
        """Write what is queued and stop the writer. Idempotent; run at exit too."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        if writer is not None and writer.is_alive() and self._writer_pid == os.getpid():
            self._closing = True
            self._wake.set()
            writer.join(timeout=max(60.0, self.options.busy_timeout_s * 2))
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ensure_writer(self) -> None:
        if self._writer is not None and self._writer_pid == os.getpid():
            return
        with self._start_lock:
            if self._writer is not None and self._writer_pid == os.getpid():
                return
            if self._writer is not None:
                # A forked child: the parent's thread and pending entries are not ours.
                self._pending = deque()
                self._wake = threading.Event()
            writer = threading.Thread(
                target=self._write_forever, name=f"journal-writer:{self.path.name}", daemon=True
            )
            writer.start()
            # Published only once it runs: a thread that sees a writer (outside the lock) may
            # flush at once, and a writer not yet started would look dead to `flush`.
            self._writer_pid = os.getpid()
            self._writer = writer

    def _write_forever(self) -> None:
        db = self._connect()
        try:
            while True:
                self._wake.wait(self.options.flush_interval_s)
                self._wake.clear()
                closing = self._closing
                self._write_pending(db)
                if closing:
                    return
        finally:
            db.close()

    def _write_pending(self, db: sqlite3.Connection) -> None:
        """Drain the queue in batches; answer flush requests once what precedes them is in."""
        notes: list[_Note] = []
        while True:
            try:
                item = self._pending.popleft()
            except IndexError:
                break
            if isinstance(item, _Flush):
                self._commit(db, notes)
                notes = []
                item.done.set()
                continue
            notes.append(item)
            if len(notes) >= self.options.batch_size:
                self._commit(db, notes)
                notes = []
        self._commit(db, notes)

    def _commit(self, db: sqlite3.Connection, notes: list[_Note]) -> None:
        """Append `notes` to the chain, trying again (with backoff) while the file cannot take
        them for now; an entry it refuses for good is refused alone (`_refuse`), the others are
        written."""
        backoff = 0.5
        while notes:
            try:
                self._append(db, notes)
            except Exception as exc:  # any error: the writer thread must outlive one bad entry
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                if not _transient(exc):
                    if len(notes) == 1:
                        self._refuse(notes[0], exc)
                    else:
                        for note in notes:  # find the entries the file refuses; write the rest
                            self._commit(db, [note])
                    return
                metrics.JOURNAL_ENTRIES.labels("failed").inc(len(notes))
                log.error(
                    "journal %s: cannot write %d entries, trying again in %.1fs: %s",
                    self.path,
                    len(notes),
                    backoff,
                    exc,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            metrics.JOURNAL_ENTRIES.labels("written").inc(len(notes))
            return

    def _refuse(self, note: _Note, error: Exception) -> None:
        """An entry the file refuses for good: said loudly and counted, never tried again, so
        that it cannot hold up the entries recorded after it."""
        reason = _refusal(error)
        metrics.JOURNAL_REFUSED.labels(reason).inc()
        log.error(
            "journal %s refused the %s entry of message %s for good (%s: %s); it is not written, "
            "the entries after it are",
            self.path,
            note.step.value,
            note.message_id or note.receipt,
            reason,
            render_value(str(error)),
        )

    def _append(self, db: sqlite3.Connection, notes: list[_Note]) -> None:
        db.execute("BEGIN IMMEDIATE")
        last = db.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
        if last is None:
            last = db.execute("SELECT seq, hash FROM journal_base").fetchone() or (0, GENESIS)
        seq, prev = int(last[0]), str(last[1])
        rows = []
        for note in notes:
            seq += 1
            content = (
                seq, timestamp(note.at), note.step.value, _stored(note.message_id, ID_CHARS),
                _stored(note.receipt, ID_CHARS), _stored(note.system, ID_CHARS),
                _stored(note.target, ID_CHARS), _stored(note.dataset, ID_CHARS),
                _stored(note.reason, REASON_CHARS), note.attempt, _detail_text(note.detail),
            )  # fmt: skip
            digest = entry_hash(prev, content)
            rows.append((*content, prev, digest))
            prev = digest
        db.executemany(
            f"INSERT INTO journal ({_COLUMNS}, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.execute("COMMIT")

    # -- reading ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            db = self._connect()
        except sqlite3.Error as exc:
            raise JournalUnavailable(f"cannot read the journal {self.path}: {exc}") from exc
        try:
            yield db
        except sqlite3.Error as exc:
            raise JournalUnavailable(f"cannot read the journal {self.path}: {exc}") from exc
        finally:
            db.close()

    def trace(self, message_id: str, *, system: str | None = None) -> list[Entry]:
        """Every step of message `message_id`, by time; a receipt id gives every record of
        that exchange. With `system`, only what that source system sent ([] otherwise, so a
        sender cannot learn that another system's message exists)."""
        self.flush()
        sql = (
            f"SELECT {_COLUMNS}, prev_hash, hash FROM journal WHERE (message_id = ? OR receipt = ?)"
        )
        parameters: list[Any] = [message_id, message_id]
        if system is not None:
            sql += " AND system = ?"
            parameters.append(system)
        # In time order: processes append in batches, so a worker's entry may be chained before
        # the entry serve recorded a moment earlier; `at` is when each step happened.
        with self._reading() as db:
            rows = db.execute(sql + " ORDER BY at, seq", parameters).fetchall()
        return [_entry(row) for row in rows]

    def entries(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        steps: Iterable[Step] | None = None,
        system: str | None = None,
    ) -> Iterator[Entry]:
        """Entries in chain order, filtered by time window, step and source system."""
        clauses: list[str] = []
        parameters: list[Any] = []
        if since is not None:
            clauses.append("at >= ?")
            parameters.append(timestamp(since))
        if until is not None:
            clauses.append("at < ?")
            parameters.append(timestamp(until))
        if steps is not None:
            wanted = [Step(s).value for s in steps]
            clauses.append(f"step IN ({', '.join('?' * len(wanted))})")
            parameters.extend(wanted)
        if system is not None:
            clauses.append("system = ?")
            parameters.append(system)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._reading() as db:
            cursor = db.execute(
                f"SELECT {_COLUMNS}, prev_hash, hash FROM journal{where} ORDER BY seq", parameters
            )
            for row in cursor:
                yield _entry(row)

    def head(self) -> ChainHead | None:
        """The newest entry's (seq, hash), to keep as an anchor; None for an empty journal."""
        with self._reading() as db:
            row = db.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
        return ChainHead(int(row[0]), str(row[1])) if row else None

    def count(self) -> int:
        with self._reading() as db:
            (n,) = db.execute("SELECT COUNT(*) FROM journal").fetchone()
        return int(n)

    # -- checking and pruning ---------------------------------------------------------------------

    def verify(self, anchor: ChainHead | None = None) -> ChainReport:
        """Walk the chain and report the first bad entry (see the module docstring).

        `anchor` is a (seq, hash) noted earlier from `head()`: the journal must still hold that
        entry unchanged, which also reveals entries deleted from the end since then.
        """
        checked = 0
        with self._reading() as db:
            base = db.execute("SELECT seq, hash FROM journal_base").fetchone() or (0, GENESIS)
            expected_seq, expected_prev = int(base[0]) + 1, str(base[1])
            previous: tuple[Any, ...] | None = None
            cursor = db.execute(f"SELECT {_COLUMNS}, prev_hash, hash FROM journal ORDER BY seq")
            for row in cursor:
                seq, prev_hash, digest = int(row[0]), str(row[11]), str(row[12])
                if entry_hash(prev_hash, row[:11]) != digest:
                    problem = _edited(row, "its content does not match its hash")
                    return ChainReport(checked, _head(previous), problem)
                if seq != expected_seq:
                    return ChainReport(
                        checked,
                        _head(previous),
                        ChainBreak(
                            expected_seq,
                            "deleted",
                            f"entries {_span(expected_seq, seq - 1)} are missing: the chain "
                            f"jumps from {expected_seq - 1} to {seq} (deleted)",
                        ),
                    )
                if prev_hash != expected_prev:
                    if previous is None:
                        explanation = (
                            f"entry {seq} does not link to the chain's start; the entries "
                            "before it were deleted, or the start was edited"
                        )
                        return ChainReport(checked, None, ChainBreak(seq, "deleted", explanation))
                    return ChainReport(
                        checked,
                        _head(previous),
                        _edited(
                            previous,
                            f"its hash was recomputed after an edit: entry {seq} links to "
                            f"{prev_hash[:12]}…, the stored hash is {expected_prev[:12]}…",
                            kind="rewritten",
                        ),
                    )
                checked += 1
                expected_seq, expected_prev = seq + 1, digest
                previous = tuple(row)
            head = _head(previous)
            if anchor is not None:
                missed = self._check_anchor(db, anchor, head)
                if missed is not None:
                    return ChainReport(checked, head, missed)
        return ChainReport(checked, head)

    def gaps(self, limit: int = 100) -> list[Gap]:
        """Messages whose journal is incomplete, missing ones first (at most `limit`).

        After a prune, deliveries of messages whose inbound entries were cut are not checked.
        """
        with self._reading() as db:
            pruned = (db.execute("SELECT seq FROM journal_base").fetchone() or (0,))[0] > 0
            missing = db.execute(
                "SELECT d.message_id, d.target, d.at FROM journal d WHERE d.step = 'delivered' "
                "AND NOT EXISTS (SELECT 1 FROM journal p WHERE p.message_id = d.message_id "
                "AND p.step = 'published') AND (? = 0 OR EXISTS (SELECT 1 FROM journal r "
                "WHERE r.message_id = d.message_id AND r.step = 'received')) "
                "ORDER BY d.seq LIMIT ?",
                (int(pruned), limit),
            ).fetchall()
            unfinished = db.execute(
                "SELECT r.message_id, r.receipt, r.system, r.at FROM journal r "
                "WHERE r.step = 'received' AND r.message_id IS NOT NULL AND NOT EXISTS ("
                "SELECT 1 FROM journal p WHERE p.message_id = r.message_id "
                "AND p.step IN ('published', 'not_published')) ORDER BY r.seq LIMIT ?",
                (max(0, limit - len(missing)),),
            ).fetchall()
        found = [
            Gap(
                str(message_id),
                "missing",
                f"delivered to {target} at {at}, but its publishing is not journalled",
            )
            for message_id, target, at in missing
        ]
        found += [
            Gap(
                str(message_id),
                "unfinished",
                f"received from {system} at {at} (receipt {receipt}), then neither published "
                "nor refused: the hub stopped before the broker confirmed it",
            )
            for message_id, receipt, system, at in unfinished
        ]
        return found

    @staticmethod
    def _check_anchor(
        db: sqlite3.Connection, anchor: ChainHead, head: ChainHead | None
    ) -> ChainBreak | None:
        row = db.execute("SELECT hash FROM journal WHERE seq = ?", (anchor.seq,)).fetchone()
        if row is None:
            ends = f"ends at entry {head.seq}" if head else "is empty"
            return ChainBreak(
                anchor.seq,
                "anchor",
                f"the journal {ends} but the anchor names entry {anchor.seq}: entries were "
                "deleted from its end (or pruned past the anchor)",
            )
        if str(row[0]) != anchor.hash:
            return ChainBreak(
                anchor.seq,
                "anchor",
                f"entry {anchor.seq} has hash {str(row[0])[:12]}…, the anchor says "
                f"{anchor.hash[:12]}…: the chain was rebuilt from there or before",
            )
        return None

    def prune(self, before: datetime) -> int:
        """Delete the oldest entries, up to the first one at or after `before`; return how many.

        The chain stays verifiable: the last deleted entry's seq and hash become its start.
        """
        self.flush()
        try:
            with contextlib.closing(self._connect()) as db:
                db.execute("BEGIN IMMEDIATE")
                first_kept = db.execute(
                    "SELECT MIN(seq) FROM journal WHERE at >= ?", (timestamp(before),)
                ).fetchone()[0]
                if first_kept is None:
                    first_kept = (db.execute("SELECT MAX(seq) FROM journal").fetchone()[0] or 0) + 1
                last = db.execute(
                    "SELECT seq, hash FROM journal WHERE seq < ? ORDER BY seq DESC LIMIT 1",
                    (first_kept,),
                ).fetchone()
                if last is None:
                    db.execute("ROLLBACK")
                    return 0
                deleted = db.execute("DELETE FROM journal WHERE seq <= ?", (last[0],)).rowcount
                db.execute(
                    "INSERT INTO journal_base (id, seq, hash) VALUES (1, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    (last[0], last[1]),
                )
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise JournalUnavailable(f"cannot prune the journal {self.path}: {exc}") from exc
        return int(deleted)


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(
        seq=int(row[0]),
        at=datetime.fromisoformat(row[1]),
        step=Step(row[2]),
        message_id=row[3],
        receipt=row[4],
        system=row[5],
        target=row[6],
        dataset=row[7],
        reason=row[8],
        attempt=row[9],
        detail=json.loads(row[10]),
        prev_hash=row[11],
        hash=row[12],
    )


def _head(row: tuple[Any, ...] | None) -> ChainHead | None:
    return ChainHead(int(row[0]), str(row[12])) if row is not None else None


def _edited(row: tuple[Any, ...], how: str, *, kind: str = "edited") -> ChainBreak:
    what = f"entry {row[0]} ({row[2]}"
    if row[3] or row[4]:
        what += f" of message {row[3] or row[4]}"
    return ChainBreak(int(row[0]), kind, f"{what}, at {row[1]}): {how}")


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}–{last}"
