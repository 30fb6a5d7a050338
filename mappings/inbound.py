"""Translate a system's payload into envelopes of the standard, record by record.

A compiled inbound mapping is immutable: compiled paths, built pipes and the dataset's model
are looked up once, and translating shares nothing between calls, so one instance serves any
number of threads.

A payload that cannot be read at all (size, encoding, syntax, DOCTYPE) raises PayloadRejected.
Otherwise every record is translated on its own: good records become envelopes, a bad record
becomes one TranslationError per problem, and never sinks the rest of the batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Annotated, Any, get_args

from lxml import etree
from pydantic import BaseModel, TypeAdapter, ValidationError

from mappings.compiler import Evaluate, RuleCompiler, Sealed, mapped_dataset
from mappings.errors import (
    NoRecords,
    PayloadRejected,
    PayloadTooManyRecords,
    TranslationError,
    ValueProblem,
)
from mappings.functions import FUNCTIONS, AmountOptions, BuildContext, LookupOptions
from mappings.language import FieldRule, InboundMapping, SystemSpec
from mappings.paths import (
    PAYLOAD_ROOT,
    JsonPath,
    PathInvalid,
    RecordElement,
    XmlPath,
    compile_xpath,
)
from mappings.payloads import parse_json, parse_xml
from mappings.units import unit_table
from mappings.yamlsource import YamlFile
from standard.datasets.base import StandardRecord, violations_from
from standard.dictionaries import dictionary
from standard.envelope import Envelope
from standard.errors import RecordInvalid, Violation, quoted
from standard.fields import field_meta, model_in, path_parts, zh_path
from standard.references import references
from standard.types import SHANGHAI

log = logging.getLogger(__name__)

OPERATIONS = {
    "insert": "insert",
    "update": "update",
    "delete": "delete",
    "i": "insert",
    "u": "update",
    "d": "delete",
}


@dataclass(frozen=True)
class RecordKeys:
    """What could be read of a rejected record before it failed, for the journal to find it by:
    its dataset, its record key (a case number, a complaint id; None when it could not be read)
    and the credit codes and linked records' keys it names, by field path."""

    dataset: str
    key: str | None = None
    credit_codes: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, envelope: Envelope) -> RecordKeys:
        """The keys of a record that was translated and then refused (by the hub's rules)."""
        found = envelope.spec.references(envelope.data)
        return cls(envelope.spec.name, envelope.subject, found.credit_codes, found.links)


