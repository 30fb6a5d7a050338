"""A connected system's folder, loaded and compiled: its mappings in both directions.

    mappings/systems/<system>/
        system.yaml            who the system is (SystemSpec) and its payload limits
        *.yaml                 mapping files, one message type each (inbound or outbound)
        tables/*.csv|yaml      its code tables
        samples/<type>/...     sample payloads (inbound) or records (outbound)
        expected/<type>/...    what each sample must give

Loading validates and compiles everything, so a broken mapping fails when the hub starts, not
at the first message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ValidationError

from mappings.errors import MappingError, UnknownMessageType
from mappings.functions import BuildContext
from mappings.inbound import InboundTranslation, Translation
from mappings.language import InboundMapping, MappingFile, OutboundMapping, SystemSpec
from mappings.lookup_tables import CodeTable, load_tables
from mappings.outbound import OutboundRendering
from mappings.yamlsource import load_yaml
from standard.envelope import Envelope

SYSTEMS_ROOT = Path(__file__).parent / "systems"
SYSTEM_FILE = "system.yaml"


@dataclass(frozen=True)
class SystemMappings:
    """Every mapping of one system, compiled; immutable and safe to share between threads."""

    spec: SystemSpec
    folder: Path
    tables: Mapping[str, CodeTable]
    inbound: Mapping[str, InboundTranslation]
    outbound: Mapping[str, OutboundRendering]

    @property
    def id(self) -> str:
        """The system's id (its folder name)."""
        return self.spec.id

    def translate(
        self,
        message_type: str,
        payload: bytes,
        *,
        charset: str | None = None,
        read_at: datetime | None = None,
        max_records: int | None = None,
    ) -> Translation:
        """Translate a payload of `message_type` into envelopes and per-record errors.

        `charset` is the one the transport declared (HTTP Content-Type), if any; `read_at` when
        the hub read the payload (default now; see `InboundTranslation.translate`). Raises
        PayloadRejected when the payload cannot be read at all (PayloadTooManyRecords when it
        holds more than `max_records`), UnknownMessageType when the system has no inbound
        mapping of that name.
        """
        return self.inbound_mapping(message_type).translate(
            payload, charset=charset, read_at=read_at, max_records=max_records
        )

    def render(
        self, message_type: str, envelope_or_record: Envelope | BaseModel | Mapping[str, Any]
    ) -> bytes:
        """Render an envelope or a canonical record as a `message_type` payload for this system."""
        return self.outbound_mapping(message_type).render(envelope_or_record)

    def inbound_mapping(self, message_type: str) -> InboundTranslation:
        """The compiled inbound mapping of `message_type`."""
        found = self.inbound.get(message_type)
        if found is None:
            raise UnknownMessageType(self.id, message_type, "inbound", sorted(self.inbound))
        return found

    def outbound_mapping(self, message_type: str) -> OutboundRendering:
        """The compiled outbound mapping of `message_type`."""
        found = self.outbound.get(message_type)
        if found is None:
            raise UnknownMessageType(self.id, message_type, "outbound", sorted(self.outbound))
        return found


