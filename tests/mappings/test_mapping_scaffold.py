"""`jghub mappings scaffold`: a loadable system folder from samples, with right suggestions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from mappings.scaffold import evaluate, read_sample, suggest, value_shape
from mappings.system import SYSTEMS_ROOT, load_all, load_system

runner = CliRunner(env={"COLUMNS": "200"})

# Measured on the shipped systems when the suggester was written: top-1 0.858, top-3 0.930 of
# 1,062 mapped source fields. The floors leave a margin for new systems with odd names.
TOP1_FLOOR = 0.78
TOP3_FLOOR = 0.87


def _inbound_cases() -> list[tuple[str, str, str, str | None, list[Path]]]:
    """Each shipped inbound message type's valid samples, grouped by the transport's charset
    their expected files give (None: the payload says its own)."""
    cases = []
    for system in load_all().values():
        for message_type, translation in system.inbound.items():
            folder = system.folder / "samples" / message_type
            by_charset: dict[str | None, list[Path]] = {}
            for path in sorted(folder.glob("valid*")):
                expected = system.folder / "expected" / message_type / f"{path.stem}.json"
                given = json.loads(expected.read_text(encoding="utf-8")).get("input") or {}
                by_charset.setdefault(given.get("charset"), []).append(path)
            for charset, paths in by_charset.items():
                dataset = translation.mapping.dataset
                cases.append((system.id, message_type, dataset, charset, paths))
    return cases


def test_suggestions_name_the_field_the_shipped_mappings_fill() -> None:
    result = evaluate()
    assert result.fields > 900
    assert result.share(1) >= TOP1_FLOOR, result.misses[:20]
    assert result.share(3) >= TOP3_FLOOR, result.misses[:20]
    # 39 of 40 when written (national's catalogue_update reads as a penalty case).
    assert result.message_types >= 40
    assert result.datasets_guessed >= result.message_types - 3


@pytest.mark.parametrize(
    ("system", "message_type", "dataset", "charset", "samples"), _inbound_cases()
)
def test_scaffold_of_every_shipped_message_type_loads_and_is_tested(
    tmp_path: Path,
    system: str,
    message_type: str,
    dataset: str,
    charset: str | None,
    samples: list[Path],
) -> None:
    args = ["mappings", "scaffold", "new-system", *map(str, samples), "--root", str(tmp_path)]
    if charset is not None:
        args += ["--charset", charset]
    result = runner.invoke(app, [*args, "--type", message_type, "--dataset", dataset])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "new-system"
    loaded = load_system(folder)
    assert loaded.inbound[message_type].mapping.dataset == dataset
    assert sorted(p.name for p in (folder / "samples" / message_type).iterdir()) == sorted(
        p.name for p in samples
    )
    # Before editing: the test runs and says the expected results are still to be written.
    tested = runner.invoke(app, ["mappings", "test", "new-system", "--root", str(tmp_path)])
    assert tested.exit_code == 1
    assert f"FAILED new-system {message_type}" in tested.output
    if charset is None:
        assert "run with --update" in tested.output
    else:  # the expected file holds the transport's charset and nothing else yet
        assert f'"charset": "{charset}"' in tested.output
    updated = runner.invoke(
        app, ["mappings", "test", "new-system", "--root", str(tmp_path), "--update"]
    )
    assert updated.exit_code == 0, updated.output
    again = runner.invoke(app, ["mappings", "test", "new-system", "--root", str(tmp_path)])
    assert again.exit_code == 0, again.output


def test_dataset_is_guessed_and_reported(tmp_path: Path) -> None:
    sample = SYSTEMS_ROOT / "eco-env-penalty" / "samples" / "case_batch" / "valid-batch.xml"
    result = runner.invoke(
        app, ["mappings", "scaffold", "eco", str(sample), "--root", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "dataset penalty_case (guessed" in result.output
    assert "records /cf:AJPC/cf:AJ (3 in the samples)" in result.output
    text = (tmp_path / "eco" / "case_batch.yaml").read_text(encoding="utf-8")
    # The type comes from the sample's folder; a confident suggestion is written ready to use.
    assert "message_type: case_batch" in text
    assert "# decision_date: {path: cf:CFJDRQ, pipe: [trim, {date: yyyyMMdd}]}" in text
    assert "# fine_amount: {path: cf:FKJE, pipe: [trim, decimal]}" in text
    assert "penalty_id: {path: cf:AJBH, pipe: [trim]}  # active" in text


def test_refuses_an_existing_folder_unless_forced(tmp_path: Path) -> None:
    sample = SYSTEMS_ROOT / "agri-penalty" / "samples" / "case_records" / "valid-records.json"
    (tmp_path / "agri").mkdir()
    refused = runner.invoke(
        app, ["mappings", "scaffold", "agri", str(sample), "--root", str(tmp_path)]
    )
    assert refused.exit_code == 2
    assert "--force" in refused.output
    forced = runner.invoke(
        app, ["mappings", "scaffold", "agri", str(sample), "--root", str(tmp_path), "--force"]
    )
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "agri" / "case_records.yaml").is_file()


def test_bad_sample_and_unknown_dataset_are_refused_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text("<Cases><Case><No>1</No></Case>", encoding="utf-8")
    result = runner.invoke(app, ["mappings", "scaffold", "x", str(broken), "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "not well-formed XML" in result.output
    good = SYSTEMS_ROOT / "agri-penalty" / "samples" / "case_records" / "valid-records.json"
    unknown = runner.invoke(
        app, ["mappings", "scaffold", "y", str(good), "--dataset", "nope", "--root", str(tmp_path)]
    )
    assert unknown.exit_code == 2
    assert "no dataset 'nope'" in unknown.output
    bad_type = runner.invoke(
        app,
        ["mappings", "scaffold", "z", str(good), "--type", "Case Records", "--root", str(tmp_path)],
    )
    assert bad_type.exit_code == 2
    assert "a message type is lower-case" in bad_type.output
    assert not (tmp_path / "z").exists()


GB18030_XML = """<?xml version="1.0" encoding="GB18030"?>
<案件列表>
  <案件><处罚行为编号>A-1</处罚行为编号><当事人名称>李䶮</当事人名称>
    <!-- 处罚决定日期 --><JDRQ>2026-03-01</JDRQ>
    <TYSHXYDM>11330100002547034U</TYSHXYDM><QH>330106</QH><FKJE>1,200.50</FKJE></案件>
  <案件><处罚行为编号>A-2</处罚行为编号><当事人名称>王五</当事人名称>
    <!-- 处罚决定日期 --><JDRQ>2026-03-02</JDRQ>
    <TYSHXYDM>11330100002547034U</TYSHXYDM><QH>330102</QH><FKJE>300</FKJE></案件>
