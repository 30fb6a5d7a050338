"""Queue depth and consumers read from the broker at scrape time, and an absent broker reported."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from monitor_support import Buses, buses_for, consume
from prometheus_client.parser import text_string_to_metric_families

from bus import Delivery, Outgoing, Topology
from monitor.metrics import exposition, scrape_registry
from monitor.queues import BrokerQueueStats, QueueCollector


def _scrape(collector: QueueCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = exposition(scrape_registry(collector))
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name in ("jghub_queue_messages", "jghub_queue_consumers", "jghub_broker_up")
    }


def _fill(buses: Buses) -> tuple[Topology, str, str]:
    """Target `busy`: 5 published, 1 dead-lettered, 1 parked in a 60 s retry tier, 3 ready."""
    busy, idle = f"busy_{uuid.uuid4().hex[:6]}", f"idle_{uuid.uuid4().hex[:6]}"
    topology = buses.topology({busy: ["penalty_case.#"], idle: ["nothing.#"]}, retry_delays=(60,))
    broker = buses.open(topology)
    broker.publish_many([Outgoing("penalty_case.330100.src", b"{}") for _ in range(5)])
    handled = 0

    def settle(delivery: Delivery) -> None:
        nonlocal handled
        handled += 1
        if handled == 1:
            delivery.dead_letter("HTTP 400", "deliver")
        elif handled == 2:
            delivery.retry("HTTP 503", "deliver")
        else:
            delivery.requeue()

    consume(broker, busy, settle, 2)
    return topology, busy, idle


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Buses]:
    opened = buses_for("embedded", tmp_path)
    yield opened
    opened.cleanup()


@pytest.fixture
def rabbitmq(tmp_path: Path) -> Iterator[Buses]:
    opened = buses_for("rabbitmq", tmp_path)
    yield opened
    opened.cleanup()


def test_embedded_broker_gives_ready_in_flight_retrying_and_dead(embedded: Buses) -> None:
    topology, busy, idle = _fill(embedded)
    broker = embedded.open(topology)
    seen = _scrape(QueueCollector(BrokerQueueStats(lambda: broker, topology)))
    assert seen[("jghub_broker_up", ())] == 1.0
    messages = {
        labels[0][1]: value
        for (name, labels), value in seen.items()
        if name == "jghub_queue_messages" and dict(labels)["target"] == busy
    }
    assert messages == {"ready": 3.0, "in_flight": 0.0, "retrying": 1.0, "dead": 1.0}
    assert seen[("jghub_queue_messages", (("state", "ready"), ("target", idle)))] == 0.0
    # the embedded broker cannot tell other processes' consumers: absent, not a false 0
    assert not any(name == "jghub_queue_consumers" for name, _ in seen)


@pytest.mark.rabbitmq
def test_rabbitmq_gives_ready_retrying_dead_and_consumers(rabbitmq: Buses) -> None:
    topology, busy, idle = _fill(rabbitmq)
    broker = rabbitmq.open(topology)
    collector = QueueCollector(BrokerQueueStats(lambda: broker, topology))
    stop = threading.Event()
    listener = rabbitmq.open(topology)
    consumer = threading.Thread(
        target=listener.consume, args=(idle, lambda d: d.ack()), kwargs={"stop": stop}
    )
    consumer.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            seen = _scrape(collector)
            attached = seen.get(("jghub_queue_consumers", (("target", idle),)))
            if attached == 1.0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        consumer.join(timeout=10)
    assert attached == 1.0
    assert seen[("jghub_broker_up", ())] == 1.0
    messages = {
        labels[0][1]: value
        for (name, labels), value in seen.items()
        if name == "jghub_queue_messages" and dict(labels)["target"] == busy
    }
    # RabbitMQ does not report unsettled messages: no in_flight series
    assert messages == {"ready": 3.0, "retrying": 1.0, "dead": 1.0}
    assert seen[("jghub_queue_consumers", (("target", busy),))] == 0.0


def test_an_absent_broker_says_so(embedded: Buses) -> None:
    topology, _busy, _idle = _fill(embedded)
    broker = embedded.open(topology)
    broker.close()  # the hub still holds a broker whose connection is gone
    closed = BrokerQueueStats(lambda: broker, topology)
    assert _scrape(QueueCollector(closed)) == {("jghub_broker_up", ()): 0.0}
    not_connected = BrokerQueueStats(lambda: None, topology)
    assert _scrape(QueueCollector(not_connected)) == {("jghub_broker_up", ()): 0.0}
