"""What the broker can never take fails at once, and a link the broker keeps dropping backs off.

RabbitMQ carries a message's properties in one frame (frame_max, 128 KiB) and closes the whole
connection over a larger one (501 FRAME_ERROR). The publisher used to send such a message again
after every reconnect, about 100 times a second, until its caller's timeout, and every other
publisher on the link waited behind it (issue 12, item 1).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq
from contract import BusUnderTest, wait_for

from bus import Delivery, Outgoing, PublishFailed
from bus._amqp_link import AmqpLink, ConfirmedPublisher, Outcome
from bus.message import QUARANTINE_REASON_MAX_CHARS, REASON_MAX_CHARS

pytestmark = pytest.mark.rabbitmq

PUBLISH_TIMEOUT = 8.0
"""Short, so the looping publisher this guards against fails these tests quickly."""

TOO_BIG_FOR_A_FRAME = "x" * 200_000


@pytest.fixture(params=["embedded", "rabbitmq"])
def under_test(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[BusUnderTest]:
    if request.param == "rabbitmq":
        require_rabbitmq()
        harness = BusUnderTest(
            kind="rabbitmq", url=RABBITMQ_URL, options={"publish_timeout": PUBLISH_TIMEOUT}
        )
    else:
        harness = BusUnderTest(kind="embedded", url=f"sqlite:///{tmp_path / 'bus.sqlite3'}")
    yield harness
    harness.cleanup()


@pytest.fixture
def link() -> Iterator[AmqpLink]:
    require_rabbitmq()
    parameters = pika.URLParameters(RABBITMQ_URL)
    parameters.client_properties = {"connection_name": f"frames-{uuid.uuid4().hex[:8]}"}
    opened = AmqpLink(parameters, name="frames", max_backoff=2.0)
    yield opened
    opened.close()


def test_a_quarantine_reason_longer_than_a_frame_is_kept_clipped_with_the_body_whole(
    under_test: BusUnderTest,
) -> None:
    broker = under_test.open(under_test.topology({"national": ["penalty_case.#"]}))
    body = b'{"records": [' + b"{}," * 30_000 + b"{}]}"
    reason = "\n".join(f"record {i}: rule 'operation': no operation" for i in range(1, 30_001))
    kept = broker.quarantine(body, reason, source="agri-penalty", headers={"kind": "records"})
    (found,) = broker.quarantined()
    assert (found.id, found.body, found.source) == (kept, body, "agri-penalty")
    assert len(found.reason) <= QUARANTINE_REASON_MAX_CHARS
    assert found.reason.startswith("record 1: rule 'operation': no operation\nrecord 2")
    assert f"{len(reason)} characters in all" in found.reason


def test_a_dead_letter_reason_quoting_a_huge_answer_is_kept_clipped(
    under_test: BusUnderTest,
) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]}, retry_delays=())
    broker = under_test.open(topology)
    message_id = broker.publish(Outgoing("penalty_case.330100.a", b"{}"))
    answer = f"target national answered HTTP 400: {TOO_BIG_FOR_A_FRAME}"
    stop = threading.Event()

    def refuse(delivery: Delivery) -> None:
        delivery.dead_letter(answer, "deliver")
        stop.set()

    threading.Timer(30, stop.set).start()
    broker.consume("national", refuse, stop=stop)
    (dead,) = broker.dead_letters("national")
    assert dead.message.id == message_id
    assert len(dead.reason) <= REASON_MAX_CHARS
    assert dead.reason.startswith("target national answered HTTP 400: xxx")
    assert f"{len(answer)} characters in all" in dead.reason


def test_a_message_larger_than_a_frame_fails_at_once_and_the_link_stays_up(
    link: AmqpLink,
) -> None:
    publisher = ConfirmedPublisher(link)
    link.start()
    assert link.connected.wait(10)
    poison = pika.BasicProperties(message_id="poison", headers={"rejected": TOO_BIG_FOR_A_FRAME})
    plain = pika.BasicProperties(message_id="plain", headers={"rejected_count": 30_000})
    outcomes = publisher.publish(
        [("", "no-such-queue", b"{}", poison), ("", "no-such-queue", b"{}", plain)],
        2,
        PUBLISH_TIMEOUT,
    )
    refused, routed = outcomes
    assert not refused.ok
    assert "more than the" in refused.reason and "frame_max 131072" in refused.reason
    # The other message of the batch went out: unroutable (no such queue), but answered.
    assert routed == Outcome(ok=False, reason=routed.reason, unroutable=True)
    assert link.opened_count == 1 and link.connected.is_set()


def test_what_the_broker_refused_in_flight_fails_with_its_reason_not_resent(
    link: AmqpLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The guard above stops such a message before it is sent; should one get through anyway
    # (a broker with a smaller frame_max than negotiated, a pika that encodes differently),
    # the broker's refusal must end it rather than have it sent after every reconnect.
    monkeypatch.setattr(ConfirmedPublisher, "_unsendable", lambda self, body, properties: "")
    publisher = ConfirmedPublisher(link)
    link.start()
    assert link.connected.wait(10)
    poison = pika.BasicProperties(message_id="poison", headers={"rejected": TOO_BIG_FOR_A_FRAME})
    (outcome,) = publisher.publish([("", "no-such-queue", b"{}", poison)], 1, 60)
    assert not outcome.ok
    assert "FRAME_ERROR" in outcome.reason and "refused what was sent" in outcome.reason
    assert link.refused
    # The link comes back and publishes what it can.
    assert wait_for(link.connected.is_set, timeout=30)
    plain = pika.BasicProperties(message_id="plain")
    (later,) = publisher.publish([("", "no-such-queue", b"{}", plain)], 1, 30)
    assert later.unroutable


def test_a_link_the_broker_keeps_dropping_backs_off_with_jitter(
    link: AmqpLink, caplog: pytest.LogCaptureFixture
) -> None:
    class Poison:
        """Sends a frame the broker refuses as soon as each connection opens."""

        def link_opened(self, connection: Any) -> None:
            properties = pika.BasicProperties(headers={"rejected": TOO_BIG_FOR_A_FRAME})
            connection.channel(
                on_open_callback=lambda channel: channel.basic_publish(
                    "", "nowhere", b"{}", properties
                )
            )

        def link_lost(self, reason: str) -> None:
            pass

    caplog.set_level(logging.WARNING, logger="bus.rabbitmq")
    link.add_listener(Poison())
    link.start()
    assert wait_for(lambda: link.opened_count >= 6, timeout=60), link.opened_count
    waits = [
        float(record.args[3])  # type: ignore[index]
        for record in caplog.records
        if record.getMessage().startswith("link frames: no usable connection")
    ]
    assert len(waits) >= 5, caplog.text[-2000:]
    # A connection that has just opened (again) has cleared the last error until the broker
    # refuses its frame: read the reason while the link waits between attempts.
    assert wait_for(
        lambda: "FRAME_ERROR" in link.error or "FRAME_ERROR" in link.refused, timeout=10
    ), (link.error, link.refused)
    # Exponential: the fourth wait is at least 0.4 s, the first at most 0.1 s; bounded by the
    # link's max_backoff (2 s); half of each wait is random, so they are not all alike.
    assert waits[0] <= 0.1 < 0.4 <= waits[3]
    assert all(0 < wait <= 2.0 for wait in waits)
    assert len({round(wait, 6) for wait in waits}) == len(waits)


def test_a_body_over_the_brokers_max_message_size_fails_at_once() -> None:
    require_rabbitmq()
    rabbit = BusUnderTest(kind="rabbitmq", url=RABBITMQ_URL, options={"max_message_bytes": 4096})
    try:
        broker = rabbit.open(rabbit.topology({"national": ["penalty_case.#"]}))
        small = Outgoing("penalty_case.330100.a", b"{}")
        large = Outgoing("penalty_case.330100.a", b"x" * 5000)
        with pytest.raises(PublishFailed) as failed:
            broker.publish_many([small, large])
        (failure,) = failed.value.failures
        assert failure.index == 1 and not failure.unroutable
        assert "5000 bytes, more than the broker's max_message_size of 4096" in failure.reason
        assert len(failed.value.published) == 1
    finally:
        rabbit.cleanup()
