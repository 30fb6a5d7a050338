"""双公示 actually delivered (issue #15, item 5): the credit platform receives them, a channel no
route takes is reported, and the quality figures count what the sender was told.

The finding: housing-penalty's 双公示 batches were accepted, then answered row by row "no
system's routes take penalty_publication", while `jghub quality` showed them 100% accepted.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from flows_harness import Flows, wait_for
from flows_harness import flows as flows  # the fixture: the landscape on each bus
from lxml import etree as ElementTree
from store_support import STORE_BACKENDS, embedded_store, fresh_store_url
from typer.testing import CliRunner

from bus.routing import topics_overlap
from hub.app import create_app
from hub.cli import app as cli
from hub.settings import HubSettings
from hub.simulators.landscape import build_landscape
from hub.simulators.server import LoopbackServer
from hub.systems import load_systems, parse_systems
from mappings import SYSTEMS_ROOT, SystemMappings, load_all
from monitor.journal import Journal, JournalOptions, Step
from monitor.quality import quality_report, score
from store import Store

HOUSING = "housing-penalty"
CREDIT = "credit-platform"
BATCH = SYSTEMS_ROOT / HOUSING / "samples" / "publication_batch" / "valid-batch.xml"
EXPECTED = SYSTEMS_ROOT / CREDIT / "expected" / "publication_report"
SHIPPED = Path(__file__).resolve().parents[2] / "config" / "systems.yaml"
PASSWORD = "zjt-cf-secret-for-the-test"


@pytest.fixture(scope="module")
def mappings() -> dict[str, SystemMappings]:
    return load_all(SYSTEMS_ROOT)


# -- the routing rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "keys", "taken"),
    [
        ("penalty_publication.#", "penalty_publication.*.housing-penalty", True),
        ("penalty_case.#", "penalty_publication.*.housing-penalty", False),
        ("#", "penalty_publication.*.housing-penalty", True),
        ("*.*.housing-penalty", "penalty_publication.*.housing-penalty", True),
        ("*.330100.*", "penalty_publication.*.housing-penalty", True),  # one region is a choice
        ("*.*", "penalty_publication.*.housing-penalty", False),
        ("collaboration_task.*.*.collaboration", "collaboration_task.*.market-penalty.*", True),
        ("collaboration_task.*.*.collaboration", "collaboration_task.*.market-penalty", False),
        ("a.#.b.#", "a.*.b.*", True),
        ("#.c", "a.*.b", False),
    ],
)
def test_centre_route_overlap_says_whether_any_key_is_taken(
    route: str, keys: str, taken: bool
) -> None:
    assert topics_overlap(route, keys) is taken
    assert topics_overlap(keys, route) is taken


def test_centre_the_shipped_systems_and_the_demo_landscape_route_every_channel(
    mappings: dict[str, SystemMappings],
) -> None:
    shipped = load_systems(SHIPPED)
    assert shipped.unrouted_channels(shipped.bind_mappings(mappings)) == []
    landscape = build_landscape(mappings).systems
    assert landscape.unrouted_channels(landscape.bind_mappings(mappings)) == []
    assert "penalty_publication.#" in shipped.system(CREDIT).routes
    assert any(c.message_type == "publication_batch" for c in landscape.system(HOUSING).inbound)


def before_the_credit_platform(tmp_path: Path) -> Path:
    """The shipped systems file as it was when the finding was made: no credit platform."""
    document = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    document["systems"] = [s for s in document["systems"] if s["id"] != CREDIT]
    path = tmp_path / "systems.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def test_centre_a_channel_no_route_takes_is_a_misconfiguration_naming_system_channel_dataset(
    tmp_path: Path, mappings: dict[str, SystemMappings]
) -> None:
    config = load_systems(before_the_credit_platform(tmp_path))
    (problem,) = config.unrouted_channels(config.bind_mappings(mappings))
    assert problem.file == tmp_path / "systems.yaml" and problem.line is not None
    assert re.fullmatch(r"systems\[\d+\]\.inbound\[0\]\.message_type", problem.field)
    for named in ("'publication_batch'", "'housing-penalty'", "'penalty_publication'"):
        assert named in problem.reason, problem.reason
    # Addressed datasets: a department's task feedback goes back to its dispatcher's system.
    addressed = parse_systems(
        {
            "systems": [
                {
                    "id": "eco-env-penalty",
                    "name_zh": "省生态环境厅环境行政处罚系统",
                    "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_KEY_UNUSED"},
                    "inbound": [{"adapter": "soap_push", "message_type": "task_feedback"}],
                },
                {
                    "id": "grassroots-platform",
                    "name_zh": "基层治理四平台",
                    "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_KEY_UNUSED"},
                    "outbound": {
                        "adapter": "outbox",
                        "render": {"collaboration_task": "cloudevent"},
                    },
                    "routes": ["collaboration_task.*.*.grassroots-platform"],
                },
            ]
        }
    )
    assert addressed.unrouted_channels(addressed.bind_mappings(mappings)) == []


# -- the finding, reproduced -----------------------------------------------------------------------


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_store_url(request.param, tmp_path) as url:
        yield url


def test_centre_housing_publications_no_route_takes_are_not_counted_accepted(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: each ROW answered ZT=1 "no system's routes take", and quality said 4 accepted,
    100%. Now /ready names the misconfiguration and quality counts 0 accepted, 4 refused."""
    monkeypatch.setenv("JGHUB_PASSWORD_HOUSING_PENALTY", PASSWORD)
    settings = HubSettings(
        data_dir=tmp_path / "hub",
        namespace=f"t{uuid.uuid4().hex[:12]}",
        mappings_root=SYSTEMS_ROOT,
        systems_file=before_the_credit_platform(tmp_path),
        database_url=store_url,
        database_migrate=True,
    )
    settings.data_dir.mkdir()
    with (
        LoopbackServer(create_app(settings), name="hub") as hub,
        httpx.Client(base_url=hub.url, timeout=30) as client,
    ):
        ready = client.get("/ready").json()
        answer = client.post(
            "/ingest/housing-penalty/publication_batch",
            content=BATCH.read_bytes(),
            headers={"Content-Type": "text/xml; charset=GBK"},
            auth=("zjt-cf", PASSWORD),
        )
    assert ready["ready"] is True  # the other systems keep working
    (misconfigured,) = ready["misconfigured"]
    assert "'publication_batch'" in misconfigured and "'penalty_publication'" in misconfigured
    rows = ElementTree.fromstring(answer.content).findall("ROW")
    assert [row.get("ZT") for row in rows] == ["1"] * 4, answer.content
    assert all("no system's routes take" in str(row.get("MSG")) for row in rows)

    with Journal(Store.open(store_url), JournalOptions(flush_interval_s=0.01)) as journal:
        (figures,) = quality_report(
            journal, since=datetime.now(UTC) - timedelta(hours=1), system=HOUSING
        )
    assert (figures.accepted, figures.rejected, figures.refused_records) == (0, 0, 4)
    assert dict(figures.refusals) == {"unroutable": 4}
    assert figures.accuracy is None  # nothing of the sender's data was judged wrong


