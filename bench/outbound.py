"""Outbound delivery: the worker (bus → render → REST sender → ack) against a plain HTTP loop.

    python bench/outbound.py [--messages 2000] [--no-rabbitmq] [--concurrency 1,8]
                             [--latency-ms 0] [--batch 100]
    python bench/outbound.py --worker-cpu 5000 [--batch 100] [--rounds 3]

Measures, in the same run, against one loopback HTTP target answering 200 (at once, or after
--latency-ms, as a real target's processing and network would):
- reference: render each envelope with the target's mapping and POST it with one httpx client,
  one after the other (the work a delivery has to do, without a bus);
- worker on the embedded bus: the envelopes published with `publish_many`, then a `Worker`
  started; timed from its start until the target has received every message;
- the same on RabbitMQ (skipped when it does not answer, or with --no-rabbitmq);
- each worker run once per --concurrency value (the target's `outbound.concurrency`);
- with --batch N, penalty cases to national's gateway, on each bus: one request per record
  (concurrency 8) and then `outbound.batch` {max_records: N, max_wait_ms: 50} to its batch
  upload, which answers each record's result; `batch_vs_single` is the second's rate over the
  first's (the same records, the same sink, the same run);
- with --batch N, a lone record's latency (--lone records published one at a time to a running
  worker, each once the one before it arrived; from publish to the target reading it), p50
  and p99, without and with `outbound.batch`; `lone_batch_vs_single_p99` is the second's p99
  over the first's (a batch that waited out max_wait_ms for records that never come would
  add 50 ms to each).

With --worker-cpu N, only the worker's CPU a record (issue #18's backfill: on two cores every
µs a record costs is throughput): N penalty cases published to RabbitMQ, then a `Worker`
delivering them to national in batches of --batch; this process's CPU time (every thread) from
the worker's start until the target has them all, less the target's own handlers' CPU, a
record, against rendering the same records as national's batch bodies alone in one thread
(`worker_cpu_vs_render`); the best of --rounds rounds each.

Prints one line per figure with its ratio to the reference, the process's peak RSS, then, as
the last line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path; keep it from shadowing packages.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402

import bus  # noqa: E402
from bus import Outgoing  # noqa: E402
from hub.settings import HubSettings  # noqa: E402
from hub.systems import SystemsConfig, parse_systems  # noqa: E402
from hub.worker import Worker  # noqa: E402
from mappings import SYSTEMS_ROOT, load_system  # noqa: E402
from standard.envelope import Envelope  # noqa: E402

URL = os.environ.get("JGHUB_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
SAMPLE = SYSTEMS_ROOT / "grassroots-platform/samples/event_report/valid-events.json"
CASES = SYSTEMS_ROOT / "eco-env-penalty/samples/case_batch/valid-batch.xml"
BATCH_PATH = "/punish/batch"


class Target:
    """A loopback HTTP target answering 200 after `latency` seconds, counting what it received."""

    def __init__(self, latency: float = 0.0) -> None:
        self.count = 0
        self.cpu_s = 0.0  # CPU time its handlers spent, so a run in this process can leave it out
        self.received_at = 0.0
        self.done = threading.Event()
        self.expected = 0
        self._lock = threading.Lock()  # deliveries arrive on several connections at once
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_POST(self) -> None:
                cpu_started = time.thread_time()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.received_at = time.perf_counter()
                if latency:
                    time.sleep(latency)
                records, answer = 1, b"{}"
                if self.path.endswith(BATCH_PATH):  # national's batch upload: a result each
                    records = len(json.loads(body)["data"])
                    results = [{"index": n, "code": "0"} for n in range(records)]
                    answer = json.dumps({"code": "0", "results": results}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                with owner._lock:
                    owner.cpu_s += time.thread_time() - cpu_started
                    owner.count += records
                    if owner.count >= owner.expected:
                        owner.done.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/feedback"

    def expect(self, count: int) -> None:
        self.count, self.expected, self.cpu_s = 0, count, 0.0
        self.done.clear()


def envelopes(count: int) -> list[Envelope]:
    """`count` distinct grassroots events, translated by the shipped mapping."""
    document = json.loads(SAMPLE.read_text(encoding="utf-8"))
    template = document["data"]["events"][0]
    events = []
    for number in range(count):
        event = copy.deepcopy(template)
        event["eventId"] = f"SJ330106{number:012d}"
        events.append(event)
    document["data"] = {"total": count, "events": events}
    system = load_system(SYSTEMS_ROOT / "grassroots-platform")
    translation = system.translate("event_report", json.dumps(document).encode())
    assert not translation.errors, translation.errors[:3]
    return list(translation.envelopes)


def cases(count: int) -> list[Envelope]:
    """`count` distinct penalty cases: the eco-env sample's first, under new ids and keys."""
    system = load_system(SYSTEMS_ROOT / "eco-env-penalty")
    translation = system.translate("case_batch", CASES.read_bytes())
    assert not translation.errors, translation.errors[:3]
    model = translation.envelopes[0]
    return [
        model.model_copy(update={"id": f"bench-{n:08d}", "idempotencykey": f"{n:064d}"})
        for n in range(count)
    ]


