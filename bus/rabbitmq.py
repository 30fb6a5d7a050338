"""The RabbitMQ backend (pika): quorum queues, confirms, retry tiers, dead letters and replay.

What it declares (names from `bus.topology`; `t` is the target's name with '-' read as '_',
`eco_env_penalty` for the target `eco-env-penalty`, as queues were named before targets took
their system's id, so a running broker's queues keep their messages across the upgrade):

    f"{ns}.canonical"       durable topic exchange; publishers write here with mandatory=True
    f"{ns}.target.{t}"      durable quorum queue per target, bound by the target's routes;
                            x-delivery-limit (RabbitOptions.delivery_limit), dead-lettering
                            (at-least-once) past it to the target's dead letters
    f"{ns}.retry.{t}.{i}"   durable quorum queue per retry tier: x-message-ttl = retry_delays[i],
                            dead-lettering (at-least-once) back to the target queue
    f"{ns}.dead.{t}"        durable classic lazy queue per target: the dead letters
    f"{ns}.quarantine"      durable classic lazy queue: rejected inbound payloads

Why classic queues for dead letters and the quarantine: they are browsed without being consumed
(basic.get everything unacked, then close the channel). A classic queue puts the messages back
where they were; a quorum queue also keeps the order but counts each browse as a delivery
(x-delivery-count), and with a delivery limit (the default from RabbitMQ 4.0) browsing would
eventually drop the very messages an operator is looking at. The lazy mode keeps a large backlog
on disk rather than in memory. Target queues and retry tiers are quorum queues: replicated in a
cluster, and at-least-once dead-lettering from a tier back to its target needs one.

A browse hides the messages it holds from any other browse until it ends, so one Broker browses
one queue at a time; two processes listing or replaying the same dead letters at the same
instant each see only what the other is not holding.

Threads: the publisher and every `consume` call each own a connection driven by its own I/O
thread (`bus._amqp_link`), so heartbeats flow while a handler works; queue statistics are read
on one kept blocking connection (reopened when lost), declarations and browsing on a short-lived
one each.

Headers: those `bus.message` documents, except that a header equal to its default stays off the
wire (x-jghub-attempts 0, x-jghub-history [], x-jghub-idempotency-key equal to the id) and
`from_wire` restores it. A message moved to a queue directly (retry tier, dead letters, replay)
also carries `x-jghub-routing-key`, its original routing key, because the default exchange and
dead-lettering replace the AMQP routing key with a queue name.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pika
import pika.exceptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from bus._amqp_link import (
    AmqpLink,
    ConfirmedPublisher,
    ConsumerFeed,
    Incoming,
    Outcome,
    Publication,
    Settle,
)
from bus.broker import (
    Broker,
    Delivery,
    Handler,
    HandlerPool,
    InHand,
    QueueStats,
    run_handler,
)
from bus.errors import (
    BrokerUnavailable,
    BusError,
    ConfigurationError,
    PublishFailed,
    PublishFailure,
    TopologyError,
    Unroutable,
)
from bus.message import (
    HEADER_ATTEMPTS,
    HEADER_HISTORY,
    HEADER_ID,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_PREFIX,
    HEADER_PUBLISHED_AT,
    QUARANTINE_REASON_MAX_CHARS,
    DeadLetter,
    HeaderValue,
    Message,
    Outgoing,
    Quarantined,
    check_headers,
    clipped,
    from_wire,
    new_message_id,
    utc_now,
    wire_headers,
)
from bus.topology import Target, Topology
from bus.urls import node_urls

log = logging.getLogger("bus.rabbitmq")

T = TypeVar("T")

HEADER_ROUTING_KEY = "x-jghub-routing-key"
HEADER_QUARANTINE_REASON = "x-jghub-quarantine-reason"
HEADER_QUARANTINE_SOURCE = "x-jghub-quarantine-source"
HEADER_QUARANTINED_AT = "x-jghub-quarantined-at"

# Headers RabbitMQ adds when it dead-letters or redelivers; they describe the broker's moves,
# not the publisher's message, so consumers do not see them.
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")

_CONNECTION_ERRORS = (pika.exceptions.AMQPConnectionError, OSError)

PERSISTENT = pika.DeliveryMode.Persistent.value

SETTLE_FAILURE_PAUSE = 1.0
"""Seconds a consumer waits after it could not move a message to a retry tier or dead letters."""


class RabbitOptions(BaseModel):
    """Options of the RabbitMQ backend: `bus.connect(url, **options)` validates them here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    heartbeat: int = Field(
        default=30,
        ge=0,
        le=3600,
        description=(
            "Seconds between AMQP heartbeats; a connection silent for two of them is dead. "
            "0 turns heartbeats off (not recommended: a dead peer then goes unnoticed)."
        ),
    )
    publish_timeout: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds publish/publish_many wait for the broker's confirms, reconnects included; "
            "what is unconfirmed by then raises PublishFailed and is not sent again."
        ),
    )
    connect_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds one connection attempt (TCP and AMQP handshake) may take.",
    )
    reconnect_max_delay: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait in seconds between reconnection attempts (exponential backoff).",
    )
    reconnect_give_up: float | None = Field(
        default=300.0,
        gt=0,
        description=(
            "Seconds of failed reconnection attempts after which consume raises "
            "BrokerUnavailable and publishes fail at once; null: keep trying forever."
        ),
    )
    max_message_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=1,
        description=(
            "The broker's max_message_size in bytes (RabbitMQ's default: 128 MiB up to 3.13, "
            "16 MiB from 4.0): a longer message fails at once with the reason instead of being "
            "sent for the broker to refuse. Set it to the broker's own setting."
        ),
    )
    confirm_window: int = Field(
        default=2000,
        ge=1,
        description=(
            "Most messages sent but not yet confirmed on the publishing connection; further "
            "messages wait in memory until confirms arrive."
        ),
    )
    browse_limit: int = Field(
        default=100_000,
        ge=1,
        description=(
            "Most messages dead_letters, replay and quarantined read from one queue in one call "
            "(they hold them unacknowledged while filtering)."
        ),
    )
    delivery_limit: int = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description=(
            "Times a target queue hands a message out unsettled (nacked with requeue, or held "
            "by a consumer whose connection dropped) before RabbitMQ dead-letters it to the "
            "target's dead letters, with the reason (quorum queue x-delivery-limit). A guard "
            "against a message that brings down every consumer it reaches; the hub settles "
            "every message it handles itself, so only such losses count. 20 is RabbitMQ 4's "
            "default, declared explicitly so 3.x behaves the same. Changing it changes the "
            "queue's declaration: see the README's 'A RabbitMQ cluster' for existing queues."
        ),
    )
    connection_name: str = Field(
        default="jghub",
        min_length=1,
        description="Shown in RabbitMQ's connection list, suffixed with the connection's role.",
    )


