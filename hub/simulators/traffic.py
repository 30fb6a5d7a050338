"""Realistic traffic of one external system, grown from its sample payloads.

A system folder's valid samples are the templates: a generated batch clones their records, gives
each clone its own key, change-record id and batch number, fresh unified social credit codes and
ID numbers with correctly computed check characters (full-width where the template had
full-width), and a region code drawn from Zhejiang's counties. The codes of organs (registration
authority 1, 机构编制: departments and public institutions) stay: they are the landscape's fixed
actors, whom routing and the disposal ledger know by code; the parties vary. A share of the
records is spoiled on purpose (a credit code whose check character is wrong, a record without
its key), and the folder's invalid samples (entity bombs, external entities, truncated
documents, wrong encodings, records breaking the standard) are replayed as they are.

Every generated payload is translated once here with the system's own mapping, so the numbers it
carries (`records`, `valid`) are what the hub must answer, not what the generator hoped for.

    traffic = SystemTraffic(load_system("mappings/systems/eco-env-penalty"), "case_batch", seed=7)
    payload = traffic.batch(50, invalid_share=0.1)
    payload.body, payload.charset, payload.records, payload.valid
    traffic.hostile()      # the folder's samples a hub must refuse whole

A department's answer is one record written from canonical values (`record`), the inverse of its
inbound mapping (`hub.simulators.writer`), on a copy of the template record most like it:

    traffic = SystemTraffic(mappings, "task_feedback")
    traffic.record({"task_id": "XT-1", "status": "2", "accepted_time": at}, like=[{"status": "2"}])
"""

from __future__ import annotations

import copy
import json
import random
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jmespath
from lxml import etree

from hub.simulators.writer import RecordWriter
from mappings import PayloadRejected, SystemMappings, value_at
from mappings.language import FieldRule
from mappings.payloads import parse_xml
from standard.checks import (
    CheckFailure,
    check_credit_code,
    check_id_number,
    credit_code_check_char,
    id_number_check_char,
    org_code_check_char,
)
from standard.codetables import regions

PayloadKind = Literal["generated", "sample"]

_DECLARATION = re.compile(rb"\A(<\?xml[^>]*\?>)")
_DECLARED_ENCODING = re.compile(rb"""encoding\s*=\s*["']([^"']+)["']""")
_CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# The organisation code inside a credit code must use the credit code's alphabet too.
_ORG_BODY_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_LAST_DIGITS = re.compile(r"(\d+)(?!.*\d)")
_ORG_KEY = "org:"


@dataclass(frozen=True)
class TrafficPayload:
    """One payload as the system would send it, with what the hub must make of it.

    Attributes:
      system, message_type: whose and which.
      body: the bytes to send.
      charset: the charset to declare in Content-Type (None: the payload declares its own).
      kind: "generated" (varied from the templates) or "sample" (a sample file as it is).
      label: where it came from (a sample file name, or "batch N").
      records: records in it the mapping finds (0 when the payload is refused whole).
      valid: records the mapping accepts.
      refused: the rejection kind when the payload is refused whole (encoding, malformed...).
      changed_until: the latest change time its accepted records carry (None: none, or the
        source gives no change time and the hub would take the time it read them).
    """

    system: str
    message_type: str
    body: bytes
    charset: str | None
    kind: PayloadKind
    label: str
    records: int
    valid: int
    refused: str | None = None
    changed_until: datetime | None = None

    @property
    def invalid(self) -> int:
        """Records the hub must reject."""
        return self.records - self.valid


@dataclass(frozen=True)
class _Plan:
    """What a payload is grown to: `size` clones of the template's records in turn (or of
    record `pick` only), each varied, then spoiled by chance (`invalid_share`) or edited."""

    size: int
    invalid_share: float = 0.0
    pick: int | None = None
    edit: Callable[[Any], None] | None = None

    def source(self, records: Sequence[Any], index: int) -> Any:
        """The template record clone `index` copies."""
        return records[index % len(records) if self.pick is None else self.pick]

    def finish(self, clone: Any, spoil: Callable[[Any], Any], chance: random.Random) -> None:
        """Edit the varied clone, or spoil it by chance (drawn only without an edit)."""
        if self.edit is not None:
            self.edit(clone)
        elif chance.random() < self.invalid_share:
            spoil(clone)


@dataclass
class _Template:
    path: Path
    body: bytes
    charset: str | None


