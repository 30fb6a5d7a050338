"""投诉举报: a complaint or report from the unified complaint/report platform (统一投诉举报平台)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from standard.datasets.base import (
    Breach,
    StandardRecord,
    cross_field_rule,
    not_earlier,
    region_breaches,
)
from standard.datasets.common import DepartmentRef
from standard.dictionaries import DictionaryCode
from standard.fields import field
from standard.types import CreditCode, RegionCode, ShanghaiDateTime

ScenarioCode = Annotated[str, DictionaryCode("complaint_scenario")]
ChannelCode = Annotated[str, DictionaryCode("complaint_channel")]
ComplaintKindCode = Annotated[str, DictionaryCode("complaint_kind")]
ComplaintStatusCode = Annotated[str, DictionaryCode("complaint_status")]

NOT_ACCEPTED = "3"
CLOSED_STATUSES = frozenset({"6", "7"})
ACCEPTED_STATUSES = frozenset({"2", "4", "5", "6", "7"})


class Complaint(StandardRecord):
    """投诉举报: one complaint, report or request, from receipt to result."""

    complaint_id: str = field(
        "投诉举报编号", "Identifier in the platform (record key).", max_length=64
    )
    kind: ComplaintKindCode = field(
        "诉求类型", "Complaint, report, ... (dictionary complaint_kind)."
    )
    channel: ChannelCode = field(
        "受理渠道", "Channel it came in by (dictionary complaint_channel)."
    )
    scenario: ScenarioCode = field(
        "投诉举报场景", "Scenario, e.g. 医疗美容 (dictionary complaint_scenario)."
    )
    title: str = field("标题", "Short title.", max_length=200)
    content: str = field("诉求内容", "What the complainant says.", max_length=4000)
    anonymous: bool = field("是否匿名", "Whether the complainant stays anonymous.", default=False)
    complainant_name: str | None = field(
        "投诉举报人姓名", "Complainant's name.", default=None, max_length=50
    )
    complainant_phone: str | None = field(
        "联系电话", "Complainant's phone number.", default=None, max_length=20
    )
    respondent_name: str = field(
        "被投诉举报对象", "Who or what is complained about.", max_length=200
    )
    respondent_credit_code: CreditCode | None = field(
        "被投诉举报对象统一社会信用代码", "Credit code of the respondent, when known.", default=None
    )
    region_code: RegionCode = field("行政区划代码", "Where it happened (GB/T 2260).")
    address: str | None = field(
        "事发地址", "Address where it happened.", default=None, max_length=400
    )
    received_time: ShanghaiDateTime = field("登记时间", "When the platform received it.")
    accepted_time: ShanghaiDateTime | None = field(
        "受理时间", "When it was accepted.", default=None
    )
    handling_department: DepartmentRef | None = field(
        "承办部门", "Department handling it.", default=None
    )
    status: ComplaintStatusCode = field("办理状态", "Status (dictionary complaint_status).")
    result: str | None = field(
        "办理结果", "Result told to the complainant.", default=None, max_length=4000
    )
    closed_time: ShanghaiDateTime | None = field("办结时间", "When it was closed.", default=None)
    task_id: str | None = field(
        "协同任务编号",
        "Collaboration task it became (links collaboration_task.task_id).",
        default=None,
        max_length=64,
        links=("collaboration_task",),
    )

    @cross_field_rule("acceptance not before receipt", "A complaint is accepted after receipt.")
    def _accepted_after_received(self) -> Iterator[Breach]:
        yield from not_earlier(
            "accepted_time", self.accepted_time, "received_time", self.received_time
        )

    @cross_field_rule("closing not before receipt", "A complaint is closed after receipt.")
    def _closed_after_received(self) -> Iterator[Breach]:
        yield from not_earlier("closed_time", self.closed_time, "received_time", self.received_time)

    @cross_field_rule(
        "result when closed", "A closed complaint (status 6, 7) has a result and a closing time."
    )
    def _result_when_closed(self) -> Iterator[Breach]:
        if self.status in CLOSED_STATUSES:
            if self.result is None:
                yield Breach("result", None, f"status {self.status} is closed but no result")
            if self.closed_time is None:
                yield Breach("closed_time", None, f"status {self.status} is closed but no time")

    @cross_field_rule(
        "acceptance recorded", "An accepted complaint (status 2, 4-7) has an acceptance time."
    )
    def _acceptance_recorded(self) -> Iterator[Breach]:
        if self.status in ACCEPTED_STATUSES and self.accepted_time is None:
            yield Breach("accepted_time", None, f"status {self.status} implies acceptance")

    @cross_field_rule(
        "anonymous has no name", "An anonymous complaint does not carry the complainant's name."
    )
    def _anonymous_has_no_name(self) -> Iterator[Breach]:
        if self.anonymous and self.complainant_name is not None:
            yield Breach("complainant_name", self.complainant_name, "the complaint is anonymous")

    @cross_field_rule("region in force", "The GB/T 2260 code is in force on the day received.")
    def _region_in_force(self) -> Iterator[Breach]:
        yield from region_breaches("region_code", self.region_code, self.received_time)
