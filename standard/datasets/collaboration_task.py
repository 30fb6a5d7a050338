"""协同任务: a task the business-collaboration centre dispatches, its acceptance and its feedback.

Joint cross-region, cross-department tasks are dispatched from one place: one task names every
assignee department and region. The task record is re-sent (operation update) as it moves on; its
status says which step it has reached, and each step's fields are required from that step on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from standard.datasets.base import (
    Breach,
    StandardRecord,
    cross_field_rule,
    not_earlier,
    region_breaches,
    strictly_after,
)
from standard.datasets.common import DepartmentRef
from standard.dictionaries import DictionaryCode
from standard.fields import field
from standard.types import RegionCode, ShanghaiDateTime

TaskTypeCode = Annotated[str, DictionaryCode("task_type")]
TaskStatusCode = Annotated[str, DictionaryCode("task_status")]

ACCEPTED_STATUSES = frozenset({"2", "4", "5", "6"})
RETURNED = "3"
FED_BACK, CLOSED = "5", "6"
FED_BACK_STATUSES = frozenset({FED_BACK, CLOSED})
FEEDBACK = ("feedback_time", "feedback_result")
"""What a fed-back (5) or closed (6) task carries: when and what was fed back."""
JOINT_INSPECTION = "1"
"""任务类型 1 联合检查: a task done by inspecting."""


class CollaborationTask(StandardRecord):
    """协同任务: dispatch, acceptance and feedback of one (joint) enforcement task."""

    task_id: str = field("任务编号", "Identifier of the task (record key).", max_length=64)
    title: str = field("任务名称", "Short title.", max_length=200)
    task_type: TaskTypeCode = field("任务类型", "Type of task (dictionary task_type).")
    description: str = field("任务内容", "What is to be done.", max_length=4000)
    source_dataset: str | None = field(
        "来源数据集",
        "Dataset of the record the task came from (complaint, grassroots_event, "
        "risk_warning, ...).",
        default=None,
        max_length=64,
    )
    source_record_id: str | None = field(
        "来源记录编号",
        "Key of the record the task came from (the dataset source_dataset names).",
        default=None,
        max_length=64,
        links=("complaint", "grassroots_event", "risk_warning"),
    )
    dispatcher: DepartmentRef = field("派发单位", "Who dispatched the task.")
    assignees: list[DepartmentRef] = field(
        "承办部门", "Departments that must act (several for a joint task).", min_length=1
    )
    region_codes: list[RegionCode] = field(
        "涉及行政区划", "Regions the task covers (several for a cross-region task).", min_length=1
    )
    dispatched_time: ShanghaiDateTime = field("派发时间", "When the task was dispatched.")
    deadline: ShanghaiDateTime | None = field("办理时限", "When the task is due.", default=None)
    status: TaskStatusCode = field("任务状态", "Step reached (dictionary task_status).")
    accepted_time: ShanghaiDateTime | None = field(
        "签收时间", "When it was accepted.", default=None
    )
    accepted_by: str | None = field("签收人", "Who accepted it.", default=None, max_length=50)
    return_reason: str | None = field(
        "退回理由", "Why it was returned.", default=None, max_length=1000
    )
    feedback_time: ShanghaiDateTime | None = field(
        "反馈时间", "When the result was fed back.", default=None
    )
    feedback_result: str | None = field(
        "反馈结果", "What was done and found.", default=None, max_length=4000
    )
    inspection_ids: list[str] = field(
        "关联检查行为编号",
        "Inspections made for the task.",
        default_factory=list,
        links=("inspection",),
    )
    penalty_ids: list[str] = field(
        "关联处罚行为编号",
        "Penalty cases opened for the task.",
        default_factory=list,
        links=("penalty_case",),
    )

    @cross_field_rule("deadline after dispatch", "A task is due after it is dispatched.")
    def _deadline_after_dispatch(self) -> Iterator[Breach]:
        yield from strictly_after(
            "deadline", self.deadline, "dispatched_time", self.dispatched_time
        )

    @cross_field_rule("acceptance not before dispatch", "A task is accepted after dispatch.")
    def _accepted_after_dispatch(self) -> Iterator[Breach]:
        yield from not_earlier(
            "accepted_time", self.accepted_time, "dispatched_time", self.dispatched_time
        )

    @cross_field_rule("feedback not before acceptance", "Feedback follows acceptance.")
    def _feedback_after_acceptance(self) -> Iterator[Breach]:
        yield from not_earlier(
            "feedback_time", self.feedback_time, "accepted_time", self.accepted_time
        )

    @cross_field_rule(
        "step recorded for status",
        "Accepted and later statuses (2, 4-6) carry the acceptance; fed back (5, 6) the feedback; "
        "returned (3) the reason.",
    )
    def _step_recorded(self) -> Iterator[Breach]:
        needed: list[str] = []
        if self.status in ACCEPTED_STATUSES:
            needed += ["accepted_time"]
        if self.status in FED_BACK_STATUSES:
            needed += FEEDBACK
        if self.status == RETURNED:
            needed += ["return_reason"]
        for name in needed:
            if getattr(self, name) is None:
                yield Breach(name, None, f"status {self.status} needs {name}")

    @cross_field_rule("region in force", "Every region code is in force on the dispatch day.")
    def _region_in_force(self) -> Iterator[Breach]:
        for index, code in enumerate(self.region_codes):
            yield from region_breaches(f"region_codes[{index}]", code, self.dispatched_time)
