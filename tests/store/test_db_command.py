"""`jghub db upgrade` and `jghub db current`, and `jghub worker` refusing a store that is behind
(PostgreSQL) while the embedded store needs no step at all."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_support import fresh_store_url
from typer.testing import CliRunner

from hub.cli import app
from store import schema


@pytest.fixture
def postgresql_url(tmp_path: Path) -> Iterator[str]:
    with fresh_store_url("postgresql", tmp_path) as url:
        yield url


@pytest.mark.postgresql
def test_a_worker_refuses_a_store_behind_until_it_is_upgraded(
    postgresql_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JGHUB_DATABASE_URL", postgresql_url)
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]

    behind = runner.invoke(app, ["db", "current", *data])
    assert behind.exit_code == 1
    assert f"schema none; this hub needs {schema.head()}" in behind.output

    # A process of its own: a worker in this one would find metrics other tests observed.
    refused = subprocess.run(
        [sys.executable, "-m", "hub.cli", "worker", "--no-pollers", "--targets", "national", *data],
        env={**os.environ, "JGHUB_DATABASE_URL": postgresql_url},
        capture_output=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    # One line says why (the log lines before it are the worker's start).
    (line,) = [line for line in refused.stderr.decode().splitlines() if "cannot start" in line]
    assert line.startswith("cannot start: the store postgresql+psycopg://")
    assert "run `jghub db upgrade`" in line

    upgraded = runner.invoke(app, ["db", "upgrade", *data])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"schema {schema.head()} (current)" in upgraded.output
    current = runner.invoke(app, ["db", "current", *data])
    assert current.exit_code == 0
    assert f"schema {schema.head()}; this hub needs {schema.head()}" in current.output


def test_the_embedded_store_needs_no_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JGHUB_DATABASE_URL", raising=False)
    runner = CliRunner()
    before = runner.invoke(app, ["db", "current", "--data-dir", str(tmp_path)])
    assert before.exit_code == 1  # nothing was opened there yet
    upgraded = runner.invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)])
    assert upgraded.exit_code == 0, upgraded.output
    assert (tmp_path / "store.sqlite3").is_file()


def test_db_upgrade_names_a_database_that_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JGHUB_DATABASE_URL", "postgresql://hub:s3cret@127.0.0.1:1/jghub")
    failed = CliRunner().invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)])
    assert failed.exit_code == 2
    assert "cannot upgrade: the store postgresql+psycopg://hub:***@127.0.0.1:1/jghub" in (
        failed.output
    )
    assert "s3cret" not in failed.output
