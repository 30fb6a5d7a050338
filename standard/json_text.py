"""A record's JSON: orjson where its bytes are the standard library's, the standard library else.

A record costs the hub JSON several times (its message body out and in, the journal's detail and
hash of each entry): the standard library takes about 9 µs to write a sample record's body where
this module takes under 2 (bench/mapping.py). orjson writes the
same bytes as ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` for plain data
(exact ``dict``, ``list``, ``tuple``, ``str``, ``int``, ``bool``, ``None``), but not for
everything: it prints a float's exponent its own way (``1e-5`` for ``1e-05``, ``1e16`` for
``1e+16``), writes NaN and infinities as ``null``, refuses integers past 64 bits, non-``str`` keys
and lone surrogates, and prints enums, datetimes, UUIDs and dataclasses itself where the
standard library calls ``default`` or fails. So a value goes to orjson only when a walk over it
finds nothing but plain data with floats in the range both print alike, and to the standard
library when orjson refuses it; tests/standard/test_json_text.py compares the two on every
shipped sample's records and on generated values.

Reading: ``orjson.loads`` returns what ``json.loads`` does for UTF-8 JSON within its limits, and
refuses the rest (NaN and Infinity literals, lone surrogate escapes, UTF-16 or UTF-32 bytes, a
byte order mark), which ``json.loads`` reads again, giving today's value or today's error. It
reads an integer past 64 bits as a float, so a document it reads with any float in it is read
again by ``json.loads`` too (the hub's records carry amounts as text: none has a float).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import orjson

# Floats whose magnitude lies in [1e-4, 1e16) (and zeros) print without an exponent in
# `repr`, and orjson prints them alike; outside it the two spell the exponent differently.
_FLOAT_LOW = 1e-4
_FLOAT_HIGH = 1e16
_SCALARS = frozenset({str, int, bool, type(None)})
_CONTAINERS = frozenset({dict, list, tuple})

_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_COMPACT_SORTED = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _prints_alike(value: Any) -> bool:
    """Whether orjson prints `value` as the standard library does: plain containers and scalars
    only, floats in the range where both print the same digits (dict keys are not walked: orjson
    refuses a key that is not a ``str``, which sends the value to the standard library)."""
    return _plain(value, _float_prints_alike)


def _float_prints_alike(number: float) -> bool:
    return _FLOAT_LOW <= abs(number) < _FLOAT_HIGH or number == 0.0


def _no_float(number: float) -> bool:
    return False


def _plain(value: Any, float_ok: Callable[[float], bool]) -> bool:
    """Whether `value` holds only plain containers and scalars, and floats that `float_ok`."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is float:
        return float_ok(value)
    if kind is dict:
        items = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return False
    for item in items:
        if type(item) in _SCALARS:
            continue
        if not _plain(item, float_ok):
            return False
    return True


def compact(value: Any) -> bytes:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")``, the same
    bytes (or the same error), from orjson when it writes them."""
    return _compact(value, 0, _COMPACT)


def compact_sorted(value: Any) -> bytes:
    """`compact` with every object's keys sorted (``sort_keys=True``)."""
    return _compact(value, orjson.OPT_SORT_KEYS, _COMPACT_SORTED)


def _compact(value: Any, option: int, fallback: json.JSONEncoder) -> bytes:
    if _prints_alike(value):
        try:
            return orjson.dumps(value, option=option)
        except orjson.JSONEncodeError:
            pass
    return fallback.encode(value).encode("utf-8")


def loads(text: bytes | str) -> Any:
    """``json.loads(text)``: the same value, or the same error (``json.JSONDecodeError``,
    ``UnicodeDecodeError``), read by orjson when it can."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
    # orjson reads an integer past 64 bits as a float; the standard library keeps it whole.
    # The hub's records carry amounts as text, so a float sends the document to it.
    return value if _plain(value, _no_float) else json.loads(text)


def _widenable(value: Any) -> bool:
    """`_prints_alike`, and no comma or colon in any string or key: then every comma and colon of
    orjson's compact text is a separator."""
    kind = type(value)
    if kind is str:
        return "," not in value and ":" not in value
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or "," in key or ":" in key or not _widenable(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_widenable(item) for item in value)
    return _prints_alike(value)


def spaced_sorted(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(value, ensure_ascii=False, sort_keys=True, default=default)``: the same text
    (or the same error), with the standard library's ", " and ": " written between items."""
    if _widenable(value):
        try:
            written = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass
        else:
            return written.replace(b",", b", ").replace(b":", b": ").decode()
    return _spaced_sorted(default).encode(value)


@functools.cache
def _spaced_sorted(default: Callable[[Any], Any] | None) -> json.JSONEncoder:
    # Built once per `default`: json.dumps with any option builds a new encoder per call.
    return json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=default)
