"""A broken mapping fails when it is loaded, naming the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from mapping_support import edit, line_of, load_error

from mappings.system import SYSTEMS_ROOT, load_all

PENALTY_MAPPING = "eco-env-penalty/case_batch.yaml"
EVENT_MAPPING = "grassroots-platform/event_report.yaml"


def test_unknown_function_names_file_line_and_field(system_copy: Path) -> None:
    path = edit(
        system_copy, PENALTY_MAPPING, "pipe: [trim, halfwidth]}", "pipe: [trim, halfwidht]}"
    )
    error = load_error(system_copy, "eco-env-penalty")
    assert error.file == path
    assert error.line == line_of(path, "halfwidht")
    assert error.column is not None
    assert error.field == "catalogue_code"
    assert "unknown function 'halfwidht'" in str(error)
    assert "did you mean 'halfwidth'" in str(error)
    assert f"case_batch.yaml:{error.line}:" in str(error)


def test_bad_xpath_names_file_line_and_field(system_copy: Path) -> None:
    path = edit(system_copy, PENALTY_MAPPING, "{path: cf:AJMC,", "{path: 'cf:AJMC[',")
    error = load_error(system_copy, "eco-env-penalty")
    assert (error.file, error.line, error.field) == (path, line_of(path, "cf:AJMC["), "name")
    assert "XPath syntax error" in error.reason


def test_undefined_namespace_prefix_is_caught_at_load(system_copy: Path) -> None:
    path = edit(system_copy, PENALTY_MAPPING, "{path: cf:AJMC,", "{path: zz:AJMC,")
    error = load_error(system_copy, "eco-env-penalty")
    assert (error.line, error.field) == (line_of(path, "zz:AJMC"), "name")
    assert "Undefined namespace prefix" in error.reason


def test_bad_jmespath_names_the_position(system_copy: Path) -> None:
    path = edit(system_copy, EVENT_MAPPING, "path: eventTitle,", "path: 'eventTitle[',")
    error = load_error(system_copy, "grassroots-platform")
    assert (error.file, error.line, error.field) == (path, line_of(path, "eventTitle["), "title")
    assert "JMESPath syntax error" in error.reason and "position" in error.reason


def test_unknown_target_field_names_file_line_and_field(system_copy: Path) -> None:
    path = edit(system_copy, PENALTY_MAPPING, "  inspection_id:", "  inspection_no:")
    error = load_error(system_copy, "eco-env-penalty")
    assert (error.file, error.line, error.field) == (
        path,
        line_of(path, "inspection_no"),
        "inspection_no",
    )
    assert "has no field 'inspection_no'" in error.reason
    assert "did you mean 'inspection_id'" in error.reason


def test_unknown_nested_target_field(system_copy: Path) -> None:
    path = edit(system_copy, PENALTY_MAPPING, "    legal_representative:", "    representative:")
    error = load_error(system_copy, "eco-env-penalty")
    assert (error.line, error.field) == (line_of(path, "representative:"), "representative")
    assert "Party has no field 'representative'" in error.reason


def test_missing_lookup_table_is_named(system_copy: Path) -> None:
    path = edit(system_copy, PENALTY_MAPPING, "{lookup: case_stage}", "{lookup: case_stages}")
    error = load_error(system_copy, "eco-env-penalty")
    assert (error.line, error.field) == (line_of(path, "case_stages"), "stage")
    assert "no code table 'case_stages'" in error.reason


def test_bad_function_options_are_named(system_copy: Path) -> None:
    path = edit(system_copy, PENALTY_MAPPING, "{date: yyyyMMdd}]}", "{date: yyyyMMxx}]}")
    error = load_error(system_copy, "eco-env-penalty")
    assert error.line == line_of(path, "yyyyMMxx")
    assert "function 'date'" in error.reason and "'xx'" in error.reason


def test_unknown_option_is_named(system_copy: Path) -> None:
    path = edit(
        system_copy, PENALTY_MAPPING, '{decimal: {grouping: ","}}', '{decimal: {groupin: ","}}'
    )
    error = load_error(system_copy, "eco-env-penalty")
    assert error.line == line_of(path, "groupin")
    assert "option 'groupin'" in error.reason


def test_two_sources_in_one_rule(system_copy: Path) -> None:
    path = edit(system_copy, PENALTY_MAPPING, "{path: cf:AJMC,", "{path: cf:AJMC, const: x,")
    error = load_error(system_copy, "eco-env-penalty")
    assert error.line == line_of(path, "const: x")
    assert "exactly one source" in error.reason


@pytest.mark.parametrize("relative", [PENALTY_MAPPING, "eco-env-penalty/case_return.yaml"])
def test_unknown_dataset(system_copy: Path, relative: str) -> None:
    path = edit(system_copy, relative, "dataset: penalty_case", "dataset: penalty_cases")
    error = load_error(system_copy, "eco-env-penalty")
    assert error.file == path
    assert error.line == line_of(path, "dataset:")
    assert "no dataset 'penalty_cases'" in error.reason


def test_mandatory_field_not_computed(system_copy: Path) -> None:
    path = edit(
        system_copy,
        PENALTY_MAPPING,
        "  case_source: {path: cf:AJLY",
        "  # case_source: {path: cf:AJLY",
    )
    error = load_error(system_copy, "eco-env-penalty")
    assert error.file == path
    assert "mandatory field of PenaltyCase not computed: case_source" in error.reason


def test_yaml_syntax_error_names_line(system_copy: Path) -> None:
    path = edit(system_copy, PENALTY_MAPPING, "records: /cf:AJPC/cf:AJ", "records: [/cf:AJPC/cf:AJ")
    error = load_error(system_copy, "eco-env-penalty")
    assert error.file == path
    assert error.line is not None and error.line >= line_of(path, "records:")
    assert "not valid YAML" in error.reason


def test_duplicate_key_names_both_lines(system_copy: Path) -> None:
    path = edit(
        system_copy,
        PENALTY_MAPPING,
        "  name: {path: cf:AJMC",
        "  name: {path: cf:X}\n  name: {path: cf:AJMC",
    )
    error = load_error(system_copy, "eco-env-penalty")
    first = line_of(path, "name: {path: cf:X}")
    assert error.line == first + 1
    assert f"first on line {first}" in error.reason


def test_unknown_top_level_key(system_copy: Path) -> None:
    path = edit(
        system_copy,
        PENALTY_MAPPING,
        "records: /cf:AJPC/cf:AJ",
        "records: /cf:AJPC/cf:AJ\nrecord: x",
    )
    error = load_error(system_copy, "eco-env-penalty")
    assert error.line == line_of(path, "record: x")
    assert "record" in error.reason and "Extra inputs are not permitted" in error.reason


def test_bad_table_row_names_line(system_copy: Path) -> None:
    path = system_copy / "eco-env-penalty/tables/case_stage.csv"
    path.write_text("source,standard\n01,lead_registered\n01,investigation\n", encoding="utf-8")
    error = load_error(system_copy, "eco-env-penalty")
    assert (error.file, error.line) == (path, 3)
    assert "listed twice (first on line 2)" in error.reason


def test_numbers_as_codes_in_yaml_tables_are_refused(system_copy: Path) -> None:
    path = system_copy / "eco-env-penalty/tables/party_category.yaml"
    path.write_text('entries:\n  FR: "1"\n  ZRR: 2\n', encoding="utf-8")
    error = load_error(system_copy, "eco-env-penalty")
    assert (error.file, error.line) == (path, 3)
    assert "quote codes" in error.reason


def test_system_id_must_match_folder(system_copy: Path) -> None:
    path = edit(system_copy, "eco-env-penalty/system.yaml", "id: eco-env-penalty", "id: eco-env")
    error = load_error(system_copy, "eco-env-penalty")
    assert (error.file, error.line) == (path, line_of(path, "id: eco-env"))


def test_bad_template_name_in_a_rendering(system_copy: Path) -> None:
    path = edit(system_copy, "eco-env-penalty/task_push.yaml", "rw:RWMC:", "xx:RWMC:")
    error = load_error(system_copy, "eco-env-penalty")
    assert (error.file, error.line) == (path, line_of(path, "xx:RWMC"))
    assert "prefix 'xx'" in error.reason


def test_load_all_loads_every_shipped_system() -> None:
    systems = load_all()
    folders = {path.name for path in SYSTEMS_ROOT.iterdir() if (path / "system.yaml").is_file()}
    assert set(systems) == folders
    assert {"eco-env-penalty", "grassroots-platform"} <= folders
    assert set(systems["eco-env-penalty"].inbound) == {
        "case_batch",
        "risk_feedback",
        "task_feedback",
    }
    assert set(systems["grassroots-platform"].outbound) == {"event_feedback", "event_sync"}


def test_a_table_giving_codes_outside_the_standard_dictionary(system_copy: Path) -> None:
    table = system_copy / "eco-env-penalty/tables/penalty_kind.csv"
    table.write_text(table.read_text(encoding="utf-8").replace("FK,03,", "FK,3,"), encoding="utf-8")
    error = load_error(system_copy, "eco-env-penalty")
    path = system_copy / PENALTY_MAPPING
    assert (error.file, error.line, error.field) == (
        path,
        line_of(path, "{lookup: penalty_kind}"),
        "penalty_kinds",
    )
    assert "maps 'FK' to '3'" in error.reason and "dictionary 'penalty_kind'" in error.reason
