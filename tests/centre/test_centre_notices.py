"""The centre's due-soon reminders and overdue escalations (#15.2), on both buses and stores: each
sent once, across worker restarts and a worker dying mid-send, with an injected clock.

The embedded case runs the embedded bus on the SQLite store (a first run), the RabbitMQ case
RabbitMQ on a PostgreSQL store (production). Every notice is read back from the department
system's queue and checked against the standard; none is expected twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from broker_support import drain
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ledger_support import CENTRE, DISPATCHED, ECO, ISSUER, MARKET, Clock, feedback, task, warning
from operator_accounts import READER, write_operators
from prometheus_client.parser import text_string_to_metric_families
from store_support import fresh_store_url
from typer.testing import CliRunner
from worker_harness import Hub, open_hub

from adapters.ingress import Ingress
from adapters.protocols.outbox import StoredOutbox
from adapters.routing import Directory
from bus import Broker
from centre.api import centre_router
from centre.deadlines import DeadlineRules, DeadlinesFileError
from centre.ledger import CentreCollector, Ledger, departments_by_system
from centre.notices import NOTICE_LEASE_S, NoticeScanner
from hub import cli
from hub.systems import SystemsConfig
from monitor.journal import Journal
from monitor.metrics import exposition, scrape_registry
from monitor.observer import Observer
from monitor.operators import OperatorGate, load_operators
from standard.datasets.supervision_notice import ESCALATION, REMINDER
from standard.envelope import Envelope
from store import Store

BACKENDS = [
    pytest.param("embedded", id="embedded"),
    pytest.param("rabbitmq", id="rabbitmq", marks=[pytest.mark.rabbitmq, pytest.mark.postgresql]),
]
STORE_BACKEND = {"embedded": "sqlite", "rabbitmq": "postgresql"}
TARGET = "market-penalty"
NOTICE_ROUTE = "supervision_notice.*.*.market-penalty"


def systems(market_routes: list[str]) -> dict[str, Any]:
    """The centre; market-penalty serving the issuer (浙江省市场监督管理局) and the Xihu bureau,
    taking notices by `market_routes`; eco-env-penalty, which takes no notice."""

    def department(system_id: str, served: list[dict[str, str]], routes: list[str]) -> dict:
        return {
            "id": system_id,
            "name_zh": system_id,
            "departments": served,
            "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"},
            "outbound": {
                "adapter": "outbox",
                "render": {"risk_warning": "cloudevent", "supervision_notice": "cloudevent"},
            },
            "routes": routes,
        }

    return {
        "systems": [
            {
                "id": "collaboration",
                "name_zh": "业务协同中心",
                "departments": [CENTRE],
                "auth": {"scheme": "internal"},
                "collaboration": {"scenarios": {}},
                "routes": ["collaboration_task.*.*.collaboration"],
            },
            department("market-penalty", [ISSUER, MARKET], market_routes),
            department("eco-env-penalty", [ECO], ["risk_warning.*.*.eco-env-penalty"]),
        ]
    }


@dataclass
class Centre:
    """A bus, a store, the ledger with its clock, and the centre's inbound path on the bus."""

    hub: Hub
    store: Store
    config: SystemsConfig
    clock: Clock
    ledger: Ledger
    journal: Journal
    broker: Broker
    publisher: Ingress

    def scanner(self, owner: str) -> NoticeScanner:
        """A scanner as a worker starts one (a new `owner`: a restarted worker)."""
        centre = self.config.system("collaboration")
        return NoticeScanner(self.ledger, self.publisher, centre, self.config.systems, owner=owner)

    def published(self, system: str, envelope: Envelope) -> None:
        """What `system` published reaches the ledger (as the hub's observer feeds it)."""
        self.ledger.record(self.ledger.steps_published(system, envelope))

    def received(self, count: int) -> list[tuple[str, Envelope]]:
        """The `count` notices market-penalty's queue holds (routing key, envelope, checked
        against the standard), and nothing more."""
        got = drain(self.broker, TARGET, count)
        assert len(got) == count, [m.routing_key for m in got]
        assert self.broker.queue_stats(TARGET).ready == 0, "a notice arrived more often"
        return [
            (m.routing_key, Envelope.from_amqp(
                {"headers": dict(m.headers), "content_type": m.content_type}, m.body
            ))
            for m in got
        ]  # fmt: skip

    def row(self, item_id: str, department: dict[str, str] = MARKET) -> dict[str, Any]:
        found = self.ledger.item(item_id)
        assert found is not None, item_id
        (mine,) = [r for r in found["rows"] if r["department"] == department["credit_code"]]
        return mine

    def timeline(self, item_id: str, *events: str) -> list[dict[str, Any]]:
        found = self.ledger.item(item_id)
        assert found is not None, item_id
        return [e for e in found["timeline"] if e["event"] in events]


