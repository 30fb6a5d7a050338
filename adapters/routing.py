"""The routing key of an envelope on the bus: "dataset.region.source[.addressee]".

Most records go to whoever binds their dataset, region or source. Some are addressed: a
collaboration task names the departments that must act (and, once they act, the department that
dispatched it), a risk warning names its responsible department. Those are published once per
addressed system, with the system's id as a fourth word, so a department binds
`collaboration_task.*.*.<its id>` and hears only its own tasks. `#` still matches four words, so
patterns written for three words keep seeing everything they saw.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from standard.envelope import Envelope, Operation
from systems import DepartmentConfig, SystemConfig

NO_REGION = "000000"
"""The region word of records that carry no region code (deletes carry only their key)."""

DISPATCHED = "1"
"""task_status of a task just dispatched: it goes to its assignees; later steps go back."""


def routing_key(envelope: Envelope, system_id: str, addressee: str | None = None) -> str:
    """`f"{dataset}.{region_code or '000000'}.{system_id}"`, e.g. `penalty_case.330100.eco-env`,
    with `.{addressee}` appended for a record addressed to one system.

    Route patterns in the systems configuration select on these words. The region is the
    record's `region_code`, or for a record that names several (a joint task's `region_codes`)
    the first. A delete carries only the record's key, so it routes under region 000000: a
    target that selects by region should also bind `*.000000.*` to hear about deletes.
    """
    region = envelope.data.get("region_code")
    if region is None:
        several = envelope.data.get("region_codes")
        region = several[0] if isinstance(several, list) and several else None
    word = str(region) if isinstance(region, str | int) and str(region) else NO_REGION
    key = f"{envelope.spec.name}.{word}.{system_id}"
    return f"{key}.{addressee}" if addressee else key


class Unaddressable(ValueError):
    """An addressed record names a department no configured system serves."""


@dataclass(frozen=True)
class _Address:
    """Where an addressed dataset names its receivers, and (for replies) its sender."""

    to: str
    reply_to: str | None = None


ADDRESSED: Mapping[str, _Address] = {
    "collaboration_task": _Address(to="assignees", reply_to="dispatcher"),
    "risk_warning": _Address(to="responsible_department"),
    "supervision_notice": _Address(to="addressee"),
}
"""Datasets routed to the systems of the departments they name, by field."""


class Directory:
    """Which system serves which department (the systems' `departments`), for addressing.

    A department is found by its credit code first, then by its exact name: department systems
    and simulators alike send names more faithfully than codes, but a code, when it matches,
    is the stronger evidence.
    """

    def __init__(self, systems: Iterable[SystemConfig]) -> None:
        self._by_code: dict[str, str] = {}
        self._by_name: dict[str, str] = {}
        self._served: dict[str, list[dict[str, str]]] = {}
        for system in systems:
            if system.departments:
                self._served[system.id] = [department_ref(d) for d in system.departments]
            for department in system.departments:
                if department.credit_code:
                    self._by_code[department.credit_code] = system.id
                self._by_name[department.name] = system.id

    def system_of(self, department: Any) -> str | None:
        """The id of the system serving `department` (a DepartmentRef as data), or None."""
        if not isinstance(department, Mapping):
            return None
        code = department.get("credit_code")
        if isinstance(code, str) and code in self._by_code:
            return self._by_code[code]
        name = department.get("name")
        return self._by_name.get(name) if isinstance(name, str) else None

    def department_of(self, system_id: str) -> dict[str, str] | None:
        """The own department (the first declared) of system `system_id`, as records name it."""
        served = self._served.get(system_id)
        return dict(served[0]) if served else None

    def departments_of(self, system_id: str) -> list[dict[str, str]]:
        """The departments system `system_id` serves, as records name them (none: [])."""
        return [dict(department) for department in self._served.get(system_id, [])]

    def addressees(self, envelope: Envelope, source: str) -> list[str] | None:
        """The systems `envelope`, published by `source`, is addressed to; None: not addressed.

        A dispatched task (status 1) and a risk warning go to the systems of the departments
        they name; a task's later step (accepted, returned, fed back) goes back to its
        dispatcher's system, or, when no configured system serves the dispatcher, unaddressed
        to whoever binds it. A delete carries only its key and is not addressed.

        Raises Unaddressable, naming the field and department, when a record to be sent on names
        a department no system serves: it must not be dropped or sent to everyone.
        """
        address = ADDRESSED.get(envelope.spec.name)
        if address is None or envelope.operation is Operation.DELETE:
            return None
        data = envelope.data
        if address.reply_to is not None and data.get("status") != DISPATCHED:
            back = self.system_of(data.get(address.reply_to))
            return [back] if back is not None and back != source else None
        named = data.get(address.to)
        departments = named if isinstance(named, list) else [named]
        found: list[str] = []
        for index, department in enumerate(departments):
            system = self.system_of(department)
            if system is None:
                where = f"{address.to}[{index}]" if isinstance(named, list) else address.to
                raise Unaddressable(
                    f"{envelope.spec.name} {envelope.subject}: {where} names department "
                    f"{shown_department(department)}, which no system serves (add it to a system's "
                    "`departments` in the systems configuration, or correct the record)"
                )
            # A department system's own copy of a task it sends on needs no delivery.
            if system != source and system not in found:
                found.append(system)
        return found or None

    def routing_keys(self, envelope: Envelope, source: str) -> list[str]:
        """The keys to publish `envelope` under: one per addressee, or the plain key."""
        addressees = self.addressees(envelope, source)
        if not addressees:
            return [routing_key(envelope, source)]
        return [routing_key(envelope, source, addressee) for addressee in addressees]


def shown_department(department: Any) -> str:
    """A department named in a record, for a reason: its name, and its credit code if any."""
    if isinstance(department, Mapping):
        code = department.get("credit_code")
        return f"{department.get('name')!r}" + (f" ({code})" if code else "")
    return repr(department)


def department_ref(department: DepartmentConfig) -> dict[str, str]:
    """A configured department as a record names it (a DepartmentRef in JSON form)."""
    ref = {"name": department.name}
    if department.credit_code:
        ref["credit_code"] = department.credit_code
    return ref
