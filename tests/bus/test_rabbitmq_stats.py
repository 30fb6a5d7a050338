"""RabbitMQ backend: queue statistics are read on one kept connection, reopened when lost.

Back-pressure reads them every second, Prometheus at every scrape, /ready at every probe: a
connection per read made an idle `jghub serve` open one a second. A relay in front of the real
broker counts the connections the backend opens.
"""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq
from contract import BusUnderTest, wait_for
from tcp_relay import TcpRelay

from bus import Outgoing, TopologyError

pytestmark = pytest.mark.rabbitmq

READS = 20


@pytest.fixture
def relay() -> Iterator[TcpRelay]:
    require_rabbitmq()
    with TcpRelay(RABBITMQ_URL) as running:
        yield running


@pytest.fixture
def rabbit(relay: TcpRelay) -> Iterator[BusUnderTest]:
    harness = BusUnderTest(kind="rabbitmq", url=relay.url)
    yield harness
    harness.cleanup()


def test_statistics_reuse_one_connection(relay: TcpRelay, rabbit: BusUnderTest) -> None:
    topology = rabbit.topology({"national": ["penalty_case.#"], "grassroots": ["complaint.#"]})
    broker = rabbit.open(topology)
    broker.publish(Outgoing("penalty_case.330100.a", b"x"))
    assert broker.depth("national") == 1  # the first read opens the statistics connection
    opened, sent = relay.accepted, relay.sent
    for _ in range(READS):
        national, grassroots = broker.queue_stats_many(["national", "grassroots"])
        assert (national.ready, grassroots.ready) == (1, 0)
        assert broker.depth("national") == 1
    assert relay.accepted == opened, f"{relay.accepted - opened} connections for {2 * READS} reads"
    assert relay.sent > sent  # the reads did go to the broker, on the connection already open


def test_a_broker_that_never_reads_statistics_holds_no_connection_for_them(
    relay: TcpRelay, rabbit: BusUnderTest
) -> None:
    # A worker opens a broker per consumer and never reads queue counts: a statistics
    # connection left unused would be dropped by RabbitMQ for missed heartbeats.
    broker = rabbit.open(rabbit.topology({"national": ["penalty_case.#"]}))
    assert wait_for(lambda: relay.live == 0)  # the check that it answers, the declaration: closed
    assert broker.depth("national") == 0
    assert relay.live == 1  # the statistics connection, from the first read on


def test_a_lost_statistics_connection_is_reopened_on_the_next_read(
    relay: TcpRelay, rabbit: BusUnderTest
) -> None:
    topology = rabbit.topology({"national": ["penalty_case.#"]})
    broker = rabbit.open(topology)
    assert broker.depth("national") == 0
    opened = relay.accepted
    relay.cut()  # as a network fault or a broker restart would
    assert broker.depth("national") == 0
    assert broker.queue_stats("national").dead == 0
    assert relay.accepted == opened + 1


def test_a_missing_queue_costs_the_channel_not_the_connection(
    relay: TcpRelay, rabbit: BusUnderTest
) -> None:
    topology = rabbit.topology({"national": ["penalty_case.#"], "grassroots": ["complaint.#"]})
    broker = rabbit.open(topology)
    assert broker.depth("national") == 0
    opened = relay.accepted
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    connection.channel().queue_delete(topology.retry_queue("national", 0))
    connection.close()
    with pytest.raises(TopologyError, match=r"retry\.national\.0.*does not exist"):
        broker.queue_stats("national")
    assert broker.queue_stats("grassroots").ready == 0  # on a new channel of the same connection
    assert relay.accepted == opened
