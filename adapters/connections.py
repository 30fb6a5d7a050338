"""The HTTP connections `jghub serve` accepts: a time limit on request headers, and the
verified client certificate handed to the app.

uvicorn does neither itself; `hub_h11_protocol` gives the protocol class `serve` passes to
`uvicorn.Config(http=...)`.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from adapters.security import format_subject


class HubH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a time limit on request headers, and the verified client
    certificate in the ASGI scope.

    uvicorn limits only the idle time between requests (its keep-alive timer, which any byte
    received cancels), so a connection that sends part of a request line, or one header line
    now and then, holds its socket for ever. This one gives every request `header_timeout_s`
    from the connection (or the previous response) to the end of its headers, then closes the
    connection. uvicorn does not implement the ASGI TLS extension yet; this adds its
    `client_cert_name` (RFC 4514 subject of the verified client certificate) and `tls_version`
    to every request of a TLS connection, so mTLS can map a certificate to a system. Use a
    subclass from `hub_h11_protocol` as `uvicorn.Config(http=...)`.
    """

    header_timeout_s: ClassVar[float | None] = None
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        certificate = ssl_object.getpeercert()
        tls: dict[str, Any] = {
            "client_cert_name": format_subject(certificate["subject"]) if certificate else None,
            "tls_version": ssl_object.version(),
        }
        inner = self.app

        async def with_tls(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("type") in ("http", "websocket"):
                scope = {**scope, "extensions": {**scope.get("extensions", {}), "tls": tls}}
            await inner(scope, receive, send)

        self.app = with_tls

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and self.conn.their_state is not h11.IDLE:
            self._header_timer.cancel()  # the request's headers are complete
            self._header_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_headers()  # the next request's

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        if self.header_timeout_s is not None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()


def hub_h11_protocol(header_timeout_s: float | None) -> type[HubH11Protocol]:
    """`HubH11Protocol` closing connections whose request headers take over `header_timeout_s`
    seconds to arrive (None: no limit)."""
    return type("HubH11Protocol", (HubH11Protocol,), {"header_timeout_s": header_timeout_s})
