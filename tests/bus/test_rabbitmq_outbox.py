"""The publisher serves callers in turns: one caller's thousands do not queue another's one.

Every request of `jghub serve` publishes through one confirm-mode channel. When the outbox was
one line, a payload of thousands of records put all its messages ahead of a single-record push
that came a moment later, and the push waited for them all (issue 12, item 1).
"""

from __future__ import annotations

import threading
import uuid

import pytest
from contract import BusUnderTest, collect_all, wait_for

from bus import Outgoing
from bus._amqp_link import FAIR_SHARE
from bus.rabbitmq import RabbitBroker

pytestmark = pytest.mark.rabbitmq


def test_one_message_goes_out_in_the_next_turn_not_behind_another_callers_thousands(
    rabbit: BusUnderTest,
) -> None:
    broker = rabbit.open(rabbit.topology({"national": ["penalty_case.#"]}))
    assert isinstance(broker, RabbitBroker)
    publisher = broker._confirmed()
    link = broker._publisher_link
    assert link is not None and link.connected.wait(10)
    # The connection opens before the publisher's channel: the channel's readiness pumps the
    # outbox from the I/O thread whatever callbacks wait, so hold the thread only once it is
    # ready, or the pump takes part of the large batch before the gate (CI saw 2000 never
    # waiting at once).
    assert wait_for(lambda: publisher._channel is not None)
    large = [Outgoing("penalty_case.330100.large", b"{}", message_id=f"L{n}") for n in range(2000)]
    single = Outgoing("penalty_case.330100.single", b"{}", message_id=f"S{uuid.uuid4().hex}")

    # Hold the publisher's I/O thread while both callers hand their messages over, so the
    # large batch is wholly waiting before the single message arrives.
    gate = threading.Event()
    link.call(lambda: gate.wait(30))
    callers = [
        threading.Thread(target=broker.publish_many, args=(large,)),
        threading.Thread(target=broker.publish_many, args=([single],)),
    ]
    callers[0].start()
    assert wait_for(lambda: len(publisher._outbox) == len(large))
    callers[1].start()
    assert wait_for(lambda: len(publisher._outbox) == len(large) + 1)
    gate.set()
    for caller in callers:
        caller.join(60)

    # One queue keeps publish order: where the single message landed is when it was sent.
    order = [message.id for message in collect_all(broker, "national", len(large) + 1)]
    assert order.index(single.message_id) <= FAIR_SHARE
    assert [m for m in order if m.startswith("L")] == [m.message_id for m in large]
