"""Every Prometheus metric of the hub in one place, and one /metrics for several processes.

Names follow Prometheus conventions: the `jghub_` prefix, `_total` on counters, base units
(`_seconds`, `_bytes`), labels for system, message type, dataset and target. Labels that come
from failures (`reason`, `stage`) carry the rule or the kind of failure, never the offending value,
and `bounded` caps how many distinct values one label may take, so a bug upstream cannot explode
the number of series.

Several processes at once (`jghub serve` plus any number of `jghub worker`s on one machine) use
prometheus-client's multiprocess mode: each process writes its samples to memory-mapped files in
one folder, and the process that answers /metrics sums them with `MultiProcessCollector`:

    enable_multiprocess(data_dir / "metrics")   # first thing in every process, before observing
    registry = scrape_registry(QueueCollector(...))   # in the process serving /metrics
    body, content_type = exposition(registry, request.headers.get("accept"))
    process_exit()                              # at exit: drop this process's live gauges

Counters and histograms of exited processes keep counting in the sum (so totals never go down);
gauges use `livemax` (the worst value among live processes: the breaker state, poller lag).
Queue depths and consumers are not observed by any process: `monitor.queues.QueueCollector`
reads them from the broker at scrape time.

Several hosts: each host's /metrics answers for that host's processes only (the folder is per
host), Prometheus scrapes every host, and the alert rules and dashboard aggregate over the
`instance` label (monitor/prometheus/alerts.yml says how).
"""

from __future__ import annotations

import atexit
import os
import platform
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    multiprocess,
    values,
)
from prometheus_client import exposition as prometheus_exposition
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.errors import MetricsSetupError

PREFIX = "jghub_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# No `*_created` series: the multiprocess sum has none, so a single-process hub showing them
# would make the same dashboard differ between deployments; and they double the series count.
disable_created_metrics()

HUB_REGISTRY = CollectorRegistry()
"""Where the hub's own metrics live in a single process; /metrics never shows another library's."""

# Every metric has labels on purpose: a labelled metric creates its sample storage at the first
# observation, not at import, which lets `enable_multiprocess` switch the storage to files after
# this module was imported.

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELIVERY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Received to delivered spans retry tiers (10 s, 1 min, 10 min, 1 h by default).
_END_TO_END = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
               3600.0, 4 * 3600.0, 86400.0)  # fmt: skip
# A record's own change time to its arrival: departments send minutes to weeks late.
_DELAY = (60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0,
          30 * 86400.0)  # fmt: skip

# -- in: payloads and records --------------------------------------------------------------------

PAYLOADS_RECEIVED = Counter(
    "jghub_payloads_received",
    "Payloads received from external systems (pushed or polled), before translation.",
    ["system", "message_type"],
    registry=HUB_REGISTRY,
)
PAYLOADS_REFUSED = Counter(
    "jghub_payloads_refused",
    "Payloads that could not be read at all, or held more records than their channel takes, "
    "and went to the quarantine; reason is the payload problem's kind (malformed, encoding, "
    "too-large, too-many-records, forbidden-markup, ...).",
    ["system", "message_type", "reason"],
    registry=HUB_REGISTRY,
)
RECORDS_ACCEPTED = Counter(
    "jghub_records_accepted",
    "Records translated and valid against the standard (before publishing).",
    ["system", "message_type"],
    registry=HUB_REGISTRY,
)
RECORDS_REJECTED = Counter(
    "jghub_records_rejected",
    "Records refused for their content, once each; reason is the rule of the record's first "
    "error (mandatory, wan_yuan, decision not before filing, ...).",
    ["system", "message_type", "reason"],
    registry=HUB_REGISTRY,
)
TRANSLATION_SECONDS = Histogram(
    "jghub_translation_seconds",
    "Time to translate one payload into envelopes (decode, parse, map, validate).",
    ["system", "message_type"],
    buckets=_FAST,
    registry=HUB_REGISTRY,
)

