"""`jghub demo`: the hub, its worker and every simulated system, through a day of traffic.

    report = run_demo(DemoOptions(records=400))     # embedded bus in a fresh data folder
    report.books["national"].delivered

1. The landscape (`landscape.yaml`) is filled in: free ports, generated keys.
2. The simulated receivers listen (the national system flaky: a share of 5xx, of refusals and
   of answers held past the sender's timeout); the hub serves on a loopback port and the worker
   delivers, both on the embedded bus in a new data folder (or on RabbitMQ with `amqp_url`).
3. The reference lists are fed first: the national catalogue's and the provincial platform's
   simulators serve the catalogue items and certificates the traffic names, a few of them wrong
   on purpose (`hub.simulators.roster`), and the run waits until the store holds them, so the
   checks judge the traffic against full lists. Then every system pushes batches grown from its
   samples through its own protocol, with spoiled
   records, its hostile samples (entity bombs, external entities, broken documents, wrong
   encodings) and one body over the size limit; systems with an outbox pull it.
4. The departments answer what they received (`hub.simulators.departments`), each as its
   behaviour says (`options.departments`): most on time, one late, one returning its tasks, one
   never; the collaboration centre tells the complaint platform each step and closes the tasks
   fed back. No department sends feedback on anything it did not receive.
5. When every accepted record is delivered or dead-lettered (or the wait ends), the books are
   closed: per system received = accepted + rejected, and over all systems accepted =
   delivered + dead-lettered + sent again + still queued, each record having exactly one
   receiver. A record sent again unchanged is accepted but not published again
   (`adapters.repeats`). The collaboration centre is a system of its own in the books: what it
   derived and published (a task per complaint, each step told to the platform, each close) is
   what it "sent", delivered onwards like any record.
6. The disposal loop is scored per department from the centre's ledger (`centre.scorecard`'s
   disposal figures) at the moment every item's due time has passed: the demo's
   clock (`hub.simulators.clock`) is business time, starting at the end of the day of traffic
   (the latest change time its warnings, complaints and events carry: their samples') and moved
   forward, never slept, so late answers and overdue items are what they would be.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

import bus
from bus.routing import RoutingTable
from centre.ledger import Ledger
from centre.scorecard import DisposalScore, disposal_scores
from hub.settings import HubSettings
from hub.simulators.clients import PUSH_ADAPTERS, OutboxPuller, PushOutcome, SystemClient
from hub.simulators.clock import DemoClock
from hub.simulators.departments import (
    ANSWER_TYPES,
    DEMO_BEHAVIOURS,
    DepartmentBehaviour,
    Departments,
)
from hub.simulators.landscape import Landscape, build_landscape
from hub.simulators.roster import Roster, landscape_roster
from hub.simulators.server import LoopbackServer, free_port
from hub.simulators.soap_source import CaseQuerySource
from hub.simulators.sources import SimulatedSource
from hub.simulators.targets import DeliveryLog, FailurePlan, SimulatedTarget
from hub.simulators.traffic import SystemTraffic, TrafficPayload
from mappings import SYSTEMS_ROOT, SystemMappings, load_all
from monitor.metrics import SampleSnapshot
from monitor.quarantine import State
from monitor.settings import MonitorSettings
from reference.lists import ListName
from systems import ChannelConfig, SystemConfig

DEMO_BODY_LIMIT = 2 * 1024 * 1024
"""The hub's body limit during the demo: the oversized payloads exceed it."""
POLLER_ADAPTERS = frozenset({"rest_poller", "soap_poller"})
"""The pollers whose systems the demo simulates (their records count in its budget)."""


