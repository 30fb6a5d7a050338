"""督办通知: the disposal centre's reminder before a deadline, and its escalation after it.

The centre follows every risk warning and collaboration task per assignee department until it is
fed back. Shortly before an item is due it reminds the department that owes the disposal (临期提醒,
addressed to that department); once the item is overdue it escalates to whoever dispatched it
(超期督办, addressed to the dispatcher, or the issuer of a warning). Each notice is one record,
sent once, routed like a task to the system that serves its ``addressee``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from standard.datasets.base import (
    Breach,
    StandardRecord,
    cross_field_rule,
    region_breaches,
    strictly_after,
)
from standard.datasets.common import DepartmentRef
from standard.dictionaries import DictionaryCode
from standard.fields import field
from standard.types import RegionCode, ShanghaiDateTime

NoticeTypeCode = Annotated[str, DictionaryCode("notice_type")]
NoticeItemCode = Annotated[str, DictionaryCode("notice_item")]

REMINDER, ESCALATION = "1", "2"
ITEM_WARNING, ITEM_TASK = "1", "2"


class SupervisionNotice(StandardRecord):
    """督办通知: a reminder that an item is due soon, or an escalation that it is overdue."""

    notice_id: str = field("通知编号", "Identifier of the notice (record key).", max_length=64)
    notice_type: NoticeTypeCode = field(
        "通知类型", "1 due-soon reminder, 2 overdue escalation (dictionary notice_type)."
    )
    item_kind: NoticeItemCode = field(
        "督办对象类型", "1 risk warning, 2 collaboration task (dictionary notice_item)."
    )
    item_id: str = field(
        "督办对象编号",
        "The warning_id or task_id the notice is about.",
        max_length=64,
        links=("risk_warning", "collaboration_task"),
    )
    item_title: str | None = field(
        "督办对象标题", "Title of the warning or task.", default=None, max_length=200
    )
    department: DepartmentRef = field("承办部门", "The department that owes the disposal.")
    addressee: DepartmentRef = field(
        "通知对象",
        "Who the notice is for: the department itself (reminder) or the dispatcher (escalation).",
    )
    region_code: RegionCode | None = field(
        "行政区划代码", "Region of the item, where it has one (GB/T 2260).", default=None
    )
    dispatched_time: ShanghaiDateTime = field("派发时间", "When the item was dispatched.")
    due_time: ShanghaiDateTime = field("办理时限", "When the disposal is due.")
    state: str = field(
        "办理环节",
        "Where the item stood when the notice was sent (the ledger's state, e.g. delivered).",
        max_length=20,
    )
    sent_time: ShanghaiDateTime = field("通知时间", "When the centre sent the notice.")
    content: str = field("通知内容", "The notice in words.", max_length=1000)

    @cross_field_rule("due after dispatch", "An item is due after it was dispatched.")
    def _due_after_dispatch(self) -> Iterator[Breach]:
        yield from strictly_after(
            "due_time", self.due_time, "dispatched_time", self.dispatched_time
        )

    @cross_field_rule(
        "escalation after due",
        "An overdue escalation is sent after the deadline, a reminder before it.",
    )
    def _timely(self) -> Iterator[Breach]:
        if self.notice_type == ESCALATION:
            yield from strictly_after("sent_time", self.sent_time, "due_time", self.due_time)
        elif self.notice_type == REMINDER and self.sent_time > self.due_time:
            yield Breach("sent_time", self.sent_time, "a reminder is sent before the item is due")

    @cross_field_rule("region in force", "The GB/T 2260 code is in force on the day dispatched.")
    def _region_in_force(self) -> Iterator[Breach]:
        if self.region_code is not None:
            yield from region_breaches("region_code", self.region_code, self.dispatched_time)
