"""Who may act for a department: records sent in a department's name, checked against the sender.

A system acts only for the departments it serves (its `departments` in the systems
configuration, read through `adapters.routing.Directory`). Ingress asks `Authorisation.refusals`
about every translated record before anything is published, and turns each refusal into a
rejected record (quarantined with its reason, answered to the sender per record); the
collaboration centre publishes its derived records through the same check. The department a
record acts for, per dataset:

- `collaboration_task` dispatched (status 1): its `dispatcher`;
- `collaboration_task` at a later step (accepted, returned, in progress, fed back, closed): its
  `assignees`, one of which the sender must serve; closed (status 6) may also come from the
  system of its `dispatcher`, who closes the task once it accepted the result;
- `risk_feedback`: its `department` (and, for a warning the hub routed, the sender must be the
  system it was routed to);
- `risk_warning`: its `issuer`;
- `penalty_case`, `inspection`: the `implementing_organ` (and its code), unless no system
  serves it.

A system without departments (the national system, the complaint platform) serves none: it may
send records that act for no department a system serves (national's warnings, issued by
national bodies), never one in the name of a department some system serves. Enforcing organs are
held to a looser rule because the configuration lists the departments that take tasks and
warnings, not every organ that files cases: an organ no system serves passes, one another system
serves is refused. A delete carries only its record's key and names no department: it is not
checked (see README, "Who may act for a department").

Feedback on a warning is matched to it: `WarningAddressees` remembers, for each warning the hub
published, the system of its responsible department, and the feedback has to come from that
system. Feedback on a warning the hub never routed is refused (rule `WARNING_MATCH_RULE`, naming
the warning id): the sender is answered per record, the record is kept in the quarantine with the
reason (the domain says feedback that matches nothing is kept and flagged, never dropped) and
counted as unmatched.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Double, String, Table, select

from adapters.refusals import RecordRefusal
from adapters.repeats import QUERY_CHUNK
from adapters.routing import DISPATCHED, Directory, shown_department
from standard.datasets.collaboration_task import CLOSED
from standard.envelope import Envelope, Operation
from store import METADATA, Store, replacing

SERVED_RULE = "the sender must serve the department it acts for"
"""The rule a record in another department's name breaks, as answers and reasons name it."""
WARNING_RULE = "feedback on a warning comes from the system of its responsible department"
"""The rule feedback on a warning routed to another system breaks."""
WARNING_MATCH_RULE = "feedback names a warning the hub routed"
"""The rule feedback on a warning the hub never routed breaks."""


class NotAuthorised(RecordRefusal):
    """A record acts for a department its sender does not serve: rejected like an invalid one."""


@dataclass(frozen=True)
class Acting:
    """The department(s) a record acts for, and how strictly its sender is held to them."""

    field: str
    departments: list[Any]
    """DepartmentRefs as data; for a list field, the sender must serve one of them."""
    listed: bool = False
    """The field is a list (`assignees`): its departments are named with their index."""
    unserved_allowed: bool = False
    """A department no system serves passes (enforcing organs: see the module docstring)."""
    closer: Any = None
    """A department whose system may send it too (a task's dispatcher, closing it)."""


def acting(envelope: Envelope) -> Acting | None:
    """The department(s) `envelope` acts for (see the table in the module docstring); None:
    it acts for none, or it is a delete, which names none."""
    if envelope.operation is Operation.DELETE:
        return None
    data = envelope.data
    dataset = envelope.spec.name
    if dataset == "collaboration_task":
        if data.get("status") == DISPATCHED:
            return Acting("dispatcher", [data.get("dispatcher")])
        named = data.get("assignees")
        # 已办结: the dispatcher's step as much as the assignee's.
        closer = data.get("dispatcher") if data.get("status") == CLOSED else None
        return Acting(
            "assignees", named if isinstance(named, list) else [named], listed=True, closer=closer
        )
    if dataset == "risk_feedback":
        return Acting("department", [data.get("department")])
    if dataset == "risk_warning":
        return Acting("issuer", [data.get("issuer")])
    if dataset in ("penalty_case", "inspection"):
        name, code = data.get("implementing_organ"), data.get("implementing_organ_code")
        if not name and not code:
            return None
        organ = {"name": name, "credit_code": code}
        return Acting("implementing_organ", [organ], unserved_allowed=True)
    return None


class WarningAddressees(ABC):
    """Which system each warning the hub published was routed to (its responsible
    department's), by warning id; shared by the processes that publish and take feedback."""

    @abstractmethod
    def responsible(self, warning_ids: Collection[str]) -> dict[str, str]:
        """The system each of `warning_ids` was routed to, for those the hub published."""

    @abstractmethod
    def remember(self, routed: Mapping[str, str]) -> None:
        """The warnings (id → system) were published (the broker confirmed them) now."""

    def close(self) -> None:  # noqa: B027 - optional: an implementation may hold nothing
        """Release what the store holds. Idempotent."""


WARNING_ADDRESSEE = Table(
    "warning_addressee",
    METADATA,
    Column("warning_id", String, primary_key=True),
    Column("system", String, nullable=False),
    Column("at", Double, nullable=False),
)


