"""What every connected system's folder promises, and what each flow it takes part in adds.

The systems are those the systems configuration connects (config/systems.yaml), not a count or
a naming pattern: an eleventh department is checked as soon as it is configured. Every system's
description names each of its message types, so that adapters can be configured from it, and
its samples pass and cover valid payloads and at least three kinds of invalid ones. Each flow a
system's `system.yaml` lists (`flows:`, see `mappings.flows`) demands its mappings: a department
whose vendor documented only its cases lists [penalty_case] and is demanded no task or warning
mappings; one that sends penalty records must list penalty_case, so it cannot drop out of the
contract unnoticed. `contract_problems` runs it all over any landscape (a systems file and a
folder of mapping folders), so a temporary one is checked exactly as the shipped one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hub.systems import load_systems
from mappings.flows import FLOWS, flow_gaps
from mappings.samples import run_samples
from mappings.system import SYSTEM_FILE, SYSTEMS_ROOT, SystemMappings, load_system

CONFIG_FILE = SYSTEMS_ROOT.parents[1] / "config" / "systems.yaml"
PENALTY_DATASETS = frozenset(FLOWS["penalty_case"].inbound)


def landscape(systems_file: Path, root: Path) -> dict[str, SystemMappings]:
    """The mapping folders (by name) of the systems `systems_file` connects, loaded from `root`;
    an internal system without a folder (the collaboration centre) has none to check."""
    names = {s.mapping_id for s in load_systems(systems_file).systems}
    return {name: load_system(root / name) for name in sorted(names) if (root / name).is_dir()}


def penalty_types(mappings: SystemMappings) -> list[str]:
    """The inbound types carrying the system's penalty records: cases or publications."""
    return [name for name, m in mappings.inbound.items() if m.dataset.name in PENALTY_DATASETS]


def description_problems(mappings: SystemMappings) -> list[str]:
    return [
        f"{mappings.id}: the description does not name message type {message_type}"
        for message_type in [*mappings.inbound, *mappings.outbound]
        if message_type not in mappings.spec.description
    ]


def serving_departments(systems_file: Path) -> set[str]:
    """The folders of the systems that serve departments (`departments:`)."""
    return {s.mapping_id for s in load_systems(systems_file).systems if s.departments}


def flow_problems(mappings: SystemMappings, *, department: bool) -> list[str]:
    """Flows without their mappings; and a department's system (one serving `departments`)
    sending penalty records without listing penalty_case."""
    problems = [f"{mappings.id}: {reason}" for _, reason in flow_gaps(mappings)]
    sends = penalty_types(mappings)
    if department and sends and "penalty_case" not in mappings.spec.flows:
        problems.append(
            f"{mappings.id}: sends penalty records ({', '.join(sends)}) but "
            "its system.yaml does not list penalty_case in `flows`"
        )
    return problems


def sample_problems(mappings: SystemMappings) -> list[str]:
    """Samples that fail, message types without valid and invalid samples, and fewer than three
    kinds of bad input (a department's in its penalty records, the bulk of what it sends)."""
    name = mappings.id
    outcomes = run_samples(mappings)
    if not outcomes:
        return [f"{name}: no samples"]
    problems = [
        f"{name}: sample {o.sample.name} fails: {o.problem or o.diff[:300]}"
        for o in outcomes
        if not o.passed
    ]
    covered = {(o.message_type, o.sample.name.startswith("valid")) for o in outcomes}
    for message_type in mappings.inbound:
        for valid, kind in ((True, "valid"), (False, "invalid")):
            if (message_type, valid) not in covered:
                problems.append(f"{name}: {message_type} has no {kind} sample")
    problems += [
        f"{name}: {message_type} has no sample"
        for message_type in mappings.outbound
        if not any(o.message_type == message_type for o in outcomes)
    ]
    if not mappings.inbound:
        return problems  # it sends nothing to the hub (the credit platform): no input to refuse
    counted = penalty_types(mappings) if "penalty_case" in mappings.spec.flows else []
    counted = counted or list(mappings.inbound)
    kinds = set()
    for outcome in outcomes:
        if outcome.direction == "inbound" and outcome.sample.name.startswith("invalid"):
            expected = json.loads(outcome.expected.read_text(encoding="utf-8"))
            if "rejected" not in expected and not expected["errors"]:
                problems.append(f"{name}: invalid sample {outcome.sample.name} has no errors")
            if outcome.message_type in counted:
                kinds.add(expected["rejected"]["kind"] if "rejected" in expected else "record")
    if len(kinds) < 3:
        problems.append(f"{name}: invalid samples show {len(kinds)} kinds of bad input, not 3")
    return problems


