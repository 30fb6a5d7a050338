"""The three kinds of adapter every protocol plug-in is one of: inbound, poller and sender.

An adapter class declares its `name` (the entry-point name it registers under in the group
`jghub.adapters`), its `Options` (a pydantic model, every field with a description and a default
that works) and a docstring; `jghub adapters list` and `jghub adapters doc NAME` print them.
The hub builds one instance per configured channel or outbound section:

    adapter = registry.create(name, options_dict, AdapterContext(system=..., data_dir=...))

- `InboundAdapter.mount(router, system, channel, ingress)`: adds the HTTP routes through which
  the system pushes; every payload goes through `Ingress.accept`, the one inbound path.
- `Poller.run(stop)`: pulls from a system that only offers pull APIs until `stop` is set, and
  hands what it pulled to `context.ingress`.
- `Sender.deliver(body, content_type=..., idempotency_key=..., envelope=...)`: delivers one
  rendered payload, raising PermanentDeliveryError or TransientDeliveryError.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

from systems import AdapterKind, ChannelConfig, SystemConfig

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from adapters.ingress import Ingress
    from adapters.security import Gatekeeper
    from standard.envelope import Envelope


class NoOptions(BaseModel):
    """For adapters that take no options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class AdapterContext:
    """What the hub hands every adapter it builds.

    Attributes:
      system: the external system the adapter serves.
      data_dir: the hub's data folder (outbox, poller cursors); shared by `serve` and `worker`.
      ingress: the inbound path (inbound adapters and pollers), and the publishing path of a
        sender that publishes (`Sender.publishes`, e.g. the collaboration centre); None for
        other senders.
      gatekeeper: the hub's authentication, size and rate limits (inbound adapters); None in the
        worker.
      channel: the inbound channel a poller serves (its message type); None for other adapters.
    """

    system: SystemConfig
    data_dir: Path
    ingress: Ingress | None = None
    gatekeeper: Gatekeeper | None = None
    channel: ChannelConfig | None = None


class Adapter(ABC):
    """Base of every adapter: a name, an Options model and the context it was built in."""

    name: ClassVar[str]
    kind: ClassVar[AdapterKind]
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel, context: AdapterContext) -> None:
        self.options = options
        self.context = context

    @property
    def system(self) -> SystemConfig:
        return self.context.system

    def close(self) -> None:  # noqa: B027 - optional hook: most adapters hold nothing to release
        """Release what the adapter holds (connections, files). Idempotent."""


class InboundAdapter(Adapter):
    """Receives pushed payloads over HTTP for one channel of one system."""

    kind: ClassVar[AdapterKind] = "inbound"

    @abstractmethod
    def mount(
        self,
        app_or_router: FastAPI | APIRouter,
        system: SystemConfig,
        channel: ChannelConfig,
        ingress: Ingress,
    ) -> None:
        """Add this channel's routes; each request goes through the gatekeeper, then ingress."""


class Poller(Adapter):
    """Pulls payloads from a system that cannot push, with a cursor it keeps in `data_dir`."""

    kind: ClassVar[AdapterKind] = "poller"

    @abstractmethod
    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; hand every payload to `self.context.ingress.accept`."""


class Sender(Adapter):
    """Delivers rendered payloads to one target system."""

    kind: ClassVar[AdapterKind] = "sender"
    publishes: ClassVar[bool] = False
    """True for a sender that publishes what it derives (the worker hands it `context.ingress`,
    connected to its consumer's broker); `deliver` returns only once those were confirmed."""

    @abstractmethod
    def deliver(
        self,
        body: bytes,
        *,
        content_type: str,
        idempotency_key: str,
        envelope: Envelope,
    ) -> None:
        """Deliver `body`; raise PermanentDeliveryError or TransientDeliveryError on failure.

        The target must be able to drop a duplicate by `idempotency_key`: a delivery may be
        repeated after a crash or a retry.
        """
