"""A real hub for the adapter and app tests: uvicorn on a loopback port, on either bus backend.

    with running_hub(tmp_path, "embedded") as hub:
        answer = hub.client.post("/systems/eco-env-penalty/xml/case_batch", content=xml,
                                 headers={"X-Api-Key": ECO_KEY})
        messages = hub.drain("grassroots-platform", 3)

The test systems (TEST_SYSTEMS) use the shipped mapping folders:
  grassroots-platform  signed app key in the JSON body; REST push event_report; receives
                       penalty cases (outbox)
  eco-env-penalty      API key; XML push case_batch; receives grassroots events (outbox)
  throttled-platform   API key, the grassroots mapping, a 2 KiB body limit and a tiny rate limit
  complaint-platform   its token in X-Tsjb-Token; XML push with its own <ack> receipt
  housing-penalty      HTTP Basic; XML push (GBK) with its own <RESULT> receipt
  agri-penalty         Authorization: Bearer <key>; REST push of penalty cases
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from broker_support import RABBITMQ_URL, drain, require_rabbitmq
from fastapi import FastAPI

import bus
from adapters.security import RequestSigner, expected_sign
from bus import Broker, Message, Topology
from hub.app import HubRuntime, create_app, runtime_of
from hub.settings import HubSettings
from hub.simulators.server import free_port
from hub.systems import SystemsConfig, load_systems
from mappings import SYSTEMS_ROOT
from monitor.quarantine import QuarantineEntry, QuarantineQuery

BACKENDS = ["embedded", "rabbitmq"]

GRASSROOTS_SECRET = "grassroots-secret-for-tests"
ECO_KEY = "eco-env-key-for-tests"
THROTTLED_KEY = "throttled-key-for-tests"
COMPLAINT_TOKEN = "complaint-token-for-tests"
HOUSING_USER, HOUSING_PASSWORD = "zjt-cf", "housing-password-for-tests"
AGRI_KEY = "agri-key-for-tests"
SECRETS = {
    "JGHUB_TEST_SECRET_GRASSROOTS": GRASSROOTS_SECRET,
    "JGHUB_TEST_KEY_ECO_ENV": ECO_KEY,
    "JGHUB_TEST_KEY_THROTTLED": THROTTLED_KEY,
    "JGHUB_TEST_KEY_COMPLAINT": COMPLAINT_TOKEN,
    "JGHUB_TEST_PASSWORD_HOUSING": HOUSING_PASSWORD,
    "JGHUB_TEST_KEY_AGRI": AGRI_KEY,
}
APP_KEY = "jczl-hub-01"
SHANGHAI = ZoneInfo("Asia/Shanghai")

TEST_SYSTEMS = """\
systems:
  - id: grassroots-platform
    name_zh: 基层治理四平台
    auth: {scheme: signed_app_key, key_env: JGHUB_TEST_SECRET_GRASSROOTS, app_key: jczl-hub-01}
    inbound:
      - {adapter: rest_push, message_type: event_report}
    outbound: {adapter: outbox, render: {penalty_case: cloudevent, penalty_publication: cloudevent}}
    routes: ["penalty_case.#", "penalty_publication.#"]
  - id: eco-env-penalty
    name_zh: 省生态环境厅环境行政处罚系统
    auth: {scheme: api_key, key_env: JGHUB_TEST_KEY_ECO_ENV}
    inbound:
      - {adapter: xml_push, message_type: case_batch, options: {default_charset: gb2312}}
      - {adapter: xml_push, message_type: task_feedback, options: {answer: json}}
    outbound: {adapter: outbox, render: {grassroots_event: cloudevent, complaint: cloudevent}}
    routes: ["grassroots_event.#", "complaint.#"]
  - id: throttled-platform
    name_zh: 限流测试平台
    mapping: grassroots-platform
    auth: {scheme: api_key, key_env: JGHUB_TEST_KEY_THROTTLED}
    inbound:
      - {adapter: rest_push, message_type: event_report}
    rate_limit: {per_second: 0.05, burst: 3}
    max_body_bytes: 2048
  - id: complaint-platform
    name_zh: 统一投诉举报平台
    auth: {scheme: api_key, key_env: JGHUB_TEST_KEY_COMPLAINT, header: X-Tsjb-Token}
    inbound:
      - adapter: xml_push
        message_type: complaint_push
        options:
          path: /ingest/complaint-platform/complaint_push
          receipt:
            root: ack
            item: item
            item_attributes: {seq: "{number}", accepted: "{accepted}", id: "{message_id}"}
  - id: housing-penalty
    name_zh: 省住房和城乡建设厅行政处罚系统
    auth: {scheme: basic, username: zjt-cf, key_env: JGHUB_TEST_PASSWORD_HOUSING}
    inbound:
      - adapter: xml_push
        message_type: publication_batch
        options:
          path: /ingest/housing-penalty/publication_batch
          receipt:
            root: RESULT
            root_attributes: {PCZT: "{code}", CGS: "{accepted}"}
            item: ROW
            item_attributes: {XH: "{number}", ZT: "{code}", MSG: "{message}"}
            codes: {accepted: "0", rejected: "1", failed: "1"}
            encoding: GBK
  - id: agri-penalty
    name_zh: 省农业农村厅行政处罚系统
    auth: {scheme: api_key, key_env: JGHUB_TEST_KEY_AGRI, header: Authorization}
    inbound:
      - {adapter: rest_push, message_type: case_records}