class StoredWarningAddressees(WarningAddressees):
    """WarningAddressees in the hub's store; thread-safe, shared by the `serve` processes and
    the pollers that open it, like `adapters.repeats`. A warning routed again (its responsible
    department changed) is remembered with its latest system.

    Parameters:
      store: the hub's store (`Store.open`); not closed by this.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def responsible(self, warning_ids: Collection[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(warning_ids))
        found: dict[str, str] = {}
        table = WARNING_ADDRESSEE
        with self.store.begin() as db:
            for start in range(0, len(wanted), QUERY_CHUNK):
                chunk = wanted[start : start + QUERY_CHUNK]
                rows = db.execute(
                    select(table.c.warning_id, table.c.system).where(table.c.warning_id.in_(chunk))
                )
                found.update((str(row[0]), str(row[1])) for row in rows)
        return found

    def remember(self, routed: Mapping[str, str]) -> None:
        if not routed:
            return
        now = time.time()
        ordered = sorted(routed.items())  # in key order: no deadlock between two processes
        with self.store.begin() as db:
            db.execute(
                replacing(db, WARNING_ADDRESSEE),
                [
                    {"warning_id": warning_id, "system": system, "at": now}
                    for warning_id, system in ordered
                ],
            )


@dataclass
class Checked:
    """What `Authorisation.refusals` found in a payload's records."""

    refused: list[NotAuthorised] = field(default_factory=list)
    unmatched: list[Envelope] = field(default_factory=list)
    """Warning feedback on warnings the hub never routed (refused too): to be counted."""


class Authorisation:
    """The one check of who may act for a department (see the module docstring).

    Parameters:
      directory: which system serves which department.
      warnings: the systems the hub routed each warning to; None: feedback on a warning is held
        only to the department it names (no warning is known, so none is refused as unmatched).
    """

    def __init__(self, directory: Directory, warnings: WarningAddressees | None = None) -> None:
        self.directory = directory
        self.warnings = warnings

    def refusals(
        self, sender: str, message_type: str, records: Sequence[tuple[int, Envelope]]
    ) -> Checked:
        """Check `records` (payload index, envelope) sent by system `sender`."""
        checked = Checked()
        feedback: list[tuple[int, Envelope]] = []
        for index, envelope in records:
            refusal = self._refusal(sender, message_type, index, envelope)
            if refusal is not None:
                checked.refused.append(refusal)
            elif envelope.spec.name == "risk_feedback" and acting(envelope) is not None:
                feedback.append((index, envelope))
        if feedback:
            ids = [str(envelope.data.get("warning_id")) for _, envelope in feedback]
            routed = self.warnings.responsible(ids) if self.warnings is not None else {}
            for (index, envelope), warning_id in zip(feedback, ids, strict=True):
                system = routed.get(warning_id)
                if system is None and self.warnings is not None:
                    checked.unmatched.append(envelope)
                    rule, why = (
                        WARNING_MATCH_RULE,
                        f"warning {warning_id} is not a warning the hub routed to any system; "
                        "check the warning id (feedback is matched to the warning it answers), "
                        "the record is kept in the quarantine",
                    )
                elif system is not None and system != sender:
                    rule, why = (
                        WARNING_RULE,
                        f"warning {warning_id} was routed to {system}, the system of its "
                        f"responsible department, not to {sender}; feed back only the "
                        "warnings your system received",
                    )
                else:
                    continue
                checked.refused.append(
                    self._refused(
                        sender, message_type, index, envelope, "warning_id", warning_id, rule, why
                    )
                )
        return checked

    def check(self, sender: str, envelopes: Iterable[Envelope]) -> None:
        """Raise the first NotAuthorised among `envelopes` that `sender` derived inside the hub
        (the collaboration centre's tasks); its warning feedback is not held to any store."""
        for index, envelope in enumerate(envelopes):
            refusal = self._refusal(sender, "derived", index, envelope)
            if refusal is not None:
                raise refusal

    def routed(self, envelopes: Iterable[Envelope]) -> None:
        """`envelopes` were published: remember the system each warning among them was routed
        to (the system of its responsible department)."""
        if self.warnings is None:
            return
        routed: dict[str, str] = {}
        for envelope in envelopes:
            if envelope.spec.name != "risk_warning" or envelope.operation is Operation.DELETE:
                continue
            system = self.directory.system_of(envelope.data.get("responsible_department"))
            if system is not None:
                routed[str(envelope.data.get("warning_id"))] = system
        self.warnings.remember(routed)

    def _refusal(
        self, sender: str, message_type: str, index: int, envelope: Envelope
    ) -> NotAuthorised | None:
        act = acting(envelope)
        if act is None:
            return None
        if act.closer is not None and self.directory.system_of(act.closer) == sender:
            return None
        own = self.directory.departments_of(sender)
        owners = [self.directory.system_of(department) for department in act.departments]
        for owner in owners:
            if owner == sender or (owner is None and (act.unserved_allowed or not own)):
                return None
        served = "; ".join(
            f"{shown_department(department)} is served by {owner or 'no system'}"
            for department, owner in zip(act.departments, owners, strict=True)
        )
        if own:
            serves = f"{sender} serves {', '.join(shown_department(d) for d in own)}"
        else:
            serves = (
                f"{sender} serves no department (no `departments` in the systems "
                "configuration), so it may act only for departments no system serves"
            )
        named = "one of " if act.listed and len(act.departments) > 1 else ""
        return self._refused(
            sender,
            message_type,
            index,
            envelope,
            act.field,
            act.departments if act.listed else act.departments[0],
            SERVED_RULE,
            f"{sender} sent it in the name of {named}{act.field}: {served}; {serves}. Send "
            "records only in the name of your own departments (a task's later steps only for "
            "tasks assigned to them)",
        )

    @staticmethod
    def _refused(
        sender: str,
        message_type: str,
        index: int,
        envelope: Envelope,
        field_name: str,
        value: Any,
        rule: str,
        why: str,
    ) -> NotAuthorised:
        return NotAuthorised.of(
            sender,
            message_type,
            index,
            envelope,
            field=field_name,
            rule=rule,
            value=value,
            message=f"{envelope.spec.name} {envelope.subject}: {why}",
        )
