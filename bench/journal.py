"""What the monitor costs on the hot path: the ingress with and without metrics and the journal.

Run: ``.venv/bin/python bench/journal.py [--quick] [--amqp URL]``.

1. The inbound path, ``Ingress.accept`` of a department batch (eco-env-penalty, 3 penalty cases,
   GB2312 XML) onto the embedded bus (or RabbitMQ with --amqp): with no observer (the
   reference), with metrics only, and with metrics and the journal, in interleaved rounds (the
   best round of each counts). The ratios to the reference, measured in the same run, are the
   figures that compare across machines.
2. The journal alone: what one ``record()`` costs the caller (it only queues), how many entries
   per second the writer thread chains and commits in batches, against the same hash-chained
   insert written one transaction per entry (the reference a naive journal would be).
3. Whether the journal sharing ``store.sqlite3`` with the small stores costs anything: durable
   steps (record + flush per step, from several threads) while a thread marks replay-cache
   signatures used, once with the journal in a file of its own and once in one store file.
4. ``verify()``: entries per second walked and re-hashed.

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

# bench/bus.py would shadow the `bus` package when this file runs as a script from bench/.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import bus  # noqa: E402
from adapters.ingress import Ingress  # noqa: E402
from adapters.replay_cache import StoredReplayCache  # noqa: E402
from bus import Target, Topology  # noqa: E402
from mappings.system import SYSTEMS_ROOT, load_system  # noqa: E402
from monitor.journal import (  # noqa: E402
    Journal,
    JournalOptions,
    Step,
    entry_hash,
    timestamp,
)
from monitor.observer import Observer  # noqa: E402
from store import DATABASE_FILE, Store, store_url  # noqa: E402

PAYLOAD = (SYSTEMS_ROOT / "eco-env-penalty/samples/case_batch/valid-batch.xml").read_bytes()
SYSTEM = "eco-env-penalty"


class _IngressRun:
    """One ingress configuration on its own namespace, measured in interleaved rounds."""

    def __init__(self, url: str, make_observer: Callable[[Topology], Observer | None]) -> None:
        self.topology = Topology(
            namespace=f"bench{uuid.uuid4().hex[:8]}",
            targets=[Target(name="sink", routes=["#"])],
        )
        self.broker = bus.connect(url)
        self.broker.declare(self.topology)
        mappings = {SYSTEM: load_system(SYSTEMS_ROOT / SYSTEM)}
        self.ingress = Ingress(self.broker, mappings, observer=make_observer(self.topology))
        self.rates: list[float] = []
        self.round(20)  # warm-up

    def round(self, payloads: int) -> None:
        started = time.perf_counter()
        for _ in range(payloads):
            result = self.ingress.accept(SYSTEM, "case_batch", PAYLOAD, charset="gb2312")
            assert result.accepted == 3, result
        self.rates.append(payloads / (time.perf_counter() - started))

    @property
    def best(self) -> float:
        """The least disturbed round (the machine is shared; the best round is the fairest)."""
        return max(self.rates)

    def close(self) -> None:
        self.broker.delete_topology(self.topology)
        self.broker.close()


def _naive_rate(path: Path, entries: int) -> float:
    """Entries per second chained and committed one transaction each, in the caller's thread
    (the reference: a journal written before the message moves on), on the journal's tables in
    an SQLite store, with the head row locked and moved as the journal does."""
    Journal(path).close()  # creates the store's schema, indexes included
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=NORMAL")
    day = datetime.now(UTC).date().isoformat()
    started = time.perf_counter()
    for n in range(entries):
        db.execute("BEGIN IMMEDIATE")
        seq, prev = db.execute("SELECT seq, hash FROM journal_chain WHERE id = 1").fetchone()
        detail = '{"routing_key":"penalty_case.330100.eco-env-penalty"}'
        row = (seq + 1, timestamp_now(), "published", f"m{n}", "r", SYSTEM, None,
               "penalty_case", None, None, detail)  # fmt: skip
        digest = entry_hash(prev, row)
        db.execute(
            "INSERT INTO journal_entry (seq, at, step, message_id, receipt, system, target, "
            "dataset, reason, attempt, detail, prev_hash, hash, day) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (*row, prev, digest, day),
        )
        db.execute(
            "UPDATE journal_chain SET seq = ?, hash = ?, day = ? WHERE id = 1",
            (seq + 1, digest, day),
        )
        db.execute("COMMIT")
    rate = entries / (time.perf_counter() - started)
    db.close()
    return rate


def _durable_with_small_stores(
    journal_file: Path, small_stores: Path, steps: int, threads: int
) -> tuple[float, float]:
    """(journal entries/s, replay-cache first uses/s) while both write at once: `threads`
    threads each record and flush `steps` entries (a step acknowledged after its entry is
    written, as the hub does) and one thread marks signatures used, the way `serve` does both.
    The journal's SQLite file and the small stores' may be one file or two."""
    journal = Journal(journal_file, JournalOptions(flush_interval_s=0.05))
    cache = StoredReplayCache(Store.open(store_url(None, small_stores)))
    done = threading.Event()
    used = [0]

    def mark_signatures() -> None:
        expires = time.time() + 3600
        while not done.is_set():
            cache.first_use(uuid.uuid4().hex, expires)
            used[0] += 1

    def durable_steps(worker: int) -> None:
        for n in range(steps):
            journal.record(Step.DELIVERED, message_id=f"t{worker}-{n}", target="national")
            journal.flush(timeout=60)

    marker = threading.Thread(target=mark_signatures)
    workers = [threading.Thread(target=durable_steps, args=(w,)) for w in range(threads)]
    started = time.perf_counter()
    marker.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    took = time.perf_counter() - started
    done.set()
    marker.join()
    journal.close()
    return steps * threads / took, used[0] / took


def timestamp_now() -> str:
    return timestamp(datetime.now(UTC))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--amqp", help="RabbitMQ URL for the ingress part (default: embedded)")
    options = parser.parse_args()
    payloads = 100 if options.quick else 1000
    rounds = 2 if options.quick else 5
    entries = 20_000 if options.quick else 200_000
    naive_entries = 1_000 if options.quick else 5_000

    with tempfile.TemporaryDirectory(prefix="jghub-bench-") as folder:
        root = Path(folder)
        url = options.amqp or f"sqlite:///{root / 'bus.sqlite3'}"
        bus_name = "RabbitMQ" if options.amqp else "embedded bus"

        ingress_journal = Journal(root / "ingress-journal.sqlite3")
        runs = [
            _IngressRun(url, lambda topology: None),
            _IngressRun(url, lambda topology: Observer(topology)),
            _IngressRun(url, lambda topology: Observer(topology, ingress_journal)),
        ]
        for _ in range(rounds):
            for run in runs:
                run.round(payloads // rounds)
        reference, metrics_only, journalled = (run.best for run in runs)
        for run in runs:
            run.close()
        ingress_journal.close()
        print(f"Ingress.accept of a 3-record department batch, {bus_name}:")
        print(f"  no observer (reference)  {reference:8.0f} payloads/s")
        print(f"  metrics                  {metrics_only:8.0f} payloads/s  "
              f"({metrics_only / reference:.2f} of the reference)")  # fmt: skip
        print(f"  metrics + journal        {journalled:8.0f} payloads/s  "
              f"({journalled / reference:.2f} of the reference)")  # fmt: skip

        journal = Journal(root / "journal.sqlite3", JournalOptions(max_pending=entries + 10))
        started = time.perf_counter()
        for n in range(entries):
            journal.record(
                Step.PUBLISHED,
                message_id=f"m{n}",
                receipt="r",
                system=SYSTEM,
                dataset="penalty_case",
                detail={"routing_key": "penalty_case.330100.eco-env-penalty"},
            )
        queued = time.perf_counter() - started
        journal.flush(timeout=600)
        written = time.perf_counter() - started
        record_us = queued / entries * 1e6
        batched_rate = entries / written
        naive_rate = _naive_rate(root / "naive.sqlite3", naive_entries)
        print(f"journal.record(): {record_us:.1f} µs per call for the caller (it only queues)")
        print(f"journal writer, batched: {batched_rate:8.0f} entries/s chained and committed")
        print(f"one transaction per entry in the caller (reference): {naive_rate:8.0f} entries/s "
              f"→ batching is {batched_rate / naive_rate:.1f}×; the caller waits "
              f"{1e6 / naive_rate / record_us:.1f}× less")  # fmt: skip

        steps, threads = (50, 4) if options.quick else (250, 8)
        apart = root / "apart"
        journal_apart, cache_apart = _durable_with_small_stores(
            apart / "journal.sqlite3", apart, steps, threads
        )
        shared = root / "shared"
        journal_shared, cache_shared = _durable_with_small_stores(
            shared / DATABASE_FILE, shared, steps, threads
        )
        print(f"durable steps from {threads} threads while the replay cache writes:")
        print(f"  journal in its own file   {journal_apart:8.0f} entries/s, "
              f"replay cache {cache_apart:6.0f} first uses/s")  # fmt: skip
        print(f"  one store.sqlite3 for all {journal_shared:8.0f} entries/s "
              f"({journal_shared / journal_apart:.2f}×), replay cache {cache_shared:6.0f} "
              f"first uses/s ({cache_shared / cache_apart:.2f}×)")  # fmt: skip

        started = time.perf_counter()
        report = journal.verify()
        verify_rate = report.checked / (time.perf_counter() - started)
        assert report.ok, report.broken
        size_mib = (root / "journal.sqlite3").stat().st_size / 2**20  # a store of its own
        print(f"verify: {verify_rate:8.0f} entries/s; {entries} entries take {size_mib:.1f} MiB")
        journal.close()

    print(
        json.dumps(
            {
                "bus": "rabbitmq" if options.amqp else "embedded",
                "ingress_payloads_per_s_reference": round(reference),
                "ingress_payloads_per_s_metrics": round(metrics_only),
                "ingress_payloads_per_s_metrics_journal": round(journalled),
                "ingress_metrics_vs_reference": round(metrics_only / reference, 3),
                "ingress_metrics_journal_vs_reference": round(journalled / reference, 3),
                "journal_record_us": round(record_us, 2),
                "journal_batched_entries_per_s": round(batched_rate),
                "journal_naive_entries_per_s": round(naive_rate),
                "journal_batched_vs_naive": round(batched_rate / naive_rate, 2),
                "journal_caller_wait_vs_naive": round(1e6 / naive_rate / record_us, 2),
                "journal_durable_apart_entries_per_s": round(journal_apart),
                "journal_durable_shared_entries_per_s": round(journal_shared),
                "journal_shared_vs_apart": round(journal_shared / journal_apart, 3),
                "replay_cache_apart_per_s": round(cache_apart),
                "replay_cache_shared_per_s": round(cache_shared),
                "replay_cache_shared_vs_apart": round(cache_shared / cache_apart, 3),
                "journal_verify_entries_per_s": round(verify_rate),
                "journal_mib_per_100k_entries": round(size_mib / entries * 100_000, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
