"""The national system: what the hub renders in the national field set translates back unchanged.

The national 数据回流 channel returns records in exactly the field set the hub sends, so a
record rendered by `inspection_record` or `penalty_record` and read back through
`inspection_return` or `penalty_return` must give the same canonical record and envelope. The
records are generated within what the national format carries: times in whole seconds.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from mappings.system import SYSTEMS_ROOT, SystemMappings, load_system
from standard.checks import credit_code_check_char, id_number_check_char, org_code_check_char
from standard.datasets import DATASETS, Inspection, PenaltyCase
from standard.datasets.base import StandardRecord
from standard.datasets.penalty_case import CLOSING_REACHED, PenaltyStage, stage_requirements
from standard.dictionaries import dictionary
from standard.envelope import Envelope
from standard.fields import field_meta, model_in
from standard.types import SHANGHAI

NATIONAL = SYSTEMS_ROOT / "national"

CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
RARE = st.sampled_from(list("䶮𠮷𡒄𤭢"))  # CJK Ext. A and B: in names, beyond GBK
OTHER = st.sampled_from(list("ABCxyz0189（）〔〕《》，。、-_ &<>'\",;:Ａ１\\/"))
CHARS = st.one_of(CJK, CJK, CJK, RARE, OTHER)
NAME_CHARS = st.one_of(CJK, CJK, RARE)  # officers' names: no separator in them

# Regions in force from 2022 on (after Hangzhou's districts were redrawn in 2021).
REGIONS = ["330102", "330105", "330106", "330110", "330203", "330212", "330302", "330402"]
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
ORG_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # org codes inside credit codes avoid I O S V Z
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def national() -> SystemMappings:
    return load_system(NATIONAL)


# --------------------------------------------------------------------------- building blocks


def texts(max_size: int, chars: st.SearchStrategy[str] = CHARS) -> st.SearchStrategy[str]:
    return st.text(chars, min_size=1, max_size=max_size).map(str.strip).filter(bool)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def identifiers(size: int) -> st.SearchStrategy[str]:
    return st.text("0123456789ABCDEFGHJK-", min_size=1, max_size=size)


def codes_of(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from(list(dictionary(name).codes()))


@st.composite
def credit_codes(draw: st.DrawFn, prefix: str = "91") -> str:
    region = draw(st.sampled_from(REGIONS))
    org8 = draw(st.text(ORG_ALPHABET, min_size=8, max_size=8))
    org9 = org8 + org_code_check_char(org8)
    assume(all(char in CREDIT_ALPHABET for char in org9))
    first17 = prefix + region + org9
    return first17 + credit_code_check_char(first17)


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    born = draw(st.dates(min_value=date(1950, 1, 1), max_value=date(2004, 12, 31)))
    first17 = (
        draw(st.sampled_from(REGIONS))
        + born.strftime("%Y%m%d")
        + draw(st.text("0123456789", min_size=3, max_size=3))
    )
    return first17 + id_number_check_char(first17)


@st.composite
def parties(draw: st.DrawFn) -> dict[str, Any]:
    category = draw(st.sampled_from(["1", "2", "3"]))
    if category == "1":
        certificate_type, code = "001", draw(credit_codes("91"))
    elif category == "3" and draw(st.booleans()):
        certificate_type, code = "001", draw(credit_codes("92"))
    else:
        certificate_type, code = "111", draw(id_numbers())
    return {
        "name": draw(texts(200)),
        "category": category,
        "certificate_type": certificate_type,
        "certificate_code": code,
        "legal_representative": draw(optional(texts(50))),
        "registered_address": draw(optional(texts(400))),
        "business_address": draw(optional(texts(400))),
    }


def moments(start: date, end: date) -> st.SearchStrategy[datetime]:
    """Shanghai times in whole seconds, the national format's precision."""
    return st.datetimes(
        min_value=datetime.combine(start, time()), max_value=datetime.combine(end, time())
    ).map(lambda moment: moment.replace(microsecond=0, tzinfo=SHANGHAI))


