"""A system's mappings re-read from disk for a release, checked as `serve` checks them at start.

    reload = DiskMappings(settings.mappings_root, config, folders)   # folders: load_all(...)
    on_disk = reload("agri-penalty")
    on_disk.version.short, on_disk.serving.short     # "3f1c…" (now), "9a0b…" (at start)

`serve` compiles every mapping folder once, when it starts, and translates pushes with them. A
release after a mapping fix must not need a restart nobody would think of, so each release reads
the system's folder again: loaded and compiled (`mappings.load_system`) and bound to the
systems configuration (`SystemsConfig.bind_mappings`: every channel's message type mapped, every
render entry an outbound mapping) — the checks a starting hub makes. A folder that fails them
refuses the release (MappingNotLoadable, naming the folder, its version and the error) rather
than releasing with the old mapping behind the operator's back. New pushes keep the mappings the
process started with: swapping them under running channels, on one host of several, would make
two hosts translate one system differently; the release answer says when they differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from adapters.release import MappingOnDisk
from hub.systems import SystemsConfig, SystemsConfigError
from mappings import SYSTEMS_ROOT, MappingError, MappingVersion, SystemMappings, load_system
from mappings import mapping_version as version_of
from monitor.errors import MappingNotLoadable


class DiskMappings:
    """Loads a system's mapping from disk for a release (an `adapters.release.MappingReload`).

    Parameters:
      root: the folder of the systems' mapping folders (None: the shipped ones).
      config: the systems configuration the mappings are bound to.
      loaded: the folders the process loaded at start, by folder name (`load_all`): the other
        systems' side of the binding, and the versions it serves with.
    """

    def __init__(
        self, root: Path | None, config: SystemsConfig, loaded: Mapping[str, SystemMappings]
    ) -> None:
        self.root = root if root is not None else SYSTEMS_ROOT
        self.config = config
        self.loaded = dict(loaded)
        self.serving: dict[str, MappingVersion] = {
            name: version_of(self.root / name) for name in self.loaded
        }

    def __call__(self, system_id: str) -> MappingOnDisk:
        system = next((s for s in self.config.systems if s.id == system_id), None)
        if system is None:
            raise MappingNotLoadable(
                f"system {system_id!r} is not in the systems configuration any more, so it has "
                "no mapping to release with; discard the entry, or configure the system again"
            )
        name = system.mapping_id
        folder = self.root / name
        version = version_of(folder)
        try:
            fresh = load_system(folder)
            bound = self.config.bind_mappings({**self.loaded, name: fresh})[system_id]
        except (MappingError, SystemsConfigError, OSError) as error:
            raise MappingNotLoadable(
                f"the mapping of {system_id} on disk ({folder}, version {version.short}, changed "
                f"{version.modified:%Y-%m-%d %H:%M:%S} UTC) does not load, so nothing was "
                f"released: {error}. Correct it (`jghub mappings test {name}` says what is "
                "wrong) and release again"
            ) from error
        return MappingOnDisk(bound, version, self.serving.get(name))
