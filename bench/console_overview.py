"""What the console's Overview costs: its per-system and per-target figures aggregated by the
database (`monitor.journal_figures`) against reading the journal's window into Python
(`monitor.quality.quality_report` and `monitor.overview.delivery_counts`, the reference), on
SQLite and PostgreSQL in the same run.

    python bench/console_overview.py [--entries 100000] [--runs 5]
                                     [--postgresql postgresql://postgres@127.0.0.1:5432/postgres]

Each backend gets a fresh store (SQLite: a temporary file; PostgreSQL: a database created through
the --postgresql URL's database and dropped after) and a journal of --entries entries written by
the journal's writer (tests/support/journal_seed.py: received records with delays, completeness
and assumed fields and the cross-checks' warnings and "not checked", records refused by the
hub, rejected records and payloads, delivery steps over several systems and targets). Both
ways are timed over the whole journal as the window (--runs each, the median kept), and their
figures must be equal (the bench stops otherwise). PostgreSQL's table is ANALYZEd after the
writing, as autovacuum soon does to a table of that size.

Prints the figures per backend and the ratios reference / SQL, then, as the last line, one JSON
object with every figure. Without PostgreSQL its figures are null and the reason is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

# Run as a script, this file's folder comes first on sys.path: bench/store.py would shadow the
# `store` package. The seeded journal is the tests' own.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE.parent / "tests" / "support"))

from journal_seed import seeded_entries  # noqa: E402
from sqlalchemy import text  # noqa: E402

from monitor.journal import Journal, JournalOptions  # noqa: E402
from monitor.journal_figures import delivery_figures, quality_figures  # noqa: E402
from monitor.overview import delivery_counts  # noqa: E402
from monitor.quality import SystemQuality, quality_report  # noqa: E402
from store import Store  # noqa: E402


def bench_store_module() -> ModuleType:
    """bench/store.py, for its `postgresql_database` (its name shadows the `store` package)."""
    spec = importlib.util.spec_from_file_location("bench_store", _HERE / "store.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def figures_of(scores: list[SystemQuality]) -> list[tuple[object, ...]]:
    return [
        (q.system, q.accepted, q.rejected, q.refused_payloads, q.refused_records,
         dict(q.refusals), dict(q.rejections), q.filled, q.optional, q.delay_median, q.delay_p90,
         q.assumed_records, dict(q.assumed), dict(q.warnings), dict(q.unchecked))
        for q in scores
    ]  # fmt: skip


def median_ms(work: Callable[[], Any], runs: int) -> tuple[float, Any]:
    took, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        took.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(took), 1), result


def measure(store: Store, options: argparse.Namespace) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(hours=23)
    since = start - timedelta(minutes=1)
    with Journal(store, JournalOptions(flush_interval_s=0.05)) as journal:
        written = time.perf_counter()
        for entry in seeded_entries(options.entries, start=start):
            journal.record(**entry)
        assert journal.flush(timeout=None)
        write_s = time.perf_counter() - written
        if store.engine.dialect.name == "postgresql":
            # What autovacuum does to a table this size soon enough: the planner's row counts.
            with store.engine.connect() as db:
                db.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))

        def in_sql() -> Any:
            return quality_figures(journal, since=since), delivery_figures(journal, since=since)

        def in_python() -> Any:
            return quality_report(journal, since=since), delivery_counts(journal, since=since)

        sql_ms, (sql_scores, sql_steps) = median_ms(in_sql, options.runs)
        python_ms, (py_scores, py_steps) = median_ms(in_python, options.runs)
    if figures_of(sql_scores) != figures_of(py_scores) or sql_steps != py_steps:
        raise SystemExit(f"{store}: the SQL figures differ from the reference's")
    found = {
        "entries": options.entries,
        "write_entries_per_s": round(options.entries / write_s),
        "sql_ms": sql_ms,
        "python_ms": python_ms,
        "python_vs_sql": round(python_ms / sql_ms, 1),
        "systems": len(sql_scores),
        "targets": len(sql_steps),
    }
    print(
        f"{store.engine.dialect.name}: {options.entries} entries; overview figures in SQL "
        f"{sql_ms} ms, read in Python {python_ms} ms: {found['python_vs_sql']}x"
    )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="journal entries")
    parser.add_argument("--runs", type=int, default=5, help="runs of each way (median kept)")
    stores = bench_store_module()
    stores.add_postgresql_option(parser)
    options = parser.parse_args(argv)
    figures: dict[str, Any] = {"entries": options.entries, "runs": options.runs,
                               "load_average": round(os.getloadavg()[0], 1)}  # fmt: skip
    figures.update(stores.on_each_store(lambda store: measure(store, options), options.postgresql))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
