"""The reference lists' feed: the worker's consumer of the queue of the system with a
`reference` section (`config/systems.yaml`: routes `supervision_item.#`, `enforcement_officer.#`,
`supervised_object.#`).

Each message is one change of a list's dataset, written into the store (`StoreLists.apply`) and
acknowledged only once that transaction committed durably: a worker that dies before has its
message delivered again, and applying the same change twice leaves the same row. A late change
(older than the row) is acknowledged too: it was handled, by being ignored and counted. A message
that is not a canonical envelope, a record that breaks the standard or a record of another
dataset (a route wider than the lists' datasets) goes to the dead letters with the reason; a
store that does not answer postpones the message without spending a retry tier.
"""

from __future__ import annotations

import logging

from bus import Broker, Delivery
from reference.stored import ReferenceListError, StoreLists
from standard.envelope import Envelope
from standard.errors import StandardError
from store import StoreUnavailable
from systems import SystemConfig

log = logging.getLogger("reference.feed")

STAGE = "deliver"
"""The stage of the feed's failures in a message's history: its delivery is the store write."""


class ReferenceFeed:
    """Consumes the reference system's queue into the lists (see the module docstring).

    Parameters:
      system: its entry in the systems configuration (auth internal, a `reference` section).
      lists: the store's lists it writes.
    """

    def __init__(self, system: SystemConfig, lists: StoreLists) -> None:
        if system.reference is None:
            raise ValueError(f"system {system.id} has no `reference` section: it feeds no list")
        self.system = system
        self.lists = lists

    @property
    def name(self) -> str:
        """Its target name on the bus: its system's id."""
        return self.system.id

    @property
    def concurrency(self) -> int:
        """Changes written at once (`reference.concurrency`)."""
        assert self.system.reference is not None
        return self.system.reference.concurrency

    def attach(self, broker: Broker | None) -> None:
        """Nothing to publish: the feed only writes the store."""

    def handle(self, delivery: Delivery) -> None:
        """Write one change into its list, then acknowledge it (the consumer's handler)."""
        message = delivery.message
        try:
            envelope = Envelope.from_amqp(message, message.body)
            outcome = self.lists.apply(envelope)
        except (StandardError, ReferenceListError) as error:
            delivery.dead_letter(f"message {message.id} for {self.name}: {error}", STAGE)
            return
        except StoreUnavailable as error:
            delivery.postpone(str(error), STAGE)
            return
        log.debug("%s %s %s: %s", envelope.type, envelope.subject, envelope.operation, outcome)
        delivery.ack()

    def close(self) -> None:
        """Nothing to release: the store belongs to the worker."""
