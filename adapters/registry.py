"""The adapter registry: adapter classes found through the entry-point group `jghub.adapters`.

A new protocol plug-in registers without touching the hub, in its own package's pyproject.toml:

    [project.entry-points."jghub.adapters"]
    my_push = "my_package.my_module:MyPushAdapter"

The entry-point name must equal the class's `name`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from adapters.base import Adapter, AdapterContext
from adapters.errors import AdapterConfigError
from systems import AdapterKind

ENTRY_POINT_GROUP = "jghub.adapters"


@lru_cache(maxsize=1)
def adapters() -> Mapping[str, type[Adapter]]:
    """Every registered adapter class by name, loaded once; AdapterConfigError for a bad entry."""
    found: dict[str, type[Adapter]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as error:
            raise AdapterConfigError(
                f"adapter entry point {entry.name} = {entry.value} cannot be loaded: {error!r}"
            ) from error
        if not (isinstance(loaded, type) and issubclass(loaded, Adapter)):
            raise AdapterConfigError(
                f"adapter entry point {entry.name} = {entry.value} is not an Adapter subclass"
            )
        if getattr(loaded, "name", None) != entry.name:
            raise AdapterConfigError(
                f"adapter entry point {entry.name} = {entry.value}: the class's name is "
                f"{getattr(loaded, 'name', None)!r}; it must equal the entry-point name"
            )
        found[entry.name] = loaded
    return dict(sorted(found.items()))


def adapter_class(name: str, *, kinds: Collection[AdapterKind] | None = None) -> type[Adapter]:
    """The adapter called `name`; AdapterConfigError if none is registered or its kind is wrong."""
    registered = adapters()
    cls = registered.get(name)
    if cls is None:
        wanted = [n for n, c in registered.items() if kinds is None or c.kind in kinds]
        raise AdapterConfigError(
            f"no adapter named {name!r}; registered"
            f"{' ' + '/'.join(kinds) if kinds else ''} adapters: {', '.join(wanted) or 'none'}"
        )
    if kinds is not None and cls.kind not in kinds:
        raise AdapterConfigError(
            f"adapter {name!r} is a {cls.kind} adapter; here a {' or '.join(kinds)} is needed"
        )
    return cls


def validate_options(
    name: str, options: Mapping[str, Any], *, kinds: Collection[AdapterKind] | None = None
) -> BaseModel:
    """`options` validated by the Options model of adapter `name` (defaults filled in).

    Raises AdapterConfigError naming each refused option, its rule and the value given.
    """
    cls = adapter_class(name, kinds=kinds)
    try:
        return cls.Options.model_validate(dict(options))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or '(options)'}: {item['msg']}"
            + (f" (got {item['input']!r})" if item["type"] != "missing" else "")
            for item in error.errors(include_url=False)
        )
        raise AdapterConfigError(f"options of adapter {name!r}: {problems}") from None


def create(
    name: str,
    options: Mapping[str, Any],
    context: AdapterContext,
    *,
    kinds: Collection[AdapterKind] | None = None,
) -> Adapter:
    """A new instance of adapter `name` with validated `options`, built in `context`."""
    cls = adapter_class(name, kinds=kinds)
    return cls(validate_options(name, options, kinds=kinds), context)
