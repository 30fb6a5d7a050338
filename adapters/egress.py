"""The one outbound path: consume, render, deliver and settle each message of a target's queue.

Ingress (`adapters.ingress`) turns what a system sends into canonical envelopes on the bus;
egress turns the envelopes on a target's queue into what the target system reads:

    egress = build_egress(
        system, mappings, data_dir=..., store=..., on_breaker_change=..., stop=stop
    )
    broker.consume(egress.name, egress.handle, stop=stop, concurrency=egress.concurrency)

For each message, `Egress.handle`:

1. **decodes** it back into the canonical envelope (`Envelope.from_amqp`); a message that is not
   one goes to the dead letters (stage "decode");
2. **renders** it with the target's reverse mapping, `outbound.render[dataset]`, or as the
   canonical event (CloudEvents JSON, structured mode) where that entry is `cloudevent`; a
   dataset the render table does not list, and a record the mapping cannot render, go to the
   dead letters (stage "render") with the reason;
3. **delivers** it through the target's sender behind the target's circuit breaker, retrying
   transient failures in process (`RetryPolicy.in_process_attempts`; see `adapters.delivery`).
   The message's idempotency key goes with every attempt;
4. **settles** it exactly once: delivered → ack; refused (4xx, a Client fault) → dead letters
   at once; still failing (5xx, timeout, refused connection) → retry, i.e. the bus's delayed
   tiers, and the dead letters after the last tier; refused by the open breaker before any call
   → postpone, the same tier again without spending it; the hub's own store not answering
   (`StoreUnavailable`: the outbox is written there) → postpone too, however long it lasts:
   nothing the target did, so never the dead letters.

With `outbound.batch`, steps 3 and 4 take up to max_records messages of one outbound message
type at once (`Egress.send_batch`, `adapters.batching`): one request, and each record settled
alone as the target's answer names its result. Order per record: within a batch, records go in
the order they were published; batches are sent one after the other. A record retried (a 5xx on
its batch, a partial answer) leaves its queue's order, as a retried record does without batches:
a later change of the same record, already in the queue, may reach the target first.

A step that cannot go on raises `NotDelivered`, which says how the message is settled; `settle`
is the one place that turns it into the bus's calls. Anything else that consumes canonical
events (the centre) decodes and settles with the same two functions.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from adapters import registry
from adapters.base import AdapterContext, Sender
from adapters.batching import Batcher, Gathering, Pending
from adapters.breaker import BreakerOpen, BreakerOptions, CircuitBreaker, StateListener
from adapters.delivery import DeliveryFailed, OutboundOptions, TargetDelivery
from adapters.errors import AdapterError
from adapters.redaction import Redaction
from bus import Broker, Delivery, Message
from mappings import (
    BatchAnswerError,
    MappingEngineError,
    OutboundRendering,
    RecordPart,
    SystemMappings,
)
from standard.envelope import STRUCTURED_CONTENT_TYPE, Envelope
from standard.errors import StandardError
from store import Store, StoreUnavailable
from systems import CLOUDEVENT, SENDER_KINDS, SystemConfig

log = logging.getLogger("adapters.egress")

STAGES = ("decode", "render", "deliver")
"""Where the outbound path can fail a message (`NotDelivered.stage`): its dead letters' stages."""


class NotDelivered(Exception):
    """A message that cannot be delivered now or ever, and how to settle it.

    Attributes:
      settle_as: "dead_letter" (never: the dead letters at once), "retry" (later: the next
        delayed tier, the dead letters after the last) or "postpone" (later, without spending a
        tier: nothing was tried).
      stage: where it failed ("decode", "render", "deliver"), kept in the message's history.
      reason: what happened, in words, for the history and the dead letters.
    """

    def __init__(
        self, settle_as: Literal["dead_letter", "retry", "postpone"], stage: str, reason: str
    ) -> None:
        super().__init__(reason)
        self.settle_as = settle_as
        self.stage = stage
        self.reason = reason


def decode(message: Message, *, target: str) -> Envelope:
    """The canonical envelope `message` for `target` carries; NotDelivered (stage "decode")."""
    try:
        return Envelope.from_amqp(
            {"headers": dict(message.headers), "content_type": message.content_type},
            message.body,
            check_record=False,  # rendering validates the record; no need to do it twice
        )
    except StandardError as error:
        raise NotDelivered(
            "dead_letter",
            "decode",
            f"message {message.id} for {target} is not a canonical envelope: {error}",
        ) from None


