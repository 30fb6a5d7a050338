"""The hub's settings: where the bus, the data folder and the configuration are, read from JGHUB_*.

Every option has a default that works on a fresh checkout: no `amqp_url` means the embedded bus
in `data_dir`, the systems file and the mappings are the ones shipped in the repository.

    JGHUB_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2F JGHUB_PORT=9000 jghub serve
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.authorisation import WARNINGS_FILE, SqliteWarningAddressees, WarningAddressees
from adapters.backpressure import DEFAULT_MAX_READY, BackPressure
from adapters.repeats import ACCEPTED_FILE, AcceptedChanges, SqliteAcceptedChanges
from bus.topology import NAMESPACE_PATTERN, Topology
from mappings import SYSTEMS_ROOT

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_SYSTEMS_FILE = REPOSITORY / "config" / "systems.yaml"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


class HubSettings(BaseSettings):
    """Settings of the `serve` and `worker` processes; environment variables JGHUB_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="JGHUB_", extra="ignore", frozen=True)

    amqp_url: str | None = Field(
        default=None,
        description=(
            "RabbitMQ URL, amqp://user:password@host:port/vhost (or amqps://). Empty: the "
            "embedded bus in data_dir/bus.sqlite3, for a first run on one machine."
        ),
        examples=["amqp://guest:guest@127.0.0.1:5672/%2F"],
    )
    data_dir: Path = Field(
        default=Path("var"),
        description=(
            "Folder of the hub's own files: the embedded bus, the outbox and poller cursors. "
            "`serve` and `worker` on one machine must share it."
        ),
    )
    systems_file: Path = Field(
        default=DEFAULT_SYSTEMS_FILE,
        description="The systems configuration (YAML): who is connected and how.",
    )
    mappings_root: Path = Field(
        default=SYSTEMS_ROOT,
        description="Folder holding one mapping folder per system (default: the shipped ones).",
    )
    host: str = Field(default="127.0.0.1", description="Address `jghub serve` listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port `jghub serve` listens on.")
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
            "certificate subject in the X-Client-Subject header (mtls behind a proxy)."
        ),
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
    shutdown_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="Seconds `serve` lets requests in flight finish when asked to stop.",
    )

    @field_validator("amqp_url")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

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

    def accepted_changes(self) -> AcceptedChanges | None:
        """The changes published before (`adapters.repeats`), in the data folder; None when
        `repeat_window_s` is 0. Shared by `serve` and the pollers of `worker` on this host."""
        if not self.repeat_window_s:
            return None
        return SqliteAcceptedChanges(self.data_dir / ACCEPTED_FILE, window_s=self.repeat_window_s)

    def warning_addressees(self) -> WarningAddressees:
        """The system each published warning was routed to (`adapters.authorisation`), in the
        data folder: feedback on a warning is taken only from that system. Shared by `serve`
        and the pollers of `worker` on this host."""
        return SqliteWarningAddressees(self.data_dir / WARNINGS_FILE)

    @property
    def bus_url(self) -> str:
        """The broker URL `bus.connect` takes: RabbitMQ, or the embedded bus in data_dir."""
        if self.amqp_url:
            return self.amqp_url
        return f"sqlite:///{self.data_dir / 'bus.sqlite3'}"
