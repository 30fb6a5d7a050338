"""The hub's flows a system may take part in, and the mappings each flow demands of it.

A system's `system.yaml` lists its flows (`flows: [penalty_case, collaboration_task, ...]`);
only those flows' mappings are demanded (by `jghub systems check` and the contract tests), so a
department whose vendor documented only its cases is connected with `flows: [penalty_case]`.
Mappings are matched by the dataset they read or render, not by message type name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from mappings.language import FlowName
from mappings.system import SystemMappings

__all__ = ["FLOWS", "Flow", "flow_gaps"]


@dataclass(frozen=True)
class Flow:
    """What a flow demands: an inbound mapping of one of `inbound` (when any are named) and an
    outbound mapping of each of `outbound`."""

    name: FlowName
    inbound: tuple[str, ...]
    outbound: tuple[str, ...]
    what: str


FLOWS: dict[str, Flow] = {
    flow.name: flow
    for flow in (
        Flow(
            "penalty_case",
            ("penalty_case", "penalty_publication"),
            (),
            "sends its penalty cases (or their publications)",
        ),
        Flow(
            "collaboration_task",
            ("collaboration_task",),
            ("collaboration_task",),
            "takes collaboration tasks and answers them",
        ),
        Flow(
            "risk_warning",
            ("risk_feedback",),
            ("risk_warning",),
            "takes risk warnings and answers them",
        ),
        Flow("supervision_notice", (), ("supervision_notice",), "takes the centre's notices"),
    )
}
assert sorted(FLOWS) == sorted(get_args(FlowName)), "every FlowName needs its Flow"


def flow_gaps(system: SystemMappings) -> list[tuple[int, str]]:
    """(index in `flows`, reason) of each flow `system` declares but lacks a mapping for."""
    reads = {m.dataset.name for m in system.inbound.values()}
    renders = {m.dataset.name for m in system.outbound.values()}
    gaps = []
    for index, name in enumerate(system.spec.flows):
        flow = FLOWS[name]
        lacking = []
        if flow.inbound and not reads & set(flow.inbound):
            lacking.append(f"an inbound mapping of {' or '.join(flow.inbound)}")
        lacking += [f"an outbound mapping of {d}" for d in flow.outbound if d not in renders]
        if lacking:
            gaps.append(
                (
                    index,
                    f"flow {name} (the system {flow.what}) needs {' and '.join(lacking)}; "
                    f"system {system.id} has none (inbound: "
                    f"{', '.join(sorted(system.inbound)) or 'none'}; outbound: "
                    f"{', '.join(sorted(system.outbound)) or 'none'}); add the mapping or "
                    f"remove {name} from `flows` in {system.folder.name}/system.yaml",
                )
            )
    return gaps
