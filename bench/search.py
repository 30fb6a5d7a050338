"""What a search of the journal by business key costs: `monitor.search.search` on the key index
against scanning the journal's entries for the key, on SQLite and PostgreSQL in the same run.

    python bench/search.py [--entries 100000] [--departments 40] [--keys 20] [--scans 3]
                           [--postgresql postgresql://postgres@127.0.0.1:5432/postgres]

Each backend gets a fresh store (SQLite: a temporary file; PostgreSQL: a database created through
the --postgresql URL's database and dropped after) and a journal of --entries entries as the hub
writes them: chains of a complaint, the task it became, the department's feedback and the
complaint's result, and of a risk warning and its feedback — each message received, published and
delivered, its `received` entry naming the record's credit codes and links as the observer does
(`standard.references`), over --departments departments. Writing them is timed too (entries/s,
the writer filling the key index in the same transactions).

Then, for --keys keys of each kind — a case number (followed to its task, feedback and result),
a task id, a party's credit code, a message id — `search` is timed (median and worst ms), and
so is the reference, `Journal.entries()` read to the end looking for the key in every entry's
message id, receipt and detail (--scans keys, a full pass each), which finds the entries naming
a key and nothing it leads to. A department's credit code (named by thousands of entries) shows
the bound: the newest `limit` entries and a note. Every scan's entries must be in the search's
timeline (the bench stops otherwise).

Prints the figures per backend and the ratio scan / search, then, as the last line, one JSON
object with every figure. Without PostgreSQL its figures are null and the reason is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

# Run as a script, this file's folder comes first on sys.path: bench/store.py would shadow the
# `store` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from sqlalchemy import func, select  # noqa: E402

from monitor.journal import Journal, JournalOptions, Step  # noqa: E402
from monitor.journal_keys import JOURNAL_KEY  # noqa: E402
from monitor.search import search  # noqa: E402
from standard.datasets import DATASETS  # noqa: E402
from store import Store  # noqa: E402

START = datetime(2026, 3, 2, 1, tzinfo=UTC)
CENTRE = "11330000MB1P273395"
KINDS = ("case", "task", "party", "message")


def bench_store_module() -> ModuleType:
    """bench/store.py, for its `postgresql_database` (its name shadows the `store` package)."""
    spec = importlib.util.spec_from_file_location("bench_store", _HERE / "store.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Landscape:
    """The journal's traffic: records, their messages and their steps, in time order."""

    def __init__(self, departments: int, seed: int = 16) -> None:
        self.rng = random.Random(seed)
        self.departments = [f"1133000000{n:08d}" for n in range(departments)]
        self.at = START
        self.keys: dict[str, list[str]] = {kind: [] for kind in KINDS}

    def tick(self) -> datetime:
        self.at += timedelta(milliseconds=self.rng.randint(1, 400))
        return self.at

    def complaint_chain(self, n: int) -> Iterator[dict[str, Any]]:
        """A complaint, its task, the department's feedback and the complaint's result."""
        case, party = f"TS3301{n:012d}", f"91330100{n:09d}X"[:18]
        task_id, department = f"XT-{case}", self.rng.choice(self.departments)
        unit = {"name": "承办部门", "credit_code": department}
        complaint = {"complaint_id": case, "respondent_credit_code": party}
        task = {"task_id": task_id, "source_record_id": case, "dispatcher": {"credit_code": CENTRE},
                "assignees": [unit]}  # fmt: skip
        yield from self.message("complaint", complaint, "complaint-platform", "collaboration")
        yield from self.message("collaboration_task", task, "collaboration", "department")
        yield from self.message("collaboration_task", task, "department", "collaboration", "u")
        result = {**complaint, "task_id": task_id, "handling_department": unit}
        yield from self.message("complaint", result, "collaboration", "complaint-platform", "u")
        self.keys["case"].append(case)
        self.keys["task"].append(task_id)
        self.keys["party"].append(party)

    def warning_chain(self, n: int) -> Iterator[dict[str, Any]]:
        """A risk warning and its department's feedback."""
        warning_id, department = f"YJ3300{n:012d}", self.rng.choice(self.departments)
        unit = {"name": "责任部门", "credit_code": department}
        warning = {"warning_id": warning_id, "subject_credit_code": f"91330200{n:09d}X"[:18],
                   "issuer": {"credit_code": CENTRE}, "responsible_department": unit}  # fmt: skip
        feedback = {"feedback_id": f"FK-{warning_id}", "warning_id": warning_id, "department": unit}
        yield from self.message("risk_warning", warning, "national", "department")
        yield from self.message("risk_feedback", feedback, "department", "national")

    def message(
        self, dataset: str, data: dict[str, Any], system: str, target: str, op: str = "i"
    ) -> Iterator[dict[str, Any]]:
        """One message's steps as the hub journals them: received (with the record's keys, as
        the observer writes them), published, delivered."""
        spec = DATASETS[dataset]
        subject = str(data[spec.key_field])
        named = spec.references(data)
        detail: dict[str, Any] = {
            "message_type": "push", "subject": subject,
            "operation": {"i": "insert", "u": "update"}[op],
        }  # fmt: skip
        if named.credit_codes:
            detail["credit_codes"] = named.credit_codes
        if named.links:
            detail["links"] = named.links
        message_id, receipt = str(uuid.UUID(int=self.rng.getrandbits(128))), uuid.uuid4().hex
        self.keys["message"].append(message_id)
        common = {"message_id": message_id, "receipt": receipt, "system": system,
                  "dataset": dataset}  # fmt: skip
        yield {**common, "step": Step.RECEIVED, "detail": detail, "at": self.tick()}
        yield {**common, "step": Step.PUBLISHED, "detail": {"subject": subject}, "at": self.tick()}
        yield {**common, "step": Step.DELIVERED, "target": target, "attempt": 1,
               "detail": {"subject": subject}, "at": self.tick()}  # fmt: skip

    def entries(self, count: int) -> Iterator[dict[str, Any]]:
        """`count` entries (whole chains: a few more), two complaint chains to a warning's."""
        written, n = 0, 0
        while written < count:
            chain = self.warning_chain(n) if n % 3 == 2 else self.complaint_chain(n)
            for entry in chain:
                written += 1
                yield entry
            n += 1


