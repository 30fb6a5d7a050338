"""The business-collaboration centre (业务协同中心): complaints and grassroots events become tasks,
the tasks' steps go back to where they came from.

A system inside the hub, configured like any other (`auth: {scheme: internal}`) with a
`collaboration` section instead of an outbound one. It consumes the canonical events its routes
select from its own queue, like any target, and publishes the records it derives through the bus:

- a complaint from the complaint platform, accepted and not closed, becomes a collaboration task
  (type 2) for the department system its scenario names (the `scenarios` table); a grassroots
  event of a kind the `event_kinds` table names, reported and not yet handled, becomes a task
  (type 3) for the system that table names. Each is addressed to that system
  (`collaboration_task.<region>.<centre>.<department system>`);
- a department's steps on such a task go back to the platform the record came from as the
  record, updated (`complaint.<region>.<centre>.complaint-platform`, rendered as its
  handling_result; `grassroots_event.<region>.<centre>.grassroots-platform`, rendered as its
  event_feedback): accepted (complaint 已转办 / event 处置中 with the handling department), in
  progress (办理中 / 处置中 with the department's note), fed back or closed (办结 with the result),
  returned (complaint back to 已受理 / event 已退回, with the department's reason, for the
  platform to dispatch again). Each task keeps how far its platform has been told (its `Loop`):
  an earlier step arriving late, or any step after a result or a return, tells nothing; the same
  step again yields the same message.
- a task fed back (status 5) is closed by its dispatcher, the centre, once its platform was told
  the result: the task, status 6 (已办结), addressed to the system it was assigned to, which
  hears that its feedback was accepted and the task is done (the ledger closes the task's rows).
  The platform decides again only on the complaint or event (a later change dispatches anew).
- after a return, the record's next change made later than the return dispatches the task again
  (at that change's time: a new idempotency key), to whatever department its table names then.
  A task's steps are taken only from the system it was assigned to (kept with the record;
  the envelope's `lineagesystem` names the system that sent a step): ingress refuses a step in
  another department's name already, and the centre checks again, so that a forged result
  never reaches the platform even if a record got past ingress.

Everything is derived deterministically from what was delivered: the task of a complaint has the
key `XT-<complaint id>`, of an event `SJ-<event id>`, the complaint's acceptance time (the
event's report time) as its dispatch time and so the same idempotency key however often the
record is delivered again (a redelivery, a replay, an update while still open). The record is
kept in the hub's store, because a task carries too little of it to rebuild what the platform
must be told.

A derived record is published with confirms before its input is acknowledged, so a message is
settled only once its consequence is safe on the bus; a publish the bus did not confirm is
retried through the bus's delayed tiers. Nothing is dropped quietly: a scenario no table entry
covers (without a default), a department no system serves, a fed-back or returned step on a
task the centre never dispatched, or a step of a task from a system it was not assigned to goes
to the dead letters with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Column, MetaData, String, Table, Text, create_engine, select, update

from adapters.authorisation import SERVED_RULE, NotAuthorised
from adapters.egress import NotDelivered, decode, settle
from adapters.errors import IngressUnavailable
from adapters.ingress import Ingress
from adapters.routing import Unaddressable, department_ref
from bus import Broker, Delivery, PublishFailed
from centre.deadlines import DeadlineRules
from centre.workdays import CalendarNotCovered, WorkingCalendar
from standard.datasets.base import StandardRecord
from standard.datasets.collaboration_task import CLOSED as TASK_CLOSED
from standard.datasets.collaboration_task import (
    FED_BACK,
    FED_BACK_STATUSES,
    RETURNED,
    CollaborationTask,
)
from standard.datasets.complaint import Complaint
from standard.datasets.grassroots_event import GrassrootsEvent
from standard.envelope import Envelope, Operation
from standard.errors import StandardError
from store import METADATA, Store, StoreUnavailable, replacing, upsert
from systems import CollaborationConfig, SystemConfig

log = logging.getLogger("centre.collaboration")

OPEN_COMPLAINT_STATUSES = frozenset({"2", "4", "5"})
"""Accepted, forwarded, in progress: a complaint someone must now act on."""
ACCEPTED_COMPLAINT, FORWARDED_COMPLAINT, IN_HAND_COMPLAINT, CLOSED = "2", "4", "5", "6"
"""complaint_status 已受理, 已转办, 办理中, 已办结."""
OPEN_EVENT_STATUSES = frozenset({"1", "2", "3"})
"""Reported, accepted, dispatched (with no handling department yet): nobody is handling it."""
EVENT_HANDLING, EVENT_CLOSED, EVENT_RETURNED = "4", "5", "7"
"""event_status 处置中, 已办结, 已退回."""
COMPLAINT_FORWARDED_TASK = "2"
"""task_type 投诉举报转办."""
GRASSROOTS_EVENT_TASK = "3"
"""task_type 基层治理事件转办."""
DISPATCHED, ACCEPTED, IN_PROGRESS = "1", "2", "4"
"""task_status 已派发, 已签收, 办理中."""
CLOSING_DELAY = timedelta(seconds=1)
"""How long after the result it accepts the centre closes a task (see `_close`)."""
STAGE = "deliver"
"""The stage of the centre's failures in a message's history: its delivery is what it derives."""


class CentreConfigError(ValueError):
    """The centre's configuration names what does not exist (a system serving no department)."""


