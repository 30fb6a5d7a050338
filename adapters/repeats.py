"""Recognising a change accepted before: the idempotency keys ingress published, for a window.

A department that sends the same batch twice, or a poller that reads the same page again, hands
ingress changes it has already published. Their idempotency keys say so (they come from what
the change is, never from when it was read: `standard.envelope`), so ingress answers them
"accepted" with the message id they had, counts them, and does not publish them again; every
target gets the change once.

    changes = SqliteAcceptedChanges(data_dir / "accepted.sqlite3", window_s=7 * 86400)
    earlier = changes.already(["3f2a…", "9c1e…"])   # the keys published before, in the window
    changes.remember(["3f2a…"])                      # after the broker confirmed them

A key is remembered only once the broker confirmed its message, so a record the bus did not
confirm is published when it is sent again. Two pushes of the same change at the same instant
may both be published; the targets then drop the second by its idempotency key, as they drop a
redelivery. `SqliteAcceptedChanges` keeps the keys in one SQLite file in the hub's data folder,
shared by the `serve` processes and the pollers of one machine (WAL); the same interface fits a
shared database when the hub's state moves there.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Collection
from pathlib import Path

ACCEPTED_FILE = "accepted.sqlite3"
"""The file of SqliteAcceptedChanges in the hub's data folder."""
_QUERY_CHUNK = 500
"""Keys per SELECT: well below SQLite's limit of bound parameters."""
_PRUNE_EVERY_S = 60.0


class AcceptedChanges(ABC):
    """The idempotency keys published within the window (see the module docstring)."""

    @abstractmethod
    def already(self, keys: Collection[str]) -> set[str]:
        """Those of `keys` published within the window."""

    @abstractmethod
    def remember(self, keys: Collection[str]) -> None:
        """`keys` were published (the broker confirmed them) now."""

    def close(self) -> None:  # noqa: B027 - optional: an implementation may hold nothing
        """Release what the store holds. Idempotent."""


class SqliteAcceptedChanges(AcceptedChanges):
    """AcceptedChanges in one SQLite file; thread-safe, shared by the processes of one host.

    Parameters:
      path: the SQLite file (created with its folder).
      window_s: how long a key is remembered, in seconds: a repeat older than this is published
        again (the targets still drop it by its key).
    """

    def __init__(self, path: Path, *, window_s: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.window_s = window_s
        self._lock = threading.Lock()
        self._closed = False
        self._pruned_at = 0.0
        self._db = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS accepted (key TEXT PRIMARY KEY, at REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS accepted_at ON accepted (at)")

    def already(self, keys: Collection[str]) -> set[str]:
        wanted = list(dict.fromkeys(keys))
        since = time.time() - self.window_s
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(wanted), _QUERY_CHUNK):
                chunk = wanted[start : start + _QUERY_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key FROM accepted WHERE at >= ? AND key IN ({marks})",
                    (since, *chunk),
                )
                found.update(row[0] for row in rows)
        return found

    def remember(self, keys: Collection[str]) -> None:
        if not keys:
            return
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO accepted (key, at) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET at = excluded.at",
                    [(key, now) for key in keys],
                )
                if now - self._pruned_at > _PRUNE_EVERY_S:
                    self._db.execute("DELETE FROM accepted WHERE at < ?", (now - self.window_s,))
                    self._pruned_at = now
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
