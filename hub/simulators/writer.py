"""Canonical values written back into a system's own records: its inbound mapping, inverted.

A simulated department answers in its own format. Rather than a second description of every
format, the simulator reads the system's inbound mapping backwards: a field read by
`{path: FKSJ, pipe: [trim, {datetime: "yyyy-MM-dd HH:mm:ss"}]}` is written at `FKSJ` as
`format_datetime` writes it; a code read through `{lookup: task_status}` is written through the
same table in reverse. What the mapping language cannot say backwards (a `concat`, an `each`, a
`const`, a function with no inverse) is refused with the field and the reason, never guessed.

    writer = RecordWriter(mappings, "task_feedback")
    writer.write(record, "feedback_time", moment)     # an lxml element or a parsed JSON object
    writer.write_time(record, moment)                 # the envelope's change time
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jmespath
from lxml import etree

from mappings import SystemMappings
from mappings.functions import FUNCTIONS, BuildContext
from mappings.language import Condition, FieldRule
from mappings.paths import jmespath_truth

NEUTRAL = frozenset({"trim", "upper", "lower", "halfwidth", "text"})
"""Functions that only tidy what they read: written back, the value is already tidy."""
INVERSES: Mapping[str, Callable[[Any], tuple[str, Any]]] = {
    "datetime": lambda options: (
        "format_datetime",
        {"format": _first(options["format"]), "timezone": options["timezone"]},
    ),
    "lookup": lambda options: ("lookup", {**options, "reverse": True}),
    "split": lambda options: ("join", {"separator": options["separator"]}),
}
"""The function that writes what a reading function read, from the reading one's options."""


def _first(patterns: str | list[str]) -> str:
    return patterns if isinstance(patterns, str) else patterns[0]


