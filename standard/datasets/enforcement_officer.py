"""执法人员: one enforcement officer of the officer database (执法主体库), with the 执法证."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated

from standard.datasets.base import (
    Breach,
    StandardRecord,
    cross_field_rule,
    not_before,
    region_breaches,
)
from standard.dictionaries import DictionaryCode
from standard.fields import field
from standard.types import CreditCode, IdNumber, RegionCode, ShanghaiDateTime

OfficerStatusCode = Annotated[str, DictionaryCode("officer_status")]


class EnforcementOfficer(StandardRecord):
    """执法人员: a person holding an administrative enforcement certificate."""

    officer_id: str = field(
        "执法人员标识", "Identifier of the officer (record key).", max_length=64
    )
    name: str = field("姓名", "Officer's name.", max_length=50)
    id_number: IdNumber = field("公民身份号码", "Resident ID number (GB 11643).")
    certificate_number: str = field(
        "执法证号", "Number of the administrative enforcement certificate.", max_length=50
    )
    certificate_issued: date = field("发证日期", "Date the certificate was issued.")
    certificate_valid_until: date = field("证件有效期至", "Last day the certificate is valid.")
    agency: str = field("执法主体", "Enforcement agency the officer works for.", max_length=200)
    agency_credit_code: CreditCode = field(
        "执法主体统一社会信用代码", "Credit code of the enforcement agency."
    )
    region_code: RegionCode = field("行政区划代码", "Region of the agency (GB/T 2260).")
    enforcement_areas: list[str] = field(
        "执法领域",
        "Enforcement areas the certificate covers (e.g. 市场监管, 综合行政执法).",
        default_factory=list,
    )
    status: OfficerStatusCode = field("人员状态", "Status (dictionary officer_status).")
    updated_time: ShanghaiDateTime = field("更新时间", "When the record was last changed.")

    @cross_field_rule("certificate validity ordered", "A certificate expires after its issue.")
    def _validity_ordered(self) -> Iterator[Breach]:
        yield from not_before(
            "certificate_valid_until",
            self.certificate_valid_until,
            "certificate_issued",
            self.certificate_issued,
        )

    @cross_field_rule("region in force", "The GB/T 2260 code is in force at the last change.")
    def _region_in_force(self) -> Iterator[Breach]:
        yield from region_breaches("region_code", self.region_code, self.updated_time)
