"""The message journal: where every message has been and when, hash-chained in the hub's store.

Each step of a message — received, rejected, published (or not_published: the broker did not
confirm it, the sender was told to send again), delivered, retried, dead-lettered, replayed — and
every read of its payload body by an operator (operator_read, naming the account), and an
operator's release or discard of a quarantined payload (released, discarded) — is one entry
naming the message, its receipt (the exchange it came in with), the source system, the target,
the reason and the attempt:

    journal = Journal(store)                # the hub's store: SQLite file or PostgreSQL
    journal.record(Step.PUBLISHED, message_id=m, receipt=r, system="eco-env-penalty")
    journal.trace(m)                        # its history, oldest first (an id, receipt,
                                            # quarantine id or business key)
    journal.trace(m, system="grassroots")   # [] unless grassroots sent it
    journal.verify()                        # ChainReport: ok, or the first bad entry

**Hash chain.** Entry n stores `hash = sha256(prev_hash + "\\n" + content)`, where content is the
entry's columns seq .. detail as stored and prev_hash is entry n-1's hash (64 zeros for the
first). Editing an entry breaks its own hash; rewriting its hash too breaks the next entry's
link; deleting one leaves a gap in `seq` and a broken link; deleting the newest ones leaves
entries short of the chain head (`journal_chain`). Whoever can write the database can also
rewind the head, which only an anchor kept elsewhere reveals: `head()` gives (seq, hash) to write
down, `verify(anchor=...)` checks the journal still reaches it unchanged. Two columns beside the
hashed ones, `quarantine_id` and `business_key`, are indexed copies of what `detail` says
(`quarantine_id`, `subject`); verify checks each copy against its detail, so an edited copy is
"edited" like any column.

**Search keys.** The credit codes and linked record keys an entry's detail lists are kept in
`journal_key` in the transaction that appends the entry (`monitor.journal_keys`), partitioned
and pruned by day like the entries; with the columns above they are what `monitor.search`
looks keys up in.

**Many writers, many hosts: one global sequence.** Every `serve` and `worker` of every host
appends to one chain. The chain head is one row (`journal_chain`: seq, hash, day); a batch takes
it (`SELECT … FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), chains its entries after
it, inserts them and moves the head, in one transaction. Verification is then one walk in seq
order with no merge step and no per-writer anchors to keep, and an entry's seq says the order
the store took the steps in. A chain per writer would spare the lock but leave "which entries
of which writers existed at time T" to anchors that every writer must publish and someone must
collect; with group commit (one transaction per batch per process, a few a second) the lock is
held for milliseconds, and the benchmark (`bench/store.py`) measures what it costs.

**Daily partitions.** Each entry carries `day`: the UTC date its batch was written, never less
than the head's (a batch's day is max(writer's today, head's day)), so days are monotone in seq
whatever the hosts' clocks say. On PostgreSQL `journal_entry` is partitioned by RANGE (day); a
writer creates the day's partition (`journal_entry_YYYYMMDD`) the first time it writes that day,
outside the head's lock. `prune(before)` drops whole days: on PostgreSQL their partitions, on
SQLite (no partitions) one range delete on the day index; the last dropped entry's (seq, hash)
becomes the chain's base, so verify starts from there.

**Group commit.** `record` puts the entry on an in-memory queue and returns; a writer thread
appends whole batches in one transaction on a connection of its own. `flush` returns once
everything queued before it is committed; the hub calls it (`Observer.durable`) before it
acknowledges a step to anyone, so concurrent requests and deliveries share one commit and an
entry is stored before its step is acknowledged: a process killed after answering a sender or
acking a message has journalled that step. When no batch is being written, `flush` writes the
queue up to its own request itself, in the calling thread, instead of waking the writer thread
and waiting to be woken in turn: two thread switches fewer for a lone step, each of which could
wait out the GIL's switch interval while other threads run. It tries once: a store that cannot
take the batch now leaves it, in order, to the writer thread, which tries again with backoff.
A reader in the same process sees its own entries (`trace` flushes first); other processes see
them after the next batch. Another area's write that must be committed before the same
acknowledgement may ride in the batch's transaction (`alongside`: ingress remembers the accepted
changes so) instead of paying a commit of its own.

**Adoption.** A hub from before the store kept the journal in `data_dir/journal.sqlite3`. The
hashed content is unchanged, so `Journal(store, adopt=that file)` takes its entries once, as
they were (seq, prev_hash, hash and its pruned base), when the store's journal is empty, and
renames the file `journal.sqlite3.adopted`. Into a journal that has entries already (a second
host's old file, on a shared PostgreSQL) they are appended as new entries, content unchanged,
chained anew, and the old file's head is logged.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Date,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)

from monitor import metrics
from monitor.errors import JournalUnavailable
from monitor.journal_keys import JOURNAL_KEY, KEY_CHARS, entry_keys, key_rows, stored
from standard import json_text
from standard.errors import render_value
from store import METADATA, Store, StoreError, StoreUnavailable, store_url, upsert

log = logging.getLogger("monitor.journal")

GENESIS = "0" * 64
"""The previous hash of the first entry of a journal never pruned."""

JOURNAL_FILE = "journal.sqlite3"
"""The journal's own SQLite file of a hub before the store, adopted into the store once."""


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
    RELEASED = "released"
    """An operator released a quarantined payload (detail: quarantine_id, by, what came of it)."""
    DISCARDED = "discarded"
    """An operator discarded a quarantined payload (detail: quarantine_id, by)."""


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
            "Entries that may wait in memory. When the store cannot keep up (disk full, locked, "
            "PostgreSQL away), "
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
        description=(
            "Seconds a batch waits for another process's write (SQLite: the file's lock; "
            "PostgreSQL: the chain head's row lock) before it is tried again later."
        ),
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
      kind: missing (a step was acknowledged while earlier ones are not journalled: a
        delivery without its arrival or publishing: an entry was lost), unconfirmed (delivered,
        arrival journalled, publishing not: the publishing process died between the broker's
        confirm and writing it; nobody was told it was accepted) or unfinished (received, then
        neither published nor refused: the process stopped before it could tell the sender).
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


