"""`jghub serve` as a real process for the tests: started with its environment, ready on /ready.

    with serve_process(env) as base:        # "http://127.0.0.1:PORT"
        httpx.post(f"{base}/systems/...", ...)

The process runs this repository's hub with the test's interpreter (the project's venv); it is
asked to stop with SIGTERM when the block ends, and killed if it does not within 30 s.
`wait_ready` and `stop` serve tests that start their processes themselves.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from hub.simulators.server import free_port

REPOSITORY = Path(__file__).resolve().parents[2]


def hub_environment(**settings: str) -> dict[str, str]:
    """This process's environment without its JGHUB_* settings and metrics folder, plus
    `settings` (JGHUB_* variables and the systems' secrets)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("JGHUB_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(settings)
    return env


def wait_ready(
    base: str,
    process: subprocess.Popen[bytes],
    *,
    timeout: float = 60.0,
    log: IO[bytes] | None = None,
) -> None:
    """Return once `base`/ready answers 200; RuntimeError (with the end of `log`, when given)
    if the process exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            said = ""
            if log is not None:
                log.seek(0)
                said = log.read()[-2000:].decode("utf-8", "replace")
            raise RuntimeError(f"jghub serve exited with {process.returncode}: {said}")
        if time.monotonic() > deadline:
            raise RuntimeError("jghub serve did not become ready")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then kill if it has not exited within 30 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serve_process(
    env: dict[str, str],
    *,
    ready_timeout: float = 60.0,
    open_files: int | None = None,
    log_level: str = "warning",
    log: IO[bytes] | None = None,
) -> Iterator[str]:
    """Run `jghub serve` with `env` on a free port until the block ends; yield its base URL.

    `open_files` lowers the process's soft limit of open files (RLIMIT_NOFILE). Its log
    (stderr, at `log_level`) goes to `log` when given (a file the test reads), else to a
    temporary file shown only if it fails to start."""
    with serve_processes(
        env,
        1,
        ready_timeout=ready_timeout,
        open_files=open_files,
        log_level=log_level,
        logs=None if log is None else [log],
    ) as (base,):
        yield base


@contextmanager
def serve_processes(
    env: dict[str, str],
    count: int,
    *,
    ready_timeout: float = 60.0,
    open_files: int | None = None,
    log_level: str = "warning",
    logs: list[IO[bytes]] | None = None,
) -> Iterator[list[str]]:
    """Run `count` `jghub serve` processes with `env` until the block ends; yield their base
    URLs. They are all started before the first is waited for, so they start side by side (two
    cost one start, not two); otherwise as `serve_process`."""

    def limit_open_files() -> None:
        if open_files is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))

    started: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
    # Each log goes to a file, not a pipe: a pipe nobody reads would stall it once full.
    with contextlib.ExitStack() as files:
        try:
            for number in range(count):
                port = free_port()
                written = (
                    logs[number]
                    if logs is not None
                    else files.enter_context(tempfile.TemporaryFile())
                )
                command = [sys.executable, "-m", "hub.cli", "serve", "--port", str(port)]
                process = subprocess.Popen(
                    [*command, "--log-level", log_level],
                    env=env,
                    cwd=REPOSITORY,
                    stderr=written,
                    preexec_fn=limit_open_files,
                )
                started.append((f"http://127.0.0.1:{port}", process, written))
            for base, process, written in started:
                wait_ready(base, process, timeout=ready_timeout, log=written)
            yield [base for base, _, _ in started]
        finally:
            for _, process, _ in started:
                stop(process)