class RecordWriter:
    """Writes canonical values into records of one inbound message type (module docstring).

    Parameters:
      mappings: the system's compiled mappings (its rules and code tables).
      message_type: an inbound message type of the system.
    """

    def __init__(self, mappings: SystemMappings, message_type: str) -> None:
        self.where = f"{mappings.id} {message_type}"
        self.spec = mappings.inbound_mapping(message_type).mapping
        self.xml = self.spec.format == "xml"
        self.namespaces = dict(self.spec.namespaces or {})
        self._context = BuildContext(tables=mappings.tables, system=mappings.id)

    def write(self, record: Any, field: str, value: Any) -> None:
        """Write canonical `value` (None: remove it) where the mapping reads `field` from
        `record`; a nested object (`dispatcher`) field by field.

        Raises ValueError naming the field when its rule cannot be written backwards.
        """
        rule = self.spec.fields.get(field)
        if rule is None:
            if value is None:
                return
            assumed = self.spec.assume.get(field)
            if assumed is not None:
                raise ValueError(
                    f"{self.where}: {field} is not sent by the system but assumed "
                    f"({assumed.value!r}: {assumed.why}); it cannot be written"
                )
            raise ValueError(f"{self.where}: the mapping reads no field {field!r}")
        self._write(record, _rule(rule), value, field)

    def write_time(self, record: Any, moment: Any) -> None:
        """Write the record's change time (the envelope's `time` rule), when the mapping reads
        one; written after the fields, since a conditional rule looks at them."""
        if self.spec.envelope.time is not None:
            self._write(record, _rule(self.spec.envelope.time), moment, "the change time")

    def read(self, record: Any, path: str) -> Any:
        """The raw value at `path` in `record` (None when absent)."""
        if self.xml:
            found = record.xpath(path, namespaces=self.namespaces)
            if not found:
                return None
            first = found[0]
            return first.text if isinstance(first, etree._Element) else str(first)
        return jmespath.search(path, record)

    def put(self, record: Any, path: str, raw: Any, *, create: bool = True) -> None:
        """Set the raw value at `path` (None: remove it); with `create`, a missing element,
        attribute or key is made one step below where the path's parent already is."""
        if self.xml:
            self._put_xml(record, path, raw, create)
        else:
            put_json(record, path, raw, create=create)

    # ------------------------------------------------------------------ rules

    def _write(self, record: Any, rule: FieldRule, value: Any, field: str) -> None:
        if rule.when is not None:
            branch = rule.then if self._holds(record, rule.when) else rule.else_
            if branch is None:
                raise ValueError(f"{self.where}: {field} is read only when {rule.when.path} holds")
            self._write(record, _rule(branch), value, field)
            return
        if rule.fields is not None and rule.path is None and rule.each is None:
            parts = value if isinstance(value, Mapping) else {}
            for name, part in rule.fields.items():
                self._write(record, _rule(part), parts.get(name), f"{field}.{name}")
            return
        if rule.path is None:
            raise ValueError(
                f"{self.where}: {field} is read by a `{rule.source}` rule, which cannot be "
                "written back; give the template record the value instead"
            )
        raw = None if value is None else self._encoder(rule.pipe, field)(value)
        self.put(record, rule.path, raw)

    def _holds(self, record: Any, condition: Condition) -> bool:
        if condition.test != "truthy" or condition.pipe:
            raise ValueError(
                f"{self.where}: a condition testing {condition.test} cannot choose where to "
                "write; only a bare path can"
            )
        if self.xml:
            found = record.xpath(condition.path, namespaces=self.namespaces)
            return bool(found) if not isinstance(found, list) else len(found) > 0
        return jmespath_truth(jmespath.search(condition.path, record))

    def _encoder(self, pipe: list[Any], field: str) -> Callable[[Any], Any]:
        """The steps that write what `pipe` reads, in reverse order."""
        steps: list[Callable[[Any], Any]] = []
        for item in reversed(pipe):
            name, raw = (item, None) if isinstance(item, str) else next(iter(item.items()))
            if name in NEUTRAL:
                continue
            inverse = INVERSES.get(name)
            if inverse is None:
                raise ValueError(
                    f"{self.where}: {field} is read through `{name}`, which has no inverse "
                    f"(writable: {', '.join(sorted({*NEUTRAL, *INVERSES}))})"
                )
            reading = FUNCTIONS[name].parse_options(raw).model_dump(by_alias=True)
            writing_name, options = inverse(reading)
            writing = FUNCTIONS[writing_name]
            step = writing.build(writing.parse_options(options), self._context)
            assert callable(step), f"{writing_name} reads the record; it has no inverse"
            steps.append(step)

        def encode(value: Any) -> Any:
            for step in steps:
                value = step(value)
            return value

        return encode

    # ------------------------------------------------------------------ XML

    def _put_xml(self, record: etree._Element, path: str, raw: Any, create: bool) -> None:
        found = record.xpath(path, namespaces=self.namespaces)
        text = None if raw is None else str(raw)
        if found:
            _set_found(found[0], text)
            return
        if text is None or not create:
            return
        owner_path, _, last = path.rpartition("/")
        owners = record.xpath(owner_path, namespaces=self.namespaces) if owner_path else [record]
        if not owners or not isinstance(owners[0], etree._Element) or "[" in last:
            raise ValueError(f"{self.where}: nowhere to write {path} in the template record")
        owner = owners[0]
        if last.startswith("@"):
            owner.set(self._qualified(last[1:]), text)
        else:
            etree.SubElement(owner, self._qualified(last)).text = text

    def _qualified(self, name: str) -> str:
        prefix, _, local = name.rpartition(":")
        if not prefix:
            return name
        if prefix not in self.namespaces:
            raise ValueError(f"{self.where}: unknown namespace prefix {prefix!r} in {name}")
        return f"{{{self.namespaces[prefix]}}}{local}"


def _rule(rule: FieldRule | str) -> FieldRule:
    return FieldRule(path=rule) if isinstance(rule, str) else rule


def _set_found(found: Any, text: str | None) -> None:
    """Set (None: remove) an element's text or an attribute an XPath found."""
    if isinstance(found, etree._Element):
        if text is not None:
            found.text = text
        elif (parent := found.getparent()) is not None:
            parent.remove(found)
        return
    owner = found.getparent() if getattr(found, "is_attribute", False) else None
    if owner is None:
        raise ValueError(f"cannot write {found!r}: neither an element nor an attribute")
    if text is None:
        del owner.attrib[found.attrname]
    else:
        owner.set(found.attrname, text)


def put_json(record: Any, path: str, raw: Any, *, create: bool = True) -> None:
    """Set (None: remove) the value at dotted `path` in parsed JSON; with `create`, missing
    objects and keys are made, else only a key already there is changed."""
    *parents, last = path.split(".")
    target = record
    for part in parents:
        if not isinstance(target, dict):
            return
        target = target.setdefault(part, {}) if create and raw is not None else target.get(part)
    if not isinstance(target, dict) or (not create and last not in target):
        return
    if raw is None:
        target.pop(last, None)
    else:
        target[last] = raw
