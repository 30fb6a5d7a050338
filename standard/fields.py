"""One way to declare a field of the standard: Chinese name, national field codes, stage, limits.

``field()`` is a thin helper over pydantic's ``Field``: the Chinese name becomes the JSON Schema
``title`` and ``x-zh``; national field codes go to ``x-codes`` (current generation first, then the
older generation, which is also listed in ``x-legacy-codes``); a field required only from a penalty
stage on carries ``x-required-from-stage``. A field without a default is mandatory.

``field_meta(Model, "decision_date")`` reads it back as a ``FieldMeta``, together with the code
dictionary that constrains the field (from its type's ``DictionaryCode`` annotation), so mappings,
docs and error messages all use the same names.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from standard.dictionaries import DictionaryCode


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


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def dictionary_of(annotation: Any) -> str | None:
    """The dictionary constraining a type (looking inside Optional, list and Annotated)."""
    if typing.get_origin(annotation) is typing.Annotated:
        for marker in annotation.__metadata__:
            if isinstance(marker, DictionaryCode):
                return marker.name
        return dictionary_of(annotation.__origin__)
    for arg in typing.get_args(annotation):
        found = dictionary_of(arg)
        if found is not None:
            return found
    return None


def _field_dictionary(info: FieldInfo) -> str | None:
    for marker in info.metadata:
        if isinstance(marker, DictionaryCode):
            return marker.name
    return dictionary_of(info.annotation)


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
    return FieldMeta(
        en=name,
        zh=str(extra.get("x-zh") or info.title or name),
        description=info.description or "",
        codes=codes,
        legacy_codes=tuple(extra.get("x-legacy-codes", ())),
        mandatory=info.is_required(),
        dictionary=_field_dictionary(info),
        max_length=_max_length(info),
        required_from_stage=extra.get("x-required-from-stage"),
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
