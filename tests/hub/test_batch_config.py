"""`outbound.batch` in the systems file: refused with file:line where it cannot work, its
prefetch, and the simulated landscape's batch upload."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.simulators.landscape import build_landscape
from hub.systems import SystemsConfigError, load_systems
from mappings import SYSTEMS_ROOT, load_all

MAPPINGS = load_all()
SYSTEM = """\
systems:
  - id: {system}
    name_zh: 测试系统
    auth: {{scheme: api_key, key_env: JGHUB_TEST_UNUSED}}
    outbound:
      adapter: {adapter}
      render: {render}
      batch: {batch}
      options: {options}
    routes: ["{dataset}.#"]
"""


def systems_file(tmp_path: Path, **changes: str) -> Path:
    """A systems file of one system batching to its rest_sender, as `changes` alter it."""
    values = {
        "system": "national",
        "adapter": "rest_sender",
        "render": "{penalty_case: penalty_record}",
        "batch": "{max_records: 50, max_wait_ms: 100}",
        "options": "{url: 'http://127.0.0.1:9/x'}",
        "dataset": "penalty_case",
    }
    path = tmp_path / "systems.yaml"
    path.write_text(SYSTEM.format(**(values | changes)), encoding="utf-8")
    return path


def test_a_sender_that_cannot_carry_batches_is_refused_with_its_line(tmp_path: Path) -> None:
    path = systems_file(tmp_path, adapter="outbox", options="{}")
    with pytest.raises(SystemsConfigError) as refused:
        load_systems(path).bind_mappings(MAPPINGS)
    (problem,) = refused.value.problems
    assert problem.rule == "batch-sender"
    assert str(problem).startswith(f"{path}:8:")
    assert "sender outbox cannot send batches" in problem.reason and "rest_sender" in problem.reason


def test_a_message_type_without_a_batch_section_is_refused_naming_its_mapping(
    tmp_path: Path,
) -> None:
    path = systems_file(
        tmp_path,
        system="health-penalty",
        render="{risk_warning: warning_push}",
        dataset="risk_warning",
    )
    with pytest.raises(SystemsConfigError) as refused:
        load_systems(path).bind_mappings(MAPPINGS)
    (problem,) = refused.value.problems
    mapping = SYSTEMS_ROOT / "health-penalty/warning_push.yaml"
    assert problem.rule == "batch-mapping"
    assert str(problem).startswith(f"{path}:7:")
    assert f"{mapping}:3 has no `batch` section" in problem.reason


@pytest.mark.parametrize(
    ("batch", "said"),
    [
        ("{max_records: 1, max_wait_ms: 100}", "greater than or equal to 2"),
        ("{max_records: 501, max_wait_ms: 100}", "less than or equal to 500"),
        ("{max_records: 50}", "max_wait_ms"),
    ],
)
def test_batch_bounds_are_checked_at_load(tmp_path: Path, batch: str, said: str) -> None:
    path = systems_file(tmp_path, batch=batch)
    with pytest.raises(SystemsConfigError) as refused:
        load_systems(path)
    assert any(said in str(p) and ":8:" in str(p) for p in refused.value.problems), str(
        refused.value
    )


def test_a_batching_target_holds_twice_a_batch(tmp_path: Path) -> None:
    config = load_systems(systems_file(tmp_path, batch="{max_records: 120, max_wait_ms: 100}"))
    config.bind_mappings(MAPPINGS)
    assert config.topology("t").target("national").prefetch == 240
    assert config.system("national").outbound.in_hand == 240  # type: ignore[union-attr]


def test_the_landscape_batches_to_national_only_when_asked() -> None:
    batching = build_landscape(MAPPINGS, batching=True).systems
    batching.bind_mappings(MAPPINGS)
    national = batching.system("national").outbound
    assert national is not None and national.batch is not None
    assert national.options["batch_url"].endswith("/jgxw/api/v1/punish/batch")
    plain = build_landscape(MAPPINGS).systems.system("national").outbound
    assert plain is not None and plain.batch is None
