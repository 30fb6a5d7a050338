"""Property: a task a department receives (task_push) reads back through its task_feedback.

Each department answers tasks in the format it receives them in, so rendering a task and reading
the rendering as the department's answer must give the same canonical task: this checks every
code table both ways, the time formats and the shape of each department's task documents at once.
Only the wrapper around the task differs (a page, a signed body, another root element).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from mappings.system import SYSTEMS_ROOT, SystemMappings, load_system
from standard.datasets import CollaborationTask
from standard.envelope import Envelope
from standard.types import SHANGHAI

CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
RARE = st.characters(min_codepoint=0x3400, max_codepoint=0x4DB5)  # GB18030 only
OTHER = st.sampled_from(list("ABCxyz0189（）〔〕《》，。、-_ &<>'\"Ａ１"))
TEXT = (
    st.text(st.one_of(CJK, CJK, RARE, OTHER), min_size=1, max_size=60).map(str.strip).filter(bool)
)
IDS = st.text("0123456789ABCDEFGHJKXT-", min_size=1, max_size=40)
DEPARTMENTS_CODES = [
    ("杭州市综合行政执法指挥中心", "11330100002501298F"),
    ("杭州市余杭区卫生健康局", "11330110002536810B"),
    ("绍兴市柯桥区应急管理局", "11330603MB1932862Q"),
    ("湖州市自然资源和规划局", "11330500MB1794252W"),
    ("嘉兴市农业农村局", "11330400002645179Q"),
    ("温州市人力资源和社会保障局", "113303000025187351"),
]
REGIONS = ["330102", "330106", "330302", "330522", "330603", "330782"]
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _department(draw: st.DrawFn) -> dict[str, Any]:
    name, code = draw(st.sampled_from(DEPARTMENTS_CODES))
    return {"name": name, "credit_code": draw(st.sampled_from([code, None]))}


@st.composite
def dispatched_tasks(draw: st.DrawFn) -> CollaborationTask:
    moment = st.datetimes(min_value=datetime(2018, 1, 1), max_value=datetime(2035, 1, 1))
    dispatched = draw(moment).replace(microsecond=0, tzinfo=SHANGHAI)
    due = draw(st.one_of(st.none(), st.integers(3600, 90 * 86400)))
    return CollaborationTask.model_validate(
        {
            "task_id": draw(IDS),
            "title": draw(TEXT),
            "task_type": draw(st.sampled_from(["1", "2", "3", "4", "5", "6", "9"])),
            "description": draw(TEXT),
            "source_dataset": draw(st.sampled_from([None, "complaint", "risk_warning"])),
            "source_record_id": draw(st.one_of(st.none(), IDS)),
            "dispatcher": _department(draw),
            "assignees": [_department(draw) for _ in range(draw(st.integers(1, 3)))],
            "region_codes": draw(st.lists(st.sampled_from(REGIONS), min_size=1, max_size=3)),
            "dispatched_time": dispatched,
            "deadline": dispatched + timedelta(seconds=due) if due else None,
            "status": "1",
        }
    )


def _renamed_root(name: str) -> Callable[[bytes], bytes]:
    def wrap(rendered: bytes) -> bytes:
        root = etree.fromstring(rendered)
        namespace = etree.QName(root).namespace
        root.tag = str(etree.QName(namespace, name)) if namespace else name
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    return wrap


def _json(wrap: Callable[[Any], Any]) -> Callable[[bytes], bytes]:
    return lambda rendered: json.dumps(wrap(json.loads(rendered)), ensure_ascii=False).encode()


# How each department's answer wraps the task document it received.
ANSWERS: dict[str, Callable[[bytes], bytes]] = {
    "health-penalty": _json(lambda task: {"appKey": "k", "data": {"feedbacks": [task]}}),
    "emergency-penalty": _json(lambda task: {"code": 200, "result": {"records": [task]}}),
    "natres-penalty": _renamed_root("TaskFeedback"),
    "agri-penalty": _json(lambda task: {"records": [task]}),
    "culture-penalty": _renamed_root("TaskFeedback"),
    "hrss-penalty": _json(lambda task: {"items": [task], "has_more": False}),
}


@cache
def system(name: str) -> SystemMappings:
    return load_system(SYSTEMS_ROOT / name)


@pytest.mark.parametrize("name", sorted(ANSWERS))
@SETTINGS
@given(task=dispatched_tasks(), seconds=st.integers(0, 10**8))
def test_a_pushed_task_reads_back_as_the_department_answers_it(
    name: str, task: CollaborationTask, seconds: int
) -> None:
    changed = datetime(2026, 1, 1, tzinfo=SHANGHAI) + timedelta(seconds=seconds)
    envelope = Envelope.wrap(task, source="330000/hub", operation="insert", time=changed)
    rendered = system(name).render("task_push", envelope)
    result = system(name).translate("task_feedback", ANSWERS[name](rendered))
    assert result.errors == []
    [back] = result.envelopes
    assert CollaborationTask.model_validate(back.data) == task
    assert (back.subject, back.time, back.operation) == (task.task_id, changed, "update")
