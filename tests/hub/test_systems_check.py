"""`jghub systems check`, and the load-time refusals it lists: push channels feeding a mapping of
another syntax, message types no mapping has, flows without their mappings (issue #17)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.registry import adapter_class
from hub.cli import app
from hub.systems import SystemsConfigError, load_systems
from mappings import load_all
from mappings.system import SYSTEMS_ROOT

SHIPPED = SYSTEMS_ROOT.parents[1] / "config" / "systems.yaml"
HEAD = (
    "systems:\n"
    "  - id: {system}\n"
    "    name_zh: 测试系统\n"
    "    auth: {{scheme: api_key, key_env: JGHUB_TEST_UNUSED}}\n"
    "    inbound:\n"
    "      - {{adapter: {adapter}, message_type: {message_type}}}\n"
)


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the first line of `path` holding `text`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def check(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["systems", "check", *arguments])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("adapter", "hands"), [("rest_push", "json"), ("xml_push", "xml"), ("soap_push", "xml")]
)
def test_each_push_adapter_declares_the_syntax_it_hands_the_mapping(
    adapter: str, hands: str
) -> None:
    assert adapter_class(adapter).payload_format == hands


@pytest.mark.parametrize(
    ("adapter", "system", "message_type", "hands", "reads"),
    [
        ("rest_push", "culture-penalty", "case_data", "JSON", "XML"),
        ("xml_push", "health-penalty", "case_push", "XML", "JSON"),
        ("soap_push", "agri-penalty", "case_records", "XML", "JSON"),
    ],
)
def test_a_push_channel_feeding_a_mapping_of_another_syntax_is_refused_at_load(
    tmp_path: Path, adapter: str, system: str, message_type: str, hands: str, reads: str
) -> None:
    systems_file = tmp_path / "systems.yaml"
    systems_file.write_text(
        HEAD.format(system=system, adapter=adapter, message_type=message_type), encoding="utf-8"
    )
    config = load_systems(systems_file)
    with pytest.raises(SystemsConfigError) as refused:
        config.bind_mappings(load_all())
    (problem,) = refused.value.problems
    mapping = SYSTEMS_ROOT / system / f"{message_type}.yaml"
    assert problem.rule == "payload-format"
    assert str(problem).startswith(f"{systems_file}:6:")
    assert f"adapter {adapter} hands {hands} payloads" in problem.reason
    assert f"{mapping}:{line_of(mapping, 'format:')}" in problem.reason
    assert f"reads {reads}" in problem.reason and repr(message_type) in problem.reason


def test_the_shipped_configuration_is_clean() -> None:
    code, output = check(str(SHIPPED))
    assert code == 0, output
    summary = output.strip().splitlines()[-1]
    assert summary.startswith(f"{SHIPPED}: clean, 0 notes")
    systems = len(load_systems(SHIPPED).systems)
    assert f"({systems} systems, " in summary

    code, output = check(str(SHIPPED), "--json")
    report = json.loads(output)
    assert code == 0 and report["clean"] and report["findings"] == []
    assert report["systems"] == systems and report["mapping_folders"] == len(load_all())


def test_the_shipped_configuration_is_clean_on_a_host_holding_every_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run where the hub runs, with each system's secret in the environment: the signing
    systems' gatekeeper gets its replay cache, and the check still builds every adapter (it
    stopped with a traceback, 'the gatekeeper needs a replay cache')."""
    named = re.findall(r"\b(JGHUB_[A-Z_]+)\b", SHIPPED.read_text(encoding="utf-8"))
    variables = {name for name in named if name != "JGHUB_REQUIRE_SECRETS"}  # not a secret
    for variable in variables:
        monkeypatch.setenv(variable, f"secret-of-{variable.lower()}-0123456789")
    code, output = check(str(SHIPPED))
    assert code == 0, output
    assert output.strip().splitlines()[-1].startswith(f"{SHIPPED}: clean, 0 notes")


def broken_copy(tmp_path: Path) -> Path:
    """The shipped file with four mistakes, each on a line of its own."""
    text = SHIPPED.read_text(encoding="utf-8")
    for wrong, right in (
        (
            "{adapter: xml_push, message_type: case_data, options: {default_charset: GBK}}",
            "{adapter: rest_push, message_type: case_data}",
        ),
        (
            "{adapter: rest_push, message_type: case_push}",
            "{adapter: rest_push, message_type: case_psuh}",
        ),
        (
            "{adapter: soap_push, message_type: case_report, options: {operation: ReportCases}}",
            "{adapter: soap_push, message_type: case_report, options: {operation: ReportCasez}}",
        ),
        ("render: {complaint: handling_result}", "render: {complaint: handling_resul}"),
    ):
        assert text.count(wrong) == 1, wrong
        text = text.replace(wrong, right)
    broken = tmp_path / "systems.yaml"
    broken.write_text(text, encoding="utf-8")
    return broken


def test_a_broken_copy_lists_every_problem_with_its_line_and_rule(tmp_path: Path) -> None:
    broken = broken_copy(tmp_path)
    code, output = check(str(broken))
    assert code == 1
    lines = output.strip().splitlines()
    # Each rule's line, and the names its message must give (the system or mapping, the type).
    expected = {
        "payload-format": (
            line_of(broken, "message_type: case_data}"),
            ("adapter rest_push", "culture-penalty/case_data.yaml:"),
        ),
        "channel-message-type": (
            line_of(broken, "case_psuh"),
            ("'health-penalty'", "'case_psuh'"),
        ),
        "adapter": (
            line_of(broken, "ReportCasez"),
            ("natres-penalty", "has no operation 'ReportCasez'"),
        ),
        "render-message-type": (
            line_of(broken, "handling_resul}"),
            ("'complaint-platform'", "'handling_resul'"),
        ),
    }
    for rule, (line, words) in expected.items():
        found = [text for text in lines if f"[{rule}]" in text]
        assert len(found) == 1, (rule, lines)
        assert found[0].startswith(f"{broken}:{line}:"), found[0]
        assert all(word in found[0] for word in words), found[0]
    assert lines[-1].startswith(f"{broken}: 4 problems, 0 notes")

    report = json.loads(check(str(broken), "--json")[1])
    assert not report["clean"] and report["problems"] == 4
    assert {f["rule"] for f in report["findings"]} == set(expected)
    assert all(f["file"] == str(broken) and f["line"] for f in report["findings"])