@pytest.fixture(params=BACKENDS)
def centre(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Centre]:
    with (
        open_hub(request.param, tmp_path) as hub,
        fresh_store_url(STORE_BACKEND[request.param], tmp_path) as url,
    ):
        store = Store.open(url, migrate=True)
        if request.param == "rabbitmq":
            hub.overrides["database_url"] = url
        config = hub.configure(systems(["risk_warning.*.*.market-penalty", NOTICE_ROUTE]))
        clock = Clock(DISPATCHED)
        ledger = Ledger(store, departments=departments_by_system(config.systems), clock=clock)
        journal = Journal(store)
        broker = hub.broker()
        publisher = Ingress(
            broker,
            {},
            observer=Observer(config.topology(hub.namespace), journal),
            directory=Directory(config.systems),
        )
        try:
            yield Centre(hub, store, config, clock, ledger, journal, broker, publisher)
        finally:
            hub.stop_workers()
            journal.close()
            store.close()


def hours(count: float) -> dt.timedelta:
    return dt.timedelta(hours=count)


def test_centre_reminder_sent_once_across_worker_restarts(centre: Centre) -> None:
    centre.published("national", warning("YJ-C", level="C"))  # due in 3 days
    due = DISPATCHED + dt.timedelta(days=3)
    first = centre.scanner("worker-1")

    centre.clock.now = due - hours(13)  # the lead time of warnings is 12 hours
    assert first.scan().sent == 0
    centre.clock.now = due - hours(6)
    assert first.scan().sent == 1
    assert first.scan().sent == 0
    centre.clock.now = due - hours(5)
    assert centre.scanner("worker-1-restarted").scan().sent == 0

    ((key, notice),) = centre.received(1)
    assert key == "supervision_notice.330106.collaboration.market-penalty"
    data = notice.data
    assert (data["notice_type"], data["item_kind"], data["item_id"]) == (REMINDER, "1", "YJ-C")
    assert data["addressee"] == MARKET and data["department"] == MARKET
    assert data["notice_id"] == f"DB-YJ-C-{MARKET['credit_code']}-1"
    assert dt.datetime.fromisoformat(data["due_time"]) == due
    assert dt.datetime.fromisoformat(data["sent_time"]) == due - hours(6)
    assert "将于2026-03-05 09:00到期" in data["content"] and data["region_code"] == "330106"

    row = centre.row("YJ-C")
    assert row["reminded_at"] == (due - hours(6)).astimezone(dt.UTC).isoformat()
    assert row["escalated_at"] is None and row["state"] == "dispatched"
    (reminded,) = centre.timeline("YJ-C", "reminded")
    assert reminded["message_id"] == notice.id
    assert reminded["detail"]["system"] == "market-penalty"
    steps = [entry.step for entry in centre.journal.trace(notice.id)]
    assert "received" in steps and "published" in steps, steps


