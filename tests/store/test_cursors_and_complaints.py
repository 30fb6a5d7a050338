"""Poller cursors and the centre's complaints on each backend: kept exactly, replaced whole,
shared by every connection, each centre and poller apart."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flows_harness import complaint_xml
from sqlalchemy import update
from worker_harness import folders

from adapters.protocols.poller import POLLER_CURSOR, Cursor, CursorError, CursorStore
from centre.collaboration import RESULT_RANK, RETURN_RANK, Loop, Step, _ComplaintStore
from standard.envelope import Envelope
from store import Store

SHANGHAI = timezone(timedelta(hours=8))


def test_a_cursor_comes_back_exactly_and_is_replaced_whole(store: Store, tmp_path: Path) -> None:
    cursors = CursorStore(store, tmp_path, "emergency-penalty", "case_page")
    other = CursorStore(Store(store.url), tmp_path, "emergency-penalty", "case_page")
    assert cursors.load() is None
    first = Cursor(datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=SHANGHAI), "1007")
    cursors.save(first)
    assert other.load() == first  # another connection (a restarted worker) reads it
    assert other.load().time.utcoffset() == timedelta(hours=8)  # its offset kept
    later = Cursor(datetime(2026, 3, 2, tzinfo=UTC), "")
    other.save(later)
    assert cursors.load() == later
    # Another channel of the same system, and the same channel of another, are apart.
    assert CursorStore(store, tmp_path, "emergency-penalty", "inspection_page").load() is None
    assert CursorStore(store, tmp_path, "market-penalty", "case_page").load() is None
    other.store.close()


def test_a_cursor_file_from_before_the_store_is_read_until_the_store_holds_one(
    store: Store, tmp_path: Path
) -> None:
    cursors = CursorStore(store, tmp_path, "emergency-penalty", "case_page")
    cursors.folder.mkdir(parents=True)
    cursors.path.write_text(json.dumps({"time": "2026-03-01T09:00:00+08:00", "record_id": "7"}))
    assert cursors.load() == Cursor(datetime(2026, 3, 1, 9, tzinfo=SHANGHAI), "7")
    newer = Cursor(datetime(2026, 3, 1, 10, tzinfo=SHANGHAI), "9")
    cursors.save(newer)
    assert cursors.load() == newer  # the store's cursor wins over the old file


def test_an_unreadable_cursor_row_says_how_to_start_again(store: Store, tmp_path: Path) -> None:
    cursors = CursorStore(store, tmp_path, "emergency-penalty", "case_page")
    cursors.save(Cursor(datetime(2026, 3, 1, tzinfo=UTC), "1"))
    with store.begin() as db:
        db.execute(update(POLLER_CURSOR).values(time="yesterday"))
    with pytest.raises(CursorError, match="delete its row in poller_cursor"):
        cursors.load()


def complaint(case: str) -> Envelope:
    """A complaint as the centre receives it: the complaint platform's push, translated."""
    translation = folders()["complaint-platform"].translate(
        "complaint_push", complaint_xml(case, "假冒伪劣")
    )
    (envelope,) = translation.envelopes
    return envelope


def test_complaints_are_kept_per_centre_and_replaced_by_task(store: Store) -> None:
    kept = _ComplaintStore(store, "collaboration")
    other_centre = _ComplaintStore(Store(store.url), "collaboration-north")
    case = "TS330106202603010077"
    kept.keep("XT-1", complaint(case), "market-penalty")
    assert other_centre.find("XT-1") is None  # another centre's complaints are its own
    found = _ComplaintStore(Store(store.url), "collaboration").find("XT-1")
    assert found is not None and found.assigned == "market-penalty"
    assert found.origin == complaint(case) and found.loop == Loop()
    kept.keep("XT-1", complaint(case), "agri-penalty")  # assigned again: replaced
    again = kept.find("XT-1")
    assert again is not None and again.assigned == "agri-penalty"
    assert kept.find("XT-2") is None


def test_the_centre_loop_of_a_task_is_kept_in_the_store(store: Store) -> None:
    kept = _ComplaintStore(store, "collaboration")
    kept.keep("XT-1", complaint("TS330106202603010077"), "market-penalty")
    at = datetime(2026, 3, 2, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    returned = Loop().after(Step(RETURN_RANK, at))
    kept.remember("XT-1", returned)
    found = _ComplaintStore(Store(store.url), "collaboration").find("XT-1")
    assert found is not None and found.loop == returned and found.loop.returned_at == at
    assert not found.loop.admits(Step(RESULT_RANK, at))


def test_a_centre_file_from_before_the_store_is_taken_in_once(store: Store, tmp_path: Path) -> None:
    case, other = "TS330106202603010077", "TS330106202603010078"
    old_file = tmp_path / "collaboration.sqlite3"
    with sqlite3.connect(old_file) as old:
        old.execute(
            "CREATE TABLE complaint (task_id TEXT PRIMARY KEY, envelope TEXT, assigned_system TEXT)"
        )
        old.executemany(
            "INSERT INTO complaint VALUES (?, ?, ?)",
            [
                ("XT-1", complaint(case).to_json().decode(), "market-penalty"),
                ("XT-2", complaint(other).to_json().decode(), "agri-penalty"),
            ],
        )
    old.close()
    kept = _ComplaintStore(store, "collaboration")
    kept.keep("XT-2", complaint(other), "health-penalty")  # the store's own row wins
    assert kept.adopt(old_file) == 2
    first = kept.find("XT-1")
    assert first is not None and (first.origin, first.assigned) == (
        complaint(case),
        "market-penalty",
    )
    second = kept.find("XT-2")
    assert second is not None and second.assigned == "health-penalty"
    assert not old_file.exists()
    assert (tmp_path / "collaboration.sqlite3.adopted").is_file()
    assert kept.adopt(old_file) == 0  # once: the file is out of the way
