"""A TCP relay on loopback in front of the real RabbitMQ: counts the connections a client opens.

    with TcpRelay(RABBITMQ_URL) as relay:
        broker = bus.connect(relay.url)      # the client talks to RabbitMQ through the relay
        ...
        relay.accepted                       # connections opened through it so far
        relay.live                           # those still open
        relay.sent                           # bytes the client sent through it so far
        relay.cut()                          # drop every open connection, as a network fault

The broker cannot say how many connections a client opened and closed (its list holds only the
open ones), and a client's own log depends on its log level; the relay counts every one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit


class TcpRelay:
    """Forwards each connection accepted on 127.0.0.1 to the host and port of `url`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
        self.url = urlunsplit(parts._replace(netloc=netloc))
        self.accepted = 0
        self.sent = 0
        self._live: set[int] = set()  # numbers of the connections still open
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="tcp-relay", daemon=True).start()

    @property
    def live(self) -> int:
        """Connections open through the relay now (one whose either end closed is not)."""
        with self._lock:
            return len(self._live)

    def cut(self) -> None:
        """Close every connection open through the relay (both ends); new ones still pass."""
        with self._lock:
            held, self._open = self._open, []
        for sock in held:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.cut()

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.accepted += 1
                number = self.accepted
                self._live.add(number)
                self._open += [client, upstream]
            for source, sink, counted in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(number, source, sink, counted), daemon=True
                ).start()

    def _pump(self, number: int, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
                if counted:
                    with self._lock:
                        self.sent += len(chunk)
        except OSError:
            pass
        finally:
            # One side ended: end the other, as a real connection would.
            with self._lock:
                self._live.discard(number)
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
