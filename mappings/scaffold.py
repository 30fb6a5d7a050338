"""Suggest, for each leaf of a sample payload, the canonical field it most likely feeds.

`jghub mappings scaffold` writes a system folder from sample payloads; this module does the
thinking: it reads a sample (JSON or XML, the charset from the XML declaration), finds the
repeating element or array that holds the records, lists every leaf path as the mapping
language writes it (XPath with the document's prefixes, JMESPath), and scores each field of the
chosen dataset (and the envelope's operation, time, record id and batch number) against it by

- **name**: the leaf's name against the field's English name, its national field codes, the
  pinyin initials and the pinyin of its Chinese name (`CFJDRQ`, `cfjdrq` → 处罚决定日期 →
  decision_date), the parent's name included (`DSR/MC` → 当事人 名称); a Chinese element name or
  comment is compared with the Chinese name itself;
- **value shape**: dates and times in the patterns `mappings.dateformats` reads, amounts,
  unified social credit codes (check digit by `standard.checks`), 6-digit region codes of the
  standard's region table, ID numbers, yes/no flags, short codes, long texts.

`evaluate()` measures the suggester on the shipped systems: for every inbound mapping and its
valid samples, the share of mapped source fields whose top suggestion is the field the shipped
mapping really fills from them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from difflib import SequenceMatcher
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from lxml import etree
from pydantic import BaseModel

from mappings.dateformats import PatternInvalid, build_date, compile_pattern
from mappings.language import FieldRule, InboundMapping
from mappings.payloads import PayloadLimits, parse_json, parse_xml
from standard.checks import CheckFailure, check_credit_code, check_id_number, check_region
from standard.datasets import DATASETS
from standard.dictionaries import dictionary
from standard.fields import field_meta, model_in

# Date and time patterns tried on values, most specific first (Java letters, as mappings say them).
DATE_PATTERNS = (
    "yyyy-MM-dd HH:mm:ss",
    "yyyy/MM/dd HH:mm:ss",
    "yyyy-MM-dd'T'HH:mm:ss",
    "yyyyMMddHHmmss",
    "yyyy-MM-dd HH:mm",
    "yyyy-MM-dd",
    "yyyy/MM/dd",
    "yyyyMMdd",
    "yyyy年M月d日",
)
_CJK = re.compile(r"[\u3400-\u9fff]")
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words department systems abbreviate in English names, and what they stand for in ours.
_SYNONYMS = {
    "no": ("id", "number", "code"),
    "num": ("number", "id"),
    "nbr": ("number",),
    "dt": ("date", "time"),
    "amt": ("amount",),
    "org": ("organ",),
    "addr": ("address",),
    "cert": ("certificate",),
    "rep": ("representative",),
    "biz": ("business",),
    "reg": ("registered",),
    "area": ("region",),
    "desc": ("description",),
    "flag": ("is",),
}
# Envelope values a mapping's `envelope:` computes, with the names systems give them.
ENVELOPE_TARGETS = {
    "operation": ("操作类型", ("czlx", "czbs", "action", "op", "operation", "oper", "type")),
    "time": ("变更时间", ("gxsj", "bgsj", "update time", "change time", "modified")),
    "record_id": ("记录编号", ("jlid", "jlbh", "record id", "change id", "rec id")),
    "batch_no": ("批次号", ("pch", "pcbh", "batch no", "batch")),
}
# Names department systems use for the standard's terms (处罚行为编号 is their 案件编号).
_ZH_ALIASES = (
    ("处罚行为", "案件"),
    ("实施机构", "执法机关"),
    ("实施机构", "办案机关"),
    ("行政相对人", "当事人"),
    ("处罚文书号", "决定书文号"),
    ("处罚文书号", "处罚决定书文号"),
)
# Below this score a leaf's best field is only a guess; the folder says so.
CONFIDENT = 0.6
# A mandatory field that is no leaf's best takes the leaf fitting it best from this score on.
FALLBACK = 0.55


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """A field a leaf may feed: `party.name`, `inspectors[].name` or `envelope.time`."""

    path: str
    zh: str
    kind: str
    keys: tuple[str, ...]
    words: frozenset[str]
    mandatory: bool
    dictionary: str | None = None
    described: frozenset[str] = frozenset()

    @property
    def top(self) -> str:
        return self.path.split(".", 1)[0].removesuffix("[]")


def _kind(info: Any, name: str, dictionary: str | None) -> str:
    """The kind of value a field holds, from its type and validators."""
    text = f"{info.annotation} {info.metadata}"
    if dictionary is not None or "enum" in text:
        return "code"
    if name.endswith(("credit_code", "organ_code", "department_code")) or "credit" in text:
        return "credit_code"
    for marker, kind in (
        ("_catalogue_code", "catalogue"),
        ("_six_digits", "region"),
        ("datetime.datetime", "datetime"),
        ("datetime.date", "date"),
        ("bool", "bool"),
        ("Decimal", "amount"),
    ):
        if marker in text:
            return kind
    if name.endswith("certificate_code"):
        return "certificate"
    if "int" in text and "str" not in text:
        return "number"
    return "text"


def _initials(zh: str) -> str:
    # pypinyin loads its phrase dictionary on import (0.3-0.4 s): imported by the scaffold's
    # use, not by every `jghub` command that imports this module.
    from pypinyin import Style, lazy_pinyin

    return "".join(lazy_pinyin(zh, style=Style.FIRST_LETTER)).lower()


def _pinyin(zh: str) -> str:
    from pypinyin import lazy_pinyin

    return "".join(lazy_pinyin(zh)).lower()


def _name_keys(
    en: str, zh_parts: list[str], codes: Iterable[str], *, aliases: bool = True
) -> tuple[str, ...]:
    """The normalised spellings a source name may use for a field."""
    variants = [zh_parts]
    for standard_term, alias in _ZH_ALIASES if aliases else ():
        for parts in list(variants):
            if any(standard_term in part for part in parts):
                variants.append([part.replace(standard_term, alias) for part in parts])
    if len(variants) > 1:
        return tuple(
            sorted(
                {key for parts in variants for key in _name_keys(en, parts, codes, aliases=False)}
            )
        )
    zh = "".join(zh_parts)
    keys = {en.replace("_", "").replace(".", "").replace("[]", ""), en.rsplit(".", 1)[-1]}
    keys |= {_initials(zh), _initials(zh_parts[-1]), _pinyin(zh_parts[-1]), _pinyin(zh)}
    for ending in ("代码", "编号", "编码", "名称"):
        if zh_parts[-1].endswith(ending) and len(zh_parts[-1]) > len(ending) + 1:
            keys.add(_initials(zh_parts[-1].removesuffix(ending)))
    keys |= {code.lower().replace("_", "") for code in codes}
    return tuple(sorted(key.replace("_", "") for key in keys if key))


def _words_of(text: str) -> set[str]:
    words = {word.lower() for word in _WORDS.findall(text)}
    for word in list(words):
        words.update(_SYNONYMS.get(word, ()))
    return words


@cache
def targets(dataset: str) -> tuple[Target, ...]:
    """Every field of `dataset` a leaf may feed (nested ones dotted), then the envelope's."""
    found: list[Target] = []
    _collect(DATASETS[dataset].model, "", [], True, found)
    for name, (zh, spellings) in ENVELOPE_TARGETS.items():
        words = frozenset(
            _words_of(name.replace("_", " ")) | {w for s in spellings for w in s.split()}
        )
        keys = tuple(sorted({*(s.replace(" ", "") for s in spellings), _initials(zh)}))
        kind = {"time": "datetime", "operation": "operation"}.get(name, "text")
        found.append(Target(f"envelope.{name}", zh, kind, keys, words, False))
    return tuple(found)


