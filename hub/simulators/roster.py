"""The demo's reference lists: the catalogue items and enforcement certificates its traffic names.

The departments' generated inspections and penalty cases keep their templates' catalogue codes
and inspectors' certificate numbers (`hub.simulators.traffic` varies keys, parties and regions,
not these), so the lists the demo feeds are read off the same samples: every catalogue code and
certificate number that a valid inspection or penalty-case sample names. The national
catalogue's simulator serves those items and the provincial platform's simulator those
certificates (`SimulatedSource(fixed=...)`), each written into the source's own payload from a
template record of its folder (`SystemTraffic.record`).

A few are wrong on purpose, so the cross-checks on the lists have something to show: one item is
served repealed (status 3), one code is left out of the catalogue, and one certificate is served
cancelled (status 3). The records that name them are the traffic's deliberately invalid ones.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from adapters import registry
from mappings import PayloadRejected, SystemMappings
from systems import SystemConfig

NAMING_DATASETS = frozenset({"inspection", "penalty_case"})
"""The datasets whose records name catalogue codes and certificates the checks look up."""
REPEALED, CANCELLED = "3", "3"
"""item_status 已废止; officer_status 注销执法证."""


@dataclass(frozen=True)
class Roster:
    """What the demo's lists hold: catalogue code → status, certificate number → (officer's
    name, status); `unlisted` are the codes named by traffic but deliberately left out."""

    catalogue: Mapping[str, str]
    officers: Mapping[str, tuple[str, str]]
    unlisted: frozenset[str]

    def catalogue_records(self) -> list[dict[str, Any]]:
        """The catalogue items as canonical values to write (`SimulatedSource(fixed=...)`)."""
        return [
            {"catalogue_code": code, "name": f"监管事项 {code}（演示）", "status": status}
            for code, status in sorted(self.catalogue.items())
        ]

    def officer_records(self) -> list[dict[str, Any]]:
        """The certificates as canonical values to write, each officer's id derived from it."""
        return [
            {"certificate_number": number, "officer_id": f"ZF-{number}", "name": name,
             "status": status}
            for number, (name, status) in sorted(self.officers.items())
        ]  # fmt: skip


def demo_roster(mappings: Mapping[str, SystemMappings], polled: Collection[str] = ()) -> Roster:
    """The roster the samples of `mappings` name (see the module docstring). The entries wrong
    on purpose are chosen among those only pushing systems name: a polled source's simulator
    counts what it serves as valid by its own spoiling, so a record the checks refuse would
    leave its books open (`polled`: the mapping folders of the polled systems)."""
    codes: set[str] = set()
    officers: dict[str, str] = {}
    polled_codes: set[str] = set()
    polled_officers: set[str] = set()
    for folder_id, folder in mappings.items():
        for message_type, translation in folder.inbound.items():
            if translation.dataset.name not in NAMING_DATASETS:
                continue
            for sample in sorted((folder.folder / "samples" / message_type).glob("valid*")):
                try:
                    result = folder.translate(message_type, sample.read_bytes())
                except PayloadRejected:
                    continue  # a sample declared by its transport (a charset header)
                for envelope in result.envelopes:
                    data = envelope.data
                    if data.get("catalogue_code"):
                        codes.add(str(data["catalogue_code"]))
                        if folder_id in polled:
                            polled_codes.add(str(data["catalogue_code"]))
                    for inspector in data.get("inspectors") or []:
                        officers[inspector["certificate_number"]] = inspector["name"]
                        if folder_id in polled:
                            polled_officers.add(inspector["certificate_number"])
    wrong_codes = sorted(codes - polled_codes)
    unlisted = frozenset(wrong_codes[-1:])
    catalogue = {code: "1" for code in sorted(codes) if code not in unlisted}
    if len(wrong_codes) > 1:
        catalogue[wrong_codes[-2]] = REPEALED
    roster = {number: (name, "1") for number, name in officers.items()}
    wrong_officers = sorted(set(roster) - polled_officers)
    if wrong_officers:
        last = wrong_officers[-1]
        roster[last] = (roster[last][0], CANCELLED)
    return Roster(catalogue, roster, unlisted)


def landscape_roster(
    systems: Iterable[SystemConfig], mappings: Mapping[str, SystemMappings]
) -> Roster:
    """The roster of a landscape's `systems`: read off the samples of the systems that send in
    it (a code only a system sending nothing there names would be wrong with nobody sending
    it), the wrong entries among those no polled system names."""
    sending = [system for system in systems if system.inbound]
    polled = {
        system.mapping_id
        for system in sending
        if any(registry.adapter_class(c.adapter).kind == "poller" for c in system.inbound)
    }
    folders = {system.mapping_id for system in sending}
    return demo_roster({k: v for k, v in mappings.items() if k in folders}, polled)