def contract_problems(systems_file: Path, root: Path) -> list[str]:
    """Every broken promise of the landscape's folders; empty when it keeps them all."""
    departments = serving_departments(systems_file)
    problems = []
    for name, mappings in landscape(systems_file, root).items():
        problems += description_problems(mappings)
        problems += flow_problems(mappings, department=name in departments)
        problems += sample_problems(mappings)
    return problems


SHIPPED = landscape(CONFIG_FILE, SYSTEMS_ROOT)
DEPARTMENTS = serving_departments(CONFIG_FILE)


def test_the_contract_covers_every_configured_system_with_a_folder() -> None:
    config = load_systems(CONFIG_FILE)
    external = {s.mapping_id for s in config.systems if s.auth.scheme != "internal"}
    assert external <= set(SHIPPED)
    assert any(m.spec.flows for m in SHIPPED.values())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_system_has_the_mappings_of_each_flow_it_takes_part_in(name: str) -> None:
    assert flow_problems(SHIPPED[name], department=name in DEPARTMENTS) == []


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_description_names_every_message_type_for_the_adapters(name: str) -> None:
    assert description_problems(SHIPPED[name]) == []


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_samples_pass_and_cover_three_kinds_of_bad_input(name: str) -> None:
    assert sample_problems(SHIPPED[name]) == []


ELEVENTH = "port-penalty"
ELEVENTH_ENTRY = f"""
  - id: {ELEVENTH}
    name_zh: 省港航管理中心行政处罚系统
    departments:
      - {{name: 浙江省港航管理中心}}
    auth: {{scheme: api_key, key_env: JGHUB_KEY_PORT_PENALTY}}
    inbound:
      - {{adapter: xml_push, message_type: case_query}}
"""


def eleventh_department(tmp_path: Path, flows: str) -> tuple[Path, Path]:
    """A landscape of the shipped systems and an eleventh department, a copy of the city
    culture system (a case query, nothing else) declaring `flows`."""
    root = tmp_path / "mappings"
    shutil.copytree(SYSTEMS_ROOT, root)
    folder = root / ELEVENTH
    shutil.copytree(root / "city-culture-enforcement", folder)
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".json"):
            text = path.read_text(encoding="utf-8")
            path.write_text(text.replace("city-culture-enforcement", ELEVENTH), encoding="utf-8")
    spec = folder / SYSTEM_FILE
    text = spec.read_text(encoding="utf-8")
    start = text.index("flows:")
    end = text.index("\n", start)
    spec.write_text(text[:start] + f"flows: {flows}" + text[end:], encoding="utf-8")
    systems_file = tmp_path / "systems.yaml"
    systems_file.write_text(
        CONFIG_FILE.read_text(encoding="utf-8") + ELEVENTH_ENTRY, encoding="utf-8"
    )
    return systems_file, root


def test_an_eleventh_department_with_only_its_cases_keeps_the_contract(tmp_path: Path) -> None:
    systems_file, root = eleventh_department(tmp_path, "[penalty_case]")
    found = landscape(systems_file, root)
    assert ELEVENTH in found and len(found) == len(SHIPPED) + 1
    assert contract_problems(systems_file, root) == []


def test_a_flow_declared_without_its_mappings_breaks_the_contract(tmp_path: Path) -> None:
    systems_file, root = eleventh_department(tmp_path, "[penalty_case, risk_warning]")
    problems = contract_problems(systems_file, root)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{ELEVENTH}: flow risk_warning")
    assert "an inbound mapping of risk_feedback" in problems[0]
    assert "an outbound mapping of risk_warning" in problems[0]


def test_a_system_sending_penalties_must_list_the_penalty_flow(tmp_path: Path) -> None:
    systems_file, root = eleventh_department(tmp_path, "[]")
    assert contract_problems(systems_file, root) == [
        f"{ELEVENTH}: sends penalty records (case_query) but its system.yaml does not list "
        "penalty_case in `flows`"
    ]
