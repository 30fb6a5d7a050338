"""How fast each department system's penalty cases translate, against eco-env-penalty's.

Run: ``.venv/bin/python bench/department_systems.py [--records N] [--rounds R]``. For every
system with a penalty-case message type, the first record of its valid sample is repeated into
one batch of N records (the payload's own wrapper, encoding and namespaces kept) and translated
R times; the best round gives records/s. ``vs_eco_env`` is that rate over the rate of the
eco-env-penalty reference (namespaced GB2312 XML, the engine's own example) measured in the same
run, the figure that compares across machines. Peak Python memory (tracemalloc) of one batch is
shown beside it. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import re
import time
import tracemalloc
from typing import Any

from lxml import etree

from mappings.decoding import decode_payload
from mappings.inbound import InboundTranslation
from mappings.paths import compile_xpath
from mappings.payloads import PayloadLimits, parse_xml
from mappings.system import SYSTEMS_ROOT, load_all

REFERENCE = "eco-env-penalty"
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def _valid_sample(system_id: str, message_type: str) -> bytes:
    folder = SYSTEMS_ROOT / system_id / "samples" / message_type
    return next(path for path in sorted(folder.glob("valid*"))).read_bytes()


def _json_batch(translation: InboundTranslation, sample: bytes, count: int) -> bytes | None:
    if not _DOTTED.fullmatch(translation.mapping.records):
        return None  # a computed records path: no simple place to repeat a record
    document = json.loads(sample)
    holder: Any = document
    *parents, last = translation.mapping.records.split(".")
    for key in parents:
        holder = holder[key]
    holder[last] = [copy.deepcopy(holder[last][0]) for _ in range(count)]
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def _xml_batch(translation: InboundTranslation, sample: bytes, count: int) -> bytes | None:
    # The engine's parser: samples declare GBK and carry GB18030 characters, as departments do.
    root = parse_xml(sample, PayloadLimits())
    records = compile_xpath(translation.mapping.records, translation.mapping.namespaces).nodes(root)
    first = records[0]
    parent = first.getparent()
    for record in records:
        parent.remove(record)
    for _ in range(count):
        parent.append(copy.deepcopy(first))
    encoding = decode_payload(sample, "xml").encoding
    return bytes(etree.tostring(root, xml_declaration=True, encoding=encoding))


def _measure(
    translation: InboundTranslation, payload: bytes, count: int, rounds: int
) -> dict[str, Any]:
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        result = translation.translate(payload)
        best = min(best, time.perf_counter() - started)
        if result.errors or len(result.envelopes) != count:
            raise SystemExit(f"{translation.system.id}: the batch did not translate cleanly")
    gc.collect()
    tracemalloc.start()
    translation.translate(payload)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "records_per_s": round(count / best),
        "payload_kib": round(len(payload) / 1024),
        "peak_python_mib": round(peak / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="records per batch")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; the best counts")
    arguments = parser.parse_args()
    figures: dict[str, dict[str, Any]] = {}
    for system_id, system in load_all().items():
        for message_type, translation in system.inbound.items():
            if translation.dataset.name != "penalty_case":
                continue
            sample = _valid_sample(system_id, message_type)
            build = _xml_batch if translation.mapping.format == "xml" else _json_batch
            payload = build(translation, sample, arguments.records)
            key = f"{system_id}/{message_type}"
            if payload is None:
                print(f"{key}: skipped, its records path is not a plain key path")
                continue
            figures[key] = _measure(translation, payload, arguments.records, arguments.rounds)
    reference = next(v for k, v in figures.items() if k.startswith(REFERENCE + "/"))
    print(f"{'system/message type':40} {'records/s':>10} {'vs eco-env':>10} {'KiB':>7} {'MiB':>6}")
    for key, row in figures.items():
        row["vs_eco_env"] = round(row["records_per_s"] / reference["records_per_s"], 2)
        print(
            f"{key:40} {row['records_per_s']:10d} {row['vs_eco_env']:10.2f} "
            f"{row['payload_kib']:7d} {row['peak_python_mib']:6.1f}"
        )
    print(json.dumps({"records": arguments.records, "systems": figures}, ensure_ascii=False))


if __name__ == "__main__":
    main()
