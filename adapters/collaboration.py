"""The business-collaboration centre (业务协同中心): complaints become tasks, task results go back.

A system inside the hub, configured like any other (`auth: {scheme: internal}`, outbound adapter
`collaboration`), whose "delivery" is to derive new records and publish them through the bus:

- a complaint from the complaint platform, accepted and not closed, becomes a collaboration task
  for the department system its scenario names (the `scenarios` table), addressed to that
  system (`collaboration_task.<region>.<centre>.<department system>`);
- a department's feedback on such a task (fed back or closed) becomes the complaint, updated
  with the result and closed, addressed back to the system the complaint came from
  (`complaint.<region>.<centre>.complaint-platform`), which renders it as its handling result.

Everything is derived deterministically from what was delivered: the task of a complaint has the
key `XT-<complaint id>`, the complaint's acceptance time as its dispatch time and so the same
idempotency key however often the complaint is delivered again (a redelivery, a replay, an update
while still open). The complaint is kept (a SQLite file in the data folder) until its result comes
back, because a task carries too little of it to rebuild the complaint the platform must be told.

A derived record is published with confirms before `deliver` returns, so the worker acks the
input only once its consequence is safe on the bus. Nothing is dropped quietly: a scenario no
table entry covers (without a default), a department no system serves, or feedback on a task the
centre never dispatched is refused as permanent, and the worker dead-letters it with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adapters.base import AdapterContext, Sender
from adapters.errors import (
    AdapterConfigError,
    IngressUnavailable,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from adapters.routing import Unaddressable, department_ref
from bus import PublishFailed
from standard.datasets.collaboration_task import FED_BACK_STATUSES, CollaborationTask
from standard.datasets.complaint import Complaint
from standard.envelope import Envelope, Operation
from standard.errors import StandardError

if TYPE_CHECKING:
    from adapters.ingress import Ingress

log = logging.getLogger("adapters.collaboration")

OPEN_COMPLAINT_STATUSES = frozenset({"2", "4", "5"})
"""Accepted, forwarded, in progress: a complaint someone must now act on."""
CLOSED = "6"
COMPLAINT_FORWARDED_TASK = "2"
"""task_type 投诉举报转办."""
DISPATCHED = "1"


class CollaborationOptions(BaseModel):
    """Parameters: the scenario table, what to do with other scenarios, and the task's terms.

    The scenario table is data: adding a scenario or moving one to another department is a line
    in the systems configuration, not code.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenarios: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Complaint scenario code (dictionary complaint_scenario) → id of the department "
            "system that handles it; the task is addressed to that system's first department."
        ),
        examples=[{"01": "market-penalty", "02": "housing-penalty", "03": "health-penalty"}],
    )
    default_system: str | None = Field(
        default=None,
        description=(
            "The system that gets complaints of a scenario the table does not list; None: such "
            "a complaint is dead-lettered with its scenario named, for an operator to route."
        ),
    )
    deadline_days: int = Field(
        default=15,
        ge=1,
        le=365,
        description="Days from dispatch until a task is due (办理时限).",
    )
    source: str = Field(
        default="330000/ywxtzx",
        min_length=1,
        max_length=200,
        description="The envelope source of what the centre derives (region/department code).",
    )

    @field_validator("scenarios")
    @classmethod
    def _known_scenarios(cls, table: dict[str, str]) -> dict[str, str]:
        from standard.dictionaries import dictionary

        codes = dictionary("complaint_scenario").codes()
        unknown = sorted(set(table) - set(codes))
        if unknown:
            raise ValueError(
                f"scenarios {', '.join(unknown)} are not codes of dictionary complaint_scenario "
                f"(codes: {', '.join(sorted(codes))})"
            )
        return table


