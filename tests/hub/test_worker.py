"""The worker end to end: real ingress → bus (embedded and RabbitMQ) → worker → loopback target."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from broker_support import RABBITMQ_URL, require_rabbitmq
from loopback_target import LoopbackTarget

import bus
from adapters.ingress import Ingress
from bus import Broker, Outgoing
from hub.settings import HubSettings
from hub.systems import SystemsConfig, load_systems
from hub.worker import Worker, WorkerError
from mappings import SYSTEMS_ROOT, SystemMappings, load_all
from standard.envelope import STRUCTURED_CONTENT_TYPE

EVENTS = (SYSTEMS_ROOT / "grassroots-platform/samples/event_report/valid-events.json").read_bytes()
REPOSITORY = Path(__file__).parents[2]


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
    brokers: list[Broker] = field(default_factory=list)
    stops: list[tuple[threading.Event, threading.Thread]] = field(default_factory=list)

    @property
    def settings(self) -> HubSettings:
        return HubSettings(
            amqp_url=self.url if self.url.startswith("amqp") else None,
            data_dir=self.data_dir,
            systems_file=self.systems_file,
            namespace=self.namespace,
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


@pytest.fixture(params=["embedded", "rabbitmq"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    if request.param == "rabbitmq":
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
    yield running
    running.stop_workers()
    if running.brokers and url.startswith("amqp"):
        config = load_systems(running.systems_file)
        running.brokers[0].delete_topology(config.topology(running.namespace))
    for broker in running.brokers:
        broker.close()


@pytest.fixture
def target() -> Iterator[LoopbackTarget]:
    with LoopbackTarget() as running:
        yield running


def test_delivers_each_event_rendered_with_its_idempotency_key(
    hub: Hub, target: LoopbackTarget
) -> None:
    hub.configure(systems_yaml(target.url))
    ids = hub.push_events()
    hub.start_worker()
    got = target.wait_for(3)
    hub.wait(lambda: hub.brokers[0].depth("grassroots_platform") == 0)
    hub.stop_workers()
    bodies = [json.loads(r.body) for r in got]
    assert sorted(b["eventId"] for b in bodies) == sorted(
        e["eventId"] for e in json.loads(EVENTS)["data"]["events"]
    )
    assert all(r.header("Content-Type") == "application/json; charset=utf-8" for r in got)
    keys = [r.header("Idempotency-Key") for r in got]
    assert len(set(keys)) == 3 and all(k and len(k) == 64 for k in keys)
    assert hub.brokers[0].dead_letters("grassroots_platform") == []
    assert len(ids) == 3


def test_a_4xx_goes_to_the_dead_letters_at_once_with_status_and_body(
    hub: Hub, target: LoopbackTarget
) -> None:
    hub.configure(systems_yaml(target.url, attempts=3))
    target.always(422, '{"error":"事件不存在"}'.encode())
    ids = hub.push_events()
    hub.start_worker()
    broker = hub.brokers[0]
    hub.wait(lambda: len(broker.dead_letters("grassroots_platform")) == 3)
    dead = broker.dead_letters("grassroots_platform")
    assert sorted(d.message.id for d in dead) == sorted(ids)
    for letter in dead:
        assert "HTTP 422" in letter.reason and "事件不存在" in letter.reason
        (failure,) = letter.message.history
        assert failure.permanent and failure.stage == "deliver"
    assert len(target.requests) == 3  # one call each: a refusal is not retried


def test_5xx_is_retried_then_delivered_when_the_target_recovers(
    hub: Hub, target: LoopbackTarget
) -> None:
    # 2 in-process attempts per delivery; 4 failures send the first message(s) through the
    # delayed retry tiers before the target recovers.
    hub.configure(systems_yaml(target.url, attempts=2, tiers=[0.2, 0.3, 0.5]))
    target.answer(503, b"maintenance", times=4)
    hub.push_events()
    hub.start_worker()
    hub.wait(lambda: len({r.header("Idempotency-Key") for r in target.requests[4:]}) == 3)
    broker = hub.brokers[0]
    hub.wait(lambda: broker.depth("grassroots_platform") == 0)
    hub.stop_workers()
    assert broker.dead_letters("grassroots_platform") == []
    failed_keys = [r.header("Idempotency-Key") for r in target.requests[:4]]
    delivered_keys = [r.header("Idempotency-Key") for r in target.requests[4:]]
    # The retried message was delivered with the key it had on its failed attempts.
    assert set(failed_keys) <= set(delivered_keys)
    assert len(target.requests) == 7


def test_an_open_breaker_parks_messages_without_spending_their_tiers(
    hub: Hub, target: LoopbackTarget
) -> None:
    # One 0.2 s tier and a breaker that waits 1.5 s before its trial: a message the open
    # breaker refuses goes round its tier several times meanwhile. Were each refusal counted as
    # an attempt, it would reach the dead letters without the target ever seeing it. One
    # delivery at a time, so that no delivery already in flight reaches the target as it opens.
    hub.configure(
        systems_yaml(
            target.url,
            attempts=1,
            tiers=[0.2],
            breaker={"failures": 2, "cooldown_s": 1.5},
            concurrency=1,
        )
    )
    target.always(503, b"down")
    hub.push_events()
    hub.start_worker()
    broker = hub.brokers[0]
    hub.wait(lambda: len(target.requests) >= 2)  # two failures: the breaker is open
    hub.wait(lambda: len(target.requests) >= 3)  # its first trial, after the cool-down
    delivered: set[str | None] = set()

    def deliver(request: Any) -> bytes:
        delivered.add(request.header("Idempotency-Key"))
        return b'{"code":"0"}'

    target.always(200, build=deliver)

    def dead_keys() -> set[str]:
        return {d.message.idempotency_key for d in broker.dead_letters("grassroots_platform")}

    hub.wait(lambda: len(delivered | dead_keys()) == 3)
    hub.stop_workers()
    tried = {r.header("Idempotency-Key") for r in target.requests}
    assert len(tried) == 3  # every message reached the target
    for letter in broker.dead_letters("grassroots_platform"):
        # Dead only after its own attempts failed (1 in process x 2: the first and its tier).
        assert letter.message.idempotency_key not in delivered
        assert [f.attempt for f in letter.message.history] == [1, 2]
        assert all("HTTP 503" in f.reason for f in letter.message.history), letter.reason


def test_undecodable_messages_and_canonical_events(hub: Hub, target: LoopbackTarget) -> None:
    hub.configure(systems_yaml(target.url, render={"grassroots_event": "cloudevent"}))
    broker = hub.broker()
    junk = broker.publish(Outgoing("grassroots_event.330106.somebody", b"not an envelope"))
    hub.push_events()
    hub.start_worker()
    got = target.wait_for(3)
    hub.wait(lambda: len(broker.dead_letters("grassroots_platform")) == 1)
    (dead,) = broker.dead_letters("grassroots_platform")
    assert dead.message.id == junk and "not a canonical envelope" in dead.reason
    assert dead.message.history[-1].stage == "decode"
    # Rendered as `cloudevent`: the canonical CloudEvent goes out.
    event = json.loads(got[0].body)
    assert event["specversion"] == "1.0" and event["type"] == "gov.supervision.grassroots_event.v1"
    assert got[0].header("Content-Type") == STRUCTURED_CONTENT_TYPE


def test_a_dataset_without_a_render_entry_is_dead_lettered(
    hub: Hub, target: LoopbackTarget
) -> None:
    # A wildcard route lets in a dataset the render table does not list (a literal one is
    # refused when the file is loaded): it must not go out in a form nobody agreed to.
    data = systems_yaml(target.url, render={"penalty_case": "cloudevent"})
    data["systems"][0]["routes"] = ["#"]
    hub.configure(data)
    broker = hub.broker()
    hub.push_events()
    hub.start_worker()
    hub.wait(lambda: len(broker.dead_letters("grassroots_platform")) == 3)
    for dead in broker.dead_letters("grassroots_platform"):
        assert dead.message.history[-1].stage == "render"
        assert "grassroots-platform has no rendering for dataset grassroots_event" in dead.reason
    assert target.requests == []


def test_unknown_target_is_refused_before_anything_runs(hub: Hub, target: LoopbackTarget) -> None:
    hub.configure(systems_yaml(target.url))
    with pytest.raises(WorkerError, match="no target system national"):
        Worker(hub.settings, targets=["national"], mapping_folders=folders())


def sigterm_worker(
    hub: Hub, ready: Callable[[], object], then: Callable[[], None] | None = None
) -> None:
    """Run `jghub worker` until `ready()` returns, SIGTERM it (then call `then`); it exits 0."""
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "jghub"), "worker", "--log-level", "warning"],
        env=hub.env,
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        ready()
        process.send_signal(signal.SIGTERM)
        if then is not None:
            then()
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output.decode(errors="replace")


@pytest.mark.slow
def test_sigterm_with_a_message_in_flight_loses_nothing(hub: Hub, target: LoopbackTarget) -> None:
    hub.configure(systems_yaml(target.url, concurrency=1))  # N in flight: see the test below
    target.answer(200, delay_s=1.5)  # the first delivery is in flight when SIGTERM arrives
    ids = hub.push_events()
    sigterm_worker(hub, lambda: target.wait_for(1, timeout=30))
    delivered_before = len(target.requests)
    assert 1 <= delivered_before < 3  # it stopped taking messages after the one in hand
    broker = hub.brokers[0]
    assert broker.dead_letters("grassroots_platform") == []
    # A new worker delivers what is left; every event arrives, none is lost.
    hub.start_worker()
    hub.wait(lambda: len({r.header("Idempotency-Key") for r in target.requests}) == 3)
    hub.wait(lambda: broker.depth("grassroots_platform") == 0)
    hub.stop_workers()
    keys = {r.header("Idempotency-Key") for r in target.requests}
    assert len(keys) == 3 and len(ids) == 3


def test_two_workers_compete_for_one_queue(hub: Hub, target: LoopbackTarget) -> None:
    hub.configure(systems_yaml(target.url))
    ids = hub.push_events()
    target.always(200, delay_s=0.2)  # slow enough that both workers get a share on RabbitMQ
    hub.start_worker()
    hub.start_worker()
    got = target.wait_for(3)
    hub.wait(lambda: hub.brokers[0].depth("grassroots_platform") == 0)
    hub.stop_workers()
    keys = [r.header("Idempotency-Key") for r in got]
    assert len(keys) == len(set(keys)) == len(ids) == 3  # each delivered once


def test_deliveries_to_one_target_overlap_up_to_its_concurrency(
    hub: Hub, target: LoopbackTarget
) -> None:
    hub.configure(systems_yaml(target.url, concurrency=4))
    ids = hub.push_events(numbered_events(12), 12)
    target.hold()  # requests wait at the target: only concurrent deliveries can pile up there
    hub.start_worker()
    target.wait_in_flight(4)
    target.release()
    got = target.wait_for(12)
    hub.wait(lambda: hub.brokers[0].depth("grassroots_platform") == 0)
    hub.stop_workers()
    assert target.max_in_flight == 4  # four at once, never more than configured
    keys = [r.header("Idempotency-Key") for r in got]
    assert len(keys) == len(set(keys)) == len(ids) == 12


def test_concurrent_deliveries_are_each_settled_exactly_once(
    hub: Hub, target: LoopbackTarget
) -> None:
    # 40 messages, 8 at a time: the first 5 requests are refused (dead letters), the next 5
    # fail transiently (retry tier, then delivered), the rest delivered at once.
    # The breaker stays out of it: five 503s at once could open it, whatever their order.
    breaker = {"failures": 100}
    hub.configure(systems_yaml(target.url, concurrency=8, attempts=1, tiers=[0.2], breaker=breaker))
    ids = hub.push_events(numbered_events(40), 40)
    target.answer(422, b"refused", times=5)
    target.answer(503, b"busy", times=5)
    hub.start_worker()
    broker = hub.brokers[0]
    target.wait_for(45, timeout=30)
    hub.wait(lambda: len(broker.dead_letters("grassroots_platform")) == 5)
    hub.wait(lambda: broker.depth("grassroots_platform") == 0)
    hub.stop_workers()
    # Stopped: anything held unacknowledged would be back in the queue now.
    assert broker.depth("grassroots_platform") == 0
    keys = [r.header("Idempotency-Key") for r in target.requests]
    refused, busy, accepted = keys[:5], keys[5:10], keys[10:]
    assert len(set(accepted)) == len(accepted) == 35  # each delivered once, none twice
    assert set(busy) <= set(accepted) and not set(refused) & set(accepted)
    dead = broker.dead_letters("grassroots_platform")
    assert sorted(d.message.idempotency_key for d in dead) == sorted(refused)
    assert len(ids) == 40 and len(target.requests) == 45


@pytest.mark.parametrize("how", ["stop event", "SIGTERM"])
def test_stop_finishes_the_deliveries_in_flight_and_gives_back_the_rest(
    hub: Hub, target: LoopbackTarget, how: str
) -> None:
    hub.configure(systems_yaml(target.url, concurrency=4))
    hub.push_events(numbered_events(12), 12)
    target.hold()
    try:
        # Stopped while four deliveries wait for the target's answer; answered after that.
        if how == "SIGTERM":
            sigterm_worker(hub, lambda: target.wait_in_flight(4, timeout=30), then=target.release)
        else:
            hub.start_worker()
            target.wait_in_flight(4)
            ((stop, _thread),) = hub.stops
            stop.set()
            target.release()
            hub.stop_workers()
    finally:
        target.release()
    assert len(target.requests) == 4  # nothing new was started after stop
    broker = hub.brokers[0]
    assert broker.depth("grassroots_platform") == 8  # the four were acked, the rest given back
    assert broker.dead_letters("grassroots_platform") == []
    hub.start_worker()
    hub.wait(lambda: len(target.requests) == 12)
    hub.wait(lambda: broker.depth("grassroots_platform") == 0)
    hub.stop_workers()
    keys = [r.header("Idempotency-Key") for r in target.requests]
    assert len(set(keys)) == 12  # the four finished before the stop were not delivered again
