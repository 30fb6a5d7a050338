"""The disposal ledger: every warning and task, per assignee department, from dispatch to closing.

One row per (kind, item, department), kind "warning" (risk_warning, its feedback risk_feedback)
or "task" (collaboration_task). A row moves only on real messages, each kept as an event (item,
department, event, time, message id):

    dispatched → delivered → accepted | returned → disposing → fed_back → closed;  or cancelled

- dispatched: a published risk_warning (its responsible department's row) or task of status 1
  (a row per assignee);
- delivered: a worker delivered that record to the target of the department's system (acked);
- accepted, disposing, fed_back, returned: risk_feedback steps 2, 3 or 4, 5, 7; task statuses
  2, 4, 5, 3 from the assignee's own system;
- closed: a warning of status 6 (every row of it); a task of status 6 (the assignee's row, or
  every row, at the close's own change time, when the dispatcher sends it, as the
  collaboration centre does for the tasks it dispatched once they are fed back);
- cancelled: a delete of the warning or the task (every row).

The state is derived from the events, never moved blindly: the furthest step reached, so the same
message twice changes nothing (events are keyed by message id) and feedback that arrives before
the delivery acknowledgement leaves the row fed back. Events are replayed in the order of their
business time: a step after the row was closed or cancelled, or an acceptance and a return of the
same row, is kept and flagged (`flags`), never dropped. A joint task has one row per assignee;
one department's feedback moves only its own row.

A row fed back is judged complete or not (`feedback_complete`, and what it lacks in
`feedback_gaps`) on its department's last feedback, by `centre.feedback`.

A row's due time is the deadline its first dispatch carries (a warning's 处置时限, a task's
办理时限: what the department was told), or else set from that dispatch by `centre.deadlines`
(level, task type or the complaint's scenario; calendar or working days); a due date the
working-day calendar cannot count (a year it does not cover) leaves the row without one and says
why in `due_error`. The collaboration centre writes the same rules' deadline into its tasks.

The centre's own notices on a row (`centre.notices`: a due-soon reminder, an overdue
escalation, or why one could not be sent) are kept as its events too, so they appear in the
timeline; they move no state, and give the row its `reminded_at` and `escalated_at`.

The ledger is fed by `LedgerObserver`, the hub's observer with two hooks: what ingress (or the
collaboration centre) published, and what a worker delivered. Its failures are logged, never
raised into the message path, like the journal's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import (
    Boolean,
    Column,
    Double,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection

from adapters.routing import department_ref
from bus import Message, Outgoing, PublishFailure
from centre.deadlines import DeadlineRules
from centre.feedback import TASK_FEEDBACK_KEPT, WARNING_FEEDBACK_KEPT, feedback_gaps, last_feedback
from centre.workdays import CalendarNotCovered, WorkingCalendar
from monitor.observer import Observer, Reception
from standard.envelope import Envelope, Operation
from store import METADATA, Store, upsert

log = logging.getLogger("centre.ledger")

RECORD_DEADLINE = "the record's deadline"

KINDS = ("warning", "task")
STATES = (
    "dispatched",
    "delivered",
    "accepted",
    "returned",
    "disposing",
    "fed_back",
    "closed",
    "cancelled",
)
RANK = {
    "dispatched": 0,
    "delivered": 1,
    "accepted": 2,
    "returned": 2,
    "disposing": 3,
    "fed_back": 4,
    "closed": 5,
}
TERMINAL = frozenset({"closed", "cancelled"})
OVERDUE_STATES = frozenset({"dispatched", "delivered", "accepted", "disposing"})
"""States in which the department still owes the disposal: late past the due time. A returned
row waits for the dispatcher, a fed-back one for the issuer to close it."""
OPEN_STATES = OVERDUE_STATES | {"returned", "fed_back"}
LATE_TOLERATED = frozenset({"dispatched", "delivered"})
"""Events that may be recorded after a later step without being out of place: the delivery
acknowledgement races the department's own answer."""
ALL_ROWS = ""
"""The department of a step that concerns every row of its item (a close or cancel by the
issuer); also the department of a complaint's own events."""

