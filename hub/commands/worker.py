"""`jghub worker`: deliver the target systems' queues and run the pollers until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape

from adapters.errors import AdapterConfigError
from hub.commands.options import DataDir, LogLevel, Migrate, SystemsFile, hub_settings
from hub.commands.startup import (
    cannot_start,
    configure_logging,
    error_console,
    exit_2_on_configuration_error,
    pool_metrics,
)
from hub.worker import Worker, WorkerError
from monitor.metrics import serve_metrics


def worker(
    targets: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated systems to deliver to (ids); default: every system with an "
            "outbound section."
        ),
    ] = None,
    pollers: Annotated[
        bool, typer.Option("--pollers/--no-pollers", help="Run the configured pollers.")
    ] = True,
    systems_file: SystemsFile = None,
    data_dir: DataDir = None,
    migrate: Migrate = None,
    metrics_port: Annotated[
        int,
        typer.Option(help="Serve Prometheus metrics on this port (0: do not serve them).", min=0),
    ] = 0,
    log_level: LogLevel = "info",
) -> None:
    """Deliver each target system's queue through its sender; run the pollers.

    One consumer per target, each with its own broker connection; start as many workers as
    needed against one RabbitMQ (they compete for messages). SIGTERM or SIGINT: stop taking
    messages, finish the ones in hand, give back the rest, exit 0. A configuration mistake
    exits 2 before anything is consumed.
    """
    console = error_console()
    settings = hub_settings(systems_file=systems_file, data_dir=data_dir, database_migrate=migrate)
    configure_logging(log_level, settings.log_format)
    wanted = [name.strip() for name in targets.split(",") if name.strip()] if targets else None
    with exit_2_on_configuration_error(console, WorkerError):
        # `serve`, on this machine, answers /metrics for this process too.
        pool_metrics(settings, answering=False)
        running = Worker(settings, targets=wanted, pollers=pollers)
    if metrics_port:
        serve_metrics(metrics_port, "0.0.0.0")

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("hub.worker").info(
            "%s: finishing the messages in hand, then stopping", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        running.run(stop)
    except WorkerError as error:
        console.print(f"[red]worker stopped[/red]: {escape(str(error))}")
        raise typer.Exit(1) from None
    except AdapterConfigError as error:
        raise cannot_start(console, error) from None
