"""The embedded broker: the bus contract in one SQLite file, for a first run and for fast tests.

One process (or a few on one machine) share a WAL-mode SQLite file. A message is one row per
target queue; moving it (retry tier, dead letters, replay) is one transaction, so nothing is lost
or doubled in between. Publishing returns after the transaction commits: that is the confirm.
Rows name their target queue as RabbitMQ's queue names do, by `queue_word` (the target's name with
'-' read as '_'): what a hub wrote before targets took their system's id is still found.

Crash safety: a consumer marks the rows it took with its session id. Each open Broker holds an
exclusive `flock` on `<file>.sessions/<session>.lock`; the operating system drops it when the
process dies, however it dies. Any Broker that finds rows owned by a session whose lock is free
gives them back with `redelivered=True` (at open, and every `recovery_interval` while consuming).
File locks make this POSIX-only.

Durability: with `synchronous="NORMAL"` (the default) a committed message survives the process
dying at any point; a power cut may lose the last transactions. `synchronous="FULL"` syncs every
commit to disk, at a large cost in throughput.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bus.broker import (
    Broker,
    Delivery,
    Handler,
    HandlerPool,
    InHand,
    QueueStats,
    run_handler,
)
from bus.errors import (
    BrokerUnavailable,
    ConfigurationError,
    PublishFailed,
    PublishFailure,
    SettleError,
    TopologyError,
    Unroutable,
)
from bus.message import (
    QUARANTINE_REASON_MAX_CHARS,
    DeadLetter,
    HeaderValue,
    Message,
    Outgoing,
    Quarantined,
    check_headers,
    clipped,
    history_from_json,
    history_to_json,
    utc_now,
)
from bus.routing import RoutingTable
from bus.topology import Target, Topology, queue_word

log = logging.getLogger("bus.embedded")


class EmbeddedOptions(BaseModel):
    """Options of the embedded broker (`bus.connect("sqlite:///path", **options)`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    poll_interval: float = Field(
        default=0.05,
        gt=0,
        le=10,
        description=(
            "Seconds an idle consumer waits before looking again for messages that another "
            "Broker on the same file stored or that a retry tier released. Publishes through "
            "the same Broker wake its consumers at once."
        ),
    )
    recovery_interval: float = Field(
        default=1.0,
        gt=0,
        description=(
            "Seconds between a consumer's checks for deliveries held by a Broker that died "
            "(they are given back with redelivered=True)."
        ),
    )
    synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL",
        description=(
            "SQLite synchronous mode. NORMAL: commits survive the process dying, a power cut "
            "may lose the last ones. FULL: every commit is synced to disk (slower)."
        ),
    )
    busy_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds to wait for another connection's write lock on the file.",
    )
    ack_batch: int = Field(
        default=256,
        ge=1,
        description=(
            "Acks are committed in groups: at a consumer's next fetch, or when this many wait, "
            "whichever comes first. 1 commits every ack at once. As with AMQP acks, a crash may "
            "lose acks not yet committed; those messages are redelivered (never lost)."
        ),
    )
    close_timeout: float = Field(
        default=10.0,
        ge=0,
        description="Seconds close() waits for running handlers to finish before giving up.",
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS targets (
    ns TEXT NOT NULL, name TEXT NOT NULL, retry_delays TEXT NOT NULL, prefetch INTEGER NOT NULL,
    PRIMARY KEY (ns, name)
);
CREATE TABLE IF NOT EXISTS bindings (
    ns TEXT NOT NULL, target TEXT NOT NULL, pattern TEXT NOT NULL,
    PRIMARY KEY (ns, target, pattern)
);
CREATE TABLE IF NOT EXISTS queued (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ns TEXT NOT NULL, target TEXT NOT NULL,
    id TEXT NOT NULL, routing_key TEXT NOT NULL, body BLOB NOT NULL, headers TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, content_type TEXT NOT NULL, published_at TEXT NOT NULL,
    attempts INTEGER NOT NULL, history TEXT NOT NULL,
    redelivered INTEGER NOT NULL DEFAULT 0,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS queued_ready ON queued (ns, target, seq) WHERE owner IS NULL;
CREATE INDEX IF NOT EXISTS queued_owner ON queued (owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS delayed (
    ns TEXT NOT NULL, target TEXT NOT NULL, tier INTEGER NOT NULL, due_at REAL NOT NULL,
    id TEXT NOT NULL, routing_key TEXT NOT NULL, body BLOB NOT NULL, headers TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, content_type TEXT NOT NULL, published_at TEXT NOT NULL,
    attempts INTEGER NOT NULL, history TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS delayed_due ON delayed (due_at);
CREATE TABLE IF NOT EXISTS dead (
    ns TEXT NOT NULL, target TEXT NOT NULL, dead_at REAL NOT NULL, reason TEXT NOT NULL,
    id TEXT NOT NULL, routing_key TEXT NOT NULL, body BLOB NOT NULL, headers TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, content_type TEXT NOT NULL, published_at TEXT NOT NULL,
    attempts INTEGER NOT NULL, history TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_by_target ON dead (ns, target);
CREATE TABLE IF NOT EXISTS quarantine (
    ns TEXT NOT NULL, id TEXT NOT NULL, at TEXT NOT NULL, source TEXT NOT NULL,
    reason TEXT NOT NULL, body BLOB NOT NULL, headers TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_by_ns ON quarantine (ns);
"""

# The columns that make a Message, in the order every table stores them.
_MESSAGE_COLUMNS = (
    "id, routing_key, body, headers, idempotency_key, content_type, published_at, attempts, history"
)


def _message_values(message: Message) -> tuple[Any, ...]:
    return (
        message.id,
        message.routing_key,
        message.body,
        json.dumps(dict(message.headers), ensure_ascii=False),
        message.idempotency_key,
        message.content_type,
        message.published_at.isoformat(),
        message.attempts,
        history_to_json(message.history),
    )


def _message_from(row: Sequence[Any], *, redelivered: bool = False) -> Message:
    """Build a Message from the nine _MESSAGE_COLUMNS at the start of `row`."""
    return Message(
        id=row[0],
        routing_key=row[1],
        body=bytes(row[2]),
        headers=json.loads(row[3]),
        idempotency_key=row[4],
        content_type=row[5],
        published_at=datetime.fromisoformat(row[6]),
        attempts=row[7],
        history=history_from_json(row[8]),
        redelivered=redelivered,
    )


def database_path(url: str) -> Path:
    """The file a "sqlite:///relative" or "sqlite:////absolute" URL names."""
    prefix = "sqlite://"
    if not url.lower().startswith(prefix):
        raise ConfigurationError(f"not an embedded broker URL: {url!r} (expected 'sqlite:///path')")
    rest = url[len(prefix) :]
    if not rest.startswith("/") or len(rest) < 2 or "?" in rest:
        raise ConfigurationError(
            f"embedded broker URL {url!r} names no file: use 'sqlite:///relative/path' or "
            "'sqlite:////absolute/path' (in-memory databases cannot be shared between threads "
            "and would lose messages on exit)"
        )
    return Path(rest[1:])


class _SessionLocks:
    """Liveness of Brokers on one file, by an exclusive flock each holds while it is open."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def hold(self, session: str) -> int:
        # Lock under a temporary name, then rename: nobody can see the final name unlocked.
        temporary = self.directory / f".{session}.new"
        fd = os.open(temporary, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(temporary, self._path(session))
        return fd

    def release(self, session: str, fd: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(session))
        os.close(fd)

    def alive(self, session: str) -> bool:
        try:
            fd = os.open(self._path(session), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(session))
            return False
        finally:
            os.close(fd)

    def sweep(self) -> None:
        """Delete the lock files of sessions that died without removing theirs."""
        for path in self.directory.glob("*.lock"):
            self.alive(path.stem)

    def _path(self, session: str) -> Path:
        return self.directory / f"{session}.lock"


class EmbeddedBroker(Broker):
    """The bus contract on one SQLite file; see the module docstring.

    Parameters:
      url: "sqlite:///relative/path" or "sqlite:////absolute/path"; the file and its directory
        are created when missing.
      options: see EmbeddedOptions (poll_interval, recovery_interval, synchronous,
        busy_timeout, ack_batch, close_timeout).
    """

    def __init__(self, url: str, **options: Any) -> None:
        try:
            self.options = EmbeddedOptions(**options)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid embedded broker options: {exc}") from exc
        self.path = database_path(url)
        self.session = uuid.uuid4().hex
        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._closed = False
        self._consumers: set[int] = set()
        self._pending_acks: list[int] = []
        self._topology: Topology | None = None
        self._routes = RoutingTable({})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._sessions = _SessionLocks(Path(f"{self.path}.sessions"))
            self._session_fd = self._sessions.hold(self.session)
        except OSError as exc:
            raise BrokerUnavailable(
                f"cannot open the embedded broker file {str(self.path)!r}: {exc}"
            ) from exc
        try:
            self._db = sqlite3.connect(
                self.path,
                timeout=self.options.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={self.options.synchronous}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._sessions.release(self.session, self._session_fd)
            raise BrokerUnavailable(
                f"cannot open the embedded broker file {str(self.path)!r}: {exc}"
            ) from exc
        self._sessions.sweep()
        self._recover_orphans()

    # -- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the Broker's lock; sqlite errors become BrokerUnavailable."""
        with self._lock:
            self._check_open()
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise BrokerUnavailable(f"embedded broker {str(self.path)!r}: {exc}") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):  # keep the original error, not this one
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise BrokerUnavailable(f"embedded broker {str(self.path)!r}: {exc}") from exc
                raise

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            self._check_open()
            try:
                return self._db.execute(sql, parameters).fetchall()
            except sqlite3.Error as exc:
                raise BrokerUnavailable(f"embedded broker {str(self.path)!r}: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerUnavailable(f"the embedded broker on {str(self.path)!r} is closed")

    def _declared(self) -> Topology:
        self._check_open()
        if self._topology is None:
            raise TopologyError("no topology declared on this broker; call declare(topology) first")
        return self._topology

    def _target(self, name: str) -> Target:
        return self._declared().target(name)

    def _wake_consumers(self) -> None:
        with self._arrived:
            self._arrived.notify_all()

    # -- topology ---------------------------------------------------------------------------

    def declare(self, topology: Topology) -> None:
        ns = topology.namespace
        with self._transaction() as db:
            for target in topology.targets:
                db.execute(
                    "INSERT INTO targets (ns, name, retry_delays, prefetch) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (ns, name) DO UPDATE SET retry_delays = excluded.retry_delays, "
                    "prefetch = excluded.prefetch",
                    (ns, queue_word(target.name), json.dumps(target.retry_delays), target.prefetch),
                )
                db.executemany(
                    "INSERT OR IGNORE INTO bindings (ns, target, pattern) VALUES (?, ?, ?)",
                    [(ns, queue_word(target.name), pattern) for pattern in target.routes],
                )
            rows = db.execute("SELECT target, pattern FROM bindings WHERE ns = ?", (ns,)).fetchall()
        bindings: dict[str, list[str]] = {}
        for target_name, pattern in rows:
            bindings.setdefault(target_name, []).append(pattern)
        with self._lock:
            self._topology = topology
            self._routes = RoutingTable(bindings)

    def delete_topology(self, topology: Topology) -> None:
        ns = topology.namespace
        with self._transaction() as db:
            for table in ("targets", "bindings", "queued", "delayed", "dead", "quarantine"):
                db.execute(f"DELETE FROM {table} WHERE ns = ?", (ns,))
        with self._lock:
            if self._topology is not None and self._topology.namespace == ns:
                self._topology = None
                self._routes = RoutingTable({})

    # -- publishing -------------------------------------------------------------------------

    def publish(self, message: Outgoing) -> str:
        topology = self._declared()
        first = Message.first(message)
        targets = self._routes.targets_for(first.routing_key)
        if not targets:
            raise Unroutable(first.routing_key, first.id, topology.namespace)
        values = _message_values(first)
        try:
            with self._transaction() as db:
                db.executemany(
                    f"INSERT INTO queued (ns, target, {_MESSAGE_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(topology.namespace, target, *values) for target in targets],
                )
        except BrokerUnavailable as exc:
            raise PublishFailed(
                f"message {first.id} ({first.routing_key}) was not stored: {exc}"
            ) from exc
        self._wake_consumers()
        return first.id

    def publish_many(self, messages: Sequence[Outgoing]) -> list[str]:
        topology = self._declared()
        now = utc_now()
        ids: list[str] = []
        rows: list[tuple[Any, ...]] = []
        failures: list[PublishFailure] = []
        for index, outgoing in enumerate(messages):
            first = Message.first(outgoing, now=now)
            ids.append(first.id)
            targets = self._routes.targets_for(first.routing_key)
            if not targets:
                failures.append(
                    PublishFailure(
                        index=index,
                        message_id=first.id,
                        routing_key=first.routing_key,
                        reason="no target's route matches the routing key",
                        unroutable=True,
                    )
                )
                continue
            values = _message_values(first)
            rows.extend((topology.namespace, target, *values) for target in targets)
        try:
            with self._transaction() as db:
                db.executemany(
                    f"INSERT INTO queued (ns, target, {_MESSAGE_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except BrokerUnavailable as exc:
            unroutable = {f.index for f in failures}
            failures.extend(
                PublishFailure(
                    index=i, message_id=ids[i], routing_key=m.routing_key, reason=str(exc)
                )
                for i, m in enumerate(messages)
                if i not in unroutable
            )
            failures.sort(key=lambda f: f.index)
            raise PublishFailed(
                f"{len(failures)} of {len(messages)} messages were not stored", failures=failures
            ) from exc
        if rows:
            self._wake_consumers()
        if failures:
            failed = {f.index for f in failures}
            raise PublishFailed(
                f"{len(failures)} of {len(messages)} messages were not stored",
                failures=failures,
                published=[ids[i] for i in range(len(ids)) if i not in failed],
            )
        return ids

    # -- consuming --------------------------------------------------------------------------

    def consume(
        self,
        target: str,
        handler: Handler,
        *,
        stop: threading.Event,
        prefetch: int | None = None,
        concurrency: int = 1,
    ) -> None:
        spec = self._target(target)
        ns = self._declared().namespace
        batch_size = prefetch or spec.prefetch
        me = threading.get_ident()
        with self._lock:
            self._check_open()
            self._consumers.add(me)
        pool = None
        if min(concurrency, batch_size) > 1:
            pool = HandlerPool(min(concurrency, batch_size), f"jghub-deliver-{target}")
        try:
            self._consume_until_stopped(ns, spec, handler, stop, batch_size, pool)
        except (SettleError, BrokerUnavailable):
            if not self._closing.is_set():
                raise
            # close() interrupted us; it gave back what we held, to be redelivered.
        finally:
            if pool is not None:
                pool.drain()  # the deliveries in hand settle before the last flush
            with self._lock:
                self._consumers.discard(me)
                self._arrived.notify_all()
                if not self._closed:
                    self._flush_acks()

    def _consume_until_stopped(
        self,
        ns: str,
        spec: Target,
        handler: Handler,
        stop: threading.Event,
        batch_size: int,
        pool: HandlerPool | None = None,
    ) -> None:
        next_recovery = time.monotonic() + self.options.recovery_interval
        hand = InHand(batch_size)
        while not stop.is_set() and not self._closing.is_set():
            if time.monotonic() >= next_recovery:
                self._recover_orphans()
                next_recovery = time.monotonic() + self.options.recovery_interval
            batch, wait = self._fetch(ns, spec, batch_size, hand)
            if not batch:
                with self._arrived:
                    if not stop.is_set() and not self._closing.is_set():
                        self._arrived.wait(wait)
                continue
            for position, delivery in enumerate(batch):
                if stop.is_set() or self._closing.is_set():
                    self._give_back([d.seq for d in batch[position:]])
                    break
                if pool is None:
                    run_handler(handler, delivery)
                    continue
                # Settling is thread-safe here (every write takes the broker's lock).
                pool.raise_if_failed()
                if not pool.submit(functools.partial(run_handler, handler, delivery), stop):
                    self._give_back([d.seq for d in batch[position:]])
                    break

    def _fetch(
        self, ns: str, target: Target, limit: int, hand: InHand
    ) -> tuple[list[_EmbeddedDelivery], float]:
        """Take up to `limit` ready messages, added to `hand`; with none, also say how long to
        wait for more."""
        now = time.time()
        with self._lock:
            with self._transaction() as db:
                acked = self._commit_acks(db)
                next_due = self._release_due(db, now)
                rows = db.execute(
                    f"UPDATE queued SET owner = ? WHERE seq IN (SELECT seq FROM queued "
                    "WHERE ns = ? AND target = ? AND owner IS NULL ORDER BY seq LIMIT ?) "
                    f"RETURNING {_MESSAGE_COLUMNS}, redelivered, seq",
                    (self.session, ns, queue_word(target.name), limit),
                ).fetchall()
            del self._pending_acks[:acked]
        # RETURNING gives no order; the queue's order is seq.
        rows.sort(key=lambda row: row[10])
        batch = [
            _EmbeddedDelivery(
                self, ns, target, row[10], _message_from(row, redelivered=bool(row[9])), hand
            )
            for row in rows
        ]
        hand.add(len(batch))
        wait = self.options.poll_interval
        if next_due is not None:
            wait = min(wait, max(next_due - now, 0.001))
        return batch, wait

    def _release_due(self, db: sqlite3.Connection, now: float) -> float | None:
        """Move retry-tier messages whose delay is over to the back of their target queue.

        Returns when the next one is due, or None when no message waits.
        """
        next_due: float | None = db.execute("SELECT MIN(due_at) FROM delayed").fetchone()[0]
        if next_due is None or next_due > now:
            return next_due
        db.execute(
            f"INSERT INTO queued (ns, target, {_MESSAGE_COLUMNS}) "
            f"SELECT ns, target, {_MESSAGE_COLUMNS} FROM delayed WHERE due_at <= ? "
            "ORDER BY due_at, rowid",
            (now,),
        )
        db.execute("DELETE FROM delayed WHERE due_at <= ?", (now,))
        next_due = db.execute("SELECT MIN(due_at) FROM delayed").fetchone()[0]
        return next_due

    def _give_back(self, seqs: Sequence[int], *, redelivered: bool = False) -> None:
        if not seqs:
            return
        with self._transaction() as db:
            db.executemany(
                "UPDATE queued SET owner = NULL, redelivered = redelivered OR ? "
                "WHERE seq = ? AND owner = ?",
                [(int(redelivered), seq, self.session) for seq in seqs],
            )
        self._wake_consumers()

    def _recover_orphans(self) -> None:
        """Give back, as redelivered, what Brokers that died were holding."""
        owners = [
            owner
            for (owner,) in self._read(
                "SELECT DISTINCT owner FROM queued WHERE owner IS NOT NULL AND owner != ?",
                (self.session,),
            )
        ]
        dead = [owner for owner in owners if not self._sessions.alive(owner)]
        if not dead:
            return
        with self._transaction() as db:
            for owner in dead:
                count = db.execute(
                    "UPDATE queued SET owner = NULL, redelivered = 1 WHERE owner = ?", (owner,)
                ).rowcount
                log.warning(
                    "gave back %d message(s) held by a broker session that died (%s)", count, owner
                )
        self._wake_consumers()

    # settling, called by _EmbeddedDelivery

    def _settle_ack(self, seq: int) -> None:
        with self._lock:
            self._check_open()
            self._pending_acks.append(seq)
            if len(self._pending_acks) >= self.options.ack_batch:
                self._flush_acks()

    def _flush_acks(self) -> None:
        with self._lock:
            if self._pending_acks:
                with self._transaction() as db:
                    acked = self._commit_acks(db)
                del self._pending_acks[:acked]

    def _commit_acks(self, db: sqlite3.Connection) -> int:
        """Delete the acked rows in the caller's transaction; return how many acks that was.

        The caller holds the lock throughout and drops that many pending acks once the
        transaction committed (if it fails they stay pending; `owner = ?` keeps a retry safe).
        """
        db.executemany(
            "DELETE FROM queued WHERE seq = ? AND owner = ?",
            [(seq, self.session) for seq in self._pending_acks],
        )
        return len(self._pending_acks)

    def _settle_failure(
        self,
        delivery: _EmbeddedDelivery,
        reason: str,
        stage: str,
        permanent: bool,
    ) -> None:
        target, message = delivery.spec, delivery.message
        failed = message.with_failure(stage, reason, permanent=permanent)
        tier = None if permanent else target.retry_tier(failed.attempts)
        if tier is not None:
            self._park(delivery, failed, tier)
            return
        with self._transaction() as db:
            self._take_out(db, delivery)
            db.execute(
                f"INSERT INTO dead (ns, target, dead_at, reason, {_MESSAGE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    delivery.ns,
                    queue_word(target.name),
                    time.time(),
                    reason,
                    *_message_values(failed),
                ),
            )

    def _settle_postpone(self, delivery: _EmbeddedDelivery, reason: str, stage: str) -> None:
        tier = delivery.spec.postpone_tier(delivery.message.attempts)
        if tier is None:
            self._settle_failure(delivery, reason, stage, permanent=False)
        else:
            self._park(delivery, delivery.message, tier)

    def _park(self, delivery: _EmbeddedDelivery, message: Message, tier: int) -> None:
        """Move the delivery's row to retry tier `tier`, as `message`, in one transaction."""
        target = delivery.spec
        with self._transaction() as db:
            self._take_out(db, delivery)
            db.execute(
                f"INSERT INTO delayed (ns, target, tier, due_at, {_MESSAGE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    delivery.ns,
                    queue_word(target.name),
                    tier,
                    time.time() + target.retry_delays[tier],
                    *_message_values(message),
                ),
            )
        self._wake_consumers()  # so a waiting consumer recomputes when the next one is due

    def _take_out(self, db: sqlite3.Connection, delivery: _EmbeddedDelivery) -> None:
        gone = db.execute(
            "DELETE FROM queued WHERE seq = ? AND owner = ?", (delivery.seq, self.session)
        ).rowcount
        self._check_held(gone, delivery.message)

    def _settle_requeue(self, seq: int, message: Message) -> None:
        with self._transaction() as db:
            held = db.execute(
                "UPDATE queued SET owner = NULL, redelivered = 1 WHERE seq = ? AND owner = ?",
                (seq, self.session),
            ).rowcount
            self._check_held(held, message)
        self._wake_consumers()

    def _check_held(self, rows: int, message: Message) -> None:
        if rows != 1:
            raise SettleError(
                f"message {message.id} is no longer held by this broker (it was given back "
                "and will be redelivered); settle it once, before closing the broker"
            )

    # -- dead letters, quarantine, depth ----------------------------------------------------

    def _dead_filter(
        self,
        target: str | None,
        reason: str | None,
        ids: Collection[str] | None,
        older_than: timedelta | None,
    ) -> tuple[str, list[Any]]:
        clauses = ["ns = ?"]
        parameters: list[Any] = [self._declared().namespace]
        if target is not None:
            clauses.append("target = ?")
            parameters.append(queue_word(target))
        if reason is not None:
            clauses.append("instr(reason, ?) > 0")
            parameters.append(reason)
        if ids is not None:
            clauses.append("id IN (SELECT value FROM json_each(?))")
            parameters.append(json.dumps(list(ids)))
        if older_than is not None:
            clauses.append("dead_at <= ?")
            parameters.append(time.time() - older_than.total_seconds())
        return " AND ".join(clauses), parameters

    def dead_letters(
        self,
        target: str | None = None,
        *,
        reason: str | None = None,
        ids: Collection[str] | None = None,
        older_than: timedelta | None = None,
        limit: int = 1000,
    ) -> list[DeadLetter]:
        where, parameters = self._dead_filter(target, reason, ids, older_than)
        rows = self._read(
            f"SELECT {_MESSAGE_COLUMNS}, target FROM dead WHERE {where} ORDER BY rowid LIMIT ?",
            [*parameters, limit],
        )
        named = self._declared().target_name
        return [DeadLetter.of(named(row[9]), _message_from(row)) for row in rows]

    def replay(
        self,
        target: str | None = None,
        *,
        reason: str | None = None,
        ids: Collection[str] | None = None,
    ) -> list[str]:
        where, parameters = self._dead_filter(target, reason, ids, None)
        now = utc_now()
        with self._transaction() as db:
            rows = db.execute(
                f"DELETE FROM dead WHERE {where} RETURNING rowid, ns, target, {_MESSAGE_COLUMNS}",
                parameters,
            ).fetchall()
            rows.sort(key=lambda row: row[0])
            db.executemany(
                f"INSERT INTO queued (ns, target, {_MESSAGE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (row[1], row[2], *_message_values(_message_from(row[3:]).replayed(now)))
                    for row in rows
                ],
            )
        if rows:
            self._wake_consumers()
        return [row[3] for row in rows]

    def quarantine(
        self,
        body: bytes,
        reason: str,
        *,
        source: str,
        headers: Mapping[str, HeaderValue] | None = None,
    ) -> str:
        headers = dict(headers or {})
        check_headers(headers)
        quarantine_id = uuid.uuid4().hex
        with self._transaction() as db:
            db.execute(
                "INSERT INTO quarantine (ns, id, at, source, reason, body, headers) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    self._declared().namespace,
                    quarantine_id,
                    utc_now().isoformat(),
                    source,
                    clipped(reason, QUARANTINE_REASON_MAX_CHARS),
                    bytes(body),
                    json.dumps(headers, ensure_ascii=False),
                ),
            )
        return quarantine_id

    def quarantined(self, limit: int = 100) -> list[Quarantined]:
        rows = self._read(
            "SELECT id, body, reason, source, headers, at FROM quarantine WHERE ns = ? "
            "ORDER BY rowid LIMIT ?",
            (self._declared().namespace, limit),
        )
        return [
            Quarantined(
                id=row[0],
                body=bytes(row[1]),
                reason=row[2],
                source=row[3],
                headers=json.loads(row[4]),
                at=datetime.fromisoformat(row[5]),
            )
            for row in rows
        ]

    def forget_quarantined(self, ids: Collection[str]) -> list[str]:
        ns = self._declared().namespace
        wanted = list(dict.fromkeys(ids))
        removed: list[str] = []
        with self._transaction() as db:
            for quarantine_id in wanted:
                deleted = db.execute(
                    "DELETE FROM quarantine WHERE ns = ? AND id = ?", (ns, quarantine_id)
                )
                if deleted.rowcount:
                    removed.append(quarantine_id)
        return removed

    def depth(self, target: str) -> int:
        ns = self._declared().namespace
        word = queue_word(self._target(target).name)
        with self._transaction() as db:
            self._release_due(db, time.time())
            (count,) = db.execute(
                "SELECT COUNT(*) FROM queued WHERE ns = ? AND target = ? AND owner IS NULL",
                (ns, word),
            ).fetchone()
        return int(count)

    def queue_stats(self, target: str) -> QueueStats:
        ns = self._declared().namespace
        name = self._target(target).name
        word = queue_word(name)
        with self._lock:
            with self._transaction() as db:
                # Acks are committed in groups; commit them so acked rows do not count in flight.
                acked = self._commit_acks(db)
                self._release_due(db, time.time())
                ready, in_flight = db.execute(
                    "SELECT COUNT(*) FILTER (WHERE owner IS NULL), COUNT(*) FILTER (WHERE owner "
                    "IS NOT NULL) FROM queued WHERE ns = ? AND target = ?",
                    (ns, word),
                ).fetchone()
                (retrying,) = db.execute(
                    "SELECT COUNT(*) FROM delayed WHERE ns = ? AND target = ?", (ns, word)
                ).fetchone()
                (dead,) = db.execute(
                    "SELECT COUNT(*) FROM dead WHERE ns = ? AND target = ?", (ns, word)
                ).fetchone()
            del self._pending_acks[:acked]
        return QueueStats(
            target=name,
            ready=int(ready),
            in_flight=int(in_flight),
            consumers=None,
            retrying=int(retrying),
            dead=int(dead),
        )

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closing.set()
            self._arrived.notify_all()
        deadline = time.monotonic() + self.options.close_timeout
        me = threading.get_ident()
        with self._arrived:
            while self._consumers - {me} and time.monotonic() < deadline:
                self._arrived.wait(max(deadline - time.monotonic(), 0.001))
            if self._consumers - {me}:
                log.warning(
                    "closing the embedded broker while %d handler(s) still run; their "
                    "deliveries will be redelivered",
                    len(self._consumers - {me}),
                )
            try:
                with self._transaction() as db:
                    self._commit_acks(db)  # acked before close: gone, not given back
                    # What is still held (a handler that never settled) goes back, redelivered.
                    db.execute(
                        "UPDATE queued SET owner = NULL, redelivered = 1 WHERE owner = ?",
                        (self.session,),
                    )
            except BrokerUnavailable as exc:
                log.warning("could not give back held deliveries on close: %s", exc)
            self._closed = True
            self._db.close()
            self._sessions.release(self.session, self._session_fd)

    def __repr__(self) -> str:
        return f"EmbeddedBroker({str(self.path)!r}, session={self.session})"


class _EmbeddedDelivery(Delivery):
    def __init__(
        self,
        broker: EmbeddedBroker,
        ns: str,
        target: Target,
        seq: int,
        message: Message,
        hand: InHand | None = None,
    ) -> None:
        super().__init__(message, target.name, hand)
        self.ns = ns
        self.spec = target
        self.seq = seq
        self._broker = broker

    def _ack(self) -> None:
        self._settle_open(lambda: self._broker._settle_ack(self.seq))

    def _retry(self, reason: str, stage: str) -> None:
        self._settle_open(
            lambda: self._broker._settle_failure(self, reason, stage, permanent=False)
        )

    def _dead_letter(self, reason: str, stage: str) -> None:
        self._settle_open(lambda: self._broker._settle_failure(self, reason, stage, permanent=True))

    def _requeue(self) -> None:
        self._settle_open(lambda: self._broker._settle_requeue(self.seq, self.message))

    def _postpone(self, reason: str, stage: str) -> None:
        self._settle_open(lambda: self._broker._settle_postpone(self, reason, stage))

    def _settle_open(self, action: Callable[[], None]) -> None:
        try:
            action()
        except BrokerUnavailable as exc:
            if self._broker._closed:
                raise SettleError(
                    f"message {self.message.id} cannot be settled: its broker is closed "
                    "(it was given back and will be redelivered)"
                ) from exc
            raise
