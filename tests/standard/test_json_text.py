"""The hub's compact JSON (standard/json_text.py) against the standard library it stands in for:
the same bytes or the same error on every shipped sample's records and on generated values, and
the same value or the same error when reading."""

from __future__ import annotations

import json
import math
import sys
import uuid
from collections import OrderedDict
from datetime import date, datetime
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.samples import sample_envelopes
from mappings.system import SYSTEMS_ROOT, load_all
from standard import json_text

SAMPLES = Path(__file__).parent / "samples"


def stdlib(value: Any, *, sort_keys: bool = False) -> bytes | type[BaseException]:
    """What the hub wrote before json_text: bytes, or the type of the error."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
        return text.encode("utf-8")
    except Exception as error:
        return type(error)


def ours(value: Any, *, sort_keys: bool = False) -> bytes | type[BaseException]:
    try:
        return (json_text.compact_sorted if sort_keys else json_text.compact)(value)
    except Exception as error:
        return type(error)


def spaced(writer: Any, value: Any) -> str | type[BaseException]:
    """The journal detail's form (sort_keys, default=str, ", " and ": "), or the error's type."""
    try:
        text: str = writer(value, ensure_ascii=False, sort_keys=True, default=str)
        return text
    except Exception as error:
        return type(error)


def assert_alike(value: Any) -> None:
    assert ours(value) == stdlib(value)
    assert ours(value, sort_keys=True) == stdlib(value, sort_keys=True)
    assert spaced(ours_spaced, value) == spaced(json.dumps, value)


def ours_spaced(value: Any, *, default: Any, **_: Any) -> str:
    return json_text.spaced_sorted(value, default)


def read(text: bytes | str, reader: Any) -> str:
    """What a reader makes of `text`: the value's repr (which tells 1 from 1.0 and -0.0 from 0.0,
    and shows NaN), or the error's type and message."""
    try:
        return repr(reader(text))
    except Exception as error:
        return f"{type(error).__name__}: {error}"


def assert_read_alike(text: bytes | str) -> None:
    assert read(text, json_text.loads) == read(text, json.loads)


def shipped_records() -> list[Any]:
    """Every record the shipped samples translate to (the ten departments' payloads among
    them), and the standard's sample records."""
    records: list[Any] = [
        json.loads(path.read_text(encoding="utf-8")) for path in sorted(SAMPLES.glob("*.json"))
    ]
    for system in load_all(SYSTEMS_ROOT).values():
        envelopes = sample_envelopes(system)
        records += [envelope.data for envelope in envelopes]
        records += [json.loads(envelope.to_json()) for envelope in envelopes]
    return records


RECORDS = shipped_records()


def test_the_shipped_samples_give_records_to_compare() -> None:
    assert len(RECORDS) > 200


@pytest.mark.parametrize("index", range(len(RECORDS)))
def test_every_shipped_record_is_written_alike(index: int) -> None:
    record = RECORDS[index]
    assert_alike(record)
    written = json_text.compact(record)
    assert_read_alike(written)
    assert json_text.loads(written) == record


def test_the_shipped_records_go_through_orjson() -> None:
    # Not the fallback: the speed is the point, so the samples' records must pass the walk.
    assert all(json_text._prints_alike(record) for record in RECORDS)


# -- generated values ------------------------------------------------------------------------

# Every code point, lone surrogates and the CJK planes included.
CHARACTERS = st.characters(min_codepoint=0, max_codepoint=sys.maxunicode, categories=None)
TEXT = st.text(CHARACTERS, max_size=12) | st.sampled_from(
    ["", "许䶮", "杭州西溪𠮷祥", "\u2028\u2029", "\x7f\x00\x1f", '"\\/', "\ud800", "\udfff\ud83d"]
)
EDGE_INTS = st.sampled_from(
    [0, 1, -1, 2**53, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**30, -(10**30)]
)
INTS = st.integers() | EDGE_INTS
EDGE_FLOATS = st.sampled_from(
    [0.0, -0.0, 1e-4, 9.999999999999999e-05, 1e-5, 1e16, 9999999999999998.0, 1e15, 1e17, 5e-324,
     1.7976931348623157e308, 0.1, 1 / 3, 2.5, math.nan, math.inf, -math.inf, -1e-7, 123456.789]
)  # fmt: skip
FLOATS = st.floats() | EDGE_FLOATS
SCALARS = st.none() | st.booleans() | INTS | FLOATS | TEXT
KEYS = TEXT | st.integers(-3, 3) | st.booleans() | st.none() | st.floats(0, 2)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(TEXT, inner, max_size=5)
        | st.dictionaries(KEYS, inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=3000, deadline=None)
