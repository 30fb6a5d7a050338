"""How messages move: one broker interface, a RabbitMQ backend and an embedded one."""

from __future__ import annotations

from typing import Any

from bus.broker import Broker, Delivery, Handler, InHand, QueueStats
from bus.errors import (
    BrokerUnavailable,
    BusError,
    ConfigurationError,
    InvalidMessage,
    PublishFailed,
    PublishFailure,
    SettleError,
    TopologyError,
    Unroutable,
)
from bus.message import DeadLetter, Failure, Message, Outgoing, Quarantined
from bus.topology import Target, Topology, queue_word
from bus.urls import node_urls

DEFAULT_URL = "sqlite:///var/bus.sqlite3"
"""Where the embedded broker keeps its file when no URL is configured (relative to the cwd)."""

__all__ = [
    "DEFAULT_URL",
    "Broker",
    "BrokerUnavailable",
    "BusError",
    "ConfigurationError",
    "DeadLetter",
    "Delivery",
    "Failure",
    "Handler",
    "InHand",
    "InvalidMessage",
    "Message",
    "Outgoing",
    "PublishFailed",
    "PublishFailure",
    "Quarantined",
    "QueueStats",
    "SettleError",
    "Target",
    "Topology",
    "TopologyError",
    "Unroutable",
    "connect",
    "node_urls",
    "queue_word",
]


def connect(url: str | None = None, **options: Any) -> Broker:
    """Open a broker for `url`; `options` go to the backend, which validates them.

    - None: the embedded broker in `DEFAULT_URL`.
    - "sqlite:///relative/path" or "sqlite:////absolute/path": the embedded broker (SQLite,
      one file; three slashes then a relative path, four for an absolute one).
    - "amqp://user:password@host:port/vhost" (or "amqps://"): RabbitMQ; several such URLs
      separated by commas, one per node of a cluster (`node_urls`).

    Raises ConfigurationError for another scheme or a bad option, BrokerUnavailable when the
    broker cannot be reached.
    """
    url = url or DEFAULT_URL
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from bus.embedded import EmbeddedBroker

        return EmbeddedBroker(url, **options)
    if scheme in ("amqp", "amqps"):
        # Imported lazily so the embedded quick start never needs a broker library at import.
        from bus.rabbitmq import RabbitBroker  # type: ignore[import-not-found,unused-ignore]

        broker: Broker = RabbitBroker(url, **options)
        return broker
    raise ConfigurationError(
        f"unsupported broker URL {url!r}: use 'sqlite:///path' for the embedded broker or "
        "'amqp://user:password@host:port/vhost' for RabbitMQ"
    )
