"""RabbitMQ backend: what it declares, redeclaring, conflicts, and browsing dead letters."""

from __future__ import annotations

import threading

import pika
import pika.exceptions
import pytest
from broker_support import RABBITMQ_URL
from contract import BusUnderTest, collect_all, ids, nothing_arrives, wait_for

from bus import Delivery, Outgoing, Target, Topology, TopologyError

pytestmark = pytest.mark.rabbitmq


def queue_type_conflict(name: str, wrong_type: str, arguments: dict[str, object]) -> str:
    """Declare `name` as `wrong_type` with raw pika; return the broker's refusal (or "").

    `arguments` are the queue's other arguments (the broker compares them first).
    """
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel = connection.channel()
        try:
            channel.queue_declare(
                name, durable=True, arguments={**arguments, "x-queue-type": wrong_type}
            )
        except pika.exceptions.ChannelClosedByBroker as exc:
            return str(exc.reply_text)
        return ""
    finally:
        connection.close()


def test_declares_quorum_targets_and_tiers_and_classic_dead_letters(rabbit: BusUnderTest) -> None:
    topology = rabbit.topology({"national": ["penalty_case.#"]}, retry_delays=(0.2, 0.4, 0.8))
    rabbit.open(topology)
    target_queue = topology.target_queue("national")
    # The broker compares the other arguments before the type: these are the target queue's
    # delivery limit and dead-lettering (RabbitOptions.delivery_limit, default 20).
    target_arguments: dict[str, object] = {
        "x-delivery-limit": 20,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": topology.dead_queue("national"),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    refusal = queue_type_conflict(target_queue, "classic", target_arguments)
    assert "current is 'quorum'" in refusal, refusal
    for tier, ttl in enumerate((200, 400, 800)):
        tier_arguments: dict[str, object] = {
            "x-message-ttl": ttl,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": target_queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        refusal = queue_type_conflict(
            topology.retry_queue("national", tier), "classic", tier_arguments
        )
        assert "current is 'quorum'" in refusal, refusal
    for name in (topology.dead_queue("national"), topology.quarantine_queue):
        refusal = queue_type_conflict(name, "quorum", {"x-queue-mode": "lazy"})
        assert "current is 'classic'" in refusal, refusal


def test_redeclaring_is_a_no_op_and_new_routes_are_bound(rabbit: BusUnderTest) -> None:
    topology = rabbit.topology({"national": ["penalty_case.#"]})
    broker = rabbit.open(topology)
    first = broker.publish_many([Outgoing("penalty_case.330100.a", b"%d" % i) for i in range(3)])
    broker.declare(topology)
    broker.declare(topology)
    assert broker.depth("national") == 3

    wider = Topology(
        namespace=topology.namespace,
        targets=[
            Target(
                name="national",
                routes=["penalty_case.#", "inspection.#"],
                retry_delays=[0.2, 0.4],
            )
        ],
    )
    other = rabbit.connect()
    other.declare(wider)
    second = other.publish(Outgoing("inspection.330100.a", b"x"))
    assert broker.depth("national") == 4
    assert ids(collect_all(broker, "national", 4)) == [*first, second]


def test_a_changed_retry_delay_is_a_conflict_that_says_what_and_what_to_do(
    rabbit: BusUnderTest,
) -> None:
    topology = rabbit.topology({"national": ["penalty_case.#"]}, retry_delays=(0.2, 0.4))
    broker = rabbit.open(topology)
    broker.publish(Outgoing("penalty_case.330100.a", b"kept"))
    changed = Topology(
        namespace=topology.namespace,
        targets=[Target(name="national", routes=["penalty_case.#"], retry_delays=[0.3, 0.4])],
    )
    with pytest.raises(TopologyError) as raised:
        rabbit.connect().declare(changed)
    text = str(raised.value)
    assert repr(topology.retry_queue("national", 0)) in text
    assert "x-message-ttl" in text and "300" in text and "200" in text
    assert "delete" in text and "namespace" in text
    # The refused declaration changed nothing: the old topology still works.
    broker.declare(topology)
    assert [m.body for m in collect_all(broker, "national", 1)] == [b"kept"]


def test_an_exchange_of_another_type_is_a_conflict(rabbit: BusUnderTest) -> None:
    topology = rabbit.topology({"national": ["penalty_case.#"]})
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        connection.channel().exchange_declare(topology.exchange, "direct", durable=True)
        with pytest.raises(TopologyError, match=r"exchange .*canonical.* 'type'"):
            rabbit.open(topology)
    finally:
        connection.channel().exchange_delete(topology.exchange)
        connection.close()


def test_browsing_dead_letters_keeps_them_and_their_order(rabbit: BusUnderTest) -> None:
    topology = rabbit.topology({"national": ["penalty_case.#"]})
    broker = rabbit.open(topology)
    published = broker.publish_many(
        [Outgoing("penalty_case.330100.a", b"%d" % i) for i in range(6)]
    )

    def reject(delivery: Delivery) -> None:
        delivery.dead_letter(f"rejected {delivery.message.body.decode()}", "deliver")

    collect_all(broker, "national", 6, settle=reject)
    listings = [[d.message.id for d in broker.dead_letters("national")] for _ in range(4)]
    assert listings == [published] * 4
    # Browsing is not delivering: the dead letters do not look redelivered to the listing.
    assert [d.reason for d in broker.dead_letters()] == [f"rejected {i}" for i in range(6)]

    assert broker.replay(ids=[published[1], published[4]]) == [published[1], published[4]]
    remaining = [published[i] for i in (0, 2, 3, 5)]
    assert [d.message.id for d in broker.dead_letters()] == remaining
    replayed = collect_all(broker, "national", 2)
    assert [m.id for m in replayed] == [published[1], published[4]]
    assert all(m.routing_key == "penalty_case.330100.a" for m in replayed)
    assert nothing_arrives(broker, "national", 0.3) == []


def test_a_missing_retry_tier_stops_the_consumer_and_keeps_the_message(
    rabbit: BusUnderTest,
) -> None:
    topology = rabbit.topology({"national": ["penalty_case.#"]})
    broker = rabbit.open(topology)
    sent = broker.publish(Outgoing("penalty_case.330100.a", b"x"))
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    connection.channel().queue_delete(topology.retry_queue("national", 0))
    connection.close()

    def fail(delivery: Delivery) -> None:
        raise TimeoutError("target did not answer")

    stop = threading.Event()
    timer = threading.Timer(10, stop.set)
    timer.start()
    try:
        with pytest.raises(TopologyError, match=r"retry\.national\.0.*does not exist"):
            broker.consume("national", fail, stop=stop)
    finally:
        timer.cancel()
    # Given back, not lost: it is still the target's, untouched by the failed move.
    assert wait_for(lambda: broker.depth("national") == 1)
    kept = collect_all(broker, "national", 1)
    assert [(m.id, m.attempts, m.redelivered) for m in kept] == [(sent, 0, True)]


def test_a_hyphenated_target_keeps_the_queue_names_it_had_with_underscores(
    rabbit: BusUnderTest,
) -> None:
    """The target `eco-env-penalty` reads and writes the queues `eco_env_penalty` had, so a
    running broker's messages are consumed after the upgrade; no queue with a '-' appears."""
    topology = rabbit.topology({"eco-env-penalty": ["penalty_case.#"]}, retry_delays=(0.2,))
    broker = rabbit.open(topology)
    broker.publish(Outgoing("penalty_case.330100.eco-env-penalty", b"x"))
    ns = topology.namespace
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel = connection.channel()
        ready = channel.queue_declare(f"{ns}.target.eco_env_penalty", passive=True)
        assert ready.method.message_count == 1
        for name in (f"{ns}.retry.eco_env_penalty.0", f"{ns}.dead.eco_env_penalty"):
            channel.queue_declare(name, passive=True)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
            channel.queue_declare(f"{ns}.target.eco-env-penalty", passive=True)
    finally:
        connection.close()
    assert broker.queue_stats("eco-env-penalty").target == "eco-env-penalty"
