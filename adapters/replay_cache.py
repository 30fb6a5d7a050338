"""The replay cache: which request signatures were already used, shared by every serve process.

A signed app key (`md5(appKey + secret + requestTime)`, see `adapters.security`) covers neither
the body nor a nonce: within its clock window a captured signature would carry any body, as
often as wanted. The gatekeeper therefore lets each signature through once: it asks the cache
`first_use(key, expires_at)` after the signature checked out, and refuses it when the answer is
False. An entry is kept until its signature's window has passed (the clock check refuses the
signature from then on), so the cache holds at most one window of traffic.

`ReplayCache` is the interface; `StoredReplayCache` keeps it in the hub's store (`store`): the
embedded SQLite file shared by the `serve` processes of one host, or PostgreSQL shared by every
host. Each signature is a primary key inserted with "on conflict do nothing", so of two serve
processes (on any hosts) that see one signature at once, the database lets exactly one insert
it — never a read followed by a write.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from sqlalchemy import Column, Double, Index, String, Table, bindparam, delete, func, select

from store import METADATA, Store, StoreError, upsert


class ReplayCache(ABC):
    """Keys seen before their expiry; thread-safe, and shared by the processes that use it."""

    @abstractmethod
    def first_use(self, key: str, expires_at: float) -> bool:
        """Remember `key` until `expires_at` (epoch seconds): True when it was not remembered
        yet, False when it was (a replay). Atomic across threads and processes: of two
        concurrent first uses of one key, exactly one is True."""

    @abstractmethod
    def remembered(self) -> int:
        """How many keys the cache holds now, expired ones it has not dropped yet included."""

    @abstractmethod
    def close(self) -> None:
        """Release the cache. Idempotent."""


SWEEP_EVERY_S = 1.0
"""How often a process deletes the expired signatures (an expired one is taken over anyway)."""

USED_SIGNATURE = Table(
    "used_signature",
    METADATA,
    Column("key", String, primary_key=True),
    Column("expires_at", Double, nullable=False),
    Index("ix_used_signature_expires_at", "expires_at"),
)


class StoredReplayCache(ReplayCache):
    """The replay cache in the hub's store; shared by every process that opens the same store.

    Each `first_use` is one short write transaction: the key is inserted unless present and
    unexpired (an upsert that takes over only an expired row, atomic in the database); at most
    once a second the same transaction deletes the expired keys, so the table holds about one
    window of keys and needs no sweeper.

    Parameters:
      store: the hub's store (`Store.open`); not closed by the cache.
      clock: epoch seconds, the same clock the expiries are computed with (tests replace it).
    """

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._closed = False
        self._swept_at = float("-inf")
        table = USED_SIGNATURE
        # Built once: a signed request is checked on every push, and building the statement
        # costs more than running it.
        statement = upsert(store.engine, table).values(
            key=bindparam("key"), expires_at=bindparam("expires_at")
        )
        # Inserted, or an expired row of the key taken over: either way RETURNING names it (a
        # row count is not reported by every driver: psycopg 3 leaves it at -1).
        self._take = statement.on_conflict_do_update(
            index_elements=["key"],
            set_={"expires_at": statement.excluded.expires_at},
            where=table.c.expires_at < bindparam("now"),
        ).returning(table.c.key)
        self._sweep = delete(table).where(table.c.expires_at < bindparam("now"))

    def first_use(self, key: str, expires_at: float) -> bool:
        self._check_open()
        now = self._clock()
        with self.store.begin() as db:
            if now - self._swept_at >= SWEEP_EVERY_S:
                db.execute(self._sweep, {"now": now})
                self._swept_at = now
            taken = db.execute(self._take, {"key": key, "expires_at": expires_at, "now": now})
            return taken.first() is not None

    def remembered(self) -> int:
        self._check_open()
        with self.store.begin() as db:
            return int(db.execute(select(func.count()).select_from(USED_SIGNATURE)).scalar_one())

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the replay cache in {self.store} is closed")
