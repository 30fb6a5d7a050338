"""Data quality per source system: timeliness, completeness and accuracy (时效性、完整性、准确性).

- **Timeliness**: the delay between a record's own change time (the envelope `time`) and its
  arrival at the hub. A department that batches its cases once a week shows a week.
- **Completeness**: the share of the standard's optional fields that accepted records fill,
  from the standard's field metadata (`standard.fields.fields_meta`); mandatory fields are
  always filled in an accepted record, so they say nothing. Deletes carry only the key and are
  left out.
- **Accuracy**: accepted records against records rejected for their content, with the rules
  that rejected them.
- **Assumed**: values the source did not send and its mapping assumed (`assume:`, named in the
  envelope's `lineageassumed`): counted per field, apart from what was sent. An assumed optional
  field does not count as filled in completeness.
- **Cross-checks** (`reference.rules`): a rule set to reject refuses the record, counted under
  its rule with the other rejections; a rule set to warn lets it through, counted here per rule
  among the accepted records (`warnings`); a rule that could not judge an accepted record
  because a reference list it needs was never fed counts it "not checked" (`unchecked`).

"Accepted" counts what the sender was told: a record that was translated and then answered
rejected or failed by the hub (no route takes it, back-pressure, the broker did not confirm:
its journal `not_published` entry) is not accepted. It is counted apart, as refused by the hub
with its rule, and left out of accuracy, which judges the sender's data, not the hub's
configuration (issue #15: a 双公示 batch no route took showed 100% accepted).

The same figures feed Prometheus as records arrive (`monitor.observer`) and a report computed
from the journal over any window (`quality_report`, the reference; `jghub quality` and the
console's Overview ask the database for the same figures, `monitor.journal_figures`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from monitor.journal import Entry, Journal, Step
from standard.datasets import dataset
from standard.envelope import Envelope, Operation
from standard.fields import fields_meta


@cache
def optional_fields(dataset_name: str) -> tuple[str, ...]:
    """The optional top-level fields of a dataset, in declaration order."""
    spec = dataset(dataset_name)
    return tuple(meta.en for meta in fields_meta(spec.model) if not meta.mandatory)


def _filled(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list | dict | tuple):
        return bool(value)
    return True


def completeness(envelope: Envelope) -> tuple[int, int] | None:
    """(optional fields filled, optional fields) of the envelope's record; None for a delete."""
    if envelope.operation is Operation.DELETE:
        return None
    names = optional_fields(envelope.spec.name)
    assumed = envelope.assumed()
    filled = sum(_filled(envelope.data.get(name)) for name in names if name not in assumed)
    return filled, len(names)


def delay_seconds(envelope: Envelope, arrived_at: datetime) -> float:
    """Seconds from the record's change time to its arrival; 0 when the change time is later
    (a sender's clock ahead of ours is not lateness)."""
    return max(0.0, (arrived_at - envelope.time).total_seconds())


def quantile(values: list[float], q: float) -> float | None:
    """The nearest-rank q-quantile of sorted `values` (None when empty)."""
    if not values:
        return None
    rank = max(1, math.ceil(q * len(values)))
    return values[min(rank, len(values)) - 1]


@dataclass
class SystemQuality:
    """The quality figures of one source system over a window.

    Attributes:
      system: the source system.
      accepted: records accepted (translated and valid).
      rejected: records rejected for their content.
      refused_payloads: payloads that could not be read at all (no records known).
      refused_records: records translated but answered rejected or failed by the hub (no
        route, back-pressure, not confirmed): not accepted, and not the sender's fault.
      refusals: those records by the hub's rule (unroutable, backpressure, not_confirmed ...).
      rejections: rejected records by the rule of their first error.
      delays: timeliness of accepted records, seconds, sorted.
      filled: optional fields filled in accepted records (inserts and updates).
      optional: optional fields those records could have filled.
      assumed_records: accepted records with at least one assumed value (not sent).
      assumed: assumed values by field.
      warnings: accepted records a cross-check warned about, by rule.
      unchecked: accepted records a cross-check could not judge (its list never fed), by rule.
    """

    system: str
    accepted: int = 0
    rejected: int = 0
    refused_payloads: int = 0
    refused_records: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    delays: list[float] = field(default_factory=list)
    filled: int = 0
    optional: int = 0
    assumed_records: int = 0
    assumed: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    unchecked: Counter[str] = field(default_factory=Counter)
    delay_quantiles: dict[float, float | None] | None = None
    """The delay quantiles (QUANTILES) when the database picked them (`monitor.journal_figures`:
    `delays` is then empty); None: computed from `delays`."""

    @property
    def accuracy(self) -> float | None:
        """Accepted records / all records judged; None when none was."""
        total = self.accepted + self.rejected
        return self.accepted / total if total else None

    @property
    def completeness(self) -> float | None:
        """Optional fields filled / optional fields; None when no record counted."""
        return self.filled / self.optional if self.optional else None

    def delay_quantile(self, q: float) -> float | None:
        """The delay's q-quantile (one of QUANTILES), seconds; None without delays."""
        if self.delay_quantiles is not None:
            return self.delay_quantiles.get(q)
        return quantile(self.delays, q)

    @property
    def delay_median(self) -> float | None:
        return self.delay_quantile(0.5)

    @property
    def delay_p90(self) -> float | None:
        return self.delay_quantile(0.9)


