"""Penalty cases watched: each case's last stage and dates on the store, and the legal time limits.

Stages. Ingress asks `StoredCaseStages.move` about every `penalty_case` record before it is
published (`adapters.stages`): a record in the stage its case is in (an update) or one legal
move on (`standard.datasets.penalty_case.TRANSITIONS`) is recorded; any other is refused,
naming both stages, and nothing of it is recorded. The first record of a case may be at any
stage: the hub may join a case system midway (its earlier records went to the old exchange or
were never sent), and refusing them would shut every running case out for good. A delete takes
the case off the watch.

Concurrency. Each case row carries a version. A payload's moves are one read of its cases' rows
and one upsert of the rows its legal records leave, each row written only if its version is still
the one read (a first record: only if the row is still not there). When another writer got
there first, the whole payload is rolled back and taken again record by record: each move an
UPDATE conditional on the version it read (a first record: an INSERT that does nothing if the
row is there), retried on the row's new state. So two records of one case, in one payload or in
two `serve` processes at once, are checked one after the other, each against the stage the other
left: an illegal pair is refused, never both recorded. The records of one call are taken in
payload order within a case, and the cases written in key order (no deadlock between two
writers). On SQLite the transaction takes the write lock at BEGIN, which serialises writers
anyway. A payload deleting a case goes record by record from the start (deletes are rare).

The stage is recorded when the hub takes the record for publishing: a record the bus then fails
to confirm is answered `failed`, and its resend, in the same stage, passes.

Time limits (Administrative Penalty Law, 2021):

- decision: within 90 days of filing (art. 60), or by the day a recorded extension sets
  (`decision_deadline`, 决定期限延长至). Only filed cases: the simple procedure decides on the
  spot, without filing.
- publication (双公示): within 7 working days of the decision (the national rule), or as many as
  the sending system's `penalty_publication_working_days` says (market regulation: 20). Only
  decisions of the ordinary procedure: on-the-spot decisions are not published. A decision is
  published on the day the hub accepted a `penalty_publication` record with its decision number.

A limit is overdue when it passed before the step was taken: the step is still missing today
(`open`), or it came after the limit (`late`). Day 90 after filing is in time, day 91 is late;
the 7th working day after the decision is in time, the 8th is late. Today comes from an injected
clock, in Asia/Shanghai.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import (
    Column,
    Connection,
    Date,
    Double,
    Index,
    Integer,
    String,
    Table,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.sql.dml import ReturningInsert

from adapters.stages import CASE_DATASET, CaseStages
from centre.workdays import CalendarNotCovered, WorkingCalendar
from standard.datasets.penalty_case import SIMPLE_PROCEDURE, PenaltyStage, check_transition
from standard.envelope import Envelope, Operation
from standard.errors import IllegalStageTransition
from standard.types import SHANGHAI
from store import METADATA, Store, StoreError, upsert, upsert_in

log = logging.getLogger("centre.penalties")

DECISION_DAYS = 90
"""APL art. 60: the decision within 90 days of filing."""
PUBLICATION_WORKING_DAYS = 7
"""The national 双公示 rule: published within 7 working days of the decision."""
PUBLICATION_DATASET = "penalty_publication"
MOVE_ATTEMPTS = 8
"""How often a move is tried again on a row another writer changed meanwhile: a bound on the
loop, far above what two writers of one case can cause."""

PENALTY_CASE = Table(
    "penalty_case",
    METADATA,
    Column("case_id", String, primary_key=True),
    Column("system", String, nullable=False),
    Column("department", String, nullable=False),
    Column("stage", String, nullable=False),
    Column("procedure", String, nullable=True),
    Column("filing_date", Date, nullable=True),
    Column("decision_deadline", Date, nullable=True),
    Column("decision_date", Date, nullable=True),
    Column("decision_number", String, nullable=True),
    Column("message_id", String, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("version", Integer, nullable=False),
    Index(None, "decision_number"),
)
"""Each penalty case's last stage and dates, by its 处罚行为编号 (the dataset's key)."""

PENALTY_PUBLISHED = Table(
    "penalty_published",
    METADATA,
    Column("decision_number", String, primary_key=True),
    Column("published_on", Date, nullable=False),
    Column("system", String, nullable=False),
    Column("message_id", String, nullable=False),
)
"""The first day a 双公示 record of each decision was accepted (it may come before the case)."""

Limit = Literal["decision", "publication"]


def today_in_shanghai(clock: Callable[[], float]) -> dt.date:
    """The day it is in Asia/Shanghai at `clock()` (seconds since the epoch)."""
    return dt.datetime.fromtimestamp(clock(), SHANGHAI).date()


def _day(value: Any) -> dt.date | None:
    """A canonical date or date-time (ISO text) as its day in Asia/Shanghai."""
    if value is None:
        return None
    text = str(value)
    if len(text) == 10:
        return dt.date.fromisoformat(text)
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(SHANGHAI).date()


@dataclass(frozen=True)
class CaseFacts:
    """What the watch keeps of one penalty-case record."""

    case_id: str
    stage: PenaltyStage
    department: str
    procedure: str | None
    filing_date: dt.date | None
    decision_deadline: dt.date | None
    decision_date: dt.date | None
    decision_number: str | None

    @classmethod
    def of(cls, envelope: Envelope, sender_department: str) -> CaseFacts:
        data = envelope.data
        return cls(
            case_id=envelope.subject,
            stage=PenaltyStage(data["stage"]),
            department=str(data.get("implementing_organ") or sender_department),
            procedure=data.get("procedure"),
            filing_date=_day(data.get("filing_time")),
            decision_deadline=_day(data.get("decision_deadline")),
            decision_date=_day(data.get("decision_date")),
            decision_number=data.get("decision_number"),
        )

    def row(self, current: Mapping[str, Any] | None) -> dict[str, Any]:
        """The columns this record sets: a date it leaves out keeps the one recorded before."""
        kept: Mapping[str, Any] = current or {}
        return {
            "stage": self.stage.value,
            "department": self.department,
            "procedure": self.procedure or kept.get("procedure"),
            "filing_date": self.filing_date or kept.get("filing_date"),
            "decision_deadline": self.decision_deadline or kept.get("decision_deadline"),
            "decision_date": self.decision_date or kept.get("decision_date"),
            "decision_number": self.decision_number or kept.get("decision_number"),
        }


class _CaseChanged(Exception):
    """Another writer changed a case between the read and the write of a payload's moves."""


