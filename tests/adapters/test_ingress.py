"""The one inbound path: translate, quarantine the refused, publish with confirms; both buses."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_harness import BACKENDS, require_backend, sample

import bus
from adapters.errors import AdapterConfigError, IngressUnavailable
from adapters.ingress import Ingress
from adapters.routing import routing_key
from bus import Broker, Delivery, Message, Target, Topology
from mappings import load_all
from standard.envelope import Envelope

MAPPINGS = load_all()
SYSTEMS = {
    "grassroots-platform": MAPPINGS["grassroots-platform"],
    "eco-env-penalty": MAPPINGS["eco-env-penalty"],
}


@pytest.fixture(params=BACKENDS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    url = require_backend(request.param) or f"sqlite:///{tmp_path / 'bus.sqlite3'}"
    topology = Topology(
        namespace=f"t{uuid.uuid4().hex[:12]}",
        targets=[
            Target(name="cases", routes=["penalty_case.#"], retry_delays=[1.0]),
            Target(name="events", routes=["grassroots_event.*.grassroots-platform"]),
        ],
    )
    opened = bus.connect(url)
    opened.declare(topology)
    yield opened
    if request.param == "rabbitmq":
        opened.delete_topology(topology)
    opened.close()


def drain(broker: Broker, target: str, count: int) -> list[Message]:
    got: list[Message] = []
    stop = threading.Event()

    def handle(delivery: Delivery) -> None:
        got.append(delivery.message)
        delivery.ack()
        if len(got) >= count:
            stop.set()

    thread = threading.Thread(
        target=broker.consume, args=(target, handle), kwargs={"stop": stop}, daemon=True
    )
    thread.start()
    stop.wait(15)
    stop.set()
    thread.join(10)
    return got


def test_a_valid_batch_is_published_and_each_record_answered(broker: Broker) -> None:
    ingress = Ingress(broker, SYSTEMS)
    result = ingress.accept(
        "eco-env-penalty", "case_batch", sample("eco-env-penalty", "case_batch", "valid-batch")
    )
    assert (result.accepted, result.rejected, result.failed) == (3, 0, 0)
    assert result.complete and result.quarantine_id is None
    assert [answer.index for answer in result.records] == [0, 1, 2]
    messages = drain(broker, "cases", 3)
    assert sorted(m.id for m in messages) == sorted(a.message_id or "" for a in result.records)
    for message in messages:
        envelope = Envelope.from_amqp(
            {"content_type": message.content_type, "headers": message.headers}, message.body
        )
        # The message on the bus is the envelope, whole: attributes, record, lineage.
        assert envelope.id == message.id
        assert envelope.idempotencykey == message.idempotency_key
        assert envelope.correlationid == result.receipt_id
        assert envelope.lineagesystem == "eco-env-penalty"
        assert message.routing_key == routing_key(envelope, "eco-env-penalty")
        region = envelope.data.get("region_code", "000000")  # a delete carries only its key
        assert message.routing_key == f"penalty_case.{region}.eco-env-penalty"
        assert region.startswith("33") or envelope.operation == "delete"


def test_rejected_records_are_answered_with_the_mapping_error_and_quarantined(
    broker: Broker,
) -> None:
    ingress = Ingress(broker, SYSTEMS)
    payload = sample("eco-env-penalty", "case_batch", "invalid-records")
    result = ingress.accept("eco-env-penalty", "case_batch", payload)
    assert result.accepted == 1 and result.rejected == 3
    rejected = [answer for answer in result.records if answer.status == "rejected"]
    assert all(answer.message_id is None and answer.errors for answer in rejected)
    first_error = rejected[0].errors[0]
    assert {"field", "rule", "location", "value", "message"} <= set(first_error)
    assert first_error["location"].startswith("(/cf:AJPC/cf:AJ)[")
    kept = [q for q in broker.quarantined() if q.id == result.quarantine_id]
    assert len(kept) == 1
    assert kept[0].body == payload
    assert kept[0].source == "eco-env-penalty"
    assert kept[0].headers["rejected_records"] == ",".join(str(a.index) for a in rejected)
    assert first_error["rule"] in kept[0].reason
    assert len(drain(broker, "cases", 1)) == 1


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("invalid-entity-bomb", "forbidden-markup"),
        ("invalid-truncated", "malformed"),
        ("invalid-encoding", "encoding"),
    ],
)
def test_an_unreadable_payload_is_quarantined_with_its_reason(
    broker: Broker, name: str, kind: str
) -> None:
    ingress = Ingress(broker, SYSTEMS)
    payload = sample("eco-env-penalty", "case_batch", name)
    result = ingress.accept("eco-env-penalty", "case_batch", payload)
    assert result.payload_error is not None and result.payload_error.kind == kind
    assert result.records == [] and not result.complete
    kept = [q for q in broker.quarantined() if q.id == result.quarantine_id]
    assert kept and kept[0].body == payload and kind in kept[0].reason
    assert broker.depth("cases") == 0


def test_a_record_no_route_wants_is_rejected_and_kept(broker: Broker) -> None:
    # Task feedback (collaboration_task) has no route in this topology.
    ingress = Ingress(broker, SYSTEMS)
    payload = sample("eco-env-penalty", "task_feedback", "valid-feedback")
    result = ingress.accept("eco-env-penalty", "task_feedback", payload)
    assert result.accepted == 0 and result.rejected == 2
    assert {answer.errors[0]["kind"] for answer in result.records} == {"unroutable"}
    kept = [q for q in broker.quarantined() if q.id == result.quarantine_id]
    assert kept and "collaboration_task." in kept[0].reason


def test_the_same_batch_twice_keeps_its_idempotency_keys(broker: Broker) -> None:
    ingress = Ingress(broker, SYSTEMS)
    payload = sample("grassroots-platform", "event_report", "valid-events")
    first = ingress.accept("grassroots-platform", "event_report", payload)
    second = ingress.accept("grassroots-platform", "event_report", payload)
    assert first.accepted == second.accepted == 3
    messages = drain(broker, "events", 6)
    keys = [m.idempotency_key for m in messages]
    # The bus carries both; targets drop the second by its key, which is the same each time.
    assert len(keys) == 6 and len(set(keys)) == 3


def test_without_a_bus_nothing_is_accepted() -> None:
    ingress = Ingress(None, SYSTEMS)
    payload = sample("grassroots-platform", "event_report", "valid-events")
    with pytest.raises(IngressUnavailable, match="not connected"):
        ingress.accept("grassroots-platform", "event_report", payload)


def test_a_closed_bus_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    opened = bus.connect(f"sqlite:///{tmp_path / 'bus.sqlite3'}")
    opened.declare(Topology(namespace="closed", targets=[Target(name="e", routes=["#"])]))
    opened.close()
    ingress = Ingress(opened, SYSTEMS)
    payload = sample("grassroots-platform", "event_report", "valid-events")
    with pytest.raises(IngressUnavailable, match="cannot be reached"):
        ingress.accept("grassroots-platform", "event_report", payload)


def test_an_unconfigured_system_or_type_is_a_configuration_error(tmp_path: Path) -> None:
    ingress = Ingress(None, SYSTEMS)
    with pytest.raises(AdapterConfigError, match="knows no system 'national'"):
        ingress.accept("national", "case_batch", b"<x/>")
    with pytest.raises(AdapterConfigError, match="no inbound message type 'case_return'"):
        ingress.accept("eco-env-penalty", "case_return", b"<x/>")
