"""Poller leases on each backend: one worker polls a channel at a time, across processes and
hosts; an expired lease is taken over, the old holder's cursor save is refused, and a worker
killed while it polls is replaced from the saved cursor, every record handed over once."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.protocols.poller import (
    POLLER_CURSOR,
    POLLER_LEASE,
    Cursor,
    CursorStore,
    LeaseLost,
    PollerLease,
    holder_id,
)
from store import Store

ROOT = Path(__file__).resolve().parents[2]
LEASE_POLLER = ROOT / "tests" / "support" / "lease_poller.py"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_expired_lease_is_taken_over_and_the_old_holder_saves_nothing(
    store: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    changes: list[tuple[str, str]] = []

    def lease(name: str) -> PollerLease:
        return PollerLease(
            Store(store.url),
            "emergency-penalty",
            "case_page",
            period_s=30,
            holder=name,
            clock=clock,
            on_change=lambda change: changes.append((name, change)),
        )

    a, b = lease("a"), lease("b")
    a_cursor = CursorStore(a.store, tmp_path, "emergency-penalty", "case_page", a)
    b_cursor = CursorStore(b.store, tmp_path, "emergency-penalty", "case_page", b)
    assert a.take() and not b.take()
    assert PollerLease(store, "emergency-penalty", "inspection_page", period_s=30).take()
    first = Cursor(datetime(2026, 3, 1, tzinfo=UTC), "1")
    a_cursor.save(first)  # renews a's lease in the same transaction
    clock.now += 29
    assert not b.take()  # renewed at the save: 30 s from then
    clock.now += 2
    assert b.take()  # a let it expire (stuck): b takes over
    assert not a.renew()
    with pytest.raises(LeaseLost, match="another worker holds the lease now"):
        a_cursor.save(Cursor(datetime(2026, 3, 2, tzinfo=UTC), "2"))
    assert b_cursor.load() == first  # a's late cursor was not written over b's
    b_cursor.save(Cursor(datetime(2026, 3, 3, tzinfo=UTC), "3"))
    b.release()
    assert a.take()  # released: free at once
    assert changes == [("a", "taken"), ("b", "taken_over"), ("b", "released"), ("a", "taken")]
    a.store.close()
    b.store.close()


def test_a_waiting_worker_tries_again_as_the_lease_it_saw_expires(store: Store) -> None:
    """So a dead holder is replaced within one period of its last renewal, not a tick later."""
    clock = FakeClock()
    holder = PollerLease(store, "emergency-penalty", "case_page", period_s=30, clock=clock)
    waiting = PollerLease(store, "emergency-penalty", "case_page", period_s=30, clock=clock)
    assert holder.take()
    clock.now += 25  # the holder dies here, 25 s after its last renewal
    assert not waiting.take()
    assert waiting._until_expiry() == pytest.approx(5.01)  # its expiry, not a 10 s tick
    clock.now += 5.01
    assert waiting.take()
    clock.now += 1
    assert not holder.take()  # now the other way round: a whole tick when expiry is far
    assert holder._until_expiry() == pytest.approx(waiting.tick_s)


def _take(url: str) -> bool:
    store = Store(url)
    try:
        return PollerLease(store, "emergency-penalty", "case_page", period_s=60).take()
    finally:
        store.close()


def test_of_workers_racing_for_a_free_lease_exactly_one_gets_it(store: Store) -> None:
    context = multiprocessing.get_context("spawn")
    url = store.url.render_as_string(hide_password=False)
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        taken = list(pool.map(_take, [url] * 8))
    assert taken.count(True) == 1


def test_a_holder_names_its_host_and_process() -> None:
    host, pid, random = holder_id().split(":")
    assert host and pid == str(os.getpid()) and len(random) == 8
    assert holder_id() != holder_id()


def _wait_for(condition, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    # A bound on a wait, not a measure of speed: the test fails saying what never happened.
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:.0f}s: {what}")
        time.sleep(0.05)


def _ledger(folder: Path) -> list[tuple[int, int]]:
    path = folder / "ledger"
    if not path.exists():
        return []
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]  # type: ignore[misc]


def test_a_killed_holder_is_replaced_from_its_cursor_every_record_once(
    store: Store, tmp_path: Path
) -> None:
    url = store.url.render_as_string(hide_password=False)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, str(LEASE_POLLER), url, str(tmp_path), "1.0"],
            cwd=ROOT,
            env=environment,
        )
        for _ in range(2)
    ]
    try:
        stalled = tmp_path / "stalled"
        _wait_for(lambda: stalled.exists() and stalled.read_text(), 60, "a worker to poll")
        stuck = int(stalled.read_text())
        (survivor,) = [w for w in workers if w.pid != stuck]
        # Only the holder polled, three pages (a page after the first repeats the record at the
        # cursor, which is dropped): 0-2, 3-4, 5-6. The other worker waited.
        assert _ledger(tmp_path) == [(stuck, n) for n in range(7)]
        with store.begin() as db:
            holder = db.execute(select(POLLER_LEASE.c.holder)).scalar_one()
        assert holder.split(":")[1] == str(stuck)
        os.kill(stuck, signal.SIGKILL)
        _wait_for(lambda: len(_ledger(tmp_path)) >= 30, 60, "the other worker to take over")
        time.sleep(0.5)  # nothing more should come: the survivor has caught up
        ledger = _ledger(tmp_path)
        assert [n for _, n in ledger] == list(range(30))  # every record once, in order
        assert ledger[7:] == [(survivor.pid, n) for n in range(7, 30)]
        with store.begin() as db:
            holder = db.execute(select(POLLER_LEASE.c.holder)).scalar_one()
            cursor = db.execute(select(POLLER_CURSOR.c.record_id)).scalar_one()
        assert holder.split(":")[1] == str(survivor.pid) and cursor == "29"
        survivor.terminate()  # a clean stop releases the lease
        assert survivor.wait(timeout=30) == 0
        with store.begin() as db:
            assert db.execute(select(POLLER_LEASE.c.holder)).first() is None
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait(timeout=30)
