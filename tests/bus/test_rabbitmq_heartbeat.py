"""RabbitMQ backend: a handler working far longer than the heartbeat keeps its connection alive."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq
from contract import BusUnderTest, nothing_arrives

from bus import Delivery, Message, Outgoing

pytestmark = pytest.mark.rabbitmq

HEARTBEAT = 2
WORK = 3 * HEARTBEAT  # well past the two missed heartbeats that make RabbitMQ drop a connection


@pytest.fixture
def rabbit() -> Iterator[BusUnderTest]:
    require_rabbitmq()
    harness = BusUnderTest(
        kind="rabbitmq",
        url=RABBITMQ_URL,
        options={"heartbeat": HEARTBEAT, "connection_name": f"hb-{uuid.uuid4().hex[:8]}"},
    )
    yield harness
    harness.cleanup()


def test_a_handler_longer_than_two_heartbeats_still_acks(
    rabbit: BusUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    topology = rabbit.topology({"national": ["penalty_case.#"]})
    broker = rabbit.open(topology)
    first, second = broker.publish_many(
        [Outgoing("penalty_case.330100.a", b"slow"), Outgoing("penalty_case.330100.a", b"next")]
    )
    seen: list[Message] = []
    worked: list[float] = []
    stop = threading.Event()

    def slow(delivery: Delivery) -> None:
        seen.append(delivery.message)
        if delivery.message.body == b"slow":
            started = time.monotonic()
            time.sleep(WORK)  # blocks this thread only; the link's I/O thread keeps beating
            worked.append(time.monotonic() - started)
        delivery.ack()
        if len(seen) >= 2:
            # Linger: a connection dropped during the work would redeliver "slow" by now.
            threading.Timer(2 * HEARTBEAT, stop.set).start()

    caplog.set_level(logging.WARNING, logger="bus.rabbitmq")
    timer = threading.Timer(WORK + 6 * HEARTBEAT, stop.set)
    timer.start()
    try:
        broker.consume("national", slow, stop=stop, prefetch=1)
    finally:
        timer.cancel()

    assert worked and worked[0] >= WORK
    assert [(m.id, m.redelivered) for m in seen] == [(first, False), (second, False)]
    lost = [r.getMessage() for r in caplog.records if "connection lost" in r.getMessage()]
    assert lost == [], lost
    # Both acks reached the broker: nothing is left to deliver, to this consumer or another.
    assert broker.depth("national") == 0
    assert nothing_arrives(rabbit.open(topology), "national", 1.0) == []
