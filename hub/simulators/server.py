"""A real uvicorn server for an ASGI app on a loopback port, run in a thread of its own.

The simulators, the demo and the tests all need real HTTP between the hub and the systems it
talks to, so they share this one way of starting a server and knowing its URL:

    with LoopbackServer(app) as server:      # port 0: the system picks a free port
        httpx.get(f"{server.url}/health")
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

START_TIMEOUT_S = 20.0


class ServerStartError(RuntimeError):
    """The server did not start listening (port taken, app startup failed)."""


class LoopbackServer:
    """uvicorn serving `app` on `host:port` (0: a free port) in a daemon thread.

    Parameters:
      app: the ASGI application.
      host: address to listen on; loopback by default.
      port: port to listen on; 0 lets the system choose (see `port` after `start`).
      name: names the thread, for logs.
      log_level: uvicorn's log level ("warning" keeps tests and the demo quiet).
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "server",
        log_level: str = "warning",
        **config: Any,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.name = name
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            lifespan="auto",
            timeout_graceful_shutdown=5,
            **config,
        )
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def url(self) -> str:
        """The server's base URL, e.g. http://127.0.0.1:41234 (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> LoopbackServer:
        """Start serving; return once the socket listens. ServerStartError if it does not."""
        self._thread = threading.Thread(target=self._server.run, name=self.name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive():
                raise ServerStartError(
                    f"{self.name} on {self.host}:{self.requested_port} stopped while starting "
                    "(port taken, or the app's startup failed; see the log)"
                )
            if time.monotonic() > deadline:
                self._server.should_exit = True
                raise ServerStartError(f"{self.name} did not start within {START_TIMEOUT_S} s")
            time.sleep(0.01)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self

    def request_stop(self) -> None:
        """Ask the server to stop, without waiting for it: uvicorn looks every 0.1 s, so
        servers asked together before each is waited for stop in one look, not one each."""
        self._server.should_exit = True

    def stop(self) -> None:
        """Stop serving (finishing requests in flight) and wait for the thread. Idempotent."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now (for configurations that must name a port before it listens)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
