"""The simulated landscape: a systems configuration wired to simulators on this machine.

`landscape.yaml` beside this file lists every external system the way its system folder
describes its transport, with `${PORT_<system>}` for the port its simulator listens on and
`${KEY_<system>}` / `${TARGET_KEY_<system>}` for the NAMES of environment variables holding keys
generated for this run. `build_landscape` fills them in, leaves out what has no mapping folder
(or message type), validates the result like any systems file, and returns it with the
generated secrets, which `apply_environment` puts into this process's environment.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.simulators.server import free_port
from hub.systems import SystemsConfig, parse_systems
from mappings import SystemMappings
from systems import CLOUDEVENT

LANDSCAPE_FILE = Path(__file__).parent / "landscape.yaml"
_PLACEHOLDER = re.compile(r"\$\{(KEY|TARGET_KEY|PORT)_([a-z0-9-]+)\}")


@dataclass(frozen=True)
class Landscape:
    """A filled-in landscape: the configuration, the generated secrets and the chosen ports."""

    systems: SystemsConfig
    environment: Mapping[str, str]
    ports: Mapping[str, int]

    def apply_environment(self) -> dict[str, str | None]:
        """Put the generated secrets into os.environ; the previous values, to restore later."""
        previous = {name: os.environ.get(name) for name in self.environment}
        os.environ.update(self.environment)
        return previous

    @staticmethod
    def restore_environment(previous: Mapping[str, str | None]) -> None:
        """Put back what `apply_environment` replaced (unset what was not set)."""
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def variable_name(kind: str, system: str) -> str:
    """The environment variable of a generated key: JGHUB_DEMO_<KIND>_<SYSTEM>."""
    return f"JGHUB_DEMO_{kind}_{system.upper().replace('-', '_')}"


def build_landscape(
    mappings: Mapping[str, SystemMappings],
    *,
    template: Path = LANDSCAPE_FILE,
    host: str = "127.0.0.1",
    batching: bool = False,
) -> Landscape:
    """The landscape for the systems in `mappings` (folders by id), with free ports and keys.

    `batching`: keep the `outbound.batch` sections (a backfill's batch uploads); without it
    every target gets one record a request, as the demo's flows are written for.
    """
    text = template.read_text(encoding="utf-8")
    environment: dict[str, str] = {}
    ports: dict[str, int] = {}

    def fill(match: re.Match[str]) -> str:
        kind, system = match.group(1), match.group(2)
        if kind == "PORT":
            if system not in ports:
                ports[system] = free_port(host)
            return str(ports[system])
        name = variable_name(kind, system)
        environment.setdefault(name, secrets.token_hex(16))
        return name

    data = yaml.safe_load(_PLACEHOLDER.sub(fill, text))
    kept = [_fitted(entry, mappings, batching) for entry in data.get("systems", [])]
    config = parse_systems({"systems": [entry for entry in kept if entry]})
    config.check_routes()
    return Landscape(config, environment, ports)


def _fitted(
    entry: dict[str, Any], mappings: Mapping[str, SystemMappings], batching: bool
) -> dict[str, Any] | None:
    """`entry` without what its mapping folder lacks (nor its batch section unless
    `batching`); None when there is no folder."""
    if entry.get("auth", {}).get("scheme") == "internal":
        return entry  # inside the hub: no mapping folder to fit
    folder = mappings.get(str(entry.get("mapping") or entry["id"]))
    if folder is None:
        return None
    entry = dict(entry)
    entry["inbound"] = [
        channel for channel in entry.get("inbound", []) if channel["message_type"] in folder.inbound
    ]
    outbound = entry.get("outbound")
    if outbound:
        outbound = dict(outbound)
        outbound["render"] = {
            dataset: message_type
            for dataset, message_type in (outbound.get("render") or {}).items()
            if message_type in folder.outbound or message_type == CLOUDEVENT
        }
        if not batching:
            outbound.pop("batch", None)
        entry["outbound"] = outbound
    return entry
