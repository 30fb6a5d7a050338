"""kill -9 at random moments: every step the hub acknowledged is in the journal.

`jghub serve` answers a sender only once the payload's entries (received, published) are
written, and `jghub worker` acks a message to the broker only once its `delivered` entry is. So
whenever either process dies, every record a sender was told "accepted" has both entries, and
every message the broker no longer holds has its delivery journalled. 10 runs kill serve while
batches stream in, 10 kill the worker while it delivers; the moments are random (the seed is
printed) and `jghub journal verify` finds no message whose acknowledged steps lack entries.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from broker_support import drain
from fault_pipeline import REPOSITORY, Pipeline, tally
from store_support import embedded_store

from monitor.journal import Journal, Step

pytestmark = [pytest.mark.rabbitmq]

RUNS = int(os.environ.get("JGHUB_CRASH_RUNS", "10"))
"""Kills of each process (serve, worker); 20 in all by default."""
SEED = int(os.environ.get("JGHUB_CRASH_SEED", str(time.time_ns() % 1_000_000)))


def steps(journal: Journal, message_id: str) -> set[Step]:
    return {entry.step for entry in journal.trace(message_id)}


def stream(line: Pipeline, answers: list[dict[str, Any]], stop: threading.Event) -> None:
    """Push batches of 20 new records until `stop`, or until serve is gone; keep the answers."""
    batch = 0
    while not stop.is_set():
        try:
            answer = line.push(batch * 20, 20)
        except httpx.TransportError:
            return
        if answer.status_code == 200:
            answers.append(answer.json())
        batch += 1


def requeued(line: Pipeline) -> list[str]:
    """The ids of the messages back in national's queue once a killed worker's are returned."""
    broker = line.broker()
    depth, settled_at = broker.depth("national"), time.monotonic()
    while time.monotonic() - settled_at < 1.0:  # unchanged for a second: the kill is settled
        time.sleep(0.1)
        now = broker.depth("national")
        if now != depth:
            depth, settled_at = now, time.monotonic()
    got = [message.id for message in drain(broker, "national", depth, timeout=30)]
    assert len(got) == depth
    return got


def verify_exit_code(data_dir: Path) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "journal", "verify", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.timeout(900)
def test_kill_9_of_serve_while_batches_stream_in_leaves_every_answered_record_journalled(
    tmp_path: Path,
) -> None:
    chance = random.Random(SEED)
    answered = 0
    for run in range(RUNS):
        folder = tmp_path / f"serve-{run}"
        folder.mkdir()
        with Pipeline(folder) as line:
            answers: list[dict[str, Any]] = []
            stop = threading.Event()
            sender = threading.Thread(target=stream, args=(line, answers, stop), daemon=True)
            sender.start()
            time.sleep(chance.uniform(0.2, 1.5))
            assert line.serve is not None
            line.serve.kill()
            line.serve.wait()
            stop.set()
            sender.join(timeout=30)
            accepted = [
                record["message_id"]
                for answer in answers
                for record in answer["records"]
                if record["status"] == "accepted"
            ]
            with Journal(embedded_store(folder / "var")) as journal:
                lacking = [
                    m for m in accepted if not {Step.RECEIVED, Step.PUBLISHED} <= steps(journal, m)
                ]
            assert lacking == [], f"seed {SEED} run {run}: answered accepted, not journalled"
            code, output = verify_exit_code(folder / "var")
            assert code == 0, f"seed {SEED} run {run}: {output}"
            answered += len(accepted)
    tally("kill -9 serve", seed=SEED, runs=RUNS, answered_accepted=answered, unjournalled=0)
    assert answered > 0


@pytest.mark.timeout(900)
def test_kill_9_of_the_worker_while_it_delivers_leaves_every_acked_message_journalled(
    tmp_path: Path,
) -> None:
    chance = random.Random(SEED + 1)
    acked_in_all = 0
    with Pipeline(tmp_path) as line:
        line.sink.delay_s = 0.002  # so the worker is surely in the middle of something
        for run in range(RUNS):
            first = run * 1000
            published: list[str] = []
            for batch in range(0, 300, 100):
                answer = line.push(first + batch, 100).json()
                published += [r["message_id"] for r in answer["records"] if r["message_id"]]
            assert len(published) == 300
            worker = line.start_worker()
            arrived = line.sink.unique
            deadline = time.monotonic() + 60
            while line.sink.unique == arrived:
                assert time.monotonic() < deadline, "the worker delivered nothing"
                time.sleep(0.01)
            time.sleep(chance.uniform(0.0, 0.6))
            worker.kill()
            worker.wait()
            remaining = requeued(line)
            acked = sorted(set(published) - set(remaining))
            with Journal(embedded_store(tmp_path / "var")) as journal:
                lacking = [m for m in acked if Step.DELIVERED not in steps(journal, m)]
            assert lacking == [], f"seed {SEED} run {run}: acked, delivery not journalled"
            acked_in_all += len(acked)
        code, output = verify_exit_code(tmp_path / "var")
        assert code == 0, f"seed {SEED}: {output}"
    tally("kill -9 worker", seed=SEED, runs=RUNS, acked=acked_in_all, unjournalled=0)
    assert acked_in_all > 0
