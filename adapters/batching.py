"""Collecting a target's deliveries into batches: one request for up to max_records records.

A batching egress (`outbound.batch`) is consumed with one handler thread per message in hand
(twice `max_records`, the prefetch as well). Each thread hands its delivery to the `Batcher` of
its message type, waits there until its batch was sent, and settles its delivery as the answer
says, so the bus's contract holds unchanged: a handler settles its delivery before it returns,
and each delivery is journalled, counted and dead-lettered alone.

A batch is closed when it holds `max_records` deliveries, or when its first delivery has waited
`max_wait_s`; the thread that closes it sends it. Closed batches are sent one at a time, in the
order they were closed, so a record's later change never reaches the target before an earlier
change that was already in a batch (see `adapters.egress` for order across retries).
"""

from __future__ import annotations

import threading
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
    closed: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


class Batcher:
    """Batches of one message type for one target: collected, closed, sent in order.

    Parameters:
      send: sends one batch and decides how each of its deliveries is settled (`Pending.settle`;
        called in a handler thread, never two at once).
      max_records: most deliveries in a batch.
      max_wait_s: longest the first delivery of a batch waits for it to fill.
    """

    def __init__(
        self, send: Callable[[Sequence[Pending]], None], *, max_records: int, max_wait_s: float
    ) -> None:
        self._send = send
        self.max_records = max_records
        self.max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._open: _Batch | None = None
        self._closed: deque[_Batch] = deque()
        self._send_lock = threading.Lock()

    def submit(self, pending: Pending) -> None:
        """Put `pending` in the open batch; return once that batch was sent and settled."""
        with self._lock:
            batch = self._open
            if batch is None:
                batch = self._open = _Batch()
            batch.members.append(pending)
            first = len(batch.members) == 1
            closer = len(batch.members) >= self.max_records
            if closer:
                self._close(batch)
        if first and not closer and not batch.closed.wait(self.max_wait_s):
            with self._lock:
                if self._open is batch:  # nobody filled it meanwhile: it goes as it is
                    self._close(batch)
                    closer = True
        if closer:
            self._send_through(batch)
        batch.done.wait()
        if pending.settle is not None:  # None: the sender failed; the bus retries it
            pending.settle()

    def _close(self, batch: _Batch) -> None:
        """Close `batch` (under the lock): no more members; it queues to be sent."""
        self._open = None
        self._closed.append(batch)
        batch.closed.set()

    def _send_through(self, batch: _Batch) -> None:
        """Send every closed batch, oldest first, until `batch` was sent."""
        with self._send_lock:
            while not batch.done.is_set():
                with self._lock:
                    oldest = self._closed.popleft()
                try:
                    self._send(oldest.members)
                finally:
                    oldest.done.set()
