"""Collecting a target's deliveries into batches: one request for up to max_records records.

A batching egress (`outbound.batch`) is consumed with one handler thread per message in hand
(twice `max_records`, the prefetch as well). Each thread hands its delivery to the `Batcher` of
its message type, waits there until its batch was sent, and settles its delivery as the answer
says, so the bus's contract holds unchanged: a handler settles its delivery before it returns,
and each delivery is journalled, counted and dead-lettered alone.

A batch is closed when it holds `max_records` deliveries; when nothing more is coming to join
it and the sender is free; or when its first delivery has waited `max_wait_s`. Nothing more is
coming when every delivery the consumer holds (`Delivery.others_in_hand`: fetched, waiting for
a handler thread or being handled) already waits in a batch of this egress (`Gathering`), and
the queue has no backlog (`InHand.backlog`: the broker hands a backlog over as settles make
room, so more is coming though not in hand): a lone record goes at once instead of waiting out
`max_wait_s` for records that are not there, while a backlog still goes in full batches.
While a batch is being sent the next one keeps gathering (as Nagle's algorithm holds small
segments while one is unacknowledged), so under load batches fill while the one before is
sent. The thread that closes a batch sends it. Closed batches are sent one at a time, in the
order they were closed, so a record's later change never reaches the target before an earlier
change that was already in a batch (see `adapters.egress` for order across retries).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bus import Delivery
from standard.envelope import Envelope


@dataclass(eq=False)
class Pending:
    """One delivery waiting in a batch, with the envelope it carries (decoded once).

    `settle` is what the batch's sender decided for it (ack, retry, dead letter); the handler
    thread waiting for the batch runs it, so a batch's records are settled side by side, as
    deliveries one a request are, rather than one after the other by the sending thread.
    """

    delivery: Delivery
    envelope: Envelope
    settle: Callable[[], None] | None = None


@dataclass(eq=False)
class _Batch:
    members: list[Pending] = field(default_factory=list)
    closed: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class Gathering:
    """The deliveries waiting in the batchers of one egress, and the lock its batchers share.

    A target's consumer holds deliveries of every message type it takes; a batch of one type
    may close early only when all of them wait in some batch (each type has its own Batcher),
    so the batchers of one egress count together. `changed` is notified whenever the count,
    a batch or a sender changes, so a waiting batch looks again.
    """

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.waiting = 0
        self.lingering = 0  # first members waiting for their batch to fill (`Batcher._linger`)

    def poke(self) -> None:
        """Have waiting batches look again (a delivery outside any batch was settled)."""
        with self.changed:
            self.changed.notify_all()


class Batcher:
    """Batches of one message type for one target: collected, closed, sent in order.

    Parameters:
      send: sends one batch and decides how each of its deliveries is settled (`Pending.settle`;
        called in a handler thread, never two at once).
      max_records: most deliveries in a batch.
      max_wait_s: longest the first delivery of a batch waits for it to fill (while more
        deliveries are in hand, or the batch before it is being sent).
      gathering: shared by the batchers of one egress (a new one by default).
    """

    def __init__(
        self,
        send: Callable[[Sequence[Pending]], None],
        *,
        max_records: int,
        max_wait_s: float,
        gathering: Gathering | None = None,
    ) -> None:
        self._send = send
        self.max_records = max_records
        self.max_wait_s = max_wait_s
        self._gathering = gathering or Gathering()
        self._changed = self._gathering.changed
        self._open: _Batch | None = None
        self._closed: deque[_Batch] = deque()
        self._sending = False
        self._send_lock = threading.Lock()

    def submit(self, pending: Pending) -> None:
        """Put `pending` in the open batch; return once that batch was sent and settled."""
        gathering = self._gathering
        with self._changed:
            batch = self._open
            if batch is None:
                batch = self._open = _Batch()
            batch.members.append(pending)
            gathering.waiting += 1
            closer = len(batch.members) >= self.max_records or self._nothing_coming(pending)
            if closer:
                self._close(batch)
            elif len(batch.members) == 1:
                closer = self._linger(batch, pending)
            elif (
                gathering.lingering > 1
                or pending.delivery.hand is not batch.members[0].delivery.hand
            ):
                # A first member may look again: one of another batcher (one more waiting
                # may let its batch go), or ours counting another hand. Ours alone, on the
                # same hand, would find what `_nothing_coming(pending)` just found: not yet.
                self._changed.notify_all()
        if closer:
            self._send_through(batch)
        batch.done.wait()
        try:
            if pending.settle is not None:  # None: the sender failed; the bus retries it
                pending.settle()
        finally:
            # No first member is woken: settled, `pending` left its hand as it leaves the
            # waiting, so what `_nothing_coming` compares is unchanged for one on the same hand,
            # and for one on another hand (or when `pending` was not settled) only fewer wait.
            with self._changed:
                gathering.waiting -= 1

    def _linger(self, batch: _Batch, first: Pending) -> bool:
        """As the first member of `batch` (under the lock): wait until another member closed
        it (False), or until it should go as it is (closed now; True)."""
        deadline = time.monotonic() + self.max_wait_s
        self._gathering.lingering += 1
        try:
            while not batch.closed:
                left = deadline - time.monotonic()
                if left <= 0 or self._nothing_coming(first):
                    self._close(batch)
                    return True
                self._changed.wait(left)
            return False
        finally:
            self._gathering.lingering -= 1

    def _nothing_coming(self, pending: Pending) -> bool:
        """Whether the open batch should go now (under the lock): the sender is free, the queue
        has no backlog, and every delivery the consumer holds already waits in a batch of this
        egress."""
        hand = pending.delivery.hand
        if self._sending or self._closed or (hand is not None and hand.backlog):
            return False
        return pending.delivery.others_in_hand() < self._gathering.waiting

    def _close(self, batch: _Batch) -> None:
        """Close `batch` (under the lock): no more members; it queues to be sent."""
        self._open = None
        self._closed.append(batch)
        batch.closed = True
        self._changed.notify_all()

    def _send_through(self, batch: _Batch) -> None:
        """Send every closed batch, oldest first, until `batch` was sent."""
        with self._send_lock:
            while not batch.done.is_set():
                with self._changed:
                    oldest = self._closed.popleft()
                    self._sending = True
                try:
                    self._send(oldest.members)
                finally:
                    with self._changed:
                        self._sending = False
                        self._changed.notify_all()  # the open batch may go now
                    oldest.done.set()
