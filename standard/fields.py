"""One way to declare a field of the standard: Chinese name, national field codes, stage, limits.

``field()`` is a thin helper over pydantic's ``Field``: the Chinese name becomes the JSON Schema
``title`` and ``x-zh``; national field codes go to ``x-codes`` (current generation first, then the
older generation, which is also listed in ``x-legacy-codes``); a field required only from a penalty
stage on carries ``x-required-from-stage``. A field without a default is mandatory.

``field_meta(Model, "decision_date")`` reads it back as a ``FieldMeta``, together with the code
dictionary that constrains the field (from its type's ``DictionaryCode`` annotation), so mappings,
docs and error messages all use the same names.

A field also says what it names besides its own record: ``links`` gives the datasets whose record
key it holds (``x-links``: a task's ``source_record_id``, a feedback's ``warning_id``), and a code
type carrying the ``SearchKey`` annotation (the unified social credit code) identifies an
organisation, or does so only when a sibling field says so (``credit_code_when``, ``x-credit-code-
when``: a party's certificate code when its certificate type is 001). ``standard.references``
reads them to find what a record names.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from standard.dictionaries import DictionaryCode

Marker = TypeVar("Marker")


@dataclass(frozen=True)
class SearchKey:
    """Annotation marking a code type whose values identify an organisation in every record that
    names it (``kind``: "credit_code"), so that all of them can be found by the code."""

    kind: str


def field(
    zh: str,
    description: str,
    *,
    default: Any = PydanticUndefined,
    default_factory: Any = None,
    codes: Sequence[str] = (),
    legacy_codes: Sequence[str] = (),
    max_length: int | None = None,
    min_length: int | None = None,
    ge: Any = None,
    le: Any = None,
    required_from_stage: str | None = None,
    examples: Sequence[Any] | None = None,
    links: Sequence[str] = (),
    credit_code_when: tuple[str, str] | None = None,
) -> Any:
    """Declare a field: Chinese name ``zh``, English ``description``, national ``codes``.

    Leave ``default`` unset for a mandatory field. ``legacy_codes`` are the older generation's
    codes for the same field (e.g. 双公示 ``CF_XDR_ZDM`` beside ``CF_XDR_ZZJG``).
    ``required_from_stage`` names the penalty stage from which an optional field becomes
    mandatory (checked by the dataset's rules, shown in the JSON Schema).
    """
    extra: dict[str, Any] = {"x-zh": zh}
    all_codes = [*codes, *legacy_codes]
    if all_codes:
        extra["x-codes"] = all_codes
    if legacy_codes:
        extra["x-legacy-codes"] = list(legacy_codes)
    if required_from_stage is not None:
        extra["x-required-from-stage"] = required_from_stage
    if links:
        extra["x-links"] = list(links)
    if credit_code_when is not None:
        extra["x-credit-code-when"] = {credit_code_when[0]: credit_code_when[1]}
    kwargs: dict[str, Any] = {
        "title": zh,
        "description": description,
        "json_schema_extra": extra,
        "max_length": max_length,
        "min_length": min_length,
        "ge": ge,
        "le": le,
    }
    if examples is not None:
        kwargs["examples"] = list(examples)
    if default_factory is not None:
        return Field(default_factory=default_factory, **kwargs)
    return Field(default, **kwargs)


@dataclass(frozen=True)
class FieldMeta:
    """What the standard says about one field of one dataset."""

    en: str
    zh: str
    description: str
    codes: tuple[str, ...]
    legacy_codes: tuple[str, ...]
    mandatory: bool
    dictionary: str | None
    max_length: int | None
    required_from_stage: str | None
    links: tuple[str, ...] = ()
    """The datasets whose record key this field holds (empty: it links nothing)."""
    search_key: str | None = None
    """What the field's values identify across records ("credit_code"), from its type."""
    credit_code_when: tuple[str, str] | None = None
    """(sibling field, code): the field holds a credit code only when the sibling has the code."""


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def marker_of(annotation: Any, kind: type[Marker]) -> Marker | None:
    """The first annotation of class `kind` on a type (looking inside Optional, list and
    Annotated)."""
    if typing.get_origin(annotation) is typing.Annotated:
        for marker in annotation.__metadata__:
            if isinstance(marker, kind):
                return marker
        return marker_of(annotation.__origin__, kind)
    for arg in typing.get_args(annotation):
        found = marker_of(arg, kind)
        if found is not None:
            return found
    return None


def _field_marker(info: FieldInfo, kind: type[Marker]) -> Marker | None:
    """The annotation of class `kind` on a field: pydantic moves a bare Annotated type's
    annotations to the field's metadata, and leaves them inside Optional or list."""
    for marker in info.metadata:
        if isinstance(marker, kind):
            return marker
    return marker_of(info.annotation, kind)


def _max_length(info: FieldInfo) -> int | None:
    for marker in info.metadata:
        limit = getattr(marker, "max_length", None)
        if isinstance(limit, int):
            return limit
    return None


def field_meta(model: type[BaseModel], name: str) -> FieldMeta:
    """The metadata of field ``name`` of ``model``; KeyError naming the model when there is none."""
    try:
        info = model.model_fields[name]
    except KeyError:
        raise KeyError(f"{model.__name__} has no field {name!r}") from None
    extra = _extra(info)
    codes = tuple(extra.get("x-codes", ()))
    dictionary = _field_marker(info, DictionaryCode)
    search_key = _field_marker(info, SearchKey)
    when = extra.get("x-credit-code-when")
    return FieldMeta(
        en=name,
        zh=str(extra.get("x-zh") or info.title or name),
        description=info.description or "",
        codes=codes,
        legacy_codes=tuple(extra.get("x-legacy-codes", ())),
        mandatory=info.is_required(),
        dictionary=dictionary.name if dictionary is not None else None,
        max_length=_max_length(info),
        required_from_stage=extra.get("x-required-from-stage"),
        links=tuple(extra.get("x-links", ())),
        search_key=search_key.kind if search_key is not None else None,
        credit_code_when=next(iter(when.items())) if when else None,
    )


def fields_meta(model: type[BaseModel]) -> list[FieldMeta]:
    """Metadata of every field of ``model``, in declaration order."""
    return [field_meta(model, name) for name in model.model_fields]


def field_for_code(model: type[BaseModel], code: str) -> str:
    """The English field name carrying national field code ``code`` (either generation)."""
    wanted = code.upper()
    for meta in fields_meta(model):
        if wanted in meta.codes:
            return meta.en
    raise KeyError(f"{model.__name__} has no field with national code {code!r}")


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field's type holds, directly or inside Optional/list/Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return model_in(annotation.__origin__)
    if origin in (typing.Union, types.UnionType, list, tuple, Sequence, set, frozenset):
        for arg in typing.get_args(annotation):
            found = model_in(arg)
            if found is not None:
                return found
    return None


def zh_path(model: type[BaseModel], loc: Sequence[str | int]) -> tuple[str, str]:
    """A pydantic error location as (English path, Chinese path): ``inspectors[1].name``."""
    en: list[str] = []
    zh: list[str] = []
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            if en:
                en[-1] += f"[{part}]"
                zh[-1] += f"[{part}]"
            continue
        info = current.model_fields.get(part) if current is not None else None
        if info is None:
            en.append(part)
            zh.append(part)
            current = None
            continue
        en.append(part)
        zh.append(str(_extra(info).get("x-zh") or info.title or part))
        current = model_in(info.annotation)
    return ".".join(en), ".".join(zh)


def path_parts(path: str) -> tuple[str | int, ...]:
    """A dotted field path as a location: ``inspectors[1].name`` is (inspectors, 1, name)."""
    parts: list[str | int] = []
    for piece in path.split("."):
        name, _, rest = piece.partition("[")
        parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            parts.append(int(index))
            rest = rest.removeprefix("[")
    return tuple(parts)
