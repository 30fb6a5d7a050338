"""Metrics: Prometheus naming, a parseable /metrics, bounded labels, several processes summed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from monitor import metrics
from monitor.metrics import (
    MAX_VALUES_PER_LABEL,
    OVERFLOW_LABEL,
    bounded,
    clear_stale,
    defined_metrics,
    exposition,
    scrape_registry,
)
from monitor.observer import Observer


def test_names_follow_prometheus_conventions() -> None:
    found = defined_metrics()
    assert len(found) >= 25
    for name, kind in found.items():
        assert name.startswith("jghub_"), name
        assert name == name.lower() and " " not in name, name
        assert name.endswith("_total") == (kind == "counter"), f"{name} is a {kind}"
        if kind == "histogram":
            assert name.endswith("_seconds"), f"histogram {name} must be in seconds"
    for metric in metrics.OBSERVED:
        for family in metric.describe():
            assert len(family.documentation) > 20, f"{family.name} needs a help text"


def test_the_exposition_parses(tmp_path: Path) -> None:
    target = f"t_{uuid.uuid4().hex[:8]}"
    observer = Observer()
    observer.breaker_changed(target, "closed", "open")
    metrics.DELIVERED.labels(target, "penalty_case").inc(3)
    metrics.END_TO_END_SECONDS.labels(target, "penalty_case").observe(2.0)

    body, content_type = exposition(scrape_registry())
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    delivered = {
        s.labels["target"]: s.value
        for s in families["jghub_delivered"].samples
        if s.name == "jghub_delivered_total"
    }
    assert delivered[target] == 3.0
    assert families["jghub_end_to_end_seconds"].type == "histogram"
    (build,) = families["jghub_build_info"].samples
    assert build.value == 1.0 and build.labels["version"]
    # Every family is exposed (with HELP and TYPE) even before its first sample; the queue
    # families come from a QueueCollector (tests/monitor/test_queues.py), the centre's from a
    # CentreCollector (tests/centre/test_centre_ledger.py), the overdue penalty cases from a
    # PenaltyOverdueCollector (tests/centre/test_centre_penalties.py), the quarantine's from a
    # QuarantineCollector (tests/monitor/test_quarantine.py).
    collected = ("jghub_queue_messages", "jghub_queue_consumers", "jghub_broker_up",
                 "jghub_penalty_cases_overdue")  # fmt: skip
    expected = {
        name.removesuffix("_total") if kind == "counter" else name
        for name, kind in defined_metrics().items()
        if name not in collected
        and not name.startswith("jghub_centre_")
        and not (name.startswith("jghub_quarantine_") and name in metrics.SCRAPED)
    }
    assert expected <= set(families), expected - set(families)

    om_body, om_type = exposition(scrape_registry(), "application/openmetrics-text")
    assert om_type.startswith("application/openmetrics-text")
    assert any(f.name == "jghub_delivered" for f in openmetrics_families(om_body.decode()))
    # One process or several, the same series: no `*_created` (multiprocess mode has none).
    samples = {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    assert "jghub_delivered_total" in samples
    assert not sorted(n for n in samples if n.endswith("_created"))


def test_failure_labels_stay_bounded() -> None:
    metric = f"m_{uuid.uuid4().hex}"
    values = [bounded(metric, "reason", f"rule {n}") for n in range(MAX_VALUES_PER_LABEL + 5)]
    assert values[:MAX_VALUES_PER_LABEL] == [f"rule {n}" for n in range(MAX_VALUES_PER_LABEL)]
    assert set(values[MAX_VALUES_PER_LABEL:]) == {OVERFLOW_LABEL}
    assert bounded(metric, "reason", "rule 3") == "rule 3"  # known values still pass
    assert bounded(f"{metric}2", "reason", "   ") == "unknown"
    assert len(bounded(f"{metric}3", "reason", "x" * 500)) == metrics.MAX_LABEL_CHARS


# -- several processes -----------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from monitor import metrics
    directory, target, count, state, how = sys.argv[1:6]
    if how == "call":
        metrics.enable_multiprocess(Path(directory))
    else:  # the documented way: PROMETHEUS_MULTIPROC_DIR set before the process started
        assert metrics.multiprocess_directory() is not None
        import atexit
        atexit.register(metrics.process_exit)
    for _ in range(int(count)):
        metrics.DELIVERED.labels(target, "penalty_case").inc()
    metrics.END_TO_END_SECONDS.labels(target, "penalty_case").observe(1.5)
    metrics.BREAKER_STATE.labels(target).set(int(state))
    print("ready", flush=True)
    sys.stdin.readline()   # stay alive until the test has scraped
    """
)

SERVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from monitor import metrics
    metrics.enable_multiprocess(Path(sys.argv[1]))
    metrics.serve_metrics(int(sys.argv[2]))
    print("serving", flush=True)
    sys.stdin.readline()
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    deadline = time.monotonic() + 10
    while True:
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert answer.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def _start(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line in ("ready", "serving"), f"process said {line!r}"
    return process


def _stop(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("\n")
    process.stdin.flush()
    assert process.wait(timeout=30) == 0


def test_one_endpoint_sums_several_processes(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    port = _free_port()
    server = _start(SERVER, str(directory), str(port))
    as_env = {metrics.MULTIPROC_ENV: str(directory)}
    try:
        one = _start(WORKER, str(directory), "national", "5", "2", "env", env=as_env)
        two = _start(WORKER, str(directory), "national", "7", "0", "call")
        seen = _scrape(port)
        key = (("dataset", "penalty_case"), ("target", "national"))
        assert seen[("jghub_delivered_total", key)] == 12.0
        assert seen[("jghub_end_to_end_seconds_count", key)] == 2.0
        assert seen[("jghub_end_to_end_seconds_sum", key)] == 3.0
        # livemax: the worst breaker among live workers (one says open)
        assert seen[("jghub_breaker_state", (("target", "national"),))] == 2.0
        assert seen[("jghub_build_info", seen_build(seen))] == 1.0

        _stop(one)
        _stop(two)
        after = _scrape(port)
        assert after[("jghub_delivered_total", key)] == 12.0  # counts outlive their process
        assert ("jghub_breaker_state", (("target", "national"),)) not in after  # gauges do not
    finally:
        _stop(server)


def seen_build(
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> tuple[tuple[str, str], ...]:
    (labels,) = [labels for name, labels in seen if name == "jghub_build_info"]
    return labels


def test_multiprocess_mode_refuses_to_start_late(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from monitor import metrics
        from monitor.errors import MetricsSetupError
        metrics.PUBLISHED.labels("s", "d").inc()
        try:
            metrics.enable_multiprocess(Path(sys.argv[1]))
        except MetricsSetupError as error:
            print(error)
            sys.exit(3)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr
    assert "jghub_published" in done.stdout and "before the first observation" in done.stdout


def test_prometheus_picks_its_sample_storage_as_assumed(tmp_path: Path) -> None:
    # monitor.metrics reads and changes prometheus-client's choice of sample storage, which the
    # library does not expose (values.ValueClass); this fails when the library changes it.
    script = textwrap.dedent(
        """
        import os, sys
        from pathlib import Path
        from prometheus_client import CollectorRegistry, Counter, values
        from monitor import metrics
        # Imported without PROMETHEUS_MULTIPROC_DIR: samples in memory.
        print(values.ValueClass is values.MutexValue, metrics._samples_in_files())
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
        metrics._pick_sample_storage()
        print(values.ValueClass is values.MutexValue, metrics._samples_in_files())
        Counter("probe", "A probe.", registry=CollectorRegistry()).inc()
        print(os.getpid(), sorted(path.name for path in Path(sys.argv[1]).iterdir()))
        """
    )
    environment = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    assert done.returncode == 0, done.stderr
    before, after, written = done.stdout.splitlines()
    assert before == "True False"
    assert after == "False True"
    # Picked again, a new metric's samples go to this process's file in the folder.
    pid, _ = written.split(" ", 1)
    assert written == f"{pid} ['counter_{pid}.db']"


def test_stale_files_are_cleared_only_when_their_processes_are_gone(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "pass"], check=True)
        assert dead.returncode == 0
        (tmp_path / "counter_999999999.db").write_bytes(b"")
        (tmp_path / f"counter_{sleeper.pid}.db").write_bytes(b"")
        assert clear_stale(tmp_path) == []  # a live worker still writes here
    finally:
        sleeper.kill()
        sleeper.wait()
    removed = clear_stale(tmp_path)
    assert sorted(p.name for p in removed) == sorted(
        ["counter_999999999.db", f"counter_{sleeper.pid}.db"]
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("accept", [None, "text/plain;version=0.0.4"])
def test_the_text_format_is_the_default(accept: str | None) -> None:
    _, content_type = exposition(scrape_registry(), accept)
    assert content_type.startswith("text/plain")


def test_sample_total_sums_over_the_labels_not_named() -> None:
    target = f"t_{uuid.uuid4().hex[:8]}"
    metrics.DELIVERED.labels(target, "penalty_case").inc(2)
    metrics.DELIVERED.labels(target, "inspection").inc(3)
    metrics.DELIVERED.labels(f"{target}x", "inspection").inc(7)
    assert metrics.sample_total("jghub_delivered_total", target=target) == 5.0
    assert metrics.sample_total("jghub_delivered_total", target="nobody") == 0.0
