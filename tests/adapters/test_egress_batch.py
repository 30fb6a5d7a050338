"""Outbound batching end to end: ingress → bus (embedded and RabbitMQ) → a worker's batching
egress → the simulated national gateway's batch upload, which answers record by record."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fault_pipeline import case_batch, fault_systems
from serve_process import REPOSITORY, stop
from worker_harness import Hub, folders, open_hub

from adapters.ingress import Ingress
from bus import Outgoing
from hub.simulators.server import LoopbackServer, free_port
from hub.simulators.targets import FailurePlan, SimulatedTarget
from hub.systems import load_systems

BATCH_PATH = "/jgxw/api/v1/punish/batch"


@pytest.fixture(params=["embedded", "rabbitmq"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    with open_hub(request.param, tmp_path) as running:
        yield running


def batching_systems(port: int, *, max_records: int, max_wait_ms: int) -> dict[str, Any]:
    """eco-env-penalty pushes case batches (as in the fault tests); national takes their
    penalty cases in batches at its batch upload."""
    url = f"http://127.0.0.1:{port}"
    systems = fault_systems(f"{url}/jgxw/api/v1/punish", tiers=[0.2, 0.3, 0.5])
    national = next(s for s in systems["systems"] if s["id"] == "national")
    national["retry"]["in_process_attempts"] = 1
    outbound = national["outbound"]
    outbound["render"] = {"penalty_case": "penalty_record"}
    outbound["batch"] = {"max_records": max_records, "max_wait_ms": max_wait_ms}
    outbound["options"].update(
        batch_url=f"{url}{BATCH_PATH}",
        answer_check={"path": "code", "success": ["0"]},
        backoff_initial_s=0.01,
    )
    return systems


@pytest.fixture
def national(hub: Hub) -> Iterator[SimulatedTarget]:
    """The simulated national gateway, `hub` configured to batch to it (10 a batch, 300 ms)."""
    port = free_port()
    config = hub.configure(batching_systems(port, max_records=10, max_wait_ms=300))
    target = SimulatedTarget(config.system("national"))
    with LoopbackServer(target.app, port=port, name="national"):
        yield target


def push(hub: Hub, first: int, count: int, payload: bytes | None = None) -> list[str]:
    """Publish `count` penalty cases numbered from `first` as eco-env's push would."""
    mappings = load_systems(hub.systems_file).bind_mappings(folders())
    result = Ingress(hub.broker(), mappings).accept(
        "eco-env-penalty", "case_batch", payload or case_batch(first, count)
    )
    assert result.accepted == count, result
    return [r.message_id for r in result.records if r.message_id]


def records(target: SimulatedTarget, outcome: str = "accepted") -> list[dict[str, Any]]:
    """The records the batch upload answered with `outcome`, in the order they arrived."""
    return [
        json.loads(item.body)
        for item in target.log.items()
        if item.operation == BATCH_PATH and item.outcome == outcome
    ]


def test_a_refused_record_is_dead_lettered_alone_and_the_rest_acked(
    hub: Hub, national: SimulatedTarget
) -> None:
    national.set_plan(FailurePlan(refuse_containing="F-0000000003"))
    ids = push(hub, 0, 10)
    hub.start_worker()
    broker = hub.brokers[0]
    hub.wait(lambda: len(broker.dead_letters("national")) == 1)
    hub.wait(lambda: broker.depth("national") == 0 and len(records(national)) == 9)
    hub.stop_workers()
    (dead,) = broker.dead_letters("national")
    assert dead.message.id in ids
    assert "refused record" in dead.reason and "content refused" in dead.reason
    assert dead.message.history[-1].stage == "deliver"
    taken = records(national)
    assert all("F-0000000003" not in json.dumps(r, ensure_ascii=False) for r in taken)
    # One request carried them all, each record with its own idempotency key.
    assert len({r["hubKey"] for r in taken}) == 9
    requests = [i for i in national.log.items() if i.operation != BATCH_PATH]
    assert requests == []
    # Replayed alone once national takes it, the refused record goes in a batch of its own.
    national.set_plan(FailurePlan())
    assert broker.replay("national", ids=[dead.message.id]) == [dead.message.id]
    hub.start_worker()
    hub.wait(lambda: len(records(national)) == 10)
    hub.stop_workers()
    assert "F-0000000003" in json.dumps(records(national)[-1], ensure_ascii=False)
    assert broker.dead_letters("national") == []


