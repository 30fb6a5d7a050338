"""The hub's HTTP face: a FastAPI app with the configured channels, outboxes, health, metrics.

    app = create_app(HubSettings())        # loads and checks the configuration now
    uvicorn.run(app)                        # `jghub serve` does this, with graceful shutdown

Building the app loads the systems configuration, the mappings and the secrets, so a mistake in
any of them fails at once with file, line and field. Connecting to the bus happens when the app
starts (its lifespan): it declares the topology; until that worked, pushes answer 503 and
`/ready` says why, while `/health` already answers (the process is alive). A lost RabbitMQ
connection is retried in the background. A request the store fails while it is served (the
database stopped answering: `store.StoreUnavailable`) answers 503 with Retry-After saying what
and where, never a 500.

Errors: every JSON route answers a problem document (RFC 9457, application/problem+json); XML
and SOAP channels answer in their own format (an XML refusal or receipt, a SOAP fault); the
console answers pages. One set of handlers decides, by the path's channel (adapters.problems).

Routes:
  POST /systems/{id}/rest/{message type}  REST push (adapter rest_push), per configured channel
  POST /systems/{id}/xml/{message type}   XML push (adapter xml_push); other adapters add theirs
  GET  /systems/{id}/outbox, POST .../ack the outbox of a system whose outbound adapter is outbox
                                          (routes a sender mounts: Sender.mount_target_routes)
  GET  /health   liveness        GET /ready   bus reachable, publisher up, topology declared,
                                               mappings loaded; queues without consumers
  GET  /metrics  Prometheus      GET /docs    OpenAPI (one tag per system)
  GET  /messages/{id}            where a system's own message has been (monitor.api)
  GET  /dead-letters[/{id}], POST /dead-letters/replay   operator accounts (HTTP Basic), with
                                 JGHUB_OPERATORS_FILE set
  GET  /quarantine[/{id}[/payload]], POST /quarantine/{id}/release|discard   the quarantine
                                 (monitor.quarantine_api), operator accounts likewise
  GET  /centre/items[/{id}], /centre/scorecard   the disposal ledger and the per-department
                                 scorecard (centre.api), operator accounts likewise
  GET  /console[/...]            the operators' web console (console.pages), the same accounts
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

import bus
from adapters import registry
from adapters.base import AdapterContext, Closeable, InboundAdapter, Sender
from adapters.errors import AdapterConfigError
from adapters.ingress import Ingress
from adapters.openapi import SecurityScheme, declare_problems, security_schemes
from adapters.problems import ChannelAnswers, install_problem_handlers
from adapters.redaction import Redaction, install_log_redaction
from adapters.release import QuarantineRelease
from adapters.replay_cache import ReplayCache, StoredReplayCache
from adapters.routing import Directory
from adapters.security import Gatekeeper
from bus import Broker, BusError, Topology
from centre.api import centre_router
from centre.ledger import CentreCollector, Ledger, LedgerObserver
from centre.penalties import PenaltyLimits, PenaltyOverdueCollector
from console import ConsoleSources, mount_console
from console.pages import PREFIX as CONSOLE_PREFIX
from hub import __version__
from hub.mapping_reload import DiskMappings
from hub.settings import HubSettings
from hub.systems import SystemsConfig, load_systems
from mappings import SystemMappings, load_all
from monitor.api import dead_letters_router, messages_router, metrics_router, search_router
from monitor.journal import Journal
from monitor.metrics import count_unauthenticated, scrape_registry, start_at_zero
from monitor.observer import Observer
from monitor.operators import OperatorGate
from monitor.quarantine import Quarantine, QuarantineCollector
from monitor.quarantine_api import quarantine_router
from monitor.queues import BrokerQueueStats, QueueCollector
from monitor.readiness import check_readiness
from monitor.settings import MonitorSettings
from store import Store, StoreError
from systems import SENDER_KINDS

log = logging.getLogger("hub.app")

RECONNECT_INTERVAL_S = 5.0


class Health(BaseModel):
    """Liveness: the process answers."""

    status: str = Field(description="Always 'alive' when the process answers.")
    version: str = Field(description="The hub's version.")


class Readiness(BaseModel):
    """Whether the hub can take messages now, and if not, why."""

    ready: bool = Field(description="True when every check passed.")
    checks: dict[str, bool] = Field(
        description=(
            "bus (reachable), publisher (what the hub publishes can be confirmed now: its "
            "connection is up and the broker does not hold publishes back), topology "
            "(declared), mappings (loaded)."
        )
    )
    problems: list[str] = Field(description="What is wrong, in words; empty when ready.")
    degraded: list[str] = Field(
        default_factory=list,
        description=(
            "Target queues no consumer (jghub worker) reads, naming the target and its queue: "
            "the hub still takes messages, which wait in the queue until a worker consumes "
            "them, so it stays ready. An operator reads this list (and the JghubNoConsumers "
            "alert); a load balancer reads only the status. RabbitMQ only: the embedded bus "
            "cannot see other processes' consumers."
        ),
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="What does not stop the hub but needs an operator (a system's missing secret).",
    )
    misconfigured: list[str] = Field(
        default_factory=list,
        description=(
            "Channels that accept a dataset no system's routes take, naming the system, the "
            "channel and the dataset: each of their records would be answered unroutable. "
            "The hub stays ready for the other systems."
        ),
    )


@dataclass
class HubRuntime:
    """What the running app holds: configuration, mappings, gate, ingress and bus."""

    settings: HubSettings
    systems: SystemsConfig
    mappings: dict[str, SystemMappings]
    topology: Topology
    gatekeeper: Gatekeeper
    ingress: Ingress
    broker: Broker | None = None
    owns_broker: bool = True
    monitoring: MonitorSettings = field(default_factory=MonitorSettings)
    observer: Observer | None = None
    journal: Journal | None = None
    declared: bool = False
    last_bus_error: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    mounted: list[Closeable] = field(default_factory=list)
    """What the senders' routes hold (the outbox's store), closed with the app."""
    replays: ReplayCache | None = None
    """The signatures already used (shared by every serve process), closed with the app."""
    store: Store | None = None
    """The hub's store (the replay cache, accepted changes ... live there), closed with the app."""
    operators: OperatorGate | None = None
    """The operator accounts of the dead-letter routes (None: those routes are not served)."""
    ledger: Ledger | None = None
    """The disposal centre's ledger, read by /centre/items and scraped for its metrics."""
    misconfigured: list[str] = field(default_factory=list)
    """Channels whose dataset no route takes (`SystemsConfig.unrouted_channels`), for /ready."""
    quarantine: Quarantine | None = None
    """Where ingress keeps rejected payloads (in the store), served by /quarantine."""
    release: QuarantineRelease | None = None
    """Releases quarantined payloads through this runtime's ingress."""
    adopted: bool = False
    """Whether the bus's old quarantine queue was taken into the store (once, at connect)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def connect(self) -> bool:
        """Connect to the bus and declare the topology; False (and why, kept) when it fails."""
        with self._lock:
            try:
                if self.broker is None:
                    self.broker = bus.connect(self.settings.bus_url)
                    self.owns_broker = True
                self.broker.declare(self.topology)
            except BusError as error:
                self.last_bus_error = f"{type(error).__name__}: {error}"
                log.warning("bus not ready at %s: %s", _safe_url(self.settings), error)
                self._drop_broker()
                return False
            self.declared = True
            self.last_bus_error = None
            self.ingress.attach(self.broker)
            self._adopt_bus_quarantine(self.broker)
            return True

    def _adopt_bus_quarantine(self, broker: Broker) -> None:
        """Take what a hub before the store left in the bus's quarantine queue into the store,
        once; a failure is logged and tried again at the next connect."""
        if self.quarantine is None or self.adopted:
            return
        try:
            self.quarantine.adopt(broker)
        except (BusError, StoreError) as error:
            log.warning("the bus's quarantine queue was not taken over yet: %s", error)
            return
        self.adopted = True

    def probe(self) -> str | None:
        """None when the bus answers now, else why not (and the connection is dropped)."""
        with self._lock:
            broker = self.broker
            if broker is None or not self.declared:
                return self.last_bus_error or "not connected to the bus yet"
            try:
                for target in self.topology.targets[:1]:
                    broker.depth(target.name)
            except BusError as error:
                self.last_bus_error = f"{type(error).__name__}: {error}"
                self._drop_broker()
                return self.last_bus_error
            return None

    def keep_connected(self) -> None:
        """Reconnect in the background until `stop` is set (runs in its own thread)."""
        while not self.stop.wait(RECONNECT_INTERVAL_S):
            if self.broker is None or not self.declared:
                self.connect()

    def close(self) -> None:
        self.stop.set()
        with self._lock:
            self._drop_broker()
        for held in self.mounted:
            held.close()
        if self.ingress.accepted is not None:
            self.ingress.accepted.close()
        if self.ingress.authorisation.warnings is not None:
            self.ingress.authorisation.warnings.close()
        if self.replays is not None:
            self.replays.close()
        if self.journal is not None:
            self.journal.close()
        if self.store is not None:
            self.store.close()

    def _drop_broker(self) -> None:
        self.ingress.attach(None)
        self.declared = False
        broker, self.broker = self.broker, None
        if broker is not None and self.owns_broker:
            try:
                broker.close()
            except BusError:
                log.debug("closing a broken broker connection failed", exc_info=True)


def build_runtime(
    settings: HubSettings,
    *,
    systems: SystemsConfig | None = None,
    broker: Broker | None = None,
    clock: Callable[[], datetime] | None = None,
    mapping_folders: dict[str, SystemMappings] | None = None,
) -> HubRuntime:
    """Load and check everything the app needs (no network yet); raise on any mistake.

    `clock` tells the centre's ledger now (default: the wall clock). `mapping_folders` are the
    compiled mapping folders by folder name when the caller has them (`load_all()`, as the
    worker takes them), else they are loaded from `settings.mappings_root`.

    Raises SystemsConfigError (configuration, with file and line), MappingError (a mapping
    folder), AdapterConfigError (an adapter option, a secret's variable not set) or
    JournalUnavailable (no journal in the store) or OperatorsFileError (the operator
    accounts file, with file and line, or the retired JGHUB_OPERATOR_KEY still set), or
    StoreError (the store does not answer, or its schema is behind and migrating was not asked).
    """
    config = systems if systems is not None else load_systems(settings.systems_file)
    folders = mapping_folders or load_all(settings.mappings_root)
    mappings = config.bind_mappings(folders)
    # Every series the configuration names starts at 0, so rate() and increase() see the first
    # event (in multiprocess mode this process's files hold them: serve enabled it already).
    rulebook = settings.rulebook()
    start_at_zero(config.known_series(mappings, rulebook=rulebook))
    misconfigured = [str(problem) for problem in config.unrouted_channels(mappings)]
    for problem in misconfigured:
        log.warning("misconfigured: %s", problem)
    store = settings.store()
    # In the store: every serve process (of this host, or of every host on PostgreSQL) sees
    # the same used signatures, so a replay is refused whichever process it reaches.
    replays = StoredReplayCache(store)
    gatekeeper = Gatekeeper(
        config.systems,
        default_max_body_bytes=settings.max_body_bytes,
        trusted_proxies=settings.trusted_proxies,
        require_secrets=settings.require_secrets,
        replays=replays,
        failed_auth_per_second=settings.failed_auth_per_second,
        failed_auth_burst=settings.failed_auth_burst,
        body_timeout_s=settings.body_timeout_s,
        on_refused=count_unauthenticated,
    )
    for system_id, problem in gatekeeper.missing_secrets.items():
        log.warning("system %s: %s; its requests are refused (401)", system_id, problem)
    topology = config.topology(settings.namespace)
    redaction = Redaction.of(config.systems)
    install_log_redaction(redaction)
    monitoring = MonitorSettings()
    operators = monitoring.operator_gate()
    journal = monitoring.open_journal(store, settings.data_dir)
    ledger = settings.ledger(store, config.systems, clock=clock)
    observer = LedgerObserver(topology, journal, ledger=ledger)
    quarantine = monitoring.quarantine(store)
    ingress = Ingress(
        None,
        mappings,
        observer=observer,
        directory=Directory(config.systems),
        backpressure=settings.back_pressure(topology),
        accepted=settings.accepted_changes(store),
        redaction=redaction,
        warnings=settings.warning_addressees(store),
        cases=settings.case_stages(store, config.systems),
        checks=settings.cross_checks(rulebook, settings.reference_lists(store)),
        quarantine=quarantine,
    )
    release = QuarantineRelease(
        ingress,
        quarantine,
        observer=observer,
        max_records=config.max_records(),
        reload=DiskMappings(settings.mappings_root, config, folders),
    )
    runtime = HubRuntime(
        settings=settings,
        systems=config,
        mappings=mappings,
        topology=topology,
        gatekeeper=gatekeeper,
        ingress=ingress,
        broker=broker,
        owns_broker=broker is None,
        monitoring=monitoring,
        observer=observer,
        journal=journal,
        replays=replays,
        store=store,
        operators=operators,
        ledger=ledger,
        misconfigured=misconfigured,
        quarantine=quarantine,
        release=release,
    )
    return runtime


def create_app(
    settings: HubSettings | None = None,
    *,
    systems: SystemsConfig | None = None,
    broker: Broker | None = None,
    clock: Callable[[], datetime] | None = None,
    mapping_folders: dict[str, SystemMappings] | None = None,
) -> FastAPI:
    """The hub's FastAPI app (see the module docstring).

    `systems` and `broker` replace what the settings name (tests, embedding); a broker passed
    in is not closed by the app. `clock` tells the centre's ledger now (the demo's simulated
    business time; default: the wall clock). `mapping_folders`: as for `build_runtime` (the
    demo hands its app and its worker the folders it loaded once).
    """
    runtime = build_runtime(
        settings or HubSettings(),
        systems=systems,
        broker=broker,
        clock=clock,
        mapping_folders=mapping_folders,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(runtime.connect)
        keeper = threading.Thread(target=runtime.keep_connected, name="bus-reconnect", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            runtime.stop.set()
            await run_in_threadpool(runtime.close)

    config = runtime.systems
    # /docs and /redoc with their scripts, styles and icon served by the hub itself (from
    # fastapi-offline's copy of Swagger UI and ReDoc): the pages work where no CDN is reachable.
    app = FastAPIOffline(
        title="jghub",
        version=__version__,
        summary="Integration hub of the provincial Internet + Supervision system.",
        description=(
            "External systems push payloads here (each to its own channels, authenticated) and "
            "get one answer per record; pull-only systems fetch their messages from their "
            "outbox. Payloads are translated into the unified data standard and moved over the "
            "bus with publisher confirms."
        ),
        openapi_tags=[
            {"name": system.id, "description": f"{system.name_zh}: its channels and outbox"}
            for system in config.systems
        ]
        + [
            {"name": "messages", "description": "Where a system's own message has been."},
            {"name": "operations", "description": "Health, readiness, metrics, dead letters."},
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime

    channels = ChannelAnswers()
    for system in config.systems:
        context = AdapterContext(
            system=system,
            data_dir=runtime.settings.data_dir,
            ingress=runtime.ingress,
            gatekeeper=runtime.gatekeeper,
            pull_lease_s=runtime.settings.outbox_lease_s,
            public_url=runtime.settings.public_base_url,
            store=runtime.store,
        )
        for channel in system.inbound:
            adapter = registry.create(
                channel.adapter, channel.options, dataclasses.replace(context, channel=channel)
            )
            # Pollers run in the worker; only push adapters have routes.
            if isinstance(adapter, InboundAdapter):
                adapter.mount(app, system, channel, runtime.ingress)
                for path, answer in adapter.error_answers(system, channel).items():
                    channels.add(path, answer)
        if system.outbound is not None:
            # A sender says what it mounts: the outbox serves its system's pulls.
            sender = registry.adapter_class(system.outbound.adapter, kinds=SENDER_KINDS)
            assert issubclass(sender, Sender)
            held = sender.mount_target_routes(app, dataclasses.replace(context, ingress=None))
            if held is not None:
                runtime.mounted.append(held)
    _refuse_shadowed_routes(app)

    @app.get("/health", tags=["operations"], response_model=Health)
    async def health() -> Health:
        """Liveness: 200 whenever the process answers."""
        return Health(status="alive", version=__version__)

    @app.get(
        "/ready",
        tags=["operations"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready; see problems."}},
    )
    async def ready() -> JSONResponse:
        """Readiness: the bus answers, publishes get through, every target queue is declared,
        the mappings are loaded (200, else 503); target queues without a consumer are listed
        under `degraded` and leave it 200."""
        problem = await run_in_threadpool(runtime.probe)
        report = await run_in_threadpool(
            lambda: check_readiness(
                runtime.broker if problem is None else None,
                runtime.topology,
                declared=runtime.declared,
                # An internal system (the collaboration centre) has no mapping folder to load.
                systems=[s.id for s in config.systems if s.auth.scheme != "internal"],
                mappings=runtime.mappings,
                bus_problem=problem,
            )
        )
        warnings = [
            f"system {system_id}: {problem}"
            for system_id, problem in runtime.gatekeeper.missing_secrets.items()
        ]
        body = Readiness(
            ready=report.ready,
            checks=report.checks,
            problems=report.problems,
            degraded=report.degraded,
            warnings=warnings,
            misconfigured=runtime.misconfigured,
        )
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    mount_monitor(app, runtime)
    # Last: the console's error pages, installed with it, stay its own.
    install_problem_handlers(app, channels, kept_prefixes=(CONSOLE_PREFIX,))
    declare_security_schemes(app, security_schemes(config.systems), own_format=channels.by_path)
    return app


def declare_security_schemes(
    app: FastAPI, schemes: dict[str, SecurityScheme], *, own_format: Iterable[str] = ()
) -> None:
    """Add `schemes` to the OpenAPI document's components, beside those FastAPI found itself
    (the operators' HTTPBasic): the channels name them in their `security`, but the gatekeeper
    is no FastAPI dependency, so FastAPI cannot know them. Declare the problem documents every
    route answers errors with, but on the paths in `own_format` (XML and SOAP channels)."""
    generate = app.openapi
    paths = frozenset(own_format)

    def openapi() -> dict[str, Any]:
        document = generate()  # built once and kept by FastAPI; adding again changes nothing
        document.setdefault("components", {}).setdefault("securitySchemes", {}).update(schemes)
        declare_problems(document, own_format=paths)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def mount_monitor(app: FastAPI, runtime: HubRuntime) -> None:
    """/metrics (queue depths read from the broker; the centre's and the quarantine's figures
    from the store), GET /messages/{id} for each system's own messages (when the journal is on),
    the search, dead-letter, quarantine and centre routes (when operator accounts are set)."""
    queues = BrokerQueueStats(lambda: runtime.broker, runtime.topology)
    collectors: list[Collector] = [QueueCollector(queues)]
    limits = runtime.settings.penalty_limits(runtime.systems.systems)
    if runtime.ledger is not None:
        collectors.append(CentreCollector(runtime.ledger))
    if runtime.store is not None:
        calendar = runtime.settings.working_calendar()
        collectors.append(PenaltyOverdueCollector(runtime.store, calendar, limits))
    if runtime.quarantine is not None:
        collectors.append(QuarantineCollector(runtime.quarantine))
    app.include_router(metrics_router(scrape_registry(*collectors)))
    if runtime.journal is not None:
        app.include_router(
            messages_router(
                runtime.journal,
                caller=runtime.gatekeeper.identify,
                # Any system's credential: it sees only its own messages.
                security=[{name: []} for name in security_schemes(runtime.systems.systems)],
            )
        )
    if runtime.operators is not None and runtime.journal is not None:
        app.include_router(search_router(runtime.journal, gate=runtime.operators))
    if runtime.operators is not None and runtime.ledger is not None:
        app.include_router(centre_router(runtime.ledger, gate=runtime.operators, limits=limits))
    if runtime.operators is not None and runtime.observer is not None:
        app.include_router(
            dead_letters_router(lambda: runtime.broker, runtime.observer, gate=runtime.operators)
        )
    if runtime.operators is not None and runtime.quarantine is not None:
        app.include_router(
            quarantine_router(
                runtime.quarantine, runtime.release, runtime.observer, gate=runtime.operators
            )
        )
    mount_operators_console(app, runtime, limits)


def mount_operators_console(app: FastAPI, runtime: HubRuntime, limits: PenaltyLimits) -> None:
    """/console, the operators' pages, behind the same accounts as the operators' routes (not
    served without them)."""
    if runtime.operators is None or runtime.observer is None or runtime.ledger is None:
        return
    known = {target.name for target in runtime.topology.targets}
    sources = ConsoleSources(
        gate=runtime.operators,
        broker=lambda: runtime.broker,
        topology=runtime.topology,
        observer=runtime.observer,
        journal=runtime.journal,
        ledger=runtime.ledger,
        limits=limits,
        systems=[
            (system.id, system.id if system.id in known else None)
            for system in runtime.systems.systems
        ],
        # The hub's own series (the breakers' states), without the broker's and the store's.
        metrics=scrape_registry(),
        quarantine=runtime.quarantine,
        release=runtime.release,
    )
    mount_console(app, sources)


def _refuse_shadowed_routes(app: FastAPI) -> None:
    # Starlette serves the first of two routes with the same path and method and silently
    # ignores the second: two channels configured on one URL would lose one channel's messages.
    owners: dict[tuple[str, str], str] = {}
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or ()):
            key = (str(getattr(route, "path", "")), method)
            name = str(getattr(route, "name", ""))
            if key in owners:
                raise AdapterConfigError(
                    f"{method} {key[0]} is configured twice ({owners[key]} and {name}); give "
                    "one of the channels another `path` option"
                )
            owners[key] = name


def runtime_of(app: Any) -> HubRuntime:
    """The runtime behind an app made by `create_app`."""
    runtime: HubRuntime = app.state.runtime
    return runtime


def _safe_url(settings: HubSettings) -> str:
    url = settings.bus_url
    if "@" not in url:
        return url
    # Each node's URL without its credentials: the hosts are what an operator needs to read.
    shown = []
    for node_url in bus.node_urls(url) if url.lower().startswith(("amqp:", "amqps:")) else [url]:
        scheme, _, rest = node_url.partition("://")
        shown.append(f"{scheme}://***@{rest.rpartition('@')[2]}")
    return ",".join(shown)