def national(target: Target, batch: int | None) -> SystemsConfig:
    """National taking penalty cases one a request (8 at a time), or in batches of `batch`."""
    outbound: dict[str, Any] = {
        "adapter": "rest_sender",
        "render": {"penalty_case": "penalty_record"},
        "options": {"url": f"{target.base}/punish", "batch_url": f"{target.base}{BATCH_PATH}"},
    }
    if batch is not None:
        outbound["batch"] = {"max_records": batch, "max_wait_ms": 50}
    return parse_systems(
        {
            "systems": [
                {
                    "id": "national",
                    "name_zh": "国家互联网+监管系统",
                    "auth": {"scheme": "api_key", "key_env": "JGHUB_BENCH_UNUSED"},
                    "outbound": outbound,
                    "routes": ["penalty_case.#"],
                }
            ]
        }
    )


def systems(target_url: str, concurrency: int) -> SystemsConfig:
    return parse_systems(
        {
            "systems": [
                {
                    "id": "grassroots-platform",
                    "name_zh": "基层治理四平台",
                    "auth": {"scheme": "api_key", "key_env": "JGHUB_BENCH_UNUSED"},
                    "outbound": {
                        "adapter": "rest_sender",
                        "render": {"grassroots_event": "event_feedback"},
                        "options": {"url": target_url},
                        "concurrency": concurrency,
                    },
                    "routes": ["grassroots_event.#"],
                }
            ]
        }
    )


def reference(target: Target, batch: list[Envelope]) -> float:
    """msgs/s of render + POST in a loop, no bus."""
    system = load_system(SYSTEMS_ROOT / "grassroots-platform")
    target.expect(len(batch))
    started = time.perf_counter()
    with httpx.Client() as client:
        for envelope in batch:
            body = system.render("event_feedback", envelope)
            answer = client.post(
                target.url,
                content=body,
                headers={"Content-Type": "application/json", "Idempotency-Key": envelope.id},
            )
            answer.raise_for_status()
    return len(batch) / (time.perf_counter() - started)


def outgoing(envelope: Envelope) -> Outgoing:
    properties, body = envelope.to_amqp()
    return Outgoing(
        routing_key=f"{envelope.spec.name}.330106.bench",
        body=body,
        headers=properties["headers"],
        message_id=envelope.id,
        idempotency_key=envelope.idempotencykey,
    )


@contextmanager
def bus_for(
    url: str, data_dir: Path, config: SystemsConfig
) -> Iterator[tuple[bus.Broker, HubSettings]]:
    """A broker on a namespace of its own with `config`'s topology, and the settings of a
    worker on it (the embedded bus is a file in `data_dir`); the topology is deleted after."""
    namespace = f"bench-outbound-{uuid.uuid4().hex[:8]}"
    topology = config.topology(namespace)
    broker = bus.connect(url)
    broker.declare(topology)
    try:
        amqp_url = url if url.startswith("amqp") else None
        yield broker, HubSettings(amqp_url=amqp_url, data_dir=data_dir, namespace=namespace)
    finally:
        if url.startswith("amqp"):
            broker.delete_topology(topology)
        broker.close()


