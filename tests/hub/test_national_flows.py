"""End to end on the real RabbitMQ: what the departments report reaches the national system.

The hub runs as deployed in the demo landscape (`hub/simulators/landscape.yaml`): its app on a
loopback port, a worker delivering to the simulated national system, every department pushing
over its own protocol (SOAP with WSDL, signed REST, XML with Basic...) through the simulators'
clients, and the pull-only department read by the worker's poller from its simulated API.

1. Every department's penalty cases and inspections arrive at the national simulator in the
   national field set: each delivery, read back through the national 数据回流 mapping (which
   takes exactly the field set the hub sends), is the canonical record the department's own
   payload translates to, with the department's source code.
2. With a flaky national endpoint (30% 503, some answers held past the sender's timeout, and a
   few 422 refusals so that the dead letters are exercised too), every accepted message ends
   exactly once, delivered or dead-lettered with its reason, and the counts add up: in the hub's
   journal, at the national simulator and in the dead letters.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq

import bus
from hub.app import create_app
from hub.settings import HubSettings
from hub.simulators.clients import PushOutcome, SystemClient
from hub.simulators.landscape import Landscape, build_landscape
from hub.simulators.server import LoopbackServer, free_port
from hub.simulators.sources import SimulatedSource
from hub.simulators.targets import FailurePlan, SimulatedTarget
from hub.simulators.traffic import SystemTraffic
from hub.worker import Worker
from mappings import SYSTEMS_ROOT, SystemMappings, load_all
from monitor.journal import Journal, Step
from standard.envelope import Envelope
from systems import ChannelConfig, SystemConfig

NATIONAL = "national"
REPORTED = frozenset({"penalty_case", "inspection"})
"""The datasets the national system receives (its routes in the landscape)."""
RETURN_MAPPING = {"penalty_case": "penalty_return", "inspection": "inspection_return"}
SETTLE_TIMEOUT_S = 90.0

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.fixture(scope="module")
def mappings() -> dict[str, SystemMappings]:
    return load_all(SYSTEMS_ROOT)


@dataclass
class Line:
    """The running hub, the national simulator and the departments' clients."""

    landscape: Landscape
    settings: HubSettings
    broker: bus.Broker
    national: SimulatedTarget
    clients: dict[str, SystemClient]
    sources: dict[str, SimulatedSource]
    stop_hub: Callable[[], None]
    """Stops the worker and the app (so the journal is complete); safe to call twice."""


def reporting_channels(
    landscape: Landscape, mappings: dict[str, SystemMappings]
) -> list[tuple[SystemConfig, ChannelConfig]]:
    """Every department push channel whose records the national system receives."""
    found = []
    for system in landscape.systems.systems:
        for channel in system.inbound:
            if channel.adapter not in ("rest_push", "xml_push", "soap_push"):
                continue
            dataset = mappings[system.mapping_id].inbound_mapping(channel.message_type).dataset
            if dataset.name in REPORTED:
                found.append((system, channel))
    return found


@contextmanager
def running_line(
    tmp_path: Path, mappings: dict[str, SystemMappings], plan: FailurePlan, *, pollers: bool
) -> Iterator[Line]:
    """The hub on RabbitMQ in a namespace of its own, delivering only to the national system."""
    require_rabbitmq()
    landscape = build_landscape(mappings)
    previous = landscape.apply_environment()
    settings = HubSettings(
        amqp_url=RABBITMQ_URL,
        data_dir=tmp_path / "hub",
        namespace=f"jghub-test-national-{uuid.uuid4().hex[:8]}",
        mappings_root=SYSTEMS_ROOT,
        port=free_port(),  # known before the hub starts: its WSDLs name their address under it
    )
    settings.data_dir.mkdir(parents=True)
    topology = landscape.systems.topology(settings.namespace)
    with ExitStack() as stack:
        stack.callback(_restore, previous)
        broker = bus.connect(settings.bus_url)
        stack.callback(broker.close)
        broker.declare(topology)
        stack.callback(broker.delete_topology, topology)
        national = SimulatedTarget(landscape.systems.system(NATIONAL), plan)
        stack.enter_context(
            LoopbackServer(national.app, host=national.host, port=national.port, name="national")
        )
        sources: dict[str, SimulatedSource] = {}
        if pollers:
            for system in landscape.systems.systems:
                if any(channel.adapter == "rest_poller" for channel in system.inbound):
                    source = SimulatedSource(system, mappings[system.mapping_id], records=6)
                    stack.enter_context(
                        LoopbackServer(source.app, host=source.host, port=source.port)
                    )
                    sources[system.id] = source
        app_stack = stack.enter_context(ExitStack())
        hub = app_stack.enter_context(
            LoopbackServer(
                create_app(settings, systems=landscape.systems), port=settings.port, name="hub"
            )
        )
        stop = threading.Event()
        worker = Worker(settings, systems=landscape.systems, targets=[NATIONAL], pollers=pollers)
        thread = threading.Thread(target=worker.run, args=(stop,), name="worker", daemon=True)
        thread.start()

        def stop_hub() -> None:
            stop.set()
            thread.join(timeout=30)
            app_stack.close()

        stack.callback(stop_hub)
        clients = {
            system.id: stack.enter_context(_closing(SystemClient(system, hub.url)))
            for system, _ in reporting_channels(landscape, mappings)
        }
        yield Line(landscape, settings, broker, national, clients, sources, stop_hub)


