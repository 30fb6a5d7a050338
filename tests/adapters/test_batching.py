"""The Batcher on its own: batches of two message types of one egress close as one hand says."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from adapters.batching import Batcher, Gathering, Pending
from bus.broker import Delivery, InHand
from bus.message import from_wire
from standard.envelope import Envelope

NEVER_S = 60.0  # max_wait_s no batch here may wait out: each must go as nothing more is coming


class _Delivery(Delivery):
    def __init__(self, number: int, hand: InHand) -> None:
        message = from_wire(
            routing_key="penalty_case.330000.bench",
            body=b"{}",
            headers={},
            content_type="application/json",
            redelivered=False,
            message_id=f"m{number}",
        )
        super().__init__(message, "national", hand)
        self.acked = False

    def _ack(self) -> None:
        self.acked = True

    def _retry(self, reason: str, stage: str) -> None:
        raise AssertionError(reason)

    def _dead_letter(self, reason: str, stage: str) -> None:
        raise AssertionError(reason)

    def _requeue(self) -> None:
        raise AssertionError("requeued")

    def _postpone(self, reason: str, stage: str) -> None:
        raise AssertionError(reason)


def test_batches_of_two_types_go_once_every_delivery_in_hand_waits_in_one() -> None:
    gathering = Gathering()
    sent: list[list[str]] = []

    def send(members: Sequence[Pending]) -> None:
        sent.append([m.delivery.message.id for m in members])
        for member in members:
            member.settle = member.delivery.ack

    batchers = [
        Batcher(send, max_records=10, max_wait_s=NEVER_S, gathering=gathering) for _ in range(2)
    ]
    hand = InHand(limit=10)
    deliveries = [_Delivery(n, hand) for n in range(5)]
    hand.add(len(deliveries))
    envelope = Envelope.model_construct()
    threads = [
        threading.Thread(target=batchers[n % 2].submit, args=(Pending(delivery, envelope),))
        for n, delivery in enumerate(deliveries)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(NEVER_S / 4)
    assert not any(thread.is_alive() for thread in threads)
    assert all(delivery.acked for delivery in deliveries)
    assert sorted(id_ for batch in sent for id_ in batch) == [f"m{n}" for n in range(5)]
    assert (gathering.waiting, gathering.lingering, hand.count) == (0, 0, 0)