def _collect(
    model: type[BaseModel], prefix: str, zh_parents: list[str], required: bool, out: list[Target]
) -> None:
    for name, info in model.model_fields.items():
        meta = field_meta(model, name)
        nested = model_in(info.annotation)
        path = f"{prefix}{name}"
        if nested is not None and not meta.dictionary:
            listed = "list" in str(info.annotation)
            _collect(
                nested,
                f"{path}[]." if listed else f"{path}.",
                [*zh_parents, meta.zh],
                required and meta.mandatory,
                out,
            )
            continue
        words = _words_of(path.replace("_", " ").replace("[]", ""))
        out.append(
            Target(
                path=path,
                zh=meta.zh,
                kind=_kind(info, name, meta.dictionary),
                keys=_name_keys(path, [*zh_parents, meta.zh], meta.codes),
                words=frozenset(words),
                described=frozenset(_words_of(meta.description)),
                mandatory=required and meta.mandatory,
                dictionary=meta.dictionary,
            )
        )


# --------------------------------------------------------------------------- samples


@dataclass
class Leaf:
    """A value-carrying place in the record: its path as a mapping writes it, and its values."""

    path: str
    names: tuple[str, ...]
    values: list[str] = field(default_factory=list)
    comment: str = ""
    repeated: bool = False
    group: str | None = None  # the repeating element/array inside the record holding it

    @property
    def shape(self) -> Shape:
        return value_shape(self.values)


@dataclass
class Sample:
    """What a sample payload says about its message: format, records path, leaves."""

    format: str
    records: str
    namespaces: dict[str, str]
    leaves: list[Leaf]
    records_found: int


def read_sample(
    payload: bytes, *, charset: str | None = None, limits: PayloadLimits | None = None
) -> Sample:
    """Read a sample payload (JSON or XML, detected from its first character)."""
    limits = limits or PayloadLimits()
    start = payload.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start in (b"{", b"["):
        return _json_sample(parse_json(payload, limits, charset))
    return _xml_sample(parse_xml(payload, limits, charset))


