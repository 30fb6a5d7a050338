"""The journal: traces in order, per-system visibility, and a hash chain that catches tampering,
on each backend of the store (SQLite, PostgreSQL)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from monitor_support import value
from sqlalchemy import text

from monitor.journal import ChainHead, Journal, JournalOptions, Step, entry_hash
from store import Store

FAST = JournalOptions(flush_interval_s=0.01)


def _journey(journal: Journal, message_id: str, *, system: str = "eco-env-penalty") -> None:
    journal.record(Step.RECEIVED, message_id=message_id, receipt="r1", system=system)
    journal.record(Step.PUBLISHED, message_id=message_id, receipt="r1", system=system)
    journal.record(
        Step.RETRIED,
        message_id=message_id,
        system=system,
        target="national",
        reason="HTTP 503 from national",
        attempt=1,
        detail={"tier": 0, "stage": "deliver"},
    )
    journal.record(
        Step.DELIVERED, message_id=message_id, system=system, target="national", attempt=2
    )


@pytest.fixture
def journal(store: Store) -> Iterator[Journal]:
    with Journal(store, FAST) as opened:
        yield opened


def _tamper(journal: Journal, sql: str, **parameters: object) -> None:
    """Change the store behind the journal's back, as someone with database access could."""
    journal.flush()
    with journal.store.begin() as db:
        changed = db.execute(text(sql), parameters).rowcount
    assert changed == 1, f"the tampering statement changed {changed} rows"


def test_trace_shows_the_steps_in_order(journal: Journal) -> None:
    _journey(journal, "m1")
    _journey(journal, "m2")
    steps = journal.trace("m1")
    assert [s.step for s in steps] == [Step.RECEIVED, Step.PUBLISHED, Step.RETRIED, Step.DELIVERED]
    retried = steps[2]
    assert (retried.target, retried.reason, retried.attempt) == (
        "national",
        "HTTP 503 from national",
        1,
    )
    assert retried.detail == {"tier": 0, "stage": "deliver"}
    assert steps[0].at <= steps[-1].at
    assert [s.seq for s in steps] == sorted(s.seq for s in steps)


def test_a_trace_is_in_time_order_whoever_wrote_first(journal: Journal) -> None:
    moved = datetime.now(UTC)
    # a worker delivered the replayed message and its entry reached the chain first ...
    journal.record(Step.DEAD_LETTERED, message_id="m", at=moved + timedelta(milliseconds=5))
    journal.flush()
    # ... before the replay, which happened earlier, was written
    journal.record(Step.REPLAYED, message_id="m", at=moved)
    steps = journal.trace("m")
    assert [s.step for s in steps] == [Step.REPLAYED, Step.DEAD_LETTERED]
    assert [s.seq for s in steps] == [2, 1]


def test_a_receipt_traces_every_record_of_its_exchange(journal: Journal) -> None:
    journal.record(Step.RECEIVED, message_id="a", receipt="rcpt", system="s")
    journal.record(Step.REJECTED, receipt="rcpt", system="s", reason="name: rule 'mandatory'")
    journal.record(Step.RECEIVED, message_id="b", receipt="other", system="s")
    assert [(e.step, e.message_id) for e in journal.trace("rcpt")] == [
        (Step.RECEIVED, "a"),
        (Step.REJECTED, None),
    ]


def test_a_sender_sees_only_its_own_messages(journal: Journal) -> None:
    _journey(journal, "mine", system="grassroots-platform")
    _journey(journal, "theirs", system="eco-env-penalty")
    assert len(journal.trace("mine", system="grassroots-platform")) == 4
    assert journal.trace("theirs", system="grassroots-platform") == []
    assert len(journal.trace("theirs")) == 4  # operators see everything


def test_an_untouched_chain_verifies(journal: Journal) -> None:
    for n in range(50):
        _journey(journal, f"m{n}")
    journal.flush()
    report = journal.verify()
    assert report.ok, report.broken
    assert report.checked == 200
    assert report.head == journal.head()
    assert report.head is not None and report.head.seq == 200


