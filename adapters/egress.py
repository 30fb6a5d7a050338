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

A step that cannot go on raises `NotDelivered`, which says how the message is settled; `settle`
is the one place that turns it into the bus's calls. Anything else that consumes canonical
events (the centre) decodes and settles with the same two functions.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from adapters import registry
from adapters.base import AdapterContext, Sender
from adapters.breaker import BreakerOpen, BreakerOptions, CircuitBreaker, StateListener
from adapters.delivery import DeliveryFailed, OutboundOptions, TargetDelivery
from adapters.errors import AdapterError
from adapters.redaction import Redaction
from bus import Broker, Delivery, Message
from mappings import MappingEngineError, SystemMappings
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

    @property
    def name(self) -> str:
        """Its target name on the bus: its system's id."""
        return self.system.id

    @property
    def concurrency(self) -> int:
        """Deliveries made at once (`outbound.concurrency`; the bus caps it at the prefetch)."""
        return self.system.outbound.concurrency if self.system.outbound is not None else 1

    def handle(self, delivery: Delivery) -> None:
        """Decode, render, deliver and settle one message (the consumer's handler).

        Counted and journalled by the observer that wraps this handler (Observer.watch).
        """
        message = delivery.message
        try:
            envelope = decode(message, target=self.system.id)
            body, content_type = self.render(envelope)
            attempts = self.deliver(message, envelope, body, content_type)
        except NotDelivered as failure:
            redacted = self.redaction.text(failure.reason)
            settle(
                delivery,
                NotDelivered(failure.settle_as, failure.stage, redacted),
                target=self.system.id,
            )
            return
        delivery.ack()
        log.debug("delivered %s to %s in %d attempt(s)", message.id, self.system.id, attempts)

    def render(self, envelope: Envelope) -> tuple[bytes, str]:
        """The payload the target reads, and its content type; NotDelivered (stage "render")."""
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
        if message_type == CLOUDEVENT:
            return envelope.to_json(), STRUCTURED_CONTENT_TYPE
        assert self.mappings is not None  # the loader refuses a render without a folder
        try:
            body = self.mappings.render(message_type, envelope)
        except (MappingEngineError, StandardError) as error:
            raise NotDelivered(
                "dead_letter",
                "render",
                f"{dataset} record {envelope.subject} cannot be rendered as {message_type} "
                f"for {self.system.id}: {error}",
            ) from None
        return body, content_type(self.mappings, message_type)

    def deliver(self, message: Message, envelope: Envelope, body: bytes, content_type: str) -> int:
        """Deliver `body` (breaker, in-process retries); the attempts it took, or NotDelivered."""
        try:
            return self.delivery.deliver(
                body,
                content_type=content_type,
                idempotency_key=message.idempotency_key,
                envelope=envelope,
            )
        except DeliveryFailed as failed:
            if failed.permanent:
                raise NotDelivered("dead_letter", "deliver", failed.reason) from None
            if failed.untried:  # the breaker is open: wait in a tier without spending it
                if isinstance(failed.error, BreakerOpen):
                    # The wait changes with every refusal, so it is logged, not kept in the
                    # reason (which a dead letter may carry and an operator searches).
                    log.debug(
                        "postponed %s for %s: next trial in %.1fs",
                        message.id, self.system.id, failed.error.retry_in,
                    )  # fmt: skip
                raise NotDelivered("postpone", "deliver", failed.reason) from None
            raise NotDelivered("retry", "deliver", failed.reason) from None
        except StoreUnavailable as error:
            # The hub's own database, not the target: wait without spending a tier.
            raise NotDelivered("postpone", "deliver", str(error)) from None
        except AdapterError as error:
            # A sender's own configuration (e.g. a secret's variable not set): nothing the
            # target did; the retry tiers give an operator time to fix it, then dead letters.
            raise NotDelivered(
                "retry",
                "deliver",
                f"sender {self.sender.name} of {self.system.id} cannot deliver: {error}",
            ) from None

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
