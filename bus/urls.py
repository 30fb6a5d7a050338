"""The RabbitMQ URLs the bus takes: one node's, or one per node of a cluster."""

from __future__ import annotations

import re

from bus.errors import ConfigurationError


def node_urls(url: str) -> list[str]:
    """The node URLs of a RabbitMQ setting: one URL, or several separated by commas.

    A comma separates two URLs only where the next one starts (",amqp://" or ",amqps://"), so a
    comma inside one URL (its query, say) stays in it; a password holding ",amqp://" must
    percent-encode its comma (%2C), as URLs require anyway.
    """
    urls = [part.strip() for part in re.split(r",\s*(?=amqps?://)", url.strip())]
    # The messages name entries by position, never quote them: they hold passwords.
    for position, node_url in enumerate(urls, start=1):
        scheme = node_url.split("://", 1)[0].lower() if "://" in node_url else ""
        if scheme not in ("amqp", "amqps"):
            raise ConfigurationError(
                f"invalid RabbitMQ URL list: entry {position} of {len(urls)} does not start "
                "with amqp:// or amqps://; write one URL per node separated by commas, e.g. "
                "'amqp://user:password@host1:5672/vhost,amqp://user:password@host2:5672/vhost'"
            )
    return urls
