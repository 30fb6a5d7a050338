"""What a record names besides itself, as the standard declares it: the search keys the journal
indexes (credit codes of organisations, links to other records), never a person's ID number."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sample_records import changed, sample

from standard.datasets import DATASETS, validate
from standard.references import linked_datasets
from standard.types import CREDIT_CODE_PATTERN


def _data(name: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sample record of `name` (changed), validated, as an envelope carries it."""
    return validate(name, changed(sample(name), changes or {})).model_dump(mode="json")


def test_search_keys_of_a_task_are_its_departments_and_the_records_it_links() -> None:
    found = DATASETS["collaboration_task"].references(_data("collaboration_task"))
    assert found.credit_codes == {
        "dispatcher.credit_code": "11330100002501298F",
        "assignees[0].credit_code": "11330110002536810B",
        "assignees[1].credit_code": "113301060025641254",
    }
    assert found.links == {
        "source_record_id": "TS330110202604020031",
        "inspection_ids[0]": "JC330110202604080002",
        "penalty_ids[0]": "CF330110202604090001",
    }


def test_search_keys_follow_the_chain_complaint_task_feedback_and_notice() -> None:
    assert DATASETS["complaint"].references(_data("complaint")).links == {
        "task_id": "XT330100202604030005"
    }
    feedback = DATASETS["risk_feedback"].references(_data("risk_feedback"))
    assert feedback.links["warning_id"] == "YJ330000202605060012"
    notice = DATASETS["supervision_notice"].references(_data("supervision_notice"))
    assert notice.links == {"item_id": "XT330100202604030005"}


@pytest.mark.parametrize("name", ["inspection", "penalty_case"])
def test_search_keys_hold_a_party_credit_code_but_never_a_person_id_number(name: str) -> None:
    organisation = DATASETS[name].references(_data(name))
    assert organisation.credit_codes == {"party.certificate_code": "91330106MA2CDN7P4X"}
    person = {
        "party.category": "2",
        "party.certificate_type": "111",
        "party.certificate_code": "11010519491231002X",
    }
    assert DATASETS[name].references(_data(name, person)).credit_codes == {}


def test_search_links_name_the_datasets_they_may_point_to() -> None:
    task = DATASETS["collaboration_task"]
    assert task.linked_datasets("source_record_id") == (
        "complaint",
        "grassroots_event",
        "risk_warning",
    )
    assert task.linked_datasets("penalty_ids[3]") == ("penalty_case",)
    assert task.linked_datasets("dispatcher.credit_code") == ()
    assert task.linked_datasets("no_such_field") == ()
    notice = DATASETS["supervision_notice"].model
    assert linked_datasets(notice, "item_id") == ("risk_warning", "collaboration_task")


def _credit_code_fields(schema: dict[str, Any], defs: dict[str, Any], prefix: str) -> set[str]:
    found: set[str] = set()
    for name, spec in schema.get("properties", {}).items():
        options = [spec, *spec.get("anyOf", []), spec.get("items", {})]
        for option in options:
            if option.get("pattern") == CREDIT_CODE_PATTERN:
                found.add(f"{prefix}{name}")
            ref = option.get("$ref") or option.get("items", {}).get("$ref")
            if ref:
                sub = defs[ref.rsplit("/", 1)[1]]
                found |= _credit_code_fields(sub, defs, f"{prefix}{name}.")
    return found


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_credit_code_field_of_the_schema_is_a_search_key(name: str) -> None:
    # The JSON Schema's credit-code pattern and the search marker come from one type: a field
    # typed otherwise would be missed by the search, and this says which.
    spec = DATASETS[name]
    schema = spec.model.model_json_schema()
    declared = _credit_code_fields(schema, schema.get("$defs", {}), "")
    found = set(spec.references(_data(name)).credit_codes)
    unindexed = {path for path in declared if _present(_data(name), path)} - {
        re.sub(r"\[\d+\]", "", path) for path in found
    }
    assert unindexed == set()


def _present(data: dict[str, Any], path: str) -> bool:
    value: Any = data
    for part in path.split("."):
        if isinstance(value, list):
            value = value[0] if value else None
        value = value.get(part) if isinstance(value, dict) else None
    return value is not None
