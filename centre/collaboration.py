"""The business-collaboration centre (业务协同中心): complaints become tasks, task results go back.

A system inside the hub, configured like any other (`auth: {scheme: internal}`) with a
`collaboration` section instead of an outbound one. It consumes the canonical events its routes
select from its own queue, like any target, and publishes the records it derives through the bus:

- a complaint from the complaint platform, accepted and not closed, becomes a collaboration task
  for the department system its scenario names (the `scenarios` table), addressed to that
  system (`collaboration_task.<region>.<centre>.<department system>`);
- a department's feedback on such a task (fed back or closed) becomes the complaint, updated
  with the result and closed, addressed back to the system the complaint came from
  (`complaint.<region>.<centre>.complaint-platform`), which renders it as its handling result.
  A task's steps are taken only from the system it was assigned to (kept with the complaint;
  the envelope's `lineagesystem` names the system that sent a step): ingress refuses a step in
  another department's name already, and the centre checks again, so that a forged result
  never reaches the complaint platform even if a record got past ingress.

Everything is derived deterministically from what was delivered: the task of a complaint has the
key `XT-<complaint id>`, the complaint's acceptance time as its dispatch time and so the same
idempotency key however often the complaint is delivered again (a redelivery, a replay, an update
while still open). The complaint is kept (a SQLite file in the data folder) until its result comes
back, because a task carries too little of it to rebuild the complaint the platform must be told.

A derived record is published with confirms before its input is acknowledged, so a message is
settled only once its consequence is safe on the bus; a publish the bus did not confirm is
retried through the bus's delayed tiers. Nothing is dropped quietly: a scenario no table entry
covers (without a default), a department no system serves, feedback on a task the centre never
dispatched, or a step of a task from a system it was not assigned to goes to the dead letters
with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Column, MetaData, String, Table, Text, create_engine, select

from adapters.authorisation import SERVED_RULE, NotAuthorised
from adapters.egress import NotDelivered, decode, settle
from adapters.errors import IngressUnavailable
from adapters.ingress import Ingress
from adapters.routing import Unaddressable, department_ref
from bus import Broker, Delivery, PublishFailed
from standard.datasets.collaboration_task import FED_BACK_STATUSES, CollaborationTask
from standard.datasets.complaint import Complaint
from standard.envelope import Envelope, Operation
from standard.errors import StandardError
from store import METADATA, Store, StoreUnavailable, replacing, upsert
from systems import CollaborationConfig, SystemConfig

log = logging.getLogger("centre.collaboration")

OPEN_COMPLAINT_STATUSES = frozenset({"2", "4", "5"})
"""Accepted, forwarded, in progress: a complaint someone must now act on."""
CLOSED = "6"
COMPLAINT_FORWARDED_TASK = "2"
"""task_type 投诉举报转办."""
DISPATCHED = "1"
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

    Raises CentreConfigError when the scenario table names a system that serves no department:
    at start, rather than at the first complaint of that scenario.
    """

    def __init__(
        self,
        system: SystemConfig,
        publisher: Ingress,
        store: Store,
        data_dir: Path | None = None,
    ) -> None:
        if system.collaboration is None or not system.departments:
            raise CentreConfigError(
                f"system {system.id} is not configured as the collaboration centre (it needs a "
                "`collaboration` section and its own department in `departments`)"
            )
        self.system = system
        self.table: CollaborationConfig = system.collaboration
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
        """Its queue (target) name on the bus."""
        return self.system.target

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
            self._dispatch(envelope)
        elif dataset == "collaboration_task":
            self._answer(envelope)
        else:
            raise NotDelivered(
                "dead_letter",
                STAGE,
                f"the collaboration centre {self.system.id} takes complaints and task feedback, "
                f"not {dataset}; narrow its routes",
            )

    # ------------------------------------------------------------------ complaint → task

    def _dispatch(self, envelope: Envelope) -> None:
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
        assignee = self.publisher.directory.department_of(system_id)
        if assignee is None:
            raise NotDelivered(
                "dead_letter",
                STAGE,
                f"complaint {complaint.complaint_id}: scenario {complaint.scenario} goes to "
                f"system {system_id!r}, which declares no department (its `departments` in the "
                "systems configuration)",
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
        self._store.keep(task.task_id, envelope, system_id)
        self._publish("complaint", derived)

    # ------------------------------------------------------------------ feedback → complaint

    def _answer(self, envelope: Envelope) -> None:
        if envelope.operation is Operation.DELETE:
            return
        task = CollaborationTask.model_validate(envelope.data)
        # The kept complaint, not the echoed source_dataset, says whose task it is: a
        # department system may not carry every field of a task back unchanged.
        kept = self._store.find(task.task_id)
        origin, assigned = kept if kept is not None else (None, None)
        if origin is not None:
            self._check_sender(task, envelope, origin, assigned)
        if task.status not in FED_BACK_STATUSES:
            # Acceptance, return and progress steps change nothing the platform is told.
            log.debug("task %s: step %s noted", task.task_id, task.status)
            return
        if origin is None:
            raise NotDelivered(
                "dead_letter",
                STAGE,
                f"task {task.task_id}: feedback on a task {self.system.id} has no record of "
                "dispatching (no complaint kept for it); nothing can be told to the platform",
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


def task_id_of(complaint_id: str) -> str:
    """The task a complaint becomes: XT-<complaint id>, or a digest when that would be too long."""
    task_id = f"XT-{complaint_id}"
    if len(task_id) <= 64:
        return task_id
    return "XT-" + hashlib.sha256(complaint_id.encode()).hexdigest()[:40]


CENTRE_COMPLAINT = Table(
    "centre_complaint",
    METADATA,
    Column("centre", String, primary_key=True),
    Column("task_id", String, primary_key=True),
    Column("envelope", Text, nullable=False),
    Column("assigned_system", String, nullable=True),
)


class _ComplaintStore:
    """The complaints a centre turned into tasks, by task id, until their results come back,
    each with the system its task was assigned to (NULL in rows kept before it was recorded)."""

    def __init__(self, store: Store, centre: str) -> None:
        self.store = store
        self.centre = centre

    def keep(self, task_id: str, envelope: Envelope, assigned_system: str) -> None:
        row = {
            "centre": self.centre,
            "task_id": task_id,
            "envelope": envelope.to_json().decode(),
            "assigned_system": assigned_system,
        }
        # Durable: the complaint's message is acknowledged to the bus once this commits.
        with self.store.begin(durable=True) as db:
            db.execute(replacing(db, CENTRE_COMPLAINT), row)

    def find(self, task_id: str) -> tuple[Envelope, str | None] | None:
        """The complaint kept for `task_id` and the system its task was assigned to."""
        table = CENTRE_COMPLAINT
        with self.store.begin() as db:
            row = db.execute(
                select(table.c.envelope, table.c.assigned_system).where(
                    table.c.centre == self.centre, table.c.task_id == task_id
                )
            ).first()
        if row is None:
            return None
        try:
            return Envelope.from_json(row[0]), row[1]
        except (StandardError, ValidationError, json.JSONDecodeError):
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
