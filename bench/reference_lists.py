"""What a reference-list lookup costs on the ingress hot path: the cached answer against a plain
dictionary (the same run's reference), a miss that reads the store, a lookup that also looks for
other hosts' writes; and what feeding a change costs. On the embedded SQLite file and PostgreSQL.

    python bench/reference_lists.py [--entries 20000] [--lookups 200000] [--postgresql URL]

Seeds --entries certificates in a fresh store, then, one process and one thread:
- dict_ns: `InMemoryLists.officer` of a known certificate (a dictionary read), ns per lookup;
- hit_ns: `StoreLists.officer` of a cached certificate, refresh not due, ns per lookup;
- miss_us: the first lookup of each of 2,000 certificates (one SELECT each), µs per lookup;
- refresh_us: a lookup with refresh_s=0 (it reads the three list versions first), µs each;
- apply_per_s: changes fed through `StoreLists.apply` (one durable transaction each), per second.
Prints one line per store, then one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path: bench/store.py would shadow the
# `store` package. The repository root is put there instead, for bench/store.py as bench.store.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from bench.store import add_postgresql_option, on_each_store  # noqa: E402
from reference.lists import InMemoryLists, OfficerEntry  # noqa: E402
from reference.stored import REFERENCE_LIST, REFERENCE_OFFICER, StoreLists  # noqa: E402
from standard.datasets import validate  # noqa: E402
from standard.envelope import Envelope  # noqa: E402
from store import Store  # noqa: E402

SAMPLE = _HERE.parent / "tests" / "standard" / "samples" / "enforcement_officer.json"
MISSES = 2_000
REFRESHES = 2_000
APPLIES = 300


def certificate(n: int) -> str:
    return f"ZJ{n:011d}"


def seed(store: Store, entries: int) -> None:
    """`entries` certificates written straight into the table (feeding them one by one would
    measure the feed, not the lookups)."""
    rows: list[dict[str, Any]] = [
        {
            "certificate_number": certificate(n), "officer_id": f"ZF-{n}", "name": "周晓燕",
            "agency": "杭州市西湖区市场监督管理局", "status": "1",
            "certificate_issued": date(2023, 6, 1), "certificate_valid_until": date(2028, 5, 31),
            "updated_at": 1_772_000_000.0, "deleted": False, "version": 1, "record": None,
        }
        for n in range(entries)
    ]  # fmt: skip
    with store.begin() as db:
        db.execute(REFERENCE_OFFICER.insert(), rows)
        db.execute(
            REFERENCE_LIST.update().where(REFERENCE_LIST.c.name == "officers").values(version=1)
        )


def per_lookup(lookup: Any, keys: list[str], rounds: int) -> float:
    started = time.perf_counter()
    for n in range(rounds):
        lookup(keys[n % len(keys)])
    return (time.perf_counter() - started) / rounds


def measure(store: Store, entries: int, lookups: int) -> dict[str, float]:
    seed(store, entries)
    keys = [certificate(n) for n in range(0, entries, max(1, entries // 1000))][:1000]
    entry = OfficerEntry(keys[0], "ZF-0", "周晓燕", "局", "1", date(2023, 6, 1),
                         date(2028, 5, 31), datetime.now(UTC))  # fmt: skip
    plain = InMemoryLists(officers={key: entry for key in keys})
    cached = StoreLists(store, refresh_s=3600)
    for key in keys:
        cached.officer(key)
    cold = StoreLists(store, refresh_s=3600)
    misses = [certificate(n) for n in range(entries - MISSES, entries)]
    watching = StoreLists(store, refresh_s=0)
    watching.officer(keys[0])
    found = {
        "dict_ns": round(per_lookup(plain.officer, keys, lookups) * 1e9, 1),
        "hit_ns": round(per_lookup(cached.officer, keys, lookups) * 1e9, 1),
        "miss_us": round(per_lookup(cold.officer, misses, len(misses)) * 1e6, 1),
        "refresh_us": round(per_lookup(watching.officer, keys[:1], REFRESHES) * 1e6, 1),
    }
    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    started = time.perf_counter()
    for n in range(APPLIES):
        record = validate(
            "enforcement_officer",
            dict(
                data,
                certificate_number=certificate(n),
                updated_time=f"2026-03-02T09:{n // 60 % 60:02d}:{n % 60:02d}+08:00",
            ),
        )
        changed = record.updated_time  # type: ignore[attr-defined]
        cached.apply(Envelope.wrap(record, source="330000/bench", operation="u", time=changed))
    found["apply_per_s"] = round(APPLIES / (time.perf_counter() - started), 1)
    found["hit_vs_dict"] = round(found["hit_ns"] / found["dict_ns"], 1)
    print(f"{store.engine.dialect.name}: {found}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000, help="certificates seeded")
    parser.add_argument("--lookups", type=int, default=200_000, help="cached lookups timed")
    add_postgresql_option(parser)
    options = parser.parse_args(argv)
    figures: dict[str, Any] = {"entries": options.entries, "lookups": options.lookups,
                               "load_average": round(os.getloadavg()[0], 1)}  # fmt: skip
    figures.update(
        on_each_store(lambda s: measure(s, options.entries, options.lookups), options.postgresql)
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