# -- the bus -------------------------------------------------------------------------------------

PUBLISHED = Counter(
    "jghub_published",
    "Messages the broker confirmed, by source system and dataset.",
    ["system", "dataset"],
    registry=HUB_REGISTRY,
)
DUPLICATES = Counter(
    "jghub_duplicates",
    "Records a system sent again unchanged (an idempotency key published within the window): "
    "answered accepted, not published again.",
    ["system"],
    registry=HUB_REGISTRY,
)
UNMATCHED_FEEDBACK = Counter(
    "jghub_unmatched_feedback",
    "Risk feedback published on a warning the hub never routed (kept and flagged, never "
    "dropped: match it by hand).",
    ["system"],
    registry=HUB_REGISTRY,
)
PUBLISH_FAILURES = Counter(
    "jghub_publish_failures",
    "Messages the broker did not take: unroutable (no route), not_confirmed (nack, timeout) or "
    "unavailable (broker unreachable).",
    ["system", "reason"],
    registry=HUB_REGISTRY,
)
BACKPRESSURE_REFUSED = Counter(
    "jghub_backpressure_refused",
    "Payloads refused with 503 and Retry-After, nothing published, because a target they would "
    "reach held more ready messages than its high-water mark (back-pressure).",
    ["system", "target"],
    registry=HUB_REGISTRY,
)
QUARANTINE_REFUSED = Counter(
    "jghub_quarantine_refused",
    "Payloads refused with 503, nothing published, because keeping what the hub would reject "
    "of them would pass the quarantine's size limit (JGHUB_QUARANTINE_MAX_BYTES).",
    ["system"],
    registry=HUB_REGISTRY,
)
UNAUTHENTICATED = Counter(
    "jghub_unauthenticated",
    "Requests refused for their credential before anything of their body was kept: "
    "no-credential, bad-credential, forbidden (another system's channel) or too-many-failures "
    "(the client address failed too often: 429); channel is the system whose channel was asked "
    "for ('-': a route that is nobody's channel).",
    ["channel", "reason"],
    registry=HUB_REGISTRY,
)
PUBLISH_CONFIRM_SECONDS = Histogram(
    "jghub_publish_confirm_seconds",
    "Time from handing a payload's messages to the broker to its last confirm.",
    ["system"],
    buckets=_FAST,
    registry=HUB_REGISTRY,
)

# -- out: deliveries -----------------------------------------------------------------------------

DELIVERED = Counter(
    "jghub_delivered",
    "Messages delivered to their target system (acknowledged by the worker).",
    ["target", "dataset"],
    registry=HUB_REGISTRY,
)
DELIVERY_FAILURES = Counter(
    "jghub_delivery_failures",
    "Deliveries that failed; kind is transient (timeout, 5xx, refused: retried while tiers "
    "remain) or permanent (the target rejected the content).",
    ["target", "dataset", "kind"],
    registry=HUB_REGISTRY,
)
RETRIED = Counter(
    "jghub_retried",
    "Messages parked in a retry tier after a transient failure; tier counts from 0.",
    ["target", "tier"],
    registry=HUB_REGISTRY,
)
DEAD_LETTERED = Counter(
    "jghub_dead_lettered",
    "Messages moved to the dead letters; reason is permanent (rejected by the target) or "
    "retries_exhausted, stage where it failed (render, deliver, handler, ...).",
    ["target", "stage", "reason"],
    registry=HUB_REGISTRY,
)
REPLAYED = Counter(
    "jghub_replayed",
    "Dead letters an operator moved back to their target queue.",
    ["target"],
    registry=HUB_REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "jghub_delivery_seconds",
    "Time a worker spends on one message: render, send, settle.",
    ["target"],
    buckets=_DELIVERY,
    registry=HUB_REGISTRY,
)
END_TO_END_SECONDS = Histogram(
    "jghub_end_to_end_seconds",
    "Time from the hub receiving a record to its delivery to one target, retries included.",
    ["target", "dataset"],
    buckets=_END_TO_END,
    registry=HUB_REGISTRY,
)

