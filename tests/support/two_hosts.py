"""The hub on two hosts, for the fault tests: two `serve` and two `worker` processes, each with a
data folder of its own (no shared file), one PostgreSQL store and one RabbitMQ namespace.

    with TwoHosts(tmp_path, database_url) as hosts:
        hosts.serves["A"].base                   # http://127.0.0.1:PORT
        hosts.kill(hosts.serves["B"])             # kill -9
        hosts.journal_verify()                   # `jghub journal verify` on the store

The systems are the fault tests' (`fault_pipeline.fault_systems`: eco-env-penalty pushes XML
case batches, national receives every penalty case at the `Sink`) and two more:
- `pull-dept`, a pull-only target of every penalty case (outbox), pulled through both serves;
- `emergency-penalty`, a paged JSON source read by the workers' pollers: a `SimulatedSource`
  in this process that each worker reads with a key of its own (`JGHUB_TWOHOSTS_SOURCE_KEY`,
  "worker-A" or "worker-B"), so its `reads` say which worker read which page.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from broker_support import RABBITMQ_URL, require_rabbitmq
from fault_pipeline import ECO_KEY, JSON_KEY, Sink, delete_namespace, fault_systems
from serve_process import REPOSITORY, hub_environment, stop, wait_ready

import bus
from hub.simulators.server import LoopbackServer, free_port
from hub.simulators.sources import SimulatedSource
from hub.simulators.traffic import SystemTraffic
from hub.systems import SystemsConfig, parse_systems
from mappings import SYSTEMS_ROOT, load_system

PULL_SYSTEM, SOURCE_SYSTEM = "pull-dept", "emergency-penalty"
PULL_KEY = "two-hosts-pull-key"
SOURCE_KEY_ENV = "JGHUB_TWOHOSTS_SOURCE_KEY"
PAGE_SIZE = 20
LEASE_S = 3.0
"""Outbox and poller leases: short, so a killed host's leases are taken over within the test."""


def two_hosts_systems(sink_url: str, source_url: str) -> dict[str, Any]:
    """The fault tests' systems, a pull-only target and a polled source (module docstring)."""
    pull_target = {
        "id": PULL_SYSTEM,
        "name_zh": "只拉取的测试部门",
        "mapping": "national",
        "auth": {"scheme": "api_key", "key_env": "JGHUB_TWOHOSTS_KEY_PULL"},
        "outbound": {"adapter": "outbox", "render": {"penalty_case": "cloudevent"}},
        "routes": ["penalty_case.#"],
        "retry": {"in_process_attempts": 2, "tiers": [0.5, 1.0]},
    }
    polled_source = {
        "id": SOURCE_SYSTEM,
        "name_zh": "省应急管理厅安全生产行政执法系统",
        "auth": {"scheme": "api_key", "key_env": "JGHUB_TWOHOSTS_KEY_UNUSED"},
        "inbound": [
            {
                "adapter": "rest_poller",
                "message_type": "case_page",
                "options": {
                    "url": f"{source_url}/openapi/v1/punish/cases",
                    "since_param": "updateTimeBegin",
                    "page_param": "pageNo",
                    "page_size_param": "pageSize",
                    "page_size": PAGE_SIZE,
                    "time_format": "yyyy-MM-dd HH:mm:ss",
                    "records_path": "result.records",
                    "total_path": "result.total",
                    "record_time_path": "updateTime",
                    "record_id_path": "id",
                    "answer_check": {"path": "code", "success": [200], "message_path": "msg"},
                    "api_key_env": SOURCE_KEY_ENV,
                    "interval_s": 0.2,
                    "backoff_initial_s": 0.2,
                    "backoff_max_s": 1,
                    "initial_since": "2020-01-01T00:00:00+08:00",
                },
            }
        ],
    }
    return fault_systems(sink_url, tiers=[0.5, 1.0], extra_systems=[pull_target, polled_source])


@dataclass
class Host:
    """One hub process: `serve` (with its `base` URL) or `worker`, and its own data folder."""

    name: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log: IO[bytes]
    base: str = ""
    killed: bool = False

    @property
    def said(self) -> str:
        """The end of what the process wrote to stderr."""
        self.log.seek(0)
        return self.log.read()[-3000:].decode("utf-8", "replace")


