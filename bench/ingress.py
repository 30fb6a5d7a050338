"""Inbound throughput: the mapping alone, then through Ingress and over HTTP, on both buses.

    python bench/ingress.py [--records 10000] [--batch 500] [--requests 300] [--no-rabbitmq]

Measures, in the same run and on the same payloads (grassroots-platform events, one batch of
--batch records per request, each record unique):
- translate: `SystemMappings.translate` alone, records/s (the reference);
- ingress: `Ingress.accept` (translate, envelope to AMQP, `publish_many` with confirms),
  records/s on the embedded bus and on RabbitMQ, and its ratio to translate;
- http batch: REST push of the batches to `jghub serve` running in its own process
  (gatekeeper, signature, ingress, JSON answer per record) from one client, records/s and its
  ratio to ingress on the same bus;
- http single: --requests pushes of one record each, requests/s and latency p50/p99 (ms);
- memory: peak Python allocations (tracemalloc) accepting one batch of --memory-records.

Prints one line per figure, then one JSON object with every figure as the last line.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path; keep it from shadowing packages.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402

import bus  # noqa: E402
from adapters.ingress import Ingress  # noqa: E402
from adapters.security import RequestSigner  # noqa: E402
from bus import Target, Topology  # noqa: E402
from hub.systems import parse_systems  # noqa: E402
from mappings import SYSTEMS_ROOT, load_system  # noqa: E402

RABBITMQ_URL = os.environ.get("JGHUB_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
SYSTEM = "grassroots-platform"
SECRET_ENV, SECRET, APP_KEY = "JGHUB_BENCH_SECRET", "bench-secret", "jczl-hub-01"
PUSH = f"/systems/{SYSTEM}/rest/event_report"


def events(count: int, start: int = 0) -> list[dict[str, Any]]:
    """`count` distinct valid events, copies of the shipped sample's first event."""
    sample = json.loads(
        (SYSTEMS_ROOT / SYSTEM / "samples/event_report/valid-events.json").read_text()
    )
    model = sample["data"]["events"][0]
    made = []
    for n in range(start, start + count):
        event = copy.deepcopy(model)
        event["eventId"] = f"SJ330106{n:012d}"
        event["updateTime"] = model["updateTime"] + n
        made.append(event)
    return made


def payload(batch: list[dict[str, Any]], *, sign: bool = False) -> bytes:
    document: dict[str, Any] = {"batchNo": "2026030200017", "data": {"events": batch}}
    if sign:
        # A fresh signature per payload: the hub lets each one through once.
        stamp, signature = RequestSigner(APP_KEY, SECRET).sign()
        document |= {"appKey": APP_KEY, "requestTime": stamp, "sign": signature}
    return json.dumps(document, ensure_ascii=False).encode()


def measure_translate(payloads: list[bytes], records: int) -> float:
    mappings = load_system(SYSTEMS_ROOT / SYSTEM)
    started = time.perf_counter()
    for body in payloads:
        result = mappings.translate("event_report", body)
        assert not result.errors, result.errors[:1]
    return records / (time.perf_counter() - started)


def topology(namespace: str) -> Topology:
    return Topology(namespace=namespace, targets=[Target(name="sink", routes=["#"])])


def measure_ingress(url: str, payloads: list[bytes], records: int) -> float:
    mappings = {SYSTEM: load_system(SYSTEMS_ROOT / SYSTEM)}
    declared = topology(f"bench{uuid.uuid4().hex[:8]}")
    with bus.connect(url) as broker:
        broker.declare(declared)
        try:
            ingress = Ingress(broker, mappings)
            started = time.perf_counter()
            for body in payloads:
                assert ingress.accept(SYSTEM, "event_report", body).accepted
            return records / (time.perf_counter() - started)
        finally:
            broker.delete_topology(declared)


def measure_memory(records: int) -> float:
    """MiB of peak Python allocations accepting one batch of `records` on the embedded bus."""
    mappings = {SYSTEM: load_system(SYSTEMS_ROOT / SYSTEM)}
    body = payload(events(records))
    with tempfile.TemporaryDirectory() as folder, bus.connect(f"sqlite:///{folder}/b.db") as broker:
        broker.declare(topology("benchmem"))
        ingress = Ingress(broker, mappings)
        tracemalloc.start()
        result = ingress.accept(SYSTEM, "event_report", body)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert result.accepted == records
    return peak / 2**20


SYSTEMS = {
    "systems": [
        {
            "id": SYSTEM,
            "name_zh": "基层治理四平台",
            "auth": {"scheme": "signed_app_key", "key_env": SECRET_ENV, "app_key": APP_KEY},
            "inbound": [{"adapter": "rest_push", "message_type": "event_report"}],
            "outbound": {"adapter": "outbox"},
            "routes": ["#"],
            "rate_limit": {"per_second": 1e6, "burst": 1_000_000},
        }
    ]
}