class DemoOptions(BaseModel):
    """What the demo does; every option has a default that runs in well under a minute."""

    model_config = ConfigDict(extra="forbid")

    records: int = Field(default=400, ge=1, description="Generated records over all channels.")
    invalid_share: float = Field(
        default=0.08, ge=0, le=1, description="Share of generated records spoiled on purpose."
    )
    hostile: bool = Field(
        default=True,
        description="Also send each system's invalid and hostile samples and an oversized body.",
    )
    amqp_url: str | None = Field(
        default=None, description="RabbitMQ URL; None: the embedded bus in the data folder."
    )
    data_dir: Path | None = Field(
        default=None, description="Folder for the hub's files; None: var/demo-<time> here."
    )
    namespace: str | None = Field(
        default=None, description="Bus namespace; None: a new one per run (jghub-demo-<id>)."
    )
    flaky: FailurePlan = Field(
        default_factory=lambda: FailurePlan(
            error_share=0.12, reject_share=0.02, timeout_share=0.01, hold_s=1.2, seed=7
        ),
        description="How the national system misbehaves.",
    )
    senders: int = Field(default=4, ge=1, le=32, description="Payloads pushed concurrently.")
    settle_timeout_s: float = Field(
        default=40.0, gt=0, description="How long to wait for the last deliveries."
    )
    seed: int = Field(default=7, description="Seed of the generated traffic.")
    mappings_root: Path | None = Field(
        default=None, description="Mapping folders; None: the shipped ones."
    )
    delete_topology: bool = Field(
        default=False,
        description="Delete the demo's queues at the end (RabbitMQ runs in tests).",
    )
    departments: dict[str, DepartmentBehaviour] = Field(
        default_factory=lambda: dict(DEMO_BEHAVIOURS),
        description="How each department system answers what it receives, by system id; a "
        "system not named answers on time.",
    )


@dataclass
class SystemBooks:
    """One system's figures: what it sent (received by the hub) and what it was delivered."""

    system: str
    name_zh: str
    payloads: int = 0
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    receives: bool = False
    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    dead_reasons: Counter[str] = field(default_factory=Counter)
    pulled: int = 0
    duplicates: int = 0
    repeated: int = 0
    """Records it sent again unchanged: accepted, not published again (nothing to deliver)."""

    def add(self, outcome: PushOutcome) -> None:
        self.payloads += 1
        self.received += outcome.received
        self.accepted += outcome.accepted
        self.rejected += outcome.rejected
        self.failed += outcome.failed
        self.reasons.update(outcome.reasons)


@dataclass
class DemoReport:
    """The closed books of a demo run and where its traces are."""

    books: dict[str, SystemBooks]
    hub_url: str
    bus_url: str
    namespace: str
    data_dir: Path
    elapsed_s: float
    quarantined: int
    settled: bool
    loop: DisposalLoop

    @property
    def accepted(self) -> int:
        return sum(b.accepted for b in self.books.values())

    @property
    def delivered(self) -> int:
        return sum(b.delivered for b in self.books.values())

    @property
    def dead_lettered(self) -> int:
        return sum(b.dead_lettered for b in self.books.values())

    @property
    def repeated(self) -> int:
        return sum(b.repeated for b in self.books.values())

    @property
    def queued(self) -> int:
        """Accepted records neither delivered, dead-lettered nor repeats (0 when the run
        settled)."""
        return self.accepted - self.delivered - self.dead_lettered - self.repeated


@dataclass(frozen=True)
class DisposalLoop:
    """The disposal loop as the centre's ledger tells it when the books close.

    Attributes:
      scores: the scorecard's disposal figures per department and kind.
      systems: the system serving each department scored, by its key (credit code or name).
      behaviours: how each department system answered (by system id).
      unanswerable: items a department would have answered but has no channel for, by
        (system, kind).
      answers: the answers the departments pushed (each step a payload).
      refused: why the hub refused some of them, by reason (empty when all were accepted).
      day_ends: where the demo clock started: the end of the day of traffic.
      closed_at: where it stood when the loop was scored (every due time passed).
    """

    scores: list[DisposalScore]
    systems: dict[str, str]
    behaviours: dict[str, DepartmentBehaviour]
    unanswerable: Counter[tuple[str, str]]
    answers: int
    refused: Counter[str]
    day_ends: datetime
    closed_at: datetime


Progress = Callable[[int, int, str], None]
"""Called after each payload: (done, total, label)."""


