"""Shared fixtures of the mapping engine's tests: the shipped systems, loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest
from mapping_support import GRASSROOTS, PENALTY

from mappings.system import SYSTEMS_ROOT, SystemMappings, load_system


@pytest.fixture(scope="session")
def penalty_system() -> SystemMappings:
    return load_system(SYSTEMS_ROOT / PENALTY)


@pytest.fixture(scope="session")
def grassroots_system() -> SystemMappings:
    return load_system(SYSTEMS_ROOT / GRASSROOTS)


@pytest.fixture()
def system_copy(tmp_path: Path) -> Path:
    """A writable copy of the systems folder, for tests that break a mapping on purpose."""
    import shutil

    target = tmp_path / "systems"
    shutil.copytree(SYSTEMS_ROOT, target)
    return target
