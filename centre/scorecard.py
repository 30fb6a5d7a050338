"""The per-department scorecard: disposal on time, how long it takes, how complete the feedback
is, who returns items; and the penalty cases overdue.

    card = scorecard(ledger, limits, department="杭州市生态环境局")   # as of ledger.clock()

Disposal, per department and kind (warning or task), from the ledger's rows. Cancelled rows are
left out of every figure: the issuer withdrew the item.

- `rows`: rows dispatched to the department; `open`: those not yet closed.
- `on_time`: fed back at or before the due time; `late`: fed back after it.
- `overdue`: not fed back, past the due time, and still owed by the department (dispatched,
  delivered, accepted or disposing: what `jghub centre overdue` lists). A returned row waits for
  the dispatcher, not the department, and is not counted.
- `due`: the rows due so far, those whose due time has passed or that were fed back:
  `on_time + late + overdue`. **On-time %** = `on_time / due`.
- `undated`: rows without a due time (a year the working-day calendar does not cover; the row's
  `due_error` says why): in none of the on-time figures, counted so that none is lost.
- **Median disposal time**: dispatch to feedback, over the rows fed back; the middle value, or
  the mean of the two middle ones when their number is even.
- **Feedback completeness** = `feedback_complete / feedback_judged`: of the rows fed back and
  judged, the share whose feedback carries the result the standard expects: for a warning,
  measures, conclusion and result, and the inspection or penalty case when the conclusion is
  "risk confirmed and disposed"; for a task, feedback time and result, and the inspections of a
  joint inspection (`centre.feedback` has the full definition). A row closed without any
  feedback from the department is incomplete.
- `returned`: rows the department returned at least once, whatever happened to them after.

Penalty cases, per department (the case's implementing organ), from `centre.penalties`: the
decisions (90 days after filing) and the 双公示 publications (7 working days after the decision;
20 for market regulation) overdue, each `open` (the step is still missing) or `late` (it was
taken after the limit). Cases the calendar cannot count are listed in `uncounted`.

Every disposal figure is computed by SQL on the store (SQLite and PostgreSQL alike), as of the
ledger's injected clock.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field
from sqlalchemy import ColumnElement, and_, case, exists, func, select
from sqlalchemy.engine import Connection

from centre.ledger import CENTRE_EVENT, CENTRE_ITEM, OPEN_STATES, OVERDUE_STATES, Ledger
from centre.penalties import OverdueReport, PenaltyLimits, overdue_cases
from standard.types import SHANGHAI


class DisposalScore(BaseModel):
    """One department's disposal of one kind of item (see the module docstring)."""

    department: str = Field(description="Credit code of the department, else its name.")
    department_name: str | None = Field(description="Its name as the records gave it.")
    kind: Literal["warning", "task"]
    rows: int = Field(description="Rows dispatched to the department, cancelled ones left out.")
    open: int = Field(description="Rows not yet closed.")
    due: int = Field(description="Rows due so far: on_time + late + overdue.")
    on_time: int = Field(description="Fed back at or before the due time.")
    late: int = Field(description="Fed back after the due time.")
    overdue: int = Field(description="Not fed back, past the due time, owed by the department.")
    undated: int = Field(description="Rows without a due time (the calendar lacks the year).")
    returned: int = Field(description="Rows the department returned at least once.")
    fed_back: int = Field(description="Rows fed back.")
    feedback_judged: int = Field(description="Rows fed back whose feedback was judged.")
    feedback_complete: int = Field(description="Of those, rows whose feedback is complete.")
    median_disposal_s: float | None = Field(
        description="Median seconds from dispatch to feedback; null when none was fed back."
    )

    @computed_field(description="on_time / due; null when nothing is due yet.")  # type: ignore[prop-decorator]
    @property
    def on_time_ratio(self) -> float | None:
        return self.on_time / self.due if self.due else None

    @computed_field(  # type: ignore[prop-decorator]
        description="feedback_complete / feedback_judged; null when no feedback was judged."
    )
    @property
    def feedback_completeness(self) -> float | None:
        return self.feedback_complete / self.feedback_judged if self.feedback_judged else None

    @property
    def label(self) -> str:
        """How an operator names the department: its name, else its key."""
        return self.department_name or self.department


class PenaltyScore(BaseModel):
    """One department's penalty cases past a legal time limit."""

    department: str = Field(description="The implementing organ, as the case records name it.")
    decisions_open: int = Field(0, description="Decision limit passed, no decision yet.")
    decisions_late: int = Field(0, description="Decided after the decision limit.")
    publications_open: int = Field(0, description="双公示 limit passed, not published yet.")
    publications_late: int = Field(0, description="Published after the 双公示 limit.")


class Scorecard(BaseModel):
    """The scorecard as of `at`, of one department or of all."""

    at: dt.datetime = Field(description="When the figures were taken (the ledger's clock).")
    department: str | None = Field(description="The department asked for; null: every one.")
    disposal: list[DisposalScore] = Field(description="Per department and kind.")
    penalties: list[PenaltyScore] = Field(description="Departments with penalty cases overdue.")
    uncounted: list[str] = Field(
        description="Penalty cases whose limit the working-day calendar cannot count."
    )


