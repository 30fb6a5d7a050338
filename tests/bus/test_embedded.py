"""What only the embedded broker promises: its file outlives the process; dead sessions let go."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from contract import (
    BusUnderTest,
    collect,
    collect_all,
    ids,
    spread,
    start_consumer_process,
    wait_for,
)

import bus
from bus import Delivery, Outgoing, PublishFailed, SettleError
from bus.embedded import EmbeddedBroker, database_path


def _db_file(harness: BusUnderTest) -> Path:
    return database_path(harness.url)


def test_everything_survives_closing_and_reopening_the_file(embedded: BusUnderTest) -> None:
    topology = embedded.topology({"national": ["penalty_case.#"]}, retry_delays=[0.3])
    broker = embedded.open(topology)
    queued = broker.publish_many([Outgoing("penalty_case.1.a", str(i).encode()) for i in range(5)])
    waiting = broker.publish(Outgoing("penalty_case.1.b", b"to the tier"))
    dead = broker.publish(Outgoing("penalty_case.1.c", b"to the dead"))
    collect_all(broker, "national", 7, settle=spread(waiting=waiting, dead=dead), prefetch=7)
    quarantined = broker.quarantine(b"<bad", "malformed", source="dept")
    broker.close()

    reopened = embedded.open(topology)
    assert [q.id for q in reopened.quarantined()] == [quarantined]
    assert [d.message.id for d in reopened.dead_letters()] == [dead]
    got = collect_all(reopened, "national", 6, timeout=5)
    assert ids(got[:5]) == queued
    assert all(m.redelivered for m in got[:5])  # they were requeued
    assert got[5].id == waiting
    assert got[5].attempts == 1


def test_closing_with_a_delivery_unsettled_redelivers_it_after_reopening(
    embedded: BusUnderTest,
) -> None:
    embedded.options = {"close_timeout": 0.2}
    topology = embedded.topology({"national": ["penalty_case.#"]})
    broker = embedded.open(topology)
    message_id = broker.publish(Outgoing("penalty_case.1.a", b"x"))
    handed: list[Delivery] = []
    release = threading.Event()

    def hold(delivery: Delivery) -> None:
        handed.append(delivery)
        release.wait(5)

    consumer = threading.Thread(
        target=broker.consume, args=("national", hold), kwargs={"stop": threading.Event()}
    )
    consumer.start()
    assert wait_for(lambda: bool(handed))
    broker.close()  # the handler still holds the delivery
    release.set()
    consumer.join(5)
    assert not consumer.is_alive()
    with pytest.raises(SettleError, match="closed"):
        handed[0].ack()

    reopened = embedded.open(topology)
    [again] = collect_all(reopened, "national", 1)
    assert again.id == message_id
    assert again.redelivered is True


def test_a_live_broker_keeps_its_deliveries_from_a_second_broker_on_the_file(
    embedded: BusUnderTest,
) -> None:
    embedded.options = {"recovery_interval": 0.1, "close_timeout": 0.2}
    topology = embedded.topology({"national": ["penalty_case.#"]})
    first = embedded.open(topology)
    message_id = first.publish(Outgoing("penalty_case.1.a", b"x"))
    handed = threading.Event()
    release = threading.Event()

    def hold(delivery: Delivery) -> None:
        handed.set()
        release.wait(10)

    consumer = threading.Thread(
        target=first.consume, args=("national", hold), kwargs={"stop": threading.Event()}
    )
    consumer.start()
    assert handed.wait(5)

    second = embedded.open(topology)
    # The first broker is alive: its delivery is not stolen, however often the second checks.
    assert collect(second, "national", 1, timeout=0.5) == []
    first.close()
    release.set()
    consumer.join(5)
    [again] = collect_all(second, "national", 1, timeout=5)
    assert (again.id, again.redelivered) == (message_id, True)


def test_a_running_consumer_recovers_what_a_killed_process_held(embedded: BusUnderTest) -> None:
    embedded.options = {"recovery_interval": 0.1}
    topology = embedded.topology({"national": ["penalty_case.#"]})
    broker = embedded.open(topology)
    message_id = broker.publish(Outgoing("penalty_case.1.a", b"x"))
    process = start_consumer_process(embedded, topology, "national")
    assert process.stdout is not None
    assert process.stdout.readline().strip() == f"holding {message_id}"

    arrived: list[bus.Message] = []
    stop = threading.Event()

    def take(delivery: Delivery) -> None:
        arrived.append(delivery.message)
        delivery.ack()
        stop.set()

    consumer = threading.Thread(
        target=broker.consume, args=("national", take), kwargs={"stop": stop}
    )
    consumer.start()
    time.sleep(0.3)
    assert arrived == []  # still held by the live process
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    consumer.join(10)
    assert [(m.id, m.redelivered) for m in arrived] == [(message_id, True)]


def test_stopping_gives_back_what_was_fetched_but_not_handed_over(embedded: BusUnderTest) -> None:
    topology = embedded.topology({"national": ["penalty_case.#"]})
    broker = embedded.open(topology)
    published = broker.publish_many([Outgoing("penalty_case.1.a", b"x") for _ in range(10)])
    stop = threading.Event()

    def first_only(delivery: Delivery) -> None:
        delivery.ack()
        stop.set()

    broker.consume("national", first_only, stop=stop, prefetch=10)
    assert broker.depth("national") == 9
    rest = collect_all(broker, "national", 9)
    assert ids(rest) == published[1:]
    assert not any(m.redelivered for m in rest)  # never reached a handler


def test_a_locked_file_makes_publish_fail_with_the_reason(embedded: BusUnderTest) -> None:
    embedded.options = {"busy_timeout": 0.2}
    topology = embedded.topology({"national": ["penalty_case.#"]})
    broker = embedded.open(topology)
    blocker = sqlite3.connect(_db_file(embedded), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(PublishFailed, match="locked"):
            broker.publish(Outgoing("penalty_case.1.a", b"x"))
        with pytest.raises(PublishFailed) as raised:
            broker.publish_many([Outgoing("penalty_case.1.a", b"x"), Outgoing("nope.1.a", b"y")])
        assert [(f.index, f.unroutable) for f in raised.value.failures] == [(0, False), (1, True)]
        assert raised.value.published == ()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    broker.publish(Outgoing("penalty_case.1.a", b"x"))
    assert broker.depth("national") == 1


def test_publishers_and_consumers_in_many_threads_lose_and_double_nothing(
    embedded: BusUnderTest,
) -> None:
    topology = embedded.topology({"national": ["#"]})
    broker = embedded.open(topology)
    per_thread, publishers = 400, 4
    published: list[str] = []
    received: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def publish(n: int) -> None:
        for i in range(per_thread):
            if i % 2:
                message_id = broker.publish(Outgoing(f"p{n}.x", b"1"))
                with lock:
                    published.append(message_id)
            elif i % 4 == 0:
                batch = broker.publish_many([Outgoing(f"p{n}.y", b"2") for _ in range(3)])
                with lock:
                    published.extend(batch)

    def take(delivery: Delivery) -> None:
        with lock:
            received.append(delivery.message.id)
        delivery.ack()

    consumers = [
        threading.Thread(target=broker.consume, args=("national", take), kwargs={"stop": stop})
        for _ in range(3)
    ]
    producers = [threading.Thread(target=publish, args=(n,)) for n in range(publishers)]
    for thread in consumers + producers:
        thread.start()
    for thread in producers:
        thread.join(60)
    expected = publishers * (per_thread // 2 + 3 * (per_thread // 4))
    assert wait_for(lambda: len(received) >= expected, timeout=30)
    stop.set()
    for thread in consumers:
        thread.join(10)
    assert len(published) == expected
    assert sorted(received) == sorted(published)


def test_delete_topology_removes_its_namespace_only(embedded: BusUnderTest) -> None:
    one = embedded.topology({"national": ["#"]})
    two = embedded.topology({"national": ["#"]})
    broker_one, broker_two = embedded.open(one), embedded.open(two)
    broker_one.publish(Outgoing("a.b", b"1"))
    broker_one.quarantine(b"x", "bad", source="s")
    broker_two.publish(Outgoing("a.b", b"2"))
    broker_one.delete_topology(one)
    with pytest.raises(bus.TopologyError):
        broker_one.depth("national")
    assert broker_two.depth("national") == 1
    broker_one.declare(one)
    assert broker_one.depth("national") == 0
    assert broker_one.quarantined() == []


def test_two_brokers_in_one_process_hold_separate_sessions(embedded: BusUnderTest) -> None:
    topology = embedded.topology({"national": ["#"]})
    one, two = embedded.open(topology), embedded.open(topology)
    assert isinstance(one, EmbeddedBroker) and isinstance(two, EmbeddedBroker)
    assert one.session != two.session
    locks = sorted(p.name for p in Path(f"{_db_file(embedded)}.sessions").glob("*.lock"))
    assert locks == sorted([f"{one.session}.lock", f"{two.session}.lock"])
    one.close()
    one.close()  # idempotent
    assert not Path(f"{_db_file(embedded)}.sessions/{one.session}.lock").exists()
    with pytest.raises(bus.BrokerUnavailable, match="closed"):
        one.publish(Outgoing("a.b", b"x"))


def test_acks_waiting_for_their_group_commit_are_not_lost(embedded: BusUnderTest) -> None:
    embedded.options = {"ack_batch": 1000}  # no group fills up: only stop and close commit
    topology = embedded.topology({"national": ["#"]})
    broker = embedded.open(topology)
    published = broker.publish_many([Outgoing("a.b", b"x") for _ in range(30)])
    acked = collect_all(broker, "national", 10, prefetch=10)
    assert broker.depth("national") == 20
    broker.close()
    reopened = embedded.open(topology)
    rest = collect_all(reopened, "national", 20)
    assert ids(acked) + ids(rest) == published
    assert not any(m.redelivered for m in rest)
    assert collect(reopened, "national", 1, timeout=0.3) == []


def test_a_file_that_is_not_a_database_is_reported_and_releases_the_session(
    tmp_path: Path,
) -> None:
    path = tmp_path / "not-a-db.sqlite3"
    path.write_bytes(b"this is a text file, not SQLite " * 100)
    with pytest.raises(bus.BrokerUnavailable, match=r"not-a-db\.sqlite3.*not a database"):
        bus.connect(f"sqlite:///{path}")
    assert list(Path(f"{path}.sessions").glob("*.lock")) == []
