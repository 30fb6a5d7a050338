"""Feedback completeness: whether a department's feedback carries the result the standard expects.

A ledger row that is fed back is judged on its department's last feedback (its last `fed_back`
step; without one, the last close that carries a feedback). It is **complete** when it carries:

- a warning (risk_feedback, step 5 已反馈): 处置措施 `measures`, 处置结论 `conclusion` and 处置结果
  `result`, what the standard's rule "disposal reported" asks of a concluding step; and, when the
  conclusion is 1 风险属实已处置 (the risk was real and disposed of), the enforcement that disposed
  of it, a 检查行为编号 `inspection_id` or a 处罚行为编号 `penalty_id`: without it nobody can follow
  the chain from the warning to the inspection or the case, which is what the centre is for;
- a task (collaboration_task, status 5 已反馈, or 6 已办结 carrying the feedback): 反馈时间
  `feedback_time` and 反馈结果 `feedback_result`, what the rule "step recorded for status" asks;
  and, for a joint inspection (task type 1 联合检查), the inspections made (`inspection_ids`).

A row the issuer closed without any feedback from the department is incomplete: nothing came back.
Ingress already refuses a record that breaks the standard's rules, so in practice what this finds
is a close without feedback and a disposal that names no inspection or case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from standard.datasets.collaboration_task import FEEDBACK, JOINT_INSPECTION, CollaborationTask
from standard.datasets.risk_warning import CONFIRMED_AND_DISPOSED, DISPOSAL_REPORT, RiskFeedback
from standard.dictionaries import dictionary
from standard.fields import field_meta

WARNING_FEEDBACK_KEPT = (
    "feedback_id",
    *DISPOSAL_REPORT,
    "return_reason",
    "inspection_id",
    "penalty_id",
)
"""The fields of a risk_feedback the ledger keeps with its step."""
TASK_FEEDBACK_KEPT = (
    *FEEDBACK,
    "return_reason",
    "accepted_by",
    "inspection_ids",
    "penalty_ids",
)
"""The fields of a collaboration_task step the ledger keeps with it."""


def _named(model: Any, name: str) -> str:
    return f"{name} ({field_meta(model, name).zh})"


def last_feedback(events: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The detail of a row's last feedback among its events (each with `event`, `at` and
    `detail` as a mapping): its last fed_back step, else its last close carrying a feedback
    field; None when the department sent none."""
    ordered = sorted(events, key=lambda e: e["at"])
    for wanted in ("fed_back", "closed"):
        found = [
            e["detail"]
            for e in ordered
            if e["event"] == wanted
            and (wanted == "fed_back" or any(e["detail"].get(k) for k in FEEDBACK))
        ]
        if found:
            return found[-1]
    return None


def feedback_gaps(
    kind: str, feedback: Mapping[str, Any] | None, task_type: str | None = None
) -> list[str]:
    """What the feedback of a fed-back row lacks (see the module docstring); [] when complete."""
    if feedback is None:
        return ["no feedback from the department: the row was closed without one"]
    if kind == "warning":
        return _warning_gaps(feedback)
    return _task_gaps(feedback, task_type)


def _warning_gaps(feedback: Mapping[str, Any]) -> list[str]:
    gaps = [
        f"{_named(RiskFeedback, name)} missing"
        for name in DISPOSAL_REPORT
        if not feedback.get(name)
    ]
    linked = feedback.get("inspection_id") or feedback.get("penalty_id")
    if str(feedback.get("conclusion")) == CONFIRMED_AND_DISPOSED and not linked:
        gaps.append(
            f"conclusion {CONFIRMED_AND_DISPOSED} "
            f"({dictionary('disposal_conclusion').label(CONFIRMED_AND_DISPOSED)}) names neither "
            f"{_named(RiskFeedback, 'inspection_id')} nor {_named(RiskFeedback, 'penalty_id')}"
        )
    return gaps


def _task_gaps(feedback: Mapping[str, Any], task_type: str | None) -> list[str]:
    gaps = [
        f"{_named(CollaborationTask, name)} missing" for name in FEEDBACK if not feedback.get(name)
    ]
    if task_type == JOINT_INSPECTION and not feedback.get("inspection_ids"):
        gaps.append(
            f"a joint inspection (task type {JOINT_INSPECTION} "
            f"{dictionary('task_type').label(JOINT_INSPECTION)}) names no "
            f"{_named(CollaborationTask, 'inspection_ids')}"
        )
    return gaps
