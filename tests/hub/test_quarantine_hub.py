"""The quarantine of a real hub (issue #16): the id a sender is given can be looked up, the size
limit refuses with 503, a release after a mapping fix publishes each record once and journals
who and why, a reader cannot release, a discard keeps a tombstone, an old bus queue is adopted.

Each test runs a real uvicorn hub on the embedded bus and SQLite store, and on RabbitMQ and
PostgreSQL. The hub's mapping folders are copies, so a test can fix one on disk.
"""

from __future__ import annotations

import getpass
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from broker_support import RABBITMQ_URL
from hub_harness import TEST_SYSTEMS, RunningHub, running_hub, sample, serving
from operator_accounts import OPERATOR, READER, write_operators
from prometheus_client.parser import text_string_to_metric_families
from quarantine_support import cases, copied_mappings, fix_case_source, push
from store_support import fresh_store_url
from typer.testing import CliRunner

import bus
from hub.app import create_app
from hub.cli import app as cli
from hub.systems import load_systems
from mappings import mapping_version
from monitor.journal import Step
from monitor.quarantine import State
from standard.envelope import Envelope

TARGET = "grassroots-platform"  # penalty cases go to the grassroots platform's outbox

COMBINATIONS = [
    pytest.param(("embedded", "sqlite"), id="embedded-sqlite"),
    pytest.param(
        ("rabbitmq", "postgresql"),
        id="rabbitmq-postgresql",
        marks=[pytest.mark.rabbitmq, pytest.mark.postgresql],
    ),
]


@pytest.fixture
def wiring(request: pytest.FixtureRequest) -> tuple[str, str]:
    backends: tuple[str, str] = request.param
    return backends


