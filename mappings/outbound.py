"""Render canonical records into a system's XML or JSON: the reverse mappings.

The template says the output's shape; its leaves are field rules whose paths are JMESPath over
the envelope in its structured form (`data.penalty_id`, `operation`, `time`, `batchno`), so a
rendering can carry envelope attributes as well as the record. When only a record is given,
the envelope attributes are absent. XML is built with lxml element factories in the mapping's
namespaces; JSON with the standard library, decimals written as exact JSON numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeAlias

from lxml import etree
from pydantic import BaseModel, ValidationError

from mappings.compiler import Evaluate, RuleCompiler, Sealed, mapped_dataset
from mappings.errors import MappingEngineError, RenderError, ValueProblem
from mappings.functions import BuildContext
from mappings.language import (
    RULE_KEYWORDS,
    BatchRendering,
    FieldRule,
    OutboundMapping,
    SystemSpec,
)
from mappings.paths import (
    JsonPath,
    PathInvalid,
    XmlPath,
    compile_jmespath,
    compile_xpath,
    xpath_value,
)
from mappings.payloads import parse_json, parse_xml
from mappings.yamlsource import Location, YamlFile
from standard.datasets import DatasetSpec
from standard.envelope import Envelope
from standard.errors import RecordInvalid, quoted

_NAME = r"[^\W\d][\w.\-]*"

RecordPart: TypeAlias = bytes | etree._Element
"""One record's share of a batch (`OutboundRendering.render_part`): its JSON, or its XML
document element."""


@dataclass(frozen=True)
class _Node:
    """One key of the output: a value, an object of nodes, or a list (`each`)."""

    name: str
    target: str  # where it is in the output, for error messages
    value: Evaluate | None
    children: tuple[_Node, ...] | None
    each: JsonPath | None


class OutboundRendering(Sealed):
    """A compiled outbound mapping: renders records of one dataset for one system."""

    def __init__(
        self,
        system: SystemSpec,
        mapping: OutboundMapping,
        document: YamlFile,
        context: BuildContext,
    ) -> None:
        self.system = system
        self.mapping = mapping
        self.document = document
        self.message_type = mapping.message_type
        self.dataset: DatasetSpec = mapped_dataset(mapping.dataset, document)
        self._compiler = RuleCompiler(document, "json", {}, context)
        self._namespaces = dict(mapping.namespaces)
        if mapping.format == "xml":
            self._check_namespaces()
            assert mapping.root is not None
            self._root_tag = self._clark(mapping.root, ("root",))
        self._nodes = self._template(mapping.template, ("template",), "")
        self._batch = (
            _CompiledBatch.compile(self, mapping.batch) if mapping.batch is not None else None
        )
        try:
            "".encode(mapping.encoding)
        except LookupError:
            raise document.error(f"unknown encoding '{mapping.encoding}'", ("encoding",)) from None
        self.seal()

    # ------------------------------------------------------------------ compiling

    def _check_namespaces(self) -> None:
        for prefix, uri in self._namespaces.items():
            if prefix and not re.fullmatch(_NAME, prefix):
                raise self.document.error(
                    f"namespace prefix '{prefix}' is not an XML name", ("namespaces", prefix)
                )
            if not uri:
                raise self.document.error(
                    f"namespace prefix '{prefix}' has an empty URI", ("namespaces", prefix)
                )

    def _clark(self, name: str, location: Location) -> str:
        prefix, colon, local = name.rpartition(":")
        if colon and prefix not in self._namespaces:
            raise self.document.error(
                f"prefix '{prefix}' of '{name}' is not in `namespaces`", location
            )
        uri = self._namespaces.get(prefix) if colon else self._namespaces.get("")
        try:
            etree.QName(uri, local)
        except ValueError as error:
            raise self.document.error(f"'{name}' is not an XML name: {error}", location) from None
        return f"{{{uri}}}{local}" if uri else local

    def _template(self, template: Any, location: Location, target: str) -> tuple[_Node, ...]:
        if not isinstance(template, dict) or not template:
            raise self.document.error(
                "a template is a mapping of output keys to rules or nested templates", location
            )
        nodes: list[_Node] = []
        for key, value in template.items():
            here = (*location, key)
            name = str(key)
            where = f"{target}/{name}" if target else name
            if self.mapping.format == "xml":
                name = self._xml_name(name, here)
            nodes.append(self._node(name, value, here, where))
        return tuple(nodes)

    def _xml_name(self, key: str, location: Location) -> str:
        if key == "#text":
            return key
        if key.startswith("@"):
            attribute = key[1:]
            if ":" in attribute:
                return "@" + self._clark(attribute, location)
            return "@" + attribute
        return self._clark(key, location)

    def _node(self, name: str, value: Any, location: Location, target: str) -> _Node:
        is_rule = isinstance(value, str) or (
            isinstance(value, dict) and bool(RULE_KEYWORDS.intersection(value))
        )
        if not is_rule:
            children = self._template(value, location, target)
            return _Node(name, target, None, children, None)
        try:
            rule = FieldRule.model_validate(value)
        except ValidationError as error:
            raise self.document.validation_error(error, prefix=location, field=target) from None
        if rule.each is not None:
            each = self._compiler.path(rule.each, (*location, "each"), target)
            assert isinstance(each, JsonPath)
            if rule.fields is not None:
                children = self._template(value["fields"], (*location, "fields"), target)
                return _Node(name, target, None, children, each)
            leaf = rule.model_copy(update={"each": None, "path": "@"})
            evaluate = self._compiler.rule(leaf, location, target)
            return _Node(name, target, evaluate, None, each)
        if rule.source == "fields":
            children = self._template(value["fields"], (*location, "fields"), target)
            return _Node(name, target, None, children, None)
        return _Node(name, target, self._compiler.rule(rule, location, target), None, None)

    # ------------------------------------------------------------------ rendering

    def render(self, envelope_or_record: Envelope | BaseModel | Mapping[str, Any]) -> bytes:
        """The payload for one envelope or record; raise RenderError when it cannot be made."""
        context = self._context(envelope_or_record)
        if self.mapping.format == "json":
            document = self._json_object(self._nodes, context)
            try:
                return json.dumps(
                    document, ensure_ascii=False, separators=(",", ":"), default=self._json_value
                ).encode("utf-8")
            except _Inexact as error:
                raise self._error(str(error), None) from None
        root = etree.Element(self._root_tag, nsmap=self._nsmap())
        self._xml_children(root, self._nodes, context)
        return etree.tostring(root, xml_declaration=True, encoding=self.mapping.encoding)

    # ------------------------------------------------------------------ batches

    @property
    def batches(self) -> bool:
        """Whether the mapping says how to wrap records into a batch (its `batch` section)."""
        return self._batch is not None

    def render_part(self, envelope: Envelope) -> RecordPart:
        """One record's share of a batch: its JSON object, or its XML document element.

        RenderError when the record cannot be rendered: it is refused alone, the batch goes on.
        """
        if self.mapping.format == "json":
            return self.render(envelope)
        root = etree.Element(self._root_tag, nsmap=self._nsmap())
        self._xml_children(root, self._nodes, self._context(envelope))
        return root

    def render_batch(
        self, parts: Sequence[RecordPart], keys: Sequence[str], batch_key: str
    ) -> bytes:
        """The body of one batch request: `parts` (from `render_part`) in order, each with its
        record's idempotency key in `keys`, wrapped as the mapping's `batch` section says."""
        batch = self._batch
        assert batch is not None, f"{self.message_type} has no batch section"
        context = {"count": len(parts), "batch_key": batch_key, "time": _now_iso()}
        return batch.body(self, parts, keys, context)

    def read_results(self, answer: bytes, count: int) -> list[RecordResult | None]:
        """Each record's result in the target's `answer` to a batch of `count` records, in the
        batch's order; None for a record the answer does not name (a partial answer).

        BatchAnswerError when the answer cannot be read as the `batch.results` section says.
        """
        batch = self._batch
        assert batch is not None, f"{self.message_type} has no batch section"
        return batch.results(self, answer, count)

    def _nsmap(self) -> dict[str | None, str]:
        return {(prefix or None): uri for prefix, uri in self._namespaces.items()}

    def _context(self, given: Envelope | BaseModel | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(given, Envelope):
            attributes = given.model_dump(exclude={"data"})
            attributes["operation"] = given.operation.value
            try:
                record = given.record()
            except RecordInvalid as invalid:
                raise self._error(str(invalid), None) from None
            data = record.model_dump() if record is not None else dict(given.data)
            return {**attributes, "data": data}
        if isinstance(given, BaseModel):
            return {"data": given.model_dump()}
        try:
            model = self.dataset.model.model_validate(dict(given))
        except ValidationError as error:
            from standard.datasets.base import violations_from

            violations = violations_from(self.dataset.name, self.dataset.model, error)
            raise self._error(str(RecordInvalid(self.dataset.name, violations)), None) from None
        return {"data": model.model_dump()}

    def _value(self, node: _Node, context: Any) -> Any:
        assert node.value is not None
        try:
            return node.value(context)
        except ValueProblem as problem:
            raise self._error(f"rule '{problem.rule}': {problem.message}", node.target) from None

    def _items(self, node: _Node, context: Any) -> list[Any]:
        assert node.each is not None
        found = node.each.evaluate(context)
        if found is None:
            return []
        return found if isinstance(found, list) else [found]

    def _json_object(self, nodes: tuple[_Node, ...], context: Any) -> dict[str, Any] | None:
        result: dict[str, Any] = {}
        for node in nodes:
            value: Any
            if node.each is not None:
                items = self._items(node, context)
                if node.children is not None:
                    value = [self._json_object(node.children, item) or {} for item in items]
                else:
                    value = [v for item in items if (v := self._value(node, item)) is not None]
                value = value or None
            elif node.children is not None:
                value = self._json_object(node.children, context)
            else:
                value = self._value(node, context)
            if value is not None:
                result[node.name] = value
        return result or None

    def _json_value(self, value: Any) -> Any:
        if isinstance(value, Decimal):
            return _exact_json_number(value)
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        raise _Inexact(f"cannot write {type(value).__name__} {quoted(value)} as JSON")

    def _xml_children(self, parent: etree._Element, nodes: tuple[_Node, ...], context: Any) -> None:
        for node in nodes:
            if node.name == "#text":
                text = self._value(node, context)
                if text is not None:
                    parent.text = _xml_text(text)
                continue
            if node.name.startswith("@"):
                value = self._value(node, context)
                if value is not None:
                    parent.set(node.name[1:], _xml_text(value))
                continue
            contexts = self._items(node, context) if node.each is not None else [context]
            for item in contexts:
                if node.children is not None:
                    element = etree.Element(node.name)
                    self._xml_children(element, node.children, item)
                    if len(element) or element.text is not None or element.attrib:
                        parent.append(element)
                    continue
                value = self._value(node, item)
                if value is None:
                    continue
                values = value if isinstance(value, list) else [value]
                for single in values:
                    etree.SubElement(parent, node.name).text = _xml_text(single)

    def _error(self, reason: str, target: str | None) -> RenderError:
        return RenderError(
            reason, system=self.system.id, message_type=self.message_type, target=target
        )


@dataclass(frozen=True)
class RecordResult:
    """What a target answered for one record of a batch: taken, or refused and why."""

    taken: bool
    reason: str = ""


class BatchAnswerError(MappingEngineError, ValueError):
    """A target's answer to a batch cannot be read as its mapping's `batch.results` says."""


@dataclass(frozen=True)
class _CompiledBatch:
    """A mapping's `batch` section, compiled: the batch's own fields and the results' paths."""

    spec: BatchRendering
    nodes: tuple[_Node, ...]
    root_tag: str | None
    each: JsonPath | XmlPath
    index: JsonPath | XmlPath | None
    success: JsonPath | XmlPath
    message: JsonPath | XmlPath | None

    @classmethod
    def compile(cls, rendering: OutboundRendering, spec: BatchRendering) -> _CompiledBatch:
        document = rendering.document
        nodes = (
            rendering._template(spec.template, ("batch", "template"), "batch")
            if spec.template
            else ()
        )
        root_tag = None
        if rendering.mapping.format == "xml":
            root = spec.root or rendering.mapping.root
            assert root is not None
            root_tag = rendering._clark(root, ("batch", "root"))
        namespaces = dict(rendering.mapping.namespaces)
        namespaces.pop("", None)  # XPath 1.0 has no default namespace: prefix every name

        def path(text: str | None, name: str) -> JsonPath | XmlPath | None:
            if text is None:
                return None
            try:
                if rendering.mapping.format == "json":
                    return compile_jmespath(text)
                return compile_xpath(text, namespaces)
            except PathInvalid as error:
                raise document.error(str(error), ("batch", "results", name)) from None

        results = spec.results
        each = path(results.each, "each")
        success = path(results.success, "success")
        assert each is not None and success is not None
        return cls(
            spec,
            nodes,
            root_tag,
            each,
            path(results.index, "index"),
            success,
            path(results.message, "message"),
        )

    def body(
        self,
        rendering: OutboundRendering,
        parts: Sequence[RecordPart],
        keys: Sequence[str],
        context: dict[str, Any],
    ) -> bytes:
        """The batch request's body: `parts` wrapped with the batch's own fields."""
        if self.root_tag is None:
            # Each part is already JSON (rendered, and checked for inexact numbers, alone): the
            # batch splices them in rather than parsing and writing every record twice.
            assert self.spec.records is not None
            own = rendering._json_object(self.nodes, context) or {}
            own.pop(self.spec.records, None)
            head = json.dumps(
                own, ensure_ascii=False, separators=(",", ":"), default=rendering._json_value
            ).encode("utf-8")
            name = json.dumps(self.spec.records, ensure_ascii=False).encode("utf-8")
            opening = head[:-1] + (b"," if own else b"") + name + b":["
            keyed = [self._keyed_json(part, key) for part, key in zip(parts, keys, strict=True)]
            return opening + b",".join(keyed) + b"]}"
        root = etree.Element(self.root_tag, nsmap=rendering._nsmap())
        rendering._xml_children(root, self.nodes, context)
        for part, key in zip(parts, keys, strict=True):
            assert isinstance(part, etree._Element)
            for child in list(part):
                if self.spec.record_key is not None:
                    child.set(self.spec.record_key, key)
                root.append(child)
        return etree.tostring(root, xml_declaration=True, encoding=rendering.mapping.encoding)

    def _keyed_json(self, part: RecordPart, key: str) -> bytes:
        assert isinstance(part, bytes)
        if self.spec.record_key is None:
            return part
        field = json.dumps({self.spec.record_key: key}, ensure_ascii=False).encode("utf-8")
        if part in (b"null", b"{}"):
            return field
        return field[:-1] + b"," + part[1:]

    def results(
        self, rendering: OutboundRendering, answer: bytes, count: int
    ) -> list[RecordResult | None]:
        spec = self.spec.results
        where = f"{rendering.system.id} {rendering.message_type} batch.results"
        try:
            if rendering.mapping.format == "json":
                document: Any = parse_json(answer, rendering.system.limits)
            else:
                document = parse_xml(answer, rendering.system.limits)
        except (MappingEngineError, ValueError) as error:
            raise BatchAnswerError(f"{where}: the answer cannot be parsed: {error}") from None
        found = self.each.evaluate(document)
        if found is None or isinstance(found, str | int | float | bool):
            raise BatchAnswerError(
                f"{where}: `each` ({spec.each}) selects no list of results in the answer"
            )
        items = found if isinstance(found, list) else [found]
        outcomes: list[RecordResult | None] = [None] * count
        for position, item in enumerate(items):
            at = position
            if self.index is not None:
                shown = _text(self._read(self.index, item))
                try:
                    at = int(shown) - spec.first_index
                except ValueError:
                    raise BatchAnswerError(
                        f"{where}: result {position}'s `index` ({spec.index}) is "
                        f"{quoted(shown)}, not a position"
                    ) from None
            if not 0 <= at < count:
                raise BatchAnswerError(
                    f"{where}: result {position} names record {at + spec.first_index}, but the "
                    f"batch had {count} (counted from {spec.first_index})"
                )
            said = _text(self._read(self.success, item))
            if said in spec.values:
                outcomes[at] = RecordResult(True)
                continue
            message = _text(self._read(self.message, item)) if self.message else ""
            because = f" ({message})" if message else ""
            outcomes[at] = RecordResult(
                False,
                f"`{spec.success}` is {quoted(said)}, not one of {spec.values}{because}",
            )
        return outcomes

    @staticmethod
    def _read(path: JsonPath | XmlPath | None, item: Any) -> Any:
        if path is None:
            return None
        if isinstance(path, XmlPath):
            if not isinstance(item, etree._Element):
                return None
            return xpath_value(path.evaluate(item))
        return path.evaluate(item)


def _text(value: Any) -> str:
    """A result's value compared as text: JSON true/false as written, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class _Inexact(ValueError):
    """A value cannot be written as JSON without changing it."""


def _exact_json_number(value: Decimal) -> int | float:
    if value == value.to_integral_value() and abs(value) < 2**53:
        return int(value)
    number = float(value)
    if Decimal(repr(number)) != value:
        raise _Inexact(
            f"{value} cannot be written exactly as a JSON number; render it as text (pipe `text`)"
        )
    return number


def _xml_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)
