"""The bus's errors: one small hierarchy a caller can catch by meaning.

    BusError
    ├── ConfigurationError (also a ValueError): a broker URL or option that cannot be used
    │   └── TopologyError: an invalid topology, an unknown target, or nothing declared yet
    ├── InvalidMessage (also a ValueError): an Outgoing message that breaks a rule
    ├── Unroutable: no binding matches the routing key, so nobody would receive the message
    ├── PublishFailed: the broker did not confirm (nack, timeout, connection closed)
    ├── BrokerUnavailable: the broker cannot be reached, the connection was lost, or it is closed
    └── SettleError: a delivery was settled twice, after its broker closed, or not at all

`Unroutable` is a configuration problem (retrying will not help: add a route), `PublishFailed` is
transient (retrying may help); that is why they are siblings, not parent and child.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class BusError(Exception):
    """Anything the bus raises on purpose."""


class ConfigurationError(BusError, ValueError):
    """A broker URL or option that cannot be used; the message names the option and the rule."""


class TopologyError(ConfigurationError):
    """An invalid topology, a target the declared topology lacks, or no topology declared."""


class InvalidMessage(BusError, ValueError):
    """An outgoing message that breaks a rule (routing key, header name or value, id)."""


class Unroutable(BusError):
    """No binding matches the routing key: the message was not stored anywhere.

    Attributes:
      routing_key: the key that matched no route.
      message_id: the id the message would have had.
    """

    def __init__(self, routing_key: str, message_id: str, namespace: str = "") -> None:
        where = f" in namespace {namespace!r}" if namespace else ""
        super().__init__(
            f"no target's route matches routing key {routing_key!r}{where} "
            f"(message {message_id}); add a route to a target or fix the key"
        )
        self.routing_key = routing_key
        self.message_id = message_id


@dataclass(frozen=True)
class PublishFailure:
    """One message of a batch that was not confirmed.

    Attributes:
      index: its position in the batch handed to ``publish_many``.
      message_id: its id.
      routing_key: its routing key.
      reason: what went wrong, in words.
      unroutable: True when no route matched (a configuration problem, not a transient one).
    """

    index: int
    message_id: str
    routing_key: str
    reason: str
    unroutable: bool = False


class PublishFailed(BusError):
    """The broker did not confirm one or more messages.

    Attributes:
      failures: one entry per message that was not confirmed, in batch order (empty for a
        single ``publish``, whose message is the one that failed).
      published: ids of the messages of the same batch that *were* confirmed; they are stored
        and will be delivered, so a caller retrying the batch should resend only the failures.
    """

    def __init__(
        self,
        message: str,
        *,
        failures: Sequence[PublishFailure] = (),
        published: Sequence[str] = (),
    ) -> None:
        if failures:
            listed = "; ".join(
                f"#{f.index} {f.message_id} ({f.routing_key}): {f.reason}" for f in failures[:10]
            )
            more = f"; and {len(failures) - 10} more" if len(failures) > 10 else ""
            message = f"{message}: {listed}{more}"
        super().__init__(message)
        self.failures: tuple[PublishFailure, ...] = tuple(failures)
        self.published: tuple[str, ...] = tuple(published)


class BrokerUnavailable(BusError):
    """The broker cannot be reached, the connection was lost, or the Broker was closed."""


class SettleError(BusError):
    """A delivery was settled twice, settled after its broker closed, or never settled."""
