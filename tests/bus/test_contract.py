"""The broker contract: every test runs against the embedded broker and against RabbitMQ."""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta

import pytest
from contract import (
    BusUnderTest,
    collect,
    collect_all,
    ids,
    nothing_arrives,
    spread,
    start_consumer_process,
    wait_for,
)

from bus import (
    Delivery,
    Message,
    Outgoing,
    PublishFailed,
    SettleError,
    Target,
    Topology,
    TopologyError,
    Unroutable,
)

# Slack for comparing a broker's timers with ours: RabbitMQ counts TTLs in whole milliseconds.
CLOCK_SLACK = 0.01


def test_routes_by_topic_pattern_to_every_matching_target(under_test: BusUnderTest) -> None:
    topology = under_test.topology(
        {
            "national": ["penalty_case.#"],
            "hangzhou": ["*.330100.*"],
            "complaints": ["complaint.*.complaint_platform"],
        }
    )
    broker = under_test.open(topology)
    keys = [
        "penalty_case.330100.dept_scjg",  # national and hangzhou: one message, two targets
        "penalty_case.330200.dept_scjg",  # national only
        "penalty_case",  # '#' matches zero words
        "complaint.330100.complaint_platform",  # hangzhou and complaints
        "complaint.330200.complaint_platform",  # complaints only
        "inspection.330100.dept_sjj",  # hangzhou only
    ]
    published = {key: broker.publish(Outgoing(key, key.encode())) for key in keys}

    expected = {
        "national": {
            "penalty_case.330100.dept_scjg",
            "penalty_case.330200.dept_scjg",
            "penalty_case",
        },
        "hangzhou": {
            "penalty_case.330100.dept_scjg",
            "complaint.330100.complaint_platform",
            "inspection.330100.dept_sjj",
        },
        "complaints": {
            "complaint.330100.complaint_platform",
            "complaint.330200.complaint_platform",
        },
    }
    for target, wanted in expected.items():
        got = collect_all(broker, target, len(wanted))
        assert {m.routing_key for m in got} == wanted, target
        assert {m.id for m in got} == {published[k] for k in wanted}
        assert all(m.body == m.routing_key.encode() for m in got)
        assert nothing_arrives(broker, target, 0.3) == []


def test_addressed_keys_reach_their_addressee_and_wide_patterns(under_test: BusUnderTest) -> None:
    # "dataset.region.source.addressee": a department binds its own fourth word; a pattern
    # written for three words with '#' still sees addressed records, one with '*.*' does not.
    topology = under_test.topology(
        {
            "market": ["collaboration_task.*.*.market-penalty"],
            "housing": ["collaboration_task.*.*.housing-penalty"],
            "everything": ["collaboration_task.#"],
            "unaddressed": ["collaboration_task.*.*"],
        }
    )
    broker = under_test.open(topology)
    keys = {
        "collaboration_task.330106.collaboration.market-penalty": {"market", "everything"},
        "collaboration_task.330106.collaboration.housing-penalty": {"housing", "everything"},
        "collaboration_task.330106.eco-env-penalty": {"everything", "unaddressed"},
    }
    for key in keys:
        broker.publish(Outgoing(key, key.encode()))
    for target in ("market", "housing", "everything", "unaddressed"):
        wanted = {key for key, targets in keys.items() if target in targets}
        got = collect_all(broker, target, len(wanted))
        assert {m.routing_key for m in got} == wanted, target
        assert nothing_arrives(broker, target, 0.3) == []


def test_star_matches_exactly_one_word(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"hangzhou": ["*.330100.*"]})
    broker = under_test.open(topology)
    for key in ("inspection.330100", "inspection.330100.a.b", "a.b.330100.c"):
        with pytest.raises(Unroutable) as raised:
            broker.publish(Outgoing(key, b"{}"))
        assert raised.value.routing_key == key
    assert broker.depth("hangzhou") == 0


