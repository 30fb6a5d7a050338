"""A three-node RabbitMQ cluster on loopback for the tests, with its own names, ports and folders.

Runnable as a script (`python tests/support/rabbit_cluster.py start|stop|status`) and importable
by tests (`running_cluster()`, a context manager that skips, or fails under CI=true, when the
cluster cannot form). It lives here rather than under deploy/ because it is a test instrument:
a production cluster runs one node per machine, from the operating system's service manager.

Each node is its own Erlang VM: `jc1@localhost` … `jc3@localhost` on AMQP ports 5711-5713 and
distribution ports 25711-25713 (JGHUB_TEST_CLUSTER_PORT moves the first one), data and logs in
one temporary folder per node. The machine's default node (rabbit@localhost, 5672) and any other
node are never touched: every command names one of these nodes, and a node is killed only by
the OS pid it reported itself. The nodes share the Erlang cookie of the rabbitmq user, so
`rabbitmqctl -n jc1@localhost …` reaches them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FIRST_PORT = int(os.environ.get("JGHUB_TEST_CLUSTER_PORT", "5711"))
NODE_PREFIX = os.environ.get("JGHUB_TEST_CLUSTER_PREFIX", "jc")
SIZE = 3
STATE_FILE = Path(tempfile.gettempdir()) / f"jghub-cluster-{NODE_PREFIX}.json"
"""Where `start` leaves the folder it used, so a later `stop` finds it."""

STARTUP_TIMEOUT_S = 120
"""Seconds a node may take to boot: three VMs starting at once on two shared cores are slow."""


class ClusterError(RuntimeError):
    """The cluster could not be started, formed or inspected; the message says which step."""


@dataclass(frozen=True)
class Node:
    """One node of the cluster: its Erlang name, its ports and its folder."""

    index: int
    base: Path

    @property
    def name(self) -> str:
        return f"{NODE_PREFIX}{self.index}@localhost"

    @property
    def port(self) -> int:
        return FIRST_PORT + self.index - 1

    @property
    def dist_port(self) -> int:
        return self.port + 20000

    @property
    def folder(self) -> Path:
        return self.base / f"{NODE_PREFIX}{self.index}"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def environment(self) -> dict[str, str]:
        folder = self.folder
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_PID_FILE": str(folder / "pid"),
            # No plugins: the management and Prometheus plugins would take the default node's
            # ports 15672 and 15692.
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "plugins"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),
        }


def ctl(node: Node, *args: str, timeout: float = 60.0, check: bool = True) -> str:
    """Run `rabbitmqctl -n node args…` and return its output; ClusterError when it fails."""
    command = ["rabbitmqctl", "-n", node.name, *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"`{' '.join(command)}` did not finish within {timeout:g} s") from None
    if check and done.returncode != 0:
        raise ClusterError(
            f"`{' '.join(command)}` failed ({done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-600:]}"
        )
    return done.stdout


@dataclass
class Cluster:
    """Three nodes under `base`; `start` boots and clusters them, `stop` ends and removes them."""

    base: Path
    nodes: list[Node] = field(init=False)

    def __post_init__(self) -> None:
        self.nodes = [Node(index, self.base) for index in range(1, SIZE + 1)]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ClusterError(f"{name!r} is not a node of this cluster ({self.names})")

    @property
    def names(self) -> list[str]:
        return [node.name for node in self.nodes]

    def start(self) -> None:
        """Boot the three nodes, join the second and third to the first, wait until all run."""
        if shutil.which("rabbitmq-server") is None:
            raise ClusterError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        for node in self.nodes:
            self.boot(node)
        for node in self.nodes:
            self.await_startup(node)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            ctl(node, "stop_app")
            ctl(node, "join_cluster", first.name)
            ctl(node, "start_app", timeout=STARTUP_TIMEOUT_S)
        self.await_running(self.names)

    def boot(self, node: Node) -> None:
        """Start `node` detached (again, after a kill: it rejoins from its own folder)."""
        node.folder.mkdir(parents=True, exist_ok=True)
        # The server drops to the rabbitmq user, which must own what it writes.
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.base)], check=False)
        done = subprocess.run(
            ["rabbitmq-server", "-detached"],
            env=node.environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise ClusterError(
                f"rabbitmq-server -detached for {node.name} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-600:]}"
            )

    def await_startup(self, node: Node) -> None:
        """Wait until `node` runs. `rabbitmq-server -detached` returns before the VM has
        registered its name, and `await_startup` gives up at once on a name it cannot find, so
        it is asked again until the node answers or STARTUP_TIMEOUT_S pass."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            left = max(1, round(deadline - time.monotonic()))
            try:
                ctl(node, "await_startup", "--timeout", str(left), timeout=left + 30)
                return
            except ClusterError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(1)

    def running(self, via: Node | None = None) -> list[str]:
        """The names of the nodes `via` (default: the first that answers) sees running."""
        candidates = [via] if via is not None else self.nodes
        problem = ""
        for node in candidates:
            try:
                status = json.loads(ctl(node, "cluster_status", "--formatter", "json", timeout=30))
            except (ClusterError, json.JSONDecodeError) as exc:
                problem = str(exc)
                continue
            return sorted(status.get("running_nodes", []))
        raise ClusterError(f"no node of the cluster answers: {problem}")

    def await_running(self, names: list[str], timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until exactly `names` run (ClusterError saying which are missing otherwise)."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(ClusterError):
                seen = self.running()
                if seen == sorted(names):
                    return
            time.sleep(1)
        raise ClusterError(f"the cluster runs {seen}, not {sorted(names)}, after {timeout:g} s")

    def os_pid(self, node: Node) -> int:
        """The OS pid of `node`'s Erlang VM, as the node itself reports it."""
        output = ctl(node, "eval", "os:getpid().", timeout=30)
        return int(output.strip().strip('"'))

    def kill(self, node: Node) -> int:
        """kill -9 `node`'s VM (only that pid); return the pid."""
        pid = self.os_pid(node)
        os.kill(pid, signal.SIGKILL)
        return pid

    def queues(self, via: Node | None = None) -> dict[str, dict[str, object]]:
        """Every queue by name with its `leader` and `members` (quorum queues), read through
        `rabbitmqctl list_queues` on `via` (default: the first node that answers)."""
        candidates = [via] if via is not None else self.nodes
        problem = ""
        for node in candidates:
            try:
                output = ctl(
                    node, "list_queues", "name", "type", "leader", "members", "--formatter", "json"
                )
                return {row["name"]: row for row in json.loads(output)}
            except (ClusterError, json.JSONDecodeError) as exc:
                problem = str(exc)
        raise ClusterError(f"cannot list the queues: {problem}")

    def stop(self) -> None:
        """Stop the nodes (each by its name) and delete their folders; stopping a node that is
        already down is not an error."""
        for node in reversed(self.nodes):
            ctl(node, "stop", timeout=60, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    """A started cluster, stopped and removed afterwards; skips (fails under CI=true) when it
    cannot form."""
    from broker_support import skip_or_fail

    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        skip_or_fail("rabbitmq-server is not installed: no RabbitMQ cluster to test on")
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="jghub-cluster-")))
    try:
        try:
            cluster.start()
        except ClusterError as exc:
            skip_or_fail(f"the three-node RabbitMQ cluster did not form: {exc}")
        yield cluster
    finally:
        cluster.stop()


def main(argv: list[str]) -> int:
    """start | stop | status, for a person at a shell."""
    command = argv[1] if len(argv) > 1 else ""
    if command == "start":
        cluster = Cluster(Path(tempfile.mkdtemp(prefix="jghub-cluster-")))
        STATE_FILE.write_text(json.dumps({"base": str(cluster.base)}))
        try:
            cluster.start()
        except ClusterError as exc:
            print(f"the cluster did not form: {exc}", file=sys.stderr)
            return 1
        print("JGHUB_AMQP_URL=" + ",".join(cluster.urls))
        return 0
    if command in ("stop", "status"):
        if not STATE_FILE.exists():
            print(f"no cluster started from here ({STATE_FILE} is missing)", file=sys.stderr)
            return 1
        cluster = Cluster(Path(json.loads(STATE_FILE.read_text())["base"]))
        if command == "stop":
            cluster.stop()
            STATE_FILE.unlink()
            return 0
        try:
            print("running:", " ".join(cluster.running()))
        except ClusterError as exc:
            print(exc, file=sys.stderr)
            return 1
        print("JGHUB_AMQP_URL=" + ",".join(cluster.urls))
        return 0
    print(f"usage: {argv[0]} start|stop|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
