"""The monitor's settings: journal, multiprocess metrics, operator key, read from JGHUB_*.

Every option has a default that works; where files go follows the hub's `data_dir`:

    JGHUB_JOURNAL_ENABLED=false                  # metrics only
    JGHUB_JOURNAL__FLUSH_INTERVAL_S=0.5          # nested JournalOptions, double underscore
    JGHUB_OPERATOR_KEY=...                       # enables the dead-letter HTTP routes
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from monitor.journal import JOURNAL_FILE, Journal, JournalOptions
from monitor.metrics import MULTIPROC_ENV

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
        description="The journal's SQLite file; default data_dir/journal.sqlite3.",
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
    operator_key: SecretStr | None = Field(
        default=None,
        description=(
            "Key operators send in X-Operator-Key to use the dead-letter HTTP routes; unset, "
            "those routes are not served (the `jghub dead` command works on the machine)."
        ),
    )

    def journal_path(self, data_dir: Path) -> Path:
        """Where the journal is for a hub whose data folder is `data_dir`."""
        return self.journal_file or Path(data_dir) / JOURNAL_FILE

    def open_journal(self, data_dir: Path) -> Journal | None:
        """The hub's journal as these settings say (None when journal_enabled is false).

        Raises JournalUnavailable when its file cannot be opened."""
        if not self.journal_enabled:
            return None
        return Journal(self.journal_path(data_dir), self.journal)

    def metrics_path(self, data_dir: Path) -> Path:
        """Where the multiprocess samples go for a hub whose data folder is `data_dir`."""
        from_environment = os.environ.get(MULTIPROC_ENV)
        if from_environment:
            return Path(from_environment)
        return self.metrics_dir or Path(data_dir) / METRICS_FOLDER
