"""The hub's bus on a three-node RabbitMQ cluster: queues replicated on every node, and a
kill -9 of the node leading a target queue in the middle of a stream loses nothing.

The cluster is started for this module (`tests/support/rabbit_cluster.py`: jc1..jc3@localhost
on 5711-5713; the machine's default node is not touched) with the shipped systems' topology.
Skips when RabbitMQ is not installed or the cluster does not form, fails under CI=true.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from rabbit_cluster import Cluster, ctl, running_cluster

import bus
from bus import Delivery, Outgoing, PublishFailed, Topology
from hub.settings import DEFAULT_SYSTEMS_FILE
from hub.systems import load_systems

pytestmark = pytest.mark.rabbitmq

TARGET = "national"
ROUTING_KEY = "penalty_case.330100.dept_scjg"
BATCH = 50
BEFORE_KILL = 1500  # confirmed messages before the leader is killed
AFTER_KILL = 1500  # confirmed messages published after the kill
WAIT_S = 90.0  # only keeps a broken cluster from hanging the suite


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_cluster() as started:
        yield started


@pytest.fixture(scope="module")
def topology(cluster: Cluster) -> Topology:
    """The shipped systems' topology, in a namespace of its own, declared on the cluster."""
    declared = load_systems(DEFAULT_SYSTEMS_FILE).topology(f"t{uuid.uuid4().hex[:12]}")
    with bus.connect(",".join(cluster.urls)) as broker:
        broker.declare(declared)
    return declared


def quorum_queue_names(topology: Topology) -> list[str]:
    names = []
    for target in topology.targets:
        names.append(topology.target_queue(target.name))
        names += [topology.retry_queue(target.name, t) for t in range(len(target.retry_delays))]
    return names


def test_every_target_queue_and_retry_tier_has_members_on_all_three_nodes(
    cluster: Cluster, topology: Topology
) -> None:
    queues = cluster.queues()
    for name in quorum_queue_names(topology):
        assert name in queues, f"{name} was not declared"
        assert queues[name]["type"] == "quorum", queues[name]
        assert sorted(queues[name]["members"]) == cluster.names, queues[name]  # type: ignore[call-overload]
    # The twin: dead letters and the quarantine are classic queues, kept on one node by design
    # (they are browsed, see bus.rabbitmq); the cluster lists them without quorum members.
    for name in (topology.dead_queue(TARGET), topology.quarantine_queue):
        assert queues[name]["type"] == "classic", queues[name]


def connections_by_name(cluster: Cluster) -> dict[str, list[int]]:
    """Server ports of the open client connections, by connection name, on the live nodes."""
    found: dict[str, list[int]] = {}
    for node in cluster.nodes:
        try:
            output = ctl(
                node, "list_connections", "port", "client_properties", "--formatter", "json"
            )
        except Exception:
            continue  # a node that is down lists nothing
        for row in json.loads(output):
            properties = row.get("client_properties") or []
            # The JSON formatter gives client properties as [name, type, value] triples.
            for entry in properties:
                if isinstance(entry, list) and entry and entry[0] == "connection_name":
                    found.setdefault(str(entry[-1]), []).append(int(row["port"]))
        return found
    return found


def test_killing_the_leader_of_a_target_queue_mid_stream_loses_no_confirmed_message(
    cluster: Cluster, topology: Topology, record_property: pytest.RecordProperty
) -> None:
    queue_name = topology.target_queue(TARGET)
    leader = cluster.node(str(cluster.queues()[queue_name]["leader"]))
    # Publisher and consumer start on the leader, so the kill takes their connections too.
    urls = [leader.url] + [n.url for n in cluster.nodes if n is not leader]
    leader_pid = cluster.os_pid(leader)

    consumed: Counter[str] = Counter()
    consumed_lock = threading.Lock()

    def take(delivery: Delivery) -> None:
        with consumed_lock:
            consumed[delivery.message.id] += 1
        delivery.ack()

    options = {"publish_timeout": 60.0, "reconnect_max_delay": 1.0, "connect_timeout": 3.0}
    consumer = bus.connect(",".join(urls), connection_name="fault-con", **options)
    publisher = bus.connect(",".join(urls), connection_name="fault-pub", **options)
    consumer.declare(topology)
    publisher.declare(topology)
    stop = threading.Event()
    consuming = threading.Thread(
        target=consumer.consume, args=(TARGET, take), kwargs={"stop": stop}, daemon=True
    )
    consuming.start()

    confirmed: list[str] = []
    unconfirmed = 0
    killed_at = None
    started = time.monotonic()
    try:
        sequence = 0
        while len(confirmed) < BEFORE_KILL + AFTER_KILL:
            if killed_at is None and len(confirmed) >= BEFORE_KILL:
                assert cluster.kill(leader) == leader_pid
                killed_at = len(confirmed)
            batch = [
                Outgoing(ROUTING_KEY, b"<case n='%d'/>" % (sequence + i)) for i in range(BATCH)
            ]
            sequence += BATCH
            try:
                confirmed += publisher.publish_many(batch)
            except PublishFailed as failed:
                # What was not confirmed was not promised: only confirmed messages must arrive.
                confirmed += failed.published
                unconfirmed += len(failed.failures)
            assert time.monotonic() - started < WAIT_S, "publishing stalled after the kill"
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with consumed_lock:
                if set(confirmed) <= consumed.keys():
                    break
            time.sleep(0.2)
        # The publisher and the consumer each hold a connection to a surviving node.
        survivors = {n.port for n in cluster.nodes if n is not leader}
        connections = connections_by_name(cluster)
    finally:
        stop.set()
        consuming.join(15)
        publisher.close()
        consumer.close()

    with consumed_lock:
        lost = set(confirmed) - consumed.keys()
        duplicates = sum(count - 1 for count in consumed.values())
    elapsed = time.monotonic() - started
    record_property("confirmed", len(confirmed))
    record_property("unconfirmed", unconfirmed)
    record_property("duplicates", duplicates)
    record_property("seconds", round(elapsed, 1))
    print(
        f"cluster fault: killed {leader.name} (pid {leader_pid}) after {killed_at} confirmed; "
        f"{len(confirmed)} confirmed, {unconfirmed} not confirmed, lost {len(lost)}, "
        f"{duplicates} duplicates, {elapsed:.1f} s"
    )
    assert killed_at is not None
    assert not lost, f"{len(lost)} confirmed messages never consumed, e.g. {sorted(lost)[:3]}"
    publisher_ports = connections.get("fault-pub-publisher", [])
    consumer_ports = connections.get(f"fault-con-consumer-{TARGET}", [])
    assert publisher_ports and set(publisher_ports) <= survivors, connections
    assert consumer_ports and set(consumer_ports) <= survivors, connections