def test_unroutable_publish_raises_and_stores_nothing(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    broker = under_test.open(topology)
    with pytest.raises(Unroutable) as raised:
        broker.publish(Outgoing("complaint.330100.x", b"{}", message_id="m-unroutable"))
    assert raised.value.routing_key == "complaint.330100.x"
    assert raised.value.message_id == "m-unroutable"
    assert broker.depth("national") == 0


def test_publish_many_reports_the_unroutable_and_stores_the_rest(
    under_test: BusUnderTest,
) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    broker = under_test.open(topology)
    batch = [
        Outgoing("penalty_case.330100.a", b"1", message_id="m1"),
        Outgoing("complaint.330100.a", b"2", message_id="m2"),
        Outgoing("penalty_case.330100.b", b"3", message_id="m3"),
    ]
    with pytest.raises(PublishFailed) as raised:
        broker.publish_many(batch)
    [failure] = raised.value.failures
    assert (failure.index, failure.message_id, failure.unroutable) == (1, "m2", True)
    assert failure.routing_key == "complaint.330100.a"
    assert set(raised.value.published) == {"m1", "m3"}
    assert ids(collect_all(broker, "national", 2)) == ["m1", "m3"]


def test_publish_returns_after_the_broker_confirmed(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    publisher = under_test.open(topology)
    message_id = publisher.publish(
        Outgoing(
            "penalty_case.330100.dept_scjg",
            b'{"case": 1}',
            headers={"source": "dept_scjg", "batch": 2019041100002, "final": True},
            idempotency_key="case-1-v1",
        )
    )
    # A new connection sees the message at once: publish returned after it was stored.
    fresh = under_test.open(topology)
    assert fresh.depth("national") == 1
    [message] = collect_all(fresh, "national", 1, timeout=5)
    assert message.id == message_id
    assert message.body == b'{"case": 1}'
    assert message.idempotency_key == "case-1-v1"
    assert dict(message.headers) == {"source": "dept_scjg", "batch": 2019041100002, "final": True}
    assert message.content_type == "application/json"
    assert (message.attempts, message.history, message.redelivered) == (0, (), False)


def test_publish_many_returns_ids_in_order_after_confirms(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    publisher = under_test.open(topology)
    batch = [Outgoing(f"penalty_case.330100.s{i}", str(i).encode()) for i in range(50)]
    published = publisher.publish_many(batch)
    assert len(published) == len(set(published)) == 50
    fresh = under_test.open(topology)
    assert fresh.depth("national") == 50
    assert ids(collect_all(fresh, "national", 50)) == published


def test_a_consumer_killed_before_settling_gets_its_message_again(
    under_test: BusUnderTest,
) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    publisher = under_test.open(topology)
    message_id = publisher.publish(Outgoing("penalty_case.330100.a", b"crash me"))

    process = start_consumer_process(under_test, topology, "national")
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line == f"holding {message_id}", process.stderr.read() if process.stderr else line
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL

    fresh = under_test.open(topology)
    [message] = collect_all(fresh, "national", 1, timeout=15)
    assert message.id == message_id
    assert message.body == b"crash me"
    assert message.redelivered is True
    assert message.attempts == 0


def test_retry_tiers_in_order_then_dead_letter_with_history(under_test: BusUnderTest) -> None:
    delays = (0.2, 0.8)
    topology = under_test.topology({"national": ["penalty_case.#"]}, retry_delays=delays)
    broker = under_test.open(topology)
    message_id = broker.publish(Outgoing("penalty_case.330100.a", b"flaky"))

    delivered_at: list[float] = []
    retried_at: list[float] = []
    seen: list[Message] = []

    def fail(delivery: Delivery) -> None:
        delivered_at.append(time.monotonic())
        seen.append(delivery.message)
        retried_at.append(time.monotonic())
        delivery.retry(f"HTTP 503 on try {len(seen)}", "deliver")

    collect_all(broker, "national", len(delays) + 1, settle=fail, timeout=10)
    assert [m.attempts for m in seen] == [0, 1, 2]
    assert all(m.id == message_id for m in seen)
    waits = [delivered_at[i + 1] - retried_at[i] for i in range(len(delays))]
    # Each tier holds the message at least its delay; the first (short) tier comes first.
    assert waits[0] >= delays[0] - CLOCK_SLACK, waits
    assert waits[0] < delays[1], waits
    assert waits[1] >= delays[1] - CLOCK_SLACK, waits
    assert nothing_arrives(broker, "national", 0.3) == []

    assert wait_for(lambda: len(broker.dead_letters("national")) == 1)
    [dead] = broker.dead_letters("national")
    assert dead.target == "national"
    assert dead.message.id == message_id
    assert dead.message.body == b"flaky"
    assert dead.message.attempts == 3
    assert dead.reason == "HTTP 503 on try 3"
    history = dead.message.history
    assert [f.attempt for f in history] == [1, 2, 3]
    assert [f.reason for f in history] == [f"HTTP 503 on try {n}" for n in (1, 2, 3)]
    assert {f.stage for f in history} == {"deliver"}
    assert [f.permanent for f in history] == [False, False, False]
    assert history[0].at >= dead.message.published_at
    assert history[0].at < history[1].at < history[2].at
    assert (history[1].at - history[0].at).total_seconds() >= delays[0] - CLOCK_SLACK
    assert dead.dead_at == history[-1].at
    assert broker.depth("national") == 0


def test_a_handler_exception_is_retried_with_its_repr(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]}, retry_delays=[0.2])
    broker = under_test.open(topology)
    broker.publish(Outgoing("penalty_case.330100.a", b"x"))

    def explode(delivery: Delivery) -> None:
        raise ValueError("mapping failed at $.case.date")

    seen = collect_all(broker, "national", 2, settle=explode)
    assert [m.attempts for m in seen] == [0, 1]
    assert wait_for(lambda: len(broker.dead_letters("national")) == 1)
    [dead] = broker.dead_letters("national")
    assert [(f.stage, f.reason) for f in dead.message.history] == [
        ("handler", "ValueError('mapping failed at $.case.date')")
    ] * 2


def test_dead_letter_goes_straight_to_the_dead_letters(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    broker = under_test.open(topology)
    message_id = broker.publish(Outgoing("penalty_case.330100.a", b"bad"))

    def reject(delivery: Delivery) -> None:
        delivery.dead_letter("target rejected: 处罚决定日期 missing", "deliver")

    collect_all(broker, "national", 1, settle=reject)
    assert nothing_arrives(broker, "national", 0.6) == []  # no retry tier
    [dead] = broker.dead_letters("national")
    assert dead.message.id == message_id
    assert dead.reason == "target rejected: 处罚决定日期 missing"
    assert dead.message.attempts == 1
    [failure] = dead.message.history
    assert (failure.attempt, failure.stage, failure.permanent) == (1, "deliver", True)


def test_exhausted_tiers_and_no_tiers_dead_letter_on_retry(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]}, retry_delays=[])
    broker = under_test.open(topology)
    broker.publish(Outgoing("penalty_case.330100.a", b"x"))
    collect_all(broker, "national", 1, settle=lambda d: d.retry("timeout", "deliver"))
    assert wait_for(lambda: len(broker.dead_letters("national")) == 1)
    [dead] = broker.dead_letters("national")
    assert dead.message.history[0].permanent is False
    assert dead.reason == "timeout"


