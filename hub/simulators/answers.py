"""How a simulated department answers what it received: task and warning feedback, its own way.

A department system that received a collaboration task or a risk warning reports each step back
through its own inbound channel (`task_feedback`, `risk_feedback`), in its own format. The
simulator does not write that format itself: it copies the template record of the system's valid
samples most like the step (a returned task from a returned one, where the samples have it) and
writes the step's canonical values into it through the system's own inbound mapping, read
backwards (`hub.simulators.writer`). The hub then reads the answer with that mapping, as it would
the real system's.

    answers = Answers(mappings["market-penalty"], dispatcher={"name": ..., "credit_code": ...})
    answers.task("accepted", "XT-TS330106202603010001", dispatched=d, at=d + hours(2))
    answers.task("fed_back", task_id, dispatched=d, accepted=d + hours(2), at=d + days(5))
    answers.task("returned", task_id, dispatched=d, at=d + hours(3), reason="不属本部门职责")
    answers.warning("fed_back", "GJYJ20260506000341", department=own, at=issued + hours(20))
    answers.result                    # the result text a fed-back task reports (the sample's)

The steps are the ledger's (`centre.ledger`): accepted, disposing, fed_back, returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace as with_fields
from datetime import datetime
from typing import Any

from hub.simulators.traffic import SystemTraffic, TrafficPayload
from mappings import SystemMappings


@dataclass(frozen=True)
class _Step:
    """How a step is written: its code in the standard, the template records to copy (the
    first alternative some record matches), and the values it must not carry."""

    code: str
    like: tuple[Mapping[str, str], ...]
    clears: tuple[str, ...]


TASK_STEPS: Mapping[str, _Step] = {
    "accepted": _Step(
        "2",
        ({"status": "2"}, {"status": "5"}, {"status": "6"}, {}),
        ("feedback_time", "feedback_result", "return_reason"),
    ),
    "disposing": _Step(
        "4", ({"status": "4"}, {"status": "5"}, {"status": "6"}, {}), ("return_reason",)
    ),
    "fed_back": _Step("5", ({"status": "5"}, {"status": "6"}), ("return_reason",)),
    "returned": _Step(
        "3",
        ({"status": "3"}, {}),
        ("accepted_time", "accepted_by", "feedback_time", "feedback_result"),
    ),
}
"""task_status 2 签收, 4 办理中, 5 已反馈, 3 已退回."""
WARNING_STEPS: Mapping[str, _Step] = {
    "accepted": _Step("2", ({"step": "2"}, {}), ("return_reason",)),
    "disposing": _Step("3", ({"step": "3"}, {"step": "2"}, {}), ("return_reason",)),
    "fed_back": _Step("5", ({"step": "5"}, {"step": "4"}), ("return_reason",)),
    "returned": _Step(
        "7", ({"step": "7"}, {"step": "2"}, {}), ("measures", "conclusion", "result")
    ),
}
"""warning_status 2 已签收, 3 处置中, 5 已反馈, 7 已退回 (a feedback step)."""
PROGRESS_NOTE = "正在办理：已赴现场核查，处理结果将按时反馈。"
"""What a department says of a task in hand (its feedback_result at step 4)."""


class Answers:
    """One department system's answers (see the module docstring).

    Parameters:
      mappings: the system's mapping folder (its feedback samples and mappings).
      dispatcher: who dispatches the tasks it answers (a DepartmentRef as data): its task
        feedback names it, so the hub routes the answer back to the dispatcher's system.

    `tasks` and `warnings` are None when the folder maps no such feedback or has no valid sample
    of it: the department cannot answer that kind.
    """

    def __init__(self, mappings: SystemMappings, *, dispatcher: Mapping[str, str]) -> None:
        self.system = mappings.id
        self.dispatcher = dict(dispatcher)
        self.tasks = _feedback(mappings, "task_feedback")
        self.warnings = _feedback(mappings, "risk_feedback")

    @property
    def result(self) -> str:
        """The result a fed-back task reports: the sample's (the answer keeps it)."""
        example = self._traffic("task").example(TASK_STEPS["fed_back"].like)
        return str(example["feedback_result"])

    def task(
        self,
        step: str,
        task_id: str,
        *,
        dispatched: datetime | None = None,
        at: datetime | None = None,
        accepted: datetime | None = None,
        due: datetime | None = None,
        reason: str | None = None,
    ) -> TrafficPayload:
        """Feedback `step` (accepted, disposing, fed_back, returned) on task `task_id`.

        `dispatched` and `due` are the task's (as it was dispatched); `at` when the step was
        taken, `accepted` when the task was accepted (for a later step), `reason` why it is
        returned. A time left None keeps the template's. Raises ValueError when the system
        cannot say that step (no feedback mapping, or no sample to write it from).
        """
        spec = _known(TASK_STEPS, step, "task")
        values: dict[str, Any] = {
            "task_id": task_id,
            "status": spec.code,
            "dispatcher": self.dispatcher,
            **{name: None for name in spec.clears},
        }
        if dispatched is not None:
            # The template's deadline may fall before this dispatch: none rather than a wrong one.
            values |= {"dispatched_time": dispatched, "deadline": due}
        times = {
            "accepted": {"accepted_time": at},
            "disposing": {"accepted_time": accepted, "feedback_time": at},
            "fed_back": {"accepted_time": accepted, "feedback_time": at},
        }.get(step, {})
        values |= {name: moment for name, moment in times.items() if moment is not None}
        if step == "disposing":
            values["feedback_result"] = PROGRESS_NOTE
        if step == "returned":
            values["return_reason"] = reason or "不属本部门职责，请重新派单。"
        return self._answer("task", step, values, spec, at)

    def warning(
        self,
        step: str,
        warning_id: str,
        *,
        department: Mapping[str, str],
        at: datetime,
        reason: str | None = None,
    ) -> TrafficPayload:
        """Feedback `step` on warning `warning_id`, reported by `department` (the responsible
        department as the warning named it) at `at`; `reason` why it is returned."""
        spec = _known(WARNING_STEPS, step, "warning")
        values: dict[str, Any] = {
            "warning_id": warning_id,
            "step": spec.code,
            "department": dict(department),
            "step_time": at,
            **{name: None for name in spec.clears},
        }
        if step == "returned":
            values["return_reason"] = reason or "不属本部门职责，请重新指定责任部门。"
        return self._answer("warning", step, values, spec, at)

    def _answer(
        self, kind: str, step: str, values: Mapping[str, Any], spec: _Step, at: datetime | None
    ) -> TrafficPayload:
        payload = self._traffic(kind).record(values, like=spec.like, time=at)
        if payload.valid != 1:
            raise ValueError(
                f"{self.system}: its {step} {kind} feedback, written from its samples, is not "
                f"read back as one valid record ({payload.records} read, {payload.valid} valid)"
            )
        item = values.get("task_id") or values.get("warning_id")
        return with_fields(payload, label=f"{kind} {item} {step}")

    def _traffic(self, kind: str) -> SystemTraffic:
        traffic = self.tasks if kind == "task" else self.warnings
        if traffic is None:
            raise ValueError(
                f"{self.system} cannot answer a {kind}: its mapping folder has no valid "
                f"{'task_feedback' if kind == 'task' else 'risk_feedback'} sample"
            )
        return traffic


def _feedback(mappings: SystemMappings, message_type: str) -> SystemTraffic | None:
    if message_type not in mappings.inbound:
        return None
    try:
        return SystemTraffic(mappings, message_type)
    except ValueError:
        return None


def _known(steps: Mapping[str, _Step], step: str, kind: str) -> _Step:
    if step not in steps:
        raise ValueError(f"no {kind} feedback step {step!r} (known: {', '.join(steps)})")
    return steps[step]


def replaced(payload: TrafficPayload, values: Mapping[str, str]) -> TrafficPayload:
    """`payload` with literal values replaced, encoded as the payload is (UTF-8 or GB18030).

    Raises ValueError naming a value the payload does not contain.
    """
    body = payload.body
    try:
        body.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        encoding = "gb18030"
    for old, new in values.items():
        if old.encode(encoding) not in body:
            raise ValueError(f"{old!r} is not in {payload.system} {payload.label}")
        body = body.replace(old.encode(encoding), new.encode(encoding))
    return with_fields(payload, body=body, kind="generated", label=f"{payload.label} (answer)")
