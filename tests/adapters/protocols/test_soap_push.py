"""SOAP push end to end: zeep, a real client, loads the served WSDL and calls the hub over HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree
from soap_harness import SAMPLES, HeaderPlugin, SoapHub
from zeep.exceptions import Fault

from standard.envelope import Envelope

CASES = SAMPLES / "eco-env-penalty" / "samples" / "case_batch"
MARKET = SAMPLES / "market-penalty" / "samples"
NATRES = SAMPLES / "natres-penalty" / "samples" / "case_report"
TRANSPORT = SAMPLES / "transport-penalty" / "samples"
FEEDBACK = SAMPLES / "eco-env-penalty" / "samples" / "task_feedback"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
ECO_ACTION = "http://sthjt.zj.gov.cn/ws/xzcf/1.0/ReceiveCaseBatch"


@pytest.fixture(scope="module", params=["embedded", "rabbitmq"])
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SoapHub]:
    with SoapHub.start(request.param, tmp_path_factory.mktemp(request.param)) as running:
        yield running


@pytest.fixture
def eco(hub: SoapHub) -> object:
    return hub.zeep_client("eco-env-penalty", api_key=hub.keys["eco-env-penalty"])


def _envelope(body: str, version: str = SOAP11) -> bytes:
    return f'<s:Envelope xmlns:s="{version}"><s:Body>{body}</s:Body></s:Envelope>'.encode()


def _fault_code(response: httpx.Response) -> tuple[str, str]:
    root = etree.fromstring(response.content)
    code = root.findtext(f".//{{{SOAP11}}}Fault/faultcode") or root.findtext(
        f".//{{{SOAP12}}}Code/{{{SOAP12}}}Value"
    )
    reason = root.findtext(f".//{{{SOAP11}}}Fault/faultstring") or root.findtext(
        f".//{{{SOAP12}}}Reason/{{{SOAP12}}}Text"
    )
    return code or "", reason or ""


def test_the_wsdl_is_served_with_the_hubs_address(hub: SoapHub) -> None:
    client = hub.zeep_client("eco-env-penalty")
    ports = [port for service in client.wsdl.services.values() for port in service.ports.values()]
    assert ports
    assert {port.binding_options["address"] for port in ports} == {hub.endpoint("eco-env-penalty")}
    assert {"ReceiveCaseBatch", "ReceiveTaskFeedback"} <= {name for name, _ in client.service}


def test_a_gb2312_batch_is_accepted_and_reaches_the_target(hub: SoapHub, eco: object) -> None:
    payload = (CASES / "valid-batch.xml").read_bytes()
    assert b'encoding="GB2312"' in payload[:60]
    receipt = eco.service.ReceiveCaseBatch(batch=payload)  # type: ignore[attr-defined]
    assert (receipt.received, receipt.accepted, receipt.rejected, receipt.failed) == (3, 3, 0, 0)
    ids = [record.messageId for record in receipt.record]
    assert all(ids) and [record.status for record in receipt.record] == ["accepted"] * 3
    messages = hub.drain("grassroots-platform", 3)
    assert sorted(m.id for m in messages) == sorted(ids)
    envelope = Envelope.from_amqp(
        {"headers": dict(messages[0].headers), "content_type": messages[0].content_type},
        messages[0].body,
    )
    assert envelope.lineagesystem in ("eco-env-penalty", None) or envelope.source


def test_rejected_records_are_answered_per_record_and_quarantined(
    hub: SoapHub, eco: object
) -> None:
    before = len(hub.quarantined())
    payload = (CASES / "invalid-records.xml").read_bytes()
    receipt = eco.service.ReceiveCaseBatch(batch=payload)  # type: ignore[attr-defined]
    assert (receipt.received, receipt.accepted, receipt.rejected) == (4, 1, 3)
    rejected = [r for r in receipt.record if r.status == "rejected"]
    assert [r.index for r in rejected] == [1, 2, 3]
    for record in rejected:
        assert record.messageId is None
        assert record.error and all(e.rule and e.message for e in record.error)
        assert any(e.field for e in record.error)
    assert receipt.quarantineId
    kept = hub.quarantined()
    assert len(kept) == before + 1 and kept[-1].payload == payload
    hub.drain("grassroots-platform", 1)


def test_task_feedback_goes_through_its_own_operation(hub: SoapHub, eco: object) -> None:
    payload = (FEEDBACK / "valid-feedback.xml").read_bytes()
    receipt = eco.service.ReceiveTaskFeedback(feedback=payload)  # type: ignore[attr-defined]
    assert (receipt.accepted, receipt.rejected) == (2, 0)
    assert {r.dataset for r in receipt.record} == {"collaboration_task"}
    assert len(hub.drain("grassroots-platform", 2)) == 2


@pytest.mark.parametrize(
    ("sample", "kind"),
    [
        ("invalid-entity-bomb.xml", "forbidden-markup"),
        ("invalid-external-entity.xml", "forbidden-markup"),
        ("invalid-truncated.xml", "malformed"),
        ("invalid-encoding.xml", "encoding"),
    ],
)
def test_an_unreadable_document_is_a_client_fault_and_kept(
    hub: SoapHub, eco: object, sample: str, kind: str
) -> None:
    before = len(hub.quarantined())
    with pytest.raises(Fault) as raised:
        eco.service.ReceiveCaseBatch(batch=(CASES / sample).read_bytes())  # type: ignore[attr-defined]
    fault = raised.value
    assert fault.code == "soap:Client.PayloadRejected"
    assert kind in fault.message
    facts = {etree.QName(node).localname: node.text for node in fault.detail[0]}
    assert facts["kind"] == kind and facts["quarantineId"]
    assert len(hub.quarantined()) == before + 1
    assert hub.broker.depth("grassroots-platform") == 0


def test_a_wrong_key_is_an_authentication_fault_and_nothing_is_published(hub: SoapHub) -> None:
    client = hub.zeep_client("eco-env-penalty", api_key="not-the-key")
    with pytest.raises(Fault) as raised:
        client.service.ReceiveCaseBatch(batch=(CASES / "valid-batch.xml").read_bytes())
    assert raised.value.code == "soap:Client.Authentication"
    assert hub.broker.depth("grassroots-platform") == 0


def test_another_systems_key_is_forbidden(hub: SoapHub) -> None:
    client = hub.zeep_client("eco-env-penalty", api_key=hub.keys["limited-penalty"])
    with pytest.raises(Fault) as raised:
        client.service.ReceiveCaseBatch(batch=(CASES / "valid-batch.xml").read_bytes())
    assert raised.value.code == "soap:Client.Forbidden"
    assert "not for this channel" in raised.value.message


def test_a_wrong_soapaction_is_a_client_fault(hub: SoapHub) -> None:
    plugin = HeaderPlugin(SOAPAction='"http://sthjt.zj.gov.cn/ws/xzcf/1.0/ReceiveTaskFeedback"')
    client = hub.zeep_client(
        "eco-env-penalty", api_key=hub.keys["eco-env-penalty"], plugins=[plugin]
    )
    with pytest.raises(Fault) as raised:
        client.service.ReceiveCaseBatch(batch=(CASES / "valid-batch.xml").read_bytes())
    assert raised.value.code == "soap:Client.WrongAction"
    assert "ReceiveTaskFeedback" in raised.value.message


def test_faults_travel_with_http_500_in_soap_11(hub: SoapHub) -> None:
    headers = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": f'"{ECO_ACTION}"',
        "X-Api-Key": hub.keys["eco-env-penalty"],
    }
    url = hub.endpoint("eco-env-penalty")
    unknown = httpx.post(url, content=_envelope('<x:Nope xmlns:x="urn:x"/>'), headers=headers)
    assert unknown.status_code == 500
    assert _fault_code(unknown)[0] == "soap:Client.UnknownOperation"
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaaaaaaaa">]>'
        + _envelope("<x>&a;</x>")[0:]
    )
    malformed = httpx.post(url, content=bomb, headers=headers)
    assert malformed.status_code == 500
    code, reason = _fault_code(malformed)
    assert code == "soap:Client.MalformedEnvelope" and "DOCTYPE" in reason
    truncated = httpx.post(url, content=_envelope("<x>")[:-20], headers=headers)
    assert _fault_code(truncated)[0] == "soap:Client.MalformedEnvelope"
    not_soap = httpx.post(url, content=b"<Order><Item/></Order>", headers=headers)
    assert _fault_code(not_soap)[0] == "soap:Client.MalformedEnvelope"
    no_namespace = httpx.post(url, content=b"<Envelope><Body/></Envelope>", headers=headers)
    assert _fault_code(no_namespace)[0] == "soap:VersionMismatch"
    other = httpx.post(
        url,
        content=b'<e:Envelope xmlns:e="urn:soap:2.0"><e:Body/></e:Envelope>',
        headers=headers,
    )
    assert _fault_code(other)[0] == "soap:VersionMismatch"
    must = (
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Header><w:Security xmlns:w="urn:wsse" '
        f's:mustUnderstand="1"/></s:Header><s:Body/></s:Envelope>'
    ).encode()
    understood = httpx.post(url, content=must, headers=headers)
    assert _fault_code(understood)[0] == "soap:MustUnderstand"
    kept = [q for q in hub.quarantined() if q.payload == bomb]
    assert kept and "DOCTYPE" in kept[0].reason


def test_oversized_bodies_are_refused_before_parsing_with_413(hub: SoapHub) -> None:
    body = _envelope("<x>" + "x" * 300_000 + "</x>")
    response = httpx.post(
        hub.endpoint("market-penalty"),
        content=body,
        headers={"Content-Type": "text/xml", "SOAPAction": '""'},
    )
    assert response.status_code == 413
    assert _fault_code(response)[0] == "soap:Client.TooLarge"


def test_more_records_than_the_channel_takes_is_a_fault_over_413_and_kept(
    hub: SoapHub,
) -> None:
    client = hub.zeep_client("capped-penalty", api_key=hub.keys["capped-penalty"])
    payload = (CASES / "valid-batch.xml").read_bytes()  # 3 records; the channel takes 2
    with pytest.raises(Fault) as fault:
        client.service.ReceiveCaseBatch(batch=payload)
    assert fault.value.code == "soap:Client.TooManyRecords"
    assert "3 records, more than the 2" in fault.value.message
    facts = {child.tag.split("}")[1]: child.text for child in fault.value.detail[0]}
    assert (facts["records"], facts["maxRecords"]) == ("3", "2")
    (kept,) = [q for q in hub.quarantined() if q.id == facts["quarantineId"]]
    assert kept.payload == payload and kept.system == "capped-penalty"
    # Over HTTP, the status of the other transport refusals (413, as for a body too large).
    response = httpx.post(
        hub.endpoint("capped-penalty"),
        content=_envelope(
            '<ReceiveCaseBatch xmlns="http://sthjt.zj.gov.cn/ws/xzcf/1.0"><batch>'
            + base64.b64encode(payload).decode()
            + "</batch></ReceiveCaseBatch>"
        ),
        headers={
            "Content-Type": "text/xml",
            "SOAPAction": f'"{ECO_ACTION}"',
            "X-Api-Key": hub.keys["capped-penalty"],
        },
    )
    assert response.status_code == 413, response.text
    assert _fault_code(response)[0] == "soap:Client.TooManyRecords"
    assert hub.drain("grassroots-platform", 1, timeout=1) == []


def test_the_rate_limit_answers_429_with_retry_after(hub: SoapHub) -> None:
    client = hub.zeep_client("limited-penalty", api_key=hub.keys["limited-penalty"])
    payload = (CASES / "valid-batch.xml").read_bytes()
    receipt = client.service.ReceiveCaseBatch(batch=payload)
    assert (receipt.received, receipt.accepted) == (3, 3)  # the burst of one lets this in
    hub.drain_published("grassroots-platform")
    response = httpx.post(
        hub.endpoint("limited-penalty"),
        content=_envelope("<x/>"),
        headers={"Content-Type": "text/xml", "X-Api-Key": hub.keys["limited-penalty"]},
    )
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert _fault_code(response)[0] == "soap:Client.RateLimited"


def _market(name: str, message_type: str = "case_upload") -> str:
    path = MARKET / message_type / name
    return path.read_bytes().decode("gb18030")


def test_asmx_string_parameter_declared_gb2312_keeps_rare_characters(hub: SoapHub) -> None:
    client = hub.zeep_client("market-penalty")
    document = _market("valid-batch.xml")
    assert document.lower().startswith('<?xml version="1.0" encoding="gb2312"?>')
    assert "𠮷" in document or "䶮" in document  # beyond GB2312, inside GB18030
    answer = client.service.UploadCaseXml(token=hub.keys["market-penalty"], xmlDoc=document)
    result = etree.fromstring(answer.encode())
    assert (result.findtext("Code"), result.findtext("Accepted")) == ("0", "4")
    records = result.findall("Records/Record")
    assert [r.get("Status") for r in records] == ["accepted"] * 4
    messages = hub.drain("grassroots-platform", 4)
    assert sorted(m.id for m in messages) == sorted(r.get("MessageId") for r in records)
    bodies = "".join(m.body.decode("utf-8") for m in messages)
    rare = [c for c in "𠮷䶮" if c in document]
    assert all(c in bodies for c in rare)


def test_asmx_operations_share_one_address_and_answer_rejections(hub: SoapHub) -> None:
    client = hub.zeep_client("market-penalty")
    document = _market("invalid-publications.xml", "publication_upload")
    answer = client.service.UploadGsXml(token=hub.keys["market-penalty"], xmlDoc=document)
    result = etree.fromstring(answer.encode())
    assert result.findtext("Code") == "1"
    rejected = [r for r in result.findall("Records/Record") if r.get("Status") == "rejected"]
    assert rejected and all(r.find("Error") is not None for r in rejected)
    assert all(e.get("Rule") for r in rejected for e in r.findall("Error"))
    accepted = int(result.findtext("Accepted") or 0)
    hub.drain("grassroots-platform", accepted)


def test_asmx_token_parameter_is_checked(hub: SoapHub) -> None:
    client = hub.zeep_client("market-penalty")
    document = _market("valid-batch.xml")
    with pytest.raises(Fault) as raised:
        client.service.UploadCaseXml(token="stolen", xmlDoc=document)
    assert raised.value.code == "soap:Client.Authentication"
    with pytest.raises(Fault) as missing:
        client.service.UploadCaseXml(xmlDoc=document)
    assert missing.value.code == "soap:Client.Authentication"
    assert "token" in missing.value.message
    with pytest.raises(Fault) as other:
        client.service.UploadCaseXml(token=hub.keys["natres-penalty"], xmlDoc=document)
    assert other.value.code == "soap:Client.Forbidden"
    assert hub.broker.depth("grassroots-platform") == 0


def test_a_wrong_token_parameter_is_named_in_the_fault(hub: SoapHub) -> None:
    client = hub.zeep_client("market-penalty")
    with pytest.raises(Fault) as raised:
        client.service.UploadCaseXml(token="stolen", xmlDoc=_market("valid-batch.xml"))
    assert raised.value.code == "soap:Client.Authentication"
    assert raised.value.message == (
        "the key in parameter 'token' of UploadCaseXml matches no configured system's key"
    )


def test_a_wrong_username_token_is_named_in_the_fault(hub: SoapHub) -> None:
    from zeep.wsse.username import UsernameToken

    cases = etree.fromstring((TRANSPORT / "case_report" / "valid-cases.xml").read_bytes())
    wrong = hub.zeep_client(
        "transport-penalty", wsse=UsernameToken("jtyst-xzzf", "not-the-password")
    )
    with pytest.raises(Fault) as raised:
        wrong.service.ReportCases(_value_1=list(cases))
    assert [str(code.localname) for code in raised.value.subcodes] == ["Authentication"]
    assert raised.value.message == (
        "the WS-Security UsernameToken's Username and Password match no configured system's "
        "user name and key"
    )


def test_soap_12_requests_and_faults(hub: SoapHub) -> None:
    client = hub.zeep_client("market-penalty")
    service = client.bind("CaseService", "CaseServiceSoap12")
    document = _market("valid-batch.xml")
    answer = service.UploadCaseXml(token=hub.keys["market-penalty"], xmlDoc=document)
    assert etree.fromstring(answer.encode()).findtext("Accepted") == "4"
    hub.drain_published("grassroots-platform")
    with pytest.raises(Fault) as raised:
        service.UploadCaseXml(token="wrong", xmlDoc=document)
    assert raised.value.code == "soap:Sender"
    assert [str(code.localname) for code in raised.value.subcodes] == ["Authentication"]
    response = httpx.post(
        hub.endpoint("market-penalty"),
        content=_envelope('<x:Nope xmlns:x="urn:x"/>', SOAP12),
        headers={"Content-Type": "application/soap+xml; charset=utf-8"},
    )
    assert response.status_code == 400  # SOAP 1.2: a Sender fault is 400 Bad Request
    assert _fault_code(response)[0] == "soap:Sender"


def test_a_string_document_whose_declaration_cannot_hold_it_is_refused(hub: SoapHub) -> None:
    client = hub.zeep_client("market-penalty")
    document = '<?xml version="1.0" encoding="ISO-8859-1"?><XZCF>中</XZCF>'
    with pytest.raises(Fault) as raised:
        client.service.UploadCaseXml(token=hub.keys["market-penalty"], xmlDoc=document)
    assert raised.value.code == "soap:Client.InvalidParameter"
    assert "ISO-8859-1" in raised.value.message


def test_document_literal_body_element_is_the_document(hub: SoapHub) -> None:
    client = hub.zeep_client("natres-penalty", api_key=hub.keys["natres-penalty"])
    document = etree.fromstring((NATRES / "valid-report.xml").read_bytes())
    receipt = client.service.ReportCases(_value_1=list(document), _attr_1=dict(document.attrib))
    assert (receipt.received, receipt.accepted, receipt.rejected) == (4, 4, 0)
    assert len(hub.drain("grassroots-platform", 4)) == 4
    invalid = etree.fromstring((NATRES / "invalid-records.xml").read_bytes())
    answer = client.service.ReportCases(_value_1=list(invalid), _attr_1=dict(invalid.attrib))
    assert answer.rejected >= 1 and answer.quarantineId
    hub.drain("grassroots-platform", answer.accepted)


def test_soap_12_with_a_ws_security_username_token(hub: SoapHub) -> None:
    from zeep.wsse.username import UsernameToken

    token = UsernameToken("jtyst-xzzf", hub.keys["transport-penalty"])
    client = hub.zeep_client("transport-penalty", wsse=token)
    cases = etree.fromstring((TRANSPORT / "case_report" / "valid-cases.xml").read_bytes())
    answer = client.service.ReportCases(_value_1=list(cases), _attr_1=dict(cases.attrib))
    assert (answer.received, answer.accepted) == (4, 4)
    assert [outcome.status for outcome in answer.Outcome] == ["accepted"] * 4
    inspections = etree.fromstring(
        (TRANSPORT / "inspection_report" / "valid-inspections.xml").read_bytes()
    )
    checked = client.service.ReportInspections(_value_1=list(inspections))
    assert checked.accepted == 3
    assert {o.dataset for o in checked.Outcome} != {"penalty_case"}
    assert len(hub.drain("grassroots-platform", 7)) == 7
    wrong = hub.zeep_client(
        "transport-penalty", wsse=UsernameToken("jtyst-xzzf", "not-the-password")
    )
    with pytest.raises(Fault) as raised:
        wrong.service.ReportCases(_value_1=list(cases))
    assert raised.value.code == "soap:Sender"
    assert [str(code.localname) for code in raised.value.subcodes] == ["Authentication"]
    anonymous = hub.zeep_client("transport-penalty")
    with pytest.raises(Fault) as nobody:
        anonymous.service.ReportCases(_value_1=list(cases))
    assert "UsernameToken" in nobody.value.message


def test_base64_that_is_not_base64_is_refused(hub: SoapHub) -> None:
    body = _envelope(
        '<t:ReceiveCaseBatch xmlns:t="http://sthjt.zj.gov.cn/ws/xzcf/1.0">'
        "<t:batch>not*base64!</t:batch></t:ReceiveCaseBatch>"
    )
    response = httpx.post(
        hub.endpoint("eco-env-penalty"),
        content=body,
        headers={
            "Content-Type": "text/xml",
            "SOAPAction": ECO_ACTION,
            "X-Api-Key": hub.keys["eco-env-penalty"],
        },
    )
    assert response.status_code == 500
    assert _fault_code(response)[0] == "soap:Client.InvalidParameter"
    assert base64.b64encode(b"ok")  # the valid form, for contrast, is what zeep sends


def test_two_apps_in_one_process_each_serve_their_own_endpoints(tmp_path: Path) -> None:
    # Two hubs built from one configuration: each must mount all its endpoints (nothing left
    # over from the other refuses an operation as already mounted), and each endpoint must hand
    # requests to its own app's ingress, so what is sent to one reaches only that hub's bus.
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with (
        SoapHub.start("embedded", tmp_path / "first") as first,
        SoapHub.start("embedded", tmp_path / "second") as second,
    ):
        for sender, other in ((first, second), (second, first)):
            eco = sender.zeep_client("eco-env-penalty", api_key=sender.keys["eco-env-penalty"])
            receipt = eco.service.ReceiveCaseBatch(batch=(CASES / "valid-batch.xml").read_bytes())
            assert receipt.accepted == 3
            # market-penalty's two channels share one path: one endpoint, both operations.
            market = sender.zeep_client("market-penalty")
            token = sender.keys["market-penalty"]
            cases = market.service.UploadCaseXml(token=token, xmlDoc=_market("valid-batch.xml"))
            assert etree.fromstring(cases.encode()).findtext("Accepted") == "4"
            published = market.service.UploadGsXml(
                token=token, xmlDoc=_market("invalid-publications.xml", "publication_upload")
            )
            accepted = int(etree.fromstring(published.encode()).findtext("Accepted") or 0)
            assert other.broker.depth("grassroots-platform") == 0
            messages = sender.drain("grassroots-platform", 7 + accepted)
            assert {r.messageId for r in receipt.record} <= {m.id for m in messages}
            assert len(messages) == 7 + accepted


def test_wsdl_files_ship_with_the_package() -> None:
    from adapters.protocols.soap_service import WSDL_FOLDER

    assert (Path(WSDL_FOLDER) / "eco-env-penalty.wsdl").is_file()
