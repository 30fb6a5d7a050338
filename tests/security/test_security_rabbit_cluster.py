"""The bus on a RabbitMQ cluster: a delivery limit that dead-letters instead of dropping, existing
queues declared without it, and a broker URL naming several nodes.

Single-node tests: they run on the test broker (JGHUB_TEST_AMQP_URL), each in its own namespace.
The three-node cluster itself is proven in tests/faults/test_rabbit_cluster.py.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pika
import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq

import bus
from bus import (
    Broker,
    ConfigurationError,
    Delivery,
    Outgoing,
    Target,
    Topology,
    TopologyError,
    node_urls,
)
from bus.rabbitmq import DELIVERY_LIMIT_STAGE
from hub.app import _safe_url
from hub.settings import HubSettings

pytestmark = pytest.mark.rabbitmq

LIMIT = 2
WAIT_S = 30.0  # only keeps a broken broker from hanging the suite


@pytest.fixture
def topology() -> Iterator[Topology]:
    """A fresh namespace with one target, deleted afterwards."""
    require_rabbitmq()
    declared = Topology(
        namespace=f"t{uuid.uuid4().hex[:12]}",
        targets=[Target(name="national", routes=["penalty_case.#"], retry_delays=[0.2])],
    )
    yield declared
    with bus.connect(RABBITMQ_URL) as broker:
        broker.delete_topology(declared)


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def consume_in_background(
    broker: Broker, handler: Callable[[Delivery], None]
) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(
        target=broker.consume, args=("national", handler), kwargs={"stop": stop}, daemon=True
    )
    thread.start()
    return stop, thread


def test_a_message_requeued_past_the_delivery_limit_ends_in_the_dead_letters_with_the_reason(
    topology: Topology,
) -> None:
    with bus.connect(RABBITMQ_URL, delivery_limit=LIMIT) as broker:
        broker.declare(topology)
        poison = broker.publish(Outgoing("penalty_case.330100.a", b"<case/>"))
        handed: list[str] = []

        def crash(delivery: Delivery) -> None:
            handed.append(delivery.message.id)
            delivery.requeue()  # what a consumer that never settles it amounts to

        stop, thread = consume_in_background(broker, crash)
        try:
            arrived = wait_for(lambda: bool(broker.dead_letters("national")))
        finally:
            stop.set()
            thread.join(10)
        assert arrived, f"not dead-lettered after {len(handed)} deliveries"
        letters = broker.dead_letters("national")
        assert [letter.message.id for letter in letters] == [poison]
        letter = letters[0]
        assert letter.message.last_failure is not None
        assert letter.message.last_failure.stage == DELIVERY_LIMIT_STAGE
        assert "delivery limit" in letter.reason
        assert topology.target_queue("national") in letter.reason
        # The limit is the number of returns before it goes: the first delivery plus LIMIT more.
        assert handed == [poison] * (LIMIT + 1)
        assert broker.depth("national") == 0
        # Filtering by reason finds it, and a replay brings it back with its history.
        assert broker.dead_letters("national", reason="delivery limit") == letters
        assert broker.replay("national") == [poison]
        assert broker.depth("national") == 1


def test_a_message_requeued_fewer_times_than_the_limit_is_delivered_and_not_dead_lettered(
    topology: Topology,
) -> None:
    with bus.connect(RABBITMQ_URL, delivery_limit=LIMIT) as broker:
        broker.declare(topology)
        sent = broker.publish(Outgoing("penalty_case.330100.a", b"<case/>"))
        handed: list[str] = []

        def second_time_lucky(delivery: Delivery) -> None:
            handed.append(delivery.message.id)
            if len(handed) < LIMIT:
                delivery.requeue()
            else:
                delivery.ack()

        stop, thread = consume_in_background(broker, second_time_lucky)
        try:
            assert wait_for(lambda: len(handed) >= LIMIT)
        finally:
            stop.set()
            thread.join(10)
        assert handed == [sent] * LIMIT
        assert broker.dead_letters("national") == []
        assert broker.depth("national") == 0


def test_a_target_queue_declared_before_the_limit_raises_a_topology_error_saying_what_to_do(
    topology: Topology,
) -> None:
    # How every deployment before this change declared its target queues.
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        connection.channel().queue_declare(
            topology.target_queue("national"), durable=True, arguments={"x-queue-type": "quorum"}
        )
    finally:
        connection.close()
    with bus.connect(RABBITMQ_URL) as broker, pytest.raises(TopologyError) as refused:
        broker.declare(topology)
    message = str(refused.value)
    assert topology.target_queue("national") in message
    assert "inequivalent arg" in message
    assert "x-delivery-limit=20" in message
    assert "delete" in message


def test_redeclaring_with_the_same_limit_is_a_no_op_and_another_limit_is_refused(
    topology: Topology,
) -> None:
    with bus.connect(RABBITMQ_URL, delivery_limit=5) as broker:
        broker.declare(topology)
        broker.publish(Outgoing("penalty_case.330100.a", b"<case/>"))
        broker.declare(topology)
        assert broker.depth("national") == 1
    with (
        bus.connect(RABBITMQ_URL, delivery_limit=6) as other,
        pytest.raises(TopologyError) as refused,
    ):
        other.declare(topology)
    assert "x-delivery-limit" in str(refused.value)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_url_list_reaches_the_next_node_when_the_first_does_not_answer(
    topology: Topology,
) -> None:
    down = f"amqp://guest:guest@127.0.0.1:{closed_port()}/%2F"
    with bus.connect(f"{down},{RABBITMQ_URL}", connect_timeout=2) as broker:
        broker.declare(topology)
        sent = broker.publish(Outgoing("penalty_case.330100.a", b"<case/>"))
        got: list[str] = []

        def take(delivery: Delivery) -> None:
            got.append(delivery.message.id)
            delivery.ack()

        stop, thread = consume_in_background(broker, take)
        try:
            assert wait_for(lambda: bool(got))
        finally:
            stop.set()
            thread.join(10)
        assert got == [sent]


def test_one_url_is_one_node_as_before_and_a_comma_inside_a_url_stays_in_it() -> None:
    assert node_urls(RABBITMQ_URL) == [RABBITMQ_URL]
    assert node_urls("amqp://u:p@a:5672/%2F?heartbeat=10,amqp://u:p@b:5672/%2F") == [
        "amqp://u:p@a:5672/%2F?heartbeat=10",
        "amqp://u:p@b:5672/%2F",
    ]
    assert node_urls("amqp://u:p,q@a:5672/%2F, amqps://u:p@b:5671/%2F") == [
        "amqp://u:p,q@a:5672/%2F",
        "amqps://u:p@b:5671/%2F",
    ]


def test_a_url_list_with_a_bad_entry_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError) as refused:
        bus.connect(f"{RABBITMQ_URL},amqp://guest:guest@127.0.0.1:notaport/%2F")
    assert "notaport" in str(refused.value)


def test_the_hub_setting_takes_a_url_list_and_its_broker_reaches_the_node_that_answers(
    topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = f"amqp://guest:guest@127.0.0.1:{closed_port()}/%2F"
    monkeypatch.setenv("JGHUB_AMQP_URL", f"{down},{RABBITMQ_URL}")
    settings = HubSettings()
    assert settings.bus_url == f"{down},{RABBITMQ_URL}"
    with bus.connect(settings.bus_url) as broker:
        broker.declare(topology)
        broker.publish(Outgoing("penalty_case.330100.a", b"<case/>"))
        assert broker.depth("national") == 1


def test_the_hub_logs_every_node_of_a_url_list_without_its_password() -> None:
    nodes = "amqp://hub:s3cret@mq1:5672/%2F,amqp://hub:s3cret@mq2:5672/%2F"
    shown = _safe_url(HubSettings(amqp_url=nodes))
    assert "s3cret" not in shown
    assert shown == "amqp://***@mq1:5672/%2F,amqp://***@mq2:5672/%2F"
    # The twin: one URL shows as before.
    one = _safe_url(HubSettings(amqp_url="amqp://hub:s3cret@mq1:5672/%2F"))
    assert one == "amqp://***@mq1:5672/%2F"


def test_a_url_list_that_is_not_amqp_is_refused_by_position_without_quoting_it() -> None:
    with pytest.raises(ConfigurationError) as refused:
        node_urls("mq1:5672,amqp://hub:s3cret@mq2:5672/%2F")
    assert "entry 1 of 2" in str(refused.value)
    assert "s3cret" not in str(refused.value)