def test_centre_overdue_escalation_to_the_issuer_sent_once_across_worker_restarts(
    centre: Centre, tmp_path: Path
) -> None:
    centre.published("national", warning("YJ-D", level="D"))  # due in a day
    centre.ledger.record(centre.ledger.steps_delivered(TARGET, warning("YJ-D", level="D")))
    due = DISPATCHED + dt.timedelta(days=1)

    centre.clock.now = due + hours(2)  # never reminded in time: only the escalation
    report = centre.scanner("worker-1").scan()
    assert (report.sent, report.not_sendable) == (1, 0)
    centre.clock.now = due + hours(30)
    assert centre.scanner("worker-2").scan().sent == 0

    ((key, notice),) = centre.received(1)
    assert key == "supervision_notice.330106.collaboration.market-penalty"
    assert notice.data["notice_type"] == ESCALATION
    assert notice.data["addressee"] == ISSUER and notice.data["department"] == MARKET
    assert notice.data["state"] == "delivered" and "超期未反馈" in notice.data["content"]
    row = centre.row("YJ-D")
    assert row["overdue"] and row["reminded_at"] is None
    assert row["escalated_at"] == (due + hours(2)).astimezone(dt.UTC).isoformat()

    # The item view over HTTP and the command line show it, the metric counts it once.
    app = FastAPI()
    app.include_router(
        centre_router(centre.ledger, gate=OperatorGate(load_operators(write_operators(tmp_path))))
    )
    shown = TestClient(app).get("/centre/items/YJ-D", auth=READER).json()
    assert shown["rows"][0]["escalated_at"] == row["escalated_at"]
    assert [e["event"] for e in shown["timeline"]] == ["dispatched", "delivered", "escalated"]
    env = {"JGHUB_DATABASE_URL": centre.hub.overrides.get("database_url", "")}
    printed = CliRunner().invoke(
        cli.app, ["centre", "show", "YJ-D", "--json", "--data-dir", str(tmp_path)], env=env
    )
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output)["rows"][0]["escalated_at"] == row["escalated_at"]
    body, _ = exposition(scrape_registry(CentreCollector(centre.ledger)))
    (family,) = [
        f for f in text_string_to_metric_families(body.decode()) if f.name == "jghub_centre_notices"
    ]
    assert [(s.name, s.labels, s.value) for s in family.samples] == [
        (
            "jghub_centre_notices_total",
            {"kind": "warning", "department": MARKET["name"], "notice_type": "escalation"},
            1.0,
        )
    ]


def test_centre_claim_of_a_crashed_worker_taken_over_with_the_same_notice_id(
    centre: Centre,
) -> None:
    centre.published("national", warning("YJ-B", level="B"))
    centre.clock.now = crashed_at = DISPATCHED + dt.timedelta(days=8)
    dying = centre.scanner("worker-dies")
    (due,) = dying.due(crashed_at)
    envelope = dying.notice(due, crashed_at)
    claim = dying.claim(due, envelope, dying.addressed_to(envelope), crashed_at)
    assert claim is not None and dying.publish(claim)
    # ... and the worker dies before it marks the notice sent.

    survivor = centre.scanner("worker-survives")
    centre.clock.now = crashed_at + dt.timedelta(seconds=NOTICE_LEASE_S / 2)
    report = survivor.scan()
    assert (report.sent, report.held) == (0, 1)  # the lease still holds
    centre.clock.now = crashed_at + dt.timedelta(seconds=NOTICE_LEASE_S + 1)
    assert survivor.scan().sent == 1
    assert not dying.settle(claim)  # too late: the survivor took it over
    assert survivor.scan().sent == 0

    (_, first), (_, again) = centre.received(2)
    assert first.id == again.id == envelope.id
    assert first.idempotencykey == again.idempotencykey == envelope.idempotencykey
    assert first.data["notice_id"] == again.data["notice_id"] == due.notice_id
    assert dt.datetime.fromisoformat(again.data["sent_time"]) == crashed_at
    (escalated,) = centre.timeline("YJ-B", "escalated")
    assert escalated["message_id"] == envelope.id


def test_centre_publish_not_confirmed_is_sent_on_the_next_scan(centre: Centre) -> None:
    centre.published("collaboration", task("1", task_id="RW-N"))  # 15 days, dispatcher: centre
    centre.clock.now = DISPATCHED + dt.timedelta(days=14, hours=12)  # within the day before
    scanner = centre.scanner("worker-1")
    centre.publisher.attach(None)  # the bus is gone
    report = scanner.scan()
    assert (report.sent, report.failed) == (0, 1)
    assert centre.row("RW-N")["reminded_at"] is None
    centre.publisher.attach(centre.broker)
    assert scanner.scan().sent == 1
    ((_, notice),) = centre.received(1)
    assert notice.data["item_kind"] == "2" and notice.data["addressee"] == MARKET


