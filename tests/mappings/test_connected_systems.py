"""Market, transport, housing, complaint platform, national: contracts and payload realities.

The department contract (tasks and warnings in, feedback out) is checked for every department
system in test_department_systems.py; here: the same for these systems, and what is peculiar to
each (rare characters under a gb2312 declaration, a charset only in the HTTP header, a task
pushed in the shape the department answers in).
"""

from __future__ import annotations

import json

import pytest
from lxml import etree

from mappings.errors import EncodingMismatch
from mappings.samples import run_samples
from mappings.system import SYSTEMS_ROOT, SystemMappings, load_system
from standard.envelope import Envelope

DEPARTMENTS = ["market-penalty", "transport-penalty", "housing-penalty"]
SYSTEMS = [*DEPARTMENTS, "complaint-platform", "national"]


def _system(name: str) -> SystemMappings:
    return load_system(SYSTEMS_ROOT / name)


def _sample(system: str, message_type: str, name: str) -> bytes:
    return (SYSTEMS_ROOT / system / "samples" / message_type / name).read_bytes()


@pytest.mark.parametrize("name", DEPARTMENTS)
def test_every_department_takes_tasks_and_warnings_and_answers_them(name: str) -> None:
    system = _system(name)
    assert system.outbound["task_push"].dataset.name == "collaboration_task"
    assert system.outbound["warning_push"].dataset.name == "risk_warning"
    assert system.inbound["task_feedback"].dataset.name == "collaboration_task"
    assert system.inbound["risk_feedback"].dataset.name == "risk_feedback"


@pytest.mark.parametrize("name", SYSTEMS)
def test_the_description_names_every_message_type_for_the_adapters(name: str) -> None:
    system = _system(name)
    for message_type in [*system.inbound, *system.outbound]:
        assert message_type in system.spec.description, message_type


@pytest.mark.parametrize("name", SYSTEMS)
def test_samples_pass_and_cover_three_kinds_of_bad_input(name: str) -> None:
    outcomes = run_samples(_system(name))
    assert outcomes and all(outcome.passed for outcome in outcomes), [
        (o.sample.name, o.problem or o.diff[:300]) for o in outcomes if not o.passed
    ]
    kinds = set()
    for outcome in outcomes:
        if outcome.direction == "inbound" and outcome.sample.name.startswith("invalid"):
            expected = json.loads(outcome.expected.read_text(encoding="utf-8"))
            if "rejected" in expected:
                kinds.add(expected["rejected"]["kind"])
            else:
                assert expected["errors"], outcome.sample
                kinds.add("record")
    assert len(kinds) >= 3, kinds
    covered = {(o.message_type, o.sample.name.startswith("valid")) for o in outcomes}
    for message_type in _system(name).inbound:
        assert {(message_type, True), (message_type, False)} <= covered, message_type
    for message_type in _system(name).outbound:
        assert any(o.message_type == message_type for o in outcomes), message_type


def test_market_names_beyond_gb2312_survive_the_gb2312_declaration() -> None:
    payload = _sample("market-penalty", "case_upload", "valid-batch.xml")
    assert payload.startswith(b'<?xml version="1.0" encoding="gb2312"?>')
    assert "𠮷".encode("gb18030") in payload  # four GB18030 bytes, not GB2312 at all
    result = _system("market-penalty").translate("case_upload", payload)
    first, second = result.envelopes[0].data, result.envelopes[1].data
    assert first["party"]["name"] == "杭州西溪𠮷祥食品有限公司"
    assert first["party"]["legal_representative"] == "许䶮"
    assert second["party"]["certificate_code"] == "92330102MA2B8N1R4P"  # was lower case, padded


def test_market_task_push_writes_rare_characters_as_references_its_parser_reads() -> None:
    market = _system("market-penalty")
    task = Envelope.from_json(_sample("market-penalty", "task_push", "joint-inspection.json"))
    rendered = market.render("task_push", task)
    assert rendered.startswith(b"<?xml version='1.0' encoding='GB2312'?>")
    assert b"&#134071;" in rendered  # 𠮷 has no GB2312 bytes
    rendered.decode("gb2312")  # every byte is GB2312
    assert "𠮷" in etree.fromstring(rendered).findtext("RW/RWNR", default="")


def test_housing_reads_gbk_only_with_the_transport_charset() -> None:
    housing = _system("housing-penalty")
    payload = _sample("housing-penalty", "publication_batch", "valid-batch.xml")
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
    system = _system(name)
    [sample] = sorted((SYSTEMS_ROOT / name / "samples" / "task_push").glob("*.json"))
    task = Envelope.from_json(sample.read_bytes())
    pushed = etree.fromstring(system.render("task_push", task))
    [back] = system.translate("task_feedback", _as_feedback(name, pushed)).envelopes
    assert back.record() == task.record()
