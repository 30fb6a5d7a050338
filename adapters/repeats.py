"""Recognising a change accepted before: the idempotency keys ingress published, for a window.

A department that sends the same batch twice, or a poller that reads the same page again, hands
ingress changes it has already published. Their idempotency keys say so (they come from what
the change is, never from when it was read: `standard.envelope`), so ingress answers them
"accepted" with the message id they had, counts them, and does not publish them again; every
target gets the change once.

    changes = StoredAcceptedChanges(Store.open(url), window_s=7 * 86400)
    earlier = changes.already(["3f2a…", "9c1e…"])   # the keys published before, in the window
    changes.remember(["3f2a…"])                      # after the broker confirmed them

A key is remembered only once the broker confirmed its message, so a record the bus did not
confirm is published when it is sent again. Two pushes of the same change at the same instant
may both be published; the targets then drop the second by its idempotency key, as they drop a
redelivery. `StoredAcceptedChanges` keeps the keys in the hub's store (`store`), shared by the
`serve` processes and the pollers of every process that opens it: the embedded SQLite file of
one host, or PostgreSQL across hosts.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection

from sqlalchemy import (
    Column,
    Connection,
    Double,
    Index,
    String,
    Table,
    bindparam,
    delete,
    select,
)

from store import METADATA, Store, replacing

QUERY_CHUNK = 500
"""Keys per SELECT (and per upsert): well below SQLite's limit of bound parameters."""
_PRUNE_EVERY_S = 60.0


class AcceptedChanges(ABC):
    """The idempotency keys published within the window (see the module docstring)."""

    @abstractmethod
    def already(self, keys: Collection[str]) -> set[str]:
        """Those of `keys` published within the window."""

    @abstractmethod
    def remember(self, keys: Collection[str]) -> None:
        """`keys` were published (the broker confirmed them) now."""

    def remembering(self, keys: Collection[str]) -> tuple[Store, Callable[[Connection], None]]:
        """What `remember(keys)` writes, for a caller that commits it with writes of its own
        (ingress, with the journal's batch): the store it belongs to and the write, to run in
        a transaction on that store. Raises NotImplementedError when nothing is stored."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional: an implementation may hold nothing
        """Release what the store holds. Idempotent."""


ACCEPTED_CHANGE = Table(
    "accepted_change",
    METADATA,
    Column("key", String, primary_key=True),
    Column("at", Double, nullable=False),
    Index("ix_accepted_change_at", "at"),
)


_KEYS_SINCE = select(ACCEPTED_CHANGE.c.key).where(
    ACCEPTED_CHANGE.c.at >= bindparam("since"),
    ACCEPTED_CHANGE.c.key.in_(bindparam("keys", expanding=True)),
)
"""The keys among some remembered since a time: built once (building it per push cost more than
running it)."""


class StoredAcceptedChanges(AcceptedChanges):
    """AcceptedChanges in the hub's store; thread-safe, shared by the processes that open it.

    Parameters:
      store: the hub's store (`Store.open`); not closed by this.
      window_s: how long a key is remembered, in seconds: a repeat older than this is published
        again (the targets still drop it by its key).
    """

    def __init__(self, store: Store, *, window_s: float) -> None:
        self.store = store
        self.window_s = window_s
        self._pruned_at = 0.0

    def already(self, keys: Collection[str]) -> set[str]:
        wanted = list(dict.fromkeys(keys))
        since = time.time() - self.window_s
        found: set[str] = set()
        with self.store.begin() as db:
            for start in range(0, len(wanted), QUERY_CHUNK):
                chunk = wanted[start : start + QUERY_CHUNK]
                rows = db.execute(_KEYS_SINCE, {"since": since, "keys": chunk})
                found.update(row[0] for row in rows)
        return found

    def remember(self, keys: Collection[str]) -> None:
        if not keys:
            return
        _, write = self.remembering(keys)
        with self.store.begin(immediate=True) as db:
            write(db)

    def remembering(self, keys: Collection[str]) -> tuple[Store, Callable[[Connection], None]]:
        now = time.time()
        # In key order: two processes upserting overlapping batches lock their rows in the
        # same order, so on PostgreSQL neither waits for a lock the other holds (no deadlock).
        rows = [{"key": key, "at": now} for key in sorted(set(keys))]

        def write(db: Connection) -> None:
            # One statement, its parameters many: compiled once and cached, unlike a VALUES
            # list whose length changes the statement.
            if rows:
                db.execute(replacing(db, ACCEPTED_CHANGE), rows)

        self._prune_when_due(now)
        return self.store, write

    def _prune_when_due(self, now: float) -> None:
        if now - self._pruned_at > _PRUNE_EVERY_S:
            # Its own transaction: a prune never holds the rows a concurrent upsert waits for.
            with self.store.begin() as db:
                db.execute(
                    delete(ACCEPTED_CHANGE).where(ACCEPTED_CHANGE.c.at < now - self.window_s)
                )
            self._pruned_at = now
