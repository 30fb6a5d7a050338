"""The disposal ledger on both store backends: every state path, joint tasks, arrival out of order,
repeats, steps that do not fit (flagged, kept), and deadlines with an injected clock."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ledger_support import (
    DISPATCHED,
    ECO,
    ISSUER,
    MARKET,
    SHANGHAI,
    Clock,
    feedback,
    ledger_of,
    task,
    warning,
    wrap,
)
from operator_accounts import READER, write_operators
from sqlalchemy import select
from typer.testing import CliRunner

from centre.api import centre_router
from centre.deadlines import Deadline, DeadlineRules, DeadlinesFileError, TaskDeadlines
from centre.ledger import CENTRE_ITEM, RECORD_DEADLINE, CentreCollector, Ledger
from centre.workdays import WorkingCalendar
from hub import cli
from monitor.operators import OperatorGate, load_operators
from standard.datasets.collaboration_task import CollaborationTask
from standard.datasets.complaint import Complaint
from standard.envelope import Envelope, Operation
from store import Store, store_url

MARKET_SYSTEM = "market-penalty"
ECO_SYSTEM = "eco-env-penalty"


@pytest.fixture
def clock() -> Clock:
    return Clock(DISPATCHED)


@pytest.fixture
def ledger(store: Store, clock: Clock) -> Ledger:
    return ledger_of(store, clock)


def publish(ledger: Ledger, system: str, envelope: Envelope) -> None:
    ledger.record(ledger.steps_published(system, envelope))


def deliver(ledger: Ledger, system: str, envelope: Envelope) -> None:
    ledger.record(ledger.steps_delivered(system, envelope))


def row(ledger: Ledger, item_id: str, department: dict[str, str] = MARKET) -> dict:
    found = ledger.item(item_id)
    assert found is not None, f"no ledger rows for {item_id}"
    mine = [r for r in found["rows"] if r["department"] == department["credit_code"]]
    assert len(mine) == 1, found["rows"]
    return mine[0]


def at(hours: float) -> dt.datetime:
    return DISPATCHED + dt.timedelta(hours=hours)


def test_ledger_warning_path_to_closed(ledger: Ledger) -> None:
    issued = warning(level="C")
    publish(ledger, "national", issued)
    assert row(ledger, "YJ-1")["state"] == "dispatched"
    deliver(ledger, MARKET_SYSTEM, issued)
    assert row(ledger, "YJ-1")["state"] == "delivered"
    for step, state in (("2", "accepted"), ("3", "disposing"), ("4", "disposing"),
                        ("5", "fed_back")):  # fmt: skip
        publish(ledger, MARKET_SYSTEM, feedback(step, at(int(step))))
        assert row(ledger, "YJ-1")["state"] == state
    publish(ledger, "national", warning(status="6", changed=at(6)))
    closed = row(ledger, "YJ-1")
    assert closed["state"] == "closed" and closed["flags"] == []
    assert closed["due_rule"] == "level C: 3 calendar days"
    assert closed["due_at"] == (DISPATCHED + dt.timedelta(days=3)).astimezone(dt.UTC).isoformat()
    assert closed["fed_back_at"] == at(5).astimezone(dt.UTC).isoformat()
    shown = ledger.item("YJ-1")
    assert shown is not None
    events = [e["event"] for e in shown["timeline"]]
    assert events == [
        "dispatched", "delivered", "accepted", "disposing", "disposing", "fed_back", "closed",
    ]  # fmt: skip
    assert all(e["message_id"] and e["at"] for e in shown["timeline"])


def test_ledger_task_returned_and_cancelled_paths(ledger: Ledger) -> None:
    publish(ledger, "collaboration", task("1"))
    publish(ledger, MARKET_SYSTEM, task("3", at(2)))
    assert row(ledger, "RW-1")["state"] == "returned"
    publish(ledger, "collaboration", task("1", task_id="RW-2"))
    publish(ledger, "collaboration", wrap_delete("collaboration_task", "RW-2"))
    assert row(ledger, "RW-2")["state"] == "cancelled"


def wrap_delete(dataset: str, key: str) -> Envelope:
    return Envelope.wrap_delete(dataset, key, source="330000/test", time=at(3))


def test_ledger_task_accepted_disposing_fed_back_closed(ledger: Ledger) -> None:
    publish(ledger, "collaboration", task("1"))
    deliver(ledger, MARKET_SYSTEM, task("1"))
    for status, state in (("2", "accepted"), ("4", "disposing"), ("5", "fed_back"),
                          ("6", "closed")):  # fmt: skip
        publish(ledger, MARKET_SYSTEM, task(status, at(int(status))))
        assert row(ledger, "RW-1")["state"] == state
    assert row(ledger, "RW-1")["flags"] == []


def test_ledger_joint_task_one_row_per_assignee(ledger: Ledger) -> None:
    joint = task("1", assignees=[MARKET, ECO])
    publish(ledger, "collaboration", joint)
    deliver(ledger, MARKET_SYSTEM, joint)
    deliver(ledger, ECO_SYSTEM, joint)
    publish(ledger, ECO_SYSTEM, task("5", at(5), assignees=[MARKET, ECO]))
    assert row(ledger, "RW-1", ECO)["state"] == "fed_back"
    assert row(ledger, "RW-1", MARKET)["state"] == "delivered"
    # A market department sending the same task closed moves only its own row.
    publish(ledger, MARKET_SYSTEM, task("6", at(6), assignees=[MARKET, ECO]))
    assert row(ledger, "RW-1", MARKET)["state"] == "closed"
    assert row(ledger, "RW-1", ECO)["state"] == "fed_back"


def test_ledger_a_unit_of_the_assignee_moves_the_assignees_row(ledger: Ledger) -> None:
    """Assigned to the provincial bureau, answered by its district bureau (one system serves
    both): the one row moves, no second row is made and flagged."""
    publish(ledger, "collaboration", task("1", assignees=[ISSUER]))
    deliver(ledger, MARKET_SYSTEM, task("1", assignees=[ISSUER]))
    publish(ledger, MARKET_SYSTEM, task("5", at(5), assignees=[MARKET]))
    found = ledger.item("RW-1")
    assert found is not None and len(found["rows"]) == 1, found["rows"]
    assert row(ledger, "RW-1", ISSUER)["state"] == "fed_back"
    assert row(ledger, "RW-1", ISSUER)["flags"] == []
    publish(ledger, "national", warning("YJ-2", department=ISSUER))
    publish(ledger, MARKET_SYSTEM, feedback("5", at(4), warning_id="YJ-2", department=MARKET))
    fed_back = ledger.item("YJ-2")
    assert fed_back is not None and len(fed_back["rows"]) == 1, fed_back["rows"]
    assert row(ledger, "YJ-2", ISSUER)["state"] == "fed_back"
    # A system serving neither the assignee nor anyone assigned: kept under its own department,
    # flagged (as before).
    publish(ledger, ECO_SYSTEM, task("5", at(6), assignees=[ECO]))
    assert row(ledger, "RW-1", ECO)["flags"]


def test_ledger_feedback_before_delivery_and_repeats(ledger: Ledger) -> None:
    issued = warning()
    publish(ledger, "national", issued)
    done = feedback("5", at(4))
    publish(ledger, MARKET_SYSTEM, done)
    publish(ledger, MARKET_SYSTEM, done)  # the same message again
    deliver(ledger, MARKET_SYSTEM, issued)  # the delivery acknowledgement comes last
    deliver(ledger, MARKET_SYSTEM, issued)
    found = ledger.item("YJ-1")
    assert found is not None
    mine = found["rows"][0]
    assert mine["state"] == "fed_back" and mine["flags"] == []
    assert mine["delivered_at"] is not None
    events = [e["event"] for e in found["timeline"]]
    assert events.count("fed_back") == 1 and events.count("delivered") == 1


def test_ledger_the_same_message_again_is_not_derived_again(store: Store, clock: Clock) -> None:
    """A repeat is told by the event already kept, on both stores: its row is not derived
    again (on PostgreSQL the insert's rowcount said otherwise, and every repeat was)."""
    ledger = ledger_of(store, clock)
    done = feedback("5", at(4))
    publish(ledger, "national", warning())
    publish(ledger, MARKET_SYSTEM, done)
    derived_at = _updated_at(store)
    clock.now = clock.now + dt.timedelta(hours=1)
    publish(ledger, MARKET_SYSTEM, done)
    assert _updated_at(store) == derived_at
    publish(ledger, MARKET_SYSTEM, feedback("5", at(5), feedback_id="FK-YJ-1-again"))
    assert _updated_at(store) > derived_at  # a new message is derived


def _updated_at(store: Store) -> float:
    with store.begin() as db:
        return float(db.execute(select(CENTRE_ITEM.c.updated_at)).scalar_one())


def test_ledger_steps_that_do_not_fit_are_kept_and_flagged(ledger: Ledger) -> None:
    publish(ledger, "collaboration", task("1"))
    publish(ledger, MARKET_SYSTEM, task("6", at(2)))
    publish(ledger, MARKET_SYSTEM, task("2", at(3)))  # accepted after closed
    closed = row(ledger, "RW-1")
    assert closed["state"] == "closed"
    assert [f["reason"] for f in closed["flags"]] == ["accepted after the row was closed"]
    flagged = [e for e in ledger.item("RW-1")["timeline"] if e["flag"]]  # type: ignore[index]
    assert [e["event"] for e in flagged] == ["accepted"]

    publish(ledger, "national", warning("YJ-9"))
    publish(ledger, "national", wrap_delete("risk_warning", "YJ-9"))
    publish(ledger, MARKET_SYSTEM, feedback("5", at(5), warning_id="YJ-9"))
    cancelled = row(ledger, "YJ-9")
    assert cancelled["state"] == "cancelled"
    assert cancelled["flags"][0]["reason"] == "fed_back after the row was cancelled"

    # Feedback for a warning the ledger never saw dispatched: a row, flagged.
    publish(ledger, MARKET_SYSTEM, feedback("2", at(1), warning_id="YJ-UNKNOWN"))
    unknown = row(ledger, "YJ-UNKNOWN")
    assert unknown["state"] == "accepted" and "not seen this item dispatched" in str(
        unknown["flags"]
    )


def test_ledger_overdue_with_an_injected_clock(ledger: Ledger, clock: Clock) -> None:
    publish(ledger, "national", warning("YJ-RED", level="D"))
    publish(ledger, "national", warning("YJ-BLUE", level="A"))
    clock.now = DISPATCHED + dt.timedelta(days=1, seconds=1)
    overdue = ledger.items(overdue=True)
    assert [r["item_id"] for r in overdue] == ["YJ-RED"]
    assert ledger.items(overdue=True, department=MARKET["name"])[0]["overdue"] is True
    publish(ledger, MARKET_SYSTEM, feedback("5", at(30), warning_id="YJ-RED"))
    assert ledger.items(overdue=True) == []  # fed back late: no longer owed
    assert ledger.overdue_counts() == []
    clock.now = DISPATCHED + dt.timedelta(days=16)
    assert [r["item_id"] for r in ledger.items(overdue=True)] == ["YJ-BLUE"]
    assert ledger.overdue_counts() == [("warning", MARKET["name"], 1)]


def test_ledger_deadline_in_working_days_across_national_day(store: Store, clock: Clock) -> None:
    rules = DeadlineRules(task=TaskDeadlines(by_type={"1": Deadline(days=7, count="working")}))
    calendar = WorkingCalendar()
    ledger = ledger_of(store, clock, rules=rules, calendar=calendar)
    sent = dt.datetime(2026, 9, 29, 10, 0, tzinfo=SHANGHAI)
    record = CollaborationTask.model_validate({**task("1").data, "dispatched_time": sent})
    publish(ledger, "collaboration", wrap(record, sent, Operation.INSERT))
    last = calendar.add_working_days(dt.date(2026, 9, 29), 7)
    assert last > dt.date(2026, 10, 8)  # the holiday is not counted
    due = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), SHANGHAI)
    assert row(ledger, "RW-1")["due_at"] == due.astimezone(dt.UTC).isoformat()
    clock.now = due - dt.timedelta(seconds=1)
    assert ledger.items(overdue=True) == []
    clock.now = due + dt.timedelta(seconds=1)
    assert [r["item_id"] for r in ledger.items(overdue=True)] == ["RW-1"]