def test_a_record_that_cannot_be_rendered_is_dead_lettered_alone(
    hub: Hub, national: SimulatedTarget
) -> None:
    (good, *_) = folders()["eco-env-penalty"].translate("case_batch", case_batch(0, 1)).envelopes
    # Its record keeps only its key: the envelope decodes, the record cannot be rendered.
    broken = good.model_copy(
        update={"id": "broken-1", "idempotencykey": "b" * 64, "data": {"penalty_id": good.subject}}
    )
    properties, body = broken.to_amqp()
    hub.broker().publish(
        Outgoing(
            routing_key="penalty_case.330100.eco-env-penalty",
            body=body,
            headers=properties["headers"],
            message_id=broken.id,
            idempotency_key=broken.idempotencykey,
        )
    )
    push(hub, 1, 3)
    hub.start_worker()
    broker = hub.brokers[0]
    hub.wait(lambda: len(records(national)) == 3 and len(broker.dead_letters("national")) == 1)
    hub.stop_workers()
    (dead,) = broker.dead_letters("national")
    assert dead.message.id == "broken-1"
    assert dead.message.history[-1].stage == "render"
    assert "cannot be rendered as penalty_record" in dead.reason


def test_max_wait_sends_a_batch_that_did_not_fill(hub: Hub, national: SimulatedTarget) -> None:
    push(hub, 0, 3)
    hub.start_worker()
    hub.wait(lambda: len(records(national)) == 3)
    hub.wait(lambda: hub.brokers[0].depth("national") == 0)
    hub.stop_workers()
    assert hub.brokers[0].dead_letters("national") == []


def test_a_503_retries_the_whole_batch_until_it_is_taken(
    hub: Hub, national: SimulatedTarget
) -> None:
    national.set_plan(FailurePlan(error_share=1.0))
    push(hub, 0, 5)
    hub.start_worker()
    hub.wait(lambda: national.log.counts().get("error", 0) >= 1)
    national.set_plan(FailurePlan())
    hub.wait(lambda: len(records(national)) == 5)
    hub.wait(lambda: hub.brokers[0].depth("national") == 0)
    hub.stop_workers()
    assert hub.brokers[0].dead_letters("national") == []
    assert len({r["hubKey"] for r in records(national)}) == 5


def test_a_batch_refused_whole_is_sent_again_one_record_a_request(
    hub: Hub, national: SimulatedTarget
) -> None:
    national.set_plan(FailurePlan(refuse_batches=True, refuse_containing="F-0000000002"))
    push(hub, 0, 4)
    hub.start_worker()
    broker = hub.brokers[0]
    hub.wait(lambda: len(broker.dead_letters("national")) == 1)
    hub.wait(lambda: broker.depth("national") == 0)
    hub.stop_workers()
    alone = [i for i in national.log.items() if i.operation == "/jgxw/api/v1/punish"]
    assert len(alone) == 4 and sum(i.outcome == "accepted" for i in alone) == 3
    (dead,) = broker.dead_letters("national")
    assert "HTTP 422" in dead.reason and "batch refused" not in dead.reason


def test_a_partial_answer_sends_the_unnamed_records_again(
    hub: Hub, national: SimulatedTarget
) -> None:
    national.set_plan(FailurePlan(unanswered_share=0.5, seed=7))
    push(hub, 0, 10)
    hub.start_worker()
    hub.wait(lambda: national.log.counts().get("unanswered", 0) >= 1)
    national.set_plan(FailurePlan())
    hub.wait(lambda: len({r["hubKey"] for r in records(national)}) == 10)
    hub.wait(lambda: hub.brokers[0].depth("national") == 0)
    hub.stop_workers()
    assert hub.brokers[0].dead_letters("national") == []


class BatchSizes:
    """`target`'s app, noting how many records each batch upload carried (batches of one
    message type are sent one at a time, so the records logged during a request are its own)."""

    def __init__(self, target: SimulatedTarget) -> None:
        self.target = target
        self.sizes: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != BATCH_PATH:
            await self.target.app(scope, receive, send)
            return
        before = len(records(self.target))
        await self.target.app(scope, receive, send)
        self.sizes.append(len(records(self.target)) - before)


@contextmanager
def national_batching(hub: Hub, max_wait_ms: int) -> Iterator[BatchSizes]:
    """National taking batches of 10, whose first record may wait `max_wait_ms` for it to
    fill."""
    port = free_port()
    config = hub.configure(batching_systems(port, max_records=10, max_wait_ms=max_wait_ms))
    sizes = BatchSizes(SimulatedTarget(config.system("national")))
    with LoopbackServer(sizes, port=port, name="national"):
        yield sizes


