"""Sub-records, coded types and fields shared by several datasets: party, officer, supervision act.

National field codes (``x-codes``) on the inspection and penalty fields are the column names of the
national supervision-behaviour exchange tables as public implementations use them; the
specification text itself is not public, so treat those codes as the best public evidence, not as
the specification.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from standard.datasets.base import Breach, StandardRecord, certificate_breaches, cross_field_rule
from standard.dictionaries import DictionaryCode
from standard.fields import field
from standard.types import CreditCode, PartyCertificateCode

PartyCategoryCode = Annotated[str, DictionaryCode("party_category")]
CertificateTypeCode = Annotated[str, DictionaryCode("certificate_type")]
SupervisedObjectTypeCode = Annotated[str, DictionaryCode("supervised_object_type")]
RiskLevelCode = Annotated[str, DictionaryCode("risk_level")]
PenaltyKindCode = Annotated[str, DictionaryCode("penalty_kind")]

NATURAL_PERSON = "2"
ORGANISATION = "1"
INDIVIDUAL_BUSINESS = "3"
CREDIT_CODE_CERTIFICATE = "001"
ORG_CODE_CERTIFICATE = "002"
ID_CARD_CERTIFICATE = "111"
OTHER_CERTIFICATE = "990"
PERSONAL_CERTIFICATES = frozenset({"111", "414", "511", "516", "553", "990"})
ORGANISATION_CERTIFICATES = frozenset({"001", "002", "990"})
# An individual business is identified by its own credit code (92...) or its operator's ID card.
INDIVIDUAL_BUSINESS_CERTIFICATES = frozenset({"001", "111", "990"})
CERTIFICATES_BY_CATEGORY = {
    ORGANISATION: ORGANISATION_CERTIFICATES,
    NATURAL_PERSON: PERSONAL_CERTIFICATES,
    INDIVIDUAL_BUSINESS: INDIVIDUAL_BUSINESS_CERTIFICATES,
}


def category_breaches(
    category_field: str, category: str | None, type_field: str, certificate_type: str | None
) -> Iterator[Breach]:
    """Breaches of 'certificate type fits category' (a natural person has no credit code)."""
    if category is None or certificate_type is None:
        return
    allowed = CERTIFICATES_BY_CATEGORY.get(category)
    if allowed is not None and certificate_type not in allowed:
        yield Breach(
            type_field,
            certificate_type,
            f"certificate type {certificate_type} does not fit {category_field} {category}; "
            f"allowed: {', '.join(sorted(allowed))}",
        )


class Party(StandardRecord):
    """行政相对人: the person or organisation an inspection or penalty is directed at."""

    name: str = field(
        "行政相对人名称",
        "Name of the administrative counterpart (unit or person).",
        codes=("administrative_cp",),
        max_length=200,
    )
    category: PartyCategoryCode = field(
        "行政相对人性质",
        "Category of the counterpart (dictionary party_category).",
        codes=("administrative_cp_na",),
    )
    certificate_type: CertificateTypeCode = field(
        "行政相对人证件类型",
        "Type of the certificate identifying the counterpart (dictionary certificate_type).",
        codes=("administrative_cp_ce_type",),
    )
    certificate_code: PartyCertificateCode = field(
        "行政相对人证件号码",
        "Credit code, organisation code or ID number, as the certificate type says.",
        codes=("administrative_cp_ui_code",),
        max_length=20,
        credit_code_when=("certificate_type", CREDIT_CODE_CERTIFICATE),
    )
    legal_representative: str | None = field(
        "法定代表人", "Legal representative or person in charge.", default=None, max_length=50
    )
    registered_address: str | None = field(
        "注册地址",
        "Registered address.",
        codes=("address_registered",),
        default=None,
        max_length=400,
    )
    business_address: str | None = field(
        "经营地址",
        "Business (operating) address.",
        codes=("address_operating",),
        default=None,
        max_length=400,
    )

    @cross_field_rule(
        "certificate code matches type",
        "A credit code (001), organisation code (002) or ID number (111) must pass its check.",
    )
    def _certificate_code_matches_type(self) -> Iterator[Breach]:
        yield from certificate_breaches(
            "certificate_type", self.certificate_type, "certificate_code", self.certificate_code
        )

    @cross_field_rule(
        "certificate type fits category",
        "A natural person is identified by a personal certificate, an organisation by its codes.",
    )
    def _certificate_type_fits_category(self) -> Iterator[Breach]:
        yield from category_breaches(
            "category", self.category, "certificate_type", self.certificate_type
        )


class OfficerRef(StandardRecord):
    """检查人员: an enforcement officer taking part, named with the enforcement certificate."""

    name: str = field("检查人员姓名", "Officer's name.", codes=("check_personnel",), max_length=50)
    certificate_number: str = field(
        "执法证号",
        "Number of the officer's administrative enforcement certificate (执法证).",
        codes=("check_personnel_code",),
        max_length=50,
    )


class DepartmentRef(StandardRecord):
    """A department (部门) named with its unified social credit code."""

    name: str = field("部门名称", "Department name.", max_length=200)
    credit_code: CreditCode | None = field(
        "部门统一社会信用代码", "The department's unified social credit code.", default=None
    )


class SupervisionAct(StandardRecord):
    """监管行为: who carries out an inspection or a penalty case, and the type of its object.

    The base of both datasets, so the five fields they share are declared once.
    """

    implementing_organ: str | None = field(
        "实施机构",
        "Organ conducting the inspection or the penalty case.",
        codes=("implement_institution",),
        default=None,
        max_length=100,
    )
    implementing_organ_code: str | None = field(
        "实施机构编码",
        "Code of the implementing organ.",
        codes=("implement_institution_code",),
        default=None,
        max_length=20,
    )
    entrusted_department: str | None = field(
        "受委托部门",
        "Department acting on entrustment, if any.",
        codes=("entrust_dept",),
        default=None,
        max_length=100,
    )
    entrusted_department_code: str | None = field(
        "受委托部门编码",
        "Code of the entrusted department.",
        codes=("entrust_dept_code",),
        default=None,
        max_length=20,
    )
    supervised_object_type: SupervisedObjectTypeCode | None = field(
        "监管对象类型",
        "Type of the supervised object (dictionary supervised_object_type).",
        default=None,
    )
