"""The monitor's settings: journal, multiprocess metrics, operator accounts, read from JGHUB_*.

Every option has a default that works; where files go follows the hub's `data_dir`:

    JGHUB_JOURNAL_ENABLED=false                  # metrics only
    JGHUB_JOURNAL__FLUSH_INTERVAL_S=0.5          # nested JournalOptions, double underscore
    JGHUB_OPERATORS_FILE=/etc/jghub/operators.yaml   # enables the dead-letter HTTP routes
    JGHUB_QUARANTINE_MAX_BYTES=1GiB JGHUB_QUARANTINE_MAX_AGE=14d   # the quarantine's bounds
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from pydantic import ByteSize, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from monitor.dead_letters import parse_age
from monitor.errors import OperatorsFileError
from monitor.journal import JOURNAL_FILE, Journal, JournalOptions
from monitor.metrics import MULTIPROC_ENV
from monitor.operators import OperatorGate, load_operators
from monitor.quarantine import DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, Quarantine, QuarantineLimits
from store import Store

METRICS_FOLDER = "metrics"


class MonitorSettings(BaseSettings):
    """Settings of the monitor in `serve`, `worker` and the operators' commands."""

    model_config = SettingsConfigDict(
        env_prefix="JGHUB_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    journal_enabled: bool = Field(
        default=True,
        description="Write every message's steps to the journal (trace, quality report).",
    )
    journal_file: Path | None = Field(
        default=None,
        description=(
            "Deprecated: the journal lives in the hub's store (JGHUB_DATABASE_URL). This names "
            "the SQLite file of a journal from before the store, taken into the store once and "
            "renamed .adopted; default data_dir/journal.sqlite3."
        ),
    )
    journal_store_file: Path | None = Field(
        default=None,
        description=(
            "On the embedded store only (no JGHUB_DATABASE_URL): an SQLite file of the "
            "journal's own, so its batches do not queue behind the small stores' writes for "
            "SQLite's one write lock per file, nor they behind its (bench/journal.py measures "
            "both). Unset: the journal shares data_dir/store.sqlite3. Ignored on PostgreSQL."
        ),
    )
    journal: JournalOptions = Field(
        default_factory=JournalOptions, description="How the journal batches its writes."
    )
    metrics_dir: Path | None = Field(
        default=None,
        description=(
            "Folder where every hub process on this machine writes its metric samples so that "
            "one /metrics sums them (prometheus-client multiprocess mode); default "
            "data_dir/metrics. PROMETHEUS_MULTIPROC_DIR, when set, wins."
        ),
    )
    operators_file: Path | None = Field(
        default=None,
        description=(
            "The operator accounts (YAML: name, role, scrypt hash of the secret; see "
            "monitor.operators) who may use the dead-letter HTTP routes with HTTP Basic; unset, "
            "those routes are not served (the `jghub dead` command works on the machine)."
        ),
    )
    operator_key: SecretStr | None = Field(
        default=None,
        description=(
            "Retired: the one shared key operators once sent in X-Operator-Key. Set (not "
            "empty), `serve` refuses to start and says how to move to operators_file."
        ),
    )

    quarantine_max_bytes: ByteSize = Field(
        default=ByteSize(DEFAULT_MAX_BYTES),
        gt=0,
        description=(
            "Most payload bytes the quarantine keeps (a number of bytes, or 512MiB, 2GB ...). "
            "A rejected payload that would pass it is refused to its sender with 503, nothing "
            "of it published: the hub does not accept what it could not keep."
        ),
        examples=["512MiB", "2GiB"],
    )
    quarantine_max_age: timedelta = Field(
        default=DEFAULT_MAX_AGE,
        description=(
            "Released and discarded quarantine entries are removed this long after they were "
            "settled (30d, 12h, or seconds); held ones older than this are kept, counted in "
            "jghub_quarantine_aged_entries and logged until an operator releases or "
            "discards them."
        ),
        examples=["30d", "7d"],
    )

    @field_validator("quarantine_max_age", mode="before")
    @classmethod
    def _age_with_unit(cls, value: object) -> object:
        # "30d" as `jghub dead list --older-than` takes it, or seconds; ISO 8601 is pydantic's.
        if not isinstance(value, str) or value.strip().upper().startswith("P"):
            return value
        if value.strip().replace(".", "", 1).isdigit():
            return timedelta(seconds=float(value))
        return parse_age(value)

    @field_validator("operators_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker compose passes `${JGHUB_OPERATORS_FILE:-}` through as an empty string.
        return None if value == "" else value

    def operator_gate(self) -> OperatorGate | None:
        """The gate of the operator accounts file (None when none is set).

        Raises OperatorsFileError when the file is wrong (file:line), or when the retired
        JGHUB_OPERATOR_KEY is still set: one key shared by everyone cannot say who acted, and
        serving it as an account named "operator" would keep exactly that.
        """
        if self.operator_key is not None and self.operator_key.get_secret_value():
            raise OperatorsFileError(
                "JGHUB_OPERATOR_KEY is retired: operators now sign in with their own accounts. "
                "Run `jghub operators hash` for each person, list them in a YAML file "
                "(operators: [{name: ops-li, role: operator, secret_hash: ...}]), set "
                "JGHUB_OPERATORS_FILE to its path and unset JGHUB_OPERATOR_KEY (README: "
                "Security, Operator accounts)"
            )
        if self.operators_file is None:
            return None
        return OperatorGate(load_operators(self.operators_file))

    def old_journal_path(self, data_dir: Path) -> Path:
        """Where a journal from before the store may still be, to adopt (journal_file)."""
        return self.journal_file or Path(data_dir) / JOURNAL_FILE

    def journal_store(self, store: Store) -> Store | Path:
        """Where the journal is kept: `store`, or journal_store_file beside an SQLite store."""
        if store.embedded and self.journal_store_file is not None:
            return self.journal_store_file
        return store

    def open_journal(self, store: Store, data_dir: Path) -> Journal | None:
        """The hub's journal in `store`, as these settings say (None when journal_enabled is
        false); an old journal file in `data_dir` (or journal_file) is adopted on the way.

        Raises JournalUnavailable when the store cannot hold it."""
        if not self.journal_enabled:
            return None
        return Journal(
            self.journal_store(store), self.journal, adopt=self.old_journal_path(data_dir)
        )

    def quarantine(self, store: Store) -> Quarantine:
        """The quarantine in `store`, with these settings' bounds."""
        limits = QuarantineLimits(
            max_bytes=int(self.quarantine_max_bytes), max_age=self.quarantine_max_age
        )
        return Quarantine(store, limits)

    def metrics_path(self, data_dir: Path) -> Path:
        """Where the multiprocess samples go for a hub whose data folder is `data_dir`."""
        from_environment = os.environ.get(MULTIPROC_ENV)
        if from_environment:
            return Path(from_environment)
        return self.metrics_dir or Path(data_dir) / METRICS_FOLDER