def test_entry_hashes_are_those_journals_were_chained_with() -> None:
    # Digests of the standard library's JSON (before orjson wrote it): existing journals verify.
    rows = [
        (1, "2026-12-07T21:00:00.000000+00:00", "received", "m-1", "r-1", "eco-env-penalty", None,
         "penalty_case", None, None, '{"subject": "杭西市监处罚〔2026〕15号", "filled": 3}'),
        (2**64, "2026-12-07T21:00:00.000001+00:00", "rejected", "许䶮\u2028", None, "sys",
         "target", None, 'reason "quoted" \\ \n\t\x01', 0, "{}"),
    ]  # fmt: skip
    first = entry_hash("0" * 64, rows[0])
    assert first == "22ef13c3b4c1827f972157d2e503fc7c76220cdd0fda806409086672671977d8"
    assert entry_hash(first, rows[1]) == (
        "71a130825d52c392c141fd33c65e83fe46d22f464f4a17422fe27d10fc4471ac"
    )


def test_an_edited_entry_is_named(journal: Journal) -> None:
    for n in range(5):
        _journey(journal, f"m{n}")
    _tamper(journal, "UPDATE journal_entry SET reason = 'all fine' WHERE seq = 7")
    report = journal.verify()
    assert not report.ok
    assert report.broken is not None
    assert (report.broken.seq, report.broken.kind) == (7, "edited")
    assert "m1" in report.broken.explanation
    assert report.checked == 6


def test_an_entry_whose_hash_was_recomputed_is_named(journal: Journal) -> None:
    for n in range(3):
        _journey(journal, f"m{n}")
    journal.flush()
    with journal.store.begin() as db:
        row = db.execute(
            text(
                "SELECT seq, at, step, message_id, receipt, system, target, dataset, reason, "
                "attempt, detail, prev_hash FROM journal_entry WHERE seq = 5"
            )
        ).one()
        content = list(row[:11])
        content[8] = "forged reason"
        db.execute(
            text("UPDATE journal_entry SET reason = :reason, hash = :hash WHERE seq = 5"),
            {"reason": "forged reason", "hash": entry_hash(row[11], content)},
        )
    report = journal.verify()
    assert report.broken is not None
    assert (report.broken.seq, report.broken.kind) == (5, "rewritten")


def test_a_deleted_entry_is_named(journal: Journal) -> None:
    for n in range(3):
        _journey(journal, f"m{n}")
    _tamper(journal, "DELETE FROM journal_entry WHERE seq = 6")
    report = journal.verify()
    assert report.broken is not None
    assert (report.broken.seq, report.broken.kind) == (6, "deleted")
    assert report.checked == 5


def test_the_first_entry_deleted_is_caught(journal: Journal) -> None:
    _journey(journal, "m")
    _tamper(journal, "DELETE FROM journal_entry WHERE seq = 1")
    report = journal.verify()
    assert report.broken is not None and report.broken.seq == 1


def test_entries_cut_from_the_end_are_caught_by_an_anchor(journal: Journal) -> None:
    for n in range(3):
        _journey(journal, f"m{n}")
    journal.flush()
    anchor = journal.head()
    assert anchor is not None
    assert journal.verify(anchor=anchor).ok
    _tamper(journal, "DELETE FROM journal_entry WHERE seq = :seq", seq=anchor.seq)
    cut = journal.verify().broken  # the chain head still names the entry cut ...
    assert cut is not None and (cut.seq, cut.kind) == (anchor.seq, "deleted")
    before = next(e for e in journal.entries() if e.seq == anchor.seq - 1)
    _tamper(  # ... so whoever cut it rewinds the head too: a shorter chain is still a chain ...
        journal,
        "UPDATE journal_chain SET seq = :seq, hash = :hash",
        seq=before.seq,
        hash=before.hash,
    )
    assert journal.verify().ok
    report = journal.verify(anchor=anchor)  # ... but it no longer reaches the anchor
    assert report.broken is not None
    assert (report.broken.seq, report.broken.kind) == (anchor.seq, "anchor")
    assert ChainHead.parse(str(anchor)) == anchor
    with pytest.raises(ValueError, match="SEQ:HASH"):
        ChainHead.parse("12:abc")


