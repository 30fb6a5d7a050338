"""`jghub serve`: check the configuration, declare the bus topology and run the HTTP server."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console
from rich.markup import escape

from adapters.errors import AdapterConfigError
from adapters.security import ClientCertificateH11Protocol
from hub.app import create_app
from hub.settings import HubSettings
from hub.systems import SystemsConfigError
from mappings import MappingError
from monitor.errors import MonitorError
from monitor.metrics import clear_stale, enable_multiprocess
from monitor.settings import MonitorSettings


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: JGHUB_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: JGHUB_PORT or 8080).")
    ] = None,
    systems_file: Annotated[
        Path | None,
        typer.Option(
            "--systems", help="Systems configuration (default: JGHUB_SYSTEMS_FILE or shipped)."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data folder (default: JGHUB_DATA_DIR or ./var).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve every configured push channel, the outboxes, /health, /ready, /metrics and /docs.

    The configuration, mappings and secrets are checked before anything listens (exit 2 on a
    mistake, with file and line). The bus topology is declared at start-up. SIGINT or SIGTERM
    stop taking connections and let requests in flight finish (JGHUB_SHUTDOWN_TIMEOUT_S).
    """
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    overrides: dict[str, Any] = {
        name: value
        for name, value in (
            ("host", host),
            ("port", port),
            ("systems_file", systems_file),
            ("data_dir", data_dir),
        )
        if value is not None
    }
    settings = HubSettings(**overrides)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        # This process answers /metrics for every hub process on the machine: their samples
        # meet in one folder, emptied first when no process that wrote there is alive.
        metrics_dir = MonitorSettings().metrics_path(settings.data_dir)
        clear_stale(metrics_dir)
        enable_multiprocess(metrics_dir)
        application = create_app(settings)
    except (SystemsConfigError, MappingError, AdapterConfigError, MonitorError) as error:
        console.print(f"[red]cannot start[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None
    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        **tls_options(settings),
    )
    uvicorn.Server(config).run()


def tls_options(settings: HubSettings) -> dict[str, Any]:
    """uvicorn's TLS options from the settings: HTTPS, and client certificates for mTLS."""
    if settings.ssl_certfile is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.ssl_certfile),
        "ssl_keyfile": str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    }
    if settings.ssl_ca_certs is not None:
        options["ssl_ca_certs"] = str(settings.ssl_ca_certs)
        # Optional, not required: systems using API keys on the same port need no certificate;
        # an mtls system without one is refused by the gatekeeper (401).
        options["ssl_cert_reqs"] = ssl.CERT_OPTIONAL
        options["http"] = ClientCertificateH11Protocol
    return options
