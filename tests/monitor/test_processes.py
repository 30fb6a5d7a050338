"""`jghub serve` and two `jghub worker` processes at once: one /metrics counts them all.

Real processes on one data folder (embedded bus, journal and metrics folder shared): a pushed
batch is delivered by whichever worker takes each message; serve's /metrics shows the sum of
their deliveries, keeps it after they exit, and drops their live gauges; the journal written by
the workers answers serve's GET /messages/{id}.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub_harness import ECO_KEY, SECRETS, TEST_SYSTEMS, sample
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families

TARGET = "grassroots-platform"
DELIVERED = ("jghub_delivered_total", (("dataset", "penalty_case"), ("target", TARGET)))
BREAKER = ("jghub_breaker_state", (("target", TARGET),))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    systems = tmp_path / "systems.yaml"
    systems.write_text(TEST_SYSTEMS, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("JGHUB_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(SECRETS)
    env.update(
        JGHUB_SYSTEMS_FILE=str(systems),
        JGHUB_DATA_DIR=str(tmp_path / "var"),
        JGHUB_NAMESPACE="multiproc",
        JGHUB_JOURNAL__FLUSH_INTERVAL_S="0.05",
    )
    return env


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _jghub(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _collect(process: subprocess.Popen[bytes]) -> list[str]:
    """The process's stderr lines, read as they come (so its pipe never fills)."""
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line.decode("utf-8", "replace"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def _scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{base}/metrics", timeout=10)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


@pytest.mark.slow
def test_serve_and_two_workers_share_one_metrics_endpoint(
    environment: dict[str, str], processes: list[subprocess.Popen[bytes]]
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    serve = _jghub(environment, "serve", "--port", str(port), "--log-level", "warning")
    processes.append(serve)
    assert _eventually(lambda: httpx.get(f"{base}/ready", timeout=2).status_code == 200), (
        serve.poll(),
        serve.stderr.read().decode() if serve.poll() is not None and serve.stderr else "",
    )
    workers = [
        _jghub(environment, "worker", "--targets", "grassroots-platform", "--no-pollers")
        for _ in range(2)
    ]
    processes.extend(workers)
    logs = [_collect(worker) for worker in workers]
    # SIGTERM is the worker's to handle only once it runs; it says so in its log.
    assert _eventually(lambda: all("worker started" in "".join(log) for log in logs)), logs
    assert _eventually(lambda: _scrape(base).get(BREAKER) == 0.0), "no breaker gauge"

    answer = httpx.post(
        f"{base}/systems/eco-env-penalty/xml/case_batch",
        content=sample("eco-env-penalty", "case_batch", "valid-batch"),
        headers={"X-Api-Key": ECO_KEY},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    ids = etree.fromstring(answer.content).xpath("//record[@status='accepted']/message_id/text()")
    assert len(ids) == 3

    assert _eventually(lambda: _scrape(base).get(DELIVERED) == 3.0), _scrape(base).get(DELIVERED)
    seen = _scrape(base)
    received = (
        "jghub_payloads_received_total",
        (("message_type", "case_batch"), ("system", "eco-env-penalty")),
    )
    assert seen[received] == 1.0  # counted by serve

    def delivered_steps() -> bool:
        for message_id in ids:
            trace = httpx.get(
                f"{base}/messages/{message_id}", headers={"X-Api-Key": ECO_KEY}, timeout=5
            )
            if trace.status_code != 200:
                return False
            if "delivered" not in [s["step"] for s in trace.json()["steps"]]:
                return False
        return True

    assert _eventually(delivered_steps), "the workers' journal entries did not reach serve"

    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker, log in zip(workers, logs, strict=True):
        assert worker.wait(timeout=30) == 0, "".join(log)
    after = _scrape(base)
    assert after[DELIVERED] == 3.0  # the exited workers' counts stay in the sum
    assert BREAKER not in after  # their live gauges are gone