def settle(delivery: Delivery, failure: NotDelivered, *, target: str) -> None:
    """Settle `delivery` as `failure` says (the one place a failed message is settled).

    Logged at DEBUG only: one line per message would bury the log when a target is down. The
    observer journals and counts each settle, and logs a target's dead letters at WARNING at
    most once a minute (`monitor.observer.DeadLetterLog`).
    """
    message_id = delivery.message.id
    if failure.settle_as == "dead_letter":
        log.debug("dead letter %s for %s: %s", message_id, target, failure.reason)
        delivery.dead_letter(failure.reason, failure.stage)
    elif failure.settle_as == "postpone":
        delivery.postpone(failure.reason, failure.stage)
    else:
        log.debug("retry later %s for %s: %s", message_id, target, failure.reason)
        delivery.retry(failure.reason, failure.stage)


@dataclass
class Egress:
    """One target system's outbound path: its mappings, sender, breaker and retries."""

    system: SystemConfig
    mappings: SystemMappings | None  # None for a system without a folder: it reads events
    sender: Sender
    delivery: TargetDelivery
    # A target's answer, quoted in a failure's reason, may echo the credential it was sent.
    redaction: Redaction = field(default_factory=Redaction)
    # outbound.batch: one Batcher per outbound message type, made when first needed.
    _batchers: dict[str, Batcher] = field(default_factory=dict, init=False, repr=False)
    _batchers_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _gathering: Gathering = field(default_factory=Gathering, init=False, repr=False)

    @property
    def name(self) -> str:
        """Its target name on the bus: its system's id."""
        return self.system.id

    @property
    def concurrency(self) -> int:
        """Deliveries handled at once (`outbound.concurrency`, or twice `outbound.batch`'s
        max_records: one batch fills while the one before it is sent; the bus caps it at the
        prefetch, which a batch raises to match)."""
        return self.system.outbound.in_hand if self.system.outbound is not None else 1

    def handle(self, delivery: Delivery) -> None:
        """Decode, render, deliver and settle one message (the consumer's handler).

        With `outbound.batch`, a message whose type has a batch rendering waits in its batch
        until the batch was sent and it was settled (see `adapters.batching`).
        Counted and journalled by the observer that wraps this handler (Observer.watch).
        """
        message = delivery.message
        try:
            envelope = decode(message, target=self.system.id)
            batcher = self._batcher(envelope)
            if batcher is not None:
                batcher.submit(Pending(delivery, envelope))
                return
            body, content_type = self.render(envelope)
            attempts = self.deliver(message, envelope, body, content_type)
        except NotDelivered as failure:
            self._settle(delivery, failure)
        else:
            delivery.ack()
            log.debug("delivered %s to %s in %d attempt(s)", message.id, self.system.id, attempts)
        if self._batchers:  # settled outside a batch: a batch waiting for it may go now
            self._gathering.poke()

    def message_type(self, envelope: Envelope) -> str:
        """What `envelope` is rendered as (or `cloudevent`); NotDelivered (stage "render")."""
        outbound = self.system.outbound
        assert outbound is not None  # only systems with an outbound section get an egress
        dataset = envelope.spec.name
        message_type = outbound.render.get(dataset)
        if message_type is None:
            # A route wider than the render table (e.g. '#'): refusing beats sending a payload
            # the system never agreed to read.
            raise NotDelivered(
                "dead_letter",
                "render",
                f"{self.system.id} has no rendering for dataset {dataset} (record "
                f"{envelope.subject}); add '{dataset}: <outbound message type>' or "
                f"'{dataset}: {CLOUDEVENT}' to its outbound.render, or narrow its routes",
            )
        return message_type

    def render(self, envelope: Envelope) -> tuple[bytes, str]:
        """The payload the target reads, and its content type; NotDelivered (stage "render")."""
        message_type = self.message_type(envelope)
        if message_type == CLOUDEVENT:
            return envelope.to_json(), STRUCTURED_CONTENT_TYPE
        assert self.mappings is not None  # the loader refuses a render without a folder
        try:
            body = self.mappings.render(message_type, envelope)
        except (MappingEngineError, StandardError) as error:
            raise self._not_rendered(envelope, message_type, error) from None
        return body, content_type(self.mappings, message_type)

    def _not_rendered(
        self, envelope: Envelope, message_type: str, error: Exception
    ) -> NotDelivered:
        return NotDelivered(
            "dead_letter",
            "render",
            f"{envelope.spec.name} record {envelope.subject} cannot be rendered as "
            f"{message_type} for {self.system.id}: {error}",
        )

    def deliver(self, message: Message, envelope: Envelope, body: bytes, content_type: str) -> int:
        """Deliver `body` (breaker, in-process retries); the attempts it took, or NotDelivered."""
        try:
            return self.delivery.deliver(
                body,
                content_type=content_type,
                idempotency_key=message.idempotency_key,
                envelope=envelope,
            )
        except (DeliveryFailed, StoreUnavailable, AdapterError) as error:
            raise self._failure(error, message.id) from None

    def _failure(
        self, error: DeliveryFailed | StoreUnavailable | AdapterError, what: str
    ) -> NotDelivered:
        """How a failed delivery of `what` (a message id, or a batch) is settled."""
        if isinstance(error, DeliveryFailed):
            if error.permanent:
                return NotDelivered("dead_letter", "deliver", error.reason)
            if error.untried:  # the breaker is open: wait in a tier without spending it
                if isinstance(error.error, BreakerOpen):
                    # The wait changes with every refusal, so it is logged, not kept in the
                    # reason (which a dead letter may carry and an operator searches).
                    log.debug(
                        "postponed %s for %s: next trial in %.1fs",
                        what, self.system.id, error.error.retry_in,
                    )  # fmt: skip
                return NotDelivered("postpone", "deliver", error.reason)
            return NotDelivered("retry", "deliver", error.reason)
        if isinstance(error, StoreUnavailable):
            # The hub's own database, not the target: wait without spending a tier.
            return NotDelivered("postpone", "deliver", str(error))
        # A sender's own configuration (e.g. a secret's variable not set): nothing the
        # target did; the retry tiers give an operator time to fix it, then dead letters.
        return NotDelivered(
            "retry",
            "deliver",
            f"sender {self.sender.name} of {self.system.id} cannot deliver: {error}",
        )

    def _settle(self, delivery: Delivery, failure: NotDelivered) -> None:
        """Settle `delivery` as `failure` says, its reason redacted."""
        redacted = self.redaction.text(failure.reason)
        settle(
            delivery,
            NotDelivered(failure.settle_as, failure.stage, redacted),
            target=self.system.id,
        )

    # ------------------------------------------------------------------ batches

    def _decide(self, member: Pending, failure: NotDelivered) -> None:
        """Settle `member` as `failure` says, in its own handler thread (`Pending.settle`)."""
        member.settle = functools.partial(self._settle, member.delivery, failure)

    def _batcher(self, envelope: Envelope) -> Batcher | None:
        """The Batcher of `envelope`'s message type, or None: it goes one a request (no
        `outbound.batch`, or the canonical event). NotDelivered when it has no rendering."""
        outbound = self.system.outbound
        assert outbound is not None
        if outbound.batch is None:
            return None
        message_type = self.message_type(envelope)
        if message_type == CLOUDEVENT:
            return None
        with self._batchers_lock:
            batcher = self._batchers.get(message_type)
            if batcher is None:
                batcher = self._batchers[message_type] = Batcher(
                    lambda members: self.send_batch(message_type, members),
                    max_records=outbound.batch.max_records,
                    max_wait_s=outbound.batch.max_wait_ms / 1000,
                    gathering=self._gathering,
                )
            return batcher

    def send_batch(self, message_type: str, members: Sequence[Pending]) -> None:
        """Render and send one batch, and decide how each record is settled (`Pending.settle`):
        acked, dead-lettered or retried alone, as the target's answer names its result.

        - a record that cannot be rendered is dead-lettered alone; the others go on;
        - the whole request failing transiently (5xx, timeout) retries every record through
          the retry tiers; the breaker open postpones every record;
        - the whole request refused (4xx) sends each record alone, one a request, so that one
          bad record cannot take the batch down with it;
        - an answer that cannot be read retries every record (the target drops those it
          already took by their `record_key`);
        - a record the answer does not name (a partial answer) is retried.

        Records go in the order they were published (a retried record keeps its first time).
        """
        assert self.mappings is not None
        rendering = self.mappings.outbound_mapping(message_type)
        kept: list[Pending] = []
        parts: list[RecordPart] = []
        for member in sorted(members, key=lambda m: m.delivery.message.published_at):
            try:
                parts.append(rendering.render_part(member.envelope))
            except (MappingEngineError, StandardError) as error:
                self._decide(member, self._not_rendered(member.envelope, message_type, error))
                continue
            kept.append(member)
        if not kept:
            return
        keys = [member.delivery.message.idempotency_key for member in kept]
        batch_key = "batch-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]
        try:
            answer, attempts = self.delivery.send_batch(
                rendering.render_batch(parts, keys, batch_key),
                content_type=content_type(self.mappings, message_type),
                idempotency_key=batch_key,
            )
        except (DeliveryFailed, StoreUnavailable, AdapterError) as error:
            failure = self._failure(error, batch_key)
            # Even a batch of one: whether a record went alone or with others depends on
            # what else was in hand, so what a refusal does to it must not.
            if failure.settle_as == "dead_letter":
                log.info(
                    "%s refused batch %s of %d records whole (%s); sending them one by one",
                    self.system.id, batch_key, len(kept), failure.reason,
                )  # fmt: skip
                for member in kept:
                    self._one_by_one(member)
                return
            for member in kept:
                self._decide(member, failure)
            return
        self._decide_results(rendering, batch_key, kept, answer)
        log.debug(
            "sent batch %s of %d to %s in %d attempt(s)",
            batch_key, len(kept), self.system.id, attempts,
        )  # fmt: skip

    def _decide_results(
        self,
        rendering: OutboundRendering,
        batch_key: str,
        kept: Sequence[Pending],
        answer: bytes,
    ) -> None:
        """Decide each record of a sent batch as the target's answer names its result."""
        target = self.system.id
        try:
            results = rendering.read_results(answer, len(kept))
        except BatchAnswerError as error:
            failure = NotDelivered(
                "retry",
                "deliver",
                f"target {target} took batch {batch_key} but its answer cannot be read, so the "
                f"whole batch is sent again: {error}",
            )
            for member in kept:
                self._decide(member, failure)
            return
        for member, result in zip(kept, results, strict=True):
            subject = member.envelope.subject
            if result is None:
                self._decide(
                    member,
                    NotDelivered(
                        "retry",
                        "deliver",
                        f"target {target} answered batch {batch_key} without a result for "
                        f"record {subject} (a partial answer); it is sent again",
                    ),
                )
            elif result.taken:
                member.settle = member.delivery.ack
            else:
                self._decide(
                    member,
                    NotDelivered(
                        "dead_letter",
                        "deliver",
                        f"target {target} refused record {subject} of batch {batch_key}: "
                        f"{result.reason}",
                    ),
                )

    def _one_by_one(self, member: Pending) -> None:
        """Deliver one record of a refused batch alone, as a target without batches gets it."""
        try:
            body, content_type_ = self.render(member.envelope)
            self.deliver(member.delivery.message, member.envelope, body, content_type_)
        except NotDelivered as failure:
            self._decide(member, failure)
            return
        member.settle = member.delivery.ack

    def attach(self, broker: Broker | None) -> None:
        """Nothing to connect: a sender talks to its target, not to the bus."""

    def close(self) -> None:
        self.sender.close()


