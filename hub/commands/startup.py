"""How the long-running `jghub serve` and `jghub worker` processes start: logging, the metrics they
pool, and the exit 2 that a configuration mistake gives before anything runs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from rich.console import Console
from rich.markup import escape

from adapters.errors import AdapterConfigError
from hub.settings import HubSettings
from hub.systems import SystemsConfigError
from mappings import MappingError
from monitor.errors import MonitorError
from monitor.literal import visible
from monitor.metrics import clear_stale, enable_multiprocess
from monitor.settings import MonitorSettings
from reference.rulebook import RulesFileError
from store import StoreError

# What a mistake in the systems file, a mapping, an adapter's options, the monitor's settings or
# the cross-checks' rules file raises while a process starts; and a store that does not answer
# or whose schema is behind.
CONFIGURATION_ERRORS: tuple[type[Exception], ...] = (
    SystemsConfigError,
    RulesFileError,
    MappingError,
    AdapterConfigError,
    MonitorError,
    StoreError,
)


def error_console() -> Console:
    """Where a process tells why it stops: stderr, each message on one line however long."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


PER_REQUEST_LOGGERS = ("httpx", "httpcore")
"""Libraries that log every HTTP request at INFO: in the worker, a line per delivery."""


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class OneLineFormatter(logging.Formatter):
    """Each record on one line that a sender cannot forge: the message's control characters (CR,
    LF, ESC, bidi overrides ...) are written as escapes (`monitor.literal.visible`), so a task
    number holding a newline and a fake timestamp stays inside its own line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = visible(record.message)
        return super().formatMessage(record)


class JsonLineFormatter(JsonFormatter):
    """Each record as one JSON object on one line: time (ISO 8601, UTC), level, logger, message,
    and exc_info when it carries a traceback. JSON escapes every control character (and, ASCII
    only, every line separator), so a sender's newline cannot start a line of its own.

    The traceback is the one `adapters.redaction` already stripped of secrets (`exc_text`):
    python-json-logger would format `exc_info` anew and show them. uvicorn's `color_message`,
    its message again with terminal colours, is left out.
    """

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        if record.exc_text:
            message_dict["exc_info"] = record.exc_text
        super().add_fields(log_data, record, message_dict)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log at `level` (debug, info ...) to stderr, each record on one line: as text with its
    time, level and logger, values from senders escaped (`OneLineFormatter`), or as JSON
    (`JsonLineFormatter`, `log_format` "json"); uvicorn's lines go the same way.

    INFO is for state changes (started, stopped, a breaker opened, a connection lost or back);
    what happens to each message is at DEBUG, so the per-request lines of the HTTP client are
    kept for `--log-level debug` too.
    """
    handler = logging.StreamHandler()
    formatter = JsonLineFormatter() if log_format == "json" else OneLineFormatter(LOG_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler])
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in PER_REQUEST_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def pool_metrics(settings: HubSettings, *, answering: bool) -> None:
    """Write this process's metric samples to the folder every hub process on this machine shares,
    so that the process answering /metrics (`answering`: serve) counts them all.

    The answering process first empties the folder when no process that wrote there is alive.
    """
    folder = MonitorSettings().metrics_path(settings.data_dir)
    if answering:
        clear_stale(folder)
    enable_multiprocess(folder)


def cannot_start(console: Console, error: Exception) -> typer.Exit:
    """Say `cannot start: <why>` and give the exit (2) to raise."""
    console.print(f"[red]cannot start[/red]: {escape(str(error))}")
    return typer.Exit(2)


@contextmanager
def exit_2_on_configuration_error(console: Console, *also: type[Exception]) -> Iterator[None]:
    """Turn a configuration mistake (or one of `also`) raised inside into `cannot start` and
    exit 2, before the process takes any work."""
    try:
        yield
    except (*CONFIGURATION_ERRORS, *also) as error:
        raise cannot_start(console, error) from None
