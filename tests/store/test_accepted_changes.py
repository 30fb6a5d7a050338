"""The accepted changes and the warning addressees on each backend: what one connection
remembers another sees, the window forgets, and racing writers neither lose a key nor deadlock."""

from __future__ import annotations

import threading
import time

from adapters.authorisation import StoredWarningAddressees
from adapters.repeats import StoredAcceptedChanges
from store import Store

A, B, C = "a" * 64, "b" * 64, "c" * 64


def test_the_window_forgets(store: Store) -> None:
    changes = StoredAcceptedChanges(store, window_s=0.3)
    other = StoredAcceptedChanges(Store(store.url), window_s=0.3)
    try:
        changes.remember([A, B])
        assert other.already([A, C]) == {A}  # another connection sees what was remembered
        time.sleep(0.5)
        assert other.already([A]) == set()
    finally:
        other.store.close()


def test_remembering_again_moves_a_key_to_now(store: Store) -> None:
    changes = StoredAcceptedChanges(store, window_s=0.4)
    changes.remember([A])
    time.sleep(0.3)
    changes.remember([A, A, B])  # a repeat inside one batch counts once
    time.sleep(0.2)
    assert changes.already([A, B]) == {A, B}  # A's time was renewed by the second remember


def test_more_keys_than_one_statement_binds(store: Store) -> None:
    changes = StoredAcceptedChanges(store, window_s=60)
    keys = [f"{n:064x}" for n in range(1200)]
    changes.remember(keys)
    assert changes.already([*keys, C]) == set(keys)


def test_two_connections_remembering_overlapping_batches_race_without_loss(
    store: Store,
) -> None:
    # Opposite orders of the same keys: rows locked in different orders would deadlock on
    # PostgreSQL; the store sorts them, so both writers finish and every key is there.
    url = store.url.render_as_string(hide_password=False)
    writers = [StoredAcceptedChanges(Store(url), window_s=60) for _ in range(2)]
    keys = [f"{n:064x}" for n in range(400)]
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def write(index: int) -> None:
        start.wait()
        try:
            for round_ in range(10):
                batch = keys if (index + round_) % 2 else list(reversed(keys))
                writers[index].remember(batch)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert StoredAcceptedChanges(store, window_s=60).already(keys) == set(keys)
    for writer in writers:
        writer.store.close()


def test_warning_addressees_keep_the_latest_system_of_a_warning(store: Store) -> None:
    serve = StoredWarningAddressees(store)
    poller = StoredWarningAddressees(Store(store.url))
    try:
        serve.remember({"W-1": "market-penalty", "W-2": "agri-penalty"})
        assert poller.responsible(["W-1", "W-2", "W-3"]) == {
            "W-1": "market-penalty",
            "W-2": "agri-penalty",
        }
        poller.remember({"W-1": "emergency-penalty"})  # routed again: its department changed
        assert serve.responsible(["W-1"]) == {"W-1": "emergency-penalty"}
        assert serve.responsible([]) == {}
    finally:
        poller.store.close()
