"""Compiled paths into payloads: XPath 1.0 for XML (lxml), JMESPath for JSON.

JMESPath is used for JSON because it has a written specification and a compliance test suite
(jmespath.org), so a path means the same in every implementation. Paths are compiled once, and
checked at load time by evaluating them on an empty document, which is when lxml reports an
undefined namespace prefix or an unknown function.

The common paths get a faster road with the same result: a child element by name (`p:CaseNo`)
is found through a per-record index of the record's children, built once per record; a child
path (`p:A/p:B`) through the indexes of the elements it passes; an attribute (`@op`) directly,
an attribute of the document's root (`/p:Batch/@no`) on the root element; and a dotted JSON
path (`event.location.code`) by dictionary look-ups. Everything else goes through the compiled
XPath or JMESPath expression. An XML path also has a trimmed reader, its value as the `trim`
function leaves it, so a pipe starting with `trim` costs one call less per field and record.

What a path gives (its *value*): for XML, the string value of the first node selected (the text
of an element, all of its descendants' text included; an attribute's value), or the XPath
string, number or boolean the expression computes; for JSON, the value found. An empty text is
absent (None), as is an empty node-set.

`value_at` walks a dotted path into parsed JSON without compiling it, for the paths that options
name (where a page's records are).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath.parser import ParsedResult
from lxml import etree

_NAME = r"[^\W\d][\w.\-]*"
_QNAME = re.compile(rf"(?:(?P<prefix>{_NAME}):)?(?P<local>{_NAME})")
_CHILD_PATH = re.compile(rf"{_QNAME.pattern}(?:/(?:{_NAME}:)?{_NAME})*")
_ATTRIBUTE = re.compile(rf"@{_QNAME.pattern}")
_JSON_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")

_PROBE = etree.Element("probe")


class PathInvalid(ValueError):
    """A path cannot be compiled or evaluated; the message is lxml's or JMESPath's reason."""


class RecordElement:
    """An XML record being translated: its element and an index of its children by tag.

    The index is built on first use, once per record, and keeps the first child of each name,
    which is what an XPath's first node would be. Elements below the record reached by a child
    path (`dsr:DSR` in `dsr:DSR/dsr:MC`) get their own index, kept here too, so the fields read
    from one sub-element share it.
    """

    __slots__ = ("_children", "_repeated", "_subs", "element")

    def __init__(self, element: etree._Element) -> None:
        self.element = element
        self._children: dict[Any, etree._Element] | None = None
        self._repeated: set[Any] = set()
        self._subs: dict[Any, RecordElement | None] | None = None

    def _index(self) -> dict[Any, etree._Element]:
        children: dict[Any, etree._Element] = {}
        repeated = self._repeated
        for child in self.element:
            tag = child.tag
            if tag in children:
                repeated.add(tag)
            else:
                children[tag] = child
        self._children = children
        return children

    def child(self, tag: str) -> etree._Element | None:
        """The first child element with this Clark-notation tag."""
        children = self._children
        if children is None:
            children = self._index()
        return children.get(tag)

    def sub(self, tag: str) -> RecordElement | None:
        """The first child with this tag as an indexed element, None if there is none.

        Raises LookupError when several children have the tag: a path through it may find its
        first node in any of them, so the caller asks lxml instead.
        """
        subs = self._subs
        if subs is None:
            subs = self._subs = {}
        elif tag in subs:
            return subs[tag]
        element = self.child(tag)
        if tag in self._repeated:
            raise LookupError(tag)
        found = RecordElement(element) if element is not None else None
        subs[tag] = found
        return found


def string_value(node: Any) -> str:
    """XPath 1.0 string value of an element (all descendant text), attribute or text node."""
    if isinstance(node, str):
        return node
    if isinstance(node, etree._Element):
        if len(node) == 0:
            return node.text or ""
        if isinstance(node.tag, str):
            return "".join(node.itertext())
        return node.text or ""  # a comment or processing instruction
    return str(node)


def xpath_value(result: Any) -> Any:
    """A value from an XPath result: first node's string value, or the string/number/boolean."""
    if isinstance(result, list):
        if not result:
            return None
        text = string_value(result[0])
        return text if text else None
    if isinstance(result, bool):
        return result
    if isinstance(result, float):
        if result != result or result in (float("inf"), float("-inf")):
            return None
        return int(result) if result.is_integer() else Decimal(repr(result))
    if isinstance(result, str):
        return result or None
    return result


def xpath_truth(result: Any) -> bool:
    """XPath 1.0 boolean() of a result."""
    if isinstance(result, list | str):
        return len(result) > 0
    if isinstance(result, float):
        return result == result and result != 0
    return bool(result)