def later(moment: datetime, draw: st.DrawFn, most_days: int, least_seconds: int = 0) -> datetime:
    return moment + timedelta(seconds=draw(st.integers(least_seconds, most_days * 86400)))


def amounts() -> st.SearchStrategy[Decimal]:
    return st.integers(min_value=1, max_value=10**11).map(lambda fen: Decimal(fen).scaleb(-2))


def validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError:
        assume(False)
        raise


# --------------------------------------------------------------------------- inspections


@st.composite
def inspections(draw: st.DrawFn) -> Inspection:
    inspected = draw(moments(date(2022, 1, 1), date(2030, 12, 31)))
    organ = draw(credit_codes("11"))
    officers = draw(
        st.lists(
            st.tuples(texts(20, NAME_CHARS), st.text("0123456789ZJ", min_size=6, max_size=20)),
            min_size=2,
            max_size=4,
            unique_by=lambda officer: officer[1],
        )
    )
    data: dict[str, Any] = {
        "inspection_id": draw(identifiers(50)),
        "catalogue_code": draw(st.text("0123456789", min_size=14, max_size=14)),
        "inspection_list_code": organ
        + draw(st.sampled_from("12345"))
        + draw(st.text("0123456789", max_size=31)),
        "name": draw(texts(500)),
        "plan_id": draw(optional(identifiers(50))),
        "implementing_organ": draw(optional(texts(100))),
        "implementing_organ_code": draw(optional(st.just(organ))),
        "entrusted_department": draw(optional(texts(100))),
        "entrusted_department_code": draw(optional(identifiers(20))),
        "supervised_object_type": draw(optional(codes_of("supervised_object_type"))),
        "supervised_object": draw(texts(200)),
        "party": draw(parties()),
        "region_code": draw(st.sampled_from(REGIONS)),
        "inspection_form": draw(codes_of("inspection_form")),
        "inspection_category": draw(codes_of("inspection_category")),
        "inspection_method": draw(optional(codes_of("inspection_method"))),
        "inspection_result": draw(codes_of("inspection_result")),
        "problems_found": draw(optional(texts(2000))),
        "inspection_time": inspected,
        "inspectors": [{"name": name, "certificate_number": number} for name, number in officers],
        "report_time": draw(optional(st.just(later(inspected, draw, 30, least_seconds=1)))),
        "reporter": draw(optional(texts(50))),
    }
    return validated(Inspection, data)


# --------------------------------------------------------------------------- penalty cases


