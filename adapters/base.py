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
- `Sender.mount_target_routes(router, context)` (a class method, in the serving process): adds
  the routes the target system itself calls on the hub, e.g. the outbox's pull and ack, and
  returns what to close when the app stops; most senders add none.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from adapters.errors import AdapterConfigError
from store import Store
from systems import AdapterKind, ChannelConfig, SystemConfig

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from adapters.ingress import Ingress
    from adapters.problems import ChannelAnswer
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
      data_dir: the hub's data folder (where files of hubs before the store are taken in from).
      ingress: the inbound path (inbound adapters and pollers); None for senders.
      gatekeeper: the hub's authentication, size and rate limits (inbound adapters, and the
        routes a sender mounts); None in the worker.
      channel: the inbound channel a poller serves (its message type); None for other adapters.
      pull_lease_s: how long a message a target system pulls from the hub stays leased to it
        before it is handed out again (`JGHUB_OUTBOX_LEASE_S`).
      public_url: the base URL external systems reach the hub at (`JGHUB_PUBLIC_URL`, no
        trailing slash): what the hub writes where it tells a system its own address, such as
        a WSDL's soap:address. Never taken from a request's Host header, which the client
        chooses.
      poller_lease_s: how long a poller's lease on its channel lasts without being renewed
        (`JGHUB_POLLER_LEASE_S`): a worker that dies holding it is replaced within about that.
      store: the hub's store (the outbox, pollers' cursors and leases); None where nothing
        needs it.
    """

    system: SystemConfig
    data_dir: Path
    ingress: Ingress | None = None
    gatekeeper: Gatekeeper | None = None
    channel: ChannelConfig | None = None
    pull_lease_s: float = 60.0
    public_url: str = "http://127.0.0.1:8080"
    poller_lease_s: float = 30.0
    store: Store | None = None

    def require_gatekeeper(self, adapter: str) -> Gatekeeper:
        """The gatekeeper; AdapterConfigError when `adapter` was built without one (the worker
        builds adapters without one: they mount no routes there)."""
        if self.gatekeeper is None:
            raise AdapterConfigError(
                f"adapter {adapter} of system {self.system.id} was built without a gatekeeper"
            )
        return self.gatekeeper

    def require_store(self, adapter: str) -> Store:
        """The store; AdapterConfigError when `adapter` was built without one."""
        if self.store is None:
            raise AdapterConfigError(
                f"adapter {adapter} of system {self.system.id} was built without the store"
            )
        return self.store


class Closeable(Protocol):
    """Something to release when the app stops."""

    def close(self) -> None: ...


class Adapter(ABC):
    """Base of every adapter: a name, an Options model and the context it was built in."""

    name: ClassVar[str]
    kind: ClassVar[AdapterKind]
    Options: ClassVar[type[BaseModel]] = NoOptions
    payload_format: ClassVar[Literal["xml", "json"] | None] = None
    """The syntax of the payloads it hands to the system's mapping (an inbound adapter or
    poller), which the mapping's `format` must be; None: whichever the mapping reads. The
    systems loader refuses a channel whose mapping reads another."""

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

    def error_answers(
        self, system: SystemConfig, channel: ChannelConfig
    ) -> dict[str, ChannelAnswer]:
        """The channel's paths that answer a request refused whole in the channel's own format
        (an XML refusal, a SOAP fault), with how; empty (the default): problem documents, as
        JSON channels and the hub's own APIs answer (adapters.problems)."""
        return {}


class Poller(Adapter):
    """Pulls payloads from a system that cannot push, with a cursor it keeps in the store."""

    kind: ClassVar[AdapterKind] = "poller"

    @abstractmethod
    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; hand every payload to `self.context.ingress.accept`."""


class Sender(Adapter):
    """Delivers rendered payloads to one target system."""

    kind: ClassVar[AdapterKind] = "sender"

    @classmethod
    def mount_target_routes(
        cls, app_or_router: FastAPI | APIRouter, context: AdapterContext
    ) -> Closeable | None:
        """Add the routes the target system calls on the hub (in `jghub serve`); None: none.

        A sender whose target fetches what it delivers (the outbox) serves that here, behind
        `context.gatekeeper`; what it returns is closed when the app stops.
        """
        return None

    def prepare(self) -> None:
        """Check at start what the configuration alone decides, before the first delivery.

        Raises AdapterConfigError when the sender cannot work as configured (the worker does
        not start then); a target that cannot be reached now is no such reason. Most senders
        have nothing to check.
        """

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

    batches: ClassVar[bool] = False
    """Whether `send_batch` works: the sender can carry a target's batch requests."""

    def send_batch(self, body: bytes, *, content_type: str, idempotency_key: str) -> bytes:
        """Send one batch request `body` and return the target's answer, whose per-record
        results the mapping reads; raise as `deliver` does when the whole request failed.

        Only for senders with `batches` True (the systems file refuses `outbound.batch` for
        the others).
        """
        raise NotImplementedError(f"sender {self.name} cannot send batches")
