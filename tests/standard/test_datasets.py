"""Datasets: samples validate and round-trip, mandatory fields, cross-field rules, stages, types."""

from __future__ import annotations

import itertools
import json
import pickle
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from sample_records import DELETE, SAMPLES, changed, sample

from standard.datasets import (
    DATASETS,
    PenaltyCase,
    PenaltyPublication,
    PenaltyStage,
    check_transition,
    dataset,
    dataset_for_type,
    validate,
    validate_json,
)
from standard.datasets.penalty_case import TRANSITIONS, stage_requirements
from standard.dictionaries import dictionary, dictionary_names
from standard.errors import IllegalStageTransition, RecordInvalid, UnknownDataset, Violation
from standard.fields import field_for_code, field_meta, fields_meta, model_in
from standard.types import AmountNotExact, wan_yuan_to_yuan, yuan_to_wan_yuan

NAMES = sorted(DATASETS)


def violations(name: str, data: dict[str, Any]) -> list[Violation]:
    with pytest.raises(RecordInvalid) as caught:
        validate(name, data)
    assert caught.value.dataset == name
    return list(caught.value.violations)


def only(name: str, data: dict[str, Any]) -> Violation:
    found = violations(name, data)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


# --- samples -------------------------------------------------------------------------------------


def test_every_dataset_has_a_sample() -> None:
    assert sorted(p.stem for p in SAMPLES.glob("*.json")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_sample_validates_and_round_trips_through_json_unchanged(name: str) -> None:
    data = sample(name)
    record = validate(name, data)
    text = record.model_dump_json()
    assert json.loads(text) == data
    assert validate_json(name, text) == record
    assert pickle.loads(pickle.dumps(record)) == record


@pytest.mark.parametrize("name", NAMES)
def test_registry_names_type_version_and_key(name: str) -> None:
    spec = dataset(name)
    assert spec.type == f"gov.supervision.{name}.v1"
    assert dataset_for_type(spec.type) is spec
    assert spec.key_of(sample(name)) == sample(name)[spec.key_field]
    assert spec.schema_file == f"{name}.v1.schema.json"


def test_unknown_dataset_and_type_name_the_known_ones() -> None:
    with pytest.raises(UnknownDataset, match="penalty_case"):
        dataset("penalty")
    with pytest.raises(LookupError, match=r"gov\.supervision\.penalty_case\.v1"):
        dataset_for_type("gov.supervision.penalty.v1")


# --- mandatory fields, derived from the models ---------------------------------------------------


def _mandatory_paths(model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> list[str]:
    paths: list[str] = []
    for meta in fields_meta(model):
        if meta.mandatory or meta.required_from_stage is not None:
            paths.append(prefix + meta.en)
        sub = model_in(model.model_fields[meta.en].annotation)
        value = data.get(meta.en)
        if sub is not None and isinstance(value, dict):
            paths += _mandatory_paths(sub, value, f"{prefix}{meta.en}.")
        elif sub is not None and isinstance(value, list) and value:
            paths += _mandatory_paths(sub, value[0], f"{prefix}{meta.en}[0].")
    return paths


MANDATORY = [
    (name, path) for name in NAMES for path in _mandatory_paths(dataset(name).model, sample(name))
]


def test_mandatory_fields_are_found_in_every_dataset() -> None:
    assert len(MANDATORY) > 100
    assert ("penalty_case", "decision_number") in MANDATORY  # from stage 处罚决定 on
    assert ("inspection", "inspectors[0].certificate_number") in MANDATORY
    assert ("penalty_publication", "decision_number") in MANDATORY


@pytest.mark.parametrize(("name", "path"), MANDATORY, ids=[f"{n}:{p}" for n, p in MANDATORY])
def test_removing_a_mandatory_field_names_it(name: str, path: str) -> None:
    found = violations(name, changed(sample(name), {path: DELETE}))
    mine = [v for v in found if v.field == path]
    assert mine, "\n".join(map(str, found))
    assert mine[0].rule in ("mandatory", "mandatory at stage")
    assert mine[0].field_zh and mine[0].value is None
    assert str(mine[0]).startswith(f"{name}.{path} (")


def test_the_penalty_sample_is_archived_after_execution_so_every_stage_field_applies() -> None:
    case = validate("penalty_case", sample("penalty_case"))
    assert isinstance(case, PenaltyCase)
    assert case.stage is PenaltyStage.ARCHIVED and case.reached() is PenaltyStage.EXECUTION
    assert set(stage_requirements()) == {
        "filing_time", "illegal_facts", "legal_basis", "procedure", "decision_number",
        "decision_date", "penalty_kinds", "penalty_result", "closing_mode", "closing_date",
    }  # fmt: skip


def test_stage_fields_are_optional_before_their_stage() -> None:
    lead = changed(
        sample("penalty_case"),
        {name: None for name in stage_requirements()} | {"stage": "lead_registered"},
    )
    lead = changed(lead, {k: None for k in ("fine_amount", "confiscated_amount", "fine_paid")})
    lead = changed(lead, {k: None for k in ("execution_mode", "execution_result", "report_time")})
    lead = changed(lead, {"legal_review": None, "legal_review_date": None})
    assert validate("penalty_case", lead)
    at_decision = changed(lead, {"stage": "decision"})
    missing = {v.field for v in violations("penalty_case", at_decision)}
    assert missing == {
        "filing_time", "illegal_facts", "legal_basis", "procedure", "decision_number",
        "decision_date", "penalty_kinds", "penalty_result",
    }  # fmt: skip


def test_simple_procedure_needs_no_filing_time() -> None:
    data = changed(sample("penalty_case"), {"procedure": "1", "filing_time": None})
    # On the spot an organisation is fined at most 3,000 元 (APL art. 51).
    data = changed(data, {"legal_review_date": None, "legal_review": None,
                          "fine_amount": "3000.00", "fine_paid": "3000.00"})  # fmt: skip
    assert validate("penalty_case", data)
    assert only("penalty_case", changed(data, {"procedure": "2"})).field == "filing_time"


def test_an_unfiled_lead_can_be_archived_without_decision_fields() -> None:
    keep = {"penalty_id", "catalogue_code", "name", "case_source", "supervised_object", "party"}
    keep |= {"region_code", "lead_time", "hearing_held", "criminal"}
    lead = {k: v for k, v in sample("penalty_case").items() if k in keep}
    archived = lead | {"stage": "archived", "closing_mode": "5", "closing_date": "2026-03-12"}
    assert validate("penalty_case", archived)
    revoked = only("penalty_case", changed(archived, {"closing_mode": "6"}))  # filed, then revoked
    assert (revoked.field, revoked.rule) == ("filing_time", "mandatory at stage")
    executed = {
        v.field for v in violations("penalty_case", changed(archived, {"closing_mode": "1"}))
    }
    assert {"filing_time", "decision_number", "execution_mode"} <= executed


# --- cross-field rules, each both ways ------------------------------------------------------------

# (dataset, changes that break the rule, field reported, rule name)
BROKEN: list[tuple[str, dict[str, Any], str, str]] = [
    ("supervision_item", {"valid_until": "2021-12-31"}, "valid_until", "validity period ordered"),
    ("supervision_item", {"parent_code": "33060100100001"}, "parent_code",
     "sub-item differs from main item"),
    ("enforcement_officer", {"certificate_valid_until": "2023-05-31"}, "certificate_valid_until",
     "certificate validity ordered"),
    ("enforcement_officer", {"region_code": "330104"}, "region_code", "region in force"),
    ("supervised_object", {"certificate_code": "91330106MA2CDN7P4Y"}, "certificate_code",
     "certificate code matches type"),
    ("supervised_object", {"certificate_type": "111", "certificate_code": "330106199003151236"},
     "certificate_type", "certificate type fits category"),
    ("supervised_object", {"region_code": "330103"}, "region_code", "region in force"),
    ("inspection", {"report_time": "2026-03-10T10:00:00+08:00"}, "report_time",
     "report after inspection"),
    ("inspection", {"inspectors": [{"name": "陈建国", "certificate_number": "浙A0601003182"}]},
     "inspectors", "at least two officers"),
    ("inspection", {"inspectors[1].certificate_number": "浙A0601003182"},
     "inspectors[1].certificate_number", "officers distinct"),
    ("inspection", {"region_code": "330104"}, "region_code", "region in force"),
    ("inspection", {"party.certificate_type": "002"}, "party.certificate_code",
     "certificate code matches type"),
    ("inspection", {"party.category": "2"}, "party.certificate_type",
     "certificate type fits category"),
    ("penalty_case", {"decision_number": None}, "decision_number", "mandatory at stage"),
    ("penalty_case", {"filing_time": "2026-04-29T09:00:00+08:00", "legal_review_date": None,
                      "legal_review": False},
     "decision_date", "decision not before filing"),
    ("penalty_case", {"filing_time": "2026-03-09T09:00:00+08:00"}, "filing_time",
     "filing not before lead"),
    ("penalty_case", {"closing_mode": "6", "closing_date": "2026-03-14", "report_time": None,
                      "decision_number": None, "decision_date": None, "penalty_kinds": None,
                      "penalty_result": None, "fine_amount": None, "confiscated_amount": None,
                      "fine_paid": None, "execution_mode": None, "execution_result": None,
                      "legal_review": None, "legal_review_date": None},
     "closing_date", "closing after filing"),
    ("penalty_case", {"party.certificate_code": "91330106MA2CDN7P4Y"}, "party.certificate_code",
     "certificate code matches type"),
    ("penalty_case", {"party.category": "2"}, "party.certificate_type",
     "certificate type fits category"),
    ("penalty_case", {"closing_date": "2026-04-27"}, "closing_date", "closing not before decision"),
    ("penalty_case", {"report_time": "2026-05-11T23:59:00+08:00"}, "report_time",
     "report after closing"),
    ("penalty_case", {"legal_review_date": "2026-03-14"}, "legal_review_date",
     "reviews not before filing"),
    ("penalty_case", {"legal_review_date": "2026-04-29"}, "legal_review_date",
     "reviews not after decision"),
    ("penalty_case", {"collective_discussion": True}, "collective_discussion_date",
     "review dated when held"),
    ("penalty_case", {"fine_amount": None, "fine_paid": None}, "fine_amount",
     "fine amount matches penalty kinds"),
    ("penalty_case", {"penalty_kinds": ["01", "03"]}, "confiscated_amount",
     "confiscation amount matches penalty kinds"),
    ("penalty_case", {"fine_paid": "100000.01"}, "fine_paid", "paid fine within surcharge cap"),
    ("penalty_case", {"execution_result": None}, "execution_result",
     "execution recorded when executed"),
    ("penalty_case", {"closing_mode": "3", "execution_mode": None, "execution_result": None},
     "transfer_time", "transfer time when transferred"),
    ("penalty_case", {"region_code": "330104"}, "region_code", "region in force"),
    ("penalty_case", {"procedure": "1", "fine_amount": "3000.01", "fine_paid": None},
     "fine_amount", "simple procedure fine limit"),
    ("penalty_case", {"decision_deadline": "2026-03-14"}, "decision_deadline",
     "extension not before filing"),
    ("penalty_publication", {"publication_deadline": "2026-04-28"}, "publication_deadline",
     "publication deadline after decision date"),
    ("penalty_publication", {"valid_until": "2026-04-27"}, "valid_until",
     "validity not before decision"),
    ("penalty_publication", {"credit_code": None, "org_code": None}, "credit_code",
     "party identified by category"),
    ("penalty_publication", {"legal_representative_certificate_number": "330106199003151235"},
     "legal_representative_certificate_number", "certificate code matches type"),
    ("penalty_publication", {"party_category": "2", "party_certificate_type": "001",
                             "party_certificate_number": "91330106MA2CDN7P4X"},
     "party_certificate_type", "certificate type fits category"),
    ("penalty_publication", {"org_code": "MA2CDN7R0"}, "org_code",
     "credit code carries the organisation code"),
    ("penalty_publication", {"fine_wan_yuan": None}, "fine_wan_yuan",
     "fine amount matches penalty kinds"),
    ("penalty_publication", {"confiscated_wan_yuan": None}, "confiscated_wan_yuan",
     "confiscation amount matches penalty kinds"),
    ("penalty_publication", {"penalty_kinds": ["03", "04", "08"]}, "licence_affected",
     "licence named when suspended or revoked"),
    ("penalty_publication", {"region_code": "330104"}, "region_code", "region in force"),
    ("complaint", {"accepted_time": "2026-04-02T14:25:59+08:00"}, "accepted_time",
     "acceptance not before receipt"),
    ("complaint", {"closed_time": "2026-04-01T17:00:00+08:00"}, "closed_time",
     "closing not before receipt"),
    ("complaint", {"result": None}, "result", "result when closed"),
    ("complaint", {"accepted_time": None}, "accepted_time", "acceptance recorded"),
    ("complaint", {"anonymous": True}, "complainant_name", "anonymous has no name"),
    ("complaint", {"region_code": "330104"}, "region_code", "region in force"),
    ("risk_warning", {"deadline": "2026-05-06T09:00:00+08:00"}, "deadline",
     "deadline after issue"),
    ("risk_warning", {"region_code": "330103"}, "region_code", "region in force"),
    ("risk_feedback", {"step": "1"}, "step", "feedback step"),
    ("risk_feedback", {"measures": None}, "measures", "disposal reported"),
    ("risk_feedback", {"step": "7"}, "return_reason", "return reasoned"),
    ("collaboration_task", {"deadline": "2026-04-02T18:00:00+08:00"}, "deadline",
     "deadline after dispatch"),
    ("collaboration_task", {"accepted_time": "2026-04-03T08:59:59+08:00"}, "accepted_time",
     "acceptance not before dispatch"),
    ("collaboration_task", {"feedback_time": "2026-04-03T10:00:00+08:00"}, "feedback_time",
     "feedback not before acceptance"),
    ("collaboration_task", {"status": "3"}, "return_reason", "step recorded for status"),
    ("collaboration_task", {"region_codes[1]": "330104"}, "region_codes[1]", "region in force"),
    ("grassroots_event", {"latitude": None}, "latitude", "coordinates together"),
    ("grassroots_event", {"closed_time": "2026-06-18T22:00:00+08:00"}, "closed_time",
     "closing not before report"),
    ("grassroots_event", {"disposal_result": None}, "disposal_result", "result when closed"),
    ("grassroots_event", {"region_code": "330104"}, "region_code", "region in force"),
    ("supervision_notice", {"dispatched_time": "2026-04-17T18:00:00+08:00"}, "due_time",
     "due after dispatch"),
    ("supervision_notice", {"sent_time": "2026-04-17T18:00:01+08:00"}, "sent_time",
     "escalation after due"),
    ("supervision_notice", {"notice_type": "2"}, "sent_time", "escalation after due"),
    ("supervision_notice", {"region_code": "330104"}, "region_code", "region in force"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "changes", "path", "rule"), BROKEN, ids=[f"{c[0]}:{c[3]}" for c in BROKEN]
)
def test_breaking_a_rule_names_field_rule_and_value(
    name: str, changes: dict[str, Any], path: str, rule: str
) -> None:
    violation = only(name, changed(sample(name), changes))
    assert (violation.dataset, violation.field, violation.rule) == (name, path, rule)
    assert violation.field_zh and violation.message
    assert f"rule '{rule}'" in str(violation)


def _rules_of(model: type[BaseModel]) -> set[str]:
    names = {rule.name for rule in model.rules()}  # type: ignore[attr-defined]
    for meta in fields_meta(model):
        sub = model_in(model.model_fields[meta.en].annotation)
        if sub is not None:
            names |= _rules_of(sub)
    return names


@pytest.mark.parametrize("name", NAMES)
def test_every_rule_has_a_breaking_case(name: str) -> None:
    covered = {rule for dataset_name, _, _, rule in BROKEN if dataset_name == name}
    assert _rules_of(dataset(name).model) == covered


# The other way: values at the edge of each rule that keep it.
KEPT: list[tuple[str, dict[str, Any]]] = [
    ("penalty_case", {"decision_date": "2026-03-15", "legal_review_date": "2026-03-15",
                      "filing_time": "2026-03-15T09:00:00+08:00"}),
    ("penalty_case", {"closing_date": "2026-04-28"}),
    ("penalty_case", {"report_time": "2026-05-12T00:00:00+08:00"}),
    ("penalty_case", {"fine_paid": "100000.00"}),
    ("penalty_case", {"procedure": "1", "fine_amount": "3000.00", "fine_paid": None}),
    ("penalty_case", {"decision_deadline": "2026-03-15"}),
    ("penalty_case", {"closing_mode": "3", "execution_mode": None, "execution_result": None,
                      "transfer_time": "2026-04-30T10:00:00+08:00"}),
    ("penalty_case", {"collective_discussion": True, "collective_discussion_date": "2026-04-25"}),
    ("penalty_case", {"region_code": "330104", "lead_time": "2021-03-01T09:00:00+08:00",
                      "filing_time": "2021-03-02T09:00:00+08:00"}),
    ("inspection", {"report_time": "2026-03-10T10:00:01+08:00"}),
    ("inspection", {"party.category": "2", "party.certificate_type": "111",
                    "party.certificate_code": "330106199003151236"}),
    ("penalty_publication", {"publication_deadline": "2026-04-29", "valid_until": "2026-04-28"}),
    ("penalty_publication", {"party_category": "2", "credit_code": None, "org_code": None,
                             "party_certificate_type": "111",
                             "party_certificate_number": "330106199003151236"}),
    ("complaint", {"accepted_time": "2026-04-02T14:26:00+08:00"}),
    ("complaint", {"anonymous": True, "complainant_name": None}),
    ("collaboration_task", {"status": "3", "return_reason": "不属于本部门职责"}),
    ("risk_feedback", {"step": "2", "measures": None, "conclusion": None, "result": None}),
    ("grassroots_event", {"latitude": None, "longitude": None}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "changes"), KEPT, ids=[f"{c[0]}:{i}" for i, c in enumerate(KEPT)])
def test_values_at_the_edge_of_a_rule_keep_it(name: str, changes: dict[str, Any]) -> None:
    assert validate(name, changed(sample(name), changes))


def test_all_breaches_are_reported_together_and_read_one_per_line() -> None:
    data = changed(
        sample("penalty_case"),
        {"decision_date": "2026-03-01", "legal_review_date": None, "legal_review": None,
         "closing_date": "2026-03-02", "report_time": "2026-03-03T08:00:00+08:00"},
    )  # fmt: skip
    with pytest.raises(RecordInvalid) as caught:
        validate("penalty_case", data)
    text = str(caught.value)
    assert text.splitlines()[0] == "penalty_case: 2 violations of the standard"
    assert text.splitlines()[1] == (
        "penalty_case.decision_date (处罚决定日期): rule 'decision not before filing'; "
        "value 2026-03-01 is before filing_time 2026-03-15T09:00:00+08:00"
    )
    assert caught.value.rules() == ["decision not before filing", "closing after filing"]


def test_nested_violations_carry_english_and_chinese_paths() -> None:
    found = only("inspection", changed(sample("inspection"), {"inspectors[1].name": "x" * 51}))
    assert found.field == "inspectors[1].name"
    assert found.field_zh == "检查人员[1].检查人员姓名"
    assert found.rule == "max length 50"


def test_field_errors_name_the_rule() -> None:
    data = changed(sample("inspection"), {"party.certificate_code": "91330106MA2CDN7P4Y"})
    assert only("inspection", data).field_zh == "行政相对人.行政相对人证件号码"
    unknown = only("inspection", changed(sample("inspection"), {"colour": "red"}))
    assert (unknown.field, unknown.rule) == ("colour", "known field")
    empty = only("inspection", changed(sample("inspection"), {"reporter": ""}))
    assert empty.rule == "not empty"
    bad_code = only(
        "inspection", changed(sample("inspection"), {"catalogue_code": "3306010010001"})
    )
    assert bad_code.rule == "catalogue code format"
    credit = only("complaint", changed(sample("complaint"), {"respondent_credit_code": "9233011"}))
    assert credit.rule.startswith("GB 32100-2015")


def test_a_code_outside_its_dictionary_is_rejected_naming_the_dictionary() -> None:
    found = only("penalty_case", changed(sample("penalty_case"), {"penalty_kinds": ["01", "77"]}))
    assert (found.field, found.rule, found.value) == (
        "penalty_kinds[1]",
        "dictionary penalty_kind",
        "77",
    )
    assert "处罚种类 (penalty_kind)" in found.message


def test_dictionaries_are_well_formed_data() -> None:
    assert "penalty_kind" in dictionary_names()
    kinds = dictionary("penalty_kind")
    assert [e.zh for e in kinds][:3] == ["警告", "通报批评", "罚款"] and len(kinds) == 14
    assert kinds.code_for_label("吊销许可证件") == "08"
    assert dictionary("penalty_procedure").label("1") == "简易程序"
    for name in dictionary_names():
        assert dictionary(name).source


# --- stages --------------------------------------------------------------------------------------

S = PenaltyStage
LEGAL = {
    (S.LEAD_REGISTERED, S.INVESTIGATION), (S.LEAD_REGISTERED, S.DECISION),
    (S.LEAD_REGISTERED, S.ARCHIVED), (S.INVESTIGATION, S.NOTICE), (S.INVESTIGATION, S.ARCHIVED),
    (S.NOTICE, S.DECISION), (S.NOTICE, S.INVESTIGATION), (S.NOTICE, S.ARCHIVED),
    (S.DECISION, S.EXECUTION), (S.EXECUTION, S.ARCHIVED),
}  # fmt: skip
PAIRS = list(itertools.product(PenaltyStage, repeat=2))


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_stage_transitions(a: PenaltyStage, b: PenaltyStage) -> None:
    assert a.can_move_to(b) == ((a, b) in LEGAL)
    if a is b or (a, b) in LEGAL:
        check_transition(a, b)
        return
    with pytest.raises(IllegalStageTransition) as caught:
        check_transition(a.value, b.value)
    message = str(caught.value)
    assert f"{a.zh} ({a.value})" in message and f"{b.zh} ({b.value})" in message
    assert caught.value.current is a and caught.value.target is b


def test_every_transition_cites_the_law() -> None:
    assert {(t.source, t.target) for t in TRANSITIONS} == LEGAL
    assert all("art" in t.basis and t.action for t in TRANSITIONS)
    assert [s.zh for s in PenaltyStage] == [
        "案源登记",
        "调查取证",
        "处罚告知",
        "处罚决定",
        "处罚执行",
        "归档",
    ]


# --- field metadata -----------------------------------------------------------------------------


def test_field_meta_carries_chinese_name_codes_and_dictionary() -> None:
    meta = field_meta(PenaltyPublication, "org_code")
    assert (meta.zh, meta.codes, meta.legacy_codes) == (
        "组织机构代码",
        ("CF_XDR_ZZJG", "CF_XDR_ZDM"),
        ("CF_XDR_ZDM",),
    )
    kinds = field_meta(PenaltyPublication, "penalty_kinds")
    assert kinds.dictionary == "penalty_kind" and kinds.mandatory
    assert field_meta(PenaltyCase, "decision_date").required_from_stage == "decision"
    assert field_meta(PenaltyCase, "decision_date").mandatory is False
    assert field_meta(PenaltyCase, "name").max_length == 500
    assert field_for_code(PenaltyPublication, "CF_WSH") == "decision_number"
    assert field_for_code(PenaltyPublication, "cf_cfmc") == "penalty_name"
    assert field_for_code(PenaltyPublication, "CF_JG") == "penalty_content"
    with pytest.raises(KeyError):
        field_meta(PenaltyCase, "colour")


# --- types ----------------------------------------------------------------------------------------


def test_wan_yuan_conversion_is_exact() -> None:
    assert wan_yuan_to_yuan(Decimal("0.2")) == Decimal("2000.00")
    assert str(wan_yuan_to_yuan(Decimal("0.008600"))) == "86.00"
    assert str(yuan_to_wan_yuan(Decimal("86.00"))) == "0.008600"
    assert str(yuan_to_wan_yuan(Decimal("123456789.01"))) == "12345.678901"
    with pytest.raises(AmountNotExact, match="分"):
        wan_yuan_to_yuan(Decimal("0.0000001"))
    with pytest.raises(AmountNotExact):
        yuan_to_wan_yuan(Decimal("0.001"))


@given(st.integers(min_value=0, max_value=10**15))
def test_wan_yuan_round_trip_never_loses_a_fen(fen: int) -> None:
    yuan = Decimal(fen).scaleb(-2)
    assert wan_yuan_to_yuan(yuan_to_wan_yuan(yuan)) == yuan


def test_yuan_accepts_string_or_number_and_serialises_as_an_exact_string() -> None:
    for given_amount, expected in (("50000", "50000.00"), (50000, "50000.00"), (0.1, "0.10")):
        case = validate(
            "penalty_case",
            changed(sample("penalty_case"), {"fine_amount": given_amount, "fine_paid": None}),
        )
        assert json.loads(case.model_dump_json())["fine_amount"] == expected
    for bad in ("1.001", -1, True, "1e400"):
        found = violations("penalty_case", changed(sample("penalty_case"), {"fine_amount": bad}))
        assert found[0].field == "fine_amount" and found[0].rule == "amount"


def test_naive_time_is_taken_as_shanghai_and_aware_time_converted() -> None:
    naive = changed(sample("inspection"), {"inspection_time": "2026-03-10 10:00:00"})
    record = validate("inspection", naive)
    assert record.inspection_time.utcoffset() == timedelta(hours=8)  # type: ignore[attr-defined]
    assert json.loads(record.model_dump_json())["inspection_time"] == "2026-03-10T10:00:00+08:00"
    utc = changed(sample("inspection"), {"inspection_time": "2026-03-10T02:00:00Z"})
    dumped = json.loads(validate("inspection", utc).model_dump_json())
    assert dumped["inspection_time"] == "2026-03-10T10:00:00+08:00"


def test_codes_arrive_full_width_and_with_spaces() -> None:
    full_width = " ９１３３０１０６ＭＡ２ＣＤＮ７Ｐ４ｘ "
    record = validate(
        "complaint", changed(sample("complaint"), {"respondent_credit_code": full_width})
    )
    assert record.respondent_credit_code == "91330106MA2CDN7P4X"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("113301060025641254", "inspection list code length"),
        ("113301060025641255133060100100001", "inspection list code organ"),
        ("113301060025641254633060100100001", "inspection list code kind digit"),
        ("11330106002564125413306010010000A", "inspection list code sequence"),
        ("1133010600256412541" + "0" * 32, "inspection list code length"),
    ],
)
def test_inspection_list_code_structure(code: str, rule: str) -> None:
    found = only("inspection", changed(sample("inspection"), {"inspection_list_code": code}))
    assert (found.field, found.rule) == ("inspection_list_code", rule)
    shortest = "1133010600256412541"
    assert validate("inspection", changed(sample("inspection"), {"inspection_list_code": shortest}))


def test_errors_pickle_and_serialise_for_answers_and_quarantine() -> None:
    data = changed(sample("penalty_case"), {"fine_paid": "100000.01"})
    with pytest.raises(RecordInvalid) as caught:
        validate("penalty_case", data)
    again = pickle.loads(pickle.dumps(caught.value))
    assert again.violations == caught.value.violations and str(again) == str(caught.value)
    assert caught.value.violations[0].to_dict() == {
        "dataset": "penalty_case",
        "field": "fine_paid",
        "field_zh": "结案实缴罚款金额",
        "rule": "paid fine within surcharge cap",
        "value": "100000.01",
        "message": "value 100000.01 exceeds twice fine_amount 50000.00 (fine plus the capped "
        "surcharge)",
    }
    with pytest.raises(IllegalStageTransition) as moved:
        check_transition("archived", "decision")
    assert str(pickle.loads(pickle.dumps(moved.value))) == str(moved.value)
    assert "none (final stage)" in str(moved.value)
