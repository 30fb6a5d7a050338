"""Which source fields no mapping reads: the XML elements and attributes, or JSON keys, of sample
payloads that the inbound mapping's paths never touch.

XML is followed node by node: every path of the mapping is evaluated on the samples, and a
selected element counts as read with everything inside it (its string value contains all of
it); an empty element with attributes is reported through its attributes only. A path that
computes a string or boolean instead of selecting nodes (`p:A = '1'`) marks the element and
attribute names it mentions. JSON is followed by key path: a dotted JMESPath
(`reporter.name`) marks exactly that path below its record, any other expression marks the
field names it mentions.

A mapping's `ignore:` names fields read by nobody on purpose, in the form this report writes
them (from the payload's root); a field at or below an ignored path is not reported. An
ignored path that no sample contains, or below which a rule reads a field, is reported in turn
(`ignore_problems`): the list of what nobody reads must stay true as the mapping changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from mappings.errors import PayloadRejected
from mappings.inbound import InboundTranslation
from mappings.language import FieldRule
from mappings.paths import PAYLOAD_ROOT, compile_jmespath, compile_xpath
from mappings.payloads import parse_json, parse_xml

_QNAME_IN_XPATH = re.compile(r"@?(?:[^\W\d][\w.\-]*:)?[^\W\d][\w.\-]*")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass
class Coverage:
    """What the samples of one message type hold and what no rule reads, as generic paths."""

    present: set[str] = field(default_factory=set)
    unread: set[str] = field(default_factory=set)


def coverage(translation: InboundTranslation, payloads: Iterable[bytes]) -> Coverage:
    """The source fields present in `payloads`, and those the mapping's rules never read."""
    found = Coverage()
    for payload in payloads:
        try:
            if translation.mapping.format == "xml":
                present, unread = _unread_xml(translation, payload)
            else:
                present, unread = _unread_json(translation, payload)
        except PayloadRejected:
            continue  # invalid samples have no fields to report
        found.present |= present
        found.unread |= unread
    return found


def unread_fields(translation: InboundTranslation, payloads: Iterable[bytes]) -> list[str]:
    """Generic paths of source fields present in `payloads` that the mapping never reads and
    does not ignore."""
    ignored = [item.path for item in translation.mapping.ignore]
    unread = coverage(translation, payloads).unread
    return sorted(path for path in unread if not any(_below(path, top) for top in ignored))


def ignore_problems(translation: InboundTranslation, payloads: Iterable[bytes]) -> list[str]:
    """One line per `ignore:` entry that is not true of the samples: no sample contains the
    field, or a rule reads it (or something below it)."""
    found = coverage(translation, payloads)
    problems: list[str] = []
    for item in translation.mapping.ignore:
        inside = sorted(path for path in found.present if _below(path, item.path))
        if not inside:
            problems.append(f"ignored {item.path}: no sample contains it")
            continue
        read = [path for path in inside if path not in found.unread]
        if read:
            shown = ", ".join(read[:3]) + (", ..." if len(read) > 3 else "")
            problems.append(f"ignored {item.path}: a rule reads it ({shown})")
    return problems


def _below(path: str, top: str) -> bool:
    top = top.strip()
    return path == top or path.startswith((top + "/", top + ".", top + "[", top + "/@"))


def _rules(translation: InboundTranslation) -> list[FieldRule]:
    envelope = translation.mapping.envelope
    rules = [envelope.operation, envelope.time, envelope.batch_no, envelope.record_id]
    return [*translation.mapping.fields.values(), *(rule for rule in rules if rule is not None)]


# --------------------------------------------------------------------------- XML


class _XmlReads:
    def __init__(self, namespaces: dict[str, str]) -> None:
        self.namespaces = namespaces
        self.elements: set[Any] = set()
        self.attributes: set[tuple[Any, str]] = set()
        self.names: set[str] = set()

    def path(self, text: str, contexts: list[Any], *, as_value: bool = True) -> list[Any]:
        path = compile_xpath(text, self.namespaces)
        selected: list[Any] = []
        for context in contexts:
            result = path.nodes(context)
            if not result and not isinstance(path.evaluate(context), list):
                self.names |= _names(text, self.namespaces)
            selected.extend(result)
        if as_value:
            for node in selected:
                self._mark(node)
        return [node for node in selected if isinstance(node, etree._Element)]

    def _mark(self, node: Any) -> None:
        if isinstance(node, etree._Element):
            self.elements.add(node)
            return
        parent = node.getparent() if hasattr(node, "getparent") else None
        if parent is None:
            return
        if getattr(node, "is_attribute", False):
            self.attributes.add((parent, str(node.attrname)))
        else:
            self.elements.add(parent)

    def rule(self, rule: FieldRule, contexts: list[Any]) -> None:
        if rule.path is not None:
            self.path(rule.path, contexts)
        for part in rule.concat or ():
            self.rule(part, contexts)
        if rule.when is not None:
            self.path(rule.when.path, contexts)
            for branch in (rule.then, rule.else_):
                if branch is not None:
                    self.rule(branch, contexts)
        if rule.each is not None:
            items = self.path(rule.each, contexts, as_value=rule.fields is None)
            for sub in (rule.fields or {}).values():
                self.rule(sub, items)
        elif rule.fields is not None:
            for sub in rule.fields.values():
                self.rule(sub, contexts)


