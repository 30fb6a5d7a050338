"""Penalty cases watched (centre.penalties): stages at ingress, art. 51's limits, the time limits.

The store-backed tests run on SQLite and PostgreSQL; the ingress ones on both buses too. The clock
is injected: no test waits for a deadline.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hub_harness import BACKENDS, require_backend
from prometheus_client import CollectorRegistry, generate_latest
from store_support import POSTGRESQL
from typer.testing import CliRunner

import bus
from adapters.ingress import Ingress
from adapters.stages import STAGE_RULE
from bus import Broker, Target, Topology
from centre.penalties import (
    PENALTY_CASE,
    PenaltyLimits,
    PenaltyOverdueCollector,
    StoredCaseStages,
    overdue_cases,
)
from centre.workdays import WorkingCalendar
from hub.cli import app
from mappings import load_all
from standard.datasets import validate
from standard.envelope import Envelope
from standard.errors import RecordInvalid
from store import Store

MAPPINGS = load_all()
SAMPLES = Path(__file__).parents[2] / "mappings" / "systems" / "agri-penalty"
CALENDAR = WorkingCalendar.load()
LIMITS = PenaltyLimits(publication_by_system={"market-penalty": 20})
FILED = dt.date(2026, 1, 5)


def canonical_case(archived: bool = False, **changes: Any) -> dict[str, Any]:
    """A penalty case of the agri-penalty samples as the standard has it: ordinary procedure at
    decision (or archived, executed), with `changes`."""
    expected = json.loads((SAMPLES / "expected/case_records/valid-records.json").read_text())
    data: dict[str, Any] = copy.deepcopy(expected["envelopes"][1 if archived else 0]["data"])
    data.update(changes)
    return data


def case_envelope(case_id: str, stage: str, **fields: Any) -> Envelope:
    """A record of case `case_id` at `stage`, a distinct change (as a case system sends one per
    step)."""
    data = canonical_case(archived=stage == "archived", penalty_id=case_id, stage=stage, **fields)
    return Envelope.wrap(
        validate("penalty_case", data),
        source="330000/nynct",
        operation="u",
        time=dt.datetime.now(dt.UTC) - dt.timedelta(microseconds=uuid.uuid4().int % 10**9),
        lineagesystem="agri-penalty",
    )


# --- Stage moves on the store ----------------------------------------------------------------


def test_centre_illegal_stage_move_is_refused_naming_both_stages(store: Store) -> None:
    cases = StoredCaseStages(store, clock=lambda: 0.0)
    assert cases.move("agri-penalty", [case_envelope("C-1", "archived")]) == [None]
    refused, legal = cases.move(
        "agri-penalty",
        [case_envelope("C-1", "investigation"), case_envelope("C-2", "lead_registered")],
    )
    assert refused is not None and legal is None
    assert "归档" in str(refused) and "调查取证" in str(refused)
    with store.begin() as db:
        stages = dict(db.execute(PENALTY_CASE.select().with_only_columns(
            PENALTY_CASE.c.case_id, PENALTY_CASE.c.stage)).all())  # fmt: skip
    assert stages == {"C-1": "archived", "C-2": "lead_registered"}


def test_centre_legal_moves_and_updates_within_a_stage_are_recorded(store: Store) -> None:
    cases = StoredCaseStages(store, clock=lambda: 0.0)
    steps = ["lead_registered", "investigation", "investigation", "notice", "decision"]
    # One payload: the records of one case are taken in payload order.
    assert cases.move("agri-penalty", [case_envelope("C-3", s) for s in steps]) == [None] * 5
    back = cases.move("agri-penalty", [case_envelope("C-3", "notice")])[0]
    assert back is not None and "处罚决定" in str(back) and "处罚告知" in str(back)


def test_centre_two_writers_of_one_case_never_both_move_it(store: Store) -> None:
    """Two serves at once: archived → investigation and archived... only legal moves stick."""
    StoredCaseStages(store).move("agri-penalty", [case_envelope("C-4", "notice")])
    answers: dict[str, Any] = {}
    start = threading.Barrier(2)

    def send(stage: str) -> None:
        start.wait()
        answers[stage] = StoredCaseStages(store).move("agri-penalty", [case_envelope("C-4", stage)])

    threads = [threading.Thread(target=send, args=(s,)) for s in ("archived", "investigation")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # notice → archived and notice → investigation are both legal, but not one after the other
    # in the order archived, investigation: whichever came second was checked against the first.
    refused = [stage for stage, answer in answers.items() if answer[0] is not None]
    with store.begin() as db:
        final = db.execute(PENALTY_CASE.select().where(PENALTY_CASE.c.case_id == "C-4")).one()
    if refused == ["investigation"]:
        assert final.stage == "archived" and final.version == 2
    else:
        assert refused == [] and final.stage == "archived" and final.version == 3


def stored(store: Store, case_id: str) -> Any:
    with store.begin() as db:
        return db.execute(PENALTY_CASE.select().where(PENALTY_CASE.c.case_id == case_id)).one()


def test_centre_one_payload_checks_each_record_against_the_one_before(store: Store) -> None:
    """A payload's records of one case are checked in payload order, each against the stage the
    one before left; a refused record leaves nothing, and a date left out keeps the one before."""
    cases = StoredCaseStages(store, clock=lambda: 0.0)
    payload = [
        case_envelope("C-6", "notice", decision_deadline="2026-05-01"),
        case_envelope("C-7", "lead_registered"),
        case_envelope("C-6", "decision", decision_deadline=None),
        case_envelope("C-6", "notice"),
    ]
    answers = cases.move("agri-penalty", payload)
    assert answers[:3] == [None, None, None]
    assert answers[3] is not None and "处罚决定" in str(answers[3])
    row = stored(store, "C-6")
    assert row.stage == "decision" and row.message_id == payload[2].id
    assert row.decision_deadline == dt.date(2026, 5, 1)
    assert stored(store, "C-7").stage == "lead_registered"


def test_centre_a_delete_takes_the_case_off_the_watch(store: Store) -> None:
    cases = StoredCaseStages(store, clock=lambda: 0.0)
    assert cases.move("agri-penalty", [case_envelope("C-8", "archived")]) == [None]
    gone = Envelope.wrap_delete(
        "penalty_case",
        "C-8",
        source="330000/nynct",
        time=dt.datetime.now(dt.UTC),
        lineagesystem="agri-penalty",
    )
    # After the delete, the case's next record is its first again: any stage.
    again = case_envelope("C-8", "investigation")
    assert cases.move("agri-penalty", [gone, again]) == [None, None]
    assert stored(store, "C-8").stage == "investigation"


# On PostgreSQL only: SQLite takes the write lock at BEGIN, so no writer comes between the read
# and the write there.
@pytest.mark.parametrize("store", [POSTGRESQL], indirect=True)
def test_centre_a_case_changed_between_read_and_write_is_checked_again(store: Store) -> None:
    """Another host moves the case after this one read it: the payload is checked again on the
    row the other left, so notice → archived there and notice → investigation here are never
    both recorded; a case another host recorded first is checked against its stage too."""
    StoredCaseStages(store).move("agri-penalty", [case_envelope("C-9", "notice")])
    other = StoredCaseStages(store)
    meanwhile = [
        [case_envelope("C-9", "archived")],
        [case_envelope("C-10", "archived")],
    ]

    def clock() -> float:
        """Read between this host's read and its write: the other host moves first."""
        if meanwhile:
            assert other.move("agri-penalty", meanwhile.pop(0)) == [None]
        return 0.0

    here = StoredCaseStages(store, clock=clock)
    refused, also = here.move(
        "agri-penalty",
        [case_envelope("C-9", "investigation"), case_envelope("C-10", "investigation")],
    )
    assert refused is not None and "归档" in str(refused) and "调查取证" in str(refused)
    assert also is not None and "归档" in str(also)
    assert stored(store, "C-9").stage == "archived" and stored(store, "C-10").stage == "archived"


