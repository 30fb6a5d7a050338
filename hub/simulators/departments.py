"""Simulated departments at work: each answers the tasks and warnings it received, as told.

How a department answers is data (`DepartmentBehaviour`, per department system and kind):

- `on_time`: it accepts after a tenth of the time it has, reports progress after 30 % and feeds
  back after 60 %;
- `late`: it accepts and reports progress the same way, and feeds back `late_by_days` after the
  due time;
- `return`: it returns the item, with `return_reason`, after a tenth of its time;
- `never`: it says nothing; the item ends overdue.

"The time it has" runs from the dispatch to the due time the centre's ledger holds for its row:
the deadline the supervising centre holds it to (7 days where the ledger has none). A department
has received an item when its simulator (its receiving service, or its outbox puller) accepted a
delivery naming it, for a ledger row of one of the departments its system serves. It answers
through its own push channel (`task_feedback`, `risk_feedback`) in its own format
(`hub.simulators.answers`), each step a payload; a system without such a channel cannot answer
that kind, and its items count as unanswerable.

    departments = Departments(landscape, mappings, hub_url, receivers, ledger, behaviours)
    departments.answer_new()          # answers what arrived since the last call: the outcomes
    departments.latest                # the latest business time an answer carried
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters.routing import department_ref
from centre.ledger import Ledger, department_key
from hub.simulators.answers import Answers
from hub.simulators.clients import PUSH_ADAPTERS, PushOutcome, SystemClient
from hub.simulators.landscape import Landscape
from hub.simulators.targets import DeliveryLog
from hub.simulators.traffic import TrafficPayload
from mappings import SystemMappings
from systems import ChannelConfig, SystemConfig

Answer = Literal["on_time", "late", "return", "never"]
KINDS = {"task": "task_feedback", "warning": "risk_feedback"}
"""The ledger's kinds and the message type a department answers each with."""
ANSWER_TYPES = frozenset(KINDS.values())
"""Message types that answer something received: never grown from samples, which name items
the hub never sent."""
NO_DUE_SPAN = timedelta(days=7)
"""The time a department takes as its own where the ledger has no due time for the row."""
ACCEPT_SHARE, PROGRESS_SHARE, FEEDBACK_SHARE = 0.1, 0.3, 0.6


class DepartmentBehaviour(BaseModel):
    """How one department system answers what it receives (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: Answer = Field("on_time", description="How it answers collaboration tasks.")
    warnings: Answer = Field("on_time", description="How it answers risk warnings.")
    late_by_days: float = Field(
        2.0, gt=0, description="How long after the due time a late department feeds back."
    )
    return_reason: str = Field(
        "不属本部门职责，请重新派单。",
        min_length=1,
        max_length=1000,
        description="Why a returning department returns an item.",
    )

    def of(self, kind: str) -> Answer:
        """Its answer to items of `kind` (task or warning)."""
        return self.tasks if kind == "task" else self.warnings


DEMO_BEHAVIOURS: Mapping[str, DepartmentBehaviour] = {
    # National warnings carry their own deadline (处置时限, two weeks in the samples); the market
    # bureau feeds back after its inspection and its case review, two days past it. Its
    # complaint tasks (15 working days) it answers on time.
    "market-penalty": DepartmentBehaviour(warnings="late"),
    # A construction site's night work, dust and uncovered muck trucks: noise is the ecology
    # department's, muck transport the comprehensive law enforcement's; housing sends it back.
    "housing-penalty": DepartmentBehaviour(
        tasks="return",
        return_reason="夜间施工噪声由生态环境部门查处，渣土车未密闭运输由综合行政执法部门查处，"
        "不属住建部门职责，退回重新派单。",
    ),
    # Its enforcement system reports no warning disposal to the hub: red warnings on dangerous
    # goods carriers go unanswered and end overdue, which is what the centre must show.
    "transport-penalty": DepartmentBehaviour(warnings="never"),
}
"""The demo's departments: most answer on time, one late, one returns, one never answers."""


@dataclass
class _Department:
    """One simulated department system: what it received, how it answers and through what."""

    system: SystemConfig
    log: DeliveryLog
    client: SystemClient
    channels: dict[str, ChannelConfig]
    answers: Answers
    behaviour: DepartmentBehaviour
    _bodies: list[bytes] = field(default_factory=list)
    _read: int = 0

    def received(self, item_id: str) -> bool:
        """Whether a delivery it accepted names `item_id` (an id, not part of a longer one)."""
        items = self.log.items()
        for item in items[self._read :]:
            if item.outcome == "accepted":
                # SOAP senders may escape "-" in a document passed as a string.
                self._bodies.append(item.body.replace(b"&#45;", b"-"))
        self._read = len(items)
        named = re.compile(rb"(?<![\w-])" + re.escape(item_id.encode()) + rb"(?![\w-])")
        return any(named.search(body) for body in self._bodies)


@dataclass(frozen=True)
class Answered:
    """What a department did with one ledger row: the behaviour applied, or why none was."""

    system: str
    kind: str
    item_id: str
    department: str
    answer: Answer | Literal["no channel"]


