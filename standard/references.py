"""What a record names besides itself: organisations by credit code, other records by key.

The standard says it field by field (`standard.fields`): a code type annotated `SearchKey`
(the unified social credit code) identifies an organisation wherever it appears, a certificate
code does when its certificate type is 001 (`credit_code_when`), and a field with `links` holds
the record key of a record of those datasets. `references` reads a record's data (as an
envelope carries it) along those fields:

    found = references(CollaborationTask, envelope.data)
    found.credit_codes   # {"dispatcher.credit_code": "1133…", "assignees[0].credit_code": "…"}
    found.links          # {"source_record_id": "TS330106…"}
    linked_datasets(CollaborationTask, "source_record_id")  # ("complaint", "grassroots_event", …)

A natural person's ID number is never among them: a certificate code counts as a credit code
only when its certificate type says it is one, so no index built from these holds personal
numbers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from standard.fields import field_meta, model_in

CREDIT_CODE = "credit_code"
"""The `SearchKey` kind of the unified social credit code."""

_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class References:
    """What one record names, by field path (``assignees[0].credit_code``).

    Attributes:
      credit_codes: path → the unified social credit code found there.
      links: path → the record key of the record it links to (`linked_datasets` says which
        datasets that record may belong to).
    """

    credit_codes: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Named:
    """A field of a model that names something, or holds a sub-record that does."""

    name: str
    credit_code: bool
    credit_code_when: tuple[str, str] | None
    links: tuple[str, ...]
    inside: tuple[_Named, ...]


@functools.cache
def _plan(model: type[BaseModel]) -> tuple[_Named, ...]:
    """The fields of `model` worth reading for references, once per model: reading a record
    then touches only them (it runs for every record the hub journals)."""
    plan = []
    for name, info in model.model_fields.items():
        meta = field_meta(model, name)
        sub = model_in(info.annotation)
        inside = _plan(sub) if sub is not None else ()
        credit_code = meta.search_key == CREDIT_CODE
        if credit_code or meta.credit_code_when or meta.links or inside:
            plan.append(_Named(name, credit_code, meta.credit_code_when, meta.links, inside))
    return tuple(plan)


def references(model: type[BaseModel], data: Mapping[str, Any]) -> References:
    """The credit codes and links in `data`, a record of `model` as JSON data."""
    found = References()
    _read(_plan(model), data, "", found)
    return found


def _read(
    plan: tuple[_Named, ...], data: Mapping[str, Any], prefix: str, found: References
) -> None:
    for named in plan:
        for path, value in _values(named.name, data.get(named.name), prefix):
            if named.inside:
                if isinstance(value, Mapping):
                    _read(named.inside, value, f"{path}.", found)
            elif not isinstance(value, str) or not value:
                continue
            elif named.links:
                found.links[path] = value
            elif named.credit_code or _holds_credit_code(named, data):
                found.credit_codes[path] = value


def _values(name: str, value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(path, value) of a field's value, one per item of a list."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield f"{prefix}{name}[{index}]", item
    elif value is not None:
        yield f"{prefix}{name}", value


def _holds_credit_code(named: _Named, record: Mapping[str, Any]) -> bool:
    if named.credit_code_when is None:
        return False
    sibling, code = named.credit_code_when
    return record.get(sibling) == code


def linked_datasets(model: type[BaseModel], path: str) -> tuple[str, ...]:
    """The datasets whose record key the field at `path` of `model` holds (() when it links
    nothing, or `model` has no such field)."""
    names = _INDEX.sub("", path).split(".")
    plan = _plan(model)
    for depth, name in enumerate(names):
        named = next((n for n in plan if n.name == name), None)
        if named is None:
            return ()
        if depth == len(names) - 1:
            return named.links
        plan = named.inside
    return ()


def all_links(model: type[BaseModel]) -> Iterator[tuple[str, str]]:
    """(field path, dataset) of every link `model` declares, nested fields included."""
    yield from _links_in(_plan(model), "")


def _links_in(plan: tuple[_Named, ...], prefix: str) -> Iterator[tuple[str, str]]:
    for named in plan:
        for dataset in named.links:
            yield f"{prefix}{named.name}", dataset
        yield from _links_in(named.inside, f"{prefix}{named.name}.")
