"""The hub at a glance: per system what came in and what went out, what waits, each breaker.

    found = overview(journal, systems=[("national", "national"), ("grassroots-platform", None)],
                     queues=BrokerQueueStats(...), metrics=scrape_registry(), since=day_ago)
    found.rows[0].received, found.rows[0].delivered, found.rows[0].queued, found.rows[0].breaker

The operators' console (`/console`) shows it. Every figure comes from where the rest of the hub
takes it, so the console never counts differently from the terminal:

- in (received, accepted, rejected, refused by the hub): `monitor.quality`'s scorecard of the
  journal over the window, the figures `jghub quality` prints;
- out (delivered, retried, dead-lettered, replayed): the journal's delivery steps over the window,
  per target, the steps `jghub trace` shows one message at a time;
- both aggregated by the database (`monitor.journal_figures`), not read entry by entry:
  `quality.score` and `delivery_counts` are the readings they must agree with;
- waiting now (ready, in flight, retrying, dead) and consumers: the broker, through
  `BrokerQueueStats`, as /metrics reads them;
- each target's breaker: `jghub_breaker_state`, which only the worker running a breaker knows,
  read from the metrics every hub process on this host writes (multiprocess mode).

The journal and the store are shared by every host; queue depths are the broker's; breaker states
are this host's workers' (another host's are on its own /metrics).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry

from bus import BusError, QueueStats, queue_word
from monitor.journal import Journal, Step
from monitor.journal_figures import OUT_STEPS, delivery_figures, quality_figures
from monitor.metrics import BREAKER_LEVELS
from monitor.quality import SystemQuality
from monitor.queues import BrokerQueueStats

BREAKER_METRIC = "jghub_breaker_state"
_BREAKER_NAMES = {level: name for name, level in BREAKER_LEVELS.items()}


@dataclass
class SystemRow:
    """One system's line: what it sent (a source), what it was sent (a target), what waits.

    Attributes:
      system: the system's id.
      target: its target name on the bus (None: the hub delivers nothing to it).
      quality: its figures as a source over the window (None: it sent nothing then).
      delivered, retried, dead_lettered, replayed: delivery steps over the window.
      waiting: its queue now (None: not a target, or the broker did not answer).
      breaker: closed, half-open or open (None: no worker on this host runs its breaker).
    """

    system: str
    target: str | None
    quality: SystemQuality | None = None
    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    replayed: int = 0
    waiting: QueueStats | None = None
    breaker: str | None = None

    @property
    def received(self) -> int:
        """Records received: accepted, rejected for their content, or refused by the hub."""
        if self.quality is None:
            return 0
        return self.quality.accepted + self.quality.rejected + self.quality.refused_records

    @property
    def queued(self) -> int | None:
        """Messages waiting to be delivered: ready, in flight and in the retry tiers."""
        if self.waiting is None:
            return None
        return self.waiting.ready + (self.waiting.in_flight or 0) + self.waiting.retrying


@dataclass
class Overview:
    """Every system's row, and what could not be read (said, never shown as zeros)."""

    since: datetime
    rows: list[SystemRow]
    quality: list[SystemQuality]
    problems: list[str] = field(default_factory=list)


def delivery_counts(
    journal: Journal, *, since: datetime, until: datetime | None = None
) -> dict[str, Counter[Step]]:
    """Per target, how many delivery steps of each kind the journal holds in the window, keyed
    by the target's `queue_word`: entries journalled before targets took their system's id name
    it with '_' for '-', and count for it all the same."""
    counts: dict[str, Counter[Step]] = {}
    for entry in journal.entries(since=since, until=until, steps=OUT_STEPS):
        if entry.target is not None:
            counts.setdefault(queue_word(entry.target), Counter())[entry.step] += 1
    return counts


def breaker_states(metrics: CollectorRegistry) -> dict[str, str]:
    """Each target's breaker state as the metrics say (the worst among this host's workers)."""
    states: dict[str, str] = {}
    for family in metrics.collect():
        if family.name != BREAKER_METRIC:
            continue
        for sample in family.samples:
            name = _BREAKER_NAMES.get(int(sample.value))
            if name is not None and "target" in sample.labels:
                states[sample.labels["target"]] = name
    return states


def overview(
    journal: Journal | None,
    *,
    systems: Sequence[tuple[str, str | None]],
    queues: BrokerQueueStats,
    metrics: CollectorRegistry,
    since: datetime,
) -> Overview:
    """The rows of `systems` ((id, target name or None), in the order given) over the window
    from `since` to now; what could not be read is named in `problems`."""
    problems: list[str] = []
    scores: list[SystemQuality] = []
    delivered: dict[str, Counter[Step]] = {}
    if journal is None:
        problems.append("the journal is off: no figures of what came in or went out")
    else:
        scores = quality_figures(journal, since=since)
        delivered = delivery_figures(journal, since=since)
    waiting: dict[str, QueueStats] = {}
    try:
        waiting = {stats.target: stats for stats in queues.read()}
    except BusError as error:
        problems.append(f"queue depths unknown: {type(error).__name__}: {error}")
    breakers = breaker_states(metrics)
    by_system = {score.system: score for score in scores}
    rows = [
        _row(system, target, by_system.get(system), delivered, waiting, breakers)
        for system, target in systems
    ]
    return Overview(since=since, rows=rows, quality=scores, problems=problems)


def _row(
    system: str,
    target: str | None,
    quality: SystemQuality | None,
    delivered: dict[str, Counter[Step]],
    waiting: dict[str, QueueStats],
    breakers: dict[str, str],
) -> SystemRow:
    row = SystemRow(system, target, quality)
    if target is None:
        return row
    steps = delivered.get(queue_word(target), Counter())
    row.delivered = steps[Step.DELIVERED]
    row.retried = steps[Step.RETRIED]
    row.dead_lettered = steps[Step.DEAD_LETTERED]
    row.replayed = steps[Step.REPLAYED]
    row.waiting = waiting.get(target)
    row.breaker = breakers.get(target)
    return row