def test_broken_mapping_folders_and_undocumented_flows_are_listed_with_their_files(
    tmp_path: Path,
) -> None:
    root = tmp_path / "mappings"
    shutil.copytree(SYSTEMS_ROOT, root)
    # A folder that does not load: its mapping file names a key the language lacks.
    case_batch = root / "eco-env-penalty" / "case_batch.yaml"
    case_batch.write_text(
        case_batch.read_text(encoding="utf-8") + "colour: blue\n", encoding="utf-8"
    )
    # A flow declared without its mappings: the credit platform takes no tasks.
    credit = root / "credit-platform" / "system.yaml"
    credit.write_text(
        credit.read_text(encoding="utf-8") + "flows: [collaboration_task]\n", encoding="utf-8"
    )
    code, output = check(str(SHIPPED), "--mappings", str(root))
    assert code == 1
    lines = output.strip().splitlines()
    (mapping,) = [text for text in lines if "[mapping]" in text]
    assert mapping.startswith(f"{case_batch}:{line_of(case_batch, 'colour')}:")
    assert "colour" in mapping
    (flow,) = [text for text in lines if "[flow-mappings]" in text]
    assert flow.startswith(f"{credit}:{line_of(credit, 'flows:')}:")
    assert "flow collaboration_task" in flow and "credit-platform" in flow
    # The folder that did not load is not reported again as missing by the binding.
    assert not [text for text in lines if "no mapping folder 'eco-env-penalty'" in text]
    assert lines[-1].startswith(f"{SHIPPED}: 2 problems")


def test_a_wsdl_url_is_not_fetched_and_a_local_one_is_read(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    culture = text.index("  - id: culture-penalty")
    outbox = text.index("      adapter: outbox\n", culture)
    unfetched = "http://127.0.0.1:9/culture?wsdl"
    systems_file = tmp_path / "systems.yaml"
    with_url = (
        text[:outbox]
        + f"      adapter: soap_sender\n      options: {{wsdl: '{unfetched}', operation: R}}\n"
        + text[outbox + len("      adapter: outbox\n") :]
    )
    systems_file.write_text(with_url, encoding="utf-8")
    code, output = check(str(systems_file))
    assert code == 0, output  # a note, not a problem: nothing was asked of the network
    (note,) = [text for text in output.splitlines() if "[wsdl-not-fetched]" in text]
    assert note.startswith(f"{systems_file}:{line_of(systems_file, unfetched)}:")
    assert "note:" in note and "not fetched" in note
    assert output.strip().splitlines()[-1].startswith(f"{systems_file}: clean, 1 note")

    not_a_wsdl = tmp_path / "culture.wsdl"
    not_a_wsdl.write_text("<notWsdl/>", encoding="utf-8")
    systems_file.write_text(with_url.replace(unfetched, str(not_a_wsdl)), encoding="utf-8")
    code, output = check(str(systems_file))
    assert code == 1, output
    (problem,) = [text for text in output.splitlines() if "[wsdl]" in text]
    assert problem.startswith(f"{systems_file}:{line_of(systems_file, str(not_a_wsdl))}:")


def test_a_schema_mistake_is_listed_and_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    systems_file = tmp_path / "systems.yaml"
    systems_file.write_text(
        HEAD.format(system="health-penalty", adapter="rest_push", message_type="case_push")
        + "    colour: blue\n",
        encoding="utf-8",
    )
    code, output = check(str(systems_file))
    assert code == 1
    assert f"{systems_file}:7:5: [schema:extra_forbidden] systems[0].colour" in output
    code, output = check(str(tmp_path / "absent.yaml"))
    assert code == 2 and "does not exist" in output


def test_a_poller_channel_is_checked_like_any_other(tmp_path: Path) -> None:
    """The shipped file with city-culture-enforcement's soap_poller channel uncommented, as the
    README's walkthrough tells: clean, its WSDL address a note (pollers need the store to be
    built; the check must not refuse every poller for lacking one)."""
    lines = SHIPPED.read_text(encoding="utf-8").splitlines(keepends=True)
    city = lines.index("  - id: city-culture-enforcement\n")
    start = next(n for n in range(city, len(lines)) if lines[n].startswith("  #   inbound:"))
    end = next(
        (n for n in range(start, len(lines)) if not lines[n].startswith("  #  ")), len(lines)
    )
    for n in range(start, end):
        lines[n] = lines[n].replace("# ", "", 1)  # what uncommenting it by hand does
    systems_file = tmp_path / "systems.yaml"
    systems_file.write_text("".join(lines), encoding="utf-8")
    assert "adapter: soap_poller" in systems_file.read_text(encoding="utf-8")
    code, output = check(str(systems_file))
    assert code == 0, output
    (note,) = [text for text in output.splitlines() if "[wsdl-not-fetched]" in text]
    assert "whlyzf.hangzhou.example" in note
    assert "without the store" not in output
    assert output.strip().splitlines()[-1].startswith(f"{systems_file}: clean, 1 note")