def test_replay_by_id_reason_and_target_leaves_the_rest(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"alpha": ["a.#"], "beta": ["b.#"]})
    broker = under_test.open(topology)
    reasons = {
        "a1": "HTTP 500 from target",
        "a2": "schema: 处罚种类 not in dictionary",
        "a3": "schema: bad date 2026-02-30",
        "a4": "HTTP 500 from target",
        "b1": "HTTP 500 from target",
    }
    for message_id in reasons:
        broker.publish(
            Outgoing(
                f"{message_id[0]}.330100.src",
                message_id.encode(),
                message_id=message_id,
                idempotency_key=f"key-{message_id}",
            )
        )

    def reject(delivery: Delivery) -> None:
        delivery.dead_letter(reasons[delivery.message.id], "deliver")

    collect_all(broker, "alpha", 4, settle=reject)
    collect_all(broker, "beta", 1, settle=reject)
    assert wait_for(lambda: len(broker.dead_letters()) == 5)

    # Listing filters, non-destructive.
    assert ids(d.message for d in broker.dead_letters("alpha")) == ["a1", "a2", "a3", "a4"]
    assert {d.message.id for d in broker.dead_letters(reason="HTTP 500")} == {"a1", "a4", "b1"}
    assert {d.message.id for d in broker.dead_letters(ids=["a3", "b1", "zz"])} == {"a3", "b1"}
    assert broker.dead_letters(older_than=timedelta(hours=1)) == []
    assert len(broker.dead_letters(older_than=timedelta(0))) == 5
    assert len(broker.dead_letters(limit=2)) == 2
    assert len(broker.dead_letters()) == 5

    assert broker.replay(ids=["a3"]) == ["a3"]
    assert sorted(broker.replay(reason="schema")) == ["a2"]
    assert broker.replay(target="beta") == ["b1"]
    assert broker.replay(ids=["nope"]) == []

    left = broker.dead_letters()
    assert sorted(d.message.id for d in left) == ["a1", "a4"]

    back = {m.id: m for m in collect_all(broker, "alpha", 2)}
    assert set(back) == {"a2", "a3"}
    [beta_back] = collect_all(broker, "beta", 1)
    for message in [*back.values(), beta_back]:
        assert message.attempts == 0
        assert message.idempotency_key == f"key-{message.id}"
        assert message.body == message.id.encode()
        failure, marker = message.history
        assert failure.reason == reasons[message.id]
        assert failure.permanent is True
        assert marker.is_replay
        assert message.last_failure == failure
    assert nothing_arrives(broker, "alpha", 0.3) == []


