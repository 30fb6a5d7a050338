"""Queue depth and consumers per target, read from the broker when Prometheus scrapes.

No hub process knows how many messages wait in a queue; the broker does. `QueueCollector` asks
it at scrape time, through the bus interface's `queue_stats_many` (passive declares on the
RabbitMQ backend's admin connection, one SQLite read on the embedded one), and exposes

    jghub_queue_messages{target, state="ready"|"in_flight"|"retrying"|"dead"}   messages
    jghub_queue_consumers{target}                                               consumers
    jghub_broker_up                                          1 when the broker answered

A count the broker cannot tell (RabbitMQ does not report in-flight messages, the embedded broker
does not know the consumers of other processes) is absent rather than 0, so an absent series does
not fire a "no consumers" alert by mistake.

Only `jghub serve` registers this collector (a worker's --metrics-port does not), but with several
serve hosts each one reports the same broker's counts under its own `instance`: the alert rules
and the dashboard take them once, `max by (target)`, never a sum (monitor/prometheus/alerts.yml).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bus import Broker, BrokerUnavailable, BusError, QueueStats, Topology

log = logging.getLogger("monitor.queues")


class BrokerQueueStats:
    """Reads every target's QueueStats from the hub's broker; raises when there is none.

    Parameters:
      broker: returns the open broker (whose topology is declared), or None while there is
        none (the scrape then says jghub_broker_up 0).
      topology: that topology; its targets are the ones read.
    """

    def __init__(self, broker: Callable[[], Broker | None], topology: Topology) -> None:
        self.broker = broker
        self.topology = topology

    def read(self) -> list[QueueStats]:
        broker = self.broker()
        if broker is None:
            raise BrokerUnavailable("the hub is not connected to the bus")
        return broker.queue_stats_many(t.name for t in self.topology.targets)


class QueueCollector(Collector):
    """Prometheus collector of queue depth and consumers; register it with `scrape_registry`.

    Scrapes are serialised (one broker read at a time). A broker that does not answer gives
    `jghub_broker_up 0` and no queue series, and the reason is logged.
    """

    def __init__(self, source: BrokerQueueStats) -> None:
        self.source = source
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "jghub_broker_up", "1 when the broker answered the last scrape's queue read, else 0."
        )
        with self._lock:
            try:
                stats: Sequence[QueueStats] = self.source.read()
            except BusError as exc:
                log.warning("queue statistics unavailable: %r", exc)
                up.add_metric([], 0.0)
                yield up
                return
        up.add_metric([], 1.0)
        yield up
        messages = GaugeMetricFamily(
            "jghub_queue_messages",
            "Messages waiting for a target: ready in its queue, in flight (handed to a "
            "consumer, unsettled), retrying in its tiers, dead.",
            labels=["target", "state"],
        )
        consumers = GaugeMetricFamily(
            "jghub_queue_consumers",
            "Consumers (workers) attached to a target's queue.",
            labels=["target"],
        )
        for item in stats:
            messages.add_metric([item.target, "ready"], float(item.ready))
            if item.in_flight is not None:
                messages.add_metric([item.target, "in_flight"], float(item.in_flight))
            messages.add_metric([item.target, "retrying"], float(item.retrying))
            messages.add_metric([item.target, "dead"], float(item.dead))
            if item.consumers is not None:
                consumers.add_metric([item.target], float(item.consumers))
        yield messages
        yield consumers
