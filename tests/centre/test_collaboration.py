"""The collaboration centre's configuration is checked when it is loaded or built, not at first
use."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from store_support import embedded_store

from adapters.ingress import Ingress
from adapters.routing import Directory
from centre.collaboration import (
    CENTRE_COMPLAINT,
    CentreConfigError,
    CollaborationCentre,
    task_id_of,
)
from hub.systems import SystemsConfigError, load_systems
from systems import SystemConfig

CENTRE = {"name": "浙江省综合行政执法指导办公室", "credit_code": "11330000MB1P273395"}


def centre(scenarios: dict[str, str], departments: list[dict[str, str]]) -> SystemConfig:
    return SystemConfig.model_validate(
        {
            "id": "collaboration",
            "name_zh": "业务协同中心",
            "auth": {"scheme": "internal"},
            "departments": departments,
            "collaboration": {"scenarios": scenarios},
            "routes": ["complaint.*.complaint-platform"],
        }
    )


def build(system: SystemConfig, tmp_path: Path) -> None:
    ingress = Ingress(None, {}, directory=Directory([system]))
    CollaborationCentre(system, ingress, embedded_store(tmp_path)).close()


def test_a_scenario_table_naming_an_unknown_system_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(CentreConfigError, match="names market-penalty, which no configured"):
        build(centre({"01": "market-penalty"}, [CENTRE]), tmp_path)


def test_a_table_naming_only_served_systems_builds(tmp_path: Path) -> None:
    build(centre({}, [CENTRE]), tmp_path)
    with embedded_store(tmp_path).begin() as db:  # it keeps its complaints in the store
        assert db.execute(select(func.count()).select_from(CENTRE_COMPLAINT)).scalar_one() == 0


def test_the_centre_needs_its_own_department() -> None:
    with pytest.raises(ValidationError, match="needs `departments`"):
        centre({}, [])


def test_the_centre_runs_inside_the_hub() -> None:
    entry = centre({}, [CENTRE]).model_dump(exclude_none=True)
    entry["auth"] = {"scheme": "api_key", "key_env": "KEY"}
    with pytest.raises(ValidationError, match="runs inside the hub: auth scheme internal"):
        SystemConfig.model_validate(entry)


def test_scenario_codes_come_from_the_dictionary() -> None:
    with pytest.raises(ValidationError, match="scenarios 42 are not codes of dictionary"):
        centre({"42": "market-penalty"}, [CENTRE])


def test_a_complaint_always_becomes_the_same_task() -> None:
    assert task_id_of("TS330106202603010001") == "XT-TS330106202603010001"
    long = "TS" + "9" * 70
    assert task_id_of(long) == task_id_of(long) and len(task_id_of(long)) <= 64


def test_centre_event_kinds_are_codes_of_the_dictionary() -> None:
    entry = centre({}, [CENTRE]).model_dump(exclude_none=True)
    entry["collaboration"]["event_kinds"] = {"77": "market-penalty"}
    with pytest.raises(ValidationError, match="event kinds 77 are not codes of dictionary"):
        SystemConfig.model_validate(entry)


def test_centre_event_kinds_naming_an_unknown_system_fail_at_start(tmp_path: Path) -> None:
    entry = centre({}, [CENTRE]).model_dump(exclude_none=True)
    entry["collaboration"]["event_kinds"] = {"09": "eco-env-penalty"}
    with pytest.raises(CentreConfigError, match="names eco-env-penalty, which no configured"):
        build(SystemConfig.model_validate(entry), tmp_path)


def test_centre_event_kinds_in_the_systems_file_name_the_line_of_a_system_without_departments(
    tmp_path: Path,
) -> None:
    text = Path("config/systems.yaml").read_text(encoding="utf-8")
    kinds = text.index("event_kinds:")  # the scenario table names eco-env-penalty too
    wrong = text[:kinds] + text[kinds:].replace('"09": eco-env-penalty', '"09": nowhere', 1)
    assert wrong != text
    path = tmp_path / "systems.yaml"
    path.write_text(wrong, encoding="utf-8")
    with pytest.raises(SystemsConfigError) as raised:
        load_systems(path)
    (problem,) = [p for p in raised.value.problems if "event_kinds" in str(p)]
    assert "'nowhere' is not a configured system with `departments`" in str(problem)
    assert problem.line == wrong[: wrong.index('"09": nowhere')].count("\n") + 1


def test_centre_deadline_days_is_refused_with_where_the_deadlines_are_now() -> None:
    entry = centre({}, [CENTRE]).model_dump(exclude_none=True)
    entry["collaboration"]["deadline_days"] = 15
    with pytest.raises(ValidationError, match=r"config/deadlines\.yaml"):
        SystemConfig.model_validate(entry)
