"""Queue depth and consumers per target, read from the broker when Prometheus scrapes.

No hub process knows how many messages wait in a queue; the broker does. `QueueCollector` asks
it at scrape time and exposes

    jghub_queue_messages{target, state="ready"|"retrying"|"dead"}   messages waiting
    jghub_queue_consumers{target}                                   consumers attached
    jghub_broker_up                                                 1 when the broker answered

- RabbitMQ (`RabbitQueueStats`): one short connection per scrape and a passive `queue.declare`
  per queue, which returns its message and consumer counts without changing anything (the bus's
  `depth()` gives messages only, so this reads the broker with pika directly).
- The embedded broker (`BrokerQueueStats`): the bus interface's `depth()` and `dead_letters()`;
  it has no consumer count and no retry-tier count, so those series are absent rather than 0 (an
  absent series does not fire a "no consumers" alert by mistake).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pika
import pika.exceptions
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bus import Broker, BrokerUnavailable, BusError, Topology

log = logging.getLogger("monitor.queues")


@dataclass(frozen=True)
class QueueStats:
    """What waits for one target, as the broker reports it (None: this broker cannot tell).

    Attributes:
      target: the target system.
      ready: messages ready in its queue (not in flight, not waiting in a retry tier).
      retrying: messages waiting in its retry tiers.
      dead: messages in its dead letters.
      consumers: consumers attached to its queue (workers).
    """

    target: str
    ready: int
    retrying: int | None = None
    dead: int | None = None
    consumers: int | None = None


class QueueStatsSource(Protocol):
    """Reads every target's QueueStats; raises when the broker does not answer."""

    def read(self) -> list[QueueStats]: ...


class RabbitQueueStats:
    """QueueStats from RabbitMQ by passive queue.declare (messages and consumers of each queue).

    Parameters:
      url: the AMQP URL (amqp://user:password@host:port/vhost).
      topology: the declared topology; its names say which queues to read.
      timeout: seconds for connecting and for each answer; keep it under the scrape timeout.
    """

    def __init__(self, url: str, topology: Topology, *, timeout: float = 5.0) -> None:
        self.topology = topology
        self._parameters = pika.URLParameters(url)
        self._parameters.socket_timeout = timeout
        self._parameters.blocked_connection_timeout = timeout
        self._parameters.client_properties = {"connection_name": "jghub-monitor-queue-stats"}
        self._parameters.stack_timeout = timeout

    def read(self) -> list[QueueStats]:
        connection = pika.BlockingConnection(self._parameters)
        try:
            reader = _PassiveReader(connection)
            stats = []
            for target in self.topology.targets:
                name = target.name
                ready, consumers = reader.counts(self.topology.target_queue(name))
                tiers = [
                    reader.counts(self.topology.retry_queue(name, tier))[0]
                    for tier in range(len(target.retry_delays))
                ]
                dead = reader.counts(self.topology.dead_queue(name))[0]
                stats.append(
                    QueueStats(
                        target=name,
                        ready=ready or 0,
                        retrying=sum(t or 0 for t in tiers) if tiers else 0,
                        dead=dead,
                        consumers=consumers,
                    )
                )
            return stats
        finally:
            with contextlib.suppress(pika.exceptions.AMQPError):
                connection.close()


class _PassiveReader:
    """Passive declares on one connection; a missing queue closes the channel, so reopen it."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._channel = connection.channel()

    def counts(self, queue: str) -> tuple[int | None, int | None]:
        """(messages, consumers) of `queue`, or (None, None) when it does not exist."""
        try:
            method = self._channel.queue_declare(queue, passive=True).method
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            self._channel = self._connection.channel()
            return None, None
        return int(method.message_count), int(method.consumer_count)


class BrokerQueueStats:
    """QueueStats through the bus interface (the embedded broker): ready and dead counts only.

    Parameters:
      broker: returns the open broker (whose topology is declared), or None while there is
        none (the scrape then says jghub_broker_up 0).
      topology: that topology.
      dead_cap: at most this many dead letters are counted per target (listing reads them).
    """

    def __init__(
        self,
        broker: Callable[[], Broker | None],
        topology: Topology,
        *,
        dead_cap: int = 10_000,
    ) -> None:
        self.broker = broker
        self.topology = topology
        self.dead_cap = dead_cap

    def read(self) -> list[QueueStats]:
        broker = self.broker()
        if broker is None:
            raise BrokerUnavailable("the hub is not connected to the bus")
        return [
            QueueStats(
                target=t.name,
                ready=broker.depth(t.name),
                dead=len(broker.dead_letters(t.name, limit=self.dead_cap)),
            )
            for t in self.topology.targets
        ]


def queue_stats_source(
    url: str,
    broker: Callable[[], Broker | None],
    topology: Topology,
    *,
    timeout: float = 5.0,
) -> QueueStatsSource:
    """The right reader for `url`: RabbitMQ read directly, anything else through `broker()`."""
    if url.split(":", 1)[0].lower() in ("amqp", "amqps"):
        return RabbitQueueStats(url, topology, timeout=timeout)
    return BrokerQueueStats(broker, topology)


class QueueCollector(Collector):
    """Prometheus collector of queue depth and consumers; register it with `scrape_registry`.

    Scrapes are serialised (one broker read at a time). A broker that does not answer gives
    `jghub_broker_up 0` and no queue series, and the reason is logged.
    """

    def __init__(self, source: QueueStatsSource) -> None:
        self.source = source
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "jghub_broker_up", "1 when the broker answered the last scrape's queue read, else 0."
        )
        with self._lock:
            try:
                stats: Sequence[QueueStats] = self.source.read()
            except (BusError, pika.exceptions.AMQPError, OSError) as exc:
                log.warning("queue statistics unavailable: %r", exc)
                up.add_metric([], 0.0)
                yield up
                return
        up.add_metric([], 1.0)
        yield up
        messages = GaugeMetricFamily(
            "jghub_queue_messages",
            "Messages waiting for a target: ready in its queue, retrying in its tiers, dead.",
            labels=["target", "state"],
        )
        consumers = GaugeMetricFamily(
            "jghub_queue_consumers",
            "Consumers (workers) attached to a target's queue.",
            labels=["target"],
        )
        for item in stats:
            messages.add_metric([item.target, "ready"], float(item.ready))
            if item.retrying is not None:
                messages.add_metric([item.target, "retrying"], float(item.retrying))
            if item.dead is not None:
                messages.add_metric([item.target, "dead"], float(item.dead))
            if item.consumers is not None:
                consumers.add_metric([item.target], float(item.consumers))
        yield messages
        yield consumers