@contextmanager
def serving(url: str, data_dir: Path) -> Iterator[str]:
    """`jghub serve` in a process of its own (as deployed), on a free port."""
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    systems_file = data_dir / "systems.yaml"
    systems_file.write_text(json.dumps(SYSTEMS, ensure_ascii=False), encoding="utf-8")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    amqp = url if url.startswith("amqp") else ""
    env = {
        **os.environ,
        SECRET_ENV: SECRET,
        "JGHUB_SYSTEMS_FILE": str(systems_file),
        "JGHUB_DATA_DIR": str(data_dir / "var"),
        "JGHUB_NAMESPACE": namespace,
        "JGHUB_AMQP_URL": amqp,
    }
    command = [sys.executable, "-m", "hub.cli", "serve", "--port", str(port)]
    server = subprocess.Popen([*command, "--log-level", "warning"], env=env, cwd=_HERE.parent)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("jghub serve did not become ready")
            time.sleep(0.05)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        config = parse_systems(SYSTEMS)
        with bus.connect(amqp or f"sqlite:///{data_dir / 'var' / 'bus.sqlite3'}") as broker:
            broker.declare(config.topology(namespace))
            broker.delete_topology(config.topology(namespace))


def measure_http(
    url: str, batches: list[list[dict[str, Any]]], records: int, requests: int
) -> tuple[float, float, float, float]:
    """(batch records/s, single requests/s, single p50 ms, single p99 ms)."""
    with (
        tempfile.TemporaryDirectory() as folder,
        serving(url, Path(folder)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        bodies = [payload(batch, sign=True) for batch in batches]
        started = time.perf_counter()
        for body in bodies:
            response = client.post(PUSH, content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 200, response.text[:300]
        batch_rate = records / (time.perf_counter() - started)
        singles = [payload([event], sign=True) for event in events(requests, start=10**9)]
        latencies = []
        started = time.perf_counter()
        for body in singles:
            sent = time.perf_counter()
            response = client.post(PUSH, content=body, headers={"Content-Type": "application/json"})
            latencies.append(time.perf_counter() - sent)
            assert response.status_code == 200, response.text[:300]
        single_rate = requests / (time.perf_counter() - started)
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return batch_rate, single_rate, p50, p99


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000, help="records per measurement")
    parser.add_argument("--batch", type=int, default=500, help="records per pushed batch")
    parser.add_argument("--requests", type=int, default=300, help="one-record pushes")
    parser.add_argument(
        "--memory-records",
        type=int,
        default=5000,
        help="records of the one batch whose memory is measured (the system allows 8 MiB)",
    )
    parser.add_argument("--no-rabbitmq", action="store_true", help="embedded bus only")
    options = parser.parse_args(argv)
    all_events = events(options.records)
    batches = [all_events[i : i + options.batch] for i in range(0, options.records, options.batch)]
    payloads = [payload(batch) for batch in batches]
    figures: dict[str, float] = {}
    figures["translate_records_per_s"] = measure_translate(payloads, options.records)
    print(f"translate alone           {figures['translate_records_per_s']:10.0f} records/s")
    buses = {"embedded": None} | ({} if options.no_rabbitmq else {"rabbitmq": RABBITMQ_URL})
    for name, url in buses.items():
        with tempfile.TemporaryDirectory() as folder:
            target = url or f"sqlite:///{folder}/bus.sqlite3"
            rate = measure_ingress(target, payloads, options.records)
            figures[f"ingress_{name}_records_per_s"] = rate
            figures[f"ingress_{name}_ratio_to_translate"] = (
                rate / figures["translate_records_per_s"]
            )
            print(
                f"ingress, {name:9}         {rate:10.0f} records/s "
                f"({rate / figures['translate_records_per_s']:.2f} of translate alone)"
            )
            batch_rate, single_rate, p50, p99 = measure_http(
                target, batches, options.records, options.requests
            )
        figures[f"http_batch_{name}_records_per_s"] = batch_rate
        figures[f"http_batch_{name}_ratio_to_ingress"] = batch_rate / rate
        figures[f"http_single_{name}_requests_per_s"] = single_rate
        figures[f"http_single_{name}_p50_ms"] = p50
        figures[f"http_single_{name}_p99_ms"] = p99
        print(
            f"http batch, {name:9}      {batch_rate:10.0f} records/s "
            f"({batch_rate / rate:.2f} of ingress)"
        )
        print(
            f"http single, {name:9}     {single_rate:10.0f} requests/s "
            f"p50 {p50:.1f} ms p99 {p99:.1f} ms"
        )
    figures["ingress_peak_mib_per_batch"] = measure_memory(options.memory_records)
    print(
        f"memory, one batch of {options.memory_records}: "
        f"{figures['ingress_peak_mib_per_batch']:.1f} MiB peak allocations"
    )
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
