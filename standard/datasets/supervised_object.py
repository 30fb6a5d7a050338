"""监管对象: one supervised object (enterprise, individual business, person) with its industry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from standard.datasets.base import (
    Breach,
    StandardRecord,
    certificate_breaches,
    cross_field_rule,
    region_breaches,
)
from standard.datasets.common import (
    CREDIT_CODE_CERTIFICATE,
    CertificateTypeCode,
    PartyCategoryCode,
    RiskLevelCode,
    SupervisedObjectTypeCode,
    category_breaches,
)
from standard.fields import field
from standard.types import IndustryCode, PartyCertificateCode, RegionCode, ShanghaiDateTime, WanYuan


class SupervisedObject(StandardRecord):
    """监管对象: an entry of the supervised-object database that feeds the random draw."""

    object_id: str = field("监管对象标识", "Identifier of the object (record key).", max_length=64)
    name: str = field("监管对象名称", "Name of the object.", max_length=200)
    object_type: SupervisedObjectTypeCode = field(
        "监管对象类型", "Type of object (dictionary supervised_object_type)."
    )
    category: PartyCategoryCode = field(
        "行政相对人类别", "Category as a party (dictionary party_category)."
    )
    certificate_type: CertificateTypeCode = field(
        "证件类型", "Certificate identifying the object (dictionary certificate_type)."
    )
    certificate_code: PartyCertificateCode = field(
        "证件号码",
        "Credit code, organisation code or ID number, per the certificate type.",
        max_length=20,
        credit_code_when=("certificate_type", CREDIT_CODE_CERTIFICATE),
    )
    legal_representative: str | None = field(
        "法定代表人", "Legal representative or operator.", default=None, max_length=50
    )
    industry_code: IndustryCode = field(
        "行业分类", "Industry class (GB/T 4754-2017), as fine as known."
    )
    region_code: RegionCode = field("行政区划代码", "Region of registration (GB/T 2260).")
    registered_address: str | None = field(
        "注册地址", "Registered address.", default=None, max_length=400
    )
    business_address: str | None = field(
        "经营地址", "Business address.", default=None, max_length=400
    )
    established_date: date | None = field("成立日期", "Date of establishment.", default=None)
    registered_capital_wan_yuan: WanYuan | None = field(
        "注册资本（万元）", "Registered capital in 万元.", default=None
    )
    risk_level: RiskLevelCode | None = field(
        "风险等级", "Credit-risk class A-D (dictionary risk_level).", default=None
    )
    in_random_draw: bool = field(
        "纳入双随机抽查库", "Whether the object is in the 双随机 draw pool.", default=True
    )
    updated_time: ShanghaiDateTime = field("更新时间", "When the record was last changed.")

    @cross_field_rule(
        "certificate code matches type",
        "A credit code (001), organisation code (002) or ID number (111) must pass its check.",
    )
    def _certificate_code_matches_type(self) -> Iterator[Breach]:
        yield from certificate_breaches(
            "certificate_type", self.certificate_type, "certificate_code", self.certificate_code
        )

    @cross_field_rule("certificate type fits category", "A natural person has no credit code.")
    def _certificate_type_fits_category(self) -> Iterator[Breach]:
        yield from category_breaches(
            "category", self.category, "certificate_type", self.certificate_type
        )

    @cross_field_rule("region in force", "The GB/T 2260 code is in force at the last change.")
    def _region_in_force(self) -> Iterator[Breach]:
        yield from region_breaches("region_code", self.region_code, self.updated_time)
