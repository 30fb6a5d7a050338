"""Faults on the way out and in the middle: a killed worker, a target down, a broker restart."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from fault_pipeline import Pipeline, tally

pytestmark = [pytest.mark.rabbitmq]

OUTAGE_S = float(os.environ.get("JGHUB_FAULT_OUTAGE_S", "20"))
"""How long the target answers 5xx (the brief's minute in a long run; CI uses 20 s)."""


@pytest.mark.timeout(120)
def test_kill_9_of_a_worker_mid_batch_loses_nothing(tmp_path: Path) -> None:
    records = 2000
    with Pipeline(tmp_path) as line:
        for first in range(0, records, 100):
            assert line.push(first, 100).json()["accepted"] == 100
        line.sink.delay_s = 0.002  # the worker is surely in the middle when it dies
        first_worker = line.start_worker()
        assert line.sink.wait_unique(200, timeout=60)
        first_worker.kill()  # SIGKILL: no goodbye, its unacked messages go back to the queue
        first_worker.wait()
        at_kill = line.sink.unique
        line.start_worker()
        delivered = line.sink.wait_unique(records, timeout=90)
        dead = len(line.broker().dead_letters("national"))
        tally(
            "kill -9",
            sent=records,
            confirmed=records,
            delivered_before_kill=at_kill,
            delivered=line.sink.unique,
            duplicates=line.sink.duplicates,
            dead_lettered=dead,
            lost=records - line.sink.unique,
        )
        assert delivered and at_kill < records
        assert len(line.sink.ids) == records and dead == 0


@pytest.mark.slow
@pytest.mark.timeout(int(OUTAGE_S * 4) + 90)
def test_a_target_answering_5xx_for_a_while_gets_everything_once_it_recovers(
    tmp_path: Path,
) -> None:
    records = 300
    # Retry tiers that together outlast the outage: each message is parked again and again
    # while the target is down, and none reaches the dead letters. Messages the open breaker
    # refuses wait without spending a tier; its trials after each cool-down do spend theirs.
    tiers = [OUTAGE_S / 16, OUTAGE_S / 8, OUTAGE_S / 4, OUTAGE_S / 2, OUTAGE_S]
    cooldown = OUTAGE_S / 8
    with Pipeline(tmp_path, tiers=tiers, breaker_cooldown_s=cooldown) as line:
        line.sink.outage_s = OUTAGE_S  # 503 from the first request on, for OUTAGE_S
        line.start_worker()
        for first in range(0, records, 100):
            assert line.push(first, 100).json()["accepted"] == 100
        delivered = line.sink.wait_unique(records, timeout=OUTAGE_S * 3 + 30)
        dead = len(line.broker().dead_letters("national"))
        tally(
            "target 5xx",
            outage_s=int(OUTAGE_S),
            sent=records,
            confirmed=records,
            delivered=line.sink.unique,
            failed_attempts=line.sink.failed_answers,
            duplicates=line.sink.duplicates,
            dead_lettered=dead,
            lost=records - line.sink.unique,
        )
        assert delivered and dead == 0
        assert line.sink.failed_answers > 0  # the outage was seen, and retried through


def _rabbitmqctl(*arguments: str) -> None:
    subprocess.run(["rabbitmqctl", *arguments], check=True, capture_output=True, timeout=120)


@pytest.mark.slow
@pytest.mark.timeout(280)
def test_a_broker_restart_while_20000_records_flow_loses_nothing(tmp_path: Path) -> None:
    records, batch = 20_000, 100
    resends = 0
    with Pipeline(tmp_path) as line:
        line.start_worker()
        deadline = time.monotonic() + 200

        def push_all() -> None:
            nonlocal resends
            for first in range(0, records, batch):
                resends += line.push_until_accepted(first, batch, deadline)

        pusher = threading.Thread(target=push_all)
        pusher.start()
        assert line.sink.wait_unique(3000, timeout=60)
        try:
            _rabbitmqctl("stop_app")
            time.sleep(3)
        finally:
            _rabbitmqctl("start_app")
        pusher.join(timeout=220)
        assert not pusher.is_alive(), "the pusher did not finish"
        delivered = line.sink.wait_unique(records, timeout=max(10, deadline - time.monotonic()))
        dead = len(line.broker().dead_letters("national"))
        unexpected = len(line.sink.ids - {f"F-{n:010d}" for n in range(records)})
        tally(
            "broker restart",
            sent=records,
            resent_batches=resends,
            confirmed=records,
            delivered=line.sink.unique,
            duplicates_suppressed=line.sink.duplicates,
            dead_lettered=dead,
            unexpected=unexpected,
            lost=records - len(line.sink.ids),
        )
        assert delivered and len(line.sink.ids) == records
        assert unexpected == 0 and dead == 0
