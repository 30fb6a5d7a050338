"""What the cross-checks add per record on the hot path, as a ratio to translating the record.

    python bench/cross_checks.py [--records 6000] [--officers 20000] [--rounds 5]

Inspections (the shipped hrss-penalty page, its items copied with unique numbers, 500 a page)
are translated (`SystemMappings.translate`, the reference), then judged by every rule with
every list loaded (a catalogue of 5,000 items, --officers certificates, 50,000 supervised
objects; in memory, as `InMemoryLists`): `rule_refusals`, what ingress calls on each payload.
Every record is found right, so each rule runs to its end. The best of --rounds rounds of
each, interleaved. Prints one line per figure, then one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path; keep it from shadowing packages.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from adapters.crosschecks import rule_refusals  # noqa: E402
from mappings import SYSTEMS_ROOT, load_system  # noqa: E402
from reference.lists import CatalogueEntry, InMemoryLists, ObjectEntry, OfficerEntry  # noqa: E402
from reference.rulebook import CrossChecks, Rulebook  # noqa: E402

SYSTEM, MESSAGE_TYPE = "hrss-penalty", "inspection_feed"
PAGE = 500
UPDATED = datetime(2026, 3, 1, tzinfo=UTC)


def pages(records: int) -> list[bytes]:
    """Pages of `records` distinct inspections in all, copies of the sample's live items."""
    sample = SYSTEMS_ROOT / SYSTEM / "samples" / MESSAGE_TYPE / "valid-page.json"
    document = json.loads(sample.read_bytes())
    models = [i for i in document["items"] if i["change_type"] != "deleted"]
    made: list[dict[str, Any]] = []
    for n in range(records):
        item = copy.deepcopy(models[n % len(models)])
        item["id"] = str(n)
        item["check_no"] = f"JC{n:018d}"
        made.append(item)
    return [
        json.dumps({**document, "items": made[i : i + PAGE]}, ensure_ascii=False).encode()
        for i in range(0, records, PAGE)
    ]


def lists_for(envelopes: list[Any], officers: int) -> InMemoryLists:
    """Lists that hold every code the records name, among many others."""
    lists = InMemoryLists()
    codes = {e.data["catalogue_code"] for e in envelopes} | {f"3300{n:010d}" for n in range(5000)}
    for code in codes:
        lists.catalogue[code] = CatalogueEntry(
            code, "监管事项", "1", date(2020, 1, 1), None, UPDATED
        )
    numbers = {i["certificate_number"] for e in envelopes for i in e.data["inspectors"]}
    for number in numbers | {f"ZJ{n:011d}" for n in range(officers)}:
        lists.officers[number] = OfficerEntry(
            number, f"o-{number}", "监察员", "人社局", "1", date(2020, 1, 1), date(2030, 12, 31),
            UPDATED,
        )  # fmt: skip
    parties = {e.data["party"]["certificate_code"] for e in envelopes}
    for code in parties | {f"91330000{n:010d}" for n in range(50_000)}:
        lists.objects[code] = ObjectEntry(f"obj-{code}", code, "对象", "330000", True, UPDATED)
    return lists


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=6000)
    parser.add_argument("--officers", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    mappings = load_system(SYSTEMS_ROOT / SYSTEM)
    payloads = pages(options.records)
    translations = [mappings.translate(MESSAGE_TYPE, body) for body in payloads]
    assert all(not t.errors for t in translations)
    envelopes = [e for t in translations for e in t.envelopes]
    checks = CrossChecks(Rulebook(), lists_for(envelopes, options.officers))
    batches = [list(enumerate(t.envelopes)) for t in translations]
    translate_s, check_s = float("inf"), float("inf")
    for _ in range(options.rounds):
        started = time.perf_counter()
        for body in payloads:
            mappings.translate(MESSAGE_TYPE, body)
        translate_s = min(translate_s, time.perf_counter() - started)
        started = time.perf_counter()
        for batch in batches:
            refusals, outcome = rule_refusals(checks, SYSTEM, MESSAGE_TYPE, batch)
            assert not refusals and not outcome.warnings and not outcome.unchecked
        check_s = min(check_s, time.perf_counter() - started)
    count = len(envelopes)
    figures = {
        "records": count,
        "translate_us_per_record": round(translate_s / count * 1e6, 2),
        "checks_us_per_record": round(check_s / count * 1e6, 2),
        "checks_to_translate": round(check_s / translate_s, 4),
    }
    print(f"translate: {figures['translate_us_per_record']} µs/record")
    print(f"cross-checks (4 rules, every list loaded): {figures['checks_us_per_record']} µs/record")
    print(f"cross-checks / translate: {figures['checks_to_translate']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