class CollaborationCentre:
    """The business-collaboration centre (see the module docstring).

    Parameters:
      system: its entry in the systems configuration (auth internal, `collaboration` section,
        its own department first in `departments`).
      publisher: the inbound path it publishes derived records through; its directory says which
        system serves which department. The worker connects it to the consumer's broker
        (`attach`).
      store: the hub's store, where it keeps the complaints it turned into tasks (not closed by
        the centre).
      data_dir: the hub's data folder: the complaints a hub before the store kept in
        `<system id>.sqlite3` there are taken into the store once (the file is then renamed
        `<system id>.sqlite3.adopted`); None: no such file is looked for.
      deadlines, calendar: the rules that set each task's deadline, and the working-day
        calendar they count with: the ledger's (default: the built-in rules and calendar).

    Raises CentreConfigError when the scenario table names a system that serves no department:
    at start, rather than at the first complaint of that scenario.
    """

    def __init__(
        self,
        system: SystemConfig,
        publisher: Ingress,
        store: Store,
        data_dir: Path | None = None,
        *,
        deadlines: DeadlineRules | None = None,
        calendar: WorkingCalendar | None = None,
    ) -> None:
        if system.collaboration is None or not system.departments:
            raise CentreConfigError(
                f"system {system.id} is not configured as the collaboration centre (it needs a "
                "`collaboration` section and its own department in `departments`)"
            )
        self.system = system
        self.table: CollaborationConfig = system.collaboration
        self.deadlines = deadlines or DeadlineRules()
        self.calendar = calendar or WorkingCalendar()
        self.publisher = publisher
        self.dispatcher = department_ref(system.departments[0])
        named = {target for _, target in self.table.named_systems()}
        lost = sorted(s for s in named if publisher.directory.department_of(s) is None)
        if lost:
            raise CentreConfigError(
                f"system {system.id}: the scenario table names {', '.join(lost)}, which no "
                "configured system with `departments` is"
            )
        self._store = _ComplaintStore(store, system.id)
        if data_dir is not None:
            self._store.adopt(data_dir / f"{system.id}.sqlite3")

    @property
    def name(self) -> str:
        """Its target name on the bus: its system's id."""
        return self.system.id

    @property
    def concurrency(self) -> int:
        """Messages handled at once (`collaboration.concurrency`)."""
        return self.table.concurrency

    def attach(self, broker: Broker | None) -> None:
        """Publish through `broker` (the consumer's connection) from now on."""
        self.publisher.attach(broker)

    def handle(self, delivery: Delivery) -> None:
        """Decode, act on and settle one message of its queue (the consumer's handler)."""
        try:
            self.act(decode(delivery.message, target=self.system.id))
        except NotDelivered as failure:
            settle(delivery, failure, target=self.system.id)
            return
        except StoreUnavailable as error:
            # The complaints live in the store: wait for it without spending a retry tier.
            settle(delivery, NotDelivered("postpone", STAGE, str(error)), target=self.system.id)
            return
        delivery.ack()

    def act(self, envelope: Envelope) -> None:
        """Derive and publish what `envelope` calls for; NotDelivered when that cannot be."""
        dataset = envelope.spec.name
        if dataset == "complaint":
            self._dispatch_complaint(envelope)
        elif dataset == "grassroots_event":
            self._dispatch_event(envelope)
        elif dataset == "collaboration_task":
            self._answer(envelope)
        else:
            raise NotDelivered(
                "dead_letter",
                STAGE,
                f"the collaboration centre {self.system.id} takes complaints, grassroots events "
                f"and task feedback, not {dataset}; narrow its routes",
            )

    # ------------------------------------------------------------------ complaint or event → task

    def _dispatch_complaint(self, envelope: Envelope) -> None:
        if envelope.operation is Operation.DELETE:
            log.debug("complaint %s withdrawn; its task is not recalled", envelope.subject)
            return
        complaint = Complaint.model_validate(envelope.data)
        if complaint.status not in OPEN_COMPLAINT_STATUSES:
            log.debug(
                "complaint %s has status %s: nothing to dispatch", envelope.subject,
                complaint.status,
            )  # fmt: skip
            return
        system_id = self.table.scenarios.get(complaint.scenario, self.table.default_system)
        if system_id is None:
            raise NotDelivered(
                "dead_letter",
                STAGE,
                f"complaint {complaint.complaint_id}: scenario {complaint.scenario} is not in the "
                f"scenario table of {self.system.id} and it has no default_system; add the "
                "scenario to its collaboration.scenarios",
            )
        self._dispatch(
            envelope,
            Origin(
                kind="complaint",
                record_id=complaint.complaint_id,
                title=complaint.title,
                content=complaint.content,
                region_code=complaint.region_code,
                at=complaint.accepted_time or complaint.received_time,
                task_type=COMPLAINT_FORWARDED_TASK,
                system_id=system_id,
                scenario=complaint.scenario,
            ),
        )

    def _dispatch_event(self, envelope: Envelope) -> None:
        if envelope.operation is Operation.DELETE:
            log.debug("grassroots event %s withdrawn; its task is not recalled", envelope.subject)
            return
        event = GrassrootsEvent.model_validate(envelope.data)
        system_id = self.table.event_kinds.get(event.scenario)
        if system_id is None:
            log.debug("event %s of kind %s: not a kind the centre dispatches", event.event_id,
                      event.scenario)  # fmt: skip
            return
        if event.status not in OPEN_EVENT_STATUSES or event.handling_department is not None:
            log.debug("event %s has status %s (handled by %s): nothing to dispatch",
                      event.event_id, event.status, event.handling_department)  # fmt: skip
            return
        self._dispatch(
            envelope,
            Origin(
                kind="grassroots_event",
                record_id=event.event_id,
                title=event.title,
                content=event.description,
                region_code=event.region_code,
                at=event.reported_time,
                task_type=GRASSROOTS_EVENT_TASK,
                system_id=system_id,
            ),
        )

    def _dispatch(self, envelope: Envelope, origin: Origin) -> None:
        """Publish the task `origin` (from the record in `envelope`) becomes, addressed to its
        system, and keep the record until the task's result comes back.

        The task is dispatched at the record's acceptance (or report) time, so a repeat of the
        record yields the same task under the same idempotency key. Once the task was returned,
        only a change of the record made after the return dispatches it again (at that change's
        time: a new key the department does not drop); earlier changes dispatch nothing.
        """
        assignee = self.publisher.directory.department_of(origin.system_id)
        if assignee is None:
            raise NotDelivered(
                "dead_letter",
                STAGE,
                f"{origin.kind} {origin.record_id}: it goes to system {origin.system_id!r}, which "
                "declares no department (its `departments` in the systems configuration)",
            )
        task_id = task_id_of(origin.record_id, TASK_PREFIX[origin.kind])
        kept = self._store.find(task_id)
        loop = kept.loop if kept is not None else Loop()
        dispatched = origin.at
        if loop.returned_at is not None:
            if envelope.time <= loop.returned_at:
                log.info(
                    "%s %s: its task %s was returned at %s; this change (%s) is older, so it "
                    "is not dispatched again", origin.kind, origin.record_id, task_id,
                    loop.returned_at.isoformat(), envelope.time.isoformat(),
                )  # fmt: skip
                return
            dispatched = envelope.time
            loop = Loop()
        task = CollaborationTask.model_validate(
            {
                "task_id": task_id,
                "title": origin.title,
                "task_type": origin.task_type,
                "description": origin.content,
                "source_dataset": origin.kind,
                "source_record_id": origin.record_id,
                "dispatcher": self.dispatcher,
                "assignees": [assignee],
                "region_codes": [origin.region_code],
                "dispatched_time": dispatched,
                "deadline": self._deadline(origin, dispatched),
                "status": DISPATCHED,
            }
        )
        operation = Operation.INSERT if dispatched == origin.at else Operation.UPDATE
        derived = self._derived(task, envelope, operation, dispatched)
        self._store.keep(task.task_id, envelope, origin.system_id, loop)
        self._publish(origin.kind, derived)

    # ------------------------------------------------------------------ task steps → origin

    def _deadline(self, origin: Origin, dispatched: datetime) -> datetime | None:
        """The task's 办理时限 by the centre's deadline rules (task type, complaint scenario), as
        the ledger holds the department to it; None past the years the calendar covers (the
        ledger then says why on the item)."""
        chosen, rule = self.deadlines.rule(
            "task", task_type=origin.task_type, scenario=origin.scenario
        )
        try:
            return rule.due(dispatched, self.calendar)
        except CalendarNotCovered as error:
            log.warning("task of %s %s: no deadline (%s: %s): %s", origin.kind,
                        origin.record_id, chosen, rule, error)  # fmt: skip
            return None

    def _answer(self, envelope: Envelope) -> None:
        if envelope.operation is Operation.DELETE:
            return
        task = CollaborationTask.model_validate(envelope.data)
        # The kept record, not the echoed source_dataset, says whose task it is: a department
        # system may not carry every field of a task back unchanged.
        kept = self._store.find(task.task_id)
        if kept is not None:
            self._check_sender(task, envelope, kept.origin, kept.assigned)
        if kept is None:
            if task.status in FED_BACK_STATUSES or task.status == RETURNED:
                raise NotDelivered(
                    "dead_letter",
                    STAGE,
                    f"task {task.task_id}: step {task.status} on a task {self.system.id} has no "
                    "record of dispatching (no complaint or event kept for it); nothing can be "
                    "told to the platform it came from",
                )
            log.debug("task %s: step %s of a task not dispatched here noted", task.task_id,
                      task.status)  # fmt: skip
            return
        step = Step.of(task, envelope.time)
        if step is None:
            log.debug("task %s: step %s tells the platform nothing", task.task_id, task.status)
            return
        if not kept.loop.admits(step):
            log.info(
                "task %s: step %s at %s arrived after the platform was told %s at %s; it "
                "changes nothing", task.task_id, task.status, step.at.isoformat(),
                kept.loop.told, kept.loop.told_at.isoformat() if kept.loop.told_at else "-",
            )  # fmt: skip
            return
        told = _told(kept.origin, task, step)
        derived = self._derived(told, kept.origin, Operation.UPDATE, step.at)
        self._publish("collaboration_task", derived, addressee=kept.origin.lineagesystem)
        if task.status == FED_BACK:
            self._close(task, kept, step.at)
        # Recorded once the bus confirmed them: a crash in between repeats the same messages.
        self._store.remember(task.task_id, kept.loop.after(step))
        if step.rank == RETURN_RANK:
            log.info(
                "task %s returned by %s (%s): sent back to %s for reassignment", task.task_id,
                kept.assigned, task.return_reason, kept.origin.lineagesystem,
            )  # fmt: skip

    def _close(self, task: CollaborationTask, kept: Kept, fed_back: datetime) -> None:
        """Close `task`, fed back at `fed_back`: status 6, addressed to its assignee's system.

        Dated a second after the result it accepts, so the close is a change of its own with an
        idempotency key of its own (the key knows the record and its time, not its status); a
        redelivered feedback closes the task again under the same key.
        """
        assignee = kept.assigned or self.publisher.directory.system_of(task.assignees[0])
        closed = task.model_copy(update={"status": TASK_CLOSED})
        at = fed_back + CLOSING_DELAY
        derived = self._derived(closed, kept.origin, Operation.UPDATE, at)
        self._publish("collaboration_task", derived, addressee=assignee)

    def _check_sender(
        self, task: CollaborationTask, step: Envelope, origin: Envelope, assigned: str | None
    ) -> None:
        """Dead-letter a step of `task` that did not come from the system it was assigned to.

        A complaint kept before the assigned system was recorded is held to the system its
        scenario's table entry names now.
        """
        if assigned is None:
            scenario = origin.data.get("scenario")
            assigned = self.table.scenarios.get(str(scenario), self.table.default_system)
        sender = step.lineagesystem
        if sender is not None and sender == assigned:
            return
        raise NotDelivered(
            "dead_letter",
            STAGE,
            f"task {task.task_id}: step {task.status} came from {sender or 'an unnamed system'}, "
            f"but the task was assigned to {assigned}; rule '{SERVED_RULE}': a task's feedback, "
            "acceptance or return is taken only from the system of its assignee, so nothing is "
            "told to the platform",
        )

    # ------------------------------------------------------------------ both

    def _derived(
        self, record: Any, cause: Envelope, operation: Operation, time: datetime
    ) -> Envelope:
        """`record` in an envelope whose lineage is the payload `cause` came from; its id follows
        from its idempotency key (`Envelope.wrap`), so a repeat is the same message."""
        try:
            return Envelope.wrap(
                record,
                source=self.table.source,
                operation=operation,
                time=time,
                correlationid=cause.correlationid,
                lineagedigest=cause.lineagedigest,
                lineagesystem=cause.lineagesystem,
                lineagelocation=cause.lineagelocation,
            )
        except StandardError as error:
            raise NotDelivered(
                "dead_letter", STAGE, f"the derived {record!r:.80} is invalid: {error}"
            ) from None

    def _publish(self, cause: str, envelope: Envelope, *, addressee: str | None = None) -> None:
        try:
            keys = self.publisher.publish_derived(
                self.system.id, cause, [envelope], addressee=addressee
            )
        except (Unaddressable, NotAuthorised) as error:
            raise NotDelivered("dead_letter", STAGE, str(error)) from None
        except PublishFailed as failed:
            if any(failure.unroutable for failure in failed.failures):
                raise NotDelivered(
                    "dead_letter",
                    STAGE,
                    f"{envelope.spec.name} {envelope.subject} derived by {self.system.id}: no "
                    f"system's routes take it ({failed})",
                ) from None
            raise NotDelivered(
                "retry", STAGE, f"the bus did not confirm {envelope.subject}: {failed}"
            ) from None
        except IngressUnavailable as error:
            raise NotDelivered("retry", STAGE, str(error)) from None
        log.debug("%s %s published under %s", envelope.spec.name, envelope.subject, keys)

    def close(self) -> None:
        self._store.close()