@st.composite
def penalty_cases(draw: st.DrawFn) -> PenaltyCase:
    stage = draw(st.sampled_from(list(PenaltyStage)))
    closing_mode = draw(codes_of("closing_mode")) if stage is PenaltyStage.ARCHIVED else None
    reached = CLOSING_REACHED[closing_mode] if closing_mode else stage
    procedure = draw(st.sampled_from(["1", "2"]))
    lead = draw(moments(date(2022, 1, 1), date(2030, 12, 31)))
    filing = later(lead, draw, 30)
    decision = later(filing, draw, 90).date()
    closing = decision + timedelta(days=draw(st.integers(0, 60)))
    kinds = sorted(draw(st.sets(codes_of("penalty_kind"), min_size=1, max_size=3)))
    decided = reached.order >= PenaltyStage.DECISION.order
    fine = draw(amounts()) if "03" in kinds else None
    reviewed = draw(st.one_of(st.none(), st.booleans()))
    discussed = draw(st.one_of(st.none(), st.booleans()))

    def needed(name: str) -> bool:
        return stage_requirements()[name].order <= reached.order

    data: dict[str, Any] = {
        "penalty_id": draw(identifiers(50)),
        "catalogue_code": draw(st.text("0123456789", min_size=14, max_size=14)),
        "name": draw(texts(500)),
        "stage": stage.value,
        "case_source": draw(codes_of("case_source")),
        "implementing_organ": draw(optional(texts(100))),
        "implementing_organ_code": draw(optional(identifiers(20))),
        "entrusted_department": draw(optional(texts(100))),
        "entrusted_department_code": draw(optional(identifiers(20))),
        "supervised_object_type": draw(optional(codes_of("supervised_object_type"))),
        "supervised_object": draw(texts(200)),
        "inspection_id": draw(optional(identifiers(50))),
        "party": draw(parties()),
        "region_code": draw(st.sampled_from(REGIONS)),
        "lead_time": lead,
        "illegal_facts": draw(texts(4000)) if needed("illegal_facts") else None,
        "legal_basis": draw(texts(2000)) if needed("legal_basis") else None,
        "procedure": procedure if needed("procedure") or draw(st.booleans()) else None,
        "hearing_held": draw(st.booleans()),
        "criminal": draw(st.booleans()),
        "major_case": draw(st.one_of(st.none(), st.booleans())),
        "filing_time": filing if needed("filing_time") or draw(st.booleans()) else None,
        "legal_review": reviewed,
        "legal_review_date": decision if reviewed else None,
        "legal_review_opinion": draw(optional(texts(100))),
        "collective_discussion": discussed,
        "collective_discussion_date": decision if discussed else None,
        "collective_discussion_conclusion": draw(optional(texts(1000))),
        "decision_number": draw(texts(100)) if decided else None,
        "decision_date": decision if decided else None,
        "penalty_kinds": kinds if decided else None,
        "penalty_result": draw(texts(1000)) if decided else None,
        "fine_amount": fine if decided else None,
        "confiscated_amount": draw(amounts()) if decided and {"04", "05"} & set(kinds) else None,
        "report_time": datetime.combine(closing, time(), SHANGHAI)
        + timedelta(days=1, seconds=draw(st.integers(0, 86399))),
        "reporter": draw(optional(texts(50))),
    }
    if not decided:
        # Reviews follow filing and precede a decision; without a decision, date them on filing.
        for name in ("legal_review_date", "collective_discussion_date"):
            if data[name] is not None:
                data[name] = filing.date()
    if closing_mode is not None:
        executed = closing_mode == "1"
        data |= {
            "closing_mode": closing_mode,
            "closing_date": closing if decided else filing.date() + timedelta(days=1),
            "execution_mode": draw(codes_of("execution_mode")) if executed else None,
            "execution_result": draw(codes_of("execution_result")) if executed else None,
            "fine_paid": fine if executed and fine is not None else None,
            "transfer_time": later(lead, draw, 30) if closing_mode == "3" else None,
        }
        if not decided:
            data["report_time"] = datetime.combine(
                data["closing_date"] + timedelta(days=1), time(), SHANGHAI
            )
    return validated(PenaltyCase, data)


# --------------------------------------------------------------------------- the property


def _page(rendered: bytes) -> bytes:
    """A 数据回流 page holding one record, as the national pull API answers."""
    page = {"code": "0", "total": 1, "data": [json.loads(rendered)]}
    return json.dumps(page, ensure_ascii=False).encode("utf-8")


def _round_trip(
    national: SystemMappings,
    record: StandardRecord,
    outbound: str,
    inbound: str,
    operation: str,
    seconds: int,
) -> None:
    changed = datetime(2026, 1, 1, tzinfo=SHANGHAI) + timedelta(seconds=seconds)
    envelope = Envelope.wrap(
        record, source="330000/scjgj", operation=operation, time=changed,
        id="330000-SCJG-20260101-000001", batchno="2026010100001",
    )  # fmt: skip
    result = national.translate(inbound, _page(national.render(outbound, envelope)))
    assert result.errors == []
    [back] = result.envelopes
    assert type(record).model_validate(back.data) == record
    assert (back.operation, back.time, back.id, back.batchno, back.subject, back.type) == (
        operation,
        changed,
        envelope.id,
        envelope.batchno,
        envelope.subject,
        envelope.type,
    )
    assert back.idempotencykey == envelope.idempotencykey


