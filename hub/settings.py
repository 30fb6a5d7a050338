"""The hub's settings: where the bus, the data folder and the configuration are, read from JGHUB_*.

Every option has a default that works on a fresh checkout: no `amqp_url` means the embedded bus
in `data_dir`, the systems file and the mappings are the ones shipped in the repository.

    JGHUB_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2F JGHUB_PORT=9000 jghub serve
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.authorisation import StoredWarningAddressees, WarningAddressees
from adapters.backpressure import DEFAULT_MAX_READY, BackPressure
from adapters.repeats import AcceptedChanges, StoredAcceptedChanges
from bus.topology import NAMESPACE_PATTERN, Topology
from centre.deadlines import DeadlineRules
from centre.ledger import Ledger, departments_by_system
from centre.penalties import PenaltyLimits, StoredCaseStages
from centre.workdays import WorkingCalendar
from mappings import SYSTEMS_ROOT
from reference.rulebook import CrossChecks, Rulebook
from reference.stored import StoreLists
from store import Store, store_url
from systems import SystemConfig

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_SYSTEMS_FILE = REPOSITORY / "config" / "systems.yaml"
DEFAULT_RULES_FILE = REPOSITORY / "config" / "rules.yaml"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


class HubSettings(BaseSettings):
    """Settings of the `serve` and `worker` processes; environment variables JGHUB_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="JGHUB_", extra="ignore", frozen=True)

    amqp_url: str | None = Field(
        default=None,
        description=(
            "RabbitMQ URL, amqp://user:password@host:port/vhost (or amqps://); for a "
            "cluster, one URL per node separated by commas: connections take the first node "
            "and, when it does not answer or its connection is lost, the next. Empty: the "
            "embedded bus in data_dir/bus.sqlite3, for a first run on one machine."
        ),
        examples=[
            "amqp://guest:guest@127.0.0.1:5672/%2F",
            "amqp://hub:secret@mq1:5672/%2F,amqp://hub:secret@mq2:5672/%2F,"
            "amqp://hub:secret@mq3:5672/%2F",
        ],
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "The store's database (what the hub remembers: replay cache, accepted changes, "
            "warning addressees, the centre's complaints, poller cursors). Empty: the embedded "
            "SQLite file data_dir/store.sqlite3, migrated at start. postgresql://user:password@"
            "host:port/database: PostgreSQL (psycopg 3), shared by every host; migrated only "
            "by `jghub db upgrade` or database_migrate."
        ),
        examples=["postgresql://jghub@db.example:5432/jghub"],
    )
    database_migrate: bool = Field(
        default=False,
        description=(
            "Let `serve` and `worker` migrate a PostgreSQL store at start (as `--migrate` "
            "does); otherwise they refuse to start while its schema is behind."
        ),
    )
    data_dir: Path = Field(
        default=Path("var"),
        description=(
            "Folder of the hub's own files: the embedded bus, the embedded store, the outbox, "
            "the journal. "
            "`serve` and `worker` on one machine must share it."
        ),
    )
    systems_file: Path = Field(
        default=DEFAULT_SYSTEMS_FILE,
        description="The systems configuration (YAML): who is connected and how.",
    )
    rules_file: Path | None = Field(
        default=DEFAULT_RULES_FILE,
        description=(
            "YAML file of the cross-checks' dispositions (reject, warn or off, per rule and per "
            "system; `reference.rulebook`); empty: every rule's default."
        ),
    )
    calendar_file: Path | None = Field(
        default=None,
        description=(
            "YAML file of the working-day calendar's years chinese-calendar does not carry yet "
            "(holidays and make-up working days of each State Council notice; "
            "`centre.workdays`). Empty: the package's years only."
        ),
    )
    mappings_root: Path = Field(
        default=SYSTEMS_ROOT,
        description="Folder holding one mapping folder per system (default: the shipped ones).",
    )
    host: str = Field(default="127.0.0.1", description="Address `jghub serve` listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port `jghub serve` listens on.")
    public_url: str | None = Field(
        default=None,
        description=(
            "The base URL external systems reach the hub at, e.g. https://hub.example.gov.cn "
            "(behind a proxy: the proxy's). The WSDL the hub serves names its SOAP address "
            "under it; a request's Host header never does. Empty: http(s)://host:port of "
            "`serve` (127.0.0.1 for a wildcard host)."
        ),
        examples=["https://jghub.zj.gov.cn"],
    )
    namespace: str = Field(
        default="jghub",
        pattern=NAMESPACE_PATTERN,
        description="Prefix of every exchange and queue name on the bus.",
    )
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES,
        gt=0,
        description=(
            "Largest request body accepted from a system without its own max_body_bytes, in "
            "bytes; a larger one is refused with 413 before any of it is parsed."
        ),
    )
    outbox_lease_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Seconds a pulled outbox message stays leased to the puller; not acknowledged by "
            "then, it is handed out again."
        ),
    )
    poller_lease_s: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description=(
            "Seconds a worker's lease on a poller's channel lasts without renewal (renewed every "
            "third of it while it polls). Exactly one worker on the store polls a channel; when "
            "it dies, another takes over after at most this plus a third of it, from the cursor "
            "in the store."
        ),
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "How `serve` and `worker` write their log to stderr: text, one line per record "
            "(time, level, logger, message); json, one JSON object per line with the keys "
            "time (ISO 8601, UTC), level, logger and message (plus exc_info for a traceback), "
            "for a log collector to read without parsing text."
        ),
    )
    ssl_certfile: Path | None = Field(
        default=None, description="Server certificate (PEM): `serve` speaks HTTPS when set."
    )
    ssl_keyfile: Path | None = Field(default=None, description="Private key of ssl_certfile.")
    ssl_ca_certs: Path | None = Field(
        default=None,
        description=(
            "CA bundle that client certificates must chain to; when set, `serve` asks every "
            "client for a certificate (systems with auth scheme mtls need one)."
        ),
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "Addresses of TLS-terminating proxies allowed to pass a verified client "
            "certificate subject in the X-Client-Subject header (mtls behind a proxy). "
            "Compared with the connection's own peer address: `serve` never takes a client "
            "address from X-Forwarded-For."
        ),
    )
    failed_auth_per_second: float = Field(
        default=0.5,
        gt=0,
        description=(
            "Failed authentications forgiven per second for each client address (the TCP "
            "peer). An address past failed_auth_burst failures in a row is answered 429 with "
            "Retry-After before its body is read; systems that authenticate are not affected."
        ),
    )
    failed_auth_burst: int = Field(
        default=20, ge=1, description="Failed authentications an address may have in a row."
    )
    body_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description=(
            "Seconds a request body may take to arrive in full; a slower one is answered 408 "
            "and its connection closed (a body trickled in byte by byte holds no worker for "
            "longer)."
        ),
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds `serve` gives a new connection to complete its request headers; then it "
            "is closed (half-open and slowly trickling connections hold no socket for longer)."
        ),
    )
    keep_alive_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds `serve` keeps an idle connection open between two requests.",
    )
    limit_concurrency: int = Field(
        default=1000,
        ge=1,
        description=(
            "Most connections and requests in progress `serve` takes at once; past it, new "
            "requests are answered 503. Keep it below the process's open-file limit."
        ),
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=4096,
        description=(
            "Most bytes of a request line and headers `serve` buffers (uvicorn's "
            "h11_max_incomplete_event_size); a request with more is answered 400."
        ),
    )
    backlog: int = Field(
        default=2048,
        ge=1,
        description="Connections the kernel queues for `serve` before it accepts them.",
    )
    require_secrets: bool = Field(
        default=False,
        description=(
            "Refuse to start when a system's secret variable (auth.key_env) is not set. Off: "
            "the hub starts, logs and reports (/ready warnings) the systems without one and "
            "refuses their requests (401) until it is set."
        ),
    )
    backpressure_max_ready: int = Field(
        default=DEFAULT_MAX_READY,
        ge=0,
        description=(
            "High-water mark of every target's queue: when more messages than this wait ready "
            "for a target, pushes whose records would reach it are answered 503 with "
            "Retry-After, nothing published (see adapters.backpressure). 0 turns it off."
        ),
    )
    backpressure_refresh_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between two reads of the queue counts back-pressure compares.",
    )
    backpressure_retry_after_s: int = Field(
        default=5,
        ge=1,
        le=3600,
        description="Seconds a push refused by back-pressure is told to wait (Retry-After).",
    )
    repeat_window_s: float = Field(
        default=7 * 86400.0,
        ge=0,
        description=(
            "Seconds the hub remembers the changes it published (their idempotency keys), to "
            "recognise a system sending them again: such a record is answered accepted, counted "
            "in jghub_duplicates_total and not published again. 0: publish every record."
        ),
    )
    deadlines_file: Path | None = Field(
        default=None,
        description=(
            "YAML file of the centre's deadlines by warning level, task type and complaint "
            "scenario (centre.deadlines); default: the built-in ones."
        ),
    )
    centre_scan_s: float = Field(
        default=60.0,
        ge=0,
        description=(
            "Seconds between two scans of the centre's ledger for due-soon reminders and "
            "overdue escalations (centre.notices), in each worker running the collaboration "
            "centre; each notice is sent once, whichever worker sends it. 0: none are sent."
        ),
    )
    reference_refresh_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description=(
            "Seconds a process answers the reference lists' lookups (catalogue items, "
            "certificates, supervised objects) from its own cache before it looks for the "
            "changes other hosts wrote (one query of three version numbers): the bound on how "
            "stale its checks may be. 0: look before every lookup."
        ),
    )
    shutdown_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="Seconds `serve` lets requests in flight finish when asked to stop.",
    )

    @field_validator("amqp_url")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("rules_file", mode="before")
    @classmethod
    def _blank_is_defaults(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("public_url")
    @classmethod
    def _public_url_is_a_base(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"public_url {value[:80]!r} must be an http:// or https:// URL with a host, "
                "e.g. https://jghub.zj.gov.cn"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"public_url {value[:80]!r} must have no query and no fragment")
        return value.rstrip("/")

    @property
    def public_base_url(self) -> str:
        """Where external systems reach the hub (JGHUB_PUBLIC_URL), without a trailing slash:
        else `serve`'s own scheme, host and port, 127.0.0.1 standing for a wildcard host."""
        if self.public_url:
            return self.public_url
        scheme = "https" if self.ssl_certfile else "http"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    def back_pressure(self, topology: Topology) -> BackPressure:
        """The high-water marks these settings give every target of `topology`.

        Pushes (`jghub serve`) and pollers (`jghub worker`) both hold back behind them.
        """
        return BackPressure(
            topology,
            max_ready=self.backpressure_max_ready,
            refresh_s=self.backpressure_refresh_s,
            retry_after_s=self.backpressure_retry_after_s,
        )

    def store(self, *, migrate: bool = False) -> Store:
        """The hub's store (`database_url`): the embedded SQLite file is migrated; PostgreSQL
        is migrated when `migrate` or `database_migrate` says so, else checked (SchemaBehind
        when it is older than this hub). StoreUnavailable when it does not answer."""
        url = store_url(self.database_url, self.data_dir)
        return Store.open(url, migrate=migrate or self.database_migrate)

    def accepted_changes(self, store: Store) -> AcceptedChanges | None:
        """The changes published before (`adapters.repeats`), in `store`; None when
        `repeat_window_s` is 0. Shared by every `serve` and the pollers of every `worker`."""
        if not self.repeat_window_s:
            return None
        return StoredAcceptedChanges(store, window_s=self.repeat_window_s)

    def warning_addressees(self, store: Store) -> WarningAddressees:
        """The system each published warning was routed to (`adapters.authorisation`), in
        `store`: feedback on a warning is taken only from that system. Shared by every `serve`
        and the pollers of every `worker`."""
        return StoredWarningAddressees(store)

    def ledger(
        self,
        store: Store,
        systems: Iterable[SystemConfig],
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> Ledger:
        """The centre's ledger in `store`, with the deadlines and calendar these settings name
        (DeadlinesFileError, CalendarFileError: the file, the field and the rule); `clock`
        tells it now (default: the wall clock; `jghub demo` runs on simulated business time)."""
        return Ledger(
            store,
            rules=DeadlineRules.load(self.deadlines_file),
            calendar=self.working_calendar(),
            departments=departments_by_system(systems),
            clock=clock,
        )

    def reference_lists(self, store: Store) -> StoreLists:
        """The reference lists in `store` (`reference.stored`), refreshed every
        `reference_refresh_s`: one per process, shared by its threads; the cross-checks read
        them."""
        return StoreLists(store, refresh_s=self.reference_refresh_s)

    def rulebook(self) -> Rulebook:
        """The cross-checks' dispositions in `rules_file` (RulesFileError: the file, the line
        and the rule)."""
        return Rulebook.load(self.rules_file)

    def cross_checks(self, rulebook: Rulebook, lists: StoreLists) -> CrossChecks:
        """The cross-checks of `rulebook` (`rulebook()`) on `lists`, the process's one copy of
        the reference lists (`reference_lists`): in the worker the feed writes to the copy the
        checks read, so a change it commits is judged by at once. Serve and the worker's
        pollers both take their checks from here."""
        return CrossChecks(rulebook, lists)

    def case_stages(self, store: Store, systems: Sequence[SystemConfig]) -> StoredCaseStages:
        """Each penalty case's last stage (`centre.penalties`), in `store`: a record moving
        its case along no legal transition is refused. Shared like `warning_addressees`."""
        own = {system.id: system.departments[0].name for system in systems if system.departments}
        return StoredCaseStages(store, own)

    def penalty_limits(self, systems: Sequence[SystemConfig]) -> PenaltyLimits:
        """The penalty time limits watched, with each system's 双公示 working days."""
        return PenaltyLimits(
            publication_by_system={
                system.id: system.penalty_publication_working_days for system in systems
            }
        )

    def working_calendar(self) -> WorkingCalendar:
        """The working-day calendar, with the years of `calendar_file` (`centre.workdays`)."""
        return WorkingCalendar.load(self.calendar_file)

    @property
    def bus_url(self) -> str:
        """The broker URL `bus.connect` takes: RabbitMQ, or the embedded bus in data_dir."""
        if self.amqp_url:
            return self.amqp_url
        return f"sqlite:///{self.data_dir / 'bus.sqlite3'}"