def fill(journal: Journal, landscape: Landscape, count: int) -> dict[str, float]:
    """Write the journal; its entries/s (the key index filled in the same transactions)."""
    started = time.perf_counter()
    written = 0
    for entry in landscape.entries(count):
        journal.record(**entry)
        written += 1
    assert journal.flush(timeout=None)
    took = time.perf_counter() - started
    with journal.reading() as db:
        keys = int(db.execute(select(func.count()).select_from(JOURNAL_KEY)).scalar_one())
    return {"entries": written, "keys": keys, "write_entries_per_s": round(written / took)}


def scan(journal: Journal, key: str) -> set[int]:
    """The reference: every entry read, the key looked for in its ids and detail values."""
    found = set()
    for entry in journal.entries():
        if key in (entry.message_id, entry.receipt) or key in _values(entry.detail):
            found.add(entry.seq)
    return found


def _values(detail: Any) -> Iterator[str]:
    if isinstance(detail, dict):
        for value in detail.values():
            yield from _values(value)
    elif isinstance(detail, list):
        for value in detail:
            yield from _values(value)
    elif detail is not None:
        yield str(detail)


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    answer = work()
    return (time.perf_counter() - started) * 1000, answer


def measure(store: Store, options: argparse.Namespace) -> dict[str, Any]:
    """The figures of one backend."""
    landscape = Landscape(options.departments)
    journal = Journal(store, JournalOptions(batch_size=5000, max_pending=options.entries * 2))
    found: dict[str, Any] = fill(journal, landscape, options.entries)
    rng = random.Random(7)
    search(journal, landscape.keys["case"][0])  # warm the pool and the statement cache
    for kind in KINDS:
        keys = rng.sample(landscape.keys[kind], options.keys)
        runs = [timed(lambda key=key: search(journal, key)) for key in keys]
        times = [ms for ms, _ in runs]
        found[f"search_{kind}_ms"] = round(statistics.median(times), 2)
        found[f"search_{kind}_worst_ms"] = round(max(times), 2)
        found[f"search_{kind}_steps"] = round(statistics.mean(len(a.timeline) for _, a in runs), 1)
    department = landscape.departments[0]
    wide_ms, wide = timed(lambda: search(journal, department))
    found["search_department_ms"] = round(wide_ms, 1)
    found["search_department_truncated"] = wide.truncated is not None
    scans = []
    for key in rng.sample(landscape.keys["case"], options.scans):
        scan_ms, seqs = timed(lambda key=key: scan(journal, key))
        answer = search(journal, key)
        shown = {step.seq for step in answer.timeline}
        assert seqs and seqs <= shown, f"the scan found entries of {key} the search did not show"
        scans.append(scan_ms)
    found["scan_ms"] = round(statistics.median(scans), 1)
    found["scan_vs_search_case"] = round(found["scan_ms"] / found["search_case_ms"], 1)
    journal.close()
    print(
        f"{store.engine.dialect.name}: {found['entries']:,} entries ({found['keys']:,} keys) "
        f"written at {found['write_entries_per_s']:,}/s; search by case number "
        f"{found['search_case_ms']} ms (worst {found['search_case_worst_ms']}, "
        f"{found['search_case_steps']} steps: complaint → task → feedback → result), task id "
        f"{found['search_task_ms']} ms, party credit code {found['search_party_ms']} ms, "
        f"message id {found['search_message_ms']} ms; a department's credit code "
        f"{found['search_department_ms']} ms (bounded: {found['search_department_truncated']}); "
        f"scanning the journal for a key {found['scan_ms']:,} ms: "
        f"{found['scan_vs_search_case']}× the search"
    )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="journal entries")
    parser.add_argument("--departments", type=int, default=40, help="departments")
    parser.add_argument("--keys", type=int, default=20, help="keys searched of each kind")
    parser.add_argument("--scans", type=int, default=3, help="full scans for the reference")
    stores = bench_store_module()
    stores.add_postgresql_option(parser)
    options = parser.parse_args(argv)
    figures: dict[str, Any] = {
        "entries": options.entries,
        "departments": options.departments,
        "keys": options.keys,
        "scans": options.scans,
    }
    figures.update(stores.on_each_store(lambda store: measure(store, options), options.postgresql))
    if figures["postgresql"] is not None:
        for name in ("search_case_ms", "scan_ms"):
            ratio = figures["postgresql"][name] / figures["sqlite"][name]
            figures[f"postgresql_vs_sqlite_{name}"] = round(ratio, 3)
            print(f"postgresql / sqlite, {name}: {ratio:.2f}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
