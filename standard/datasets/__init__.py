"""The standard's datasets: a registry of every canonical record type, and ``validate``.

``DATASETS`` maps a dataset name to its ``DatasetSpec`` (Chinese name, versioned CloudEvents
``type``, model, key field, and what a record names besides itself: ``references``).
``validate("penalty_case", data)`` returns the validated model or raises ``RecordInvalid``
listing every violation with dataset, field (English and Chinese), rule and value.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from standard.datasets.base import StandardRecord, violations_from
from standard.datasets.collaboration_task import CollaborationTask
from standard.datasets.complaint import Complaint
from standard.datasets.enforcement_officer import EnforcementOfficer
from standard.datasets.grassroots_event import GrassrootsEvent
from standard.datasets.inspection import Inspection
from standard.datasets.penalty_case import PenaltyCase, PenaltyStage, check_transition
from standard.datasets.penalty_publication import PenaltyPublication
from standard.datasets.risk_warning import RiskFeedback, RiskWarning
from standard.datasets.supervised_object import SupervisedObject
from standard.datasets.supervision_item import SupervisionItem
from standard.datasets.supervision_notice import SupervisionNotice
from standard.errors import RecordInvalid, UnknownDataset, Violation
from standard.references import References, all_links, linked_datasets, references

TYPE_PREFIX = "gov.supervision."


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the standard: its names, versioned event type, model and key field."""

    name: str
    zh: str
    type: str
    version: int
    model: builtins.type[StandardRecord]
    key_field: str

    def key_of(self, record: StandardRecord | Mapping[str, Any]) -> str:
        """The record's key value (``penalty_id`` of a penalty case, ...)."""
        value = (
            record.get(self.key_field)
            if isinstance(record, Mapping)
            else getattr(record, self.key_field)
        )
        if value is None:
            raise RecordInvalid(
                self.name,
                [
                    Violation(
                        self.name,
                        self.key_field,
                        self.key_zh,
                        "mandatory",
                        None,
                        "the key field is missing",
                    )
                ],
            )
        return str(value)

    def references(self, data: Mapping[str, Any]) -> References:
        """The credit codes and links to other records in `data`, a record of this dataset as
        JSON data (`standard.references`)."""
        return references(self.model, data)

    def linked_datasets(self, path: str) -> tuple[str, ...]:
        """The datasets whose record key the field at `path` holds; () when it links nothing."""
        return linked_datasets(self.model, path)

    @property
    def key_zh(self) -> str:
        """Chinese name of the key field."""
        return self.model.model_fields[self.key_field].title or self.key_field

    @property
    def schema_file(self) -> str:
        """File name of the exported JSON Schema, e.g. ``penalty_case.v1.schema.json``."""
        return f"{self.name}.v{self.version}.schema.json"


def _spec(
    name: str, zh: str, model: type[StandardRecord], key: str, version: int = 1
) -> DatasetSpec:
    if key not in model.model_fields:
        raise ValueError(f"{model.__name__} has no key field {key!r}")
    return DatasetSpec(name, zh, f"{TYPE_PREFIX}{name}.v{version}", version, model, key)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _spec("supervision_item", "监管事项", SupervisionItem, "catalogue_code"),
        _spec("enforcement_officer", "执法人员", EnforcementOfficer, "officer_id"),
        _spec("supervised_object", "监管对象", SupervisedObject, "object_id"),
        _spec("inspection", "检查行为", Inspection, "inspection_id"),
        _spec("penalty_case", "处罚行为", PenaltyCase, "penalty_id"),
        _spec("penalty_publication", "双公示行政处罚", PenaltyPublication, "publication_id"),
        _spec("complaint", "投诉举报", Complaint, "complaint_id"),
        _spec("risk_warning", "风险预警", RiskWarning, "warning_id"),
        _spec("risk_feedback", "风险处置反馈", RiskFeedback, "feedback_id"),
        _spec("collaboration_task", "协同任务", CollaborationTask, "task_id"),
        _spec("grassroots_event", "基层治理事件", GrassrootsEvent, "event_id"),
        _spec("supervision_notice", "督办通知", SupervisionNotice, "notice_id"),
    )
}
_BY_TYPE: dict[str, DatasetSpec] = {spec.type: spec for spec in DATASETS.values()}


def _check_links() -> None:
    """A link naming no dataset is a typo in a model: it fails at import, not in a search."""
    for spec in DATASETS.values():
        for path, linked in all_links(spec.model):
            if linked not in DATASETS:
                raise ValueError(
                    f"{spec.model.__name__}.{path} links {linked!r}, which is not a dataset "
                    f"(known: {', '.join(DATASETS)})"
                )


_check_links()


def dataset(name: str) -> DatasetSpec:
    """The dataset called ``name``; UnknownDataset listing the known ones when there is none."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownDataset(name, DATASETS) from None


def dataset_for_type(type_: str) -> DatasetSpec:
    """The dataset of a CloudEvents ``type`` such as ``gov.supervision.penalty_case.v1``."""
    try:
        return _BY_TYPE[type_]
    except KeyError:
        raise UnknownDataset(type_, _BY_TYPE) from None


def validate(dataset_name: str, data: Mapping[str, Any]) -> StandardRecord:
    """Validate ``data`` as a record of ``dataset_name``; RecordInvalid lists every violation."""
    spec = dataset(dataset_name)
    try:
        return spec.model.model_validate(data)
    except ValidationError as error:
        raise RecordInvalid(spec.name, violations_from(spec.name, spec.model, error)) from None


def validate_json(dataset_name: str, text: str | bytes) -> StandardRecord:
    """Like ``validate`` for a JSON document (exact decimals, no float detour)."""
    spec = dataset(dataset_name)
    try:
        return spec.model.model_validate_json(text)
    except ValidationError as error:
        raise RecordInvalid(spec.name, violations_from(spec.name, spec.model, error)) from None


__all__ = [
    "DATASETS",
    "TYPE_PREFIX",
    "CollaborationTask",
    "Complaint",
    "DatasetSpec",
    "EnforcementOfficer",
    "GrassrootsEvent",
    "Inspection",
    "PenaltyCase",
    "PenaltyPublication",
    "PenaltyStage",
    "References",
    "RiskFeedback",
    "RiskWarning",
    "SupervisedObject",
    "SupervisionItem",
    "SupervisionNotice",
    "check_transition",
    "dataset",
    "dataset_for_type",
    "validate",
    "validate_json",
]
