"""A journal of every kind of entry the overview counts, seeded: for the test that the database's
aggregates (`monitor.journal_figures`) answer what the Python readings answer, and its bench.

    for entry in seeded_entries(10_000, start=two_hours_ago):
        journal.record(**entry)

Several systems and targets; `received` entries with delays (integers and fractions),
completeness fields (some missing, some not integers), assumed fields (the `assumed` list a
mapping's `assume:` makes; some empty, some not a list: neither counted), the cross-checks that
warned and those that could not judge (`warnings`, `unchecked`), records refused by the
hub afterwards (`not_published`, some twice with another rule, some with no rule; some of them
with assumed fields), records rejected by rule (empty rule, no rule), refused payloads, and
delivery steps with and without a source system.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from monitor.journal import Step

SYSTEMS = ("eco-env-penalty", "agri-penalty", "complaint-platform", "national", "grassroots")
TARGETS = ("national", "grassroots_platform", "market_penalty")
ASSUMABLE = ("status", "township", "case_source")
CHECKS = ("catalogue-item-in-force", "inspector-certificate-valid", "random-inspection-has-plan")
OUT = (Step.DELIVERED, Step.RETRIED, Step.DEAD_LETTERED, Step.REPLAYED)


def seeded_entries(count: int, *, start: datetime, seed: int = 16) -> Iterator[dict[str, Any]]:
    """`count` entries, one every 50 ms from `start`, as keyword arguments of Journal.record."""
    rng = random.Random(seed)
    # Its own draws, so the rest of the journal is what it was before assumed values.
    assumptions = random.Random(seed + 1)
    checks = random.Random(seed + 2)
    received: list[tuple[str, str, str]] = []  # (system, receipt, message id)
    for n in range(count):
        at = start + timedelta(milliseconds=50 * n)
        system = rng.choice(SYSTEMS)
        receipt = f"r-{n // 4}"
        draw = rng.random()
        if draw < 0.45:
            detail: dict[str, Any] = {"subject": f"K-{n}", "operation": "insert"}
            if rng.random() < 0.9:
                delay = rng.uniform(0, 86_400)
                detail["delay_s"] = round(delay, 3) if rng.random() < 0.7 else int(delay)
            if rng.random() < 0.8:
                detail.update(filled=rng.randint(0, 12), optional=12)
            elif rng.random() < 0.5:
                detail.update(filled=1.5, optional=12)  # not counted: not an integer
            draw_assumed = assumptions.random()
            if draw_assumed < 0.3:
                detail["assumed"] = sorted(assumptions.sample(ASSUMABLE, assumptions.randint(1, 2)))
            elif draw_assumed < 0.35:
                detail["assumed"] = assumptions.choice(([], "status", {"status": "why"}))
            for listed in ("warnings", "unchecked"):
                if checks.random() < 0.2:
                    detail[listed] = sorted(checks.sample(CHECKS, checks.randint(1, 2)))
            message_id = f"m-{n}"
            received.append((system, receipt, message_id))
            yield {"step": Step.RECEIVED, "message_id": message_id, "receipt": receipt,
                   "system": system, "dataset": "penalty_case", "detail": detail,
                   "at": at}  # fmt: skip
        elif draw < 0.52 and received:
            # The hub refused a record received before (maybe twice, the newest rule counts).
            source, first, message_id = rng.choice(received[-50:])
            rule = rng.choice(("unroutable", "backpressure", "not_confirmed", "", None))
            detail = {} if rule is None else {"rule": rule}
            yield {"step": Step.NOT_PUBLISHED, "message_id": message_id, "receipt": first,
                   "system": source, "detail": detail, "at": at}  # fmt: skip
        elif draw < 0.62:
            rule = rng.choice(("mandatory", "lookup case_source", "date 'yyyyMMdd'", "", None))
            detail = {"index": n % 7, "errors": []}
            if rule is not None:
                detail["rule"] = rule
            yield {"step": Step.REJECTED, "receipt": receipt, "system": system,
                   "reason": f"{rule}: bad", "detail": detail, "at": at}  # fmt: skip
        elif draw < 0.64:
            yield {"step": Step.REJECTED, "receipt": receipt, "system": system,
                   "reason": "malformed: not XML",
                   "detail": {"payload": True, "kind": "malformed"}, "at": at}  # fmt: skip
        else:
            step = rng.choice(OUT)
            yield {"step": step, "message_id": f"m-{rng.randrange(n + 1)}",
                   "system": system if rng.random() < 0.9 else None,
                   "target": rng.choice(TARGETS), "attempt": rng.randint(1, 4),
                   "reason": "HTTP 503" if step is not Step.DELIVERED else None,
                   "detail": {}, "at": at}  # fmt: skip