def test_ledger_deadline_past_the_calendar_is_flagged_not_a_crash(
    store: Store, clock: Clock
) -> None:
    rules = DeadlineRules(task=TaskDeadlines(by_type={"1": Deadline(days=400, count="working")}))
    ledger = ledger_of(store, clock, rules=rules)
    publish(ledger, "collaboration", task("1"))
    kept = row(ledger, "RW-1")
    assert kept["state"] == "dispatched" and kept["due_at"] is None
    assert "2027" in kept["due_error"]


def test_ledger_deadline_the_dispatcher_set_on_the_record_wins_over_the_rules(
    store: Store, clock: Clock
) -> None:
    """A warning's 处置时限 or a task's 办理时限 is what the department was told: the ledger
    holds it to that, and falls back to the rules only where the dispatcher set none."""
    ledger = ledger_of(store, clock, rules=DeadlineRules())
    told = DISPATCHED + dt.timedelta(days=2, hours=3)
    record = CollaborationTask.model_validate({**task("1").data, "deadline": told})
    publish(ledger, "collaboration", wrap(record, DISPATCHED, Operation.INSERT))
    publish(ledger, "collaboration", task("1", task_id="RW-2"))
    with_deadline, without = row(ledger, "RW-1"), row(ledger, "RW-2")
    assert with_deadline["due_rule"] == RECORD_DEADLINE
    assert with_deadline["due_at"] == told.astimezone(dt.UTC).isoformat()
    assert without["due_rule"] == "default: 15 calendar days"
    clock.now = told + dt.timedelta(seconds=1)
    assert [r["item_id"] for r in ledger.items(overdue=True)] == ["RW-1"]


