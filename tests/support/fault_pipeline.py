"""The hub as deployed, for the fault tests: `jghub serve` and `jghub worker` processes, a sink.

    with Pipeline(tmp_path, outage_s=0) as line:
        line.start_worker()
        line.push(0, 100)                      # records 0..99 in one XML case batch
        line.sink.wait_unique(100)

The department `eco-env-penalty` pushes XML case batches (xml_push, JSON answers, and a SOAP
channel); `json-dept` pushes grassroots events as JSON with an API key; `national` receives every
penalty case through rest_sender at the sink, a loopback HTTP server in this process that
counts what arrives by idempotency key and can answer 503 or slowly on demand. A test adds
systems of its own with `extra_systems` (their secrets' variables in `settings`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from broker_support import RABBITMQ_URL, require_rabbitmq
from serve_process import REPOSITORY, free_port, stop, wait_ready

import bus
from bus import Broker
from hub.systems import SystemsConfig, parse_systems
from mappings import SYSTEMS_ROOT
from monitor.quarantine import Quarantine, QuarantineEntry
from store import Store, store_url

ECO_KEY, JSON_KEY = "fault-eco-key", "fault-json-key"

_TEXT = (SYSTEMS_ROOT / "eco-env-penalty/samples/case_batch/valid-batch.xml").read_bytes()
_DOC = _TEXT.decode("gb18030")
_HEAD, _REST = _DOC.split("<cf:AJ ", 1)
_RECORD = "<cf:AJ " + _REST[: _REST.index("</cf:AJ>") + len("</cf:AJ>")]
_JLID = re.search(r'JLID="([^"]+)"', _RECORD).group(1)  # type: ignore[union-attr]
_AJBH = re.search(r"<cf:AJBH>([^<]+)</cf:AJBH>", _RECORD).group(1)  # type: ignore[union-attr]


def rss_mib(pid: int) -> float:
    """The resident memory of process `pid`, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def case_batch(first: int, count: int) -> bytes:
    """A case batch of `count` distinct records numbered from `first`, GB18030 bytes."""
    records = [
        _RECORD.replace(_JLID, f"F-{n:010d}").replace(_AJBH, f"F-{n:010d}")
        for n in range(first, first + count)
    ]
    return (_HEAD + "\n".join(records) + "\n</cf:AJPC>\n").encode("gb18030")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A worker killed mid-request resets its connection: what the fault tests do, not a
        # fault of the sink.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Sink:
    """A loopback HTTP target: counts arrivals by idempotency key; 503 or slow on demand."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self.ids: set[str] = set()
        self.arrivals: dict[str, int] = {}
        """Arrivals by envelope id."""
        self.sources: dict[str, str] = {}
        """The CloudEvents `source` of each envelope id (who sent the record in)."""
        self.failed_answers = 0
        self.unreadable: list[bytes] = []
        self.down_body = b"target down"
        """What it answers with its 503s (a test may make it hostile)."""
        self.failing_until = 0.0
        self.outage_s = 0.0
        self.delay_s = 0.0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if owner.delay_s:
                    time.sleep(owner.delay_s)
                with owner.lock:
                    if owner.outage_s and not owner.failing_until:
                        # The outage starts with the first request, however slow the start.
                        owner.failing_until = time.monotonic() + owner.outage_s
                if time.monotonic() < owner.failing_until:
                    with owner.lock:
                        owner.failed_answers += 1
                    self._answer(503, owner.down_body)
                    return
                key = self.headers.get("Idempotency-Key", "")
                try:
                    envelope = json.loads(body)
                    envelope_id = envelope["id"]
                except (ValueError, KeyError, TypeError):
                    with owner.lock:
                        owner.unreadable.append(body[:200])
                    self._answer(400, b"not a canonical event")
                    return
                with owner.lock:
                    owner.keys[key] = owner.keys.get(key, 0) + 1
                    owner.ids.add(envelope_id)
                    owner.arrivals[envelope_id] = owner.arrivals.get(envelope_id, 0) + 1
                    owner.sources[envelope_id] = str(envelope.get("source", ""))
                self._answer(200, b"{}")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cases"

    @property
    def unique(self) -> int:
        return len(self.keys)

    @property
    def duplicates(self) -> int:
        with self.lock:
            return sum(count - 1 for count in self.keys.values())

    def wait_unique(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.unique < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.unique >= count

    def close(self) -> None:
        self.server.shutdown()


def fault_systems(
    sink_url: str,
    *,
    tiers: list[float] | None = None,
    in_process_attempts: int = 2,
    breaker_cooldown_s: float = 30.0,
    extra_systems: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The fault tests' systems (see the module docstring): `national` delivers to `sink_url`."""
    return {
        "systems": [
            {
                "id": "eco-env-penalty",
                "name_zh": "省生态环境厅环境行政处罚系统",
                "auth": {"scheme": "api_key", "key_env": "JGHUB_FAULT_KEY_ECO"},
                "inbound": [
                    {
                        "adapter": "xml_push",
                        "message_type": "case_batch",
                        "options": {"default_charset": "gb2312", "answer": "json"},
                    },
                    {
                        "adapter": "soap_push",
                        "message_type": "case_batch",
                        "options": {"operation": "ReceiveCaseBatch"},
                    },
                ],
                "rate_limit": {"per_second": 1e6, "burst": 1_000_000},
            },
            {
                "id": "json-dept",
                "name_zh": "JSON 测试部门",
                "mapping": "grassroots-platform",
                "auth": {"scheme": "api_key", "key_env": "JGHUB_FAULT_KEY_JSON"},
                "inbound": [{"adapter": "rest_push", "message_type": "event_report"}],
            },
            {
                "id": "national",
                "name_zh": '国家"互联网+监管"系统',
                "auth": {"scheme": "api_key", "key_env": "JGHUB_FAULT_KEY_NATIONAL"},
                "outbound": {
                    "adapter": "rest_sender",
                    "render": {"penalty_case": "cloudevent"},
                    "options": {
                        "url": sink_url,
                        "breaker": {"cooldown_s": breaker_cooldown_s},
                    },
                },
                "routes": ["penalty_case.#"],
                "retry": {
                    "in_process_attempts": in_process_attempts,
                    "tiers": tiers if tiers is not None else [1.0, 2.0],
                },
            },
            *(extra_systems or []),
        ]
    }