@dataclass(frozen=True)
class Translation:
    """What became of a payload: one envelope per good record, the errors of the bad ones, and
    what could be read of each bad one (`read`, by its index: best effort, maybe missing)."""

    envelopes: list[Envelope] = field(default_factory=list)
    errors: list[TranslationError] = field(default_factory=list)
    read: dict[int, RecordKeys] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every record was translated."""
        return not self.errors

    def rejected_records(self) -> list[int]:
        """0-based positions of the records that were not translated."""
        return sorted({error.record_index for error in self.errors})


@dataclass(frozen=True)
class _Record:
    """One record of a payload: its element (XML) or value (JSON), position and location."""

    context: Any
    index: int
    location: str
    line: int | None


@dataclass(frozen=True)
class _Origin:
    """The payload a record is read from: its digest, and when the hub read it."""

    digest: str
    read_at: datetime


class InboundTranslation(Sealed):
    """A compiled inbound mapping: translates payloads of one message type of one system."""

    def __init__(
        self,
        system: SystemSpec,
        mapping: InboundMapping,
        document: YamlFile,
        context: BuildContext,
    ) -> None:
        self.system = system
        self.mapping = mapping
        self.document = document
        self.message_type = mapping.message_type
        self.dataset = mapped_dataset(mapping.dataset, document)
        model = self.dataset.model
        self._model: type[StandardRecord] = model
        compiler = RuleCompiler(document, mapping.format, mapping.namespaces, context)
        self._compiler = compiler
        self.records_path = compiler.path(mapping.records, ("records",), None)
        _check_target_fields(
            model, mapping.fields, document, ("fields",), context, assumed=set(mapping.assume)
        )
        self._assumed = _check_assumptions(mapping, model, self.dataset.key_field, document)
        self._assumed_lineage = (
            json.dumps(
                {name: rule.why for name, rule in mapping.assume.items()},
                ensure_ascii=False,
                separators=(",", ":"),
            )
            if mapping.assume
            else None
        )
        for index, ignored in enumerate(mapping.ignore):
            compiler.check_path(ignored.path, ("ignore", index, "path"))
        self._fields: tuple[tuple[str, Evaluate], ...] = compiler.fields(
            mapping.fields, ("fields",)
        )
        key = self.dataset.key_field
        if key not in mapping.fields:
            raise document.error(
                f"the mapping does not compute '{key}', the key of dataset "
                f"'{self.dataset.name}'; every record needs it",
                ("fields",),
            )
        self._key = dict(self._fields)[key]
        rules = mapping.envelope
        self._operation = _optional(compiler, rules.operation, ("envelope", "operation"))
        self._time = _optional(compiler, rules.time, ("envelope", "time"))
        self._batch_no = _optional(compiler, rules.batch_no, ("envelope", "batch_no"))
        self._record_id = _optional(compiler, rules.record_id, ("envelope", "record_id"))
        self._validate: Callable[[dict[str, Any]], StandardRecord] = model.model_validate
        self._xml = mapping.format == "xml"
        self.seal()

    # ------------------------------------------------------------------ translating

    def translate(
        self,
        payload: bytes,
        *,
        charset: str | None = None,
        read_at: datetime | None = None,
        max_records: int | None = None,
    ) -> Translation:
        """Translate `payload`; raise PayloadRejected when it cannot be read at all, and
        PayloadTooManyRecords when it holds more than `max_records` records (counted before
        any is translated).

        `read_at` (default: now) is when the hub read the payload: the event time of records whose
        source gives no change time. It never enters their idempotency key or id.
        """
        try:
            root, records = self._records(payload, charset, max_records)
        except PayloadRejected as error:
            raise error.in_context(self.system.id, self.message_type) from None
        origin = _Origin(hashlib.sha256(payload).hexdigest(), read_at or datetime.now(SHANGHAI))
        translation = Translation()
        envelopes = translation.envelopes
        errors = translation.errors
        token = PAYLOAD_ROOT.set(root)
        try:
            for record in records:
                data: dict[str, Any] = {}
                outcome = self._translate_record(record, origin, data)
                if isinstance(outcome, list):
                    errors.extend(outcome)
                    translation.read[record.index] = self._keys_read(data)
                else:
                    envelopes.append(outcome)
        finally:
            PAYLOAD_ROOT.reset(token)
        return translation

    def _records(
        self, payload: bytes, charset: str | None, max_records: int | None
    ) -> tuple[Any, list[_Record]]:
        limits = self.system.limits
        text = self.mapping.records
        root: Any
        if self.mapping.format == "xml":
            root = parse_xml(payload, limits, charset)
            assert isinstance(self.records_path, XmlPath)
            found = self.records_path.evaluate(root)
            nodes = (
                [node for node in found if isinstance(node, etree._Element)]
                if isinstance(found, list)
                else []
            )
            _check_count(len(nodes), max_records)
            records = [
                _Record(node, index, f"({text})[{index + 1}]", node.sourceline)
                for index, node in enumerate(nodes)
            ]
        else:
            root = parse_json(payload, limits, charset)
            assert isinstance(self.records_path, JsonPath)
            found = self.records_path.evaluate(root)
            items = found if isinstance(found, list) else ([] if found is None else [found])
            _check_count(len(items), max_records)
            records = [
                _Record(item, index, _json_location(text, index, isinstance(found, list)), None)
                for index, item in enumerate(items)
            ]
        if not records and not self.mapping.allow_empty:
            raise NoRecords(
                f"the records path {text!r} selects nothing; is this a "
                f"'{self.message_type}' payload? (set allow_empty for empty batches)"
            )
        return root, records

    def _keys_read(self, data: dict[str, Any]) -> RecordKeys:
        """The keys of a rejected record from the fields read before it failed (`data`). Best
        effort: a value of the wrong shape names nothing, and nothing here fails the record's
        rejection."""
        key = _text_or_none(data.get(self.dataset.key_field))
        found = RecordKeys(self.dataset.name, key or None)
        try:
            named = references(self._model, data)
        except Exception:  # a half-read record of any shape: its key is enough
            log.debug("no references read from a rejected %s record", self.dataset.name)
            return found
        return dataclasses.replace(found, credit_codes=named.credit_codes, links=named.links)

    def _translate_record(
        self, record: _Record, origin: _Origin, data: dict[str, Any]
    ) -> Envelope | list[TranslationError]:
        """One record's envelope, or its errors; `data` (empty when called) is left holding the
        canonical fields read, so a rejected record's keys can be told (`_keys_read`)."""
        # The child index lives as long as the record is being translated, not the whole batch.
        context = RecordElement(record.context) if self._xml else record.context
        problems: list[tuple[str, ValueProblem]] = []
        operation = self._envelope_value(self._operation, context, "operation", problems)
        if operation is None and self._operation is None:
            operation = "insert"
        else:
            operation = self._operation_name(operation, problems)
        if problems:
            # Without its operation a record cannot be checked: a delete needs only its key.
            return self._errors(record, problems, [])
        if operation == "delete":
            fields: tuple[tuple[str, Evaluate], ...] = ((self.dataset.key_field, self._key),)
        else:
            fields = self._fields
        for name, evaluate in fields:
            try:
                value = evaluate(context)
            except ValueProblem as problem:
                problems.append((name, problem))
                continue
            if value is not None:
                data[name] = value
        if operation != "delete":
            data.update(self._assumed)
        time = self._envelope_value(self._time, context, "time", problems)
        if time is not None and not (isinstance(time, datetime) and time.tzinfo is not None):
            problems.append(
                ("envelope.time", ValueProblem("envelope time", "must be a date-time", time))
            )
            time = None
        batch_no = self._envelope_value(self._batch_no, context, "batch_no", problems)
        record_id = self._envelope_value(self._record_id, context, "record_id", problems)
        if operation == "delete":
            return self._delete(record, data, problems, time, batch_no, record_id, origin)
        violations: list[Violation] = []
        model: StandardRecord | None = None
        try:
            model = self._validate(data)
        except ValidationError as error:
            failed = {name for name, _ in problems}
            violations = [
                violation
                for violation in violations_from(self.dataset.name, self._model, error)
                if _top(violation.field) not in failed
            ]
        if problems or violations or model is None:
            return self._errors(record, problems, violations)
        return self._envelope(record, model, operation, time, batch_no, record_id, origin)

    def _delete(
        self,
        record: _Record,
        data: dict[str, Any],
        problems: list[tuple[str, ValueProblem]],
        time: Any,
        batch_no: Any,
        record_id: Any,
        origin: _Origin,
    ) -> Envelope | list[TranslationError]:
        key = self.dataset.key_field
        if key not in data and not any(name == key for name, _ in problems):
            problems.append(
                (key, ValueProblem("mandatory", "a delete needs the record's key", None))
            )
        if problems:
            return self._errors(record, problems, [])
        key_value = _text_or_none(data[key]) or ""
        return self._envelope(record, key_value, "delete", time, batch_no, record_id, origin)

    def _envelope(
        self,
        record: _Record,
        content: StandardRecord | str,
        operation: str,
        time: Any,
        batch_no: Any,
        record_id: Any,
        origin: _Origin,
    ) -> Envelope | list[TranslationError]:
        """The event of a valid record, or of a delete of the record with key `content`.

        Without the source's change time, the event's time is when the payload was read, and
        its key comes from the record's content (`Envelope.wrap`, time_from_source).
        """
        attributes: dict[str, Any] = {
            "source": self.system.source,
            "time": time or origin.read_at,
            "time_from_source": time is not None,
            "id": _text_or_none(record_id),
            "batchno": _text_or_none(batch_no),
            "lineagedigest": origin.digest,
            "lineagesystem": self.system.id,
            "lineagelocation": record.location,
        }
        try:
            if isinstance(content, StandardRecord):
                return Envelope.wrap(
                    content,
                    operation=operation,
                    lineageassumed=self._assumed_lineage,
                    **attributes,
                )
            return Envelope.wrap_delete(self.dataset.name, content, **attributes)
        except RecordInvalid as invalid:
            return self._errors(record, [], _envelope_violations(invalid))

    def _envelope_value(
        self,
        evaluate: Evaluate | None,
        context: Any,
        name: str,
        problems: list[tuple[str, ValueProblem]],
    ) -> Any:
        if evaluate is None:
            return None
        try:
            return evaluate(context)
        except ValueProblem as problem:
            problems.append((f"envelope.{name}", problem))
            return None

    def _operation_name(self, value: Any, problems: list[tuple[str, ValueProblem]]) -> str:
        if problems:
            return "insert"
        name = OPERATIONS.get(str(value).strip().lower()) if value is not None else None
        if name is None:
            message = (
                "no operation found"
                if value is None
                else f"{quoted(value)} is not insert, update or delete (nor i, u, d)"
            )
            problems.append(("envelope.operation", ValueProblem("operation", message, value)))
            return "insert"
        return name

    # ------------------------------------------------------------------ errors

    def _errors(
        self,
        record: _Record,
        problems: list[tuple[str, ValueProblem]],
        violations: list[Violation],
    ) -> list[TranslationError]:
        error_of_record = partial(
            TranslationError,
            system=self.system.id,
            message_type=self.message_type,
            record_index=record.index,
            location=record.location,
        )
        errors: list[TranslationError] = []
        for name, problem in problems:
            path = (name, *problem.field_path) if not name.startswith("envelope.") else (name,)
            source_path, line = self._source_of(record, path, problem.source_path)
            errors.append(
                error_of_record(
                    line=line,
                    field=_dotted(path),
                    field_zh=self._zh(path),
                    rule=problem.rule,
                    value=problem.value,
                    source_path=source_path,
                    message=problem.message,
                )
            )
        for violation in violations:
            envelope = violation.field.startswith("envelope.")
            path = (violation.field,) if envelope else path_parts(violation.field)
            source_path, line = self._source_of(record, path, None)
            errors.append(
                error_of_record(
                    line=line,
                    field=violation.field or None,
                    field_zh=None if envelope else violation.field_zh or None,
                    rule=violation.rule,
                    value=violation.value,
                    source_path=source_path,
                    message=violation.message,
                )
            )
        return errors

    def _zh(self, path: tuple[str | int, ...]) -> str | None:
        if isinstance(path[0], str) and path[0].startswith("envelope."):
            return None
        try:
            return zh_path(self._model, path)[1] or None
        except (KeyError, LookupError, ValueError, TypeError, AttributeError):
            return None

    def _source_of(
        self, record: _Record, path: tuple[str | int, ...], known: str | None
    ) -> tuple[str | None, int | None]:
        """The mapping's path for a field and, for XML, the line of the node it read.

        Walks the rules along the field path, stepping into the item of an `each` by its index,
        so `inspectors[1].certificate_number` points at the second inspector's element.
        """
        head, rest = path[0], path[1:]
        if isinstance(head, str) and head.startswith("envelope."):
            rule = getattr(self.mapping.envelope, head.removeprefix("envelope."), None)
        else:
            rule = self.mapping.fields.get(str(head))
        if rule is None:
            return known, record.line
        xml = self._xml
        context: Any = record.context
        while rest:
            part = rest[0]
            if isinstance(part, int) and rule.each is not None:
                if xml:
                    nodes = _nodes(rule.each, self.mapping.namespaces, context)
                    if part >= len(nodes):
                        break
                    context = nodes[part]
                rest = rest[1:]
                if rule.fields is None:
                    return known or rule.each, _line(context) or record.line
                continue
            if isinstance(part, str) and rule.fields is not None and part in rule.fields:
                rule = rule.fields[part]
                rest = rest[1:]
                continue
            break
        text = known or rule.path or rule.each
        if text is None or not xml:
            return text, record.line
        nodes = _nodes(text, self.mapping.namespaces, context)
        return text, (_line(nodes[0]) if nodes else None) or _line(context) or record.line


