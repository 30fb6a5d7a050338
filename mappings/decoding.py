"""Turn a payload's bytes into text, following the bytes: BOM, then XML declaration, then charset.

The order is deliberate. A byte order mark is the strongest evidence; an XML declaration travels
with the document; the HTTP charset is often a gateway default that nobody maintains (legacy
gb2312 services sit behind proxies that say `charset=utf-8`). When nothing is said, XML and JSON
are UTF-8 (XML 1.0 §4.3.3, RFC 8259 §8.1).

GB2312 and GBK are decoded as GB18030, their superset: department systems declare gb2312 but send
the rare characters of people's and companies' names that only GBK/GB18030 can carry.

Nothing is guessed: bytes that do not decode in the chosen encoding are an error naming the byte
offset, never re-read in another encoding.

The other way round, `encode_as_declared` turns a document that is already text (an XML string
carried inside a SOAP envelope) into bytes that agree with its own declaration, by the same
reading of charset labels (`codec_of`), so that decoding them gives the text back.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Literal

from mappings.errors import EncodingMismatch

Syntax = Literal["xml", "json"]

# Longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# The XML declaration (XML 1.0 §2.8, §4.3.3), in bytes of an ASCII-compatible encoding and in
# text. In text, white space before it is read past: a document written into a SOAP envelope's
# string parameter often starts on a line of its own.
_DECLARATION = (
    r"""<\?xml\s+version\s*=\s*(?:"[^"]*"|'[^']*')"""
    r"""(?:\s+encoding\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'))?"""
)
_XML_DECLARATION = re.compile(rb"\A" + _DECLARATION.encode("ascii"))
_TEXT_DECLARATION = re.compile(r"\A\s*" + _DECLARATION)

# Codecs that a declaration read as ASCII cannot truthfully name: the bytes would not be ASCII.
_WIDE_CODECS = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})

# Python's names for the codecs that GB18030 contains (gb2312, gbk, and gbk's alias cp936).
_GB18030_SUBSETS = frozenset({"gb2312", "gbk"})


@dataclass(frozen=True)
class DecodedPayload:
    """A payload as text, with the encoding used and what chose it."""

    text: str
    encoding: str
    chosen_by: Literal["bom", "declaration", "charset", "default"]
    bom_length: int


def decode_payload(payload: bytes, syntax: Syntax, charset: str | None = None) -> DecodedPayload:
    """Decode `payload`; `charset` is the one the transport declared (HTTP Content-Type), if any.

    Raises EncodingMismatch naming the byte offset when the bytes are not valid in the chosen
    encoding, or when the declared encoding is unknown.
    """
    for mark, codec in _BOMS:
        if payload.startswith(mark):
            return _decode(payload, codec, "bom", len(mark), f"the {codec} byte order mark")
    if syntax == "xml":
        declared = _declared_encoding(payload)
        if declared is not None:
            codec = _codec_name(declared, "the XML declaration")
            if codec in _WIDE_CODECS:
                raise EncodingMismatch(
                    f"the XML declaration says encoding '{declared}' but the payload has no byte "
                    "order mark and its declaration is readable as ASCII, so it is not "
                    f"{declared}; fix the declaration",
                    offset=0,
                )
            return _decode(payload, codec, "declaration", 0, f"encoding '{declared}' declared")
    if charset:
        codec = _codec_name(charset, "the transport's charset")
        return _decode(payload, codec, "charset", 0, f"charset '{charset}' given by the transport")
    return _decode(payload, "utf-8", "default", 0, f"UTF-8, the default for {syntax.upper()}")


def _declared_encoding(payload: bytes) -> str | None:
    match = _XML_DECLARATION.match(payload, 0, 200)
    if match is None:
        return None
    name = match.group("dq") or match.group("sq")
    return name.decode("ascii", "replace") if name else None


def codec_of(label: str) -> str:
    """The Python codec a declared charset label means: GB2312 and GBK (cp936) mean GB18030.

    Raises LookupError for a label Python does not know.
    """
    codec = codecs.lookup(label.strip()).name
    return "gb18030" if codec in _GB18030_SUBSETS else codec


def encode_as_declared(text: str) -> bytes:
    """`text`, an XML document, as bytes that agree with its own XML declaration.

    The text is encoded as its declaration says (read by `codec_of`, so gb2312 as GB18030, which
    also holds the rare characters of names that departments send under a gb2312 label); a
    leading byte order mark is dropped. It is UTF-8 when there is no declaration (XML's default),
    when the label is unknown (`decode_payload` then reports it by name) and when the label is
    UTF-16 or UTF-32 (a declaration written in ASCII-compatible bytes cannot truthfully say so;
    `decode_payload` reports that too).

    Raises UnicodeEncodeError when the declared encoding cannot hold a character of the text;
    its `encoding` is the label as declared, its `object` the text encoded (without the mark).
    """
    text = text.removeprefix("\ufeff")
    match = _TEXT_DECLARATION.match(text)
    declared = (match.group("dq") or match.group("sq")) if match else None
    if not declared:
        return text.encode("utf-8")
    try:
        codec = codec_of(declared)
    except LookupError:
        return text.encode("utf-8")
    if codec in _WIDE_CODECS:
        return text.encode("utf-8")
    try:
        return text.encode(codec)
    except UnicodeEncodeError as error:
        raise UnicodeEncodeError(declared, text, error.start, error.end, error.reason) from None


def _codec_name(name: str, said_by: str) -> str:
    try:
        return codec_of(name)
    except LookupError:
        raise EncodingMismatch(f"unknown encoding '{name}' in {said_by}") from None


def _decode(
    payload: bytes,
    codec: str,
    chosen_by: Literal["bom", "declaration", "charset", "default"],
    skip: int,
    said: str,
) -> DecodedPayload:
    try:
        text = payload[skip:].decode(codec) if skip else payload.decode(codec)
    except UnicodeDecodeError as error:
        offset = error.start + skip
        shown = payload[offset : offset + 4].hex(" ")
        hint = ""
        if codec != "gb18030" and _decodes(payload[skip:], "gb18030"):
            hint = "; the bytes are valid GB18030/GBK: declare that encoding"
        raise EncodingMismatch(
            f"bytes at offset {offset} ({shown}) are not valid {codec} ({said}){hint}",
            offset=offset,
        ) from None
    return DecodedPayload(text, codec, chosen_by, skip)


def _decodes(data: bytes, codec: str) -> bool:
    try:
        data.decode(codec)
    except UnicodeDecodeError:
        return False
    return True