@pytest.fixture
def hub_settings(
    wiring: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """Settings overrides of the hub under test: copied mappings, its store; operator accounts."""
    monkeypatch.setenv("JGHUB_OPERATORS_FILE", str(write_operators(tmp_path)))
    monkeypatch.setenv("JGHUB_JOURNAL__FLUSH_INTERVAL_S", "0.05")
    monkeypatch.delenv("JGHUB_OPERATOR_KEY", raising=False)
    with fresh_store_url(wiring[1], tmp_path) as url:
        overrides: dict[str, Any] = {"mappings_root": copied_mappings(tmp_path)}
        if wiring[1] == "postgresql":
            overrides.update(database_url=url, database_migrate=True)
        yield overrides


Start = Callable[..., AbstractContextManager[RunningHub]]


@pytest.fixture
def start(
    wiring: tuple[str, str],
    hub_settings: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Start:
    """Starts the hub under test, with more settings overrides when given."""

    def started(**more: Any) -> AbstractContextManager[RunningHub]:
        overrides = {**hub_settings, **more}
        return running_hub(tmp_path, wiring[0], monkeypatch=monkeypatch,
                           settings_overrides=overrides)  # fmt: skip

    return started


@pytest.fixture
def hub(start: Start) -> Iterator[RunningHub]:
    with start() as running:
        yield running


def _release(client: httpx.Client, quarantine_id: str, who: tuple[str, str]) -> httpx.Response:
    why = "mapping fixed: case source 10 maps to 其他"
    return client.post(f"/quarantine/{quarantine_id}/release", json={"why": why}, auth=who)


def _nothing_more(hub: RunningHub) -> None:
    time.sleep(0.5)
    assert hub.depth(TARGET) == 0


@pytest.mark.parametrize("wiring", COMBINATIONS, indirect=True)
def test_an_id_a_sender_was_given_can_be_looked_up(hub: RunningHub) -> None:
    broken = sample("agri-penalty", "case_records", "invalid-truncated")
    answer = push(hub.client, broken)
    assert answer.status_code == 400, answer.text
    quarantine_id = answer.json()["quarantine_id"]

    shown = hub.client.get(f"/quarantine/{quarantine_id}", auth=READER)
    assert shown.status_code == 200, shown.text
    entry = shown.json()
    assert (entry["id"], entry["system"], entry["message_type"], entry["state"]) == (
        quarantine_id, "agri-penalty", "case_records", "held",
    )  # fmt: skip
    assert entry["receipt"] == answer.json()["receipt_id"]
    assert entry["kind"] == "malformed" and entry["problems"][0]["rule"] == "malformed"
    assert entry["payload"] == broken.decode("utf-8") and entry["size"] == len(broken)
    download = hub.client.get(f"/quarantine/{quarantine_id}/payload", auth=READER)
    assert download.status_code == 200 and download.content == broken
    assert download.headers["content-type"].startswith("application/json")
    assert f'filename="{quarantine_id}.json"' in download.headers["content-disposition"]

    listed = hub.client.get(
        "/quarantine", params={"system": "agri-penalty", "state": "held"}, auth=READER
    ).json()
    assert [e["id"] for e in listed["entries"]] == [quarantine_id]
    assert "payload" not in listed["entries"][0]
    assert hub.client.get("/quarantine/never-given", auth=READER).status_code == 404
    assert hub.client.get(f"/quarantine/{quarantine_id}").status_code == 401
    assert hub.client.get("/quarantine", params={"older_than": "soon"}, auth=READER).status_code \
        == 400  # fmt: skip
    # Both reads of the payload are journalled under the reader's name.
    journal = hub.runtime.journal
    assert journal is not None
    reads = [e for e in journal.trace(quarantine_id) if e.step is Step.OPERATOR_READ]
    assert [(e.detail["by"], e.detail["via"]) for e in reads] == [("ops-wang", "http")] * 2


@pytest.mark.parametrize("wiring", COMBINATIONS, indirect=True)
def test_a_rejected_record_is_found_at_once_by_its_quarantine_id_and_its_case_number(
    hub: RunningHub,
) -> None:
    payload, case_number = cases()
    answer = push(hub.client, payload).json()
    assert (answer["accepted"], answer["rejected"]) == (4, 1), answer
    quarantine_id, receipt = answer["quarantine_id"], answer["receipt_id"]
    assert case_number is not None

    for key in (quarantine_id, case_number):
        found = hub.client.get("/search", params={"q": key}, auth=READER)
        assert found.status_code == 200, found.text
        result = found.json()
        assert result["found"], result
        assert [(r["key"], r["dataset"]) for r in result["records"]] == [
            (case_number, "penalty_case")
        ], result["records"]
        (step,) = result["timeline"]
        assert (step["step"], step["system"], step["receipt"]) == ("rejected", "agri-penalty",
                                                                    receipt)  # fmt: skip
        assert "case_source" in step["reason"]
    # Nobody acted on it: the refusal's own entry names both keys.
    assert (
        hub.client.get(f"/search?q={quarantine_id}", auth=READER).json()["matched"][0]["kind"]
        == "quarantine"
    )


@pytest.mark.parametrize("wiring", COMBINATIONS, indirect=True)
def test_a_release_after_a_mapping_fix_publishes_once_and_journals_who_and_why(
    hub: RunningHub,
) -> None:
    payload, case_number = cases()
    answer = push(hub.client, payload).json()
    assert (answer["accepted"], answer["rejected"]) == (4, 1), answer
    quarantine_id = answer["quarantine_id"]
    assert len(hub.drain(TARGET, 4)) == 4
    assert _release(hub.client, quarantine_id, READER).status_code == 403

    # Released before the fix: the record fails as before, nothing goes out.
    early = _release(hub.client, quarantine_id, OPERATOR)
    assert early.status_code == 200, early.text
    assert (early.json()["published"], early.json()["repeated"], early.json()["rejected"]) == (
        0, 4, 1,
    )  # fmt: skip
    assert early.json()["entry"]["state"] == "held"
    _nothing_more(hub)

    # The fix is deployed and serve restarted: its mappings are those on disk now.
    fix_case_source(hub.settings.mappings_root)
    with serving(create_app(hub.settings)) as url, httpx.Client(base_url=url) as restarted:
        done = _release(restarted, quarantine_id, OPERATOR)
        assert done.status_code == 200, done.text
        assert (done.json()["published"], done.json()["repeated"], done.json()["rejected"]) == (
            1, 4, 0,
        )  # fmt: skip
        assert done.json()["entry"]["state"] == "released"
        (message,) = hub.drain(TARGET, 1)
        properties = {"content_type": message.content_type, "headers": message.headers}
        envelope = Envelope.from_amqp(properties, message.body)
        assert envelope.subject == case_number and envelope.data["case_source"] == "9"
        assert envelope.correlationid == answer["receipt_id"]  # the sender's receipt
        again = _release(restarted, quarantine_id, OPERATOR)
        assert again.status_code == 409 and "was released by ops-li" in again.text
    _nothing_more(hub)

    journal = hub.runtime.journal
    assert journal is not None
    releases = [e for e in journal.trace(quarantine_id) if e.step is Step.RELEASED]
    assert [(e.detail["by"], e.detail["state"], e.detail["published"]) for e in releases] == [
        ("ops-li", "held", 0),
        ("ops-li", "released", 1),
    ]
    assert releases[-1].reason == "mapping fixed: case source 10 maps to 其他"
    steps = [e.step for e in journal.trace(message.id)]
    assert steps[:2] == [Step.RECEIVED, Step.PUBLISHED]
    entry = hub.kept(quarantine_id)
    assert entry.state is State.RELEASED and len(entry.published_records) == 5


@pytest.mark.parametrize("wiring", COMBINATIONS, indirect=True)
def test_a_release_reads_the_mapping_on_disk_without_a_restart_and_says_which(
    hub: RunningHub,
) -> None:
    payload, case_number = cases()
    answer = push(hub.client, payload).json()
    quarantine_id = answer["quarantine_id"]
    assert len(hub.drain(TARGET, 4)) == 4
    folder = hub.settings.mappings_root / "agri-penalty"
    table = folder / "tables" / "case_source.csv"
    before = table.read_text(encoding="utf-8")

    # A mapping being edited badly on disk refuses the release, saying why; nothing happens.
    table.write_text("this is not,a code table\n", encoding="utf-8")
    refused = _release(hub.client, quarantine_id, OPERATOR)
    assert refused.status_code == 409, refused.text
    said = refused.json()["detail"]
    assert f"the mapping of agri-penalty on disk ({folder}" in said and "does not load" in said
    assert "case_source.csv" in said and "jghub mappings test agri-penalty" in said
    assert hub.kept(quarantine_id).state is State.HELD
    _nothing_more(hub)

    # Fixed on disk: this serve releases with it at once, and says it serves pushes with the old.
    table.write_text(before, encoding="utf-8")
    fix_case_source(hub.settings.mappings_root)
    done = _release(hub.client, quarantine_id, OPERATOR)
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["published"], body["repeated"], body["entry"]["state"]) == (1, 4, "released")
    used, serving = body["mapping"], body["serving"]
    assert used["folder"] == serving["folder"] == "agri-penalty"
    assert used["digest"] == mapping_version(folder).digest != serving["digest"]
    assert f"version {used['digest'][:12]}" in body["mapping_used"]
    assert "restart it to apply the fix" in body["mapping_used"]
    (message,) = hub.drain(TARGET, 1)
    envelope = Envelope.from_amqp(
        {"content_type": message.content_type, "headers": message.headers}, message.body
    )
    assert envelope.subject == case_number and envelope.data["case_source"] == "9"
    journal = hub.runtime.journal
    assert journal is not None
    (released,) = [e for e in journal.trace(quarantine_id) if e.step is Step.RELEASED]
    assert released.detail["mapping"] == used["digest"]


@pytest.mark.parametrize("wiring", COMBINATIONS, indirect=True)
def test_a_discard_keeps_a_tombstone_and_a_reader_can_do_neither(hub: RunningHub) -> None:
    payload, _ = cases()
    quarantine_id = push(hub.client, payload).json()["quarantine_id"]
    why = {"why": "the department resent it with the code it meant"}
    assert hub.client.post(f"/quarantine/{quarantine_id}/discard", json=why, auth=READER) \
        .status_code == 403  # fmt: skip
    refused = hub.client.post(f"/quarantine/{quarantine_id}/discard", json={"why": ""},
                              auth=OPERATOR)  # fmt: skip
    assert refused.status_code == 400 and "a discard needs a reason" in refused.text
    done = hub.client.post(f"/quarantine/{quarantine_id}/discard", json=why, auth=OPERATOR)
    assert done.status_code == 200, done.text
    tomb = done.json()
    assert (tomb["state"], tomb["discarded_by"], tomb["payload_kept"]) == (
        "discarded", "ops-li", False,
    )  # fmt: skip
    assert tomb["discarded_why"] == why["why"] and tomb["problems"]
    assert hub.client.get(f"/quarantine/{quarantine_id}/payload", auth=READER).status_code == 410
    assert _release(hub.client, quarantine_id, OPERATOR).status_code == 409
    again = hub.client.post(f"/quarantine/{quarantine_id}/discard", json=why, auth=OPERATOR)
    assert again.status_code == 409 and "was discarded by ops-li" in again.text


@pytest.mark.parametrize("wiring", COMBINATIONS, indirect=True)
def test_a_full_quarantine_refuses_with_503_publishing_nothing(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JGHUB_QUARANTINE_MAX_BYTES", "4KiB")
    with start() as hub:
        before = _scraped(hub)
        payload, _ = cases()
        assert len(payload) > 4096
        refused = push(hub.client, payload)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "300"
        body = refused.json()
        assert body["type"] == "urn:jghub:problem:quarantine-full"
        assert "record 3 at records[2]: case_source: rule 'lookup case_source'" in body["detail"]
        assert "limit of 4096 bytes (JGHUB_QUARANTINE_MAX_BYTES)" in body["detail"]
        _nothing_more(hub)  # not the 4 good records either: the payload is refused whole
        assert hub.quarantined() == []
        # A payload with nothing to reject goes through whatever the quarantine holds.
        good, _ = cases(unknown_source_at=None)
        assert push(hub.client, good).json()["accepted"] == 5
        after = _scraped(hub)
    assert after["jghub_quarantine_refused_total"] - before["jghub_quarantine_refused_total"] == 1
    assert after["jghub_quarantine_limit_bytes"] == 4096
    assert after["jghub_quarantine_bytes"] == 0


def _scraped(hub: RunningHub) -> dict[str, float]:
    """The quarantine's samples on /metrics, parsed by prometheus-client (summed over labels
    other than the system, which is agri-penalty's)."""
    text = hub.client.get("/metrics").text
    found: dict[str, float] = {"jghub_quarantine_refused_total": 0.0}
    for family in text_string_to_metric_families(text):
        for found_sample in family.samples:
            if (
                found_sample.name.startswith("jghub_quarantine")
                and found_sample.labels.get("system", "agri-penalty") == "agri-penalty"
            ):
                found[found_sample.name] = found.get(found_sample.name, 0.0) + found_sample.value
    return found


@pytest.mark.parametrize("wiring", COMBINATIONS, indirect=True)
def test_an_old_bus_quarantine_is_taken_over_when_the_hub_starts(
    start: Start, wiring: tuple[str, str], tmp_path: Path
) -> None:
    # A hub from before the store left a rejected payload in the bus's quarantine queue.
    namespace = f"t{uuid.uuid4().hex[:12]}"
    systems = tmp_path / "old-systems.yaml"
    systems.write_text(TEST_SYSTEMS, encoding="utf-8")
    topology = load_systems(systems).topology(namespace)
    bus_url = (
        RABBITMQ_URL if wiring[0] == "rabbitmq" else f"sqlite:///{tmp_path / 'var' / 'bus.sqlite3'}"
    )
    (tmp_path / "var").mkdir(exist_ok=True)
    with bus.connect(bus_url) as old:
        old.declare(topology)
        told = old.quarantine(
            b'{"records": [{}]}', "record 1 at records[0]: rule 'operation': no operation found",
            source="agri-penalty", headers={"system": "agri-penalty",
            "message_type": "case_records", "receipt_id": "r-before", "kind": "records-rejected"},
        )  # fmt: skip
    with start(namespace=namespace) as hub:
        shown = hub.client.get(f"/quarantine/{told}", auth=READER)
        assert shown.status_code == 200, shown.text
        assert (shown.json()["receipt"], shown.json()["state"]) == ("r-before", "held")
        assert hub.broker().quarantined() == []


@pytest.mark.parametrize("wiring", COMBINATIONS[:1], indirect=True)
def test_the_quarantine_commands(hub: RunningHub, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = hub.settings
    for name, value in (
        ("JGHUB_DATA_DIR", settings.data_dir),
        ("JGHUB_SYSTEMS_FILE", settings.systems_file),
        ("JGHUB_MAPPINGS_ROOT", settings.mappings_root),
        ("JGHUB_NAMESPACE", settings.namespace),
    ):
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("COLUMNS", "250")
    payload, _ = cases()
    quarantine_id = push(hub.client, payload).json()["quarantine_id"]
    assert len(hub.drain(TARGET, 4)) == 4

    code, output = _run("quarantine", "list", "--system", "agri-penalty", "--state", "held")
    assert code == 0 and quarantine_id in output and "lookup case_source" in output, output
    code, output = _run("quarantine", "show", quarantine_id, "--as", "Li Ming")
    assert code == 0 and "caseSource" in output and "records[2]" in output, output
    target = hub.settings.data_dir / "kept.json"
    code, output = _run("quarantine", "download", quarantine_id, "-o", str(target))
    assert code == 0 and target.read_bytes() == payload, output
    assert _run("quarantine", "show", "never-given")[0] == 1

    fix_case_source(hub.settings.mappings_root)
    why = "mapping fixed: case source 10"
    code, output = _run("quarantine", "release", quarantine_id, "--why", why)
    assert code == 0 and "released: published 1, 4 published before" in output, output
    assert "translated with the mapping agri-penalty on disk, version" in output, output
    assert len(hub.drain(TARGET, 1)) == 1
    code, output = _run("quarantine", "release", quarantine_id, "--why", why)
    assert code == 1 and "was released by" in output, output
    _nothing_more(hub)
    code, output = _run("quarantine", "discard", quarantine_id, "--why", "no longer needed")
    assert code == 1 and "cannot be discarded" in output, output

    journal = hub.runtime.journal
    assert journal is not None
    steps = {(e.step, e.detail.get("by")) for e in journal.trace(quarantine_id)}
    assert (Step.OPERATOR_READ, f"Li Ming (login {getpass.getuser()})") in steps
    assert any(step is Step.RELEASED for step, _ in steps)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, terminal_width=250)
    return result.exit_code, result.output
