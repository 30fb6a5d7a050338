"""The outbound path end to end: real ingress → bus (embedded and RabbitMQ) → egress in a worker →
loopback target: render, deliver, settle."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback_target import LoopbackTarget
from typer.testing import CliRunner
from worker_harness import EVENTS, Hub, open_hub, systems_yaml

from bus import Outgoing
from hub.cli import app as cli
from standard.envelope import STRUCTURED_CONTENT_TYPE


@pytest.fixture(params=["embedded", "rabbitmq"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    with open_hub(request.param, tmp_path) as running:
        yield running


@pytest.fixture
def target() -> Iterator[LoopbackTarget]:
    with LoopbackTarget() as running:
        yield running


def behind_a_breaker(
    hub: Hub,
    target: LoopbackTarget,
    *,
    attempts: int,
    tiers: list[float],
    failures: int,
    cooldown_s: float,
) -> None:
    """Deliver to `target` one message at a time, through a breaker opening after `failures`."""
    hub.configure(
        systems_yaml(
            target.url,
            attempts=attempts,
            tiers=tiers,
            breaker={"failures": failures, "cooldown_s": cooldown_s},
            concurrency=1,
        )
    )


def test_delivers_each_event_rendered_with_its_idempotency_key(
    hub: Hub, target: LoopbackTarget
) -> None:
    hub.configure(systems_yaml(target.url))
    ids = hub.push_events()
    hub.start_worker()
    got = target.wait_for(3)
    hub.wait(lambda: hub.brokers[0].depth("grassroots-platform") == 0)
    hub.stop_workers()
    bodies = [json.loads(r.body) for r in got]
    assert sorted(b["eventId"] for b in bodies) == sorted(
        e["eventId"] for e in json.loads(EVENTS)["data"]["events"]
    )
    assert all(r.header("Content-Type") == "application/json; charset=utf-8" for r in got)
    keys = [r.header("Idempotency-Key") for r in got]
    assert len(set(keys)) == 3 and all(k and len(k) == 64 for k in keys)
    assert hub.brokers[0].dead_letters("grassroots-platform") == []
    assert len(ids) == 3


def test_a_4xx_goes_to_the_dead_letters_at_once_with_status_and_body(
    hub: Hub, target: LoopbackTarget
) -> None:
    hub.configure(systems_yaml(target.url, attempts=3))
    target.always(422, '{"error":"事件不存在"}'.encode())
    ids = hub.push_events()
    hub.start_worker()
    broker = hub.brokers[0]
    hub.wait(lambda: len(broker.dead_letters("grassroots-platform")) == 3)
    dead = broker.dead_letters("grassroots-platform")
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
    hub.wait(lambda: broker.depth("grassroots-platform") == 0)
    hub.stop_workers()
    assert broker.dead_letters("grassroots-platform") == []
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
    behind_a_breaker(hub, target, attempts=1, tiers=[0.2], failures=2, cooldown_s=1.5)
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
        return {d.message.idempotency_key for d in broker.dead_letters("grassroots-platform")}

    hub.wait(lambda: len(delivered | dead_keys()) == 3)
    hub.stop_workers()
    tried = {r.header("Idempotency-Key") for r in target.requests}
    assert len(tried) == 3  # every message reached the target
    for letter in broker.dead_letters("grassroots-platform"):
        # Dead only after its own attempts failed (1 in process x 2: the first and its tier).
        assert letter.message.idempotency_key not in delivered
        assert [f.attempt for f in letter.message.history] == [1, 2]
        assert all("HTTP 503" in f.reason for f in letter.message.history), letter.reason


def test_a_failed_trial_is_dead_lettered_with_the_targets_answer(
    hub: Hub, target: LoopbackTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two attempts in process and a breaker that opens at the first failure: every attempt
    # after a real call (the first, then each half-open trial) meets the breaker open. What the
    # message failed on is the call the target answered, so that is its history.
    behind_a_breaker(hub, target, attempts=2, tiers=[0.2], failures=1, cooldown_s=0.3)
    answer = "数据库连接失败 ORA-12541"
    target.always(500, answer.encode())
    ids = hub.push_events()
    hub.start_worker()
    broker = hub.brokers[0]
    hub.wait(lambda: len(broker.dead_letters("grassroots-platform")) == 3)
    hub.stop_workers()
    dead = broker.dead_letters("grassroots-platform")
    assert sorted(d.message.id for d in dead) == sorted(ids)
    for letter in dead:
        assert [f.attempt for f in letter.message.history] == [1, 2]
        for failure in letter.message.history:
            assert f"HTTP 500: {answer}" in failure.reason, failure.reason
            assert "not calling" not in failure.reason and "next trial" not in failure.reason
    # Each message reached the target on each of its two attempts: six calls, six trials.
    assert len(target.requests) == 6
    for name, value in hub.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "250")
    listed = CliRunner().invoke(cli, ["dead", "list", "--reason", "HTTP 500"], terminal_width=250)
    assert listed.exit_code == 0, listed.output
    assert "3 dead letter(s)" in listed.output
    assert all(message_id in listed.output for message_id in ids), listed.output


def test_a_postponed_message_keeps_no_passing_wait_in_its_reason(
    hub: Hub, target: LoopbackTarget
) -> None:
    # Without retry tiers a message the open breaker refuses has nowhere to wait: it goes to
    # the dead letters with the refusal as its reason, which must read the same at any moment.
    behind_a_breaker(hub, target, attempts=1, tiers=[], failures=1, cooldown_s=600)
    target.always(500, b"down")
    hub.push_events()
    hub.start_worker()
    broker = hub.brokers[0]
    hub.wait(lambda: len(broker.dead_letters("grassroots-platform")) == 3)
    hub.stop_workers()
    reasons = sorted(d.reason for d in broker.dead_letters("grassroots-platform"))
    assert len(target.requests) == 1  # the first opened the breaker; the others were refused
    tried, *refused = sorted(reasons, key=lambda reason: "HTTP 500" not in reason)
    assert "HTTP 500: down" in tried
    for reason in refused:
        assert "circuit breaker of target 'grassroots-platform' is open" in reason
        assert "next trial" not in reason and not re.search(r"\d+(\.\d+)?s\b", reason), reason


def test_undecodable_messages_and_canonical_events(hub: Hub, target: LoopbackTarget) -> None:
    hub.configure(systems_yaml(target.url, render={"grassroots_event": "cloudevent"}))
    broker = hub.broker()
    junk = broker.publish(Outgoing("grassroots_event.330106.somebody", b"not an envelope"))
    hub.push_events()
    hub.start_worker()
    got = target.wait_for(3)
    hub.wait(lambda: len(broker.dead_letters("grassroots-platform")) == 1)
    (dead,) = broker.dead_letters("grassroots-platform")
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
    hub.wait(lambda: len(broker.dead_letters("grassroots-platform")) == 3)
    for dead in broker.dead_letters("grassroots-platform"):
        assert dead.message.history[-1].stage == "render"
        assert "grassroots-platform has no rendering for dataset grassroots_event" in dead.reason
    assert target.requests == []
