"""Opening the hub's database from a URL: embedded SQLite in the data folder, or PostgreSQL.

One file on SQLite, not one per area. The areas on the store (the journal, the replay cache,
the accepted changes, the warning addressees, the centre's complaints, the poller cursors) each
write short transactions, and WAL lets readers run beside the one writer, so a shared file buys
one schema version, one migration and one backup. SQLite serialises writers per file, and the
journal, which writes on every step of every message, is the area that earns a file of its own
on a busy single host (`JGHUB_JOURNAL_STORE_FILE`; `bench/journal.py` measures the difference).
On PostgreSQL everything is one database.

SQLite connections keep what the hand-written openers had: WAL, a 30 s busy timeout, and
`synchronous=NORMAL` (a process crash loses nothing; a power cut may lose the last commits) —
except in transactions opened with `durable=True`, which commit with `synchronous=FULL` from a
pool of their own: the centre's complaints (a complaint is acknowledged to the bus once it is
kept) and the poller cursors (fsynced files before the store).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from store import schema

DATABASE_FILE = "store.sqlite3"
"""The embedded store's file in the hub's data folder."""

METADATA = MetaData(
    # Stable constraint and index names, so migrations can name what they change.
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""Every table the hub keeps, each declared by the room that uses it (beside its logic)."""

SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite writer waits for another process's write lock before it fails."""


class StoreError(Exception):
    """The store cannot be used as configured; the message says what to do."""


class StoreUnavailable(StoreError):
    """The database does not answer (or refuses the connection)."""


class SchemaBehind(StoreError):
    """The database's schema is older than this hub's, and the hub was not asked to migrate."""


def store_url(setting: str | None, data_dir: Path) -> str:
    """The SQLAlchemy URL of the hub's database: `setting` (JGHUB_DATABASE_URL) when given —
    `postgresql://` and `postgres://` mean psycopg 3 — else the embedded SQLite file in
    `data_dir`. Raises StoreError for a URL the store does not speak."""
    if not setting:
        return f"sqlite:///{Path(data_dir).resolve() / DATABASE_FILE}"
    try:
        url = make_url(setting)
    except ArgumentError:
        raise StoreError(
            "JGHUB_DATABASE_URL is not a database URL; give postgresql://user@host:port/database "
            "or leave it unset for the embedded SQLite store in the data folder"
        ) from None
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if url.drivername in ("sqlite", "sqlite+pysqlite") and url.database:
        return url.render_as_string(hide_password=False)
    raise StoreError(
        f"JGHUB_DATABASE_URL scheme {url.drivername!r} is not supported: use postgresql://… "
        "(psycopg 3) or sqlite:///path, or leave it unset for the embedded store"
    )