def deliver_all(
    target: Target, batch: list[Envelope], url: str, data_dir: Path, config: SystemsConfig
) -> tuple[float, float]:
    """Seconds, and this process's CPU seconds (every thread: consumer, handlers, journal
    writer, pika's I/O; less what the target's own handlers spent), of a Worker delivering
    `batch` from the bus at `url` to the one target `config` has, from its start until the
    target has every message."""
    with bus_for(url, data_dir, config) as (broker, settings):
        broker.publish_many([outgoing(envelope) for envelope in batch])
        worker = Worker(settings, systems=config, pollers=False)
        target.expect(len(batch))
        stop = threading.Event()
        runner = threading.Thread(target=worker.run, args=(stop,))
        started, cpu_started = time.perf_counter(), time.process_time()
        runner.start()
        try:
            if not target.done.wait(600):
                raise SystemExit(f"only {target.count} of {len(batch)} delivered")
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started - target.cpu_s
        finally:
            stop.set()
            runner.join()
        return elapsed, cpu


def worker_rate(
    target: Target, batch: list[Envelope], url: str, data_dir: Path, config: SystemsConfig
) -> float:
    """msgs/s of a Worker delivering `batch` from the bus at `url` to the one target `config`
    has."""
    return len(batch) / deliver_all(target, batch, url, data_dir, config)[0]


def worker_cpu_us(
    target: Target, records: list[Envelope], url: str, data_dir: Path, config: SystemsConfig
) -> float:
    """CPU µs a record of a Worker delivering `records` (see `deliver_all`)."""
    return 1e6 * deliver_all(target, records, url, data_dir, config)[1] / len(records)


def render_cpu_us(records: list[Envelope], batch: int) -> float:
    """CPU µs a record of rendering `records` as national's batch bodies of `batch` records
    (the work a delivery cannot skip), in this thread."""
    rendering = load_system(SYSTEMS_ROOT / "national").outbound_mapping("penalty_record")
    started = time.process_time()
    for first in range(0, len(records), batch):
        chunk = records[first : first + batch]
        parts = [rendering.render_part(envelope) for envelope in chunk]
        rendering.render_batch(parts, [e.idempotencykey for e in chunk], "batch-bench")
    return 1e6 * (time.process_time() - started) / len(records)


def worker_cpu(figures: dict[str, Any], target: Target, data_dir: Path, options: Any) -> None:
    """The worker's CPU a record, national's penalty cases in batches on RabbitMQ, against
    rendering them alone; the best of --rounds rounds each (the least disturbed by others)."""
    records = cases(options.worker_cpu)
    config = national(target, options.batch or 100)
    worker = min(
        worker_cpu_us(target, records, URL, data_dir, config) for _ in range(options.rounds)
    )
    render = min(render_cpu_us(records, options.batch or 100) for _ in range(options.rounds))
    figures["worker_cpu_us_a_record"] = worker
    figures["render_cpu_us_a_record"] = render
    figures["worker_cpu_vs_render"] = worker / render
    print(f"{'worker, CPU µs a record (batches)':<40} {worker:10.0f}")
    print(f"{'rendering alone, CPU µs a record':<40} {render:10.0f}  ratio {worker / render:.2f}")