"""


def require_backend(backend: str) -> str:
    """The bus URL for `backend` tests; skip (fail under CI=true) when RabbitMQ is absent."""
    if backend == "rabbitmq":
        require_rabbitmq()
        return RABBITMQ_URL
    return ""


def sample(system: str, message_type: str, name: str) -> bytes:
    """A sample payload shipped with a mapping folder."""
    folder = SYSTEMS_ROOT / system / "samples" / message_type
    return next(folder.glob(f"{name}.*")).read_bytes()


def request_time(at: float | None = None) -> str:
    """A requestTime (yyyyMMddHHmmss, Asia/Shanghai) for `at` (default now)."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, SHANGHAI)
    return moment.strftime("%Y%m%d%H%M%S")


def signed(payload: bytes, *, secret: str = GRASSROOTS_SECRET, at: float | None = None) -> bytes:
    """A grassroots JSON payload with appKey, requestTime and sign replaced: signed afresh now
    (the hub lets each signature through once), or at the moment `at` (yyyyMMddHHmmss)."""
    document = json.loads(payload)
    if at is None:
        stamp, sign = RequestSigner(APP_KEY, secret).sign()
    else:
        stamp = request_time(at)
        sign = expected_sign(APP_KEY, secret, stamp)
    document.update(appKey=APP_KEY, requestTime=stamp, sign=sign)
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


@dataclass
class RunningHub:
    """A hub serving on a loopback port, and what a test needs to look behind it."""

    base_url: str
    app: FastAPI
    settings: HubSettings
    client: httpx.Client
    bus_url: str
    namespace: str
    topology: Topology
    brokers: list[Broker] = field(default_factory=list)

    @property
    def runtime(self) -> HubRuntime:
        return runtime_of(self.app)

    def broker(self) -> Broker:
        """A broker of the test's own on the same bus and namespace (to consume, inspect)."""
        opened = bus.connect(self.bus_url)
        opened.declare(self.topology)
        self.brokers.append(opened)
        return opened

    def drain(self, target: str, count: int, timeout: float = 15.0) -> list[Message]:
        """Consume and ack up to `count` messages of `target`, waiting at most `timeout`."""
        return drain(self.broker(), target, count, timeout)

    def depth(self, target: str) -> int:
        return self.brokers[0].depth(target) if self.brokers else self.broker().depth(target)

    def quarantined(self) -> list[QuarantineEntry]:
        """What the hub's quarantine (in its store) holds, oldest first, payloads included."""
        return quarantined(self.app)

    def kept(self, quarantine_id: str | None) -> QuarantineEntry:
        """The quarantine entry a sender was answered with (with its payload)."""
        assert quarantine_id, "the answer names no quarantine id"
        quarantine = self.runtime.quarantine
        assert quarantine is not None
        return quarantine.get(quarantine_id)