@dataclass(frozen=True)
class XmlPath:
    """An XPath compiled against a mapping's namespaces, with a fast road for common shapes."""

    text: str
    namespaces: dict[str, str]
    xpath: etree.XPath
    _value: Callable[[RecordElement], Any] = field(repr=False)
    _trimmed: Callable[[RecordElement], Any] = field(repr=False)

    def value(self, record: RecordElement) -> Any:
        """The path's value on `record` (see the module docstring), None when absent."""
        return self._value(record)

    @property
    def reader(self) -> Callable[[RecordElement], Any]:
        """The function giving the path's value, for callers that call it once per record."""
        return self._value

    @property
    def trimmed_reader(self) -> Callable[[RecordElement], Any]:
        """The function giving the path's value as `trim` leaves it: text stripped of whitespace
        at both ends, None when nothing is left; a number or boolean unchanged."""
        return self._trimmed

    def evaluate(self, node: etree._Element) -> Any:
        """The raw XPath result on any node (a list, string, number or boolean)."""
        return self.xpath(node)

    def nodes(self, node: etree._Element) -> list[Any]:
        """The nodes selected from `node` (elements, or smart strings for attributes and text)."""
        result = etree.XPath(self.text, namespaces=self.namespaces)(node)
        return result if isinstance(result, list) else []


def compile_xpath(text: str, namespaces: dict[str, str]) -> XmlPath:
    """Compile and probe an XPath; raise PathInvalid with lxml's reason."""
    if not text.strip():
        raise PathInvalid("the path is empty")
    try:
        xpath = etree.XPath(text, namespaces=namespaces or None, smart_strings=False)
        xpath(_PROBE)
    except etree.XPathSyntaxError as error:
        raise PathInvalid(f"XPath syntax error in {text!r}: {error}") from None
    except etree.XPathEvalError as error:
        raise PathInvalid(f"XPath {text!r} cannot be evaluated: {error}") from None
    except (etree.XPathError, ValueError, TypeError) as error:
        raise PathInvalid(f"XPath {text!r}: {error}") from None
    return XmlPath(
        text,
        dict(namespaces),
        xpath,
        _fast_xml(text, namespaces, xpath, trim=False),
        _fast_xml(text, namespaces, xpath, trim=True),
    )


def _clark(qname: str, namespaces: dict[str, str]) -> str:
    prefix, _, local = qname.rpartition(":")
    return f"{{{namespaces[prefix]}}}{local}" if prefix else local


def _fast_xml(
    text: str, namespaces: dict[str, str], xpath: etree.XPath, *, trim: bool
) -> Callable[[RecordElement], Any]:
    """The cheapest reader of the path's value; with `trim`, of the value `trim` leaves.

    The text of an element or attribute is absent when empty, and with `trim` when it is only
    whitespace; each shape's reader does that itself rather than through a helper, since it
    runs once per field and record.
    """
    path = text.strip()
    if _QNAME.fullmatch(path):
        tag = _clark(path, namespaces)

        def child_value(record: RecordElement) -> Any:
            element = record.child(tag)
            if element is None:
                return None
            value = element.text if len(element) == 0 else string_value(element)
            if not value:
                return None
            return (value.strip() or None) if trim else value

        return child_value
    if _CHILD_PATH.fullmatch(path):
        tags = [_clark(step, namespaces) for step in path.split("/")]
        element_path = "/".join(tags)
        through, last = tuple(tags[:-1]), tags[-1]

        def descendant_value(record: RecordElement) -> Any:
            node: RecordElement | None = record
            try:
                for tag in through:
                    node = node.sub(tag)  # type: ignore[union-attr]
                    if node is None:
                        return None
                element = node.child(last)  # type: ignore[union-attr]
            except LookupError:  # a repeated step: lxml finds the first node in document order
                element = record.element.find(element_path)
            if element is None:
                return None
            value = element.text if len(element) == 0 else string_value(element)
            if not value:
                return None
            return (value.strip() or None) if trim else value

        return descendant_value
    if _ATTRIBUTE.fullmatch(path):
        attribute = _clark(path[1:], namespaces)

        def attribute_value(record: RecordElement) -> Any:
            value = record.element.get(attribute)
            if not value:
                return None
            return (value.strip() or None) if trim else value

        return attribute_value
    steps, _, last_step = path.rpartition("/@")
    if steps.startswith("/") and _QNAME.fullmatch(steps[1:]) and _QNAME.fullmatch(last_step):
        # An attribute of the document's root element (a batch number): XPath's `/p:Root` is
        # the document element when it has that name, which the root element is asked for.
        root_tag = _clark(steps[1:], namespaces)
        root_attribute = _clark(last_step, namespaces)

        def root_attribute_value(record: RecordElement) -> Any:
            root = record.element.getroottree().getroot()
            value = root.get(root_attribute) if root.tag == root_tag else None
            if not value:
                return None
            return (value.strip() or None) if trim else value

        return root_attribute_value
    if steps and _CHILD_PATH.fullmatch(steps) and _QNAME.fullmatch(last_step):
        through_tags = tuple(_clark(step, namespaces) for step in steps.split("/"))
        name = _clark(last_step, namespaces)

        def child_attribute_value(record: RecordElement) -> Any:
            node: RecordElement | None = record
            try:
                for tag in through_tags:
                    node = node.sub(tag)  # type: ignore[union-attr]
                    if node is None:
                        return None
            except LookupError:  # a repeated step: the first node may be in any of them
                value = xpath_value(xpath(record.element))
                return _trimmed(value) if trim else value
            value = node.element.get(name)  # type: ignore[union-attr]
            if not value:
                return None
            return (value.strip() or None) if trim else value

        return child_attribute_value

    def general_value(record: RecordElement) -> Any:
        value = xpath_value(xpath(record.element))
        return _trimmed(value) if trim else value

    return general_value