def lone_latencies(
    target: Target, records: list[Envelope], url: str, data_dir: Path, config: SystemsConfig
) -> list[float]:
    """Seconds from publishing each of `records`, one at a time to a running Worker, to the
    target reading it (the first, which waits for the worker to start, is left out)."""
    with bus_for(url, data_dir, config) as (broker, settings):
        worker = Worker(settings, systems=config, pollers=False)
        stop = threading.Event()
        runner = threading.Thread(target=worker.run, args=(stop,))
        runner.start()
        latencies = []
        try:
            for envelope in records:
                target.expect(1)
                published = time.perf_counter()
                broker.publish(outgoing(envelope))
                if not target.done.wait(60):
                    raise SystemExit(f"record {envelope.id} was not delivered in 60 s")
                latencies.append(target.received_at - published)
                time.sleep(0.002)  # its settle reaches the broker; the next one is alone
        finally:
            stop.set()
            runner.join()
        return latencies[1:]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def batching(
    figures: dict[str, Any],
    target: Target,
    url: str,
    data_dir: Path,
    label: str,
    options: argparse.Namespace,
) -> None:
    """National's penalty cases one a request, then in batches: their rates and ratio, and a
    lone record's latency each way."""
    records = cases(options.messages)
    single = worker_rate(target, records, url, data_dir, national(target, None))
    batched = worker_rate(target, records, url, data_dir, national(target, options.batch))
    figures[f"single_{label}_msgs_s"] = single
    figures[f"batch_{label}_msgs_s"] = batched
    figures[f"batch_vs_single_{label}"] = batched / single
    print(f"{f'national on {label}, one a request (c8)':<40} {single:10.0f} msgs/s")
    shown = f"national on {label}, batches of {options.batch}"
    print(f"{shown:<40} {batched:10.0f} msgs/s  batch_vs_single {batched / single:.2f}")
    lone = records[: options.lone + 1]
    p99s = {}
    for way, batch in (("single", None), ("batch", options.batch)):
        latencies = lone_latencies(target, lone, url, data_dir, national(target, batch))
        p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
        figures[f"lone_{way}_{label}_p50_ms"] = p50
        figures[f"lone_{way}_{label}_p99_ms"] = p99s[way] = p99
        shown = f"lone record on {label}, {'batches' if batch else 'one a request'}"
        print(f"{shown:<40} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
    ratio = p99s["batch"] / p99s["single"]
    figures[f"lone_batch_vs_single_p99_{label}"] = ratio
    print(f"{'lone record, batches vs one a request':<40} p99 ratio {ratio:.2f}")


def rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--no-rabbitmq", action="store_true")
    parser.add_argument(
        "--concurrency", default="1,8", help="outbound.concurrency values to run, e.g. 1,4,8"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the target's answer time")
    parser.add_argument(
        "--batch", type=int, default=0, help="also national one a request vs batches of N"
    )
    parser.add_argument(
        "--lone", type=int, default=200, help="records timed one at a time (with --batch)"
    )
    parser.add_argument(
        "--worker-cpu",
        type=int,
        default=0,
        help="only the worker's CPU a record: N penalty cases to national in batches (RabbitMQ)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --worker-cpu (best)")
    options = parser.parse_args(argv)
    target = Target(options.latency_ms / 1000)
    if options.worker_cpu:
        figures: dict[str, Any] = {"records": options.worker_cpu, "batch": options.batch or 100}
        with tempfile.TemporaryDirectory() as folder:
            worker_cpu(figures, target, Path(folder), options)
        print(json.dumps(figures))
        return 0
    batch = envelopes(options.messages)
    levels = [int(level) for level in options.concurrency.split(",")]
    figures = {
        "messages": options.messages,
        "latency_ms": options.latency_ms,
        "batch": options.batch,
    }
    figures["reference_msgs_s"] = reference(target, batch)
    print(f"{'reference: render + POST loop':<40} {figures['reference_msgs_s']:10.0f} msgs/s")
    with tempfile.TemporaryDirectory() as folder:
        embedded = f"sqlite:///{Path(folder) / 'bus.sqlite3'}"
        runs = [("embedded", embedded)]
        if not options.no_rabbitmq and rabbitmq_answers():
            runs.append(("rabbitmq", URL))
        for label, url in runs:
            for level in levels:
                rate = worker_rate(target, batch, url, Path(folder), systems(target.url, level))
                ratio = rate / figures["reference_msgs_s"]
                name = f"{label}_c{level}"
                figures[f"worker_{name}_msgs_s"] = rate
                figures[f"worker_{name}_ratio"] = ratio
                shown = f"worker on {label}, concurrency {level}"
                print(f"{shown:<40} {rate:10.0f} msgs/s  ratio {ratio:.2f}")
            if options.batch:
                batching(figures, target, url, Path(folder), label, options)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["peak_rss_mib"] = peak
    print(f"{'peak RSS':<40} {peak:10.1f} MiB")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
