"""Bounded connections: a real `jghub serve` closes half-open and trickling connections, and
times out bodies that do not arrive, while /health and honest requests keep being answered.

The server runs with a low open-file limit (256), as on a host nobody tuned: 300 connections that
send part of a request line would hold every descriptor for ever without a header time limit.
Deadlines below only keep a broken hub from hanging the suite; what is asserted is that the
connections get closed and the answers come, not how fast.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq
from hub_harness import ECO_KEY, SECRETS, TEST_SYSTEMS, sample
from serve_process import hub_environment, serve_process

import bus
from hub.commands.serve import server_options
from hub.settings import HubSettings
from hub.systems import load_systems

OPEN_FILES = 256
HALF_OPEN = 300
HANG_GUARD_S = 90.0
PUSH = "/systems/eco-env-penalty/xml/case_batch"


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """`jghub serve` with 1 s header and body time limits and 256 open files: (base URL, port)."""
    require_rabbitmq()
    folder = tmp_path_factory.mktemp("connections")
    systems = folder / "systems.yaml"
    systems.write_text(TEST_SYSTEMS, encoding="utf-8")
    namespace = f"conn{uuid.uuid4().hex[:10]}"
    env = hub_environment(
        **SECRETS,
        JGHUB_SYSTEMS_FILE=str(systems),
        JGHUB_DATA_DIR=str(folder / "var"),
        JGHUB_NAMESPACE=namespace,
        JGHUB_AMQP_URL=RABBITMQ_URL,
        JGHUB_HEADER_TIMEOUT_S="1",
        JGHUB_BODY_TIMEOUT_S="1",
        JGHUB_MAX_HEADER_BYTES="16384",
    )
    with serve_process(env, open_files=OPEN_FILES) as base:
        yield base, int(base.rsplit(":", 1)[1])
    topology = load_systems(systems).topology(namespace)
    with bus.connect(RABBITMQ_URL) as cleaner:
        cleaner.declare(topology)
        cleaner.delete_topology(topology)


def closed_by_peer(sock: socket.socket) -> bool:
    """Wait (up to the hang guard) for the server to close `sock`; True when it did."""
    sock.settimeout(HANG_GUARD_S)
    try:
        while sock.recv(4096):
            pass  # an answer (408, 400) may come before the close
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_half_open_connections_are_closed_and_health_answers(serve: tuple[str, int]) -> None:
    base, port = serve
    half_open = []
    try:
        for _ in range(HALF_OPEN):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: hub\r\nX-Partial: ")
            half_open.append(sock)
        health = None
        deadline = time.monotonic() + HANG_GUARD_S
        while health is None and time.monotonic() < deadline:
            try:
                health = httpx.get(f"{base}/health", timeout=10)
            except httpx.TransportError:
                time.sleep(0.2)  # descriptors are freed as the half-open ones time out
        assert health is not None and health.status_code == 200
        assert all(closed_by_peer(sock) for sock in half_open)
    finally:
        for sock in half_open:
            sock.close()
    # And the server takes new connections as before.
    assert httpx.get(f"{base}/health", timeout=10).status_code == 200


def test_headers_trickled_in_are_cut_off(serve: tuple[str, int]) -> None:
    _, port = serve
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: hub\r\n")
        deadline = time.monotonic() + HANG_GUARD_S
        cut_off = False
        while not cut_off and time.monotonic() < deadline:
            try:
                sock.sendall(b"X-Slow: a\r\n")  # a header line every 0.2 s, never the end
            except (BrokenPipeError, ConnectionResetError):
                cut_off = True
                break
            sock.settimeout(0.2)
            try:
                cut_off = sock.recv(4096) == b""
            except TimeoutError:
                pass
            except ConnectionResetError:
                cut_off = True
        assert cut_off


def test_a_body_that_does_not_arrive_is_answered_408(serve: tuple[str, int]) -> None:
    base, port = serve
    body = sample("eco-env-penalty", "case_batch", "valid-batch")
    head = (
        f"POST {PUSH} HTTP/1.1\r\nHost: hub\r\nX-Api-Key: {ECO_KEY}\r\n"
        f"Content-Type: application/xml\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_S) as sock:
        sock.sendall(head + body[:100])  # then nothing more
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
            if b"\r\n\r\n" in answer and b"timeout" in answer:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within 1 s" in answer
    # The same body sent at once is taken.
    whole = httpx.post(
        f"{base}{PUSH}",
        content=body,
        headers={"X-Api-Key": ECO_KEY, "Content-Type": "application/xml"},
        timeout=30,
    )
    assert whole.status_code == 200, whole.text


def test_oversized_headers_are_refused(serve: tuple[str, int]) -> None:
    """Headers past max_header_bytes (16 KiB here) still incomplete are not buffered further."""
    base, port = serve
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_S) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: hub\r\nX-Big: " + b"a" * 20_000)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    fits = httpx.get(f"{base}/health", headers={"X-Big": "a" * 4_000}, timeout=10)
    assert fits.status_code == 200


def test_serve_passes_its_connection_settings_to_uvicorn(tmp_path: Path) -> None:
    settings = HubSettings(
        data_dir=tmp_path,
        limit_concurrency=7,
        keep_alive_timeout_s=3,
        max_header_bytes=8192,
        backlog=64,
        header_timeout_s=2,
    )
    options = server_options(settings)
    assert options["limit_concurrency"] == 7
    assert options["timeout_keep_alive"] == 3
    assert options["h11_max_incomplete_event_size"] == 8192
    assert options["backlog"] == 64
    assert options["proxy_headers"] is False  # the gatekeeper sees the real peer
    assert options["http"].header_timeout_s == 2
