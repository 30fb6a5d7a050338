"""`jghub serve` and `jghub worker` start alike: the same shared options, and a configuration
mistake is `cannot start: <why>` with exit 2 before anything runs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from hub_harness import SECRETS, TEST_SYSTEMS
from rich.console import Console

from hub.cli import app
from hub.commands.options import hub_settings
from hub.commands.startup import exit_2_on_configuration_error
from hub.settings import HubSettings
from hub.worker import WorkerError
from mappings import MappingError


def _options(command: str) -> dict[str, tuple[list[str], object, str | None]]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return {
        param.name or "": (param.opts, param.default, getattr(param, "help", None))
        for param in group.commands[command].params
    }


def test_serve_and_worker_take_the_shared_options_alike() -> None:
    serve, worker = _options("serve"), _options("worker")
    for name, opts in (
        ("systems_file", ["--systems"]),
        ("data_dir", ["--data-dir"]),
        ("log_level", ["--log-level"]),
    ):
        assert serve[name] == worker[name]
        assert serve[name][0] == opts
    assert serve["log_level"][1] == "info"


def test_options_left_out_keep_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JGHUB_DATA_DIR", "/srv/jghub")
    settings = hub_settings(data_dir=None, port=9000)
    assert settings.data_dir == Path("/srv/jghub")
    assert settings.port == 9000
    assert settings.systems_file == HubSettings().systems_file


def test_a_configuration_mistake_is_cannot_start_and_exit_2() -> None:
    said = io.StringIO()
    console = Console(file=said, highlight=False, soft_wrap=True, color_system=None)
    with pytest.raises(typer.Exit) as stopped, exit_2_on_configuration_error(console):
        raise MappingError("no column 'code'", file="tables/regions.csv", line=3)
    assert stopped.value.exit_code == 2
    assert said.getvalue().startswith("cannot start: ")
    assert "no column 'code'" in said.getvalue()


def test_only_the_errors_named_are_a_configuration_mistake() -> None:
    console = Console(file=io.StringIO())
    with pytest.raises(typer.Exit), exit_2_on_configuration_error(console, WorkerError):
        raise WorkerError("no target system national")
    with pytest.raises(WorkerError), exit_2_on_configuration_error(console):
        raise WorkerError("no target system national")
    with pytest.raises(RuntimeError), exit_2_on_configuration_error(console, WorkerError):
        raise RuntimeError("a bug is not a configuration mistake")


def test_worker_refuses_to_start_on_a_broken_configuration(tmp_path: Path) -> None:
    systems = tmp_path / "a-folder-name-long-enough-to-push-the-message-past-eighty-columns.yaml"
    broken = TEST_SYSTEMS.replace("adapter: xml_push", "adapter: xml_pushh", 1)
    systems.write_text(broken, encoding="utf-8")
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "xml_pushh" in text)
    process = subprocess.run(
        [sys.executable, "-m", "hub.cli", "worker", "--systems", str(systems), "--no-pollers"],
        env={
            **os.environ,
            **SECRETS,
            "JGHUB_DATA_DIR": str(tmp_path / "var"),
            "JGHUB_AMQP_URL": "",
        },
        capture_output=True,
        timeout=60,
    )
    assert process.returncode == 2
    text = process.stderr.decode()
    assert "cannot start" in text and "no adapter named 'xml_pushh'" in text
    # One line however long: a log reader greps for the file and line whole.
    assert f"{systems}:{line}:" in text


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_setting_breaking_its_rule_is_named_and_exit_2_without_its_value(
    command: str, tmp_path: Path
) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "hub.cli", command],
        env={
            **os.environ,
            "JGHUB_DATA_DIR": str(tmp_path / "var"),
            "JGHUB_REQUIRE_SECRETS": "maybe-hunter2",
        },
        capture_output=True,
        timeout=60,
    )
    assert process.returncode == 2
    text = process.stderr.decode()
    assert "cannot start: the setting JGHUB_REQUIRE_SECRETS is not valid" in text
    assert "valid boolean" in text
    # No traceback, and no value echoed: a setting such as the AMQP URL may hold a password.
    assert "Traceback" not in text and "hunter2" not in text
