"""What the store's small operations cost on each backend: the embedded SQLite file against
PostgreSQL, in the same run.

    python bench/store.py [--operations 3000] [--postgresql postgresql://postgres@127.0.0.1/postgres]

Measures, one process, one thread, in a fresh SQLite file and a fresh PostgreSQL database
(created through the --postgresql URL's database and dropped after):
- the replay cache: `first_use` of distinct signatures (one write transaction each), per second;
- the accepted changes: `remember` of one push's keys (a batch of --batch), then `already` of
  the same keys, pairs per second; and the keys remembered per second;
- the outbox (`measure_outbox`, under "outbox"): puts per second (one write transaction each),
  then lease + ack cycles per second as a pulling system makes them (pull 100, acknowledge
  the lease by its cursor) until the outbox is empty, and the messages per second that makes;
  with the PostgreSQL/SQLite ratios.
- the journal (`journal_figures`): entries/s when one process records --journal-entries and
  flushes once (group commit: batches of up to 1,000), and the durable pattern of the hub — each
  step recorded then flushed before it is acknowledged — from --journal-threads threads at once;
  each verified afterwards. Ratios PostgreSQL/SQLite.
Without PostgreSQL the PostgreSQL figures are null and the reason is printed.
Prints one line per figure, then, as the last line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Run as a script, this file's folder comes first on sys.path; keep it from shadowing packages.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from adapters.protocols.outbox import StoredOutbox  # noqa: E402
from adapters.repeats import StoredAcceptedChanges  # noqa: E402
from adapters.replay_cache import StoredReplayCache  # noqa: E402
from monitor.journal import Journal, JournalOptions, Step  # noqa: E402
from store import Store, store_url  # noqa: E402


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def measure(store: Store, operations: int, batch: int) -> dict[str, float]:
    """The figures of one backend."""
    cache = StoredReplayCache(store)
    expires = time.time() + 3600
    for n in range(50):  # warm the pool and the statement cache
        cache.first_use(f"warm {n}", expires)
    started = time.perf_counter()
    for n in range(operations):
        assert cache.first_use(f"sign {n:032x}", expires)
    first_use = per_second(operations, time.perf_counter() - started)

    changes = StoredAcceptedChanges(store, window_s=3600)
    pushes = max(1, operations // batch)
    keys = [[f"{p:08x}{n:056x}" for n in range(batch)] for p in range(pushes)]
    changes.remember(keys[0])
    started = time.perf_counter()
    for push in keys:
        changes.already(push)
        changes.remember(push)
    took = time.perf_counter() - started
    return {
        "first_use_per_s": round(first_use),
        "accepted_pushes_per_s": round(per_second(pushes, took)),
        "accepted_keys_per_s": round(per_second(pushes * batch, took)),
    }


def _journal_rates(store: Store, entries: int, threads: int) -> dict[str, float]:
    """The journal's figures on one backend (a fresh store: its chain starts empty)."""
    journal = Journal(store, JournalOptions(max_pending=entries + 10, flush_interval_s=0.05))
    detail = {"routing_key": "penalty_case.330100.eco-env-penalty", "subject": "case-1"}
    journal.record(Step.PUBLISHED, message_id="warm", system="bench", detail=detail)
    journal.flush(timeout=60)
    started = time.perf_counter()
    for n in range(entries):
        journal.record(Step.PUBLISHED, message_id=f"m{n}", system="bench", detail=detail)
    assert journal.flush(timeout=600)
    batched = per_second(entries, time.perf_counter() - started)

    steps = max(1, entries // 10 // threads)

    def durable_steps(worker: int) -> None:
        for n in range(steps):
            journal.record(Step.DELIVERED, message_id=f"t{worker}-{n}", target="national")
            journal.flush(timeout=60)

    workers = [threading.Thread(target=durable_steps, args=(w,)) for w in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    durable = per_second(steps * threads, time.perf_counter() - started)
    report = journal.verify()
    assert report.ok and report.checked == entries + 1 + steps * threads, report
    journal.close()
    return {"journal_batched_per_s": round(batched), "journal_durable_per_s": round(durable)}


def journal_figures(
    found: dict[str, dict[str, float]], entries: int, threads: int
) -> dict[str, object]:
    """The journal's figures of each backend measured (`_journal_rates`), printed, with
    PostgreSQL's ratio to SQLite."""
    figures: dict[str, object] = {"entries": entries, "threads": threads, "postgresql": None}
    for backend, rates in found.items():
        print(
            f"{backend}: journal {rates['journal_batched_per_s']:,} entries/s recorded then "
            f"flushed; {rates['journal_durable_per_s']:,} entries/s recorded and flushed per "
            f"step from {threads} threads"
        )
    figures.update(found)
    if "postgresql" in found:
        for figure in ("journal_batched_per_s", "journal_durable_per_s"):
            ratio = found["postgresql"][figure] / found["sqlite"][figure]
            figures[f"postgresql_vs_sqlite_{figure.removesuffix('_per_s')}"] = round(ratio, 3)
    return figures


OUTBOX_PULL = 100
"""Messages per pull in the outbox's lease + ack cycles."""


def measure_outbox(store: Store, operations: int) -> dict[str, float]:
    """The outbox's figures of one backend (printed, and returned): puts/s, then lease + ack
    cycles/s."""
    outbox = StoredOutbox(store)
    body = b'{"case": "330100YJ2026000001", "penalty": 5000}' * 8  # a rendered record's size
    message = {"body": body, "content_type": "application/json", "dataset": "penalty_case"}
    for n in range(50):  # warm the pool and the statement cache
        outbox.put("warm", message_id=f"w{n}", idempotency_key=f"w{n}", **message)
    started = time.perf_counter()
    for n in range(operations):
        outbox.put("bench", message_id=f"m{n}", idempotency_key=f"k{n}", subject=f"s{n}", **message)
    puts = per_second(operations, time.perf_counter() - started)
    cycles = 0
    started = time.perf_counter()
    while True:
        lease = outbox.pull("bench", limit=OUTBOX_PULL, lease_s=60)
        if not lease.items:
            break
        assert outbox.ack("bench", lease_id=lease.lease_id, cursor=lease.cursor) == len(lease.items)
        cycles += 1
    took = time.perf_counter() - started
    assert outbox.pending("bench") == 0
    found = {
        "outbox_puts_per_s": round(puts),
        "outbox_lease_ack_cycles_per_s": round(per_second(cycles, took)),
        "outbox_messages_per_s": round(per_second(operations, took)),
    }
    print(
        f"{store.engine.dialect.name}: outbox {found['outbox_puts_per_s']:,} puts/s; "
        f"{found['outbox_lease_ack_cycles_per_s']:,} lease + ack cycles/s of {OUTBOX_PULL} "
        f"({found['outbox_messages_per_s']:,} messages/s)"
    )
    return found


def outbox_ratios(found: dict[str, object]) -> None:
    """Add the PostgreSQL/SQLite ratios of the outbox's figures to `found`, when both ran."""
    sqlite, postgresql = found.get("sqlite"), found.get("postgresql")
    if isinstance(sqlite, dict) and isinstance(postgresql, dict):
        for name in ("outbox_puts_per_s", "outbox_lease_ack_cycles_per_s"):
            found[f"postgresql_vs_sqlite_{name}"] = round(postgresql[name] / sqlite[name], 3)


@contextmanager
def postgresql_database(admin_url: str) -> Iterator[str]:
    """A fresh database next to `admin_url`'s, dropped afterwards."""
    admin = make_url(admin_url)
    name = f"jghub_bench_{uuid.uuid4().hex[:12]}"
    connect = {
        "host": admin.host or "127.0.0.1",
        "port": admin.port or 5432,
        "user": admin.username or "postgres",
        "password": admin.password,
        "dbname": admin.database or "postgres",
        "autocommit": True,
        "connect_timeout": 3,
    }
    with psycopg.connect(**connect) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**connect) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def add_postgresql_option(parser: argparse.ArgumentParser) -> None:
    """The benches' --postgresql option: the database their own PostgreSQL database is made from."""
    parser.add_argument(
        "--postgresql",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL database to create the bench's own database from",
    )


def on_each_store(measure: Callable[[Store], T], admin_url: str) -> dict[str, T | None]:
    """`measure` run on a fresh SQLite store and on a fresh PostgreSQL database made through
    `admin_url` (dropped after): {"sqlite": ..., "postgresql": ...}, PostgreSQL's None when it
    does not answer (the reason printed)."""
    found: dict[str, T | None] = {"sqlite": None, "postgresql": None}
    with tempfile.TemporaryDirectory() as folder:
        sqlite = Store.open(store_url(None, Path(folder)))
        found["sqlite"] = measure(sqlite)
        sqlite.close()
    try:
        with postgresql_database(admin_url) as url:
            postgresql = Store.open(store_url(url, Path(".")), migrate=True)
            found["postgresql"] = measure(postgresql)
            postgresql.close()
    except psycopg.OperationalError as error:
        print(f"PostgreSQL does not answer ({str(error).strip()}): its figures are null")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=3000, help="first uses per backend")
    parser.add_argument("--batch", type=int, default=50, help="keys per push (accepted changes)")
    parser.add_argument("--journal-entries", type=int, default=20_000, help="journal entries")
    parser.add_argument("--journal-threads", type=int, default=8, help="durable-step threads")
    parser.add_argument(
        "--postgresql",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL database to create the bench's own database from",
    )
    options = parser.parse_args(argv)
    figures: dict[str, object] = {"operations": options.operations, "batch": options.batch}
    entries, threads = options.journal_entries, options.journal_threads
    outbox: dict[str, object] = {"sqlite": None, "postgresql": None, "pull": OUTBOX_PULL}
    figures["outbox"] = outbox
    with tempfile.TemporaryDirectory() as folder:
        sqlite = Store.open(store_url(None, Path(folder)))
        figures["sqlite"] = measure(sqlite, options.operations, options.batch)
        journal = {"sqlite": _journal_rates(sqlite, entries, threads)}
        outbox["sqlite"] = measure_outbox(sqlite, options.operations)
        sqlite.close()
    try:
        with postgresql_database(options.postgresql) as url:
            postgresql = Store.open(store_url(url, Path(".")), migrate=True)
            figures["postgresql"] = measure(postgresql, options.operations, options.batch)
            journal["postgresql"] = _journal_rates(postgresql, entries, threads)
            outbox["postgresql"] = measure_outbox(postgresql, options.operations)
            postgresql.close()
    except psycopg.OperationalError as error:
        print(f"PostgreSQL does not answer ({str(error).strip()}): its figures are null")
        figures["postgresql"] = None
    outbox_ratios(outbox)
    for backend in ("sqlite", "postgresql"):
        found = figures[backend]
        if isinstance(found, dict):
            print(
                f"{backend}: replay cache {found['first_use_per_s']:,}/s first uses; accepted "
                f"changes {found['accepted_pushes_per_s']:,} pushes/s of {options.batch} keys "
                f"(already + remember), {found['accepted_keys_per_s']:,} keys/s"
            )
    sqlite_figures, pg_figures = figures["sqlite"], figures["postgresql"]
    if isinstance(sqlite_figures, dict) and isinstance(pg_figures, dict):
        figures["postgresql_vs_sqlite_first_use"] = round(
            pg_figures["first_use_per_s"] / sqlite_figures["first_use_per_s"], 3
        )
        figures["postgresql_vs_sqlite_accepted"] = round(
            pg_figures["accepted_pushes_per_s"] / sqlite_figures["accepted_pushes_per_s"], 3
        )
    figures["journal"] = journal_figures(journal, entries, threads)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
