"""处罚行为 / 处罚案件: a penalty case through its stages, with the legal moves between stages.

Stages follow the case system's procedure: 案源登记 lead_registered → 调查取证 investigation →
处罚告知 notice → 处罚决定 decision → 处罚执行 execution → 归档 archived.
``TRANSITIONS`` is the table of legal moves, each with the article of the Administrative Penalty
Law (2021, "APL") behind it.

Fields required only from a stage on carry ``required_from_stage``. On an archived case the record
does not show which stages it went through, so its ``closing_mode`` (结案方式) says how far it got:
a lead archived without filing needs no decision number, an executed case does.

Deadlines of the law that can be extended with approval (the decision within 90 days of filing,
art. 60) are not validation rules: a record breaking them may be lawful. The centre watches them
(`centre.penalties`); an approved extension travels as ``decision_deadline`` (决定期限延长至).
The simple procedure's limits (art. 51) are a rule: no approval can lift them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any

from standard.datasets.base import (
    Breach,
    cross_field_rule,
    not_before,
    region_breaches,
)
from standard.datasets.common import Party, PenaltyKindCode, SupervisionAct
from standard.dictionaries import DictionaryCode
from standard.errors import IllegalStageTransition
from standard.fields import field, fields_meta
from standard.types import CatalogueCode, RegionCode, ShanghaiDateTime, Yuan


class PenaltyStage(StrEnum):
    """The stage a penalty case is in (案件阶段)."""

    LEAD_REGISTERED = "lead_registered"
    INVESTIGATION = "investigation"
    NOTICE = "notice"
    DECISION = "decision"
    EXECUTION = "execution"
    ARCHIVED = "archived"

    @property
    def zh(self) -> str:
        """The stage's Chinese name, e.g. 处罚决定."""
        return STAGE_ZH[self]

    @property
    def order(self) -> int:
        """Position on the main line, 0 (lead registered) to 5 (archived)."""
        # Read from a table made once: every record's stage rule asks, and listing the enum
        # each time cost a third of the penalty case's cross-field rules.
        return STAGE_ORDER[self]

    def can_move_to(self, target: PenaltyStage) -> bool:
        """Whether a case in this stage may move to ``target`` (staying put is no move)."""
        return target in NEXT_STAGES[self]


STAGE_ORDER: dict[PenaltyStage, int] = {stage: index for index, stage in enumerate(PenaltyStage)}
STAGE_ZH: dict[PenaltyStage, str] = {
    PenaltyStage.LEAD_REGISTERED: "案源登记",
    PenaltyStage.INVESTIGATION: "调查取证",
    PenaltyStage.NOTICE: "处罚告知",
    PenaltyStage.DECISION: "处罚决定",
    PenaltyStage.EXECUTION: "处罚执行",
    PenaltyStage.ARCHIVED: "归档",
}


@dataclass(frozen=True)
class StageTransition:
    """One legal move between stages: what happens (Chinese) and the law behind it."""

    source: PenaltyStage
    target: PenaltyStage
    action: str
    basis: str