class RabbitBroker(Broker):
    """`Broker` on RabbitMQ through pika; see the module docstring for what it declares.

    Parameters:
      url: "amqp://user:password@host:port/vhost" (pika URL parameters such as
        "?heartbeat=10" are read too; the options below win), or several such URLs separated
        by commas, one per node of a cluster (`node_urls`): connections try them in turn.
      **options: see `RabbitOptions`.

    Raises ConfigurationError for a bad option, BrokerUnavailable if RabbitMQ does not answer.
    """

    def __init__(self, url: str, **options: Any) -> None:
        try:
            self.options = RabbitOptions(**options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err['input']!r})"
                for err in exc.errors()
            )
            raise ConfigurationError(f"invalid RabbitMQ option: {problems}") from None
        self._urls = node_urls(url)
        parsed = []
        for node_url in self._urls:
            try:
                parsed.append(pika.URLParameters(node_url))
            except Exception as exc:
                raise ConfigurationError(f"invalid RabbitMQ URL {node_url!r}: {exc}") from None
        self._where = ", ".join(f"{p.host}:{p.port}" for p in parsed)
        self._topology: Topology | None = None
        self._lock = threading.Lock()
        # Browsing holds a queue's messages unacknowledged, hiding them from another browse;
        # one at a time per Broker keeps a listing from missing what a replay holds, and back.
        self._browsing = threading.Lock()
        self._closed = threading.Event()
        self._publisher_link: AmqpLink | None = None
        self._publisher: ConfirmedPublisher | None = None
        self._admin = _AdminConnection(
            self._parameters("admin"),
            self._where,
            self._closed,
            statistics=self._parameters("statistics"),
        )
        self._admin.check()

    # --- connections

    def _parameters(self, role: str) -> list[pika.ConnectionParameters]:
        """One parameters object per node URL, in order (fresh each time: pika's are mutable)."""
        options = self.options
        nodes = []
        for node_url in self._urls:
            parameters = pika.URLParameters(node_url)
            parameters.heartbeat = options.heartbeat
            parameters.socket_timeout = options.connect_timeout
            parameters.stack_timeout = options.connect_timeout
            parameters.blocked_connection_timeout = options.publish_timeout
            parameters.connection_attempts = 1
            parameters.client_properties = {"connection_name": f"{options.connection_name}-{role}"}
            nodes.append(parameters)
        return nodes

    def _new_link(self, role: str) -> AmqpLink:
        return AmqpLink(
            self._parameters(role),
            name=role,
            max_backoff=self.options.reconnect_max_delay,
            give_up_after=self.options.reconnect_give_up,
        )

    def _confirmed(self) -> ConfirmedPublisher:
        self._check_open()
        with self._lock:
            if (
                self._publisher is None
                or self._publisher_link is None
                or not (self._publisher_link.alive)
            ):
                link = self._new_link("publisher")
                self._publisher = ConfirmedPublisher(
                    link,
                    window=self.options.confirm_window,
                    max_message_bytes=self.options.max_message_bytes,
                )
                self._publisher_link = link
                link.start()
            return self._publisher

    def publishing_problem(self) -> str | None:
        with self._lock:
            link = self._publisher_link
        if self._closed.is_set():
            return f"the RabbitMQ broker at {self._where} was closed"
        if link is None:
            return None  # nothing published yet: the first publish opens the link
        if link.failed.is_set():
            return f"the publisher gave up on RabbitMQ at {self._where}: {link.error}"
        if not link.connected.is_set():
            return (
                f"the publisher's connection to RabbitMQ at {self._where} is down, "
                f"reconnecting: {link.error or 'connecting'}"
            )
        if link.blocked:
            return f"RabbitMQ at {self._where} holds publishes back: {link.blocked}"
        return None

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise BrokerUnavailable(f"the RabbitMQ broker at {self._where} was closed")

    def _declared(self) -> Topology:
        self._check_open()
        topology = self._topology
        if topology is None:
            raise TopologyError("nothing declared yet: call declare(topology) first")
        return topology

    # --- topology

    def declare(self, topology: Topology) -> None:
        self._check_open()

        def declare_all(channel: Any) -> None:
            for kind, name, arguments in _declarations(topology, self.options.delivery_limit):
                try:
                    if kind == "exchange":
                        channel.exchange_declare(name, exchange_type="topic", durable=True)
                    else:
                        channel.queue_declare(name, durable=True, arguments=arguments)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    raise _conflict(kind, name, arguments, exc) from None
            for target in topology.targets:
                for route in target.routes:
                    channel.queue_bind(
                        topology.target_queue(target.name), topology.exchange, routing_key=route
                    )

        self._admin.run(declare_all)
        self._topology = topology

    def delete_topology(self, topology: Topology) -> None:
        self._check_open()

        def delete_all(channel: Any) -> None:
            for kind, name, _arguments in reversed(
                _declarations(topology, self.options.delivery_limit)
            ):
                if kind == "exchange":
                    channel.exchange_delete(name)
                else:
                    channel.queue_delete(name)

        self._admin.run(delete_all)
        if self._topology is not None and self._topology.namespace == topology.namespace:
            self._topology = None

    def depth(self, target: str) -> int:
        topology = self._declared()
        name = topology.target_queue(topology.target(target).name)
        return self._admin.inspect(lambda channel: _passive(channel, name)[0])

    def queue_stats(self, target: str) -> QueueStats:
        return self.queue_stats_many([target])[0]

    def queue_stats_many(self, targets: Iterable[str]) -> list[QueueStats]:
        # On the kept statistics connection, for every queue of every target: a passive
        # queue.declare per queue answers its ready messages and consumers, changing nothing.
        topology = self._declared()
        wanted = [topology.target(name) for name in targets]

        def read(channel: Any) -> list[QueueStats]:
            stats = []
            for target in wanted:
                ready, consumers = _passive(channel, topology.target_queue(target.name))
                retrying = sum(
                    _passive(channel, topology.retry_queue(target.name, tier))[0]
                    for tier in range(len(target.retry_delays))
                )
                dead = _passive(channel, topology.dead_queue(target.name))[0]
                stats.append(
                    QueueStats(
                        target=target.name,
                        ready=ready,
                        in_flight=None,  # declare-ok counts ready messages only
                        consumers=consumers,
                        retrying=retrying,
                        dead=dead,
                    )
                )
            return stats

        return self._admin.inspect(read)

    # --- publishing

    def publish(self, message: Outgoing) -> str:
        try:
            return self.publish_many([message])[0]
        except PublishFailed as exc:
            failure = exc.failures[0] if exc.failures else None
            if failure is not None and failure.unroutable:
                raise Unroutable(
                    failure.routing_key, failure.message_id, self._declared().namespace
                ) from None
            reason = failure.reason if failure else str(exc)
            message_id = failure.message_id if failure else "?"
            raise PublishFailed(
                f"message {message_id} ({message.routing_key}) not confirmed: {reason}"
            ) from None

    def publish_many(self, messages: Sequence[Outgoing]) -> list[str]:
        topology = self._declared()
        exchange = topology.exchange
        published_at = utc_now().isoformat()
        ids: list[str] = []

        def publications() -> Iterator[Publication]:
            # What `_properties(Message.first(outgoing))` would give, built directly: this is
            # the hot path, and every microsecond here is taken from the I/O thread and the broker.
            for outgoing in messages:
                message_id = outgoing.message_id or new_message_id()
                ids.append(message_id)
                headers: dict[str, HeaderValue] = dict(outgoing.headers)
                headers[HEADER_ID] = message_id
                headers[HEADER_PUBLISHED_AT] = published_at
                key = outgoing.idempotency_key
                if key is not None and key != message_id:
                    headers[HEADER_IDEMPOTENCY_KEY] = key
                body = outgoing.body
                properties = pika.BasicProperties(
                    content_type=outgoing.content_type,
                    delivery_mode=PERSISTENT,
                    message_id=message_id,
                    headers=headers,
                )
                yield (
                    exchange,
                    outgoing.routing_key,
                    body if isinstance(body, bytes) else bytes(body),
                    properties,
                )

        publisher = self._confirmed()
        outcomes = publisher.publish(publications(), len(messages), self.options.publish_timeout)
        return _ids_or_raise(messages, ids, outcomes)

    def _publish_to_queue(self, queue_name: str, messages: Sequence[Message]) -> list[Outcome]:
        """Put `messages` straight into `queue_name` (default exchange), with confirms."""
        publications = [
            ("", queue_name, m.body, _properties(m, {HEADER_ROUTING_KEY: m.routing_key}))
            for m in messages
        ]
        return self._confirmed().publish(
            publications, len(publications), self.options.publish_timeout
        )

    def _move(self, queue_name: str, message: Message) -> None:
        """Put one message into `queue_name`; raise unless the broker confirmed it."""
        outcome = self._publish_to_queue(queue_name, [message])[0]
        if outcome.unroutable:
            raise TopologyError(
                f"queue {queue_name!r} does not exist (message {message.id} could not be moved "
                "there); declare the topology again"
            )
        if not outcome.ok:
            raise PublishFailed(
                f"message {message.id} could not be moved to {queue_name!r}: {outcome.reason}"
            )

    # --- consuming

    def consume(
        self,
        target: str,
        handler: Handler,
        *,
        stop: threading.Event,
        prefetch: int | None = None,
        concurrency: int = 1,
    ) -> None:
        topology = self._declared()
        target_config = topology.target(target)
        link = self._new_link(f"consumer-{target}")
        prefetch = prefetch or target_config.prefetch
        feed = ConsumerFeed(link, topology.target_queue(target), prefetch)
        pool = None
        if min(concurrency, prefetch) > 1:
            pool = HandlerPool(min(concurrency, prefetch), f"jghub-deliver-{target}")
        session = _ConsumeSession(self, topology, target_config, feed, link, prefetch, pool)
        link.start()
        try:
            session.run(handler, stop)
        finally:
            session.finish()

    # --- quarantine

    def quarantine(
        self,
        body: bytes,
        reason: str,
        *,
        source: str,
        headers: Mapping[str, HeaderValue] | None = None,
    ) -> str:
        topology = self._declared()
        extra = dict(headers or {})
        check_headers(extra)
        quarantine_id = new_message_id()
        extra.update(
            {
                HEADER_QUARANTINE_REASON: clipped(reason, QUARANTINE_REASON_MAX_CHARS),
                HEADER_QUARANTINE_SOURCE: source,
                HEADER_QUARANTINED_AT: utc_now().isoformat(),
                f"{HEADER_PREFIX}id": quarantine_id,
            }
        )
        properties = pika.BasicProperties(
            delivery_mode=PERSISTENT, message_id=quarantine_id, headers=extra
        )
        outcome = self._confirmed().publish(
            [("", topology.quarantine_queue, bytes(body), properties)],
            1,
            self.options.publish_timeout,
        )[0]
        if outcome.unroutable:
            raise TopologyError(
                f"the quarantine queue {topology.quarantine_queue!r} does not exist; "
                "declare the topology again"
            )
        if not outcome.ok:
            raise PublishFailed(
                f"quarantined payload {quarantine_id} not confirmed: {outcome.reason}"
            )
        return quarantine_id

    def quarantined(self, limit: int = 100) -> list[Quarantined]:
        topology = self._declared()
        name = topology.quarantine_queue

        def browse(channel: Any) -> list[Quarantined]:
            found = []
            for _tag, _method, properties, body in _browse(channel, name, min(limit, self._scan)):
                headers = dict(properties.headers or {})
                found.append(_quarantined(properties, headers, body))
            return found

        with self._browsing:
            return self._admin.run(browse)[:limit]

    def forget_quarantined(self, ids: Collection[str]) -> list[str]:
        topology = self._declared()
        wanted = frozenset(ids)
        removed: list[str] = []

        def drop(channel: Any) -> None:
            # What is not acked here goes back, in its place, when the channel closes.
            for tag, _method, properties, body in _browse(
                channel, topology.quarantine_queue, self._scan
            ):
                kept = _quarantined(properties, dict(properties.headers or {}), body)
                if kept.id in wanted:
                    channel.basic_ack(tag)
                    removed.append(kept.id)

        # Not retried on a lost connection: an ack that went through must not be counted twice.
        with self._browsing:
            self._admin.run(drop, retry=False)
        return removed

    @property
    def _scan(self) -> int:
        return self.options.browse_limit

    # --- dead letters

    def dead_letters(
        self,
        target: str | None = None,
        *,
        reason: str | None = None,
        ids: Collection[str] | None = None,
        older_than: timedelta | None = None,
        limit: int = 1000,
    ) -> list[DeadLetter]:
        topology = self._declared()
        matches = _DeadLetterFilter(reason, ids, older_than)
        found: list[DeadLetter] = []
        for name in self._target_names(topology, target):
            queue_name = topology.dead_queue(name)

            def browse(channel: Any, name: str = name, queue_name: str = queue_name) -> None:
                # Without filters the first `limit` messages are the answer; with them, every
                # message has to be looked at.
                scan = limit if matches.empty else self._scan
                taken = 0
                for _tag, method, properties, body in _browse(channel, queue_name, scan):
                    letter = DeadLetter.of(name, _message(method, properties, body))
                    if matches(letter):
                        found.append(letter)
                        taken += 1
                        if taken >= limit:
                            return

            with self._browsing:
                self._admin.run(browse)
        found.sort(key=lambda letter: letter.dead_at)
        return found[:limit]

    def replay(
        self,
        target: str | None = None,
        *,
        reason: str | None = None,
        ids: Collection[str] | None = None,
    ) -> list[str]:
        topology = self._declared()
        matches = _DeadLetterFilter(reason, ids, None)
        replayed: list[str] = []
        failures: list[PublishFailure] = []
        for name in self._target_names(topology, target):
            dead_queue = topology.dead_queue(name)
            target_queue = topology.target_queue(name)

            def move(
                channel: Any,
                name: str = name,
                dead_queue: str = dead_queue,
                target_queue: str = target_queue,
            ) -> None:
                picked: list[tuple[int, Message]] = []
                for tag, method, properties, body in _browse(channel, dead_queue, self._scan):
                    message = _message(method, properties, body)
                    if matches(DeadLetter.of(name, message)):
                        picked.append((tag, message.replayed()))
                if not picked:
                    return
                outcomes = self._publish_to_queue(target_queue, [m for _tag, m in picked])
                for (tag, message), outcome in zip(picked, outcomes, strict=True):
                    if outcome.ok:
                        # Only now is the copy safe in the target queue: remove the dead letter.
                        channel.basic_ack(tag)
                        replayed.append(message.id)
                    else:
                        failures.append(
                            PublishFailure(
                                index=len(replayed) + len(failures),
                                message_id=message.id,
                                routing_key=message.routing_key,
                                reason=outcome.reason,
                                unroutable=outcome.unroutable,
                            )
                        )

            # Not retried on a lost connection: what was moved already must not move twice.
            with self._browsing:
                self._admin.run(move, retry=False)
        if failures:
            raise PublishFailed(
                f"{len(failures)} dead letters could not be replayed (they stay dead letters)",
                failures=failures,
                published=replayed,
            )
        return replayed

    @staticmethod
    def _target_names(topology: Topology, target: str | None) -> list[str]:
        if target is not None:
            return [topology.target(target).name]
        return [t.name for t in topology.targets]

    # --- closing

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            link = self._publisher_link
            self._publisher_link = None
            self._publisher = None
        if link is not None:
            link.close()
        self._admin.close()


