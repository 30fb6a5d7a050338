"""End to end on the local RabbitMQ: push over HTTP → translate → bus → worker → HTTP sink.

    python bench/e2e.py [--duration 60] [--concurrency 4] [--workers 1] [--soak]
                        [--database-url postgresql://...] [--compare-stores]

Every figure is measured in the same run, on the same machine and broker:
- raw reference: `bench/bus.py`'s raw pika functions (pipelined publisher confirms into a
  quorum queue, then consume-and-ack of the same messages), msgs/s;
- naive reference: `bench/naive_publisher.py` (FastAPI, one pika BlockingConnection per thread,
  each request published and its confirm awaited) under uvicorn, driven by the same client as
  the hub, req/s;
- the hub: `jghub serve` and `jghub worker` as real processes; department XML batches of
  --batch records (eco-env-penalty case batches, GB18030 bytes declared GB2312) pushed for
  --duration seconds; the worker delivers each record to a local HTTP sink (its own process).
  Reported: records/s accepted at ingress and records/s arrived at the sink (end to end, from
  the first push to the last arrival), latency push → sink p50/p95/p99; a paced phase at half
  the sustained rate with its own percentiles; single-record pushes, req/s;
- ratios: hub batch records/s ÷ raw publish msgs/s (`batch_vs_raw`), hub single req/s ÷ naive
  req/s (`single_vs_naive`); peak RSS of the serve and worker processes (/proc VmHWM);
- --soak: the batch phase runs 10 minutes; RSS after the first minute against RSS at the end;
- the store: the hub runs on the embedded SQLite store of its data folder, or on
  --database-url (migrated once with `jghub db upgrade` before the processes start).
  --compare-stores runs only the batch phase (after its warm-up), twice in the same run: on the
  embedded store, then on a fresh PostgreSQL database (created through --postgresql-admin-url,
  dropped after), and reports records/s end to end for both and `postgresql_vs_sqlite`
  (target: PostgreSQL ≥ 0.8× SQLite, issue #14).

The load generator runs in its own process (httpx, one connection per thread, --concurrency
threads), so it does not take the hub's interpreter. The last line is one JSON object with every
figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path; keep it from shadowing packages.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402
import pika  # noqa: E402

import bus  # noqa: E402
from bus.rabbitmq import RabbitOptions  # noqa: E402
from hub.systems import parse_systems  # noqa: E402
from mappings import SYSTEMS_ROOT, load_system  # noqa: E402

URL = os.environ.get("JGHUB_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
SOURCE = "eco-env-penalty"
KEY_ENV, KEY = "JGHUB_BENCH_KEY_ECO", "bench-eco-key"
PUSH_PATH = f"/systems/{SOURCE}/xml/case_batch"
SOAK_S = 600


def _load_bench_bus() -> Any:
    """bench/bus.py as a module (its raw pika functions are the reference; reused, not copied)."""
    spec = importlib.util.spec_from_file_location("bench_bus", _HERE / "bus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- payloads ---------------------------------------------------------------------------------

_SAMPLE = (SYSTEMS_ROOT / SOURCE / "samples/case_batch/valid-batch.xml").read_bytes()
_TEXT = _SAMPLE.decode("gb18030")
_HEAD, _REST = _TEXT.split("<cf:AJ ", 1)
_RECORD = "<cf:AJ " + _REST[: _REST.index("</cf:AJ>") + len("</cf:AJ>")]
_JLID = re.search(r'JLID="([^"]+)"', _RECORD).group(1)  # type: ignore[union-attr]
_AJBH = re.search(r"<cf:AJBH>([^<]+)</cf:AJBH>", _RECORD).group(1)  # type: ignore[union-attr]


def case_batch(first: int, count: int) -> bytes:
    """A department case batch of `count` distinct records numbered from `first` (GB18030)."""
    records = [
        _RECORD.replace(_JLID, f"E2E-{n:012d}").replace(_AJBH, f"E2E-{n:012d}")
        for n in range(first, first + count)
    ]
    return (_HEAD + "\n".join(records) + "\n</cf:AJPC>\n").encode("gb18030")


def record_id(number: int) -> str:
    """The envelope id the mapping gives record `number` (its JLID)."""
    return f"E2E-{number:012d}"


# --- the sink ---------------------------------------------------------------------------------


def _sink_main(port_out: Any, stop: Any, dump_to: str) -> None:
    """A loopback HTTP target (own process) noting each envelope id's first arrival."""
    arrivals: dict[str, float] = {}
    counts = {"received": 0, "duplicates": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            with lock:
                body = json.dumps({**counts, "unique": len(arrivals)}).encode()
            self._answer(body)

        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers["Content-Length"]))
            now = time.monotonic()
            envelope_id = json.loads(data)["id"]
            with lock:
                counts["received"] += 1
                if envelope_id in arrivals:
                    counts["duplicates"] += 1
                else:
                    arrivals[envelope_id] = now
            self._answer(b"{}")

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port_out.put(server.server_address[1])
    stop.wait()
    with lock:
        Path(dump_to).write_text(json.dumps(arrivals))
    server.shutdown()


