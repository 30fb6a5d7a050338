"""Helpers of the mapping engine's tests: names of the shipped systems and their samples, and
edits of a copied system folder that should make it fail to load."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from mappings.errors import MappingError
from mappings.system import SYSTEMS_ROOT, SystemMappings, load_system

PENALTY = "eco-env-penalty"
GRASSROOTS = "grassroots-platform"


def sample(system: str, message_type: str, name: str) -> bytes:
    """The bytes of a shipped sample payload."""
    return (SYSTEMS_ROOT / system / "samples" / message_type / name).read_bytes()


@cache
def system(name: str) -> SystemMappings:
    """The shipped system `name`, loaded and compiled once per test session."""
    return load_system(SYSTEMS_ROOT / name)


def edit(root: Path, relative: str, old: str, new: str) -> Path:
    """Replace the first `old` in the file `relative` below `root` by `new`; the file's path."""
    path = root / relative
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def line_of(path: Path, fragment: str) -> int:
    """The 1-based number of the first line of `path` holding `fragment`."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not in {path}")


def load_error(root: Path, name: str) -> MappingError:
    """The MappingError loading the system folder `name` below `root` raises."""
    with pytest.raises(MappingError) as caught:
        load_system(root / name)
    return caught.value
