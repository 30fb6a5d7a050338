"""Helpers of the mapping engine's tests: names of the shipped systems and their samples."""

from __future__ import annotations

from functools import cache

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
