"""The exchange envelope: a CloudEvents 1.0 event carrying one canonical record, plus its lineage.

Attributes (CloudEvents 1.0): ``specversion`` ``1.0``; ``id`` (unique per event); ``source`` (who
changed the record: "province region code/department code", e.g. ``330000/scjgj``); ``type``
(versioned dataset type, ``gov.supervision.penalty_case.v1``); ``subject`` (the record's key);
``time`` (when the record changed, Asia/Shanghai); ``datacontenttype`` ``application/json``;
``dataschema`` (``urn:jghub:schema:penalty_case.v1``); ``data`` (the canonical record).

Extensions (lowercase alphanumerics, as CloudEvents requires):

- ``operation``: ``insert``, ``update`` or ``delete`` (``i``/``u``/``d`` accepted on input).
  Updates and deletes are carried, never dropped; a delete's ``data`` holds only the key.
- ``correlationid``: ties together the events of one exchange (e.g. one pushed batch), optional.
- ``idempotencykey``: what the change is, never when the hub saw it: sha256 (hex) of ``type``,
  ``subject``, ``time`` (UTC, ISO 8601 with microseconds) and ``operation``, joined by newlines,
  when ``time`` is the source's change time; when the source gives none (``time`` is then when
  the hub read the record), sha256 of ``type``, ``subject``, ``content:`` and the digest of the
  canonical record (``content_digest``) and ``operation``. The same change of the same record
  always gets the same key, however often it is sent, read again or replayed; a later change (a
  new ``time``, or new content) or another operation gets a new one. Computed when absent.
- ``id``: unless the sender names its events, derived from the idempotency key (``event_id``),
  so one change is one event, with one id, whenever it is read.
- ``schemaversion``: the dataset version, equal to the ``v`` of ``type``.
- ``lineagedigest``: sha256 (hex) of the raw payload the record was translated from.
- ``lineagesystem``: the external system that sent the payload.
- ``lineagelocation``: where in the payload the record was (XPath or JSON path).
- ``lineageassumed``: the fields the source did not send and the mapping assumed (its
  ``assume:``), as a JSON object in text, field → why: ``{"case_source":"the vendor ..."}``.
  Absent when every field was sent. (A CloudEvents attribute is a string, never an object.)
- ``batchno``: the sender's batch number, date and 5-digit sequence: ``2019041100002``.

Two encodings: structured mode (``to_json``/``from_json``, media type
``application/cloudevents+json``) and the CloudEvents AMQP binding in binary mode (``to_amqp``/
``from_amqp``): the record is the body, attributes travel as ``cloudEvents_``-prefixed application
properties (message headers on RabbitMQ), ``datacontenttype`` as the content type. Pure data: the
bus turns the properties dict into its client's message properties.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Literal, Self

from annotated_types import MaxLen
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from standard import json_text
from standard.datasets import DATASETS, DatasetSpec, dataset, dataset_for_type, validate
from standard.datasets.base import Breach, StandardRecord, rule_errors, violations_from
from standard.errors import EnvelopeInvalid, UnknownDataset, Violation
from standard.types import ShanghaiDateTime, as_shanghai

SPEC_VERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
DATA_CONTENT_TYPE = "application/json"
AMQP_PREFIX = "cloudEvents_"
# Earlier drafts of the AMQP binding used a colon; accepted on input for old senders.
AMQP_PREFIXES = ("cloudEvents_", "cloudEvents:")
ENVELOPE = "envelope"


class Operation(StrEnum):
    """What happened to the record."""

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


_OPERATION_LETTERS = {"i": Operation.INSERT, "u": Operation.UPDATE, "d": Operation.DELETE}
_TIME = TypeAdapter(ShanghaiDateTime)


def payload_digest(raw: bytes) -> str:
    """The lineage digest of a raw payload: sha256, lower-case hex."""
    return hashlib.sha256(raw).hexdigest()


def idempotency_key(type_: str, subject: str, time: datetime, operation: Operation | str) -> str:
    """The idempotency key of a change whose source says when it happened (module docstring)."""
    instant = time.astimezone(UTC).isoformat(timespec="microseconds")
    return _key(type_, subject, instant, operation)


def content_key(
    type_: str, subject: str, data: Mapping[str, Any], operation: Operation | str
) -> str:
    """The idempotency key of a change whose source gives no change time: from its content."""
    return _key(type_, subject, f"content:{content_digest(data)}", operation)


def content_digest(data: Mapping[str, Any]) -> str:
    """sha256 (hex) of a canonical record's JSON form, keys sorted: the same record, the same
    digest, whichever order its fields were read in."""
    return hashlib.sha256(json_text.compact_sorted(data)).hexdigest()


def _key(type_: str, subject: str, changed: str, operation: Operation | str) -> str:
    text = "\n".join((type_, subject, changed, Operation(operation).value))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def event_id(key: str) -> str:
    """The id of the event of the change whose idempotency key is `key` (UUID-shaped)."""
    return str(uuid.UUID(key[:32]))


def _digest_event_id(key: str) -> str:
    """`event_id` of a key the hub computed (a sha256 hexdigest, so lower-case hex): the same
    text as ``str(uuid.UUID(key[:32]))``, cut from the key instead of parsed and printed."""
    return f"{key[:8]}-{key[8:12]}-{key[12:16]}-{key[16:20]}-{key[20:32]}"


def schema_uri(spec: DatasetSpec) -> str:
    """The ``dataschema`` URI of a dataset version."""
    return f"urn:jghub:schema:{spec.name}.v{spec.version}"


_BY_MODEL: dict[type[BaseModel], DatasetSpec] = {spec.model: spec for spec in DATASETS.values()}


def dataset_for_model(model: type[BaseModel]) -> DatasetSpec:
    """The dataset whose model is ``model``."""
    try:
        return _BY_MODEL[model]
    except KeyError:
        raise UnknownDataset(model.__name__, DATASETS) from None


def _is_assumed_object(text: str) -> bool:
    """Whether `text` is a JSON object of field → why (``lineageassumed``)."""
    try:
        found = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(found, dict) and all(
        isinstance(key, str) and isinstance(why, str) for key, why in found.items()
    )


def _batch_date_ok(batchno: str) -> bool:
    try:
        date(int(batchno[:4]), int(batchno[4:6]), int(batchno[6:8]))
    except ValueError:
        return False
    return True


class Envelope(BaseModel):
    """One CloudEvent carrying one record of the standard (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    specversion: Literal["1.0"] = Field(default="1.0", description="CloudEvents version, 1.0.")
    id: str = Field(
        min_length=1,
        max_length=128,
        description=(
            "Id of this event: the sender's own, or derived from the idempotency key (one change, "
            "one id)."
        ),
    )
    source: str = Field(
        min_length=1,
        max_length=200,
        description="Who changed the record: province region code and department, "
        "e.g. 330000/scjgj.",
    )
    type: str = Field(
        pattern=r"^gov\.supervision\.[a-z_]+\.v[0-9]+$",
        description="Versioned dataset type, e.g. gov.supervision.penalty_case.v1.",
    )
    subject: str = Field(min_length=1, max_length=128, description="The record's key value.")
    time: ShanghaiDateTime = Field(description="When the record changed (变更时间).")
    datacontenttype: Literal["application/json"] = Field(
        default="application/json", description="Media type of data."
    )
    dataschema: str | None = Field(
        default=None, description="URI of the dataset's JSON Schema, urn:jghub:schema:<name>.v<n>."
    )
    operation: Operation = Field(description="insert, update or delete (i, u, d accepted).")
    correlationid: str | None = Field(
        default=None, max_length=128, description="Ties together the events of one exchange."
    )
    idempotencykey: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description=(
            "sha256 of type, subject, UTC change time (or, without one, the record's content "
            "digest) and operation; computed when absent."
        ),
    )
    schemaversion: int = Field(ge=1, description="Dataset version; equals the v of type.")
    lineagedigest: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="sha256 of the raw payload."
    )
    lineagesystem: str | None = Field(
        default=None, max_length=100, description="External system the payload came from."
    )
    lineagelocation: str | None = Field(
        default=None, max_length=500, description="XPath or JSON path of the record in it."
    )
    lineageassumed: str | None = Field(
        default=None,
        max_length=4000,
        description=(
            "Fields the source did not send and the mapping assumed: a JSON object in text, "
            "field → why."
        ),
    )
    batchno: str | None = Field(
        default=None,
        pattern=r"^[0-9]{13}$",
        description="Sender's batch number: yyyymmdd and a 5-digit sequence, 2019041100002.",
    )
    data: dict[str, Any] = Field(
        description="The canonical record (JSON form); for a delete only its key field."
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_derived(cls, raw: Any) -> Any:
        if not isinstance(raw, Mapping):
            return raw
        values = dict(raw)
        operation = values.get("operation")
        if isinstance(operation, str):
            letter = operation.strip().lower()
            values["operation"] = _OPERATION_LETTERS.get(letter, letter)
        spec = _spec_or_none(values.get("type"))
        if spec is not None:
            values.setdefault("schemaversion", spec.version)
        if values.get("idempotencykey") is None and spec is not None:
            try:
                changed = _TIME.validate_python(values.get("time"))
                operation = Operation(str(values.get("operation")))
            except (ValidationError, ValueError):
                return values  # the field errors on time or operation say what is wrong
            subject = str(values.get("subject"))
            values["idempotencykey"] = idempotency_key(spec.type, subject, changed, operation)
        key = values.get("idempotencykey")
        if values.get("id") is None:
            # A key that is not one is reported on its own field; the id then needs a value.
            values["id"] = (
                event_id(key) if isinstance(key, str) and len(key) == 64 else str(uuid.uuid4())
            )
        return values

    @field_validator("lineageassumed")
    @classmethod
    def _assumed_object(cls, value: str | None) -> str | None:
        if value is not None and not _is_assumed_object(value):
            raise PydanticCustomError(
                "code_check",
                "{message}",
                {
                    "rule": "assumed fields",
                    "message": "lineageassumed must be a JSON object of field → why, as text",
                },
            )
        return value

    @field_validator("batchno")
    @classmethod
    def _batch_date(cls, value: str | None) -> str | None:
        if value is not None and not _batch_date_ok(value):
            raise PydanticCustomError(
                "code_check",
                "{message}",
                {
                    "rule": "batch number date",
                    "message": f"batch number {value} does not start with a real date yyyymmdd",
                },
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        spec = _spec_or_none(self.type)
        breaches: list[tuple[str, Breach]] = []
        if spec is None:
            known = ", ".join(s.type for s in DATASETS.values())
            message = f"type {self.type} is not a dataset of the standard; known: {known}"
            breaches.append(("known type", Breach("type", self.type, message)))
        else:
            if self.schemaversion != spec.version:
                message = f"{self.schemaversion} differs from the version of type {self.type}"
                breaches.append(
                    ("schema version", Breach("schemaversion", self.schemaversion, message))
                )
            key = self.data.get(spec.key_field)
            if key is None or str(key) != self.subject:
                message = f"value {self.subject} must equal data.{spec.key_field} ({key}), the key"
                breaches.append(("subject is the key", Breach("subject", self.subject, message)))
            # Only a delete is limited to its key: other events skip building the list.
            extra = (
                sorted(set(self.data) - {spec.key_field})
                if self.operation is Operation.DELETE
                else []
            )
            if extra:
                message = f"a delete carries only the key {spec.key_field}; remove {extra}"
                breaches.append(("delete carries only the key", Breach("data", extra, message)))
        if breaches:
            raise rule_errors(type(self).__name__, breaches)
        return self

    # -- building ---------------------------------------------------------------------------------

    @classmethod
    def wrap(
        cls,
        record: StandardRecord,
        *,
        source: str,
        operation: Operation | str,
        time: datetime,
        id: str | None = None,
        correlationid: str | None = None,
        lineagedigest: str | None = None,
        lineagesystem: str | None = None,
        lineagelocation: str | None = None,
        batchno: str | None = None,
        time_from_source: bool = True,
        lineageassumed: str | None = None,
        derive: bool = True,
    ) -> Envelope:
        """Wrap a validated record; ``time`` is when it changed. A delete keeps only the key.

        ``time_from_source`` False: the source gave no change time and ``time`` is when the hub
        read the record; the idempotency key then comes from the record's content (never the
        clock), so reading the same record again gives the same key and id. ``derive`` False
        takes the straightforward path to the same event (`_build`).
        """
        spec = dataset_for_model(type(record))
        data = record.model_dump(mode="json")
        letter = str(operation).strip().lower()
        op = _OPERATION_LETTERS.get(letter) or Operation(letter)
        if op is Operation.DELETE:
            data = {spec.key_field: data[spec.key_field]}
        return cls._build(
            spec, data, source=source, operation=op, time=time, id=id,
            correlationid=correlationid, lineagedigest=lineagedigest,
            lineagesystem=lineagesystem, lineagelocation=lineagelocation, batchno=batchno,
            time_from_source=time_from_source, derive=derive,
            lineageassumed=lineageassumed if op is not Operation.DELETE else None,
        )  # fmt: skip

    def assumed(self) -> dict[str, str]:
        """The fields the mapping assumed (``lineageassumed``), field → why; empty when none."""
        if not self.lineageassumed:
            return {}
        found: dict[str, str] = json.loads(self.lineageassumed)  # checked when validated
        return found

    @classmethod
    def wrap_delete(
        cls,
        dataset_name: str,
        key: str,
        *,
        source: str,
        time: datetime,
        id: str | None = None,
        correlationid: str | None = None,
        lineagedigest: str | None = None,
        lineagesystem: str | None = None,
        lineagelocation: str | None = None,
        batchno: str | None = None,
        time_from_source: bool = True,
        derive: bool = True,
    ) -> Envelope:
        """A delete event for the record ``key`` of ``dataset_name`` (only the key is carried).

        ``time_from_source`` and ``derive``: as for `wrap`.
        """
        spec = dataset(dataset_name)
        return cls._build(
            spec, {spec.key_field: key}, source=source, operation=Operation.DELETE, time=time,
            id=id, correlationid=correlationid, lineagedigest=lineagedigest,
            lineagesystem=lineagesystem, lineagelocation=lineagelocation, batchno=batchno,
            time_from_source=time_from_source, derive=derive,
        )  # fmt: skip

    @classmethod
    def _build(
        cls,
        spec: DatasetSpec,
        data: dict[str, Any],
        *,
        operation: Operation,
        time_from_source: bool,
        derive: bool = True,
        **attributes: Any,
    ) -> Envelope:
        """The event of `data`, validated. `derive` False leaves the idempotency key and id to
        the model's own derivation (`_fill_derived`): the straightforward path, kept as the
        reference the fast one is tested against (tests/mappings/test_translation_fast_path.py)."""
        values = {k: v for k, v in attributes.items() if v is not None}
        subject = str(data[spec.key_field])
        if not time_from_source:
            values["idempotencykey"] = content_key(spec.type, subject, data, operation)
        values.update(
            type=spec.type,
            subject=subject,
            dataschema=schema_uri(spec),
            operation=operation,
            schemaversion=spec.version,
            data=data,
        )
        if derive:
            _derive_key_and_id(spec, values)
            if _valid_as_built(spec, values):
                values["time"] = as_shanghai(values["time"])
                return cls._trusted(values)
        return cls._checked(values)

    @classmethod
    def _trusted(cls, values: dict[str, Any]) -> Envelope:
        """The event of `values`, known valid (`_valid_as_built`), made as `model_construct`
        makes it (fields in declaration order, defaults filled, the given names as the fields
        set) without its general work: a seventh of the model's validation, against three fifths
        for `model_construct` (the fast path's test compares every event with the validated
        one)."""
        envelope = cls.__new__(cls)
        filled = {name: values.get(name, default) for name, default in _ENVELOPE_DEFAULTS.items()}
        object.__setattr__(envelope, "__dict__", filled)
        object.__setattr__(envelope, "__pydantic_fields_set__", set(values))
        object.__setattr__(envelope, "__pydantic_extra__", None)
        object.__setattr__(envelope, "__pydantic_private__", None)
        return envelope

    @classmethod
    def _checked(cls, values: Mapping[str, Any]) -> Envelope:
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise EnvelopeInvalid(ENVELOPE, violations_from(ENVELOPE, cls, error)) from None

    # -- reading ----------------------------------------------------------------------------------

    @property
    def spec(self) -> DatasetSpec:
        """The dataset the event carries."""
        return dataset_for_type(self.type)

    def record(self) -> StandardRecord | None:
        """The carried record, validated (RecordInvalid if it breaks the standard); None for a
        delete, which carries only the key."""
        if self.operation is Operation.DELETE:
            return None
        return validate(self.spec.name, self.data)

    # -- structured mode --------------------------------------------------------------------------

    def to_json(self) -> bytes:
        """The event in CloudEvents JSON structured mode (absent attributes left out)."""
        attributes = self.model_dump(mode="json", exclude_none=True, exclude={"data"})
        attributes["data"] = self.data
        return json_text.compact(attributes)

    @classmethod
    def from_json(cls, text: str | bytes, *, check_record: bool = True) -> Envelope:
        """Parse a structured-mode event; EnvelopeInvalid or, for the record, RecordInvalid."""
        try:
            raw = json_text.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise EnvelopeInvalid(
                ENVELOPE, [Violation(ENVELOPE, "", "", "JSON", None, f"not JSON: {error}")]
            ) from None
        if not isinstance(raw, dict):
            raise EnvelopeInvalid(
                ENVELOPE,
                [Violation(ENVELOPE, "", "", "JSON object", None, "the event is not an object")],
            )
        envelope = cls._checked(raw)
        if check_record:
            envelope.record()
        return envelope

    # -- AMQP binary mode -------------------------------------------------------------------------

    def to_amqp(self) -> tuple[dict[str, Any], bytes]:
        """(message properties, body) in the CloudEvents AMQP binding's binary mode.

        Properties: ``content_type`` (datacontenttype), ``message_id`` (id), ``correlation_id``
        (correlationid, when set) and ``headers`` with every other attribute as
        ``cloudEvents_<name>``. The body is the record's JSON.
        """
        attributes = self.model_dump(
            mode="json", exclude_none=True, exclude={"data", "datacontenttype"}
        )
        headers = {f"{AMQP_PREFIX}{name}": value for name, value in attributes.items()}
        properties: dict[str, Any] = {
            "content_type": self.datacontenttype,
            "message_id": self.id,
            "headers": headers,
        }
        if self.correlationid is not None:
            properties["correlation_id"] = self.correlationid
        body = json_text.compact(self.data)
        return properties, body

    @classmethod
    def from_amqp(
        cls, properties: Mapping[str, Any] | Any, body: bytes, *, check_record: bool = True
    ) -> Envelope:
        """Rebuild an event from binary-mode message properties (a mapping or an object with
        ``content_type`` and ``headers`` attributes, such as a client's properties) and body."""
        headers = _property(properties, "headers") or {}
        values: dict[str, Any] = {}
        for name, value in dict(headers).items():
            for prefix in AMQP_PREFIXES:
                if isinstance(name, str) and name.startswith(prefix):
                    text = value.decode("utf-8") if isinstance(value, bytes) else value
                    values[name.removeprefix(prefix)] = text
        content_type = _property(properties, "content_type")
        if content_type is not None:
            values["datacontenttype"] = content_type
        try:
            values["data"] = json_text.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise EnvelopeInvalid(
                ENVELOPE, [Violation(ENVELOPE, "data", "", "JSON", None, f"body not JSON: {error}")]
            ) from None
        envelope = cls._checked(values)
        if check_record:
            envelope.record()
        return envelope


# Every field of the envelope in declaration order, with its default (None for a required one,
# which `_valid_as_built` has seen given). Plain values: no field has a default factory.
_ENVELOPE_DEFAULTS: dict[str, Any] = {
    name: None if field.is_required() else field.default
    for name, field in Envelope.model_fields.items()
}
assert not Envelope.__private_attributes__ and not any(
    field.default_factory for field in Envelope.model_fields.values()
)


def _derive_key_and_id(spec: DatasetSpec, values: dict[str, Any]) -> None:
    """Fill ``idempotencykey`` and ``id`` of an event `Envelope._build` assembled, as
    `_fill_derived` would, with less work; the model still validates every attribute.

    Safe because `_build` made ``type`` from `spec`, ``subject`` the key's text and
    ``operation`` an Operation, so `_fill_derived`'s look-ups give back these same values; a
    ``time`` of exactly ``datetime`` passes ``ShanghaiDateTime`` unchanged but for `as_shanghai`,
    which is applied here as the model would. The key is then a sha256 hexdigest, so its id can
    be cut from it (`_digest_event_id`). Anything else (a time of another type) is left to
    `_fill_derived`, whose field errors say what is wrong.
    """
    if "idempotencykey" not in values:
        time = values.get("time")
        if type(time) is not datetime:
            return
        values["idempotencykey"] = idempotency_key(
            spec.type, values["subject"], as_shanghai(time), values["operation"]
        )
    if "id" not in values:
        values["id"] = _digest_event_id(values["idempotencykey"])


_HEX_KEY = re.compile(r"[0-9a-f]{64}")
_BATCH_NO = re.compile(r"[0-9]{13}")
_TYPE = re.compile(r"gov\.supervision\.[a-z_]+\.v[0-9]+")


def _max_length(name: str) -> int | None:
    """The most characters `Envelope`'s field `name` takes (its `max_length`; None: no limit)."""
    limits = [m.max_length for m in Envelope.model_fields[name].metadata if isinstance(m, MaxLen)]
    return limits[0] if limits else None


# The text attributes `_build` may be given, each with its most characters, read from the model
# so that the fast path's limits cannot drift from the ones `Envelope` validates.
_TEXT_LIMITS = {
    name: _max_length(name)
    for name in ("id", "source", "subject", "dataschema", "correlationid", "lineagesystem",
                 "lineagelocation", "lineageassumed")
}  # fmt: skip


def _valid_as_built(spec: DatasetSpec, values: dict[str, Any]) -> bool:
    """Whether the event `_build` assembled in `values` (key and id derived) certainly passes
    `Envelope`'s validation with every value as it is but ``time``, which the model puts in
    Asia/Shanghai: then `Envelope.model_construct` gives the very event `model_validate` would,
    without its work. A narrow check: anything it does not vouch for (text with surrounding
    whitespace, an attribute not of exactly the type the model keeps) is left to the model,
    whose errors say what is wrong.
    """
    for name, limit in _TEXT_LIMITS.items():
        text = values.get(name)
        if text is None and name not in ("id", "source", "subject"):
            continue
        if type(text) is not str or not text or text != text.strip():
            return False
        if limit is not None and len(text) > limit:
            return False
    digest = values.get("lineagedigest")
    assumed = values.get("lineageassumed")
    batch_no = values.get("batchno")
    key = values.get("idempotencykey")
    data = values["data"]
    return (
        type(values.get("time")) is datetime
        and values["time"].tzinfo is not None
        and values["time"].utcoffset() is not None
        and (assumed is None or _is_assumed_object(assumed))
        and type(key) is str
        and _HEX_KEY.fullmatch(key) is not None
        and (digest is None or (type(digest) is str and _HEX_KEY.fullmatch(digest) is not None))
        and (
            batch_no is None
            or (type(batch_no) is str and _BATCH_NO.fullmatch(batch_no) is not None
                and _batch_date_ok(batch_no))
        )
        and type(values["operation"]) is Operation
        and values["type"] == spec.type
        and _TYPE.fullmatch(spec.type) is not None
        and dataset_for_type(spec.type) is spec
        and type(values["schemaversion"]) is int
        and values["schemaversion"] == spec.version >= 1
        and type(data) is dict
        and all(type(name) is str for name in data)
        and data.get(spec.key_field) is not None
        and str(data[spec.key_field]) == values["subject"]
        and (values["operation"] is not Operation.DELETE or len(data) == 1)
    )  # fmt: skip


def _property(properties: Mapping[str, Any] | Any, name: str) -> Any:
    if isinstance(properties, Mapping):
        return properties.get(name)
    return getattr(properties, name, None)


def _spec_or_none(type_: object) -> DatasetSpec | None:
    if not isinstance(type_, str):
        return None
    try:
        return dataset_for_type(type_)
    except UnknownDataset:
        return None
