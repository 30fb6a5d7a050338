"""Market, transport, housing: what is peculiar to each one's payloads.

Rare characters under a gb2312 declaration, a charset only in the HTTP header, a task pushed in
the shape the department answers in. The contract every system keeps is checked in
test_system_contract.py.
"""

from __future__ import annotations

import pytest
from lxml import etree
from mapping_support import sample, system

from mappings.errors import EncodingMismatch
from mappings.system import SYSTEMS_ROOT
from standard.envelope import Envelope

DEPARTMENTS = ["market-penalty", "transport-penalty", "housing-penalty"]


def test_market_names_beyond_gb2312_survive_the_gb2312_declaration() -> None:
    payload = sample("market-penalty", "case_upload", "valid-batch.xml")
    assert payload.startswith(b'<?xml version="1.0" encoding="gb2312"?>')
    assert "𠮷".encode("gb18030") in payload  # four GB18030 bytes, not GB2312 at all
    result = system("market-penalty").translate("case_upload", payload)
    first, second = result.envelopes[0].data, result.envelopes[1].data
    assert first["party"]["name"] == "杭州西溪𠮷祥食品有限公司"
    assert first["party"]["legal_representative"] == "许䶮"
    assert second["party"]["certificate_code"] == "92330102MA2B8N1R4P"  # was lower case, padded


def test_market_task_push_writes_rare_characters_as_references_its_parser_reads() -> None:
    market = system("market-penalty")
    task = Envelope.from_json(sample("market-penalty", "task_push", "joint-inspection.json"))
    rendered = market.render("task_push", task)
    assert rendered.startswith(b"<?xml version='1.0' encoding='GB2312'?>")
    assert b"&#134071;" in rendered  # 𠮷 has no GB2312 bytes
    rendered.decode("gb2312")  # every byte is GB2312
    assert "𠮷" in etree.fromstring(rendered).findtext("RW/RWNR", default="")


def test_housing_reads_gbk_only_with_the_transport_charset() -> None:
    housing = system("housing-penalty")
    payload = sample("housing-penalty", "publication_batch", "valid-batch.xml")
    assert not payload.startswith(b"<?xml")
    with pytest.raises(EncodingMismatch, match="valid GB18030/GBK"):
        housing.translate("publication_batch", payload)
    result = housing.translate("publication_batch", payload, charset="GBK")
    assert [e.operation for e in result.envelopes] == ["insert", "update", "insert", "delete"]
    assert result.envelopes[0].data["fine_wan_yuan"] == "36.000000"


JT = "{http://jtyst.zj.gov.cn/xzzf/ws/2.0}"


def _as_feedback(name: str, pushed: etree._Element) -> bytes:
    """The department's feedback document holding the pushed task, as it answers."""
    if name == "transport-penalty":
        root = etree.Element(f"{JT}ReportTaskFeedbackRequest", nsmap={"jt": JT[1:-1]})
        root.extend(pushed.iter(f"{JT}Task"))
        return etree.tostring(root, encoding="utf-8")
    if name == "market-penalty":
        root = etree.Element("RWFK")
        root.extend(pushed.iter("RW"))
    else:
        root = etree.Element("ROOT")
        etree.SubElement(root, "DATA").extend(pushed.iter("ROW"))
    return etree.tostring(root, encoding="GBK", xml_declaration=True)


@pytest.mark.parametrize("name", DEPARTMENTS)
def test_a_pushed_task_reads_back_through_the_departments_feedback(name: str) -> None:
    """Departments answer a task in the shape they received it; the hub reads its own push."""
    mappings = system(name)
    [pushed_sample] = sorted((SYSTEMS_ROOT / name / "samples" / "task_push").glob("*.json"))
    task = Envelope.from_json(pushed_sample.read_bytes())
    pushed = etree.fromstring(mappings.render("task_push", task))
    [back] = mappings.translate("task_feedback", _as_feedback(name, pushed)).envelopes
    assert back.record() == task.record()
