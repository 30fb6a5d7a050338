"""What senders write cannot steer the operators' tools (issue #13, item 5): `jghub dead` and
`jghub trace` show hostile ids literally, log lines cannot be forged, and the WSDL's address does
not come from the Host header."""

from __future__ import annotations

import getpass
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq
from lxml import etree
from monitor_support import OPERATOR_SYSTEMS, consume, operator_environment
from serve_process import REPOSITORY, free_port, stop, wait_ready
from soap_harness import SoapHub
from store_support import embedded_store
from typer.testing import CliRunner

import bus
from bus import Delivery, Outgoing
from hub.cli import app
from hub.commands.startup import configure_logging
from hub.settings import HubSettings
from hub.systems import load_systems
from monitor.journal import Journal, JournalOptions, Step
from monitor.literal import literal, visible

TARGET = "grassroots-platform"

# Complaint ids as a hostile sender writes them, and what the tools must print for each.
HOSTILE_IDS = {
    "TSJB-1[/x]": "TSJB-1[/x]",
    "TSJB-2[bold red]alarm": "TSJB-2[bold red]alarm",
    "TSJB-3\x1b[31mred": "TSJB-3\\x1b[31mred",
    "TSJB-4\nforged line": "TSJB-4\\nforged line",
    "TSJB-5\u202egnp.exe": "TSJB-5\\u202egnp.exe",
}
HOSTILE_REASON = "HTTP 400 [/x] \x1b[2J cleared\rover"
SHOWN_REASON = "HTTP 400 [/x] \\x1b[2J cleared\\rover"
# Tables put a reason on one line (whitespace, CR included, becomes one space) before showing it.
TABLE_REASON = "HTTP 400 [/x] \\x1b[2J cleared over"


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data folder, a systems file and a fresh namespace on the RabbitMQ node of the tests."""
    require_rabbitmq()
    data = operator_environment(tmp_path, monkeypatch, amqp_url=RABBITMQ_URL)
    yield data
    settings = HubSettings()
    topology = load_systems(settings.systems_file).topology(settings.namespace)
    with bus.connect(settings.bus_url) as cleaner:
        cleaner.declare(topology)
        cleaner.delete_topology(topology)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False, terminal_width=250)
    return result.exit_code, result.output


def _dead_letters(data: Path, ids: list[str], reason: str) -> None:
    """Publish one message per id to the target and dead-letter each with `reason`."""
    settings = HubSettings()
    topology = load_systems(data.parent / "systems.yaml").topology(settings.namespace)
    with bus.connect(settings.bus_url) as broker:
        broker.declare(topology)
        broker.publish_many(
            [
                Outgoing(
                    "penalty_case.330100.complaint-platform",
                    b'{"case": "\x1b[2J"}',
                    message_id=message_id,
                    idempotency_key=message_id,
                )
                for message_id in ids
            ]
        )

        def refuse(delivery: Delivery) -> None:
            delivery.dead_letter(reason, "deliver")

        assert consume(broker, TARGET, refuse, len(ids)) == len(ids)


def _assert_literal(output: str) -> None:
    """Nothing in `output` is a terminal control, and no hostile id started a line of its own."""
    assert "\x1b" not in output and "\r" not in output and "\u202e" not in output
    assert not any(line.startswith("forged line") for line in output.splitlines())


def test_dead_list_show_and_replay_print_hostile_ids_literally(hub_env: Path) -> None:
    ids = list(HOSTILE_IDS)
    _dead_letters(hub_env, ids, HOSTILE_REASON)

    code, output = _run("dead", "list", "--target", "grassroots-platform")
    assert code == 0, output
    _assert_literal(output)
    for shown in HOSTILE_IDS.values():
        assert shown in output
    assert TABLE_REASON in output

    for message_id, shown in HOSTILE_IDS.items():
        code, output = _run("dead", "show", message_id)
        assert code == 0, output
        _assert_literal(output)
        assert f"{shown} for target {TARGET}" in output
        assert SHOWN_REASON in output and '{"case": "\\x1b[2J"}' in output

    code, output = _run(
        "dead", "replay", "--target", TARGET, "--why", "fixed [/x] \x1b[1m", "--by", "ops-li"
    )
    assert code == 0, output
    _assert_literal(output)
    # --by names who acts; the login it came from stays beside it (`hub.commands.dead`).
    by = f"ops-li (login {getpass.getuser()})"
    assert f"replayed 5 of 5 by {by}: fixed [/x] \\x1b[1m" in output
    for shown in HOSTILE_IDS.values():
        assert shown in output
    # They moved, and the report said so: none is left among the dead letters.
    code, output = _run("dead", "list")
    assert code == 0 and "no dead letters match" in output


def test_dead_list_and_show_print_ordinary_ids_and_reasons_unchanged(hub_env: Path) -> None:
    reason = "对方系统返回 HTTP 400：字段 xm 缺失"
    _dead_letters(hub_env, ["TSJB-20260301-0001"], reason)
    code, output = _run("dead", "list", "--target", "grassroots-platform")
    assert code == 0 and "TSJB-20260301-0001" in output and reason in output
    code, output = _run("dead", "show", "TSJB-20260301-0001")
    assert code == 0 and '{"case": "\\x1b[2J"}' in output
    assert f"TSJB-20260301-0001 for target {TARGET}" in output


def test_trace_prints_hostile_ids_and_reasons_literally(hub_env: Path) -> None:
    with Journal(embedded_store(hub_env), JournalOptions(flush_interval_s=0.01)) as journal:
        for message_id in HOSTILE_IDS:
            journal.record(
                Step.RECEIVED, message_id=message_id, receipt="r-[/x]", system="complaint-platform"
            )
            journal.record(
                Step.DEAD_LETTERED, message_id=message_id, target=TARGET, reason=HOSTILE_REASON
            )
    for message_id, shown in HOSTILE_IDS.items():
        code, output = _run("trace", message_id)
        assert code == 0, output
        _assert_literal(output)
        assert f"message {shown}" in output and TABLE_REASON in output
    code, output = _run("trace", "r-[/x]")
    assert code == 0, output
    _assert_literal(output)
    assert all(shown in output for shown in HOSTILE_IDS.values())
    code, output = _run("trace", "nobody[/x]\x1b[31m")
    assert code == 1 and "no message or receipt nobody[/x]\\x1b[31m in the journal" in output


def test_visible_shows_controls_and_keeps_ordinary_text() -> None:
    assert visible("TSJB-4\nforged\r\x1b[31m\x9b\u202e\u2028") == (
        "TSJB-4\\nforged\\r\\x1b[31m\\x9b\\u202e\\u2028"
    )
    ordinary = "嘉兴市秀洲区 [注意] fine 8000.00 元 (a/b)"
    assert visible(ordinary) == ordinary
    assert literal("[bold]x[/bold]").plain == "[bold]x[/bold]"
    assert visible(None) == ""


# --- log lines ----------------------------------------------------------------------------------

_LOG_A_TASK = """
import logging, sys
from hub.commands.startup import configure_logging
configure_logging("debug")
logging.getLogger("centre.collaboration").debug("task %s: step %s noted", sys.argv[1], "fed_back")
"""


_LOG_AS_JSON = """
import logging, sys
from adapters.redaction import Redaction, install_log_redaction
from hub.commands.startup import configure_logging
configure_logging("debug", "json")
install_log_redaction(Redaction(["known-secret-0815"]))
log = logging.getLogger("centre.collaboration")
log.debug("task %s: step %s noted", sys.argv[1], "fed_back")
try:
    raise RuntimeError("the target refused token known-secret-0815")
