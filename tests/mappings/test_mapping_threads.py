"""A compiled system is immutable and shared safely by threads translating at the same time."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest
from mapping_support import GRASSROOTS, PENALTY, sample
from pydantic import ValidationError

from mappings.system import SystemMappings


def test_threads_share_one_compiled_system(
    penalty_system: SystemMappings, grassroots_system: SystemMappings
) -> None:
    batch = sample(PENALTY, "case_batch", "valid-batch.xml")
    bad_batch = sample(PENALTY, "case_batch", "invalid-records.xml")
    events = sample(GRASSROOTS, "event_report", "valid-events.json")

    def work(round_: int) -> tuple[list[bytes], list[str], list[bytes], list[str]]:
        good = penalty_system.translate("case_batch", batch)
        bad = penalty_system.translate("case_batch", bad_batch)
        json_events = grassroots_system.translate("event_report", events)
        rendered = [penalty_system.render("case_return", e) for e in good.envelopes]
        return (
            [e.to_json() for e in good.envelopes],
            [str(error) for error in bad.errors],
            rendered,
            [e.subject for e in json_events.envelopes],
        )

    reference = work(0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(64)))
    assert all(result == reference for result in results)
    assert len(reference[0]) == 3 and len(reference[1]) == 6


def test_compiled_mappings_cannot_be_changed(penalty_system: SystemMappings) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        penalty_system.inbound = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        penalty_system.inbound["x"] = penalty_system.inbound["case_batch"]  # type: ignore[index]
    translation = penalty_system.inbound_mapping("case_batch")
    with pytest.raises(AttributeError, match="compiled and cannot be changed"):
        translation.message_type = "x"
    with pytest.raises(ValidationError, match="frozen"):
        translation.mapping.records = "/x"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="compiled and cannot be changed"):
        penalty_system.outbound_mapping("task_push").message_type = "x"
