"""End to end on the local RabbitMQ: push over HTTP → translate → bus → worker → HTTP sink.

    python bench/e2e.py [--backfill 5000] [--duration 20] [--concurrency 4] [--workers 1]
                        [--batching auto|on|off] [--soak] [--no-mapping-bench]
                        [--database-url postgresql://...] [--compare-stores]

Every figure is a ratio against a reference measured in the same run, on the same machine and
broker (issue #18):
- `naive`: the same work done plainly. `bench/naive_publisher.py` (FastAPI under uvicorn)
  translates each payload with the same mappings as the hub and publishes each record with a
  BlockingConnection confirm; `bench/naive_consumer.py` (one pika consumer) renders each record
  for the target and POSTs it with one synchronous HTTP client. Driven by the same client as the
  hub, delivering to the same sink.
- `stages`: each stage alone on this machine: the mappings translating the backfill's payloads
  in one process; raw pika publishing (pipelined confirms into a quorum queue) then consuming
  the same messages (`bench/bus.py`'s functions), the slower of the two; the sink taking the
  target's rendered records from the worker's number of threads.
- the hub: `jghub serve` and `jghub worker` as real processes, delivering to a loopback HTTP
  sink (its own process) as the national system.

Phases and figures (the targets are issue #18's; the last line carries each beside its figure):
- backfill: --backfill records from ten departments (every shipped department system with a
  penalty-case message type: its valid sample's first record, repeated with fresh record ids and
  case numbers, in its own format and encoding, pushed in batches of --batch to its own endpoint,
  departments interleaved) to national, once through the naive reference and once through the
  hub; progress on stderr, then the push time, the time to drain (last push answered → last
  record at the sink) and records/s end to end. `backfill_vs_naive` (≥ 4) is the hub's rate over
  the naive one; `pipeline_efficiency` (≥ 0.6) is the hub's over the slowest stage alone.
  National's deliveries are batched (`outbound.batch`) when the systems file accepts the option
  (--batching auto), one record per request otherwise;
- batch: eco-env-penalty case batches of --batch records for --duration seconds (--soak: 10
  minutes, RSS after the first minute against RSS at the end); peak RSS of serve and worker;
- single: one-record pushes for --single-duration seconds, closed loop, the hub and the naive
  reference (`single_vs_naive`, ≥ 1.2); then single pushes paced at half the hub's sustained
  single rate, latency push → sink (`single_p99_ms`, ≤ 50);
- `engine_vs_bare` (≥ 0.6): read from `bench/mapping.py --quick`, run as a subprocess (its last
  line), when that bench reports it.

The store: the hub runs on the embedded SQLite store of its data folder, or on --database-url
(migrated once with `jghub db upgrade` before the processes start). --compare-stores runs only
the batch phase (after its warm-up), twice in the same run: on the embedded store, then on a
fresh PostgreSQL database (created through --postgresql-admin-url, dropped after), and reports
records/s end to end for both and `postgresql_vs_sqlite` (target: PostgreSQL ≥ 0.8× SQLite,
issue #14).

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
import queue
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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path; keep it from shadowing packages.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402
import pika  # noqa: E402
import yaml  # noqa: E402
from lxml import etree  # noqa: E402

import bus  # noqa: E402
from bus.rabbitmq import RabbitOptions  # noqa: E402
from hub.systems import parse_systems  # noqa: E402
from mappings import SYSTEMS_ROOT, load_system  # noqa: E402
from mappings.decoding import decode_payload  # noqa: E402
from mappings.inbound import InboundTranslation  # noqa: E402
from mappings.paths import compile_xpath  # noqa: E402
from mappings.payloads import PayloadLimits, parse_xml  # noqa: E402
from mappings.system import load_all  # noqa: E402
from systems.schema import OutboundConfig  # noqa: E402

URL = os.environ.get("JGHUB_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
SOURCE = "eco-env-penalty"


def key_env(system_id: str) -> str:
    """The environment variable a bench system's API key is read from."""
    return "JGHUB_BENCH_KEY_" + system_id.upper().replace("-", "_")


def api_key(system_id: str) -> str:
    """A bench system's API key (a key names its system, so each has its own)."""
    return f"bench-key-{system_id}"


KEY_ENV, KEY = key_env(SOURCE), api_key(SOURCE)
PUSH_PATH = f"/systems/{SOURCE}/xml/case_batch"
SOAK_S = 600
RSS_GROWTH_AFTER_S = 300
"""The least run, in seconds, whose RSS growth after the first minute is reported (None below)."""


