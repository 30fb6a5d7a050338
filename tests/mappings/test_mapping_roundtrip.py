"""Property: a record rendered by a reverse mapping translates back to the same canonical record.

The records are generated within what each wire format can carry: the department's format has
whole days for lead and filing times and seconds for the report time; the platform's has
milliseconds.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from record_strategies import amounts, validated

from mappings.system import SystemMappings
from standard.datasets import GrassrootsEvent, PenaltyCase
from standard.envelope import Envelope
from standard.types import SHANGHAI

CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
RARE = st.characters(min_codepoint=0x3400, max_codepoint=0x4DB5)  # CJK Ext. A: GB18030 only
OTHER = st.sampled_from(list("ABCxyz0189（）〔〕《》，。、-_ &<>'\"Ａ１"))
CHARS = st.one_of(CJK, CJK, RARE, OTHER)

ORGANISATIONS = ["91330106MA2H3K7Q4Q", "91330102725861430W", "9133018314702615XY"]
PEOPLE = ["330106198506123013", "330102197903214525", "330108199211080033"]
REGIONS = ["330106", "330102", "330212", "330402"]
KINDS = ["01", "02", "03", "04", "05", "06", "08", "10", "11", "99"]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def texts(max_size: int) -> st.SearchStrategy[str]:
    return st.text(CHARS, min_size=1, max_size=max_size).map(str.strip).filter(bool)


def codes(size: int) -> st.SearchStrategy[str]:
    return st.text("0123456789ABCDEFGH-", min_size=1, max_size=size)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), SHANGHAI)


@st.composite
def penalty_cases(draw: st.DrawFn) -> PenaltyCase:
    lead = draw(st.dates(min_value=date(2016, 1, 1), max_value=date(2030, 12, 31)))
    filing = lead + timedelta(days=draw(st.integers(0, 30)))
    decision = filing + timedelta(days=draw(st.integers(0, 90)))
    closing = decision + timedelta(days=draw(st.integers(0, 60)))
    archived = draw(st.booleans())
    kinds = sorted(draw(st.sets(st.sampled_from(KINDS), min_size=1, max_size=3)))
    person = draw(st.booleans())
    fine = draw(amounts()) if "03" in kinds else None
    reviewed = draw(st.one_of(st.none(), st.booleans()))
    data: dict[str, Any] = {
        "penalty_id": draw(codes(50)),
        "catalogue_code": draw(st.text("0123456789", min_size=14, max_size=14)),
        "name": draw(texts(500)),
        "stage": "archived" if archived else draw(st.sampled_from(["decision", "execution"])),
        "case_source": draw(st.sampled_from(["1", "2", "3", "4", "5", "6", "7", "8", "9"])),
        "implementing_organ": draw(st.one_of(st.none(), texts(100))),
        "supervised_object": draw(texts(200)),
        "inspection_id": draw(st.one_of(st.none(), codes(50))),
        "party": {
            "name": draw(texts(200)),
            "category": "2" if person else "1",
            "certificate_type": "111" if person else "001",
            "certificate_code": draw(st.sampled_from(PEOPLE if person else ORGANISATIONS)),
            "legal_representative": draw(st.one_of(st.none(), texts(50))),
            "registered_address": draw(st.one_of(st.none(), texts(400))),
        },
        "region_code": draw(st.sampled_from(REGIONS)),
        "lead_time": midnight(lead),
        "illegal_facts": draw(texts(4000)),
        "legal_basis": draw(texts(2000)),
        "procedure": "2",
        "hearing_held": draw(st.booleans()),
        "criminal": draw(st.booleans()),
        "major_case": draw(st.one_of(st.none(), st.booleans())),
        "filing_time": midnight(filing),
        "legal_review": reviewed,
        "legal_review_date": decision if reviewed else None,
        "legal_review_opinion": draw(st.one_of(st.none(), texts(100))),
        "decision_number": draw(texts(100)),
        "decision_date": decision,
        "penalty_kinds": kinds,
        "penalty_result": draw(texts(1000)),
        "fine_amount": fine,
        "confiscated_amount": draw(amounts()) if {"04", "05"} & set(kinds) else None,
        "report_time": datetime.combine(closing, time(), SHANGHAI)
        + timedelta(days=1, seconds=draw(st.integers(0, 86399))),
        "reporter": draw(st.one_of(st.none(), texts(50))),
    }
    if archived:
        data |= {
            "closing_mode": "1",
            "execution_mode": draw(st.sampled_from(["1", "2", "3", "4", "9"])),
            "execution_result": draw(st.sampled_from(["1", "2", "3", "4"])),
            "fine_paid": fine,
            "closing_date": closing,
        }
    return validated(PenaltyCase, data)


@SETTINGS
@given(record=penalty_cases(), seconds=st.integers(0, 10**8))
def test_a_rendered_penalty_case_translates_back(
    penalty_system: SystemMappings, record: PenaltyCase, seconds: int
) -> None:
    changed = datetime(2026, 1, 1, tzinfo=SHANGHAI) + timedelta(seconds=seconds)
    envelope = Envelope.wrap(
        record, source="330000/hub", operation="update", time=changed,
        id="HUB-1", batchno="2026030200001",
    )  # fmt: skip
    payload = penalty_system.render("case_return", envelope)
    result = penalty_system.translate("case_batch", payload)
    assert result.errors == []
    [back] = result.envelopes
    assert PenaltyCase.model_validate(back.data) == record
    assert (back.operation, back.time, back.id, back.batchno) == (
        "update",
        changed,
        "HUB-1",
        "2026030200001",
    )
    assert back.subject == record.penalty_id


@st.composite
def grassroots_events(draw: st.DrawFn) -> GrassrootsEvent:
    moment = st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2035, 1, 1))
    reported = draw(moment).replace(tzinfo=SHANGHAI)
    reported = reported.replace(microsecond=reported.microsecond // 1000 * 1000)
    status = draw(st.sampled_from(["1", "2", "3", "4", "5", "6", "7"]))
    closed = status in {"5", "6"}
    positioned = draw(st.booleans())
    data: dict[str, Any] = {
        "event_id": draw(codes(64)),
        "title": draw(texts(200)),
        "description": draw(texts(4000)),
        "scenario": draw(st.sampled_from(["01", "02", "03", "04", "09", "13", "99"])),
        "source": draw(st.sampled_from(["1", "2", "3", "4", "5", "9"])),
        "reporter_name": draw(st.one_of(st.none(), texts(50))),
        "region_code": draw(st.sampled_from(REGIONS)),
        "township": draw(st.one_of(st.none(), texts(100))),
        "grid_code": draw(st.one_of(st.none(), codes(50))),
        "address": draw(st.one_of(st.none(), texts(400))),
        "longitude": Decimal(draw(st.integers(73_000_000, 136_000_000))).scaleb(-6)
        if positioned
        else None,
        "latitude": Decimal(draw(st.integers(3_000_000, 54_000_000))).scaleb(-6)
        if positioned
        else None,
        "reported_time": reported,
        "status": status,
        "handling_department": draw(
            st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {
                        "name": texts(200),
                        "credit_code": st.sampled_from([None, "113301060025413537"]),
                    }
                ),
            )
        ),
        "disposal_result": draw(texts(4000)) if closed else None,
        "closed_time": reported + timedelta(milliseconds=draw(st.integers(0, 10**10)))
        if closed
        else None,
        "task_id": draw(st.one_of(st.none(), codes(64))),
    }
    return validated(GrassrootsEvent, data)


@SETTINGS
@given(record=grassroots_events(), millis=st.integers(0, 10**11))
def test_a_rendered_grassroots_event_translates_back(
    grassroots_system: SystemMappings, record: GrassrootsEvent, millis: int
) -> None:
    changed = datetime(2026, 1, 1, tzinfo=SHANGHAI) + timedelta(milliseconds=millis)
    envelope = Envelope.wrap(
        record, source="330000/hub", operation="insert", time=changed, batchno="2026030200017"
    )
    payload = grassroots_system.render("event_sync", envelope)
    result = grassroots_system.translate("event_report", payload)
    assert result.errors == []
    [back] = result.envelopes
    assert GrassrootsEvent.model_validate(back.data) == record
    assert (back.operation, back.time, back.batchno) == ("insert", changed, "2026030200017")
