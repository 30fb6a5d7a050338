"""检查行为: one administrative inspection, with every field of the national behaviour standard."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from standard.datasets.base import (
    Breach,
    cross_field_rule,
    region_breaches,
    strictly_after,
)
from standard.datasets.common import OfficerRef, Party, SupervisionAct
from standard.dictionaries import DictionaryCode
from standard.fields import field
from standard.types import CatalogueCode, InspectionListCode, RegionCode, ShanghaiDateTime

InspectionFormCode = Annotated[str, DictionaryCode("inspection_form")]
InspectionCategoryCode = Annotated[str, DictionaryCode("inspection_category")]
InspectionMethodCode = Annotated[str, DictionaryCode("inspection_method")]
InspectionResultCode = Annotated[str, DictionaryCode("inspection_result")]

MIN_OFFICERS = 2


class Inspection(SupervisionAct):
    """检查行为: an inspection of a supervised object by enforcement officers."""

    inspection_id: str = field(
        "检查行为编号",
        "Identifier of the inspection in its source system.",
        codes=("check_action_code",),
        max_length=50,
    )
    catalogue_code: CatalogueCode = field(
        "监管事项目录编码",
        "Supervision catalogue item inspected against (14 digits).",
        codes=("supervise_item_implement_code",),
    )
    inspection_list_code: InspectionListCode = field(
        "检查实施清单编码",
        "Implementation-list code: organ's credit code, a digit 1-5, then digits (19-50 chars).",
        codes=("supervise_item_check_icode",),
    )
    name: str = field(
        "检查行为名称", "Name of the inspection.", codes=("check_action_name",), max_length=500
    )
    plan_id: str | None = field(
        "双随机一公开计划ID",
        "Random-draw (双随机、一公开) plan the inspection belongs to.",
        codes=("plan_id",),
        default=None,
        max_length=50,
    )
    supervised_object: str = field(
        "监管对象", "The supervised object inspected.", codes=("supervise_object",), max_length=200
    )
    party: Party = field("行政相对人", "The party inspected.")
    region_code: RegionCode = field(
        "行政区划代码",
        "Region of the inspection (GB/T 2260), in force on the inspection day.",
        codes=("area_number",),
    )
    inspection_form: InspectionFormCode = field(
        "检查形式", "Form of inspection (dictionary inspection_form).", codes=("check_form",)
    )
    inspection_category: InspectionCategoryCode = field(
        "检查类别",
        "Category of inspection (dictionary inspection_category).",
        codes=("check_type",),
    )
    inspection_method: InspectionMethodCode | None = field(
        "检查方式",
        "Method of inspection (dictionary inspection_method).",
        codes=("check_mode",),
        default=None,
    )
    inspection_result: InspectionResultCode = field(
        "检查结果",
        "Result of the inspection (dictionary inspection_result).",
        codes=("check_result",),
    )
    problems_found: str | None = field(
        "发现问题", "Problems found, in words.", default=None, max_length=2000
    )
    inspection_time: ShanghaiDateTime = field(
        "检查时间", "When the inspection took place.", codes=("check_date",)
    )
    inspectors: list[OfficerRef] = field(
        "检查人员",
        "Officers who inspected, each with the enforcement certificate number.",
        min_length=1,
    )
    report_time: ShanghaiDateTime | None = field(
        "报送时间",
        "When the record was reported; after the inspection.",
        codes=("submitted_date",),
        default=None,
    )
    reporter: str | None = field(
        "报送人员",
        "Who reported the record.",
        codes=("submitted_personnel",),
        default=None,
        max_length=50,
    )

    @cross_field_rule("report after inspection", "The national standard: 报送时间 after 检查时间.")
    def _report_after_inspection(self) -> Iterator[Breach]:
        yield from strictly_after(
            "report_time", self.report_time, "inspection_time", self.inspection_time
        )

    @cross_field_rule(
        "at least two officers",
        "Enforcement officers act at least two together (Administrative Penalty Law art. 42; "
        "art. 55 for inspections).",
    )
    def _at_least_two_officers(self) -> Iterator[Breach]:
        if len(self.inspectors) < MIN_OFFICERS:
            yield Breach(
                "inspectors",
                len(self.inspectors),
                f"{len(self.inspectors)} officer named; at least {MIN_OFFICERS} must act",
            )

    @cross_field_rule("officers distinct", "The same certificate cannot be counted twice.")
    def _officers_distinct(self) -> Iterator[Breach]:
        seen: set[str] = set()
        for index, officer in enumerate(self.inspectors):
            if officer.certificate_number in seen:
                yield Breach(
                    f"inspectors[{index}].certificate_number",
                    officer.certificate_number,
                    f"certificate {officer.certificate_number} is listed twice",
                )
            seen.add(officer.certificate_number)

    @cross_field_rule("region in force", "The GB/T 2260 code is in force on the inspection day.")
    def _region_in_force(self) -> Iterator[Breach]:
        yield from region_breaches("region_code", self.region_code, self.inspection_time)
