"""A bus, the real ingress and workers in threads, for the tests of the worker and of egress.

A test module declares the fixture it needs:

    @pytest.fixture(params=["embedded", "rabbitmq"])
    def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
        with open_hub(request.param, tmp_path) as running:
            yield running
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from broker_support import RABBITMQ_URL, require_rabbitmq

import bus
from adapters.ingress import Ingress
from bus import Broker
from hub.settings import HubSettings
from hub.systems import SystemsConfig, load_systems
from hub.worker import Worker
from mappings import SYSTEMS_ROOT, SystemMappings, load_all

EVENTS = (SYSTEMS_ROOT / "grassroots-platform/samples/event_report/valid-events.json").read_bytes()


@functools.cache
def folders() -> dict[str, SystemMappings]:
    """The shipped mapping folders, compiled once for the whole module."""
    return load_all()


def systems_yaml(
    target_url: str,
    *,
    render: dict[str, str] | None = None,
    tiers: list[float] | None = None,
    attempts: int = 2,
    breaker: dict[str, Any] | None = None,
    concurrency: int | None = None,
) -> dict[str, Any]:
    """The grassroots platform pushes events and gets their disposal feedback over REST."""
    options: dict[str, Any] = {
        "url": target_url,
        "timeout_s": 5,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.02,
    }
    if breaker is not None:
        options["breaker"] = breaker
    outbound: dict[str, Any] = {
        "adapter": "rest_sender",
        "render": {"grassroots_event": "event_feedback"} if render is None else render,
        "options": options,
    }
    if concurrency is not None:
        outbound["concurrency"] = concurrency
    return {
        "systems": [
            {
                "id": "grassroots-platform",
                "name_zh": "基层治理四平台",
                "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"},
                "outbound": outbound,
                "routes": ["grassroots_event.#"],
                "retry": {
                    "in_process_attempts": attempts,
                    "tiers": [0.2, 0.3] if tiers is None else tiers,
                },
            }
        ]
    }


def numbered_events(count: int) -> bytes:
    """`count` distinct grassroots events: the sample's first, numbered 0 to count - 1."""
    document = json.loads(EVENTS)
    model = document["data"]["events"][0]
    document["data"]["events"] = [
        dict(model, eventId=f"SJ33010620260301{n:04d}") for n in range(count)
    ]
    document["data"]["total"] = count
    return json.dumps(document, ensure_ascii=False).encode()


@dataclass
class Hub:
    """A bus (one namespace), the real ingress to publish with, and workers to run."""

    url: str
    namespace: str
    data_dir: Path
    systems_file: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    """Further settings of its workers (e.g. database_url, centre_scan_s)."""
    brokers: list[Broker] = field(default_factory=list)
    stops: list[tuple[threading.Event, threading.Thread]] = field(default_factory=list)

    @property
    def settings(self) -> HubSettings:
        return HubSettings(
            amqp_url=self.url if self.url.startswith("amqp") else None,
            data_dir=self.data_dir,
            systems_file=self.systems_file,
            namespace=self.namespace,
            **self.overrides,
        )

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, JGHUB_DATA_DIR=str(self.data_dir))
        env["JGHUB_NAMESPACE"] = self.namespace
        env["JGHUB_SYSTEMS_FILE"] = str(self.systems_file)
        if self.url.startswith("amqp"):
            env["JGHUB_AMQP_URL"] = self.url
        return env

    def configure(self, data: dict[str, Any]) -> SystemsConfig:
        self.systems_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        return load_systems(self.systems_file)

    def broker(self) -> Broker:
        opened = bus.connect(self.settings.bus_url)
        config = load_systems(self.systems_file)
        opened.declare(config.topology(self.namespace))
        self.brokers.append(opened)
        return opened

    def push_events(self, payload: bytes = EVENTS, count: int = 3) -> list[str]:
        """Publish grassroots events (the sample's) as the REST push would; their message ids."""
        config = load_systems(self.systems_file)
        mappings = config.bind_mappings(folders())
        result = Ingress(self.broker(), mappings).accept(
            "grassroots-platform", "event_report", payload
        )
        assert result.accepted == count, result
        return [r.message_id for r in result.records if r.message_id]

    def start_worker(self, **options: Any) -> Worker:
        worker = Worker(self.settings, mapping_folders=folders(), **options)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        self.stops.append((stop, thread))
        return worker

    def stop_workers(self) -> None:
        for stop, thread in self.stops:
            stop.set()
            thread.join(timeout=30)
            assert not thread.is_alive(), "the worker did not stop"
        self.stops.clear()

    def wait(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError("condition not met in time")


@contextmanager
def open_hub(bus_kind: str, tmp_path: Path) -> Iterator[Hub]:
    """A Hub on the embedded bus in `tmp_path` or on RabbitMQ (a namespace of its own, deleted
    after); its workers stopped and its connections closed at the end."""
    if bus_kind == "rabbitmq":
        require_rabbitmq()
        url = RABBITMQ_URL
    else:
        url = f"sqlite:///{tmp_path / 'bus.sqlite3'}"
    running = Hub(
        url=url,
        namespace=f"test-worker-{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path,
        systems_file=tmp_path / "systems.yaml",
    )
    try:
        yield running
    finally:
        running.stop_workers()
        if running.brokers and url.startswith("amqp"):
            config = load_systems(running.systems_file)
            running.brokers[0].delete_topology(config.topology(running.namespace))
        for broker in running.brokers:
            broker.close()