class TwoHosts:
    """Two serves (A, B) and two workers (A, B) on one store and one RabbitMQ namespace."""

    def __init__(self, folder: Path, database_url: str) -> None:
        require_rabbitmq()
        self.folder = folder
        self.database_url = database_url
        self.namespace = f"h{uuid.uuid4().hex[:10]}"
        self.sink = Sink()
        source_port = free_port()
        self.document = two_hosts_systems(self.sink.url, f"http://127.0.0.1:{source_port}")
        self.config: SystemsConfig = parse_systems(self.document)
        source_mappings = load_system(SYSTEMS_ROOT / SOURCE_SYSTEM)
        sample = SystemTraffic(source_mappings, "case_page").batch(1).body
        self.source_uri = source_mappings.translate("case_page", sample).envelopes[0].source
        """The CloudEvents `source` of the records the pollers read."""
        self.source = SimulatedSource(
            self.config.system(SOURCE_SYSTEM),
            source_mappings,
            records=PAGE_SIZE,
            api_keys={"worker-A", "worker-B"},
        )
        self._source_server = LoopbackServer(self.source.app, port=source_port, name="source")
        self.systems_file = folder / "systems.json"
        self.systems_file.write_text(json.dumps(self.document, ensure_ascii=False), "utf-8")
        self.serves: dict[str, Host] = {}
        self.workers: dict[str, Host] = {}

    def environment(self, data_dir: Path, **more: str) -> dict[str, str]:
        """What every process of the hub gets, with its own data folder."""
        return hub_environment(
            JGHUB_FAULT_KEY_ECO=ECO_KEY,
            JGHUB_FAULT_KEY_JSON=JSON_KEY,
            JGHUB_FAULT_KEY_NATIONAL="unused",
            JGHUB_TWOHOSTS_KEY_PULL=PULL_KEY,
            JGHUB_TWOHOSTS_KEY_UNUSED="unused",
            JGHUB_SYSTEMS_FILE=str(self.systems_file),
            JGHUB_DATA_DIR=str(data_dir),
            JGHUB_NAMESPACE=self.namespace,
            JGHUB_AMQP_URL=RABBITMQ_URL,
            JGHUB_DATABASE_URL=self.database_url,
            JGHUB_OUTBOX_LEASE_S=str(LEASE_S),
            # The poller's lease on the store (issue #14); a hub without it ignores it.
            JGHUB_POLLER_LEASE_S=str(LEASE_S),
            **more,
        )

    def jghub(
        self, *arguments: str, data_dir: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a `jghub` command on the store; its exit code and output."""
        folder = data_dir or self.folder / "cli"
        folder.mkdir(exist_ok=True)
        return subprocess.run(
            [sys.executable, "-m", "hub.cli", *arguments],
            env=self.environment(folder),
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def _spawn(self, name: str, *arguments: str, **env: str) -> Host:
        data_dir = self.folder / name
        data_dir.mkdir()
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__
        process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", *arguments, "--log-level", "warning"],
            env=self.environment(data_dir, **env),
            cwd=REPOSITORY,
            stderr=log,
        )
        return Host(name, process, data_dir, log)

    def __enter__(self) -> TwoHosts:
        upgraded = self.jghub("db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        self._source_server.start()
        for name in ("A", "B"):
            port = free_port()
            host = self._spawn(f"serve-{name}", "serve", "--port", str(port))
            host.base = f"http://127.0.0.1:{port}"
            self.serves[name] = host
        for host in self.serves.values():
            wait_ready(host.base, host.process, log=host.log)
        for name in ("A", "B"):
            self.workers[name] = self._spawn(
                f"worker-{name}", "worker", **{SOURCE_KEY_ENV: f"worker-{name}"}
            )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for host in [*self.workers.values(), *self.serves.values()]:
            stop(host.process)
            host.log.close()
        self._source_server.stop()
        self.sink.close()
        delete_namespace(self.config, self.namespace)

    def kill(self, host: Host) -> None:
        """kill -9, and wait for the process to be gone."""
        os.kill(host.process.pid, signal.SIGKILL)
        host.process.wait()
        host.killed = True

    def crashed(self) -> list[str]:
        """Processes that exited though nobody killed them, with what they said."""
        return [
            f"{host.name} exited with {host.process.returncode}: {host.said}"
            for host in [*self.serves.values(), *self.workers.values()]
            if not host.killed and host.process.poll() is not None
        ]

    def dead_letters(self, system: str) -> set[str]:
        """The ids of the messages dead-lettered for `system`."""
        with bus.connect(RABBITMQ_URL) as broker:
            broker.declare(self.config.topology(self.namespace))
            return {letter.message.id for letter in broker.dead_letters(system, limit=100_000)}