_CASES_READ = select(PENALTY_CASE).where(
    PENALTY_CASE.c.case_id.in_(bindparam("cases", expanding=True))
)
"""The rows of a list of cases: one statement, compiled once (its cache key does not change)."""


@functools.cache
def _versioned_upsert(dialect: str) -> ReturningInsert[tuple[str]]:
    """The upsert of `_move_at_once`, built once per dialect (building its SET clause took a
    fifth of a single push's stage check): it writes a case's row only where the version is
    still the one read, and returns the cases it wrote."""
    table = PENALTY_CASE
    insert = upsert_in(dialect, table)
    return insert.on_conflict_do_update(
        index_elements=["case_id"],
        set_={
            column.name: insert.excluded[column.name]
            for column in table.columns
            if column.name != "case_id"
        },
        # The version read, one below the one written; a first record (version 1) finds no
        # version 0: a row another writer made meanwhile is a change too.
        where=table.c.version == insert.excluded.version - 1,
    ).returning(table.c.case_id)


CASES_PER_READ = 1000
"""Cases read per SELECT: far below SQLite's bound on a statement's parameters (32,766)."""


def _rows_of(db: Connection, cases: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The rows of `cases` on the store, by case."""
    rows: dict[str, dict[str, Any]] = {}
    for first in range(0, len(cases), CASES_PER_READ):
        chunk = cases[first : first + CASES_PER_READ]
        for row in db.execute(_CASES_READ, {"cases": chunk}).mappings():
            rows[row["case_id"]] = dict(row)
    return rows


class StoredCaseStages(CaseStages):
    """Each penalty case's last stage, on the hub's store (see the module docstring).

    Parameters:
      store: the hub's store (`Store.open`); not closed by this.
      departments: each system's own department (the first in its `departments`), named for a
        case whose record names no implementing organ; default: the system's id.
      clock: seconds since the epoch, for the record times and the day a decision is published.
    """

    def __init__(
        self,
        store: Store,
        departments: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.departments = dict(departments or {})
        self.clock = clock

    def move(
        self, sender: str, envelopes: Sequence[Envelope]
    ) -> list[IllegalStageTransition | None]:
        department = self.departments.get(sender, sender)
        cases = [env for env in envelopes if env.spec.name == CASE_DATASET]
        if not any(env.operation is Operation.DELETE for env in cases):
            try:
                with self.store.begin(immediate=True) as db:
                    return self._move_at_once(db, sender, department, envelopes)
            except _CaseChanged:
                pass  # rolled back, nothing of it kept: record by record, each retried
        with self.store.begin(immediate=True) as db:
            return self._move_each(db, sender, department, envelopes)

    def _move_at_once(
        self, db: Connection, sender: str, department: str, envelopes: Sequence[Envelope]
    ) -> list[IllegalStageTransition | None]:
        """The moves of a payload without deletes in two statements, whatever its size: one
        SELECT of its cases' rows, then one upsert of the rows its legal records leave, each
        conditional on the version read (raises _CaseChanged when a row changed meanwhile).

        Statement by statement the store cost 0.4-1 ms a record, most of it SQLAlchemy
        building and keying a fresh statement for each (bench/stages.py); the checks are the
        same as `_move_each`'s, made against the rows read, in payload order within a case."""
        answers: list[IllegalStageTransition | None] = [None] * len(envelopes)
        facts = {
            position: CaseFacts.of(env, department)
            for position, env in enumerate(envelopes)
            if env.spec.name == CASE_DATASET
        }
        read = _rows_of(db, sorted({one.case_id for one in facts.values()}))
        left: dict[str, dict[str, Any]] = {}
        for position, one in facts.items():
            current = left.get(one.case_id) or read.get(one.case_id)
            if current is not None:
                try:
                    check_transition(current["stage"], one.stage)
                except IllegalStageTransition as illegal:
                    answers[position] = illegal
                    continue
            left[one.case_id] = {
                "case_id": one.case_id,
                **one.row(current),
                "system": sender,
                "message_id": envelopes[position].id,
                "updated_at": self.clock(),
                "version": read[one.case_id]["version"] + 1 if one.case_id in read else 1,
            }
        if not left:
            return answers
        # In key order: PostgreSQL locks the rows in the order it writes them (no deadlock).
        statement = _versioned_upsert(db.dialect.name)
        written = db.execute(statement, [left[case] for case in sorted(left)]).scalars().all()
        if len(written) != len(left):
            raise _CaseChanged
        return answers

    def _move_each(
        self, db: Connection, sender: str, department: str, envelopes: Sequence[Envelope]
    ) -> list[IllegalStageTransition | None]:
        """The moves of a payload record by record, each retried on a row another writer
        changed (see the module docstring); deletes among them."""
        answers: list[IllegalStageTransition | None] = [None] * len(envelopes)
        # Stable: a case's records stay in payload order; cases in key order (no deadlock).
        order = sorted(range(len(envelopes)), key=lambda i: envelopes[i].subject)
        for position in order:
            envelope = envelopes[position]
            if envelope.spec.name != CASE_DATASET:
                continue
            if envelope.operation is Operation.DELETE:
                db.execute(delete(PENALTY_CASE).where(PENALTY_CASE.c.case_id == envelope.subject))
                continue
            facts = CaseFacts.of(envelope, department)
            answers[position] = self._move_one(db, sender, facts, envelope.id)
        return answers

    def _move_one(
        self, db: Connection, sender: str, facts: CaseFacts, message_id: str
    ) -> IllegalStageTransition | None:
        table = PENALTY_CASE
        for _ in range(MOVE_ATTEMPTS):
            found = db.execute(select(table).where(table.c.case_id == facts.case_id)).mappings()
            current = next((dict(row) for row in found), None)
            stamp = {"system": sender, "message_id": message_id, "updated_at": self.clock()}
            if current is None:
                first = (
                    upsert(db, table)
                    .values(case_id=facts.case_id, version=1, **facts.row(None), **stamp)
                    .on_conflict_do_nothing(index_elements=["case_id"])
                    .returning(table.c.case_id)
                )
                # RETURNING, not rowcount: psycopg gives -1 for an INSERT ... ON CONFLICT.
                if db.execute(first).first() is not None:
                    return None
                continue  # another writer recorded the case first: check against its stage
            try:
                check_transition(current["stage"], facts.stage)
            except IllegalStageTransition as illegal:
                return illegal
            moved = db.execute(
                update(table)
                .where(table.c.case_id == facts.case_id, table.c.version == current["version"])
                .values(version=current["version"] + 1, **facts.row(current), **stamp)
            )
            if moved.rowcount == 1:
                return None
        raise StoreError(
            f"penalty case {facts.case_id}: its row changed under every one of {MOVE_ATTEMPTS} "
            "attempts to record its stage; nothing was recorded, send the record again"
        )

    def published(self, envelopes: Sequence[Envelope]) -> None:
        rows = {
            str(envelope.data["decision_number"]): {
                "decision_number": str(envelope.data["decision_number"]),
                "published_on": today_in_shanghai(self.clock),
                "system": envelope.lineagesystem or "",
                "message_id": envelope.id,
            }
            for envelope in envelopes
            if envelope.spec.name == PUBLICATION_DATASET
            and envelope.operation is not Operation.DELETE
            and envelope.data.get("decision_number")
        }
        if not rows:
            return
        with self.store.begin() as db:
            statement = upsert(db, PENALTY_PUBLISHED).on_conflict_do_nothing(
                index_elements=["decision_number"]
            )
            db.execute(statement, [rows[key] for key in sorted(rows)])


@dataclass(frozen=True)
class PenaltyLimits:
    """The time limits watched.

    Parameters:
      decision_days: calendar days from filing to the decision (APL art. 60: 90).
      publication_working_days: working days from the decision to its 双公示 (national: 7).
      publication_by_system: the sending systems whose departments publish within another
        number of working days (market regulation: 20), from the systems configuration
        (`penalty_publication_working_days`).
    """

    decision_days: int = DECISION_DAYS
    publication_working_days: int = PUBLICATION_WORKING_DAYS
    publication_by_system: Mapping[str, int] = field(default_factory=dict)

    def publication_days(self, system: str) -> int:
        return self.publication_by_system.get(system, self.publication_working_days)


@dataclass(frozen=True)
class OverdueCase:
    """One limit of one case that passed before its step was taken."""

    case_id: str
    department: str
    system: str
    limit: Limit
    due: dt.date
    done: dt.date | None
    """The day of the step (decision, publication); None: still missing (`state` open)."""
    stage: str

    @property
    def state(self) -> Literal["open", "late"]:
        return "open" if self.done is None else "late"

    def days_late(self, today: dt.date) -> int:
        return ((self.done or today) - self.due).days


@dataclass
class OverdueReport:
    """What is overdue, and the cases whose limit cannot be counted (a year the calendar lacks)."""

    today: dt.date
    overdue: list[OverdueCase] = field(default_factory=list)
    uncounted: list[str] = field(default_factory=list)

    def counts(self) -> dict[tuple[str, str], int]:
        """(department, limit) → overdue cases."""
        found: Counter[tuple[str, str]] = Counter()
        for (department, limit, _), count in self.counts_by_state().items():
            found[department, limit] += count
        return dict(found)

    def counts_by_state(self) -> Counter[tuple[str, str, str]]:
        """(department, limit, state) → overdue cases: `open` (the step is still missing) or
        `late` (it was taken after the limit)."""
        return Counter((case.department, case.limit, case.state) for case in self.overdue)


def decision_due(row: Mapping[str, Any], limits: PenaltyLimits) -> dt.date | None:
    """The day a filed case's decision is due (None: not filed, so not watched)."""
    filed = row["filing_date"]
    if filed is None or row["procedure"] == SIMPLE_PROCEDURE:
        return None
    return row["decision_deadline"] or filed + dt.timedelta(days=limits.decision_days)


def publication_due(
    row: Mapping[str, Any], limits: PenaltyLimits, calendar: WorkingCalendar
) -> dt.date | None:
    """The day a decision's 双公示 is due (None: no decision, or one of the simple procedure)."""
    decided = row["decision_date"]
    if decided is None or row["procedure"] == SIMPLE_PROCEDURE:
        return None
    return calendar.add_working_days(decided, limits.publication_days(row["system"]))


def overdue_of(
    rows: Iterable[Mapping[str, Any]],
    today: dt.date,
    calendar: WorkingCalendar,
    limits: PenaltyLimits,
) -> OverdueReport:
    """The overdue limits among case `rows` (columns of PENALTY_CASE plus `published_on`)."""
    report = OverdueReport(today)
    for row in rows:
        closed_undecided = row["stage"] == PenaltyStage.ARCHIVED and row["decision_date"] is None
        checks: list[tuple[Limit, dt.date | None, dt.date | None]] = [
            ("decision", decision_due(row, limits), row["decision_date"])
        ]
        try:
            checks.append(("publication", publication_due(row, limits, calendar), None))
        except CalendarNotCovered as error:
            report.uncounted.append(f"penalty case {row['case_id']}: {error}")
        for limit, due, done in checks:
            if limit == "publication":
                done = row["published_on"]
            if due is None or (limit == "decision" and closed_undecided):
                continue
            if (done or today) > due:
                report.overdue.append(
                    OverdueCase(
                        case_id=row["case_id"],
                        department=row["department"],
                        system=row["system"],
                        limit=limit,
                        due=due,
                        done=done,
                        stage=row["stage"],
                    )
                )
    return report


def overdue_cases(
    store: Store,
    calendar: WorkingCalendar,
    limits: PenaltyLimits,
    today: dt.date,
    department: str | None = None,
) -> OverdueReport:
    """What is overdue on `today` among the cases on `store` (of `department` only, if given)."""
    case, published = PENALTY_CASE, PENALTY_PUBLISHED
    query = select(case, published.c.published_on).outerjoin(
        published, published.c.decision_number == case.c.decision_number
    )
    if department is not None:
        query = query.where(case.c.department == department)
    with store.begin() as db:
        found = db.execute(query.order_by(case.c.department, case.c.case_id)).mappings()
        rows = [dict(row) for row in found]
    return overdue_of(rows, today, calendar, limits)


class PenaltyOverdueCollector(Collector):
    """`jghub_penalty_cases_overdue{department,limit,state}`, computed from the store at scrape
    time. `state="open"`: the step is still missing, what an operator can still act on;
    `state="late"`: it was taken after the limit, the department's record.

    A store that does not answer gives no series (the reason is logged); cases the calendar
    cannot count are left out and logged.
    """

    def __init__(
        self,
        store: Store,
        calendar: WorkingCalendar,
        limits: PenaltyLimits,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.calendar = calendar
        self.limits = limits
        self.clock = clock
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "jghub_penalty_cases_overdue",
            "Penalty cases whose legal time limit (decision: 90 days from filing, APL art. 60; "
            "publication: 双公示 within 7 working days of the decision) passed before the step "
            "was taken, per department and limit; state open: the step is still missing, late: "
            "it was taken after the limit.",
            labels=["department", "limit", "state"],
        )
        with self._lock:
            try:
                report = overdue_cases(
                    self.store, self.calendar, self.limits, today_in_shanghai(self.clock)
                )
            except StoreError as error:
                log.warning("penalty cases overdue unavailable: %s", error)
                return
        for problem in report.uncounted:
            log.warning("%s", problem)
        for (department, limit, state), count in sorted(report.counts_by_state().items()):
            gauge.add_metric([department, limit, state], float(count))
        yield gauge
