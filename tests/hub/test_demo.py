"""`jghub demo` end to end: it runs, exits 0, its books balance on both buses, and its disposal
loop is what the simulated departments' behaviour implies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq
from store_support import embedded_store

from adapters.authorisation import WARNING_MATCH_RULE
from adapters.routing import department_ref
from centre.ledger import Ledger, department_key
from hub.simulators.clients import PUSH_ADAPTERS
from hub.simulators.demo import DemoOptions, DemoReport, run_demo
from hub.simulators.departments import KINDS, DepartmentBehaviour
from hub.simulators.landscape import build_landscape
from hub.simulators.roster import landscape_roster
from mappings import load_all
from monitor.metrics import sample_total
from reference.stored import StoreLists


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
    assert report.books["city-culture-enforcement"].accepted > 0  # read by the SOAP poller
    # The reference lists were fed from their two sources through the worker's feed.
    fed = (
        report.books["national-catalogue"].accepted
        + report.books["provincial-supervision"].accepted
    )
    assert fed > 0 and report.books["reference-lists"].delivered == fed


class EmbeddedDemo(NamedTuple):
    """One demo run on the embedded bus that the tests reading its outcome share."""

    options: DemoOptions
    report: DemoReport
    data_dir: Path
    unmatched_before: float


@pytest.fixture(scope="module")
def embedded_demo(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedDemo:
    # One run of the default size (enough traffic for every department behaviour to show) with
    # a tenth of national's deliveries refused, so the books have dead letters to balance too.
    data_dir = tmp_path_factory.mktemp("embedded") / "demo"
    unmatched = sample_total("jghub_unmatched_feedback_total")
    options = DemoOptions(
        data_dir=data_dir, flaky=DemoOptions().flaky.model_copy(update={"reject_share": 0.1})
    )
    return EmbeddedDemo(options, run_demo(options), data_dir, unmatched)


@pytest.mark.slow
def test_demo_on_the_embedded_bus_balances_its_books(embedded_demo: EmbeddedDemo) -> None:
    report = embedded_demo.report
    _assert_books_balance(report)
    assert report.bus_url.startswith("sqlite:")
    assert (embedded_demo.data_dir / "bus.sqlite3").is_file()
    # The lists hold what the traffic names, wrong on purpose in a few places.
    lists = StoreLists(embedded_store(embedded_demo.data_dir), refresh_s=0)
    folders = load_all()
    roster = landscape_roster(build_landscape(folders).systems.systems, folders)
    rows = {status.name: status.rows for status in lists.status()}
    assert rows["catalogue"] == len(roster.catalogue) and rows["officers"] == len(roster.officers)
    assert rows["objects"] > 0
    (unlisted,) = roster.unlisted
    assert lists.catalogue_item(unlisted) is None
    statuses = {lists.officer(number).status for number in roster.officers}  # type: ignore[union-attr]
    assert statuses == {status for _, status in roster.officers.values()}
    assert "3" in roster.catalogue.values()  # an item repealed on purpose


def _expected_score(kind: str, answer: str, overdue: bool) -> tuple[int, ...]:
    """(rows, open, overdue, returned, closed, on time, late) of one row a department answered
    so: a task fed back is closed by the centre, its dispatcher; a warning fed back waits for
    its issuer (national, whose format cannot say closed)."""
    fed_back = answer in ("on_time", "late")
    closed = fed_back and kind == "task"
    return (
        1,
        int(not closed),
        int(answer == "never" and overdue),
        int(answer == "return"),
        int(closed),
        int(answer == "on_time"),
        int(answer == "late"),
    )


@pytest.mark.slow
def test_demo_centre_loop_is_what_each_departments_behaviour_implies(
    embedded_demo: EmbeddedDemo,
) -> None:
    options, report = embedded_demo.options, embedded_demo.report
    _assert_books_balance(report)
    # No department fed back anything it did not receive: nothing unmatched, nothing the centre
    # could not place.
    assert sample_total("jghub_unmatched_feedback_total") == embedded_demo.unmatched_before
    assert all(WARNING_MATCH_RULE not in b.reasons for b in report.books.values())
    assert report.books["collaboration"].dead_lettered == 0
    assert report.loop.answers > 0 and report.loop.refused == {}

    systems = build_landscape(load_all()).systems.systems
    owner = {department_key(department_ref(d)): s.id for s in systems for d in s.departments}
    channels = {
        (s.id, kind)
        for s in systems
        for kind, message_type in KINDS.items()
        for c in s.inbound
        if c.message_type == message_type and c.adapter in PUSH_ADAPTERS
    }
    closed_at = report.loop.closed_at
    store = embedded_store(embedded_demo.data_dir)
    try:
        rows = Ledger(store, clock=lambda: closed_at).items(limit=100_000)
    finally:
        store.close()
    expected: dict[tuple[str, str], list[int]] = {}
    exercised: set[str] = set()
    for row in rows:
        system, kind = owner[row["department"]], row["kind"]
        behaviour = options.departments.get(system, DepartmentBehaviour())
        answer = behaviour.of(kind) if (system, kind) in channels else "never"
        exercised.add(answer)
        due = datetime.fromisoformat(row["due_at"])
        assert due < closed_at and not row["flags"], row
        if answer == "return":
            assert row["state"] == "returned", row
        elif answer == "never":
            assert row["state"] in ("dispatched", "delivered") and row["overdue"], row
        else:
            assert row["state"] == ("closed" if kind == "task" else "fed_back"), row
            fed_back = datetime.fromisoformat(row["fed_back_at"])
            late = fed_back - due
            assert (late > timedelta(0)) == (answer == "late"), row
            if answer == "late":
                assert abs(late - timedelta(days=behaviour.late_by_days)) < timedelta(minutes=2)
        counts = _expected_score(kind, answer, overdue=due < closed_at)
        score = expected.setdefault((row["department"], kind), [0] * 7)
        score[:] = [a + b for a, b in zip(score, counts, strict=True)]
    # The run shows every behaviour, and the closing table (the scorecard's disposal figures,
    # in SQL) says what they imply.
    assert exercised == {"on_time", "late", "return", "never"}
    assert {
        (s.department, s.kind): [
            s.rows, s.open, s.overdue, s.returned, s.rows - s.open, s.on_time, s.late
        ]
        for s in report.loop.scores
    } == expected  # fmt: skip


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