def _check_count(records: int, max_records: int | None) -> None:
    if max_records is not None and records > max_records:
        raise PayloadTooManyRecords(records, max_records)


def _nodes(text: str, namespaces: dict[str, str], context: Any) -> list[Any]:
    try:
        found = compile_xpath(text, namespaces).nodes(context)
    except PathInvalid:
        return []
    return found


def _line(node: Any) -> int | None:
    if not isinstance(node, etree._Element) and hasattr(node, "getparent"):
        node = node.getparent()
    line = getattr(node, "sourceline", None)
    return line if isinstance(line, int) else None


# Envelope attributes as the mapping names them, for errors the envelope itself reports.
_ENVELOPE_RULES = {
    "id": "envelope.record_id",
    "time": "envelope.time",
    "batchno": "envelope.batch_no",
    "operation": "envelope.operation",
}


def _envelope_violations(invalid: RecordInvalid) -> list[Violation]:
    if invalid.dataset != "envelope":
        return list(invalid.violations)
    return [
        dataclasses.replace(violation, field=_ENVELOPE_RULES.get(violation.field, violation.field))
        for violation in invalid.violations
    ]


def _optional(
    compiler: RuleCompiler, rule: FieldRule | None, location: tuple[str, ...]
) -> Evaluate | None:
    return compiler.rule(rule, location, location[-1]) if rule is not None else None


