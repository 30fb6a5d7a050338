"""The one inbound path: translate, quarantine the refused, publish with confirms; both buses."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from broker_support import drain
from hub_harness import BACKENDS, require_backend, sample

import bus
from adapters.errors import AdapterConfigError, IngressUnavailable
from adapters.ingress import Ingress, IngressResult
from adapters.routing import routing_key
from bus import Broker, Target, Topology
from bus.rabbitmq import RabbitBroker
from mappings import load_all
from standard.envelope import Envelope

MAPPINGS = load_all()
SYSTEMS = {
    "grassroots-platform": MAPPINGS["grassroots-platform"],
    "eco-env-penalty": MAPPINGS["eco-env-penalty"],
    "agri-penalty": MAPPINGS["agri-penalty"],
}


@pytest.fixture(params=BACKENDS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    url = require_backend(request.param) or f"sqlite:///{tmp_path / 'bus.sqlite3'}"
    topology = Topology(
        namespace=f"t{uuid.uuid4().hex[:12]}",
        targets=[
            Target(name="cases", routes=["penalty_case.#"], retry_delays=[1.0]),
            Target(name="events", routes=["grassroots_event.*.grassroots-platform"]),
            Target(name="tasks", routes=["collaboration_task.*.agri-penalty"]),
        ],
    )
    opened = bus.connect(url)
    opened.declare(topology)
    yield opened
    if request.param == "rabbitmq":
        opened.delete_topology(topology)
    opened.close()


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
    assert kept[0].headers["rejected_count"] == len(rejected) == 3
    assert kept[0].headers["rejected_records"] == "1-3"  # records 2 to 4 of the batch
    assert first_error["rule"] in kept[0].reason
    assert len(drain(broker, "cases", 1)) == 1


def test_a_payload_of_30000_rejected_records_is_quarantined_whole_with_its_reasons(
    broker: Broker,
) -> None:
    # Issue 12: every rejected record's index went into one quarantine header, which RabbitMQ
    # refused as a frame too large; the publisher looped until its timeout, answering 500.
    records = 30_000
    payload = json.dumps({"batchNo": "2026021500004", "records": [{}] * records}).encode()
    ingress = Ingress(broker, SYSTEMS)
    result = ingress.accept("agri-penalty", "case_records", payload)
    assert (result.accepted, result.rejected, result.failed) == (0, records, 0)
    assert all(answer.errors for answer in result.records)
    assert result.records[-1].errors[0]["location"] == "records[29999]"
    (kept,) = [q for q in broker.quarantined() if q.id == result.quarantine_id]
    assert kept.body == payload
    assert kept.headers["rejected_count"] == records
    assert kept.headers["rejected_records"] == "0-29999"
    assert kept.reason.startswith("record 1 at records[0]: envelope.operation: rule")
    assert "rule 'operation'" in kept.reason
    assert kept.reason.endswith(f"... ({records} problems in all)")
    assert broker.depth("cases") == 0


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


def test_a_joint_task_with_a_shanghai_region_passes_and_an_abolished_code_is_refused(
    broker: Broker,
) -> None:
    # Issue #17 item 6: regions outside Zhejiang were refused as outside the table's coverage.
    payload = json.loads(sample("agri-penalty", "task_feedback", "valid-feedback"))
    joint, later = payload["records"][:2]
    joint["areaCodes"] = ["310101", "330411"]  # 上海市黄浦区 with 嘉兴市秀洲区
    later["areaCodes"] = ["310230"]  # 崇明县: in MCA's 2015 year-end list, not 2016's
    ingress = Ingress(broker, SYSTEMS)
    result = ingress.accept("agri-penalty", "task_feedback", json.dumps(payload).encode())
    first, second = result.records[:2]
    assert first.status == "accepted", first.errors
    (message,) = drain(broker, "tasks", 1)
    assert message.id == first.message_id
    assert message.routing_key == "collaboration_task.310101.agri-penalty"
    assert second.status == "rejected" and second.message_id is None
    (error,) = second.errors
    assert error["rule"] == "region in force"
    assert "崇明县 is listed in MCA's 2015 year-end list, not in 2016's" in error["message"]
    assert "not valid on 2026-03-" in error["message"]


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


def test_a_refused_payload_the_bus_cannot_keep_is_unavailable_with_the_reason() -> None:
    url = require_backend("rabbitmq")
    everything = Target(name="e", routes=["#"])
    topology = Topology(namespace=f"t{uuid.uuid4().hex[:12]}", targets=[everything])
    # A broker whose max_message_size is below the payload: the quarantine cannot take it.
    with bus.connect(url, max_message_bytes=1024) as small:
        small.declare(topology)
        try:
            ingress = Ingress(small, SYSTEMS)
            payload = sample("eco-env-penalty", "case_batch", "invalid-records")
            with pytest.raises(IngressUnavailable, match="max_message_size of 1024") as refused:
                ingress.accept("eco-env-penalty", "case_batch", payload)
            assert "nothing of it was accepted" in str(refused.value)
        finally:
            small.delete_topology(topology)


def test_an_unconfigured_system_or_type_is_a_configuration_error(tmp_path: Path) -> None:
    ingress = Ingress(None, SYSTEMS)
    with pytest.raises(AdapterConfigError, match="knows no system 'national'"):
        ingress.accept("national", "case_batch", b"<x/>")
    with pytest.raises(AdapterConfigError, match="no inbound message type 'case_return'"):
        ingress.accept("eco-env-penalty", "case_return", b"<x/>")


# --- many requests at once: one publisher, confirms pipelined, each request its own answer


def single_event(number: int, county: str = "330106") -> bytes:
    """A grassroots push with one event, numbered `number`, in `county` (its routing region)."""
    document = json.loads(sample("grassroots-platform", "event_report", "valid-events"))
    event = document["data"]["events"][0]
    area = dict(event["area"], countyCode=county, gridCode=f"{county}003012")
    document["data"]["events"] = [dict(event, eventId=f"SJ{county}20260301{number:04d}", area=area)]
    document["data"]["total"] = 1
    return json.dumps(document, ensure_ascii=False).encode()


def accept_at_once(ingress: Ingress, payloads: list[bytes]) -> list[object]:
    """Each payload from its own thread, all released together; results in payload order."""
    results: list[object] = [None] * len(payloads)
    start = threading.Barrier(len(payloads))

    def push(index: int) -> None:
        start.wait(10)
        try:
            results[index] = ingress.accept("grassroots-platform", "event_report", payloads[index])
        except Exception as error:  # shown by the assertions below
            results[index] = error

    threads = [threading.Thread(target=push, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_concurrent_requests_each_get_their_own_confirmed_message(broker: Broker) -> None:
    results = accept_at_once(Ingress(broker, SYSTEMS), [single_event(n) for n in range(12)])
    ids = []
    for number, result in enumerate(results):
        assert isinstance(result, IngressResult), result
        (answer,) = result.records
        assert answer.status == "accepted" and answer.subject == f"SJ33010620260301{number:04d}"
        ids.append(answer.message_id)
    assert len(set(ids)) == 12
    messages = drain(broker, "events", 12)
    assert sorted(m.id for m in messages) == sorted(ids)


def test_concurrent_requests_share_one_publisher_and_its_confirm_window() -> None:
    url = require_backend("rabbitmq")
    topology = Topology(
        namespace=f"t{uuid.uuid4().hex[:12]}",
        targets=[Target(name="events", routes=["grassroots_event.#"])],
    )
    with bus.connect(url) as broker:
        broker.declare(topology)
        try:
            ingress = Ingress(broker, SYSTEMS)
            assert isinstance(broker, RabbitBroker)
            publisher = broker._confirmed()
            link = broker._publisher_link
            assert link is not None
            # Keep the publisher's I/O thread busy: eight requests hand their messages over and
            # wait; the thread then sends them together, each waiting only for its own confirm.
            busy = threading.Event()
            link.call(lambda: busy.wait(10))
            outcome: list[list[object]] = []
            pushing = threading.Thread(
                target=lambda: outcome.append(
                    accept_at_once(ingress, [single_event(n) for n in range(8)])
                )
            )
            pushing.start()
            deadline = time.monotonic() + 10
            while len(publisher._outbox) < 8 and time.monotonic() < deadline:
                time.sleep(0.01)
            waiting = len(publisher._outbox)
            busy.set()
            pushing.join(30)
            assert waiting == 8  # all eight requests' messages queued on the one publisher
            (results,) = outcome
            assert all(isinstance(r, IngressResult) and r.accepted == 1 for r in results)
            assert link.opened_count == 1  # one connection carried them all
        finally:
            broker.delete_topology(topology)


def test_a_broker_nack_fails_only_that_request() -> None:
    url = require_backend("rabbitmq")
    topology = Topology(
        namespace=f"t{uuid.uuid4().hex[:12]}",
        targets=[Target(name="events", routes=["grassroots_event.#"])],
    )
    full = f"{topology.namespace}.full"
    with bus.connect(url) as broker:
        broker.declare(topology)
        # A queue that takes nothing (max length 0, reject-publish) bound to one region: the
        # broker nacks every message routed there, and only those.
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        channel.queue_declare(
            full, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}, auto_delete=True
        )
        channel.queue_bind(full, topology.exchange, "grassroots_event.330110.#")
        try:
            payloads = [single_event(n) for n in range(7)] + [single_event(7, county="330110")]
            results = accept_at_once(Ingress(broker, SYSTEMS), payloads)
            assert all(isinstance(r, IngressResult) for r in results), results
            *confirmed, nacked = [r for r in results if isinstance(r, IngressResult)]
            assert all(r.accepted == 1 and r.failed == 0 for r in confirmed)
            assert (nacked.accepted, nacked.failed) == (0, 1)
            (answer,) = nacked.records
            assert answer.status == "failed" and answer.message_id is None
            assert "basic.nack" in answer.errors[0]["reason"]
            ids = {r.records[0].message_id for r in confirmed}
            # The seven confirmed ones are stored (the nacked one may be too, in the queue that
            # took it: the sender was told to send it again, and targets drop the duplicate).
            stored = broker.depth("events")
            assert stored in (7, 8)
            assert {m.id for m in drain(broker, "events", stored)} >= ids
        finally:
            channel.queue_delete(full)
            connection.close()
            broker.delete_topology(topology)
