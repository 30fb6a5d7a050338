"""Operators are people (#13.7) and ids with "/" are reachable (#13.8), on a real hub and RabbitMQ.

A real uvicorn hub on the RabbitMQ node of JGHUB_TEST_AMQP_URL with two operator accounts
(tests/support/operator_accounts.py): ops-li (operator) and ops-wang (reader). Dead letters are
made the way the worker makes them: published, consumed from the target's queue and
dead-lettered through the broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hub_harness import ECO_KEY, RunningHub, running_hub
from monitor_support import consume
from operator_accounts import OPERATOR, READER, write_operators
from typer.testing import CliRunner

from bus import Delivery, Outgoing
from hub.app import create_app
from hub.cli import app as cli
from hub.settings import HubSettings
from monitor.errors import OperatorRefused, OperatorsFileError
from monitor.journal import Entry, Step
from monitor.operators import (
    FailedLogins,
    OperatorAccount,
    OperatorAccounts,
    OperatorGate,
    ScryptHash,
    hash_secret,
)

TARGET = "grassroots-platform"  # eco-env-penalty's penalty cases go to the grassroots outbox
ROUTING_KEY = "penalty_case.330100.eco-env-penalty"
ODD_IDS = ["case/2026/0001", "folder/", "with space", "处罚/案件 1"]


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningHub]:
    monkeypatch.setenv("JGHUB_OPERATORS_FILE", str(write_operators(tmp_path)))
    monkeypatch.setenv("JGHUB_JOURNAL__FLUSH_INTERVAL_S", "0.05")
    monkeypatch.delenv("JGHUB_OPERATOR_KEY", raising=False)
    with running_hub(tmp_path, "rabbitmq", monkeypatch=monkeypatch) as running:
        yield running


def _dead_letters(hub: RunningHub, *ids: str, body: bytes = b'{"party": "Zhang San"}') -> None:
    """Dead letters of TARGET with these message ids, failed as a target refusing them."""
    broker = hub.broker()
    broker.publish_many([Outgoing(ROUTING_KEY, body, message_id=i) for i in ids])

    def refuse(delivery: Delivery) -> None:
        delivery.dead_letter("HTTP 400 from grassroots: field xm missing", "deliver")

    assert consume(broker, TARGET, refuse, len(ids)) == len(ids)


def _journalled(hub: RunningHub, message_id: str) -> list[Entry]:
    journal = hub.runtime.journal
    assert journal is not None
    return journal.trace(message_id)


def _replay(hub: RunningHub, auth: tuple[str, str], **ask: Any) -> httpx.Response:
    return hub.client.post(
        "/dead-letters/replay", json={"why": "target fixed its schema", **ask}, auth=auth
    )


def test_a_reader_lists_but_cannot_replay_and_an_operator_can(hub: RunningHub) -> None:
    _dead_letters(hub, "m-reader-1")
    listed = hub.client.get("/dead-letters", params={"target": TARGET}, auth=READER)
    assert listed.status_code == 200, listed.text
    assert [d["message_id"] for d in listed.json()["dead_letters"]] == ["m-reader-1"]

    refused = _replay(hub, READER, ids=["m-reader-1"])
    assert refused.status_code == 403
    assert "ops-wang has the role reader" in refused.json()["detail"]
    assert _journalled(hub, "m-reader-1") == []  # nothing moved, nothing journalled

    done = _replay(hub, OPERATOR, ids=["m-reader-1"])
    assert done.status_code == 200, done.text
    assert done.json()["replayed"] == ["m-reader-1"] and done.json()["by"] == "ops-li"


def test_a_wrong_secret_or_unknown_name_is_401_and_the_right_one_gets_in(hub: RunningHub) -> None:
    for auth in ((OPERATOR[0], "not-the-secret"), ("ops-nobody", OPERATOR[1]), (OPERATOR[0], "")):
        answer = hub.client.get("/dead-letters", auth=auth)
        assert answer.status_code == 401, auth
        assert answer.headers["www-authenticate"] == 'Basic realm="jghub operators"'
    bare = hub.client.get("/dead-letters")
    assert bare.status_code == 401 and "HTTP Basic" in bare.json()["detail"]
    # The retired shared key lets nobody in, and the answer says so.
    keyed = hub.client.get("/dead-letters", headers={"X-Operator-Key": "anything"})
    assert keyed.status_code == 401
    assert "X-Operator-Key header is no longer accepted" in keyed.json()["detail"]

    assert hub.client.get("/dead-letters", auth=OPERATOR).status_code == 200
    assert hub.client.get("/dead-letters", auth=READER).status_code == 200


def test_the_journal_names_the_account_whatever_x_operator_says(hub: RunningHub) -> None:
    _dead_letters(hub, "m-claimed-1")
    answer = hub.client.post(
        "/dead-letters/replay",
        json={"ids": ["m-claimed-1"], "why": "target fixed its schema"},
        auth=OPERATOR,
        headers={"X-Operator": "somebody-else"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["by"] == "ops-li"
    (replayed,) = [e for e in _journalled(hub, "m-claimed-1") if e.step is Step.REPLAYED]
    assert replayed.detail["by"] == "ops-li"
    assert replayed.reason == "target fixed its schema"


def test_an_operator_reads_a_body_journalled_a_reader_gets_none(hub: RunningHub) -> None:
    _dead_letters(hub, "m-body-1")
    as_reader = hub.client.get("/dead-letters/m-body-1", auth=READER)
    assert as_reader.status_code == 200, as_reader.text
    (seen,) = as_reader.json()
    assert seen["body"] is None and seen["reason"].startswith("HTTP 400")
    assert _journalled(hub, "m-body-1") == []  # no body left the hub

    as_operator = hub.client.get("/dead-letters/m-body-1", auth=OPERATOR)
    assert as_operator.status_code == 200
    assert as_operator.json()[0]["body"] == '{"party": "Zhang San"}'
    (read,) = _journalled(hub, "m-body-1")
    assert (read.step, read.detail["by"], read.detail["via"]) == (
        Step.OPERATOR_READ,
        "ops-li",
        "http",
    )
    assert (read.target, read.system) == (TARGET, "eco-env-penalty")
    # The listing carries no bodies, so it journals no reads.
    hub.client.get("/dead-letters", auth=OPERATOR)
    assert len(_journalled(hub, "m-body-1")) == 1


def test_replay_to_an_unknown_target_is_404_naming_the_known_ones(hub: RunningHub) -> None:
    _dead_letters(hub, "m-target-1")
    unknown = _replay(hub, OPERATOR, target="nobody")
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == (
        "no target 'nobody': the hub delivers to eco-env-penalty, grassroots-platform"
    )
    assert hub.client.get("/dead-letters?target=nobody", auth=OPERATOR).status_code == 404
    # A known target, by its system's id or by the name with '_' it had before, is replayed;
    # either way it is named by its id.
    listed = hub.client.get("/dead-letters?target=grassroots_platform", auth=OPERATOR).json()
    assert [(d["message_id"], d["target"]) for d in listed["dead_letters"]] == [
        ("m-target-1", "grassroots-platform")
    ]
    by_old_name = _replay(hub, OPERATOR, target="grassroots_platform", dry_run=True)
    assert [(d["message_id"], d["target"]) for d in by_old_name.json()["matched"]] == [
        ("m-target-1", "grassroots-platform")
    ]
    done = _replay(hub, OPERATOR, target=TARGET)
    assert done.status_code == 200 and done.json()["replayed"] == ["m-target-1"]


@pytest.mark.parametrize("encoded", [False, True], ids=["raw", "percent-encoded"])
def test_ids_with_slashes_spaces_and_non_ascii_are_reachable(
    hub: RunningHub, encoded: bool
) -> None:
    _dead_letters(hub, *ODD_IDS)
    journal = hub.runtime.journal
    assert journal is not None
    for message_id in ODD_IDS:
        journal.record(Step.RECEIVED, message_id=message_id, system="eco-env-penalty")
    for message_id in ODD_IDS:
        # httpx percent-encodes spaces and non-ASCII itself; "/" stays "/" unless quoted.
        path = quote(message_id, safe="") if encoded else message_id
        dead = hub.client.get(f"/dead-letters/{path}", auth=READER)
        assert dead.status_code == 200, (message_id, dead.text)
        assert [d["message_id"] for d in dead.json()] == [message_id]
        trace = hub.client.get(f"/messages/{path}", headers={"X-Api-Key": ECO_KEY})
        assert trace.status_code == 200, (message_id, trace.text)
        assert trace.json()["id"] == message_id
        assert [s["step"] for s in trace.json()["steps"]] == ["received"]
    # The twin: an id that is not there (its prefix is) is still 404, not another message.
    assert hub.client.get("/dead-letters/case/2026", auth=READER).status_code == 404
    assert hub.client.get("/messages/case/2026", headers={"X-Api-Key": ECO_KEY}).status_code == 404
    # The replay route is still the replay route, not an id.
    assert _replay(hub, OPERATOR, ids=["case/2026/0001"]).json()["replayed"] == ["case/2026/0001"]


def test_failed_logins_from_one_address_are_stopped_before_scrypt(hub: RunningHub) -> None:
    gate = hub.runtime.operators
    assert gate is not None
    limit = gate.failed_logins.limit
    for _ in range(limit):
        assert hub.client.get("/dead-letters", auth=(OPERATOR[0], "guess")).status_code == 401
    stopped = hub.client.get("/dead-letters", auth=OPERATOR)  # even the right secret
    assert stopped.status_code == 429
    assert 0 < int(stopped.headers["retry-after"]) <= 300
    assert f"{limit} failed operator logins from 127.0.0.1" in stopped.json()["detail"]


def test_the_failed_login_limit_is_per_address_and_passes() -> None:
    now = [1000.0]
    accounts = OperatorAccounts(
        operators=[OperatorAccount(name="ops-li", role="operator", secret_hash=_hash("li-secret"))]
    )
    gate = OperatorGate(accounts, failed_logins=FailedLogins(2, 60.0, clock=lambda: now[0]))
    for _ in range(2):
        with pytest.raises(OperatorRefused) as wrong:
            gate.authenticate("ops-li", "guess", address="10.0.0.9")
        assert wrong.value.status == 401
    with pytest.raises(OperatorRefused) as stopped:
        gate.authenticate("ops-li", "li-secret", address="10.0.0.9")
    assert stopped.value.status == 429 and stopped.value.retry_after_s == 60.0
    # Another address is not held back by this one's failures; this one is, once the window passed.
    assert gate.authenticate("ops-li", "li-secret", address="10.0.0.7").name == "ops-li"
    now[0] += 61
    assert gate.authenticate("ops-li", "li-secret", address="10.0.0.9").name == "ops-li"


_HASHES: dict[str, str] = {}


def _hash(secret: str) -> str:
    if secret not in _HASHES:
        _HASHES[secret] = hash_secret(secret)
    return _HASHES[secret]


def _settings(tmp_path: Path) -> HubSettings:
    systems = tmp_path / "systems.yaml"
    systems.write_text("systems: []\n", encoding="utf-8")
    return HubSettings(data_dir=tmp_path / "var", systems_file=systems)


@pytest.mark.parametrize(
    ("entry", "line", "says"),
    [
        ("{name: ops-zhao, role: operator, secret_hash: 'plain-text'}", 3, "scrypt$N$r$p$salt"),
        ("{name: ops-zhao, role: root, secret_hash: '{good}'}", 3, "'reader' or 'operator'"),
        ("{name: ops-li, role: reader, secret_hash: '{good}'}", 1, "repeated: ops-li"),
        ("{name: ops-zhao, role: reader, secret_hash: '{weak}'}", 3, "too weak"),
        ("{name: Ops Zhao, role: reader, secret_hash: '{good}'}", 3, "string should match"),
    ],
    ids=["plain-secret", "unknown-role", "repeated-name", "weak-hash", "bad-name"],
)
def test_a_wrong_accounts_file_stops_the_hub_naming_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, line: int, says: str
) -> None:
    good = _hash("li-secret-for-tests")
    salt, digest = good.split("$")[4:]
    weak = f"scrypt$1024$8$1${salt}${digest}"
    accounts = tmp_path / "operators.yaml"
    accounts.write_text(
        "operators:\n"
        f"  - {{name: ops-li, role: operator, secret_hash: '{good}'}}\n"
        f"  - {entry.replace('{good}', good).replace('{weak}', weak)}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("JGHUB_OPERATORS_FILE", str(accounts))
    monkeypatch.delenv("JGHUB_OPERATOR_KEY", raising=False)
    with pytest.raises(OperatorsFileError) as refused:
        create_app(_settings(tmp_path))
    assert f"{accounts}:{line}:" in str(refused.value)
    assert says.lower() in str(refused.value).lower()


def test_a_good_accounts_file_serves_the_routes_and_none_serves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JGHUB_OPERATOR_KEY", raising=False)
    monkeypatch.delenv("JGHUB_OPERATORS_FILE", raising=False)
    paths = create_app(_settings(tmp_path)).openapi()["paths"]
    assert not any(p.startswith(("/dead-letters", "/quarantine")) for p in paths)
    monkeypatch.setenv("JGHUB_OPERATORS_FILE", str(write_operators(tmp_path)))
    paths = create_app(_settings(tmp_path)).openapi()["paths"]
    assert {"/dead-letters", "/dead-letters/replay", "/dead-letters/{message_id}"} <= paths.keys()
    assert {"/quarantine", "/quarantine/{quarantine_id}", "/quarantine/{quarantine_id}/payload",
            "/quarantine/{quarantine_id}/release", "/quarantine/{quarantine_id}/discard"} \
        <= paths.keys()  # fmt: skip
    # The routes say how operators authenticate.
    assert paths["/dead-letters/replay"]["post"]["security"] == [{"HTTPBasic": []}]
    assert paths["/quarantine/{quarantine_id}/release"]["post"]["security"] == [{"HTTPBasic": []}]


def test_the_retired_shared_key_stops_the_hub_saying_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JGHUB_OPERATORS_FILE", str(write_operators(tmp_path)))
    monkeypatch.setenv("JGHUB_OPERATOR_KEY", "the-old-shared-key")
    with pytest.raises(OperatorsFileError) as refused:
        create_app(_settings(tmp_path))
    for step in ("JGHUB_OPERATOR_KEY is retired", "jghub operators hash", "JGHUB_OPERATORS_FILE"):
        assert step in str(refused.value)
    # The twin: docker compose passes an unset key through as an empty one; that is no key.
    monkeypatch.setenv("JGHUB_OPERATOR_KEY", "")
    assert create_app(_settings(tmp_path)).state.runtime.operators is not None


def test_operators_hash_prints_a_line_for_the_file_never_the_secret() -> None:
    secret = "correct horse battery staple"
    first = CliRunner().invoke(cli, ["operators", "hash"], input=secret + "\n")
    assert first.exit_code == 0, first.output
    line = first.output.strip()
    assert secret not in first.output and line.startswith("scrypt$32768$8$3$")
    assert ScryptHash.parse(line).matches(secret)
    assert not ScryptHash.parse(line).matches(secret + " ")
    again = CliRunner().invoke(cli, ["operators", "hash"], input=secret + "\n")
    assert again.output.strip() != line  # a fresh salt each time
    short = CliRunner().invoke(cli, ["operators", "hash"], input="short\n")
    assert short.exit_code == 2 and "at least 12 characters" in short.output
