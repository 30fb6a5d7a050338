"""The reference lists in the store (SQLite and PostgreSQL): fed change by change, newer wins,
a delete leaves a tombstone, and a host's cache sees another host's writes within its refresh
interval, not before it is due (a clock the test turns)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from reference_changes import change

from reference.stored import ReferenceListError, StoreLists
from standard.errors import RecordInvalid
from store import Store

CODE = "33000000302015"
CERTIFICATE = "浙A0601003182"
CREDIT_CODE = "91330106MA2CDN7P4X"


class TurnedClock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_empty_list_is_not_loaded_and_finds_nothing(store: Store) -> None:
    lists = StoreLists(store)
    assert not lists.loaded("catalogue")
    assert lists.catalogue_item(CODE) is None
    assert lists.officer(CERTIFICATE) is None


def test_each_list_takes_its_dataset_and_answers_by_its_key(store: Store) -> None:
    lists = StoreLists(store, refresh_s=0)
    assert lists.apply(change("supervision_item", "2026-03-01T10:00:00+08:00")) == "applied"
    assert lists.apply(change("enforcement_officer", "2026-03-01T10:00:00+08:00")) == "applied"
    assert lists.apply(change("supervised_object", "2026-03-01T10:00:00+08:00")) == "applied"
    item = lists.catalogue_item("33060100100001")
    assert item is not None and item.status == "1" and item.in_force_on(date(2026, 3, 1))
    officer = lists.officer(CERTIFICATE)
    assert officer is not None
    assert (officer.officer_id, officer.agency) == ("ZF-330106-00318", "杭州市西湖区市场监督管理局")
    assert officer.valid_on(date(2026, 3, 1)) and not officer.valid_on(date(2028, 6, 1))
    found = lists.supervised_object(CREDIT_CODE)
    assert found is not None and found.object_id == "JGDX-330106-2024-000512"
    assert found.updated_time.isoformat() == "2026-03-01T10:00:00+08:00"
    assert all(lists.loaded(name) for name in ("catalogue", "officers", "objects"))


def test_the_newer_change_wins_and_a_late_older_one_is_counted(store: Store) -> None:
    lists = StoreLists(store, refresh_s=0)
    lists.apply(change("enforcement_officer", "2026-03-02T09:00:00+08:00", status="2"))
    late = change("enforcement_officer", "2026-03-01T09:00:00+08:00", status="1")
    assert lists.apply(late) == "late"
    officer = lists.officer(CERTIFICATE)
    assert officer is not None and officer.status == "2"
    # The same change again (a redelivery) is applied again, harmlessly; not late.
    again = change("enforcement_officer", "2026-03-02T09:00:00+08:00", status="2")
    assert lists.apply(again) == "applied"
    newer = change("enforcement_officer", "2026-03-03T09:00:00+08:00", status="1")
    assert lists.apply(newer) == "applied"
    officer = lists.officer(CERTIFICATE)
    assert officer is not None and officer.status == "1"
    (officers,) = [s for s in lists.status() if s.name == "officers"]
    assert (officers.rows, officers.late_ignored) == (1, 1)
    assert officers.newest is not None and officers.newest.isoformat().startswith("2026-03-03T09")
    assert officers.fed_at is not None


def test_a_delete_by_the_record_key_removes_the_certificate_and_stays_removed(
    store: Store,
) -> None:
    lists = StoreLists(store, refresh_s=0)
    lists.apply(change("enforcement_officer", "2026-03-01T09:00:00+08:00"))
    deleted = change("enforcement_officer", "2026-03-02T09:00:00+08:00", operation="delete")
    assert deleted.data == {"officer_id": "ZF-330106-00318"}  # the delete names no certificate
    assert lists.apply(deleted) == "applied"
    assert lists.officer(CERTIFICATE) is None
    assert not lists.loaded("officers")
    # An insert older than the delete, arriving after it, does not bring the row back.
    assert lists.apply(change("enforcement_officer", "2026-03-01T12:00:00+08:00")) == "late"
    assert lists.officer(CERTIFICATE) is None
    kept = lists.stored("officers", CERTIFICATE)
    assert kept is not None and kept.deleted and kept.record is None
    # A later insert does.
    assert lists.apply(change("enforcement_officer", "2026-03-03T09:00:00+08:00")) == "applied"
    assert lists.officer(CERTIFICATE) is not None


def test_a_catalogue_delete_of_an_unknown_item_keeps_a_tombstone(store: Store) -> None:
    lists = StoreLists(store, refresh_s=0)
    deleted = change("supervision_item", "2026-03-02T09:00:00+08:00", operation="delete")
    assert lists.apply(deleted) == "applied"
    assert lists.apply(change("supervision_item", "2026-03-01T09:00:00+08:00")) == "late"
    assert lists.catalogue_item("33060100100001") is None
    # An officer's delete whose officer the list never held has nothing to keep it under.
    officer_gone = change("enforcement_officer", "2026-03-02T09:00:00+08:00", operation="delete")
    assert lists.apply(officer_gone) == "absent"


def test_a_record_of_another_dataset_or_breaking_the_standard_is_refused(store: Store) -> None:
    lists = StoreLists(store)
    with pytest.raises(ReferenceListError, match=r"take supervision_item, .* not complaint"):
        lists.apply(change("complaint", "2026-03-01T09:00:00+08:00"))
    broken = change("supervision_item", "2026-03-01T09:00:00+08:00")
    broken = broken.model_copy(update={"data": dict(broken.data, status="9")})
    with pytest.raises(RecordInvalid, match="status"):
        lists.apply(broken)


def test_another_hosts_write_is_seen_once_the_refresh_is_due(store: Store) -> None:
    clock = TurnedClock()
    reader = StoreLists(store, refresh_s=5.0, clock=clock)
    writer = StoreLists(store, refresh_s=0)  # another host's feeding worker
    writer.apply(change("enforcement_officer", "2026-03-01T09:00:00+08:00", status="1"))
    officer = reader.officer(CERTIFICATE)
    assert officer is not None and officer.status == "1"
    assert reader.officer("浙A0000000000") is None  # a miss is cached too
    writer.apply(change("enforcement_officer", "2026-03-02T09:00:00+08:00", status="3"))
    other = {"certificate_number": "浙A0000000000"}
    writer.apply(change("enforcement_officer", "2026-03-02T09:00:00+08:00", **other))
    clock.now = 4.9
    cached = reader.officer(CERTIFICATE)
    assert cached is not None and cached.status == "1"  # within the interval: the cache
    assert reader.officer("浙A0000000000") is None
    clock.now = 5.0
    fresh = reader.officer(CERTIFICATE)
    assert fresh is not None and fresh.status == "3"
    assert reader.officer("浙A0000000000") is not None


def test_a_hosts_own_write_is_seen_at_once(store: Store) -> None:
    clock = TurnedClock()
    lists = StoreLists(store, refresh_s=5.0, clock=clock)  # the worker's feed and checks
    assert not lists.loaded("officers") and lists.officer(CERTIFICATE) is None
    lists.apply(change("enforcement_officer", "2026-03-01T09:00:00+08:00", status="1"))
    officer = lists.officer(CERTIFICATE)  # the clock has not moved: no refresh was due
    assert lists.loaded("officers") and officer is not None and officer.status == "1"
    lists.apply(change("enforcement_officer", "2026-03-02T09:00:00+08:00", status="3"))
    changed = lists.officer(CERTIFICATE)
    assert changed is not None and changed.status == "3"


def test_the_cache_keeps_at_most_its_capacity(store: Store) -> None:
    lists = StoreLists(store, capacity=2)
    for number in range(5):
        lists.officer(f"浙A{number:010d}")
    assert len(lists._caches["officers"].entries) == 2


def test_two_writers_at_once_leave_the_newest_change(store: Store) -> None:
    # Two workers feeding the same certificate, their changes arriving in no particular order.
    times = [f"2026-03-01T09:{minute:02d}:00+08:00" for minute in range(30)]
    random.Random(17).shuffle(times)
    changes = [
        change("enforcement_officer", at, status=str(n % 3 + 1)) for n, at in enumerate(times)
    ]
    newest = max(changes, key=lambda envelope: envelope.time)
    writers = [StoreLists(store, refresh_s=0), StoreLists(store, refresh_s=0)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda n: writers[n % 2].apply(changes[n]), range(len(changes))))
    officer = writers[0].officer(CERTIFICATE)
    assert officer is not None and officer.status == newest.data["status"]
    assert officer.updated_time == newest.time
    (officers,) = [s for s in writers[0].status() if s.name == "officers"]
    assert officers.late_ignored == outcomes.count("late") > 0
    assert officers.version == outcomes.count("applied")