@given(VALUES)
def test_generated_values_are_written_alike(value: Any) -> None:
    assert_alike(value)


@settings(max_examples=3000, deadline=None)
@given(st.floats(min_value=json_text._FLOAT_LOW, max_value=json_text._FLOAT_HIGH, exclude_max=True))
def test_orjson_prints_every_float_of_the_walked_range_as_repr_does(number: float) -> None:
    assert orjson.dumps(number) == repr(number).encode()
    assert orjson.dumps(-number) == repr(-number).encode()


def test_floats_at_the_edges_of_the_range() -> None:
    for exponent in range(-330, 309):
        for number in (10.0**exponent, 2.0**exponent):
            for near in (math.nextafter(number, 0.0), number, math.nextafter(number, math.inf)):
                assert_alike([near, -near])
                if json_text._prints_alike(near):
                    assert orjson.dumps(near) == repr(near).encode()


class Colour(StrEnum):
    RED = "red"


class Size(IntEnum):
    BIG = 2


class Plain(Enum):
    ONE = 1


class Text(str):
    pass


class Number(int):
    pass


class Real(float):
    pass


@pytest.mark.parametrize(
    "value",
    [
        Colour.RED,
        {"c": Colour.RED},
        {Colour.RED: 1},
        [Size.BIG],
        {Size.BIG: 1},
        [Plain.ONE],
        Text("许"),
        {Text("k"): Text("v")},
        [Number(7)],
        [Real(1e-7)],
        [Real(0.5)],
        OrderedDict(a=1),
        [datetime(2026, 1, 2, 3, 4, 5)],
        [date(2026, 1, 2)],
        [Decimal("1.10")],
        [uuid.UUID(int=7)],
        [b"bytes"],
        {1: "a", "1": "b"},
        {None: 1, True: 2, 1.5: 3},
        {"b": 1, 2: 3},
        [1, (2, [3, {"x": (4,)}])],
    ],
    ids=repr,
)
def test_values_the_walk_sends_elsewhere_are_written_alike(value: Any) -> None:
    assert_alike(value)


# -- reading ---------------------------------------------------------------------------------


@settings(max_examples=2000, deadline=None)
@given(VALUES, st.booleans())
def test_generated_documents_are_read_alike(value: Any, ascii_only: bool) -> None:
    try:
        text = json.dumps(value, ensure_ascii=ascii_only)
    except (TypeError, ValueError):
        return  # a key the standard library cannot write
    assert_read_alike(text)
    try:
        assert_read_alike(text.encode("utf-8"))
    except UnicodeEncodeError:
        assert_read_alike(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "text",
    [
        "NaN", "Infinity", "-Infinity", "[NaN,1]", "1e400", "-1e400", "1e-400", "1E5", "-0",
        "-0.0", "1.0", "0.1", "18446744073709551615", "18446744073709551616",
        "-9223372036854775808", "-9223372036854775809", "123456789012345678901234567890",
        '{"a":1,"a":2}', '{"a":{"b":1},"a":[2]}', '"\\ud800"', '"\\udc00\\ud800"',
        '"\\ud83d\\ude00"',
        '"\x01"', '"tab\there"', " [1 , 2 ] ", "[1,]", "{'a':1}", "", " ", "01", "1.", ".5", "+1",
        "[" * 2000 + "]" * 2000, '"\u2028"', "\ufeff[1]", '"a" "b"', "null", "true", "tRUE",
        '{"许":"䶮"}', "[1]x",
    ],
)  # fmt: skip
def test_edge_documents_are_read_alike(text: str) -> None:
    assert_read_alike(text)
    if "\ud800" not in text:
        assert_read_alike(text.encode("utf-8"))


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbf[1]",
        "[1]".encode("utf-16"),
        '{"a":"许"}'.encode("utf-16-le"),
        '"\u8bb8"'.encode("utf-32"),
        b'"\xed\xa0\x80"',
        b'"\xff"',
        b'"\xe8\xae"',
        b"\x00",
    ],
)
def test_edge_bytes_are_read_alike(data: bytes) -> None:
    assert_read_alike(data)
