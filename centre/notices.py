"""Due-soon reminders and overdue escalations (督办通知), each sent once whatever the workers do.

The worker runs a `NoticeScanner` every JGHUB_CENTRE_SCAN_S seconds (60 by default; 0: never) over
the ledger's rows the department still owes (dispatched, delivered, accepted, disposing) that have
a due time:

- a reminder (notice_type 1), addressed to that department, once now is within the lead time
  before the due time (the `reminders` section of the deadlines file: per kind, in hours or days);
- an escalation (notice_type 2), addressed to whoever dispatched the item (a task's dispatcher, a
  warning's issuer), once the row is overdue. An item already overdue gets no reminder (the
  standard refuses a reminder sent after the due time), even one whose claim was left unsent.

A row fed back, returned, closed or cancelled gets neither.

**Sent once.** Each notice has a row in `centre_notice`, keyed by (kind, item, department, notice
type). A scanner claims it — a lease naming its owner and an expiry, taken in one conditional
upsert like the pollers' — publishes it with confirms through the inbound path the collaboration
centre publishes through (so it is journalled, counted and routed like any record, addressed to
the system serving its addressee), then marks it sent and records it on the ledger row, in one
transaction. The notice is built once, when it is first claimed, and kept with the claim: a claim
left by a worker that died is taken over when its lease has expired and the very same envelope is
published again — the same notice id, message id and idempotency key — so the receiver
recognises the repeat. A publish the bus does not confirm leaves the claim for the next scan:
nothing is lost.

**Not sendable.** When no system can take a notice — no system serves its addressee, the addressee
is the hub's own collaboration centre (which follows overdue items in the ledger itself), the
ledger does not know who dispatched the item, or the addressee's system has no route for
`supervision_notice` — the notice is recorded `not_sendable` with the reason, logged once and shown
in the item's timeline, and not tried on every scan: a scanner looks at such notices again when
it starts, which is when a corrected systems configuration takes effect.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    Column,
    Double,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    case,
    exists,
    or_,
    select,
    update,
)

from adapters.errors import IngressUnavailable
from adapters.ingress import Ingress
from adapters.protocols.poller import holder_id
from adapters.routing import routing_key, shown_department
from bus import PublishFailed
from bus.routing import topic_matches
from centre.collaboration import task_id_of
from centre.ledger import (
    CENTRE_EVENT,
    CENTRE_ITEM,
    ESCALATED_TO,
    NOT_SENDABLE,
    NOTICE_EVENTS,
    OVERDUE_STATES,
    Ledger,
    Step,
)
from standard.datasets.supervision_notice import (
    ESCALATION,
    ITEM_TASK,
    ITEM_WARNING,
    REMINDER,
    SupervisionNotice,
)
from standard.envelope import Envelope, Operation
from standard.errors import StandardError
from standard.types import SHANGHAI
from store import METADATA, StoreUnavailable, upsert
from systems import SystemConfig

log = logging.getLogger("centre.notices")

DATASET = "supervision_notice"
NOTICE_LEASE_S = 120.0
"""How long a claim is held: far longer than a publish with confirms takes."""
CLAIMED, SENT = "claimed", "sent"
"""States of a notice besides NOT_SENDABLE: claimed by a scanner (until sent), sent."""
ITEM_KINDS = {"warning": ITEM_WARNING, "task": ITEM_TASK}
KIND_NAMES = {"warning": "风险预警", "task": "协同任务"}
STATE_NAMES = {
    "dispatched": "已派发",
    "delivered": "已送达",
    "accepted": "已签收",
    "disposing": "处置中",
}

CENTRE_NOTICE = Table(
    "centre_notice",
    METADATA,
    Column("kind", String, nullable=False),
    Column("item_id", String, nullable=False),
    Column("department", String, nullable=False),
    Column("notice_type", String, nullable=False),
    Column("notice_id", String, nullable=False),
    Column("state", String, nullable=False),
    Column("envelope", Text, nullable=True),
    Column("owner", String, nullable=True),
    Column("lease_until", Double, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("reason", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("sent_at", Double, nullable=True),
    PrimaryKeyConstraint("kind", "item_id", "department", "notice_type", name="pk_centre_notice"),
    Index("ix_centre_notice_state", "state"),
)


class NotSendable(Exception):
    """No system can take this notice; the message says why."""


@dataclass(frozen=True)
class Due:
    """A ledger row a notice is due for now."""

    kind: str
    item_id: str
    department: str
    department_name: str | None
    state: str
    dispatched_at: float
    due_at: float
    notice_type: str

    @property
    def notice_id(self) -> str:
        """DB-<item>-<department>-<notice type>, or a digest when that would be too long: the
        same notice whoever builds it."""
        return task_id_of(f"{self.item_id}-{self.department}-{self.notice_type}", "DB")

    def identity(self) -> dict[str, str]:
        """The notice's key columns in `centre_notice`, and its id."""
        return {
            "kind": self.kind,
            "item_id": self.item_id,
            "department": self.department,
            "notice_type": self.notice_type,
            "notice_id": self.notice_id,
        }

    def key(self) -> tuple[Any, ...]:
        """The notice's row in `centre_notice`, as a WHERE clause."""
        c = CENTRE_NOTICE.c
        return (
            c.kind == self.kind,
            c.item_id == self.item_id,
            c.department == self.department,
            c.notice_type == self.notice_type,
        )


