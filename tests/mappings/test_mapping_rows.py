"""The `rows` function: parallel text columns (names beside certificate numbers) become objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mappings.errors import ValueProblem
from mappings.functions import FUNCTIONS, BuildContext, Step
from mappings.system import load_system


def rows(options: Any = None) -> Step:
    function = FUNCTIONS["rows"]
    return function.build(function.parse_options(options), BuildContext({}, "test"))


def test_columns_split_and_zip_into_rows() -> None:
    step = rows(",")
    value = {"name": "张三, 李四", "certificate_number": "33010001,33010002"}
    assert step(value) == [
        {"name": "张三", "certificate_number": "33010001"},
        {"name": "李四", "certificate_number": "33010002"},
    ]


def test_an_empty_item_keeps_its_place_and_an_absent_column_its_key_out() -> None:
    assert rows(",")({"name": "张三,,李四", "code": "1,2,3"}) == [
        {"name": "张三", "code": "1"},
        {"code": "2"},
        {"name": "李四", "code": "3"},
    ]
    assert rows(",")({"name": "张三", "code": None}) == [{"name": "张三"}]
    assert rows(",")({"name": None, "code": None}) is None


def test_list_columns_need_no_separator() -> None:
    assert rows()({"a": ["1", "2"], "b": ["x", "y"]}) == [
        {"a": "1", "b": "x"},
        {"a": "2", "b": "y"},
    ]
    assert rows()({"a": "1", "b": "x"}) == [{"a": "1", "b": "x"}]


def test_columns_of_different_lengths_are_refused_not_truncated() -> None:
    with pytest.raises(ValueProblem) as caught:
        rows(",")({"name": "张三,李四", "certificate_number": "33010001"})
    assert caught.value.rule == "rows"
    assert "name 2, certificate_number 1" in caught.value.message


def test_a_value_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueProblem, match="expected an object of columns, got str"):
        rows(",")("张三,李四")


SYSTEM = """\
id: rows-test
name: Rows test
name_zh: 测试
source: 330000/test
"""


def _inspection_mapping(fmt: str) -> str:
    if fmt == "json":
        inspectors = (
            "{fields: {name: {path: JCRY}, certificate_number: {path: ZFZH}}, pipe: [{rows: ','}]}"
        )
        head = 'format: json\nrecords: "@"\n'
    else:
        inspectors = "{fields: {name: JCRY, certificate_number: ZFZH}, pipe: [{rows: ','}]}"
        head = "format: xml\nrecords: /JC\n"
    fields = {
        "inspection_id": "BH",
        "catalogue_code": "SXBM",
        "inspection_list_code": "QDBM",
        "name": "MC",
        "supervised_object": "DX",
        "party": "{name: DX, category: {const: '1'}, certificate_type: {const: '001'}, "
        "certificate_code: DM}",
        "region_code": "QH",
        "inspection_form": "{const: '1'}",
        "inspection_category": "{const: '4'}",
        "inspection_result": "{const: '01'}",
        "inspection_time": "{path: SJ, pipe: [{datetime: 'yyyy-MM-dd HH:mm:ss'}]}",
        "inspectors": inspectors,
    }
    lines = "".join(f"  {name}: {rule}\n" for name, rule in fields.items())
    return f"direction: inbound\nmessage_type: check\n{head}dataset: inspection\nfields:\n{lines}"


RECORD = {
    "BH": "JC-1",
    "SXBM": "33000000601002",
    "QDBM": "11330100002547034U1001",
    "MC": "日常检查",
    "DX": "杭州恒远化工有限公司",
    "DM": "91330106MA2H3K7Q4Q",
    "QH": "330106",
    "SJ": "2026-03-02 10:00:00",
    "JCRY": "张三,李四",
    "ZFZH": "33010001,33010002",
}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_mapping_reads_officers_from_parallel_columns(tmp_path: Path, fmt: str) -> None:
    folder = tmp_path / "rows-test"
    folder.mkdir()
    (folder / "system.yaml").write_text(SYSTEM, encoding="utf-8")
    (folder / "check.yaml").write_text(_inspection_mapping(fmt), encoding="utf-8")
    system = load_system(folder)

    def payload(record: dict[str, str]) -> bytes:
        if fmt == "json":
            return json.dumps(record, ensure_ascii=False).encode()
        body = "".join(f"<{key}>{value}</{key}>" for key, value in record.items())
        return f"<JC>{body}</JC>".encode()

    good = system.translate("check", payload(RECORD))
    assert good.errors == []
    assert good.envelopes[0].data["inspectors"] == [
        {"name": "张三", "certificate_number": "33010001"},
        {"name": "李四", "certificate_number": "33010002"},
    ]
    uneven = system.translate("check", payload({**RECORD, "ZFZH": "33010001"}))
    assert [(e.field, e.rule) for e in uneven.errors] == [("inspectors", "rows")]
    gap = system.translate("check", payload({**RECORD, "ZFZH": "33010001,"}))
    assert [(e.field, e.rule) for e in gap.errors] == [
        ("inspectors[1].certificate_number", "mandatory")
    ]