class Departments:
    """The simulated departments answering what they received (see the module docstring).

    Parameters:
      landscape: the simulated landscape (the systems, their departments and channels).
      mappings: the mapping folders by folder name.
      hub_url: where the departments push their answers.
      receivers: what each system's simulator (receiving service or outbox puller) accepted,
        by system id; a system without one receives nothing.
      ledger: the centre's ledger: which rows were dispatched, when, and when they are due.
      behaviours: by department system id; a system not named answers on time.
    """

    def __init__(
        self,
        landscape: Landscape,
        mappings: Mapping[str, SystemMappings],
        hub_url: str,
        receivers: Mapping[str, DeliveryLog],
        ledger: Ledger,
        behaviours: Mapping[str, DepartmentBehaviour],
    ) -> None:
        self.ledger = ledger
        self.latest: datetime | None = None
        self.answered: dict[tuple[str, str, str], Answered] = {}
        self.unanswerable: Counter[tuple[str, str]] = Counter()
        self.pushed = 0
        self.refused: Counter[str] = Counter()
        """Why the hub refused answers (none, when every department answered right)."""
        self._departments: dict[str, _Department] = {}
        self._owner: dict[str, str] = {}
        systems = landscape.systems.systems
        unknown = sorted(set(behaviours) - {s.id for s in systems if s.departments})
        if unknown:
            raise ValueError(
                f"behaviours name {', '.join(unknown)}, which the landscape has no department "
                "system of"
            )
        centre = next((s for s in systems if s.collaboration and s.departments), None)
        dispatcher = department_ref(centre.departments[0]) if centre else {}
        for system in systems:
            log = receivers.get(system.id)
            if log is None or not system.departments or system.collaboration:
                continue
            client = SystemClient(system, hub_url)
            channels = {
                kind: channel
                for kind, message_type in KINDS.items()
                for channel in system.inbound
                if channel.message_type == message_type and channel.adapter in PUSH_ADAPTERS
            }
            answers = Answers(mappings[system.mapping_id], dispatcher=dispatcher)
            behaviour = behaviours.get(system.id, DepartmentBehaviour())
            self._departments[system.id] = _Department(
                system, log, client, channels, answers, behaviour
            )
            for department in system.departments:
                self._owner[department_key(department_ref(department))] = system.id

    def behaviour(self, system_id: str) -> DepartmentBehaviour | None:
        """How `system_id` answers (None: it is no simulated department)."""
        department = self._departments.get(system_id)
        return department.behaviour if department is not None else None

    def system_of(self, department: str) -> str | None:
        """The id of the system serving ledger department `department` (its key)."""
        return self._owner.get(department)

    def answer_new(self) -> list[PushOutcome]:
        """Answer every row received since the last call, as its department's behaviour says;
        the hub's answer to each payload pushed."""
        pushed: list[PushOutcome] = []
        for row in self.ledger.items(limit=100_000):
            key = (row["kind"], row["item_id"], row["department"])
            department = self._departments.get(self._owner.get(row["department"], ""))
            if key in self.answered or department is None or row["dispatched_at"] is None:
                continue
            if not department.received(row["item_id"]):
                continue
            answer = department.behaviour.of(row["kind"])
            channel = department.channels.get(row["kind"])
            if channel is None and answer != "never":
                self.unanswerable[(department.system.id, row["kind"])] += 1
                self.answered[key] = Answered(department.system.id, *key, "no channel")
                continue
            self.answered[key] = Answered(department.system.id, *key, answer)
            for payload in self._payloads(department, row, answer):
                assert channel is not None
                outcome = department.client.push(channel, payload)
                while outcome.failed:  # not confirmed by the bus: sent again, as told
                    outcome = department.client.push(channel, payload)
                pushed.append(outcome)
                self.pushed += 1
                self.refused.update(outcome.reasons)
        return pushed

    def _payloads(
        self, department: _Department, row: Mapping[str, Any], answer: Answer
    ) -> list[TrafficPayload]:
        dispatched = datetime.fromisoformat(row["dispatched_at"])
        due = datetime.fromisoformat(row["due_at"]) if row["due_at"] else None
        steps = _steps(answer, dispatched, due, department.behaviour)
        if steps:
            last = steps[-1][1]
            self.latest = last if self.latest is None else max(self.latest, last)
        answers = department.answers
        if row["kind"] == "warning":
            named = {"name": row["department_name"] or row["department"]}
            if row["department_name"] and row["department"] != row["department_name"]:
                named["credit_code"] = row["department"]
            return [
                answers.warning(
                    step, row["item_id"], department=named, at=at,
                    reason=department.behaviour.return_reason,
                )
                for step, at in steps
            ]  # fmt: skip
        accepted = next((at for step, at in steps if step == "accepted"), None)
        return [
            answers.task(
                step, row["item_id"], dispatched=dispatched, due=due, at=at, accepted=accepted,
                reason=department.behaviour.return_reason,
            )
            for step, at in steps
        ]  # fmt: skip

    def close(self) -> None:
        for department in self._departments.values():
            department.client.close()


def _steps(
    answer: Answer, dispatched: datetime, due: datetime | None, behaviour: DepartmentBehaviour
) -> list[tuple[str, datetime]]:
    """The steps of `answer` to an item dispatched at `dispatched`, due at `due`, with when each
    is taken (whole minutes, each after the one before)."""
    span = (due - dispatched) if due is not None and due > dispatched else NO_DUE_SPAN

    def after(share: float) -> datetime:
        return _minute(dispatched + span * share, dispatched)

    if answer == "never":
        return []
    if answer == "return":
        return [("returned", after(ACCEPT_SHARE))]
    fed_back = after(FEEDBACK_SHARE)
    if answer == "late":
        fed_back = _minute(dispatched + span + timedelta(days=behaviour.late_by_days), dispatched)
    return [
        ("accepted", after(ACCEPT_SHARE)),
        ("disposing", after(PROGRESS_SHARE)),
        ("fed_back", fed_back),
    ]


def _minute(moment: datetime, after: datetime) -> datetime:
    """`moment` to the whole minute, and at least a minute after `after` (formats that write
    minutes or seconds keep it exactly)."""
    whole = moment.replace(second=0, microsecond=0)
    return max(whole, after.replace(second=0, microsecond=0) + timedelta(minutes=1))
