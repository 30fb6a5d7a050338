"""Mutations of a valid sample give the named error, and never sink the rest of the batch."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from lxml import etree
from mapping_support import GRASSROOTS, PENALTY, sample

from mappings.errors import EncodingMismatch, ForbiddenMarkup, TranslationError
from mappings.payloads import PayloadLimits, parse_xml
from mappings.system import SystemMappings
from standard.checks import credit_code_check_char

CF = "{http://sthjt.zj.gov.cn/schema/xzcf/2.1}"
DSR = "{http://sthjt.zj.gov.cn/schema/dsr/1.0}"


def _mutated(change: Callable[[etree._Element], None]) -> bytes:
    """The valid batch with `change` applied to its first case, re-encoded as declared."""
    root = parse_xml(sample(PENALTY, "case_batch", "valid-batch.xml"), PayloadLimits())
    change(root.find(f"{CF}AJ"))
    return etree.tostring(root, xml_declaration=True, encoding="GB18030")


def _only_record_errors(errors: list[TranslationError], index: int) -> list[TranslationError]:
    assert {error.record_index for error in errors} == {index}
    return errors


@pytest.mark.parametrize(
    ("element", "field"),
    [
        (f"{CF}AJMC", "name"),
        (f"{CF}SXBM", "catalogue_code"),
        (f"{CF}XZQH", "region_code"),
        (f"{CF}AYDJRQ", "lead_time"),
        (f"{DSR}DSR/{DSR}ZJHM", "party.certificate_code"),
        (f"{CF}CFJDSWH", "decision_number"),  # mandatory from the decision stage on
    ],
)
def test_a_dropped_mandatory_field_is_named(
    penalty_system: SystemMappings, element: str, field: str
) -> None:
    def drop(case: etree._Element) -> None:
        target = case.find(element)
        target.getparent().remove(target)

    result = penalty_system.translate("case_batch", _mutated(drop))
    errors = _only_record_errors(result.errors, 0)
    assert [(error.field, error.rule) for error in errors] == [(field, _rule_for(field))]
    error = errors[0]
    assert error.system == PENALTY and error.message_type == "case_batch"
    assert error.location == "(/cf:AJPC/cf:AJ)[1]"
    assert error.line == 3  # the case element: the field's element is gone
    assert error.field_zh
    assert len(result.envelopes) == 2  # the other records are not affected


def _rule_for(field: str) -> str:
    return "mandatory at stage" if field == "decision_number" else "mandatory"


def test_a_corrupted_credit_code_is_named_with_its_source_line(
    penalty_system: SystemMappings,
) -> None:
    good = "91330106MA2H3K7Q4Q"
    wrong = next(
        c for c in "0123456789ABCDEFGHJKLMNPQRTUWXY" if c != credit_code_check_char(good[:17])
    )

    def corrupt(case: etree._Element) -> None:
        case.find(f"{DSR}DSR/{DSR}ZJHM").text = good[:17] + wrong

    payload = _mutated(corrupt)
    result = penalty_system.translate("case_batch", payload)
    [error] = _only_record_errors(result.errors, 0)
    assert error.field == "party.certificate_code"
    assert error.field_zh == "行政相对人.行政相对人证件号码"
    assert error.rule == "certificate code matches type"
    assert error.value == good[:17] + wrong
    assert error.source_path == "dsr:DSR/dsr:ZJHM"
    assert error.line == _line_containing(payload, good[:17] + wrong)
    assert "check character" in error.message or "GB 32100" in error.message
    assert "party.certificate_code" in str(error) and f"line {error.line}" in str(error)


def _line_containing(payload: bytes, text: str) -> int:
    for number, line in enumerate(payload.decode("gb18030").splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(text)


def test_full_width_codes_are_normalised_exactly(penalty_system: SystemMappings) -> None:
    result = penalty_system.translate(
        "case_batch", sample(PENALTY, "case_batch", "valid-batch.xml")
    )
    assert result.envelopes[0].data["party"]["certificate_code"] == "91330106MA2H3K7Q4Q"


def test_gbk_bytes_declared_utf8_are_an_encoding_error(penalty_system: SystemMappings) -> None:
    text = sample(PENALTY, "case_batch", "valid-batch.xml").decode("gb18030")
    payload = (
        text.replace('encoding="GB2312"', 'encoding="UTF-8"').replace("刘䶮", "刘艳").encode("gbk")
    )
    with pytest.raises(EncodingMismatch) as caught:
        penalty_system.translate("case_batch", payload)
    assert caught.value.offset == payload.index("杭".encode("gbk"))
    assert caught.value.system == PENALTY


def test_an_entity_bomb_in_a_valid_batch_is_forbidden(penalty_system: SystemMappings) -> None:
    text = sample(PENALTY, "case_batch", "valid-batch.xml").decode("gb18030")
    declaration, rest = text.split("\n", 1)
    bomb = '<!DOCTYPE cf:AJPC [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    payload = f"{declaration}\n{bomb}\n{rest}".replace("王海东未批先建案", "&b;").encode("gb18030")
    with pytest.raises(ForbiddenMarkup) as caught:
        penalty_system.translate("case_batch", payload)
    assert caught.value.line == 2


def test_bad_records_do_not_sink_a_json_batch(grassroots_system: SystemMappings) -> None:
    data = json.loads(sample(GRASSROOTS, "event_report", "valid-events.json"))
    events = data["data"]["events"]
    broken = dict(events[0], eventId="SJ330106202603019999", area={"countyCode": "33010"})
    data["data"]["events"] = [broken, *events, broken]
    result = grassroots_system.translate("event_report", json.dumps(data).encode())
    assert [e.subject for e in result.envelopes] == [e["eventId"] for e in events]
    assert result.rejected_records() == [0, 4]
    first = [error for error in result.errors if error.record_index == 0]
    assert [(e.field, e.location, e.source_path) for e in first] == [
        ("region_code", "data.events[0]", "area.countyCode")
    ]
    assert "6 digits" in first[0].message


def test_an_epoch_value_of_the_wrong_kind_is_named(grassroots_system: SystemMappings) -> None:
    data = json.loads(sample(GRASSROOTS, "event_report", "valid-events.json"))
    data["data"]["events"][0]["reportTime"] = 1772334000.5
    result = grassroots_system.translate("event_report", json.dumps(data).encode())
    [error] = result.errors
    assert (error.field, error.rule) == ("reported_time", "datetime 'epoch_millis'")


def test_envelope_problems_name_the_envelope_rule(grassroots_system: SystemMappings) -> None:
    data = json.loads(sample(GRASSROOTS, "event_report", "valid-events.json"))
    data["batchNo"] = "2026139900001"  # month 13
    result = grassroots_system.translate("event_report", json.dumps(data).encode())
    assert result.envelopes == []
    assert {(e.field, e.source_path) for e in result.errors} == {("envelope.batch_no", "$.batchNo")}
    assert len(result.errors) == 3