def test_centre_quality_follows_the_answers_copy_by_copy(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3", JournalOptions(flush_interval_s=0.01)) as journal:
        for n in range(3):
            journal.record(Step.RECEIVED, message_id=f"m{n}", receipt="r1", system="a")
        journal.record(Step.PUBLISHED, message_id="m0", receipt="r1", system="a")
        # m1 was an addressed record: one copy confirmed, the other not; the answer said failed.
        journal.record(Step.PUBLISHED, message_id="m1", receipt="r1", system="a")
        journal.record(
            Step.NOT_PUBLISHED, message_id="m1", receipt="r1", system="a",
            detail={"rule": "not_confirmed"},
        )  # fmt: skip
        journal.record(
            Step.NOT_PUBLISHED, message_id="m2", receipt="r1", system="a",
            detail={"rule": "backpressure"},
        )  # fmt: skip
        # Sent again later and accepted: a new receipt, a new answer.
        journal.record(Step.RECEIVED, message_id="m2", receipt="r2", system="a")
        journal.flush()
        (a,) = score(journal.entries())
    assert (a.accepted, a.refused_records) == (2, 2)
    assert dict(a.refusals) == {"not_confirmed": 1, "backpressure": 1}


def test_centre_quality_command_shows_the_refused_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JGHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "240")  # one table row a line
    monkeypatch.delenv("JGHUB_DATABASE_URL", raising=False)
    with Journal(embedded_store(tmp_path), JournalOptions()) as j:
        for n in range(4):
            j.record(Step.RECEIVED, message_id=f"p{n}", receipt="r", system=HOUSING)
            j.record(
                Step.NOT_PUBLISHED, message_id=f"p{n}", receipt="r", system=HOUSING,
                detail={"rule": "unroutable"},
            )  # fmt: skip
    result = CliRunner().invoke(cli, ["quality", "--since", "1h"])
    assert result.exit_code == 0, result.output
    row = next((line for line in result.output.splitlines() if HOUSING in line), result.output)
    assert "unroutable ×4" in row and "100.0%" not in row, row


def test_centre_mappings_test_passes_for_the_credit_platform() -> None:
    result = CliRunner().invoke(cli, ["mappings", "test", CREDIT], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "3 of 3 samples passed" in result.output


# -- delivered, on both buses ----------------------------------------------------------------------


def test_centre_housing_publications_reach_the_credit_platform_rendered(flows: Flows) -> None:
    pushed = flows.push(HOUSING, "publication_batch", BATCH.read_bytes(), "GBK")
    assert (pushed.accepted, pushed.rejected, pushed.failed) == (4, 0, 0), pushed
    translation = flows.mappings[HOUSING].translate(
        "publication_batch", BATCH.read_bytes(), charset="GBK"
    )
    rendering = flows.mappings[CREDIT].outbound_mapping("publication_report")
    wanted = {e.idempotencykey: json.loads(rendering.render(e)) for e in translation.envelopes}
    target = flows.running.targets[CREDIT]

    def arrived() -> dict[str | None, Any]:
        return {
            item.idempotency_key: json.loads(item.body)
            for item in target.log.items()
            if item.outcome == "accepted"
        }

    wait_for(lambda: wanted.keys() <= arrived().keys(), "the 4 publications at 信用浙江")
    got = arrived()
    assert {key: got[key] for key in wanted} == wanted
    # Read independently of the code path: the current field codes, amounts in 万元.
    first = next(v for v in got.values() if v["CF_GSBS"] == "ZJT-CF-2026-000211")
    expected = json.loads((EXPECTED / "housing-construction-permit.json").read_text("utf-8"))
    assert first == expected
    assert first["CF_NR_FK"] == "36.000000" and first["CF_CFLB"] == "罚款;责令停产停业"
    assert "CF_XZJG" not in first and first["CF_CFJG"] == "杭州市城乡建设委员会"
    withdrawn = [v for v in got.values() if v["CZLX"] == "D"]
    assert [v["CF_GSBS"] for v in withdrawn] == ["ZJT-CF-2025-001650"]
