"""A real HTTP target on a loopback port for the sender tests: records requests, answers as told.

    with LoopbackTarget() as target:
        target.answer(503, b"busy", times=2)     # the next two requests get 503
        target.answer(200, b"ok")                 # then 200 (the default answer)
        ...
        target.requests                           # what arrived, in order
        target.hold(); ...; target.release()      # keep requests waiting: see max_in_flight

A SOAP mode serves a WSDL at `GET ...?wsdl` and builds its answers (result or fault) with lxml,
so zeep talks to it as it would to a department's service.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from lxml import etree

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
TEMPURI = "http://tempuri.org/"


@dataclass(frozen=True)
class Recorded:
    """One request the target received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class Answer:
    """What to answer: a status, a body and content type, after an optional delay."""

    status: int = 200
    body: bytes = b'{"code":"0"}'
    content_type: str = "application/json"
    delay_s: float = 0.0
    # SOAP mode: a function building the body from the request (e.g. an echo), if set.
    build: Callable[[Recorded], bytes] | None = None


@dataclass
class _Script:
    queue: deque[Answer] = field(default_factory=deque)
    default: Answer = field(default_factory=Answer)


class LoopbackTarget:
    """A threaded HTTP server on 127.0.0.1 that records requests and answers from a script."""

    def __init__(self, *, wsdl: bytes | None = None) -> None:
        self.requests: list[Recorded] = []
        self._script = _Script()
        self._lock = threading.Lock()
        # Requests being answered now, and the most there ever were at once: a client's
        # concurrency shows here without timing anything.
        self.in_flight = 0
        self.max_in_flight = 0
        self._open = threading.Event()
        self._open.set()
        self._wsdl = wsdl
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes

            def log_message(self, format: str, *args: object) -> None:  # quiet tests
                return

            def do_GET(self) -> None:
                if owner._wsdl is not None and self.path.lower().endswith("?wsdl"):
                    body = owner._wsdl.replace(b"{{ADDRESS}}", owner.url.encode())
                    self._send(200, body, "text/xml; charset=utf-8")
                    return
                self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                recorded = Recorded(
                    "POST", self.path, dict(self.headers.items()), body, time.monotonic()
                )
                answer = owner._next(recorded)
                try:
                    owner._open.wait()
                    if answer.delay_s:
                        time.sleep(answer.delay_s)
                    payload = answer.build(recorded) if answer.build else answer.body
                    # A client that gave up (timeout tests) is not there to answer.
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        self._send(answer.status, payload, answer.content_type)
                finally:
                    with owner._lock:
                        owner.in_flight -= 1

            do_PUT = do_POST

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/receive"

    def answer(
        self,
        status: int = 200,
        body: bytes = b'{"code":"0"}',
        *,
        content_type: str = "application/json",
        delay_s: float = 0.0,
        times: int = 1,
        build: Callable[[Recorded], bytes] | None = None,
    ) -> None:
        """Queue `times` answers; once the queue is empty the default answer is used."""
        with self._lock:
            for _ in range(times):
                self._script.queue.append(Answer(status, body, content_type, delay_s, build))

    def always(
        self,
        status: int = 200,
        body: bytes = b'{"code":"0"}',
        *,
        content_type: str = "application/json",
        delay_s: float = 0.0,
        build: Callable[[Recorded], bytes] | None = None,
    ) -> None:
        """Set the default answer (after the queued ones)."""
        with self._lock:
            self._script.default = Answer(status, body, content_type, delay_s, build)

    def hold(self) -> None:
        """Keep every request waiting (counted in `in_flight`) until `release`."""
        self._open.clear()

    def release(self) -> None:
        """Answer the held requests, and the next ones at once."""
        self._open.set()

    def wait_in_flight(self, count: int, timeout: float = 10.0) -> None:
        """Wait until `count` requests are being answered at the same time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.in_flight >= count:
                    return
            time.sleep(0.01)
        raise AssertionError(f"{self.in_flight} requests in flight at once, expected {count}")

    def _next(self, recorded: Recorded) -> Answer:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.requests.append(recorded)
            return self._script.queue.popleft() if self._script.queue else self._script.default

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        """Wait until `count` requests arrived; return them (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"{len(self.requests)} requests arrived, expected {count}")

    def __enter__(self) -> LoopbackTarget:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open.set()  # held requests end, so the server's threads can
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------------- SOAP building blocks

TASK_WSDL = (Path(__file__).parent / "task_service.wsdl").read_bytes()
"""An ASMX-style service (ReceiveTask: token, requestId, xmlDoc) and a document/literal one
(Task); the address is filled in with the target's URL when served."""


def soap_envelope(*children: etree._Element) -> bytes:
    """A SOAP 1.1 envelope whose body holds `children`."""
    envelope = etree.Element(f"{{{SOAP11}}}Envelope", nsmap={"soap": SOAP11})
    body = etree.SubElement(envelope, f"{{{SOAP11}}}Body")
    for child in children:
        body.append(child)
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def soap_result(operation: str, result: str) -> bytes:
    """The answer of an ASMX-style operation: <OpResponse><OpResult>text</OpResult>."""
    response = etree.Element(f"{{{TEMPURI}}}{operation}Response", nsmap={None: TEMPURI})
    etree.SubElement(response, f"{{{TEMPURI}}}{operation}Result").text = result
    return soap_envelope(response)


def soap_fault(code: str, message: str) -> bytes:
    """A SOAP 1.1 fault, e.g. code 'soap:Client' or 'soap:Server'."""
    fault = etree.Element(f"{{{SOAP11}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = message
    return soap_envelope(fault)


def soap_body_child(recorded: Recorded) -> etree._Element:
    """The first element in a recorded SOAP request's body."""
    root = etree.fromstring(recorded.body)
    body = root.find(f"{{{SOAP11}}}Body")
    assert body is not None, recorded.body
    return body[0]


def soap_header_text(recorded: Recorded, tag: str) -> str | None:
    """The text of header element `tag` (Clark notation) in a recorded SOAP request."""
    root = etree.fromstring(recorded.body)
    found = root.find(f"{{{SOAP11}}}Header/{tag}")
    return None if found is None else found.text