def _names(text: str, namespaces: dict[str, str]) -> set[str]:
    found: set[str] = set()
    for token in _QNAME_IN_XPATH.findall(text):
        attribute = token.startswith("@")
        name = token.lstrip("@")
        prefix, colon, local = name.rpartition(":")
        clark = f"{{{namespaces[prefix]}}}{local}" if colon and prefix in namespaces else local
        found.add(("@" if attribute else "") + clark)
    return found


def _unread_xml(translation: InboundTranslation, payload: bytes) -> tuple[set[str], set[str]]:
    mapping = translation.mapping
    root = parse_xml(payload, translation.system.limits)
    reads = _XmlReads(mapping.namespaces)
    records = reads.path(mapping.records, [root], as_value=False)
    if not records:
        return set(), set()  # not a payload of this message type: nothing to report
    for rule in _rules(translation):
        reads.rule(rule, records)
    prefixes = {uri: prefix for prefix, uri in mapping.namespaces.items()}
    present: set[str] = set()
    unread: set[str] = set()
    for element in root.iter(etree.Element):
        covered = any(node in reads.elements for node in _self_and_ancestors(element))
        is_leaf = not any(isinstance(child.tag, str) for child in element)
        # An empty element with attributes (<Party name=".."/>) carries only its attributes,
        # which are reported one by one below.
        carries_text = bool((element.text or "").strip()) or not element.attrib
        generic = _generic(element, prefixes)
        if is_leaf and carries_text:
            present.add(generic)
            if not covered and _clark_name(element) not in reads.names:
                unread.add(generic)
        for attribute in element.attrib:
            name = str(attribute)
            path = f"{generic}/@{_prefixed(name, prefixes)}"
            present.add(path)
            if covered or (element, name) in reads.attributes or "@" + name in reads.names:
                continue
            unread.add(path)
    return present, unread


def _self_and_ancestors(element: Any) -> Iterable[Any]:
    node = element
    while node is not None:
        yield node
        node = node.getparent()


def _clark_name(element: Any) -> str:
    return str(element.tag)


def _prefixed(clark: str, prefixes: dict[str, str]) -> str:
    if clark.startswith("{"):
        uri, _, local = clark[1:].partition("}")
        prefix = prefixes.get(uri)
        return f"{prefix}:{local}" if prefix else f"{{{uri}}}{local}"
    return clark


def _generic(element: Any, prefixes: dict[str, str]) -> str:
    steps = [_prefixed(str(node.tag), prefixes) for node in _self_and_ancestors(element)]
    return "/" + "/".join(reversed(steps))


# --------------------------------------------------------------------------- JSON


class _JsonReads:
    def __init__(self) -> None:
        self.paths: set[str] = set()
        self.names: set[str] = set()

    def path(self, text: str, prefix: str, *, as_value: bool = True) -> str | None:
        """Mark what a path reads; return its generic path when it is a dotted path."""
        stripped = text.strip()
        base = prefix
        if stripped == "$" or stripped.startswith("$."):
            stripped, base = stripped[2:], ""
        if stripped in ("", "@"):
            generic = base
        elif _DOTTED.fullmatch(stripped):
            generic = f"{base}.{stripped}" if base else stripped
        else:
            self.names |= compile_jmespath(stripped).field_names()
            return None
        if as_value:
            self.paths.add(generic)
        return generic

    def rule(self, rule: FieldRule, prefix: str) -> None:
        if rule.path is not None:
            self.path(rule.path, prefix)
        for part in rule.concat or ():
            self.rule(part, prefix)
        if rule.when is not None:
            self.path(rule.when.path, prefix)
            for branch in (rule.then, rule.else_):
                if branch is not None:
                    self.rule(branch, prefix)
        if rule.each is not None:
            generic = self.path(rule.each, prefix, as_value=rule.fields is None)
            for sub in (rule.fields or {}).values():
                self.rule(sub, f"{generic}[]" if generic is not None else "?")
        elif rule.fields is not None:
            for sub in rule.fields.values():
                self.rule(sub, prefix)

    def covers(self, generic: str) -> bool:
        key = generic.rsplit(".", 1)[-1].removesuffix("[]")
        if key in self.names:
            return True
        # An empty list or object counts as read when what it would hold is read.
        return any(
            generic == read
            or generic.startswith((read + ".", read + "["))
            or read.startswith((generic + ".", generic.removesuffix("[]") + "[]"))
            for read in self.paths
        )


def _unread_json(translation: InboundTranslation, payload: bytes) -> tuple[set[str], set[str]]:
    mapping = translation.mapping
    root = parse_json(payload, translation.system.limits)
    reads = _JsonReads()
    records = compile_jmespath(mapping.records)
    token = PAYLOAD_ROOT.set(root)
    try:
        found = records.evaluate(root)
    finally:
        PAYLOAD_ROOT.reset(token)
    record_prefix = reads.path(mapping.records, "", as_value=False)
    if record_prefix is None or found is None or found == []:
        return set(), set()  # not a payload of this message type: nothing to report
    if isinstance(found, list):
        record_prefix += "[]"
    for rule in _rules(translation):
        reads.rule(rule, record_prefix)
    present = set(_json_leaves(root, ""))
    return present, {leaf for leaf in present if not reads.covers(leaf)}


def _json_leaves(value: Any, prefix: str) -> Iterable[str]:
    if isinstance(value, dict):
        if not value and prefix:
            yield prefix
        for key, item in value.items():
            yield from _json_leaves(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        if not value:
            yield f"{prefix}[]"
        for item in value:
            yield from _json_leaves(item, f"{prefix}[]")
    elif prefix:
        yield prefix
