"""`jghub trace`, `jghub journal`, `jghub dead` and `jghub quality` on a real journal and bus."""

from __future__ import annotations

import getpass
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from monitor_support import consume, operator_environment
from store_support import embedded_store
from typer.testing import CliRunner

import bus
from bus import Delivery, Outgoing
from hub.cli import app
from hub.settings import HubSettings
from hub.systems import load_systems
from monitor.journal import Journal, JournalOptions, Step

TARGET = "grassroots-platform"


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data folder, a systems file and a fresh bus namespace, named in JGHUB_* variables."""
    yield operator_environment(tmp_path, monkeypatch)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False, terminal_width=200)
    return result.exit_code, result.output


def _journal(data: Path) -> Journal:
    return Journal(embedded_store(data), JournalOptions(flush_interval_s=0.01))


def test_trace_shows_a_message_and_hides_it_from_others(hub_env: Path) -> None:
    with _journal(hub_env) as journal:
        journal.record(Step.RECEIVED, message_id="m-1", receipt="r-1", system="eco-env-penalty")
        journal.record(Step.PUBLISHED, message_id="m-1", receipt="r-1", system="eco-env-penalty")
        journal.record(
            Step.RETRIED, message_id="m-1", system="eco-env-penalty", target="national",
            attempt=1, reason="HTTP 503 from national", detail={"tier": 0, "subject": "C-9"},
        )  # fmt: skip
    code, output = _run("trace", "m-1")
    assert code == 0, output
    assert "message m-1" in output
    for key, kind in (("r-1", "receipt"), ("C-9", "business key")):
        code, found = _run("trace", key)
        assert code == 0 and f"{kind} {key}" in found, found
    for text in ("received", "published", "retried", "tier 0: HTTP 503 from national"):
        assert text in output
    code, output = _run("trace", "r-1", "--json")
    assert code == 0
    lines = [json.loads(line) for line in output.splitlines()]
    assert [line["step"] for line in lines] == ["received", "published"]
    code, output = _run("trace", "m-1", "--system", "grassroots-platform")
    assert code == 1 and "no message or receipt m-1 sent by grassroots-platform" in output


def test_journal_verify_names_the_messages_whose_steps_lack_entries(hub_env: Path) -> None:
    with _journal(hub_env) as journal:
        journal.record(Step.RECEIVED, message_id="whole", receipt="r-1", system="s")
        journal.record(Step.PUBLISHED, message_id="whole", system="s")
        journal.record(Step.DELIVERED, message_id="whole", target="t")
        journal.record(Step.RECEIVED, message_id="cut-short", receipt="r-2", system="s")
    code, output = _run("journal", "verify")
    assert code == 0, output
    assert "unfinished cut-short: received from s" in output and "whole" not in output
    # The publisher died between the broker's confirm and its `published` entry: the arrival
    # was written ahead, nobody was told "accepted"; said, not failed.
    with _journal(hub_env) as journal:
        journal.record(Step.RECEIVED, message_id="publisher-died", receipt="r-3", system="s")
        journal.record(Step.DELIVERED, message_id="publisher-died", target="t")
    code, output = _run("journal", "verify")
    assert code == 0, output
    assert "unconfirmed publisher-died: delivered to t" in output
    assert "unfinished publisher-died" not in output
    with _journal(hub_env) as journal:
        journal.record(Step.DELIVERED, message_id="lost-publishing", target="t")
    code, output = _run("journal", "verify")
    assert code == 1, output
    assert "missing lost-publishing: delivered to t" in output
    assert "journal incomplete" in output


def test_journal_verify_exits_1_naming_the_bad_entry(hub_env: Path) -> None:
    with _journal(hub_env) as journal:
        for n in range(4):
            journal.record(Step.PUBLISHED, message_id=f"m{n}", system="s")
    code, output = _run("journal", "verify")
    assert (code, "journal intact: 4 entries") == (0, output.split(", head")[0].strip())
    code, head = _run("journal", "head")
    assert code == 0 and head.startswith("4:")
    with sqlite3.connect(hub_env / "store.sqlite3") as db:
        db.execute("UPDATE journal_entry SET message_id = 'forged' WHERE seq = 3")
    code, output = _run("journal", "verify")
    assert code == 1
    assert "journal broken at entry 3 (edited)" in output
    assert "2 entries before it are intact" in output
    with sqlite3.connect(hub_env / "store.sqlite3") as db:
        # Cut from the end, the chain head rewound too: only the anchor kept outside knows.
        db.execute("DELETE FROM journal_entry WHERE seq >= 3")
        db.execute(
            "UPDATE journal_chain SET seq = 2, "
            "hash = (SELECT hash FROM journal_entry WHERE seq = 2)"
        )
    code, output = _run("journal", "verify", "--anchor", head.strip())
    assert code == 1 and "anchor" in output


def test_no_journal_is_a_clear_error(hub_env: Path) -> None:
    code, output = _run("journal", "verify")
    assert code == 2 and "no journal" in output


def test_quality_reports_per_system(hub_env: Path) -> None:
    with _journal(hub_env) as journal:
        for n in range(3):
            journal.record(
                Step.RECEIVED, message_id=f"m{n}", system="eco-env-penalty",
                detail={"delay_s": 7200.0, "filled": 1, "optional": 4},
            )  # fmt: skip
        journal.record(Step.REJECTED, receipt="r", system="eco-env-penalty",
                       detail={"rule": "wan_yuan"})  # fmt: skip
    code, output = _run("quality", "--since", "1h")
    assert code == 0, output
    row = next(line for line in output.splitlines() if "eco-env-penalty" in line)
    for figure in ("75.0%", "25.0%", "2h", "wan_yuan ×1"):
        assert figure in row, row
    code, output = _run("quality", "--since", "yesterday")
    assert code == 2 and "bad --since" in output


def test_quality_shows_assumed_values_apart(hub_env: Path) -> None:
    with _journal(hub_env) as journal:
        for n in range(2):
            journal.record(
                Step.RECEIVED, message_id=f"w{n}", system="national",
                detail={"delay_s": 60.0, "assumed": ["status"]},
            )  # fmt: skip
        journal.record(Step.RECEIVED, message_id="w2", system="national", detail={"delay_s": 1.0})
        journal.record(
            Step.RECEIVED, message_id="w3", system="agri-penalty", detail={"assumed": ["status"]}
        )
        journal.record(
            Step.RECEIVED, message_id="w4", receipt="r4", system="national",
            detail={"assumed": ["township"]},
        )  # fmt: skip
        journal.record(
            Step.NOT_PUBLISHED, message_id="w4", receipt="r4", system="national",
            detail={"rule": "unroutable"},
        )  # fmt: skip
    code, output = _run("quality", "--since", "1h", "--system", "national")
    assert code == 0, output
    assert "assumed (not sent)" in " ".join(output.split())
    row = next(line for line in output.splitlines() if "national" in line)
    assert "status ×2" in row and "township" not in row, row  # refused by the hub: not counted
    assert "agri-penalty" not in output


def test_dead_list_show_and_replay(hub_env: Path) -> None:
    systems = load_systems(hub_env.parent / "systems.yaml")
    settings = HubSettings()
    topology = systems.topology(settings.namespace)
    with bus.connect(settings.bus_url) as broker:
        broker.declare(topology)
        (message_id,) = broker.publish_many(
            [Outgoing("penalty_case.330100.eco-env-penalty", b'{"case": 1}')]
        )

        def refuse(delivery: Delivery) -> None:
            delivery.dead_letter("HTTP 400 from grassroots: field xm missing", "deliver")

        assert consume(broker, TARGET, refuse, 1) == 1

    code, output = _run("dead", "list", "--target", "grassroots-platform")
    assert code == 0, output
    assert message_id in output and "HTTP 400 from grassroots" in output
    # The name with '_' it had before targets took their system's id still finds it, by its id.
    code, output = _run("dead", "list", "--target", "grassroots_platform")
    assert code == 0 and message_id in output, output
    assert "grassroots-platform" in output and "grassroots_platform" not in output
    code, output = _run("dead", "list", "--target", "nobody")
    assert code == 2 and "unknown target" in output
    assert "no target 'nobody': the hub delivers to grassroots-platform" in output
    code, output = _run("dead", "show", message_id)
    assert code == 0 and "field xm missing" in output and '{"case": 1}' in output

    code, output = _run("dead", "replay", "--target", TARGET, "--why", "   ")
    assert code == 2 and "needs a reason" in output
    code, output = _run(
        "dead", "replay", "--target", TARGET, "--why", "schema fixed by grassroots", "--dry-run"
    )
    assert code == 0 and "would replay 1; nothing moved" in output
    code, output = _run("dead", "list")
    assert message_id in output

    code, output = _run(
        "dead", "replay", "--reason", "field xm", "--why", "schema fixed by grassroots",
        "--by", "ops-li",
    )  # fmt: skip
    assert code == 0, output
    # --as (or --by) names who acts; the login it was typed from stays beside it.
    login = getpass.getuser()
    assert f"replayed 1 of 1 by ops-li (login {login}): schema fixed by grassroots" in output
    code, output = _run("dead", "list")
    assert "no dead letters match" in output
    with _journal(hub_env) as journal:
        read, step = journal.trace(message_id)
    assert (read.step, read.detail["by"], read.detail["via"]) == (Step.OPERATOR_READ, login, "cli")
    assert (step.step, step.reason, step.target) == (
        Step.REPLAYED,
        "schema fixed by grassroots",
        TARGET,
    )
    assert step.detail["by"] == f"ops-li (login {login})"


def test_journal_prune_before_a_date_keeps_the_chain_verifiable(hub_env: Path) -> None:
    with _journal(hub_env) as journal:
        for n in range(3):
            journal.record(Step.PUBLISHED, message_id=f"m{n}", system="s")
    code, output = _run("journal", "prune", "--before", "2000-01-01")
    assert (code, output.strip()) == (0, "pruned 0 entries of the days before 2000-01-01")
    code, output = _run("journal", "prune", "--before", "2999-01-01")
    assert code == 0 and "pruned 3 entries" in output
    code, output = _run("journal", "verify")
    assert code == 0 and "journal intact: 0 entries" in output
    code, output = _run("journal", "prune", "--before", "yesterday")
    assert code == 2 and "not a date YYYY-MM-DD" in output
    code, output = _run("journal", "prune")
    assert code == 2 and "give one of --before DATE or --older-than AGE" in output
