"""Whether one system's large payload delays another system's push: `jghub serve` on RabbitMQ.

    python bench/isolation.py [--records 30000] [--max-records N] [--valid] [--rounds 7]

One `jghub serve` process on the local RabbitMQ (JGHUB_BENCH_AMQP_URL), two systems:
agri-penalty pushes one large REST payload of case records; the complaint platform pushes a
valid XML batch of three complaints. Measured in the same run:
- reference: the complaint push alone, --rounds times after a warm-up: median and max ms;
- the large push: --records empty records (issue 12: all rejected), or with --valid records
  grown from agri-penalty's samples (all accepted and published); its HTTP status and seconds.
  The channel takes the shipped 10,000 records per payload, or --max-records;
- the complaint push while the large one is in flight (one at once, one 2 s later as in the
  issue, then one after another until the large one is answered): median and max ms, and their
  ratio to the push alone (`during_vs_alone_median`, `during_vs_alone_max`);
- serve's RSS before and after the large push, and its peak (VmHWM), MiB.

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path; keep it from shadowing packages.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402

from hub.simulators.traffic import SystemTraffic  # noqa: E402
from mappings import SYSTEMS_ROOT, load_system  # noqa: E402

AGRI, COMPLAINT = "agri-penalty", "complaint-platform"
SECRETS = {"JGHUB_BENCH_KEY_AGRI": "bench-agri-key", "JGHUB_BENCH_KEY_COMPLAINT": "bench-tsjb"}
COMPLAINTS = (SYSTEMS_ROOT / COMPLAINT / "samples/complaint_push/valid-complaints.xml").read_bytes()


def _load_bench_e2e() -> Any:
    """bench/e2e.py as a module: its process helpers serve here too (reused, not copied)."""
    spec = importlib.util.spec_from_file_location("bench_e2e", _HERE / "e2e.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def systems(max_records: int | None) -> dict[str, Any]:
    channel: dict[str, Any] = {"adapter": "rest_push", "message_type": "case_records"}
    if max_records is not None:
        channel["max_records"] = max_records
    unlimited = {"per_second": 1e6, "burst": 1_000_000}
    return {
        "systems": [
            {
                "id": AGRI,
                "name_zh": "省农业农村厅农业综合行政执法系统",
                "auth": {"scheme": "api_key", "key_env": "JGHUB_BENCH_KEY_AGRI"},
                "inbound": [channel],
                "outbound": {"adapter": "outbox", "render": {"penalty_case": "cloudevent"}},
                "routes": ["penalty_case.#"],
                "rate_limit": unlimited,
            },
            {
                "id": COMPLAINT,
                "name_zh": "统一投诉举报平台",
                "auth": {"scheme": "api_key", "key_env": "JGHUB_BENCH_KEY_COMPLAINT"},
                "inbound": [{"adapter": "xml_push", "message_type": "complaint_push"}],
                "outbound": {"adapter": "outbox", "render": {"complaint": "cloudevent"}},
                "routes": ["complaint.#"],
                "rate_limit": unlimited,
            },
        ]
    }


def large_payload(records: int, valid: bool) -> bytes:
    if valid:
        return (
            SystemTraffic(load_system(SYSTEMS_ROOT / AGRI), "case_records", seed=1)
            .batch(records)
            .body
        )
    return json.dumps({"batchNo": "2026021500004", "records": [{}] * records}).encode()


def complaint(base: str) -> float:
    """One complaint push, accepted whole; its seconds."""
    started = time.perf_counter()
    answer = httpx.post(
        f"{base}/systems/{COMPLAINT}/xml/complaint_push",
        content=COMPLAINTS,
        headers={"X-Api-Key": SECRETS["JGHUB_BENCH_KEY_COMPLAINT"]},
        timeout=120,
    )
    took = time.perf_counter() - started
    if answer.status_code != 200 or "<failed>0</failed>" not in answer.text:
        raise RuntimeError(f"the complaint push was not accepted: {answer.text[:300]}")
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=30_000, help="records of the large push")
    parser.add_argument("--max-records", type=int, default=None, help="the channel's cap")
    parser.add_argument("--valid", action="store_true", help="valid records, not empty ones")
    parser.add_argument("--rounds", type=int, default=7, help="complaint pushes alone")
    options = parser.parse_args(argv)
    e2e = _load_bench_e2e()
    body = large_payload(options.records, options.valid)
    headers = {"X-Api-Key": SECRETS["JGHUB_BENCH_KEY_AGRI"], "Content-Type": "application/json"}
    figures: dict[str, Any] = {
        "records": options.records,
        "valid": options.valid,
        "bytes": len(body),
        "max_records": options.max_records or 10_000,
    }
    with (
        tempfile.TemporaryDirectory() as folder,
        e2e.hub_processes(
            Path(folder), "", workers=0, document=systems(options.max_records), secrets=SECRETS
        ) as (base, pids),
    ):
        for _ in range(3):
            complaint(base)  # warm-up: lazily loaded paths, the publisher's connection
        alone = [complaint(base) for _ in range(options.rounds)]
        rss_before = e2e.memory_kib(pids["serve"])[0]
        answered: list[tuple[int, float]] = []

        def push_large() -> None:
            url = f"{base}/systems/{AGRI}/rest/case_records"
            answer = httpx.post(url, content=body, headers=headers, timeout=300)
            answered.append((answer.status_code, time.perf_counter() - started))

        large = threading.Thread(target=push_large)
        started = time.perf_counter()
        large.start()
        during = [complaint(base)]
        time.sleep(max(0.0, 2.0 - (time.perf_counter() - started)))
        during.append(complaint(base))
        while large.is_alive():
            during.append(complaint(base))
        large.join()
        rss_after, peak = e2e.memory_kib(pids["serve"])
    status, seconds = answered[0]
    figures.update(
        alone_median_ms=round(statistics.median(alone) * 1000, 1),
        alone_max_ms=round(max(alone) * 1000, 1),
        large_status=status,
        large_s=round(seconds, 2),
        during_pushes=len(during),
        during_median_ms=round(statistics.median(during) * 1000, 1),
        during_max_ms=round(max(during) * 1000, 1),
        during_vs_alone_median=round(statistics.median(during) / statistics.median(alone), 1),
        during_vs_alone_max=round(max(during) / statistics.median(alone), 1),
        serve_rss_before_mib=round(rss_before / 1024),
        serve_rss_after_mib=round(rss_after / 1024),
        serve_peak_mib=round(peak / 1024),
    )
    print(
        f"complaint push alone      median {figures['alone_median_ms']} ms, "
        f"max {figures['alone_max_ms']} ms"
    )
    print(
        f"large push ({options.records} {'valid' if options.valid else 'empty'} records, "
        f"{len(body)} bytes): HTTP {status} in {seconds:.2f} s"
    )
    print(
        f"complaint push during it  {len(during)} pushes, median {figures['during_median_ms']} ms "
        f"(x{figures['during_vs_alone_median']}), max {figures['during_max_ms']} ms "
        f"(x{figures['during_vs_alone_max']})"
    )
    print(
        f"serve RSS                 {figures['serve_rss_before_mib']} -> "
        f"{figures['serve_rss_after_mib']} MiB, peak {figures['serve_peak_mib']} MiB"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
