"""What letting each signature through once costs: the replay cache beside the checks it joins.

    python bench/signatures.py [--checks 5000]

Measures, in the same run, `Gatekeeper.verify_signature` with a fresh signature each time
(requestTime parsed, clock window, md5, constant-time compare, then the replay cache):
- reference: with a replay cache that remembers nothing (the check as it was before the cache),
  checks per second;
- with the hub's `StoredReplayCache` on the embedded store (one SQLite write transaction in
  WAL mode per check),
  checks per second, the time each adds, and the ratio to the reference;
- the replay cache alone: `first_use` calls per second in one process, and in two processes at
  once on one file (as two serve processes share it), summed.

Prints one line per figure, then, as the last line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path; keep it from shadowing packages.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from adapters.replay_cache import ReplayCache, StoredReplayCache  # noqa: E402
from adapters.security import Gatekeeper, RequestSigner  # noqa: E402
from store import Store, store_url  # noqa: E402
from systems import AuthConfig, SystemConfig  # noqa: E402

SECRET, APP_KEY = "bench-secret", "bench-gw"


class Forgetful(ReplayCache):
    """The reference: a cache that remembers nothing, so every signature is a first use."""

    def first_use(self, key: str, expires_at: float) -> bool:
        return True

    def remembered(self) -> int:
        return 0

    def close(self) -> None:
        pass


def signing_system() -> SystemConfig:
    os.environ["JGHUB_BENCH_SIGN_SECRET"] = SECRET
    return SystemConfig(
        id="gateway",
        name_zh="网关",
        auth=AuthConfig(
            scheme="signed_app_key", key_env="JGHUB_BENCH_SIGN_SECRET", app_key=APP_KEY
        ),
    )


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def measure_checks(replays: ReplayCache, checks: int) -> float:
    """Signature checks per second through a gatekeeper using `replays`."""
    gate = Gatekeeper([signing_system()], default_max_body_bytes=1 << 20, replays=replays)
    signed = [RequestSigner(APP_KEY, SECRET).sign() for _ in range(checks)]
    started = time.perf_counter()
    for request_time, sign in signed:
        gate.verify_signature(APP_KEY, request_time, sign, where="body")
    return per_second(checks, time.perf_counter() - started)


def first_uses(folder: str, prefix: str, count: int, start_at: float) -> float:
    """`count` first uses of distinct keys from `start_at` on; the seconds they took."""
    cache = StoredReplayCache(Store.open(store_url(None, Path(folder))))
    try:
        time.sleep(max(0.0, start_at - time.time()))
        expires = time.time() + 3600
        started = time.perf_counter()
        for n in range(count):
            assert cache.first_use(f"{prefix} {n}", expires)
        return time.perf_counter() - started
    finally:
        cache.store.close()


def measure_cache(folder: Path, count: int) -> tuple[float, float]:
    """(first_use/s in one process, summed first_use/s of two processes on one file)."""
    alone_folder = str(folder / "alone")
    alone = per_second(count, first_uses(alone_folder, "alone", count, 0.0))
    shared = str(folder / "shared")
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # both start together, once both are up
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        took = list(pool.map(first_uses, [shared] * 2, ["a", "b"], [count] * 2, [start_at] * 2))
    both = per_second(2 * count, max(took))
    return alone, both


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=5000, help="calls per measurement")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        reference = measure_checks(Forgetful(), options.checks)
        cache = StoredReplayCache(Store.open(store_url(None, Path(folder))))
        try:
            cached = measure_checks(cache, options.checks)
        finally:
            cache.store.close()
        alone, both = measure_cache(Path(folder), options.checks)
    added_us = 1e6 / cached - 1e6 / reference
    print(f"reference: signature checks without a cache {reference:,.0f}/s")
    print(
        f"with the SQLite replay cache {cached:,.0f}/s ({cached / reference:.3f} × the "
        f"reference): {added_us:.0f} µs more per signed request"
    )
    print(f"replay cache first_use: {alone:,.0f}/s in one process, {both:,.0f}/s summed in two")
    figures = {
        "checks": options.checks,
        "reference_checks_per_s": round(reference),
        "cached_checks_per_s": round(cached),
        "cached_vs_reference": round(cached / reference, 3),
        "added_us_per_check": round(added_us, 1),
        "first_use_per_s_one_process": round(alone),
        "first_use_per_s_two_processes": round(both),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
