"""The simulators speak each system's protocol: generated traffic, receivers, pushing clients."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import requests
from lxml import etree
from zeep import Client
from zeep.exceptions import Fault
from zeep.transports import Transport

import bus
from adapters.authorisation import StoredWarningAddressees
from hub.app import create_app
from hub.settings import HubSettings
from hub.simulators.answers import TASK_STEPS, WARNING_STEPS, Answers
from hub.simulators.clients import SystemClient
from hub.simulators.landscape import Landscape, build_landscape
from hub.simulators.server import LoopbackServer, free_port
from hub.simulators.targets import FailurePlan, SimulatedTarget
from hub.simulators.traffic import SystemTraffic
from hub.simulators.writer import RecordWriter
from mappings import PayloadRejected, SystemMappings, load_all
from mappings.payloads import PayloadLimits, parse_xml
from standard.checks import check_credit_code
from standard.types import SHANGHAI

MAPPINGS = load_all()
LANDSCAPE = build_landscape(MAPPINGS)


def _inbound_with_valid_samples() -> list[tuple[str, str]]:
    found = []
    for system_id, folder in MAPPINGS.items():
        for message_type in folder.inbound:
            if any((folder.folder / "samples" / message_type).glob("valid*")):
                found.append((system_id, message_type))
    return found


# ---------------------------------------------------------------------- traffic


@pytest.mark.parametrize(("system", "message_type"), _inbound_with_valid_samples())
def test_generated_batches_are_accepted_whole_by_the_systems_mapping(
    system: str, message_type: str
) -> None:
    traffic = SystemTraffic(MAPPINGS[system], message_type, seed=3)
    for size in (1, 7):
        payload = traffic.batch(size)
        result = MAPPINGS[system].translate(message_type, payload.body, charset=payload.charset)
        assert [str(e) for e in result.errors] == []
        assert len(result.envelopes) == size == payload.valid
        subjects = [e.subject for e in result.envelopes]
        assert len(set(subjects)) == len(subjects), subjects


def test_generated_records_get_fresh_valid_codes_written_as_the_template_wrote_them() -> None:
    folder = MAPPINGS["eco-env-penalty"]
    template = (folder.folder / "samples/case_batch/valid-batch.xml").read_bytes()
    template_codes = {
        unicodedata.normalize("NFKC", node.text).strip()
        for node in parse_xml(template, PayloadLimits()).iter()
        if isinstance(node.tag, str) and node.text and len(node.text.strip()) == 18
    }
    payload = SystemTraffic(folder, "case_batch", seed=5).batch(12)
    root = parse_xml(payload.body, PayloadLimits())
    assert payload.body.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
    codes = [
        node.text.strip()
        for node in root.iter("{http://sthjt.zj.gov.cn/schema/dsr/1.0}ZJHM")
        if node.text
    ]
    credit = [c for c in codes if len(unicodedata.normalize("NFKC", c)) == 18 and c[:1] != "3"]
    assert credit, codes
    for code in credit:
        assert check_credit_code(unicodedata.normalize("NFKC", code).upper())
    fresh = {unicodedata.normalize("NFKC", c) for c in codes}
    assert fresh - template_codes, "every code is the template's"
    assert any(c != unicodedata.normalize("NFKC", c) for c in codes), "full-width lost"


def test_spoiled_records_are_rejected_and_counted() -> None:
    traffic = SystemTraffic(MAPPINGS["grassroots-platform"], "event_report", seed=11)
    payload = traffic.batch(40, invalid_share=0.5)
    assert payload.records == 40
    assert 5 <= payload.invalid <= 35
    result = MAPPINGS["grassroots-platform"].translate("event_report", payload.body)
    assert len(result.envelopes) == payload.valid


DEPARTMENT_SYSTEMS = sorted(s for s, f in MAPPINGS.items() if "task_feedback" in f.inbound)
CENTRE = {"name": "浙江省综合行政执法指导办公室", "credit_code": "11330000MB1P273395"}
DISPATCHED = datetime(2026, 4, 8, 16, 10, tzinfo=SHANGHAI)


@pytest.mark.parametrize("system", DEPARTMENT_SYSTEMS)
def test_demo_department_answers_each_centre_step_of_a_task_in_its_own_format(
    system: str,
) -> None:
    answers = Answers(MAPPINGS[system], dispatcher=CENTRE)
    due, accepted = DISPATCHED + timedelta(days=15), DISPATCHED + timedelta(hours=2)
    for hours, step in enumerate(TASK_STEPS, start=3):
        at = DISPATCHED + timedelta(hours=hours)
        payload = answers.task(
            step, "XT-TS330782202604021833", dispatched=DISPATCHED, due=due, at=at,
            accepted=accepted, reason="不属本部门职责",
        )  # fmt: skip
        # Read back by the department's own mapping, as the hub reads it.
        (envelope,) = (
            MAPPINGS[system]
            .translate("task_feedback", payload.body, charset=payload.charset)
            .envelopes
        )
        task = envelope.data
        assert task["task_id"] == "XT-TS330782202604021833", (system, step)
        assert task["status"] == TASK_STEPS[step].code, (system, step)
        assert task["dispatcher"]["name"] == CENTRE["name"], (system, step)
        assert datetime.fromisoformat(task["dispatched_time"]) == DISPATCHED, (system, step)
        # Each step is a change of its own (its own time, so its own idempotency key).
        assert envelope.time == at, (system, step, envelope.time)
        if step == "returned":
            assert task["return_reason"] == "不属本部门职责" and not task.get("feedback_time")
        else:
            assert datetime.fromisoformat(task["accepted_time"]) == (
                at if step == "accepted" else accepted
            ), (system, step)
        if step in ("disposing", "fed_back"):
            assert datetime.fromisoformat(task["feedback_time"]) == at, (system, step)
        if step == "fed_back":
            assert task["feedback_result"] == answers.result, system


@pytest.mark.parametrize("system", DEPARTMENT_SYSTEMS)
def test_demo_department_answers_each_centre_step_of_a_warning_in_its_own_format(
    system: str,
) -> None:
    answers = Answers(MAPPINGS[system], dispatcher=CENTRE)
    named = {"name": "浙江省市场监督管理局", "credit_code": "11330000002502194F"}
    keys = set()
    for hours, step in enumerate(WARNING_STEPS, start=1):
        at = DISPATCHED + timedelta(hours=hours)
        payload = answers.warning(step, "GJYJ20260506000341", department=named, at=at)
        (envelope,) = (
            MAPPINGS[system]
            .translate("risk_feedback", payload.body, charset=payload.charset)
            .envelopes
        )
        feedback = envelope.data
        assert (feedback["warning_id"], feedback["step"]) == (
            "GJYJ20260506000341", WARNING_STEPS[step].code
        ), (system, step)  # fmt: skip
        assert feedback["department"] == named, (system, step)
        assert datetime.fromisoformat(feedback["step_time"]) == at, (system, step)
        keys.add(envelope.idempotencykey)
    assert len(keys) == len(WARNING_STEPS), system  # each step its own feedback record


def test_demo_answers_refuse_what_a_mapping_cannot_say_backwards_naming_the_field() -> None:
    answers = Answers(MAPPINGS["market-penalty"], dispatcher=CENTRE)
    with pytest.raises(ValueError, match="no task feedback step 'closed'"):
        answers.task("closed", "XT-1")
    # The national system's warnings carry no status of their own (assumed 1): nobody can
    # write a closed warning (status 6) in its format, and the writer says so, not guesses.
    writer = RecordWriter(MAPPINGS["national"], "risk_warning")
    with pytest.raises(ValueError, match="status is not sent by the system but assumed"):
        writer.write({}, "status", "6")
    with pytest.raises(ValueError, match="reads no field 'step'"):
        writer.write({}, "step", "5")


def test_hostile_samples_are_refused_whole() -> None:
    hostile = SystemTraffic(MAPPINGS["eco-env-penalty"], "case_batch").hostile()
    kinds = {payload.refused for payload in hostile}
    assert {"forbidden-markup", "malformed", "encoding"} <= kinds
    assert all(payload.records == 0 for payload in hostile)


# ---------------------------------------------------------------------- receiving ends


@pytest.fixture
def landscape_env() -> Iterator[Landscape]:
    previous = LANDSCAPE.apply_environment()
    yield LANDSCAPE
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _served(target: SimulatedTarget) -> LoopbackServer:
    return LoopbackServer(target.app, host=target.host, port=target.port, name="target")


def test_simulated_department_soap_service_speaks_its_wsdl(landscape_env: Landscape) -> None:
    system = landscape_env.systems.system("market-penalty")
    target = SimulatedTarget(system)
    token = os.environ[system.outbound.options["secret_parameters"]["token"]]  # type: ignore[union-attr]
    document = '<?xml version="1.0" encoding="gb2312"?><FXYJ><YJ>预警</YJ></FXYJ>'
    with _served(target) as server:
        session = requests.Session()
        session.headers["Idempotency-Key"] = "key-1"
        client = Client(
            f"{server.url}{target.path}?wsdl", transport=Transport(session=session, timeout=10)
        )
        answer = client.service.ReceiveWarningXml(token=token, xmlDoc=document)
        assert etree.fromstring(answer.encode()).findtext("Code") == "0"
        with pytest.raises(Fault) as refused:
            client.service.ReceiveWarningXml(token="wrong", xmlDoc=document)
        assert refused.value.code == "soap:Client.Authentication"
        target.set_plan(FailurePlan(error_share=1.0))
        with pytest.raises(Fault) as busy:
            client.service.ReceiveWarningXml(token=token, xmlDoc=document)
        assert busy.value.code == "soap:Server"
    items = target.log.items()
    assert [i.outcome for i in items] == ["accepted", "unauthorized", "error"]
    assert items[0].idempotency_key == "key-1"
    assert "预警" in items[0].body.decode("utf-8")
    assert target.log.accepted_keys() == {"key-1"}


def test_simulated_national_endpoint_fails_as_told(landscape_env: Landscape) -> None:
    system = landscape_env.systems.system("national")
    target = SimulatedTarget(system)
    options = system.outbound.options  # type: ignore[union-attr]
    headers = {options["api_key_header"]: os.environ[options["api_key_env"]]}
    with _served(target) as server:
        url = f"{server.url}/jgxw/api/v1/punish"
        ok = httpx.post(url, json={"cd_id": "1"}, headers={**headers, "Idempotency-Key": "a"})
        assert ok.status_code == 200 and ok.json() == {"code": "0"}
        again = httpx.post(url, json={"cd_id": "1"}, headers={**headers, "Idempotency-Key": "a"})
        assert again.status_code == 200
        assert httpx.post(url, json={}, headers={"X-Gateway-Token": "x"}).status_code == 401
        control = httpx.post(f"{server.url}/_simulator/plan", json={"reject_share": 1.0})
        assert control.status_code == 200
        assert httpx.post(url, json={}, headers=headers).status_code == 422
        target.set_plan(FailurePlan(timeout_share=1.0, hold_s=1.0))
        with pytest.raises(httpx.TimeoutException):
            httpx.post(url, json={}, headers=headers, timeout=0.2)
        summary = httpx.get(f"{server.url}/_simulator/deliveries").json()
    assert summary["duplicates"] == 1 and summary["delivered"] == 1
    assert summary["outcomes"]["rejected"] == 1


# ---------------------------------------------------------------------- pushing clients


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, bus.Broker]]:
    previous = LANDSCAPE.apply_environment()
    data = tmp_path_factory.mktemp("hub")
    broker = bus.connect(f"sqlite:///{data / 'bus.sqlite3'}")
    # The port is known before the hub starts: its WSDLs name their address under it.
    settings = HubSettings(
        data_dir=data, namespace="sim", max_body_bytes=1_000_000, port=free_port()
    )
    try:
        _route_sample_warnings(settings)
        app = create_app(settings, systems=LANDSCAPE.systems, broker=broker)
        with LoopbackServer(app, port=settings.port, name="hub") as server:
            yield server.url, broker
    finally:
        broker.close()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _route_sample_warnings(settings: HubSettings) -> None:
    """Remember the warnings the systems' risk feedback samples answer as routed to the system
    that feeds them back: the hub refuses feedback on a warning it never routed (#15)."""
    routed: dict[str, str] = {}
    for system_id, message_type in _push_channels():
        if message_type != "risk_feedback":
            continue
        folder = _folder(system_id)
        for sample in SystemTraffic(folder, message_type).samples():
            try:
                translation = folder.translate(message_type, sample.body, charset=sample.charset)
            except PayloadRejected:
                continue
            routed |= {str(e.data["warning_id"]): system_id for e in translation.envelopes}
    store = settings.store()
    try:
        StoredWarningAddressees(store).remember(routed)
    finally:
        store.close()


def _push_channels() -> list[tuple[str, str]]:
    found = []
    for system in LANDSCAPE.systems.systems:
        for channel in system.inbound:
            if channel.adapter in ("rest_push", "xml_push", "soap_push"):
                found.append((system.id, channel.message_type))
    return found


def _folder(system_id: str) -> SystemMappings:
    return MAPPINGS[LANDSCAPE.systems.system(system_id).mapping_id]


@pytest.mark.parametrize(("system_id", "message_type"), _push_channels())
def test_each_system_pushes_in_its_protocol_and_the_hub_agrees_per_record(
    hub: tuple[str, bus.Broker], system_id: str, message_type: str
) -> None:
    url, _ = hub
    system = LANDSCAPE.systems.system(system_id)
    channel = next(c for c in system.inbound if c.message_type == message_type)
    client = SystemClient(system, url)
    try:
        traffic = SystemTraffic(_folder(system_id), message_type, seed=2)
    except ValueError:
        pytest.skip(f"{system_id} {message_type} has no valid sample")
    payload = traffic.batch(6, invalid_share=0.3)
    outcome = client.push(channel, payload)
    assert outcome.refused is None, outcome
    assert (outcome.received, outcome.accepted, outcome.rejected) == (
        payload.records,
        payload.valid,
        payload.invalid,
    )
    assert len(outcome.message_ids) == payload.valid
    for hostile in traffic.hostile():
        if client.can_send(channel, hostile):
            refused = client.push(channel, hostile)
            assert refused.refused is not None and refused.accepted == 0, (hostile.label, refused)
    client.close()


def test_a_signed_request_is_accepted_and_an_unsigned_one_refused(
    hub: tuple[str, bus.Broker],
) -> None:
    url, _ = hub
    system = LANDSCAPE.systems.system("grassroots-platform")
    payload = SystemTraffic(_folder("grassroots-platform"), "event_report").batch(3)
    signed = SystemClient(system, url).push(system.inbound[0], payload)
    assert signed.accepted == 3
    unsigned = httpx.post(
        f"{url}/systems/grassroots-platform/rest/event_report",
        content=payload.body,
        headers={"Content-Type": "application/json"},
    )
    assert unsigned.status_code == 401
    assert unsigned.json()["type"] == "urn:jghub:problem:unauthenticated"


def test_an_outbox_is_pulled_and_acknowledged(hub: tuple[str, bus.Broker]) -> None:
    from hub.simulators.clients import OutboxPuller

    url, _ = hub
    eco = LANDSCAPE.systems.system("eco-env-penalty")
    puller = OutboxPuller(eco, url)
    assert puller.pull_once() == 0  # nothing was routed to it yet: the worker is not running
    puller.close()


def test_wsdl_files_of_the_simulated_services_ship() -> None:
    from hub.simulators.targets import SIMULATOR_WSDL

    assert {p.stem for p in Path(SIMULATOR_WSDL).glob("*.wsdl")} >= {
        "market-penalty",
        "natres-penalty",
        "transport-penalty",
    }


# ---------------------------------------------------------------------- pull-only sources


def test_a_simulated_pull_api_pages_by_change_time_behind_its_token(
    landscape_env: Landscape,
) -> None:
    from hub.simulators.sources import SimulatedSource

    system = landscape_env.systems.system("emergency-penalty")
    source = SimulatedSource(system, MAPPINGS["emergency-penalty"], records=9, seed=4)
    options = system.inbound[0].options
    token_options = options["token"]
    secret = os.environ[token_options["secret_fields"]["clientSecret"]]
    with LoopbackServer(source.app, host=source.host, port=source.port) as server:
        base = server.url
        refused = httpx.post(
            f"{base}/openapi/v1/auth/token", json={"clientId": "x", "clientSecret": "wrong"}
        ).json()
        assert refused["code"] == 401
        token = httpx.post(
            f"{base}/openapi/v1/auth/token", json={"clientId": "x", "clientSecret": secret}
        ).json()["result"]["accessToken"]
        query: dict[str, str | int] = {
            "updateTimeBegin": "2020-01-01 00:00:00",
            "pageNo": 1,
            "pageSize": 4,
        }
        anonymous = httpx.get(f"{base}/openapi/v1/punish/cases", params=query).json()
        assert anonymous["code"] == 401 and anonymous["result"] is None
        pages = []
        for number in (1, 2, 3):
            page = httpx.get(
                f"{base}/openapi/v1/punish/cases",
                params={**query, "pageNo": number},
                headers={"X-Access-Token": token},
            ).json()
            assert page["code"] == 200 and page["result"]["total"] == 9
            pages.extend(page["result"]["records"])
        times = [(r["updateTime"], r["id"]) for r in pages]
        assert times == sorted(times) and len({r["id"] for r in pages}) == 9
        later = httpx.get(
            f"{base}/openapi/v1/punish/cases",
            params={**query, "updateTimeBegin": pages[6]["updateTime"]},
            headers={"X-Access-Token": token},
        ).json()
        assert [r["id"] for r in later["result"]["records"]] == [r["id"] for r in pages[6:]]
    counts = source.counts()
    assert counts["served"] == 9 and counts["records"] == 18  # two feeds: cases and feedback


def test_jghub_simulate_runs_receivers_until_interrupted(tmp_path: Path) -> None:
    import re
    import signal
    import subprocess
    import sys
    import time

    jghub = Path(sys.executable).with_name("jghub")
    process = subprocess.Popen(
        [
            str(jghub),
            "simulate",
            "national",
            "emergency-penalty",
            "--landscape",
            "--interval",
            "0.2",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "serving its pull API" in line:
                break
        text = "".join(lines)
        key = re.search(r"JGHUB_DEMO_TARGET_KEY_NATIONAL=(\w+)", text)
        url = re.search(r"national: receiving at (http://\S+)", text)
        assert key and url, text
        answer = httpx.post(
            f"{url.group(1)}/jgxw/api/v1/check",
            json={"cd_id": "1"},
            headers={"X-Gateway-Token": key.group(1)},
        )
        assert answer.status_code == 200 and answer.json() == {"code": "0"}
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0, rest
    assert "national: received {'accepted': 1}" in rest