def run_demo(options: DemoOptions, progress: Progress | None = None) -> DemoReport:
    """Run the demo (see the module docstring) and return its books."""
    started = time.monotonic()
    root = options.mappings_root or SYSTEMS_ROOT
    mappings = load_all(root)
    landscape = build_landscape(mappings)
    previous = landscape.apply_environment()
    namespace = options.namespace or f"jghub-demo-{uuid.uuid4().hex[:8]}"
    data_dir = options.data_dir or Path("var") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = HubSettings(
        amqp_url=options.amqp_url,
        data_dir=data_dir,
        namespace=namespace,
        max_body_bytes=DEMO_BODY_LIMIT,
        mappings_root=root,
        # Known before the hub starts: its WSDLs name their address under it.
        port=free_port(),
    )
    try:
        per_channel = _records_per_channel(landscape, mappings, options)
        baseline = _delivery_counts(landscape)
        clock = DemoClock(_day_ends(landscape, mappings))
        with (
            running_landscape(
                landscape, settings, options, mappings, per_channel, clock=clock
            ) as running,
            _ledger(settings, landscape, clock) as ledger,
        ):
            books = {
                s.id: SystemBooks(s.id, s.name_zh, receives=s.outbound is not None)
                for s in landscape.systems.systems
            }
            receivers = {system: target.log for system, target in running.targets.items()}
            receivers |= {system: puller.log for system, puller in running.pullers.items()}
            departments = Departments(
                landscape, mappings, running.hub_url, receivers, ledger, options.departments
            )
            schedule = _schedule(landscape, mappings, running.hub_url, options, per_channel)
            _push_all(schedule, books, options, progress)
            settled = _settle(
                running, landscape, books, baseline, options.settle_timeout_s, departments
            )
            departments.close()
            loop = _scored(ledger, clock, departments, landscape)
            # What ingress refused is kept in the store's quarantine (monitor.quarantine).
            held = MonitorSettings().quarantine(ledger.store).usage().entries
            quarantined = held.get(State.HELD, 0)
            for client, _, _ in schedule:
                client.close()
    finally:
        landscape.restore_environment(previous)
    return DemoReport(
        books=books,
        hub_url=running.hub_url,
        bus_url=settings.bus_url,
        namespace=namespace,
        data_dir=data_dir,
        elapsed_s=time.monotonic() - started,
        quarantined=quarantined,
        settled=settled,
        loop=loop,
    )


CENTRE_DATASETS = frozenset({"risk_warning", "complaint", "grassroots_event", "collaboration_task"})
"""What the centre turns into ledger rows, directly or as tasks: the day of traffic, for it."""


def _day_ends(landscape: Landscape, mappings: dict[str, SystemMappings]) -> datetime:
    """The latest change time of the samples the day's warnings, complaints and events are
    grown from (generated records keep their template's business times); now, when none
    carries one."""
    times: list[datetime] = []
    for system in landscape.systems.systems:
        if system.auth.scheme == "internal":
            continue
        folder = mappings[system.mapping_id]
        for channel in system.inbound:
            dataset = folder.inbound_mapping(channel.message_type).dataset.name
            if dataset not in CENTRE_DATASETS or channel.message_type in ANSWER_TYPES:
                continue
            try:
                samples = SystemTraffic(folder, channel.message_type).samples()
            except ValueError:
                continue  # no valid sample: nothing of it in the day's traffic
            times += [p.changed_until for p in samples if p.changed_until and p.valid]
    return max(times, default=datetime.now(UTC))


@contextmanager
def _ledger(settings: HubSettings, landscape: Landscape, clock: DemoClock) -> Iterator[Ledger]:
    """The centre's ledger on the run's store, on the demo clock (closed on the way out)."""
    store = settings.store()
    try:
        yield settings.ledger(store, landscape.systems.systems, clock=clock)
    finally:
        store.close()


def _scored(
    ledger: Ledger, clock: DemoClock, departments: Departments, landscape: Landscape
) -> DisposalLoop:
    """Move the clock past every due time and every answer, then score the loop."""
    day_ends = clock()
    dues = [datetime.fromisoformat(row["due_at"]) for row in ledger.items(limit=100_000)
            if row["due_at"]]  # fmt: skip
    last = max([*dues, departments.latest or day_ends, day_ends])
    closed_at = clock.advance_to(last + timedelta(minutes=1))
    with ledger.store.begin() as db:
        scores = disposal_scores(db, closed_at.timestamp(), None)
    systems = {score.department: departments.system_of(score.department) for score in scores}
    behaviours = {
        system: behaviour
        for system in sorted({s for s in systems.values() if s})
        if (behaviour := departments.behaviour(system)) is not None
    }
    return DisposalLoop(
        scores,
        {department: system or "?" for department, system in systems.items()},
        behaviours,
        departments.unanswerable,
        departments.pushed,
        departments.refused,
        day_ends,
        closed_at,
    )


@dataclass
class RunningLandscape:
    """The simulated landscape at work: the hub's URL, a broker to look behind it, the
    simulated receivers by system id, the outbox pullers and the pull-only sources."""

    hub_url: str
    broker: bus.Broker
    targets: dict[str, SimulatedTarget]
    pullers: dict[str, OutboxPuller]
    sources: dict[str, SimulatedSource | CaseQuerySource]


