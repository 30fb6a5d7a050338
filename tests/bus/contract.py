"""The harness the broker contract suite runs on: one backend under test, its namespaces, helpers.

`BusUnderTest` opens brokers of one kind ("embedded" or "rabbitmq") on one URL, hands out
topologies in a unique namespace, and deletes everything they declared when the test ends.
Nothing here knows which backend it drives: the same calls run against both.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import bus
from bus import Broker, Delivery, Message, Target, Topology

CONSUMER_PROCESS = Path(__file__).with_name("consumer_process.py")

BACKENDS = [
    pytest.param("embedded", id="embedded"),
    pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.rabbitmq),
]


@dataclass
class BusUnderTest:
    """One backend under test: opens brokers on one URL, in namespaces it cleans up."""

    kind: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    brokers: list[Broker] = field(default_factory=list)
    topologies: list[Topology] = field(default_factory=list)

    def topology(
        self,
        routes: Mapping[str, Sequence[str]],
        *,
        retry_delays: Sequence[float] = (0.2, 0.4),
        prefetch: int = 50,
    ) -> Topology:
        """A topology in a fresh namespace: one target per entry of `routes`."""
        topology = Topology(
            namespace=f"t{uuid.uuid4().hex[:12]}",
            targets=[
                Target(
                    name=name,
                    routes=list(patterns),
                    retry_delays=list(retry_delays),
                    prefetch=prefetch,
                )
                for name, patterns in routes.items()
            ],
        )
        self.topologies.append(topology)
        return topology

    def connect(self) -> Broker:
        """A new broker (its own connection), closed at the end of the test."""
        broker = bus.connect(self.url, **self.options)
        self.brokers.append(broker)
        return broker

    def open(self, topology: Topology) -> Broker:
        """A new broker with `topology` declared."""
        broker = self.connect()
        broker.declare(topology)
        return broker

    def cleanup(self) -> None:
        for broker in self.brokers:
            with contextlib.suppress(bus.BusError):
                broker.close()
        if not self.topologies:
            return
        with bus.connect(self.url, **self.options) as broker:
            for topology in self.topologies:
                broker.delete_topology(topology)


Settle = Callable[[Delivery], None]


def ack(delivery: Delivery) -> None:
    delivery.ack()


def spread(*, waiting: str, dead: str) -> Settle:
    """Settle each delivery by its id: `waiting` to a retry tier, `dead` to the dead letters,
    every other one requeued: something in each place a broker keeps messages."""

    def settle(delivery: Delivery) -> None:
        if delivery.message.id == waiting:
            delivery.retry("HTTP 503", "deliver")
        elif delivery.message.id == dead:
            delivery.dead_letter("HTTP 400", "deliver")
        else:
            delivery.requeue()

    return settle


def collect(
    broker: Broker,
    target: str,
    count: int,
    *,
    settle: Settle = ack,
    timeout: float = 10.0,
    prefetch: int | None = None,
) -> list[Message]:
    """Consume until `count` deliveries arrived (or `timeout`); return their messages in order.

    `settle` decides what happens to each delivery (ack by default).
    """
    stop = threading.Event()
    seen: list[Message] = []

    def handle(delivery: Delivery) -> None:
        seen.append(delivery.message)
        try:
            settle(delivery)
        finally:
            if len(seen) >= count:
                stop.set()

    timer = threading.Timer(timeout, stop.set)
    timer.start()
    try:
        broker.consume(target, handle, stop=stop, prefetch=prefetch)
    finally:
        timer.cancel()
    return seen


def collect_all(broker: Broker, target: str, count: int, **options: Any) -> list[Message]:
    """Like `collect`, but fail the test when fewer than `count` arrived."""
    seen = collect(broker, target, count, **options)
    assert len(seen) == count, (
        f"expected {count} message(s) from target {target!r}, got {len(seen)}: "
        f"{[m.routing_key for m in seen][:20]}"
    )
    return seen


def nothing_arrives(broker: Broker, target: str, wait: float = 0.5) -> list[Message]:
    """Consume for `wait` seconds, acking; return what arrived (expected: nothing)."""
    return collect(broker, target, 1_000_000, timeout=wait)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def start_consumer_process(
    under_test: BusUnderTest, topology: Topology, target: str
) -> subprocess.Popen[str]:
    """A separate process consuming `target` that holds its first delivery without settling.

    It prints the message id as soon as the handler has it; the caller then kills it.
    """
    return subprocess.Popen(
        [
            sys.executable,
            str(CONSUMER_PROCESS),
            under_test.url,
            topology.model_dump_json(),
            target,
            json.dumps(under_test.options),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ids(messages: Iterable[Message]) -> list[str]:
    return [m.id for m in messages]