class _Alongside(NamedTuple):
    """A write of another area to commit in the transaction of the next batch (`alongside`)."""

    work: Callable[[Connection], None]
    what: str


JOURNAL_ENTRY = Table(
    "journal_entry",
    METADATA,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    # In the primary key because PostgreSQL partitions by it (a key must hold the partition key).
    Column("day", Date, primary_key=True),
    Column("at", String, nullable=False),
    Column("step", String, nullable=False),
    Column("message_id", String),
    Column("receipt", String),
    Column("system", String),
    Column("target", String),
    Column("dataset", String),
    Column("reason", Text),
    Column("attempt", BigInteger),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String, nullable=False),
    Column("hash", String, nullable=False),
    # Indexed copies of detail's quarantine_id and subject (not hashed: verify compares them).
    Column("quarantine_id", String),
    Column("business_key", String),
    Index("ix_journal_entry_message_id", "message_id"),
    Index("ix_journal_entry_receipt", "receipt"),
    Index("ix_journal_entry_quarantine_id", "quarantine_id"),
    Index("ix_journal_entry_business_key", "business_key"),
    Index("ix_journal_entry_at", "at"),
    Index("ix_journal_entry_day", "day"),
    postgresql_partition_by="RANGE (day)",
)
"""Every entry; on PostgreSQL one partition per day (`journal_entry_YYYYMMDD`)."""

JOURNAL_CHAIN = Table(
    "journal_chain",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String, nullable=False),
    Column("day", Date, nullable=True),
    Column("base_seq", BigInteger, nullable=False),
    Column("base_hash", String, nullable=False),
    Column("keys_from", BigInteger, nullable=True),
)
"""One row (id 1): the chain's head (newest seq, hash, day), which every batch locks and moves,
its base (the last pruned entry's seq and hash; 0 and GENESIS before any prune), and the first
entry whose record's credit codes and links were journalled (`keys_from`: 1 for a journal begun
with them, the head's next entry when migration 0010 added them to an older one)."""

_HASHED: tuple[str, ...] = ("seq", "at", "step", "message_id", "receipt", "system", "target")
_HASHED += ("dataset", "reason", "attempt", "detail")
_READ = [JOURNAL_ENTRY.c[name] for name in (*_HASHED, "prev_hash", "hash")]
_CHECKED = [*_READ, JOURNAL_ENTRY.c.day, JOURNAL_ENTRY.c.quarantine_id]
_CHECKED.append(JOURNAL_ENTRY.c.business_key)
_CHAIN = JOURNAL_CHAIN.c.id == 1


def timestamp(at: datetime) -> str:
    """A journal time: UTC, microseconds, fixed width (so text order is time order)."""
    if at.tzinfo is None:
        raise ValueError(f"journal times must be timezone-aware, got {at!r}")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(prev_hash: str, row: Iterable[Any]) -> str:
    """The hash of an entry whose stored columns (seq .. detail, in _HASHED order) are `row`."""
    content = json_text.compact(list(row))
    return hashlib.sha256(prev_hash.encode() + b"\n" + content).hexdigest()


# What one entry stores at most: a journal entry is evidence of a step, not a copy of what a
# sender wrote. Longer values are cut (render_value: "… (N characters)") before they are chained.
ID_CHARS = KEY_CHARS  # an id is a search key too: cut alike, so a search asks for what is kept
REASON_CHARS = 2000
DETAIL_CHARS = 16_384


def _stored(text: str | None, limit: int) -> str | None:
    return None if text is None else stored(text, limit)


def _detail_text(detail: Mapping[str, Any] | None) -> tuple[str, Mapping[str, Any]]:
    """The stored text of an entry's detail, and what of it its copies and search keys are
    taken from (`_copies`, `entry_keys`): read from `detail` itself when the text holds it whole
    and unchanged (no JSON parse of what was just written), else from the text read back (an
    excerpt, or lone surrogates escaped)."""
    whole = json_text.spaced_sorted(dict(detail or {}), default=str)
    text = whole
    if len(text) > DETAIL_CHARS:
        # Still a JSON object, so readers need not know it was cut.
        text = json.dumps({"excerpt": text[:DETAIL_CHARS], "characters": len(text)})
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    read = _as_read(detail) if text == whole else None
    return text, read if read is not None else detail_data(text)


_COPIED = ("quarantine_id", "subject")
_KEYED = ("credit_codes", "links")