def task_id_of(record_id: str, prefix: str = "XT") -> str:
    """The task a record becomes: <prefix>-<record id> (XT for a complaint, SJ for a grassroots
    event), or a digest when that would be too long."""
    task_id = f"{prefix}-{record_id}"
    if len(task_id) <= 64:
        return task_id
    return f"{prefix}-" + hashlib.sha256(record_id.encode()).hexdigest()[:40]


TASK_PREFIX = {"complaint": "XT", "grassroots_event": "SJ"}
"""The prefix of the task id each kind of record becomes."""


@dataclass(frozen=True)
class Origin:
    """What a task is made of, from the complaint or grassroots event it comes from."""

    kind: str
    """The dataset of the record: complaint or grassroots_event."""
    record_id: str
    title: str
    content: str
    region_code: str
    at: datetime
    """Its first dispatch time: the complaint's acceptance, the event's report."""
    task_type: str
    system_id: str
    """The department system the table sends it to."""
    scenario: str | None = None
    """The complaint's scenario, which may set the task's deadline (`centre.deadlines`)."""


ACCEPT_RANK, PROGRESS_RANK, RETURN_RANK, RESULT_RANK = 1, 2, 3, 4
FINAL_RANKS = frozenset({RETURN_RANK, RESULT_RANK})
"""After a return or a result the platform decides again; the old assignment's steps are late."""


