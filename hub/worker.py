"""The worker process: consume each target system's queue, run the centre and the pollers.

    worker = Worker(HubSettings())            # loads and checks the configuration now
    worker.run(stop)                          # blocks until `stop` is set; `jghub worker` does this

The worker only runs things; what happens to a message is elsewhere:
- for each target system (a system with an `outbound` section) one consumer thread, with a bus
  connection of its own, hands the messages of the target's queue to its outbound path,
  `adapters.egress.Egress` (decode, render, deliver, settle), up to `outbound.concurrency` at
  once (default 8, at most the prefetch: a delivery mostly waits for the target's answer);
- the collaboration centre (a system with a `collaboration` section) consumes its queue the same
  way, through `centre.collaboration.CollaborationCentre`, and publishes what it derives through
  the consumer's connection; beside it a thread scans the ledger every `centre_scan_s` seconds
  for due-soon reminders and overdue escalations (`centre.notices.NoticeScanner`), published
  through the same connection;
- the reference lists' feed (a system with a `reference` section) consumes its queue the same
  way, through `reference.feed.ReferenceFeed`, writing each change into the store's lists;
- pollers (inbound channels whose adapter is a poller) run one thread each, handing what they
  pull to the one inbound path, `Ingress.accept`.

Any number of workers may consume one RabbitMQ (competing consumers). When `stop` is set (the
command sets it on SIGTERM and SIGINT) consumers take no new message, finish the ones in hand
(their in-process retries are cut short) and hand back what was prefetched; the run returns when
every thread has ended. A lost bus connection is opened again with backoff.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import bus
from adapters import registry
from adapters.base import AdapterContext, Poller
from adapters.egress import build_egress
from adapters.errors import AdapterConfigError
from adapters.ingress import Ingress
from adapters.redaction import Redaction, install_log_redaction
from adapters.routing import Directory
from bus import Broker, BrokerUnavailable, BusError, Delivery, Topology, TopologyError
from centre.collaboration import CollaborationCentre
from centre.ledger import LedgerObserver
from centre.notices import NoticeScanner
from hub.settings import HubSettings
from hub.systems import SystemsConfig, load_systems
from mappings import SystemMappings, load_all
from monitor.journal import Journal
from monitor.metrics import start_at_zero
from monitor.observer import Observer
from monitor.settings import MonitorSettings
from reference.feed import ReferenceFeed
from store import Store
from systems import AdapterKind, SystemConfig

log = logging.getLogger("hub.worker")

POLLER_KIND: tuple[AdapterKind, ...] = ("poller",)
RECONNECT_INITIAL_S = 1.0
RECONNECT_MAX_S = 30.0


class WorkerError(Exception):
    """The worker cannot run: a target it was asked for is unknown, or its topology is wrong."""


class QueueConsumer(Protocol):
    """What consumes one target's queue: an egress, the centre, or the reference lists' feed."""

    @property
    def name(self) -> str:
        """The queue's target name."""
        ...

    @property
    def concurrency(self) -> int:
        """Messages handled at once."""
        ...

    def attach(self, broker: Broker | None) -> None:
        """The consumer's bus connection, for what it publishes."""

    def handle(self, delivery: Delivery) -> None:
        """Handle and settle one message."""

    def close(self) -> None:
        """Release what it holds."""


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
      targets: consume only these systems' queues (ids; the old names with '_' for '-' find
        them too); default: every system with routes (an outbound, a collaboration or a
        reference section).
      pollers: run the configured pollers (default True).
      mapping_folders: the compiled mapping folders by folder name (`mappings.load_all()`);
        default: loaded from `settings.mappings_root` (pass them to share one compilation).
      broker_factory: opens a broker connection (default `bus.connect(settings.bus_url)`);
        each consumer thread opens its own.
      observer: counts and journals every delivery, breaker change and poll; default: one
        with the journal MonitorSettings names (closed when `run` returns).
      clock: tells the worker's ledger now, for its observer and the centre's reminders
        (default: the wall clock; `jghub demo` runs on simulated business time).
    """

    settings: HubSettings
    systems: SystemsConfig | None = None
    targets: Collection[str] | None = None
    pollers: bool = True
    mapping_folders: dict[str, SystemMappings] | None = None
    broker_factory: Callable[[], Broker] | None = None
    observer: Observer | None = None
    clock: Callable[[], datetime] | None = None
    _threads: list[_Thread] = field(default_factory=list, init=False)
    _stop_event: threading.Event | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.systems is None:
            self.systems = load_systems(self.settings.systems_file)
        folders = self.mapping_folders or load_all(self.settings.mappings_root)
        self.mappings: dict[str, SystemMappings] = self.systems.bind_mappings(folders)
        self.directory = Directory(self.systems.systems)
        self.redaction = Redaction.of(self.systems.systems)
        install_log_redaction(self.redaction)
        self.topology: Topology = self.systems.topology(self.settings.namespace)
        # Opened (and migrated or checked) now: a store that is behind stops the worker at
        # start, before it takes a message.
        self.store: Store = self.settings.store()
        self.case_stages = self.settings.case_stages(self.store, self.systems.systems)
        self.rulebook = self.settings.rulebook()  # a wrong rules file stops the worker here
        # One copy of the lists per process: what the feed writes, the checks see at once.
        self.lists = self.settings.reference_lists(self.store)
        self.checks = self.settings.cross_checks(self.rulebook, self.lists)
        monitoring = MonitorSettings()
        # The pollers' rejected pages are kept in the store's quarantine, bounded like pushes.
        self.quarantine = monitoring.quarantine(self.store)
        self._own_journal: Journal | None = None
        if self.observer is None:
            self._own_journal = monitoring.open_journal(self.store, self.settings.data_dir)
        self.ledger = self.settings.ledger(self.store, self.systems.systems, clock=self.clock)
        self._observer = self.observer or LedgerObserver(
            self.topology, self._own_journal, ledger=self.ledger
        )
        self.selected: list[SystemConfig] = self._select(self.targets)
        self.poller_channels = self._poller_channels() if self.pollers else []
        breakers = [s.id for s in self.selected if s.outbound is not None]
        start_at_zero(
            self.systems.known_series(self.mappings, breakers=breakers, rulebook=self.rulebook)
        )

    # ------------------------------------------------------------------ configuration

    def _select(self, wanted: Collection[str] | None) -> list[SystemConfig]:
        assert self.systems is not None
        receiving = [s for s in self.systems.systems if s.routes]
        if wanted is None:
            return receiving
        by_id = {s.id for s in receiving}
        # A system's id, or the target name it had before (see Topology.target).
        named = {name: self.topology.target_name(name) for name in wanted}
        unknown = sorted(name for name, target in named.items() if target not in by_id)
        if unknown:
            known = ", ".join(s.id for s in receiving) or "none"
            raise WorkerError(
                f"no target system {', '.join(unknown)} in {self.settings.systems_file} "
                f"(systems that receive messages: {known})"
            )
        chosen = set(named.values())
        return [s for s in receiving if s.id in chosen]

    def _poller_channels(self) -> list[tuple[SystemConfig, int]]:
        assert self.systems is not None
        found = []
        for system in self.systems.systems:
            for index, channel in enumerate(system.inbound):
                if registry.adapter_class(channel.adapter).kind == "poller":
                    found.append((system, index))
        return found

    def build_target(self, system: SystemConfig, stop: threading.Event) -> QueueConsumer:
        """What consumes `system`'s queue: the centre, the reference lists' feed, or its egress
        (sender, breaker, retries)."""
        if system.reference is not None:
            return ReferenceFeed(system, self.lists)
        if system.collaboration is not None:
            # Connected to the consumer's broker when it consumes (attach).
            publisher = Ingress(
                None,
                self.mappings,
                observer=self._observer,
                directory=self.directory,
                redaction=self.redaction,
            )
            # The ledger's rules set each task's deadline, so what the department is told is
            # what the centre holds it to.
            return CollaborationCentre(
                system,
                publisher,
                self.store,
                self.settings.data_dir,
                deadlines=self.ledger.rules,
                calendar=self.ledger.calendar,
            )
        return build_egress(
            system,
            self.mappings.get(system.id),
            data_dir=self.settings.data_dir,
            store=self.store,
            on_breaker_change=self._observer.breaker_changed,
            stop=stop,
        )

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
                if isinstance(target, CollaborationCentre) and self.settings.centre_scan_s:
                    self._start("centre-notices", self._notices(target, stop))
            if self.poller_channels:
                self._start("pollers", lambda: self._poll(stop))
            log.info(
                "worker started: delivering to %s; %d poller(s)",
                ", ".join(s.id for s in self.selected) or "no target",
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
            self.store.close()
        failures = [t for t in self._threads if t.failure is not None]
        if failures:
            first = failures[0].failure
            raise WorkerError("; ".join(f"{t.name}: {t.failure}" for t in failures)) from first

    def _notices(self, centre: CollaborationCentre, stop: threading.Event) -> Callable[[], None]:
        """The scan for the centre's reminders and escalations, publishing through the centre's
        own path (attached to its consumer's connection: until then a scan's notices wait)."""
        assert self.systems is not None
        scanner = NoticeScanner(self.ledger, centre.publisher, centre.system, self.systems.systems)
        return functools.partial(scanner.run, stop, self.settings.centre_scan_s)

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

    def _consume(self, target: QueueConsumer, stop: threading.Event, first: Broker | None) -> None:
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
                        accepted=self.settings.accepted_changes(self.store),
                        redaction=self.redaction,
                        warnings=self.settings.warning_addressees(self.store),
                        cases=self.case_stages,
                        checks=self.checks,
                        quarantine=self.quarantine,
                    )
                    try:
                        self._run_pollers(ingress, stop)
                    finally:
                        pressure.attach(None)
                        if ingress.accepted is not None:
                            ingress.accepted.close()
                        if ingress.authorisation.warnings is not None:
                            ingress.authorisation.warnings.close()
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
                system=system,
                data_dir=self.settings.data_dir,
                ingress=ingress,
                channel=channel,
                poller_lease_s=self.settings.poller_lease_s,
                store=self.store,
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