def test_order_is_kept_within_one_queue(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    broker = under_test.open(topology)
    published = broker.publish_many(
        [Outgoing(f"penalty_case.330100.s{i % 7}", str(i).encode()) for i in range(150)]
    )
    published += [
        broker.publish(Outgoing("penalty_case.330100.x", str(i).encode())) for i in range(50)
    ]
    published += broker.publish_many(
        [Outgoing("penalty_case.330100.y", str(i).encode()) for i in range(100)]
    )
    got = collect_all(broker, "national", 300, prefetch=20)
    assert ids(got) == published


@pytest.mark.slow
def test_ten_thousand_messages_none_lost_none_duplicated(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"], "hangzhou": ["*.330100.*"]})
    broker = under_test.open(topology)
    total = 10_000
    published: list[str] = []
    for start in range(0, total, 500):
        published += broker.publish_many(
            [
                Outgoing(f"penalty_case.{330100 + (i % 2) * 100}.dept", f'{{"n":{i}}}'.encode())
                for i in range(start, start + 500)
            ]
        )
    assert len(set(published)) == total

    # Two competing consumers on one target, one on the other: all share one broker.
    got: dict[str, list[str]] = {"national": [], "hangzhou": []}
    lock = threading.Lock()
    stop = threading.Event()
    wanted = {"national": total, "hangzhou": total // 2}

    def handler_for(target: str) -> object:
        def handle(delivery: Delivery) -> None:
            with lock:
                got[target].append(delivery.message.id)
                if all(len(got[t]) >= n for t, n in wanted.items()):
                    stop.set()
            delivery.ack()

        return handle

    threads = [
        threading.Thread(
            target=broker.consume,
            args=(target, handler_for(target)),
            kwargs={"stop": stop},
        )
        for target in ("national", "national", "hangzhou")
    ]
    for thread in threads:
        thread.start()
    stop.wait(120)
    stop.set()
    for thread in threads:
        thread.join(30)

    assert len(got["national"]) == total
    assert set(got["national"]) == set(published)
    assert len(got["hangzhou"]) == total // 2
    assert set(got["hangzhou"]) == set(published[0::2])
    assert broker.depth("national") == broker.depth("hangzhou") == 0
    assert nothing_arrives(broker, "national", 0.3) == []


def test_quarantine_keeps_body_reason_source_and_headers(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    broker = under_test.open(topology)
    body = '<?xml version="1.0" encoding="gb2312"?><案件>'.encode("gb18030") + b"\x00\xff"
    reason = "malformed XML at line 1, column 47: premature end of data"
    quarantine_id = broker.quarantine(
        body,
        reason,
        source="dept_scjg",
        headers={"content_type": "text/xml", "remote": "10.0.0.7", "size": len(body)},
    )
    second = broker.quarantine(b"{}", "missing field 处罚文书号", source="grassroots")
    assert quarantine_id != second

    fresh = under_test.open(topology)
    kept = fresh.quarantined()
    assert [q.id for q in kept] == [quarantine_id, second]
    first = kept[0]
    assert first.body == body
    assert first.reason == reason
    assert first.source == "dept_scjg"
    assert dict(first.headers) == {
        "content_type": "text/xml",
        "remote": "10.0.0.7",
        "size": len(body),
    }
    assert kept[1].reason == "missing field 处罚文书号"
    assert len(fresh.quarantined(limit=1)) == 1
    assert len(fresh.quarantined()) == 2  # listing is not destructive
    assert fresh.depth("national") == 0  # a quarantined payload never reaches a target


def test_forgetting_quarantined_payloads_removes_only_those(under_test: BusUnderTest) -> None:
    # A hub whose quarantine moved to its store takes the old queue over, then forgets it.
    topology = under_test.topology({"national": ["penalty_case.#"]})
    broker = under_test.open(topology)
    kept = [broker.quarantine(f"<{n}/>".encode(), f"bad {n}", source="dept") for n in range(3)]
    assert broker.forget_quarantined([kept[0], kept[2], "never-kept"]) == [kept[0], kept[2]]
    (left,) = under_test.open(topology).quarantined()
    assert (left.id, left.body, left.reason) == (kept[1], b"<1/>", "bad 1")
    assert broker.forget_quarantined([kept[0]]) == []  # forgetting twice removes nothing


def test_id_idempotency_key_and_headers_survive_every_move(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]}, retry_delays=[0.2])
    broker = under_test.open(topology)
    sent = Outgoing(
        "penalty_case.330100.dept_scjg",
        b'{"x": "\xe5\xa4\x84"}',
        headers={"tenant": "zj", "schema_version": 3},
        message_id="case-2026-000123",
        idempotency_key="dept_scjg:CF2026-77:u",
        content_type="application/cloudevents+json",
    )
    assert broker.publish(sent) == "case-2026-000123"
    stages: list[Message] = []

    def move(delivery: Delivery) -> None:
        stages.append(delivery.message)
        if len(stages) == 1:
            delivery.retry("timeout", "deliver")  # to the retry tier and back
        elif len(stages) == 2:
            delivery.dead_letter("rejected", "deliver")  # to the dead letters
        else:
            delivery.ack()

    collect_all(broker, "national", 2, settle=move)
    assert wait_for(lambda: len(broker.dead_letters("national")) == 1)
    stages.append(broker.dead_letters("national")[0].message)
    assert broker.replay("national") == ["case-2026-000123"]
    collect_all(broker, "national", 1, settle=move)

    assert len(stages) == 4
    for message in stages:
        assert message.id == "case-2026-000123"
        assert message.idempotency_key == "dept_scjg:CF2026-77:u"
        assert message.routing_key == sent.routing_key
        assert message.body == sent.body
        assert dict(message.headers) == {"tenant": "zj", "schema_version": 3}
        assert message.content_type == "application/cloudevents+json"
        assert message.published_at == stages[0].published_at
    assert [len(m.history) for m in stages] == [0, 1, 2, 3]


def test_requeue_gives_the_message_back_as_redelivered(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    broker = under_test.open(topology)
    message_id = broker.publish(Outgoing("penalty_case.330100.a", b"x"))
    first = collect_all(broker, "national", 1, settle=lambda d: d.requeue())
    again = collect_all(broker, "national", 1)
    assert ids(first) == ids(again) == [message_id]
    assert (first[0].redelivered, again[0].redelivered) == (False, True)
    assert again[0].attempts == 0


def test_settling_twice_raises_and_keeps_the_first_settlement(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    broker = under_test.open(topology)
    broker.publish(Outgoing("penalty_case.330100.a", b"x"))
    errors: list[Exception] = []

    def twice(delivery: Delivery) -> None:
        delivery.ack()
        try:
            delivery.dead_letter("late", "deliver")
        except SettleError as exc:
            errors.append(exc)

    collect_all(broker, "national", 1, settle=twice)
    assert len(errors) == 1 and "already settled" in str(errors[0])
    assert broker.dead_letters() == []
    assert nothing_arrives(broker, "national", 0.3) == []


def test_a_handler_returning_unsettled_is_retried_not_lost(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]}, retry_delays=[0.2])
    broker = under_test.open(topology)
    broker.publish(Outgoing("penalty_case.330100.a", b"x"))
    seen = collect_all(broker, "national", 2, settle=lambda d: None)
    assert [m.attempts for m in seen] == [0, 1]
    assert wait_for(lambda: len(broker.dead_letters()) == 1)
    assert "without" in broker.dead_letters()[0].reason


def test_declare_is_idempotent_and_keeps_messages(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    broker = under_test.open(topology)
    message_id = broker.publish(Outgoing("penalty_case.330100.a", b"x"))
    broker.declare(topology)
    under_test.open(topology).declare(topology)
    assert broker.depth("national") == 1
    assert ids(collect_all(broker, "national", 1)) == [message_id]


def test_unknown_target_and_undeclared_broker_raise_topology_error(
    under_test: BusUnderTest,
) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    bare = under_test.connect()
    with pytest.raises(TopologyError, match="declare"):
        bare.publish(Outgoing("penalty_case.330100.a", b"x"))
    broker = under_test.open(topology)
    with pytest.raises(TopologyError, match="nowhere"):
        broker.depth("nowhere")
    with pytest.raises(TopologyError, match="nowhere"):
        broker.consume("nowhere", lambda d: d.ack(), stop=threading.Event())


def test_dead_letters_survive_a_new_connection(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    broker = under_test.open(topology)
    broker.publish(Outgoing("penalty_case.330100.a", b"x", message_id="kept"))
    collect_all(broker, "national", 1, settle=lambda d: d.dead_letter("no", "deliver"))
    broker.close()
    fresh = under_test.open(topology)
    assert wait_for(lambda: [d.message.id for d in fresh.dead_letters()] == ["kept"])
    assert collect(fresh, "national", 1, timeout=0.3) == []


def test_closing_the_broker_stops_its_consumer_and_loses_nothing(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]})
    broker = under_test.open(topology)
    published = broker.publish_many([Outgoing("penalty_case.1.a", b"x") for _ in range(20)])
    acked: list[str] = []
    raised: list[BaseException] = []
    five_done = threading.Event()

    def slow_ack(delivery: Delivery) -> None:
        time.sleep(0.02)
        delivery.ack()
        acked.append(delivery.message.id)
        if len(acked) == 5:
            five_done.set()

    def consume() -> None:
        try:
            broker.consume("national", slow_ack, stop=threading.Event(), prefetch=5)
        except BaseException as exc:
            raised.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert five_done.wait(10)
    broker.close()
    consumer.join(15)
    assert not consumer.is_alive(), "consume() did not return after close()"
    assert raised == []

    fresh = under_test.open(topology)
    rest = ids(collect(fresh, "national", len(published) - len(acked), timeout=5))
    rest += ids(nothing_arrives(fresh, "national", 0.3))  # the one acked during close, maybe
    assert set(acked) | set(rest) == set(published)  # none lost
    assert len(set(acked) & set(rest)) <= 1  # at most the one being acked during close


def test_queue_stats_count_ready_in_flight_retrying_and_dead(under_test: BusUnderTest) -> None:
    topology = under_test.topology(
        {"national": ["penalty_case.#"], "idle": ["nothing.#"]}, retry_delays=[60], prefetch=1
    )
    broker = under_test.open(topology)
    broker.publish_many([Outgoing("penalty_case.330100.a", b"x") for _ in range(5)])
    settles = iter(
        [
            lambda d: d.dead_letter("HTTP 400", "deliver"),
            lambda d: d.retry("HTTP 503", "deliver"),
        ]
    )
    collect_all(broker, "national", 2, settle=lambda d: next(settles)(d), prefetch=1)

    fresh = under_test.open(topology)
    assert wait_for(lambda: fresh.queue_stats("national").ready == 3)
    stats = fresh.queue_stats("national")
    assert (stats.target, stats.retrying, stats.dead) == ("national", 1, 1)
    assert stats.in_flight in (None, 0) and stats.consumers in (None, 0)

    # A consumer holding one message: it is in flight, no longer ready.
    holding, release, stop = threading.Event(), threading.Event(), threading.Event()

    def hold(delivery: Delivery) -> None:
        holding.set()
        release.wait(10)
        delivery.requeue()
        stop.set()

    consumer = threading.Thread(
        target=broker.consume, args=("national", hold), kwargs={"stop": stop, "prefetch": 1}
    )
    consumer.start()
    try:
        assert holding.wait(10)
        assert wait_for(lambda: fresh.queue_stats("national").ready == 2)
        stats = fresh.queue_stats("national")
        assert stats.in_flight in (None, 1) and stats.consumers in (None, 1)
    finally:
        release.set()
        consumer.join(10)

    both = fresh.queue_stats_many(["idle", "national"])
    assert [s.target for s in both] == ["idle", "national"]
    assert (both[0].ready, both[0].retrying, both[0].dead) == (0, 0, 0)
    assert wait_for(lambda: fresh.queue_stats("national").ready == 3)
    with pytest.raises(TopologyError):
        fresh.queue_stats("nowhere")


def test_postpone_waits_in_a_tier_without_counting_an_attempt(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]}, retry_delays=[0.2, 0.3])
    broker = under_test.open(topology)
    message_id = broker.publish(Outgoing("penalty_case.330100.a", b"x"))
    # Postponed twice before any attempt, once after the first failure: only retries count.
    plan = iter(["postpone", "postpone", "retry", "postpone", "retry", "retry"])
    seen: list[Message] = []

    def settle(delivery: Delivery) -> None:
        seen.append(delivery.message)
        if next(plan) == "postpone":
            delivery.postpone("circuit breaker open", "deliver")
        else:
            delivery.retry(f"HTTP 503 after {len(seen)} deliveries", "deliver")

    collect_all(broker, "national", 6, settle=settle, timeout=15)
    assert [m.attempts for m in seen] == [0, 0, 0, 1, 1, 2]
    assert [len(m.history) for m in seen] == [0, 0, 0, 1, 1, 2]
    assert {m.id for m in seen} == {message_id}
    assert wait_for(lambda: len(broker.dead_letters("national")) == 1)
    [dead] = broker.dead_letters("national")
    assert dead.message.attempts == 3
    assert [f.reason for f in dead.message.history] == [
        f"HTTP 503 after {n} deliveries" for n in (3, 5, 6)
    ]