@contextmanager
def _closing(client: SystemClient) -> Iterator[SystemClient]:
    try:
        yield client
    finally:
        client.close()


def _restore(previous: dict[str, str | None]) -> None:
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass
class Pushed:
    """What one department pushed and what the hub made of it."""

    system: str
    outcome: PushOutcome
    envelopes: list[Envelope]
    """The payload's accepted records, as the department's mapping translates them here."""


def push_batches(
    line: Line, mappings: dict[str, SystemMappings], records: int, *, seed: int = 7
) -> list[Pushed]:
    """One valid batch of `records` records from every reporting channel."""
    pushed = []
    for system, channel in reporting_channels(line.landscape, mappings):
        mapping = mappings[system.mapping_id]
        payload = SystemTraffic(mapping, channel.message_type, seed=seed).batch(records)
        translation = mapping.translate(channel.message_type, payload.body, charset=payload.charset)
        assert not translation.errors, (system.id, translation.errors)
        outcome = line.clients[system.id].push(channel, payload)
        assert outcome.accepted == len(translation.envelopes), (system.id, outcome)
        assert outcome.rejected == outcome.failed == 0, (system.id, outcome)
        pushed.append(Pushed(system.id, outcome, list(translation.envelopes)))
    return pushed


def wait_for(condition: Any, timeout: float = SETTLE_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return bool(condition())


def _reports(
    mappings: dict[str, SystemMappings], source: SimulatedSource, message_type: str
) -> bool:
    """Whether a pull-only source's message type carries records national receives."""
    dataset = mappings[source.system.mapping_id].inbound_mapping(message_type).dataset
    return dataset.name in REPORTED


def national_page(body: bytes) -> bytes:
    """One delivery as the national 数据回流 channel returns records: a page of them."""
    return json.dumps({"code": "0", "total": 1, "data": [json.loads(body)]}).encode()


def test_every_departments_records_reach_national_in_the_national_format(
    tmp_path: Path, mappings: dict[str, SystemMappings]
) -> None:
    with running_line(tmp_path, mappings, FailurePlan(), pollers=True) as line:
        pushed = push_batches(line, mappings, records=4)
        expected = {e.idempotencykey: (p.system, e) for p in pushed for e in p.envelopes}
        from_pollers = sum(
            record.valid
            for source in line.sources.values()
            for message_type, feed in source.feeds.items()
            if _reports(mappings, source, message_type)
            for record in feed.records
        )
        assert from_pollers > 0, "the pull-only department has no records for national"
        wanted = len(expected) + from_pollers
        assert wait_for(lambda: len(line.national.log.accepted_keys()) >= wanted), (
            f"{len(line.national.log.accepted_keys())} of {wanted} records reached national"
        )
        deliveries = [d for d in line.national.log.items() if d.outcome == "accepted"]

    national = mappings[NATIONAL]
    sources = {m.id: m.spec.source for m in mappings.values()}
    seen_sources: Counter[str] = Counter()
    for delivery in deliveries:
        assert delivery.content_type.startswith("application/json"), delivery.content_type
        record = json.loads(delivery.body)
        seen_sources[record["cd_source"]] += 1
        assert delivery.idempotency_key is not None
        if delivery.idempotency_key not in expected:
            continue  # read by the poller: its records are counted above
        system, original = expected.pop(delivery.idempotency_key)
        dataset = original.spec.name
        translation = national.translate(RETURN_MAPPING[dataset], national_page(delivery.body))
        assert not translation.errors, (system, translation.errors)
        [back] = translation.envelopes
        # The 数据回流 channel speaks for the national system; the department stays in cd_source.
        assert record["cd_source"] == original.source == sources[system], system
        assert (back.spec.name, back.operation, back.subject) == (
            dataset,
            original.operation,
            original.subject,
        )
        differing = {
            k
            for k in back.data.keys() | original.data.keys()
            if back.data.get(k) != original.data.get(k)
        }
        if line.landscape.systems.system(system).auth.scheme == "signed_app_key":
            # A signed body's requestTime is the report time; the client signs at sending.
            differing.discard("report_time")
        assert not differing, (
            system,
            {k: (back.data.get(k), original.data.get(k)) for k in differing},
        )
    assert not expected, f"never reached national: {sorted(s for s, _ in expected.values())}"
    departments = {system.id for system, _ in reporting_channels(line.landscape, mappings)}
    # The pull-only sources that report to national (not those feeding the reference lists).
    departments |= {
        source.system.id
        for source in line.sources.values()
        if any(_reports(mappings, source, message_type) for message_type in source.feeds)
    }
    assert set(seen_sources) == {sources[system] for system in departments}
    print(f"\nnational received {len(deliveries)} records by source: {dict(seen_sources)}")


def test_a_flaky_national_endpoint_ends_every_message_delivered_once_or_dead_lettered(
    tmp_path: Path, mappings: dict[str, SystemMappings]
) -> None:
    # 30% 503 and 4% held past the sender's 0.5 s timeout (transient: retried), and 5% 422 so
    # that some messages do end in the dead letters (permanent: refused content).
    plan = FailurePlan(error_share=0.3, timeout_share=0.04, reject_share=0.05, hold_s=0.8, seed=11)
    with running_line(tmp_path, mappings, plan, pollers=False) as line:
        pushed = push_batches(line, mappings, records=12)
        accepted = {mid for p in pushed for mid in p.outcome.message_ids}
        keys = {e.idempotencykey for p in pushed for e in p.envelopes}
        target = NATIONAL

        def settled() -> bool:
            dead = line.broker.dead_letters(target, limit=10_000)
            return len(
                line.national.log.accepted_keys() | {d.message.idempotency_key for d in dead}
            ) >= len(keys)

        assert wait_for(settled), "the national queue did not settle"
        assert wait_for(lambda: line.broker.depth(target) == 0, timeout=10)
        dead = line.broker.dead_letters(target, limit=10_000)
        line.stop_hub()
        store = line.settings.store()

    journal = Journal(store)
    try:
        endings: dict[str, list[Step]] = {}
        retried = 0
        for message_id in accepted:
            steps = [entry.step for entry in journal.trace(message_id)]
            endings[message_id] = [s for s in steps if s in (Step.DELIVERED, Step.DEAD_LETTERED)]
            retried += steps.count(Step.RETRIED)
        assert journal.verify().ok
    finally:
        journal.close()

    counts = line.national.log.counts()
    delivered = [m for m, ends in endings.items() if ends == [Step.DELIVERED]]
    dead_lettered = [m for m, ends in endings.items() if ends == [Step.DEAD_LETTERED]]
    print(
        f"\nflaky national: accepted {len(accepted)}, delivered {len(delivered)}, "
        f"dead-lettered {len(dead_lettered)}, retried {retried}; requests by outcome {counts}; "
        f"duplicates at national {line.national.log.duplicates()}"
    )
    # Each accepted message ended exactly once, one way or the other, in the hub's books...
    assert len(accepted) == len(keys) == len(delivered) + len(dead_lettered), endings
    # ...the target saw some of everything the plan makes it do, and the hub retried...
    assert counts.get("error", 0) > 0 and counts.get("timeout", 0) > 0, counts
    assert retried > 0 and dead_lettered
    # ...every delivery the hub counts arrived (idempotency keys let national drop repeats)...
    arrived = line.national.log.accepted_keys()
    assert len(arrived) >= len(delivered)
    assert arrived <= keys
    # ...and every dead letter is one the hub counts, with a reason naming the failure.
    assert sorted(d.message.id for d in dead) == sorted(dead_lettered)
    for letter in dead:
        assert letter.reason, letter
        assert any(word in letter.reason.lower() for word in ("422", "503", "timed out")), letter
