"""RabbitMQ backend under faults: connections closed by the broker, and a broker restart mid-stream.

These tests drive the local RabbitMQ node with `rabbitmqctl`. The connection test closes only its
own connections (found by their connection name); the restart test stops and starts the node's
application, which disturbs every other user of the broker for a few seconds, so it is the only
test that does it and it always starts the broker again (try/finally).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq, skip_or_fail
from contract import BusUnderTest, wait_for

import bus
from bus import Broker, Delivery, Outgoing, PublishFailed

pytestmark = pytest.mark.rabbitmq

log = logging.getLogger(__name__)


def rabbitmqctl(*args: str, timeout: float = 60.0) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout


def require_rabbitmqctl() -> None:
    require_rabbitmq()
    problem = None
    if shutil.which("rabbitmqctl") is None:
        problem = "rabbitmqctl is not on PATH: this test restarts the local broker with it"
    else:
        try:
            rabbitmqctl("status", timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            problem = f"rabbitmqctl cannot reach the local node: {exc}"
    if problem:
        skip_or_fail(problem)


def close_connections_named(prefix: str) -> int:
    """Close (broker side) every connection whose client-provided name starts with `prefix`."""
    closed = 0
    for line in rabbitmqctl("list_connections", "pid", "client_properties", "-q").splitlines():
        pid, _, properties = line.partition("\t")
        name = re.search(r'\{"connection_name","([^"]*)"\}', properties)
        if pid.startswith("<") and name and name.group(1).startswith(prefix):
            rabbitmqctl("close_connection", pid, "jghub fault test")
            closed += 1
    return closed


@contextmanager
def broker_stopped() -> Iterator[None]:
    """Stop the RabbitMQ application; whatever happens inside, start it again and wait for it."""
    rabbitmqctl("stop_app", timeout=120)
    try:
        yield
    finally:
        try:
            rabbitmqctl("start_app", timeout=180)
        except (RuntimeError, subprocess.TimeoutExpired):
            log.exception("start_app failed; starting a new node")
            subprocess.run(["rabbitmq-server", "-detached"], check=False, timeout=60)
        rabbitmqctl("await_startup", timeout=180)


@pytest.fixture
def rabbit() -> Iterator[BusUnderTest]:
    require_rabbitmqctl()
    harness = BusUnderTest(
        kind="rabbitmq",
        url=RABBITMQ_URL,
        options={
            "connection_name": f"fault-{uuid.uuid4().hex[:8]}",
            "reconnect_max_delay": 0.5,
            "publish_timeout": 60.0,
        },
    )
    yield harness
    harness.cleanup()


class Tally:
    """What a consumer saw: message ids in arrival order, and how many were redelivered."""

    def __init__(self, work: float = 0.0) -> None:
        self.work = work
        self.ids: list[str] = []
        self.redelivered = 0
        self.lock = threading.Lock()

    def __call__(self, delivery: Delivery) -> None:
        with self.lock:
            self.ids.append(delivery.message.id)
            self.redelivered += delivery.message.redelivered
        if self.work:
            time.sleep(self.work)
        delivery.ack()

    def seen(self) -> set[str]:
        with self.lock:
            return set(self.ids)

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in Counter(self.ids).values())


def consume_in_thread(
    broker: Broker, target: str, tally: Tally
) -> tuple[threading.Thread, threading.Event, list[BaseException]]:
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            broker.consume(target, tally, stop=stop)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, stop, errors


def test_publisher_and_consumer_reconnect_after_their_connections_are_closed(
    rabbit: BusUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bus.rabbitmq")
    topology = rabbit.topology({"national": ["penalty_case.#"]})
    broker = rabbit.open(topology)
    before = broker.publish_many([Outgoing("penalty_case.330100.a", b"%d" % i) for i in range(200)])
    tally = Tally()
    thread, stop, errors = consume_in_thread(broker, "national", tally)
    try:
        assert wait_for(lambda: len(tally.seen()) >= 200, timeout=20)
        prefix = str(rabbit.options["connection_name"])
        assert close_connections_named(prefix) >= 2  # the publisher's and the consumer's
        after = broker.publish_many(
            [Outgoing("penalty_case.330100.a", b"%d" % i) for i in range(200)]
        )
        confirmed = set(before) | set(after)
        assert wait_for(lambda: tally.seen() >= confirmed, timeout=30), (
            f"{len(confirmed - tally.seen())} confirmed messages never arrived"
        )
    finally:
        stop.set()
        thread.join(15)
    assert errors == []
    reconnected = [r for r in caplog.records if "reconnected" in r.getMessage()]
    assert len(reconnected) >= 2, [r.getMessage() for r in caplog.records]


@pytest.mark.slow
def test_a_broker_restart_mid_stream_loses_no_confirmed_message(
    rabbit: BusUnderTest,
    caplog: pytest.LogCaptureFixture,
    record_property: Callable[[str, object], None],
) -> None:
    total, batch = 10_000, 50
    caplog.set_level(logging.WARNING, logger="bus.rabbitmq")
    topology = rabbit.topology({"national": ["penalty_case.#"]}, prefetch=200)
    publisher = rabbit.open(topology)
    consumer = rabbit.open(topology)
    # Same namespace, but gives up on a confirm after 1 s.
    impatient = bus.connect(RABBITMQ_URL, publish_timeout=1.0, reconnect_max_delay=0.5)
    impatient.declare(topology)
    confirmed: list[str] = []
    failed: list[str] = []
    third = threading.Event()

    def publish_stream() -> None:
        for start in range(0, total, batch):
            messages = [
                Outgoing("penalty_case.330100.dept_scjg", b"%06d" % n)
                for n in range(start, start + batch)
            ]
            try:
                confirmed.extend(publisher.publish_many(messages))
            except PublishFailed as exc:
                confirmed.extend(exc.published)
                failed.extend(f.message_id for f in exc.failures)
            if start >= total // 3:
                third.set()
            time.sleep(0.01)  # a stream, not a burst: the restart lands in the middle of it

    # A consumer slower than the publisher, so a backlog sits in the queue when the broker stops.
    tally = Tally(work=0.0005)
    thread, stop, errors = consume_in_thread(consumer, "national", tally)
    producer = threading.Thread(target=publish_stream, daemon=True)
    producer.start()
    try:
        assert third.wait(60), "the publisher did not get a third of the way"
        stopping = time.monotonic()
        with broker_stopped():
            at_stop, backlog = len(confirmed), len(confirmed) - len(tally.seen())
            started = time.monotonic()
            with pytest.raises(PublishFailed, match=r"not confirmed within 1 s"):
                impatient.publish(Outgoing("penalty_case.330100.dept_scjg", b"too late"))
            assert time.monotonic() - started < 5
        outage = time.monotonic() - stopping
        producer.join(120)
        assert not producer.is_alive(), "the publisher never finished after the restart"
        wanted = set(confirmed)
        arrived = wait_for(lambda: tally.seen() >= wanted, timeout=60, every=0.2)
    finally:
        stop.set()
        thread.join(15)
        impatient.close()
    missing = wanted - tally.seen()
    duplicates = tally.duplicates()
    summary = (
        f"confirmed {len(wanted)} of {total} ({at_stop} before the stop, {backlog} of them not "
        f"consumed yet), broker away {outage:.1f} s, failed {len(failed)}, "
        f"consumed {len(tally.ids)} deliveries of {len(tally.seen())} ids, "
        f"duplicates {duplicates}, redelivered {tally.redelivered}, missing {len(missing)}"
    )
    print(summary)
    for name, value in (("confirmed", len(wanted)), ("duplicates", duplicates)):
        record_property(name, value)
    assert arrived and not missing, summary
    assert errors == [], errors
    assert at_stop < len(wanted), "nothing was published after the restart"
    assert backlog > 0, "the consumer had caught up: the restart tested nothing in the queue"
    assert len(wanted) >= 0.9 * total, summary
    reconnected = [r for r in caplog.records if "reconnected" in r.getMessage()]
    assert len(reconnected) >= 2, "the publisher and the consumer should both have reconnected"