def quarantined(app: FastAPI) -> list[QuarantineEntry]:
    """What the quarantine of the hub `app` (in its store) holds, oldest first, with payloads."""
    quarantine = runtime_of(app).quarantine
    assert quarantine is not None
    listed = quarantine.find(QuarantineQuery(limit=10_000))
    return [quarantine.get(entry.id) for entry in listed]


@contextmanager
def serving(app: FastAPI, *, port: int | None = None, **options: Any) -> Iterator[str]:
    """Run `app` under uvicorn in a thread on `port` (default: a free loopback port); yield its
    base URL.

    `options` go to uvicorn.Config (TLS: ssl_certfile, ssl_ca_certs, http=...).
    """
    port = port or free_port()
    # Host and port, not a socket handed over: uvicorn then sets its own socket options, and
    # requests take about a millisecond instead of a delayed-ACK 40.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        scheme = "https" if options.get("ssl_certfile") else "http"
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def running_hub(
    tmp_path: Path,
    backend: str,
    *,
    systems_text: str = TEST_SYSTEMS,
    monkeypatch: pytest.MonkeyPatch | None = None,
    settings_overrides: dict[str, Any] | None = None,
    uvicorn_options: dict[str, Any] | None = None,
    client_options: dict[str, Any] | None = None,
) -> Iterator[RunningHub]:
    """A hub on `backend` ("embedded" or "rabbitmq") with `systems_text` as its configuration."""
    amqp_url = require_backend(backend)
    for name, value in SECRETS.items():
        if monkeypatch is not None:
            monkeypatch.setenv(name, value)
        else:
            os.environ[name] = value
    tmp_path.mkdir(parents=True, exist_ok=True)
    systems_file = tmp_path / "systems.yaml"
    systems_file.write_text(systems_text, encoding="utf-8")
    namespace = f"t{uuid.uuid4().hex[:12]}"
    chosen: dict[str, Any] = {
        "amqp_url": amqp_url or None,
        "data_dir": tmp_path / "var",
        "systems_file": systems_file,
        "namespace": namespace,
        # The port is known before the app is built: its WSDLs name their address under it.
        "port": free_port(),
    }
    settings = HubSettings(**{**chosen, **(settings_overrides or {})})
    config: SystemsConfig = load_systems(systems_file)
    app = create_app(settings)
    with (
        serving(app, port=settings.port, **(uvicorn_options or {})) as base_url,
        httpx.Client(base_url=base_url, timeout=30, **(client_options or {})) as client,
    ):
        hub = RunningHub(
            base_url=base_url,
            app=app,
            settings=settings,
            client=client,
            bus_url=settings.bus_url,
            namespace=settings.namespace,
            topology=config.topology(settings.namespace),
        )
        try:
            yield hub
        finally:
            for opened in hub.brokers:
                opened.close()
    if backend == "rabbitmq":
        # The namespace the hub ran in: a test may have given its own (settings_overrides),
        # whose queues were otherwise left on the broker.
        with bus.connect(settings.bus_url) as cleaner:
            cleaner.declare(config.topology(settings.namespace))
            cleaner.delete_topology(config.topology(settings.namespace))


@contextmanager
def republishing_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    """A module's hub on the backend `request.param` that publishes every push, however often
    the same samples are sent (its recognition of repeats is off; tests/adapters/test_repeats.py
    tests that)."""
    with running_hub(
        tmp_path_factory.mktemp(request.param),
        request.param,
        settings_overrides={"repeat_window_s": 0},
    ) as running:
        yield running