class CollaborationCentre(Sender):
    """The business-collaboration centre (see the module docstring).

    Receives the canonical events (render `cloudevent`) of complaints and of task feedback
    addressed to it, and publishes the tasks and results it derives through the worker's bus
    connection.
    """

    name: ClassVar[str] = "collaboration"
    Options: ClassVar[type[BaseModel]] = CollaborationOptions
    publishes: ClassVar[bool] = True

    def __init__(self, options: BaseModel, context: AdapterContext) -> None:
        super().__init__(options, context)
        assert isinstance(options, CollaborationOptions)
        self.table: CollaborationOptions = options
        if not context.system.departments:
            raise AdapterConfigError(
                f"system {context.system.id}: the collaboration centre needs `departments` (its "
                "own first): it is the dispatcher of its tasks, and their feedback comes back "
                "addressed to it"
            )
        self.dispatcher = department_ref(context.system.departments[0])
        if context.ingress is not None:
            # A scenario table naming a system that serves no department fails now, at start,
            # rather than at the first complaint of that scenario.
            named = {*options.scenarios.values(), options.default_system} - {None}
            lost = sorted(
                str(s) for s in named if context.ingress.directory.department_of(str(s)) is None
            )
            if lost:
                raise AdapterConfigError(
                    f"system {context.system.id}: the scenario table names {', '.join(lost)}, "
                    "which no configured system with `departments` is"
                )
        self._store = _ComplaintStore(context.data_dir / f"{context.system.id}.sqlite3")

    @property
    def publisher(self) -> Ingress:
        ingress = self.context.ingress
        if ingress is None:
            raise AdapterConfigError(
                f"the collaboration centre {self.system.id} was built without a publishing path "
                "(the worker hands it one)"
            )
        return ingress

    def deliver(
        self, body: bytes, *, content_type: str, idempotency_key: str, envelope: Envelope
    ) -> None:
        dataset = envelope.spec.name
        if dataset == "complaint":
            self._dispatch(envelope)
        elif dataset == "collaboration_task":
            self._answer(envelope)
        else:
            raise PermanentDeliveryError(
                f"the collaboration centre {self.system.id} takes complaints and task feedback, "
                f"not {dataset}; narrow its routes"
            )

    # ------------------------------------------------------------------ complaint → task

    def _dispatch(self, envelope: Envelope) -> None:
        if envelope.operation is Operation.DELETE:
            log.info("complaint %s withdrawn; its task is not recalled", envelope.subject)
            return
        complaint = Complaint.model_validate(envelope.data)
        if complaint.status not in OPEN_COMPLAINT_STATUSES:
            log.info(
                "complaint %s has status %s: nothing to dispatch", envelope.subject,
                complaint.status,
            )  # fmt: skip
            return
        system_id = self.table.scenarios.get(complaint.scenario, self.table.default_system)
        if system_id is None:
            raise PermanentDeliveryError(
                f"complaint {complaint.complaint_id}: scenario {complaint.scenario} is not in the "
                f"scenario table of {self.system.id} and it has no default_system; add the "
                "scenario to its options.scenarios"
            )
        assignee = self.publisher.directory.department_of(system_id)
        if assignee is None:
            raise PermanentDeliveryError(
                f"complaint {complaint.complaint_id}: scenario {complaint.scenario} goes to "
                f"system {system_id!r}, which declares no department (its `departments` in the "
                "systems configuration)"
            )
        dispatched = complaint.accepted_time or complaint.received_time
        task = CollaborationTask.model_validate(
            {
                "task_id": task_id_of(complaint.complaint_id),
                "title": complaint.title,
                "task_type": COMPLAINT_FORWARDED_TASK,
                "description": complaint.content,
                "source_dataset": "complaint",
                "source_record_id": complaint.complaint_id,
                "dispatcher": self.dispatcher,
                "assignees": [assignee],
                "region_codes": [complaint.region_code],
                "dispatched_time": dispatched,
                "deadline": dispatched + timedelta(days=self.table.deadline_days),
                "status": DISPATCHED,
            }
        )
        derived = self._derived(task, envelope, Operation.INSERT, dispatched)
        self._store.keep(task.task_id, envelope)
        self._publish("complaint", derived)

    # ------------------------------------------------------------------ feedback → complaint

    def _answer(self, envelope: Envelope) -> None:
        if envelope.operation is Operation.DELETE:
            return
        task = CollaborationTask.model_validate(envelope.data)
        if task.status not in FED_BACK_STATUSES:
            # Acceptance, return and progress steps change nothing the platform is told.
            log.info("task %s: step %s noted", task.task_id, task.status)
            return
        # The kept complaint, not the echoed source_dataset, says whose task it is: a
        # department system may not carry every field of a task back unchanged.
        origin = self._store.find(task.task_id)
        if origin is None:
            raise PermanentDeliveryError(
                f"task {task.task_id}: feedback on a task {self.system.id} has no record of "
                "dispatching (no complaint kept for it); nothing can be told to the platform"
            )
        assert task.feedback_time is not None  # a fed-back status requires it
        complaint = Complaint.model_validate(
            {
                **origin.data,
                "status": CLOSED,
                "result": task.feedback_result,
                "handling_department": task.assignees[0].model_dump(mode="json"),
                "task_id": task.task_id,
                "closed_time": task.feedback_time,
            }
        )
        derived = self._derived(complaint, origin, Operation.UPDATE, task.feedback_time)
        self._publish("collaboration_task", derived, addressee=origin.lineagesystem)

    # ------------------------------------------------------------------ both

    def _derived(
        self, record: Any, cause: Envelope, operation: Operation, time: datetime
    ) -> Envelope:
        """`record` in an envelope whose lineage is the payload `cause` came from, and whose id
        follows from its idempotency key, so a repeat is the same message."""
        try:
            built = Envelope.wrap(
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
            raise PermanentDeliveryError(
                f"the derived {record!r:.80} is invalid: {error}"
            ) from None
        return built.model_copy(update={"id": str(uuid.UUID(built.idempotencykey[:32]))})

    def _publish(self, cause: str, envelope: Envelope, *, addressee: str | None = None) -> None:
        try:
            keys = self.publisher.publish_derived(
                self.system.id, cause, [envelope], addressee=addressee
            )
        except Unaddressable as error:
            raise PermanentDeliveryError(str(error)) from None
        except PublishFailed as failed:
            if any(failure.unroutable for failure in failed.failures):
                raise PermanentDeliveryError(
                    f"{envelope.spec.name} {envelope.subject} derived by {self.system.id}: no "
                    f"system's routes take it ({failed})"
                ) from None
            raise TransientDeliveryError(
                f"the bus did not confirm {envelope.subject}: {failed}"
            ) from None
        except IngressUnavailable as error:
            raise TransientDeliveryError(str(error)) from None
        log.info("%s %s published under %s", envelope.spec.name, envelope.subject, keys)

    def close(self) -> None:
        self._store.close()


def task_id_of(complaint_id: str) -> str:
    """The task a complaint becomes: XT-<complaint id>, or a digest when that would be too long."""
    task_id = f"XT-{complaint_id}"
    if len(task_id) <= 64:
        return task_id
    return "XT-" + hashlib.sha256(complaint_id.encode()).hexdigest()[:40]


class _ComplaintStore:
    """The complaints the centre turned into tasks, by task id, until their results come back."""

    def __init__(self, path: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS complaint (task_id TEXT PRIMARY KEY, envelope TEXT)"
        )

    def keep(self, task_id: str, envelope: Envelope) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO complaint VALUES (?, ?)",
                (task_id, envelope.to_json().decode()),
            )

    def find(self, task_id: str) -> Envelope | None:
        with self._lock:
            row = self._db.execute(
                "SELECT envelope FROM complaint WHERE task_id = ?", (task_id,)
            ).fetchone()
        if row is None:
            return None
        try:
            return Envelope.from_json(row[0])
        except (StandardError, ValidationError, json.JSONDecodeError):
            return None

    def close(self) -> None:
        with self._lock:
            self._db.close()
