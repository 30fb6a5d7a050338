"""How fast the code checks run, as a ratio to a bare regular-expression match of the same values.

Run: ``.venv/bin/python bench/bench_checks.py [N]``. Region codes are drawn from every code in
force at the end of the table, all provinces. The reference (``re.fullmatch`` of the code's
shape) is measured in the same run, so the ratios compare across machines.
"""

from __future__ import annotations

import datetime
import random
import re
import sys
import time
from collections.abc import Callable

from standard import checks, codetables


def _credit_codes(rng: random.Random, n: int) -> list[str]:
    kinds = sorted(codetables.credit_code_kinds().kinds)
    out = []
    for _ in range(n):
        authority, kind = rng.choice(kinds)
        body = "".join(rng.choice(checks.CREDIT_CODE_ALPHABET) for _ in range(8))
        first17 = f"{authority}{kind}{rng.randrange(10**6):06d}{body}"
        first17 += checks.org_code_check_char(body)
        out.append(first17 + checks.credit_code_check_char(first17))
    return out


def _id_numbers(rng: random.Random, n: int) -> list[str]:
    start = datetime.date(1930, 1, 1).toordinal()
    out = []
    for _ in range(n):
        born = datetime.date.fromordinal(
            rng.randrange(start, datetime.date(2020, 1, 1).toordinal())
        )
        first17 = f"{rng.randrange(10**6):06d}{born:%Y%m%d}{rng.randrange(1000):03d}"
        out.append(first17 + checks.id_number_check_char(first17))
    return out


def _best_of(runs: int, check: Callable[[str], object], values: list[str]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        for value in values:
            check(value)
        best = min(best, time.perf_counter() - started)
    return best


def main(n: int = 20_000) -> None:
    rng = random.Random(20260301)
    started = time.perf_counter()
    codetables.regions()
    codetables.industries()
    codetables.credit_code_kinds()
    loaded = time.perf_counter() - started
    regions = [r.code for r in codetables.regions().all() if r.valid_to is None]
    industries = [f"{d}{rng.randrange(10, 100)}" for d in codetables.industries().divisions]
    cases: list[tuple[str, Callable[[str], object], str, list[str]]] = [
        (
            "credit-code",
            checks.check_credit_code,
            r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}",
            _credit_codes(rng, n),
        ),
        (
            "org-code",
            checks.check_org_code,
            r"[0-9A-Z]{8}[0-9X]",
            [c[8:17] for c in _credit_codes(rng, n)],
        ),
        ("id-number", checks.check_id_number, r"\d{17}[0-9X]", _id_numbers(rng, n)),
        ("region", checks.check_region, r"\d{6}", [rng.choice(regions) for _ in range(n)]),
        (
            "industry",
            checks.check_industry,
            r"[A-T]?\d{2,4}",
            [rng.choice(industries) for _ in range(n)],
        ),
    ]
    rows = len(codetables.regions().all())
    print(f"code tables loaded and validated in {loaded * 1000:.1f} ms (regions: {rows:,} rows)")
    print(f"{'kind':<12} {'checks/s':>12} {'µs/check':>10} {'regex µs':>10} {'ratio':>7}")
    for kind, check, pattern, values in cases:
        compiled = re.compile(pattern)
        spent = _best_of(5, check, values)
        reference = _best_of(5, compiled.fullmatch, values)
        print(
            f"{kind:<12} {len(values) / spent:>12,.0f} {spent / len(values) * 1e6:>10.2f} "
            f"{reference / len(values) * 1e6:>10.2f} {spent / reference:>6.1f}x"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
