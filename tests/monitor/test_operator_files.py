"""Alert rules and the Grafana dashboard use only metrics monitor/metrics.py defines, and parse.

promtool (Debian package `prometheus`) checks the rules' syntax, runs their unit tests and
parses every dashboard query; without it those tests skip, saying so (they fail under CI=true).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from broker_support import skip_or_fail
from monitor_support import REPO

from monitor.metrics import series_names

PROMETHEUS = REPO / "monitor" / "prometheus"
DASHBOARD = REPO / "monitor" / "grafana" / "jghub.json"
PROMETHEUS_OWN = {"up"}  # series Prometheus itself writes for every scrape target
QUESTIONS = (
    "What came in",
    "What failed, and why",
    "Where is the backlog",
    "Are targets healthy",
    "Is data quality dropping",
    "Is disposal on time (the centre's ledger)",
)
# promtool unit tests of alerts.yml: one evaluation a minute, a week in 15-minute steps, two hosts.
RULE_TESTS = ("alerts_test.yml", "alerts_week_test.yml", "alerts_hosts_test.yml")
KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "inf"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (functions, labels and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings, e.g. label values
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b\d+(?:ms|[smhdwy])\b", " ", text)  # durations (offset 5m)
    text = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", " ", text)  # numbers
    names = set()
    for found in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[found.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if found.group().lower() not in KEYWORDS:
            names.add(found.group())
    return names


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_name_extraction_sees_through_promql() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (system, le) (rate(jghub_x_bucket{system=~"a|b"}[1h])))'
        ' > 86400 unless on (system) rec:jghub_y:ratio1h offset 5m and up{job="x"} == 0'
    )
    assert metric_names(expr) == {"jghub_x_bucket", "rec:jghub_y:ratio1h", "up"}


def test_rules_use_defined_metrics_only() -> None:
    defined = series_names()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        used = metric_names(rule["expr"])
        name = rule.get("alert") or rule.get("record")
        assert used, f"{name} selects no series"
        unknown = used - defined - recorded - PROMETHEUS_OWN
        assert not unknown, f"rule {name} uses series monitor/metrics.py does not define: {unknown}"


def test_every_alert_has_a_severity_and_says_what_to_do() -> None:
    alerts = [rule for rule in rules() if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {
        "JghubDeadLettersGrowing",
        "JghubDeliveriesFailing",
        "JghubQueueBacklogRising",
        "JghubPollerLagging",
        "JghubBreakerOpen",
        "JghubAccuracyDropping",
        "JghubCompletenessDropping",
        "JghubRecordsLate",
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_every_alert_has_a_unit_test() -> None:
    tested: set[str] = set()
    for name in RULE_TESTS:
        suite = yaml.safe_load((PROMETHEUS / name).read_text(encoding="utf-8"))
        for case in suite["tests"]:
            tested.update(t["alertname"] for t in case.get("alert_rule_test", []))
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts - tested == set()


def test_the_dashboard_uses_defined_metrics_only() -> None:
    defined = series_names()
    queries = dashboard_queries()
    assert len(queries) >= 20
    for title, expr in queries:
        used = metric_names(expr)
        assert used, f"panel {title!r} selects no series"
        unknown = used - defined - PROMETHEUS_OWN
        assert not unknown, f"panel {title!r} uses undefined series {unknown}"


# The broker's counts: every serve reads them from the same broker at its scrape.
BROKER_COUNTS = {"jghub_queue_messages", "jghub_queue_consumers"}


def test_broker_counts_are_taken_once_never_summed_over_hosts() -> None:
    """Two serves report the same queue: a sum would double it (alerts_hosts_test.yml fires on
    the values; this catches a new rule or panel before it has a unit test)."""
    queries = [(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()]
    queries += dashboard_queries()
    reading = [(name, expr) for name, expr in queries if metric_names(expr) & BROKER_COUNTS]
    assert len(reading) >= 6, reading
    for name, expr in reading:
        adds_up = re.search(r"\b(?:sum|count|avg)\b", expr)
        assert adds_up is None, f"{name} adds up a broker count over hosts: {expr}"
        assert "max by (target" in expr, f"{name} does not take the broker count once: {expr}"


def test_the_dashboard_answers_each_operator_question() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rows: dict[str, list[str]] = {}
    current = None
    for panel in board["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            rows[current] = []
        else:
            assert current is not None, f"panel {panel['title']!r} is outside a row"
            assert panel["description"], f"panel {panel['title']!r} says nothing about itself"
            rows[current].append(panel["title"])
    assert tuple(rows) == QUESTIONS
    assert all(len(panels) >= 3 for panels in rows.values()), rows
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        skip_or_fail("promtool is not installed (apt-get install -y prometheus)")
    return found


def test_promtool_checks_the_rules_and_the_scrape_configuration() -> None:
    promtool = _promtool()
    for command in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"]):
        done = subprocess.run(
            [promtool, *command], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_runs_the_rule_unit_tests() -> None:
    promtool = _promtool()
    done = subprocess.run(
        [promtool, "test", "rules", *RULE_TESTS],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    promtool = _promtool()
    records = []
    for number, (_, expr) in enumerate(dashboard_queries()):
        concrete = (
            expr.replace("$__rate_interval", "5m")
            .replace("$system", ".*")
            .replace("$target", ".*")
            .replace("$instance", ".*")
        )
        records.append({"record": f"dashboard:query:{number}", "expr": concrete})
    file = tmp_path / "dashboard_queries.yml"
    file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(file)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