def _xml_sample(root: Any) -> Sample:
    namespaces: dict[str, str] = {}
    for element in root.iter(etree.Element):
        for prefix, uri in (element.nsmap or {}).items():
            if uri not in namespaces.values():
                chosen = prefix or _free_prefix(uri, namespaces)
                namespaces.setdefault(chosen, uri)
    prefixes = {uri: prefix for prefix, uri in namespaces.items()}

    def name(element: Any) -> str:
        qname = etree.QName(element)
        prefix = prefixes.get(qname.namespace or "")
        return f"{prefix}:{qname.localname}" if prefix else qname.localname

    def steps(element: Any, until: Any) -> list[str]:
        out: list[str] = []
        node = element
        while node is not None and node is not until:
            out.append(name(node))
            node = node.getparent()
        return list(reversed(out))

    record_elements = _xml_records(root)
    first = record_elements[0]
    records = "/" + "/".join(steps(first, None))
    leaves: dict[str, Leaf] = {}

    def add(path: str, names: tuple[str, ...], value: str, comment: str, **extra: Any) -> None:
        leaf = leaves.setdefault(path, Leaf(path, names, comment=comment, **extra))
        if value.strip():
            leaf.values.append(value.strip())

    for record in record_elements:
        for attribute, value in record.attrib.items():
            local = etree.QName(attribute).localname
            add(f"@{local}", (local,), value, "")
        for element in record.iter(etree.Element):
            if element is record:
                continue
            path_steps = steps(element, record)
            repeated_at = _repeated_ancestor(element, record)
            group = "/".join(steps(repeated_at, record)) if repeated_at is not None else None
            names = tuple(step.split(":")[-1] for step in path_steps)
            for attribute, value in element.attrib.items():
                local = etree.QName(attribute).localname
                add("/".join(path_steps) + f"/@{local}", (*names, local), value, "", group=group)
            if any(isinstance(child.tag, str) for child in element):
                continue
            if element.attrib and not (element.text or "").strip():
                continue
            add(
                "/".join(path_steps),
                names,
                element.text or "",
                _comment_near(element),
                repeated=repeated_at is not None,
                group=group,
            )
    # Values outside the records (a batch's number or time on the root) read with absolute paths.
    node = first.getparent()
    while node is not None:
        for attribute, value in node.attrib.items():
            local = etree.QName(attribute).localname
            add("/" + "/".join(steps(node, None)) + f"/@{local}", (local,), value, "")
        node = node.getparent()
    return Sample("xml", records, namespaces, list(leaves.values()), len(record_elements))


def _free_prefix(uri: str, taken: dict[str, str]) -> str:
    base = "".join(ch for ch in uri.rstrip("/").rsplit("/", 1)[-1].lower() if ch.isalpha())[:3]
    prefix = base or "ns"
    counter = 1
    while prefix in taken:
        counter += 1
        prefix = f"{base or 'ns'}{counter}"
    return prefix


def _xml_records(root: Any) -> list[Any]:
    """The repeating element holding most leaves; the root when nothing repeats."""
    best: tuple[int, int, list[Any]] | None = None
    for element in root.iter(etree.Element):
        siblings = [child for child in element if isinstance(child.tag, str)]
        tags = [child.tag for child in siblings]
        for tag in dict.fromkeys(tags):
            group = [child for child in siblings if child.tag == tag]
            if len(group) < 2:
                continue
            size = sum(1 for _ in group[0].iter(etree.Element))
            depth = -len(list(group[0].iterancestors()))
            if size > 1 and (best is None or (size, depth) > best[:2]):
                best = (size, depth, group)
    if best is not None:
        return best[2]
    # One record: the element holding most leaf children (the root of a flat payload).
    return [max(root.iter(etree.Element), key=lambda e: sum(1 for c in e if len(c) == 0))]


def _repeated_ancestor(element: Any, record: Any) -> Any:
    node = element
    while node is not None and node is not record:
        parent = node.getparent()
        if sum(1 for sibling in parent if sibling.tag == node.tag) > 1:
            return node
        node = parent
    return None


def _comment_near(element: Any) -> str:
    """A comment right before the element or inside it (`<!-- 处罚决定日期 -->`)."""
    texts = []
    previous = element.getprevious()
    if isinstance(previous, etree._Comment):
        texts.append(previous.text or "")
    texts.extend(child.text or "" for child in element if isinstance(child, etree._Comment))
    return " ".join(text.strip() for text in texts)


def _json_sample(document: Any) -> Sample:
    records, found = _json_records(document, "")
    items = found if isinstance(found, list) else [found]
    leaves: dict[str, Leaf] = {}
    for item in items:
        for path, names, value, group in _json_leaves(item, "", (), None):
            leaf = leaves.setdefault(
                path, Leaf(path, names, group=group, repeated=group is not None)
            )
            if value is not None and str(value).strip():
                leaf.values.append(str(value).strip())
    if isinstance(document, dict) and records not in ("@", ""):
        top = records.split(".")[0].strip('"')
        for key, value in document.items():
            if key != top and not isinstance(value, (dict, list)):
                leaf = leaves.setdefault(f"$.{_key(key)}", Leaf(f"$.{_key(key)}", (key,)))
                if value is not None:
                    leaf.values.append(str(value))
    return Sample("json", records or "@", {}, list(leaves.values()), len(items))


def _key(name: str) -> str:
    return name if _IDENTIFIER.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _json_records(value: Any, path: str) -> tuple[str, Any]:
    """The array of objects with most leaves per item (the whole payload when none)."""
    best: tuple[int, str, Any] = (0, "@", value)
    for where, found in _arrays(value, path):
        size = max(sum(1 for _ in _json_leaves(item, "", (), None)) for item in found)
        if size > best[0]:
            best = (size, where, found)
    return best[1], best[2]


