"""双公示 行政处罚: the credit publication of a penalty decision, in both generations of codes.

Current field codes follow the national credit-information collection standard for administrative
licences and penalties (CF_WSH, CF_XDR_MC, CF_JDRQ, CF_NR_FK, ...); the older generation of 2016
(CF_CFMC, CF_CFLB1/CF_CFLB2, CF_XDR_ZDM, CF_XDR_GSDJ, CF_XDR_SFZ, CF_FR, CF_JG, CF_XZJG, CF_ZT,
DFBM, ...) is listed in ``legacy_codes`` so that mappings accept both. Amounts are in 万元, as the
standard requires; convert from 元 with ``standard.types.yuan_to_wan_yuan``, never by guessing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated

from standard.datasets.base import (
    Breach,
    StandardRecord,
    certificate_breaches,
    cross_field_rule,
    not_before,
    region_breaches,
)
from standard.datasets.common import (
    NATURAL_PERSON,
    CertificateTypeCode,
    PartyCategoryCode,
    PenaltyKindCode,
    category_breaches,
)
from standard.datasets.penalty_case import CONFISCATIONS, FINE
from standard.dictionaries import DictionaryCode
from standard.fields import field
from standard.types import CreditCode, OrgCode, RegionCode, WanYuan

PublicationStatusCode = Annotated[str, DictionaryCode("publication_status")]
LICENCE_KINDS = frozenset({"06", "08"})  # 暂扣许可证件, 吊销许可证件


class PenaltyPublication(StandardRecord):
    """双公示 行政处罚: one published penalty decision against one party."""

    publication_id: str = field(
        "公示记录标识",
        "Identifier of this publication record in the source system.",
        max_length=64,
    )
    party_name: str = field(
        "行政相对人名称", "Name of the party.", codes=("CF_XDR_MC",), max_length=200
    )
    party_category: PartyCategoryCode = field(
        "行政相对人类别",
        "Category of the party (dictionary party_category).",
        codes=("CF_XDR_LB",),
    )
    credit_code: CreditCode | None = field(
        "统一社会信用代码",
        "Party code 1: unified social credit code.",
        codes=("CF_XDR_SHXYM",),
        default=None,
    )
    business_registration_number: str | None = field(
        "工商注册号",
        "Party code 2: business registration number.",
        codes=("CF_XDR_GSZC",),
        legacy_codes=("CF_XDR_GSDJ",),
        default=None,
        max_length=50,
    )
    org_code: OrgCode | None = field(
        "组织机构代码",
        "Party code 3: organisation code (9 characters, no hyphen).",
        codes=("CF_XDR_ZZJG",),
        legacy_codes=("CF_XDR_ZDM",),
        default=None,
    )
    tax_registration_number: str | None = field(
        "税务登记号",
        "Party code 4: tax registration number.",
        codes=("CF_XDR_SWDJ",),
        default=None,
        max_length=50,
    )
    institution_certificate_number: str | None = field(
        "事业单位证书号",
        "Party code 5: public-institution certificate number.",
        codes=("CF_XDR_SYDW",),
        default=None,
        max_length=50,
    )
    social_organisation_number: str | None = field(
        "社会组织登记证号",
        "Party code 6: social-organisation registration number.",
        codes=("CF_XDR_SHZZ",),
        default=None,
        max_length=50,
    )
    legal_representative: str | None = field(
        "法定代表人",
        "Legal representative of an organisation.",
        codes=("CF_FRDB",),
        legacy_codes=("CF_FR",),
        default=None,
        max_length=50,
    )
    legal_representative_certificate_type: CertificateTypeCode | None = field(
        "法定代表人证件类型",
        "Certificate type of the legal representative.",
        codes=("CF_FR_ZJLX",),
        default=None,
    )
    legal_representative_certificate_number: str | None = field(
        "法定代表人证件号码",
        "Certificate number of the legal representative.",
        codes=("CF_FR_ZJHM",),
        default=None,
        max_length=64,
    )
    party_certificate_type: CertificateTypeCode | None = field(
        "证件类型",
        "Certificate type of a natural-person party.",
        codes=("CF_XDR_ZJLX",),
        default=None,
    )
    party_certificate_number: str | None = field(
        "证件号码",
        "Certificate number of a natural-person party.",
        codes=("CF_XDR_ZJHM",),
        legacy_codes=("CF_XDR_SFZ",),
        default=None,
        max_length=64,
    )
    decision_number: str = field(
        "行政处罚决定书文号",
        "Number of the penalty decision document.",
        codes=("CF_WSH",),
        max_length=128,
    )
    penalty_name: str | None = field(
        "处罚名称",
        "Title of the penalty (older generation only).",
        legacy_codes=("CF_CFMC",),
        default=None,
        max_length=500,
    )
    violation_type: str = field(
        "违法行为类型", "Type of the violation.", codes=("CF_WFXW",), max_length=2000
    )
    illegal_facts: str = field(
        "违法事实",
        "Facts of the violation (older generation: 处罚事由).",
        codes=("CF_SY",),
        max_length=5000,
    )
    legal_basis: str = field(
        "处罚依据", "Legal basis of the penalty.", codes=("CF_YJ",), max_length=2000
    )
    penalty_kinds: list[PenaltyKindCode] = field(
        "处罚类别",
        "Kinds of penalty (dictionary penalty_kind); older generation: 处罚类别1/2.",
        codes=("CF_CFLB",),
        legacy_codes=("CF_CFLB1", "CF_CFLB2"),
        min_length=1,
    )
    penalty_content: str = field(
        "处罚内容",
        "The penalty imposed, in words (older generation: 处罚结果).",
        codes=("CF_NR",),
        legacy_codes=("CF_JG",),
        max_length=4000,
    )
    fine_wan_yuan: WanYuan | None = field(
        "罚款金额（万元）", "Fine in 万元.", codes=("CF_NR_FK",), default=None
    )
    confiscated_wan_yuan: WanYuan | None = field(
        "没收违法所得、没收非法财物的金额（万元）",
        "Confiscated amount in 万元.",
        codes=("CF_NR_WFFF",),
        default=None,
    )
    licence_affected: str | None = field(
        "暂扣或吊销证照名称及编号",
        "Name and number of a suspended or revoked licence.",
        codes=("CF_NR_ZKDX",),
        default=None,
        max_length=200,
    )
    decision_date: date = field("处罚决定日期", "Date of the decision.", codes=("CF_JDRQ",))
    valid_until: date | None = field(
        "处罚有效期", "Last day the penalty has effect.", codes=("CF_YXQ",), default=None
    )
    publication_deadline: date | None = field(
        "公示截止期", "Last day the decision is published.", codes=("CF_GSJZQ",), default=None
    )
    authority: str = field(
        "处罚机关",
        "Organ that decided the penalty.",
        codes=("CF_CFJG",),
        legacy_codes=("CF_XZJG",),
        max_length=200,
    )
    authority_credit_code: CreditCode = field(
        "处罚机关统一社会信用代码", "The deciding organ's credit code.", codes=("CF_CFJGDM",)
    )
    source_unit: str = field(
        "数据来源单位", "Unit the data comes from.", codes=("CF_SJLY",), max_length=200
    )
    source_unit_credit_code: CreditCode = field(
        "数据来源单位统一社会信用代码", "The source unit's credit code.", codes=("CF_SJLYDM",)
    )
    status: PublicationStatusCode | None = field(
        "当前状态",
        "Status of the publication (older generation only).",
        legacy_codes=("CF_ZT",),
        default=None,
    )
    region_code: RegionCode | None = field(
        "地方编码",
        "Region code of the publishing locality (older generation only).",
        legacy_codes=("DFBM",),
        default=None,
    )
    remarks: str | None = field("备注", "Remarks.", codes=("BZ",), default=None, max_length=2000)

    @cross_field_rule(
        "publication deadline after decision date",
        "A decision is published from its date on; the deadline cannot precede it.",
    )
    def _deadline_after_decision(self) -> Iterator[Breach]:
        deadline = self.publication_deadline
        if deadline is not None and deadline <= self.decision_date:
            yield Breach(
                "publication_deadline",
                deadline,
                f"value {deadline.isoformat()} is not after decision_date "
                f"{self.decision_date.isoformat()}",
            )

    @cross_field_rule("validity not before decision", "A penalty has effect from its decision.")
    def _validity_not_before_decision(self) -> Iterator[Breach]:
        yield from not_before("valid_until", self.valid_until, "decision_date", self.decision_date)

    @cross_field_rule(
        "party identified by category",
        "An organisation or individual business gives at least one of the six party codes; a "
        "natural person gives a certificate type and number (2021 collection standard).",
    )
    def _party_identified(self) -> Iterator[Breach]:
        if self.party_category == NATURAL_PERSON:
            if self.party_certificate_number is None:
                yield Breach(
                    "party_certificate_number",
                    None,
                    "the party is a natural person, so a certificate number is needed",
                )
            return
        codes = (
            self.credit_code,
            self.business_registration_number,
            self.org_code,
            self.tax_registration_number,
            self.institution_certificate_number,
            self.social_organisation_number,
        )
        if all(code is None for code in codes):
            yield Breach(
                "credit_code",
                None,
                f"party category {self.party_category} needs at least one of the six party codes "
                "(credit code, business registration, organisation code, tax registration, "
                "institution certificate, social organisation)",
            )

    @cross_field_rule(
        "certificate code matches type",
        "Certificate numbers of the party and of the legal representative pass their type's check.",
    )
    def _certificates_match_types(self) -> Iterator[Breach]:
        yield from certificate_breaches(
            "party_certificate_type",
            self.party_certificate_type,
            "party_certificate_number",
            self.party_certificate_number,
        )
        yield from certificate_breaches(
            "legal_representative_certificate_type",
            self.legal_representative_certificate_type,
            "legal_representative_certificate_number",
            self.legal_representative_certificate_number,
        )

    @cross_field_rule(
        "certificate type fits category", "A natural person uses a personal certificate."
    )
    def _certificate_type_fits_category(self) -> Iterator[Breach]:
        yield from category_breaches(
            "party_category",
            self.party_category,
            "party_certificate_type",
            self.party_certificate_type,
        )

    @cross_field_rule(
        "credit code carries the organisation code",
        "Characters 9-17 of a credit code are the organisation code (GB 32100-2015).",
    )
    def _credit_code_carries_org_code(self) -> Iterator[Breach]:
        if self.credit_code is not None and self.org_code is not None:
            embedded = self.credit_code[8:17]
            if embedded != self.org_code:
                yield Breach(
                    "org_code",
                    self.org_code,
                    f"value {self.org_code} differs from characters 9-17 of credit_code "
                    f"{self.credit_code} ({embedded})",
                )

    @cross_field_rule(
        "fine amount matches penalty kinds", "A fine (罚款, kind 03) has a positive amount."
    )
    def _fine_matches_kinds(self) -> Iterator[Breach]:
        if FINE in self.penalty_kinds and not self.fine_wan_yuan:
            yield Breach("fine_wan_yuan", self.fine_wan_yuan, "penalty_kinds include 罚款 (03)")

    @cross_field_rule(
        "confiscation amount matches penalty kinds",
        "A confiscation (没收违法所得 04, 没收非法财物 05) has an amount.",
    )
    def _confiscation_matches_kinds(self) -> Iterator[Breach]:
        if CONFISCATIONS & set(self.penalty_kinds) and self.confiscated_wan_yuan is None:
            yield Breach("confiscated_wan_yuan", None, "penalty_kinds include 没收 (04, 05)")

    @cross_field_rule(
        "licence named when suspended or revoked",
        "Suspending (06) or revoking (08) a licence names the licence (CF_NR_ZKDX).",
    )
    def _licence_named(self) -> Iterator[Breach]:
        if LICENCE_KINDS & set(self.penalty_kinds) and self.licence_affected is None:
            yield Breach("licence_affected", None, "penalty_kinds include 暂扣 or 吊销许可证件")

    @cross_field_rule("region in force", "The GB/T 2260 code is in force on the decision date.")
    def _region_in_force(self) -> Iterator[Breach]:
        yield from region_breaches("region_code", self.region_code, self.decision_date)