_S = PenaltyStage
TRANSITIONS: tuple[StageTransition, ...] = (
    StageTransition(
        _S.LEAD_REGISTERED,
        _S.INVESTIGATION,
        "立案",
        "APL art. 54: a case meeting the filing criteria is filed, then investigated fully, "
        "objectively and fairly.",
    ),
    StageTransition(
        _S.LEAD_REGISTERED,
        _S.DECISION,
        "当场处罚（简易程序）",
        "APL arts. 51-52: simple procedure - facts certain, legal basis, fine up to 200 yuan for a "
        "citizen or 3,000 yuan for an organisation, or a warning: decided on the spot, no filing.",
    ),
    StageTransition(
        _S.LEAD_REGISTERED,
        _S.ARCHIVED,
        "不予立案",
        "APL art. 54 (filing only when the criteria are met); SAMR Procedure Provisions art. 20: "
        "a lead not meeting them is not filed and the lead is closed.",
    ),
    StageTransition(
        _S.INVESTIGATION,
        _S.NOTICE,
        "拟处罚告知",
        "APL arts. 44, 62: before deciding, the party is told the intended penalty, facts, "
        "reasons, basis and the rights to state, defend and request a hearing (art. 63).",
    ),
    StageTransition(
        _S.INVESTIGATION,
        _S.ARCHIVED,
        "不予处罚 / 移送司法 / 撤销立案",
        "APL art. 57(1)(2)-(4): no penalty when the violation is minor or the facts are not "
        "established; transfer to judicial organs when a crime is suspected (also art. 27).",
    ),
    StageTransition(
        _S.NOTICE,
        _S.DECISION,
        "作出处罚决定",
        "APL arts. 57, 62: after the party's statement, defence or hearing (arts. 63-65) the "
        "organ decides; no decision without the notice.",
    ),
    StageTransition(
        _S.NOTICE,
        _S.INVESTIGATION,
        "补充调查",
        "APL arts. 45, 65: the organ must review the facts, reasons and evidence the party puts "
        "forward; new facts from the statement or the hearing send the case back to investigation.",
    ),
    StageTransition(
        _S.NOTICE,
        _S.ARCHIVED,
        "不予处罚 / 移送司法",
        "APL arts. 45, 57(1)(2)-(4): after the statement or hearing the organ may find no penalty "
        "due, or transfer the case to judicial organs.",
    ),
    StageTransition(
        _S.DECISION,
        _S.EXECUTION,
        "送达执行",
        "APL arts. 61, 66-67: the decision is served (on the spot or within 7 days) and the party "
        "performs it; a fine is paid within 15 days.",
    ),
    StageTransition(
        _S.EXECUTION,
        _S.ARCHIVED,
        "结案归档",
        "APL arts. 66-73 (performance, compulsory execution, surcharge capped at the fine); the "
        "case is closed and archived when execution ends or is terminated.",
    ),
)

NEXT_STAGES: dict[PenaltyStage, frozenset[PenaltyStage]] = {
    stage: frozenset(t.target for t in TRANSITIONS if t.source is stage) for stage in PenaltyStage
}


def check_transition(current: PenaltyStage | str, target: PenaltyStage | str) -> None:
    """Raise IllegalStageTransition unless a case may move from ``current`` to ``target``.

    Staying in the same stage is allowed (an update of the case within its stage).
    """
    source, destination = PenaltyStage(current), PenaltyStage(target)
    if source is destination or source.can_move_to(destination):
        return
    allowed = sorted(NEXT_STAGES[source], key=lambda s: s.order)
    raise IllegalStageTransition(source, destination, allowed)


# How far a closed case got, read from its closing mode (dictionary closing_mode): fields required
# from a later stage are not required of it.
CLOSING_REACHED: dict[str, PenaltyStage] = {
    "1": PenaltyStage.EXECUTION,  # 执行完毕
    "2": PenaltyStage.INVESTIGATION,  # 不予行政处罚
    "3": PenaltyStage.INVESTIGATION,  # 移送司法机关
    "4": PenaltyStage.EXECUTION,  # 终结执行
    "5": PenaltyStage.LEAD_REGISTERED,  # 不予立案
    "6": PenaltyStage.INVESTIGATION,  # 撤销立案
    "9": PenaltyStage.LEAD_REGISTERED,  # 其他: assume nothing
}
# On-the-spot decisions (APL arts. 51-52) have no filing.
NOT_REQUIRED_IN_SIMPLE_PROCEDURE = frozenset({"filing_time"})
SIMPLE_PROCEDURE = "1"
# APL art. 51: on the spot, a fine of at most 200 yuan for a citizen, 3,000 yuan for a legal
# person or other organisation. An individual business (个体工商户) is a natural person (Civil
# Code, book I chapter II section 4), so its limit is a citizen's.
SIMPLE_PROCEDURE_FINE_LIMITS: dict[str, Decimal] = {
    "1": Decimal(3000),  # 法人及非法人组织
    "2": Decimal(200),  # 自然人
    "3": Decimal(200),  # 个体工商户
}
FINE = "03"
CONFISCATIONS = frozenset({"04", "05"})
EXECUTED = "1"
TRANSFERRED = "3"

