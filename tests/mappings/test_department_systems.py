"""Department penalty systems: what is peculiar to each one's payloads.

The department contract (cases in, tasks and warnings out, feedback in; samples of three kinds of
bad input) is checked for every configured system, by the flows it lists, in
test_system_contract.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

from mapping_support import system

from mappings.coverage import unread_fields
from mappings.system import SYSTEMS_ROOT


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
