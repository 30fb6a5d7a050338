"""JSON Schema export of the standard: one schema per dataset version, one for the envelope.

The schemas are JSON Schema 2020-12 as pydantic generates them, enriched with what the standard
knows: every property's Chinese name (``title`` and ``x-zh``), national field codes (``x-codes``,
``x-legacy-codes``), code dictionaries (``enum``, ``x-dictionary``, ``x-labels``), the stage from
which a field is mandatory (``x-required-from-stage``), and at the top the dataset's Chinese name,
event type, key field and cross-field rules (``x-rules``; rules of sub-records sit in their
``$defs``). Cross-field rules are documented, not expressed in JSON Schema: validate with
``standard.datasets.validate`` for the full standard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from standard.datasets import DATASETS, DatasetSpec
from standard.datasets.base import StandardRecord
from standard.datasets.penalty_case import STAGE_ZH, PenaltyCase, transition_table
from standard.envelope import Envelope, schema_uri
from standard.fields import model_in

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE_SCHEMA_FILE = "envelope.v1.schema.json"


def _rules(model: type[StandardRecord]) -> list[dict[str, str]]:
    return [{"name": rule.name, "why": rule.why} for rule in model.rules()]


def _sub_records(model: type[StandardRecord]) -> dict[str, type[StandardRecord]]:
    found: dict[str, type[StandardRecord]] = {}
    for info in model.model_fields.values():
        sub = model_in(info.annotation)
        if sub is not None and issubclass(sub, StandardRecord):
            found[sub.__name__] = sub
            found.update(_sub_records(sub))
    return found


def dataset_schema(spec: DatasetSpec) -> dict[str, Any]:
    """The JSON Schema of one dataset version."""
    schema = spec.model.model_json_schema(mode="validation")
    for name, sub in _sub_records(spec.model).items():
        definition = schema.get("$defs", {}).get(name)
        if definition is not None and sub.rules():
            definition["x-rules"] = _rules(sub)
    head: dict[str, Any] = {
        "$schema": DIALECT,
        "$id": schema_uri(spec),
        "title": f"{spec.zh} ({spec.name} v{spec.version})",
        "x-zh": spec.zh,
        "x-dataset": spec.name,
        "x-type": spec.type,
        "x-version": spec.version,
        "x-key-field": spec.key_field,
        "x-rules": _rules(spec.model),
    }
    if spec.model is PenaltyCase:
        head["x-stages"] = [{"stage": s.value, "zh": zh} for s, zh in STAGE_ZH.items()]
        head["x-stage-transitions"] = transition_table()
    schema.pop("title", None)
    return {**head, **schema}


def envelope_schema() -> dict[str, Any]:
    """The JSON Schema of the envelope (structured mode); ``type`` names the carried dataset."""
    schema = Envelope.model_json_schema(mode="validation")
    schema.pop("title", None)
    schema["properties"]["type"]["enum"] = [spec.type for spec in DATASETS.values()]
    return {
        "$schema": DIALECT,
        "$id": "urn:jghub:schema:envelope.v1",
        "title": "Exchange envelope (CloudEvents 1.0 with jghub extensions)",
        "x-zh": "交换信封",
        **schema,
    }


def write_schemas(out: Path) -> list[Path]:
    """Write every dataset schema and the envelope schema into ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    documents = [(spec.schema_file, dataset_schema(spec)) for spec in DATASETS.values()]
    documents.append((ENVELOPE_SCHEMA_FILE, envelope_schema()))
    for name, document in documents:
        path = out / name
        text = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False) + "\n"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
