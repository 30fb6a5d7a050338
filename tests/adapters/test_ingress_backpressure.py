"""Back-pressure in the inbound path: refused before publishing, by target, counted, journalled."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_harness import BACKENDS, require_backend, sample

import bus
from adapters.backpressure import BackPressure
from adapters.errors import IngressOverloaded
from adapters.ingress import Ingress
from bus import Broker, Delivery, Target, Topology
from mappings import load_all
from monitor import metrics
from monitor.journal import Journal, JournalOptions, Step
from monitor.observer import Observer

MAPPINGS = load_all()
SYSTEMS = {
    "grassroots-platform": MAPPINGS["grassroots-platform"],
    "eco-env-penalty": MAPPINGS["eco-env-penalty"],
}
CASES = sample("eco-env-penalty", "case_batch", "valid-batch")  # three penalty cases
EVENTS = sample("grassroots-platform", "event_report", "valid-events")


@pytest.fixture(params=BACKENDS)
def topology_and_broker(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Topology, Broker]]:
    url = require_backend(request.param) or f"sqlite:///{tmp_path / 'bus.sqlite3'}"
    topology = Topology(
        namespace=f"t{uuid.uuid4().hex[:12]}",
        targets=[
            Target(name="cases", routes=["penalty_case.#"]),
            Target(name="events", routes=["grassroots_event.#"]),
        ],
    )
    opened = bus.connect(url)
    opened.declare(topology)
    yield topology, opened
    if request.param == "rabbitmq":
        opened.delete_topology(topology)
    opened.close()


def _refusals() -> float:
    return metrics.sample_total(
        "jghub_backpressure_refused_total", system="eco-env-penalty", target="cases"
    )


def test_a_payload_for_a_full_target_is_refused_before_publishing(
    topology_and_broker: tuple[Topology, Broker], tmp_path: Path
) -> None:
    topology, broker = topology_and_broker
    journal = Journal(tmp_path / "journal.sqlite3", JournalOptions(flush_interval_s=0.01))
    guard = BackPressure(topology, max_ready=2, refresh_s=60, retry_after_s=7)
    ingress = Ingress(broker, SYSTEMS, observer=Observer(topology, journal), backpressure=guard)
    try:
        assert ingress.accept("eco-env-penalty", "case_batch", CASES).accepted == 3
        guard.refresh()
        assert guard.full == {"cases": 3}
        before = _refusals()

        with pytest.raises(IngressOverloaded) as refused:
            ingress.accept("eco-env-penalty", "case_batch", CASES)
        error = refused.value
        assert (error.target, error.ready, error.mark, error.retry_after) == ("cases", 3, 2, 7)
        assert error.kind == "backpressure" and "high-water mark of 2" in str(error)
        assert broker.depth("cases") == 3  # nothing of the refused payload was published
        assert _refusals() == before + 1

        # Entries journalled as received end with not_published, saying why.
        assert journal.flush()
        held = [
            entry
            for entry in journal.entries(steps=[Step.NOT_PUBLISHED], system="eco-env-penalty")
            if entry.detail.get("rule") == "backpressure"
        ]
        assert len(held) == 3 and {e.target for e in held} == {"cases"}
        assert all("high-water mark" in (e.reason or "") for e in held)

        # Records bound for another target are not held back.
        assert ingress.accept("grassroots-platform", "event_report", EVENTS).accepted == 3

        # Once the queue is back at the mark, the payload is taken.
        stop = threading.Event()

        def take_one(delivery: Delivery) -> None:
            delivery.ack()
            stop.set()

        broker.consume("cases", take_one, stop=stop, prefetch=1)
        guard.refresh()
        assert guard.full == {"events": 3}  # the events sent above: full, but not for cases
        assert ingress.accept("eco-env-penalty", "case_batch", CASES).accepted == 3
    finally:
        ingress.attach(None)
        journal.close()


def test_a_mark_of_zero_turns_back_pressure_off(
    topology_and_broker: tuple[Topology, Broker],
) -> None:
    topology, broker = topology_and_broker
    guard = BackPressure(topology, max_ready=0)
    ingress = Ingress(broker, SYSTEMS, backpressure=guard)
    for _ in range(2):
        assert ingress.accept("eco-env-penalty", "case_batch", CASES).accepted == 3
    guard.refresh(broker)
    assert guard.full == {}
    assert broker.depth("cases") == 6


def test_bad_settings_are_refused_with_the_values() -> None:
    topology = Topology(namespace="t", targets=[])
    with pytest.raises(ValueError, match="max_ready >= 0"):
        BackPressure(topology, max_ready=-1)
