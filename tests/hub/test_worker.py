"""The worker end to end: real ingress → bus (embedded and RabbitMQ) → worker → loopback target.

What happens to one message (render, deliver, settle) is tested in tests/adapters/test_egress.py;
here: the processes, threads, signals, competing workers and concurrency.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loopback_target import LoopbackTarget
from worker_harness import Hub, folders, numbered_events, open_hub, systems_yaml

from hub.worker import Worker, WorkerError
from monitor.metrics import BREAKER_STATE, HUB_REGISTRY
from monitor.observer import Observer

REPOSITORY = Path(__file__).parents[2]


@pytest.fixture(params=["embedded", "rabbitmq"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    with open_hub(request.param, tmp_path) as running:
        yield running


@pytest.fixture
def target() -> Iterator[LoopbackTarget]:
    with LoopbackTarget() as running:
        yield running


def test_unknown_target_is_refused_before_anything_runs(hub: Hub, target: LoopbackTarget) -> None:
    hub.configure(systems_yaml(target.url))
    with pytest.raises(WorkerError, match="no target system national"):
        Worker(hub.settings, targets=["national"], mapping_folders=folders())


def test_a_worker_takes_a_target_by_its_id_or_the_name_it_had_with_underscores(
    hub: Hub, target: LoopbackTarget
) -> None:
    hub.configure(systems_yaml(target.url))
    for spelt in ("grassroots-platform", "grassroots_platform"):
        worker = Worker(
            hub.settings, targets=[spelt], mapping_folders=folders(), observer=Observer()
        )
        assert [system.id for system in worker.selected] == ["grassroots-platform"]
        worker.store.close()


def test_a_worker_starts_its_targets_series_at_zero(hub: Hub, target: LoopbackTarget) -> None:
    """Before its first message each breaker it runs says closed and each of its targets'
    counters is there at 0, so rate() and increase() see the first event."""
    hub.configure(systems_yaml(target.url, tiers=[0.1, 0.2]))
    for name in ("grassroots-platform", "national"):
        with contextlib.suppress(KeyError):
            BREAKER_STATE.remove(name)
    # An observer without a journal: the worker is built, not run, so only its store to close.
    worker = Worker(hub.settings, mapping_folders=folders(), observer=Observer())
    for system in worker.selected:
        state = HUB_REGISTRY.get_sample_value("jghub_breaker_state", {"target": system.id})
        assert state == 0, system.id
        for tier in ("0", "1"):
            retried = {"target": system.id, "tier": tier}
            assert HUB_REGISTRY.get_sample_value("jghub_retried_total", retried) is not None
    worker.store.close()


def sigterm_worker(
    hub: Hub,
    ready: Callable[[], object],
    then: Callable[[], None] | None = None,
    *,
    log_level: str = "warning",
) -> list[str]:
    """Run `jghub worker` until `ready()` returns, SIGTERM it (then call `then`); it exits 0.

    Returns its log, line by line."""
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "jghub"), "worker", "--log-level", log_level],
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
    log = output.decode(errors="replace")
    assert process.returncode == 0, log
    return log.splitlines()


@pytest.mark.slow
def test_sigterm_with_a_message_in_flight_loses_nothing(hub: Hub, target: LoopbackTarget) -> None:
    hub.configure(systems_yaml(target.url, concurrency=1))  # N in flight: see the test below
    target.answer(200, delay_s=1.5)  # the first delivery is in flight when SIGTERM arrives
    ids = hub.push_events()
    sigterm_worker(hub, lambda: target.wait_for(1, timeout=30))
    delivered_before = len(target.requests)
    assert 1 <= delivered_before < 3  # it stopped taking messages after the one in hand
    broker = hub.brokers[0]
    assert broker.dead_letters("grassroots-platform") == []
    # A new worker delivers what is left; every event arrives, none is lost.
    hub.start_worker()
    hub.wait(lambda: len({r.header("Idempotency-Key") for r in target.requests}) == 3)
    hub.wait(lambda: broker.depth("grassroots-platform") == 0)
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
    hub.wait(lambda: hub.brokers[0].depth("grassroots-platform") == 0)
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
    hub.wait(lambda: hub.brokers[0].depth("grassroots-platform") == 0)
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
    hub.wait(lambda: len(broker.dead_letters("grassroots-platform")) == 5)
    hub.wait(lambda: broker.depth("grassroots-platform") == 0)
    hub.stop_workers()
    # Stopped: anything held unacknowledged would be back in the queue now.
    assert broker.depth("grassroots-platform") == 0
    keys = [r.header("Idempotency-Key") for r in target.requests]
    refused, busy, accepted = keys[:5], keys[5:10], keys[10:]
    assert len(set(accepted)) == len(accepted) == 35  # each delivered once, none twice
    assert set(busy) <= set(accepted) and not set(refused) & set(accepted)
    dead = broker.dead_letters("grassroots-platform")
    assert sorted(d.message.idempotency_key for d in dead) == sorted(refused)
    assert len(ids) == 40 and len(target.requests) == 45


def test_the_worker_logs_state_changes_not_every_message(hub: Hub, target: LoopbackTarget) -> None:
    # 20 messages: 4 transient failures (retried), 5 refusals (dead letters), 15 deliveries.
    # At INFO the log says the worker started and stopped, and that the target dead-letters
    # messages; not each request, retry or dead letter.
    breaker = {"failures": 100}  # four 503s in a row must not open it
    hub.configure(systems_yaml(target.url, attempts=2, tiers=[0.2, 0.3], breaker=breaker))
    ids = hub.push_events(numbered_events(20), 20)
    target.answer(503, b"busy", times=4)
    target.answer(422, b"refused", times=5)
    broker = hub.brokers[0]

    def settled() -> None:
        target.wait_for(4 + 5 + 15, timeout=30)
        hub.wait(lambda: len(broker.dead_letters("grassroots-platform")) == 5)
        hub.wait(lambda: broker.depth("grassroots-platform") == 0)

    log = sigterm_worker(hub, settled, log_level="info")
    started = next(n for n, line in enumerate(log) if "worker started" in line)
    stopping = next(n for n, line in enumerate(log) if "SIGTERM" in line)
    # pika's lines are its connections' (state changes too); the rest is the hub's and httpx's.
    while_running = [line for line in log[started + 1 : stopping] if " pika." not in line]
    naming_a_message = [line for line in while_running if any(i in line for i in ids)]
    assert len(naming_a_message) == 1 and "WARNING" in naming_a_message[0], while_running
    assert "dead letter" in naming_a_message[0] and "HTTP 422" in naming_a_message[0]
    assert while_running == naming_a_message


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
    assert broker.depth("grassroots-platform") == 8  # the four were acked, the rest given back
    assert broker.dead_letters("grassroots-platform") == []
    hub.start_worker()
    hub.wait(lambda: len(target.requests) == 12)
    hub.wait(lambda: broker.depth("grassroots-platform") == 0)
    hub.stop_workers()
    keys = [r.header("Idempotency-Key") for r in target.requests]
    assert len(set(keys)) == 12  # the four finished before the stop were not delivered again
