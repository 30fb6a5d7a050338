"""A real Prometheus (Debian's `prometheus`) scrapes a real hub and loads the shipped alert rules.

The hub runs under uvicorn on loopback (tests/support/hub_harness.py) on the embedded bus; the
test pushes valid and invalid records through its real push channels, then starts `prometheus`
with the repo's monitor/prometheus/prometheus.yml pointed at that hub (1 s scrapes) and asks
Prometheus's HTTP API what it saw: the target is up, the build is known, the record counters
equal the hub's own answers, and every rule group of alerts.yml is loaded and evaluates cleanly.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from broker_support import skip_or_fail
from hub_harness import ECO_KEY, RunningHub, running_hub, sample, signed
from lxml import etree
from monitor_support import REPO
from prometheus_client.parser import text_string_to_metric_families

PROMETHEUS_DIR = REPO / "monitor" / "prometheus"
DEADLINE_S = 15.0  # for Prometheus to start, scrape and evaluate; scrapes come every second

Found = TypeVar("Found")
Counts = dict[tuple[str, str], float]  # (system, message_type) -> records


def _prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        skip_or_fail("the prometheus binary is not installed (apt-get install -y prometheus)")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _eventually(check: Callable[[], Found | None], what: str, timeout: float = DEADLINE_S) -> Found:
    """Poll `check` until it answers something truthy; fail saying `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout:.0f} s: {what}")
        time.sleep(0.2)


@dataclass
class RunningPrometheus:
    """A Prometheus process on a loopback port and a client for its HTTP API."""

    process: subprocess.Popen[bytes]
    client: httpx.Client
    log: Path

    def api(self, path: str, **params: str) -> Any:
        if self.process.poll() is not None:
            pytest.fail(f"prometheus exited {self.process.returncode}: {self.log.read_text()}")
        try:
            answer = self.client.get(f"/api/v1/{path}", params=params)
        except httpx.TransportError:
            return None  # not listening yet
        if answer.status_code == 503:
            return None  # listening, but its storage is not ready yet ("Service Unavailable")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (self.api("query", query=expression) or {}).get("result", [])
        return found


@dataclass
class Pushed:
    """What the test pushed, as the hub's receipts counted it."""

    accepted: Counts
    rejected: Counts


def _record_counts(hub: RunningHub) -> tuple[Counts, Counts]:
    """The hub's own /metrics: accepted and rejected records per (system, message type)."""
    answer = hub.client.get("/metrics")
    assert answer.status_code == 200, answer.text
    accepted: Counts = {}
    rejected: Counts = {}
    for family in text_string_to_metric_families(answer.text):
        into = {"jghub_records_accepted": accepted, "jghub_records_rejected": rejected}.get(
            family.name
        )
        for point in family.samples if into is not None else []:
            if point.name.endswith("_total"):
                key = (point.labels["system"], point.labels["message_type"])
                into[key] = into.get(key, 0.0) + point.value
    return accepted, rejected


def _push(hub: RunningHub) -> Pushed:
    """Push a valid and an invalid XML batch and an invalid JSON report; count their receipts."""
    pushed = Pushed({}, {})

    def note(system: str, message_type: str, accepted: int, rejected: int) -> None:
        key = (system, message_type)
        pushed.accepted[key] = pushed.accepted.get(key, 0.0) + accepted
        pushed.rejected[key] = pushed.rejected.get(key, 0.0) + rejected

    for name in ("valid-batch", "invalid-records"):
        answer = hub.client.post(
            "/systems/eco-env-penalty/xml/case_batch",
            content=sample("eco-env-penalty", "case_batch", name),
            headers={"X-Api-Key": ECO_KEY, "Content-Type": "application/xml; charset=gb2312"},
        )
        assert answer.status_code == 200, answer.text
        receipt = etree.fromstring(answer.content)
        accepted = int(receipt.findtext("accepted") or "")
        rejected = int(receipt.findtext("rejected") or "")
        note("eco-env-penalty", "case_batch", accepted, rejected)

    answer = hub.client.post(
        "/systems/grassroots-platform/rest/event_report",
        content=signed(sample("grassroots-platform", "event_report", "invalid-events")),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    receipt_json = answer.json()
    note("grassroots-platform", "event_report", receipt_json["accepted"], receipt_json["rejected"])

    # Some of each, or the comparison below could not fail for the right reason.
    assert sum(pushed.accepted.values()) > 0 and sum(pushed.rejected.values()) > 0
    return pushed


def _configuration(hub: RunningHub, folder: Path) -> Path:
    """The shipped prometheus.yml, scraping `hub` every second and loading the shipped rules."""
    shipped = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    shipped["global"].update(
        {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    )
    shipped["rule_files"] = [str(PROMETHEUS_DIR / name) for name in shipped["rule_files"]]
    # Targets come from file_sd files beside the configuration: the shipped jghub list with its
    # labels, pointed at this hub; the other jobs (workers, RabbitMQ) have nothing to scrape here.
    for job in shipped["scrape_configs"]:
        (discovery,) = job["file_sd_configs"]
        for name in discovery["files"]:
            groups = yaml.safe_load((PROMETHEUS_DIR / name).read_text(encoding="utf-8")) or []
            if job["job_name"] == "jghub":
                (group,) = groups
                group["targets"] = [urlsplit(hub.base_url).netloc]
            else:
                groups = []
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(yaml.safe_dump(groups), encoding="utf-8")
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(shipped), encoding="utf-8")
    return path


@contextmanager
def running_prometheus(configuration: Path, folder: Path) -> Iterator[RunningPrometheus]:
    """`prometheus` on a free loopback port, storing in `folder`; always terminated."""
    port = _free_port()
    log = folder / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                _prometheus_binary(),
                f"--config.file={configuration}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield RunningPrometheus(process, client, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningHub]:
    _prometheus_binary()  # skip before starting anything when there is no Prometheus
    with running_hub(tmp_path / "hub", "embedded", monkeypatch=monkeypatch) as running:
        yield running


def _by_system(result: list[dict[str, Any]]) -> Counts:
    return {
        (point["metric"]["system"], point["metric"]["message_type"]): float(point["value"][1])
        for point in result
    }


@pytest.mark.timeout(60)
def test_a_real_prometheus_scrapes_the_hub_and_loads_the_alert_rules(
    hub: RunningHub, tmp_path: Path
) -> None:
    before = _record_counts(hub)
    pushed = _push(hub)
    accepted, rejected = _record_counts(hub)
    for counted, was, sent in ((accepted, before[0], pushed.accepted),
                               (rejected, before[1], pushed.rejected)):  # fmt: skip
        for key, records in sent.items():
            assert counted.get(key, 0.0) - was.get(key, 0.0) == records, key

    folder = tmp_path / "prometheus"
    folder.mkdir()
    with running_prometheus(_configuration(hub, folder), folder) as prometheus:

        def target_up() -> list[dict[str, Any]]:
            targets = (prometheus.api("targets") or {}).get("activeTargets", [])
            return [t for t in targets if t["labels"]["job"] == "jghub" and t["health"] == "up"]

        (target,) = _eventually(target_up, "the jghub target is not up in /api/v1/targets")
        assert target["scrapeUrl"] == f"{hub.base_url}/metrics"
        assert target["lastError"] == ""

        (up,) = _eventually(lambda: prometheus.query('up{job="jghub"} == 1'), "up is not 1")
        assert up["metric"]["instance"] == urlsplit(hub.base_url).netloc
        assert up["metric"]["deployment"] == "province"  # the shipped static label

        (build,) = prometheus.query('jghub_build_info{job="jghub"}')
        assert float(build["value"][1]) == 1.0
        assert build["metric"]["version"] and build["metric"]["python"]

        # Nothing is pushed any more: what Prometheus scraped is what the hub counted.
        seen_accepted = _by_system(
            prometheus.query(
                'sum by (system, message_type) (jghub_records_accepted_total{job="jghub"})'
            )
        )
        seen_rejected = _by_system(
            prometheus.query(
                'sum by (system, message_type) (jghub_records_rejected_total{job="jghub"})'
            )
        )
        assert seen_accepted == accepted
        assert seen_rejected == rejected

        shipped = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8"))
        expected = {g["name"]: len(g["rules"]) for g in shipped["groups"]}

        def rules_evaluated() -> list[dict[str, Any]]:
            groups: list[dict[str, Any]] = (prometheus.api("rules") or {}).get("groups", [])
            every = [rule for group in groups for rule in group["rules"]]
            done = every and all(rule["health"] != "unknown" for rule in every)
            return groups if done else []

        groups = _eventually(rules_evaluated, "the rules were not all evaluated")
        assert {g["name"]: len(g["rules"]) for g in groups} == expected
        assert all(g["file"] == str(PROMETHEUS_DIR / "alerts.yml") for g in groups)
        broken = [
            (rule["name"], rule.get("lastError")) for g in groups for rule in g["rules"]
            if rule["health"] != "ok"
        ]  # fmt: skip
        assert broken == []
