"""The broker interface every backend implements: declare, publish with confirms, consume, settle.

One contract, two backends (`bus.embedded.EmbeddedBroker`, `bus.rabbitmq.RabbitBroker`); the
contract suite in tests/bus/contract.py runs against both. Use it like this:

    with bus.connect(url) as broker:
        broker.declare(topology)            # always first: it also tells the broker its namespace
        broker.publish(Outgoing("penalty_case.330100.dept_scjg", body))
        broker.consume("national", handle, stop=stop_event)

Delivery semantics are at-least-once: a message is removed only when a handler settles it, and
one whose consumer died unsettled comes again with `redelivered=True`. Targets drop duplicates by
the idempotency key.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType

from bus.errors import SettleError
from bus.message import DeadLetter, HeaderValue, Message, Outgoing, Quarantined
from bus.topology import Topology

log = logging.getLogger("bus")

HANDLER_STAGE = "handler"
"""The stage recorded when a handler raises or returns without settling."""


@dataclass(frozen=True)
class QueueStats:
    """What waits for one target, as the broker reports it; None where this broker cannot tell.

    Attributes:
      target: the target system.
      ready: messages ready in its queue (not handed to a consumer, not in a retry tier).
      in_flight: messages handed to consumers and not settled yet (the embedded broker knows;
        RabbitMQ's queue.declare does not say, so None there).
      consumers: consumers attached to its queue (RabbitMQ knows; the embedded broker has no
        registry of consumers in other processes, so None there).
      retrying: messages waiting in its retry tiers, all tiers summed.
      dead: messages in its dead letters.
    """

    target: str
    ready: int
    in_flight: int | None
    consumers: int | None
    retrying: int
    dead: int


class InHand:
    """How many deliveries one consumer holds: fetched from the broker and not yet settled.

    Those waiting for a handler thread count as well as those being handled, so a handler that
    gathers deliveries (a batch, `adapters.batching`) can tell whether more are coming: when
    every delivery in hand already waits with it, none is, and waiting longer only adds latency.
    Unless the queue has a backlog: then the broker hands more over as settles make room, and
    they are coming though not yet in hand. `backlog` says so: the hand was full (`limit`, the
    prefetch) since it was last empty. A backend adds what it fetches and drops what it gives
    back unhandled; a delivery drops itself once settled (`Delivery` does it).

    Parameters:
      limit: most deliveries the consumer holds (its prefetch).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.backlog = False
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    def add(self, count: int) -> None:
        with self._lock:
            self._count += count
            if self._count >= self.limit:
                self.backlog = True

    def drop(self, count: int = 1) -> None:
        with self._lock:
            self._count -= count
            if self._count <= 0:
                self.backlog = False


class Delivery(ABC):
    """A message handed to a consumer's handler; settle it exactly once.

    A backend implements the `_ack`, `_retry`, `_dead_letter` and `_requeue` hooks; this class
    makes sure only one of them runs per delivery (a second settle raises SettleError).

    Attributes:
      message: the message, with its attempts and history so far.
      target: the target whose queue it came from.
      hand: what its consumer holds (`InHand`), which this delivery leaves once settled (or
        once a settle failed: the backend gives it back); None where the backend does not
        count (a lone delivery, e.g. in a unit test).
    """

    def __init__(self, message: Message, target: str, hand: InHand | None = None) -> None:
        self.message = message
        self.target = target
        self.hand = hand
        self._settled_as: str | None = None
        self._settle_lock = threading.Lock()
        self._in_hand = hand is not None

    def others_in_hand(self) -> int:
        """How many other deliveries its consumer holds unsettled (0 where nobody counts)."""
        if self.hand is None:
            return 0
        return max(0, self.hand.count - 1)  # asked before it is settled: it is one of them

    @property
    def settled(self) -> bool:
        return self._settled_as is not None

    def ack(self) -> None:
        """Done: the message leaves the queue for good."""
        self._settle("ack", self._ack)

    def retry(self, reason: str, stage: str) -> None:
        """Transient failure: the message waits in the next retry tier, then comes back.

        When the target's tiers are used up (attempts > len(retry_delays)) it goes to the dead
        letters instead. Either way the failure (attempt, time, stage, reason) joins its history.
        """
        self._settle("retry", lambda: self._retry(reason, stage))

    def dead_letter(self, reason: str, stage: str) -> None:
        """Permanent failure (the target rejected the content): straight to the dead letters."""
        self._settle("dead_letter", lambda: self._dead_letter(reason, stage))

    def requeue(self) -> None:
        """Give it back unprocessed (e.g. on shutdown): delivered again later, redelivered=True."""
        self._settle("requeue", self._requeue)

    def postpone(self, reason: str, stage: str) -> None:
        """Not tried at all (the target's circuit breaker is open): wait, without using a tier.

        The message waits in the retry tier its failures so far put it in (the first tier when
        it has none) and comes back with its attempts and history unchanged, so it reaches the
        dead letters only after real attempts used up the tiers, however long the target stays
        down. Requeueing instead would spin: the message would come straight back to the same
        open breaker. A target without retry tiers has nowhere to wait: the message is retried
        as a failure with `reason` (which, without tiers, dead-letters it).
        """
        self._settle("postpone", lambda: self._postpone(reason, stage))

    def _settle(self, how: str, action: Callable[[], None]) -> None:
        with self._settle_lock:
            if self._settled_as is not None:
                raise SettleError(
                    f"message {self.message.id} from target {self.target!r} was already settled "
                    f"({self._settled_as}); cannot {how} it again"
                )
            try:
                action()
                self._settled_as = how
            finally:
                # Settled, or given back by the backend as the settle failed: no longer in hand.
                if self._in_hand:
                    self._in_hand = False
                    assert self.hand is not None
                    self.hand.drop()

    @abstractmethod
    def _ack(self) -> None: ...

    @abstractmethod
    def _retry(self, reason: str, stage: str) -> None: ...

    @abstractmethod
    def _dead_letter(self, reason: str, stage: str) -> None: ...

    @abstractmethod
    def _requeue(self) -> None: ...

    @abstractmethod
    def _postpone(self, reason: str, stage: str) -> None: ...


Handler = Callable[[Delivery], None]


def run_handler(handler: Handler, delivery: Delivery) -> None:
    """Call `handler` on `delivery` and settle what it left unsettled; backends call this.

    - the handler raises: the delivery is retried with reason=repr(exc), stage="handler";
    - the handler returns without settling: that is a bug in the handler; it is logged and the
      delivery is retried with a reason saying so (so it ends in the dead letters, visible,
      rather than blocking the queue or vanishing).
    """
    try:
        handler(delivery)
    except Exception as exc:
        if delivery.settled:
            log.exception(
                "handler raised after settling message %s of target %s",
                delivery.message.id,
                delivery.target,
            )
            return
        log.warning(
            "handler raised on message %s of target %s; retrying it: %r",
            delivery.message.id,
            delivery.target,
            exc,
        )
        delivery.retry(repr(exc), HANDLER_STAGE)
        return
    if not delivery.settled:
        log.error(
            "handler returned without settling message %s of target %s",
            delivery.message.id,
            delivery.target,
        )
        delivery.retry(
            "SettleError: the handler returned without calling ack, retry, dead_letter or requeue",
            HANDLER_STAGE,
        )


class HandlerPool:
    """Runs a consumer's handler on up to `size` deliveries at once, in threads of its own.

    A target whose deliveries wait on the network (an HTTP round trip each) is delivered to
    `size` at a time instead of one after the other. `submit` blocks while `size` deliveries
    are in hand, so nothing waits in a queue here: what is not handed over stays with the
    consumer, and goes back to the broker on stop. The handler settles each delivery from a
    pool thread: backends whose connection is not thread-safe hand the settle over to the
    connection's own thread (see the RabbitMQ session). An error a backend's runner raises
    (e.g. a settle that could not be made) is logged, kept, and re-raised in the consuming
    thread by `raise_if_failed`.

    Parameters:
      size: most deliveries handled at once (>= 1).
      name: prefix of the pool threads' names (shown in thread dumps and py-spy).
    """

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self._slots = threading.BoundedSemaphore(size)
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)
        self._failure: BaseException | None = None

    def submit(self, run: Callable[[], None], stop: threading.Event) -> bool:
        """Run `run` in a pool thread once fewer than `size` are running (blocks until then).

        False, and nothing runs, when `stop` was set meanwhile: the caller gives the delivery
        back rather than start it after it was told to stop.
        """
        self._slots.acquire()
        if stop.is_set():
            self._slots.release()
            return False

        def task() -> None:
            try:
                run()
            except BaseException as error:  # kept for the consuming thread; see raise_if_failed
                log.warning("a delivery handled in the pool failed: %r", error)
                if self._failure is None:
                    self._failure = error
            finally:
                self._slots.release()

        self._executor.submit(task)
        return True

    def raise_if_failed(self) -> None:
        """Re-raise, in the caller's thread, the first error a submitted run raised."""
        if self._failure is not None:
            raise self._failure

    def drain(self) -> None:
        """Wait until every submitted delivery was handled; the pool takes no more after."""
        self._executor.shutdown(wait=True)