@SETTINGS
@given(
    record=inspections(),
    operation=st.sampled_from(["insert", "update"]),
    seconds=st.integers(0, 10**8),
)
def test_a_rendered_inspection_translates_back(
    national: SystemMappings, record: Inspection, operation: str, seconds: int
) -> None:
    _round_trip(national, record, "inspection_record", "inspection_return", operation, seconds)


@SETTINGS
@given(
    record=penalty_cases(),
    operation=st.sampled_from(["insert", "update"]),
    seconds=st.integers(0, 10**8),
)
def test_a_rendered_penalty_case_translates_back(
    national: SystemMappings, record: PenaltyCase, operation: str, seconds: int
) -> None:
    _round_trip(national, record, "penalty_record", "penalty_return", operation, seconds)


@pytest.mark.parametrize(
    ("dataset", "outbound", "inbound", "key"),
    [
        ("inspection", "inspection_record", "inspection_return", "NB-JC-2026-000298"),
        ("penalty_case", "penalty_record", "penalty_return", "HZXH-SJ-2025-000981"),
    ],
)
def test_a_rendered_delete_translates_back_to_a_delete_of_the_key(
    national: SystemMappings, dataset: str, outbound: str, inbound: str, key: str
) -> None:
    changed = datetime(2026, 3, 5, 9, 40, 2, tzinfo=SHANGHAI)
    envelope = Envelope.wrap_delete(
        dataset, key, source="330000/scjgj", time=changed, id="D-1", batchno="2026030500001"
    )
    rendered = json.loads(national.render(outbound, envelope))
    assert rendered["cd_operation"] == "d" and len(rendered) == 6
    [back] = national.translate(inbound, _page(json.dumps(rendered).encode())).envelopes
    assert (back.operation, back.subject, back.time, back.id, back.data) == (
        "delete",
        key,
        changed,
        "D-1",
        {DATASETS[dataset].key_field: key},
    )


# --------------------------------------------------------------------------- the field set


def _leaf_rules(template: dict[str, Any]) -> dict[str, str]:
    """Output key → the record path it renders (`data.party.name` → `party.name`)."""
    found: dict[str, str] = {}
    for key, rule in template.items():
        path = rule if isinstance(rule, str) else rule.get("path")
        if isinstance(path, str) and path.startswith("data."):
            found[key] = path.removeprefix("data.").replace("[]", "")
    return found


def _codes(model: type[BaseModel], dotted: str) -> tuple[str, ...]:
    *parents, name = dotted.split(".")
    for parent in parents:
        nested = model_in(model.model_fields[parent].annotation)
        assert nested is not None, dotted
        model = nested
    return field_meta(model, name).codes


@pytest.mark.parametrize(
    ("mapping", "dataset"),
    [("inspection_record", "inspection"), ("penalty_record", "penalty_case")],
)
def test_records_use_the_national_code_of_every_field_that_has_one(
    mapping: str, dataset: str
) -> None:
    template = yaml.safe_load((NATIONAL / f"{mapping}.yaml").read_text(encoding="utf-8"))[
        "template"
    ]
    model = DATASETS[dataset].model
    rendered = _leaf_rules(template)
    assert len(rendered) >= 20
    for key, path in rendered.items():
        codes = _codes(model, path)
        if codes:
            assert key == codes[0], f"{path} has national code {codes[0]}, rendered as {key}"
    # Every field of the dataset travels, so that 数据回流 can give the record back whole.
    covered = {path.split(".")[0] for path in rendered.values()}
    assert covered == set(model.model_fields)
    assert {"cd_id", "cd_time", "cd_source", "cd_batch", "cd_operation"} <= set(template)