</案件列表>
"""


def test_gb18030_xml_with_chinese_names_and_comments() -> None:
    sample = read_sample(GB18030_XML.encode("gb18030"))
    assert sample.format == "xml"
    assert sample.records == "/案件列表/案件"
    leaves = {leaf.path: leaf for leaf in sample.leaves}
    assert leaves["当事人名称"].values == ["李䶮", "王五"]

    def best(path: str) -> str:
        return suggest(leaves[path], "penalty_case", 1)[0].target.path

    assert best("处罚行为编号") == "penalty_id"
    assert best("JDRQ") == "decision_date"  # from the comment beside it
    assert best("QH") == "region_code"  # from the 6-digit region codes
    assert best("FKJE") == "fine_amount"


def test_json_records_and_absolute_paths() -> None:
    payload = {
        "batchNo": "2026030100001",
        "data": {
            "cases": [
                {"caseNo": "C1", "partyInfo": {"certNo": "11330100002547034U"}, "tags": ["a"]},
                {"caseNo": "C2", "partyInfo": {"certNo": "330102197903214525"}, "tags": []},
            ]
        },
    }
    sample = read_sample(json.dumps(payload).encode())
    assert sample.records == "data.cases"
    paths = {leaf.path for leaf in sample.leaves}
    assert {"caseNo", "partyInfo.certNo", "tags", "$.batchNo"} <= paths


@pytest.mark.parametrize(
    ("values", "kind", "pattern"),
    [
        (["20260105", "20251110"], "date", "yyyyMMdd"),
        (["2026-03-02 09:15:00"], "datetime", "yyyy-MM-dd HH:mm:ss"),
        (["1774504800"], "datetime", "epoch_seconds"),
        (["1774504800123"], "datetime", "epoch_millis"),
        (["11330100002547034U"], "credit_code", None),
        (["11330100002547034X"], "text", None),  # a wrong check digit is no credit code
        (["330102197903214525"], "id_number", None),
        (["330106", "330212"], "region", None),
        (["1,200.50", "25"], "amount", None),
        (["是", "否"], "bool", None),
    ],
)
def test_value_shapes(values: list[str], kind: str, pattern: str | None) -> None:
    shape = value_shape(values)
    assert shape.kind == kind
    assert shape.pattern == pattern
