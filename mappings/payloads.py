"""Hardened parsing of untrusted XML and JSON payloads, with limits on size and depth.

XML goes through lxml with entity resolution, network access, DTD loading and huge trees all
off, and a DOCTYPE anywhere in the prolog is refused before the parser sees it: no legitimate
department payload needs one, and refusing it closes billion-laughs, quadratic blow-up and
external entities in one rule. JSON numbers with a fraction become `Decimal` so that amounts are
exact; NaN and Infinity, which Python accepts but JSON does not, are refused, and so is a number
beyond the standard's `NUMBER_BOUNDS` (40 significant digits, 10^±40), as it is read: the 13 bytes
`8000e999999999` are a billion digits once written out.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from functools import lru_cache
from typing import Any

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from mappings.decoding import DecodedPayload, decode_payload
from mappings.errors import (
    ForbiddenMarkup,
    MalformedPayload,
    NumberOutOfBoundsPayload,
    PayloadTooDeep,
    PayloadTooLarge,
)
from standard.errors import quoted, render_value
from standard.types import NumberOutOfBounds, bounded_number

# libxml2 refuses deeper documents itself unless XML_PARSE_HUGE is set (huge_tree=False here).
LIBXML2_MAX_DEPTH = 256


class PayloadLimits(BaseModel):
    """Limits a payload must respect before any record in it is translated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: int = Field(
        default=32 * 1024 * 1024,
        gt=0,
        description=(
            "Largest payload accepted, in bytes, checked before decoding. The default (32 MiB) "
            "holds a batch of 10,000 penalty records with room to spare."
        ),
    )
    max_depth: int = Field(
        default=32,
        ge=1,
        le=LIBXML2_MAX_DEPTH,
        description=(
            "Deepest nesting accepted: XML elements (the root is depth 1) or JSON objects and "
            "arrays (the outermost is depth 1). At most 256, libxml2's own limit."
        ),
    )


# The part of an XML document before the root element that may precede a DOCTYPE.
_PROLOG = re.compile(r"\A(?:<\?xml.*?\?>)?(?:\s+|<!--.*?-->|<\?.*?\?>)*", re.DOTALL)

# lxml appends the position to its messages; it is reported in its own attributes instead.
_LIBXML2_POSITION = re.compile(r", line \d+, column \d+$")

_parsers = threading.local()


def _xml_parser() -> etree.XMLParser:
    # lxml parsers hold per-parse state; one per thread keeps a compiled mapping thread-safe.
    parser: etree.XMLParser | None = getattr(_parsers, "xml", None)
    if parser is None:
        parser = etree.XMLParser(
            encoding="utf-8",
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_blank_text=False,
            collect_ids=False,
        )
        _parsers.xml = parser
    return parser


@lru_cache(maxsize=16)
def _deeper_than(depth: int) -> etree.XPath:
    # True when an element exists at depth + 1; libxml2 evaluates it in C, cheaply.
    return etree.XPath("boolean(" + "/*" * (depth + 1) + ")")


def check_size(payload: bytes, limits: PayloadLimits) -> None:
    """Raise PayloadTooLarge when the payload exceeds `limits.max_bytes`."""
    if len(payload) > limits.max_bytes:
        raise PayloadTooLarge(
            f"payload has {len(payload)} bytes, more than the limit of {limits.max_bytes}"
        )


def parse_xml(payload: bytes, limits: PayloadLimits, charset: str | None = None) -> etree._Element:
    """Parse untrusted XML bytes into the root element, or raise a PayloadRejected subclass."""
    check_size(payload, limits)
    decoded = decode_payload(payload, "xml", charset)
    _refuse_doctype(decoded)
    data = payload[decoded.bom_length :] if decoded.encoding == "utf-8" else _utf8(decoded)
    try:
        root = etree.fromstring(data, _xml_parser())
    except etree.XMLSyntaxError as error:
        # libxml2 quotes names from the document (up to 50,000 characters each): cut.
        message = render_value(_LIBXML2_POSITION.sub("", error.msg or str(error)), limit=300)
        if "depth" in message.lower():
            raise PayloadTooDeep(
                f"elements nest deeper than {limits.max_depth} ({message})",
                line=error.lineno,
                column=error.offset,
            ) from None
        raise MalformedPayload(
            f"not well-formed XML: {message}", line=error.lineno, column=error.offset
        ) from None
    if root.getroottree().docinfo.doctype:
        # The prolog check above already refuses these; this guards against a gap in it.
        raise ForbiddenMarkup("a DOCTYPE is not allowed in a payload")
    if _deeper_than(limits.max_depth)(root):
        raise PayloadTooDeep(f"elements nest deeper than the limit of {limits.max_depth}")
    return root