# -- data quality per source system --------------------------------------------------------------

RECORD_DELAY_SECONDS = Histogram(
    "jghub_record_delay_seconds",
    "Timeliness: delay between a record's own change time (the envelope time) and its arrival.",
    ["system", "dataset"],
    buckets=_DELAY,
    registry=HUB_REGISTRY,
)
OPTIONAL_FIELDS = Counter(
    "jghub_optional_fields",
    "Completeness, denominator: optional fields of the standard in accepted records.",
    ["system", "dataset"],
    registry=HUB_REGISTRY,
)
OPTIONAL_FIELDS_FILLED = Counter(
    "jghub_optional_fields_filled",
    "Completeness, numerator: optional fields that accepted records actually filled.",
    ["system", "dataset"],
    registry=HUB_REGISTRY,
)

ASSUMED_VALUES = Counter(
    "jghub_assumed_values",
    "Values of accepted records that the source did not send and its mapping assumed "
    "(`assume:`), per field: never counted as sent.",
    ["system", "dataset", "field"],
    registry=HUB_REGISTRY,
)

RULE_RECORDS = Counter(
    "jghub_rule_findings",
    "Accuracy beyond format: records a cross-check (reference.rules) rejected (disposition "
    "reject), let through with a warning (warn), or could not judge because a reference list it "
    "needs was never fed (unchecked); per sending system and rule, one per record.",
    ["system", "rule", "disposition"],
    registry=HUB_REGISTRY,
)

# -- health of the moving parts ------------------------------------------------------------------

BREAKER_STATE = Gauge(
    "jghub_breaker_state",
    "Circuit breaker of a target: 0 closed, 1 half-open, 2 open (the worst among live workers).",
    ["target"],
    multiprocess_mode="livemax",
    registry=HUB_REGISTRY,
)
BREAKER_LEVELS = {"closed": 0, "half-open": 1, "open": 2}
"""Each breaker state's value in `jghub_breaker_state` (pybreaker's "half_open" is "half-open")."""
POLLER_LAG_SECONDS = Gauge(
    "jghub_poller_lag_seconds",
    "How long ago a poller last read its source to the end: small while polls succeed, "
    "growing while they fail (the worst among live workers).",
    ["source"],
    multiprocess_mode="livemax",
    registry=HUB_REGISTRY,
)
POLLER_LAST_SUCCESS = Gauge(
    "jghub_poller_last_success_timestamp_seconds",
    "Unix time of a poller's last successful poll.",
    ["source"],
    multiprocess_mode="livemax",
    registry=HUB_REGISTRY,
)
POLLS = Counter(
    "jghub_polls",
    "Polls of pull-only sources; outcome is ok or failed.",
    ["source", "outcome"],
    registry=HUB_REGISTRY,
)
POLLER_LEASE_HELD = Gauge(
    "jghub_poller_lease_held",
    "1 while the worker named by holder (host:pid:random) holds the lease of a poller's "
    "source, so polls it; 0 once it lost or released it. Who polls what: the series at 1.",
    ["source", "holder"],
    multiprocess_mode="livemax",
    registry=HUB_REGISTRY,
)
POLLER_LEASE_CHANGES = Counter(
    "jghub_poller_lease_changes",
    "What became of poller leases: taken (free), taken_over (its holder let it expire: it died "
    "or was stuck), lost (this worker's lease expired and another took it), released.",
    ["source", "change"],
    registry=HUB_REGISTRY,
)
JOURNAL_ENTRIES = Counter(
    "jghub_journal_entries",
    "Journal entries by outcome: written, or failed (kept in memory and written again later).",
    ["outcome"],
    registry=HUB_REGISTRY,
)
JOURNAL_REFUSED = Counter(
    "jghub_journal_refused",
    "Journal entries the store refused for good, by reason: too-big, constraint, "
    "invalid-value. Each is logged at ERROR with its message id; it is lost, later ones are not.",
    ["reason"],
    registry=HUB_REGISTRY,
)

