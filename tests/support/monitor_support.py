"""What the monitor tests share: both buses, consuming with a handler, metric samples."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq

import bus
from bus import Broker, Delivery, Outgoing, Target, Topology
from monitor.metrics import HUB_REGISTRY
from standard.envelope import Envelope

BACKENDS = [
    pytest.param("embedded", id="embedded"),
    pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.rabbitmq),
]
REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "mappings" / "systems"


@dataclass
class Buses:
    """Brokers of one backend in fresh namespaces, deleted after the test."""

    kind: str
    url: str
    brokers: list[Broker] = field(default_factory=list)
    topologies: list[Topology] = field(default_factory=list)

    def topology(
        self, routes: Mapping[str, Sequence[str]], *, retry_delays: Sequence[float] = (0.2,)
    ) -> Topology:
        topology = Topology(
            namespace=f"m{uuid.uuid4().hex[:12]}",
            targets=[
                Target(name=name, routes=list(patterns), retry_delays=list(retry_delays))
                for name, patterns in routes.items()
            ],
        )
        self.topologies.append(topology)
        return topology

    def open(self, topology: Topology) -> Broker:
        broker = bus.connect(self.url)
        self.brokers.append(broker)
        broker.declare(topology)
        return broker

    def cleanup(self) -> None:
        for broker in self.brokers:
            with contextlib.suppress(bus.BusError):
                broker.close()
        if self.topologies:
            with bus.connect(self.url) as broker:
                for topology in self.topologies:
                    broker.delete_topology(topology)


OPERATOR_SYSTEMS = """\
systems:
  - id: grassroots-platform
    name_zh: 基层治理四平台
    auth: {scheme: api_key, key_env: JGHUB_TEST_UNUSED_KEY}
    inbound:
      - {adapter: rest_push, message_type: event_report}
    outbound: {adapter: outbox, render: {penalty_case: cloudevent}}
    routes: ["penalty_case.#"]
"""
"""One system receiving penalty cases (target grassroots-platform): for the operators' commands."""


def operator_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, amqp_url: str | None = None
) -> Path:
    """A data folder (returned), OPERATOR_SYSTEMS as the systems file and a fresh bus namespace,
    named in JGHUB_* variables as `jghub` reads them; the embedded bus unless `amqp_url`."""
    systems = tmp_path / "systems.yaml"
    systems.write_text(OPERATOR_SYSTEMS, encoding="utf-8")
    data = tmp_path / "var"
    monkeypatch.setenv("JGHUB_DATA_DIR", str(data))
    monkeypatch.setenv("JGHUB_SYSTEMS_FILE", str(systems))
    monkeypatch.setenv("JGHUB_NAMESPACE", f"cli{uuid.uuid4().hex[:8]}")
    if amqp_url:
        monkeypatch.setenv("JGHUB_AMQP_URL", amqp_url)
    else:
        monkeypatch.delenv("JGHUB_AMQP_URL", raising=False)
    monkeypatch.delenv("JGHUB_JOURNAL_FILE", raising=False)
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps at 80 columns when not on a terminal
    return data


def buses_for(kind: str, tmp_path: Path) -> Buses:
    if kind == "rabbitmq":
        require_rabbitmq()
        return Buses(kind, RABBITMQ_URL)
    return Buses(kind, f"sqlite:///{tmp_path / 'bus.sqlite3'}")


def consume(
    broker: Broker,
    target: str,
    handler: Callable[[Delivery], None],
    count: int,
    *,
    timeout: float = 15.0,
) -> int:
    """Run `handler` on deliveries of `target` until it has seen `count` (or `timeout`)."""
    stop = threading.Event()
    seen = 0

    def handle(delivery: Delivery) -> None:
        nonlocal seen
        try:
            handler(delivery)
        finally:
            seen += 1
            if seen >= count:
                stop.set()

    timer = threading.Timer(timeout, stop.set)
    timer.start()
    try:
        broker.consume(target, handle, stop=stop)
    finally:
        timer.cancel()
    return seen


def value(name: str, **labels: str) -> float:
    """The current value of one sample of the hub's registry (0 when it does not exist yet)."""
    found = HUB_REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


def outgoing(envelope: Envelope, system: str, **headers: Any) -> Outgoing:
    """The message the ingress would publish for `envelope` from `system`."""
    properties, body = envelope.to_amqp()
    merged = {k: v for k, v in properties["headers"].items() if isinstance(v, str | int | float)}
    merged.update(headers)
    region = envelope.data.get("region_code") or "000000"
    return Outgoing(
        routing_key=f"{envelope.spec.name}.{region}.{system}",
        body=body,
        headers=merged,
        message_id=envelope.id,
        idempotency_key=envelope.idempotencykey,
    )


def now() -> datetime:
    return datetime.now(UTC)