WARNING_STEPS = {
    "2": "accepted",
    "3": "disposing",
    "4": "disposing",
    "5": "fed_back",
    "7": "returned",
}
TASK_STEPS = {"2": "accepted", "3": "returned", "4": "disposing", "5": "fed_back", "6": "closed"}
NOTICE_EVENTS = {"1": "reminded", "2": "escalated"}
"""The event a sent notice is kept as, by notice_type (centre.notices): 1 reminder, 2 escalation."""
NOT_SENDABLE = "not_sendable"
"""The event of a notice the centre could not send (its detail says why)."""
NOTICES = frozenset({*NOTICE_EVENTS.values(), NOT_SENDABLE})
"""Events that tell of the centre's notices on a row, not of its disposal: they move no state."""
NOTICE_NAMES = {"reminded": "reminder", "escalated": "escalation"}
"""The notice_type label of each notice event in `jghub_centre_notices_total`."""
ESCALATED_TO = {"warning": "issuer", "task": "dispatcher"}
"""Who an overdue item is escalated to: the field of its dispatch event's detail naming them."""
DISPOSAL_BUCKETS_S = tuple(d * 86400.0 for d in (0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30, 60))

CENTRE_ITEM = Table(
    "centre_item",
    METADATA,
    Column("kind", String, nullable=False),
    Column("item_id", String, nullable=False),
    Column("department", String, nullable=False),
    Column("department_name", String, nullable=True),
    Column("state", String, nullable=False),
    Column("dispatched_at", Double, nullable=True),
    Column("due_at", Double, nullable=True),
    Column("due_rule", String, nullable=True),
    Column("due_error", Text, nullable=True),
    Column("delivered_at", Double, nullable=True),
    Column("fed_back_at", Double, nullable=True),
    Column("closed_at", Double, nullable=True),
    Column("reminded_at", Double, nullable=True),
    Column("escalated_at", Double, nullable=True),
    Column("source_dataset", String, nullable=True),
    Column("source_record_id", String, nullable=True),
    Column("flags", Text, nullable=False, server_default="[]"),
    Column("updated_at", Double, nullable=False),
    Column("feedback_complete", Boolean, nullable=True),
    Column("feedback_gaps", Text, nullable=True),
    PrimaryKeyConstraint("kind", "item_id", "department", name="pk_centre_item"),
    Index("ix_centre_item_state_due_at", "state", "due_at"),
    Index("ix_centre_item_item_id", "item_id"),
)