def parse_json(payload: bytes, limits: PayloadLimits, charset: str | None = None) -> Any:
    """Parse untrusted JSON bytes (numbers with a fraction as Decimal), or raise PayloadRejected."""
    check_size(payload, limits)
    decoded = decode_payload(payload, "json", charset)
    try:
        value = json.loads(
            decoded.text,
            parse_float=bounded_number,
            parse_int=_bounded_int,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as error:
        raise MalformedPayload(
            f"not well-formed JSON: {error.msg}",
            offset=_byte_offset(decoded, error.pos),
            line=error.lineno,
            column=error.colno,
        ) from None
    except RecursionError:
        raise PayloadTooDeep(
            f"objects and arrays nest deeper than the limit of {limits.max_depth}"
        ) from None
    except NumberOutOfBounds as error:
        raise _number_refused(decoded, error) from None
    except MalformedPayload:
        raise
    except ValueError as error:  # e.g. an integer longer than Python's 4300-digit limit
        raise MalformedPayload(f"not acceptable JSON: {error}") from None
    if _json_deeper_than(value, limits.max_depth):
        raise PayloadTooDeep(f"objects and arrays nest deeper than the limit of {limits.max_depth}")
    return value


def _refuse_doctype(decoded: DecodedPayload) -> None:
    text = decoded.text
    prolog = _PROLOG.match(text)
    position = prolog.end() if prolog else 0
    if text.startswith("<!DOCTYPE", position):
        raise ForbiddenMarkup(
            "a DOCTYPE is not allowed in a payload (DTDs, entity declarations and external "
            "entities are refused outright)",
            offset=_byte_offset(decoded, position),
            line=text.count("\n", 0, position) + 1,
        )


def _utf8(decoded: DecodedPayload) -> bytes:
    return decoded.text.encode("utf-8")


def _byte_offset(decoded: DecodedPayload, position: int) -> int:
    return decoded.bom_length + len(decoded.text[:position].encode(decoded.encoding))


def _bounded_int(text: str) -> int:
    bounded_number(text)
    return int(text)


def _number_refused(decoded: DecodedPayload, error: NumberOutOfBounds) -> NumberOutOfBoundsPayload:
    """The refusal with where the number is: the first place the text holds it as a number."""
    found = None
    if error.text is not None:
        found = re.search(rf"(?<![\w.+\-\"]){re.escape(error.text)}(?![\w.+\-\"])", decoded.text)
    if found is None:
        return NumberOutOfBoundsPayload(str(error))
    position = found.start()
    line = decoded.text.count("\n", 0, position) + 1
    return NumberOutOfBoundsPayload(
        str(error),
        offset=_byte_offset(decoded, position),
        line=line,
        column=position - decoded.text.rfind("\n", 0, position),
    )


def _refuse_constant(name: str) -> Any:
    raise MalformedPayload(f"{name} is not a JSON number (RFC 8259 §6)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose names are unique; a repeated name is refused, not silently resolved.

    RFC 8259 §4 leaves the meaning of a repeated name to the receiver, and parsers disagree
    (Python keeps the last value, others the first): a record saying `"fkje": 100` and then
    `"fkje": 10000` would mean different fines in the department's system and here.
    """
    value = dict(pairs)
    if len(value) != len(pairs):
        counts = Counter(name for name, _ in pairs)
        repeated = next(name for name, count in counts.items() if count > 1)
        raise MalformedPayload(
            f"the name {quoted(repeated)} appears twice in one object (RFC 8259 §4: names should "
            "be unique; the hub refuses a record whose meaning depends on which one a reader "
            "keeps)"
        )
    return value


def _json_deeper_than(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            children: Any = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False
