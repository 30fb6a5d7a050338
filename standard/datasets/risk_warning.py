"""风险预警 and 处置反馈: a risk warning pushed to a department, and the department's feedback.

The risk-warning and disposal centre tracks every step online: issued (已下发), received (已签收),
disposed (已处置), fed back (已反馈). The warning travels centre → department; each step comes back
as a separate ``RiskFeedback`` record linked by ``warning_id``, so no step overwrites another.
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
from standard.datasets.common import DepartmentRef, RiskLevelCode
from standard.dictionaries import DictionaryCode
from standard.fields import field
from standard.types import CatalogueCode, CreditCode, RegionCode, ShanghaiDateTime

WarningStatusCode = Annotated[str, DictionaryCode("warning_status")]
WarningSourceCode = Annotated[str, DictionaryCode("warning_source")]
DisposalConclusionCode = Annotated[str, DictionaryCode("disposal_conclusion")]

RECEIVED, DISPOSING, DISPOSED, FED_BACK, RETURNED = "2", "3", "4", "5", "7"
FEEDBACK_STEPS = frozenset({RECEIVED, DISPOSING, DISPOSED, FED_BACK, RETURNED})
CONCLUDING_STEPS = frozenset({DISPOSED, FED_BACK})
DISPOSAL_REPORT = ("measures", "conclusion", "result")
"""What a disposed or fed-back step says: what was done, concluded, and came of it."""
CONFIRMED_AND_DISPOSED = "1"
"""处置结论 1 风险属实已处置: the risk was real and the department disposed of it."""


class RiskWarning(StandardRecord):
    """风险预警: a warning about a supervised object, pushed to the responsible department."""

    warning_id: str = field("预警编号", "Identifier of the warning (record key).", max_length=64)
    title: str = field("预警标题", "Short title.", max_length=200)
    content: str = field("预警内容", "What the risk is and why it was raised.", max_length=4000)
    risk_level: RiskLevelCode = field("风险等级", "Risk class A-D (dictionary risk_level).")
    risk_category: str = field("风险类别", "Domain of the risk, e.g. 食品安全.", max_length=100)
    source: WarningSourceCode = field("预警来源", "Where it came from (dictionary warning_source).")
    subject_name: str = field("预警对象", "The object the warning is about.", max_length=200)
    subject_credit_code: CreditCode | None = field(
        "预警对象统一社会信用代码", "Credit code of the object, when an organisation.", default=None
    )
    catalogue_code: CatalogueCode | None = field(
        "监管事项目录编码", "Supervision item concerned.", default=None
    )
    region_code: RegionCode = field("行政区划代码", "Region concerned (GB/T 2260).")
    issuer: DepartmentRef = field("发布单位", "Who issued the warning.")
    responsible_department: DepartmentRef = field("责任部门", "Department that must dispose.")
    issued_time: ShanghaiDateTime = field("下发时间", "When the warning was issued.")
    deadline: ShanghaiDateTime | None = field("处置时限", "When disposal is due.", default=None)
    status: WarningStatusCode = field("预警状态", "Step reached (dictionary warning_status).")

    @cross_field_rule("deadline after issue", "Disposal is due after the warning is issued.")
    def _deadline_after_issue(self) -> Iterator[Breach]:
        yield from strictly_after("deadline", self.deadline, "issued_time", self.issued_time)

    @cross_field_rule("region in force", "The GB/T 2260 code is in force on the day issued.")
    def _region_in_force(self) -> Iterator[Breach]:
        yield from region_breaches("region_code", self.region_code, self.issued_time)


class RiskFeedback(StandardRecord):
    """处置反馈: one step a department reports back on a risk warning."""

    feedback_id: str = field("反馈编号", "Identifier of this feedback (record key).", max_length=64)
    warning_id: str = field(
        "预警编号",
        "The warning fed back on (links risk_warning.warning_id).",
        max_length=64,
        links=("risk_warning",),
    )
    step: WarningStatusCode = field(
        "反馈环节", "Step reported: 2 received, 3 disposing, 4 disposed, 5 fed back, 7 returned."
    )
    department: DepartmentRef = field("反馈部门", "Department reporting.")
    handler: str | None = field("经办人", "Person handling it.", default=None, max_length=50)
    step_time: ShanghaiDateTime = field("反馈时间", "When the step happened.")
    measures: str | None = field("处置措施", "What was done.", default=None, max_length=4000)
    conclusion: DisposalConclusionCode | None = field(
        "处置结论", "Conclusion (dictionary disposal_conclusion).", default=None
    )
    result: str | None = field("处置结果", "Outcome in words.", default=None, max_length=4000)
    return_reason: str | None = field(
        "退回理由",
        "Why the warning is returned (not this department's).",
        default=None,
        max_length=1000,
    )
    inspection_id: str | None = field(
        "检查行为编号",
        "Inspection made in response (links inspection).",
        default=None,
        max_length=50,
        links=("inspection",),
    )
    penalty_id: str | None = field(
        "处罚行为编号",
        "Penalty case opened in response (links penalty_case).",
        default=None,
        max_length=50,
        links=("penalty_case",),
    )

    @cross_field_rule(
        "feedback step", "Feedback reports a department's step: 2, 3, 4, 5 or 7, not 1 or 6."
    )
    def _feedback_step(self) -> Iterator[Breach]:
        if self.step not in FEEDBACK_STEPS:
            yield Breach(
                "step",
                self.step,
                f"step {self.step} is the centre's, not a department's "
                f"(allowed: {', '.join(sorted(FEEDBACK_STEPS))})",
            )

    @cross_field_rule(
        "disposal reported", "A disposed or fed-back step says what was done and concluded."
    )
    def _disposal_reported(self) -> Iterator[Breach]:
        if self.step in CONCLUDING_STEPS:
            for name in DISPOSAL_REPORT:
                if getattr(self, name) is None:
                    yield Breach(name, None, f"step {self.step} reports a disposal")

    @cross_field_rule("return reasoned", "A returned warning says why.")
    def _return_reasoned(self) -> Iterator[Breach]:
        if self.step == RETURNED and self.return_reason is None:
            yield Breach("return_reason", None, "step 7 (returned) needs a reason")