@dataclass(frozen=True)
class Claim:
    """A notice this scanner holds: the envelope to publish (the one first built for it) and
    the system it is addressed to."""

    due: Due
    envelope: Envelope
    system: str


@dataclass
class ScanReport:
    """What one scan did: notices sent, found not sendable, left for the next scan (the bus did
    not confirm them), and held by another scanner."""

    sent: int = 0
    not_sendable: int = 0
    failed: int = 0
    held: int = 0

    def count(self, outcome: str) -> None:
        """One more notice with `outcome`, the name of one of the fields."""
        setattr(self, outcome, getattr(self, outcome) + 1)


class NoticeScanner:
    """Sends the centre's reminders and escalations, each once (see the module docstring).

    Parameters:
      ledger: the disposal ledger: its store, its deadlines (their `reminders`) and its clock,
        which also times the claims (tests inject one; nothing sleeps for a deadline).
      publisher: the inbound path notices are published through, with the directory of which
        system serves which department (the collaboration centre's, attached to the bus).
      centre: the collaboration centre's entry in the systems configuration: notices are its
        records (its id and `collaboration.source`), and a dispatcher it serves itself has no
        system to be told through.
      systems: every configured system, for their routes: a notice goes only to a system whose
        routes take it.
      lease_s: how long a claim is held before another scanner may take it over.
      owner: this scanner's name in its claims; default: host, process and a random part.
    """

    def __init__(
        self,
        ledger: Ledger,
        publisher: Ingress,
        centre: SystemConfig,
        systems: Sequence[SystemConfig],
        *,
        lease_s: float = NOTICE_LEASE_S,
        owner: str | None = None,
    ) -> None:
        if centre.collaboration is None:
            raise ValueError(f"system {centre.id} is not the collaboration centre")
        self.ledger = ledger
        self.publisher = publisher
        self.centre = centre
        self.source = centre.collaboration.source
        self.routes = {system.id: list(system.routes) for system in systems}
        self.lease_s = lease_s
        self.owner = owner or holder_id()
        self._reconsider = True

    # ------------------------------------------------------------------ scanning

    def run(self, stop: threading.Event, every_s: float) -> None:
        """Scan every `every_s` seconds until `stop` is set. A scan that fails is logged; the
        next one tries again."""
        while not stop.wait(every_s):
            try:
                report = self.scan()
            except StoreUnavailable as error:
                log.warning("notices not scanned: %s; trying again in %.0fs", error, every_s)
                continue
            except Exception:
                log.exception("the notice scan failed; trying again in %.0fs", every_s)
                continue
            if report.sent or report.failed:
                log.info("notices: %s", report)

    def scan(self) -> ScanReport:
        """Send every notice due now (the first scan also looks again at those not sendable)."""
        now = self.ledger.clock()
        report = ScanReport()
        for due in self.due(now, reconsider=self._reconsider):
            report.count(self._notify(due, now))
        self._reconsider = False
        return report

    def due(self, now: dt.datetime, *, reconsider: bool = False) -> list[Due]:
        """The notices due at `now` and not yet sent (nor found not sendable, unless
        `reconsider`): claimed ones too, whose claim may have been left by a dead worker."""
        at = now.timestamp()
        reminders = self.ledger.rules.reminders
        c, n = CENTRE_ITEM.c, CENTRE_NOTICE.c
        notice_type = case((c.due_at < at, ESCALATION), else_=REMINDER)
        settled = [SENT] if reconsider else [SENT, NOT_SENDABLE]
        done = exists().where(
            n.kind == c.kind,
            n.item_id == c.item_id,
            n.department == c.department,
            n.notice_type == notice_type,
            n.state.in_(settled),
        )
        columns = (c.kind, c.item_id, c.department, c.department_name, c.state)
        query = (
            select(*columns, c.dispatched_at, c.due_at, notice_type)
            .where(
                c.state.in_(sorted(OVERDUE_STATES)),
                c.due_at.is_not(None),
                c.dispatched_at.is_not(None),
                c.due_at <= at + reminders.longest().total_seconds(),
                ~done,
            )
            .order_by(c.due_at, c.kind, c.item_id, c.department)
        )
        with self.ledger.store.begin() as db:
            rows = [Due(*row) for row in db.execute(query)]
        return [
            due
            for due in rows
            if due.notice_type == ESCALATION
            or due.due_at - reminders.lead(due.kind).span.total_seconds() <= at
        ]

    def _notify(self, due: Due, now: dt.datetime) -> str:
        """Claim, publish and settle the notice `due`; the ScanReport field it counts in."""
        try:
            envelope = self.notice(due, now)
            system = self.addressed_to(envelope)
        except NotSendable as refusal:
            self._not_sendable(due, now, str(refusal))
            return "not_sendable"
        claim = self.claim(due, envelope, system, now)
        if claim is None:
            return "held"
        if not self.publish(claim):
            return "failed"
        self.settle(claim)
        return "sent"

    # ------------------------------------------------------------------ the notice

    def notice(self, due: Due, now: dt.datetime) -> Envelope:
        """The notice `due` calls for, sent at `now`, in its envelope (NotSendable when the
        ledger does not know whom to address it to)."""
        dispatch = self._dispatch_detail(due)
        department = _department(due.department, due.department_name)
        if due.notice_type == REMINDER:
            addressee: Any = department
        else:
            addressee = dispatch.get(ESCALATED_TO[due.kind])
            if not addressee:
                raise NotSendable(
                    f"{due.kind} {due.item_id}: the ledger kept no {ESCALATED_TO[due.kind]} for "
                    "it (dispatched before the ledger recorded them), so there is nobody to "
                    "escalate to"
                )
        title = dispatch.get("title")
        try:
            record = SupervisionNotice.model_validate(
                {
                    "notice_id": due.notice_id,
                    "notice_type": due.notice_type,
                    "item_kind": ITEM_KINDS[due.kind],
                    "item_id": due.item_id,
                    "item_title": title[:200] if isinstance(title, str) else None,
                    "department": department,
                    "addressee": addressee,
                    "region_code": dispatch.get("region_code"),
                    "dispatched_time": _moment(due.dispatched_at),
                    "due_time": _moment(due.due_at),
                    "state": due.state,
                    "sent_time": now,
                    "content": _content(due, title),
                }
            )
            return Envelope.wrap(record, source=self.source, operation=Operation.INSERT, time=now)
        except (ValidationError, StandardError) as error:
            raise NotSendable(f"the notice {due.notice_id} is not valid: {error}") from None

    def addressed_to(self, envelope: Envelope) -> str:
        """The system that takes `envelope`'s notice: the one serving its addressee, if its
        routes take the notice (NotSendable, saying why, otherwise)."""
        addressee = envelope.data.get("addressee")
        shown = shown_department(addressee)
        system = self.publisher.directory.system_of(addressee)
        if system is None:
            raise NotSendable(
                f"no system serves {shown} (add it to a system's `departments` in the systems "
                "configuration)"
            )
        if system == self.centre.id:
            raise NotSendable(
                f"{shown} is the hub's own collaboration centre: it follows overdue items in "
                "the ledger (jghub centre overdue), no system is told"
            )
        key = routing_key(envelope, self.centre.id, system)
        if not any(topic_matches(route, key) for route in self.routes.get(system, [])):
            raise NotSendable(
                f"system {system} serves {shown} but no route of it takes {key} (add "
                f"'{DATASET}.*.*.{system}' to its routes and render {DATASET} in its outbound)"
            )
        return system

    def _dispatch_detail(self, due: Due) -> dict[str, Any]:
        """What the row's first dispatch said (title, dispatcher or issuer, region)."""
        e = CENTRE_EVENT.c
        query = (
            select(e.detail)
            .where(
                e.kind == due.kind,
                e.item_id == due.item_id,
                e.department == due.department,
                e.event == "dispatched",
            )
            .order_by(e.at)
            .limit(1)
        )
        with self.ledger.store.begin() as db:
            detail = db.execute(query).scalar()
        return dict(json.loads(detail or "{}"))

    # ------------------------------------------------------------------ once

    def claim(self, due: Due, envelope: Envelope, system: str, now: dt.datetime) -> Claim | None:
        """Claim the notice `due` for `lease_s`: new, found not sendable before, or claimed by a
        scanner whose lease expired (or by this one). None: another scanner holds it, or it
        was sent meanwhile. The claim carries the envelope first built for the notice."""
        at = now.timestamp()
        table = CENTRE_NOTICE
        with self.ledger.store.begin(immediate=True) as db:
            statement = upsert(db, table).values(
                **due.identity(),
                state=CLAIMED,
                envelope=envelope.to_json().decode(),
                owner=self.owner,
                lease_until=at + self.lease_s,
                attempts=1,
                created_at=at,
            )
            fresh = table.c.state == NOT_SENDABLE  # never published: built anew
            claimed = statement.on_conflict_do_update(
                index_elements=["kind", "item_id", "department", "notice_type"],
                set_={
                    "state": CLAIMED,
                    "owner": statement.excluded.owner,
                    "lease_until": statement.excluded.lease_until,
                    "attempts": table.c.attempts + 1,
                    "reason": None,
                    "envelope": case((fresh, statement.excluded.envelope), else_=table.c.envelope),
                },
                where=or_(
                    fresh,
                    and_(
                        table.c.state == CLAIMED,
                        or_(table.c.lease_until <= at, table.c.owner == self.owner),
                    ),
                ),
            ).returning(table.c.envelope, table.c.attempts)
            row = db.execute(claimed).first()
        if row is None:
            return None
        if row.attempts > 1:
            log.info(
                "%s %s of %s %s (%s): attempt %d", _name(due), due.notice_id, due.kind,
                due.item_id, due.department_name or due.department, row.attempts,
            )  # fmt: skip
        return Claim(due, Envelope.from_json(row.envelope), system)

    def publish(self, claim: Claim) -> bool:
        """Publish the claimed notice with confirms; False (logged) when the bus did not confirm
        it: the claim stays for the next scan."""
        try:
            self.publisher.publish_derived(
                self.centre.id, DATASET, [claim.envelope], addressee=claim.system
            )
        except (PublishFailed, IngressUnavailable) as error:
            log.warning(
                "%s %s to %s not sent (%s); tried again on the next scan", _name(claim.due),
                claim.due.notice_id, claim.system, error,
            )  # fmt: skip
            return False
        return True

    def settle(self, claim: Claim) -> bool:
        """Mark the claimed notice sent and record it on its ledger row, in one transaction;
        False when this scanner's claim was taken over meanwhile (the taker settles it)."""
        due, envelope = claim.due, claim.envelope
        sent_time = dt.datetime.fromisoformat(envelope.data["sent_time"])
        with self.ledger.store.begin(durable=True, immediate=True) as db:
            marked = db.execute(
                update(CENTRE_NOTICE)
                .where(*due.key(), CENTRE_NOTICE.c.state == CLAIMED)
                .where(CENTRE_NOTICE.c.owner == self.owner)
                .values(state=SENT, sent_at=self.ledger.clock().timestamp(), lease_until=None)
            ).rowcount
            if marked:
                detail = {"notice_id": due.notice_id, "addressee": envelope.data["addressee"],
                          "system": claim.system}  # fmt: skip
                event = NOTICE_EVENTS[due.notice_type]
                self.ledger.record_in(db, _step(due, event, sent_time, envelope.id, detail))
        if marked:
            log.info(
                "%s %s sent to %s: %s %s at %s, due %s", _name(due), due.notice_id, claim.system,
                due.kind, due.item_id, due.department_name or due.department,
                envelope.data["due_time"],
            )  # fmt: skip
        return bool(marked)

    def _not_sendable(self, due: Due, now: dt.datetime, reason: str) -> None:
        """Record that `due` cannot be sent and why; logged and put on the timeline only when
        that is news (the first time, or a new reason)."""
        at = now.timestamp()
        table = CENTRE_NOTICE
        with self.ledger.store.begin(durable=True, immediate=True) as db:
            statement = upsert(db, table).values(
                **due.identity(),
                state=NOT_SENDABLE,
                reason=reason,
                created_at=at,
            )
            # RETURNING, not rowcount: psycopg reports -1 for an upsert that changed nothing.
            changed = db.execute(
                statement.on_conflict_do_update(
                    index_elements=["kind", "item_id", "department", "notice_type"],
                    set_={"reason": statement.excluded.reason},
                    where=and_(table.c.state == NOT_SENDABLE, table.c.reason != reason),
                ).returning(table.c.notice_id)
            ).first()
            if changed is not None:
                detail = {"notice_id": due.notice_id, "notice": _name(due), "reason": reason}
                self.ledger.record_in(db, _step(due, NOT_SENDABLE, now, due.notice_id, detail))
        if changed is not None:
            log.warning(
                "%s %s of %s %s (%s) cannot be sent: %s", _name(due), due.notice_id, due.kind,
                due.item_id, due.department_name or due.department, reason,
            )  # fmt: skip