@dataclass(frozen=True)
class Step:
    """A step of a task the platform it came from is told: its rank in the loop and its time."""

    rank: int
    at: datetime

    @classmethod
    def of(cls, task: CollaborationTask, received: datetime) -> Step | None:
        """The step `task` reports (`received`: its envelope's time, for the steps that carry
        no time of their own); None for a dispatch, which the platform is not told of."""
        if task.status in FED_BACK_STATUSES and task.feedback_time is not None:
            return cls(RESULT_RANK, task.feedback_time)
        if task.status == RETURNED:
            return cls(RETURN_RANK, received)
        if task.status == IN_PROGRESS:
            return cls(PROGRESS_RANK, received)
        if task.status == ACCEPTED and task.accepted_time is not None:
            return cls(ACCEPT_RANK, task.accepted_time)
        return None


@dataclass(frozen=True)
class Loop:
    """How far the platform a task came from has been told, and when the task was returned."""

    told: int | None = None
    told_at: datetime | None = None
    returned_at: datetime | None = None

    def admits(self, step: Step) -> bool:
        """Whether `step` is told: a later step, or the last one again (the same message, which
        the platform's repeat check drops); never an earlier one, nor anything after a return
        or a result but that same step again."""
        if self.told is None or self.told_at is None:
            return True
        if self.told in FINAL_RANKS:
            return (step.rank, step.at) == (self.told, self.told_at)
        return (step.rank, step.at) >= (self.told, self.told_at)

    def after(self, step: Step) -> Loop:
        returned = step.at if step.rank == RETURN_RANK else self.returned_at
        return Loop(step.rank, step.at, returned)

    def to_json(self) -> str | None:
        if self.told is None and self.returned_at is None:
            return None
        return json.dumps(
            {
                "told": self.told,
                "told_at": self.told_at.isoformat() if self.told_at else None,
                "returned_at": self.returned_at.isoformat() if self.returned_at else None,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> Loop:
        if not text:
            return cls()
        data = json.loads(text)

        def when(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        return cls(data.get("told"), when(data.get("told_at")), when(data.get("returned_at")))


def _told(origin: Envelope, task: CollaborationTask, step: Step) -> StandardRecord:
    """The record `origin` came from, updated with `step` of its task, as its platform takes it
    (the complaint platform's handling_result, the grassroots platform's event_feedback)."""
    department = task.assignees[0].model_dump(mode="json")
    if origin.spec.name == "grassroots_event":
        event: dict[str, Any] = {**origin.data, "task_id": task.task_id}
        if step.rank == RETURN_RANK:
            event |= {"status": EVENT_RETURNED, "handling_department": None,
                      "disposal_result": _returned(task)}  # fmt: skip
        else:
            event |= {"status": EVENT_CLOSED if step.rank == RESULT_RANK else EVENT_HANDLING,
                      "handling_department": department}  # fmt: skip
            if task.feedback_result is not None:
                event["disposal_result"] = task.feedback_result
            if step.rank == RESULT_RANK:
                event["closed_time"] = step.at
        return GrassrootsEvent.model_validate(event)
    complaint: dict[str, Any] = {**origin.data, "task_id": task.task_id}
    if step.rank == RETURN_RANK:
        # Back to 已受理 with no handling department: the platform dispatches it again.
        complaint |= {"status": ACCEPTED_COMPLAINT, "handling_department": None,
                      "result": _returned(task)}  # fmt: skip
    elif step.rank == RESULT_RANK:
        complaint |= {"status": CLOSED, "result": task.feedback_result,
                      "handling_department": department, "closed_time": step.at}  # fmt: skip
    else:
        status = FORWARDED_COMPLAINT if step.rank == ACCEPT_RANK else IN_HAND_COMPLAINT
        complaint |= {"status": max(str(origin.data.get("status")), status),
                      "handling_department": department}  # fmt: skip
        if step.rank == PROGRESS_RANK and task.feedback_result is not None:
            complaint["result"] = task.feedback_result
    return Complaint.model_validate(complaint)


def _returned(task: CollaborationTask) -> str:
    department = task.assignees[0]
    return f"{department.name} 退回任务 {task.task_id}：{task.return_reason}"


CENTRE_COMPLAINT = Table(
    "centre_complaint",
    METADATA,
    Column("centre", String, primary_key=True),
    Column("task_id", String, primary_key=True),
    Column("envelope", Text, nullable=False),
    Column("assigned_system", String, nullable=True),
    Column("loop", Text, nullable=True),
)


@dataclass(frozen=True)
class Kept:
    """A record the centre turned into a task, with the system the task was assigned to (None
    in rows kept before it was recorded) and how far its platform has been told."""

    origin: Envelope
    assigned: str | None
    loop: Loop


class _ComplaintStore:
    """The complaints and grassroots events a centre turned into tasks, by task id, each with
    the system its task was assigned to (NULL in rows kept before it was recorded) and its
    loop: the last step its platform was told, and when the task was returned."""

    def __init__(self, store: Store, centre: str) -> None:
        self.store = store
        self.centre = centre

    def keep(
        self, task_id: str, envelope: Envelope, assigned_system: str, loop: Loop | None = None
    ) -> None:
        loop = loop or Loop()
        row = {
            "centre": self.centre,
            "task_id": task_id,
            "envelope": envelope.to_json().decode(),
            "assigned_system": assigned_system,
            "loop": loop.to_json(),
        }
        # Durable: the complaint's message is acknowledged to the bus once this commits.
        with self.store.begin(durable=True) as db:
            db.execute(replacing(db, CENTRE_COMPLAINT), row)

    def remember(self, task_id: str, loop: Loop) -> None:
        """Its platform was told up to `loop` (durable: the step is acknowledged after this)."""
        table = CENTRE_COMPLAINT
        with self.store.begin(durable=True) as db:
            db.execute(
                update(table)
                .where(table.c.centre == self.centre, table.c.task_id == task_id)
                .values(loop=loop.to_json())
            )

    def find(self, task_id: str) -> Kept | None:
        """The record kept for `task_id`, the system its task was assigned to and its loop."""
        table = CENTRE_COMPLAINT
        with self.store.begin() as db:
            row = db.execute(
                select(table.c.envelope, table.c.assigned_system, table.c.loop).where(
                    table.c.centre == self.centre, table.c.task_id == task_id
                )
            ).first()
        if row is None:
            return None
        try:
            return Kept(Envelope.from_json(row[0]), row[1], Loop.from_json(row[2]))
        except (StandardError, ValidationError, json.JSONDecodeError, ValueError):
            return None

    def adopt(self, path: Path) -> int:
        """Take the complaints a hub before the store kept in the SQLite file `path` (its table
        `complaint`, with or without `assigned_system`) into the store, keeping any the store
        already has; then rename the file `<name>.adopted`. Return how many were taken."""
        if not path.is_file():
            return 0
        old = create_engine(f"sqlite:///{path}")
        try:
            with old.connect() as db:
                kept = Table("complaint", MetaData(), autoload_with=db)
                rows = [
                    {
                        "centre": self.centre,
                        "task_id": row.task_id,
                        "envelope": row.envelope,
                        "assigned_system": getattr(row, "assigned_system", None),
                    }
                    for row in db.execute(select(kept))
                    if row.envelope is not None
                ]
        finally:
            old.dispose()
        if rows:
            with self.store.begin(durable=True) as db:
                db.execute(
                    upsert(db, CENTRE_COMPLAINT).on_conflict_do_nothing(
                        index_elements=["centre", "task_id"]
                    ),
                    rows,
                )
        path.rename(path.with_name(path.name + ".adopted"))
        log.info("took %d open complaint(s) from %s into the store", len(rows), path)
        return len(rows)

    def close(self) -> None:
        """Nothing to release: the store belongs to whoever opened it."""