@contextmanager
def sink_process(folder: Path) -> Iterator[tuple[str, Path]]:
    """The sink in its own process; yields (its URL, the file its arrivals are written to)."""
    context = multiprocessing.get_context("fork")
    port_out, stop = context.Queue(), context.Event()
    dump = folder / "arrivals.json"
    process = context.Process(target=_sink_main, args=(port_out, stop, str(dump)), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{port_out.get(timeout=20)}/deliveries", dump
    finally:
        stop.set()
        process.join(timeout=30)


# --- the load generator -----------------------------------------------------------------------


def _drive_main(job: dict[str, Any], out: str) -> None:
    """Push for `job["duration"]` seconds from `job["concurrency"]` threads; write the results.

    Closed loop (each thread sends its next request when the last is answered) unless
    `job["rate"]` (requests/s over all threads) is set: then each thread sends on a fixed
    schedule, late sends going at once (the latency includes any queueing at the hub).
    """
    per_request = job["records"]
    stamps: list[list[Any]] = [[] for _ in range(job["concurrency"])]
    deadline = time.monotonic() + job["duration"]

    def thread(index: int) -> None:
        number = job["first"] + index * 10_000_000
        interval = job["concurrency"] / job["rate"] if job.get("rate") else 0.0
        due = time.monotonic() + index * interval / job["concurrency"]
        with httpx.Client(base_url=job["base"], timeout=120) as client:
            while time.monotonic() < deadline:
                if interval:
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    due += interval
                body = case_batch(number, per_request)
                sent = time.monotonic()
                answer = client.post(job["path"], content=body, headers=job["headers"])
                answered = time.monotonic()
                accepted = 0
                if answer.status_code == 200 and job["counts_records"]:
                    accepted = answer.json()["accepted"]
                elif answer.status_code == 200:
                    accepted = per_request
                stamps[index].append([number, sent, answered, answer.status_code, accepted])
                number += per_request

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(job["concurrency"])]
    for started in threads:
        started.start()
    for started in threads:
        started.join()
    Path(out).write_text(json.dumps([stamp for group in stamps for stamp in group]))


def drive(job: dict[str, Any], folder: Path) -> list[list[Any]]:
    """Run the load generator in its own process; its per-request stamps."""
    out = folder / f"drive-{uuid.uuid4().hex[:8]}.json"
    process = multiprocessing.get_context("fork").Process(target=_drive_main, args=(job, str(out)))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"the load generator failed (exit {process.exitcode})")
    stamps: list[list[Any]] = json.loads(out.read_text())
    return stamps


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready at {url}")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of process `pid` in KiB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def systems_document(sink_url: str) -> dict[str, Any]:
    """The department pushing case batches, and a target delivering penalty cases to the sink."""
    return {
        "systems": [
            {
                "id": SOURCE,
                "name_zh": "省生态环境厅环境行政处罚系统",
                "auth": {"scheme": "api_key", "key_env": KEY_ENV},
                "inbound": [
                    {
                        "adapter": "xml_push",
                        "message_type": "case_batch",
                        "options": {"default_charset": "gb2312", "answer": "json"},
                    }
                ],
                "rate_limit": {"per_second": 1e6, "burst": 1_000_000},
            },
            {
                "id": "national",
                "name_zh": '国家"互联网+监管"系统',
                "auth": {"scheme": "api_key", "key_env": "JGHUB_BENCH_KEY_NATIONAL"},
                "outbound": {
                    "adapter": "rest_sender",
                    "render": {"penalty_case": "cloudevent"},
                    "options": {"url": sink_url},
                },
                "routes": ["penalty_case.#"],
            },
        ]
    }