def test_pruning_keeps_the_rest_verifiable(store: Store) -> None:
    today = datetime.now(UTC)
    clock = [today - timedelta(days=40)]
    with Journal(store, FAST, clock=lambda: clock[0]) as journal:
        for n in range(10):
            journal.record(Step.RECEIVED, message_id=f"old{n}", system="s")
        journal.flush()
        clock[0] = today
        for n in range(5):
            journal.record(Step.RECEIVED, message_id=f"new{n}", system="s")
        journal.flush()
        at_the_cut = next(e for e in journal.entries() if e.seq == 10)
        anchor = ChainHead(at_the_cut.seq, at_the_cut.hash)
        assert journal.prune((today - timedelta(days=30)).date()) == 10
        assert journal.count() == 5
        assert journal.verify().ok
        assert journal.verify(anchor=anchor).ok  # pruned up to the anchor exactly
        older = journal.verify(anchor=ChainHead(3, "0" * 64)).broken
        assert older is not None and "pruned past the anchor" in older.explanation
        journal.record(Step.PUBLISHED, message_id="new0", system="s")
        journal.flush()
        head = journal.head()
        assert head is not None and head.seq == 16
        assert journal.verify().ok
        _tamper(journal, "UPDATE journal_entry SET system = 'x' WHERE seq = 12")
        broken = journal.verify().broken
        assert broken is not None and broken.seq == 12


def test_entries_filter_by_window_step_and_system(journal: Journal) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=2)
    journal.record(Step.RECEIVED, message_id="old", system="a", at=long_ago)
    journal.record(Step.RECEIVED, message_id="new", system="a")
    journal.record(Step.REJECTED, receipt="r", system="a")
    journal.record(Step.RECEIVED, message_id="b", system="b")
    journal.flush()
    since = datetime.now(UTC) - timedelta(hours=1)
    found = journal.entries(since=since, steps=[Step.RECEIVED], system="a")
    assert [e.message_id for e in found] == ["new"]


def test_a_closed_journal_drops_instead_of_raising(store: Store) -> None:
    journal = Journal(store, FAST)
    journal.record(Step.RECEIVED, message_id="kept", system="s")
    journal.close()
    journal.record(Step.RECEIVED, message_id="late", system="s")  # a thread still busy at exit
    reopened = Journal(store, FAST)
    assert [e.message_id for e in reopened.entries()] == ["kept"]
    reopened.close()


WRITER = textwrap.dedent(
    """
    import sys
    from monitor.journal import Journal, JournalOptions, Step
    from store import Store
    url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    journal = Journal(Store.open(url), JournalOptions(flush_interval_s=0.005, batch_size=50))
    for n in range(count):
        journal.record(Step.PUBLISHED, message_id=f"{name}-{n}", system=name)
        if n % 7 == 0:
            journal.flush()  # a durable step now and then: many small batches interleave
    journal.close()
    """
)


def test_processes_appending_at_once_keep_one_chain(store: Store) -> None:
    url = store.url.render_as_string(hide_password=False)
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, name, "2000"])
        for name in ("serve", "worker-1", "worker-2")
    ]
    for writer in writers:
        assert writer.wait(timeout=300) == 0
    journal = Journal(store)
    report = journal.verify()
    assert report.ok, report.broken
    assert report.checked == 6000 == journal.count()
    seqs = [e.seq for e in journal.entries()]
    assert seqs == list(range(1, 6001))  # no duplicate, no gap
    for name in ("serve", "worker-1", "worker-2"):
        mine = list(journal.entries(system=name))
        assert [e.message_id for e in mine] == [f"{name}-{n}" for n in range(2000)]
    journal.close()


