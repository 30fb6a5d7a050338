"""The per-department scorecard (centre.scorecard) on both store backends: on time and late,
overdue, returned, feedback complete or not, the median for odd and even counts, a department
with nothing due and one with nothing at all; penalty cases overdue; the CLI and the API.

The clock is injected: "now" is three weeks after the Monday the items were dispatched.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ledger_support import (
    DISPATCHED,
    ECO,
    ISSUER,
    MARKET,
    Clock,
    feedback,
    ledger_of,
    task,
    warning,
)
from operator_accounts import READER, write_operators
from typer.testing import CliRunner

from centre.api import centre_router
from centre.ledger import Ledger
from centre.penalties import PENALTY_CASE, PenaltyLimits
from centre.scorecard import DisposalScore, Scorecard, scorecard
from hub import cli
from monitor.operators import OperatorGate, load_operators
from standard.envelope import Envelope
from store import Store, store_url

NOW = DISPATCHED + dt.timedelta(days=21)
LIMITS = PenaltyLimits()
HOUR = 3600.0


def at(hours: float) -> dt.datetime:
    return DISPATCHED + dt.timedelta(hours=hours)


def publish(ledger: Ledger, system: str, envelope: Envelope) -> None:
    ledger.record(ledger.steps_published(system, envelope))


def market_warnings(ledger: Ledger) -> None:
    """Seven warnings of level C (due 3 days after dispatch) to the market bureau, one more
    cancelled: fed back on time with an inspection, late with a case, on time without the
    inspection its conclusion needs, closed by the issuer without feedback, accepted and left
    overdue, returned, and one dispatched an hour ago (not due)."""
    for n in range(1, 8):
        issued = NOW - dt.timedelta(hours=1) if n == 6 else DISPATCHED
        publish(ledger, "national", warning(f"YJ-{n}", issued=issued))
    publish(ledger, "national", warning("YJ-8"))
    system = "market-penalty"
    publish(ledger, system, feedback("5", at(24), warning_id="YJ-1", inspection_id="JC-1"))
    publish(ledger, system, feedback("5", at(96), warning_id="YJ-2", penalty_id="CF-2"))
    publish(ledger, system, feedback("5", at(48), warning_id="YJ-3"))
    publish(ledger, system, feedback("2", at(2), warning_id="YJ-4"))
    publish(ledger, system, feedback("7", at(3), warning_id="YJ-5"))
    publish(ledger, "national", warning("YJ-7", status="6", changed=at(60)))
    cancelled = Envelope.wrap_delete("risk_warning", "YJ-8", source="330000/test", time=at(1))
    publish(ledger, "national", cancelled)


def eco_tasks(ledger: Ledger) -> None:
    """Three joint inspections (due 15 days after dispatch) fed back by the environment bureau:
    after 2 days, after 20 (late), and after 4 without naming the inspections made; and a
    warning to it dispatched an hour ago, nothing due yet."""
    for task_id, days, inspections in (("RW-1", 2, ["JC-11"]), ("RW-2", 20, ["JC-12"]),
                                       ("RW-3", 4, [])):  # fmt: skip
        publish(ledger, "collaboration", task("1", task_id=task_id, assignees=[ECO]))
        fed_back = task("5", at(24 * days), task_id=task_id, assignees=[ECO],
                        inspection_ids=inspections)  # fmt: skip
        publish(ledger, "eco-env-penalty", fed_back)
    publish(ledger, "national", warning("YJ-E", issued=NOW - dt.timedelta(hours=1), department=ECO))


def overdue_penalty_cases(store: Store) -> None:
    """The market bureau's cases: one filed in November and undecided (its decision due on 30
    January), one decided on 2 March and never published (due 7 working days later); and an
    environment case decided in time and published."""
    common = {"system": "agri-penalty", "procedure": "2", "message_id": "m", "updated_at": 0.0,
              "version": 1, "decision_deadline": None}  # fmt: skip
    rows = [
        {"case_id": "CF-A", "department": MARKET["name"], "stage": "investigation",
         "filing_date": dt.date(2025, 11, 1), "decision_date": None, "decision_number": None},
        {"case_id": "CF-B", "department": MARKET["name"], "stage": "decision",
         "filing_date": dt.date(2026, 2, 1), "decision_date": dt.date(2026, 3, 2),
         "decision_number": "西市监罚〔2026〕1号"},
    ]  # fmt: skip
    with store.begin() as db:
        db.execute(PENALTY_CASE.insert(), [{**common, **row} for row in rows])


@pytest.fixture
def ledger(store: Store) -> Ledger:
    found = ledger_of(store, Clock(NOW))
    market_warnings(found)
    eco_tasks(found)
    overdue_penalty_cases(store)
    return found


def cells(line: str) -> list[str]:
    """The cells of a table line as the terminal shows it (header or body)."""
    return [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]


def score(card: Scorecard, department: dict[str, str], kind: str) -> DisposalScore:
    (found,) = [
        s for s in card.disposal if s.department == department["credit_code"] and s.kind == kind
    ]
    return found


def test_scorecard_counts_on_time_late_overdue_and_returned(ledger: Ledger) -> None:
    market = score(scorecard(ledger, LIMITS), MARKET, "warning")
    assert market.department_name == MARKET["name"]
    assert (market.rows, market.open) == (7, 6)  # the cancelled one is left out; YJ-7 closed
    # On time: YJ-1 (24 h), YJ-3 (48 h), YJ-7 (closed at 60 h); late: YJ-2 (96 h > 72 h);
    # overdue: YJ-4. YJ-5 (returned) and YJ-6 (not due yet) are not due.
    assert (market.on_time, market.late, market.overdue, market.due) == (3, 1, 1, 5)
    assert market.on_time_ratio == pytest.approx(0.6)
    assert (market.returned, market.undated, market.fed_back) == (1, 0, 4)


def test_scorecard_feedback_completeness(ledger: Ledger) -> None:
    card = scorecard(ledger, LIMITS)
    market = score(card, MARKET, "warning")
    # YJ-3 concludes "risk confirmed and disposed" naming no inspection or case; YJ-7 was
    # closed by the issuer with no feedback at all.
    assert (market.feedback_judged, market.feedback_complete) == (4, 2)
    assert market.feedback_completeness == pytest.approx(0.5)
    eco = score(card, ECO, "task")
    assert (eco.feedback_judged, eco.feedback_complete) == (3, 2)
    gaps = {row["item_id"]: row["feedback_gaps"] for row in ledger.items(limit=100)}
    assert "inspection_id" in gaps["YJ-3"][0] and "penalty_id" in gaps["YJ-3"][0]
    assert gaps["YJ-7"] == ["no feedback from the department: the row was closed without one"]
    assert "inspection_ids" in gaps["RW-3"][0] and gaps["RW-1"] == []


def test_scorecard_feedback_judged_on_the_closing_or_by_its_conclusion(store: Store) -> None:
    """A task its assignee closes (status 6) at once is judged on that closing; a warning found
    not real (conclusion 3) needs no inspection or case."""
    ledger = ledger_of(store, Clock(NOW))
    publish(ledger, "collaboration", task("1", task_id="RW-9", assignees=[ECO]))
    closing = task("6", at(30), task_id="RW-9", assignees=[ECO], inspection_ids=["JC-9"])
    publish(ledger, "eco-env-penalty", closing)
    publish(ledger, "national", warning("YJ-9"))
    publish(ledger, "market-penalty", feedback("5", at(30), warning_id="YJ-9", conclusion="3"))
    judged = {row["item_id"]: row for row in ledger.items(limit=10)}
    assert judged["RW-9"]["state"] == "closed" and judged["RW-9"]["feedback_complete"] is True
    assert judged["YJ-9"]["feedback_complete"] is True and judged["YJ-9"]["feedback_gaps"] == []
    card = scorecard(ledger, LIMITS)
    assert [(s.kind, s.feedback_complete, s.on_time) for s in card.disposal] == [
        ("task", 1, 1), ("warning", 1, 1),
    ]  # fmt: skip


def test_scorecard_median_for_even_and_odd_counts(ledger: Ledger) -> None:
    card = scorecard(ledger, LIMITS)
    # Four warnings fed back after 24, 48, 60 and 96 hours: the mean of the middle two.
    assert score(card, MARKET, "warning").median_disposal_s == pytest.approx(54 * HOUR)
    # Three tasks fed back after 2, 4 and 20 days: the middle one.
    eco = score(card, ECO, "task")
    assert eco.median_disposal_s == pytest.approx(4 * 24 * HOUR)
    assert (eco.on_time, eco.late, eco.due) == (2, 1, 3)


def test_scorecard_of_a_department_with_nothing_due_or_nothing_at_all(ledger: Ledger) -> None:
    eco = scorecard(ledger, LIMITS, department=ECO["name"])
    assert [(s.kind, s.rows) for s in eco.disposal] == [("task", 3), ("warning", 1)]
    fresh = score(eco, ECO, "warning")
    assert (fresh.due, fresh.on_time_ratio, fresh.median_disposal_s) == (0, None, None)
    assert fresh.feedback_completeness is None
    assert eco.penalties == []
    nobody = scorecard(ledger, LIMITS, department=ISSUER["name"])
    assert (nobody.disposal, nobody.penalties) == ([], [])


def test_scorecard_penalty_cases_overdue_by_code_or_name(ledger: Ledger) -> None:
    for asked in (MARKET["credit_code"], MARKET["name"]):
        card = scorecard(ledger, LIMITS, department=asked)
        assert {s.kind for s in card.disposal} == {"warning"}
        (penalties,) = card.penalties
        assert penalties.department == MARKET["name"]
        assert (penalties.decisions_open, penalties.decisions_late) == (1, 0)
        assert (penalties.publications_open, penalties.publications_late) == (1, 0)


def test_scorecard_api_behind_operator_accounts(ledger: Ledger, tmp_path: Path) -> None:
    app = FastAPI()
    gate = OperatorGate(load_operators(write_operators(tmp_path)))
    app.include_router(centre_router(ledger, gate=gate, limits=LIMITS))
    client = TestClient(app)
    assert client.get("/centre/scorecard").status_code == 401
    answer = client.get("/centre/scorecard", params={"department": ECO["name"]}, auth=READER)
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    assert body["department"] == ECO["name"]
    assert dt.datetime.fromisoformat(body["at"]) == NOW
    task_score = next(s for s in body["disposal"] if s["kind"] == "task")
    assert task_score["on_time_ratio"] == pytest.approx(2 / 3)
    assert task_score["feedback_completeness"] == pytest.approx(2 / 3)
    assert task_score["median_disposal_s"] == pytest.approx(4 * 24 * HOUR)
    everyone = client.get("/centre/scorecard", auth=READER).json()
    assert [p["department"] for p in everyone["penalties"]] == [MARKET["name"]]
    schema = client.get("/openapi.json").json()
    assert "Scorecard" in schema["components"]["schemas"]


def test_quality_prints_the_scorecard_as_an_operator_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the embedded store, with the real clock: the two warnings were due in March 2026, so
    the figures do not move with the day the test runs."""
    store = Store.open(store_url(None, tmp_path))
    ledger = ledger_of(store, Clock(NOW))
    publish(ledger, "national", warning("YJ-1"))
    publish(ledger, "national", warning("YJ-2"))
    publish(ledger, "market-penalty", feedback("5", at(24), warning_id="YJ-1", inspection_id="J"))
    publish(ledger, "market-penalty", feedback("5", at(96), warning_id="YJ-2"))
    overdue_penalty_cases(store)
    store.close()
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()
    shown = runner.invoke(cli.app, ["quality", "--data-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    row = next(line for line in lines if MARKET["name"] in line and "warning" in line)
    header = next(line for line in lines if "on time %" in line)
    figures = dict(zip(cells(header), cells(row), strict=True))
    assert figures["due"] == "2" and figures["on time"] == "1" and figures["late"] == "1"
    assert figures["on time %"] == "50.0%"
    assert figures["median disposal"] == "2d 12h"  # (24 h + 96 h) / 2 = 60 h
    assert figures["feedback complete"] == "1/2 (50.0%)"
    penalty = next(line for line in lines if MARKET["name"] in line and "warning" not in line)
    assert cells(penalty) == [
        MARKET["name"],
        "1",
        "0",
        "1",
        "0",
    ]
    narrowed = runner.invoke(
        cli.app, ["quality", "--department", ECO["name"], "--data-dir", str(tmp_path)]
    )
    assert narrowed.exit_code == 0, narrowed.output
    assert MARKET["name"] not in narrowed.output
    assert f"no warning or task dispatched to {ECO['name']}" in narrowed.output