def _bench_module(name: str) -> Any:
    """bench/<name>.py as a module (bus.py's raw pika functions are the reference, reused)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", _HERE / f"{name}.py")
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


# --- the backfill's payloads: ten departments' samples, replicated with fresh keys -------------

_ID, _CASE = "@@RECORD-ID@@", "@@CASE-NUMBER@@"
_START, _END = "@@RECORD-START@@", "@@RECORD-END@@"
SHIPPED_SYSTEMS = _HERE.parent / "config" / "systems.yaml"


def _fresh(value: str, number: int) -> str:
    """`value` with its last run of digits replaced by `number` (at least 9 digits wide)."""
    runs = list(re.finditer(r"\d+", value))
    if not runs:
        return f"{value}{number:09d}"
    last = runs[-1]
    return f"{value[: last.start()]}{number:0{max(9, len(last.group()))}d}{value[last.end() :]}"


@dataclass(frozen=True)
class DepartmentFeed:
    """One department's valid sample as a template: its first record, repeated with fresh keys.

    Each copy gets a new record id (the source's own id, which the envelope id and idempotency
    key come from) and a new case number, so each is a new change of a new case: ingress neither
    answers it as a repeat nor finds its case already at a later stage. The rest of the record,
    the payload's wrapper, namespaces and encoding stay the department's own.
    """

    system: str
    message_type: str
    syntax: str
    encoding: str
    head: str
    record: str
    tail: str
    record_id: str | int
    case_number: str

    @property
    def path(self) -> str:
        """The hub's push endpoint for the message type (xml_push or rest_push)."""
        kind = "xml" if self.syntax == "xml" else "rest"
        return f"/systems/{self.system}/{kind}/{self.message_type}"

    def payload(self, first: int, count: int) -> bytes:
        """A batch of `count` records numbered from `first`."""
        records = [
            self.record.replace(
                _ID, str(n) if isinstance(self.record_id, int) else _fresh(self.record_id, n)
            ).replace(_CASE, _fresh(self.case_number, n))
            for n in range(first, first + count)
        ]
        separator = "\n" if self.syntax == "xml" else ","
        return (self.head + separator.join(records) + self.tail).encode(self.encoding)


def department_feeds() -> list[DepartmentFeed]:
    """Every shipped department system with a penalty-case message type (national excluded)."""
    department_systems = _bench_module("department_systems")
    feeds = []
    for system_id, system in load_all().items():
        for message_type, translation in system.inbound.items():
            if system_id == "national" or translation.dataset.name != "penalty_case":
                continue
            sample = department_systems._valid_sample(system_id, message_type)
            build = _xml_feed if translation.mapping.format == "xml" else _json_feed
            feeds.append(build(translation, sample))
    return feeds


def _keys(translation: InboundTranslation, sample: bytes, values: list[str]) -> tuple[str, str]:
    """(the record id, the case number) among the first record's `values`.

    The case number is the record's penalty_id; the record id is the value the envelope id
    starts from (it may add a time, as '10231@2026-03-05 10:12:30' does).
    """
    envelope = translation.translate(sample).envelopes[0]
    case_number, envelope_id = envelope.data["penalty_id"], envelope.id
    inside = [v for v in values if v != case_number and len(v) >= 3 and v in envelope_id]
    if case_number not in values or not inside:
        raise SystemExit(
            f"{translation.system.id}: its sample's record id or case number not found"
        )
    return min(inside, key=lambda v: (envelope_id.index(v), -len(v))), case_number


def _xml_feed(translation: InboundTranslation, sample: bytes) -> DepartmentFeed:
    decoded = decode_payload(sample, "xml")
    root = parse_xml(sample, PayloadLimits())
    mapping = translation.mapping
    first, *others = compile_xpath(mapping.records, mapping.namespaces).nodes(root)
    for other in others:
        other.getparent().remove(other)
    texts = [(e, None, (e.text or "").strip()) for e in first.iter() if isinstance(e.tag, str)]
    attributes = [(e, name, value) for e in first.iter() for name, value in e.attrib.items()]
    record_id, case_number = _keys(translation, sample, [v for *_, v in texts + attributes])
    for element, name, value in texts + attributes:
        marker = {record_id: _ID, case_number: _CASE}.get(value)
        if marker and name is None:
            element.text = marker
        elif marker:
            element.set(name, marker)
    first.addprevious(etree.Comment(_START))
    first.addnext(etree.Comment(_END))
    head, rest = etree.tostring(root, encoding="unicode").split(f"<!--{_START}-->")
    record, tail = rest.split(f"<!--{_END}-->")
    declaration = re.match(r"\s*<\?xml[^>]*\?>\s*", decoded.text)
    return DepartmentFeed(
        system=translation.system.id,
        message_type=translation.message_type,
        syntax="xml",
        encoding=decoded.encoding,
        head=(declaration.group() if declaration else "") + head,
        record=record,
        tail=tail,
        record_id=record_id,
        case_number=case_number,
    )


def _json_feed(translation: InboundTranslation, sample: bytes) -> DepartmentFeed:
    decoded = decode_payload(sample, "json")
    document = json.loads(decoded.text)
    holder = document
    *parents, last = translation.mapping.records.split(".")
    for key in parents:
        holder = holder[key]
    first = holder[last][0]
    leaves = list(_json_leaves(first))
    record_id, case_number = _keys(translation, sample, [str(v).strip() for *_, v in leaves])
    numeric = False
    for container, key, value in leaves:
        if str(value).strip() == record_id:
            container[key], numeric = _ID, isinstance(value, int)
        elif str(value).strip() == case_number:
            container[key] = _CASE
    holder[last] = [_START]
    head, tail = json.dumps(document, ensure_ascii=False).split(json.dumps(_START))
    record = json.dumps(first, ensure_ascii=False)
    return DepartmentFeed(
        system=translation.system.id,
        message_type=translation.message_type,
        syntax="json",
        encoding=decoded.encoding,
        head=head,
        record=record.replace(json.dumps(_ID), _ID) if numeric else record,
        tail=tail,
        record_id=int(record_id) if numeric else record_id,
        case_number=case_number,
    )