# --- Time limits ----------------------------------------------------------------------------


def decided(
    store: Store, case_id: str, filed: dt.date, decision: dt.date | None, **more: Any
) -> None:
    """Record case `case_id`, filed on `filed`, decided on `decision` (None: investigating)."""
    filing = f"{filed.isoformat()}T09:00:00+08:00"
    fields: dict[str, Any] = {
        "filing_time": filing, "lead_time": filing, "legal_review": None,
        "legal_review_date": None, "legal_review_opinion": None, "report_time": None,
        "decision_date": None if decision is None else decision.isoformat(),
        "decision_number": f"罚〔{case_id}〕",
    }  # fmt: skip
    fields.update(more)
    stage = "decision" if decision is not None else "investigation"
    answers = StoredCaseStages(store).move(
        "agri-penalty", [case_envelope(case_id, stage, **fields)]
    )
    assert answers == [None]


def overdue_ids(store: Store, today: dt.date, limit: str) -> set[str]:
    report = overdue_cases(store, CALENDAR, LIMITS, today)
    return {case.case_id for case in report.overdue if case.limit == limit}


def test_centre_decision_on_day_91_is_overdue_day_90_not(store: Store) -> None:
    decided(store, "D-90", FILED, FILED + dt.timedelta(days=90))
    decided(store, "D-91", FILED, FILED + dt.timedelta(days=91))
    decided(store, "OPEN", FILED, None)
    late = dt.date(2026, 6, 1)
    assert overdue_ids(store, late, "decision") == {"D-91", "OPEN"}
    # Before day 91 the undecided case is not overdue yet.
    assert "OPEN" not in overdue_ids(store, FILED + dt.timedelta(days=90), "decision")
    report = overdue_cases(store, CALENDAR, LIMITS, late)
    states = {(c.case_id, c.state) for c in report.overdue if c.limit == "decision"}
    assert states == {("D-91", "late"), ("OPEN", "open")}


