"""What the per-department scorecard costs: its SQL on the store against the same figures computed
in Python from `Ledger.items()`, on SQLite and PostgreSQL in the same run.

    python bench/scorecard.py [--rows 10000] [--departments 40] [--repeat 5]
                              [--postgresql postgresql://postgres@127.0.0.1:5432/postgres]

Each backend gets a fresh store (SQLite: a temporary file; PostgreSQL: a database created through
the --postgresql URL's database and dropped after) holding --rows ledger rows of warnings and
tasks over --departments departments, as the ledger leaves them: every state, due times of 1 to
15 days (a few without one, as when the calendar lacks a year), feedback judged complete or not,
returns with their events. Then, --repeat times each, interleaved:

- `sql`: `centre.scorecard.disposal_scores`, the figures per department and kind in SQL;
- `reference`: `Ledger.items()` of every row, and the same figures computed from them in Python
  (`statistics.median` for the median). The returned count reads the row's state there, since
  the rows carry no events: the bench returns only rows it leaves returned, so both agree;
- `scorecard`: the whole `scorecard()`, penalty cases overdue included (an empty watch).

The two answers must be equal (the bench stops otherwise). Prints the median milliseconds of
each and the ratio reference / sql per backend, the PostgreSQL / SQLite ratios of the times,
and, as the last line, one JSON object with every figure. Without PostgreSQL its figures are
null and the reason is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

# Run as a script, this file's folder comes first on sys.path: bench/store.py would shadow the
# `store` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


from centre.ledger import CENTRE_EVENT, CENTRE_ITEM, OPEN_STATES, OVERDUE_STATES, Ledger  # noqa: E402
from centre.penalties import PenaltyLimits  # noqa: E402
from centre.scorecard import disposal_scores, scorecard  # noqa: E402
from store import Store  # noqa: E402

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
DAY = 86400.0
STATES = {  # the share of each state among the rows
    "dispatched": 0.08, "delivered": 0.08, "accepted": 0.08, "disposing": 0.08,
    "returned": 0.05, "fed_back": 0.28, "closed": 0.30, "cancelled": 0.05,
}  # fmt: skip
FIGURES = (
    "rows", "open", "due", "on_time", "late", "overdue", "undated", "returned", "fed_back",
    "feedback_judged", "feedback_complete",
)  # fmt: skip


def bench_store_module() -> ModuleType:
    """bench/store.py, for its `postgresql_database` (its name shadows the `store` package)."""
    spec = importlib.util.spec_from_file_location("bench_store", _HERE / "store.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ledger_rows(count: int, departments: int, seed: int = 15) -> list[dict[str, Any]]:
    """`count` rows as the ledger leaves them, spread over `departments` departments."""
    rng = random.Random(seed)
    now = NOW.timestamp()
    states, weights = list(STATES), list(STATES.values())
    rows = []
    for n in range(count):
        department = n % departments
        state = rng.choices(states, weights)[0]
        dispatched = now - rng.uniform(0, 60) * DAY
        undated = rng.random() < 0.02
        fed_back = None
        if state in ("fed_back", "closed"):
            fed_back = min(now, dispatched + rng.uniform(0, 20) * DAY)
        complete = None if fed_back is None else rng.random() < 0.8
        rows.append(
            {
                "kind": "warning" if n % 3 else "task",
                "item_id": f"ITEM-{n:06d}",
                "department": f"1133000000{department:08d}",
                "department_name": f"第{department}号监管部门",
                "state": state,
                "dispatched_at": dispatched,
                "due_at": None if undated else dispatched + rng.choice((1, 3, 7, 15)) * DAY,
                "due_error": "the calendar does not cover 2027" if undated else None,
                "fed_back_at": fed_back,
                "feedback_complete": complete,
                "feedback_gaps": None if complete is None else "[]" if complete else '["x"]',
                "flags": "[]",
                "updated_at": now,
            }
        )
    return rows


def fill(store: Store, rows: list[dict[str, Any]]) -> None:
    """Insert the rows, and a `returned` event for each row left returned."""
    returns = [
        {"kind": row["kind"], "item_id": row["item_id"], "department": row["department"],
         "event": "returned", "message_id": f"m-{row['item_id']}", "at": row["dispatched_at"],
         "recorded_at": row["dispatched_at"], "detail": "{}"}
        for row in rows
        if row["state"] == "returned"
    ]  # fmt: skip
    with store.begin() as db:
        db.execute(CENTRE_ITEM.insert(), rows)
        db.execute(CENTRE_EVENT.insert(), returns)


def _epoch(text: str | None) -> float | None:
    return None if text is None else dt.datetime.fromisoformat(text).timestamp()


def reference(ledger: Ledger) -> dict[tuple[str, str], dict[str, Any]]:
    """The scorecard's disposal figures computed in Python from `Ledger.items()`."""
    now = ledger.clock().timestamp()
    found: dict[tuple[str, str], dict[str, Any]] = {}
    durations: dict[tuple[str, str], list[float]] = {}
    for row in ledger.items(limit=10**9):
        if row["state"] == "cancelled":
            continue
        key = (row["department"], row["kind"])
        figures = found.setdefault(key, dict.fromkeys(FIGURES, 0))
        due, fed_back = _epoch(row["due_at"]), _epoch(row["fed_back_at"])
        figures["rows"] += 1
        figures["open"] += row["state"] in OPEN_STATES
        figures["undated"] += due is None
        figures["returned"] += row["state"] == "returned"
        figures["feedback_judged"] += row["feedback_complete"] is not None
        figures["feedback_complete"] += row["feedback_complete"] is True
        overdue = row["state"] in OVERDUE_STATES and due is not None and due < now
        figures["overdue"] += overdue
        if fed_back is not None:
            figures["fed_back"] += 1
            dispatched = _epoch(row["dispatched_at"]) or fed_back
            durations.setdefault(key, []).append(max(0.0, fed_back - dispatched))
            if due is not None:
                figures["on_time" if fed_back <= due else "late"] += 1
    for key, figures in found.items():
        figures["due"] = figures["on_time"] + figures["late"] + figures["overdue"]
        times = durations.get(key)
        figures["median_disposal_s"] = statistics.median(times) if times else None
    return found