def _json_leaves(value: Any) -> Iterator[tuple[Any, Any, str | int]]:
    """(container, key, value) of every string or integer in a JSON value."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, dict | list):
            yield from _json_leaves(item)
        elif isinstance(item, str | int) and not isinstance(item, bool):
            yield value, key, item


# --- the sink ---------------------------------------------------------------------------------


def arrival_ids(document: Any) -> list[str]:
    """The envelope ids in a delivered body: a CloudEvent's `id`, national's `cd_id`, for one
    record or for a batch of them (a list, or an object holding one)."""
    if isinstance(document, list):
        return [found for item in document for found in arrival_ids(item)]
    if not isinstance(document, dict):
        return []
    for name in ("cd_id", "id"):
        if isinstance(document.get(name), str):
            return [document[name]]
    return [found for item in document.values() for found in arrival_ids(item)]


def _sink_main(port_out: Any, stop: Any, dump_to: str) -> None:
    """A loopback HTTP target (own process) noting each record's first arrival.

    It answers as national's gateway does: {"code": "0"}, with a result per record (`results`,
    each taken) for its batch upload.
    """
    arrivals: dict[str, float] = {}
    counts: dict[str, float] = {"received": 0, "duplicates": 0, "last_arrival": 0.0}
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
            envelope_ids = arrival_ids(json.loads(data))
            with lock:
                for envelope_id in envelope_ids:
                    counts["received"] += 1
                    if envelope_id in arrivals:
                        counts["duplicates"] += 1
                    else:
                        arrivals[envelope_id] = counts["last_arrival"] = now
            taken = [
                {"index": i, "code": "0", "message": "success"} for i in range(len(envelope_ids))
            ]
            self._answer(json.dumps({"code": "0", "message": "success", "results": taken}).encode())

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
def sink_process(folder: Path) -> Iterator[tuple[str, Path, int]]:
    """The sink in its own process; yields (its URL, the file its arrivals are written to, its
    pid)."""
    context = multiprocessing.get_context("fork")
    port_out, stop = context.Queue(), context.Event()
    dump = folder / "arrivals.json"
    process = context.Process(target=_sink_main, args=(port_out, stop, str(dump)), daemon=True)
    process.start()
    try:
        url = f"http://127.0.0.1:{port_out.get(timeout=20)}/deliveries"
        assert process.pid is not None
        yield url, dump, process.pid
    finally:
        stop.set()
        process.join(timeout=30)


# --- the load generator -----------------------------------------------------------------------


def _drive_main(job: dict[str, Any], out: str) -> None:
    """Push for `job["duration"]` seconds from `job["concurrency"]` threads; write the results.

    Bodies are `job["payload"](first, count)` (default: `case_batch`). Closed loop (each thread
    sends its next request when the last is answered) unless
    `job["rate"]` (requests/s over all threads) is set: then each thread sends on a fixed
    schedule, late sends going at once (the latency includes any queueing at the hub).
    """
    per_request, payload = job["records"], job.get("payload", case_batch)
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
                body = payload(number, per_request)
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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time process `pid` (all its threads) has used, user and system, from /proc."""
    # The command's name may hold spaces and parentheses: the fields start after the last ')'.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time every core of the machine spent busy (neither idle nor waiting for I/O)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def rabbitmq_pid() -> int | None:
    """The local RabbitMQ node's Erlang VM (beam.smp), when it runs on this machine."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                command = (entry / "cmdline").read_bytes()
                if b"beam.smp" in command and b"rabbit" in command:
                    return int(entry.name)
    return None


class CpuTally:
    """CPU time spent between start and `per_record`, by each named process and by the whole
    machine: where a record's CPU goes, and how busy the cores were."""

    def __init__(self, pids: dict[str, int]) -> None:
        rabbit = rabbitmq_pid()
        self.pids = pids | ({"rabbitmq": rabbit} if rabbit is not None else {})
        self.started = time.monotonic()
        self.machine = machine_busy_seconds()
        self.each = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def per_record(self, records: int) -> dict[str, float]:
        """µs of CPU a record, per process and in all ("other": the load generator, the kernel,
        whatever else ran), and the cores busy on average."""
        elapsed = time.monotonic() - self.started
        machine = machine_busy_seconds() - self.machine
        spent = {name: cpu_seconds(pid) - self.each[name] for name, pid in self.pids.items()}
        spent["other"] = max(machine - sum(spent.values()), 0.0)
        figures = {f"cpu_us_{name}": 1e6 * value / max(records, 1) for name, value in spent.items()}
        figures["cpu_us_all"] = 1e6 * machine / max(records, 1)
        figures["cores_busy"] = machine / elapsed
        return figures


def national_system(sink_url: str, batch: dict[str, int] | None = None) -> dict[str, Any]:
    """National, receiving penalty cases at the sink as its gateway's penalty_record, in
    batches (`outbound.batch`) when `batch` is given."""
    outbound: dict[str, Any] = {
        "adapter": "rest_sender",
        "render": {"penalty_case": "penalty_record"},
        "options": {"url": sink_url},
    }
    if batch:
        outbound["batch"] = batch
    return {
        "id": "national",
        "name_zh": '国家"互联网+监管"系统',
        "auth": {"scheme": "api_key", "key_env": "JGHUB_BENCH_KEY_NATIONAL"},
        "outbound": outbound,
        "routes": ["penalty_case.#"],
    }


def systems_document(sink_url: str) -> dict[str, Any]:
    """The department pushing case batches, and national delivering penalty cases to the sink."""
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
            national_system(sink_url),
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


