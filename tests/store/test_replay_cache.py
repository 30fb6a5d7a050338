"""The replay cache on each backend: a key is a first use once, across connections and
processes, until its expiry."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from adapters.replay_cache import StoredReplayCache
from store import Store

KEYS = [f"gateway {n:032x}" for n in range(300)]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_key_is_a_first_use_once_until_it_expires(store: Store) -> None:
    clock = FakeClock(1000.0)
    cache = StoredReplayCache(store, clock=clock)
    assert cache.first_use("a", expires_at=1010.0) is True
    assert cache.first_use("a", expires_at=1010.0) is False
    assert cache.first_use("b", expires_at=1005.0) is True
    assert cache.remembered() == 2
    clock.now = 1010.0  # "a" is still in its window at its expiry; "b" is past it
    assert cache.first_use("a", expires_at=1020.0) is False
    assert cache.remembered() == 1  # the use above dropped "b"
    clock.now = 1010.5
    assert cache.first_use("a", expires_at=1020.0) is True  # forgotten: a first use again
    cache.close()
    cache.close()  # idempotent


def test_two_connections_racing_for_the_same_keys_each_win_a_key_once(store_url: str) -> None:
    # Two engines: two pools, so the two threads write through two database connections.
    Store.open(store_url, migrate=True)
    caches = [StoredReplayCache(Store(store_url)) for _ in range(2)]
    start = threading.Barrier(2)
    won: list[list[str]] = [[], []]

    def race(index: int) -> None:
        start.wait()
        won[index] = [key for key in KEYS if caches[index].first_use(key, expires_at=4e9)]

    threads = [threading.Thread(target=race, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won[0] + won[1]) == sorted(KEYS)  # each key won exactly once
    for cache in caches:
        cache.store.close()


def _first_uses(url: str, seed: int, start_at: float) -> list[str]:
    cache = StoredReplayCache(Store.open(url))
    order = list(KEYS)
    random.Random(seed).shuffle(order)
    # Every process starts at the same moment, so that their uses of one key overlap.
    time.sleep(max(0.0, start_at - time.time()))
    try:
        return [key for key in order if cache.first_use(key, expires_at=4e9)]
    finally:
        cache.store.close()


def test_processes_sharing_the_store_each_get_a_key_at_most_once(store: Store) -> None:
    url = store.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        firsts = list(pool.map(_first_uses, [url] * 4, range(4), [start_at] * 4))
    won = [key for keys in firsts for key in keys]
    assert sorted(won) == sorted(KEYS)  # every key was a first use exactly once, in one process