def test_postpone_without_tiers_is_a_failure(under_test: BusUnderTest) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]}, retry_delays=[])
    broker = under_test.open(topology)
    broker.publish(Outgoing("penalty_case.330100.a", b"x"))
    collect_all(broker, "national", 1, settle=lambda d: d.postpone("breaker open", "deliver"))
    assert wait_for(lambda: len(broker.dead_letters("national")) == 1)
    [dead] = broker.dead_letters("national")
    assert dead.reason == "breaker open" and dead.message.attempts == 1


def test_concurrent_handlers_overlap_and_settle_each_delivery_once(
    under_test: BusUnderTest,
) -> None:
    topology = under_test.topology({"national": ["penalty_case.#"]}, retry_delays=[])
    broker = under_test.open(topology)
    sent = broker.publish_many(
        [Outgoing("penalty_case.330100.dept", str(n).encode()) for n in range(200)]
    )
    # The first eight deliveries meet at a barrier: handled one at a time, it would break.
    meeting = threading.Barrier(8)
    lock = threading.Lock()
    settled: dict[str, str] = {}
    stop = threading.Event()

    def handle(delivery: Delivery) -> None:
        number = int(delivery.message.body)
        if number < 8:
            meeting.wait(10)
        if number % 10 == 3:
            delivery.dead_letter("refused", "deliver")  # no tiers: straight to the dead letters
            how = "dead"
        else:
            delivery.ack()
            how = "ack"
        with lock:
            assert delivery.message.id not in settled, "delivered twice"
            settled[delivery.message.id] = how
            if len(settled) == len(sent):
                stop.set()

    timer = threading.Timer(30, stop.set)
    timer.start()
    try:
        broker.consume("national", handle, stop=stop, concurrency=8)
    finally:
        timer.cancel()
    assert not meeting.broken
    assert sorted(settled) == sorted(sent)
    dead = broker.dead_letters("national")
    assert sorted(letter.message.id for letter in dead) == sorted(
        message_id for message_id, how in settled.items() if how == "dead"
    )
    assert len(dead) == 20
    # Every ack reached the broker: a new consumer finds nothing left.
    assert nothing_arrives(under_test.open(topology), "national") == []


