"""The dead-letter console: filters by target, reason and age; dry runs; replays with a reason."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from monitor_support import BACKENDS, Buses, buses_for, consume, value

from bus import Broker, Delivery, Outgoing, Topology
from monitor.dead_letters import DeadLetterQuery, check_why, find, parse_age, replay
from monitor.errors import InvalidRequest
from monitor.journal import Journal, JournalOptions, Step
from monitor.observer import Observer

WHY = "national gateway back after maintenance"


@pytest.fixture(params=BACKENDS)
def buses(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Buses]:
    opened = buses_for(request.param, tmp_path)
    yield opened
    opened.cleanup()


def _dead(broker: Broker, target: str, reasons: list[str]) -> list[str]:
    """Publish one message per reason and dead-letter each with that reason; return their ids."""
    ids = broker.publish_many(
        [Outgoing(f"penalty_case.330100.src{n}", f"{{{n}}}".encode()) for n in range(len(reasons))]
    )
    by_id = dict(zip(ids, reasons, strict=True))

    def refuse(delivery: Delivery) -> None:
        delivery.dead_letter(by_id[delivery.message.id], "deliver")

    assert consume(broker, target, refuse, len(ids)) == len(ids)
    return ids


def _setup(buses: Buses) -> tuple[Topology, Broker, dict[str, list[str]]]:
    national, dept = f"nat_{uuid.uuid4().hex[:6]}", f"dept_{uuid.uuid4().hex[:6]}"
    topology = buses.topology({national: ["penalty_case.#"], dept: ["nothing.#"]})
    broker = buses.open(topology)
    ids = {
        "503": _dead(broker, national, ["HTTP 503 from national", "HTTP 503 from national"]),
        "400": _dead(broker, national, ["HTTP 400: xm missing"]),
    }
    return topology, broker, ids


def test_find_filters_by_target_reason_and_age(buses: Buses) -> None:
    topology, broker, ids = _setup(buses)
    national, dept = (t.name for t in topology.targets)
    assert len(find(broker, DeadLetterQuery(target=national))) == 3
    assert find(broker, DeadLetterQuery(target=dept)) == []
    by_reason = find(broker, DeadLetterQuery(target=national, reason="HTTP 503"))
    assert sorted(d.message.id for d in by_reason) == sorted(ids["503"])
    assert find(broker, DeadLetterQuery(target=national, older_than="1h")) == []
    time.sleep(1.1)
    assert len(find(broker, DeadLetterQuery(target=national, older_than="1s"))) == 3
    (one,) = find(broker, DeadLetterQuery(ids=ids["400"]))
    assert (one.target, one.reason) == (national, "HTTP 400: xm missing")


def test_a_dry_run_moves_nothing(buses: Buses, tmp_path: Path) -> None:
    topology, broker, ids = _setup(buses)
    national = topology.targets[0].name
    query = DeadLetterQuery(target=national, reason="503")
    with Journal(tmp_path / "j.sqlite3", JournalOptions(flush_interval_s=0.01)) as journal:
        plan = replay(broker, query, why=WHY, by="ops-li", observer=Observer(topology, journal),
                      dry_run=True)  # fmt: skip
        assert plan.dry_run and plan.replayed == []
        assert sorted(d.message.id for d in plan.matched) == sorted(ids["503"])
        assert len(find(broker, DeadLetterQuery(target=national))) == 3
        assert journal.count() == 0


def test_a_replay_is_recorded_with_its_reason(buses: Buses, tmp_path: Path) -> None:
    topology, broker, ids = _setup(buses)
    national = topology.targets[0].name
    query = DeadLetterQuery(target=national, reason="503")
    with Journal(tmp_path / "j.sqlite3", JournalOptions(flush_interval_s=0.01)) as journal:
        observer = Observer(topology, journal)
        plan = replay(broker, query, why=f"  {WHY} ", by="ops-li", observer=observer)
        traces = {message_id: journal.trace(message_id) for message_id in ids["503"]}
    assert sorted(plan.replayed) == sorted(ids["503"])
    for steps in traces.values():
        (step,) = steps
        assert step.step is Step.REPLAYED
        assert (step.reason, step.target, step.detail["by"]) == (WHY, national, "ops-li")
        assert step.detail["dead_reason"] == "HTTP 503 from national"
    assert value("jghub_replayed_total", target=national) == 2
    (left,) = find(broker, DeadLetterQuery(target=national))
    assert left.message.id == ids["400"][0]
    back: list[str] = []

    def take(delivery: Delivery) -> None:
        back.append(delivery.message.id)
        delivery.ack()

    assert consume(broker, national, take, 2) == 2
    assert sorted(back) == sorted(ids["503"])


def test_a_replay_needs_a_reason_and_a_filter(buses: Buses) -> None:
    topology, broker, _ = _setup(buses)
    national = topology.targets[0].name
    with pytest.raises(InvalidRequest, match="needs a reason"):
        replay(broker, DeadLetterQuery(target=national), why="  ", by="ops")
    with pytest.raises(InvalidRequest, match="at least one filter"):
        replay(broker, DeadLetterQuery(), why=WHY, by="ops")
    assert len(find(broker, DeadLetterQuery(target=national))) == 3


def test_ages_and_reasons_are_checked() -> None:
    assert parse_age("90s") == timedelta(seconds=90)
    assert parse_age("2h") == timedelta(hours=2)
    assert parse_age("1.5d") == timedelta(hours=36)
    with pytest.raises(InvalidRequest, match="s, m, h, d or w"):
        parse_age("yesterday")
    with pytest.raises(ValueError, match="s, m, h, d or w"):
        DeadLetterQuery(older_than="3 weeks")
    assert check_why("  target fixed  ") == "target fixed"
    with pytest.raises(InvalidRequest):
        check_why(None)