except RuntimeError:
    log.exception("delivery of task %s failed", sys.argv[1])
"""


def _logged(task_number: str, script: str = _LOG_A_TASK) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", script, task_number],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stderr.splitlines()


def test_a_task_number_with_a_newline_makes_one_log_line() -> None:
    forged = "RW-1\n2026-12-07 00:00:00,000 ERROR centre.collaboration task RW-2 overdue"
    (line,) = _logged(forged)
    assert line.endswith("task RW-1\\n2026-12-07 00:00:00,000 ERROR centre.collaboration task "
                         "RW-2 overdue: step fed_back noted")  # fmt: skip


def test_an_ordinary_task_number_is_logged_as_it_is() -> None:
    (line,) = _logged("RW-330100-2026-0001 嘉兴")
    assert line.endswith(
        "DEBUG centre.collaboration task RW-330100-2026-0001 嘉兴: step fed_back noted"
    )


def test_json_logs_keep_a_forged_line_inside_its_record_and_redact_tracebacks() -> None:
    forged = "RW-1\n2026-12-07 00:00:00,000 ERROR centre.collaboration task RW-2 overdue"
    noted, failed = (json.loads(line) for line in _logged(forged, _LOG_AS_JSON))
    assert noted["message"] == f"task {forged}: step fed_back noted"
    assert (noted["level"], noted["logger"]) == ("DEBUG", "centre.collaboration")
    assert datetime.fromisoformat(noted["time"]).utcoffset() == timedelta(0)
    assert failed["level"] == "ERROR" and "RuntimeError" in failed["exc_info"]
    # The traceback the redaction stripped, not one formatted anew with the secret in it.
    assert "refused token ***" in failed["exc_info"]
    assert "known-secret-0815" not in json.dumps(failed)


def test_the_hub_formatter_is_on_the_root_handler_it_installs() -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    try:
        configure_logging("info")
        (handler,) = root.handlers
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "id %s", ("a\nb",), None)
        assert handler.format(record).endswith("INFO t id a\\nb")
    finally:
        root.handlers[:] = saved


def test_serve_logs_uvicorn_lines_through_the_hub_formatter_on_one_line(tmp_path: Path) -> None:
    systems = tmp_path / "systems.yaml"
    systems.write_text(OPERATOR_SYSTEMS, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("JGHUB_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(JGHUB_SYSTEMS_FILE=str(systems), JGHUB_DATA_DIR=str(tmp_path / "var"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "hub.cli", "serve", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [*command, "--log-level", "info"], env=env, cwd=REPOSITORY, stderr=log
        )
        try:
            wait_ready(base, process, log=log)
            answer = httpx.get(f"{base}/nothing%0A2026-12-07 INFO forged%0D%1B[2J")
            assert answer.status_code == 404
        finally:
            stop(process)
        log.seek(0)
        lines = log.read().decode("utf-8", "replace").splitlines()
    (access,) = [line for line in lines if "forged" in line]
    # uvicorn's access line went through the hub's formatter (its own would say "INFO:     ").
    assert " INFO uvicorn.access 127.0.0.1:" in access
    assert "/nothing%0A2026-12-07%20INFO%20forged%0D%1B[2J" in access
    assert not any(line.startswith("2026-12-07 INFO forged") for line in lines)


# --- the WSDL's address -------------------------------------------------------------------------

WSDL_NS = {
    "soap": "http://schemas.xmlsoap.org/wsdl/soap/",
    "soap12": "http://schemas.xmlsoap.org/wsdl/soap12/",
}


def _addresses(wsdl: bytes) -> set[str]:
    root = etree.fromstring(wsdl)
    found = root.xpath("//soap:address/@location | //soap12:address/@location", namespaces=WSDL_NS)
    return {str(location) for location in found}


def test_the_wsdl_address_ignores_the_host_header(tmp_path: Path) -> None:
    with SoapHub.start("embedded", tmp_path) as hub:
        endpoint = hub.endpoint("eco-env-penalty")
        answer = httpx.get(f"{endpoint}?wsdl", headers={"Host": "evil.example"})
        assert answer.status_code == 200
        assert b"evil.example" not in answer.content
        assert _addresses(answer.content) == {endpoint}
        # The plain GET names the WSDL's address the same way.
        said = httpx.get(endpoint, headers={"Host": "evil.example"}).text
        assert "evil.example" not in said and f"{endpoint}?wsdl" in said


def test_the_wsdl_address_is_the_configured_public_url_and_the_path(tmp_path: Path) -> None:
    public = "https://jghub.zj.gov.cn/hub/"
    with SoapHub.start("embedded", tmp_path, public_url=public) as hub:
        answer = httpx.get(f"{hub.endpoint('eco-env-penalty')}?wsdl")
        assert answer.status_code == 200
        assert _addresses(answer.content) == {
            "https://jghub.zj.gov.cn/hub/systems/eco-env-penalty/soap"
        }


@pytest.mark.parametrize("wrong", ["ftp://hub.example", "jghub.zj.gov.cn", "https://h/?q=1"])
def test_a_public_url_that_is_not_a_base_url_is_refused(wrong: str) -> None:
    with pytest.raises(ValueError, match="public_url"):
        HubSettings(public_url=wrong)