def test_what_a_target_held_under_its_old_name_is_consumed_listed_and_replayed_under_its_id(
    under_test: BusUnderTest,
) -> None:
    """Before targets took their system's id, `eco-env-penalty` was the target `eco_env_penalty`;
    what a running broker holds under that name is found after the upgrade, without a rename."""
    routes = {"eco_env_penalty": ["penalty_case.#"]}
    before = under_test.topology(routes, retry_delays=[0.3])
    old = under_test.open(before)
    key = "penalty_case.330100.eco-env-penalty"
    queued, waiting, dead = (old.publish(Outgoing(key, body)) for body in (b"q", b"w", b"d"))
    collect_all(old, "eco_env_penalty", 3, settle=spread(waiting=waiting, dead=dead), prefetch=3)
    old.close()

    after = Topology(
        namespace=before.namespace,
        targets=[Target(name="eco-env-penalty", routes=["penalty_case.#"], retry_delays=[0.3])],
    )
    assert after.target_queue("eco-env-penalty") == before.target_queue("eco_env_penalty")
    broker = under_test.open(after)
    for spelt in (None, "eco-env-penalty", "eco_env_penalty"):
        listed = broker.dead_letters(spelt)
        assert [(d.message.id, d.target) for d in listed] == [(dead, "eco-env-penalty")], spelt
    assert wait_for(lambda: broker.queue_stats("eco_env_penalty").ready >= 1)
    assert broker.queue_stats("eco_env_penalty").target == "eco-env-penalty"
    fresh = broker.publish(Outgoing(key, b"after the upgrade"))
    targets: list[str] = []

    def ack_noting(delivery: Delivery) -> None:
        targets.append(delivery.target)
        delivery.ack()

    got = collect_all(broker, "eco-env-penalty", 3, settle=ack_noting, timeout=10)
    assert sorted(ids(got)) == sorted([queued, waiting, fresh])
    assert set(targets) == {"eco-env-penalty"}
    assert broker.replay("eco-env-penalty") == [dead]
    assert ids(collect_all(broker, "eco-env-penalty", 1)) == [dead]
    assert nothing_arrives(broker, "eco_env_penalty") == []
