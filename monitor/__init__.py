"""How operators see and steer the hub: metrics, health, journal, dead letters, data quality.

    observer = Observer(topology, Journal(store))   # wired into ingress and worker
    journal.trace(message_id)                  # where message X has been
    dead_letters.replay(broker, query, why=..., by=...)            # what failed, again
    quality_report(journal, since=...)         # timeliness, completeness, accuracy per system

Modules: `metrics` (every Prometheus metric, multiprocess /metrics), `queues` (queue depth and
consumers read from the broker at scrape time), `journal` (the hash-chained journal, on the store),
`observer` (the hooks), `quality`, `dead_letters`, `readiness`, `api` (FastAPI routers),
`settings`. Alert rules and their tests are in `monitor/prometheus/`, the dashboard in
`monitor/grafana/`.
"""

from monitor.dead_letters import DeadLetterQuery, ReplayPlan
from monitor.errors import InvalidRequest, JournalUnavailable, MetricsSetupError, MonitorError
from monitor.journal import ChainHead, ChainReport, Entry, Journal, JournalOptions, Step
from monitor.observer import RECEIVED_AT_HEADER, Observer, Reception
from monitor.quality import SystemQuality, quality_report
from monitor.readiness import ReadinessReport, check_readiness
from monitor.settings import MonitorSettings

__all__ = [
    "RECEIVED_AT_HEADER",
    "ChainHead",
    "ChainReport",
    "DeadLetterQuery",
    "Entry",
    "InvalidRequest",
    "Journal",
    "JournalOptions",
    "JournalUnavailable",
    "MetricsSetupError",
    "MonitorError",
    "MonitorSettings",
    "Observer",
    "ReadinessReport",
    "Reception",
    "ReplayPlan",
    "Step",
    "SystemQuality",
    "check_readiness",
    "quality_report",
]