class _ConsumeSession:
    """One `consume` call: hands deliveries to the handler in this thread, batches the settles.

    Settles are buffered and sent to the I/O thread when nothing else is waiting to be handled,
    every `flush_every` settles, or after `flush_after` seconds, whichever comes first: one
    thread hop per batch rather than per message, and contiguous acks go as one multiple=True
    ack.

    With a `pool` the handler runs in the pool's threads: they only add to the buffer (under a
    lock) and wake this thread through the feed's inbox, and this thread hands the settles to
    the I/O thread, as without a pool. On stop the deliveries in the pool are finished before
    the last flush, so none is left unsettled by us (what was not handed over goes back).
    """

    flush_after = 0.05

    def __init__(
        self,
        broker: RabbitBroker,
        topology: Topology,
        target: Target,
        feed: ConsumerFeed,
        link: AmqpLink,
        prefetch: int,
        pool: HandlerPool | None = None,
    ) -> None:
        self.broker = broker
        self.topology = topology
        self.target = target
        self.feed = feed
        self.link = link
        self.pool = pool
        # Half the prefetch: the broker sends more while the other half is being handled.
        self.flush_every = max(1, prefetch // 2)
        self._settles: list[tuple[int, bool, int]] = []
        self._settles_lock = threading.Lock()
        self._first_settle_at = 0.0
        self.hand = InHand(prefetch)

    def settle_later(self, generation: int, ack: bool, tag: int) -> None:
        with self._settles_lock:
            first = not self._settles
            if first:
                self._first_settle_at = time.monotonic()
            self._settles.append((generation, ack, tag))
        if first and self.pool is not None:
            # A pool thread settled: wake the consuming thread (an empty list in its inbox), so
            # the settle reaches the broker now rather than at its next 0.1 s poll.
            self.feed.inbox.put([])

    def flush(self) -> None:
        with self._settles_lock:
            settles, self._settles = self._settles, []
        if not settles:
            return
        generation = settles[0][0]
        batch: list[Settle] = []
        for gen, ack, tag in settles:
            if gen != generation:
                self.feed.settle(generation, batch)
                generation, batch = gen, []
            batch.append((ack, tag))
        self.feed.settle(generation, batch)

    def run(self, handler: Handler, stop: threading.Event) -> None:
        inbox = self.feed.inbox
        closed = self.broker._closed
        while True:
            if stop.is_set() or closed.is_set():
                return
            self._raise_if_broken()
            try:
                arrived = inbox.get_nowait()
            except queue.Empty:
                self.flush()
                try:
                    arrived = inbox.get(timeout=0.1)
                except queue.Empty:
                    continue
            self.hand.add(len(arrived))
            for incoming in arrived:
                if stop.is_set() or closed.is_set():
                    return  # fetched but not handed over: given back when the link closes
                if incoming.generation != self.feed.generation:
                    self.hand.drop()
                    continue  # from a channel that is gone: the broker delivers it again
                if self.pool is None:
                    self._handle(handler, incoming)
                elif not self.pool.submit(functools.partial(self._handle, handler, incoming), stop):
                    return  # stopped while waiting for a free thread: given back on close
                if self._settles and (
                    len(self._settles) >= self.flush_every
                    or time.monotonic() - self._first_settle_at > self.flush_after
                ):
                    self.flush()

    def _handle(self, handler: Handler, incoming: Incoming) -> None:
        message = _message_of(incoming)
        delivery = _RabbitDelivery(message, self, incoming.generation, incoming.delivery_tag)
        try:
            run_handler(handler, delivery)
        except BusError as exc:
            # Moving it to a retry tier or the dead letters failed: give it back so it is not
            # lost. A missing queue is a configuration problem that redelivery cannot fix, so
            # consume stops with it; otherwise (the broker refused or went away) pause a little,
            # as the message comes straight back.
            log.error(
                "could not settle message %s of target %s: %s; giving it back",
                message.id,
                self.target.name,
                exc,
            )
            if not delivery.settled:
                self.settle_later(incoming.generation, False, incoming.delivery_tag)
            if isinstance(exc, TopologyError):
                raise
            time.sleep(SETTLE_FAILURE_PAUSE)

    def _raise_if_broken(self) -> None:
        if self.pool is not None:
            self.pool.raise_if_failed()  # a TopologyError from _handle in a pool thread
        if self.feed.fatal:
            raise TopologyError(
                f"cannot consume target {self.target.name!r}: {self.feed.fatal}; "
                "declare the topology first"
            )
        if self.link.failed.is_set():
            raise BrokerUnavailable(
                f"lost RabbitMQ at {self.broker._where} while consuming target "
                f"{self.target.name!r}: {self.link.error}"
            )

    def finish(self) -> None:
        if self.pool is not None:
            self.pool.drain()
        self.flush()
        self.feed.stop()
        self.link.close()


class _RabbitDelivery(Delivery):
    """A delivery from a target queue; retry and dead_letter move a copy, then ack the original."""

    def __init__(
        self, message: Message, session: _ConsumeSession, generation: int, tag: int
    ) -> None:
        super().__init__(message, session.target.name, session.hand)
        self._session = session
        self._generation = generation
        self._tag = tag

    def _ack(self) -> None:
        self._session.settle_later(self._generation, True, self._tag)

    def _requeue(self) -> None:
        self._session.settle_later(self._generation, False, self._tag)

    def _retry(self, reason: str, stage: str) -> None:
        failed = self.message.with_failure(stage, reason, permanent=False)
        session = self._session
        tier = session.target.retry_tier(failed.attempts)
        if tier is None:
            queue_name = session.topology.dead_queue(self.target)
        else:
            queue_name = session.topology.retry_queue(self.target, tier)
        session.broker._move(queue_name, failed)
        self._ack()

    def _dead_letter(self, reason: str, stage: str) -> None:
        failed = self.message.with_failure(stage, reason, permanent=True)
        self._session.broker._move(self._session.topology.dead_queue(self.target), failed)
        self._ack()

    def _postpone(self, reason: str, stage: str) -> None:
        session = self._session
        tier = session.target.postpone_tier(self.message.attempts)
        if tier is None:
            self._retry(reason, stage)
            return
        session.broker._move(session.topology.retry_queue(self.target, tier), self.message)
        self._ack()


class _AdminConnection:
    """Blocking connections for declarations and queue inspection.

    Queue statistics (`inspect`: passive declares, which change nothing) are read often —
    back-pressure every second, Prometheus at every scrape, /ready at every probe — so they use
    one connection and channel kept open, reopened only when lost: a connection per read made
    an idle `serve` open one a second, with a dozen pika log lines each. A blocking connection
    answers heartbeats only while it is used, so one left unused for a heartbeat interval (the
    broker drops it after two) is replaced before the next read rather than found dead; one lost
    otherwise fails the read, which reopens it and reads again (a passive declare is safe to
    repeat). A missing queue closes only the channel; the next read opens another channel.

    Declarations, browsing and moves (`run`) are rare and some must not run twice, so each opens
    a connection of its own (about 5 ms). A lost connection is retried with backoff (except for
    operations that must not run twice).

    Given several nodes, each connection takes the first that answers, in order (pika's
    BlockingConnection walks a sequence of parameters).
    """

    def __init__(
        self,
        parameters: Sequence[pika.ConnectionParameters],
        where: str,
        closed: Any,
        *,
        statistics: Sequence[pika.ConnectionParameters],
    ) -> None:
        self._parameters = parameters
        self._statistics = statistics
        self._where = where
        self._closed = closed
        # The kept statistics connection and channel; pika's are not thread-safe, and readers
        # (back-pressure, scrapes, probes) come from several threads.
        self._kept: Any = None
        self._kept_channel: Any = None
        self._kept_used = 0.0  # time.monotonic() of its last read
        heartbeat = statistics[0].heartbeat
        self._kept_idle_limit = float(heartbeat) if isinstance(heartbeat, int) and heartbeat else 0
        self._kept_lock = threading.Lock()

    def check(self) -> None:
        """BrokerUnavailable if RabbitMQ does not answer. The statistics connection is opened
        by the first read: a process that never reads (a worker's consumers) holds none."""
        self.run(lambda _channel: None)

    def inspect(self, operation: Callable[[Any], T]) -> T:
        """Run a read-only `operation` (passive declares) on the kept statistics channel."""
        with self._kept_lock:
            return self._retrying(self._inspect_once, operation, retry=True)

    def run(self, operation: Callable[[Any], T], *, retry: bool = True) -> T:
        """Run `operation` on a channel of a connection opened for it alone."""
        return self._retrying(self._run_once, operation, retry=retry)

    def _retrying(
        self, once: Callable[[Callable[[Any], T]], T], operation: Callable[[Any], T], *, retry: bool
    ) -> T:
        if self._closed.is_set():
            raise BrokerUnavailable(f"the RabbitMQ broker at {self._where} was closed")
        retrying = Retrying(
            retry=retry_if_exception_type(_CONNECTION_ERRORS),
            stop=stop_after_attempt(3 if retry else 1),
            wait=wait_exponential(multiplier=0.2, max=2.0) + wait_random(0, 0.1),
            reraise=True,
        )
        try:
            return retrying(once, operation)
        except _CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"cannot reach RabbitMQ at {self._where}: {exc!r}") from exc

    def _run_once(self, operation: Callable[[Any], T]) -> T:
        connection = pika.BlockingConnection(self._parameters)
        try:
            return operation(connection.channel())
        finally:
            if connection.is_open:
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    connection.close()

    def _inspect_once(self, operation: Callable[[Any], T]) -> T:
        if self._closed.is_set():
            raise BrokerUnavailable(f"the RabbitMQ broker at {self._where} was closed")
        now = time.monotonic()
        stale = self._kept_idle_limit and now - self._kept_used > self._kept_idle_limit
        if self._kept is None or not self._kept.is_open or stale:
            self._drop_kept()
            self._kept = pika.BlockingConnection(self._statistics)
        self._kept_used = now
        try:
            if self._kept_channel is None or not self._kept_channel.is_open:
                self._kept_channel = self._kept.channel()
            return operation(self._kept_channel)
        except _CONNECTION_ERRORS:
            self._drop_kept()  # lost: the retry opens a new one
            raise

    def _drop_kept(self) -> None:
        kept, self._kept, self._kept_channel = self._kept, None, None
        if kept is not None and kept.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                kept.close()

    def close(self) -> None:
        """Close the statistics connection; the others do not outlive their operation."""
        with self._kept_lock:
            self._drop_kept()


