"""The SOAP sender (zeep as the real client) against a loopback SOAP service built with lxml."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback_target import (
    TASK_WSDL,
    TEMPURI,
    LoopbackTarget,
    Recorded,
    soap_body_child,
    soap_fault,
    soap_header_text,
    soap_result,
)
from lxml import etree
from pydantic import ValidationError

from adapters.base import AdapterContext
from adapters.errors import PermanentDeliveryError, TransientDeliveryError
from adapters.protocols.soap_sender import DEFAULT_IDEMPOTENCY_HEADER, SoapSender, SoapSenderOptions
from mappings import SYSTEMS_ROOT, load_system
from standard.envelope import Envelope
from systems import AuthConfig, SystemConfig

SYSTEM = SystemConfig(
    id="eco-env-penalty",
    name_zh="省生态环境厅环境行政处罚系统",
    auth=AuthConfig(scheme="api_key", key_env="JGHUB_TEST_UNUSED"),
)
NAME_OUTSIDE_GB2312 = "𠮷"  # in GB18030, not in GB2312: legacy services still get it


@pytest.fixture(scope="module")
def case() -> tuple[Envelope, bytes]:
    """A penalty case and its GB18030-declared rendering for the department (case_return)."""
    system = load_system(SYSTEMS_ROOT / "eco-env-penalty")
    sample = SYSTEMS_ROOT / "eco-env-penalty/samples/case_batch/valid-batch.xml"
    envelope = system.translate("case_batch", sample.read_bytes()).envelopes[0]
    return envelope, system.render("case_return", envelope)


@pytest.fixture
def service() -> Iterator[LoopbackTarget]:
    with LoopbackTarget(wsdl=TASK_WSDL) as running:
        running.always(200, soap_result("ReceiveTask", "OK"), content_type="text/xml")
        yield running


def sender(tmp_path: Path, service: LoopbackTarget, **options: object) -> SoapSender:
    settings = {"wsdl": f"{service.url}?wsdl", "operation": "ReceiveTask", **options}
    return SoapSender(SoapSenderOptions.model_validate(settings), AdapterContext(SYSTEM, tmp_path))


def send(soap: SoapSender, case: tuple[Envelope, bytes], key: str = "idem-1") -> None:
    envelope, body = case
    soap.deliver(body, content_type="application/xml", idempotency_key=key, envelope=envelope)


def parameter(recorded: Recorded, name: str) -> str | None:
    return soap_body_child(recorded).findtext(f"{{{TEMPURI}}}{name}")


def test_document_goes_as_a_string_parameter_with_its_declaration_and_the_key_in_a_header(
    service: LoopbackTarget,
    tmp_path: Path,
    case: tuple[Envelope, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JGHUB_TEST_SOAP_TOKEN", "tok-9")
    soap = sender(tmp_path, service, secret_parameters={"token": "JGHUB_TEST_SOAP_TOKEN"})
    send(soap, case, key="idem-7")
    (call,) = service.requests
    assert call.header("SOAPAction") == '"http://tempuri.org/ReceiveTask"'
    assert call.header("Idempotency-Key") == "idem-7"
    assert soap_header_text(call, DEFAULT_IDEMPOTENCY_HEADER) == "idem-7"
    assert parameter(call, "token") == "tok-9"
    document = parameter(call, "xmlDoc")
    assert document is not None
    # The department's document keeps its own declaration; its text is the rendering's.
    assert document.startswith("<?xml version='1.0' encoding='GB18030'?>")
    envelope, body = case
    assert document == body.decode("gb18030")
    assert envelope.subject in document
    soap.close()


def test_rare_characters_survive_the_string_parameter(
    service: LoopbackTarget, tmp_path: Path, case: tuple[Envelope, bytes]
) -> None:
    envelope, _ = case
    system = load_system(SYSTEMS_ROOT / "eco-env-penalty")
    party = dict(envelope.data["party"], name=f"杭州{NAME_OUTSIDE_GB2312}记餐饮有限公司")
    rare = envelope.model_copy(update={"data": {**envelope.data, "party": party}})
    body = system.render("case_return", rare)
    assert NAME_OUTSIDE_GB2312.encode("gb18030") in body
    send(sender(tmp_path, service), (rare, body))
    assert NAME_OUTSIDE_GB2312 in (parameter(service.requests[0], "xmlDoc") or "")


def test_idempotency_key_as_a_parameter_when_the_target_declares_one(
    service: LoopbackTarget, tmp_path: Path, case: tuple[Envelope, bytes]
) -> None:
    send(sender(tmp_path, service, idempotency_parameter="requestId"), case, key="idem-p")
    (call,) = service.requests
    assert parameter(call, "requestId") == "idem-p"
    assert soap_header_text(call, DEFAULT_IDEMPOTENCY_HEADER) is None


def test_client_fault_is_permanent_server_fault_transient(
    service: LoopbackTarget, tmp_path: Path, case: tuple[Envelope, bytes]
) -> None:
    soap = sender(tmp_path, service)
    service.answer(500, soap_fault("soap:Client", "案件编号格式错误"), content_type="text/xml")
    with pytest.raises(PermanentDeliveryError) as refused:
        send(soap, case)
    assert "soap:Client" in str(refused.value) and "案件编号格式错误" in str(refused.value)
    service.answer(500, soap_fault("soap:Server.Busy", "数据库忙"), content_type="text/xml")
    with pytest.raises(TransientDeliveryError, match="数据库忙"):
        send(soap, case)


def test_http_errors_without_a_fault(
    service: LoopbackTarget, tmp_path: Path, case: tuple[Envelope, bytes]
) -> None:
    soap = sender(tmp_path, service)
    service.answer(503, b"<html>Service Unavailable</html>", content_type="text/html")
    with pytest.raises(TransientDeliveryError) as busy:
        send(soap, case)
    assert busy.value.status == 503 and "Service Unavailable" in str(busy.value)
    service.answer(403, b"<html>Forbidden: IP not allowed</html>", content_type="text/html")
    with pytest.raises(PermanentDeliveryError) as forbidden:
        send(soap, case)
    assert forbidden.value.status == 403 and "IP not allowed" in str(forbidden.value)


def test_a_slow_service_is_a_transient_timeout(
    service: LoopbackTarget, tmp_path: Path, case: tuple[Envelope, bytes]
) -> None:
    soap = sender(tmp_path, service, timeout_s=0.3)
    service.answer(200, soap_result("ReceiveTask", "OK"), content_type="text/xml", delay_s=1.5)
    with pytest.raises(TransientDeliveryError, match="in time"):
        send(soap, case)


def test_the_result_is_checked_when_the_target_answers_failure_in_it(
    service: LoopbackTarget, tmp_path: Path, case: tuple[Envelope, bytes]
) -> None:
    soap = sender(tmp_path, service, answer_check={"path": "@", "success": ["OK"]})
    service.answer(200, soap_result("ReceiveTask", "ERR:重复的案件"), content_type="text/xml")
    with pytest.raises(PermanentDeliveryError, match="ERR:重复的案件"):
        send(soap, case)
    send(soap, case)  # the default answer is OK


def test_an_unreachable_wsdl_is_transient_and_the_client_is_built_once_it_answers(
    tmp_path: Path, case: tuple[Envelope, bytes]
) -> None:
    with LoopbackTarget(wsdl=TASK_WSDL) as service:
        url = f"{service.url}?wsdl"
        service.always(200, soap_result("ReceiveTask", "OK"), content_type="text/xml")
    # The service has stopped: its port refuses connections.
    options = SoapSenderOptions(wsdl=url, operation="ReceiveTask", timeout_s=2)
    soap = SoapSender(options, AdapterContext(SYSTEM, tmp_path))
    with pytest.raises(TransientDeliveryError, match="WSDL of target eco-env-penalty"):
        send(soap, case)


def test_wrong_operation_or_wsdl_file_is_permanent_and_says_what_exists(
    service: LoopbackTarget, tmp_path: Path, case: tuple[Envelope, bytes]
) -> None:
    with pytest.raises(PermanentDeliveryError, match=r"no operation 'Upload'.*ReceiveTask"):
        send(sender(tmp_path, service, operation="Upload"), case)
    broken = tmp_path / "broken.wsdl"
    broken.write_text("<definitions>", encoding="utf-8")
    soap = SoapSender(
        SoapSenderOptions(wsdl=str(broken), operation="ReceiveTask"),
        AdapterContext(SYSTEM, tmp_path),
    )
    with pytest.raises(PermanentDeliveryError, match="cannot be used"):
        send(soap, case)


def test_address_overrides_the_wsdl_endpoint(
    service: LoopbackTarget, tmp_path: Path, case: tuple[Envelope, bytes]
) -> None:
    wsdl_file = tmp_path / "task.wsdl"
    wsdl_file.write_bytes(TASK_WSDL.replace(b"{{ADDRESS}}", b"http://intranet.invalid/x.asmx"))
    soap = SoapSender(
        SoapSenderOptions(wsdl=str(wsdl_file), operation="ReceiveTask", address=service.url),
        AdapterContext(SYSTEM, tmp_path),
    )
    send(soap, case)
    assert len(service.requests) == 1


def test_the_named_service_and_port_are_called_and_a_missing_one_is_permanent(
    service: LoopbackTarget, tmp_path: Path, case: tuple[Envelope, bytes]
) -> None:
    # The WSDL's first service names an unreachable host; the second, named in the options, its
    # second port, the running service.
    intranet = b"http://intranet.invalid/x.asmx"
    wsdl = TASK_WSDL.replace(b"{{ADDRESS}}", intranet).replace(
        b"</wsdl:definitions>",
        b'<wsdl:service name="TaskServiceDmz">'
        b'<wsdl:port name="Intranet" binding="tns:TaskServiceSoap">'
        b'<soap:address location="' + intranet + b'"/></wsdl:port>'
        b'<wsdl:port name="Dmz" binding="tns:TaskServiceSoap">'
        b'<soap:address location="' + service.url.encode() + b'"/></wsdl:port>'
        b"</wsdl:service></wsdl:definitions>",
    )
    wsdl_file = tmp_path / "task.wsdl"
    wsdl_file.write_bytes(wsdl)

    def named(**where: str) -> SoapSender:
        options = SoapSenderOptions.model_validate(
            {"wsdl": str(wsdl_file), "operation": "ReceiveTask", **where}
        )
        return SoapSender(options, AdapterContext(SYSTEM, tmp_path))

    send(named(service="TaskServiceDmz", port="Dmz"), case)
    assert len(service.requests) == 1
    with pytest.raises(PermanentDeliveryError, match=r"no service 'Other'.*Service not found"):
        send(named(service="Other"), case)
    with pytest.raises(PermanentDeliveryError, match=r"port 'Other'.*Port not found"):
        send(named(service="TaskServiceDmz", port="Other"), case)
    assert len(service.requests) == 1


def test_document_literal_element_mode(
    service: LoopbackTarget, tmp_path: Path, case: tuple[Envelope, bytes]
) -> None:
    response = etree.Element(f"{{{TEMPURI}}}TaskResponse")
    etree.SubElement(response, f"{{{TEMPURI}}}Code").text = "0"
    from loopback_target import soap_envelope

    service.always(200, soap_envelope(response), content_type="text/xml")
    soap = sender(tmp_path, service, operation="Task", document_as="element")
    task = etree.Element(f"{{{TEMPURI}}}Task", nsmap={None: TEMPURI})
    etree.SubElement(task, f"{{{TEMPURI}}}TaskId").text = "RW2026-0001"
    etree.SubElement(task, f"{{{TEMPURI}}}Title").text = "联合执法检查"
    envelope, _ = case
    soap.deliver(
        etree.tostring(task, xml_declaration=True, encoding="utf-8"),
        content_type="application/xml",
        idempotency_key="k",
        envelope=envelope,
    )
    sent = soap_body_child(service.requests[0])
    assert sent.tag == f"{{{TEMPURI}}}Task"
    assert sent.findtext(f"{{{TEMPURI}}}Title") == "联合执法检查"
    wrong = etree.tostring(etree.Element("Other"))
    with pytest.raises(PermanentDeliveryError, match="has root Other"):
        soap.deliver(wrong, content_type="application/xml", idempotency_key="k", envelope=envelope)


def test_options_validation() -> None:
    with pytest.raises(ValidationError, match="operation"):
        SoapSenderOptions.model_validate({"wsdl": "x.wsdl"})
    with pytest.raises(ValidationError, match="given twice: xmlDoc"):
        SoapSenderOptions.model_validate(
            {"wsdl": "x.wsdl", "operation": "Op", "parameters": {"xmlDoc": "x"}}
        )
    with pytest.raises(ValidationError, match="not an environment variable name"):
        SoapSenderOptions.model_validate(
            {"wsdl": "x.wsdl", "operation": "Op", "secret_parameters": {"token": "a b"}}
        )
