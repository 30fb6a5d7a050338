"""The replay cache: which request signatures were already used, shared by every serve process.

A signed app key (`md5(appKey + secret + requestTime)`, see `adapters.security`) covers neither
the body nor a nonce: within its clock window a captured signature would carry any body, as
often as wanted. The gatekeeper therefore lets each signature through once: it asks the cache
`first_use(key, expires_at)` after the signature checked out, and refuses it when the answer is
False. An entry is kept until its signature's window has passed (the clock check refuses the
signature from then on), so the cache holds at most one window of traffic.

`ReplayCache` is the interface; `SqliteReplayCache` keeps it in one SQLite file in the hub's
data folder (WAL), shared by the `serve` processes of one host like the outbox and the journal.
Past one host the same interface fits the shared database (PostgreSQL: `INSERT ... ON CONFLICT
DO NOTHING` on the key, with a periodic delete of expired rows).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

REPLAY_FILE = "replay.sqlite3"
"""The replay cache's file in the hub's data folder."""


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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS used_signature (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS used_signature_expiry ON used_signature (expires_at);
"""


class SqliteReplayCache(ReplayCache):
    """The replay cache in one SQLite file (WAL), shared by the processes of one machine.

    Each `first_use` is one short write transaction: expired keys are deleted, then the key is
    inserted unless present (`INSERT OR IGNORE`, atomic under SQLite's write lock), so the file
    never holds more than the keys of one window and needs no sweeper.

    Parameters:
      path: the SQLite file; its folder is created.
      clock: epoch seconds, the same clock the expiries are computed with (tests replace it).
    """

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        # One connection guarded by a lock: each call is one tiny transaction, and SQLite
        # serialises writers anyway; other processes wait on busy_timeout.
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def first_use(self, key: str, expires_at: float) -> bool:
        with self._lock:
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM used_signature WHERE expires_at < ?", (self._clock(),))
                inserted = db.execute(
                    "INSERT OR IGNORE INTO used_signature (key, expires_at) VALUES (?, ?)",
                    (key, expires_at),
                ).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return inserted == 1

    def remembered(self) -> int:
        with self._lock:
            row = self._open().execute("SELECT count(*) FROM used_signature").fetchone()
            return int(row[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"the replay cache {self.path} is closed")
        return self._db
