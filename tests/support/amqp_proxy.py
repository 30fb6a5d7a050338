"""A TCP proxy in front of the real RabbitMQ that can cut, refuse or hold back chosen connections.

    with contextlib.closing(AmqpProxy(RABBITMQ_URL)) as proxy:
        broker = bus.connect(proxy.url)           # every connection goes through the proxy
        proxy.refuse("jghub-publisher")           # cut that connection, refuse it while set
        proxy.block("jghub-publisher", "low on memory")   # the broker's Connection.Blocked
        proxy.allow("jghub-publisher"); proxy.unblock("jghub-publisher")

A connection is known by the connection name in its client properties (pika sends them in
Connection.StartOk), so a test can take one link of a process down (its publisher) while the
others (its admin connections) go on: what a network fault or a broker alarm does to one
connection, without touching a broker other suites share. Frames from the broker are forwarded
whole, so a Connection.Blocked the proxy adds never lands inside another frame.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from urllib.parse import urlsplit, urlunsplit

FRAME_METHOD = 1
FRAME_END = b"\xce"
CONNECTION_CLASS = 10
BLOCKED, UNBLOCKED = 60, 61


def _method_frame(method: int, arguments: bytes = b"") -> bytes:
    payload = struct.pack(">HH", CONNECTION_CLASS, method) + arguments
    return struct.pack(">BHI", FRAME_METHOD, 0, len(payload)) + payload + FRAME_END


class _Piped:
    """One client connection and its upstream twin."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.name = ""
        self.to_client = threading.Lock()  # whole frames only, forwarded or added
        self.closed = threading.Event()

    def send_to_client(self, data: bytes) -> None:
        with self.to_client:
            self.client.sendall(data)

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class AmqpProxy:
    """Listens on a loopback port and forwards every connection to the broker of `url`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        netloc = f"{parts.username}:{parts.password}@127.0.0.1:{port}"
        self.url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        self._refused: set[str] = set()
        self._pipes: list[_Piped] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name="amqp-proxy", daemon=True).start()

    # --- what a test does

    def refuse(self, name: str) -> None:
        """Cut the connections named `name` now, and refuse new ones until `allow`."""
        with self._lock:
            self._refused.add(name)
            cut = [pipe for pipe in self._pipes if pipe.name == name]
        for pipe in cut:
            pipe.close()

    def allow(self, name: str) -> None:
        with self._lock:
            self._refused.discard(name)

    def block(self, name: str, reason: str) -> int:
        """Tell the connections named `name` that the broker blocks their publishes (as
        RabbitMQ does on a memory or disk alarm); how many were told."""
        encoded = reason.encode()
        frame = _method_frame(BLOCKED, struct.pack(">B", len(encoded)) + encoded)
        return self._tell(name, frame)

    def unblock(self, name: str) -> int:
        return self._tell(name, _method_frame(UNBLOCKED))

    def connections(self, name: str) -> int:
        with self._lock:
            return sum(1 for pipe in self._pipes if pipe.name == name and not pipe.closed.is_set())

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            pipes = list(self._pipes)
        for pipe in pipes:
            pipe.close()

    # --- forwarding

    def _tell(self, name: str, frame: bytes) -> int:
        with self._lock:
            told = [pipe for pipe in self._pipes if pipe.name == name and not pipe.closed.is_set()]
        for pipe in told:
            pipe.send_to_client(frame)
        return len(told)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            pipe = _Piped(client, upstream)
            with self._lock:
                self._pipes.append(pipe)
            threading.Thread(target=self._from_client, args=(pipe,), daemon=True).start()
            threading.Thread(target=self._from_broker, args=(pipe,), daemon=True).start()

    def _from_client(self, pipe: _Piped) -> None:
        seen = b""
        try:
            while data := pipe.client.recv(65536):
                if not pipe.name and len(seen) < 65536:
                    # The client properties travel in Connection.StartOk, early on.
                    seen += data
                    pipe.name = self._named(seen)
                    with self._lock:
                        refused = pipe.name in self._refused
                    if refused:
                        break
                pipe.upstream.sendall(data)
        except OSError:
            pass
        pipe.close()

    @staticmethod
    def _named(seen: bytes) -> str:
        # The entry of the client-properties table: shortstr key, type S, long string value.
        key = b"\x0fconnection_nameS"
        at = seen.find(key)
        if at < 0 or len(seen) < at + len(key) + 4:
            return ""
        start = at + len(key) + 4
        (size,) = struct.unpack_from(">I", seen, at + len(key))
        if len(seen) < start + size:
            return ""
        return seen[start : start + size].decode("utf-8", "replace")

    def _from_broker(self, pipe: _Piped) -> None:
        buffer = b""
        try:
            while data := pipe.upstream.recv(65536):
                buffer += data
                frames, buffer = _whole_frames(buffer)
                if frames:
                    pipe.send_to_client(frames)
        except OSError:
            pass
        pipe.close()


def _whole_frames(buffer: bytes) -> tuple[bytes, bytes]:
    """(the whole frames at the start of `buffer`, the rest)."""
    end = 0
    while len(buffer) - end >= 7:
        (size,) = struct.unpack_from(">I", buffer, end + 3)
        if len(buffer) - end < 7 + size + 1:
            break
        end += 7 + size + 1
    return buffer[:end], buffer[end:]