@dataclass(frozen=True)
class RuleOutcome:
    """What the cross-checks said of a payload's records, for the journal and the counters.

    Attributes: `warnings`, by message id, the findings that warn (as data, each naming its
    rule); `unchecked`, by message id, the rules that could not judge the record; `rejected`,
    by rule, how many records its findings rejected.
    """

    warnings: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    unchecked: Mapping[str, Sequence[str]] = field(default_factory=dict)
    rejected: Mapping[str, int] = field(default_factory=dict)


QUANTILES = (0.5, 0.9)
"""The delay quantiles reported: the median and the 90th percentile."""
QUALITY_STEPS = (Step.RECEIVED, Step.REJECTED, Step.NOT_PUBLISHED)
"""The journal steps the figures come from."""


def score(entries: Iterable[Entry]) -> list[SystemQuality]:
    """Quality per source system from journal entries (`received`, `rejected` and
    `not_published` count: a received record whose message was not published was not
    accepted, whatever its translation said)."""
    kept = [e for e in entries if e.step in QUALITY_STEPS and e.system is not None]
    # One record may be several messages (an addressed copy per system): any copy refused
    # makes the record's answer a refusal, as the sender was told.
    refused = {
        (e.receipt, e.message_id): str(e.detail.get("rule") or "unknown")
        for e in kept
        if e.step is Step.NOT_PUBLISHED
    }
    systems: dict[str, SystemQuality] = {}
    for entry in kept:
        if entry.step is Step.NOT_PUBLISHED or entry.system is None:
            continue
        figures = systems.get(entry.system)
        if figures is None:
            figures = systems[entry.system] = SystemQuality(entry.system)
        detail = entry.detail
        refusal = refused.get((entry.receipt, entry.message_id))
        if entry.step is Step.RECEIVED and refusal is not None:
            figures.refused_records += 1
            figures.refusals[refusal] += 1
            continue
        if entry.step is Step.REJECTED:
            if detail.get("payload"):
                figures.refused_payloads += 1
            else:
                figures.rejected += 1
                figures.rejections[str(detail.get("rule") or "unknown")] += 1
            continue
        figures.accepted += 1
        delay = detail.get("delay_s")
        if isinstance(delay, int | float):
            figures.delays.append(float(delay))
        if isinstance(detail.get("optional"), int) and isinstance(detail.get("filled"), int):
            figures.filled += detail["filled"]
            figures.optional += detail["optional"]
        assumed = detail.get("assumed")
        if isinstance(assumed, list) and assumed:
            figures.assumed_records += 1
            figures.assumed.update(str(name) for name in assumed)
        for name, counter in (("warnings", figures.warnings), ("unchecked", figures.unchecked)):
            rules = detail.get(name)
            if isinstance(rules, list):
                counter.update(str(rule) for rule in rules)
    for figures in systems.values():
        figures.delays.sort()
    return sorted(systems.values(), key=lambda f: f.system)


def quality_report(
    journal: Journal,
    *,
    since: datetime,
    until: datetime | None = None,
    system: str | None = None,
) -> list[SystemQuality]:
    """Quality per source system from the journal's entries between `since` and `until`."""
    return score(journal.entries(since=since, until=until, steps=QUALITY_STEPS, system=system))