def _check_target_fields(
    model: type[BaseModel],
    rules: dict[str, FieldRule],
    document: YamlFile,
    location: tuple[str | int, ...],
    context: BuildContext,
    assumed: set[str] | None = None,
) -> None:
    known = model.model_fields
    for name, rule in rules.items():
        if name not in known:
            raise document.error(
                f"dataset model {model.__name__} has no field '{name}'{_close(name, list(known))}",
                (*location, name),
                field=name,
            )
        _check_lookup_codes(model, name, rule, document, (*location, name), context)
        _check_amount_unit(known[name].annotation, name, rule, document, (*location, name))
        nested_rules = rule.fields
        if nested_rules is None:
            continue
        nested = model_in(known[name].annotation)
        if nested is None:
            raise document.error(
                f"field '{name}' of {model.__name__} is not an object, so it has no fields",
                (*location, name),
                field=name,
            )
        _check_target_fields(nested, nested_rules, document, (*location, name, "fields"), context)
    given = set(rules) | (assumed or set())
    missing = [name for name, info in known.items() if info.is_required() and name not in given]
    if missing:
        raise document.error(
            f"mandatory field{'s' if len(missing) > 1 else ''} of {model.__name__} not computed: "
            f"{', '.join(missing)}",
            location,
        )


def _check_assumptions(
    mapping: InboundMapping, model: type[StandardRecord], key: str, document: YamlFile
) -> dict[str, Any]:
    """The assumed values, each checked: a field of the dataset, not mapped from the source
    too, not the key, and a value the field accepts."""
    known = model.model_fields
    values: dict[str, Any] = {}
    for name, assumption in mapping.assume.items():
        where = ("assume", name)
        if name not in known:
            raise document.error(
                f"dataset model {model.__name__} has no field '{name}'{_close(name, list(known))}",
                where,
                field=name,
            )
        if name == key:
            raise document.error(
                f"'{name}' is the key of dataset '{mapping.dataset}'; a key is never assumed",
                where,
                field=name,
            )
        if name in mapping.fields:
            line, _ = document.position(("fields", name))
            raise document.error(
                f"'{name}' is both mapped from the source (fields, line {line}) and assumed; "
                "a field the system sends is not assumed: remove one of them",
                where,
                field=name,
            )
        info = known[name]
        annotation: Any = (
            Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        )
        try:
            TypeAdapter(annotation).validate_python(assumption.value)
        except ValidationError as error:
            problem = error.errors(include_url=False)[0]
            raise document.error(
                f"the assumed value {assumption.value!r} is not a valid '{name}': {problem['msg']}",
                (*where, "value"),
                field=name,
            ) from None
        dictionary_name = field_meta(model, name).dictionary
        if dictionary_name is not None:
            allowed = dictionary(dictionary_name)
            codes = assumption.value if isinstance(assumption.value, list) else [assumption.value]
            if not all(str(code) in allowed for code in codes):
                raise document.error(
                    f"the assumed value {assumption.value!r} is not a code of the standard's "
                    f"dictionary '{dictionary_name}' (codes: {', '.join(allowed.codes())})",
                    (*where, "value"),
                    field=name,
                )
        values[name] = assumption.value
    return values