def _as_read(detail: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What `detail`'s stored text reads back as, for the names its copies and keys come from
    (the listed keys in the text's sorted order); None when that cannot be told without reading
    the text (a value that is not plain JSON)."""
    read: dict[str, Any] = {}
    for name in _COPIED:
        value = (detail or {}).get(name)
        if value is None:
            continue
        if type(value) not in (str, int, bool):  # not a subclass: an enum prints otherwise
            return None
        read[name] = value
    for name in _KEYED:
        listed = (detail or {}).get(name)
        if listed is None:
            continue
        if not isinstance(listed, dict) or not all(
            type(path) is str and type(value) is str for path, value in listed.items()
        ):
            return None
        read[name] = dict(sorted(listed.items()))
    return read


def detail_data(detail_text: str) -> dict[str, Any]:
    """An entry's detail as data ({} for one that is not a JSON object)."""
    try:
        detail = json.loads(detail_text)
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _copies(detail: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The (quarantine_id, business_key) indexed beside an entry: what its detail says."""
    found = detail.get("quarantine_id"), detail.get("subject")
    return (
        _stored(str(found[0]), ID_CHARS) if found[0] is not None else None,
        _stored(str(found[1]), ID_CHARS) if found[1] is not None else None,
    )


class _NeedPartition(Exception):
    """A batch's day has no partition yet (PostgreSQL): made outside the lock, then retried."""

    def __init__(self, day: date) -> None:
        super().__init__(f"no journal partition for {day}")
        self.day = day


class _NotNow(Exception):
    """A caller's batch the store cannot take now (`Journal.flush`): left to the writer thread.
    `db`: the connection to go on with (None when it was lost)."""

    def __init__(self, db: Connection | None) -> None:
        super().__init__("the store cannot take the batch now")
        self.db = db


def _transient(error: BaseException) -> bool:
    """True for a write the store may take later (locked, busy, disk full, connection lost);
    False for an entry it refuses whatever happens (too big, a constraint, a value it cannot
    hold)."""
    if isinstance(error, StoreUnavailable | OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def _refusal(error: BaseException) -> str:
    """The `reason` label of jghub_journal_refused_total for a permanent write error."""
    if isinstance(error, DataError):
        return "too-big" if "too big" in str(error) else "invalid-value"
    if isinstance(error, IntegrityError):
        return "constraint"
    return "invalid-value"


PARTITIONED = ("journal_entry", "journal_key")
"""The tables with a partition per day on PostgreSQL: the entries and their search keys."""


def _partition(day: date, table: str = "journal_entry") -> str:
    return f"{table}_{day:%Y%m%d}"


class Journal:
    """The message journal in the hub's store; thread-safe, shared by every process and host
    that opens the same store.

    Parameters:
      store: the hub's store (`Store.open`; not closed by the journal), or the path of an
        SQLite file that is a store of its own (tests, benchmarks, a journal kept apart).
      options: batching (JournalOptions; defaults work).
      adopt: the SQLite file of a journal from before the store (`data_dir/journal.sqlite3`):
        taken into the store once and renamed `.adopted` (see the module docstring).
      clock: the writers' clock, whose UTC date is a batch's day (tests move it).
    """

    def __init__(
        self,
        store: Store | Path,
        options: JournalOptions | None = None,
        *,
        adopt: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.options = options or JournalOptions()
        self._clock = clock
        try:
            if not isinstance(store, Store):
                store = Store.open(store_url(f"sqlite:///{Path(store).resolve()}", Path(store)))
            self.store = store
            with store.begin() as db:
                db.execute(
                    upsert(db, JOURNAL_CHAIN).on_conflict_do_nothing(index_elements=["id"]),
                    {"id": 1, "seq": 0, "hash": GENESIS, "day": None, "base_seq": 0,
                     "base_hash": GENESIS, "keys_from": 1},
                )  # fmt: skip
        except (OSError, StoreError, SQLAlchemyError) as exc:
            raise JournalUnavailable(
                f"cannot open the journal in the store {store}: {exc}"
            ) from exc
        self.where = str(store)
        self._postgresql = not store.embedded
        # A deque, not a queue.Queue: appending is atomic and takes no lock, so record() costs
        # the caller almost nothing; the writer wakes every flush_interval_s (or when a batch
        # is full, or on flush/close) and drains it.
        self._pending: deque[_Note | _Flush | _Alongside] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._writer: threading.Thread | None = None
        self._writer_pid = 0
        self._start_lock = threading.Lock()
        # Whose turn it is to write (the writer thread's, or a flushing caller's), and the
        # connection the turn writes with.
        self._turn = threading.Lock()
        self._db: Connection | None = None
        self._closed = False
        if adopt is not None:
            self.adopt(adopt)
        atexit.register(self.close)

    def _connect(self) -> Connection:
        """The writer's own connection, out of the pool: it waits busy_timeout_s for another
        writer (a setting that must not leak into the pooled connections of other areas)."""
        connection = self.store.engine.connect()
        connection.detach()
        wait_ms = int(self.options.busy_timeout_s * 1000)
        if self._postgresql:
            connection.exec_driver_sql(f"SET lock_timeout = {wait_ms}")
        else:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {wait_ms}")
            connection.execution_options(jghub_immediate=True)
        connection.commit()
        return connection

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
            log.warning("journal %s is closed; dropped a %s entry", self.where, step)
            return
        if at is not None and at.tzinfo is None:
            raise ValueError(f"journal times must be timezone-aware, got {at!r}")
        self._ensure_writer()
        pending = self._pending
        if len(pending) >= self.options.max_pending and not self._room():
            metrics.JOURNAL_ENTRIES.labels("dropped").inc()
            log.error(
                "journal %s: %d entries wait to be written; dropped a %s entry of message %s",
                self.where,
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

    def alongside(self, work: Callable[[Connection], None], what: str) -> None:
        """Run `work` in the transaction of the next batch, on the journal's store, so that it
        costs no commit of its own: a `flush` called after this returns once it is committed
        with the entries queued before it. `what` names it in the log: a failure of `work`
        rolls back its own savepoint only (logged, not raised; the entries are written), and
        a batch tried again runs it again, so `work` must be idempotent (an upsert)."""
        if self._closed:
            with self.store.begin() as db:
                work(db)
            return
        self._ensure_writer()
        self._pending.append(_Alongside(work, what))

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write every entry queued so far; True when they are written within `timeout`.

        When no batch is being written, the caller writes them itself (see the module
        docstring); the entries queued after its request are left to the writer thread. A
        store that makes it wait (another process's write) may hold it up to
        `busy_timeout_s`."""
        if self._writer is None or not self._writer.is_alive():
            return not self._pending
        request = _Flush()
        self._pending.append(request)
        if self._turn.acquire(blocking=False):
            started = time.monotonic()
            try:
                self._db = self._write_pending(self._db, until=request)
            finally:
                self._turn.release()
            if request.done.is_set():
                return True
            if timeout is not None:
                timeout = max(timeout - (time.monotonic() - started), 0.0)
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
                # A forked child: the parent's thread, pending entries, turn and connection
                # are not ours.
                self._pending = deque()
                self._wake = threading.Event()
                self._turn = threading.Lock()
                self._db = None
            writer = threading.Thread(
                target=self._write_forever, name="journal-writer", daemon=True
            )
            writer.start()
            # Published only once it runs: a thread that sees a writer (outside the lock) may
            # flush at once, and a writer not yet started would look dead to `flush`.
            self._writer_pid = os.getpid()
            self._writer = writer

    def _write_forever(self) -> None:
        try:
            while True:
                self._wake.wait(self.options.flush_interval_s)
                self._wake.clear()
                closing = self._closing
                with self._turn:
                    self._db = self._write_pending(self._db)
                if closing:
                    return
        finally:
            with self._turn:
                if self._db is not None:
                    with contextlib.suppress(Exception):
                        self._db.close()
                    self._db = None

    def _write_pending(
        self, db: Connection | None, *, until: _Flush | None = None
    ) -> Connection | None:
        """Drain the queue in batches, holding `_turn`; answer flush requests once what precedes
        them is in. Returns the connection (None after a connection was lost: opened again).

        `until`: a caller's flush request (`flush`): stop after it, and try each batch once; a
        batch the store cannot take now goes back to the front of the queue, in order, with the
        flush requests not yet answered, for the writer thread. None: the writer thread, which
        drains the whole queue and tries again until the store takes each batch."""
        notes: list[_Note] = []
        works: list[_Alongside] = []
        # Flush requests are answered after the commit that follows them, not one commit each:
        # steps acknowledged from many threads queue "entry, flush, entry, flush, …", and one
        # transaction for all of them is the point of group commit.
        flushes: list[_Flush] = []
        patient = until is None
        try:
            while True:
                try:
                    item = self._pending.popleft()
                except IndexError:
                    break
                if isinstance(item, _Flush):
                    flushes.append(item)
                    if item is until:
                        break
                    continue
                if isinstance(item, _Alongside):
                    works.append(item)
                    continue
                notes.append(item)
                if len(notes) >= self.options.batch_size:
                    db = self._commit(db, notes, works, patient=patient)
                    notes, works = [], []
                    _answer(flushes)
            db = self._commit(db, notes, works, patient=patient)
        except _NotNow as later:
            self._pending.extendleft(reversed([*works, *notes, *flushes]))
            return later.db
        _answer(flushes)
        return db

    def _commit(
        self,
        db: Connection | None,
        notes: list[_Note],
        works: Sequence[_Alongside] = (),
        *,
        patient: bool = True,
    ) -> Connection | None:
        """Append `notes` to the chain, trying again (with backoff) while the store cannot take
        them for now; an entry it refuses for good is refused alone (`_refuse`), the others are
        written. Not `patient`: raise _NotNow, nothing written, instead of trying again."""
        backoff = 0.5
        while notes or works:
            try:
                if db is None:
                    db = self._connect()
                with self.store.writing():
                    self._append(db, notes, works)
            except _NeedPartition as missing:
                try:
                    self.make_partition(missing.day)
                except Exception as exc:
                    if not patient:
                        raise _NotNow(db) from exc
                    log.error("journal: cannot make the partition of %s: %s", missing.day, exc)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                continue
            except Exception as exc:  # any error: the writer thread must outlive one bad entry
                if not _transient(exc):
                    # Tried patiently even for a caller: some of these may be written before
                    # the store fails for now, and they must not go back on the queue.
                    if works:
                        db = self._commit(db, [], works)
                    if len(notes) == 1:
                        self._refuse(notes[0], exc)
                    elif len(notes) > 1:
                        for note in notes:  # find the entries the store refuses; write the rest
                            db = self._commit(db, [note])
                    return db
                if db is not None and (self._postgresql or db.invalidated):
                    # A PostgreSQL connection may be the thing that broke: take a new one.
                    with contextlib.suppress(Exception):
                        db.close()
                    db = None
                if not patient:
                    raise _NotNow(db) from exc
                metrics.JOURNAL_ENTRIES.labels("failed").inc(len(notes))
                log.error(
                    "journal in %s: cannot write %d entries, trying again in %.1fs: %s",
                    self.where,
                    len(notes),
                    backoff,
                    render_value(str(exc)),
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            metrics.JOURNAL_ENTRIES.labels("written").inc(len(notes))
            return db
        return db

    def _refuse(self, note: _Note, error: BaseException) -> None:
        """An entry the store refuses for good: said loudly and counted, never tried again, so
        that it cannot hold up the entries recorded after it."""
        reason = _refusal(error)
        metrics.JOURNAL_REFUSED.labels(reason).inc()
        log.error(
            "journal in %s refused the %s entry of message %s for good (%s: %s); it is not "
            "written, the entries after it are",
            self.where,
            note.step.value,
            note.message_id or note.receipt,
            reason,
            render_value(str(error)),
        )

    def _append(self, db: Connection, notes: list[_Note], works: Sequence[_Alongside] = ()) -> None:
        """One batch: lock the chain head, chain `notes` after it, insert them, move the head;
        `works` (other areas' writes, `alongside`) in the same transaction."""
        with db.begin():
            for work in works:
                _run_alongside(db, work)
            if not notes:
                return
            dialect = db.dialect.name
            seq, prev, head_day = _read_head(db, dialect)
            today = self._clock().astimezone(UTC).date()
            day = max(today, head_day) if head_day is not None else today
            if self._postgresql and not self._has_partition(db, day):
                raise _NeedPartition(day)
            rows = []
            for note in notes:
                seq += 1
                text, detail = _detail_text(note.detail)
                content = (
                    seq, timestamp(note.at), note.step.value, _stored(note.message_id, ID_CHARS),
                    _stored(note.receipt, ID_CHARS), _stored(note.system, ID_CHARS),
                    _stored(note.target, ID_CHARS), _stored(note.dataset, ID_CHARS),
                    _stored(note.reason, REASON_CHARS), note.attempt, text,
                )  # fmt: skip
                digest = entry_hash(prev, content)
                rows.append(_rows(content, prev, digest, day, detail))
                prev = digest
            _insert(db, rows)
            _move_head(db, dialect, seq, prev, day)

    @staticmethod
    def _has_partition(db: Connection, day: date) -> bool:
        # Checked under the head's lock: prune drops partitions under it too. Both tables: a
        # hub from before the search keys made only the entries' partition of its days.
        return all(
            db.execute(text("SELECT to_regclass(:name)"), {"name": _partition(day, table)})
            .scalar() is not None
            for table in PARTITIONED
        )  # fmt: skip

    def make_partition(self, day: date) -> None:
        """Create the partitions of `day` (PostgreSQL: its entries and their search keys),
        tolerating another writer doing it too; nothing on SQLite, which has none."""
        if not self._postgresql:
            return
        bounds = f"FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
        try:
            with self.store.begin() as db:
                for table in PARTITIONED:
                    db.exec_driver_sql(
                        f"CREATE TABLE IF NOT EXISTS {_partition(day, table)} PARTITION OF "
                        f"{table} FOR VALUES {bounds}"
                    )
        except (StoreError, SQLAlchemyError):
            # Two writers at once: IF NOT EXISTS does not stop the second one's catalogue insert
            # failing. Fine if the partitions are there now.
            with self.store.begin() as db:
                if not self._has_partition(db, day):
                    raise
        log.info("journal: made the partitions of %s", day)

    # -- adopting a journal from before the store -------------------------------------------------

    def adopt(self, path: Path) -> int:
        """Take the entries of the old journal file `path` into the store and rename the file
        `<name>.adopted`; return how many. As they were (seq, hashes, pruned base) when the
        store's journal is empty; else appended and chained anew. Nothing when there is no
        such file."""
        path = Path(path)
        if not path.is_file():
            return 0
        try:
            with contextlib.closing(sqlite3.connect(path)) as old:
                base = old.execute("SELECT seq, hash FROM journal_base").fetchone() or (0, GENESIS)
                rows = old.execute(
                    f"SELECT {', '.join(_HASHED)}, prev_hash, hash FROM journal ORDER BY seq"
                ).fetchall()
        except sqlite3.Error as exc:
            raise JournalUnavailable(
                f"cannot read the old journal {path} to take it into the store: {exc}; move it "
                "away to start without it"
            ) from exc
        days: list[date] = []
        for row in rows:  # a day per entry, monotone in seq like the days of written batches
            at_day = datetime.fromisoformat(row[1]).astimezone(UTC).date()
            days.append(max(at_day, days[-1]) if days else at_day)
        for day in sorted(set(days)):
            self.make_partition(day)
        try:
            kept = self._adopt_unchanged(rows, days, base)
        except (StoreError, SQLAlchemyError) as exc:
            raise JournalUnavailable(f"cannot take {path} into the journal: {exc}") from exc
        if not kept:
            for row in rows:
                self.record(
                    Step(row[2]), message_id=row[3], receipt=row[4], system=row[5],
                    target=row[6], dataset=row[7], reason=row[8], attempt=row[9],
                    detail=json.loads(row[10]), at=datetime.fromisoformat(row[1]),
                )  # fmt: skip
            if not self.flush(timeout=None):
                raise JournalUnavailable(f"cannot take {path} into the journal")
            head = f"{rows[-1][0]}:{rows[-1][12]}" if rows else "empty"
            log.warning(
                "journal: %s was taken in after the entries already in the store, chained anew; "
                "its own chain ended at %s (keep that as its anchor)",
                path,
                head,
            )
        path.rename(path.with_name(path.name + ".adopted"))
        log.info("journal: took %d entries from %s into the store", len(rows), path)
        return len(rows)

    def _adopt_unchanged(
        self, rows: list[tuple[Any, ...]], days: list[date], base: tuple[Any, ...]
    ) -> bool:
        """Insert `rows` as they were when the store's chain is empty; False when it is not."""
        with self.store.begin(immediate=True) as db:
            head = db.execute(select(JOURNAL_CHAIN).where(_CHAIN).with_for_update()).one()
            if head.seq != 0 or head.base_seq != 0:
                return False
            if not rows:
                values = {"seq": int(base[0]), "hash": str(base[1])}
                db.execute(update(JOURNAL_CHAIN).where(_CHAIN).values(**values))
                return True
            for start in range(0, len(rows), 5000):
                chunk = zip(rows[start : start + 5000], days[start : start + 5000], strict=True)
                _insert(db, [_rows(row[:11], row[11], row[12], day) for row, day in chunk])
            db.execute(
                update(JOURNAL_CHAIN)
                .where(_CHAIN)
                .values(
                    seq=int(rows[-1][0]),
                    hash=str(rows[-1][12]),
                    day=days[-1],
                    base_seq=int(base[0]),
                    base_hash=str(base[1]),
                    # An old journal's records named no credit codes or links.
                    keys_from=int(rows[-1][0]) + 1,
                )
            )
        return True

    # -- reading ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A read transaction; `snapshot`: every statement sees the same moment (the head row and
        the entries agree, whoever commits meanwhile)."""
        try:
            with self.store.engine.connect() as db:
                if snapshot and self._postgresql:
                    db = db.execution_options(isolation_level="REPEATABLE READ")
                with db.begin():
                    yield db
        except (StoreError, SQLAlchemyError) as exc:
            raise JournalUnavailable(
                f"cannot read the journal in the store {self.where}: {render_value(str(exc))}"
            ) from exc

    def trace(self, key: str, *, system: str | None = None) -> list[Entry]:
        """Every step of the message with id `key`, by time; a receipt id gives every record of
        that exchange, a quarantine id the payload kept, a record key (case number, complaint
        id, task id: the record's subject) every message of that record. With `system`, only
        what that source system sent ([] otherwise, so a sender cannot learn that another
        system's message exists). Credit codes and links to other records are searched by
        `monitor.search`."""
        self.flush()
        e = JOURNAL_ENTRY.c
        named = (e.message_id, e.receipt, e.quarantine_id, e.business_key)
        wanted = [or_(*(column == key for column in named))]
        if system is not None:
            wanted.append(e.system == system)
        with self.reading() as db:
            return entries_where(db, *wanted)

    def entries(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        steps: Iterable[Step] | None = None,
        system: str | None = None,
        message_id: str | None = None,
        receipt: str | None = None,
        quarantine_id: str | None = None,
        business_key: str | None = None,
    ) -> Iterator[Entry]:
        """Entries in chain order, filtered by time window, step, source system and keys."""
        e = JOURNAL_ENTRY.c
        query = select(*_READ)
        if since is not None:
            query = query.where(e.at >= timestamp(since))
        if until is not None:
            query = query.where(e.at < timestamp(until))
        if steps is not None:
            query = query.where(e.step.in_([Step(s).value for s in steps]))
        for column, wanted in (
            (e.system, system),
            (e.message_id, message_id),
            (e.receipt, receipt),
            (e.quarantine_id, quarantine_id),
            (e.business_key, business_key),
        ):
            if wanted is not None:
                query = query.where(column == wanted)
        with self.reading() as db:
            result = db.execution_options(yield_per=1000).execute(query.order_by(e.seq))
            for row in result:
                yield _entry(row)

    def head(self) -> ChainHead | None:
        """The newest entry's (seq, hash), to keep as an anchor; None for an empty journal."""
        with self.reading() as db:
            row = db.execute(select(JOURNAL_CHAIN.c.seq, JOURNAL_CHAIN.c.hash).where(_CHAIN)).one()
        return ChainHead(int(row[0]), str(row[1])) if row[0] else None

    def count(self) -> int:
        with self.reading() as db:
            return int(db.execute(select(func.count()).select_from(JOURNAL_ENTRY)).scalar_one())

    # -- checking and pruning ---------------------------------------------------------------------

    def verify(self, anchor: ChainHead | None = None) -> ChainReport:
        """Walk the chain and report the first bad entry (see the module docstring).

        `anchor` is a (seq, hash) noted earlier from `head()`: the journal must still hold that
        entry unchanged, which also reveals entries deleted from the end since then.
        """
        with self.reading(snapshot=True) as db:
            chain = db.execute(select(JOURNAL_CHAIN).where(_CHAIN)).one()
            walk = _Walk(int(chain.base_seq), str(chain.base_hash))
            result = db.execution_options(yield_per=1000).execute(
                select(*_CHECKED).order_by(JOURNAL_ENTRY.c.seq)
            )
            for row in result:
                if not walk.step(tuple(row)):
                    return walk.report()
            if walk.expected_seq - 1 > chain.seq:
                walk.broken = ChainBreak(
                    int(chain.seq) + 1,
                    "rewritten",
                    f"the chain head says entry {chain.seq} is the newest, but entries go up to "
                    f"{walk.expected_seq - 1}: the head was rewound",
                )
                return walk.report()
            if walk.expected_seq <= chain.seq:
                walk.broken = ChainBreak(
                    walk.expected_seq,
                    "deleted",
                    f"entries {_span(walk.expected_seq, int(chain.seq))} are missing: the chain "
                    f"head is entry {chain.seq}, the last entry kept is {walk.expected_seq - 1} "
                    "(deleted from the end)",
                )
                return walk.report()
            if anchor is not None:
                walk.broken = self._check_anchor(db, anchor, walk.head(), chain)
        return walk.report()

    def gaps(self, limit: int = 100) -> list[Gap]:
        """Messages whose journal is incomplete, missing ones first (at most `limit`).

        After a prune, deliveries of messages whose inbound entries were cut are not checked.
        """
        with self.reading() as db:
            pruned = db.execute(select(JOURNAL_CHAIN.c.base_seq).where(_CHAIN)).scalar_one() > 0
            # A delivery without its publishing: "unconfirmed" when its arrival is journalled
            # (ingress writes `received` before it publishes, so only a publisher that died
            # between the broker's confirm and its `published` entry leaves this; its sender
            # was not answered), "missing" when even that is not (an entry was lost). After a
            # prune, a delivery whose inbound entries were cut is not checked.
            deliveries = db.execute(
                text(
                    "SELECT d.message_id, d.target, d.at, EXISTS (SELECT 1 FROM journal_entry r "
                    "WHERE r.message_id = d.message_id AND r.step = 'received') "
                    "FROM journal_entry d "
                    "WHERE d.step = 'delivered' AND NOT EXISTS (SELECT 1 FROM journal_entry p "
                    "WHERE p.message_id = d.message_id AND p.step = 'published') "
                    "ORDER BY d.seq LIMIT :limit"
                ),
                {"limit": limit},
            ).all()
            missing = [row for row in deliveries if row[3] or not pruned]
            unfinished = db.execute(
                text(
                    "SELECT r.message_id, r.receipt, r.system, r.at FROM journal_entry r "
                    "WHERE r.step = 'received' AND r.message_id IS NOT NULL AND NOT EXISTS ("
                    "SELECT 1 FROM journal_entry p WHERE p.message_id = r.message_id "
                    "AND p.step IN ('published', 'not_published', 'delivered')) "
                    "ORDER BY r.seq LIMIT :limit"
                ),
                {"limit": max(0, limit - len(missing))},
            ).all()
        found = [
            Gap(
                str(message_id),
                "unconfirmed" if arrived else "missing",
                f"delivered to {target} at {at}, but its publishing is not journalled"
                + (
                    ": the process that published it stopped between the broker's confirm and "
                    "writing it (its sender was not answered)"
                    if arrived
                    else ", nor its arrival"
                ),
            )
            for message_id, target, at, arrived in missing
        ]
        found.sort(key=lambda gap: gap.kind != "missing")
        found += [
            Gap(
                str(message_id),
                "unfinished",
                f"received from {system} at {at} (receipt {receipt}), then neither published "
                "nor refused: the hub stopped before it answered the sender",
            )
            for message_id, receipt, system, at in unfinished
        ]
        return found

    @staticmethod
    def _check_anchor(
        db: Connection, anchor: ChainHead, head: ChainHead | None, chain: Any
    ) -> ChainBreak | None:
        if anchor.seq <= chain.base_seq:
            if (anchor.seq, anchor.hash) == (chain.base_seq, chain.base_hash):
                return None  # pruned up to the anchor exactly: the chain starts from it
            return ChainBreak(
                anchor.seq,
                "anchor",
                f"the journal was pruned past the anchor (it starts after entry "
                f"{chain.base_seq}): keep a newer anchor",
            )
        found = db.execute(
            select(JOURNAL_ENTRY.c.hash).where(JOURNAL_ENTRY.c.seq == anchor.seq)
        ).scalar()
        if found is None:
            ends = f"ends at entry {head.seq}" if head else "is empty"
            return ChainBreak(
                anchor.seq,
                "anchor",
                f"the journal {ends} but the anchor names entry {anchor.seq}: entries were "
                "deleted from its end (and its head rewound)",
            )
        if str(found) != anchor.hash:
            return ChainBreak(
                anchor.seq,
                "anchor",
                f"entry {anchor.seq} has hash {str(found)[:12]}…, the anchor says "
                f"{anchor.hash[:12]}…: the chain was rebuilt from there or before",
            )
        return None

    def prune(self, before: date) -> int:
        """Drop the entries of every day before `before` (UTC dates of their batches), and their
        search keys; return how many entries. Whole days: on PostgreSQL their partitions are
        dropped, on SQLite one range delete. The chain stays verifiable: the last dropped
        entry's seq and hash become its base. Safe while writers write: it holds the chain
        head's lock meanwhile."""
        self.flush()
        entry = JOURNAL_ENTRY.c
        try:
            with self.store.begin(immediate=True) as db:
                db.execute(select(JOURNAL_CHAIN.c.id).where(_CHAIN).with_for_update()).one()
                last = db.execute(
                    select(entry.seq, entry.hash)
                    .where(entry.day < before)
                    .order_by(entry.seq.desc())
                    .limit(1)
                ).first()
                if last is None:
                    return 0
                dropped = db.execute(
                    select(func.count()).select_from(JOURNAL_ENTRY).where(entry.day < before)
                ).scalar_one()
                if self._postgresql:
                    for name in self._partitions(db, before):
                        db.exec_driver_sql(f"DROP TABLE {name}")
                else:
                    db.execute(JOURNAL_ENTRY.delete().where(entry.day < before))
                    db.execute(JOURNAL_KEY.delete().where(JOURNAL_KEY.c.seq <= int(last[0])))
                db.execute(
                    update(JOURNAL_CHAIN)
                    .where(_CHAIN)
                    .values(base_seq=int(last[0]), base_hash=str(last[1]))
                )
        except (StoreError, SQLAlchemyError) as exc:
            raise JournalUnavailable(f"cannot prune the journal in {self.where}: {exc}") from exc
        return int(dropped)

    @staticmethod
    def _partitions(db: Connection, before: date) -> list[str]:
        """The names of the day partitions of the entries and their keys before `before`."""
        found = []
        for table in PARTITIONED:
            names = db.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = CAST(:table AS regclass)"
                ),
                {"table": table},
            ).scalars()
            found += sorted(name for name in names if name < _partition(before, table))
        return found


def entries_where(
    db: Connection, *conditions: ColumnElement[bool], limit: int | None = None
) -> list[Entry]:
    """The entries meeting every condition (on `JOURNAL_ENTRY`'s columns), at most `limit`, in
    time order: processes append in batches, so a worker's entry may be chained before the
    entry serve recorded a moment earlier; `at` is when each step happened."""
    e = JOURNAL_ENTRY.c
    query = select(*_READ).where(*conditions).order_by(e.at, e.seq)
    if limit is not None:
        query = query.limit(limit)
    return [_entry(row) for row in db.execute(query)]


def _run_alongside(db: Connection, work: _Alongside) -> None:
    """`work` in a savepoint of the batch's transaction: its failure undoes it alone."""
    try:
        with db.begin_nested():
            work.work(db)
    except Exception as exc:
        if _transient(exc):
            raise  # the batch is tried again (the store is locked or gone for now)
        log.error("journal: %s failed in the batch's transaction: %s", work.what, exc)


def _answer(flushes: list[_Flush]) -> None:
    """Tell the flush requests waiting in `flushes` that what was queued before them is in."""
    for flush in flushes:
        flush.done.set()
    flushes.clear()


def _rows(
    content: tuple[Any, ...],
    prev: str,
    digest: str,
    day: date,
    detail: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The row of an entry whose hashed columns are `content`, with its copies of detail, and
    the rows of its search keys. `detail`: what its stored detail text reads as, when known
    (`_detail_text`); None: read from the text."""
    if detail is None:
        detail = detail_data(content[10])
    quarantine_id, business_key = _copies(detail)
    row = dict(zip(_HASHED, content, strict=True))
    row.update(
        prev_hash=prev, hash=digest, day=day, quarantine_id=quarantine_id, business_key=business_key
    )
    return row, key_rows(entry_keys(detail), row["seq"], day)


def _read_head(db: Connection, dialect: str) -> tuple[int, str, date | None]:
    """The chain head's seq, hash and day, locked until the batch's transaction ends (SQLite's
    writer holds the whole file: the batch began IMMEDIATE). Written SQL through the driver, as
    `_move_head`: SQLAlchemy building and running these two statements took two fifths of the
    writer's time for a batch of a few entries (a single push's), for one constant row."""
    seq, digest, day = db.exec_driver_sql(_HEAD_SQL[dialect]).one()
    if isinstance(day, str):  # SQLite keeps a DATE as its ISO text
        day = date.fromisoformat(day)
    return int(seq), str(digest), day


def _move_head(db: Connection, dialect: str, seq: int, digest: str, day: date) -> None:
    """Move the chain head (read by `_read_head` in this transaction) to `seq`, `digest`, `day`."""
    stored: date | str = day.isoformat() if dialect == "sqlite" else day
    db.exec_driver_sql(_MOVE_HEAD_SQL[dialect], (seq, digest, stored))


_HEAD_SQL = {
    "sqlite": "SELECT seq, hash, day FROM journal_chain WHERE id = 1",
    "postgresql": "SELECT seq, hash, day FROM journal_chain WHERE id = 1 FOR UPDATE",
}
_MOVE_HEAD_SQL = {
    "sqlite": "UPDATE journal_chain SET seq = ?, hash = ?, day = ? WHERE id = 1",
    "postgresql": "UPDATE journal_chain SET seq = %s, hash = %s, day = %s WHERE id = 1",
}


def _insert(db: Connection, rows: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
    """Insert entries and their search keys (from `_rows`) in `db`'s transaction."""
    entries, keys = [], []
    for entry, its_keys in rows:
        entries.append(entry)
        keys += its_keys
    if entries:
        _insert_many(db, JOURNAL_ENTRY, entries)
    if keys:
        _insert_many(db, JOURNAL_KEY, keys)


def _insert_many(db: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` (each with the same columns, plain values) into `table` by the driver's
    executemany: SQLAlchemy's per-row bind processing took a fifth of the journal writer's time,
    and the values need none but the day (SQLite keeps a DATE as its ISO text, as SQLAlchemy
    writes it)."""
    sql = _insert_sql(db.dialect.name, table.name, tuple(rows[0]))
    if db.dialect.name == "sqlite" and "day" in rows[0]:
        days: dict[date, str] = {}  # a batch's entries share their day
        for row in rows:  # the rows are this insert's own (`_rows`)
            day = row["day"]
            row["day"] = days.get(day) or days.setdefault(day, day.isoformat())
    db.exec_driver_sql(sql, rows)


@functools.cache
def _insert_sql(dialect: str, table: str, columns: tuple[str, ...]) -> str:
    """The INSERT of `columns` into `table` with named parameters in the driver's style."""
    marker = ":{}" if dialect == "sqlite" else "%({})s"
    names = ", ".join(f'"{name}"' for name in columns)
    values = ", ".join(marker.format(name) for name in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ({values})'


class _Walk:
    """The walk of `verify` along the chain, entry by entry (rows of _CHECKED)."""

    def __init__(self, base_seq: int, base_hash: str) -> None:
        self.expected_seq, self.expected_prev = base_seq + 1, base_hash
        self.checked = 0
        self.previous: tuple[Any, ...] | None = None
        self.broken: ChainBreak | None = None

    def head(self) -> ChainHead | None:
        return _head(self.previous)

    def report(self) -> ChainReport:
        return ChainReport(self.checked, self.head(), self.broken)

    def step(self, row: tuple[Any, ...]) -> bool:
        """Check one entry; False (with `broken` set) at the first bad one."""
        seq, prev_hash, digest = int(row[0]), str(row[11]), str(row[12])
        if entry_hash(prev_hash, row[:11]) != digest:
            self.broken = _edited(row, "its content does not match its hash")
            return False
        if (row[14], row[15]) != _copies(detail_data(row[10])):
            self.broken = _edited(
                row, "its indexed quarantine id or business key is not its detail's"
            )
            return False
        if self.previous is not None and row[13] < self.previous[13]:
            self.broken = _edited(row, f"its day {row[13]} is before the previous entry's")
            return False
        if seq != self.expected_seq:
            expected = self.expected_seq
            self.broken = ChainBreak(
                expected,
                "deleted",
                f"entries {_span(expected, seq - 1)} are missing: the chain jumps from "
                f"{expected - 1} to {seq} (deleted)",
            )
            return False
        if prev_hash != self.expected_prev:
            if self.previous is None:
                explanation = (
                    f"entry {seq} does not link to the chain's start; the entries before it "
                    "were deleted, or the start was edited"
                )
                self.broken = ChainBreak(seq, "deleted", explanation)
                return False
            self.broken = _edited(
                self.previous,
                f"its hash was recomputed after an edit: entry {seq} links to "
                f"{prev_hash[:12]}…, the stored hash is {self.expected_prev[:12]}…",
                kind="rewritten",
            )
            return False
        self.checked += 1
        self.expected_seq, self.expected_prev = seq + 1, digest
        self.previous = row
        return True


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
