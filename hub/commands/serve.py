"""`jghub serve`: check the configuration, declare the bus topology and run the HTTP server."""

from __future__ import annotations

import ssl
from typing import Annotated, Any

import typer
import uvicorn

from adapters.connections import hub_h11_protocol
from hub.app import create_app
from hub.commands.options import DataDir, LogLevel, Migrate, SystemsFile, hub_settings
from hub.commands.startup import (
    configure_logging,
    error_console,
    exit_2_on_configuration_error,
    pool_metrics,
)
from hub.settings import HubSettings


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: JGHUB_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: JGHUB_PORT or 8080).")
    ] = None,
    systems_file: SystemsFile = None,
    data_dir: DataDir = None,
    migrate: Migrate = None,
    log_level: LogLevel = "info",
) -> None:
    """Serve every configured push channel, the outboxes, /health, /ready, /metrics and /docs.

    The configuration, mappings and secrets are checked before anything listens (exit 2 on a
    mistake, with file and line). The bus topology is declared at start-up. SIGINT or SIGTERM
    stop taking connections and let requests in flight finish (JGHUB_SHUTDOWN_TIMEOUT_S).
    """
    settings = hub_settings(
        host=host,
        port=port,
        systems_file=systems_file,
        data_dir=data_dir,
        database_migrate=migrate,
    )
    configure_logging(log_level, settings.log_format)
    with exit_2_on_configuration_error(error_console()):
        # This process answers /metrics for every hub process on the machine.
        pool_metrics(settings, answering=True)
        application = create_app(settings)
    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        # No config of uvicorn's own: its lines (an access line quotes the path a client chose)
        # go to the hub's handler and its one-line formatter.
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        **server_options(settings),
    )
    uvicorn.Server(config).run()


def server_options(settings: HubSettings) -> dict[str, Any]:
    """uvicorn's connection options from the settings: bounded connections, the peer address
    as it is, and TLS (`tls_options`)."""
    return {
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "backlog": settings.backlog,
        # The gatekeeper trusts a proxy's headers by the socket's peer address; uvicorn's
        # rewrite of that address from X-Forwarded-For would let any client claim the proxy's.
        "proxy_headers": False,
        "http": hub_h11_protocol(settings.header_timeout_s),
        **tls_options(settings),
    }


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
    return options
