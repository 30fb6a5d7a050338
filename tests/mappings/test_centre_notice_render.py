"""督办通知 rendered for every department system, each in the form it takes collaboration tasks.

The disposal centre's reminders and escalations reach a department only through its own
outbound mapping (`notice_push`): its samples (in the system's own code words) must render to
their expected files and carry every value of the notice, and each sample is addressed to a
department its system serves; a state the system's table does not know is a clear render error,
not a silent guess.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from mapping_support import system
from notice_support import (
    ESCALATION_SAMPLE,
    NOTICE_TYPE,
    REMINDER_SAMPLE,
    fresh_notice,
    notice_sample,
)

from adapters.routing import Directory
from hub.systems import load_systems
from mappings import RenderError
from mappings.payloads import PayloadLimits, parse_xml
from mappings.samples import run_samples
from mappings.system import SYSTEM_FILE, SYSTEMS_ROOT

CONFIG_FILE = SYSTEMS_ROOT.parents[1] / "config" / "systems.yaml"
# The configured systems whose folder says they take the centre's notices (flows:), however many.
DEPARTMENTS = sorted(
    s.id
    for s in load_systems(CONFIG_FILE).systems
    if (SYSTEMS_ROOT / s.mapping_id / SYSTEM_FILE).is_file()
    and "supervision_notice" in system(s.mapping_id).spec.flows
)
TEXT_FIELDS = ("notice_id", "item_id", "item_title", "region_code", "content")


def rendered_values(rendering: bytes, syntax: str) -> set[str]:
    """Every text, attribute value and JSON leaf of `rendering`, decoded as its target would."""
    if syntax == "xml":
        root = parse_xml(rendering, PayloadLimits())
        texts = {text.strip() for text in root.itertext() if text.strip()}
        return texts | {value for node in root.iter() for value in node.attrib.values()}
    return {str(leaf) for leaf in _leaves(json.loads(rendering))}


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def test_centre_notice_every_department_system_renders_it() -> None:
    assert DEPARTMENTS
    for name in DEPARTMENTS:
        assert system(name).outbound_mapping(NOTICE_TYPE).dataset.name == "supervision_notice"


@pytest.mark.parametrize("name", DEPARTMENTS)
def test_centre_notice_renderings_equal_their_expected_files(name: str) -> None:
    outcomes = [o for o in run_samples(system(name)) if o.message_type == NOTICE_TYPE]
    assert sorted(o.sample.name for o in outcomes) == [REMINDER_SAMPLE, ESCALATION_SAMPLE]
    failed = [(o.sample.name, o.problem or o.diff) for o in outcomes if not o.passed]
    assert not failed


@pytest.mark.parametrize("name", DEPARTMENTS)
@pytest.mark.parametrize("sample", [REMINDER_SAMPLE, ESCALATION_SAMPLE])
def test_centre_notice_rendering_carries_every_value_of_the_notice(name: str, sample: str) -> None:
    mappings = system(name)
    envelope = fresh_notice(name, sample)
    syntax = mappings.outbound_mapping(NOTICE_TYPE).mapping.format
    values = rendered_values(mappings.render(NOTICE_TYPE, envelope), syntax)
    data = envelope.data
    missing = [field for field in TEXT_FIELDS if data[field] not in values]
    for role in ("department", "addressee"):
        missing += [f"{role}.{k}" for k, v in data[role].items() if v not in values]
    assert not missing, f"{name} {sample}: the rendering lacks {missing}"


@pytest.mark.parametrize("name", DEPARTMENTS)
def test_centre_notice_state_the_system_has_no_word_for_is_a_clear_render_error(
    name: str,
) -> None:
    # A cancelled item is not reminded of: no department table has a word for it.
    envelope = fresh_notice(name, state="cancelled")
    with pytest.raises(RenderError, match="notice_state") as error:
        system(name).render(NOTICE_TYPE, envelope)
    assert "'cancelled'" in str(error.value) and name in str(error.value)


def test_centre_notice_samples_are_addressed_to_a_department_their_system_serves() -> None:
    """A sample is what its system receives: a reminder to the department that owes the
    disposal, an escalation of a warning to its issuer, both served by that system."""
    directory = Directory(load_systems(CONFIG_FILE).systems)
    for name in DEPARTMENTS:
        reminder, escalation = notice_sample(name), notice_sample(name, ESCALATION_SAMPLE)
        assert (reminder["notice_type"], reminder["item_kind"]) == ("1", "2")
        assert reminder["addressee"] == reminder["department"]
        assert (escalation["notice_type"], escalation["item_kind"]) == ("2", "1")
        assert escalation["addressee"] != escalation["department"]
        for notice in (reminder, escalation):
            assert directory.system_of(notice["addressee"]) == name, notice["notice_id"]
