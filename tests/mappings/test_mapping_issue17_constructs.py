"""The three constructs of issue #17: `amount` with its unit table, `ignore:` and `assume:`."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from mapping_support import edit, line_of, load_error

from mappings.coverage import ignore_problems, unread_fields
from mappings.errors import MappingError
from mappings.system import SYSTEMS_ROOT, load_system
from mappings.units import UnitNotExact, UnitUnknown, unit_table

CULTURE_CASES = "culture-penalty/case_data.yaml"
WARNINGS = "national/risk_warning.yaml"

# --------------------------------------------------------------------------- the unit table


@pytest.mark.parametrize(
    ("amount", "unit", "into", "expected"),
    [
        ("1.25", "万元", "元", "12500.00"),
        ("0.000001", "万", "元", "0.01"),
        ("2000", "元", "万元", "0.200000"),
        ("3.5", "千元", "元", "3500.00"),
        ("1.2345", "百万元", "元", "1234500.00"),
        ("0.5", "亿元", "万元", "5000.000000"),
        ("12345", "分", "元", "123.45"),
        ("7", "ＲＭＢ", "元", "7.00"),  # full-width spelling, any case
        ("7", " cny ", "元", "7.00"),
        ("123456789012345678901234567890.12", "元", "元", "123456789012345678901234567890.12"),
    ],
)
def test_the_unit_table_converts_exactly(amount: str, unit: str, into: str, expected: str) -> None:
    table = unit_table()
    converted = table.convert(Decimal(amount), table.unit(unit), into)
    assert format(converted, "f") == expected


def test_an_unknown_unit_is_named_with_the_known_ones() -> None:
    with pytest.raises(UnitUnknown) as caught:
        unit_table().unit("美元")
    assert "'美元' is not in the unit table" in str(caught.value)
    assert "万元" in str(caught.value) and "千元" in str(caught.value)


def test_an_amount_finer_than_a_fen_is_refused_not_rounded() -> None:
    table = unit_table()
    with pytest.raises(UnitNotExact, match=r"0\.0000001 万元 is 0\.001 元, not a whole number"):
        table.convert(Decimal("0.0000001"), table.unit("万元"), "元")
    with pytest.raises(UnitNotExact, match="not a whole number of 分"):
        table.convert(Decimal("0.005"), table.unit("元"), "万元")


def test_a_broken_unit_table_fails_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "units.yaml"
    path.write_text(
        "units:\n  元: {yuan: '1', spellings: [元]}\n  万元: {yuan: '10000', spellings: [元]}\n",
        encoding="utf-8",
    )
    with pytest.raises(MappingError) as caught:
        unit_table(path)
    assert "spelling '元' names both 元 and 万元" in str(caught.value)
    assert caught.value.line == 3


# --------------------------------------------------------------------------- amount in a mapping


def _culture_payload(fine: str) -> bytes:
    path = SYSTEMS_ROOT / "culture-penalty/samples/case_data/valid-cases.xml"
    text = path.read_bytes().decode("gb18030")
    assert 'fine="5000.00"' in text
    return text.replace('fine="5000.00"', fine, 1).encode("gb18030")


def test_amount_reads_its_unit_from_an_attribute(system_copy: Path) -> None:
    edit(
        system_copy,
        CULTURE_CASES,
        'fine_amount: {path: "@fine", pipe: [trim, decimal]}',
        'fine_amount: {path: "@fine", pipe: [trim, {amount: {unit_path: "@fineUnit"}}]}',
    )
    system = load_system(system_copy / "culture-penalty")
    # Only the first case carries a unit: the others are refused for having none.
    result = system.translate("case_data", _culture_payload('fine="0.5" fineUnit="万元"'))
    assert 0 not in result.rejected_records()
    assert result.envelopes[0].data["fine_amount"] == "5000.00"
    assert {e.rule for e in result.errors if e.field == "fine_amount"} == {"amount unit"}

    result = system.translate("case_data", _culture_payload('fine="0.5" fineUnit="美元"'))
    (error,) = [e for e in result.errors if e.record_index == 0]
    assert (error.field, error.rule, error.record_index) == ("fine_amount", "amount unit", 0)
    assert error.source_path == "@fineUnit"
    assert error.location == "(/CaseData/Case)[1]"
    assert error.line == 3  # the Case element carrying the attribute
    assert "'美元' is not in the unit table" in error.message
    assert "(read from @fineUnit)" in error.message

    missing = system.translate("case_data", _culture_payload('fine="0.5"'))
    (error,) = [e for e in missing.errors if e.record_index == 0]
    assert error.rule == "amount unit" and "no unit at @fineUnit" in error.message


def test_amount_with_a_unit_path_falls_back_to_its_unit(system_copy: Path) -> None:
    edit(
        system_copy,
        CULTURE_CASES,
        'fine_amount: {path: "@fine", pipe: [trim, decimal]}',
        'fine_amount: {path: "@fine", pipe: [trim, {amount: {unit_path: "@fineUnit", unit: 元}}]}',
    )
    system = load_system(system_copy / "culture-penalty")
    result = system.translate("case_data", _culture_payload('fine="5000"'))
    assert not result.errors and result.envelopes[0].data["fine_amount"] == "5000.00"


def test_a_shipped_system_reads_its_wan_yuan_with_amount() -> None:
    system = load_system(SYSTEMS_ROOT / "natres-penalty")
    payload = (SYSTEMS_ROOT / "natres-penalty/samples/case_report/valid-report.xml").read_bytes()
    result = system.translate("case_report", payload)
    assert not result.errors
    fines = [e.data.get("fine_amount") for e in result.envelopes if e.data.get("fine_amount")]
    assert fines and all(Decimal(fine) >= 100 for fine in fines)  # 万元 became 元


def test_an_unknown_constant_unit_fails_at_load(system_copy: Path) -> None:
    path = edit(
        system_copy,
        CULTURE_CASES,
        'fine_amount: {path: "@fine", pipe: [trim, decimal]}',
        'fine_amount: {path: "@fine", pipe: [trim, {amount: 美金}]}',
    )
    error = load_error(system_copy, "culture-penalty")
    assert (error.file, error.line, error.field) == (path, line_of(path, "美金"), "fine_amount")
    assert "'美金' is not in the unit table" in error.reason


def test_amount_into_the_wrong_unit_for_the_field_fails_at_load(system_copy: Path) -> None:
    path = edit(
        system_copy,
        "housing-penalty/publication_batch.yaml",
        "fine_wan_yuan: {path: CF_NR_FK, pipe: [trim, decimal]}",
        "fine_wan_yuan: {path: CF_NR_FK, pipe: [trim, {amount: 万元}]}",
    )
    error = load_error(system_copy, "housing-penalty")
    assert (error.line, error.field) == (line_of(path, "{amount: 万元}"), "fine_wan_yuan")
    assert "gives 元, but 'fine_wan_yuan' holds 万元; write `into: 万元`" in error.reason


def test_a_unit_path_that_does_not_compile_fails_at_load(system_copy: Path) -> None:
    path = edit(
        system_copy,
        CULTURE_CASES,
        'fine_amount: {path: "@fine", pipe: [trim, decimal]}',
        'fine_amount: {path: "@fine", pipe: [trim, {amount: {unit_path: "@fine["}}]}',
    )
    error = load_error(system_copy, "culture-penalty")
    assert (error.file, error.line) == (path, line_of(path, '"@fine["'))
    assert "function 'amount'" in error.reason and "XPath" in error.reason


# --------------------------------------------------------------------------- assume


def test_an_assumed_field_is_filled_and_named_in_the_lineage() -> None:
    system = load_system(SYSTEMS_ROOT / "national")
    payload = (SYSTEMS_ROOT / "national/samples/risk_warning/valid-warnings.json").read_bytes()
    result = system.translate("risk_warning", payload)
    assert result.envelopes and not result.errors
    for envelope in result.envelopes:
        assert envelope.data["status"] == "1"
        assumed = envelope.assumed()
        assert list(assumed) == ["status"]
        assert "carries no 预警状态" in assumed["status"]
        assert json.loads(envelope.lineageassumed or "") == assumed
        # The lineage travels in both encodings.
        properties, _ = envelope.to_amqp()
        assert properties["headers"]["cloudEvents_lineageassumed"] == envelope.lineageassumed


def test_a_field_both_mapped_and_assumed_is_refused_at_load(system_copy: Path) -> None:
    path = edit(
        system_copy,
        WARNINGS,
        "  issued_time: {path: warning_time,",
        "  status: {path: warning_status}\n  issued_time: {path: warning_time,",
    )
    error = load_error(system_copy, "national")
    assert error.file == path
    assumed_line = [
        number
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if line.strip() == "status:"
    ]
    assert error.line == assumed_line[0]
    assert error.field == "status"
    mapped_line = line_of(path, "status: {path: warning_status}")
    assert f"both mapped from the source (fields, line {mapped_line}) and assumed" in error.reason
    assert f"risk_warning.yaml:{error.line}:" in str(error)


@pytest.mark.parametrize(
    ("replacement", "message"),
    [
        (
            '    value: "1"\n    why: ""',
            "assume.status.why: String should have at least 1 character",
        ),
        ('    value: "1"\n    why: "  "', "`why` must say why the value is assumed"),
        ('    value: "1"', "why"),
        (
            '    value: "8"\n    why: a guess',
            "code '8' is not in dictionary 预警状态 (warning_status)",
        ),
        ('    valu: "1"\n    why: a guess', "valu"),
    ],
)
def test_a_bad_assumption_fails_at_load(system_copy: Path, replacement: str, message: str) -> None:
    path = system_copy / WARNINGS
    text = path.read_text(encoding="utf-8")
    start = text.index('    value: "1"')
    path.write_text(text[:start] + replacement + "\n", encoding="utf-8")
    error = load_error(system_copy, "national")
    assert error.file == path and error.line is not None
    assert message in str(error)


def test_the_key_is_never_assumed(system_copy: Path) -> None:
    path = edit(
        system_copy,
        WARNINGS,
        "assume:\n",
        "assume:\n  warning_id: {value: W1, why: a guess}\n",
    )
    error = load_error(system_copy, "national")
    assert error.line == line_of(path, "warning_id: {value: W1")
    assert "a key is never assumed" in error.reason


# --------------------------------------------------------------------------- ignore


def _culture_samples() -> list[bytes]:
    folder = SYSTEMS_ROOT / "culture-penalty/samples/case_data"
    return [path.read_bytes() for path in sorted(folder.glob("*.xml"))]


def test_ignored_fields_are_not_reported_as_unread(system_copy: Path) -> None:
    edit(
        system_copy,
        CULTURE_CASES,
        "fields:\n",
        'ignore:\n  - {path: /CaseData/@sender, reason: "the sender, known from the channel"}\n'
        "fields:\n",
    )
    translation = load_system(system_copy / "culture-penalty").inbound_mapping("case_data")
    assert unread_fields(translation, _culture_samples()) == ["/CaseData/@version"]
    assert ignore_problems(translation, _culture_samples()) == []


def test_an_ignored_path_that_is_read_or_absent_is_reported(system_copy: Path) -> None:
    edit(
        system_copy,
        CULTURE_CASES,
        "fields:\n",
        "ignore:\n  - /CaseData/@version\n  - /CaseData/Case/@fine\n  - /CaseData/@checksum\n"
        "fields:\n",
    )
    translation = load_system(system_copy / "culture-penalty").inbound_mapping("case_data")
    assert ignore_problems(translation, _culture_samples()) == [
        "ignored /CaseData/Case/@fine: a rule reads it (/CaseData/Case/@fine)",
        "ignored /CaseData/@checksum: no sample contains it",
    ]
    assert unread_fields(translation, _culture_samples()) == ["/CaseData/@sender"]


def test_ignore_in_json_covers_everything_below_it() -> None:
    translation = load_system(SYSTEMS_ROOT / "health-penalty").inbound_mapping("case_push")
    folder = SYSTEMS_ROOT / "health-penalty/samples/case_push"
    payloads = [path.read_bytes() for path in sorted(folder.glob("*.json"))]
    assert unread_fields(translation, payloads) == []
    assert ignore_problems(translation, payloads) == []


def test_an_ignored_path_that_does_not_compile_fails_at_load(system_copy: Path) -> None:
    path = edit(system_copy, CULTURE_CASES, "fields:\n", "ignore: ['/CaseData/@']\nfields:\n")
    error = load_error(system_copy, "culture-penalty")
    assert (error.file, error.line) == (path, line_of(path, "ignore:"))
    assert "XPath" in error.reason


def test_amount_reads_its_unit_beside_the_amount_in_json(system_copy: Path) -> None:
    edit(
        system_copy,
        "agri-penalty/case_records.yaml",
        "fine_amount: {path: decisionInfo.fineAmount, pipe: [trim, decimal]}",
        "fine_amount: {path: decisionInfo.fineAmount, "
        "pipe: [trim, {amount: {unit_path: decisionInfo.fineUnit, unit: 元}}]}",
    )
    system = load_system(system_copy / "agri-penalty")
    path = SYSTEMS_ROOT / "agri-penalty/samples/case_records/valid-records.json"
    body = json.loads(path.read_bytes())
    body["records"][0]["decisionInfo"].update(fineAmount="0.8", fineUnit="万元")
    body["records"][1]["decisionInfo"]["fineUnit"] = "千元"
    body["records"][2]["decisionInfo"]["fineUnit"] = "USD"
    result = system.translate("case_records", json.dumps(body, ensure_ascii=False).encode())
    assert [e.data["fine_amount"] for e in result.envelopes[:2]] == ["8000.00", "62400000.00"]
    (error,) = result.errors
    assert (error.record_index, error.field, error.rule) == (2, "fine_amount", "amount unit")
    assert error.source_path == "decisionInfo.fineUnit" and error.location == "records[2]"
    assert "'USD' is not in the unit table" in error.message