OBSERVED: tuple[MetricWrapperBase, ...] = (
    PAYLOADS_RECEIVED, PAYLOADS_REFUSED, RECORDS_ACCEPTED, RECORDS_REJECTED, TRANSLATION_SECONDS,
    PUBLISHED, DUPLICATES, UNMATCHED_FEEDBACK, PUBLISH_FAILURES, PUBLISH_CONFIRM_SECONDS, DELIVERED,
    DELIVERY_FAILURES, RETRIED, DEAD_LETTERED, REPLAYED, DELIVERY_SECONDS, END_TO_END_SECONDS,
    RECORD_DELAY_SECONDS, OPTIONAL_FIELDS, OPTIONAL_FIELDS_FILLED, BREAKER_STATE,
    POLLER_LAG_SECONDS, POLLER_LAST_SUCCESS, POLLS, POLLER_LEASE_HELD, POLLER_LEASE_CHANGES,
    JOURNAL_ENTRIES, JOURNAL_REFUSED,
    BACKPRESSURE_REFUSED, QUARANTINE_REFUSED, UNAUTHENTICATED,
)  # fmt: skip
"""The metrics processes observe (the scrape-time ones are in `SCRAPED`)."""

SCRAPED: dict[str, str] = {
    "jghub_queue_messages": "gauge",
    "jghub_queue_consumers": "gauge",
    "jghub_broker_up": "gauge",
    "jghub_build_info": "gauge",
    "jghub_centre_open": "gauge",
    "jghub_centre_overdue": "gauge",
    "jghub_centre_disposal_seconds": "histogram",
    "jghub_centre_notices_total": "counter",
    "jghub_penalty_cases_overdue": "gauge",  # centre.penalties.PenaltyOverdueCollector
    "jghub_quarantine_bytes": "gauge",  # monitor.quarantine.QuarantineCollector
    "jghub_quarantine_entries": "gauge",
    "jghub_quarantine_limit_bytes": "gauge",
    "jghub_quarantine_aged_entries": "gauge",
}
"""Metrics collectors compute at scrape time from the broker, the build and the store (the
centre's ledger: `centre.ledger.CentreCollector`; penalty cases: `PenaltyOverdueCollector`; the
quarantine: `monitor.quarantine.QuarantineCollector`), by name and type."""


def defined_metrics() -> dict[str, str]:
    """Every metric family the hub exposes: name as scraped (counters with `_total`) → type."""
    found: dict[str, str] = {}
    for metric in OBSERVED:
        for family in metric.describe():
            name = family.name + "_total" if family.type == "counter" else family.name
            found[name] = family.type
    found.update(SCRAPED)
    return found


def series_names() -> set[str]:
    """Every sample name a query may use: families plus `_bucket`, `_sum`, `_count` (no
    `_created`: the hub does not emit those)."""
    names: set[str] = set()
    for name, kind in defined_metrics().items():
        names.add(name)
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def sample_total(name: str, **labels: str) -> float:
    """The sum of this process's samples called `name` whose labels include `labels`.

    E.g. `sample_total("jghub_delivered_total", target="national")` over every dataset. For
    in-process readers (the demo, tests); Prometheus sums with PromQL instead.
    """
    return SampleSnapshot.now().total(name, **labels)


