"""The app as operators and integrators meet it: health, readiness, metrics, OpenAPI, CLI, serve."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import pytest
import schemathesis
from amqp_proxy import AmqpProxy
from broker_support import RABBITMQ_URL, require_rabbitmq
from hub_harness import (
    BACKENDS,
    ECO_KEY,
    SECRETS,
    TEST_SYSTEMS,
    RunningHub,
    require_backend,
    running_hub,
    sample,
)
from hypothesis import HealthCheck, given, settings
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families
from tcp_relay import TcpRelay
from typer.testing import CliRunner

import bus
from adapters.errors import AdapterConfigError
from hub.cli import app as cli
from hub.systems import load_systems


@pytest.mark.parametrize("backend", BACKENDS)
def test_health_ready_metrics_and_docs(tmp_path: Path, backend: str) -> None:
    with running_hub(tmp_path, backend) as hub:
        health = hub.client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "alive"
        ready = hub.client.get("/ready")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        # The test systems' eco-env task feedback has no taker: reported, the hub still ready.
        (misconfigured,) = body.pop("misconfigured")
        assert "'task_feedback' of system 'eco-env-penalty'" in misconfigured
        # No worker runs: on RabbitMQ every target queue is named unread, the hub still ready.
        degraded = body.pop("degraded")
        expected = [hub.topology.target_queue(t.name) for t in hub.topology.targets]
        if backend == "rabbitmq":
            assert [queue for queue in expected if queue in " ".join(degraded)] == expected
        else:
            assert degraded == []
        assert body == {
            "ready": True,
            "checks": {"bus": True, "publisher": True, "topology": True, "mappings": True},
            "problems": [],
            "warnings": [],
        }
        metrics = hub.client.get("/metrics")
        assert metrics.status_code == 200
        assert "process_cpu_seconds_total" in metrics.text or "python_info" in metrics.text
        assert hub.client.get("/docs").status_code == 200
        # The topology was declared at start: every target queue exists and is empty.
        for target in hub.topology.targets:
            assert hub.depth(target.name) == 0


def test_ready_says_not_ready_while_the_publisher_cannot_publish(tmp_path: Path) -> None:
    # The admin connections (declares, queue counts) go on through the proxy while the
    # publisher's connection is held back by the broker, then cut and refused: the bus answers
    # reads, yet no push could be confirmed, and /ready must say so.
    require_backend("rabbitmq")
    with (
        contextlib.closing(AmqpProxy(RABBITMQ_URL)) as proxy,
        running_hub(tmp_path, "rabbitmq", settings_overrides={"amqp_url": proxy.url}) as hub,
    ):
        push = hub.client.post(
            "/systems/eco-env-penalty/xml/case_batch",
            content=sample("eco-env-penalty", "case_batch", "valid-batch"),
            headers={"X-Api-Key": ECO_KEY},
        )
        assert push.status_code == 200, push.text  # the publisher's connection is open
        assert _ready(hub)["checks"]["publisher"] is True

        assert proxy.block("jghub-publisher", "low on memory") == 1
        held = _ready_until(hub, lambda answer: not answer["ready"])
        assert held["checks"] == {
            "bus": True,
            "publisher": False,
            "topology": True,
            "mappings": True,
        }
        assert held["problems"] == [
            f"publisher: RabbitMQ at {_where(proxy.url)} holds publishes back: low on memory"
        ]
        proxy.unblock("jghub-publisher")
        assert _ready_until(hub, lambda answer: answer["ready"])["problems"] == []

        proxy.refuse("jghub-publisher")
        down = _ready_until(hub, lambda answer: not answer["ready"])
        assert down["checks"]["bus"] is True and down["checks"]["publisher"] is False
        (problem,) = down["problems"]
        assert problem.startswith(
            f"publisher: the publisher's connection to RabbitMQ at {_where(proxy.url)} is down"
        )
        proxy.allow("jghub-publisher")
        assert _ready_until(hub, lambda answer: answer["ready"])["checks"]["publisher"] is True


def _ready(hub: RunningHub) -> dict[str, Any]:
    answer = hub.client.get("/ready")
    assert answer.status_code == (200 if answer.json()["ready"] else 503)
    body: dict[str, Any] = answer.json()
    return body


def _ready_until(
    hub: RunningHub, wanted: Callable[[dict[str, Any]], bool], timeout: float = 60.0
) -> dict[str, Any]:
    """/ready's answer once `wanted` holds for it (the last answer when it never did)."""
    deadline = time.monotonic() + timeout
    answer = _ready(hub)
    while not wanted(answer) and time.monotonic() < deadline:
        time.sleep(0.1)
        answer = _ready(hub)
    assert wanted(answer), answer
    return answer


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def test_openapi_has_a_tag_per_system_and_answer_models(tmp_path: Path) -> None:
    with running_hub(tmp_path, "embedded") as hub:
        document = hub.client.get("/openapi.json").json()
    tags = {tag["name"] for tag in document["tags"]}
    assert {"grassroots-platform", "eco-env-penalty", "throttled-platform", "operations"} <= tags
    push = document["paths"]["/systems/eco-env-penalty/xml/case_batch"]["post"]
    assert push["tags"] == ["eco-env-penalty"]
    assert set(push["responses"]) >= {"200", "400", "401", "403", "413", "429", "503"}
    assert push["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/IngressResult"
    )
    assert "application/xml" in push["requestBody"]["content"]
    pull = document["paths"]["/systems/eco-env-penalty/outbox"]["get"]
    assert pull["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/OutboxPull"
    )
    assert "/systems/throttled-platform/outbox" not in document["paths"]
    for name in ("IngressResult", "RecordAnswer", "OutboxPull", "Problem", "ProblemError"):
        for field, spec in document["components"]["schemas"][name]["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"


def test_without_a_bus_the_hub_is_alive_not_ready_and_refuses_pushes(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    overrides = {"amqp_url": f"amqp://guest:guest@127.0.0.1:{port}/%2F"}
    with running_hub(tmp_path, "embedded", settings_overrides=overrides) as hub:
        assert hub.client.get("/health").status_code == 200
        ready = hub.client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["bus"] is False
        assert ready.json()["problems"][0].startswith("bus: ")
        push = hub.client.post(
            "/systems/eco-env-penalty/xml/case_batch",
            content=sample("eco-env-penalty", "case_batch", "valid-batch"),
            headers={"X-Api-Key": ECO_KEY},
        )
        assert push.status_code == 503
        assert push.headers["Retry-After"] == "5"
        # The channel answers XML, so its refusal is XML too.
        refusal = etree.fromstring(push.content)
        assert (refusal.tag, refusal.findtext("error")) == ("Refusal", "unavailable")
        assert "not connected to the bus" in (refusal.findtext("reason") or "")


def test_no_server_error_for_any_request_the_schema_allows(tmp_path: Path) -> None:
    """Schemathesis generates requests from the OpenAPI document; none may get a 5xx."""
    with running_hub(tmp_path, "embedded") as hub:
        raw = hub.client.get("/openapi.json").json()
        schema = schemathesis.openapi.from_dict(raw)
        seen: list[int] = []
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(
                max_examples=6,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def no_server_error(case: schemathesis.Case) -> None:
                response = case.call(base_url=hub.base_url, headers={"X-Api-Key": ECO_KEY})
                seen.append(response.status_code)
                assert response.status_code < 500, (case.method, case.path, response.text)

            no_server_error()
    # Requests got past the gate (some answers are the mapping's, not the gatekeeper's).
    assert any(status in (200, 400) for status in seen) and 403 in seen


def test_adapters_list_and_doc() -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["adapters", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    for name in ("rest_push", "xml_push", "outbox"):
        assert name in listed.output
    doc = runner.invoke(cli, ["adapters", "doc", "xml_push"], env={"COLUMNS": "200"})
    assert doc.exit_code == 0
    assert "default_charset" in doc.output and '"xml"' in doc.output
    assert "XML over HTTP push endpoint" in doc.output
    unknown = runner.invoke(cli, ["adapters", "doc", "pigeon"], env={"COLUMNS": "200"})
    assert unknown.exit_code == 2
    assert "no adapter named 'pigeon'" in unknown.output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(
    tmp_path: Path,
    systems: Path,
    port: int,
    *,
    variables: dict[str, str] | None = None,
    log: IO[bytes] | int = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """`jghub serve` at log level info on the embedded bus, or as `variables` (JGHUB_*) say;
    its log (stderr) goes to `log`."""
    env = {
        **os.environ,
        **SECRETS,
        "JGHUB_SYSTEMS_FILE": str(systems),
        "JGHUB_DATA_DIR": str(tmp_path / "var"),
        "JGHUB_NAMESPACE": "servetest",
        "JGHUB_AMQP_URL": "",
        **(variables or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--port", str(port), "--log-level", "info"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
    )


def _wait_ready(process: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "serve did not become ready"
        time.sleep(0.1)


@pytest.mark.slow
def test_serve_declares_the_topology_takes_pushes_and_stops_gracefully(tmp_path: Path) -> None:
    systems = tmp_path / "systems.yaml"
    systems.write_text(TEST_SYSTEMS, encoding="utf-8")
    port = _free_port()
    process = _serve(tmp_path, systems, port)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(process, base)
        answer = httpx.post(
            f"{base}/systems/eco-env-penalty/xml/case_batch",
            content=sample("eco-env-penalty", "case_batch", "valid-batch"),
            headers={"X-Api-Key": ECO_KEY},
            timeout=10,
        )
        assert answer.status_code == 200
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells
        # what stopped the process.
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
        log = process.communicate()[1].decode()
        assert "Application shutdown complete" in log, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    topology = load_systems(systems).topology("servetest")
    with bus.connect(f"sqlite:///{tmp_path / 'var' / 'bus.sqlite3'}") as broker:
        broker.declare(topology)
        assert broker.depth("grassroots-platform") == 3


IDLE_S = 5.0
REFRESH_S = 0.25


@pytest.mark.rabbitmq
def test_an_idle_serve_reads_its_statistics_on_one_connection_and_logs_nothing(
    tmp_path: Path,
) -> None:
    # Back-pressure reads the queue counts every REFRESH_S: IDLE_S / REFRESH_S reads while
    # nothing else happens. A relay in front of the real broker counts serve's connections.
    require_rabbitmq()
    systems = tmp_path / "systems.yaml"
    systems.write_text(TEST_SYSTEMS, encoding="utf-8")
    namespace = f"idle{uuid.uuid4().hex[:8]}"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_file = tmp_path / "serve.log"
    with TcpRelay(RABBITMQ_URL) as relay, log_file.open("wb") as log:
        variables = {
            "JGHUB_AMQP_URL": relay.url,
            "JGHUB_NAMESPACE": namespace,
            "JGHUB_BACKPRESSURE_REFRESH_S": str(REFRESH_S),
        }
        process = _serve(tmp_path, systems, port, variables=variables, log=log)
        try:
            _wait_ready(process, base)
            opened, sent = relay.accepted, relay.sent
            logged = len(log_file.read_bytes().splitlines())
            time.sleep(IDLE_S)
            idle_log = log_file.read_bytes().splitlines()[logged:]
            read_meanwhile = relay.sent - sent
            metrics = httpx.get(f"{base}/metrics", timeout=10)
            opened_meanwhile = relay.accepted - opened
        finally:
            process.terminate()
            process.wait(timeout=30)
    up = {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
    }
    assert up["jghub_broker_up"] == 1.0  # the scrape read the queues too
    assert read_meanwhile > 0  # back-pressure kept reading the queue counts
    # One reopen allowed, were the kept connection lost; a connection per read is dozens.
    reads = int(IDLE_S / REFRESH_S)
    assert opened_meanwhile <= 1, f"{opened_meanwhile} connections for {reads}+ reads"
    assert len(idle_log) <= 2, b"\n".join(idle_log).decode(errors="replace")[-3000:]
    with bus.connect(RABBITMQ_URL) as broker:
        broker.delete_topology(load_systems(systems).topology(namespace))


def test_serve_refuses_to_start_on_a_broken_configuration(tmp_path: Path) -> None:
    systems = tmp_path / "systems.yaml"
    broken = TEST_SYSTEMS.replace("adapter: xml_push", "adapter: xml_pushh", 1)
    systems.write_text(broken, encoding="utf-8")
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "xml_pushh" in text)
    process = _serve(tmp_path, systems, _free_port())
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 2
    text = errors.decode()
    assert "cannot start" in text and "no adapter named 'xml_pushh'" in text
    assert f"{systems}:{line}:" in text


def test_two_channels_on_one_url_are_refused(tmp_path: Path) -> None:
    clash = TEST_SYSTEMS.replace(
        "{adapter: xml_push, message_type: task_feedback, options: {answer: json}}",
        "{adapter: xml_push, message_type: task_feedback, options: "
        "{answer: json, path: /systems/eco-env-penalty/xml/case_batch}}",
    )
    assert clash != TEST_SYSTEMS
    shadowed = "POST /systems/eco-env-penalty/xml/case_batch is configured twice"
    with (
        pytest.raises(AdapterConfigError, match=shadowed),
        running_hub(tmp_path, "embedded", systems_text=clash),
    ):
        pass
