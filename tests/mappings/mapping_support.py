"""Helpers of the mapping engine's tests: names of the shipped systems and their samples."""

from __future__ import annotations

from mappings.system import SYSTEMS_ROOT

PENALTY = "eco-env-penalty"
GRASSROOTS = "grassroots-platform"


def sample(system: str, message_type: str, name: str) -> bytes:
    """The bytes of a shipped sample payload."""
    return (SYSTEMS_ROOT / system / "samples" / message_type / name).read_bytes()
