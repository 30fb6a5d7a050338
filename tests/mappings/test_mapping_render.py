"""Reverse mappings: records rendered with namespaces, exact numbers, and clear refusals."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree
from mapping_support import GRASSROOTS, PENALTY, sample

from mappings.errors import RenderError, UnknownMessageType
from mappings.system import SystemMappings
from standard.envelope import Envelope

RW = "{http://sthjt.zj.gov.cn/schema/xtrw/1.0}"


def _task(penalty_system: SystemMappings) -> Envelope:
    return Envelope.from_json(sample(PENALTY, "task_push", "joint-inspection.json"))


def test_a_task_renders_in_the_department_namespace(penalty_system: SystemMappings) -> None:
    root = etree.fromstring(penalty_system.render("task_push", _task(penalty_system)))
    assert root.tag == f"{RW}RWTS" and root.nsmap == {"rw": RW[1:-1]}
    task = root.find(f"{RW}RW")
    assert task.get("CZLX") == "I"
    units = task.findall(f"{RW}CBDW/{RW}DW")
    assert [(u.get("DM"), u.text) for u in units] == [
        ("11330110002536810B", "杭州市余杭区卫生健康局"),
        ("113301060025641254", "杭州市西湖区市场监督管理局"),
    ]
    assert [e.text for e in task.findall(f"{RW}XZQH/{RW}DM")] == ["330110", "330106"]
    assert task.findtext(f"{RW}PFSJ") == "20260403090000"
    assert task.find(f"{RW}LYBH") is not None and task.find(f"{RW}QSR") is None


def test_a_plain_record_renders_without_envelope_attributes(
    penalty_system: SystemMappings,
) -> None:
    record = json.loads(sample(PENALTY, "task_push", "joint-inspection.json"))["data"]
    root = etree.fromstring(penalty_system.render("task_push", record))
    assert root.find(f"{RW}RW").get("CZLX") is None
    assert root.findtext(f"{RW}RW/{RW}RWBH") == record["task_id"]


def test_an_invalid_record_is_refused_with_the_standard_s_rule(
    penalty_system: SystemMappings,
) -> None:
    record = json.loads(sample(PENALTY, "task_push", "joint-inspection.json"))["data"]
    record["region_codes"] = ["3301"]
    with pytest.raises(RenderError) as caught:
        penalty_system.render("task_push", record)
    assert "region_codes[0]" in str(caught.value) and "GB/T 2260" in str(caught.value)
    assert caught.value.system == PENALTY and caught.value.message_type == "task_push"


def test_a_code_the_reverse_table_lacks_names_the_target(system_copy: Path) -> None:
    from mappings.system import load_system

    table = system_copy / "grassroots-platform/tables/event_status.csv"
    table.write_text(
        table.read_text(encoding="utf-8").replace("RETURNED,7,已退回\n", ""), encoding="utf-8"
    )
    system = load_system(system_copy / "grassroots-platform")
    envelope = Envelope.from_json(sample(GRASSROOTS, "event_feedback", "closed-event.json"))
    data = dict(envelope.data, status="6")
    assert json.loads(system.render("event_feedback", data))["status"] == "EVALUATED"
    data = dict(data, status="7", disposal_result=None, closed_time=None)
    with pytest.raises(RenderError) as caught:
        system.render("event_feedback", data)
    assert caught.value.target == "status"
    assert "rule 'lookup event_status reverse'" in str(caught.value)
    assert "'7' is not in table 'event_status'" in str(caught.value)


def test_json_numbers_are_written_exactly(grassroots_system: SystemMappings) -> None:
    envelope = Envelope.from_json(sample(GRASSROOTS, "event_sync", "hotline-event.json"))
    data = dict(envelope.data, longitude="120.1000001", latitude="30.25")
    rendered = json.loads(grassroots_system.render("event_sync", data), parse_float=Decimal)
    location = rendered["data"]["events"][0]["location"]
    assert location == {"lng": Decimal("120.1000001"), "lat": Decimal("30.25")}


def test_unknown_message_types_are_named(penalty_system: SystemMappings) -> None:
    with pytest.raises(UnknownMessageType, match="no outbound mapping for message type 'x'"):
        penalty_system.render("x", {})
    with pytest.raises(
        UnknownMessageType, match="it has: case_batch, risk_feedback, task_feedback"
    ):
        penalty_system.translate("case_return", b"<x/>")


def test_an_outbound_mismatch_fails_the_sample_test(system_copy: Path) -> None:
    from mappings.samples import run_samples
    from mappings.system import load_system

    expected = system_copy / "eco-env-penalty/expected/task_push/joint-inspection.xml"
    expected.write_text(
        expected.read_text(encoding="utf-8").replace(">LHJC<", ">TSZB<"), encoding="utf-8"
    )
    outcomes = run_samples(load_system(system_copy / "eco-env-penalty"))
    [failed] = [outcome for outcome in outcomes if not outcome.passed]
    assert failed.message_type == "task_push"
    assert "-    <rw:RWLX>TSZB</rw:RWLX>" in failed.diff
    assert "+    <rw:RWLX>LHJC</rw:RWLX>" in failed.diff
