"""The reference lists fed through the bus (embedded and RabbitMQ) by the worker: the national
catalogue's changes, accepted by the real ingress as national's poller hands them over, reach
the store's lists; newer wins, a late change is counted, a delete removes; a record of another
dataset is dead-lettered saying why; a delivery is acknowledged once its row is committed. And a
catalogue pulled over HTTP by national's rest_poller from its simulated gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from worker_harness import EVENTS, Hub, folders, open_hub

from adapters.ingress import Ingress
from hub.simulators.server import LoopbackServer, free_port
from hub.simulators.sources import SimulatedSource
from hub.systems import load_systems
from mappings import SYSTEMS_ROOT
from reference.stored import StoreLists

PAGE = SYSTEMS_ROOT / "national" / "samples" / "catalogue_update" / "valid-changes.json"
FEED = "reference-lists"


@pytest.fixture(params=["embedded", "rabbitmq"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    with open_hub(request.param, tmp_path) as running:
        yield running


def systems(routes: list[str]) -> dict[str, Any]:
    return {
        "systems": [
            {
                "id": "national",
                "name_zh": "国家互联网+监管系统",
                "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"},
            },
            {
                "id": "grassroots-platform",
                "name_zh": "基层治理四平台",
                "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"},
            },
            {
                "id": FEED,
                "name_zh": "监管基础名录",
                "auth": {"scheme": "internal"},
                "reference": {"concurrency": 2},
                "routes": routes,
            },
        ]
    }


def page(*changes: dict[str, Any]) -> bytes:
    """A national catalogue page of the sample's items, each changed as given (by position)."""
    document = json.loads(PAGE.read_text(encoding="utf-8"))
    items = [dict(document["data"][index], **change) for index, change in enumerate(changes)]
    document["data"], document["total"] = items, len(items)
    return json.dumps(document, ensure_ascii=False).encode()


def accept(hub: Hub, system: str, message_type: str, payload: bytes) -> int:
    mappings = load_systems(hub.systems_file).bind_mappings(folders())
    # One connection for the test's pushes, opened before the worker's (`hub.configure`
    # below), as `jghub serve` holds one: opening the embedded file while the worker's
    # consumers open theirs once waited out the file's busy timeout in a full run.
    broker = hub.brokers[0] if hub.brokers else hub.broker()
    result = Ingress(broker, mappings).accept(system, message_type, payload)
    return result.accepted


def test_catalogue_changes_reach_the_lists_newer_wins_and_a_delete_removes(hub: Hub) -> None:
    hub.configure(systems(["supervision_item.#", "enforcement_officer.#", "supervised_object.#"]))
    hub.broker()  # the pushes' connection, before the worker's
    hub.start_worker(pollers=False)
    lists = StoreLists(hub.settings.store(), refresh_s=0)
    assert accept(hub, "national", "catalogue_update", page({}, {}, {})) == 3
    hub.wait(lambda: lists.catalogue_item("33000000401009") is not None)
    food = lists.catalogue_item("33000000302015")
    assert food is not None and food.status == "1"
    repealed = lists.catalogue_item("33000000401009")
    assert repealed is not None and repealed.status == "3"
    assert lists.loaded("catalogue") and not lists.loaded("officers")

    # An older change of the food item arriving late is ignored (and counted); a newer one wins.
    late = {"update_time": "2026-02-01 09:00:00", "item_status": "2"}
    assert accept(hub, "national", "catalogue_update", page(late)) == 1
    hub.wait(lambda: _late_ignored(lists) == 1)
    still = lists.catalogue_item("33000000302015")
    assert still is not None and still.status == "1"
    newer = {"update_time": "2026-03-05 09:00:00", "item_status": "2"}
    assert accept(hub, "national", "catalogue_update", page(newer)) == 1
    hub.wait(lambda: getattr(lists.catalogue_item("33000000302015"), "status", None) == "2")

    # A delete removes the item.
    gone = {"opt_type": "d", "update_time": "2026-03-06 09:00:00"}
    assert accept(hub, "national", "catalogue_update", page(gone)) == 1
    hub.wait(lambda: lists.catalogue_item("33000000302015") is None)
    assert lists.catalogue_item("33000000401031") is not None
    assert hub.brokers[0].depth(FEED) == 0  # every change settled, none dead-lettered
    assert hub.brokers[0].dead_letters(FEED) == []


def test_a_record_of_another_dataset_is_dead_lettered_saying_why(hub: Hub) -> None:
    # A wildcard route lets a grid event reach the feed (the file loader would not name it).
    hub.configure(systems(["*.*.grassroots-platform"]))
    broker = hub.broker()  # the pushes' connection, before the worker's
    hub.start_worker(pollers=False)
    assert accept(hub, "grassroots-platform", "event_report", EVENTS) == 3
    hub.wait(lambda: len(broker.dead_letters(FEED)) == 3)
    reason = broker.dead_letters(FEED)[0].reason
    assert "take supervision_item, enforcement_officer, supervised_object" in reason
    assert "not grassroots_event" in reason


def _late_ignored(lists: StoreLists) -> int:
    return next(s.late_ignored for s in lists.status() if s.name == "catalogue")


def test_a_catalogue_pulled_through_nationals_poller_reaches_the_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JGHUB_TEST_GATEWAY_KEY", "gateway-key")
    port = free_port()
    config = systems(["supervision_item.#"])
    config["systems"][0]["inbound"] = [
        {
            "adapter": "rest_poller",
            "message_type": "catalogue_update",
            "options": {
                "url": f"http://127.0.0.1:{port}/jgsx/api/v1/catalogue/changes",
                "since_param": "updatedSince",
                "time_format": "yyyyMMddHHmmss",
                "record_time_format": "yyyy-MM-dd HH:mm:ss",
                "page_param": "pageNo",
                "page_size_param": "pageSize",
                "page_size": 2,
                "records_path": "data",
                "total_path": "total",
                "record_time_path": "update_time",
                "record_id_path": "supervise_item_implement_code",
                "answer_check": {"path": "code", "success": ["0"], "message_path": "message"},
                "api_key_env": "JGHUB_TEST_GATEWAY_KEY",
                "api_key_header": "X-Gateway-Token",
                "interval_s": 0.2,
                "initial_since": "2020-01-01T00:00:00+08:00",
            },
        }
    ]
    codes = ["33000000302015", "33000000302031", "33000000401003", "33000000401017"]
    items = [{"catalogue_code": code, "name": f"事项 {code}", "status": "1"} for code in codes]
    items[-1]["status"] = "3"
    with open_hub("embedded", tmp_path) as hub:
        loaded = hub.configure(config)
        source = SimulatedSource(
            loaded.system("national"),
            folders()["national"],
            records=0,
            fixed={"catalogue_update": items},
        )
        with LoopbackServer(source.app, host=source.host, port=source.port):
            hub.start_worker(pollers=True)
            lists = StoreLists(hub.settings.store(), refresh_s=0)
            hub.wait(lambda: all(lists.catalogue_item(code) for code in codes), timeout=60)
    repealed = lists.catalogue_item(codes[-1])
    assert repealed is not None and repealed.status == "3"
    assert source.counts()["served"] == 4