class SystemTraffic:
    """Generates one system's payloads of one inbound message type (see the module docstring).

    Parameters:
      mappings: the system's compiled mappings.
      message_type: an inbound message type with at least one valid sample.
      seed: makes the generated values repeatable.
    """

    def __init__(self, mappings: SystemMappings, message_type: str, *, seed: int = 0) -> None:
        self.mappings = mappings
        self.system = mappings.id
        self.message_type = message_type
        self.translation = mappings.inbound_mapping(message_type)
        self.spec = self.translation.mapping
        self._xml = self.spec.format == "xml"
        self._random = random.Random(f"{mappings.id}/{message_type}/{seed}")
        self._serial = self._random.randrange(10_000, 90_000)
        self._batches = 0
        samples = sorted((mappings.folder / "samples" / message_type).glob("*"))
        self._samples = [
            _Template(path, path.read_bytes(), _expected_charset(mappings, message_type, path))
            for path in samples
            if path.is_file()
        ]
        self._templates = [t for t in self._samples if t.path.name.startswith("valid")]
        if not self._templates:
            raise ValueError(
                f"system {self.system} has no valid sample of {message_type} to grow traffic "
                f"from (looked for samples/{message_type}/valid-*)"
            )
        self._key_path = _simple_path(self.spec.fields.get(self.translation.dataset.key_field))
        self._record_id_path = _simple_path(self.spec.envelope.record_id)
        self._batch_path = _simple_path(self.spec.envelope.batch_no)
        self._region_path = _simple_path(self.spec.fields.get("region_code"))
        self.writer = RecordWriter(mappings, message_type)
        self._answers = 0
        self._examples: list[tuple[_Template, int, Mapping[str, Any]]] | None = None

    @property
    def key_path(self) -> str | None:
        """Where a record carries its key (None: not at a simple path); varied in every clone."""
        return self._key_path

    # ------------------------------------------------------------------ payloads

    def batch(self, size: int, *, invalid_share: float = 0.0) -> TrafficPayload:
        """A payload of `size` records cloned from the templates; about `invalid_share` spoiled."""
        if size < 1:
            raise ValueError(f"a batch needs at least one record, not {size}")
        self._batches += 1
        template = self._templates[(self._batches - 1) % len(self._templates)]
        body = self._grown(template, _Plan(size, invalid_share))
        return self._judged(body, template.charset, "generated", f"batch {self._batches}")

    def record(
        self,
        values: Mapping[str, Any],
        *,
        like: Sequence[Mapping[str, Any]] = ({},),
        time: datetime | None = None,
    ) -> TrafficPayload:
        """A payload of one record: a copy of the first template record whose canonical values
        include one of the alternatives in `like` (tried in order), with its key and change id
        varied, `values` (canonical field → value; None removes it) written where the mapping
        reads them, then `time` as its change time.

        Raises ValueError when no template record is like any alternative, or a value cannot be
        written (the field and the reason in the message).
        """
        template, index = self._template_like(like)

        def edit(record: Any) -> None:
            for name, value in values.items():
                self.writer.write(record, name, value)
            if time is not None:
                self.writer.write_time(record, time)

        self._answers += 1
        body = self._one(template, index, edit)
        return self._judged(body, template.charset, "generated", f"answer {self._answers}")

    def example(self, like: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        """The canonical values of the template record `record(like=like)` copies."""
        template, index = self._template_like(like)
        found = self._canonical(template, index)
        assert found is not None  # a template record is chosen among those the mapping reads
        return found

    def _template_like(self, like: Sequence[Mapping[str, Any]]) -> tuple[_Template, int]:
        if self._examples is None:
            self._examples = [
                (template, index, data)
                for template in self._templates
                for index in range(self._record_count(template))
                if (data := self._canonical(template, index)) is not None
            ]
        for wanted in like:
            for template, index, data in self._examples:
                if all(str(data.get(k)) == str(v) for k, v in wanted.items()):
                    return template, index
        raise ValueError(
            f"system {self.system} has no valid {self.message_type} sample record like "
            f"{' or '.join(map(str, like))} to write from"
        )

    def _record_count(self, template: _Template) -> int:
        if self._xml:
            root = parse_xml(template.body, self.mappings.spec.limits, template.charset)
            return len(root.xpath(self.spec.records, namespaces=self.spec.namespaces))
        document = json.loads(template.body.decode(template.charset or "utf-8"))
        found = jmespath.search(self.spec.records, document)
        return len(found) if isinstance(found, list) else 0

    def _canonical(self, template: _Template, index: int) -> Mapping[str, Any] | None:
        """The canonical values of record `index` of `template`, as the mapping reads them."""
        body = self._one(template, index, None)
        try:
            translation = self.mappings.translate(self.message_type, body, charset=template.charset)
        except PayloadRejected:
            return None
        return translation.envelopes[0].data if translation.envelopes else None

    def _one(self, template: _Template, index: int, edit: Callable[[Any], None] | None) -> bytes:
        return self._grown(template, _Plan(1, pick=index, edit=edit))

    def _grown(self, template: _Template, plan: _Plan) -> bytes:
        if self._xml:
            return self._xml_batch(template, plan)
        return self._json_batch(template, plan)

    def samples(self) -> list[TrafficPayload]:
        """Every sample payload of the message type as it is, judged by the mapping."""
        return [self._judged(t.body, t.charset, "sample", t.path.name) for t in self._samples]

    def hostile(self) -> list[TrafficPayload]:
        """The samples the hub must refuse whole (bombs, external entities, broken syntax...)."""
        return [payload for payload in self.samples() if payload.refused]

    def invalid(self) -> list[TrafficPayload]:
        """The invalid samples whose records the hub reads but (some of them) rejects."""
        return [
            payload
            for payload in self.samples()
            if not payload.refused and payload.invalid and payload.label.startswith("invalid")
        ]

    def _judged(
        self, body: bytes, charset: str | None, kind: PayloadKind, label: str
    ) -> TrafficPayload:
        try:
            translation = self.mappings.translate(self.message_type, body, charset=charset)
        except PayloadRejected as rejected:
            return TrafficPayload(
                self.system, self.message_type, body, charset, kind, label, 0, 0, rejected.kind
            )
        bad = len(set(translation.rejected_records()))
        good = len(translation.envelopes)
        changed = None
        if self.spec.envelope.time is not None and translation.envelopes:
            changed = max(envelope.time for envelope in translation.envelopes)
        return TrafficPayload(
            self.system,
            self.message_type,
            body,
            charset,
            kind,
            label,
            good + bad,
            good,
            changed_until=changed,
        )

    # ------------------------------------------------------------------ XML

    def _xml_batch(self, template: _Template, plan: _Plan) -> bytes:
        root = parse_xml(template.body, self.mappings.spec.limits, template.charset)
        records = root.xpath(self.spec.records, namespaces=self.spec.namespaces)
        if not records:
            raise ValueError(f"sample {template.path} has no records at {self.spec.records}")
        parent = records[0].getparent()
        if parent is None:
            raise ValueError(f"sample {template.path}: records must sit below the root element")
        position = parent.index(records[0])
        for record in records:
            parent.remove(record)
        for index in range(plan.size):
            clone = copy.deepcopy(plan.source(records, index))
            self._vary_xml(clone)
            plan.finish(clone, self._spoil_xml, self._random)
            parent.insert(position + index, clone)
        if self._batch_path:
            self._change(root, self._batch_path, self._batch_number())
        return _serialise_xml(root, template.body, template.charset)

    def _vary_xml(self, record: etree._Element) -> None:
        serial = self._next_serial()
        for path in (self._key_path, self._record_id_path):
            if path:
                self._change(record, path, _unique(self.writer.read(record, path), serial))
        if self._region_path:
            current = self.writer.read(record, self._region_path)
            if current and _halfwidth(current).strip() in _county_codes():
                self._change(record, self._region_path, self._random.choice(_county_codes()))
        replaced: dict[str, str] = {}
        # Two passes: credit codes first, then the organisation codes they contain (a record
        # that carries both must keep them consistent: characters 9-17 of the credit code).
        for codes in (self._fresh_code, self._fresh_org_code):
            for node in record.iter():
                if not isinstance(node.tag, str):
                    continue
                if node.text and node.text.strip() and len(node) == 0:
                    node.text = codes(node.text, replaced)
                for name, value in node.attrib.items():
                    node.set(name, codes(value, replaced))

    def _spoil_xml(self, record: etree._Element) -> None:
        if self._random.random() < 0.5 and self._spoil_code_xml(record):
            return
        if self._key_path:
            self._change(record, self._key_path, None)

    def _spoil_code_xml(self, record: etree._Element) -> bool:
        for node in record.iter():
            if isinstance(node.tag, str) and node.text and _is_credit_code(node.text):
                node.text = _wrong_check(node.text)
                return True
        return False

    # ------------------------------------------------------------------ JSON

    def _json_batch(self, template: _Template, plan: _Plan) -> bytes:
        # Plain json (floats, not parse_json's Decimals): the values are written back unchanged.
        document = json.loads(template.body.decode(template.charset or "utf-8"))
        records = jmespath.search(self.spec.records, document)
        if not isinstance(records, list) or not records:
            raise ValueError(f"sample {template.path} has no record list at {self.spec.records}")
        originals = list(records)
        records.clear()
        for index in range(plan.size):
            clone = copy.deepcopy(plan.source(originals, index))
            self._vary_json(clone)
            plan.finish(clone, self._spoil_json, self._random)
            records.append(clone)
        _fix_json_count(document, self.spec.records, plan.size)
        if self._batch_path and self._batch_path.startswith("$."):
            self._change(document, self._batch_path[2:], self._batch_number())
        text = json.dumps(document, ensure_ascii=False)
        return text.encode(template.charset or "utf-8")

    def _vary_json(self, record: Any) -> None:
        serial = self._next_serial()
        for path in (self._key_path, self._record_id_path):
            if path and not path.startswith("$."):
                current = value_at(record, path)
                if isinstance(current, str):
                    self._change(record, path, _unique(current, serial))
                elif isinstance(current, int) and not isinstance(current, bool):
                    self._change(record, path, int(_unique(str(current), serial) or current))
        if self._region_path and not self._region_path.startswith("$."):
            current = value_at(record, self._region_path)
            if isinstance(current, str) and _halfwidth(current).strip() in _county_codes():
                self._change(record, self._region_path, self._random.choice(_county_codes()))
        replaced: dict[str, str] = {}
        for codes in (self._fresh_code, self._fresh_org_code):
            for container, key, value in _json_leaves(record):
                if isinstance(value, str):
                    container[key] = codes(value, replaced)

    def _spoil_json(self, record: Any) -> None:
        if self._random.random() < 0.5:
            for container, key, value in _json_leaves(record):
                if isinstance(value, str) and _is_credit_code(value):
                    container[key] = _wrong_check(value)
                    return
        if self._key_path and not self._key_path.startswith("$."):
            self._change(record, self._key_path, None)

    # ------------------------------------------------------------------ values

    def _change(self, record: Any, path: str, value: Any) -> None:
        """Change (None: remove) a value the template has at `path`; nothing is added."""
        self.writer.put(record, path, value, create=False)

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _batch_number(self) -> str:
        # Date + 5-digit sequence, as the departments number their batches (2019041100002).
        return f"{date.today():%Y%m%d}{self._next_serial() % 100_000:05d}"

    def _fresh_code(self, text: str, replaced: dict[str, str]) -> str:
        """`text` with a new valid credit code or ID number when it is one; else unchanged."""
        if text in replaced:
            return replaced[text]
        fresh = text
        if _is_credit_code(text) and not _is_organ(text):
            fresh = self._credit_code(_halfwidth(text).strip())
        elif _is_id_number(text):
            fresh = self._id_number(_halfwidth(text).strip())
        if fresh is not text:
            fresh = _like(text, fresh)
            replaced[text] = fresh
            old_code, new_code = _halfwidth(text).strip().upper(), _halfwidth(fresh).strip()
            if _is_credit_code(text) and old_code[8:17] != new_code[8:17]:
                replaced[_ORG_KEY + old_code[8:17]] = new_code[8:17]
        return fresh

    def _fresh_org_code(self, text: str, replaced: dict[str, str]) -> str:
        """`text` with the organisation code of a replaced credit code replaced too."""
        value = _halfwidth(text).strip().upper().replace("-", "")
        if len(value) != 9:
            return text
        fresh = replaced.get(_ORG_KEY + value)
        if fresh is None:
            return text
        if "-" in text:
            fresh = f"{fresh[:8]}-{fresh[8]}"
        return _like(text, fresh)

    def _credit_code(self, original: str) -> str:
        # Keep the registration authority, the kind and the region (positions 1-8): they are
        # checked against code tables; only the organisation code and the check characters change.
        body = "".join(self._random.choice(_ORG_BODY_ALPHABET) for _ in range(8))
        org_check = org_code_check_char(body)
        if org_check not in _CREDIT_ALPHABET:
            body = body[:-1] + "0"
            org_check = org_code_check_char(body)
        if org_check not in _CREDIT_ALPHABET:
            return original
        first17 = original[:8] + body + org_check
        return first17 + credit_code_check_char(first17)

    def _id_number(self, original: str) -> str:
        # Region and birth date stay (they must exist); the sequence and the check change.
        first17 = original[:14] + f"{self._random.randrange(0, 1000):03d}"
        return first17 + id_number_check_char(first17)


# ---------------------------------------------------------------------- helpers


def _expected_charset(mappings: SystemMappings, message_type: str, sample: Path) -> str | None:
    expected = mappings.folder / "expected" / message_type / f"{sample.stem}.json"
    if not expected.is_file():
        return None
    try:
        data = json.loads(expected.read_text(encoding="utf-8"))
    except ValueError:
        return None
    charset = (data.get("input") or {}).get("charset") if isinstance(data, dict) else None
    return str(charset) if charset else None


def _simple_path(rule: FieldRule | str | None) -> str | None:
    """The plain path a rule reads (no concat, condition or constant), or None."""
    if rule is None:
        return None
    if isinstance(rule, str):
        return rule
    if rule.path and not (rule.concat or rule.when or rule.each or rule.fields):
        return rule.path
    return None


def _halfwidth(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _like(original: str, fresh: str) -> str:
    """`fresh` written the way `original` was: full-width if it was, with its surrounding space."""
    core = original.strip()
    if core != _halfwidth(core):
        fresh = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in fresh)
    start = original.index(core) if core else 0
    return original[:start] + fresh + original[start + len(core) :]


def _is_credit_code(text: str) -> bool:
    value = _halfwidth(text).strip().upper()
    if len(value) != 18:
        return False
    try:
        check_credit_code(value)
    except (CheckFailure, ValueError):
        return False
    return True


def _is_organ(text: str) -> bool:
    """A credit code registered by the 机构编制 authority (first character 1): a department or
    public institution, not a party."""
    return _halfwidth(text).strip().startswith("1")


def _is_id_number(text: str) -> bool:
    value = _halfwidth(text).strip().upper()
    if len(value) != 18 or not value[:17].isdigit():
        return False
    try:
        check_id_number(value)
    except (CheckFailure, ValueError):
        return False
    return True


def _wrong_check(text: str) -> str:
    core = _halfwidth(text).strip().upper()
    last = core[-1]
    wrong = next(c for c in "ABCDEFGH0123456789" if c != last)
    return _like(text, core[:-1] + wrong)


def _unique(current: str | None, serial: int) -> str | None:
    """`current` with its last digits replaced by `serial` (same width, at most six digits)."""
    if not current:
        return current
    match = _LAST_DIGITS.search(current)
    if match is None:
        return f"{current}-{serial}"
    digits = match.group(1)
    width = min(len(digits), 6)
    number = f"{serial % 10**width:0{width}d}"
    return current[: match.end() - width] + number + current[match.end() :]


@lru_cache(maxsize=1)
def _county_codes() -> tuple[str, ...]:
    """Zhejiang's county-level codes in force today (and for some years: records look back)."""
    today = date.today()
    settled = date(today.year - 3, 1, 1)
    return tuple(
        region.code
        for region in regions().all()
        if region.code.startswith("33")
        and region.level == "county"
        and region.valid_on(today)
        and region.valid_on(settled)
    )


def _serialise_xml(root: etree._Element, template: bytes, charset: str | None) -> bytes:
    declaration = _DECLARATION.match(template)
    if declaration is None:
        return bytes(etree.tostring(root, encoding=charset or "utf-8", xml_declaration=False))
    declared = _DECLARED_ENCODING.search(declaration.group(1))
    name = declared.group(1).decode("ascii").lower() if declared else "utf-8"
    # Departments declare gb2312 and write GBK/GB18030 bytes (rare characters in names); the
    # hub decodes such declarations as GB18030, so this is what the real exporters produce.
    codec = "gb18030" if name.replace("-", "").replace("_", "") in ("gb2312", "gbk") else name
    text = etree.tostring(root, encoding="unicode")
    return declaration.group(1) + b"\n" + text.encode(codec)


def _json_leaves(value: Any) -> Iterator[tuple[Any, Any, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list):
                yield from _json_leaves(item)
            else:
                yield value, key, item
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list):
                yield from _json_leaves(item)
            else:
                yield value, index, item


def _fix_json_count(document: Any, records_path: str, size: int) -> None:
    # Senders state how many records a request holds next to the list ("total": 3).
    parent_path, _, _ = records_path.rpartition(".")
    parent = jmespath.search(parent_path, document) if parent_path else document
    if isinstance(parent, dict) and isinstance(parent.get("total"), int):
        parent["total"] = size