def test_centre_recorded_extension_moves_the_decision_deadline(store: Store) -> None:
    extended = FILED + dt.timedelta(days=120)
    decided(store, "EXT", FILED, FILED + dt.timedelta(days=100), decision_deadline=str(extended))
    decided(
        store, "EXT-LATE", FILED, FILED + dt.timedelta(days=121), decision_deadline=str(extended)
    )
    assert overdue_ids(store, dt.date(2026, 8, 1), "decision") == {"EXT-LATE"}


def test_centre_publication_on_the_8th_working_day_is_late_across_national_day(
    store: Store,
) -> None:
    # Decided Tuesday 2026-09-29: 30 September is the 1st working day; National Day is off
    # 1-7 October; Saturday 10 October is worked (the 4th), so the 7th is Wednesday 14 October
    # (it would be 8 October without the holidays).
    decision = dt.date(2026, 9, 29)
    seventh = CALENDAR.add_working_days(decision, 7)
    eighth = CALENDAR.add_working_days(decision, 8)
    assert (seventh, eighth) == (dt.date(2026, 10, 14), dt.date(2026, 10, 15))
    for case_id, published in (("P-7", seventh), ("P-8", eighth)):
        decided(store, case_id, dt.date(2026, 9, 1), decision)
        stages = StoredCaseStages(store, clock=lambda day=published: shanghai_noon(day))
        stages.published([publication(f"罚〔{case_id}〕")])
    decided(store, "P-NONE", dt.date(2026, 9, 1), decision)
    # Published on the 8th: late; on the 7th: in time; not yet published: overdue from the 8th.
    assert overdue_ids(store, eighth, "publication") == {"P-8", "P-NONE"}
    assert "P-NONE" not in overdue_ids(store, seventh, "publication")


def test_centre_market_regulation_publishes_within_20_working_days(store: Store) -> None:
    decision = dt.date(2026, 9, 29)
    filing = "2026-09-01T09:00:00+08:00"
    envelope = case_envelope(
        "M-1", "decision", filing_time=filing, lead_time=filing, legal_review=None,
        legal_review_date=None, legal_review_opinion=None, report_time=None,
        decision_date=decision.isoformat(), decision_number="市监罚〔M-1〕",
    )  # fmt: skip
    assert StoredCaseStages(store).move("market-penalty", [envelope]) == [None]
    twentieth = CALENDAR.add_working_days(decision, 20)
    assert overdue_ids(store, twentieth, "publication") == set()
    assert overdue_ids(store, twentieth + dt.timedelta(days=1), "publication") == {"M-1"}


