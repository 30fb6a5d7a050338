"""Readiness: can the hub take messages now? The bus answers, the topology is there, mappings load.

`/health` says the process is alive; `/ready` says whether a load balancer should send it work.
`check_readiness` runs four checks and says what is wrong in words:

- **bus**: the broker answers (a read on it succeeds);
- **publisher**: what the hub publishes can be confirmed now: its publishing connection is up
  and the broker does not hold publishes back (a memory or disk alarm). The bus may answer
  reads while publishes cannot get through, and every push would then wait for its confirms
  until the publish timeout;
- **topology**: the hub declared its topology and every target's queue exists on the broker (a
  queue deleted by hand, or a topology never declared, shows here by name);
- **mappings**: every configured system has its compiled mappings.

A target queue that no consumer reads does not stop the hub from taking messages (they wait in
the queue, durably, until a `jghub worker` consumes them), so it leaves the hub ready: the report
lists it under `degraded`, naming the target and its queue. Only RabbitMQ tells consumers; the
embedded broker cannot see other processes' consumers and lists none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bus import Broker, BusError, Topology, TopologyError


@dataclass(frozen=True)
class ReadinessReport:
    """The checks and what is wrong; `ready` when every check passed."""

    checks: dict[str, bool]
    problems: list[str] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)
    """Target queues no consumer reads, by target and queue name: ready all the same."""

    @property
    def ready(self) -> bool:
        return all(self.checks.values())


def check_readiness(
    broker: Broker | None,
    topology: Topology,
    *,
    declared: bool,
    systems: Iterable[str],
    mappings: Mapping[str, object],
    bus_problem: str | None = None,
) -> ReadinessReport:
    """Check bus, publisher, topology and mappings, and name the target queues no consumer
    reads (see the module docstring).

    Parameters:
      broker: the hub's broker, None while it is not connected.
      topology: the topology the hub declares.
      declared: whether the hub's declare succeeded.
      systems: ids of the configured systems.
      mappings: compiled mappings by system id.
      bus_problem: why the hub is not connected, when it knows (shown instead of a generic text).
    """
    problems: list[str] = []
    degraded: list[str] = []
    bus_ok = publisher_ok = topology_ok = False
    if broker is not None:
        publishing = broker.publishing_problem()
        publisher_ok = publishing is None
        if publishing is not None:
            problems.append(f"publisher: {publishing}")
    if broker is None:
        problems.append(f"bus: {bus_problem or 'not connected to the bus'}")
    elif not declared:
        bus_ok = True
        problems.append(f"topology: not declared yet ({bus_problem or 'declare pending'})")
    else:
        try:
            missing, degraded = _target_queues(broker, topology)
            bus_ok = True
            topology_ok = not missing
            if missing:
                problems.append(f"topology: target queues missing: {'; '.join(missing)}")
        except BusError as error:
            problems.append(f"bus: {type(error).__name__}: {error}")
    wanted = list(systems)
    unmapped = [s for s in wanted if s not in mappings]
    if unmapped:
        problems.append(f"mappings: not loaded for {', '.join(unmapped)}")
    return ReadinessReport(
        checks={
            "bus": bus_ok,
            "publisher": publisher_ok,
            "topology": topology_ok,
            "mappings": not unmapped,
        },
        problems=problems,
        degraded=degraded,
    )


def _target_queues(broker: Broker, topology: Topology) -> tuple[list[str], list[str]]:
    """(missing, unconsumed): the target queues absent from the broker, each with why, and
    those present that no consumer reads, each with its queue's name. One read of every queue's
    statistics; only when a queue is missing, one read per target to name each missing one."""
    try:
        stats = broker.queue_stats_many(target.name for target in topology.targets)
    except TopologyError:
        missing = []
        for target in topology.targets:
            try:
                broker.depth(target.name)
            except TopologyError as error:
                missing.append(f"{target.name} ({error})")
        return missing, []
    unconsumed = [
        f"{item.target}: no consumer reads queue {topology.target_queue(item.target)}; its "
        "messages wait there until a jghub worker consumes it"
        for item in stats
        if item.consumers == 0
    ]
    return [], unconsumed