def _trimmed(value: Any) -> Any:
    """What the `trim` function leaves of a value: text stripped (None when empty)."""
    return (value.strip() or None) if isinstance(value, str) else value


# The whole JSON payload while its records are translated: `$.` paths start from it.
PAYLOAD_ROOT: ContextVar[Any] = ContextVar("jghub_payload_root", default=None)


@dataclass(frozen=True)
class JsonPath:
    """A JMESPath expression compiled once, with a fast road for dotted field paths.

    JMESPath has no way to reach above the current value, so a path written `$.batchNo` (or
    `$` alone) starts from the whole payload instead of the record, as in JMESPath Community
    Edition's root reference.
    """

    text: str
    expression: ParsedResult
    _value: Callable[[Any], Any] = field(repr=False)
    from_root: bool = False

    def value(self, data: Any) -> Any:
        """The value found (None when absent; an empty string is absent too)."""
        found = self._value(PAYLOAD_ROOT.get() if self.from_root else data)
        return None if found == "" else found

    def evaluate(self, data: Any) -> Any:
        """The raw JMESPath result."""
        return self.expression.search(PAYLOAD_ROOT.get() if self.from_root else data)

    @property
    def reader(self) -> Callable[[Any], Any]:
        """The function giving the path's value (as `value` does)."""
        return self.value

    def field_names(self) -> set[str]:
        """Every field name the expression mentions (for coverage reports)."""
        names: set[str] = set()
        stack = [self.expression.parsed]
        while stack:
            node = stack.pop()
            if node.get("type") == "field":
                names.add(str(node.get("value")))
            stack.extend(child for child in node.get("children", []) if isinstance(child, dict))
        return names


def compile_jmespath(text: str) -> JsonPath:
    """Compile a JMESPath expression; raise PathInvalid with the parser's reason and position."""
    stripped = text.strip()
    if not stripped:
        raise PathInvalid("the path is empty")
    if stripped == "$" or stripped.startswith("$."):
        inner = compile_jmespath(stripped[2:] or "@")
        return JsonPath(text, inner.expression, inner._value, from_root=True)
    try:
        expression = jmespath.compile(text)
        expression.search({})
    except jmespath_errors.ParseError as error:
        found = "the end" if error.token_value is None else repr(error.token_value)
        raise PathInvalid(
            f"JMESPath syntax error in {text!r} at position {error.lex_position}: "
            f"{error.msg} (found {found})"
        ) from None
    except jmespath_errors.LexerError as error:
        raise PathInvalid(
            f"JMESPath syntax error in {text!r} at position {error.lexer_position}: {error.message}"
        ) from None
    except jmespath_errors.JMESPathError as error:
        raise PathInvalid(f"JMESPath {text!r}: {error}") from None
    return JsonPath(text, expression, _fast_json(text.strip(), expression))


def _fast_json(text: str, expression: ParsedResult) -> Callable[[Any], Any]:
    if not _JSON_DOTTED.fullmatch(text):
        return expression.search
    keys = tuple(text.split("."))
    if len(keys) == 1:
        key = keys[0]

        def field_value(data: Any) -> Any:
            return data.get(key) if type(data) is dict else None

        return field_value

    def dotted_value(data: Any) -> Any:
        for key in keys:
            if type(data) is not dict:
                return None
            data = data.get(key)
        return data

    return dotted_value


def value_at(document: Any, dotted: str) -> Any:
    """The value at a dotted path (`data.list`) in parsed JSON; None when a step is missing or
    lands on something that is not an object.

    For the plain dotted paths that options name (where a page's records are): their parts are
    keys, so they need no JMESPath, and the same paths are also written to.
    """
    for key in dotted.split("."):
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def jmespath_truth(value: Any) -> bool:
    """JMESPath truthiness: false, null, empty text, empty list and empty object are false."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True