class Broker(ABC):
    """A message broker: topic routing, confirms, acks, retry tiers, dead letters, replay.

    Thread-safe: several threads may publish and several may consume (one consume call each)
    on one Broker. Call `declare` before anything else: it fixes the namespace this Broker works
    in. A Broker is a context manager that closes itself.
    """

    @abstractmethod
    def declare(self, topology: Topology) -> None:
        """Create the exchange, queues, retry tiers, dead letters and bindings `topology` names.

        Idempotent: declaring the same topology again changes nothing and keeps every message.
        Routes added to a target are bound; a target removed from the topology keeps its queue
        and messages until `delete_topology`. Every later call works in `topology.namespace`.
        """

    @abstractmethod
    def publish(self, message: Outgoing) -> str:
        """Store `message` in every target queue a route matches; return its id once confirmed.

        Raises:
          Unroutable: no route matches its routing key (nothing was stored).
          PublishFailed: the broker did not confirm (nack, timeout, connection lost).
          TopologyError: nothing declared yet.
        """

    @abstractmethod
    def publish_many(self, messages: Sequence[Outgoing]) -> list[str]:
        """Publish a batch with confirms pipelined (not one round trip each); ids in batch order.

        Returns when every message is confirmed. Messages are independent: if some fail (no
        route, nack), the others are still stored, and PublishFailed lists the failures
        (`failures`, each with its batch index and `unroutable` flag) and the confirmed ids
        (`published`).
        """

    @abstractmethod
    def consume(
        self,
        target: str,
        handler: Handler,
        *,
        stop: threading.Event,
        prefetch: int | None = None,
        concurrency: int = 1,
    ) -> None:
        """Deliver the target's messages to `handler` until `stop` is set.

        Blocks. With `concurrency` 1 (the default) the handler runs in the calling thread, one
        delivery at a time, and order within the queue is kept. With more, up to `concurrency`
        deliveries (never more than the prefetch) are handled at once in a `HandlerPool`, so
        order is not kept; each delivery is still settled exactly once. If the handler raises,
        the delivery is retried with reason=repr(exc) and stage "handler"; if it returns
        without settling, that is logged and the delivery is retried too (see `run_handler`).
        When `stop` is set, the handler finishes the deliveries in hand (all of them, with
        concurrency) and what was fetched but not handed over is given back. `prefetch`
        overrides the target's prefetch.

        Raises:
          TopologyError: the target is not in the declared topology.
          BrokerUnavailable: the broker went away and did not come back.
        """

    @abstractmethod
    def quarantine(
        self,
        body: bytes,
        reason: str,
        *,
        source: str,
        headers: Mapping[str, HeaderValue] | None = None,
    ) -> str:
        """Keep a rejected inbound payload with why it was rejected; return its quarantine id."""

    @abstractmethod
    def quarantined(self, limit: int = 100) -> list[Quarantined]:
        """What was quarantined, oldest first, without removing it."""

    @abstractmethod
    def forget_quarantined(self, ids: Collection[str]) -> list[str]:
        """Remove the quarantined payloads with these ids; return the ids removed.

        For a hub that keeps its quarantine elsewhere (in its store) and has taken these over:
        call it only once they are safe there. Ids not in the quarantine are ignored.
        """

    @abstractmethod
    def dead_letters(
        self,
        target: str | None = None,
        *,
        reason: str | None = None,
        ids: Collection[str] | None = None,
        older_than: timedelta | None = None,
        limit: int = 1000,
    ) -> list[DeadLetter]:
        """List dead letters, oldest first, without removing them.

        Filters combine (all must hold): `target` is the target's name; `reason` is a
        case-sensitive substring of the last failure's reason; `ids` are message ids;
        `older_than` keeps those dead for at least that long.
        """

    @abstractmethod
    def replay(
        self,
        target: str | None = None,
        *,
        reason: str | None = None,
        ids: Collection[str] | None = None,
    ) -> list[str]:
        """Move matching dead letters back to their target queue; return the replayed ids.

        Filters as in `dead_letters`. A replayed message keeps its id, idempotency key and
        history (plus a replay marker); its attempts restart at 0, so it gets every retry tier
        again. Dead letters that do not match stay where they are.
        """

    @abstractmethod
    def depth(self, target: str) -> int:
        """Messages ready in the target's queue (not those waiting in retry tiers or in flight)."""

    @abstractmethod
    def queue_stats(self, target: str) -> QueueStats:
        """How many messages wait for `target`: ready, in flight, retrying, dead; its consumers.

        Read from the broker each call (cache it when asking often). TopologyError when the
        target is unknown or its queues are missing.
        """

    def queue_stats_many(self, targets: Iterable[str]) -> list[QueueStats]:
        """`queue_stats` of each of `targets`, in order; a backend may read them in one go."""
        return [self.queue_stats(target) for target in targets]

    def publishing_problem(self) -> str | None:
        """Why a publish could not be confirmed now (its connection is down, reconnecting, or
        held back by the broker), or None. Readiness reports it; the embedded bus has none."""
        return None

    @abstractmethod
    def delete_topology(self, topology: Topology) -> None:
        """Delete everything `topology` declared, messages included (tests, decommissioning)."""

    @abstractmethod
    def close(self) -> None:
        """Stop consumers, give back unsettled deliveries, release the connection. Idempotent."""

    def __enter__(self) -> Broker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