def test_ledger_task_deadline_by_complaint_scenario(store: Store, clock: Clock) -> None:
    rules = DeadlineRules(task=TaskDeadlines(by_scenario={"01": Deadline(days=2)}))
    ledger = ledger_of(store, clock, rules=rules)
    complaint = _complaint()
    publish(ledger, "complaint-platform", wrap(Complaint.model_validate(complaint), DISPATCHED))
    publish(ledger, "collaboration", task("1", task_type="2", source_record_id="TS-1"))
    assert row(ledger, "RW-1")["due_rule"] == "scenario 01: 2 calendar days"
    shown = ledger.item("RW-1")
    assert shown is not None and shown["complaint"] == "TS-1"
    assert "complaint" in {e["kind"] for e in shown["timeline"]}


def _complaint() -> dict:
    sample = Path("mappings/systems/complaint-platform")
    for path in sorted(sample.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        found = _find_complaint(data)
        if found is not None:
            return {**found, "complaint_id": "TS-1", "scenario": "01"}
    pytest.fail("no canonical complaint sample under mappings/systems/complaint-platform")


def _find_complaint(data: object) -> dict | None:
    if isinstance(data, dict):
        if "complaint_id" in data and "scenario" in data:
            return data
        for value in data.values():
            found = _find_complaint(value)
            if found is not None:
                return found
    if isinstance(data, list):
        for value in data:
            found = _find_complaint(value)
            if found is not None:
                return found
    return None


def test_ledger_metrics_from_the_store(ledger: Ledger, clock: Clock) -> None:
    publish(ledger, "national", warning("YJ-RED", level="D"))
    publish(ledger, "collaboration", task("1", assignees=[MARKET, ECO]))
    publish(ledger, ECO_SYSTEM, task("5", at(48), assignees=[MARKET, ECO]))
    clock.now = DISPATCHED + dt.timedelta(days=2)
    families = {f.name: f for f in CentreCollector(ledger).collect()}
    opened = {tuple(s.labels.values()): s.value for s in families["jghub_centre_open"].samples}
    assert opened[("warning", MARKET["name"], "dispatched")] == 1
    assert opened[("task", ECO["name"], "fed_back")] == 1
    overdue = {tuple(s.labels.values()): s.value for s in families["jghub_centre_overdue"].samples}
    assert overdue == {("warning", MARKET["name"]): 1}
    counts = {
        (s.labels["kind"], s.labels.get("le")): s.value
        for s in families["jghub_centre_disposal_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert counts[("task", "172800")] == 1 and counts[("task", "86400")] == 0


def test_deadlines_file_errors_name_file_field_and_rule(tmp_path: Path) -> None:
    bad = tmp_path / "deadlines.yaml"
    bad.write_text(
        "warning:\n  by_level:\n    D: {days: 0}\ntask:\n  default: {days: 3, count: lunar}\n"
    )
    with pytest.raises(DeadlinesFileError) as raised:
        DeadlineRules.load(bad)
    text = str(raised.value)
    assert str(bad) in text and "warning.by_level.D.days" in text and "task.default.count" in text
    assert DeadlineRules.load(Path("config/deadlines.yaml")).warning.by_level["D"].days == 1


def test_ledger_api_behind_operator_accounts(ledger: Ledger, clock: Clock, tmp_path: Path) -> None:
    publish(ledger, "national", warning("YJ-RED", level="D"))
    publish(ledger, "collaboration", task("1", assignees=[MARKET, ECO]))
    clock.now = DISPATCHED + dt.timedelta(days=2)
    app = FastAPI()
    gate = OperatorGate(load_operators(write_operators(tmp_path)))
    app.include_router(centre_router(ledger, gate=gate))
    client = TestClient(app)
    assert client.get("/centre/items").status_code == 401
    listed = client.get("/centre/items", params={"overdue": "true"}, auth=READER)
    assert listed.status_code == 200
    assert [i["item_id"] for i in listed.json()["items"]] == ["YJ-RED"]
    by_department = client.get(
        "/centre/items", params={"kind": "task", "department": ECO["credit_code"]}, auth=READER
    ).json()
    assert by_department["count"] == 1 and by_department["items"][0]["state"] == "dispatched"
    shown = client.get("/centre/items/RW-1", auth=READER).json()
    assert len(shown["rows"]) == 2 and shown["timeline"][0]["event"] == "dispatched"
    assert client.get("/centre/items/NOPE", auth=READER).status_code == 404
    assert client.get("/centre/items", params={"state": "lost"}, auth=READER).status_code == 422


def test_ledger_cli_overdue_and_show(tmp_path: Path) -> None:
    store = Store.open(store_url(None, tmp_path))
    ledger = ledger_of(store, Clock(DISPATCHED))
    publish(ledger, "national", warning("YJ-RED", level="D"))
    publish(ledger, MARKET_SYSTEM, feedback("3", at(2), warning_id="YJ-RED"))
    store.close()
    runner = CliRunner()
    overdue = runner.invoke(cli.app, ["centre", "overdue", "--json", "--data-dir", str(tmp_path)])
    assert overdue.exit_code == 0, overdue.output
    assert [r["item_id"] for r in json.loads(overdue.output)] == ["YJ-RED"]
    elsewhere = runner.invoke(
        cli.app,
        ["centre", "overdue", "--department", ECO["name"], "--data-dir", str(tmp_path)],
    )
    assert elsewhere.exit_code == 0 and "0 overdue" in elsewhere.output
    shown = runner.invoke(cli.app, ["centre", "show", "YJ-RED", "--data-dir", str(tmp_path)])
    assert shown.exit_code == 0 and "disposing" in shown.output, shown.output
    missing = runner.invoke(cli.app, ["centre", "show", "[red]x", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 1 and "[red]x" in missing.output
