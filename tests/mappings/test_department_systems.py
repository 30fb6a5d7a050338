"""Department penalty systems: each translates its cases and feedback, renders tasks and warnings.

Every department system receives collaboration tasks and risk warnings (outbound renderings
`task_push`, `warning_push`) and answers them (inbound `task_feedback`, `risk_feedback`), besides
sending its penalty cases. Its samples cover valid payloads and at least three kinds of invalid
ones, and its system.yaml names every message type so that adapters can be configured from it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from functools import cache
from pathlib import Path

import pytest

from mappings.coverage import unread_fields
from mappings.samples import run_samples
from mappings.system import SYSTEMS_ROOT, SystemMappings, load_system

DEPARTMENTS = (
    "health-penalty",
    "emergency-penalty",
    "natres-penalty",
    "agri-penalty",
    "culture-penalty",
    "hrss-penalty",
)
FEEDBACK = {"task_feedback": "collaboration_task", "risk_feedback": "risk_feedback"}
PUSHES = {"task_push": "collaboration_task", "warning_push": "risk_warning"}


@cache
def system(name: str) -> SystemMappings:
    return load_system(SYSTEMS_ROOT / name)


def case_types(mappings: SystemMappings) -> list[str]:
    return [name for name, m in mappings.inbound.items() if m.dataset.name == "penalty_case"]


@pytest.mark.parametrize("name", DEPARTMENTS)
def test_the_department_has_every_message_type_the_hub_needs(name: str) -> None:
    mappings = system(name)
    assert len(case_types(mappings)) >= 1
    for message_type, dataset in FEEDBACK.items():
        assert mappings.inbound_mapping(message_type).dataset.name == dataset
    for message_type, dataset in PUSHES.items():
        assert mappings.outbound_mapping(message_type).dataset.name == dataset
    # Adapters are configured from the description: it names every message type it carries.
    for message_type in [*mappings.inbound, *mappings.outbound]:
        assert message_type in mappings.spec.description, (name, message_type)


@pytest.mark.parametrize("name", DEPARTMENTS)
def test_every_sample_passes_and_invalid_ones_are_of_three_kinds(name: str) -> None:
    outcomes = run_samples(system(name))
    failed = [(o.sample.name, o.problem or o.diff) for o in outcomes if not o.passed]
    assert not failed
    covered = {(o.message_type, o.sample.name.startswith("valid")) for o in outcomes}
    for message_type in system(name).inbound:
        assert (message_type, True) in covered, f"{message_type} has no valid sample"
        assert (message_type, False) in covered, f"{message_type} has no invalid sample"
    for message_type in system(name).outbound:
        assert any(o.message_type == message_type for o in outcomes), message_type
    kinds = set()
    for outcome in outcomes:
        if outcome.message_type in case_types(system(name)) and outcome.sample.stem.startswith(
            "invalid"
        ):
            expected = json.loads(outcome.expected.read_text(encoding="utf-8"))
            kinds.add(expected["rejected"]["kind"] if "rejected" in expected else "record")
    assert len(kinds) >= 3, kinds


def _samples(name: str, message_type: str) -> list[Path]:
    return sorted((SYSTEMS_ROOT / name / "samples" / message_type).iterdir())


def test_health_samples_carry_the_documented_md5_sign() -> None:
    # system.yaml: sign = lower-hex md5(appKey + secret + requestTime), sample secret below.
    secret = "sample-secret-wsjkw"
    signed = 0
    for message_type in system("health-penalty").inbound:
        for path in _samples("health-penalty", message_type):
            try:
                body = json.loads(path.read_bytes())
            except (ValueError, UnicodeDecodeError):
                continue  # the malformed and wrongly encoded samples
            if not isinstance(body, dict) or "sign" not in body:
                continue
            text = f"{body['appKey']}{secret}{body['requestTime']}"
            assert body["sign"] == hashlib.md5(text.encode()).hexdigest(), path.name
            signed += 1
    assert signed >= 5


def test_a_pulled_record_read_again_is_the_same_event_and_a_new_change_is_not() -> None:
    mappings = system("emergency-penalty")
    page = (SYSTEMS_ROOT / "emergency-penalty/samples/case_page/valid-page.json").read_bytes()
    first = mappings.translate("case_page", page).envelopes
    again = mappings.translate("case_page", page).envelopes
    assert [e.id for e in first] == [e.id for e in again]
    assert [e.idempotencykey for e in first] == [e.idempotencykey for e in again]
    assert [e.operation.value for e in first] == ["insert", "update", "update", "delete"]
    changed = json.loads(page)
    record = changed["result"]["records"][0]
    record["updateTime"] = "2026-03-06 08:00:00"
    later = mappings.translate("case_page", json.dumps(changed).encode()).envelopes[0]
    assert later.operation.value == "update"  # created earlier than it changed
    assert later.subject == first[0].subject
    assert later.id != first[0].id and later.idempotencykey != first[0].idempotencykey


def test_agri_penalty_kinds_split_on_either_comma() -> None:
    mappings = system("agri-penalty")
    path = SYSTEMS_ROOT / "agri-penalty/samples/case_records/valid-records.json"
    body = json.loads(path.read_bytes())
    assert body["records"][0]["decisionInfo"]["penaltyKinds"] == "2,3,4"
    for written in ("2，3,4", " 2 ，3，4 ", "2,,3，4"):
        mutated = copy.deepcopy(body)
        mutated["records"] = [mutated["records"][0]]
        mutated["records"][0]["decisionInfo"]["penaltyKinds"] = written
        result = mappings.translate("case_records", json.dumps(mutated).encode())
        assert not result.errors
        assert result.envelopes[0].data["penalty_kinds"] == ["03", "04", "05"]


def test_empty_elements_are_reported_through_their_attributes() -> None:
    translation = system("culture-penalty").inbound_mapping("case_data")
    payloads = [path.read_bytes() for path in _samples("culture-penalty", "case_data")]
    assert unread_fields(translation, payloads) == ["/CaseData/@sender", "/CaseData/@version"]
    unread = unread_fields(
        translation,
        [
            b'<CaseData><Case op="I" caseNo="1" extra="x"><Party name="A" phone="1"/>'
            b"<Note/><Memo>text</Memo></Case></CaseData>"
        ],
    )
    assert unread == [
        "/CaseData/Case/@extra",
        "/CaseData/Case/Memo",
        "/CaseData/Case/Note",
        "/CaseData/Case/Party/@phone",
    ]


def test_an_empty_list_whose_items_are_read_is_not_unread() -> None:
    translation = system("hrss-penalty").inbound_mapping("task_feedback")
    page = json.loads(
        (SYSTEMS_ROOT / "hrss-penalty/samples/task_feedback/valid-page.json").read_bytes()
    )
    page["items"][0]["assignees"] = []
    page["items"][0]["spare"] = {}
    unread = unread_fields(translation, [json.dumps(page).encode()])
    assert "items[].assignees[]" not in unread
    assert "items[].spare" in unread
