"""What every shipped system folder promises, and what every department penalty system adds.

Every system's description names each of its message types, so that adapters can be configured
from it, and its samples pass and cover valid payloads and at least three kinds of invalid ones.
Every department penalty system (a `*-penalty` folder) receives collaboration tasks and risk
warnings (outbound renderings `task_push`, `warning_push`) and answers them (inbound
`task_feedback`, `risk_feedback`), besides sending its penalty cases (housing-penalty: their
publications).
"""

from __future__ import annotations

import json

import pytest
from mapping_support import system

from mappings.samples import run_samples
from mappings.system import SYSTEM_FILE, SYSTEMS_ROOT, SystemMappings

SYSTEMS = sorted(path.parent.name for path in SYSTEMS_ROOT.glob(f"*/{SYSTEM_FILE}"))
DEPARTMENTS = [name for name in SYSTEMS if name.endswith("-penalty")]
FEEDBACK = {"task_feedback": "collaboration_task", "risk_feedback": "risk_feedback"}
PUSHES = {"task_push": "collaboration_task", "warning_push": "risk_warning"}
# housing-penalty sends its penalties as publications (双公示), the others as cases.
PENALTY_DATASETS = frozenset({"penalty_case", "penalty_publication"})


def penalty_types(mappings: SystemMappings) -> list[str]:
    """The inbound types carrying the department's penalty records: cases or publications."""
    return [name for name, m in mappings.inbound.items() if m.dataset.name in PENALTY_DATASETS]


def test_the_ten_department_systems_are_all_found() -> None:
    assert len(DEPARTMENTS) == 10, DEPARTMENTS


@pytest.mark.parametrize("name", DEPARTMENTS)
def test_a_department_sends_penalties_takes_tasks_and_warnings_and_answers_them(name: str) -> None:
    mappings = system(name)
    assert len(penalty_types(mappings)) >= 1
    for message_type, dataset in FEEDBACK.items():
        assert mappings.inbound_mapping(message_type).dataset.name == dataset
    for message_type, dataset in PUSHES.items():
        assert mappings.outbound_mapping(message_type).dataset.name == dataset


@pytest.mark.parametrize("name", SYSTEMS)
def test_the_description_names_every_message_type_for_the_adapters(name: str) -> None:
    mappings = system(name)
    for message_type in [*mappings.inbound, *mappings.outbound]:
        assert message_type in mappings.spec.description, (name, message_type)


@pytest.mark.parametrize("name", SYSTEMS)
def test_samples_pass_and_cover_three_kinds_of_bad_input(name: str) -> None:
    mappings = system(name)
    outcomes = run_samples(mappings)
    assert outcomes
    failed = [(o.sample.name, o.problem or o.diff[:300]) for o in outcomes if not o.passed]
    assert not failed
    covered = {(o.message_type, o.sample.name.startswith("valid")) for o in outcomes}
    for message_type in mappings.inbound:
        assert (message_type, True) in covered, f"{message_type} has no valid sample"
        assert (message_type, False) in covered, f"{message_type} has no invalid sample"
    for message_type in mappings.outbound:
        assert any(o.message_type == message_type for o in outcomes), message_type
    if not mappings.inbound:
        return  # it sends nothing to the hub (the credit platform): no input to refuse
    # A department's three kinds must show in its penalty records, the bulk of what it sends.
    counted = penalty_types(mappings) if name in DEPARTMENTS else list(mappings.inbound)
    kinds = set()
    for outcome in outcomes:
        if outcome.direction == "inbound" and outcome.sample.name.startswith("invalid"):
            expected = json.loads(outcome.expected.read_text(encoding="utf-8"))
            if "rejected" not in expected:
                assert expected["errors"], outcome.sample
            if outcome.message_type in counted:
                kinds.add(expected["rejected"]["kind"] if "rejected" in expected else "record")
    assert len(kinds) >= 3, kinds
