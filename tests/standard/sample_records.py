"""The sample records of the standard's tests, and a way to change one field of a copy."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from standard.fields import path_parts

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> dict[str, Any]:
    """A fresh copy of the realistic sample record of dataset ``name``."""
    loaded: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


DELETE = object()


def changed(data: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``data`` with dotted paths (``party.name``, ``inspectors[1].name``) set to
    new values, or removed when the value is ``DELETE``."""
    result = copy.deepcopy(data)
    for path, value in changes.items():
        *parents, last = path_parts(path)
        target: Any = result
        for step in parents:
            target = target[step]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return result
