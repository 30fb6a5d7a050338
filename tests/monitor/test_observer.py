"""The worker's settles, observed: delivered, retried by tier, dead-lettered, end to end."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from monitor_support import BACKENDS, Buses, buses_for, consume, now, outgoing, value

from bus import Delivery
from monitor.journal import Journal, JournalOptions, Step
from monitor.observer import RECEIVED_AT_HEADER, DeadLetterLog, Observer
from standard.datasets import validate
from standard.envelope import Envelope

SOURCE = "grassroots-platform"


@pytest.fixture(params=BACKENDS)
def buses(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Buses]:
    opened = buses_for(request.param, tmp_path)
    yield opened
    opened.cleanup()


def _event(event_id: str, receipt: str) -> Envelope:
    record = validate(
        "grassroots_event",
        {
            "event_id": event_id,
            "title": "工地夜间施工",
            "description": "网格员巡查发现工地夜间施工。",
            "scenario": "04",
            "source": "1",
            "region_code": "330106",
            "reported_time": "2026-06-18T22:35:00+08:00",
            "status": "1",
        },
    )
    return Envelope.wrap(
        record, source="330000/jczl", operation="insert", time=now(), correlationid=receipt
    )


def test_settles_are_counted_and_journalled(buses: Buses, tmp_path: Path) -> None:
    target = f"t_{uuid.uuid4().hex[:8]}"
    topology = buses.topology({target: ["grassroots_event.#"]}, retry_delays=(0.2,))
    broker = buses.open(topology)
    receipt = uuid.uuid4().hex
    events = [_event(f"SJ{n}", receipt) for n in range(3)]
    half_a_minute_ago = (now() - timedelta(seconds=30)).isoformat()
    broker.publish_many(
        [outgoing(e, SOURCE, **{RECEIVED_AT_HEADER: half_a_minute_ago}) for e in events]
    )
    ok, flaky, refused = (e.id for e in events)

    def handle(delivery: Delivery) -> None:
        message = delivery.message
        if message.id == flaky and message.attempts == 0:
            delivery.retry("HTTP 503 from the target", "deliver")
        elif message.id == refused:
            delivery.dead_letter("HTTP 400: field xm missing", "deliver")
        else:
            delivery.ack()

    with Journal(tmp_path / "j.sqlite3", JournalOptions(flush_interval_s=0.01)) as journal:
        observer = Observer(topology, journal)
        assert consume(broker, target, observer.watch(target, handle), 4) == 4
        ok_steps = journal.trace(ok)
        flaky_steps = journal.trace(flaky)
        refused_steps = journal.trace(refused)
        by_receipt = journal.trace(receipt, system=SOURCE)
        by_business_key = journal.trace("SJ1")  # the flaky record's subject

    dataset = {"target": target, "dataset": "grassroots_event"}
    assert value("jghub_delivered_total", **dataset) == 2
    assert value("jghub_delivery_failures_total", **dataset, kind="transient") == 1
    assert value("jghub_delivery_failures_total", **dataset, kind="permanent") == 1
    assert value("jghub_retried_total", target=target, tier="0") == 1
    dead = {"target": target, "stage": "deliver", "reason": "permanent"}
    assert value("jghub_dead_lettered_total", **dead) == 1
    assert value("jghub_delivery_seconds_count", target=target) == 4
    assert value("jghub_end_to_end_seconds_count", **dataset) == 2
    assert value("jghub_end_to_end_seconds_sum", **dataset) >= 60.0  # received 30 s ago, twice

    assert [(s.step, s.attempt) for s in ok_steps] == [(Step.DELIVERED, 1)]
    assert (ok_steps[0].system, ok_steps[0].target, ok_steps[0].receipt) == (
        SOURCE,
        target,
        receipt,
    )
    assert ok_steps[0].detail["end_to_end_s"] >= 30
    assert [(s.step, s.attempt) for s in flaky_steps] == [
        (Step.RETRIED, 1),
        (Step.DELIVERED, 2),
    ]
    assert flaky_steps[0].reason == "HTTP 503 from the target"
    # Each step carries the record's business key (its subject), indexed for lookups.
    assert flaky_steps[0].detail == {"stage": "deliver", "tier": 0, "subject": "SJ1"}
    assert [s.message_id for s in by_business_key] == [flaky, flaky]
    assert [s.step for s in refused_steps] == [Step.DEAD_LETTERED]
    assert refused_steps[0].detail == {"stage": "deliver", "cause": "permanent", "subject": "SJ2"}
    assert len(by_receipt) == 4  # one entry per settle


def test_a_raising_handler_uses_up_the_tiers(buses: Buses, tmp_path: Path) -> None:
    target = f"t_{uuid.uuid4().hex[:8]}"
    topology = buses.topology({target: ["grassroots_event.#"]}, retry_delays=(0.1,))
    broker = buses.open(topology)
    event = _event("SJ-broken", "r")
    broker.publish(outgoing(event, SOURCE))

    def crash(delivery: Delivery) -> None:
        raise RuntimeError("renderer crashed")

    with Journal(tmp_path / "j.sqlite3", JournalOptions(flush_interval_s=0.01)) as journal:
        observer = Observer(topology, journal)
        assert consume(broker, target, observer.watch(target, crash), 2) == 2
        steps = journal.trace(event.id)

    assert [(s.step, s.attempt) for s in steps] == [(Step.RETRIED, 1), (Step.DEAD_LETTERED, 2)]
    assert "renderer crashed" in (steps[1].reason or "")
    assert steps[1].detail == {
        "stage": "handler",
        "cause": "retries_exhausted",
        "subject": "SJ-broken",
    }
    exhausted = {"target": target, "stage": "handler", "reason": "retries_exhausted"}
    assert value("jghub_dead_lettered_total", **exhausted) == 1
    assert len(broker.dead_letters(target)) == 1


def test_watch_refuses_a_target_the_topology_lacks(buses: Buses) -> None:
    topology = buses.topology({"known": ["#"]})
    observer = Observer(topology)
    with pytest.raises(Exception, match="unknown target 'nobody'"):
        observer.watch("nobody", lambda d: d.ack())
    with pytest.raises(ValueError, match="needs the topology"):
        Observer().watch("known", lambda d: d.ack())


def test_breaker_and_poller_gauges() -> None:
    target, source = f"t_{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    observer = Observer()
    observer.breaker_changed(target, "closed", "open")
    assert value("jghub_breaker_state", target=target) == 2
    observer.breaker_changed(target, "open", "half-open")
    assert value("jghub_breaker_state", target=target) == 1
    observer.polled(source, ok=True, lag_seconds=42.0)
    observer.polled(source, ok=False)
    assert value("jghub_poller_lag_seconds", source=source) == 42.0
    assert value("jghub_polls_total", source=source, outcome="ok") == 1
    assert value("jghub_polls_total", source=source, outcome="failed") == 1
    assert value("jghub_poller_last_success_timestamp_seconds", source=source) > 1.7e9


def test_dead_letters_reach_the_log_once_per_target_and_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Three dead letters of one target in a row, one of another: a WARNING for each target's
    # first; the next two at DEBUG only, counted in the target's next WARNING.
    interval = 1.0  # far longer than four calls take
    dead_letters = DeadLetterLog(interval_s=interval)
    caplog.set_level(logging.DEBUG, logger="monitor.observer")
    for n in range(3):
        dead_letters.note("national", f"m-{n}", stage="deliver", cause="permanent", reason="422")
    dead_letters.note("grassroots", "g-0", stage="render", cause="permanent", reason="no rendering")
    time.sleep(interval)
    dead_letters.note("national", "m-3", stage="deliver", cause="retries_exhausted", reason="503")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert warnings == [
        "dead letter m-0 for national (deliver, permanent): 422",
        "dead letter g-0 for grassroots (render, permanent): no rendering",
        "dead letter m-3 for national (deliver, retries_exhausted): 503; 2 more since the last "
        "such line",
    ]
    assert [m.split()[2] for m in debug] == ["m-1", "m-2"]
