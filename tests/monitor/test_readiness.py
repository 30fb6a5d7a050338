"""Readiness names what is wrong: no bus, no topology, a queue gone, mappings missing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from broker_support import RABBITMQ_URL
from monitor_support import BACKENDS, Buses, buses_for

from monitor.readiness import check_readiness


@pytest.fixture(params=BACKENDS)
def buses(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Buses]:
    opened = buses_for(request.param, tmp_path)
    yield opened
    opened.cleanup()


def test_a_declared_hub_is_ready(buses: Buses) -> None:
    topology = buses.topology({"national": ["#"], "dept_scjg": ["penalty_case.#"]})
    broker = buses.open(topology)
    report = check_readiness(
        broker, topology, declared=True, systems=["a", "b"], mappings={"a": 1, "b": 2}
    )
    assert report.ready, report.problems
    assert report.checks == {"bus": True, "publisher": True, "topology": True, "mappings": True}
    assert report.problems == []


def test_each_problem_is_named(buses: Buses) -> None:
    topology = buses.topology({"national": ["#"]})
    broker = buses.open(topology)
    absent = check_readiness(
        None, topology, declared=False, systems=[], mappings={}, bus_problem="connection refused"
    )
    assert absent.checks["bus"] is False
    assert absent.problems == ["bus: connection refused"]
    pending = check_readiness(broker, topology, declared=False, systems=[], mappings={})
    assert pending.checks == {"bus": True, "publisher": True, "topology": False, "mappings": True}
    unmapped = check_readiness(
        broker, topology, declared=True, systems=["a", "b"], mappings={"a": 1}
    )
    assert not unmapped.ready and unmapped.problems == ["mappings: not loaded for b"]


@pytest.mark.rabbitmq
def test_a_queue_deleted_by_hand_is_named(tmp_path: Path) -> None:
    buses = buses_for("rabbitmq", tmp_path)
    try:
        topology = buses.topology({"national": ["#"], "dept_scjg": ["#"]})
        broker = buses.open(topology)
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        connection.channel().queue_delete(topology.target_queue("dept_scjg"))
        connection.close()
        report = check_readiness(broker, topology, declared=True, systems=[], mappings={})
        assert report.checks == {
            "bus": True,
            "publisher": True,
            "topology": False,
            "mappings": True,
        }
        (problem,) = report.problems
        assert problem.startswith("topology: target queues missing: dept_scjg")
        assert topology.target_queue("dept_scjg") in problem
    finally:
        buses.cleanup()


@pytest.mark.rabbitmq
def test_queues_no_consumer_reads_are_named_degraded_and_the_hub_stays_ready(
    tmp_path: Path,
) -> None:
    buses = buses_for("rabbitmq", tmp_path)
    stop = threading.Event()
    consuming: threading.Thread | None = None
    try:
        topology = buses.topology({"national": ["#"], "dept_scjg": ["penalty_case.#"]})
        broker = buses.open(topology)
        idle = check_readiness(broker, topology, declared=True, systems=[], mappings={})
        assert idle.ready, idle.problems
        assert len(idle.degraded) == 2
        for target in ("national", "dept_scjg"):
            (line,) = [line for line in idle.degraded if line.startswith(f"{target}: ")]
            assert topology.target_queue(target) in line
        # A worker starts reading national: only dept_scjg is left unread.
        reader = buses.open(topology)
        consuming = threading.Thread(
            target=reader.consume, args=("national", lambda delivery: delivery.ack()),
            kwargs={"stop": stop}, daemon=True,
        )  # fmt: skip
        consuming.start()
        deadline = time.monotonic() + 10
        while True:
            report = check_readiness(broker, topology, declared=True, systems=[], mappings={})
            if len(report.degraded) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert report.ready
        (line,) = report.degraded
        assert line.startswith("dept_scjg: ") and topology.target_queue("dept_scjg") in line
    finally:
        stop.set()
        if consuming is not None:
            consuming.join(timeout=10)
        buses.cleanup()


def test_the_embedded_bus_names_no_queue_degraded(tmp_path: Path) -> None:
    # It cannot see other processes' consumers, so it claims none missing rather than guess.
    buses = buses_for("embedded", tmp_path)
    try:
        topology = buses.topology({"national": ["#"]})
        broker = buses.open(topology)
        report = check_readiness(broker, topology, declared=True, systems=[], mappings={})
        assert report.ready and report.degraded == []
    finally:
        buses.cleanup()
