"""bench/e2e.py's backfill builds what it claims: ten departments' own payloads, every record a
new change of a new case, a systems file the hub loads, and a sink that counts every record."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.systems import parse_systems
from mappings import SYSTEMS_ROOT, load_system

BENCH = Path(__file__).resolve().parent.parent / "bench" / "e2e.py"


@pytest.fixture(scope="module")
def e2e() -> Iterator[Any]:
    spec = importlib.util.spec_from_file_location("bench_e2e", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def feeds(e2e: Any) -> list[Any]:
    feeds: list[Any] = e2e.department_feeds()
    return feeds


def test_the_backfill_comes_from_the_ten_department_systems(feeds: list[Any]) -> None:
    assert len(feeds) == 10
    assert "national" not in {feed.system for feed in feeds}
    assert {feed.syntax for feed in feeds} == {"xml", "json"}


def test_each_copy_is_a_new_change_of_a_new_case(feeds: list[Any]) -> None:
    for feed in feeds:
        system = load_system(SYSTEMS_ROOT / feed.system)
        first = system.translate(feed.message_type, feed.payload(123_456_789, 3))
        later = system.translate(feed.message_type, feed.payload(200_000_000, 3))
        assert not first.errors and not later.errors, (feed.system, first.errors, later.errors)
        envelopes = [*first.envelopes, *later.envelopes]
        assert len(envelopes) == 6, feed.system
        for distinct in (
            {e.id for e in envelopes},
            {e.idempotencykey for e in envelopes},
            {e.data["penalty_id"] for e in envelopes},
        ):
            assert len(distinct) == 6, (feed.system, distinct)


def test_the_backfill_systems_file_loads_and_batches_national_only_when_asked(
    e2e: Any, feeds: list[Any]
) -> None:
    plain = e2e.backfill_document(feeds, "http://127.0.0.1:9/deliveries", None)
    config = parse_systems(plain)
    assert sorted(s.id for s in config.systems) == sorted([f.system for f in feeds] + ["national"])
    national = e2e.backfill_document(feeds, "http://127.0.0.1:9/deliveries", {"max_records": 5})
    assert "batch" not in plain["systems"][-1]["outbound"]
    assert national["systems"][-1]["outbound"]["batch"] == {"max_records": 5}


def test_the_sink_counts_single_records_and_batches(e2e: Any) -> None:
    assert e2e.arrival_ids({"id": "a", "data": {"id": "inner"}}) == ["a"]
    assert e2e.arrival_ids({"cd_id": "b", "punish_action_code": "x"}) == ["b"]
    assert e2e.arrival_ids([{"cd_id": "c"}, {"cd_id": "d"}]) == ["c", "d"]
    assert e2e.arrival_ids({"batchNo": "1", "data": [{"cd_id": "e"}, {"cd_id": "f"}]}) == [
        "e",
        "f",
    ]