@contextmanager
def _another_writer_holds_the_lock(store: Store) -> Iterator[None]:
    """Another process in the middle of a write: SQLite's file lock, PostgreSQL's head row."""
    if store.embedded:
        blocker = sqlite3.connect(str(store.url.database), isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    with store.engine.connect() as other, other.begin():
        other.execute(text("SELECT seq FROM journal_chain WHERE id = 1 FOR UPDATE"))
        yield


def test_a_locked_store_keeps_entries_in_memory_then_drops_past_the_limit(store: Store) -> None:
    options = JournalOptions(
        flush_interval_s=0.01, max_pending=20, full_wait_s=0.0, busy_timeout_s=0.05
    )
    dropped_before = value("jghub_journal_entries_total", outcome="dropped")
    failed_before = value("jghub_journal_entries_total", outcome="failed")
    with Journal(store, options) as journal:
        with _another_writer_holds_the_lock(store):
            for n in range(20):
                journal.record(Step.PUBLISHED, message_id=f"m{n}", system="s")
            # the writer took these 20 and keeps failing on them (backing off) ...
            deadline = time.monotonic() + 10
            while value("jghub_journal_entries_total", outcome="failed") == failed_before:
                assert time.monotonic() < deadline, "the writer never tried"
                time.sleep(0.01)
            # ... while 20 more wait in memory and the rest are dropped
            for n in range(20, 45):
                journal.record(Step.PUBLISHED, message_id=f"m{n}", system="s")
            assert not journal.flush(timeout=0.2)
        assert journal.flush(timeout=30)
        kept = [e.message_id for e in journal.entries()]
        assert journal.verify().ok
    assert kept == [f"m{n}" for n in range(40)]
    assert value("jghub_journal_entries_total", outcome="dropped") - dropped_before == 5


def record_and_flush(
    journal: Journal, n: int, start: threading.Barrier, flushed: list[bool]
) -> None:
    start.wait()
    journal.record(Step.DELIVERED, message_id=f"m{n}", target="t")
    flushed.append(journal.flush(timeout=10))


def test_a_flush_right_after_the_first_entries_of_many_threads_waits_for_the_writer(
    store: Store,
) -> None:
    # The first entries start the writer thread; a thread that records while it starts and
    # flushes at once must wait for the write, not find the writer "dead" and give up.
    for round_ in range(20):
        journal = Journal(store)
        start = threading.Barrier(8)
        flushed: list[bool] = []
        threads = [
            threading.Thread(target=record_and_flush, args=(journal, n, start, flushed))
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert flushed == [True] * 8, f"round {round_}"
        journal.close()


def test_a_flush_while_no_batch_is_written_writes_in_the_caller_s_thread(store: Store) -> None:
    # The writer thread sleeps (a minute between batches): the caller writes its own batch,
    # with the writes riding along, and the chain is the same as the writer would have made.
    ran_in: list[str] = []
    with Journal(store, JournalOptions(flush_interval_s=60)) as journal:
        journal.record(Step.RECEIVED, message_id="m1", system="s")  # starts the writer
        assert journal.flush(timeout=10)
        journal.record(Step.PUBLISHED, message_id="m1", system="s")
        journal.alongside(lambda db: ran_in.append(threading.current_thread().name), "a test")
        assert journal.flush(timeout=10)
        assert ran_in == [threading.current_thread().name]
        assert [e.step for e in journal.trace("m1")] == [Step.RECEIVED, Step.PUBLISHED]
        assert journal.verify().ok


def test_a_batch_the_store_cannot_take_now_goes_back_in_order_to_the_writer(
    store: Store,
) -> None:
    # A caller tries its batch once: while another writer holds the chain, the entries go back
    # to the front of the queue, the caller's flush ends late, and the writer thread writes them
    # in their order once the store takes them; entries queued meanwhile follow them.
    options = JournalOptions(flush_interval_s=60, busy_timeout_s=0.05)
    failed_before = value("jghub_journal_entries_total", outcome="failed")
    with Journal(store, options) as journal:
        journal.record(Step.RECEIVED, message_id="m0", system="s")
        assert journal.flush(timeout=10)
        with _another_writer_holds_the_lock(store):
            for n in range(1, 6):
                journal.record(Step.RECEIVED, message_id=f"m{n}", system="s")
            assert not journal.flush(timeout=1.0)
            # the writer thread took them over and is trying again
            assert value("jghub_journal_entries_total", outcome="failed") > failed_before
            journal.record(Step.RECEIVED, message_id="m6", system="s")
        assert journal.flush(timeout=30)
        assert [e.message_id for e in journal.entries()] == [f"m{n}" for n in range(7)]
        assert journal.verify().ok


def test_threads_flushing_at_once_keep_one_chain_in_each_thread_s_order(store: Store) -> None:
    threads, steps = 8, 25
    start = threading.Barrier(threads)
    late: list[str] = []

    def steps_of(n: int) -> None:
        start.wait()
        for step in range(steps):
            journal.record(Step.DELIVERED, message_id=f"t{n}-{step}", target="t")
            if not journal.flush(timeout=30):
                late.append(f"t{n}-{step}")

    with Journal(store, JournalOptions(flush_interval_s=0.05)) as journal:
        workers = [threading.Thread(target=steps_of, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert late == []
        written = [e.message_id or "" for e in journal.entries()]
        assert journal.verify().ok
    assert len(written) == threads * steps
    for n in range(threads):
        mine = [m for m in written if m.startswith(f"t{n}-")]
        assert mine == [f"t{n}-{step}" for step in range(steps)]
