"""The monitor wired into a real hub: a push is traced, counted, delivered, dead-lettered, replayed.

A real uvicorn server (tests/support/hub_harness.py), a real worker delivering to the outbox,
and the journal they share in the data folder; on the embedded bus and on RabbitMQ.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub_harness import (
    APP_KEY,
    BACKENDS,
    ECO_KEY,
    GRASSROOTS_SECRET,
    RunningHub,
    request_time,
    running_hub,
    sample,
)
from lxml import etree
from operator_accounts import OPERATOR, write_operators
from prometheus_client.parser import text_string_to_metric_families

from bus import Outgoing
from hub.worker import Worker

TARGET = "grassroots-platform"  # eco-env-penalty's penalty cases go to the grassroots outbox


def _grassroots_headers() -> dict[str, str]:
    at = request_time()
    sign = hashlib.md5(f"{APP_KEY}{GRASSROOTS_SECRET}{at}".encode()).hexdigest()
    return {"X-App-Key": APP_KEY, "X-Request-Time": at, "X-Sign": sign}


def _metrics(hub: RunningHub) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = hub.client.get("/metrics")
    assert answer.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def _eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture(params=BACKENDS)
def hub(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningHub]:
    monkeypatch.setenv("JGHUB_OPERATORS_FILE", str(write_operators(tmp_path)))
    monkeypatch.setenv("JGHUB_JOURNAL__FLUSH_INTERVAL_S", "0.05")
    with running_hub(tmp_path, request.param, monkeypatch=monkeypatch) as running:
        yield running


@pytest.fixture
def worker(hub: RunningHub) -> Iterator[None]:
    stop = threading.Event()
    running = Worker(hub.settings, targets=["grassroots-platform"], pollers=False)
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_push_is_traced_counted_and_delivered(hub: RunningHub, worker: None) -> None:
    queue_key = ("jghub_queue_messages", (("state", "ready"), ("target", TARGET)))
    received_key = (
        "jghub_payloads_received_total",
        (("message_type", "case_batch"), ("system", "eco-env-penalty")),
    )
    before = _metrics(hub)
    assert before[("jghub_broker_up", ())] == 1.0
    assert queue_key in before

    answer = hub.client.post(
        "/systems/eco-env-penalty/xml/case_batch",
        content=sample("eco-env-penalty", "case_batch", "invalid-records"),
        headers={"X-Api-Key": ECO_KEY, "Content-Type": "application/xml; charset=gb2312"},
    )
    assert answer.status_code == 200, answer.text
    result = etree.fromstring(answer.content)  # this channel answers <IngressResult> XML
    (message_id,) = result.xpath("//record[@status='accepted']/message_id/text()")
    receipt = result.findtext("receipt_id")

    mine = {"X-Api-Key": ECO_KEY}

    def delivered() -> list[str]:
        steps = hub.client.get(f"/messages/{message_id}", headers=mine).json()["steps"]
        names = [s["step"] for s in steps]
        return names if "delivered" in names else []

    assert _eventually(delivered) == ["received", "published", "delivered"]
    steps = hub.client.get(f"/messages/{message_id}", headers=mine).json()["steps"]
    assert steps[-1]["target"] == TARGET and steps[-1]["attempt"] == 1
    assert steps[0]["detail"]["optional"] == 34

    whole = hub.client.get(f"/messages/{receipt}", headers=mine).json()["steps"]
    assert sorted(s["step"] for s in whole[:5]) == [
        "published", "received", "rejected", "rejected", "rejected",
    ]  # fmt: skip
    assert {s["detail"].get("rule") for s in whole if s["step"] == "rejected"} == {
        "mandatory",
        "date 'yyyyMMdd'",
        "lookup values",
    }

    other = hub.client.get(f"/messages/{message_id}", headers=_grassroots_headers())
    assert other.status_code == 404  # grassroots did not send it: as if it did not exist
    anonymous = hub.client.get(f"/messages/{message_id}")
    assert anonymous.status_code == 401

    after = _metrics(hub)
    assert after[received_key] == before.get(received_key, 0.0) + 1
    delivered_key = (
        "jghub_delivered_total",
        (("dataset", "penalty_case"), ("target", TARGET)),
    )
    assert after.get(delivered_key, 0.0) >= 1.0  # the worker counts in this process too


def test_dead_letters_are_listed_and_replayed_over_http(hub: RunningHub, worker: None) -> None:
    broker = hub.broker()
    (junk,) = broker.publish_many([Outgoing("penalty_case.330100.eco-env-penalty", b"not json")])

    def listed() -> list[dict[str, Any]]:
        answer = hub.client.get("/dead-letters", params={"target": TARGET}, auth=OPERATOR)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["dead_letters"]
        return found

    (dead,) = _eventually(listed)
    assert dead["message_id"] == junk
    assert "not a canonical envelope" in dead["reason"]
    assert dead["history"][-1]["stage"] == "decode"
    assert hub.client.get("/dead-letters", auth=(OPERATOR[0], "wrong")).status_code == 401
    one = hub.client.get(f"/dead-letters/{junk}", auth=OPERATOR).json()
    assert one[0]["body"] == "not json"

    ask: dict[str, Any] = {"target": TARGET, "why": "no"}
    assert hub.client.post("/dead-letters/replay", json=ask, auth=OPERATOR).status_code == 400
    ask["why"] = "decoder fixed, try again"
    dry = hub.client.post("/dead-letters/replay", json={**ask, "dry_run": True}, auth=OPERATOR)
    assert dry.status_code == 200 and dry.json()["replayed"] == []
    assert [d["message_id"] for d in dry.json()["matched"]] == [junk]
    done = hub.client.post("/dead-letters/replay", json=ask, auth=OPERATOR).json()
    assert done["replayed"] == [junk] and done["by"] == "ops-li"

    def trace() -> list[dict[str, Any]]:
        answer = hub.client.get(f"/messages/{junk}", headers={"X-Api-Key": ECO_KEY})
        steps: list[dict[str, Any]] = answer.json()["steps"] if answer.status_code == 200 else []
        return steps

    def replayed_and_dead_again() -> list[str]:
        steps = [s["step"] for s in trace()]
        return steps if steps.count("dead_lettered") == 2 else []

    assert _eventually(replayed_and_dead_again) == [
        "dead_lettered", "operator_read", "replayed", "dead_lettered",
    ]  # fmt: skip
    (replay,) = [s for s in trace() if s["step"] == "replayed"]
    assert (replay["reason"], replay["detail"]["by"]) == ("decoder fixed, try again", "ops-li")


def test_ready_checks_every_target_queue(hub: RunningHub) -> None:
    answer = hub.client.get("/ready")
    assert answer.status_code == 200, answer.text
    assert answer.json()["checks"] == {
        "bus": True,
        "publisher": True,
        "topology": True,
        "mappings": True,
    }


def test_metrics_answer_openmetrics_when_asked(hub: RunningHub) -> None:
    answer = httpx.get(
        f"{hub.base_url}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=10
    )
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.rstrip().endswith("# EOF")
