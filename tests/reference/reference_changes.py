"""Changes of the three reference lists as canonical envelopes, built from the standard's
sample records (tests/standard/samples) with the fields a test sets."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from standard.datasets import validate
from standard.envelope import Envelope, Operation

SAMPLES = Path(__file__).parents[1] / "standard" / "samples"
SOURCE = "330000/test"


def change(dataset: str, at: str, operation: str = "update", **fields: Any) -> Envelope:
    """A change of the sample record of `dataset` made at `at` (ISO 8601 with offset), its
    `updated_time` and the given fields set; a delete carries only the record key."""
    data = json.loads((SAMPLES / f"{dataset}.json").read_text(encoding="utf-8"))
    data.update(fields)
    if "updated_time" in data:  # the lists' datasets have it; others (a complaint) do not
        data["updated_time"] = at
    record = validate(dataset, data)
    return Envelope.wrap(
        record, source=SOURCE, operation=Operation(operation), time=datetime.fromisoformat(at)
    )
