"""`jghub demo` end to end: it runs, exits 0, and its books balance on both buses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq

from hub.simulators.demo import DemoOptions, DemoReport, run_demo


def _assert_books_balance(report: DemoReport) -> None:
    assert report.settled
    for book in report.books.values():
        assert book.received == book.accepted + book.rejected, book
        assert book.failed == 0, book
    assert report.queued == 0
    assert report.accepted == report.delivered + report.dead_lettered + report.repeated
    # The run had something of everything: refusals, retries, dead letters and an outbox.
    assert sum(b.rejected for b in report.books.values()) > 0
    assert report.quarantined > 0
    assert report.books["national"].delivered > 0
    assert report.books["national"].retried + report.books["national"].dead_lettered > 0
    assert report.books["eco-env-penalty"].pulled == report.books["eco-env-penalty"].delivered
    assert report.books["emergency-penalty"].accepted > 0  # read by the pollers


@pytest.mark.slow
def test_demo_on_the_embedded_bus_balances_its_books(tmp_path: Path) -> None:
    report = run_demo(
        DemoOptions(
            records=80,
            data_dir=tmp_path / "demo",
            flaky=DemoOptions().flaky.model_copy(update={"reject_share": 0.1}),
        )
    )
    _assert_books_balance(report)
    assert report.bus_url.startswith("sqlite:")
    assert (tmp_path / "demo" / "bus.sqlite3").is_file()


@pytest.mark.slow
@pytest.mark.rabbitmq
def test_demo_on_rabbitmq_balances_its_books(tmp_path: Path) -> None:
    require_rabbitmq()
    report = run_demo(
        DemoOptions(
            records=60,
            amqp_url=RABBITMQ_URL,
            data_dir=tmp_path / "demo",
            delete_topology=True,
            flaky=DemoOptions().flaky.model_copy(update={"reject_share": 0.1}),
        )
    )
    _assert_books_balance(report)
    assert report.bus_url.startswith("amqp")


@pytest.mark.slow
def test_jghub_demo_runs_in_a_fresh_folder_and_exits_0(tmp_path: Path) -> None:
    jghub = Path(sys.executable).with_name("jghub")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JGHUB_")}
    done = subprocess.run(
        [str(jghub), "demo", "--records", "40"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = " ".join(done.stdout.split())
    books = re.search(
        r"received (\d+) = accepted (\d+) \+ rejected (\d+); accepted (\d+) = delivered (\d+) "
        r"\+ dead-lettered (\d+) \+ sent again (\d+) \+ still queued (\d+): balanced",
        text,
    )
    assert books, done.stdout
    received, accepted, rejected, _, delivered, dead, again, queued = map(int, books.groups())
    assert received == accepted + rejected and accepted == delivered + dead + again
    assert queued == 0
    assert "Where to look next" in done.stdout
    assert list((tmp_path / "var").glob("demo-*/bus.sqlite3"))
