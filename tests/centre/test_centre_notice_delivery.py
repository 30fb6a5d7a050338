"""督办通知 delivered end to end (#15): each notice reaches the system serving its addressee, in
that system's own format, and nobody else.

The demo landscape runs on the embedded bus with its worker and simulators; the centre's notices
are published as the collaboration centre publishes what it derives (`Ingress.publish_derived`,
addressed by the configured departments). What arrives is what each simulator recorded: the
rendering itself for REST targets and outbox pullers, market-penalty's ASMX call through zeep
and its WSDL, the canonical event for the grassroots platform. natres' and transport's SOAP
services, which the landscape reads through their outboxes, are called through their WSDLs
with zeep as the hub's SOAP sender would call them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flows_harness import DEPARTMENTS, Flows, running_flows, wait_for
from lxml import etree
from notice_support import ESCALATION_SAMPLE, NOTICE_TYPE, REMINDER_SAMPLE, fresh_notice

from adapters.base import AdapterContext
from adapters.ingress import Ingress
from adapters.protocols.soap_sender import SoapSender, SoapSenderOptions
from adapters.routing import Directory
from hub.simulators.landscape import build_landscape
from hub.simulators.server import LoopbackServer, free_port
from hub.simulators.targets import Delivered, SimulatedTarget
from mappings import load_all
from mappings.payloads import PayloadLimits, parse_xml
from standard.envelope import Envelope
from systems import OutboundConfig, SystemConfig

CENTRE_SYSTEM = "collaboration"
"""The hub's own system that publishes what the centre derives."""
GRASSROOTS = "grassroots-platform"
COMMAND_CENTRE = {"name": "杭州市综合行政执法指挥中心", "credit_code": "11330100002501298F"}
"""A grassroots command centre: the dispatcher of market-penalty's sample task."""
TEMPURI = "http://tempuri.org/"


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flows]:
    """The landscape on the embedded bus (the RabbitMQ path is the same routing and egress)."""
    with running_flows("embedded", tmp_path_factory) as running:
        yield running


def publish(flows: Flows, envelope: Envelope) -> list[str]:
    """Publish `envelope` as the centre does; the routing keys the bus confirmed."""
    ingress = Ingress(
        flows.running.broker, {}, directory=Directory(flows.landscape.systems.systems)
    )
    return ingress.publish_derived(CENTRE_SYSTEM, "supervision_notice", [envelope])


def arrived(flows: Flows, system: str, envelope: Envelope) -> Delivered:
    """What `system` received of `envelope`, once it has (the only delivery of it)."""
    notice_id = envelope.subject
    wait_for(lambda: flows.received(system, notice_id), f"notice {notice_id} at {system}")
    (delivered,) = flows.received(system, notice_id)
    return delivered


def asmx_document(delivered: Delivered, operation: str) -> bytes:
    """The xmlDoc string parameter of an ASMX call, as the bytes its declaration names."""
    envelope = parse_xml(delivered.body, PayloadLimits())
    document = envelope.findtext(f".//{{{TEMPURI}}}{operation}/{{{TEMPURI}}}xmlDoc")
    assert document is not None, delivered.body[:300]
    return document.encode("gb18030")


@pytest.fixture(scope="module")
def notices(flows: Flows) -> dict[tuple[str, str], Envelope]:
    """A fresh reminder and escalation from every department's samples, all published at once."""
    published: dict[tuple[str, str], Envelope] = {}
    for system in DEPARTMENTS:
        for sample in (REMINDER_SAMPLE, ESCALATION_SAMPLE):
            envelope = fresh_notice(system, sample)
            region = envelope.data["region_code"]
            assert publish(flows, envelope) == [
                f"supervision_notice.{region}.{CENTRE_SYSTEM}.{system}"
            ]
            published[system, sample] = envelope
    return published


@pytest.mark.parametrize("system", DEPARTMENTS)
@pytest.mark.parametrize("sample", [REMINDER_SAMPLE, ESCALATION_SAMPLE])
def test_centre_notice_reaches_its_addressees_system_in_its_format_and_nobody_else(
    flows: Flows, notices: dict[tuple[str, str], Envelope], system: str, sample: str
) -> None:
    envelope = notices[system, sample]
    delivered = arrived(flows, system, envelope)
    rendering = flows.mappings[system].render(NOTICE_TYPE, envelope)
    if system == "market-penalty":
        assert delivered.operation == "ReceiveNoticeXml"
        assert asmx_document(delivered, "ReceiveNoticeXml") == rendering
    else:
        assert delivered.body == rendering
    assert flows.others_got(system, envelope.subject) == []
    assert flows.received(GRASSROOTS, envelope.subject) == []