def from_sql(ledger: Ledger) -> dict[tuple[str, str], dict[str, Any]]:
    """The same figures from `disposal_scores`, keyed alike."""
    with ledger.store.begin() as db:
        scores = disposal_scores(db, ledger.clock().timestamp(), None)
    return {
        (s.department, s.kind): {
            **{name: getattr(s, name) for name in FIGURES},
            "median_disposal_s": s.median_disposal_s,
        }
        for s in scores
    }


def same(sql: dict[tuple[str, str], dict[str, Any]], python: dict[tuple[str, str], Any]) -> None:
    """Stop unless both answers hold the same figures (medians to a millisecond)."""
    assert sql.keys() == python.keys(), "the two answers differ in their departments"
    for key, figures in sql.items():
        theirs = python[key]
        for name in FIGURES:
            assert figures[name] == theirs[name], (key, name, figures[name], theirs[name])
        mine, other = figures["median_disposal_s"], theirs["median_disposal_s"]
        assert (mine is None) == (other is None), (key, mine, other)
        assert mine is None or abs(mine - other) < 1e-3, (key, mine, other)


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def measure(store: Store, rows: list[dict[str, Any]], repeat: int) -> dict[str, float]:
    """The figures of one backend: median ms of each way, and reference / sql."""
    fill(store, rows)
    ledger = Ledger(store, clock=lambda: NOW)
    same(from_sql(ledger), reference(ledger))  # also warms the pool and the caches
    limits = PenaltyLimits()
    runs: dict[str, list[float]] = {"sql": [], "reference": [], "scorecard": []}
    for _ in range(repeat):
        runs["sql"].append(timed(lambda: from_sql(ledger)))
        runs["reference"].append(timed(lambda: reference(ledger)))
        runs["scorecard"].append(timed(lambda: scorecard(ledger, limits)))
    found = {f"{name}_ms": round(statistics.median(ms), 1) for name, ms in runs.items()}
    found["reference_vs_sql"] = round(found["reference_ms"] / found["sql_ms"], 2)
    print(
        f"{store.engine.dialect.name}: the scorecard of {len(rows):,} rows in "
        f"{found['sql_ms']:,} ms in SQL ({found['scorecard_ms']:,} ms with the penalty cases) "
        f"against {found['reference_ms']:,} ms from Ledger.items() in Python: "
        f"{found['reference_vs_sql']}× faster"
    )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="ledger rows per backend")
    parser.add_argument("--departments", type=int, default=40, help="departments they go to")
    parser.add_argument("--repeat", type=int, default=5, help="measurements of each way")
    stores = bench_store_module()
    stores.add_postgresql_option(parser)
    options = parser.parse_args(argv)
    rows = ledger_rows(options.rows, options.departments)
    figures: dict[str, Any] = {
        "rows": options.rows,
        "departments": options.departments,
        "repeat": options.repeat,
    }
    figures.update(
        stores.on_each_store(lambda store: measure(store, rows, options.repeat), options.postgresql)
    )
    if figures["postgresql"] is not None:
        for name in ("sql_ms", "reference_ms"):
            ratio = figures["postgresql"][name] / figures["sqlite"][name]
            figures[f"postgresql_vs_sqlite_{name}"] = round(ratio, 3)
            print(f"postgresql / sqlite, {name}: {ratio:.2f}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