def test_centre_fed_back_item_gets_no_overdue_escalation(centre: Centre) -> None:
    centre.published("national", warning("YJ-F", level="D"))
    centre.published("market-penalty", feedback("5", DISPATCHED + hours(20), warning_id="YJ-F"))
    centre.clock.now = DISPATCHED + dt.timedelta(days=3)
    report = centre.scanner("worker-1").scan()
    assert (report.sent, report.not_sendable, report.failed) == (0, 0, 0)
    row = centre.row("YJ-F")
    assert row["state"] == "fed_back" and not row["overdue"] and row["escalated_at"] is None
    assert centre.received(0) == []


def test_centre_overdue_notice_nobody_can_take_is_not_sendable_and_logged_once(
    centre: Centre, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="centre.notices")
    centre.published("collaboration", task("1", task_id="RW-C"))  # the centre dispatched it
    # Due at day 16 12:00, reminded from midnight: to ECO, whose system takes no notice.
    issued = DISPATCHED + dt.timedelta(days=13, hours=12)
    centre.published("national", warning("YJ-E", level="C", department=ECO, issued=issued))
    centre.clock.now = DISPATCHED + dt.timedelta(days=16)
    first = centre.scanner("worker-1")
    report = first.scan()
    assert (report.sent, report.not_sendable) == (0, 2)
    assert first.scan().not_sendable == 0  # not tried on every scan
    restarted = centre.scanner("worker-1-restarted").scan()  # looked at again, nothing new
    assert (restarted.sent, restarted.not_sendable) == (0, 2)

    reasons = [r.getMessage() for r in caplog.records if "cannot be sent" in r.getMessage()]
    assert len(reasons) == 2, reasons
    (own,) = [r for r in reasons if "RW-C" in r]
    assert "is the hub's own collaboration centre" in own
    (unrouted,) = [r for r in reasons if "YJ-E" in r]
    assert f"eco-env-penalty serves '{ECO['name']}'" in unrouted
    assert "'supervision_notice.*.*.eco-env-penalty'" in unrouted
    (kept,) = centre.timeline("RW-C", "not_sendable")
    assert (
        kept["detail"]["notice"] == "escalation"
        and "collaboration centre" in kept["detail"]["reason"]
    )
    assert centre.row("RW-C")["escalated_at"] is None
    assert centre.received(0) == []


def test_centre_worker_sends_an_overdue_escalation_once_across_restarts(centre: Centre) -> None:
    # The worker runs on the real clock: a warning of March 2026 is long overdue.
    issued = warning("YJ-W", level="C")
    centre.published("national", issued)
    centre.hub.overrides["centre_scan_s"] = 0.1
    outbox = StoredOutbox(centre.store)

    def notices() -> list[Any]:
        lease = outbox.pull("market-penalty", limit=10, lease_s=0.01)
        return [item for item in lease.items if item.dataset == "supervision_notice"]

    centre.hub.start_worker(pollers=False)
    centre.hub.wait(lambda: centre.row("YJ-W")["escalated_at"] is not None)
    centre.hub.wait(lambda: len(notices()) == 1)
    centre.hub.stop_workers()
    centre.hub.start_worker(pollers=False)
    time.sleep(1.0)  # ten scans of the restarted worker (the deadline itself is long past)
    centre.hub.stop_workers()
    (delivered,) = notices()
    assert delivered.subject == f"DB-YJ-W-{MARKET['credit_code']}-2"
    assert len(centre.timeline("YJ-W", "escalated")) == 1


def test_centre_misconfigured_reminders_refused_with_their_message(tmp_path: Path) -> None:
    bad = tmp_path / "deadlines.yaml"
    bad.write_text(
        "reminders:\n  task: {hours: 12, days: 1}\n  warning: {weeks: 1}\n  default: {hours: 0}\n"
    )
    with pytest.raises(DeadlinesFileError) as raised:
        DeadlineRules.load(bad)
    text = str(raised.value)
    assert str(bad) in text
    assert "reminders.task: Value error, give the lead time in hours or in days" in text
    assert "reminders.warning.weeks: Extra inputs are not permitted" in text
    assert "reminders.default.hours: Input should be greater than 0" in text
    shipped = DeadlineRules.load(Path("config/deadlines.yaml")).reminders
    assert (str(shipped.lead("warning")), str(shipped.lead("task"))) == ("12 hours", "2 days")