@contextmanager
def running_landscape(
    landscape: Landscape,
    settings: HubSettings,
    options: DemoOptions,
    mappings: dict[str, SystemMappings],
    per_channel: int,
    *,
    clock: Callable[[], datetime] | None = None,
) -> Iterator[RunningLandscape]:
    """Start the receivers, the sources, the hub and its worker, and the outbox pullers of
    `landscape` (its secrets already in the environment); stop them all on the way out.
    `clock` tells the centre's ledger now (default: the wall clock)."""
    # Imported here: the app and worker modules pull in the whole hub, which the traffic
    # generator and the simulators alone do not need.
    from hub.app import create_app
    from hub.worker import Worker

    with ExitStack() as stack:
        broker = bus.connect(settings.bus_url)
        stack.callback(broker.close)
        topology = landscape.systems.topology(settings.namespace)
        broker.declare(topology)
        if options.delete_topology:
            stack.callback(lambda: broker.delete_topology(topology))
        servers: list[LoopbackServer] = []
        targets: dict[str, SimulatedTarget] = {}
        for system in landscape.systems.systems:
            if system.outbound is None or system.outbound.adapter == "outbox":
                continue
            if system.auth.scheme == "internal":
                continue  # inside the hub: the worker runs it
            plan = options.flaky if system.id == "national" else FailurePlan()
            target = SimulatedTarget(system, plan)
            server = LoopbackServer(
                target.app, host=target.host, port=target.port, name=f"sim-{system.id}"
            )
            servers.append(stack.enter_context(server))
            targets[system.id] = target
        sources: dict[str, SimulatedSource | CaseQuerySource] = {}
        # With reference lists to feed, the sources hold their records back until the lists
        # are loaded: a record polled before its catalogue item would be refused for it.
        feeds_lists = any(system.reference is not None for system in landscape.systems.systems)
        held_back = per_channel if feeds_lists else 0
        roster = landscape_roster(landscape.systems.systems, mappings)
        listed = {
            "supervision_item": roster.catalogue_records(),
            "enforcement_officer": roster.officer_records(),
        }
        for system in landscape.systems.systems:
            if any(channel.adapter == "rest_poller" for channel in system.inbound):
                folder = mappings[system.mapping_id]
                fixed = {
                    channel.message_type: listed[dataset]
                    for channel in system.inbound
                    if (dataset := folder.inbound_mapping(channel.message_type).dataset.name)
                    in listed
                }
                source = SimulatedSource(
                    system,
                    folder,
                    records=per_channel - held_back,
                    invalid_share=options.invalid_share,
                    seed=options.seed,
                    silent=ANSWER_TYPES,
                    fixed=fixed,
                )
                served = LoopbackServer(
                    source.app, host=source.host, port=source.port, name=f"src-{system.id}"
                )
                servers.append(stack.enter_context(served))
                sources[system.id] = source
            elif any(channel.adapter == "soap_poller" for channel in system.inbound):
                answering = CaseQuerySource.serving(
                    system, port=landscape.ports[system.id], records=per_channel - held_back
                )
                stack.callback(answering.close)
                sources[system.id] = answering
        app = create_app(settings, systems=landscape.systems, clock=clock, mapping_folders=mappings)
        hub = stack.enter_context(LoopbackServer(app, port=settings.port, name="hub"))
        servers.append(hub)
        stop = threading.Event()
        worker = Worker(
            settings,
            systems=landscape.systems,
            pollers=bool(sources),
            clock=clock,
            mapping_folders=mappings,
        )
        thread = threading.Thread(target=worker.run, args=(stop,), name="worker", daemon=True)
        thread.start()

        def stop_worker() -> None:
            stop.set()
            thread.join(timeout=30)

        def ask_servers_to_stop() -> None:
            for server in servers:
                server.request_stop()

        # On the way out, once the worker has stopped delivering, every server is asked to stop
        # before each is waited for.
        stack.callback(ask_servers_to_stop)
        stack.callback(stop_worker)
        if feeds_lists:
            _wait_for_lists(settings, roster, options.settle_timeout_s)
            for held in sources.values():
                if isinstance(held, SimulatedSource):
                    held.add(held_back)
                else:
                    held.grow(held_back)
        pullers: dict[str, OutboxPuller] = {}
        for system in landscape.systems.systems:
            if system.outbound is not None and system.outbound.adapter == "outbox":
                puller = OutboxPuller(system, hub.url, log=DeliveryLog(), interval_s=0.1)
                pull_thread = threading.Thread(
                    target=puller.run, args=(stop,), name=f"pull-{system.id}", daemon=True
                )
                pull_thread.start()
                stack.callback(puller.close)
                stack.callback(pull_thread.join, 10)
                pullers[system.id] = puller
        # Runs first on the way out: the pullers and the worker see `stop` before being joined.
        stack.callback(stop.set)
        yield RunningLandscape(hub.url, broker, targets, pullers, sources)