@contextmanager
def hub_processes(
    folder: Path,
    sink_url: str,
    workers: int = 1,
    *,
    document: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    database_url: str | None = None,
) -> Iterator[tuple[str, dict[str, int]]]:
    """`jghub serve` and `workers` `jghub worker` processes; yields (base URL, their pids).

    The pids are named serve, worker, worker2, worker3...: competing consumers of one queue.
    `document` replaces the systems file (`systems_document(sink_url)`), `secrets` adds the
    environment variables its systems' keys are read from. `database_url`: the store
    (JGHUB_DATABASE_URL), migrated before the processes start; None: the embedded one.
    """
    document = document or systems_document(sink_url)
    systems_file = folder / "systems.yaml"
    systems_file.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    namespace = f"e2e{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **os.environ,
        KEY_ENV: KEY,
        "JGHUB_BENCH_KEY_NATIONAL": "unused",
        "JGHUB_SYSTEMS_FILE": str(systems_file),
        "JGHUB_DATA_DIR": str(folder / "var"),
        "JGHUB_NAMESPACE": namespace,
        "JGHUB_AMQP_URL": URL,
        **(secrets or {}),
    }
    if database_url:
        env["JGHUB_DATABASE_URL"] = database_url
    python = [sys.executable, "-m", "hub.cli"]
    if database_url:
        subprocess.run([*python, "db", "upgrade"], env=env, cwd=_HERE.parent, check=True)
    serve = subprocess.Popen(
        [*python, "serve", "--port", str(port), "--log-level", "warning"], env=env, cwd=_HERE.parent
    )
    started: list[subprocess.Popen[bytes]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/ready", serve, "jghub serve")
        for _ in range(workers):
            started.append(
                subprocess.Popen(
                    [*python, "worker", "--no-pollers", "--log-level", "warning"],
                    env=env,
                    cwd=_HERE.parent,
                )
            )
        if workers:
            time.sleep(2.0)  # their consumers connect; a message published meanwhile just waits
        if any(worker.poll() is not None for worker in started):
            raise RuntimeError("jghub worker exited at start")
        names = ["worker", *(f"worker{n}" for n in range(2, workers + 1))][:workers]
        yield base, {"serve": serve.pid} | {n: w.pid for n, w in zip(names, started, strict=True)}
    finally:
        for worker in started:
            stop_process(worker)
        stop_process(serve)
        topology = parse_systems(document).topology(namespace)
        with bus.connect(URL) as broker:
            broker.declare(topology)
            broker.delete_topology(topology)


class MemoryWatch:
    """Samples the RSS of some processes every second in a thread."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: dict[str, list[tuple[float, int]]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for name, pid in self.pids.items():
                with suppress(OSError):
                    self.samples[name].append((time.monotonic(), memory_kib(pid)[0]))

    def peaks_mib(self) -> dict[str, float]:
        return {name: memory_kib(pid)[1] / 1024 for name, pid in self.pids.items()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# --- phases -----------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else []

    def at(percent: int) -> float:
        return (cut[percent - 1] if cut else ordered[0]) * 1000

    return {"p50": at(50), "p95": at(95), "p99": at(99)}


def wait_for_sink(sink_url: str, expected: int, timeout: float) -> dict[str, int]:
    """Sink counts once `expected` distinct records arrived (or `timeout` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        counts: dict[str, int] = httpx.get(sink_url, timeout=5).json()
        if counts["unique"] >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def hub_phase(
    base: str,
    sink_url: str,
    folder: Path,
    *,
    first: int,
    records: int,
    concurrency: int,
    duration: float,
    rate: float | None = None,
) -> tuple[list[list[Any]], dict[str, int]]:
    """Push batches of `records` and wait until the sink has every accepted record."""
    before = httpx.get(sink_url, timeout=5).json()["unique"]
    stamps = drive(
        {
            "base": base,
            "path": PUSH_PATH,
            "headers": {"X-Api-Key": KEY, "Content-Type": "application/xml"},
            "records": records,
            "first": first,
            "concurrency": concurrency,
            "duration": duration,
            "rate": rate,
            "counts_records": True,
        },
        folder,
    )
    accepted = sum(stamp[4] for stamp in stamps)
    counts = wait_for_sink(sink_url, before + accepted, timeout=max(120.0, duration * 2))
    counts["drained_at"] = time.monotonic()  # type: ignore[assignment]
    return stamps, counts


def summarise(
    stamps: list[list[Any]], arrivals: dict[str, float], records: int
) -> dict[str, float]:
    """Rates and latencies of one hub phase from its stamps and the sink's arrivals."""
    started = min(stamp[1] for stamp in stamps)
    answered = max(stamp[2] for stamp in stamps)
    latencies, last_arrival, accepted, refused = [], started, 0, 0
    for number, sent, _answered, status, count in stamps:
        if status != 200:
            refused += 1
            continue
        accepted += count
        for n in range(number, number + records):
            arrival = arrivals.get(record_id(n))
            if arrival is not None:
                latencies.append(arrival - sent)
                last_arrival = max(last_arrival, arrival)
    figures = {
        "requests": len(stamps),
        "refused": refused,
        "accepted": accepted,
        "arrived": len(latencies),
        "ingress_records_per_s": accepted / (answered - started),
        "end_to_end_records_per_s": len(latencies) / (last_arrival - started),
        "request_ms_p50": percentiles([s[2] - s[1] for s in stamps])["p50"],
    }
    figures |= {f"latency_ms_{k}": v for k, v in percentiles(latencies).items()}
    return figures


@contextmanager
def fresh_postgresql(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database, created through `admin_url` and dropped after; its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"jghub_bench_{uuid.uuid4().hex[:12]}"
    admin = make_url(admin_url)
    address = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(address, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(address, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def store_phase(
    database_url: str | None, *, batch: int, concurrency: int, workers: int, duration: float
) -> dict[str, float]:
    """The batch phase (after a warm-up) on one store: its figures (`summarise`)."""
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        with (
            sink_process(folder) as (sink_url, dump),
            hub_processes(folder, sink_url, workers, database_url=database_url) as (base, _),
        ):
            job = {"records": batch, "concurrency": concurrency}
            hub_phase(base, sink_url, folder, first=0, duration=3, **job)
            stamps, _ = hub_phase(base, sink_url, folder, first=10**9, duration=duration, **job)
        arrivals: dict[str, float] = json.loads(dump.read_text())
    return summarise(stamps, arrivals, batch)


def compare_stores(options: argparse.Namespace, figures: dict[str, Any]) -> None:
    """The batch phase on the embedded store, then on a fresh PostgreSQL database."""
    with fresh_postgresql(options.postgresql_admin_url) as postgresql_url:
        for name, url in (("sqlite", None), ("postgresql", postgresql_url)):
            phase = store_phase(
                url,
                batch=options.batch,
                concurrency=options.concurrency,
                workers=options.workers,
                duration=options.duration,
            )
            for key, value in phase.items():
                figures[f"{name}_{key}"] = value
            print(
                f"hub on {name:<10}: {phase['ingress_records_per_s']:8.0f} records/s in, "
                f"{phase['end_to_end_records_per_s']:8.0f} records/s to the sink; latency p50 "
                f"{phase['latency_ms_p50']:.1f} p99 {phase['latency_ms_p99']:.1f} ms; "
                f"accepted {phase['accepted']:.0f}, arrived {phase['arrived']:.0f}",
                flush=True,
            )
    figures["postgresql_vs_sqlite"] = (
        figures["postgresql_end_to_end_records_per_s"] / figures["sqlite_end_to_end_records_per_s"]
    )
    print(f"postgresql_vs_sqlite {figures['postgresql_vs_sqlite']:.3f} (target 0.8)", flush=True)


def naive_rate(folder: Path, concurrency: int, duration: float) -> float:
    """req/s of the naive FastAPI publisher (own uvicorn process), one record per request."""
    namespace = f"naive{uuid.uuid4().hex[:8]}"
    exchange, queue = f"{namespace}.canonical", f"{namespace}.target"
    setup = pika.BlockingConnection(pika.URLParameters(URL))
    channel = setup.channel()
    channel.exchange_declare(exchange, "topic", durable=True)
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(queue, exchange, "penalty_case.#")
    port = free_port()
    env = {
        **os.environ,
        "JGHUB_BENCH_AMQP_URL": URL,
        "JGHUB_BENCH_NAIVE_EXCHANGE": exchange,
    }
    command = [sys.executable, "-m", "uvicorn", "naive_publisher:app", "--app-dir", str(_HERE)]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"], env=env, cwd=_HERE.parent
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/ready", server, "the naive publisher")
        stamps = drive(
            {
                "base": base,
                "path": "/publish",
                "headers": {"Content-Type": "application/xml"},
                "records": 1,
                "first": 900_000_000_000,
                "concurrency": concurrency,
                "duration": duration,
                "counts_records": False,
            },
            folder,
        )
    finally:
        stop_process(server)
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
        setup.close()
    good = [stamp for stamp in stamps if stamp[3] == 200]
    return len(good) / (max(s[2] for s in stamps) - min(s[1] for s in stamps))


def translate_rate(records: int, rounds: int = 5) -> float:
    """records/s of the mapping alone on one batch (where the hub's time goes)."""
    system = load_system(SYSTEMS_ROOT / SOURCE)
    payload = case_batch(0, records)
    system.translate("case_batch", payload)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        system.translate("case_batch", payload)
        best = min(best, time.perf_counter() - started)
    return records / best


def rounded(figures: dict[str, Any]) -> str:
    """The figures as one JSON line, floats to 4 decimals."""
    return json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of the batch phase")
    parser.add_argument("--paced-duration", type=float, default=30, help="seconds, paced phase")
    parser.add_argument("--single-duration", type=float, default=20, help="seconds, single phase")
    parser.add_argument("--batch", type=int, default=100, help="records per pushed batch")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument(
        "--workers", type=int, default=1, help="jghub worker processes (competing consumers)"
    )
    parser.add_argument("--raw-messages", type=int, default=20_000, help="raw reference size")
    parser.add_argument(
        "--soak", action="store_true", help=f"batch phase of {SOAK_S} s, RSS growth"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="the hub's store (JGHUB_DATABASE_URL, migrated first); default: embedded SQLite",
    )
    parser.add_argument(
        "--compare-stores",
        action="store_true",
        help="only the batch phase, on embedded SQLite then on a fresh PostgreSQL database",
    )
    parser.add_argument(
        "--postgresql-admin-url",
        default=os.environ.get(
            "JGHUB_BENCH_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="where --compare-stores may CREATE and DROP its database",
    )
    options = parser.parse_args(argv)
    duration = SOAK_S if options.soak else options.duration
    figures: dict[str, Any] = {
        "batch": options.batch,
        "concurrency": options.concurrency,
        "workers": options.workers,
        "duration_s": duration,
        "store": "postgresql" if options.database_url else "sqlite",
    }
    if options.compare_stores:
        figures["store"] = "both"
        compare_stores(options, figures)
        print(
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()})
        )
        return 0

    envelope_bytes = len(
        load_system(SYSTEMS_ROOT / SOURCE)
        .translate("case_batch", case_batch(0, 1))
        .envelopes[0]
        .to_amqp()[1]
    )
    raw = _load_bench_bus()
    namespace = f"e2eraw{uuid.uuid4().hex[:8]}"
    body = b"x" * envelope_bytes
    figures["raw_publish_msgs_per_s"] = raw.raw_publish(
        namespace, options.raw_messages, body, RabbitOptions().confirm_window
    )
    figures["raw_consume_msgs_per_s"] = raw.raw_consume(namespace, options.raw_messages, 100)
    print(
        f"raw pika, {options.raw_messages} msgs of {envelope_bytes} B: publish "
        f"{figures['raw_publish_msgs_per_s']:.0f} msgs/s, consume "
        f"{figures['raw_consume_msgs_per_s']:.0f} msgs/s",
        flush=True,
    )
    figures["translate_records_per_s"] = translate_rate(options.batch)
    print(
        f"mapping alone, batch of {options.batch}: "
        f"{figures['translate_records_per_s']:.0f} records/s",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        figures["naive_req_per_s"] = naive_rate(
            folder, options.concurrency, options.single_duration
        )
        print(
            f"naive FastAPI + BlockingConnection: {figures['naive_req_per_s']:.0f} req/s",
            flush=True,
        )
        with (
            sink_process(folder) as (sink_url, dump),
            hub_processes(folder, sink_url, options.workers, database_url=options.database_url) as (
                base,
                pids,
            ),
        ):
            watch = MemoryWatch(pids)
            # A short warm-up: imports, first connections, JIT-less caches of the mapping.
            hub_phase(
                base,
                sink_url,
                folder,
                first=0,
                records=options.batch,
                concurrency=options.concurrency,
                duration=3,
            )
            phases: dict[str, list[list[Any]]] = {}
            phases["batch"], drained = hub_phase(
                base,
                sink_url,
                folder,
                first=10**9,
                records=options.batch,
                concurrency=options.concurrency,
                duration=duration,
            )
            # Half the end-to-end rate (first push to the sink holding every record), the
            # rate the worker sustains, not the rate ingress takes while the queue grows.
            first_push = min(stamp[1] for stamp in phases["batch"])
            sustained = sum(s[4] for s in phases["batch"]) / (drained["drained_at"] - first_push)
            figures["paced_records_per_s"] = sustained / 2
            phases["paced"], _ = hub_phase(
                base,
                sink_url,
                folder,
                first=2 * 10**9,
                records=options.batch,
                concurrency=options.concurrency,
                duration=options.paced_duration,
                rate=sustained / 2 / options.batch,
            )
            phases["single"], counts = hub_phase(
                base,
                sink_url,
                folder,
                first=3 * 10**9,
                records=1,
                concurrency=options.concurrency,
                duration=options.single_duration,
            )
            watch.stop()
            figures |= {f"{n}_peak_rss_mib": v for n, v in watch.peaks_mib().items()}
            for name, samples in watch.samples.items():
                warm = [kib for at, kib in samples if at >= samples[0][0] + 60] or [samples[0][1]]
                figures[f"{name}_rss_growth"] = (samples[-1][1] - warm[0]) / warm[0]
            figures["sink_duplicates"] = counts["duplicates"]
        arrivals: dict[str, float] = json.loads(dump.read_text())

    for name, stamps in phases.items():
        records = 1 if name == "single" else options.batch
        for key, value in summarise(stamps, arrivals, records).items():
            figures[f"hub_{name}_{key}"] = value
        summary = {k: figures[f"hub_{name}_{k}"] for k in ("accepted", "arrived", "refused")}
        print(
            f"hub {name:<6}: {figures[f'hub_{name}_ingress_records_per_s']:8.0f} records/s in, "
            f"{figures[f'hub_{name}_end_to_end_records_per_s']:8.0f} records/s to the sink; "
            f"latency p50 {figures[f'hub_{name}_latency_ms_p50']:.1f} "
            f"p95 {figures[f'hub_{name}_latency_ms_p95']:.1f} "
            f"p99 {figures[f'hub_{name}_latency_ms_p99']:.1f} ms; {summary}",
            flush=True,
        )
    figures["hub_single_req_per_s"] = figures["hub_single_ingress_records_per_s"]
    figures["batch_vs_raw"] = (
        figures["hub_batch_end_to_end_records_per_s"] / figures["raw_publish_msgs_per_s"]
    )
    figures["single_vs_naive"] = figures["hub_single_req_per_s"] / figures["naive_req_per_s"]
    print(
        f"batch_vs_raw {figures['batch_vs_raw']:.3f} (target 0.4), single_vs_naive "
        f"{figures['single_vs_naive']:.2f} (target 2), paced p99 "
        f"{figures['hub_paced_latency_ms_p99']:.1f} ms (target 100); peak RSS serve "
        f"{figures['serve_peak_rss_mib']:.0f} MiB, worker {figures['worker_peak_rss_mib']:.0f} MiB;"
        f" RSS growth serve {figures['serve_rss_growth']:.1%}, worker "
        f"{figures['worker_rss_growth']:.1%} (after the first minute; target < 10% in --soak)",
        flush=True,
    )
    print(rounded(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
