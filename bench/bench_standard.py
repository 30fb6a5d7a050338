"""How fast records validate and envelopes encode, as a ratio to json.loads of the same documents.

Run: ``.venv/bin/python bench/bench_standard.py [N]``. The reference (``json.loads`` of the record's
JSON text) is measured in the same run, so the ratios compare across machines. Memory is the
tracemalloc peak of holding N validated penalty cases.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from standard.datasets import validate, validate_json
from standard.envelope import Envelope

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "standard" / "samples"


def _best_of(runs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def main(n: int = 2_000) -> None:
    rows: list[tuple[str, float]] = []
    for name in ("penalty_case", "inspection", "penalty_publication", "complaint"):
        text = (SAMPLES / f"{name}.json").read_text(encoding="utf-8")
        data = json.loads(text)
        reference = _best_of(3, lambda t=text: [json.loads(t) for _ in range(n)])  # type: ignore[misc]
        from_json = _best_of(3, lambda t=text, m=name: [validate_json(m, t) for _ in range(n)])  # type: ignore[misc]
        from_dict = _best_of(3, lambda d=data, m=name: [validate(m, d) for _ in range(n)])  # type: ignore[misc]
        rows.append((f"{name}: json.loads (reference)", reference))
        rows.append((f"{name}: validate_json", from_json))
        rows.append((f"{name}: validate (dict)", from_dict))

    record = validate("penalty_case", json.loads((SAMPLES / "penalty_case.json").read_text()))
    changed = datetime(2026, 5, 13, 10, 20)
    envelope = Envelope.wrap(record, source="330106/scjgj", operation="u", time=changed)
    event = envelope.to_json()
    properties, body = envelope.to_amqp()
    plain = record.model_dump_json()
    rows.append(
        (
            "envelope: json.loads (reference)",
            _best_of(3, lambda: [json.loads(event) for _ in range(n)]),
        )
    )
    rows.append(
        (
            "envelope: wrap",
            _best_of(
                3,
                lambda: [
                    Envelope.wrap(record, source="330106/scjgj", operation="u", time=changed)
                    for _ in range(n)
                ],
            ),
        )
    )
    rows.append(("envelope: to_json", _best_of(3, lambda: [envelope.to_json() for _ in range(n)])))
    rows.append(
        (
            "envelope: from_json (record checked)",
            _best_of(3, lambda: [Envelope.from_json(event) for _ in range(n)]),
        )
    )
    rows.append(("envelope: to_amqp", _best_of(3, lambda: [envelope.to_amqp() for _ in range(n)])))
    rows.append(
        (
            "envelope: from_amqp (record checked)",
            _best_of(3, lambda: [Envelope.from_amqp(properties, body) for _ in range(n)]),
        )
    )
    rows.append(
        (
            "record: model_dump_json",
            _best_of(3, lambda: [record.model_dump_json() for _ in range(n)]),
        )
    )
    del plain

    print(f"{n} documents per run, best of 3")
    print(f"{'what':45} {'µs/doc':>9} {'docs/s':>10} {'× ref':>7}")
    reference = rows[0][1]
    for label, seconds in rows:
        if "(reference)" in label:
            reference = seconds
        per = seconds / n
        print(f"{label:45} {per * 1e6:9.1f} {1 / per:10.0f} {seconds / reference:7.1f}")

    text = (SAMPLES / "penalty_case.json").read_text(encoding="utf-8")
    tracemalloc.start()
    held = [validate_json("penalty_case", text) for _ in range(n)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    each = peak / len(held) / 1024
    print(f"memory: {n} penalty cases held, peak {peak / 2**20:.1f} MiB ({each:.1f} KiB each)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)
