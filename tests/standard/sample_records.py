"""The sample records of the standard's tests, and a way to change one field of a copy."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> dict[str, Any]:
    """A fresh copy of the realistic sample record of dataset ``name``."""
    loaded: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    for piece in path.split("."):
        name, _, rest = piece.partition("[")
        steps.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            steps.append(int(index))
            rest = rest.removeprefix("[")
    return steps


DELETE = object()


def changed(data: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``data`` with dotted paths (``party.name``, ``inspectors[1].name``) set to
    new values, or removed when the value is ``DELETE``."""
    result = copy.deepcopy(data)
    for path, value in changes.items():
        *parents, last = _steps(path)
        target: Any = result
        for step in parents:
            target = target[step]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return result
