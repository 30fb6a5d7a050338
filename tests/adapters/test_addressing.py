"""Addressed routing: the system a task or a warning goes to, from the departments it names."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.routing import Directory, Unaddressable, routing_key
from standard.envelope import Envelope
from systems import SystemConfig

AT = datetime(2026, 3, 1, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
CENTRE = {"name": "浙江省综合行政执法指导办公室", "credit_code": "11330000MB1P273395"}
MARKET = {"name": "浙江省市场监督管理局", "credit_code": "11330000002502194F"}
XIHU_MARKET = {"name": "杭州市西湖区市场监督管理局", "credit_code": "113301060025641254"}
HOUSING = {"name": "浙江省住房和城乡建设厅", "credit_code": "11330000002502434A"}


def system(system_id: str, *departments: dict[str, str]) -> SystemConfig:
    return SystemConfig.model_validate(
        {
            "id": system_id,
            "name_zh": system_id,
            "auth": {"scheme": "api_key", "key_env": "UNUSED"},
            "departments": list(departments),
        }
    )


DIRECTORY = Directory(
    [
        system("collaboration", CENTRE),
        system("market-penalty", MARKET, XIHU_MARKET),
        system("housing-penalty", HOUSING),
    ]
)


def task(status: str = "1", assignees: list[dict[str, Any]] | None = None) -> Envelope:
    data: dict[str, Any] = {
        "task_id": "XT-TS1",
        "title": "核查",
        "task_type": "2",
        "description": "核查投诉",
        "dispatcher": CENTRE,
        "assignees": assignees or [MARKET],
        "region_codes": ["330106"],
        "dispatched_time": AT.isoformat(),
        "status": status,
    }
    if status != "1":
        data |= {"accepted_time": AT.isoformat()}
    if status == "5":
        data |= {"feedback_time": AT.isoformat(), "feedback_result": "已查处"}
    return Envelope.model_validate(
        {
            "source": "330000/ywxtzx",
            "type": "gov.supervision.collaboration_task.v1",
            "subject": "XT-TS1",
            "time": AT.isoformat(),
            "operation": "insert",
            "data": data,
        }
    )


def test_a_dispatched_task_goes_to_each_assignee_system_once() -> None:
    joint = task(assignees=[MARKET, HOUSING, XIHU_MARKET])
    assert DIRECTORY.routing_keys(joint, "collaboration") == [
        "collaboration_task.330106.collaboration.market-penalty",
        "collaboration_task.330106.collaboration.housing-penalty",
    ]


def test_a_department_is_found_by_credit_code_first_then_by_exact_name() -> None:
    renamed = {"name": "西湖区市场监管局", "credit_code": XIHU_MARKET["credit_code"]}
    assert DIRECTORY.system_of(renamed) == "market-penalty"
    recoded = {"name": HOUSING["name"], "credit_code": "91330105MA2CFK4T0Y"}
    assert DIRECTORY.system_of(recoded) == "housing-penalty"
    assert DIRECTORY.system_of({"name": "浙江省住房和城乡建设厅 "}) is None


def test_a_later_step_goes_back_to_the_dispatcher_and_a_stranger_unaddressed() -> None:
    fed_back = task(status="5")
    assert DIRECTORY.routing_keys(fed_back, "market-penalty") == [
        "collaboration_task.330106.market-penalty.collaboration"
    ]
    outside = Directory([system("market-penalty", MARKET)])
    assert outside.routing_keys(fed_back, "market-penalty") == [
        routing_key(fed_back, "market-penalty")
    ]


def test_a_task_for_a_department_nobody_serves_is_unaddressable() -> None:
    stranger = {"name": "某县不存在局"}
    with pytest.raises(Unaddressable, match=r"assignees\[1\] names department '某县不存在局'"):
        DIRECTORY.routing_keys(task(assignees=[MARKET, stranger]), "collaboration")


def test_a_system_does_not_address_a_task_to_itself() -> None:
    assert DIRECTORY.addressees(task(), "market-penalty") is None