class Pipeline:
    """serve + workers as processes on RabbitMQ in a namespace of their own (or, `bus_kind`
    "embedded", on the embedded bus in the data folder); cleaned up after."""

    def __init__(
        self,
        folder: Path,
        *,
        tiers: list[float] | None = None,
        in_process_attempts: int = 2,
        settings: dict[str, str] | None = None,
        breaker_cooldown_s: float = 30.0,
        extra_systems: list[dict[str, Any]] | None = None,
        bus_kind: str = "rabbitmq",
    ) -> None:
        self.on_rabbitmq = bus_kind == "rabbitmq"
        if self.on_rabbitmq:
            require_rabbitmq()
        self.folder = folder
        self.sink = Sink()
        self.namespace = f"f{uuid.uuid4().hex[:10]}"
        self.document = fault_systems(
            self.sink.url,
            tiers=tiers,
            in_process_attempts=in_process_attempts,
            breaker_cooldown_s=breaker_cooldown_s,
            extra_systems=extra_systems,
        )
        systems_file = folder / "systems.yaml"
        systems_file.write_text(json.dumps(self.document, ensure_ascii=False), encoding="utf-8")
        self.env = {
            **os.environ,
            "JGHUB_FAULT_KEY_ECO": ECO_KEY,
            "JGHUB_FAULT_KEY_JSON": JSON_KEY,
            "JGHUB_FAULT_KEY_NATIONAL": "unused",
            "JGHUB_SYSTEMS_FILE": str(systems_file),
            "JGHUB_DATA_DIR": str(folder / "var"),
            "JGHUB_NAMESPACE": self.namespace,
            **({"JGHUB_AMQP_URL": RABBITMQ_URL} if self.on_rabbitmq else {}),
            **(settings or {}),
        }
        self.bus_url = (
            RABBITMQ_URL if self.on_rabbitmq else f"sqlite:///{folder / 'var/bus.sqlite3'}"
        )
        self.workers: list[subprocess.Popen[bytes]] = []
        self.serve: subprocess.Popen[bytes] | None = None
        self.client: httpx.Client | None = None
        self._broker: Broker | None = None

    @property
    def topology_config(self) -> SystemsConfig:
        return parse_systems(self.document)

    def __enter__(self) -> Pipeline:
        port = free_port()
        self.serve = self._spawn("serve", "--port", str(port), "--log-level", "warning")
        self.base = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.base, timeout=60)
        wait_ready(self.base, self.serve)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for process in [*self.workers, self.serve]:
            if process is not None:
                stop(process)
        if self.client is not None:
            self.client.close()
        self.sink.close()
        if self._broker is not None:
            self._broker.close()
        if self.on_rabbitmq:
            delete_namespace(self.topology_config, self.namespace)

    def _spawn(self, *arguments: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "hub.cli", *arguments]
        return subprocess.Popen(command, env=self.env, cwd=REPOSITORY)

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = self._spawn("worker", "--no-pollers", "--log-level", "warning")
        self.workers.append(worker)
        return worker

    def kept(self, quarantine_id: str) -> QuarantineEntry:
        """The quarantine entry `quarantine_id` of the pipeline's hub, read from its store."""
        url = store_url(self.env.get("JGHUB_DATABASE_URL"), Path(self.env["JGHUB_DATA_DIR"]))
        return Quarantine(Store.open(url)).get(quarantine_id)

    def broker(self) -> Broker:
        """A broker of the test's own on the pipeline's namespace (depth, dead letters)."""
        if self._broker is None:
            self._broker = bus.connect(self.bus_url)
            self._broker.declare(self.topology_config.topology(self.namespace))
        return self._broker

    def push(self, first: int, count: int) -> httpx.Response:
        """One XML case batch of records first..first+count-1."""
        assert self.client is not None
        return self.client.post(
            "/systems/eco-env-penalty/xml/case_batch",
            content=case_batch(first, count),
            headers={"X-Api-Key": ECO_KEY, "Content-Type": "application/xml"},
        )

    def push_until_accepted(self, first: int, count: int, deadline: float) -> int:
        """Push one batch again until every record is accepted; the number of resends."""
        resends = 0
        while True:
            try:
                answer = self.push(first, count)
                if answer.status_code == 200 and answer.json()["accepted"] == count:
                    return resends
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"batch {first} never accepted"
            resends += 1
            time.sleep(0.5)

    def rss_mib(self) -> float:
        assert self.serve is not None
        for line in Path(f"/proc/{self.serve.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")


def delete_namespace(config: SystemsConfig, namespace: str) -> None:
    """Delete `config`'s topology in `namespace` from the broker (declared first, so a test
    that stopped before declaring it leaves nothing either)."""
    topology = config.topology(namespace)
    with bus.connect(RABBITMQ_URL) as broker:
        broker.declare(topology)
        broker.delete_topology(topology)


def tally(name: str, **counts: int) -> None:
    """Print a fault test's tally (pytest -s or the captured output of a failure shows it)."""
    print(f"[{name}] " + ", ".join(f"{key} {value}" for key, value in counts.items()), flush=True)