CaseSourceCode = Annotated[str, DictionaryCode("case_source")]
ProcedureCode = Annotated[str, DictionaryCode("penalty_procedure")]
ClosingModeCode = Annotated[str, DictionaryCode("closing_mode")]
ExecutionModeCode = Annotated[str, DictionaryCode("execution_mode")]
ExecutionResultCode = Annotated[str, DictionaryCode("execution_result")]


class PenaltyCase(SupervisionAct):
    """处罚行为: one administrative penalty case, from lead to archive."""

    penalty_id: str = field(
        "处罚行为编号",
        "Identifier of the penalty behaviour (case) in its source system.",
        max_length=50,
    )
    catalogue_code: CatalogueCode = field(
        "监管事项目录编码",
        "Supervision catalogue item the case falls under (14 digits).",
        codes=("supervise_item_implement_code",),
    )
    name: str = field("处罚行为名称", "Name of the penalty behaviour (case title).", max_length=500)
    stage: PenaltyStage = field("案件阶段", "Stage the case is in; see TRANSITIONS.")
    case_source: CaseSourceCode = field(
        "案件来源", "Where the case came from (dictionary case_source)."
    )
    supervised_object: str = field(
        "监管对象",
        "The supervised object concerned.",
        codes=("supervise_object",),
        max_length=200,
    )
    inspection_id: str | None = field(
        "检查行为编号",
        "The inspection this case came from (links to inspection.inspection_id).",
        codes=("check_action_code",),
        default=None,
        max_length=50,
        links=("inspection",),
    )
    party: Party = field("行政相对人", "The party the penalty is directed at.")
    region_code: RegionCode = field(
        "行政区划代码",
        "Region of the case (GB/T 2260), in force on the registration date.",
        codes=("area_number",),
    )
    lead_time: ShanghaiDateTime = field("案源登记时间", "When the lead was registered.")
    illegal_facts: str | None = field(
        "违法事实",
        "Facts of the violation.",
        default=None,
        max_length=4000,
        required_from_stage="notice",
    )
    legal_basis: str | None = field(
        "处罚依据",
        "Legal basis of the penalty.",
        default=None,
        max_length=2000,
        required_from_stage="notice",
    )
    procedure: ProcedureCode | None = field(
        "处罚程序",
        "Simple or ordinary procedure (dictionary penalty_procedure).",
        default=None,
        required_from_stage="decision",
    )
    hearing_held: bool = field(
        "是否听证", "Whether a hearing was held (APL arts. 63-65).", default=False
    )
    criminal: bool = field(
        "是否涉刑", "Whether the case involves a suspected crime.", default=False
    )
    major_case: bool | None = field("是否重大案件", "Whether the case is major.", default=None)
    filing_time: ShanghaiDateTime | None = field(
        "立案时间",
        "When the case was filed (APL art. 54).",
        default=None,
        required_from_stage="investigation",
    )
    legal_review: bool | None = field(
        "是否法制审核",
        "Whether legal review took place (required for major cases, APL art. 58).",
        default=None,
    )
    legal_review_date: date | None = field(
        "法制审核日期", "Date of the legal review.", default=None
    )
    legal_review_opinion: str | None = field(
        "法制审核意见", "Conclusion of the legal review.", default=None, max_length=100
    )
    collective_discussion: bool | None = field(
        "是否集体讨论",
        "Whether the organ's leaders discussed the case (APL art. 57(2)).",
        default=None,
    )
    collective_discussion_date: date | None = field(
        "集体讨论日期", "Date of the collective discussion.", default=None
    )
    collective_discussion_conclusion: str | None = field(
        "集体讨论结论", "Conclusion of the collective discussion.", default=None, max_length=1000
    )
    decision_deadline: date | None = field(
        "决定期限延长至",
        "The day the decision is due by after an approved extension of the 90 days from filing "
        "(APL art. 60: unless laws, regulations or rules provide otherwise); none: 90 days.",
        default=None,
    )
    decision_number: str | None = field(
        "处罚文书号",
        "Number of the penalty decision document.",
        default=None,
        max_length=100,
        required_from_stage="decision",
    )
    decision_date: date | None = field(
        "处罚决定日期",
        "Date of the penalty decision.",
        default=None,
        required_from_stage="decision",
    )
    penalty_kinds: list[PenaltyKindCode] | None = field(
        "处罚种类",
        "Kinds of penalty imposed, several allowed (dictionary penalty_kind).",
        default=None,
        min_length=1,
        required_from_stage="decision",
    )
    penalty_result: str | None = field(
        "处罚结果",
        "The penalty imposed, in words.",
        default=None,
        max_length=1000,
        required_from_stage="decision",
    )
    fine_amount: Yuan | None = field("罚款金额", "Fine in 元.", default=None)
    confiscated_amount: Yuan | None = field(
        "没收金额", "Value of confiscated illegal gains and property in 元.", default=None
    )
    closing_mode: ClosingModeCode | None = field(
        "结案方式",
        "How the case was closed (dictionary closing_mode).",
        default=None,
        required_from_stage="archived",
    )
    execution_mode: ExecutionModeCode | None = field(
        "结案执行方式", "How the decision was executed (dictionary execution_mode).", default=None
    )
    execution_result: ExecutionResultCode | None = field(
        "结案执行结果", "Result of the execution (dictionary execution_result).", default=None
    )
    fine_paid: Yuan | None = field(
        "结案实缴罚款金额", "Fine actually paid, surcharge included, in 元.", default=None
    )
    closing_date: date | None = field(
        "结案日期", "Date the case was closed.", default=None, required_from_stage="archived"
    )
    transfer_time: ShanghaiDateTime | None = field(
        "移送时间", "When the case was transferred to judicial organs.", default=None
    )
    report_time: ShanghaiDateTime | None = field(
        "报送时间",
        "When the record was reported to the supervision system.",
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

    def reached(self) -> PenaltyStage:
        """The furthest stage the case is known to have reached (see CLOSING_REACHED)."""
        if self.stage is not PenaltyStage.ARCHIVED:
            return self.stage
        if self.closing_mode is None:
            return PenaltyStage.LEAD_REGISTERED
        return CLOSING_REACHED.get(self.closing_mode, PenaltyStage.LEAD_REGISTERED)

    @cross_field_rule(
        "mandatory at stage",
        "Fields marked required_from_stage are mandatory once the case has reached that stage "
        "(on an archived case: the stage its closing mode shows it reached; closing fields "
        "always). The filing time is not required under the simple procedure (APL arts. 51-52).",
    )
    def _mandatory_at_stage(self) -> Iterator[Breach]:
        reached = self.reached()
        for name, needed_from in stage_requirements().items():
            if getattr(self, name) is not None:
                continue
            applies = needed_from.order <= reached.order or (
                needed_from is PenaltyStage.ARCHIVED and self.stage is PenaltyStage.ARCHIVED
            )
            if not applies:
                continue
            if name in NOT_REQUIRED_IN_SIMPLE_PROCEDURE and self.procedure == SIMPLE_PROCEDURE:
                continue
            yield Breach(
                name,
                None,
                f"the field is missing; it is mandatory from stage {needed_from.zh} "
                f"({needed_from.value}) on, and the case is at {self.stage.zh} "
                f"({self.stage.value})",
            )

    @cross_field_rule("decision not before filing", "A decision follows filing (APL arts. 54, 60).")
    def _decision_not_before_filing(self) -> Iterator[Breach]:
        yield from not_before("decision_date", self.decision_date, "filing_time", self.filing_time)

    @cross_field_rule("filing not before lead", "A case is filed from a registered lead.")
    def _filing_not_before_lead(self) -> Iterator[Breach]:
        yield from not_before("filing_time", self.filing_time, "lead_time", self.lead_time)

    @cross_field_rule("closing after filing", "A case closes after it was filed (national rule).")
    def _closing_after_filing(self) -> Iterator[Breach]:
        yield from not_before("closing_date", self.closing_date, "filing_time", self.filing_time)

    @cross_field_rule("closing not before decision", "A decided case closes after the decision.")
    def _closing_not_before_decision(self) -> Iterator[Breach]:
        yield from not_before(
            "closing_date", self.closing_date, "decision_date", self.decision_date
        )

    @cross_field_rule("report after closing", "A closed case is reported after closing (national).")
    def _report_after_closing(self) -> Iterator[Breach]:
        yield from not_before("report_time", self.report_time, "closing_date", self.closing_date)

    @cross_field_rule(
        "reviews not before filing", "Legal review and collective discussion follow filing."
    )
    def _reviews_not_before_filing(self) -> Iterator[Breach]:
        yield from not_before(
            "legal_review_date", self.legal_review_date, "filing_time", self.filing_time
        )
        yield from not_before(
            "collective_discussion_date",
            self.collective_discussion_date,
            "filing_time",
            self.filing_time,
        )

    @cross_field_rule(
        "reviews not after decision",
        "Legal review (APL art. 58) and collective discussion (art. 57(2)) precede the decision.",
    )
    def _reviews_not_after_decision(self) -> Iterator[Breach]:
        for name, day in (
            ("legal_review_date", self.legal_review_date),
            ("collective_discussion_date", self.collective_discussion_date),
        ):
            if day is not None and self.decision_date is not None and day > self.decision_date:
                yield Breach(
                    name,
                    day,
                    f"value {day.isoformat()} is after decision_date "
                    f"{self.decision_date.isoformat()}",
                )

    @cross_field_rule(
        "review dated when held",
        "A legal review or collective discussion that took place has a date.",
    )
    def _review_dated_when_held(self) -> Iterator[Breach]:
        if self.legal_review and self.legal_review_date is None:
            yield Breach("legal_review_date", None, "legal_review is true but no date is given")
        if self.collective_discussion and self.collective_discussion_date is None:
            yield Breach(
                "collective_discussion_date",
                None,
                "collective_discussion is true but no date is given",
            )

    @cross_field_rule(
        "fine amount matches penalty kinds",
        "A fine (罚款, kind 03) has a positive amount; an amount without the kind is a mistake.",
    )
    def _fine_amount_matches_kinds(self) -> Iterator[Breach]:
        yield from _amount_matches_kinds(
            self.penalty_kinds, {FINE}, "fine_amount", self.fine_amount, "罚款 (03)"
        )

    @cross_field_rule(
        "simple procedure fine limit",
        "APL art. 51: under the simple procedure a fine is at most 200 yuan for a citizen "
        "(自然人, 个体工商户) and 3,000 yuan for a legal person or other organisation; a larger "
        "fine needs the ordinary procedure.",
    )
    def _simple_procedure_fine_limit(self) -> Iterator[Breach]:
        if self.procedure != SIMPLE_PROCEDURE or self.fine_amount is None:
            return
        limit = SIMPLE_PROCEDURE_FINE_LIMITS.get(self.party.category)
        if limit is not None and self.fine_amount > limit:
            party = "a citizen" if limit < 1000 else "an organisation"
            yield Breach(
                "fine_amount",
                self.fine_amount,
                f"value {self.fine_amount} 元 exceeds {limit} 元, the most the simple procedure "
                f"allows for {party} (APL art. 51; party category {self.party.category}); "
                "decide it under the ordinary procedure (2)",
            )

    @cross_field_rule(
        "extension not before filing",
        "An extended decision deadline lies after filing (APL art. 60).",
    )
    def _extension_after_filing(self) -> Iterator[Breach]:
        yield from not_before(
            "decision_deadline", self.decision_deadline, "filing_time", self.filing_time
        )

    @cross_field_rule(
        "confiscation amount matches penalty kinds",
        "A confiscation (没收违法所得 04, 没收非法财物 05) has an amount, and only then.",
    )
    def _confiscation_amount_matches_kinds(self) -> Iterator[Breach]:
        yield from _amount_matches_kinds(
            self.penalty_kinds,
            CONFISCATIONS,
            "confiscated_amount",
            self.confiscated_amount,
            "没收 (04, 05)",
        )

    @cross_field_rule(
        "paid fine within surcharge cap",
        "The surcharge of 3% a day may not exceed the fine (APL art. 72(1)(1)), so at most twice "
        "the fine is ever paid.",
    )
    def _paid_fine_within_cap(self) -> Iterator[Breach]:
        if self.fine_paid is None:
            return
        if self.fine_amount is None:
            yield Breach("fine_paid", self.fine_paid, "a fine was paid but fine_amount is missing")
        elif self.fine_paid > 2 * self.fine_amount:
            yield Breach(
                "fine_paid",
                self.fine_paid,
                f"value {self.fine_paid} exceeds twice fine_amount {self.fine_amount} "
                f"(fine plus the capped surcharge)",
            )

    @cross_field_rule(
        "execution recorded when executed",
        "A case closed as executed (closing mode 1) records how and with what result.",
    )
    def _execution_recorded(self) -> Iterator[Breach]:
        if self.closing_mode != EXECUTED:
            return
        for name in ("execution_mode", "execution_result"):
            if getattr(self, name) is None:
                yield Breach(name, None, "the case was closed as executed (closing mode 1)")

    @cross_field_rule(
        "transfer time when transferred",
        "A case transferred to judicial organs (closing mode 3; APL art. 27) has a transfer time.",
    )
    def _transfer_time_when_transferred(self) -> Iterator[Breach]:
        if self.closing_mode == TRANSFERRED and self.transfer_time is None:
            yield Breach("transfer_time", None, "the case was closed as transferred (mode 3)")

    @cross_field_rule(
        "region in force", "The GB/T 2260 code is in force on the day the lead was registered."
    )
    def _region_in_force(self) -> Iterator[Breach]:
        yield from region_breaches("region_code", self.region_code, self.lead_time)


def _amount_matches_kinds(
    kinds: list[str] | None,
    wanted: set[str] | frozenset[str],
    field_name: str,
    amount: Decimal | None,
    label: str,
) -> Iterator[Breach]:
    has_kind = bool(kinds) and any(k in wanted for k in kinds or ())
    if has_kind and (amount is None or amount <= 0):
        yield Breach(
            field_name, amount, f"penalty_kinds include {label}, so a positive amount is needed"
        )
    if not has_kind and amount is not None and kinds is not None:
        yield Breach(field_name, amount, f"an amount is given but penalty_kinds lack {label}")


@functools.cache
def stage_requirements() -> Mapping[str, PenaltyStage]:
    """Field → stage from which it is mandatory, read once from the field declarations."""
    return MappingProxyType(
        {
            meta.en: PenaltyStage(meta.required_from_stage)
            for meta in fields_meta(PenaltyCase)
            if meta.required_from_stage is not None
        }
    )


def transition_table() -> list[dict[str, Any]]:
    """TRANSITIONS as plain data, for docs and the JSON Schema."""
    return [
        {
            "from": t.source.value,
            "from_zh": t.source.zh,
            "to": t.target.value,
            "to_zh": t.target.zh,
            "action": t.action,
            "basis": t.basis,
        }
        for t in TRANSITIONS
    ]
