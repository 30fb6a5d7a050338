"""The journal on the store: lookups by every key, days and their partitions, prune by day, the
copies beside the hash, adoption of a journal file from before the store — on both backends."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from adapters.repeats import StoredAcceptedChanges
from monitor.journal import GENESIS, ChainHead, Journal, JournalOptions, Step, entry_hash
from monitor.settings import MonitorSettings
from store import Store, store_url

FAST = JournalOptions(flush_interval_s=0.01)
DAY = datetime(2026, 10, 30, 12, tzinfo=UTC)


def _partitions(store: Store) -> list[str]:
    """The day partitions of journal_entry (PostgreSQL); [] on SQLite, which has none."""
    if store.embedded:
        return []
    with store.begin() as db:
        return sorted(
            db.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'journal_entry'::regclass"
                )
            ).scalars()
        )


def test_every_key_finds_its_entries(store: Store) -> None:
    with Journal(store, FAST) as journal:
        journal.record(
            Step.REJECTED,
            receipt="rcpt-1",
            system="complaint-platform",
            reason="payload: not JSON",
            detail={"quarantine_id": "Q-20261030-0001", "payload": True},
        )
        journal.record(
            Step.RECEIVED,
            message_id="m-1",
            receipt="rcpt-2",
            system="eco-env-penalty",
            detail={"subject": "浙杭环罚〔2026〕12号"},
        )
        journal.record(
            Step.DELIVERED,
            message_id="m-1",
            target="national",
            detail={"subject": "浙杭环罚〔2026〕12号"},
        )
        journal.record(Step.RECEIVED, message_id="m-2", system="eco-env-penalty")
        assert [e.step for e in journal.trace("Q-20261030-0001")] == [Step.REJECTED]
        assert [e.step for e in journal.trace("浙杭环罚〔2026〕12号")] == [
            Step.RECEIVED,
            Step.DELIVERED,
        ]
        assert journal.trace("浙杭环罚〔2026〕12号", system="grassroots-platform") == []
        assert [e.message_id for e in journal.entries(business_key="浙杭环罚〔2026〕12号")] == [
            "m-1",
            "m-1",
        ]
        assert [e.receipt for e in journal.entries(quarantine_id="Q-20261030-0001")] == ["rcpt-1"]
        assert [e.seq for e in journal.entries(message_id="m-2")] == [4]
        assert [e.message_id for e in journal.entries(receipt="rcpt-2")] == ["m-1"]
        with store.begin() as db:
            copies = db.execute(
                text("SELECT quarantine_id, business_key FROM journal_entry ORDER BY seq")
            ).all()
        assert [tuple(c) for c in copies] == [
            ("Q-20261030-0001", None),
            (None, "浙杭环罚〔2026〕12号"),
            (None, "浙杭环罚〔2026〕12号"),
            (None, None),
        ]


@pytest.mark.parametrize("column", ["quarantine_id", "business_key"])
def test_an_indexed_copy_edited_alone_is_named(store: Store, column: str) -> None:
    with Journal(store, FAST) as journal:
        journal.record(Step.REJECTED, receipt="r", detail={"quarantine_id": "Q1"})
        journal.record(Step.RECEIVED, message_id="m", detail={"subject": "CASE-1"})
        journal.record(Step.PUBLISHED, message_id="m")
        journal.flush()
        assert journal.verify().ok
        seq = 1 if column == "quarantine_id" else 2
        with store.begin() as db:
            db.execute(text(f"UPDATE journal_entry SET {column} = 'other' WHERE seq = {seq}"))
        broken = journal.verify().broken
        assert broken is not None and (broken.seq, broken.kind) == (seq, "edited")
        assert "business key" in broken.explanation


def test_days_follow_the_chain_whatever_a_writer_s_clock_says(store: Store) -> None:
    ahead = Journal(store, FAST, clock=lambda: DAY + timedelta(days=1))
    behind = Journal(store, FAST, clock=lambda: DAY)
    behind.record(Step.RECEIVED, message_id="first")
    behind.flush()
    ahead.record(Step.RECEIVED, message_id="second")
    ahead.flush()
    behind.record(Step.RECEIVED, message_id="third")  # its clock says yesterday
    behind.flush()
    with store.begin() as db:
        days = db.execute(text("SELECT day FROM journal_entry ORDER BY seq")).scalars().all()
    # SQLite hands back the stored text, PostgreSQL a date.
    assert [str(d) for d in days] == ["2026-10-30", "2026-10-31", "2026-10-31"]
    if not store.embedded:
        assert _partitions(store) == ["journal_entry_20261030", "journal_entry_20261031"]
    assert behind.verify().ok
    ahead.close()
    behind.close()


def test_prune_before_a_date_drops_whole_days_and_keeps_the_chain(store: Store) -> None:
    clock = [DAY - timedelta(days=2)]
    with Journal(store, FAST, clock=lambda: clock[0]) as journal:
        for n, day in enumerate((DAY - timedelta(days=2), DAY - timedelta(days=1), DAY)):
            clock[0] = day
            for k in range(3):
                journal.record(Step.PUBLISHED, message_id=f"d{n}-{k}", system="s")
            journal.flush()
        anchor = journal.head()
        assert anchor is not None and anchor.seq == 9
        assert journal.prune(date(2026, 10, 29)) == 3
        assert journal.prune(date(2026, 10, 29)) == 0  # nothing older left
        assert [e.seq for e in journal.entries()] == list(range(4, 10))
        if not store.embedded:
            assert _partitions(store) == ["journal_entry_20261029", "journal_entry_20261030"]
        assert journal.verify(anchor=anchor).ok
        assert journal.prune(date(2026, 10, 30)) == 3
        report = journal.verify(anchor=anchor)
        assert report.ok and report.checked == 3
        with store.begin() as db:
            db.execute(text("DELETE FROM journal_entry WHERE seq = 7"))
        broken = journal.verify().broken  # the first entry after the base is gone
        assert broken is not None and (broken.seq, broken.kind) == (7, "deleted")


def test_prune_of_every_day_leaves_an_empty_chain_that_goes_on(store: Store) -> None:
    with Journal(store, FAST, clock=lambda: DAY) as journal:
        journal.record(Step.PUBLISHED, message_id="a")
        journal.record(Step.PUBLISHED, message_id="b")
        journal.flush()
        head = journal.head()
        assert journal.prune(DAY.date() + timedelta(days=1)) == 2
        assert journal.count() == 0 and journal.head() == head
        assert journal.verify(anchor=head).ok
        journal.record(Step.PUBLISHED, message_id="c")
        journal.flush()
        report = journal.verify(anchor=head)
        assert report.ok and report.head is not None and report.head.seq == 3


def test_an_attempt_no_column_can_hold_is_refused_alone(store: Store) -> None:
    with Journal(store, FAST) as journal:
        journal.record(Step.DELIVERED, message_id="before", target="t")
        journal.record(Step.DELIVERED, message_id="absurd", target="t", attempt=2**70)
        journal.record(Step.DELIVERED, message_id="after", target="t", reason="nul \x00 here")
        assert journal.flush(timeout=30)
        kept = list(journal.entries())
        assert [e.message_id for e in kept] == ["before", "after"]
        assert kept[1].reason == "nul \\x00 here"  # PostgreSQL text holds no NUL: escaped
        assert journal.verify().ok


def test_a_write_alongside_commits_with_the_batch_and_a_failing_one_alone_is_undone(
    store: Store,
) -> None:
    changes = StoredAcceptedChanges(store, window_s=60)
    with Journal(store, FAST) as journal:
        journal.record(Step.PUBLISHED, message_id="m-1", target="t")
        _, write = changes.remembering(["k" * 64])
        journal.alongside(write, "remembering")

        def broken(db: Connection) -> None:
            db.execute(text("INSERT INTO accepted_change (key, at) VALUES ('half', 1)"))
            db.execute(text("INSERT INTO accepted_change (key, at) VALUES ('null', NULL)"))

        journal.alongside(broken, "a broken write")
        journal.record(Step.PUBLISHED, message_id="m-2", target="t")
        assert journal.flush(timeout=30)  # answered once both writes' batch is committed
        assert changes.already(["k" * 64, "half"]) == {"k" * 64}  # the broken one undone alone
        assert [e.message_id for e in journal.entries()] == ["m-1", "m-2"]
        assert journal.verify().ok


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # PostgreSQL locks rows, not a file
def test_an_immediate_transaction_waits_for_the_process_s_writer_turn(store: Store) -> None:
    assert store.embedded
    entered = threading.Event()

    def write() -> None:
        with store.begin(immediate=True):
            entered.set()

    with store.writing():  # as the journal's writer holds it for a batch
        other = threading.Thread(target=write)
        other.start()
        assert not entered.wait(0.3)
    assert entered.wait(10)
    other.join()


# -- adoption of a journal file from before the store ---------------------------------------------

_OLD_SCHEMA = """
CREATE TABLE journal (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, step TEXT NOT NULL,
    message_id TEXT, receipt TEXT, system TEXT, target TEXT, dataset TEXT, reason TEXT,
    attempt INTEGER, detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE journal_base (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL,
    hash TEXT NOT NULL);
"""


def _old_journal(path: Path, *, first: int, count: int, name: str) -> ChainHead:
    """A journal file as a hub before the store wrote it, pruned before entry `first`."""
    prev = GENESIS if first == 1 else entry_hash(GENESIS, [name])
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_SCHEMA)
        if first > 1:
            db.execute("INSERT INTO journal_base VALUES (1, ?, ?)", (first - 1, prev))
        for seq in range(first, first + count):
            at = (DAY + timedelta(hours=seq)).isoformat(timespec="microseconds")
            detail = json.dumps({"subject": f"{name}-case-{seq}"}, sort_keys=True)
            content = [seq, at, "received", f"{name}-{seq}", "r", "s", None, None, None, None]
            content.append(detail)
            digest = entry_hash(prev, content)
            db.execute(
                "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*content, prev, digest),
            )
            prev = digest
    return ChainHead(first + count - 1, prev)


def test_an_old_journal_file_is_adopted_unchanged_then_another_chained_anew(
    store: Store, tmp_path: Path
) -> None:
    old = tmp_path / "journal.sqlite3"
    old_head = _old_journal(old, first=5, count=40, name="host-a")
    with Journal(store, FAST, adopt=old) as journal:
        assert not old.exists() and (tmp_path / "journal.sqlite3.adopted").is_file()
        assert journal.head() == old_head  # the same chain: an anchor kept before still holds
        report = journal.verify(anchor=old_head)
        assert report.ok and report.checked == 40
        assert [e.message_id for e in journal.trace("host-a-case-7")] == ["host-a-7"]
        with store.begin() as db:  # its records named no credit codes or links (search says so)
            assert db.execute(text("SELECT keys_from FROM journal_chain")).scalar() == 45
        journal.record(Step.PUBLISHED, message_id="host-a-44")
        journal.flush()
        assert journal.verify(anchor=old_head).ok
        # A second host's old file, into a journal that has entries: appended, chained anew.
        other = tmp_path / "other.sqlite3"
        _old_journal(other, first=1, count=10, name="host-b")
        assert journal.adopt(other) == 10
        assert journal.count() == 51
        report = journal.verify(anchor=old_head)
        assert report.ok and report.checked == 51
        assert [e.seq for e in journal.trace("host-b-3")] == [48]
        assert journal.adopt(other) == 0  # once: the file is .adopted now
    with Journal(store, FAST, adopt=old) as again:  # nothing left to adopt
        assert again.count() == 51


def test_on_the_embedded_store_the_journal_may_have_a_file_of_its_own(tmp_path: Path) -> None:
    shared = Store.open(store_url(None, tmp_path))
    settings = MonitorSettings(journal_store_file=tmp_path / "journal-store.sqlite3")
    journal = settings.open_journal(shared, tmp_path)
    assert journal is not None and "journal-store.sqlite3" in journal.where
    journal.record(Step.PUBLISHED, message_id="apart")
    journal.close()
    with shared.begin() as db:
        assert db.execute(text("SELECT COUNT(*) FROM journal_entry")).scalar_one() == 0
    assert [e.message_id for e in Journal(tmp_path / "journal-store.sqlite3").entries()] == [
        "apart"
    ]
