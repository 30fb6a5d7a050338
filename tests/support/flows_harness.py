"""The demo landscape running for real, for the end-to-end tests of the collaboration flows.

The hub serves on a loopback port, the worker delivers, every receiving department is a
simulator recording what arrives (its own REST, XML or SOAP service, or the outbox it pulls),
and every push goes through the pushing system's own protocol and credentials:

    @pytest.fixture(scope="module", params=["rabbitmq", "embedded"])
    def flows(request, tmp_path_factory) -> Iterator[Flows]:
        with running_flows(request.param, tmp_path_factory) as running:
            yield running
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hub_harness import require_backend
from store_support import embedded_store

from centre.ledger import Ledger
from hub.settings import HubSettings
from hub.simulators.answers import replaced
from hub.simulators.clients import PushOutcome, SystemClient
from hub.simulators.demo import DemoOptions, RunningLandscape, running_landscape
from hub.simulators.landscape import Landscape, build_landscape
from hub.simulators.server import free_port
from hub.simulators.targets import Delivered, FailurePlan
from hub.simulators.traffic import SystemTraffic, TrafficPayload
from mappings import SYSTEMS_ROOT, SystemMappings, load_all
from monitor.quarantine import Quarantine, QuarantineEntry, QuarantineQuery
from systems import SystemConfig

DEPARTMENTS = (
    "market-penalty",
    "housing-penalty",
    "health-penalty",
    "eco-env-penalty",
    "natres-penalty",
    "transport-penalty",
    "agri-penalty",
    "culture-penalty",
    "emergency-penalty",
    "hrss-penalty",
)
CENTRE = {"name": "浙江省综合行政执法指导办公室", "credit_code": "11330000MB1P273395"}
"""The collaboration centre's department: the dispatcher of the tasks it derives."""


@dataclass
class Flows:
    """The running landscape and what the tests reach into."""

    landscape: Landscape
    running: RunningLandscape
    mappings: dict[str, SystemMappings]
    data_dir: Path

    def ledger(self) -> Ledger:
        """The disposal ledger the hub and its worker keep (the embedded store of the run)."""
        return Ledger(embedded_store(self.data_dir))

    def quarantined(self) -> list[QuarantineEntry]:
        """What the hub's quarantine holds (in the embedded store of the run), oldest first."""
        return Quarantine(embedded_store(self.data_dir)).find(QuarantineQuery(limit=10_000))

    def system(self, system_id: str) -> SystemConfig:
        return self.landscape.systems.system(system_id)

    def received(self, system_id: str, text: str) -> list[Delivered]:
        """What `system_id`'s simulator (or outbox puller) accepted that mentions `text`."""
        source = self.running.targets.get(system_id) or self.running.pullers[system_id]
        wanted = text.encode()
        return [
            item
            for item in source.log.items()
            if item.outcome == "accepted" and wanted in item.body.replace(b"&#45;", b"-")
        ]

    def push(
        self, system_id: str, message_type: str, body: bytes, charset: str | None = None
    ) -> PushOutcome:
        """Push `body` through `system_id`'s own channel for `message_type`."""
        system = self.system(system_id)
        (channel,) = [c for c in system.inbound if c.message_type == message_type]
        client = SystemClient(system, self.running.hub_url)
        try:
            payload = TrafficPayload(
                system_id, message_type, body, charset, "sample", "test", 0, 0, None
            )
            return client.push(channel, payload)
        finally:
            client.close()

    def sample_with(self, system_id: str, message_type: str, values: dict[str, str]) -> bytes:
        """The system's valid sample of `message_type` with literal values replaced."""
        samples = SystemTraffic(self.mappings[system_id], message_type).samples()
        return replaced(next(p for p in samples if p.label.startswith("valid")), values).body

    def others_got(self, receiver: str, text: str) -> list[str]:
        """The departments other than `receiver` that received something mentioning `text`."""
        return [d for d in DEPARTMENTS if d != receiver and self.received(d, text)]


@contextmanager
def running_flows(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flows]:
    """The demo landscape on `backend` ("rabbitmq" or "embedded"), nobody misbehaving."""
    url = require_backend(backend)
    mappings = load_all(SYSTEMS_ROOT)
    landscape = build_landscape(mappings)
    previous = landscape.apply_environment()
    data_dir = tmp_path_factory.mktemp(f"flows-{backend}")
    settings = HubSettings(
        amqp_url=url or None,
        data_dir=data_dir,
        namespace=f"t{uuid.uuid4().hex[:12]}",
        mappings_root=SYSTEMS_ROOT,
        # Not the default 8080: other suites on the machine may be serving there.
        port=free_port(),
    )
    # Nobody misbehaves here: the flaky national endpoint has its own fault suite.
    options = DemoOptions(flaky=FailurePlan(), delete_topology=bool(url))
    try:
        with running_landscape(landscape, settings, options, mappings, 1) as running:
            yield Flows(landscape, running, mappings, data_dir)
    finally:
        landscape.restore_environment(previous)


@pytest.fixture(scope="module", params=["rabbitmq", "embedded"])
def flows(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flows]:
    """The running landscape, once per module and bus (import it into the test module)."""
    with running_flows(request.param, tmp_path_factory) as running:
        yield running


def wait_for(condition: Callable[[], object], what: str, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f}s for {what}")
        time.sleep(0.05)


def complaint_xml(
    case_no: str, scene: str, *, area: str = "330106", updated: str = "2026-03-01T10:00:00"
) -> bytes:
    """One accepted complaint as the complaint platform pushes it, changed at `updated`."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<complaints batchNo="2026030100001" sentAt="2026-03-01T11:00:00">
  <complaint action="new" seq="1">
    <caseNo>{case_no}</caseNo>
    <type>投诉</type>
    <channel>12345</channel>
    <scene>{scene}</scene>
    <title>测试投诉 {case_no}</title>
    <content>投诉人反映的问题需要相关部门核查处理。</content>
    <anonymous>Y</anonymous>
    <target><name>杭州某某有限公司</name></target>
    <area>{area}</area>
    <receivedAt>2026-03-01T09:00:00</receivedAt>
    <acceptedAt>2026-03-01T10:00:00</acceptedAt>
    <status>20</status>
    <updatedAt>{updated}</updatedAt>
  </complaint>
</complaints>
""".encode()
