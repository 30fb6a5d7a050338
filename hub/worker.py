"""The worker process: deliver each target system's queue through its sender, and run the pollers.

    worker = Worker(HubSettings())            # loads and checks the configuration now
    worker.run(stop)                          # blocks until `stop` is set; `jghub worker` does this

For each target system (a system with an `outbound` section) one consumer thread, with a broker
connection of its own, takes messages from the target's queue and hands them to up to
`outbound.concurrency` delivery threads (default 8, at most the prefetch: a delivery mostly waits
for the target's answer); they share the target's HTTP connection pool, breaker and retries, and
each settles its own message exactly once (the bus passes the settle to its connection's
thread). For each message:

1. rebuilds the canonical envelope (`Envelope.from_amqp`); a message that is not one goes to the
   dead letters (stage "decode");
2. renders it with the target's reverse mapping, `outbound.render[dataset]`, or as the
   canonical event (CloudEvents JSON, structured mode) where that entry is `cloudevent`; a
   dataset the render table does not list, and a record the mapping cannot render, go to the
   dead letters (stage "render") with the reason;
3. delivers it through the target's sender behind the target's circuit breaker, retrying
   transient failures in process (`RetryPolicy.in_process_attempts`); then settles it:
   delivered → ack; refused (4xx, a Client fault) → dead letters at once; still failing (5xx,
   timeout, refused connection) → `retry`, i.e. the bus's delayed tiers, and the dead letters
   after the last tier; refused by the open breaker before any call → `postpone`, the same tier
   again without spending it. The message's idempotency key goes with every attempt.

Any number of workers may consume one RabbitMQ (competing consumers). When `stop` is set (the
command sets it on SIGTERM and SIGINT) consumers take no new message, finish the ones in hand
(their in-process retries are cut short) and hand back what was prefetched; the run returns when
every thread has ended.

Pollers (inbound channels whose adapter is a poller) run here too, one thread each, handing what
they pull to the one inbound path, `Ingress.accept`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import bus
from adapters import registry
from adapters.base import AdapterContext, Poller, Sender
from adapters.breaker import BreakerOptions, CircuitBreaker
from adapters.delivery import DeliveryFailed, OutboundOptions, TargetDelivery
from adapters.errors import AdapterConfigError, AdapterError
from adapters.ingress import Ingress
from adapters.routing import Directory
from bus import Broker, BrokerUnavailable, BusError, Delivery, Topology, TopologyError
from hub.settings import HubSettings
from hub.systems import SystemsConfig, load_systems
from mappings import MappingEngineError, SystemMappings, load_all
from monitor.journal import Journal
from monitor.observer import Observer
from monitor.settings import MonitorSettings
from standard.envelope import STRUCTURED_CONTENT_TYPE, Envelope
from standard.errors import StandardError
from systems import CLOUDEVENT, AdapterKind, SystemConfig

log = logging.getLogger("hub.worker")

SENDER_KIND: tuple[AdapterKind, ...] = ("sender",)
POLLER_KIND: tuple[AdapterKind, ...] = ("poller",)
RECONNECT_INITIAL_S = 1.0
RECONNECT_MAX_S = 30.0


class WorkerError(Exception):
    """The worker cannot run: a target it was asked for is unknown, or its topology is wrong."""


@dataclass
class OutboundTarget:
    """One target system as the worker delivers to it: mapping, sender, breaker and retries."""

    system: SystemConfig
    mappings: SystemMappings | None  # None for an internal system, which reads canonical events
    sender: Sender
    delivery: TargetDelivery
    publisher: Ingress | None = None
    """The path a sender that publishes (the collaboration centre) publishes through."""

    def attach(self, broker: Broker) -> None:
        """Publish through `broker` (the consumer's connection) from now on."""
        if self.publisher is not None:
            self.publisher.attach(broker)

    @property
    def name(self) -> str:
        """Its target (queue) name on the bus."""
        return self.system.target

    @property
    def concurrency(self) -> int:
        """Deliveries made at once (`outbound.concurrency`; the bus caps it at the prefetch)."""
        return self.system.outbound.concurrency if self.system.outbound is not None else 1

    def handle(self, delivery: Delivery) -> None:
        """Render, deliver and settle one message (the consumer's handler)."""
        # Counted and journalled by the observer that wraps this handler (Observer.watch).
        self._handle(delivery)

    def _handle(self, delivery: Delivery) -> str:
        message = delivery.message
        system = self.system.id
        try:
            envelope = Envelope.from_amqp(
                {"headers": dict(message.headers), "content_type": message.content_type},
                message.body,
                check_record=False,  # rendering validates the record; no need to do it twice
            )
        except StandardError as error:
            reason = f"message {message.id} for {system} is not a canonical envelope: {error}"
            log.warning("dead letter: %s", reason)
            delivery.dead_letter(reason, "decode")
            return "dead_lettered"
        outbound = self.system.outbound
        assert outbound is not None  # only systems with an outbound section become targets
        dataset = envelope.spec.name
        message_type = outbound.render.get(dataset)
        if message_type is None:
            # A route wider than the render table (e.g. '#'): refusing beats sending a payload
            # the system never agreed to read.
            reason = (
                f"{system} has no rendering for dataset {dataset} (record {envelope.subject}); "
                f"add '{dataset}: <outbound message type>' or '{dataset}: {CLOUDEVENT}' to its "
                "outbound.render, or narrow its routes"
            )
            log.warning("dead letter %s: %s", message.id, reason)
            delivery.dead_letter(reason, "render")
            return "dead_lettered"
        try:
            if message_type == CLOUDEVENT:
                body, content_type = envelope.to_json(), STRUCTURED_CONTENT_TYPE
            else:
                assert self.mappings is not None  # the loader refuses a render without a folder
                body = self.mappings.render(message_type, envelope)
                content_type = _content_type(self.mappings, message_type)
        except (MappingEngineError, StandardError) as error:
            reason = (
                f"{dataset} record {envelope.subject} cannot be rendered as {message_type} "
                f"for {system}: {error}"
            )
            log.warning("dead letter %s: %s", message.id, reason)
            delivery.dead_letter(reason, "render")
            return "dead_lettered"
        try:
            attempts = self.delivery.deliver(
                body,
                content_type=content_type,
                idempotency_key=message.idempotency_key,
                envelope=envelope,
            )
        except DeliveryFailed as failed:
            if failed.permanent:
                log.warning("dead letter %s for %s: %s", message.id, system, failed.reason)
                delivery.dead_letter(failed.reason, "deliver")
                return "dead_lettered"
            if failed.untried:  # the breaker is open: wait in a tier without spending it
                delivery.postpone(failed.reason, "deliver")
                return "postponed"
            log.info("retry later %s for %s: %s", message.id, system, failed.reason)
            delivery.retry(failed.reason, "deliver")
            return "retried"
        except AdapterError as error:
            # A sender's own configuration (e.g. a secret's variable not set): nothing the
            # target did; the retry tiers give an operator time to fix it, then dead letters.
            reason = f"sender {outbound.adapter} of {system} cannot deliver: {error}"
            log.error("retry later %s: %s", message.id, reason)
            delivery.retry(reason, "deliver")
            return "retried"
        delivery.ack()
        log.debug("delivered %s to %s in %d attempt(s)", message.id, system, attempts)
        return "delivered"

    def close(self) -> None:
        self.sender.close()


def _content_type(mappings: SystemMappings, message_type: str) -> str:
    spec = mappings.outbound_mapping(message_type).mapping
    if spec.format == "json":
        return "application/json; charset=utf-8"
    return f"application/xml; charset={spec.encoding.lower()}"


@dataclass
class _Thread:
    name: str
    thread: threading.Thread
    failure: BaseException | None = None


@dataclass
class Worker:
    """Consumes the target systems' queues and runs the pollers (see the module docstring).

    Parameters:
      settings: where the bus, data folder, systems file and mappings are.
      systems: the systems configuration; default: loaded from `settings.systems_file`.
      targets: deliver only to these systems (ids or target names); default: every system with
        an outbound section.
      pollers: run the configured pollers (default True).
      mapping_folders: the compiled mapping folders by folder name (`mappings.load_all()`);
        default: loaded from `settings.mappings_root` (pass them to share one compilation).
      broker_factory: opens a broker connection (default `bus.connect(settings.bus_url)`);
        each consumer thread opens its own.
      observer: counts and journals every delivery, breaker change and poll; default: one
        with the journal MonitorSettings names (closed when `run` returns).
    """

    settings: HubSettings
    systems: SystemsConfig | None = None
    targets: Collection[str] | None = None
    pollers: bool = True
    mapping_folders: dict[str, SystemMappings] | None = None
    broker_factory: Callable[[], Broker] | None = None
    observer: Observer | None = None
    _threads: list[_Thread] = field(default_factory=list, init=False)
    _stop_event: threading.Event | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.systems is None:
            self.systems = load_systems(self.settings.systems_file)
        folders = self.mapping_folders or load_all(self.settings.mappings_root)
        self.mappings: dict[str, SystemMappings] = self.systems.bind_mappings(folders)
        self.directory = Directory(self.systems.systems)
        self.topology: Topology = self.systems.topology(self.settings.namespace)
        self._own_journal: Journal | None = None
        if self.observer is None:
            self._own_journal = MonitorSettings().open_journal(self.settings.data_dir)
        self._observer = self.observer or Observer(self.topology, self._own_journal)
        self.selected: list[SystemConfig] = self._select(self.targets)
        self.poller_channels = self._poller_channels() if self.pollers else []

    # ------------------------------------------------------------------ configuration

    def _select(self, wanted: Collection[str] | None) -> list[SystemConfig]:
        assert self.systems is not None
        receiving = [s for s in self.systems.systems if s.outbound is not None and s.routes]
        if wanted is None:
            return receiving
        by_name = {s.id: s for s in receiving} | {s.target: s for s in receiving}
        unknown = sorted(set(wanted) - set(by_name))
        if unknown:
            known = ", ".join(s.id for s in receiving) or "none"
            raise WorkerError(
                f"no target system {', '.join(unknown)} in {self.settings.systems_file} "
                f"(systems with an outbound section: {known})"
            )
        chosen = {by_name[name].id for name in wanted}
        return [s for s in receiving if s.id in chosen]

    def _poller_channels(self) -> list[tuple[SystemConfig, int]]:
        assert self.systems is not None
        found = []
        for system in self.systems.systems:
            for index, channel in enumerate(system.inbound):
                if registry.adapter_class(channel.adapter).kind == "poller":
                    found.append((system, index))
        return found

    def build_target(self, system: SystemConfig, stop: threading.Event) -> OutboundTarget:
        """The OutboundTarget of `system`: its sender (from the registry), breaker and retries."""
        outbound = system.outbound
        assert outbound is not None
        publisher = None
        if getattr(registry.adapter_class(outbound.adapter), "publishes", False):
            # Connected to the consumer's broker when it consumes (OutboundTarget.attach).
            publisher = Ingress(
                None, self.mappings, observer=self._observer, directory=self.directory
            )
        context = AdapterContext(system=system, data_dir=self.settings.data_dir, ingress=publisher)
        sender = registry.create(outbound.adapter, outbound.options, context, kinds=SENDER_KIND)
        assert isinstance(sender, Sender)
        options = sender.options
        shared = options if isinstance(options, OutboundOptions) else OutboundOptions()
        breaker_options = getattr(options, "breaker", None)
        breaker = CircuitBreaker(
            system.target,
            breaker_options if isinstance(breaker_options, BreakerOptions) else BreakerOptions(),
            on_change=self._observer.breaker_changed,
        )
        self._observer.breaker_changed(system.target, breaker.state, breaker.state)
        delivery = TargetDelivery(
            sender,
            attempts=system.retry.in_process_attempts,
            breaker=breaker,
            backoff_initial_s=shared.backoff_initial_s,
            backoff_max_s=shared.backoff_max_s,
            stop=stop,
        )
        return OutboundTarget(system, self.mappings.get(system.id), sender, delivery, publisher)

    # ------------------------------------------------------------------ running

    def _connect(self) -> Broker:
        if self.broker_factory is not None:
            return self.broker_factory()
        return bus.connect(self.settings.bus_url)

    def run(self, stop: threading.Event) -> None:
        """Deliver and poll until `stop` is set; return when every thread has ended.

        Raises WorkerError when a thread met a problem that waiting will not fix (a target the
        declared topology lacks); `stop` is set then, so the other threads end too.
        """
        self._stop_event = stop
        targets = [self.build_target(system, stop) for system in self.selected]
        try:
            for target in targets:
                # Connections are opened one after the other, here: the embedded broker's file
                # is set up by the first and would be busy for others opened at the same time.
                consume = functools.partial(self._consume, target, stop, self._first_broker())
                self._start(f"deliver-{target.name}", consume)
            if self.poller_channels:
                self._start("pollers", lambda: self._poll(stop))
            log.info(
                "worker started: delivering to %s; %d poller(s)",
                ", ".join(t.system.id for t in targets) or "no target",
                len(self.poller_channels),
            )
            stop.wait()
            for running in self._threads:
                running.thread.join()
        finally:
            for target in targets:
                target.close()
            if self._own_journal is not None:
                self._own_journal.close()
        failures = [t for t in self._threads if t.failure is not None]
        if failures:
            first = failures[0].failure
            raise WorkerError("; ".join(f"{t.name}: {t.failure}" for t in failures)) from first

    def _start(self, name: str, body: Callable[[], None]) -> None:
        record = _Thread(name, threading.Thread(name=name, daemon=True))

        def guarded() -> None:
            try:
                body()
            except BaseException as error:  # ends the whole worker: see run()
                log.exception("%s stopped the worker", name)
                record.failure = error
                self._stop_all()

        record.thread = threading.Thread(target=guarded, name=name, daemon=True)
        self._threads.append(record)
        record.thread.start()

    def _stop_all(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()

    def _first_broker(self) -> Broker | None:
        try:
            return self._connect()
        except BrokerUnavailable as error:
            log.warning("bus unavailable (%s); the consumer will keep trying", error)
            return None

    def _consume(self, target: OutboundTarget, stop: threading.Event, first: Broker | None) -> None:
        pause = RECONNECT_INITIAL_S
        while not stop.is_set():
            try:
                opened, first = (first or self._connect()), None
                with opened as broker:
                    broker.declare(self.topology)
                    pause = RECONNECT_INITIAL_S
                    target.attach(broker)
                    handle = self._observer.watch(target.name, target.handle)
                    broker.consume(target.name, handle, stop=stop, concurrency=target.concurrency)
            except TopologyError:
                raise
            except BrokerUnavailable as error:
                log.warning(
                    "target %s: bus unavailable (%s); reconnecting in %.0fs", target.name, error,
                    pause,
                )  # fmt: skip
                stop.wait(pause)
                pause = min(pause * 2, RECONNECT_MAX_S)

    def _poll(self, stop: threading.Event) -> None:
        pause = RECONNECT_INITIAL_S
        while not stop.is_set():
            try:
                with self._connect() as broker:
                    broker.declare(self.topology)
                    pause = RECONNECT_INITIAL_S
                    # Held back like pushes: a poller whose page would reach a full target
                    # backs off and keeps its cursor (IngressOverloaded is IngressUnavailable).
                    pressure = self.settings.back_pressure(self.topology)
                    ingress = Ingress(
                        broker,
                        self.mappings,
                        observer=self._observer,
                        directory=self.directory,
                        backpressure=pressure,
                    )
                    try:
                        self._run_pollers(ingress, stop)
                    finally:
                        pressure.attach(None)
                    return
            except BrokerUnavailable as error:
                log.warning("pollers: bus unavailable (%s); reconnecting in %.0fs", error, pause)
                stop.wait(pause)
                pause = min(pause * 2, RECONNECT_MAX_S)

    def _run_pollers(self, ingress: Ingress, stop: threading.Event) -> None:
        threads = []
        for system, index in self.poller_channels:
            channel = system.inbound[index]
            context = AdapterContext(
                system=system, data_dir=self.settings.data_dir, ingress=ingress, channel=channel
            )
            poller = registry.create(channel.adapter, channel.options, context, kinds=POLLER_KIND)
            assert isinstance(poller, Poller)
            thread = threading.Thread(
                target=_keep_polling,
                args=(poller, stop),
                name=f"poll-{system.id}-{channel.message_type}",
                daemon=True,
            )
            thread.start()
            threads.append((poller, thread))
        for poller, thread in threads:
            thread.join()
            poller.close()


def _keep_polling(poller: Poller, stop: threading.Event) -> None:
    """Run a poller until `stop`; a poller that crashes is logged and started again."""
    pause = RECONNECT_INITIAL_S
    while not stop.is_set():
        try:
            poller.run(stop)
            return
        except (AdapterConfigError, BusError) as error:
            log.error("poller %s of %s: %s", poller.name, poller.system.id, error)
        except Exception:
            log.exception(
                "poller %s of %s crashed; starting it again", poller.name, poller.system.id
            )
        stop.wait(pause)
        pause = min(pause * 2, RECONNECT_MAX_S)