def _check_amount_unit(
    annotation: Any,
    name: str,
    rule: FieldRule,
    document: YamlFile,
    location: tuple[str | int, ...],
) -> None:
    """An `amount` that feeds a money field must give that field's unit (元 or 万元)."""
    expected = _money_unit(annotation)
    if expected is None:
        return
    for index, item in enumerate(rule.pipe):
        if not isinstance(item, dict) or set(item) != {"amount"}:
            continue
        try:
            options = FUNCTIONS["amount"].parse_options(item["amount"])
        except (ValidationError, ValueError):
            return  # the compiler reports bad options where they are written
        assert isinstance(options, AmountOptions)
        into = unit_table().unit(options.into).name
        if into != expected:
            raise document.error(
                f"function 'amount' gives {into}, but '{name}' holds {expected}; "
                f"write `into: {expected}`",
                (*location, "pipe", index),
                field=name,
            )


def _money_unit(annotation: Any) -> str | None:
    """元 or 万元 when `annotation` is one of the standard's money types (by its `x-unit`)."""
    for metadata in getattr(annotation, "__metadata__", ()):
        schema = getattr(metadata, "json_schema", None)
        if isinstance(schema, dict) and isinstance(schema.get("x-unit"), str):
            return str(schema["x-unit"]).split(" ", 1)[0]
    for argument in get_args(annotation):
        found = _money_unit(argument)
        if found is not None:
            return found
    return None