CENTRE_EVENT = Table(
    "centre_event",
    METADATA,
    Column("kind", String, nullable=False),
    Column("item_id", String, nullable=False),
    Column("department", String, nullable=False),
    Column("event", String, nullable=False),
    Column("message_id", String, nullable=False),
    Column("at", Double, nullable=False),
    Column("recorded_at", Double, nullable=False),
    Column("detail", Text, nullable=False, server_default="{}"),
    PrimaryKeyConstraint(
        "kind", "item_id", "department", "event", "message_id", name="pk_centre_event"
    ),
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _epoch(moment: dt.datetime) -> float:
    return moment.timestamp()


def _time(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def department_key(department: Mapping[str, Any]) -> str:
    """How the ledger names a department: its credit code, else its name (as routing finds it)."""
    return str(department.get("credit_code") or department.get("name") or "")


@dataclass(frozen=True)
class Step:
    """One event for one ledger row (department ALL_ROWS: every row of the item)."""

    kind: str
    item_id: str
    department: str
    event: str
    at: dt.datetime
    message_id: str
    department_name: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    sender_serves: frozenset[str] = frozenset()
    """The departments the sending system serves: a department's step moves the item's rows of
    those departments (the assignee), whichever of its units the record names as acting."""


@dataclass
class Derived:
    """What a row's events say: its state, its milestones and what did not fit."""

    state: str
    dispatched_at: float | None = None
    delivered_at: float | None = None
    fed_back_at: float | None = None
    closed_at: float | None = None
    reminded_at: float | None = None
    escalated_at: float | None = None
    flags: list[dict[str, str]] = field(default_factory=list)


def derive(events: Sequence[Mapping[str, Any]]) -> Derived:
    """The state of a row from its events (each with `event`, `at`, `message_id`).

    Replayed in business-time order: the furthest step wins; a step after a terminal one (except a
    late dispatch or delivery record), or an acceptance together with a return, is flagged. The
    centre's notices move nothing: they give the times the row was reminded and escalated.
    """
    notices = [e for e in events if e["event"] in NOTICES]
    ordered = sorted(
        (e for e in events if e["event"] not in NOTICES),
        key=lambda e: (e["at"], RANK.get(e["event"], 9)),
    )
    derived = Derived(state="dispatched")
    for notice in sorted(notices, key=lambda e: e["at"]):
        if notice["event"] == NOTICE_EVENTS["1"] and derived.reminded_at is None:
            derived.reminded_at = notice["at"]
        if notice["event"] == NOTICE_EVENTS["2"] and derived.escalated_at is None:
            derived.escalated_at = notice["at"]
    reached: str | None = None
    branch: str | None = None
    for event in ordered:
        name, at = event["event"], event["at"]
        if name == "dispatched" and derived.dispatched_at is None:
            derived.dispatched_at = at
        if name == "delivered" and derived.delivered_at is None:
            derived.delivered_at = at
        if name in ("fed_back", "closed") and derived.fed_back_at is None:
            derived.fed_back_at = at
        if name == "closed" and derived.closed_at is None:
            derived.closed_at = at
        problem = None
        if reached in TERMINAL and name not in LATE_TOLERATED and name != reached:
            problem = f"{name} after the row was {reached}"
        elif name in ("accepted", "returned"):
            if branch is not None and branch != name:
                problem = f"{name} after the row was {branch}"
            branch = branch or name
        if problem is not None:
            derived.flags.append(
                {"event": name, "message_id": event["message_id"], "reason": problem}
            )
            continue
        if name == "cancelled":
            reached = "cancelled"
        elif reached != "cancelled" and (reached is None or RANK[name] > RANK[reached]):
            reached = name
    if reached is not None:
        derived.state = reached
    elif not ordered:
        derived.state = "dispatched"
    if not any(e["event"] == "dispatched" for e in ordered) and ordered:
        derived.flags.append(
            {
                "event": ordered[0]["event"],
                "message_id": ordered[0]["message_id"],
                "reason": "the ledger has not seen this item dispatched to this department",
            }
        )
    return derived


class Ledger:
    """The ledger on the hub's store (see the module docstring).

    Parameters:
      store: the hub's store (tables centre_item and centre_event, migration 0004).
      rules: the deadlines (`DeadlineRules.load`); default: the built-in ones.
      calendar: the working-day calendar; default: chinese-calendar's years only.
      departments: the departments each system serves, by system id and by target (queue) name,
        as records name them: who sent a step, whose system a delivery reached.
      clock: now, as an aware datetime (tests and the demo inject one; deadlines never sleep);
        default: the wall clock.
    """

    def __init__(
        self,
        store: Store,
        *,
        rules: DeadlineRules | None = None,
        calendar: WorkingCalendar | None = None,
        departments: Mapping[str, Sequence[Mapping[str, str]]] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.store = store
        self.rules = rules or DeadlineRules()
        self.calendar = calendar or WorkingCalendar()
        self.departments = dict(departments or {})
        self.clock = clock or _now

    # ------------------------------------------------------------------ what messages say

    def steps_published(self, system: str, envelope: Envelope) -> list[Step]:
        """The ledger steps of `envelope`, published by (or on behalf of) `system`."""
        dataset = envelope.spec.name
        if dataset == "risk_warning":
            return self._warning_steps(envelope)
        if dataset == "risk_feedback":
            return self._served_by(system, self._feedback_steps(envelope))
        if dataset == "collaboration_task":
            steps = self._task_steps(system, envelope)
            if envelope.data and str(envelope.data.get("status")) == "1":
                return steps  # a dispatch names its assignees itself
            return self._served_by(system, steps)
        if dataset == "complaint":
            return self._complaint_steps(envelope)
        return []

    def steps_delivered(self, target: str, envelope: Envelope) -> list[Step]:
        """The delivered steps of `envelope`, delivered to the system behind queue `target`."""
        served = {department_key(d) for d in self.departments.get(target, ())}
        dataset, data = envelope.spec.name, envelope.data or {}
        if envelope.operation is Operation.DELETE or not served:
            return []
        if dataset == "risk_warning":
            named = [data.get("responsible_department") or {}]
        elif dataset == "collaboration_task" and data.get("status") == "1":
            named = list(data.get("assignees") or [])
        else:
            return []
        kind = "warning" if dataset == "risk_warning" else "task"
        now = self.clock()
        return [
            Step(
                kind,
                envelope.subject,
                key,
                "delivered",
                now,
                envelope.id,
                department.get("name"),
                {"target": target},
            )
            for department in named
            if (key := department_key(department)) in served
        ]

    def _served_by(self, system: str, steps: list[Step]) -> list[Step]:
        served = frozenset(department_key(d) for d in self.departments.get(system, ()))
        return [dataclasses.replace(step, sender_serves=served) for step in steps]

    def _warning_steps(self, envelope: Envelope) -> list[Step]:
        item, data = envelope.subject, envelope.data or {}
        if envelope.operation is Operation.DELETE:
            return [Step("warning", item, ALL_ROWS, "cancelled", envelope.time, envelope.id)]
        if data.get("status") == "6":
            # The issuer closes the warning: every row; the re-sent warning is no new dispatch.
            return [Step("warning", item, ALL_ROWS, "closed", envelope.time, envelope.id)]
        if data.get("status") != "1":
            return []
        department = data.get("responsible_department") or {}
        issued = _parse(data.get("issued_time")) or envelope.time
        return [
            Step(
                "warning",
                item,
                department_key(department),
                "dispatched",
                issued,
                envelope.id,
                department.get("name"),
                {
                    "level": data.get("risk_level"),
                    "title": data.get("title"),
                    "deadline": data.get("deadline"),
                    "issuer": data.get("issuer"),
                    "region_code": data.get("region_code"),
                },
            )
        ]

    def _feedback_steps(self, envelope: Envelope) -> list[Step]:
        data = envelope.data or {}
        event = WARNING_STEPS.get(str(data.get("step")))
        if event is None or envelope.operation is Operation.DELETE:
            return []
        department = data.get("department") or {}
        at = _parse(data.get("step_time")) or envelope.time
        detail = {k: data.get(k) for k in WARNING_FEEDBACK_KEPT if data.get(k)}
        return [
            Step(
                "warning",
                str(data.get("warning_id")),
                department_key(department),
                event,
                at,
                envelope.id,
                department.get("name"),
                detail,
            )
        ]

    def _task_steps(self, system: str, envelope: Envelope) -> list[Step]:
        item, data = envelope.subject, envelope.data or {}
        if envelope.operation is Operation.DELETE:
            return [Step("task", item, ALL_ROWS, "cancelled", envelope.time, envelope.id)]
        status = str(data.get("status"))
        assignees = list(data.get("assignees") or [])
        if status == "1":
            detail = {
                "task_type": data.get("task_type"),
                "title": data.get("title"),
                "source_dataset": data.get("source_dataset"),
                "source_record_id": data.get("source_record_id"),
                "deadline": data.get("deadline"),
                "dispatcher": data.get("dispatcher"),
                "region_code": next(iter(data.get("region_codes") or []), None),
            }
            at = _parse(data.get("dispatched_time")) or envelope.time
            return [
                Step(
                    "task",
                    item,
                    department_key(a),
                    "dispatched",
                    at,
                    envelope.id,
                    a.get("name"),
                    detail,
                )
                for a in assignees
            ]
        event = TASK_STEPS.get(status)
        if event is None:
            return []
        at = (
            _parse(
                data.get("feedback_time")
                if event in ("fed_back", "closed")
                else data.get("accepted_time")
            )
            or envelope.time
        )
        detail = {k: data.get(k) for k in TASK_FEEDBACK_KEPT if data.get(k)}
        sender = {department_key(d) for d in self.departments.get(system, ())}
        mine = [a for a in assignees if department_key(a) in sender]
        if not mine and event == "closed":
            # The dispatcher closes it, at the close's own time (the feedback time is the
            # department's, carried unchanged).
            closed = envelope.time
            return [Step("task", item, ALL_ROWS, "closed", closed, envelope.id, None, detail)]
        if not mine and len(assignees) == 1:
            mine = assignees
        if not mine:
            # Kept under the sender's own department: flagged, as no dispatch to it was seen.
            served = self.departments.get(system) or [{"name": system}]
            mine = [dict(served[0])]
        return [
            Step("task", item, department_key(a), event, at, envelope.id, a.get("name"), detail)
            for a in mine
        ]

    def _complaint_steps(self, envelope: Envelope) -> list[Step]:
        data = envelope.data or {}
        if envelope.operation is Operation.DELETE:
            return []
        if data.get("status") == "6" and data.get("task_id"):
            event, at = "result", _parse(data.get("closed_time")) or envelope.time
        else:
            event, at = "received", _parse(data.get("received_time")) or envelope.time
        detail = {
            k: data.get(k)
            for k in ("scenario", "title", "task_id", "result", "status")
            if data.get(k)
        }
        return [Step("complaint", envelope.subject, ALL_ROWS, event, at, envelope.id, None, detail)]

    # ------------------------------------------------------------------ recording

    def record(self, steps: Iterable[Step]) -> None:
        """Record `steps`, each in its own transaction, and derive the rows they touch again."""
        for step in steps:
            with self.store.begin(durable=True, immediate=True) as db:
                self.record_in(db, step)

    def record_in(self, db: Connection, step: Step) -> None:
        """Record `step` in `db`'s transaction (an immediate one: the rows are derived again),
        with whatever else that transaction writes (a notice marked sent)."""
        now = _epoch(self.clock())
        if step.kind == "complaint":
            self._insert_event(db, step, step.department, now)
            return
        if step.department == ALL_ROWS:
            rows = db.execute(
                select(CENTRE_ITEM.c.department).where(
                    CENTRE_ITEM.c.kind == step.kind, CENTRE_ITEM.c.item_id == step.item_id
                )
            ).scalars()
            departments = list(rows)
            if not departments:
                log.warning(
                    "%s %s: %s for an item the ledger has no row of; kept as an event",
                    step.kind,
                    step.item_id,
                    step.event,
                )
                self._insert_event(db, step, ALL_ROWS, now)
                return
        else:
            departments = [step.department]
            if step.sender_serves:
                # A department answers for the rows of the departments its system serves: a
                # district bureau feeding back a task assigned to its provincial bureau moves
                # that row, not a new one of its own.
                assigned = [
                    department
                    for department in db.execute(
                        select(CENTRE_ITEM.c.department).where(
                            CENTRE_ITEM.c.kind == step.kind,
                            CENTRE_ITEM.c.item_id == step.item_id,
                            CENTRE_ITEM.c.department.in_(sorted(step.sender_serves)),
                        )
                    ).scalars()
                ]
                if assigned and step.department not in assigned:
                    departments = assigned[:1] if len(assigned) == 1 else [step.department]
        for department in departments:
            self._ensure_row(db, step, department, now)
            if self._insert_event(db, step, department, now):
                self._derive_row(db, step.kind, step.item_id, department, now)

    def _ensure_row(self, db: Connection, step: Step, department: str, now: float) -> None:
        db.execute(
            upsert(db, CENTRE_ITEM).on_conflict_do_nothing(
                index_elements=["kind", "item_id", "department"]
            ),
            {
                "kind": step.kind,
                "item_id": step.item_id,
                "department": department,
                "department_name": step.department_name,
                "state": "dispatched",
                "flags": "[]",
                "updated_at": now,
            },
        )
        # Row lock on PostgreSQL (SQLite's immediate transaction already serialises writers):
        # two processes recording steps of one row derive it one after the other.
        query = select(CENTRE_ITEM.c.kind).where(*self._row(step.kind, step.item_id, department))
        if db.dialect.name == "postgresql":
            query = query.with_for_update()
        db.execute(query)

    def _insert_event(self, db: Connection, step: Step, department: str, now: float) -> bool:
        """Insert the event; False when it was recorded before (the same message again).

        Told by the row RETURNING gives back, not by the rowcount, which psycopg reports as
        nonzero for a conflicting insert that did nothing: every repeat was derived again."""
        inserted = db.execute(
            upsert(db, CENTRE_EVENT)
            .on_conflict_do_nothing(
                index_elements=["kind", "item_id", "department", "event", "message_id"]
            )
            .returning(CENTRE_EVENT.c.message_id),
            {
                "kind": step.kind,
                "item_id": step.item_id,
                "department": department,
                "event": step.event,
                "message_id": step.message_id,
                "at": _epoch(step.at),
                "recorded_at": now,
                "detail": json.dumps(dict(step.detail), ensure_ascii=False, default=str),
            },
        ).first()
        return inserted is not None

    @staticmethod
    def _row(kind: str, item_id: str, department: str) -> tuple[Any, ...]:
        c = CENTRE_ITEM.c
        return (c.kind == kind, c.item_id == item_id, c.department == department)

    def _derive_row(
        self, db: Connection, kind: str, item_id: str, department: str, now: float
    ) -> None:
        e = CENTRE_EVENT.c
        events = [
            {**row._mapping, "detail": json.loads(row.detail or "{}")}
            for row in db.execute(
                select(e.event, e.at, e.message_id, e.detail).where(
                    e.kind == kind, e.item_id == item_id, e.department == department
                )
            )
        ]
        derived = derive(events)
        values: dict[str, Any] = {
            "state": derived.state,
            "dispatched_at": derived.dispatched_at,
            "delivered_at": derived.delivered_at,
            "fed_back_at": derived.fed_back_at,
            "closed_at": derived.closed_at,
            "reminded_at": derived.reminded_at,
            "escalated_at": derived.escalated_at,
            "flags": json.dumps(derived.flags, ensure_ascii=False),
            "updated_at": now,
        }
        dispatch = min(
            (ev for ev in events if ev["event"] == "dispatched"),
            key=lambda ev: ev["at"],
            default=None,
        )
        detail = dispatch["detail"] if dispatch is not None else {}
        if dispatch is not None:
            values.update(self._due(db, kind, detail, dispatch["at"]))
            values["source_dataset"] = detail.get("source_dataset")
            values["source_record_id"] = detail.get("source_record_id")
        values.update(_feedback_judged(kind, derived, events, detail.get("task_type")))
        db.execute(update(CENTRE_ITEM).where(*self._row(kind, item_id, department)).values(values))

    def _due(
        self, db: Connection, kind: str, detail: Mapping[str, Any], dispatched: float
    ) -> dict[str, Any]:
        own = _parse(detail.get("deadline"))
        if own is not None:
            # The dispatcher's 办理时限 on the record is what the department was told: it wins.
            return {"due_at": _epoch(own), "due_rule": RECORD_DEADLINE, "due_error": None}
        scenario = None
        if detail.get("source_dataset") == "complaint" and detail.get("source_record_id"):
            scenario = self._scenario(db, str(detail["source_record_id"]))
        chosen, rule = self.rules.rule(
            kind, level=detail.get("level"), task_type=detail.get("task_type"), scenario=scenario
        )
        start = dt.datetime.fromtimestamp(dispatched, dt.UTC)
        try:
            due = rule.due(start, self.calendar)
        except CalendarNotCovered as error:
            return {"due_at": None, "due_rule": f"{chosen}: {rule}", "due_error": str(error)}
        return {"due_at": _epoch(due), "due_rule": f"{chosen}: {rule}", "due_error": None}

    def _scenario(self, db: Connection, complaint_id: str) -> str | None:
        e = CENTRE_EVENT.c
        for (detail,) in db.execute(
            select(e.detail).where(e.kind == "complaint", e.item_id == complaint_id)
        ):
            scenario = json.loads(detail or "{}").get("scenario")
            if scenario:
                return str(scenario)
        return None

    # ------------------------------------------------------------------ reading

    def items(
        self,
        *,
        kind: str | None = None,
        state: str | None = None,
        department: str | None = None,
        overdue: bool = False,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Rows, oldest dispatch first, filtered; `department` matches its key or its name."""
        c = CENTRE_ITEM.c
        query = select(CENTRE_ITEM)
        if kind is not None:
            query = query.where(c.kind == kind)
        if state is not None:
            query = query.where(c.state == state)
        if department is not None:
            query = query.where((c.department == department) | (c.department_name == department))
        now = _epoch(self.clock())
        if overdue:
            query = query.where(c.state.in_(sorted(OVERDUE_STATES)), c.due_at < now)
        query = query.order_by(c.dispatched_at, c.kind, c.item_id, c.department).limit(limit)
        with self.store.begin() as db:
            return [self._view(row._mapping, now) for row in db.execute(query)]

    def item(self, item_id: str) -> dict[str, Any] | None:
        """Every row of `item_id` (warning or task), its timeline across every message, and the
        complaint it came from with the result the complainant was told, where known."""
        c, e = CENTRE_ITEM.c, CENTRE_EVENT.c
        now = _epoch(self.clock())
        with self.store.begin() as db:
            rows = [
                self._view(r._mapping, now)
                for r in db.execute(
                    select(CENTRE_ITEM).where(c.item_id == item_id).order_by(c.kind, c.department)
                )
            ]
            if not rows:
                return None
            sources = {
                r["source_record_id"]
                for r in rows
                if r["source_dataset"] == "complaint" and r["source_record_id"]
            }
            wanted = (and_(e.kind.in_(KINDS), e.item_id == item_id)) | (
                and_(e.kind == "complaint", e.item_id.in_(sorted(sources)))
            )
            events = list(db.execute(select(CENTRE_EVENT).where(wanted)))
        flagged = {
            (f["event"], f["message_id"], r["department"]): f["reason"]
            for r in rows
            for f in r["flags"]
        }
        timeline = [
            {
                "at": _time(ev.at),
                "kind": ev.kind,
                "item_id": ev.item_id,
                "department": ev.department or None,
                "event": ev.event,
                "message_id": ev.message_id,
                "recorded_at": _time(ev.recorded_at),
                "detail": json.loads(ev.detail or "{}"),
                "flag": flagged.get((ev.event, ev.message_id, ev.department)),
            }
            for ev in sorted(events, key=lambda ev: (ev.at, RANK.get(ev.event, 9)))
        ]
        return {
            "item_id": item_id,
            "kind": rows[0]["kind"],
            "rows": rows,
            "complaint": sorted(sources)[0] if sources else None,
            "timeline": timeline,
        }

    def open_counts(self) -> list[tuple[str, str, str, int]]:
        """(kind, department, state, rows) of every open state."""
        c = CENTRE_ITEM.c
        query = (
            select(c.kind, c.department_name, c.department, c.state, func.count())
            .where(c.state.in_(sorted(OPEN_STATES)))
            .group_by(c.kind, c.department_name, c.department, c.state)
        )
        with self.store.begin() as db:
            return [(k, n or d, s, int(count)) for k, n, d, s, count in db.execute(query)]

    def overdue_counts(self) -> list[tuple[str, str, int]]:
        """(kind, department, rows overdue now)."""
        c = CENTRE_ITEM.c
        now = _epoch(self.clock())
        query = (
            select(c.kind, c.department_name, c.department, func.count())
            .where(c.state.in_(sorted(OVERDUE_STATES)), c.due_at < now)
            .group_by(c.kind, c.department_name, c.department)
        )
        with self.store.begin() as db:
            return [(k, n or d, int(count)) for k, n, d, count in db.execute(query)]

    def notice_counts(self) -> list[tuple[str, str, str, int]]:
        """(kind, department, notice type: reminder or escalation, notices sent)."""
        c, e = CENTRE_ITEM.c, CENTRE_EVENT.c
        row = and_(c.kind == e.kind, c.item_id == e.item_id, c.department == e.department)
        query = (
            select(e.kind, c.department_name, e.department, e.event, func.count())
            .select_from(CENTRE_EVENT.outerjoin(CENTRE_ITEM, row))
            .where(e.event.in_(sorted(NOTICE_EVENTS.values())))
            .group_by(e.kind, c.department_name, e.department, e.event)
        )
        with self.store.begin() as db:
            return [
                (k, n or d, NOTICE_NAMES[event], int(count))
                for k, n, d, event, count in db.execute(query)
            ]

    def disposal_seconds(self) -> list[tuple[str, float]]:
        """(kind, seconds from dispatch to feedback) of every row fed back."""
        c = CENTRE_ITEM.c
        query = select(c.kind, c.fed_back_at - c.dispatched_at).where(
            c.fed_back_at.is_not(None), c.dispatched_at.is_not(None)
        )
        with self.store.begin() as db:
            return [(k, max(0.0, float(s))) for k, s in db.execute(query)]

    @staticmethod
    def _view(row: Any, now: float) -> dict[str, Any]:
        due = row["due_at"]
        return {
            "kind": row["kind"],
            "item_id": row["item_id"],
            "department": row["department"],
            "department_name": row["department_name"],
            "state": row["state"],
            "dispatched_at": _time(row["dispatched_at"]),
            "delivered_at": _time(row["delivered_at"]),
            "fed_back_at": _time(row["fed_back_at"]),
            "closed_at": _time(row["closed_at"]),
            "reminded_at": _time(row["reminded_at"]),
            "escalated_at": _time(row["escalated_at"]),
            "due_at": _time(due),
            "due_rule": row["due_rule"],
            "due_error": row["due_error"],
            "overdue": due is not None and row["state"] in OVERDUE_STATES and due < now,
            "source_dataset": row["source_dataset"],
            "source_record_id": row["source_record_id"],
            "flags": json.loads(row["flags"] or "[]"),
            "feedback_complete": row["feedback_complete"],
            "feedback_gaps": json.loads(row["feedback_gaps"] or "[]"),
        }


def _feedback_judged(
    kind: str, derived: Derived, events: Sequence[Mapping[str, Any]], task_type: str | None
) -> dict[str, Any]:
    """The feedback columns of a row: judged once it is fed back, None before."""
    if derived.fed_back_at is None:
        return {"feedback_complete": None, "feedback_gaps": None}
    gaps = feedback_gaps(kind, last_feedback(events), task_type)
    return {"feedback_complete": not gaps, "feedback_gaps": json.dumps(gaps, ensure_ascii=False)}


def _parse(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


TRACKED = frozenset({"risk_warning", "risk_feedback", "collaboration_task", "complaint"})


def _tracked(routing_key: str) -> bool:
    return routing_key.split(".", 1)[0] in TRACKED


def _envelope(headers: Mapping[str, Any], content_type: str, body: bytes) -> Envelope:
    return Envelope.from_amqp(
        {"headers": dict(headers), "content_type": content_type}, body, check_record=False
    )


class LedgerObserver(Observer):
    """The hub's observer, also feeding the ledger from what was published and delivered.

    Parameters: those of `Observer`, and `ledger`.
    """

    def __init__(self, *args: Any, ledger: Ledger, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger = ledger

    def published(
        self,
        seen: Reception,
        *,
        seconds: float,
        outgoing: Sequence[Outgoing],
        failures: Sequence[PublishFailure] = (),
        error: BaseException | None = None,
    ) -> None:
        super().published(seen, seconds=seconds, outgoing=outgoing, failures=failures, error=error)
        if error is not None:
            return
        failed = {f.index for f in failures}
        confirmed = [
            m for i, m in enumerate(outgoing) if i not in failed and _tracked(m.routing_key)
        ]
        self._feed(lambda: self._published_steps(seen.system, confirmed))

    def delivered(self, target: str, message: Message, *, seconds: float) -> None:
        super().delivered(target, message, seconds=seconds)
        if _tracked(message.routing_key):
            self._feed(
                lambda: self.ledger.steps_delivered(
                    target, _envelope(message.headers, message.content_type, message.body)
                )
            )

    def _published_steps(self, system: str, messages: Sequence[Outgoing]) -> Iterator[Step]:
        seen: set[str] = set()
        for message in messages:
            envelope = _envelope(message.headers, message.content_type, message.body)
            if envelope.id in seen:  # one copy per addressee: the record once
                continue
            seen.add(envelope.id)
            yield from self.ledger.steps_published(system, envelope)

    def _feed(self, steps: Callable[[], Iterable[Step]]) -> None:
        try:
            self.ledger.record(list(steps()))
        except Exception:
            log.exception("the ledger could not record a step; the message moves on")


class CentreCollector(Collector):
    """`jghub_centre_open`, `jghub_centre_overdue`, `jghub_centre_disposal_seconds` and
    `jghub_centre_notices_total`, computed from the store at scrape time: every process and host
    sees the same figures."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[Metric]:
        opened = GaugeMetricFamily(
            "jghub_centre_open",
            "Ledger rows (warning or task, per assignee department) not yet closed, by state.",
            labels=["kind", "department", "state"],
        )
        overdue = GaugeMetricFamily(
            "jghub_centre_overdue",
            "Ledger rows past their due time that the department has not fed back.",
            labels=["kind", "department"],
        )
        disposal = HistogramMetricFamily(
            "jghub_centre_disposal_seconds",
            "Time from dispatch to the department's feedback, of every row fed back.",
            labels=["kind"],
        )
        notices = CounterMetricFamily(
            "jghub_centre_notices",
            "Due-soon reminders (to the department) and overdue escalations (to the dispatcher) "
            "the centre sent, once each per row.",
            labels=["kind", "department", "notice_type"],
        )
        try:
            for kind, department, state, count in self.ledger.open_counts():
                opened.add_metric([kind, department, state], count)
            for kind, department, count in self.ledger.overdue_counts():
                overdue.add_metric([kind, department], count)
            for kind, department, notice_type, count in self.ledger.notice_counts():
                notices.add_metric([kind, department, notice_type], count)
            times = self.ledger.disposal_seconds()
        except Exception:
            log.exception("the ledger could not be read for /metrics")
            return
        for kind in KINDS:
            mine = [s for k, s in times if k == kind]
            buckets = [
                (_bucket(b), float(sum(1 for s in mine if s <= b))) for b in DISPOSAL_BUCKETS_S
            ]
            buckets.append(("+Inf", float(len(mine))))
            disposal.add_metric([kind], buckets, sum(mine))
        yield opened
        yield overdue
        yield disposal
        yield notices


def _bucket(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else str(bound)


def departments_by_system(systems: Iterable[Any]) -> dict[str, list[dict[str, str]]]:
    """The departments each configured system serves, by its id (its target name too)."""
    return {system.id: [department_ref(d) for d in system.departments] for system in systems}
