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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from lxml import etree
from pydantic import BaseModel, ValidationError

from mappings.compiler import Evaluate, RuleCompiler, Sealed, mapped_dataset
from mappings.errors import RenderError, ValueProblem
from mappings.functions import BuildContext
from mappings.language import RULE_KEYWORDS, FieldRule, OutboundMapping, SystemSpec
from mappings.paths import JsonPath
from mappings.yamlsource import Location, YamlFile
from standard.datasets import DatasetSpec
from standard.envelope import Envelope
from standard.errors import RecordInvalid, quoted

_NAME = r"[^\W\d][\w.\-]*"


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