def scorecard(ledger: Ledger, limits: PenaltyLimits, department: str | None = None) -> Scorecard:
    """The scorecard of `department` (credit code or name), or of every department."""
    now = ledger.clock()
    with ledger.store.begin() as db:
        disposal = disposal_scores(db, now.timestamp(), department)
    # Penalty cases name their department by name: the one the ledger knows for a code.
    names = {score.department_name for score in disposal if score.department_name}
    organ = next(iter(names)) if department is not None and len(names) == 1 else department
    report = overdue_cases(
        ledger.store, ledger.calendar, limits, now.astimezone(SHANGHAI).date(), organ
    )
    return Scorecard(
        at=now,
        department=department,
        disposal=disposal,
        penalties=penalty_scores(report),
        uncounted=report.uncounted,
    )


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _of_department(department: str | None) -> ColumnElement[bool]:
    c = CENTRE_ITEM.c
    mine = c.state != "cancelled"
    if department is None:
        return mine
    return and_(mine, (c.department == department) | (c.department_name == department))


def disposal_scores(db: Connection, now: float, department: str | None) -> list[DisposalScore]:
    """The disposal figures per department and kind, at `now` (seconds since the epoch)."""
    c, e = CENTRE_ITEM.c, CENTRE_EVENT.c
    dated = and_(c.fed_back_at.is_not(None), c.due_at.is_not(None))
    returned = exists().where(
        e.kind == c.kind,
        e.item_id == c.item_id,
        e.department == c.department,
        e.event == "returned",
    )
    figures = {
        "rows": func.count(),
        "open": _count(c.state.in_(sorted(OPEN_STATES))),
        "on_time": _count(and_(dated, c.fed_back_at <= c.due_at)),
        "late": _count(and_(dated, c.fed_back_at > c.due_at)),
        "overdue": _count(and_(c.state.in_(sorted(OVERDUE_STATES)), c.due_at < now)),
        "undated": _count(c.due_at.is_(None)),
        "returned": _count(returned),
        "fed_back": _count(c.fed_back_at.is_not(None)),
        "feedback_judged": _count(c.feedback_complete.is_not(None)),
        "feedback_complete": _count(c.feedback_complete.is_(True)),
    }
    query = (
        select(
            c.department,
            func.max(c.department_name).label("department_name"),
            c.kind,
            *(value.label(name) for name, value in figures.items()),
        )
        .where(_of_department(department))
        .group_by(c.department, c.kind)
    )
    medians = median_disposal(db, department)
    scores = []
    for row in db.execute(query).mappings():
        counted = {name: int(row[name]) for name in figures}
        scores.append(
            DisposalScore(
                department=row["department"],
                department_name=row["department_name"],
                kind=row["kind"],
                due=counted["on_time"] + counted["late"] + counted["overdue"],
                median_disposal_s=medians.get((row["department"], row["kind"])),
                **counted,
            )
        )
    return sorted(scores, key=lambda s: (s.label, s.department, s.kind))


def median_disposal(db: Connection, department: str | None) -> dict[tuple[str, str], float]:
    """(department, kind) → median seconds from dispatch to feedback, of the rows fed back.

    Window functions number each group's durations in order; the median is the mean of the
    rows numbered (n + 1) // 2 and (n + 2) // 2: the same row when n is odd, the two middle ones
    when it is even."""
    c = CENTRE_ITEM.c
    elapsed = c.fed_back_at - c.dispatched_at
    seconds = case((elapsed < 0, 0.0), else_=elapsed)
    group = (c.department, c.kind)
    fed_back = (
        select(
            c.department,
            c.kind,
            seconds.label("seconds"),
            func.row_number().over(partition_by=group, order_by=seconds).label("position"),
            func.count().over(partition_by=group).label("n"),
        )
        .where(_of_department(department), c.fed_back_at.is_not(None), c.dispatched_at.is_not(None))
        .subquery()
    )
    f = fed_back.c
    middle = f.position.in_([(f.n + 1) // 2, (f.n + 2) // 2])
    query = (
        select(f.department, f.kind, func.avg(f.seconds))
        .where(middle)
        .group_by(f.department, f.kind)
    )
    return {(d, k): float(s) for d, k, s in db.execute(query)}


def penalty_scores(report: OverdueReport) -> list[PenaltyScore]:
    """Per department, its penalty cases overdue by limit and state, departments by name."""
    counts = report.counts_by_state()
    return [
        PenaltyScore(
            department=department,
            decisions_open=counts[department, "decision", "open"],
            decisions_late=counts[department, "decision", "late"],
            publications_open=counts[department, "publication", "open"],
            publications_late=counts[department, "publication", "late"],
        )
        for department in sorted({department for department, _, _ in counts})
    ]