def _check_lookup_codes(
    model: type[BaseModel],
    name: str,
    rule: FieldRule,
    document: YamlFile,
    location: tuple[str | int, ...],
    context: BuildContext,
) -> None:
    """A table that feeds a dictionary field must give only codes of that dictionary."""
    if not rule.pipe or rule.fields is not None:
        return
    last = rule.pipe[-1]
    if not isinstance(last, dict) or set(last) != {"lookup"}:
        return
    dictionary_name = field_meta(model, name).dictionary
    if dictionary_name is None:
        return
    options = FUNCTIONS["lookup"].parse_options(last["lookup"])
    assert isinstance(options, LookupOptions)
    if options.reverse:
        return
    table = context.tables.get(options.table) if options.table else None
    given = dict(table.forward) if table else dict(options.values or {})
    if options.default is not None:
        given["(default)"] = options.default
    allowed = dictionary(dictionary_name)
    for source, code in given.items():
        if code not in allowed:
            where = f"table '{options.table}'" if options.table else "the listed values"
            raise document.error(
                f"{where} maps {source!r} to {code!r}, which is not a code of the standard's "
                f"dictionary '{dictionary_name}' (codes: {', '.join(allowed.codes())})",
                (*location, "pipe", len(rule.pipe) - 1),
                field=name,
            )


def _close(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _json_location(records: str, index: int, listed: bool) -> str:
    if not listed:
        return records
    return (
        f"{records}[{index}]"
        if records.replace(".", "").replace("_", "").isalnum()
        else (f"({records})[{index}]")
    )


def _top(field_path: str) -> str:
    return field_path.split(".", 1)[0].split("[", 1)[0]


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