def content_type(mappings: SystemMappings, message_type: str) -> str:
    """The content type of what outbound message type `message_type` renders."""
    spec = mappings.outbound_mapping(message_type).mapping
    if spec.format == "json":
        return "application/json; charset=utf-8"
    return f"application/xml; charset={spec.encoding.lower()}"


def build_egress(
    system: SystemConfig,
    mappings: SystemMappings | None,
    *,
    data_dir: Path,
    store: Store | None = None,
    on_breaker_change: StateListener,
    stop: threading.Event,
) -> Egress:
    """The Egress of `system`: its sender (from the registry), breaker and in-process retries.

    `store`: the hub's store, for a sender that keeps what it delivers there (the outbox).
    `stop` cuts the in-process retries' waits short when the worker shuts down.
    """
    outbound = system.outbound
    if outbound is None:
        raise ValueError(f"system {system.id} has no outbound section: nothing is delivered to it")
    context = AdapterContext(system=system, data_dir=data_dir, store=store)
    sender = registry.create(outbound.adapter, outbound.options, context, kinds=SENDER_KINDS)
    assert isinstance(sender, Sender)
    sender.prepare()
    options = sender.options
    shared = options if isinstance(options, OutboundOptions) else OutboundOptions()
    breaker_options = getattr(options, "breaker", None)
    breaker = CircuitBreaker(
        system.id,
        breaker_options if isinstance(breaker_options, BreakerOptions) else BreakerOptions(),
        on_change=on_breaker_change,
    )
    on_breaker_change(system.id, breaker.state, breaker.state)
    delivery = TargetDelivery(
        sender,
        attempts=system.retry.in_process_attempts,
        breaker=breaker,
        backoff_initial_s=shared.backoff_initial_s,
        backoff_max_s=shared.backoff_max_s,
        stop=stop,
    )
    return Egress(system, mappings, sender, delivery, Redaction.of([system]))
