"""`jghub rules` lists the cross-checks as the rules file disposes them; `jghub systems check`
checks the rules file with the systems file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from mappings.system import SYSTEMS_ROOT
from reference.rules import RULES

SHIPPED = SYSTEMS_ROOT.parents[1] / "config" / "systems.yaml"


def run(*arguments: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(arguments), env=env)
    return result.exit_code, result.output


def test_rules_lists_each_rule_with_its_disposition_and_statement(tmp_path: Path) -> None:
    code, output = run("rules", env={"COLUMNS": "400"})
    assert code == 0, output
    for name, rule in RULES.items():
        (row,) = [line for line in output.splitlines() if line.strip().startswith(name)]
        assert rule.default in row and rule.statement[:40] in row
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  random-inspection-has-plan: reject\n"
        "systems:\n  hrss-penalty:\n    random-inspection-has-plan: 'off'\n",
        encoding="utf-8",
    )
    code, output = run("rules", "--rules", str(rules), env={"COLUMNS": "400"})
    (row,) = [line for line in output.splitlines() if "random-inspection-has-plan" in line]
    assert "reject (default warn)" in row and "hrss-penalty: off" in row


def test_systems_check_lists_the_rules_files_problems_and_unknown_systems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  catalogue-in-force: warn\n", encoding="utf-8")
    monkeypatch.setenv("JGHUB_RULES_FILE", str(rules))
    code, output = run("systems", "check", str(SHIPPED))
    assert code == 1
    assert f"{rules}:2:3: [rules-file] field 'rules.catalogue-in-force': no rule is named" in output

    rules.write_text("systems:\n  hrss-penalti:\n    catalogue-item-in-force: warn\n")
    code, output = run("systems", "check", str(SHIPPED))
    assert code == 0, output
    assert f"{rules}:2: note: [rules-file] systems.hrss-penalti: the systems file" in output
    code, output = run("rules", env={"COLUMNS": "400"})
    assert code == 0 and "hrss-penalti: warn" in output


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_refuse_to_start_on_a_wrong_rules_file(
    command: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  inspector-certificate-valid: refuse\n", encoding="utf-8")
    process = subprocess.run(
        [sys.executable, "-m", "hub.cli", command, "--systems", str(SHIPPED)],
        env={
            **os.environ,
            "JGHUB_DATA_DIR": str(tmp_path / "var"),
            "JGHUB_AMQP_URL": "",
            "JGHUB_RULES_FILE": str(rules),
            "JGHUB_PORT": "0",
        },
        capture_output=True,
        timeout=120,
    )
    text = process.stderr.decode()
    assert process.returncode == 2, text
    assert "cannot start" in text and f"{rules}:2:3:" in text and "'refuse'" in text
