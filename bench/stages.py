"""What the penalty-case stage check at ingress costs per record: `StoredCaseStages.move` on the
embedded SQLite file and on PostgreSQL, against the same moves in an in-memory dict.

    python bench/stages.py [--cases 2000] [--batch 100] [--postgresql postgresql://postgres@127.0.0.1/postgres]

A backfill's payload holds --batch records of distinct cases (bench/e2e.py pushes 100), so the
bench moves --cases cases in payloads of --batch, three times: their first records (an INSERT
each), a legal move on (lead_registered → investigation: an UPDATE each), and an update within
the stage; then, per payload, one record of each payload's first case moving backwards (refused).
Each pass is timed on its own; the figures are µs per record. The reference is the same check
(`check_transition`) and the same row kept in a dict (`CaseFacts.row`): what the store adds is
the ratio store/dict. One process, one thread, a fresh SQLite file and a fresh PostgreSQL
database (created through --postgresql's database and dropped after). Without PostgreSQL its
figures are null and the reason is printed. Prints one line per figure, then, as the last line,
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path: bench/store.py would shadow the
# `store` package. The repository root is put there instead, for bench/store.py as bench.store.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from bench.store import add_postgresql_option, on_each_store  # noqa: E402
from centre.penalties import CaseFacts, StoredCaseStages  # noqa: E402
from standard.datasets import validate  # noqa: E402
from standard.datasets.penalty_case import check_transition  # noqa: E402
from standard.envelope import Envelope  # noqa: E402
from standard.errors import IllegalStageTransition  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / (
    "mappings/systems/agri-penalty/expected/case_records/valid-records.json"
)
SENDER = "agri-penalty"
PASSES = {
    "first": "lead_registered",
    "move": "investigation",
    "update": "investigation",
}


def envelope(case_id: str, stage: str, base: dict[str, Any], serial: int) -> Envelope:
    """A record of case `case_id` at `stage`: a distinct change (its own time, so its own id)."""
    data = copy.deepcopy(base)
    data.update(penalty_id=case_id, stage=stage)
    return Envelope.wrap(
        validate("penalty_case", data),
        source="330000/nynct",
        operation="u",
        time=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=serial),
        lineagesystem=SENDER,
    )


def payloads(cases: int, batch: int, stage: str, serial: int) -> list[list[Envelope]]:
    """The --cases cases at `stage`, in payloads of `batch` records of distinct cases."""
    base = json.loads(SAMPLE.read_text())["envelopes"][0]["data"]
    records = [envelope(f"B-{n:06d}", stage, base, serial + n) for n in range(cases)]
    return [records[n : n + batch] for n in range(0, cases, batch)]


class DictStages:
    """The reference: the same check and the same row, in a dict (what a store adds nothing to)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def move(
        self, sender: str, envelopes: Sequence[Envelope]
    ) -> list[IllegalStageTransition | None]:
        answers: list[IllegalStageTransition | None] = []
        for one in envelopes:
            facts = CaseFacts.of(one, sender)
            current = self.rows.get(facts.case_id)
            try:
                if current is not None:
                    check_transition(current["stage"], facts.stage)
            except IllegalStageTransition as illegal:
                answers.append(illegal)
                continue
            self.rows[facts.case_id] = facts.row(current)
            answers.append(None)
        return answers


def run(
    stages: StoredCaseStages | DictStages, passes: dict[str, list[list[Envelope]]]
) -> dict[str, float]:
    """µs per record of each pass, and of the refusals; checks every answer."""
    figures: dict[str, float] = {}
    for name, loads in passes.items():
        refusing = name == "refused"
        records = sum(len(load) for load in loads)
        started = time.perf_counter()
        for load in loads:
            answers = stages.move(SENDER, load)
            assert all((answer is not None) is refusing for answer in answers), name
        figures[f"{name}_us_per_record"] = round((time.perf_counter() - started) / records * 1e6, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases moved per pass")
    parser.add_argument("--batch", type=int, default=100, help="records per payload")
    add_postgresql_option(parser)
    options = parser.parse_args()
    passes = {
        name: payloads(options.cases, options.batch, stage, serial * options.cases)
        for serial, (name, stage) in enumerate(PASSES.items())
    }
    # One backwards record per payload (investigation → lead_registered), each on its own.
    passes["refused"] = [
        load[:1]
        for load in payloads(options.cases, options.batch, "lead_registered", 9 * options.cases)
    ]

    found: dict[str, Any] = {"cases": options.cases, "batch": options.batch}
    found["dict"] = run(DictStages(), passes)
    found.update(
        on_each_store(lambda store: run(StoredCaseStages(store), passes), options.postgresql)
    )
    for backend in ("sqlite", "postgresql"):
        if found[backend] is None:
            continue
        for figure, value in found[backend].items():
            ratio = value / found["dict"][figure] if found["dict"][figure] else float("inf")
            found[f"{backend}_vs_dict_{figure.removesuffix('_us_per_record')}"] = round(ratio, 1)
    for backend in ("dict", "sqlite", "postgresql"):
        for figure, value in (found[backend] or {}).items():
            print(f"{backend:10} {figure:28} {value:10.1f}")
    print(json.dumps(found))


if __name__ == "__main__":
    main()