def _arrays(value: Any, path: str) -> Iterator[tuple[str, list[Any]]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _arrays(item, f"{path}.{_key(key)}" if path else _key(key))
    elif isinstance(value, list):
        objects = [item for item in value if isinstance(item, dict)]
        if objects:
            yield (path or "@", objects)


def _json_leaves(
    value: Any, path: str, names: tuple[str, ...], group: str | None
) -> Iterator[tuple[str, tuple[str, ...], Any, str | None]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_leaves(
                item, f"{path}.{_key(key)}" if path else _key(key), (*names, key), group
            )
    elif isinstance(value, list):
        if not value:
            yield path, names, None, path
        for item in value:
            if isinstance(item, (dict, list)):
                yield from _json_leaves(item, f"{path}[]", names, group or path)
            else:
                yield path, names, item, group or path
    elif path:
        yield path, names, value, group


# --------------------------------------------------------------------------- value shapes


@dataclass(frozen=True)
class Shape:
    """What a leaf's values look like: kind, and the date pattern or number grouping found."""

    kind: str
    pattern: str | None = None
    grouping: bool = False


def value_shape(values: list[str]) -> Shape:
    """The shape every non-empty value has; `text` when they disagree or none is given."""
    shapes = {_shape_of(value) for value in values[:20] if value}
    if len(shapes) == 1:
        return shapes.pop()
    kinds = {shape.kind for shape in shapes}
    if kinds == {"amount", "number"}:
        return Shape("amount", grouping=any(shape.grouping for shape in shapes))
    if kinds and kinds <= {"bool", "number"}:
        return Shape("bool")
    return Shape("text")


@cache
def _patterns() -> tuple[tuple[str, Any], ...]:
    found = []
    for text in DATE_PATTERNS:
        try:
            found.append((text, compile_pattern(text)))
        except PatternInvalid:  # pragma: no cover - the list above is fixed
            continue
    return tuple(found)


def _shape_of(value: str) -> Shape:
    value = value.strip()
    for text, pattern in _patterns():
        fields = pattern.parse_fields(value)
        if fields is None:
            continue
        try:
            build_date(fields)
        except ValueError:
            continue
        return Shape("datetime" if pattern.has_time else "date", text)
    # Instants as integers: 2017-07 to 2033-05 in milliseconds or seconds.
    if re.fullmatch(r"1[5-9]\d{11}", value):
        return Shape("datetime", "epoch_millis")
    if re.fullmatch(r"1[5-9]\d{8}", value):
        return Shape("datetime", "epoch_seconds")
    try:
        datetime.fromisoformat(value)
        if "T" in value:
            return Shape("datetime", "iso8601")
    except ValueError:
        pass
    if value in ("是", "否", "Y", "N", "y", "n", "true", "false", "True", "False", "有", "无"):
        return Shape("bool")
    if len(value) == 18:
        for check, kind in ((check_credit_code, "credit_code"), (check_id_number, "id_number")):
            try:
                check(value)
                return Shape(kind)
            except CheckFailure:
                continue
    if re.fullmatch(r"\d{6}", value):
        try:
            check_region(value)
            return Shape("region")
        except CheckFailure:
            return Shape("number")
    if re.fullmatch(r"\d{14}", value):
        return Shape("catalogue")
    if re.fullmatch(r"[01]", value):
        return Shape("bool")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", value):
        return Shape("amount", grouping=True)
    if re.fullmatch(r"-?\d+\.\d+", value):
        return Shape("amount")
    if re.fullmatch(r"-?\d+", value):
        return Shape("number")
    if re.fullmatch(r"[A-Za-z0-9_]{1,8}", value):
        return Shape("code")
    if len(value) > 40 and _CJK.search(value):
        return Shape("longtext")
    return Shape("text")


# How well a value shape fits a field kind: 1 a telling fit, 0.5 possible, 0 contradicts.
_FIT: dict[str, dict[str, float]] = {
    "date": {"date": 1, "datetime": 0.8},
    "datetime": {"datetime": 1, "date": 0.6},
    "amount": {"amount": 1, "number": 0.5, "text": 0.1},
    "number": {"amount": 0.7, "number": 1, "code": 0.6, "text": 0.4, "bool": 0.2},
    "credit_code": {"credit_code": 1, "certificate": 1, "text": 0.4},
    "id_number": {"certificate": 1, "text": 0.3},
    "region": {"region": 1, "code": 0.3, "text": 0.2},
    "catalogue": {"catalogue": 1, "text": 0.4},
    "bool": {"bool": 1, "code": 0.5, "operation": 0.2},
    "code": {"code": 0.9, "operation": 0.8, "bool": 0.4, "text": 0.4, "certificate": 0.1},
    "longtext": {"text": 1},
    "text": {"text": 0.7, "code": 0.3, "certificate": 0.4, "operation": 0.2},
}


def _fit(shape: Shape, kind: str, values: list[str]) -> float:
    if not values:
        return 0.4
    return _FIT.get(shape.kind, {}).get(kind, 0.0)


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Suggestion:
    """A field a leaf may feed, with its score (0-1) and why."""

    target: Target
    score: float
    why: str


def _normal(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def _word_score(text: str, target: Target) -> tuple[float, list[str]]:
    """The share of the name's words found in the field's name (1) or description (0.6)."""
    words = [word.lower() for word in _WORDS.findall(text)]
    if not words:
        return 0.0, []
    total, matched = 0.0, []
    for word in words:
        spellings = {word, *_SYNONYMS.get(word, ())}
        if spellings & target.words:
            total += 1.0
            matched.append(word)
        elif spellings & target.described:
            total += 0.6
            matched.append(word)
    return 0.85 * total / len(words), matched


@lru_cache(maxsize=1 << 16)
def _similarity(a: str, b: str) -> float:
    """SequenceMatcher's ratio of `a` and `b`, remembered: a sample's names meet the same field
    names again in every dataset `guess_dataset` tries and in every sample of a message type,
    and the matching is most of a suggestion's cost."""
    return SequenceMatcher(None, a, b).ratio()


def _name_score(leaf: Leaf, target: Target) -> tuple[float, str]:
    names = [name for name in leaf.names if name]
    own = names[-1] if names else ""
    candidates = [own]
    if len(names) > 1:
        candidates.append(names[-2] + own)
    best, why = 0.0, ""
    chinese = [text for text in (*candidates, leaf.comment) if _CJK.search(text)]
    for text in chinese:
        if text == target.zh or target.zh in text:
            score = 1.0
        elif text in target.zh:
            score = 0.8
        else:
            score = 0.9 * _similarity(text, target.zh)
        if score > best:
            best, why = score, f"名 {text}~{target.zh}"
    for index, text in enumerate(candidates):
        # A child's own name matches less surely than its parent's and its own together
        # (Organ/Name is an organ's name before it is any name).
        weight = 0.8 if index == 0 and len(candidates) > 1 else 1.0
        normal = _normal(text)
        if not normal:
            continue
        for key in target.keys:
            score = weight * (1.0 if normal == key else _similarity(normal, key))
            if score > best:
                best, why = score, f"name {normal}~{key}"
        score, matched = _word_score(text, target)
        score *= weight
        if score > best:
            best, why = score, f"words {'/'.join(matched)}"
    return best, why


def score(leaf: Leaf, target: Target, shape: Shape | None = None) -> Suggestion:
    """How likely `leaf` feeds `target`: 0.7 of the name score, 0.3 of the fit of the shape of
    its values (`shape`, when the caller has it: `suggest` reads it once for every target)."""
    shape = shape or leaf.shape
    name, why = _name_score(leaf, target)
    value = 0.7 * name + 0.3 * _fit(shape, target.kind, leaf.values)
    if target.path.startswith("envelope.") and leaf.group is not None:
        value *= 0.5
    if "[]" in target.path and leaf.group is None:
        value *= 0.7
    return Suggestion(target, round(value, 3), f"{why}; shape {shape.kind}")


def suggest(leaf: Leaf, dataset: str, top: int = 4) -> list[Suggestion]:
    """The best fields for `leaf`, best first."""
    shape = leaf.shape
    scored = [score(leaf, target, shape) for target in targets(dataset)]
    scored.sort(key=lambda item: -item.score)
    return scored[:top]


def guess_dataset(sample: Sample) -> tuple[str, float]:
    """The dataset whose fields the sample's leaves fit best, and the mean top score."""
    best = ("", -1.0)
    for name in DATASETS:
        scores = [suggest(leaf, name, 1)[0].score for leaf in sample.leaves]
        mean = sum(scores) / len(scores) if scores else 0.0
        if mean > best[1]:
            best = (name, mean)
    return best


# --------------------------------------------------------------------------- rules


def pipe_for(leaf: Leaf, target: Target) -> list[Any]:
    """The pipe a rule from `leaf` to `target` likely needs, from the values' shape."""
    shape = leaf.shape
    pipe: list[Any] = ["trim"]
    if target.kind in ("date", "datetime") and shape.pattern:
        timed = shape.kind == "datetime"  # the `date` function refuses a time of day
        if shape.pattern in ("epoch_millis", "epoch_seconds", "iso8601"):
            pipe = []  # an integer or ISO text: the datetime function reads it as it is
        pipe.append({"datetime" if timed else target.kind: shape.pattern})
    elif target.kind == "amount":
        pipe.append({"decimal": {"grouping": ","}} if shape.grouping else "decimal")
    elif target.kind == "bool":
        pipe.append("boolean")
    elif target.kind in ("credit_code", "certificate", "catalogue", "region"):
        pipe.extend(["halfwidth", "upper"] if target.kind != "region" else ["halfwidth"])
    return pipe


def rule_text(leaf: Leaf, target: Target) -> str:
    """The rule as one line of flow YAML: `{path: cf:AJBH, pipe: [trim]}`."""
    pipe = ", ".join(_flow(item) for item in pipe_for(leaf, target))
    source = "each" if leaf.repeated and leaf.group == leaf.path else "path"
    return f"{{{source}: {_flow(leaf.path)}, pipe: [{pipe}]}}"


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_flow(item)}" for key, item in value.items()) + "}"
    text = str(value)
    if re.fullmatch(r"[A-Za-z_][\w:./@\-]*", text):
        return text
    return json.dumps(text, ensure_ascii=False)


# --------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """How often the suggester names the field a shipped mapping fills from a source field."""

    fields: int = 0
    top1: int = 0
    top3: int = 0
    misses: list[str] = field(default_factory=list)
    message_types: int = 0
    datasets_guessed: int = 0
    """Message types whose dataset `guess_dataset` names right from their valid samples."""

    def share(self, top: int = 1) -> float:
        hits = self.top1 if top == 1 else self.top3
        return hits / self.fields if self.fields else 0.0


def shipped_truth(mapping: InboundMapping) -> dict[str, set[str]]:
    """Source path (normalised, from the payload's root) → the fields a mapping fills from it."""
    truth: dict[str, set[str]] = {}
    records = _normal_path(mapping.records, mapping.format)

    def absolute(path: str, prefix: str) -> str:
        normal = _normal_path(path, mapping.format)
        if path.startswith(("/", "$.")):
            return normal
        return f"{prefix}/{normal}" if normal else prefix

    def walk(rule: FieldRule, target: str, prefix: str) -> None:
        if rule.path is not None and _simple(rule.path):
            truth.setdefault(absolute(rule.path, prefix), set()).add(target)
        if rule.each is not None and _simple(rule.each):
            base = absolute(rule.each, prefix)
            if rule.fields is None:
                truth.setdefault(base, set()).add(target)
            else:
                for name, sub in rule.fields.items():
                    walk(sub, f"{target}[].{name}", base)
        elif rule.fields is not None:
            for name, sub in rule.fields.items():
                walk(sub, f"{target}.{name}", prefix)

    for name, rule in mapping.fields.items():
        walk(rule, name, records)
    for name in ("operation", "time", "record_id", "batch_no"):
        rule = getattr(mapping.envelope, name)
        if rule is not None:
            walk(rule, f"envelope.{name}", records)
    return truth


def _simple(path: str) -> bool:
    return re.fullmatch(r"[\w:./@$\-\[\]\"\u3400-\u9fff]+", path.strip()) is not None


def _normal_path(path: str, syntax: str) -> str:
    text = path.strip()
    if syntax == "xml":
        steps = [
            step.split(":")[-1] for step in text.strip("/").split("/") if step not in ("", ".")
        ]
        return "/".join(steps)
    text = text.removeprefix("$.").removeprefix("$").replace("[]", "").replace('"', "")
    return "/".join(part for part in text.split(".") if part and part != "@")


def sample_truth_paths(sample: Sample) -> dict[str, Leaf]:
    """The sample's leaves by the same normalised absolute path as `shipped_truth`."""
    records = _normal_path(sample.records, sample.format)
    found = {}
    for leaf in sample.leaves:
        normal = _normal_path(leaf.path, sample.format)
        if leaf.path.startswith(("/", "$.")):
            found[normal] = leaf
        else:
            found[f"{records}/{normal}" if records else normal] = leaf
    return found


def evaluate(root: Path | None = None) -> Evaluation:
    """Run the suggester on every shipped inbound mapping's valid samples."""
    from mappings.system import load_all

    result = Evaluation()
    for system in load_all(root).values():
        for message_type, translation in system.inbound.items():
            mapping = translation.mapping
            truth = shipped_truth(mapping)
            folder = system.folder / "samples" / message_type
            seen: set[str] = set()
            read: list[Sample] = []
            for sample_path in sorted(folder.glob("valid*")):
                charset = _expected_charset(system.folder, message_type, sample_path)
                sample = read_sample(sample_path.read_bytes(), charset=charset)
                read.append(sample)
                leaves = sample_truth_paths(sample)
                for path, fields_filled in sorted(truth.items()):
                    leaf = leaves.get(path)
                    if leaf is None or not leaf.values or path in seen:
                        continue
                    seen.add(path)
                    suggestions = [s.target.path for s in suggest(leaf, mapping.dataset, 3)]
                    result.fields += 1
                    if suggestions[0] in fields_filled:
                        result.top1 += 1
                    if fields_filled & set(suggestions):
                        result.top3 += 1
                    else:
                        result.misses.append(
                            f"{system.id}/{message_type} {leaf.path}: "
                            f"{'/'.join(sorted(fields_filled))} ≠ {', '.join(suggestions)}"
                        )
            if read:
                result.message_types += 1
                if guess_dataset(merge_samples(read))[0] == mapping.dataset:
                    result.datasets_guessed += 1
    return result


def _expected_charset(folder: Path, message_type: str, sample: Path) -> str | None:
    expected = folder / "expected" / message_type / f"{sample.stem}.json"
    if not expected.is_file():
        return None
    data = json.loads(expected.read_text(encoding="utf-8"))
    value = (data.get("input") or {}).get("charset")
    return str(value) if value else None


__all__ = [
    "Leaf",
    "Sample",
    "Shape",
    "Suggestion",
    "Target",
    "evaluate",
    "guess_dataset",
    "read_sample",
    "rule_text",
    "suggest",
    "targets",
    "value_shape",
]


# --------------------------------------------------------------------------- writing


_OPERATION_WORDS = {
    "i": "insert", "u": "update", "d": "delete", "a": "insert", "c": "insert",
    "add": "insert", "new": "insert", "insert": "insert", "create": "insert",
    "update": "update", "modify": "update", "mod": "update", "upd": "update",
    "delete": "delete", "del": "delete", "remove": "delete",
}  # fmt: skip


@dataclass
class MessagePlan:
    """One message type to scaffold: its samples read, and the dataset chosen."""

    message_type: str
    sample: Sample
    dataset: str
    dataset_guessed: bool
    dataset_score: float
    files: list[Path]


def merge_samples(samples: list[Sample]) -> Sample:
    """One view of several samples of a message type: the first's records, all leaves."""
    first = samples[0]
    leaves: dict[str, Leaf] = {}
    for sample in samples:
        for leaf in sample.leaves:
            if leaf.path in leaves:
                leaves[leaf.path].values.extend(leaf.values)
            else:
                leaves[leaf.path] = Leaf(
                    leaf.path,
                    leaf.names,
                    list(leaf.values),
                    leaf.comment,
                    leaf.repeated,
                    leaf.group,
                )
    namespaces = {key: value for sample in samples for key, value in sample.namespaces.items()}
    count = sum(sample.records_found for sample in samples)
    return Sample(first.format, first.records, namespaces, list(leaves.values()), count)


def mapping_yaml(plan: MessagePlan) -> str:
    """The text of the scaffolded mapping file: loadable as written, suggestions commented."""
    sample, dataset = plan.sample, plan.dataset
    ranked = {leaf.path: suggest(leaf, dataset) for leaf in sample.leaves}
    chosen: dict[str, list[tuple[Leaf, Suggestion]]] = {}
    for leaf in sample.leaves:
        best = ranked[leaf.path][0]
        chosen.setdefault(best.target.path, []).append((leaf, best))
    for pairs in chosen.values():
        pairs.sort(key=lambda pair: -pair[1].score)
    mandatory = [target for target in targets(dataset) if target.mandatory]
    used = {chosen[target.path][0][0].path for target in mandatory if target.path in chosen}
    free = [leaf for leaf in sample.leaves if leaf.path not in used]
    for target in mandatory:
        if target.path not in chosen and free:
            # A mandatory field nobody's top choice: the free leaf that fits it best, if one does.
            found = max(
                ((score(leaf, target), leaf) for leaf in free), key=lambda pair: pair[0].score
            )
            if found[0].score >= FALLBACK:
                chosen[target.path] = [(found[1], found[0])]
    spec = DATASETS[dataset]
    guessed = (
        f"  # guessed (mean best score {plan.dataset_score:.2f}): check, or pass --dataset"
        if plan.dataset_guessed
        else ""
    )
    lines = [
        f"# {plan.message_type}: scaffolded by `jghub mappings scaffold` from "
        f"{', '.join(path.name for path in plan.files)}.",
        "# Every leaf of the samples is listed under the field it most likely feeds, with the",
        "# score (0-1) and why, then the runners-up. Rules for the dataset's mandatory fields are",
        "# active so the file loads; all others are commented: uncomment the right ones, fix the",
        "# pipes, then run `jghub mappings test` until it passes (`--update` writes expected/).",
        "direction: inbound",
        f"message_type: {plan.message_type}",
        f"description: 'TODO: what the message is ({spec.zh} from the system)'",
        f"format: {sample.format}",
        f"dataset: {dataset}{guessed}",
    ]
    if sample.namespaces:
        lines.append("namespaces:")
        lines.extend(f"  {prefix}: {uri}" for prefix, uri in sample.namespaces.items())
    lines.append(
        f"records: {_flow(sample.records)}  # the repeating element: {sample.records_found} "
        "record(s) in the samples"
    )
    lines.append("")
    lines.append("# envelope:  # uncomment with the rules you keep")
    for name in ENVELOPE_TARGETS:
        for leaf, best in chosen.get(f"envelope.{name}", []):
            lines.extend(_leaf_lines(leaf, best, ranked[leaf.path], name, "#   ", active=False))
    lines.append("")
    lines.append("fields:")
    written_tops: set[str] = set()
    all_targets = [t for t in targets(dataset) if not t.path.startswith("envelope.")]
    for target in all_targets:
        if target.top in written_tops:
            continue
        if "." not in target.path:
            lines.extend(_target_lines(target, chosen, ranked, "  "))
            continue
        written_tops.add(target.top)
        group = [t for t in all_targets if t.top == target.top]
        lines.extend(_group_lines(target.top, group, chosen, ranked))
    return "\n".join(lines) + "\n"


def _target_lines(
    target: Target,
    chosen: dict[str, list[tuple[Leaf, Suggestion]]],
    ranked: dict[str, list[Suggestion]],
    indent: str,
) -> list[str]:
    name = target.path.rsplit(".", 1)[-1]
    pairs = chosen.get(target.path, [])
    lines: list[str] = []
    for index, (leaf, best) in enumerate(pairs):
        active = target.mandatory and index == 0
        prefix = indent if active else indent + "# "
        lines.extend(_leaf_lines(leaf, best, ranked[leaf.path], name, prefix, active=active))
    if target.mandatory and not pairs:
        lines.append(
            f"{indent}{name}: {{path: TODO_{name}}}  # TODO {target.zh} is mandatory and no leaf "
            "looks like it: map it, or move it to `assume:` with why"
        )
    return lines


def _group_lines(
    top: str,
    group: list[Target],
    chosen: dict[str, list[tuple[Leaf, Suggestion]]],
    ranked: dict[str, list[Suggestion]],
) -> list[str]:
    mandatory = any(target.mandatory for target in group)
    if any("[]" in target.path for target in group):
        lines = _list_rule(top, group, chosen) if mandatory else []
        for target in group:
            for leaf, best in chosen.get(target.path, []):
                sub = target.path.rsplit(".", 1)[-1]
                base = leaf.group or leaf.path
                relative = leaf.path.removeprefix(base).lstrip("/.").removeprefix("[]").lstrip(".")
                lines.append(
                    f"  # {top}: {{each: {_flow(base)}, fields: {{{sub}: "
                    f"{_flow(relative or '.')}}}}}  # {target.zh} {best.score:.2f} ({best.why})"
                )
        return lines
    body: list[str] = []
    for target in group:
        body.extend(_target_lines(target, chosen, ranked, "    "))
    if not body:
        return []
    header = f"  {top}:" if mandatory else f"  # {top}:"
    if not mandatory:
        body = [line if line.lstrip().startswith("#") else "  # " + line.lstrip() for line in body]
    return [header, *body]


def _list_rule(
    top: str, group: list[Target], chosen: dict[str, list[tuple[Leaf, Suggestion]]]
) -> list[str]:
    """An active `each` rule for a mandatory list of objects, so the file loads."""
    base: str | None = None
    parts = []
    for target in group:
        pairs = chosen.get(target.path, [])
        sub = target.path.rsplit(".", 1)[-1]
        if pairs and (base is None or pairs[0][0].group == base):
            leaf = pairs[0][0]
            base = leaf.group or leaf.path
            relative = leaf.path.removeprefix(base).lstrip("/.").removeprefix("[]").lstrip(".")
            itself = "@" if "/" not in base and ":" not in base else "."  # JMESPath or XPath
            parts.append(f"{sub}: {_flow(relative or itself)}")
        elif target.mandatory:
            parts.append(f"{sub}: TODO_{sub}")
    source = _flow(base) if base else f"TODO_{top}"
    return [
        f"  {top}: {{each: {source}, fields: {{{', '.join(parts)}}}}}  # active: mandatory, "
        "check it (TODO_ paths: no leaf looks like the field)"
    ]


def _leaf_lines(
    leaf: Leaf,
    best: Suggestion,
    ranked: list[Suggestion],
    name: str,
    prefix: str,
    *,
    active: bool,
) -> list[str]:
    shown = ", ".join(json.dumps(value, ensure_ascii=False)[:40] for value in leaf.values[:2])
    comment = f" <!-- {leaf.comment} -->" if leaf.comment else ""
    guess = "" if best.score >= CONFIDENT else ", a guess"
    note = "active: mandatory, check it" if active else f"{best.target.zh}"
    rule = _operation_rule(leaf) if name == "operation" else rule_text(leaf, best.target)
    hint = _dictionary_hint(leaf, best.target)
    others = ", ".join(f"{s.target.path} {s.score:.2f}" for s in ranked[1:])
    indent = prefix[: len(prefix) - len(prefix.lstrip())]
    return [
        f"{indent}# ── {leaf.path}{comment}: e.g. {shown or '(empty)'} ({leaf.shape.kind})",
        f"{prefix}{name}: {rule}  # {note} {best.score:.2f} ({best.why}{guess}){hint}",
        f"{indent}#     runners-up: {others}",
    ]


def _dictionary_hint(leaf: Leaf, target: Target) -> str:
    """For a coded field: whether the samples' values are the standard's codes, and if not,
    which codes the table the engineer writes must give."""
    if target.dictionary is None:
        return ""
    codes = dictionary(target.dictionary)
    if leaf.values and all(value in codes for value in leaf.values):
        return f"; the values are codes of the standard's {target.dictionary}"
    listed = ", ".join(f"{entry.code} {entry.zh}" for entry in list(codes)[:8])
    more = ", …" if len(codes) > 8 else ""
    return (
        f"; the system's codes differ from the standard's {target.dictionary} ({listed}{more}):"
        f" write tables/{target.dictionary}.csv (source,standard) and add {{lookup: "
        f"{target.dictionary}}}"
    )


def _operation_rule(leaf: Leaf) -> str:
    values = {value.strip() for value in leaf.values}
    known = {value: _OPERATION_WORDS.get(value.lower()) for value in sorted(values)}
    if values and all(known.values()):
        listed = ", ".join(f"{_flow(key)}: {code}" for key, code in known.items())
        return f"{{path: {_flow(leaf.path)}, pipe: [trim, {{lookup: {{values: {{{listed}}}}}}}]}}"
    return f"{{path: {_flow(leaf.path)}, pipe: [trim, lower]}}"


def system_yaml(system: str, plans: list[MessagePlan]) -> str:
    """The text of a scaffolded `system.yaml`."""
    kinds = ", ".join(f"{plan.message_type} ({plan.sample.format})" for plan in plans)
    return (
        f"# {system}: scaffolded by `jghub mappings scaffold`; fill in the TODOs.\n"
        f"id: {system}\n"
        f"name: 'TODO: the system''s English name'\n"
        f"name_zh: 'TODO: 系统中文名称'\n"
        f"source: 330000/{system}  # TODO: the province region code / the department's code\n"
        f"description: >-\n  TODO: how it connects. Message types: {kinds}.\n"
    )
