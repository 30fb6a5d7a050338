"""JSON Schema export: `jghub standard schema` writes valid schemas that the samples satisfy."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sample_records import DELETE, changed, sample
from typer.testing import CliRunner

from hub.cli import app
from standard.datasets import DATASETS, validate
from standard.envelope import Envelope
from standard.schema import ENVELOPE_SCHEMA_FILE, dataset_schema, write_schemas

NAMES = sorted(DATASETS)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("schemas")
    result = CliRunner().invoke(app, ["standard", "schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == len(DATASETS) + 1
    assert all(line.startswith("wrote ") for line in lines)
    return out


def load(folder: Path, file: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((folder / file).read_text(encoding="utf-8"))
    return loaded


def test_one_schema_per_dataset_and_one_for_the_envelope(written: Path) -> None:
    expected = {f"{name}.v1.schema.json" for name in NAMES} | {ENVELOPE_SCHEMA_FILE}
    assert {p.name for p in written.iterdir()} == expected


@pytest.mark.parametrize("name", NAMES)
def test_each_schema_is_valid_and_the_sample_satisfies_it(written: Path, name: str) -> None:
    schema = load(written, f"{name}.v1.schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(sample(name))
    canonical = json.loads(validate(name, sample(name)).model_dump_json())
    validator.validate(canonical)


@pytest.mark.parametrize("name", NAMES)
def test_the_schema_rejects_a_missing_mandatory_field(written: Path, name: str) -> None:
    schema = load(written, f"{name}.v1.schema.json")
    key = DATASETS[name].key_field
    assert key in schema["required"]
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(
        changed(sample(name), {key: DELETE})
    ))  # fmt: skip
    assert [e.validator for e in errors] == ["required"]


def test_the_schema_rejects_a_code_outside_its_dictionary(written: Path) -> None:
    schema = load(written, "penalty_publication.v1.schema.json")
    bad = changed(sample("penalty_publication"), {"penalty_kinds": ["01", "77"]})
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
    assert [e.validator for e in errors] == ["enum"]


def test_schemas_carry_chinese_names_codes_and_rules(written: Path) -> None:
    publication = load(written, "penalty_publication.v1.schema.json")
    assert publication["x-zh"] == "双公示行政处罚"
    assert publication["x-type"] == "gov.supervision.penalty_publication.v1"
    wsh = publication["properties"]["decision_number"]
    assert (wsh["title"], wsh["x-codes"]) == ("行政处罚决定书文号", ["CF_WSH"])
    assert publication["properties"]["legal_representative"]["x-legacy-codes"] == ["CF_FR"]
    kinds = publication["properties"]["penalty_kinds"]["items"]
    assert kinds["x-dictionary"] == "penalty_kind" and kinds["x-labels"]["03"].startswith("罚款")
    rule_names = [r["name"] for r in publication["x-rules"]]
    assert "publication deadline after decision date" in rule_names
    penalty = load(written, "penalty_case.v1.schema.json")
    assert penalty["properties"]["decision_number"]["x-required-from-stage"] == "decision"
    assert {"from": "notice", "to": "investigation"}.items() <= penalty["x-stage-transitions"][
        6
    ].items()
    party_rules = [r["name"] for r in penalty["$defs"]["Party"]["x-rules"]]
    assert party_rules == ["certificate code matches type", "certificate type fits category"]
    amount = penalty["properties"]["fine_amount"]["anyOf"][0]
    assert amount["type"] == "string" and amount["x-unit"].startswith("元")


def test_the_envelope_schema_accepts_wrapped_records(written: Path) -> None:
    schema = load(written, ENVELOPE_SCHEMA_FILE)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for name in NAMES:
        envelope = Envelope.wrap(
            validate(name, sample(name)), source="330000/jghub", operation="i",
            time=datetime(2026, 6, 1, 8, 0), batchno="2026060100001",
        )  # fmt: skip
        validator.validate(json.loads(envelope.to_json()))
    wrong = json.loads(envelope.to_json()) | {"type": "gov.supervision.unknown.v1"}
    assert not validator.is_valid(wrong)


def test_write_schemas_is_deterministic(tmp_path: Path) -> None:
    first = [p.read_bytes() for p in write_schemas(tmp_path / "a")]
    second = [p.read_bytes() for p in write_schemas(tmp_path / "b")]
    assert first == second
    assert dataset_schema(DATASETS["inspection"])["$id"] == "urn:jghub:schema:inspection.v1"
