"""The collaboration centre's configuration is checked when it is built, not at first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import registry
from adapters.base import AdapterContext
from adapters.collaboration import task_id_of
from adapters.errors import AdapterConfigError
from adapters.ingress import Ingress
from adapters.routing import Directory
from systems import OPTIONS_CHECK, SystemConfig

CENTRE = {"name": "浙江省综合行政执法指导办公室", "credit_code": "11330000MB1P273395"}


def centre(scenarios: dict[str, str], departments: list[dict[str, str]]) -> SystemConfig:
    return SystemConfig.model_validate(
        {
            "id": "collaboration",
            "name_zh": "业务协同中心",
            "auth": {"scheme": "internal"},
            "departments": departments,
            "outbound": {
                "adapter": "collaboration",
                "render": {"complaint": "cloudevent"},
                "options": {"scenarios": scenarios},
            },
            "routes": ["complaint.*.complaint-platform"],
        },
        context={OPTIONS_CHECK: registry.validate_options},
    )


def build(system: SystemConfig, tmp_path: Path) -> None:
    assert system.outbound is not None
    ingress = Ingress(None, {}, directory=Directory([system]))
    context = AdapterContext(system=system, data_dir=tmp_path, ingress=ingress)
    registry.create("collaboration", system.outbound.options, context).close()


def test_a_scenario_table_naming_an_unknown_system_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(AdapterConfigError, match="names market-penalty, which no configured"):
        build(centre({"01": "market-penalty"}, [CENTRE]), tmp_path)


def test_the_centre_needs_its_own_department(tmp_path: Path) -> None:
    with pytest.raises(AdapterConfigError, match="needs `departments`"):
        build(centre({}, []), tmp_path)


def test_scenario_codes_come_from_the_dictionary() -> None:
    with pytest.raises(ValueError, match="scenarios 42 are not codes of dictionary"):
        centre({"42": "market-penalty"}, [CENTRE])


def test_a_complaint_always_becomes_the_same_task() -> None:
    assert task_id_of("TS330106202603010001") == "XT-TS330106202603010001"
    long = "TS" + "9" * 70
    assert task_id_of(long) == task_id_of(long) and len(task_id_of(long)) <= 64