def load_system(path: Path | str) -> SystemMappings:
    """Load and compile the system folder at `path`; raise MappingError naming file and line."""
    folder = Path(path)
    system_file = folder / SYSTEM_FILE
    if not system_file.is_file():
        raise MappingError(f"a system folder needs a {SYSTEM_FILE}", file=system_file)
    document = load_yaml(system_file)
    try:
        spec = SystemSpec.model_validate(document.data)
    except ValidationError as error:
        raise document.validation_error(error) from None
    if spec.id != folder.name:
        raise document.error(
            f"id '{spec.id}' differs from the folder name '{folder.name}'", ("id",)
        )
    tables = load_tables(folder / "tables")
    context = BuildContext(tables=tables, system=spec.id)
    inbound: dict[str, InboundTranslation] = {}
    outbound: dict[str, OutboundRendering] = {}
    for mapping_path in sorted(folder.glob("*.y*ml")):
        if mapping_path.name == SYSTEM_FILE:
            continue
        mapping_document = load_yaml(mapping_path)
        try:
            mapping = MappingFile.model_validate({"spec": mapping_document.data}).spec
        except ValidationError as error:
            raise _mapping_error(mapping_document, error) from None
        if isinstance(mapping, InboundMapping):
            _unique(inbound, mapping.message_type, mapping_document.path, "inbound")
            inbound[mapping.message_type] = InboundTranslation(
                spec, mapping, mapping_document, context
            )
        else:
            assert isinstance(mapping, OutboundMapping)
            _unique(outbound, mapping.message_type, mapping_document.path, "outbound")
            outbound[mapping.message_type] = OutboundRendering(
                spec, mapping, mapping_document, context
            )
    if not inbound and not outbound:
        raise MappingError("the system folder has no mapping files", file=folder)
    return SystemMappings(
        spec,
        folder,
        MappingProxyType(tables),
        MappingProxyType(inbound),
        MappingProxyType(outbound),
    )


@dataclass(frozen=True)
class MappingVersion:
    """Which version of a system folder's mappings was loaded: what an operator compares.

    Attributes:
      folder: the system folder's name.
      digest: SHA-256 of every file loading reads (system.yaml, the mapping files, the code
        tables: each file's name and bytes), hex; samples and expected results are not in it.
      modified: the newest modification time among those files (UTC).
    """

    folder: str
    digest: str
    modified: datetime

    @property
    def short(self) -> str:
        """The digest's first 12 hex digits, as pages and terminals show it."""
        return self.digest[:12]


def mapping_version(path: Path | str) -> MappingVersion:
    """The version of the system folder at `path` as it is on disk now (see MappingVersion)."""
    folder = Path(path)
    read = [folder / SYSTEM_FILE, *sorted(folder.glob("*.y*ml")), *sorted(folder.glob("tables/*"))]
    digest = hashlib.sha256()
    newest = 0.0
    for file in dict.fromkeys(read):  # system.yaml matches the glob too: once
        if not file.is_file():
            continue
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
        newest = max(newest, file.stat().st_mtime)
    modified = datetime.fromtimestamp(newest, UTC)
    return MappingVersion(folder.name, digest.hexdigest(), modified)


def load_all(root: Path | str | None = None) -> dict[str, SystemMappings]:
    """Every system folder under `root` (default: the systems shipped in `mappings/systems`)."""
    base = Path(root) if root is not None else SYSTEMS_ROOT
    if not base.is_dir():
        raise MappingError("the systems folder does not exist", file=base)
    return {
        folder.name: load_system(folder)
        for folder in sorted(base.iterdir())
        if (folder / SYSTEM_FILE).is_file()
    }


def _unique(found: Mapping[str, Any], message_type: str, path: Path, direction: str) -> None:
    if message_type in found:
        other = found[message_type].document.path
        raise MappingError(
            f"{direction} message type '{message_type}' is also mapped in {other.name}",
            file=path,
        )


def _mapping_error(document: Any, error: ValidationError) -> MappingError:
    # Locations start with the wrapper's "spec" and the union's tag (inbound/outbound).
    first = error.errors(include_url=False)[0]
    location = tuple(first["loc"])
    if location[:1] == ("spec",):
        location = location[1:]
    if location[:1] in (("inbound",), ("outbound",)):
        location = location[1:]
    field = next((str(part) for part in location[1:2] if location[:1] == ("fields",)), None)
    shown = ".".join(str(part) for part in location if "[" not in str(part))
    reason = f"{shown}: {first['msg']}" if shown else first["msg"]
    if first["type"] == "union_tag_invalid" or first["type"] == "union_tag_not_found":
        reason = "`direction` must be inbound or outbound"
    more = error.error_count() - 1
    if more:
        reason += f" (and {more} more problem{'s' if more > 1 else ''})"
    return document.error(reason, location, field=field)
