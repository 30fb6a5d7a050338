"""The SOAP poller against a real loopback QueryCases service (city-culture-enforcement's shape).

The simulator serves a WSDL and answers in GB18030, zeep is the real client, records go
through the real ingress onto the embedded bus, and cursors and leases live in the embedded
store.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from poller_bus import Bus
from store_support import embedded_store

from adapters.base import AdapterContext
from adapters.ingress import Ingress
from adapters.protocols.poller import CursorStore, SourceUnavailable
from adapters.protocols.soap_poller import SoapPoller
from adapters.repeats import StoredAcceptedChanges
from bus import Message
from hub.simulators.soap_source import CaseQuerySource, grown_case
from hub.systems import SystemsConfig, SystemsConfigError, parse_systems
from mappings import SystemMappings, load_all

SYSTEM = "city-culture-enforcement"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@functools.cache
def folders() -> dict[str, SystemMappings]:
    return load_all()


@pytest.fixture
def source() -> Iterator[CaseQuerySource]:
    running = CaseQuerySource()
    yield running
    running.close()


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JGHUB_TEST_CITY_TOKEN", "city-token")
    monkeypatch.setenv("JGHUB_TEST_CITY_PASSWORD", "pa55")


def options_for(source: CaseQuerySource, **poller: Any) -> dict[str, Any]:
    return {
        "wsdl": source.wsdl_url,
        "operation": "QueryCases",
        "since_parameter": "since",
        "secret_parameters": {"token": "JGHUB_TEST_CITY_TOKEN"},
        "page_parameter": "pageNo",
        "page_size_parameter": "pageSize",
        "page_size": 3,
        "document_parameter": "QueryCasesResult",
        "records_path": "/CaseList/Case",
        "record_time_path": "UpdateTime",
        "record_id_path": "RecId",
        "total_path": "/CaseList/@total",
        "timeout_s": 2,
        "interval_s": 0.2,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        **poller,
    }


def systems(options: dict[str, Any], adapter: str = "soap_poller", mapping: str = SYSTEM) -> Any:
    return {
        "systems": [
            {
                "id": SYSTEM,
                "name_zh": "杭州市文化和旅游综合执法系统",
                "mapping": mapping,
                "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"},
                "inbound": [{"adapter": adapter, "message_type": "case_query", "options": options}],
            },
            {
                "id": "national",
                "name_zh": "国家互联网+监管系统",
                "mapping": "grassroots-platform",
                "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"},
                "outbound": {"adapter": "outbox", "render": {"penalty_case": "cloudevent"}},
                "routes": ["penalty_case.#"],
            },
        ]
    }


class Rig:
    """A configuration, its bus and a way to build pollers of it (a restarted worker each)."""

    def __init__(self, tmp_path: Path, config: SystemsConfig) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.wire = Bus(f"sqlite:///{tmp_path / 'bus.sqlite3'}", config)
        self.store = embedded_store(tmp_path)
        self.accepted = StoredAcceptedChanges(self.store, window_s=86400)

    def poller(self) -> SoapPoller:
        system = self.config.system(SYSTEM)
        context = AdapterContext(
            system=system,
            data_dir=self.tmp_path,
            ingress=Ingress(
                self.wire.broker, self.config.bind_mappings(folders()), accepted=self.accepted
            ),
            channel=system.inbound[0],
            store=self.store,
        )
        return SoapPoller(SoapPoller.Options.model_validate(system.inbound[0].options), context)

    def cases(self) -> list[str]:
        return case_numbers(self.wire.drain())

    def cursor(self) -> Any:
        return CursorStore(self.store, self.tmp_path, SYSTEM, "case_query").load()

    def close(self) -> None:
        self.wire.close()


@pytest.fixture
def rig(source: CaseQuerySource, tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path, parse_systems(systems(options_for(source))))
    yield made
    made.close()


def case_numbers(messages: list[Message]) -> list[str]:
    return sorted(str(m.headers["cloudEvents_subject"]) for m in messages)


def numbers(*numbers: int) -> list[str]:
    return [f"330100WL2026{n:06d}" for n in numbers]


def stamp(minute: int) -> str:
    return f"2026-04-08 09:{minute:02d}:00"


def test_pages_by_change_time_in_gb18030_and_a_restart_neither_skips_nor_repeats(
    source: CaseQuerySource, rig: Rig
) -> None:
    # Eight cases, a run of four at one instant straddling the three-case pages; one party's
    # name holds 䶮, which GBK cannot write and GB18030 can.
    minutes = [0, 1, 1, 1, 1, 2, 3, 3]
    source.add(
        grown_case(n, stamp(m), name=f"杭州市{n}号网咖（王䶮）") for n, m in enumerate(minutes)
    )
    first = rig.poller()
    assert first.poll_once() == 8
    messages = rig.wire.drain()
    assert case_numbers(messages) == numbers(*range(8))
    assert all("王䶮" in m.body.decode("utf-8") for m in messages)
    assert source.calls[0]["since"] == "1970-01-01 08:00:00"
    assert source.calls[0]["token"] == "city-token"
    assert any(call["pageNo"] != "1" for call in source.calls)  # the run was paged through
    cursor = rig.cursor()
    assert cursor is not None and cursor.record_id == "HZWL-000007"
    first.close()

    # A restarted worker: new cases, one at the cursor's very instant with a larger id.
    source.add([grown_case(8, stamp(3)), grown_case(9, stamp(4))])
    second = rig.poller()
    assert second.poll_once() == 2
    assert source.calls[-1]["since"] == stamp(3)
    assert rig.cases() == numbers(8, 9)
    assert second.poll_once() == 0
    assert rig.cases() == []
    second.close()


def test_faults_timeouts_and_unreadable_answers_are_source_failures_retried_with_backoff(
    source: CaseQuerySource, rig: Rig
) -> None:
    source.add(grown_case(n, stamp(n)) for n in range(4))
    poller = rig.poller()
    source.fault_next = 1
    with pytest.raises(SourceUnavailable, match="SOAP fault soap:Server: 数据库连接超时"):
        poller.poll_once()
    source.delay_next = 3.0  # past the 2 s timeout
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match=r"did not answer within 2\.0s"):
        poller.poll_once()
    assert time.monotonic() - started < 2.9
    source.raw_next = b"<html><body>502 Bad Gateway</body></html>"
    with pytest.raises(SourceUnavailable, match=r"zeep cannot read|SOAP fault"):
        poller.poll_once()
    assert rig.cursor() is None  # nothing handed over, nothing moved
    assert rig.cases() == []

    # Run on schedule: two failing calls, then the cases, after waiting between attempts.
    source.fault_next = 2
    stop = threading.Event()
    runner = threading.Thread(target=poller.run, args=(stop,))
    started = time.monotonic()
    runner.start()
    got: list[str] = []
    deadline = time.monotonic() + 15
    while len(got) < 4 and time.monotonic() < deadline:
        got += rig.cases()
    stop.set()
    runner.join(timeout=10)
    assert sorted(got) == numbers(0, 1, 2, 3)
    assert time.monotonic() - started >= 0.05 + 0.1
    poller.close()


def test_a_document_in_a_string_that_is_not_xml_is_a_source_failure_naming_it(
    source: CaseQuerySource, rig: Rig
) -> None:
    from hub.simulators.soap_source import _response

    source.raw_next = _response('<?xml version="1.0" encoding="GB18030"?><CaseList><Case>')
    poller = rig.poller()
    with pytest.raises(SourceUnavailable, match="cannot read") as failed:
        poller.poll_once()
    assert len(str(failed.value)) < 1000
    poller.close()


def test_a_redirect_is_not_followed(source: CaseQuerySource, rig: Rig) -> None:
    elsewhere = CaseQuerySource()
    try:
        source.redirect_next = elsewhere.url
        poller = rig.poller()
        with pytest.raises(SourceUnavailable, match="307") as failed:
            poller.poll_once()
        assert elsewhere.url in str(failed.value)
        assert elsewhere.calls == []  # nothing, the token least of all, went there
        poller.close()
    finally:
        elsewhere.close()


def test_an_empty_answer_is_an_empty_page(source: CaseQuerySource, rig: Rig) -> None:
    source.empty_next = 1
    poller = rig.poller()
    assert poller.poll_once() == 0
    assert rig.cursor() is None
    source.add([grown_case(1, stamp(1))])
    assert poller.poll_once() == 1
    poller.close()


def test_a_wrong_token_is_refused_by_the_source_and_a_missing_one_named(
    source: CaseQuerySource, rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JGHUB_TEST_CITY_TOKEN", "wrong")
    poller = rig.poller()
    with pytest.raises(SourceUnavailable, match="token无效"):
        poller.poll_once()
    monkeypatch.delenv("JGHUB_TEST_CITY_TOKEN")
    with pytest.raises(ValueError, match="JGHUB_TEST_CITY_TOKEN"):
        poller.poll_once()
    poller.close()


@pytest.mark.parametrize("scheme", ["ws_security", "basic_auth"])
def test_ws_security_and_http_basic_with_the_password_from_the_environment(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = ("whlyzf-hub", "pa55")
    if scheme == "ws_security":
        source = CaseQuerySource(token=None, username_token=account)
    else:
        source = CaseQuerySource(token=None, basic=account)
    source.add([grown_case(1, stamp(1))])
    options = options_for(
        source,
        secret_parameters={},
        **{scheme: {"username": "whlyzf-hub", "password_env": "JGHUB_TEST_CITY_PASSWORD"}},
    )
    rig = Rig(tmp_path, parse_systems(systems(options)))
    try:
        poller = rig.poller()
        assert poller.poll_once() == 1
        assert rig.cases() == numbers(1)
        monkeypatch.setenv("JGHUB_TEST_CITY_PASSWORD", "wrong")
        with pytest.raises(SourceUnavailable, match="missing or wrong"):
            poller.poll_once()
        poller.close()
    finally:
        rig.close()
        source.close()


def test_records_without_a_change_time_use_the_start_of_the_last_poll_with_an_overlap(
    source: CaseQuerySource, tmp_path: Path
) -> None:
    now = datetime.now(SHANGHAI).replace(microsecond=0)

    def at(delta_s: int) -> str:
        return (now + timedelta(seconds=delta_s)).strftime("%Y-%m-%d %H:%M:%S")

    options = options_for(source, record_time_path=None, record_id_path=None, overlap_s=120)
    rig = Rig(tmp_path, parse_systems(systems(options)))
    try:
        source.add([grown_case(1, at(-600)), grown_case(2, at(-30))])
        poller = rig.poller()
        before = datetime.now(SHANGHAI)
        assert poller.poll_once() == 2
        assert rig.cases() == numbers(1, 2)
        cursor = rig.cursor()
        assert cursor is not None and before - timedelta(seconds=1) <= cursor.time
        # The next poll asks from the last poll's start less the overlap: case 2 (30 s old)
        # comes again and is recognised as a repeat; a new case 3 is published.
        source.add([grown_case(3, at(0))])
        handed = poller.poll_once()
        asked = datetime.strptime(source.calls[-1]["since"], "%Y-%m-%d %H:%M:%S")
        expected = (cursor.time - timedelta(seconds=120)).astimezone(SHANGHAI)
        assert abs((asked.replace(tzinfo=SHANGHAI) - expected).total_seconds()) <= 1
        assert handed == 2  # case 2 again, and case 3
        assert rig.cases() == numbers(3)  # case 2 was not published twice
        poller.close()
    finally:
        rig.close()


def test_an_overlap_window_hands_late_records_over_and_repeats_once(
    source: CaseQuerySource, tmp_path: Path
) -> None:
    rig = Rig(tmp_path, parse_systems(systems(options_for(source, overlap_s=600))))
    try:
        source.add([grown_case(1, stamp(10)), grown_case(2, stamp(20))])
        poller = rig.poller()
        assert poller.poll_once() == 2
        assert rig.cases() == numbers(1, 2)
        # A case committed late, its change time before the cursor but within the window.
        source.add([grown_case(3, stamp(15))])
        poller.poll_once()
        assert source.calls[-1]["since"] == stamp(10)
        assert rig.cases() == numbers(3)  # the others came again as repeats
        poller.close()
    finally:
        rig.close()


def test_the_worker_runs_a_soap_poller(source: CaseQuerySource, tmp_path: Path) -> None:
    from hub.settings import HubSettings
    from hub.worker import Worker

    source.add(grown_case(n, stamp(n)) for n in range(5))
    config = parse_systems(systems(options_for(source)))
    wire = Bus(f"sqlite:///{tmp_path / 'bus.sqlite3'}", config)
    settings = HubSettings(data_dir=tmp_path, namespace=wire.namespace)
    worker = Worker(settings, systems=config, targets=[], pollers=True, mapping_folders=folders())
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    try:
        got: list[Message] = []
        deadline = time.monotonic() + 15
        while len(got) < 5 and time.monotonic() < deadline:
            got += wire.drain()
        assert case_numbers(got) == numbers(*range(5))
    finally:
        stop.set()
        runner.join(timeout=15)
        wire.close()
    assert not runner.is_alive()


# ---------------------------------------------------------------------- checked at load


def test_a_wrong_option_is_refused_at_load() -> None:
    with pytest.raises(SystemsConfigError, match="records_path") as refused:
        parse_systems(systems({"wsdl": "x.wsdl", "operation": "Q", "records_path": "/a["}))
    assert "options" in str(refused.value)


def test_a_soap_poller_feeding_a_json_mapping_is_refused_naming_both(tmp_path: Path) -> None:
    options = {"wsdl": "x.wsdl", "operation": "QueryCases", "records_path": "/a/b"}
    data = systems(options, mapping="emergency-penalty")
    data["systems"][0]["inbound"][0]["message_type"] = "case_page"
    config = parse_systems(data)
    with pytest.raises(SystemsConfigError) as refused:
        config.bind_mappings(folders())
    message = str(refused.value)
    assert "adapter soap_poller hands XML payloads" in message
    assert "emergency-penalty/case_page.yaml:" in message and "reads JSON" in message


def test_a_json_poller_feeding_an_xml_mapping_is_refused_with_the_line(tmp_path: Path) -> None:
    systems_file = tmp_path / "systems.yaml"
    systems_file.write_text(
        "systems:\n"
        f"  - id: {SYSTEM}\n"
        "    name_zh: 杭州市文化和旅游综合执法系统\n"
        "    auth: {scheme: api_key, key_env: JGHUB_TEST_UNUSED}\n"
        "    inbound:\n"
        "      - adapter: rest_poller\n"
        "        message_type: case_query\n"
        "        options: {url: 'http://127.0.0.1:9/cases'}\n",
        encoding="utf-8",
    )
    from hub.systems import load_systems

    config = load_systems(systems_file)
    with pytest.raises(SystemsConfigError) as refused:
        config.bind_mappings(folders())
    message = str(refused.value)
    assert f"{systems_file}:6:" in message
    assert "adapter rest_poller hands JSON payloads" in message
    assert f"{SYSTEM}/case_query.yaml:" in message and "reads XML" in message


def test_the_body_element_is_the_document_when_the_operation_answers_document_literal(
    source: CaseQuerySource, tmp_path: Path
) -> None:
    from lxml import etree

    spaces = {"w": "http://whlyzf.hangzhou.example/"}
    options = options_for(
        source,
        operation="QueryCasesXml",
        document_as="element",
        document_parameter=None,
        namespaces=spaces,
        records_path="/w:QueryCasesXmlResponse/w:CaseList/w:Case",
        record_time_path="w:UpdateTime",
        record_id_path="w:RecId",
        total_path="/w:QueryCasesXmlResponse/w:CaseList/@total",
    )
    source.add(grown_case(n, stamp(n), name="王䶮网咖") for n in range(5))
    rig = Rig(tmp_path, parse_systems(systems(options)))
    try:
        poller = rig.poller()
        page, document = poller.fetch(datetime(2026, 4, 8, 9, 1, tzinfo=SHANGHAI), None)
        assert source.calls[-1]["since"] == stamp(1)
        assert [r.record_id for r in page.records] == ["HZWL-000001", "HZWL-000002", "HZWL-000003"]
        assert page.next == 2  # total 4 at three a page
        payload = poller.payload(document, page.records[1:])
        root = etree.fromstring(payload)
        kept = root.xpath(
            "/w:QueryCasesXmlResponse/w:CaseList/w:Case/w:RecId/text()", namespaces=spaces
        )
        assert kept == ["HZWL-000002", "HZWL-000003"]
        assert root.xpath("string(//w:Party/w:Name)", namespaces=spaces) == "王䶮网咖"
        poller.close()
    finally:
        rig.close()