@dataclass(frozen=True)
class SampleSnapshot:
    """This process's samples read once, by name: a reader summing many series at one moment
    (the demo's wait for its deliveries, every target and outcome ten times a second) collects
    the registry once instead of once a series."""

    by_name: dict[str, list[tuple[dict[str, str], float]]]

    @classmethod
    def now(cls) -> SampleSnapshot:
        by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
        for metric in OBSERVED:
            for family in metric.collect():
                for sample in family.samples:
                    by_name.setdefault(sample.name, []).append((sample.labels, sample.value))
        return cls(by_name)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels`."""
        wanted = labels.items()
        return sum(value for have, value in self.by_name.get(name, ()) if wanted <= have.items())


# -- bounded label values ------------------------------------------------------------------------

MAX_LABEL_CHARS = 80
MAX_VALUES_PER_LABEL = 64
OVERFLOW_LABEL = "other"
_SPACES = re.compile(r"\s+")


class _LabelBounds:
    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, metric: str, label: str, value: str | None) -> str:
        text = _SPACES.sub(" ", value or "").strip()[:MAX_LABEL_CHARS] or "unknown"
        with self._lock:
            seen = self._seen.setdefault((metric, label), set())
            if text in seen:
                return text
            if len(seen) >= MAX_VALUES_PER_LABEL:
                return OVERFLOW_LABEL
            seen.add(text)
            return text


bounded = _LabelBounds()
"""`bounded(metric, label, value)`: the value to use, or "other" once the label has had
MAX_VALUES_PER_LABEL distinct values in this process (long values are cut, blanks become
"unknown"). Use it for labels whose values come from failures rather than from configuration."""


# -- series that exist before their first event --------------------------------------------------

PUBLISH_FAILURE_REASONS = ("unroutable", "not_confirmed", "unavailable")
UNAUTHENTICATED_REASONS = ("no-credential", "bad-credential", "forbidden", "too-many-failures")
DELIVERY_FAILURE_KINDS = ("transient", "permanent")
DEAD_LETTER_CAUSES = ("permanent", "retries_exhausted")
POLL_OUTCOMES = ("ok", "failed")
LEASE_CHANGES = ("taken", "taken_over", "lost", "released")
JOURNAL_OUTCOMES = ("written", "failed", "late", "dropped")
JOURNAL_REFUSALS = ("too-big", "constraint", "invalid-value")


class ChannelSeries(NamedTuple):
    """An inbound channel (push or poll) as its series are labelled."""

    system: str
    message_type: str
    dataset: str


class TargetSeries(NamedTuple):
    """A target system's queue as its series are labelled: the datasets it receives and how
    many retry tiers it has."""

    name: str
    datasets: tuple[str, ...]
    retry_tiers: int


@dataclass(frozen=True)
class KnownSeries:
    """The label values a hub's configuration names before anything happens.

    Attributes:
      channels: every inbound channel, with the dataset its mapping produces.
      systems: the systems that authenticate (the `channel` label of jghub_unauthenticated).
      targets: every target queue.
      sources: the pollers' sources ("system/message type").
      dead_letter_stages: where the outbound path dead-letters a message (decode, render, ...).
      breakers: the targets whose circuit breaker this process runs (a worker's; `serve` runs
        none, and a breaker's state is its worker's to tell).
      rule_findings: (system, rule, disposition) of each cross-check a channel's records meet.
    """

    channels: tuple[ChannelSeries, ...] = ()
    systems: tuple[str, ...] = ()
    targets: tuple[TargetSeries, ...] = ()
    sources: tuple[str, ...] = ()
    dead_letter_stages: tuple[str, ...] = ()
    breakers: tuple[str, ...] = ()
    rule_findings: tuple[tuple[str, str, str], ...] = ()


def start_at_zero(known: KnownSeries) -> None:
    """Create every series `known` names, at 0, before its first event.

    A labelled series exists only from its first observation: until then `rate()` and
    `increase()` have no earlier sample, so the first dead letter of a target or the first
    payload of a system never shows as an increase, and `absent()` cannot tell "none yet" from
    "not scraped". Called by `serve` and `worker` at start (after `enable_multiprocess`).
    Labels whose values come from failures and are not known ahead (a rejected record's rule, a
    refused payload's kind) still start at their first event.
    """
    for channel in known.channels:
        for by_type in (PAYLOADS_RECEIVED, RECORDS_ACCEPTED, TRANSLATION_SECONDS):
            by_type.labels(channel.system, channel.message_type)
        by_dataset = (PUBLISHED, RECORD_DELAY_SECONDS, OPTIONAL_FIELDS, OPTIONAL_FIELDS_FILLED)
        for metric in by_dataset:
            metric.labels(channel.system, channel.dataset)
        for by_system in (DUPLICATES, UNMATCHED_FEEDBACK, PUBLISH_CONFIRM_SECONDS):
            by_system.labels(channel.system)
        for reason in PUBLISH_FAILURE_REASONS:
            PUBLISH_FAILURES.labels(channel.system, reason)
    for system in known.systems:
        for reason in UNAUTHENTICATED_REASONS:
            UNAUTHENTICATED.labels(system, reason)
    for target in known.targets:
        _target_at_zero(target, known.dead_letter_stages)
    for source in known.sources:
        for outcome in POLL_OUTCOMES:
            POLLS.labels(source, outcome)
        for change in LEASE_CHANGES:
            POLLER_LEASE_CHANGES.labels(source, change)
    for system, rule, disposition in known.rule_findings:
        RULE_RECORDS.labels(system, rule, disposition)
    for breaker in known.breakers:
        BREAKER_STATE.labels(breaker).set(0)  # closed, as every breaker starts
    for outcome in JOURNAL_OUTCOMES:
        JOURNAL_ENTRIES.labels(outcome)
    for reason in JOURNAL_REFUSALS:
        JOURNAL_REFUSED.labels(reason)


def _target_at_zero(target: TargetSeries, stages: Iterable[str]) -> None:
    for metric in (DELIVERY_SECONDS, REPLAYED):
        metric.labels(target.name)
    for dataset in target.datasets:
        DELIVERED.labels(target.name, dataset)
        END_TO_END_SECONDS.labels(target.name, dataset)
        for kind in DELIVERY_FAILURE_KINDS:
            DELIVERY_FAILURES.labels(target.name, dataset, kind)
    for tier in range(target.retry_tiers):
        RETRIED.labels(target.name, str(tier))
    for stage in stages:
        for cause in DEAD_LETTER_CAUSES:
            DEAD_LETTERED.labels(target.name, stage, cause)


# -- several processes ---------------------------------------------------------------------------

_exit_hook_registered = False


# prometheus-client picks where a process's samples live (in memory, or in files shared by
# several processes) once, when it is imported, from PROMETHEUS_MULTIPROC_DIR, and keeps the
# choice in `prometheus_client.values.ValueClass`. It offers no public way to ask which it picked
# or to pick again; these two functions are the only places that touch that choice, and
# tests/monitor/test_metrics.py::test_prometheus_picks_its_sample_storage_as_assumed fails when
# the library changes it.


def _samples_in_files() -> bool:
    """Whether prometheus-client keeps this process's samples in files (multiprocess mode)."""
    return values.ValueClass is not values.MutexValue


def _pick_sample_storage() -> None:
    """Make prometheus-client pick its sample storage again, from the environment as it is now."""
    values.ValueClass = values.get_value_class()


def multiprocess_directory() -> Path | None:
    """The folder of multiprocess samples when this process writes them, else None."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory and _samples_in_files():
        return Path(directory)
    return None


def enable_multiprocess(directory: Path) -> None:
    """Make this process write its samples to files in `directory`, shared with its siblings.

    Call it first thing in every hub process (serve, worker) that should be counted in one
    /metrics, before anything is observed. Idempotent for the same folder.

    prometheus-client chooses its sample storage when it is imported, from the environment
    variable PROMETHEUS_MULTIPROC_DIR. Setting that variable before starting the process works
    too (it is the documented way); this function also covers a process that imported the client
    first, which is safe because every hub metric is labelled and so holds no sample until the
    first observation. Raises MetricsSetupError when samples were already observed here, or when
    another folder is already in use.
    """
    directory = Path(directory).resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MetricsSetupError(
            f"cannot create the multiprocess metrics folder {directory}: {exc}"
        ) from exc
    current = multiprocess_directory()
    if current is not None:
        if current.resolve() != directory:
            raise MetricsSetupError(
                f"this process already writes metrics to {current}; cannot switch to {directory}"
            )
    else:
        observed = [m for m in OBSERVED if any(f.samples for f in m.collect())]
        if observed:
            names = ", ".join(sorted({f.name for m in observed for f in m.describe()}))
            raise MetricsSetupError(
                f"metrics were already observed in this process ({names}); call "
                "enable_multiprocess before the first observation, or set "
                f"{MULTIPROC_ENV} before starting the process"
            )
        os.environ[MULTIPROC_ENV] = str(directory)
        _pick_sample_storage()
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(process_exit)
        _exit_hook_registered = True


def process_exit() -> None:
    """Drop this process's live gauges from the shared folder (prometheus-client's bookkeeping).

    Registered at exit by `enable_multiprocess`; a process killed with SIGKILL leaves its gauges
    until `clear_stale` runs at the next start of `jghub serve`.
    """
    directory = multiprocess_directory()
    if directory is not None and directory.is_dir():
        multiprocess.mark_process_dead(os.getpid(), str(directory))


_PID_IN_NAME = re.compile(r"_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_stale(directory: Path) -> list[Path]:
    """At a deployment's start: empty `directory` when no other live process writes in it.

    prometheus-client asks for the folder to be wiped between runs; wiping it while workers are
    running would lose their counts, so the files stay as long as any process that wrote them is
    alive. Returns the files removed.
    """
    if not directory.is_dir():
        return []
    files = sorted(directory.glob("*.db"))
    own = os.getpid()
    for path in files:
        found = _PID_IN_NAME.search(path.name)
        if found and int(found.group(1)) != own and _alive(int(found.group(1))):
            return []
    for path in files:
        path.unlink(missing_ok=True)
    return files


# -- scraping ------------------------------------------------------------------------------------


class BuildInfo(Collector):
    """`jghub_build_info{version, python}` = 1: which build answers, for dashboards and alerts."""

    def __init__(self) -> None:
        try:
            version = metadata.version("jghub")
        except metadata.PackageNotFoundError:
            version = "unknown"
        self._labels = [version, platform.python_version()]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "jghub_build_info",
            "The running build: version and Python.",
            labels=["version", "python"],
        )
        family.add_metric(self._labels, 1.0)
        yield family


def scrape_registry(*collectors: Collector) -> CollectorRegistry:
    """The registry /metrics should render: the hub's metrics (summed over processes when
    multiprocess mode is on), build info, this process's CPU and memory, and `collectors`
    (e.g. a QueueCollector)."""
    registry = CollectorRegistry()
    directory = multiprocess_directory()
    if directory is not None:
        multiprocess.MultiProcessCollector(registry, path=str(directory))
    else:
        registry.register(_Delegate(HUB_REGISTRY))
    registry.register(BuildInfo())
    # The answering process's own CPU, memory and Python version (not summed over processes).
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


class _Delegate(Collector):
    """Exposes another registry's metrics through this one (single-process mode)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return self._source.collect()


def exposition(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The body and content type answering a scrape with `Accept: accept` (OpenMetrics or text)."""
    encoder, content_type = prometheus_exposition.choose_encoder(accept or "")
    return encoder(registry), content_type


def serve_metrics(port: int, address: str = "127.0.0.1", *collectors: Collector) -> None:
    """Answer /metrics on `port` in a background thread (a worker on a machine without serve)."""
    prometheus_exposition.start_http_server(port, address, registry=scrape_registry(*collectors))


def count_unauthenticated(channel: str, reason: str) -> None:
    """Count a request refused for its credential (`UNAUTHENTICATED`)."""
    UNAUTHENTICATED.labels(channel, reason).inc()