# --- helpers


def _declarations(topology: Topology, delivery_limit: int) -> list[tuple[str, str, dict[str, Any]]]:
    """Everything `topology` declares, in order: (kind, name, queue arguments).

    A target queue states its delivery limit and where a message past it goes (the target's
    dead letters, at-least-once: the broker keeps it until the dead-letter queue confirmed it,
    which needs reject-publish overflow), rather than leave both to the broker's version:
    RabbitMQ 4 would otherwise drop such a message after 20 deliveries, 3.x never stop.
    """
    browsable = {"x-queue-type": "classic", "x-queue-mode": "lazy"}
    declared: list[tuple[str, str, dict[str, Any]]] = [("exchange", topology.exchange, {})]
    for target in topology.targets:
        target_queue = topology.target_queue(target.name)
        declared.append(
            (
                "queue",
                target_queue,
                {
                    "x-queue-type": "quorum",
                    "x-delivery-limit": delivery_limit,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": topology.dead_queue(target.name),
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
        )
        for tier, delay in enumerate(target.retry_delays):
            declared.append(
                (
                    "queue",
                    topology.retry_queue(target.name, tier),
                    {
                        "x-queue-type": "quorum",
                        "x-message-ttl": max(1, round(delay * 1000)),
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": target_queue,
                        "x-dead-letter-strategy": "at-least-once",
                        "x-overflow": "reject-publish",
                    },
                )
            )
        declared.append(("queue", topology.dead_queue(target.name), dict(browsable)))
    declared.append(("queue", topology.quarantine_queue, dict(browsable)))
    return declared


def _conflict(
    kind: str, name: str, arguments: Mapping[str, Any], exc: pika.exceptions.ChannelClosedByBroker
) -> BusError:
    if exc.reply_code == 406:
        wanted = (
            "a durable topic exchange"
            if kind == "exchange"
            else "a durable queue with " + ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        )
        return TopologyError(
            f"{kind} {name!r} already exists with different settings: {exc.reply_text}. The "
            f"configuration asks for {wanted}. Either restore the configuration it was declared "
            f"with, or drain and delete the old {kind} (e.g. `rabbitmqctl delete_queue {name}`) "
            "or use a new namespace, then declare again."
        )
    if exc.reply_code == 403:
        return ConfigurationError(
            f"RabbitMQ refused to declare {kind} {name!r}: {exc.reply_text}; grant the user "
            "configure permission on the namespace's names"
        )
    return TopologyError(f"declaring {kind} {name!r} failed: {exc.reply_code} {exc.reply_text}")


def _passive(channel: Any, name: str) -> tuple[int, int]:
    """(ready messages, consumers) of queue `name`, by a passive declare; TopologyError if absent.

    A missing queue closes the channel, so the caller's whole operation ends there.
    """
    try:
        method = channel.queue_declare(name, passive=True).method
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise _missing(name, exc) from None
    return int(method.message_count), int(method.consumer_count)


def _missing(name: str, exc: pika.exceptions.ChannelClosedByBroker) -> BusError:
    if exc.reply_code == 404:
        return TopologyError(f"queue {name!r} does not exist; declare the topology first")
    return BusError(f"inspecting queue {name!r} failed: {exc.reply_code} {exc.reply_text}")


def _properties(message: Message, extra: Mapping[str, HeaderValue] | None = None) -> Any:
    headers = wire_headers(message)
    # Defaults stay off the wire (from_wire restores them): pika encodes and decodes header
    # tables in Python, and these three are most of a first publish's table.
    if not message.attempts:
        del headers[HEADER_ATTEMPTS]
    if not message.history:
        del headers[HEADER_HISTORY]
    if message.idempotency_key == message.id:
        del headers[HEADER_IDEMPOTENCY_KEY]
    if extra:
        headers.update(extra)
    return pika.BasicProperties(
        content_type=message.content_type,
        delivery_mode=PERSISTENT,
        message_id=message.id,
        headers=headers,
    )


def _message_of(incoming: Incoming) -> Message:
    return _message_from(
        incoming.routing_key, incoming.properties, incoming.body, incoming.redelivered
    )


def _message(method: Any, properties: Any, body: bytes) -> Message:
    return _message_from(method.routing_key, properties, body, method.redelivered)


def _message_from(routing_key: str, properties: Any, body: bytes, redelivered: bool) -> Message:
    headers = properties.headers
    limit_reached = None
    if headers:
        limit_reached = _delivery_limit_death(headers)
        headers = {k: v for k, v in headers.items() if not k.startswith(_BROKER_HEADERS)}
        original = headers.get(HEADER_ROUTING_KEY)
        if original:
            routing_key = original.decode() if isinstance(original, bytes) else str(original)
    message = from_wire(
        routing_key=routing_key,
        body=body,
        headers=headers,
        content_type=properties.content_type,
        redelivered=redelivered,
        message_id=properties.message_id,
    )
    if limit_reached is None:
        return message
    queue_name, at = limit_reached
    # The broker moved it, not a handler, so its history has no entry saying why: the x-death
    # record does. It becomes the last failure, which dead_letters lists and filters by.
    return message.with_failure(
        DELIVERY_LIMIT_STAGE,
        f"RabbitMQ dead-lettered it from {queue_name}: it was handed out unsettled more often "
        "than the queue's delivery limit (x-delivery-limit) allows, e.g. every consumer it "
        "reached crashed or lost its connection before settling it",
        permanent=True,
        at=at,
    )


DELIVERY_LIMIT_STAGE = "delivery-limit"
"""The stage of the failure a dead letter gets when the broker moved it past the limit."""


def _delivery_limit_death(headers: Mapping[str, Any]) -> tuple[str, datetime | None] | None:
    """(queue, when) if RabbitMQ's x-death records say the delivery limit dead-lettered it."""
    deaths = headers.get("x-death")
    if not isinstance(deaths, list):
        return None
    for death in deaths:  # newest first
        if not isinstance(death, Mapping):
            continue
        reason = death.get("reason")
        if (reason.decode() if isinstance(reason, bytes) else reason) != "delivery_limit":
            continue
        queue_name = death.get("queue")
        if isinstance(queue_name, bytes):
            queue_name = queue_name.decode("utf-8", "replace")
        at = death.get("time")
        if isinstance(at, datetime) and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)  # pika decodes AMQP timestamps as naive UTC
        return str(queue_name), at if isinstance(at, datetime) else None
    return None


def _quarantined(properties: Any, headers: dict[str, Any], body: bytes) -> Quarantined:
    def text(name: str) -> str:
        value = headers.pop(name, "")
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    reason = text(HEADER_QUARANTINE_REASON)
    source = text(HEADER_QUARANTINE_SOURCE)
    at = text(HEADER_QUARANTINED_AT)
    quarantine_id = text(f"{HEADER_PREFIX}id") or properties.message_id or ""
    extra = {
        k: v if isinstance(v, str | int | float | bool) else str(v)
        for k, v in headers.items()
        if not k.startswith(_BROKER_HEADERS)
    }
    return Quarantined(
        id=quarantine_id,
        body=bytes(body),
        reason=reason,
        source=source,
        headers=extra,
        at=datetime.fromisoformat(at) if at else utc_now(),
    )


def _browse(channel: Any, queue_name: str, limit: int) -> Iterator[tuple[int, Any, Any, bytes]]:
    """Yield up to `limit` messages of `queue_name`, oldest first, holding them unacknowledged.

    They go back to the queue, in their places, when the channel closes (unless acked first).
    """
    for _ in range(limit):
        try:
            method, properties, body = channel.basic_get(queue_name, auto_ack=False)
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise _missing(queue_name, exc) from None
        if method is None:
            return
        yield method.delivery_tag, method, properties, body


class _DeadLetterFilter:
    """The filters of dead_letters/replay; all given ones must hold."""

    def __init__(
        self, reason: str | None, ids: Collection[str] | None, older_than: timedelta | None
    ) -> None:
        self.reason = reason
        self.ids = None if ids is None else frozenset(ids)
        self.cutoff = None if older_than is None else utc_now() - older_than
        self.empty = reason is None and ids is None and older_than is None

    def __call__(self, letter: DeadLetter) -> bool:
        if self.reason is not None and self.reason not in letter.reason:
            return False
        if self.ids is not None and letter.message.id not in self.ids:
            return False
        return self.cutoff is None or letter.dead_at <= self.cutoff


def _ids_or_raise(
    messages: Sequence[Outgoing], ids: Sequence[str], outcomes: Sequence[Outcome]
) -> list[str]:
    failures = [
        PublishFailure(
            index=index,
            message_id=message_id,
            routing_key=message.routing_key,
            reason=outcome.reason,
            unroutable=outcome.unroutable,
        )
        for index, (message, message_id, outcome) in enumerate(
            zip(messages, ids, outcomes, strict=True)
        )
        if not outcome.ok
    ]
    if failures:
        published = [i for i, o in zip(ids, outcomes, strict=True) if o.ok]
        raise PublishFailed(
            f"{len(failures)} of {len(messages)} messages were not confirmed",
            failures=failures,
            published=published,
        )
    return list(ids)