Scheduled = tuple[SystemClient, ChannelConfig, TrafficPayload]


def _wait_for_lists(settings: HubSettings, roster: Roster, timeout_s: float) -> None:
    """Wait until the store's lists hold the roster's catalogue and certificates (the worker's
    pollers read them from the simulators); give up after `timeout_s`, the checks then judging
    part of the traffic as 'not checked'."""
    lists = settings.reference_lists(settings.store())
    wanted: dict[ListName, int] = {
        "catalogue": len(roster.catalogue),
        "officers": len(roster.officers),
    }
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = {status.name: status.rows for status in lists.status()}
        if all(rows.get(name, 0) >= count for name, count in wanted.items()):
            return
        time.sleep(0.1)


def _routable(
    system: SystemConfig,
    channel: ChannelConfig,
    mappings: SystemMappings,
    table: RoutingTable,
    systems: list[str],
) -> bool:
    dataset = mappings.inbound_mapping(channel.message_type).dataset.name
    # An addressed record (a task, a warning) carries its addressee as a fourth word.
    addressees = ["", *(f".{other}" for other in systems)]
    return any(table.targets_for(f"{dataset}.330100.{system.id}{a}") for a in addressees)


def _records_per_channel(
    landscape: Landscape, mappings: dict[str, SystemMappings], options: DemoOptions
) -> int:
    """The records budget of one channel (pushed or polled), so the whole run has about
    `options.records` generated records (answers are not generated: see `_schedule`)."""
    count = 0
    for system in landscape.systems.systems:
        for channel in system.inbound:
            grown = channel.adapter in PUSH_ADAPTERS or channel.adapter in POLLER_ADAPTERS
            if grown and channel.message_type not in ANSWER_TYPES:
                count += 1
    return max(1, options.records // max(1, count))


def _schedule(
    landscape: Landscape,
    mappings: dict[str, SystemMappings],
    hub_url: str,
    options: DemoOptions,
    per_channel: int,
) -> list[Scheduled]:
    """Every payload of the run, shuffled as a day's traffic arrives.

    A department's answers (`ANSWER_TYPES`) are not grown from its samples, which answer items
    the hub never sent it: they come from what it received (`Departments`); only its payloads
    refused before any record is read (hostile, or every record invalid) are sent here.
    """
    topology = landscape.systems.topology("plan")
    table = RoutingTable({t.name: t.routes for t in topology.targets})
    ids = [s.id for s in landscape.systems.systems]
    channels: list[tuple[SystemClient, ChannelConfig, SystemTraffic]] = []
    for system in landscape.systems.systems:
        if system.auth.scheme == "internal":
            continue  # it pushes nothing: what it publishes, it derives
        folder = mappings[system.mapping_id]
        client = SystemClient(system, hub_url)
        for channel in client.channels:
            if not _routable(system, channel, folder, table, ids):
                continue
            try:
                traffic = SystemTraffic(folder, channel.message_type, seed=options.seed)
            except ValueError:
                continue  # no valid sample to grow traffic from
            channels.append((client, channel, traffic))
    chooser = random.Random(options.seed)
    plan: list[Scheduled] = []
    for client, channel, traffic in channels:
        left = 0 if channel.message_type in ANSWER_TYPES else per_channel
        unsendable = 0
        while left > 0 and unsendable < 3:
            size = min(left, chooser.randint(3, 25))
            payload = traffic.batch(size, invalid_share=options.invalid_share)
            if not client.can_send(channel, payload):
                unsendable += 1  # a template this channel cannot carry; the next one may do
                continue
            unsendable = 0
            plan.append((client, channel, payload))
            left -= size
    if options.hostile:
        seen: set[str] = set()
        for client, channel, traffic in channels:
            for payload in traffic.invalid() + traffic.hostile():
                answers = channel.message_type in ANSWER_TYPES
                if client.can_send(channel, payload) and not (answers and payload.valid):
                    plan.append((client, channel, payload))
            if client.system.id not in seen:
                seen.add(client.system.id)
                plan.append((client, channel, _oversized(traffic)))
    chooser.shuffle(plan)
    return plan


def _oversized(traffic: SystemTraffic) -> TrafficPayload:
    payload = traffic.batch(1)
    padding = b" " * (DEMO_BODY_LIMIT + 1)
    return TrafficPayload(
        payload.system,
        payload.message_type,
        payload.body + padding,
        payload.charset,
        "generated",
        "oversized body",
        0,
        0,
        "too-large",
    )


def _push_all(
    schedule: list[Scheduled],
    books: dict[str, SystemBooks],
    options: DemoOptions,
    progress: Progress | None,
) -> None:
    lock = threading.Lock()
    done = 0

    def push(item: Scheduled) -> None:
        nonlocal done
        client, channel, payload = item
        outcome = client.push(channel, payload)
        while outcome.failed:
            # Records the bus did not confirm are sent again, as a system told "failed" would.
            outcome = client.push(channel, payload)
        with lock:
            books[client.system.id].add(outcome)
            done += 1
            if progress is not None:
                progress(done, len(schedule), f"{client.system.id} {payload.label}")

    with ThreadPoolExecutor(max_workers=options.senders, thread_name_prefix="push") as pool:
        for future in [pool.submit(push, item) for item in schedule]:
            future.result()


def _delivery_counts(landscape: Landscape) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    samples = SampleSnapshot.now()
    for system in landscape.systems.systems:
        for outcome in ("delivered", "retried", "dead_lettered"):
            counts[(system.id, outcome)] = samples.total(f"jghub_{outcome}_total", target=system.id)
        counts[(system.id, "published")] = samples.total("jghub_published_total", system=system.id)
        counts[(system.id, "repeated")] = samples.total("jghub_duplicates_total", system=system.id)
    return counts


def _settle(
    running: RunningLandscape,
    landscape: Landscape,
    books: dict[str, SystemBooks],
    baseline: dict[tuple[str, str], float],
    timeout_s: float,
    departments: Departments | None = None,
) -> bool:
    """Wait until every accepted record is delivered (and pulled) or dead, and the departments
    have answered all they received; fill in the books.

    A polled system's figures come from its simulated API: the records a poller fetched, and of
    those the ones its mapping accepts.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        now = _delivery_counts(landscape)
        for system in landscape.systems.systems:
            book = books[system.id]
            book.delivered = int(now[(system.id, "delivered")] - baseline[(system.id, "delivered")])
            book.retried = int(now[(system.id, "retried")] - baseline[(system.id, "retried")])
            book.repeated = int(now[(system.id, "repeated")] - baseline[(system.id, "repeated")])
            book.dead_lettered = int(
                now[(system.id, "dead_lettered")] - baseline[(system.id, "dead_lettered")]
            )
            puller = running.pullers.get(system.id)
            if puller is not None:
                book.pulled = len(puller.log.accepted_keys())
            if system.auth.scheme == "internal":
                derived = int(now[(system.id, "published")] - baseline[(system.id, "published")])
                book.received = book.accepted = derived
        for system_id, source in running.sources.items():
            counts = source.counts()
            book = books[system_id]
            book.received = counts["served"]
            book.accepted = counts["served_valid"]
            book.rejected = counts["served"] - counts["served_valid"]
            book.reasons = Counter({"spoiled record": book.rejected} if book.rejected else {})
        served = all(
            s.counts()["served"] >= s.counts()["records"] for s in running.sources.values()
        )
        accepted = sum(b.accepted for b in books.values())
        settled = (
            sum(b.delivered + b.dead_lettered + b.repeated for b in books.values()) >= accepted
        )
        pulled = all(books[s].pulled >= books[s].delivered for s in running.pullers)
        # Answered after the counts were read: a receiver logs a delivery before the hub counts
        # it, so everything counted delivered is answered now, and answers mean more to come.
        answered = departments.answer_new() if departments is not None else []
        for outcome in answered:
            books[outcome.system].add(outcome)
        settled = settled and not answered
        if (served and settled and pulled) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for system_id, target in running.targets.items():
        books[system_id].duplicates = target.log.duplicates()
    for system in landscape.systems.systems:
        if system.outbound is None:
            continue
        for letter in running.broker.dead_letters(system.id, limit=100_000):
            books[system.id].dead_reasons[_short(letter.reason)] += 1
    return served and settled and pulled


def _short(reason: str) -> str:
    text = reason.strip().splitlines()[0] if reason.strip() else "unknown"
    return text if len(text) <= 60 else text[:57] + "..."