def test_a_lone_record_goes_at_once_without_waiting_out_max_wait(hub: Hub) -> None:
    # Nothing else is in hand to join its batch, so it goes now: were it held for max_wait
    # (60 s, the longest allowed), hub.wait (20 s) would fail. The second shows the count of
    # what is in hand went back to nothing once the first was settled.
    with national_batching(hub, max_wait_ms=60_000) as national:
        hub.start_worker()
        push(hub, 0, 1)
        hub.wait(lambda: len(records(national.target)) == 1)
        push(hub, 1, 1)
        hub.wait(lambda: len(records(national.target)) == 2)
        hub.wait(lambda: hub.brokers[0].depth("national") == 0)
        hub.stop_workers()
    assert national.sizes == [1, 1]


def test_a_burst_still_fills_its_batches(hub: Hub) -> None:
    # 40 records in the queue when the worker starts: a backlog (the consumer's hand, 20,
    # fills), so batches fill to max_records (a first record may go alone while the rest are
    # still arriving; a last one short of 10 waits out max_wait, 2 s). On a loaded machine the
    # broker may hand the tail over slower than the free sender takes it, one record at a time
    # (seen: 13 requests, [1, 10, 10, 1, 1, …]); one record a request would be 40.
    with national_batching(hub, max_wait_ms=2000) as national:
        push(hub, 0, 40)
        hub.start_worker()
        hub.wait(lambda: len(records(national.target)) == 40)
        hub.wait(lambda: hub.brokers[0].depth("national") == 0)
        hub.stop_workers()
    assert sum(national.sizes) == 40
    assert national.sizes.count(10) >= 2, national.sizes
    assert len(national.sizes) <= 20, national.sizes


MARK = "（第二次变更）"


def changed(payload: bytes) -> bytes:
    """The same cases, updated: each one's facts carry MARK."""
    text = payload.decode("gb18030").replace('CZLX="I"', 'CZLX="U"')
    return text.replace("限值1.6倍。", f"限值1.6倍。{MARK}").encode("gb18030")


def test_two_changes_of_a_record_reach_the_target_in_order(
    hub: Hub, national: SimulatedTarget
) -> None:
    # Published one after the other: the first changes fill a batch and part of the next, the
    # second changes follow. Within a batch and across batches, each record's first change
    # reaches the target before its second.
    first = case_batch(0, 12)
    push(hub, 0, 12, first)
    push(hub, 0, 12, changed(first))
    hub.start_worker()
    hub.wait(lambda: len(records(national)) == 24)
    hub.stop_workers()
    seen: dict[str, list[str]] = {}
    for record in records(national):
        text = json.dumps(record, ensure_ascii=False)
        seen.setdefault(record["punish_action_code"], []).append(text)
    assert len(seen) == 12
    for versions in seen.values():
        assert MARK not in versions[0] and MARK in versions[1]


@pytest.mark.rabbitmq
def test_a_worker_killed_mid_batch_leaves_its_records_to_the_next(tmp_path: Path) -> None:
    # National holds each answer 2 s: the first worker's batch of 10 is in flight, 20 messages
    # in hand, when it is killed. RabbitMQ gives the unsettled messages back; the next worker
    # delivers every record (national drops repeats by each record's hubKey).
    with open_hub("rabbitmq", tmp_path) as hub:
        port = free_port()
        config = hub.configure(batching_systems(port, max_records=10, max_wait_ms=300))
        target = SimulatedTarget(config.system("national"), FailurePlan(delay_s=2.0))
        with LoopbackServer(target.app, port=port, name="national"):
            ids = push(hub, 0, 30)
            broker = hub.brokers[0]
            first = start_worker(hub)
            try:
                hub.wait(lambda: broker.depth("national") <= 10)  # 20 in hand, a batch sent
                time.sleep(0.3)
            finally:
                first.kill()
                first.wait(timeout=10)
            hub.wait(lambda: broker.depth("national") == 30)  # nothing was acked: all back
            target.set_plan(FailurePlan())
            second = start_worker(hub)
            try:
                hub.wait(lambda: len({r["hubKey"] for r in records(target)}) == 30, timeout=60)
                hub.wait(lambda: broker.depth("national") == 0)
            finally:
                stop(second)
            assert broker.dead_letters("national") == []
            keys = {r["hubKey"] for r in records(target)}
            assert len(keys) == len(ids) == 30


def start_worker(hub: Hub) -> subprocess.Popen[bytes]:
    """`jghub worker` as a process of its own on `hub`'s bus and systems file."""
    command = [sys.executable, "-m", "hub.cli", "worker", "--no-pollers", "--log-level", "warning"]
    return subprocess.Popen(command, env=hub.env, cwd=REPOSITORY)
