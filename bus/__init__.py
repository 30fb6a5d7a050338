"""How messages move: one broker interface, a RabbitMQ backend and an embedded one."""

from __future__ import annotations

import re
from typing import Any

from bus.broker import Broker, Delivery, Handler, QueueStats
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
from bus.topology import Target, Topology

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


def node_urls(url: str) -> list[str]:
    """The node URLs of a RabbitMQ setting: one URL, or several separated by commas.

    A comma separates two URLs only where the next one starts (",amqp://" or ",amqps://"), so a
    comma inside one URL (its query, say) stays in it; a password holding ",amqp://" must
    percent-encode its comma (%2C), as URLs require anyway.
    """
    urls = [part.strip() for part in re.split(r",\s*(?=amqps?://)", url.strip())]
    if not all(urls):
        raise ConfigurationError(
            f"invalid RabbitMQ URL list {url!r}: an entry is empty; write "
            "'amqp://user:password@host1:5672/vhost,amqp://user:password@host2:5672/vhost'"
        )
    schemes = {u.split(":", 1)[0].lower() for u in urls}
    if not schemes <= {"amqp", "amqps"}:
        raise ConfigurationError(
            f"invalid RabbitMQ URL list {url!r}: every entry must start with amqp:// or amqps://"
        )
    return urls