def test_centre_notice_to_market_goes_through_its_wsdl_with_rare_characters_intact(
    flows: Flows, notices: dict[tuple[str, str], Envelope]
) -> None:
    envelope = notices["market-penalty", REMINDER_SAMPLE]
    delivered = arrived(flows, "market-penalty", envelope)
    document = parse_xml(asmx_document(delivered, "ReceiveNoticeXml"), PayloadLimits())
    assert document.findtext("TZ/TZBH") == envelope.subject
    assert "𠮷" in (document.findtext("TZ/TZNR") or "")
    assert delivered.idempotency_key == envelope.idempotencykey


def test_centre_notice_escalating_a_grassroots_task_reaches_the_platform_as_a_cloudevent(
    flows: Flows,
) -> None:
    envelope = fresh_notice(
        "market-penalty",
        notice_type="2",
        addressee=COMMAND_CENTRE,
        sent_time="2026-04-18T09:00:00+08:00",
        content="协同任务《西湖区医疗美容机构超范围经营联合检查》已超期，请督促办理。",
    )
    region = envelope.data["region_code"]
    assert publish(flows, envelope) == [f"supervision_notice.{region}.{CENTRE_SYSTEM}.{GRASSROOTS}"]
    event = json.loads(arrived(flows, GRASSROOTS, envelope).body)
    assert event["type"] == "gov.supervision.supervision_notice.v1"
    assert event["data"]["addressee"] == COMMAND_CENTRE
    assert event["data"]["notice_id"] == envelope.subject
    assert [d for d in DEPARTMENTS if flows.received(d, envelope.subject)] == []


# ------------------------------------------------- the SOAP services the landscape reads by outbox


def soap_department(system: SystemConfig, port: int) -> SystemConfig:
    """`system` connected to its own SOAP service on `port` (its simulated WSDL), the body
    element being the rendering, notices to ReceiveNotice and tasks to ReceiveTask."""
    options = {
        "wsdl": f"http://127.0.0.1:{port}/{system.id}/ReceiveService?wsdl",
        "operation": "ReceiveWarning",
        "operations": {"collaboration_task": "ReceiveTask", "supervision_notice": "ReceiveNotice"},
        "document_as": "element",
        "timeout_s": 5,
    }
    assert system.outbound is not None
    outbound = OutboundConfig(adapter="soap_sender", render=system.outbound.render, options=options)
    return system.model_copy(update={"outbound": outbound})


@pytest.mark.parametrize("system_id", ["natres-penalty", "transport-penalty"])
def test_centre_notice_soap_departments_receive_it_through_their_wsdl_like_a_task(
    system_id: str, tmp_path: Path
) -> None:
    mappings = load_all()
    landscape = build_landscape(mappings)
    system = soap_department(landscape.systems.system(system_id), free_port())
    target = SimulatedTarget(system)
    assert system.outbound is not None
    options = SoapSenderOptions.model_validate(system.outbound.options)
    notice = fresh_notice(system_id)
    task_sample = next((mappings[system_id].folder / "samples" / "task_push").glob("*.json"))
    task = Envelope.from_json(task_sample.read_bytes())
    with LoopbackServer(target.app, host=target.host, port=target.port, name="soap-department"):
        sender = SoapSender(options, AdapterContext(system, tmp_path))
        try:
            for envelope, message_type in ((notice, NOTICE_TYPE), (task, "task_push")):
                sender.deliver(
                    mappings[system_id].render(message_type, envelope),
                    content_type="application/xml",
                    idempotency_key=envelope.idempotencykey,
                    envelope=envelope,
                )
        finally:
            sender.close()
    received = target.log.items()
    assert [(d.operation, d.outcome) for d in received] == [
        ("ReceiveNotice", "accepted"),
        ("ReceiveTask", "accepted"),
    ]
    body = etree.fromstring(received[0].body)
    assert notice.subject in "".join(body.itertext())
    assert received[0].idempotency_key == notice.idempotencykey