class Store:
    """One database, opened once per process and URL (`Store.open`); thread-safe.

    Attributes:
      url: the SQLAlchemy URL (its password hidden in `str(store)`).
      engine: the SQLAlchemy engine and its connection pool.
    """

    _opened: ClassVar[dict[tuple[int, str], Store]] = {}
    _opening: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str | URL) -> None:
        self.url: URL = make_url(url)
        self.engine: Engine = _engine(self.url, synchronous="NORMAL")
        # SQLite's synchronous is a connection's setting: durable transactions draw from a pool
        # of their own rather than switch it on every BEGIN. PostgreSQL: the same engine.
        self._durable = _engine(self.url, synchronous="FULL") if self.embedded else self.engine
        # SQLite's busy handler waits for a file's write lock by sleeping 1, 2, 5, 10… ms and
        # trying again; threads of one process queue here instead and are woken when it is free.
        self._writer = threading.RLock() if self.embedded else None
        self._checked = False

    def __str__(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @property
    def embedded(self) -> bool:
        """Whether this is an SQLite file (the default: migrated at open, no setup)."""
        return self.engine.dialect.name == "sqlite"

    @classmethod
    def open(cls, url: str, *, migrate: bool = False) -> Store:
        """The process's store at `url`, its schema current.

        An SQLite file is migrated when opened; PostgreSQL only when `migrate` is True, and
        otherwise SchemaBehind is raised when its schema is older than this hub's. Raises
        StoreUnavailable when the database does not answer.
        """
        # Per process: a pool must not cross a fork (uvicorn's workers, multiprocessing).
        key = (os.getpid(), url)
        with cls._opening:
            store = cls._opened.get(key)
            if store is None:
                store = cls._opened[key] = cls(url)
            if not store._checked or migrate:
                store._prepare(migrate=migrate)
                store._checked = True
        return store

    @contextmanager
    def begin(self, *, durable: bool = False, immediate: bool = False) -> Iterator[Connection]:
        """A transaction, committed when the block ends without an exception.

        durable: on SQLite, commit with synchronous=FULL (survives a power cut).
        immediate: on SQLite, take the write lock at BEGIN (for a transaction that reads
          before it writes: a deferred one could not upgrade its lock if another process wrote
          meanwhile), after this process's other writers (`writing`). PostgreSQL ignores both:
          it is always durable, and row locks do the rest.
        """
        if immediate:
            with self.writing(), self._transaction(durable=durable, immediate=True) as connection:
                yield connection
        else:
            with self._transaction(durable=durable, immediate=False) as connection:
                yield connection

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold this process's turn to write the SQLite file (nothing on PostgreSQL): for a
        transaction that takes the write lock at BEGIN on a connection of its own (the
        journal's writer). One thread at a time takes the file's lock, and the next is woken
        as soon as it is released: SQLite itself would make it sleep and poll (measured: most
        of a single-record push's time in the store was spent so, four pushes at a time)."""
        if self._writer is None:
            yield
            return
        with self._writer:
            yield

    @contextmanager
    def _transaction(self, *, durable: bool, immediate: bool) -> Iterator[Connection]:
        engine = self._durable if durable else self.engine
        try:
            connection = engine.connect()
        except OperationalError as error:
            raise StoreUnavailable(f"the store {self} does not answer: {error.orig}") from error
        with connection:
            try:
                if immediate:
                    connection.execution_options(jghub_immediate=True)
                with connection.begin():
                    yield connection
            except OperationalError as error:
                raise StoreUnavailable(f"the store {self} failed: {error.orig}") from error

    def close(self) -> None:
        """Close the pooled connections (the store reopens them if it is used again)."""
        self.engine.dispose()
        self._durable.dispose()

    def upgrade(self) -> None:
        """Migrate the database to this hub's schema. Safe when several processes start at
        once: SQLite takes the write lock at BEGIN, PostgreSQL an advisory lock (`env.py`)."""
        with self.begin(immediate=True) as connection:
            schema.upgrade(connection)

    def current(self) -> str | None:
        """The database's schema version; None when it was never migrated."""
        with self.begin() as connection:
            return schema.current(connection)

    def _prepare(self, *, migrate: bool) -> None:
        if migrate or self.embedded:
            self.upgrade()
            return
        current, head = self.current(), schema.head()
        if current != head:
            raise SchemaBehind(
                f"the store {self} is at schema {current or 'none'}, this hub needs {head}: run "
                "`jghub db upgrade` (or start with --migrate / JGHUB_DATABASE_MIGRATE=true)"
            )


def upsert(bind: Connection | Engine, table: Table) -> sqlite.Insert | postgresql.Insert:
    """An INSERT into `table` in the dialect of `bind` (a connection or the store's engine),
    which offers `on_conflict_do_nothing` and `on_conflict_do_update` on both SQLite and
    PostgreSQL."""
    return upsert_in(bind.dialect.name, table)


def upsert_in(dialect: str, table: Table) -> sqlite.Insert | postgresql.Insert:
    """`upsert` in the dialect named (`Connection.dialect.name`): for statements built once
    per dialect and kept."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def replacing(bind: Connection | Engine, table: Table) -> sqlite.Insert | postgresql.Insert:
    """An INSERT into `table` that, for a row whose primary key is there already, replaces the
    row's other columns ("insert or replace", without deleting: on both SQLite and PostgreSQL).
    Execute it with one row or many. Built once per dialect and table: building it (its
    `excluded` alias and SET clause) cost more than running it, on paths taken per push."""
    return _replacing(bind.dialect.name, table)


@functools.cache
def _replacing(dialect: str, table: Table) -> sqlite.Insert | postgresql.Insert:
    statement = upsert_in(dialect, table)
    key = [column.name for column in table.primary_key.columns]
    return statement.on_conflict_do_update(
        index_elements=key,
        set_={
            column.name: statement.excluded[column.name]
            for column in table.columns
            if column.name not in key
        },
    )


def _engine(url: URL, *, synchronous: str) -> Engine:
    if url.get_backend_name() != "sqlite":
        # pool_pre_ping: a connection PostgreSQL dropped (restart, failover) is replaced
        # before use instead of failing the request that drew it.
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    if url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    # The pysqlite driver opens transactions itself, late and never for DDL; the documented
    # recipe hands BEGIN back to SQLAlchemy, which also lets a transaction ask for IMMEDIATE.
    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute(f"PRAGMA synchronous={synchronous}")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("jghub_immediate")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
