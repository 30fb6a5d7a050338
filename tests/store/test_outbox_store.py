"""The outbox on each backend: oldest first under a lease, acknowledged by ids or by cursor,
once per idempotency key, shared by every store handle (serve), concurrent pulls never hand out
one message twice, and an outbox file of hubs before the store is taken in once."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from store_support import fresh_store_url

from adapters.protocols.outbox import OUTBOX_FILE, StoredOutbox, open_outbox
from store import Store


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def put(outbox: StoredOutbox, system: str, n: int, *, key: str | None = None) -> bool:
    return outbox.put(
        system,
        message_id=f"m{n}",
        idempotency_key=key or f"k{n}",
        body=f'{{"n": {n}}}'.encode(),
        content_type="application/json",
        dataset="penalty_case",
        subject=f"case-{n}",
    )


def test_pull_leases_oldest_first_and_ack_removes(store: Store) -> None:
    outbox = StoredOutbox(store, clock=FakeClock())
    for n in range(5):
        assert put(outbox, "a", n)
    put(outbox, "b", 99)
    lease = outbox.pull("a", limit=3, lease_s=30)
    assert [item.message_id for item in lease.items] == ["m0", "m1", "m2"]
    assert [item.body for item in lease.items] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert lease.items[0].subject == "case-0" and lease.items[0].deliveries == 1
    assert lease.cursor == lease.items[-1].seq
    # Leased messages are not handed to a second puller; the rest are.
    assert [item.message_id for item in outbox.pull("a", limit=10, lease_s=30).items] == [
        "m3",
        "m4",
    ]
    assert outbox.pull("a", limit=10, lease_s=30).items == []
    assert outbox.ack("a", ids=["m0", "m2", "nonexistent"]) == 2
    assert outbox.ack("a", ids=["m0"]) == 0  # already acknowledged
    assert outbox.ack("b", ids=["m1"]) == 0  # another system's ids are not this one's
    assert outbox.pending("a") == 3 and outbox.pending("b") == 1


def test_what_is_not_acknowledged_comes_back_after_the_lease(store: Store) -> None:
    clock = FakeClock()
    outbox = StoredOutbox(store, clock=clock)
    for n in range(3):
        put(outbox, "a", n)
    first = outbox.pull("a", limit=10, lease_s=30)
    outbox.ack("a", ids=["m1"])
    clock.now += 29.9
    assert outbox.pull("a", limit=10, lease_s=30).items == []
    clock.now += 0.2
    again = outbox.pull("a", limit=10, lease_s=30)
    assert [item.message_id for item in again.items] == ["m0", "m2"]
    assert [item.deliveries for item in again.items] == [2, 2]
    assert again.lease_id != first.lease_id
    # The old lease's cursor no longer acknowledges what was handed out again.
    assert outbox.ack("a", lease_id=first.lease_id, cursor=first.cursor) == 0
    assert outbox.ack("a", lease_id=again.lease_id, cursor=again.items[0].seq) == 1
    assert outbox.pending("a") == 1


def test_a_key_is_kept_once_while_retained_and_forgotten_after(store: Store) -> None:
    clock = FakeClock()
    outbox = StoredOutbox(store, retention_s=3600, clock=clock)
    assert put(outbox, "a", 1, key="same")
    assert not put(outbox, "a", 2, key="same")
    assert put(outbox, "b", 3, key="same")  # keys are per system
    lease = outbox.pull("a", limit=10, lease_s=30)
    outbox.ack("a", ids=[item.message_id for item in lease.items])
    clock.now += 1800
    # A replay after acknowledgement, within the retention, is still recognised.
    assert not put(outbox, "a", 4, key="same")
    assert outbox.pending("a") == 0
    clock.now += 3600  # past the retention: the next put prunes the acknowledged row
    assert put(outbox, "a", 5, key="other")
    assert put(outbox, "a", 6, key="same")
    assert [i.message_id for i in outbox.pull("a", limit=10, lease_s=30).items] == ["m5", "m6"]


def test_cursor_ack_needs_its_lease(store: Store) -> None:
    outbox = StoredOutbox(store)
    with pytest.raises(ValueError, match="both lease_id and cursor"):
        outbox.ack("a", cursor=3)
    with pytest.raises(ValueError, match="at least 1"):
        outbox.pull("a", limit=0, lease_s=1)


def test_a_lease_taken_through_one_serve_is_acknowledged_through_another(store: Store) -> None:
    # Two engines on one database: what two serve processes (on two hosts) hold.
    one, other = StoredOutbox(store), StoredOutbox(Store(store.url))
    for n in range(4):
        put(one, "a", n)
    lease = one.pull("a", limit=3, lease_s=300)
    assert other.pull("a", limit=10, lease_s=300).items[0].message_id == "m3"
    assert other.ack("a", lease_id=lease.lease_id, cursor=lease.items[1].seq) == 2
    assert other.ack("a", ids=["m2"]) == 1
    assert one.pending("a") == other.pending("a") == 1  # m3, leased through `other`
    other.store.close()


def _pull_until_empty(url: str) -> list[str]:
    """A serve process: pull 5 at a time until nothing is left, acknowledging every other
    lease by cursor (the rest stay leased: nobody else may have them meanwhile)."""
    store = Store(url)
    outbox = StoredOutbox(store)
    got: list[str] = []
    try:
        while True:
            lease = outbox.pull("a", limit=5, lease_s=3600)
            if not lease.items:
                return got
            got += [item.message_id for item in lease.items]
            if len(got) % 2:
                outbox.ack("a", lease_id=lease.lease_id, cursor=lease.cursor)
    finally:
        store.close()


def test_pulls_from_several_processes_never_hand_out_a_message_twice(store: Store) -> None:
    outbox = StoredOutbox(store)
    for n in range(300):
        put(outbox, "a", n)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        taken = list(pool.map(_pull_until_empty, [str(store.url.render_as_string(False))] * 4))
    everything = [message_id for got in taken for message_id in got]
    assert len(everything) == len(set(everything)) == 300
    for got in taken:  # each process got its messages oldest first
        assert got == sorted(got, key=lambda message_id: int(message_id[1:]))


@pytest.fixture
def postgresql_store(tmp_path: Path) -> Iterator[Store]:
    """PostgreSQL only: SQLite serialises pulls with its write lock, SKIP LOCKED is PostgreSQL's
    (the concurrent-pull test above covers both)."""
    with fresh_store_url("postgresql", tmp_path) as url:
        yield Store.open(url, migrate=True)


def test_a_pull_skips_the_rows_another_pull_holds_without_waiting(
    postgresql_store: Store,
) -> None:
    store = postgresql_store
    outbox = StoredOutbox(store)
    for n in range(6):
        put(outbox, "a", n)
    other = StoredOutbox(Store(store.url))
    arguments = {"b_system": "a", "b_limit": 3, "b_lease_id": "held", "b_until": 1e12}
    with store.begin() as db:
        # A pull that has chosen and locked m0..m2 and not committed yet.
        held = db.execute(outbox._lease, {**arguments, "b_now": 1e9}).all()
        assert sorted(row.message_id for row in held) == ["m0", "m1", "m2"]
        answers: list[list[str]] = []
        puller = threading.Thread(
            target=lambda: answers.append(
                [i.message_id for i in other.pull("a", limit=10, lease_s=30).items]
            )
        )
        puller.start()
        puller.join(timeout=60)  # it would hang here if it waited for the held rows
        assert not puller.is_alive()
        assert answers == [["m3", "m4", "m5"]]
        db.rollback()  # that pull fails: its rows are free again
    assert [i.message_id for i in other.pull("a", limit=10, lease_s=30).items] == [
        "m0",
        "m1",
        "m2",
    ]
    other.store.close()


OLD_SCHEMA = """
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, system TEXT NOT NULL, message_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, content_type TEXT NOT NULL, body BLOB NOT NULL,
    dataset TEXT, subject TEXT, created_at REAL NOT NULL, deliveries INTEGER NOT NULL DEFAULT 0,
    lease_id TEXT, lease_until REAL, acked_at REAL, UNIQUE (system, idempotency_key)
);
"""


def test_an_outbox_file_from_before_the_store_is_taken_in_once(
    store: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    now = clock.now
    old = sqlite3.connect(tmp_path / OUTBOX_FILE)
    old.executescript(OLD_SCHEMA)
    rows = [
        # (message, key, deliveries, lease_id, lease_until, acked_at)
        ("m-old-acked", "k1", 1, None, None, now - 30 * 86400),  # past the retention: dropped
        ("m-leased", "k2", 2, "lease-1", now + 60, None),
        ("m-acked", "k3", 1, None, None, now - 3600),
        ("m-pending", "k4", 0, None, None, None),
        ("m-already", "k5", 0, None, None, None),
    ]
    for message_id, key, deliveries, lease_id, lease_until, acked_at in rows:
        old.execute(
            "INSERT INTO outbox (system, message_id, idempotency_key, content_type, body, "
            "created_at, deliveries, lease_id, lease_until, acked_at) "
            "VALUES ('a', ?, ?, 'text/plain', ?, ?, ?, ?, ?, ?)",
            (message_id, key, message_id.encode(), now - 7200, deliveries, lease_id, lease_until,
             acked_at),
        )  # fmt: skip
    old.commit()
    old.close()
    outbox = StoredOutbox(store, clock=clock)
    assert put(outbox, "a", 0, key="k5")  # the store had this key first: it keeps its own
    assert outbox.adopt(tmp_path / OUTBOX_FILE) == 4
    assert not (tmp_path / OUTBOX_FILE).exists()
    assert (tmp_path / f"{OUTBOX_FILE}.adopted").is_file()
    assert outbox.pending("a") == 3  # m0, m-leased, m-pending
    lease = outbox.pull("a", limit=10, lease_s=30)
    # In the old order, after what the store had; the old lease dropped: handed out again.
    assert [(i.message_id, i.deliveries) for i in lease.items] == [
        ("m0", 1),
        ("m-leased", 3),
        ("m-pending", 1),
    ]
    assert lease.items[1].body == b"m-leased"
    assert not put(outbox, "a", 9, key="k3")  # the acknowledged key within retention is known
    assert put(outbox, "a", 9, key="k1")  # the one past retention is not
    assert open_outbox(store, tmp_path).adopt(tmp_path / OUTBOX_FILE) == 0  # once
