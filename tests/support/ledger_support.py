"""Records of the disposal loop for the ledger's tests: warnings, feedback, tasks, complaints."""

from __future__ import annotations

import datetime as dt
from typing import Any

from centre.ledger import Ledger, departments_by_system
from hub.settings import DEFAULT_SYSTEMS_FILE
from hub.systems import load_systems
from standard.datasets.collaboration_task import CollaborationTask
from standard.datasets.risk_warning import RiskFeedback, RiskWarning
from standard.envelope import Envelope, Operation
from store import Store

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
CENTRE = {"name": "浙江省综合行政执法指导办公室", "credit_code": "11330000MB1P273395"}
MARKET = {"name": "杭州市西湖区市场监督管理局", "credit_code": "113301060025641254"}
ECO = {"name": "杭州市生态环境局", "credit_code": "11330100002547034U"}
ISSUER = {"name": "浙江省市场监督管理局", "credit_code": "11330000002502194F"}
DISPATCHED = dt.datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
"""A Monday."""


class Clock:
    """An injected clock: now is what the test says."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def ledger_of(store: Store, clock: Clock, **kwargs: Any) -> Ledger:
    """A ledger on `store` knowing the shipped systems' departments."""
    systems = load_systems(DEFAULT_SYSTEMS_FILE).systems
    return Ledger(store, departments=departments_by_system(systems), clock=clock, **kwargs)


def wrap(record: Any, time: dt.datetime, operation: Operation = Operation.UPDATE) -> Envelope:
    return Envelope.wrap(record, source="330000/test", operation=operation, time=time)


def warning(
    warning_id: str = "YJ-1",
    *,
    level: str = "C",
    status: str = "1",
    issued: dt.datetime = DISPATCHED,
    department: dict[str, str] = MARKET,
    changed: dt.datetime | None = None,
) -> Envelope:
    record = RiskWarning.model_validate(
        {
            "warning_id": warning_id,
            "title": "某食品公司抽检不合格",
            "content": "连续两次抽检不合格",
            "risk_level": level,
            "risk_category": "食品安全",
            "source": "1",
            "subject_name": "某食品公司",
            "region_code": "330106",
            "issuer": ISSUER,
            "responsible_department": department,
            "issued_time": issued,
            "status": status,
        }
    )
    return wrap(record, changed or issued, Operation.INSERT if status == "1" else Operation.UPDATE)


def feedback(
    step: str,
    at: dt.datetime,
    *,
    warning_id: str = "YJ-1",
    department: dict[str, str] = MARKET,
    feedback_id: str | None = None,
    **extra: Any,
) -> Envelope:
    """Step `step` of `department` on the warning; `extra` fields (inspection_id ...) too."""
    fields: dict[str, Any] = {}
    if step in ("4", "5"):
        fields = {"measures": "现场检查", "conclusion": "1", "result": "已责令整改"}
    if step == "7":
        fields = {"return_reason": "不属本部门职责"}
    record = RiskFeedback.model_validate(
        {
            "feedback_id": feedback_id or f"FK-{warning_id}-{step}",
            "warning_id": warning_id,
            "step": step,
            "department": department,
            "step_time": at,
            **fields,
            **extra,
        }
    )
    return wrap(record, at, Operation.INSERT)


def task(
    status: str,
    at: dt.datetime = DISPATCHED,
    *,
    task_id: str = "RW-1",
    assignees: list[dict[str, str]] | None = None,
    task_type: str = "1",
    source_record_id: str | None = None,
    **extra: Any,
) -> Envelope:
    """Task `task_id` at `status`, with the fields that status needs and `extra` ones."""
    fields: dict[str, Any] = {}
    if status == "2":
        fields["accepted_time"] = at
    if status in ("4", "5", "6"):
        fields["accepted_time"] = min(at, DISPATCHED + dt.timedelta(hours=1))
    if status in ("5", "6"):
        fields.update(feedback_time=at, feedback_result="已查处")
    if status == "3":
        fields["return_reason"] = "不属本部门职责"
    record = CollaborationTask.model_validate(
        {
            "task_id": task_id,
            "title": "联合检查",
            "task_type": task_type,
            "description": "对某市场开展联合检查",
            "dispatcher": CENTRE,
            "assignees": assignees or [MARKET],
            "region_codes": ["330106"],
            "dispatched_time": DISPATCHED,
            "status": status,
            **({"source_dataset": "complaint"} if source_record_id else {}),
            **({"source_record_id": source_record_id} if source_record_id else {}),
            **fields,
            **extra,
        }
    )
    return wrap(record, at, Operation.INSERT if status == "1" else Operation.UPDATE)