def wait_for_sink(sink_url: str, expected: int, timeout: float) -> dict[str, Any]:
    """Sink counts once `expected` distinct records arrived, or once none arrived for `timeout`
    seconds; `last_arrival` is when the last of them arrived (time.monotonic, any process)."""
    seen, stalled_since = -1, time.monotonic()
    while True:
        counts: dict[str, Any] = httpx.get(sink_url, timeout=5).json()
        if counts["unique"] != seen:
            seen, stalled_since = counts["unique"], time.monotonic()
        if counts["unique"] >= expected or time.monotonic() - stalled_since > timeout:
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
    path: str = PUSH_PATH,
    pids: dict[str, int] | None = None,
) -> tuple[list[list[Any]], dict[str, Any]]:
    """Push eco-env-penalty batches of `records` to `path` (the hub's endpoint, or the naive
    publisher's) and wait until the sink has every accepted record. With `pids`, the counts
    also say the CPU µs a request cost in each of those processes (`CpuTally`), under "cpu"."""
    before = httpx.get(sink_url, timeout=5).json()["unique"]
    tally = CpuTally(pids) if pids is not None else None
    stamps = drive(
        {
            "base": base,
            "path": path,
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
    counts = wait_for_sink(sink_url, before + accepted, timeout=120.0)
    if tally is not None:
        counts["cpu"] = tally.per_record(len(stamps))
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
            sink_process(folder) as (sink_url, dump, _),
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


# --- the backfill -----------------------------------------------------------------------------

BACKFILL_BATCH = {"max_records": 100, "max_wait_ms": 20}
"""National's `outbound.batch` when the systems file takes the option. The hub's single-record
phases run on the same configuration, so a single record may wait up to max_wait_ms for its batch:
part of `single_p99_ms`, hence a short wait."""


def batching_available() -> bool:
    """Whether this tree's systems file takes `outbound.batch` (issue #18 item 1): the switch
    `--batching auto` follows, so the backfill batches as soon as the option is merged."""
    return "batch" in OutboundConfig.model_fields


def backfill_document(
    feeds: list[DepartmentFeed], sink_url: str, batch: dict[str, int] | None
) -> dict[str, Any]:
    """The departments of `feeds`, each pushing its own payloads to its own endpoint (xml_push or
    rest_push, whatever its shipped transport; same mapping, same departments), and national."""
    shipped = yaml.safe_load(SHIPPED_SYSTEMS.read_text(encoding="utf-8"))["systems"]
    known = {system["id"]: system for system in shipped}
    systems: list[dict[str, Any]] = []
    for feed in feeds:
        options = {"answer": "json"} if feed.syntax == "xml" else {}
        systems.append(
            {
                "id": feed.system,
                "name_zh": known[feed.system]["name_zh"],
                "departments": known[feed.system].get("departments", []),
                "auth": {"scheme": "api_key", "key_env": key_env(feed.system)},
                "inbound": [
                    {
                        "adapter": "xml_push" if feed.syntax == "xml" else "rest_push",
                        "message_type": feed.message_type,
                        "options": options,
                    }
                ],
                "rate_limit": {"per_second": 1e6, "burst": 1_000_000},
            }
        )
    return {"systems": [*systems, national_system(sink_url, batch)]}


def backfill_chunks(feeds: int, records: int, batch: int, first: int) -> list[list[int]]:
    """[feed index, first record number, count] per payload, departments taking turns."""
    return [
        [n % feeds, first + start, min(batch, records - start)]
        for n, start in enumerate(range(0, records, batch))
    ]


def _backfill_main(job: dict[str, Any], out: str, accepted: Any) -> None:
    """Push `job["chunks"]` from `job["concurrency"]` threads, each sending the next payload once
    its last was answered; a payload refused for back-pressure or rate (503, 429) is sent again
    after its Retry-After, as a department's client would. `accepted` counts accepted records."""
    feeds: list[DepartmentFeed] = job["feeds"]
    chunks: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
    for chunk in job["chunks"]:
        chunks.put(chunk)
    stamps: list[list[Any]] = []

    def thread() -> None:
        with httpx.Client(base_url=job["base"], timeout=300) as client:
            while True:
                try:
                    index, first, count = chunks.get_nowait()
                except queue.Empty:
                    return
                feed, body = feeds[index], feeds[index].payload(first, count)
                sent = time.monotonic()
                answer = client.post(job["path"](feed), content=body, headers=job["headers"](feed))
                while answer.status_code in (429, 503):
                    time.sleep(float(answer.headers.get("Retry-After", "1")))
                    answer = client.post(
                        job["path"](feed), content=body, headers=job["headers"](feed)
                    )
                taken = answer.json()["accepted"] if answer.status_code == 200 else 0
                with accepted.get_lock():
                    accepted.value += taken
                stamps.append(
                    [index, first, count, sent, time.monotonic(), answer.status_code, taken]
                )

    threads = [threading.Thread(target=thread) for _ in range(job["concurrency"])]
    for started in threads:
        started.start()
    for started in threads:
        started.join()
    Path(out).write_text(json.dumps(stamps))


def backfill(
    label: str,
    job: dict[str, Any],
    sink_url: str,
    folder: Path,
    records: int,
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Run one backfill (`_backfill_main`'s job), its progress on stderr every 2 s; its figures:
    records accepted and arrived, seconds pushing (first push → last answer), draining (last
    answer → last arrival) and in all, records/s into ingress and end to end; with `pids`, the
    CPU a record cost in each of those processes, RabbitMQ's and the machine's (`CpuTally`)."""
    tally = CpuTally(pids) if pids is not None else None
    context = multiprocessing.get_context("fork")
    accepted = context.Value("q", 0)
    out = folder / f"backfill-{label}.json"
    before = httpx.get(sink_url, timeout=5).json()["unique"]
    started = time.monotonic()
    process = context.Process(target=_backfill_main, args=(job, str(out), accepted))
    process.start()
    done = threading.Event()

    def progress() -> None:
        while not done.wait(2.0):
            arrived = httpx.get(sink_url, timeout=5).json()["unique"] - before
            elapsed = time.monotonic() - started
            print(
                f"backfill {label}: {elapsed:6.0f} s, {accepted.value:,} of {records:,} accepted, "
                f"{arrived:,} at the sink ({arrived / elapsed:,.0f} records/s)",
                file=sys.stderr,
                flush=True,
            )

    reporter = threading.Thread(target=progress, daemon=True)
    reporter.start()
    try:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"the {label} backfill's load generator failed")
        stamps = json.loads(out.read_text())
        counts = wait_for_sink(sink_url, before + accepted.value, timeout=120.0)
    finally:
        done.set()
        reporter.join()
    first_push = min(stamp[3] for stamp in stamps)
    last_answer = max(stamp[4] for stamp in stamps)
    arrived = counts["unique"] - before
    drained = max(counts["last_arrival"], last_answer)
    figures = {
        "accepted": accepted.value,
        "rejected": sum(stamp[2] - stamp[6] for stamp in stamps if stamp[5] == 200),
        "refused": sum(1 for stamp in stamps if stamp[5] != 200),
        "arrived": arrived,
        "push_s": last_answer - first_push,
        "ingress_records_per_s": accepted.value / (last_answer - first_push),
        "drain_s": drained - last_answer,
        "total_s": drained - first_push,
        "records_per_s": arrived / (drained - first_push),
    }
    print(
        f"backfill {label}: {arrived:,} of {records:,} records at the sink in "
        f"{figures['total_s']:.1f} s ({figures['records_per_s']:,.0f} records/s): pushed in "
        f"{figures['push_s']:.1f} s, drained {figures['drain_s']:.1f} s after the last push",
        flush=True,
    )
    if tally is not None:
        figures |= tally.per_record(arrived)
        print(f"backfill {label}: {cpu_line(figures, '', 'a record')}", flush=True)
    return figures


def cpu_line(figures: dict[str, Any], prefix: str, unit: str) -> str:
    """The CPU figures of a `CpuTally` (keys `<prefix>_cpu_us_…`, or `cpu_us_…` with no prefix)
    as one line: in all, then each process."""
    start = f"{prefix}_cpu_us_" if prefix else "cpu_us_"
    each = ", ".join(
        f"{key.removeprefix(start)} {value:,.0f}"
        for key, value in figures.items()
        if key.startswith(start) and key != f"{start}all"
    )
    busy = figures[f"{prefix}_cores_busy" if prefix else "cores_busy"]
    return (
        f"CPU µs {unit}: {figures[f'{start}all']:,.0f} in all ({each}); "
        f"{busy:.2f} of {os.cpu_count()} cores busy"
    )


def backfill_job(
    base: str, feeds: list[DepartmentFeed], chunks: list[list[int]], concurrency: int, naive: bool
) -> dict[str, Any]:
    """The load generator's job: to the hub's endpoints with each department's key, or to the
    naive publisher's."""

    def path(feed: DepartmentFeed) -> str:
        return f"/push/{feed.system}/{feed.message_type}" if naive else feed.path

    def headers(feed: DepartmentFeed) -> dict[str, str]:
        kind = "application/xml" if feed.syntax == "xml" else "application/json"
        return {"X-Api-Key": api_key(feed.system), "Content-Type": kind}

    return {
        "base": base,
        "feeds": feeds,
        "chunks": chunks,
        "concurrency": concurrency,
        "path": path,
        "headers": headers,
    }


def measured_backfill(
    label: str,
    base: str,
    feeds: list[DepartmentFeed],
    options: argparse.Namespace,
    sink_url: str,
    folder: Path,
    first: int,
    pids: dict[str, int],
) -> dict[str, Any]:
    """One record from each department first (each mapping's first use, the first connections),
    then the backfill of `options.backfill` records numbered from `first`; its figures, with the
    CPU a record cost in each of `pids`. `label` "naive" pushes to the naive publisher, any other
    to the hub."""
    naive, warm_up = label == "naive", len(feeds)
    chunks = backfill_chunks(len(feeds), warm_up, 1, first - warm_up)
    job = backfill_job(base, feeds, chunks, options.concurrency, naive=naive)
    backfill(f"{label} warm-up", job, sink_url, folder, warm_up)
    chunks = backfill_chunks(len(feeds), options.backfill, options.batch, first)
    job = backfill_job(base, feeds, chunks, options.concurrency, naive=naive)
    return backfill(label, job, sink_url, folder, options.backfill, pids)


# --- the naive reference and the stages alone ---------------------------------------------------


@contextmanager
def _channel() -> Iterator[Any]:
    """A channel on a connection of its own to the bench's broker, closed after use."""
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        yield connection.channel()
    finally:
        connection.close()


@contextmanager
def naive_reference(sink_url: str) -> Iterator[tuple[str, dict[str, int]]]:
    """`bench/naive_publisher.py` under uvicorn and `bench/naive_consumer.py`, each its own
    process, on a fresh exchange and quorum queue bound as the hub binds national; yields the
    publisher's URL and the two pids."""
    namespace = f"naive{uuid.uuid4().hex[:8]}"
    exchange, queue_name = f"{namespace}.canonical", f"{namespace}.national"
    with _channel() as channel:
        channel.exchange_declare(exchange, "topic", durable=True)
        channel.queue_declare(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(queue_name, exchange, "penalty_case.#")
    port = free_port()
    env = {**os.environ, "JGHUB_BENCH_AMQP_URL": URL, "JGHUB_BENCH_NAIVE_EXCHANGE": exchange}
    command = [sys.executable, "-m", "uvicorn", "naive_publisher:app", "--app-dir", str(_HERE)]
    publisher = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"], env=env, cwd=_HERE.parent
    )
    consumer = subprocess.Popen(
        [sys.executable, str(_HERE / "naive_consumer.py"), queue_name, sink_url],
        env=env,
        cwd=_HERE.parent,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/ready", publisher, "the naive publisher")
        yield base, {"publisher": publisher.pid, "consumer": consumer.pid}
    finally:
        stop_process(publisher)
        stop_process(consumer)
        # A connection of its own: one left idle through a long backfill answers no heartbeats
        # (a BlockingConnection does only while it is used), and the broker drops it.
        with _channel() as channel:
            channel.queue_delete(queue_name)
            channel.exchange_delete(exchange)


def translation_stage(feeds: list[DepartmentFeed], batch: int, rounds: int = 3) -> float:
    """records/s of the mappings alone, in this one process, on a batch of each department."""
    work = [
        (load_system(SYSTEMS_ROOT / feed.system), feed.message_type, feed.payload(0, batch))
        for feed in feeds
    ]
    for system, message_type, payload in work:
        system.translate(message_type, payload)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for system, message_type, payload in work:
            system.translate(message_type, payload)
        best = min(best, time.perf_counter() - started)
    return len(work) * batch / best


def sink_stage(
    sink_url: str, folder: Path, feed: DepartmentFeed, per_request: int, duration: float
) -> float:
    """records/s the sink takes alone: national's rendered records POSTed from as many threads
    as the worker delivers at once, `per_request` to a request (more than 1: in national's batch
    upload, {"batchNo", "count", "data": [records]})."""
    national = load_system(SYSTEMS_ROOT / "national")
    translation = load_system(SYSTEMS_ROOT / feed.system).translate(
        feed.message_type, feed.payload(0, 1)
    )
    envelope = translation.envelopes[0]
    template = national.render("penalty_record", envelope).decode("utf-8")

    def payload(first: int, count: int) -> bytes:
        records = [
            template.replace(envelope.id, f"SINK-{n:012d}") for n in range(first, first + count)
        ]
        if count == 1:
            return records[0].encode("utf-8")
        head = json.dumps({"batchNo": f"SINK-{first}", "count": count})[:-1]
        return (head + ', "data": [' + ",".join(records) + "]}").encode("utf-8")

    stamps = drive(
        {
            "base": sink_url.rsplit("/", 1)[0],
            "path": "/deliveries",
            "headers": {"Content-Type": "application/json"},
            "records": per_request,
            "payload": payload,
            "first": 0,
            "concurrency": OutboundConfig.model_fields["concurrency"].default,
            "duration": duration,
            "counts_records": False,
        },
        folder,
    )
    return sum(s[4] for s in stamps) / (max(s[2] for s in stamps) - min(s[1] for s in stamps))


def engine_vs_bare() -> float | None:
    """`engine_vs_bare` from `bench/mapping.py --quick` (a subprocess; its last line), None when
    that bench does not report it."""
    run = subprocess.run(
        [sys.executable, str(_HERE / "mapping.py"), "--quick"],
        cwd=_HERE.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    value = json.loads(run.stdout.strip().splitlines()[-1]).get("engine_vs_bare")
    return float(value) if value is not None else None


# --- figures ----------------------------------------------------------------------------------

TARGETS: dict[str, tuple[str, float]] = {
    "backfill_vs_naive": (">=", 4.0),
    "pipeline_efficiency": (">=", 0.6),
    "single_vs_naive": (">=", 1.2),
    "single_p99_ms": ("<=", 50.0),
    "engine_vs_bare": (">=", 0.6),
}
"""Issue #18's figures and targets."""


def scorecard(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target figure with its target and whether it was met (None: not measured)."""
    card = {}
    for name, (sense, target) in TARGETS.items():
        value = figures.get(name)
        met = None if value is None else value >= target if sense == ">=" else value <= target
        card[name] = {"value": value, "target": f"{sense} {target:g}", "met": met}
        shown = "not measured" if value is None else f"{value:.3f}"
        verdict = "" if met is None else ": met" if met else ": missed"
        print(f"{name:<20} {shown:>12}  (target {sense} {target:g}{verdict})", flush=True)
    return card


def rounded(figures: dict[str, Any]) -> str:
    """The figures as one JSON line, floats to 4 decimals."""
    return json.dumps(_rounded(figures), ensure_ascii=False)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backfill", type=int, default=5_000, help="records of the backfill (issue: 200000)"
    )
    parser.add_argument("--duration", type=float, default=20, help="seconds of the batch phase")
    parser.add_argument("--paced-duration", type=float, default=15, help="seconds, paced phase")
    parser.add_argument("--single-duration", type=float, default=15, help="seconds, single phase")
    parser.add_argument("--batch", type=int, default=100, help="records per pushed batch")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument(
        "--workers", type=int, default=1, help="jghub worker processes (competing consumers)"
    )
    parser.add_argument(
        "--batching",
        choices=("auto", "on", "off"),
        default="auto",
        help="national's outbound.batch in the backfill; auto: when the systems file takes it",
    )
    parser.add_argument("--raw-messages", type=int, default=20_000, help="raw reference size")
    parser.add_argument(
        "--no-mapping-bench", action="store_true", help="skip engine_vs_bare (bench/mapping.py)"
    )
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
    batching = options.batching == "on" or (options.batching == "auto" and batching_available())
    figures: dict[str, Any] = {
        "batch": options.batch,
        "concurrency": options.concurrency,
        "workers": options.workers,
        "duration_s": duration,
        "store": "postgresql" if options.database_url else "sqlite",
        "load_average": os.getloadavg()[0],
    }
    if options.compare_stores:
        figures["store"] = "both"
        compare_stores(options, figures)
        print(rounded(figures))
        return 0
    figures["backfill_records"] = options.backfill
    figures["backfill_batching"] = BACKFILL_BATCH if batching else None

    if not options.no_mapping_bench:
        figures["engine_vs_bare"] = engine_vs_bare()
    stages(options, figures)
    feeds = department_feeds()
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        with sink_process(folder) as (sink_url, dump, sink_pid):
            figures["stage_sink_records_per_s"] = sink_stage(
                sink_url, folder, feeds[0], BACKFILL_BATCH["max_records"] if batching else 1, 5
            )
            print(
                f"the sink alone: {figures['stage_sink_records_per_s']:.0f} records/s", flush=True
            )
            phases = naive_phases(options, feeds, sink_url, sink_pid, folder, figures)
            phases |= hub_phases(
                options, feeds, batching, sink_url, sink_pid, folder, duration, figures
            )
        arrivals: dict[str, float] = json.loads(dump.read_text())

    for name, stamps in phases.items():
        records = options.batch if name == "hub_batch" else 1
        for key, value in summarise(stamps, arrivals, records).items():
            figures[f"{name}_{key}"] = value
        summary = {k: figures[f"{name}_{k}"] for k in ("accepted", "arrived", "refused")}
        print(
            f"{name:<17}: {figures[f'{name}_ingress_records_per_s']:8.0f} records/s in, "
            f"{figures[f'{name}_end_to_end_records_per_s']:8.0f} records/s to the sink; "
            f"latency p50 {figures[f'{name}_latency_ms_p50']:.1f} "
            f"p95 {figures[f'{name}_latency_ms_p95']:.1f} "
            f"p99 {figures[f'{name}_latency_ms_p99']:.1f} ms; {summary}",
            flush=True,
        )
    slowest = min(
        figures["stage_translate_records_per_s"],
        figures["stage_bus_msgs_per_s"],
        figures["stage_sink_records_per_s"],
    )
    figures["backfill_vs_naive"] = (
        figures["hub_backfill_records_per_s"] / figures["naive_backfill_records_per_s"]
    )
    figures["pipeline_efficiency"] = figures["hub_backfill_records_per_s"] / slowest
    figures["single_vs_naive"] = (
        figures["hub_single_ingress_records_per_s"] / figures["naive_single_ingress_records_per_s"]
    )
    figures["single_p99_ms"] = figures["hub_single_paced_latency_ms_p99"]
    for name in ("naive_single", "hub_single"):
        print(f"{name}: {cpu_line(figures, name, 'a request')}", flush=True)
    growth = [figures["serve_rss_growth"], figures["worker_rss_growth"]]
    print(
        f"peak RSS serve {figures['serve_peak_rss_mib']:.0f} MiB, worker "
        f"{figures['worker_peak_rss_mib']:.0f} MiB; "
        + (
            f"RSS growth serve {growth[0]:.1%}, worker {growth[1]:.1%} (after the first minute; "
            "target < 10% in --soak)"
            if None not in growth
            else f"RSS growth not measured: the hub ran under {RSS_GROWTH_AFTER_S} s (--soak)"
        ),
        flush=True,
    )
    figures["targets"] = scorecard(figures)
    print(rounded(figures))
    return 0


def stages(options: argparse.Namespace, figures: dict[str, Any]) -> None:
    """The bus alone (raw pika publish, then consume, envelope-sized bodies) and the mappings
    alone (the backfill's payloads, one process)."""
    envelope_bytes = len(
        load_system(SYSTEMS_ROOT / SOURCE)
        .translate("case_batch", case_batch(0, 1))
        .envelopes[0]
        .to_amqp()[1]
    )
    raw = _bench_module("bus")
    namespace = f"e2eraw{uuid.uuid4().hex[:8]}"
    body = b"x" * envelope_bytes
    figures["raw_publish_msgs_per_s"] = raw.raw_publish(
        namespace, options.raw_messages, body, RabbitOptions().confirm_window
    )
    figures["raw_consume_msgs_per_s"] = raw.raw_consume(namespace, options.raw_messages, 100)
    figures["stage_bus_msgs_per_s"] = min(
        figures["raw_publish_msgs_per_s"], figures["raw_consume_msgs_per_s"]
    )
    print(
        f"raw pika, {options.raw_messages} msgs of {envelope_bytes} B: publish "
        f"{figures['raw_publish_msgs_per_s']:.0f} msgs/s, consume "
        f"{figures['raw_consume_msgs_per_s']:.0f} msgs/s",
        flush=True,
    )
    figures["stage_confirm_ms_p50"] = confirm_stage(namespace, body)
    print(
        f"one publish awaiting its confirm (BlockingConnection, quorum queue), alone: "
        f"p50 {figures['stage_confirm_ms_p50']:.2f} ms",
        flush=True,
    )
    figures["stage_translate_records_per_s"] = translation_stage(department_feeds(), options.batch)
    print(
        f"the mappings alone, ten departments' batches of {options.batch}: "
        f"{figures['stage_translate_records_per_s']:.0f} records/s",
        flush=True,
    )


def confirm_stage(namespace: str, body: bytes, count: int = 300) -> float:
    """p50 ms of one persistent, mandatory publish awaiting its confirm through a pika
    BlockingConnection into a fresh quorum queue, one after the other: what the naive reference
    waits for each record, and the least a single push can wait before it is answered."""
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    queue_name = f"{namespace}.confirm"
    channel.queue_declare(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
    channel.confirm_delivery()
    waits = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            channel.basic_publish(
                "", queue_name, body, pika.BasicProperties(delivery_mode=2), mandatory=True
            )
            waits.append((time.perf_counter() - started) * 1000)
    finally:
        channel.queue_delete(queue_name)
        connection.close()
    return statistics.median(waits)


def naive_phases(
    options: argparse.Namespace,
    feeds: list[DepartmentFeed],
    sink_url: str,
    sink_pid: int,
    folder: Path,
    figures: dict[str, Any],
) -> dict[str, list[list[Any]]]:
    """The naive reference's backfill (its figures into `figures`) and single-record pushes
    (their stamps, summarised with the hub's)."""
    with naive_reference(sink_url) as (base, pids):
        pids |= {"sink": sink_pid}
        measured = measured_backfill(
            "naive", base, feeds, options, sink_url, folder, 100_000_000, pids
        )
        figures |= {f"naive_backfill_{key}": value for key, value in measured.items()}
        single, counts = hub_phase(
            base,
            sink_url,
            folder,
            first=5 * 10**9,
            records=1,
            concurrency=options.concurrency,
            duration=options.single_duration,
            path=f"/push/{SOURCE}/case_batch",
            pids=pids,
        )
        figures |= {f"naive_single_{key}": value for key, value in counts["cpu"].items()}
    return {"naive_single": single}


def hub_phases(
    options: argparse.Namespace,
    feeds: list[DepartmentFeed],
    batching: bool,
    sink_url: str,
    sink_pid: int,
    folder: Path,
    duration: float,
    figures: dict[str, Any],
) -> dict[str, list[list[Any]]]:
    """The hub's backfill (its figures into `figures`), then its batch, single and paced single
    phases (their stamps); the processes' memory into `figures`."""
    document = backfill_document(feeds, sink_url, BACKFILL_BATCH if batching else None)
    secrets = {key_env(feed.system): api_key(feed.system) for feed in feeds}
    with hub_processes(
        folder,
        sink_url,
        options.workers,
        document=document,
        secrets=secrets,
        database_url=options.database_url,
    ) as (base, pids):
        watch = MemoryWatch(pids)
        job = {"records": options.batch, "concurrency": options.concurrency}
        # A short warm-up: imports, first connections, the mappings' caches.
        hub_phase(base, sink_url, folder, first=0, duration=3, **job)
        measured = measured_backfill(
            "hub", base, feeds, options, sink_url, folder, 300_000_000, pids | {"sink": sink_pid}
        )
        figures |= {f"hub_backfill_{key}": value for key, value in measured.items()}
        phases: dict[str, list[list[Any]]] = {}
        phases["hub_batch"], _ = hub_phase(
            base, sink_url, folder, first=10**9, duration=duration, **job
        )
        job["records"] = 1
        phases["hub_single"], counts = hub_phase(
            base,
            sink_url,
            folder,
            first=3 * 10**9,
            duration=options.single_duration,
            pids=pids | {"sink": sink_pid},
            **job,
        )
        figures |= {f"hub_single_{key}": value for key, value in counts["cpu"].items()}
        # Half the single rate the hub sustained (closed loop, same clients), then the latency.
        answered = max(s[2] for s in phases["hub_single"]) - min(s[1] for s in phases["hub_single"])
        figures["single_paced_req_per_s"] = len(phases["hub_single"]) / answered / 2
        phases["hub_single_paced"], counts = hub_phase(
            base,
            sink_url,
            folder,
            first=4 * 10**9,
            duration=options.paced_duration,
            rate=figures["single_paced_req_per_s"],
            **job,
        )
        watch.stop()
        figures |= {f"{n}_peak_rss_mib": v for n, v in watch.peaks_mib().items()}
        for name, samples in watch.samples.items():
            # Growth after the first minute says something only over minutes more: a short run
            # ends while the worker is still filling its caches (26-45 % seen in 2 minutes).
            if samples[-1][0] - samples[0][0] < RSS_GROWTH_AFTER_S:
                figures[f"{name}_rss_growth"] = None
                continue
            warm = [kib for at, kib in samples if at >= samples[0][0] + 60] or [samples[0][1]]
            figures[f"{name}_rss_growth"] = (samples[-1][1] - warm[0]) / warm[0]
        figures["sink_duplicates"] = counts["duplicates"]
    return phases


if __name__ == "__main__":
    raise SystemExit(main())
