"""Every shipped sample passes `jghub mappings test`; a mismatch shows a diff and fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hub.cli import app
from mappings.samples import run_samples, unread_source_fields
from mappings.system import SYSTEMS_ROOT, load_system

runner = CliRunner(env={"COLUMNS": "200"})


def test_every_shipped_sample_passes() -> None:
    result = runner.invoke(app, ["mappings", "test"])
    assert result.exit_code == 0, result.output
    assert "FAILED" not in result.output
    outcomes = [
        outcome
        for folder in sorted(SYSTEMS_ROOT.iterdir())
        for outcome in run_samples(load_system(folder))
    ]
    assert len(outcomes) >= 19
    assert f"{len(outcomes)} of {len(outcomes)} samples passed" in result.output
    # Two systems, each with valid samples and at least three kinds of invalid ones.
    for system in ("eco-env-penalty", "grassroots-platform"):
        names = [o.sample.name for o in outcomes if o.system == system]
        assert any(name.startswith("valid") for name in names)
        kinds = set()
        for outcome in outcomes:
            if outcome.system == system and outcome.sample.name.startswith("invalid"):
                expected = json.loads(outcome.expected.read_text(encoding="utf-8"))
                kinds.add(expected["rejected"]["kind"] if "rejected" in expected else "record")
        assert len(kinds) >= 3, (system, kinds)


def test_a_mismatch_shows_a_unified_diff_and_exits_1(system_copy: Path) -> None:
    expected = system_copy / "eco-env-penalty/expected/case_batch/valid-batch.json"
    expected.write_text(
        expected.read_text(encoding="utf-8").replace('"250000.00"', '"25.00"'), encoding="utf-8"
    )
    result = runner.invoke(app, ["mappings", "test", "eco-env-penalty", "--root", str(system_copy)])
    assert result.exit_code == 1
    assert "FAILED eco-env-penalty case_batch valid-batch.xml" in result.output
    assert '-        "fine_amount": "25.00",' in result.output
    assert '+        "fine_amount": "250000.00",' in result.output
    assert "--- expected/case_batch/valid-batch.json" in result.output


def test_a_missing_expected_file_fails_and_update_writes_it(system_copy: Path) -> None:
    expected = system_copy / "grassroots-platform/expected/event_report/valid-events.json"
    original = expected.read_text(encoding="utf-8")
    expected.unlink()
    arguments = ["mappings", "test", "grassroots-platform", "--root", str(system_copy)]
    failed = runner.invoke(app, arguments)
    assert failed.exit_code == 1 and "no expected file" in failed.output
    written = runner.invoke(app, [*arguments, "--update"])
    assert written.exit_code == 0
    assert json.loads(expected.read_text(encoding="utf-8")) == json.loads(original)


def test_unread_source_fields_are_reported() -> None:
    penalty = unread_source_fields(load_system(SYSTEMS_ROOT / "eco-env-penalty"))
    assert penalty == {
        "case_batch": ["/cf:AJPC/cf:AJ/dsr:DSR/dsr:LXDH"],
        "risk_feedback": [],
        "task_feedback": [],
    }
    events = unread_source_fields(load_system(SYSTEMS_ROOT / "grassroots-platform"))
    assert "data.events[].reporter.mobile" in events["event_report"]
    assert "data.events[].reporter.name" not in events["event_report"]
    assert "data.events[].location.lng" not in events["event_report"]
    result = runner.invoke(app, ["mappings", "test", "eco-env-penalty"])
    assert "/cf:AJPC/cf:AJ/dsr:DSR/dsr:LXDH" in result.output


def test_mappings_test_runs_as_a_real_command() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "hub.cli", "mappings", "test", "grassroots-platform"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "samples passed: passed" in completed.stdout


def test_run_prints_envelopes_and_exits_0_on_a_good_payload() -> None:
    payload = SYSTEMS_ROOT / "eco-env-penalty/samples/case_batch/valid-batch.xml"
    result = runner.invoke(
        app, ["mappings", "run", "eco-env-penalty", str(payload), "--json", "-t", "case_batch"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [e["operation"] for e in data["envelopes"]] == ["insert", "update", "delete"]
    assert data["errors"] == []


def test_run_prints_errors_and_exits_1() -> None:
    payload = SYSTEMS_ROOT / "grassroots-platform/samples/event_report/invalid-events.json"
    result = runner.invoke(
        app, ["mappings", "run", "grassroots-platform", str(payload), "-t", "event_report"]
    )
    assert result.exit_code == 1
    assert "rule 'mandatory'" in result.output
    assert "data.events[1]" in result.output
    assert "1 envelope(s), 7 error(s) in 5 record(s)" in result.output


def test_run_reports_a_rejected_payload() -> None:
    payload = SYSTEMS_ROOT / "eco-env-penalty/samples/case_batch/invalid-encoding.xml"
    result = runner.invoke(
        app, ["mappings", "run", "eco-env-penalty", str(payload), "-t", "case_batch"]
    )
    assert result.exit_code == 1
    assert "payload rejected" in result.output and "byte offset 330" in result.output


def test_run_renders_an_outbound_type() -> None:
    record = SYSTEMS_ROOT / "grassroots-platform/samples/event_feedback/closed-event.json"
    result = runner.invoke(
        app, ["mappings", "run", "grassroots-platform", str(record), "--type", "event_feedback"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"] == "FINISHED"


def test_run_needs_a_type_when_there_are_several() -> None:
    record = SYSTEMS_ROOT / "grassroots-platform/samples/event_feedback/closed-event.json"
    result = runner.invoke(
        app, ["mappings", "run", "grassroots-platform", str(record), "-t", "nope"]
    )
    assert result.exit_code == 2
    assert "no message type 'nope'" in result.output


def test_functions_are_documented_from_their_specs() -> None:
    result = runner.invoke(app, ["mappings", "functions"])
    assert result.exit_code == 0
    for name in ("trim", "halfwidth", "date", "datetime", "wan_yuan", "lookup", "split"):
        assert f"\n{name}" in "\n" + result.output
    single = runner.invoke(app, ["mappings", "functions", "lookup"])
    assert "reverse" in single.output and "Look up a standard code" in single.output
    assert runner.invoke(app, ["mappings", "functions", "nope"]).exit_code == 2


def test_a_broken_mapping_makes_test_exit_1_with_its_location(system_copy: Path) -> None:
    mapping = system_copy / "eco-env-penalty/case_batch.yaml"
    mapping.write_text(
        mapping.read_text(encoding="utf-8").replace("{lookup: case_source}", "{lookup: nope}"),
        encoding="utf-8",
    )
    result = runner.invoke(app, ["mappings", "test", "--root", str(system_copy)])
    assert result.exit_code == 1
    assert "case_batch.yaml:" in result.output and "no code table 'nope'" in result.output


def test_the_language_reference_is_printed_from_the_models() -> None:
    result = runner.invoke(app, ["mappings", "language"])
    assert result.exit_code == 0
    for key in ("message_type", "records", "namespaces", "record_id", "template", "separator"):
        assert key in result.output
    assert "FieldRule" in result.output and "exactly one source" in result.output


def test_ignore_warnings_are_printed_and_do_not_fail_the_samples(system_copy: Path) -> None:
    mapping = system_copy / "culture-penalty/case_data.yaml"
    text = mapping.read_text(encoding="utf-8")
    mapping.write_text(
        text.replace(
            "fields:\n",
            "ignore:\n  - {path: /CaseData/@sender, reason: known from the channel}\n"
            "  - /CaseData/Case/@fine\n  - /CaseData/@checksum\nfields:\n",
            1,
        ),
        encoding="utf-8",
    )
    result = runner.invoke(app, ["mappings", "test", "culture-penalty", "--root", str(system_copy)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "/CaseData/@sender" not in output.split("unread culture-penalty case_data")[1][:200]
    assert (
        "ignore culture-penalty case_data: ignored /CaseData/Case/@fine: a rule reads it" in output
    )
    assert "ignore culture-penalty case_data: ignored /CaseData/@checksum: no sample" in output