def _department(key: str, name: str | None) -> dict[str, Any]:
    """A ledger row's department as records name it (the ledger keys it by credit code, or by
    name when the record gave none)."""
    if name is None or name == key:
        return {"name": key}
    return {"name": name, "credit_code": key}


def _moment(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, SHANGHAI)


def _name(due: Due) -> str:
    return "reminder" if due.notice_type == REMINDER else "escalation"


def _content(due: Due, title: Any) -> str:
    """The notice in words, as a department's staff read it."""
    what = KIND_NAMES[due.kind] + (f"《{title}》" if isinstance(title, str) and title else "")
    deadline = _moment(due.due_at).strftime("%Y-%m-%d %H:%M")
    stage = STATE_NAMES.get(due.state, due.state)
    if due.notice_type == REMINDER:
        return f"{what}（{due.item_id}）将于{deadline}到期，当前环节：{stage}，请按时办结并反馈。"
    department = due.department_name or due.department
    return (
        f"{department}承办的{what}（{due.item_id}）已于{deadline}超期未反馈，当前环节：{stage}，"
        "请督促办理。"
    )


def _step(
    due: Due, event: str, at: dt.datetime, message_id: str, detail: Mapping[str, Any]
) -> Step:
    """The ledger event of a notice on `due`'s row."""
    return Step(
        due.kind, due.item_id, due.department, event, at, message_id, due.department_name, detail
    )
