"""`jghub worker`: deliver the target systems' queues and run the pollers until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from adapters.errors import AdapterConfigError
from hub.settings import HubSettings
from hub.systems import SystemsConfigError
from hub.worker import Worker, WorkerError
from mappings import MappingError
from monitor.errors import MonitorError
from monitor.metrics import enable_multiprocess, serve_metrics
from monitor.settings import MonitorSettings


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
    systems_file: Annotated[
        Path | None,
        typer.Option(
            "--systems", help="Systems configuration (default: JGHUB_SYSTEMS_FILE or shipped)."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data folder (default: JGHUB_DATA_DIR or ./var).")
    ] = None,
    metrics_port: Annotated[
        int,
        typer.Option(help="Serve Prometheus metrics on this port (0: do not serve them).", min=0),
    ] = 0,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Deliver each target system's queue through its sender; run the pollers.

    One consumer per target, each with its own broker connection; start as many workers as
    needed against one RabbitMQ (they compete for messages). SIGTERM or SIGINT: stop taking
    messages, finish the ones in hand, give back the rest, exit 0. A configuration mistake
    exits 2 before anything is consumed.
    """
    console = Console(stderr=True, highlight=False)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    overrides: dict[str, Any] = {
        name: value
        for name, value in (("systems_file", systems_file), ("data_dir", data_dir))
        if value is not None
    }
    settings = HubSettings(**overrides)
    wanted = [name.strip() for name in targets.split(",") if name.strip()] if targets else None
    try:
        # Samples go to files shared with `serve` on this machine, so its /metrics counts ours.
        enable_multiprocess(MonitorSettings().metrics_path(settings.data_dir))
        running = Worker(settings, targets=wanted, pollers=pollers)
    except (
        SystemsConfigError, MappingError, AdapterConfigError, WorkerError, MonitorError
    ) as error:  # fmt: skip
        console.print(f"[red]cannot start[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None
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
        console.print(f"[red]cannot start[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None
