"""The bus data: topology validation, outgoing-message rules, wire headers, connect URLs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pika.data
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bus
from bus import (
    ConfigurationError,
    InvalidMessage,
    Message,
    Outgoing,
    Target,
    Topology,
    TopologyError,
)
from bus.message import (
    HEADER_ATTEMPTS,
    HEADER_HISTORY,
    HEADER_ID,
    HEADERS_MAX_BYTES,
    HISTORY_MAX_ENTRIES,
    REASON_MAX_CHARS,
    from_wire,
    header_bytes,
    header_bytes_at_most,
    wire_headers,
)


def test_topology_defaults_work_and_names_follow_the_scheme() -> None:
    topology = Topology.parse({"targets": [{"name": "national", "routes": ["penalty_case.#"]}]})
    assert topology.namespace == "jghub"
    national = topology.target("national")
    assert national.retry_delays == [10, 60, 600, 3600]
    assert national.prefetch == 50
    assert topology.exchange == "jghub.canonical"
    assert topology.target_queue("national") == "jghub.target.national"
    assert topology.retry_queue("national", 2) == "jghub.retry.national.2"
    assert topology.dead_queue("national") == "jghub.dead.national"
    assert topology.quarantine_queue == "jghub.quarantine"


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ({"targets": [{"name": "Nat-ional", "routes": ["a"]}]}, "targets.0.name"),
        ({"targets": [{"name": "n", "routes": []}]}, "targets.0.routes"),
        ({"targets": [{"name": "n", "routes": ["pen*"]}]}, "'pen*' at position 1"),
        ({"targets": [{"name": "n", "routes": ["a", "a"]}]}, "repeat a pattern"),
        ({"targets": [{"name": "n", "routes": ["a"], "retry_delays": [5, 0]}]}, "retry_delays[1]"),
        ({"targets": [{"name": "n", "routes": ["a"], "prefetch": 0}]}, "targets.0.prefetch"),
        ({"targets": [{"name": "n", "routes": ["a"], "colour": "red"}]}, "targets.0.colour"),
        (
            {"targets": [{"name": "n", "routes": ["a"]}, {"name": "n", "routes": ["b"]}]},
            "repeated: ['n']",
        ),
        ({"namespace": "Has Space", "targets": []}, "namespace"),
    ],
)
def test_a_bad_topology_names_the_field_the_rule_and_the_value(
    data: dict[str, object], complaint: str
) -> None:
    with pytest.raises(TopologyError) as raised:
        Topology.parse(data)
    assert complaint in str(raised.value)
    assert "(got " in str(raised.value)
    assert isinstance(raised.value, ValueError)  # catchable as bad configuration, too


def test_unknown_target_lists_the_known_ones() -> None:
    topology = Topology(targets=[Target(name="national", routes=["#"])])
    with pytest.raises(TopologyError, match=r"unknown target 'nowhere'.*known targets: national"):
        topology.target("nowhere")


def test_a_target_is_named_by_its_system_id_and_its_queues_by_the_old_underscore_name() -> None:
    topology = Topology(targets=[Target(name="eco-env-penalty", routes=["#"])])
    for spelt in ("eco-env-penalty", "eco_env_penalty"):
        assert topology.target(spelt).name == "eco-env-penalty"
        assert topology.target_name(spelt) == "eco-env-penalty"
        assert topology.target_queue(spelt) == "jghub.target.eco_env_penalty"
        assert topology.retry_queue(spelt, 1) == "jghub.retry.eco_env_penalty.1"
        assert topology.dead_queue(spelt) == "jghub.dead.eco_env_penalty"
    assert topology.target_name("gone_system") == "gone_system"  # removed since: as stored
    with pytest.raises(TopologyError, match=r"unknown target 'eco'.*known targets: eco-env-pen"):
        topology.target("eco")


def test_two_targets_whose_queue_names_would_meet_are_refused() -> None:
    with pytest.raises(TopologyError) as raised:
        Topology.parse(
            {
                "targets": [
                    {"name": "eco-env-penalty", "routes": ["a"]},
                    {"name": "national", "routes": ["b"]},
                    {"name": "eco_env_penalty", "routes": ["c"]},
                ]
            }
        )
    assert "two targets would share queues" in str(raised.value)
    assert "eco-env-penalty and eco_env_penalty (both 'eco_env_penalty')" in str(raised.value)


def test_retry_tier_after_each_failure_then_none() -> None:
    target = Target(name="t", routes=["#"], retry_delays=[1, 2, 3])
    assert [target.retry_tier(n) for n in (1, 2, 3, 4, 5)] == [0, 1, 2, None, None]
    assert Target(name="t", routes=["#"], retry_delays=[]).retry_tier(1) is None


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        (lambda: Outgoing("", b"x"), "routing key must not be empty"),
        (lambda: Outgoing("a.*.b", b"x"), "wildcard"),
        (lambda: Outgoing("a.b", "text"), "body must be bytes, got str"),
        (lambda: Outgoing("a.b", b"x", headers={"x-jghub-id": "1"}), "reserved prefix"),
        (
            lambda: Outgoing("a.b", b"x", headers={"when": datetime.now(UTC)}),
            "'when' has a datetime",
        ),
        (lambda: Outgoing("a.b", b"x", message_id=""), "message_id must be 1 to 200"),
        (lambda: Outgoing("a.b", b"x", idempotency_key="k" * 201), "idempotency_key must be"),
    ],
)
def test_an_outgoing_message_breaking_a_rule_says_which(make: object, complaint: str) -> None:
    with pytest.raises(InvalidMessage, match=complaint):
        make()  # type: ignore[operator]


def test_headers_larger_than_the_bound_are_refused_naming_the_largest() -> None:
    # What ingress once wrote: every rejected record's index in one header (30,000 records of
    # a payload), which RabbitMQ refused as a frame too large, closing the connection.
    rejected = ",".join(str(index) for index in range(30_000))
    assert header_bytes({"rejected_records": rejected}) > HEADERS_MAX_BYTES
    with pytest.raises(InvalidMessage, match=r"'rejected_records', takes \d+\)") as refused:
        Outgoing("a.b", b"x", headers={"system": "agri-penalty", "rejected_records": rejected})
    assert f"more than the {HEADERS_MAX_BYTES}" in str(refused.value)
    # Up to the bound is fine: a count and a short excerpt.
    Outgoing("a.b", b"x", headers={"rejected_count": 30_000, "rejected_first": rejected[:200]})


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=40),
        # What pika encodes: it has no float type, and ints up to 64 bits.
        st.one_of(st.text(max_size=200), st.integers(-(2**63), 2**63 - 1), st.booleans()),
        max_size=12,
    )
)
def test_the_header_size_bounds_are_never_below_what_pika_encodes(
    headers: dict[str, str | int | bool],
) -> None:
    pieces: list[bytes] = []
    encoded = pika.data.encode_table(pieces, headers)
    assert header_bytes_at_most(headers) >= header_bytes(headers) >= encoded


def test_a_failure_history_stays_bounded_however_often_a_message_fails() -> None:
    message = Message.first(Outgoing("penalty_case.330100.s", b"{}"))
    answer = "<html>" + "网关错误" * 100_000 + "</html>"  # a target quoting a huge page
    for _ in range(3 * HISTORY_MAX_ENTRIES):
        message = message.with_failure("deliver", answer, permanent=False).replayed()
    assert len(message.history) == HISTORY_MAX_ENTRIES
    last = message.last_failure
    assert last is not None and len(last.reason) <= REASON_MAX_CHARS
    assert last.reason.startswith("<html>网关错误") and f"{len(answer)} characters" in last.reason
    # The newest entries are kept (each replay restarts the attempts at 0).
    assert message.history[-1].is_replay and last.attempt == 1
    # With a publisher's largest headers they still fit RabbitMQ's default frame (128 KiB).
    assert header_bytes(wire_headers(message)) + HEADERS_MAX_BYTES < 128 * 1024


def test_identity_and_history_round_trip_through_wire_headers() -> None:
    first = Message.first(
        Outgoing("penalty_case.330100.s", b"{}", headers={"tenant": "zj", "n": 3, "ok": True})
    )
    assert first.idempotency_key == first.id
    moved = first.with_failure("deliver", "HTTP 503", permanent=False).replayed()
    headers = wire_headers(moved)
    assert headers[HEADER_ID] == first.id
    assert headers[HEADER_ATTEMPTS] == 0
    back = from_wire(
        routing_key=moved.routing_key,
        body=moved.body,
        headers=headers,
        content_type=moved.content_type,
        redelivered=True,
    )
    assert back == Message(
        id=first.id,
        routing_key="penalty_case.330100.s",
        body=b"{}",
        headers={"tenant": "zj", "n": 3, "ok": True},
        idempotency_key=first.id,
        content_type="application/json",
        published_at=first.published_at,
        attempts=0,
        history=moved.history,
        redelivered=True,
    )
    failure, marker = back.history
    assert (failure.attempt, failure.reason, marker.is_replay) == (1, "HTTP 503", True)
    assert back.last_failure == failure
    assert '"HTTP 503"' in str(headers[HEADER_HISTORY])


def test_a_message_published_by_hand_still_reads() -> None:
    message = from_wire(
        routing_key="a.b.c",
        body=b"raw",
        headers={"who": b"ops"},
        content_type=None,
        redelivered=False,
        message_id="amqp-id",
    )
    assert (message.id, message.idempotency_key, message.attempts) == ("amqp-id", "amqp-id", 0)
    assert message.history == ()
    assert message.headers == {"who": "ops"}


def test_connect_refuses_an_unknown_scheme_and_a_url_without_a_file() -> None:
    with pytest.raises(ConfigurationError, match="unsupported broker URL 'redis://x'"):
        bus.connect("redis://x")
    with pytest.raises(ConfigurationError, match="names no file"):
        bus.connect("sqlite://")
    with pytest.raises(ConfigurationError, match="names no file"):
        bus.connect("sqlite:///:memory:?cache=shared")


def test_connect_refuses_an_unknown_embedded_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="poll_intervall"):
        bus.connect(f"sqlite:///{tmp_path}/b.sqlite3", poll_intervall=1)
    with pytest.raises(ConfigurationError, match="poll_interval"):
        bus.connect(f"sqlite:///{tmp_path}/b.sqlite3", poll_interval=-1)


def test_connect_without_url_opens_the_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with bus.connect() as broker:
        broker.declare(Topology(namespace="quick", targets=[Target(name="n", routes=["#"])]))
        broker.publish(Outgoing("a.b.c", b"x"))
        assert broker.depth("n") == 1
    assert (tmp_path / "var" / "bus.sqlite3").exists()
    with bus.connect(f"sqlite:///{Path('var/bus.sqlite3')}") as again:
        again.declare(Topology(namespace="quick", targets=[Target(name="n", routes=["#"])]))
        assert again.depth("n") == 1