def test_centre_overdue_gauge_and_cli_per_department(store: Store, tmp_path: Path) -> None:
    decided(store, "G-1", FILED, None)
    decided(store, "G-2", FILED, None, implementing_organ="衢州市农业农村局")
    today = dt.date(2026, 6, 1)
    registry = CollectorRegistry()
    registry.register(
        PenaltyOverdueCollector(store, CALENDAR, LIMITS, lambda: shanghai_noon(today))
    )
    text = generate_latest(registry).decode()
    for department in ("嘉兴市农业农村局", "衢州市农业农村局"):
        labels = f'department="{department}",limit="decision",state="open"'
        assert f"jghub_penalty_cases_overdue{{{labels}}} 1.0" in text
    env = {"JGHUB_DATABASE_URL": str(store.engine.url.render_as_string(hide_password=False)),
           "JGHUB_DATA_DIR": str(tmp_path)}  # fmt: skip
    runner = CliRunner()
    args = ["centre", "penalties", "overdue", "--on", today.isoformat()]
    shown = runner.invoke(app, [*args, "--department", "衢州市农业农村局"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "G-2" in shown.output and "G-1" not in shown.output
    assert "衢州市农业农村局: 1 overdue (decision)" in shown.output


def shanghai_noon(day: dt.date) -> float:
    return dt.datetime(
        day.year, day.month, day.day, 12, tzinfo=dt.timezone(dt.timedelta(hours=8))
    ).timestamp()


def publication(decision_number: str) -> Envelope:
    expected = json.loads(
        (
            Path(__file__).parents[2]
            / "mappings/systems/market-penalty/expected/publication_upload/valid-publications.json"
        ).read_text()
    )
    data = dict(expected["envelopes"][0]["data"], decision_number=decision_number)
    record = validate("penalty_publication", data)
    return Envelope.wrap(record, source="330000/scjgj", operation="i", time=dt.datetime.now(dt.UTC))


# --- Art. 51: the simple procedure's limits -------------------------------------------------


@pytest.mark.parametrize(
    ("category", "fine", "refused"),
    [("1", "3000", False), ("1", "3000.01", True), ("2", "200", False), ("2", "200.01", True),
     ("3", "201", True), ("1", "50000", True)],
)  # fmt: skip
def test_centre_simple_procedure_fine_over_the_limit_names_art_51(
    category: str, fine: str, refused: bool
) -> None:
    data = canonical_case(
        procedure="1", filing_time=None, fine_amount=fine, penalty_kinds=["03"],
        confiscated_amount=None,
    )  # fmt: skip
    data["party"] = dict(data["party"], category=category)
    if category != "1":
        data["party"].update(certificate_type="111", certificate_code="11010519491231002X")
    if not refused:
        assert validate("penalty_case", data).fine_amount == Decimal(fine)  # type: ignore[attr-defined]
        return
    with pytest.raises(RecordInvalid) as error:
        validate("penalty_case", data)
    [violation] = [v for v in error.value.violations if v.rule == "simple procedure fine limit"]
    assert violation.field == "fine_amount"
    assert "art. 51" in violation.message
    assert ("3000 元" if category == "1" else "200 元") in violation.message


# --- At ingress, on both buses --------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    url = require_backend(request.param) or f"sqlite:///{tmp_path / 'bus.sqlite3'}"
    topology = Topology(
        namespace=f"t{uuid.uuid4().hex[:12]}",
        targets=[Target(name="cases", routes=["penalty_case.#"])],
    )
    opened = bus.connect(url)
    opened.declare(topology)
    yield opened
    if request.param == "rabbitmq":
        opened.delete_topology(topology)
    opened.close()


def agri_payload(edit: dict[int, dict[str, Any]] | None = None) -> bytes:
    payload = json.loads((SAMPLES / "samples/case_records/valid-records.json").read_text())
    for index, changes in (edit or {}).items():
        record = payload["records"][index]
        record["changeTime"] = "20260301093000"
        for section, values in changes.items():
            record[section].update(values)
    return json.dumps(payload, ensure_ascii=False).encode()


def test_centre_ingress_refuses_an_illegal_stage_move_as_a_rejected_record(
    broker: Broker, store: Store
) -> None:
    ingress = Ingress(broker, {"agri-penalty": MAPPINGS["agri-penalty"]},
                      cases=StoredCaseStages(store))  # fmt: skip
    first = ingress.accept("agri-penalty", "case_records", agri_payload())
    assert (first.accepted, first.rejected) == (5, 0)
    # Record 2 (archived) back to investigation; record 1 (decision) on to execution.
    moved = agri_payload({1: {"caseInfo": {"caseStage": "LADC"}},
                          0: {"caseInfo": {"caseStage": "CFZX"}}})  # fmt: skip
    second = ingress.accept("agri-penalty", "case_records", moved)
    assert (second.accepted, second.rejected, second.failed) == (4, 1, 0)
    refused = second.records[1]
    assert refused.status == "rejected" and second.quarantine_id is not None
    [error] = refused.errors or []
    assert error["rule"] == STAGE_RULE and error["field"] == "stage"
    assert "归档" in error["message"] and "调查取证" in error["message"]
    assert second.records[0].status == "accepted"
    # The same payload again: the accepted records are repeats, the refused one refused again.
    again = ingress.accept("agri-penalty", "case_records", moved)
    assert (again.accepted, again.rejected) == (4, 1)


def test_centre_ingress_refuses_a_simple_procedure_fine_of_50000(broker: Broker) -> None:
    ingress = Ingress(broker, {"agri-penalty": MAPPINGS["agri-penalty"]})
    payload = agri_payload({4: {"decisionInfo": {"penaltyKinds": "2", "fineAmount": "50000",
                                                 "penaltyContent": "罚款50000元"}}})  # fmt: skip
    result = ingress.accept("agri-penalty", "case_records", payload)
    refused = result.records[4]
    assert refused.status == "rejected"
    [error] = [e for e in refused.errors or [] if e["rule"] == "simple procedure fine limit"]
    assert "art. 51" in error["message"] and "3000 元" in error["message"]
