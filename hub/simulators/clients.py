"""Simulated sending ends: a system pushing to the hub in its own protocol, and pulling its outbox.

`SystemClient` reads the system's inbound channels from the systems configuration and speaks
what each channel's adapter expects: REST JSON (X-Api-Key, or the signed app key rewritten into
the body with a fresh requestTime for every request, as the provincial gateways do), XML over
HTTP, or SOAP through zeep built from the hub's served WSDL (a string, base64 or element
document, a token parameter or a WS-Security UsernameToken). Payloads that no real client
library would send (a document that is not well-formed inside a document/literal Body) go as raw
envelopes, as a broken department system would send them.

    client = SystemClient(system, "http://127.0.0.1:8080")
    outcome = client.push(channel, payload)     # PushOutcome: received, accepted, rejected...

`OutboxPuller` pulls a system's outbox, records what it got and acknowledges it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import requests
from lxml import etree
from zeep import Client
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from adapters.base import AdapterContext
from adapters.protocols.soap_push import SoapChannel, SoapPush, SoapPushOptions
from adapters.protocols.soap_service import SOAP12, ParameterKind
from adapters.protocols.xml_push import Receipt
from adapters.security import RequestSigner
from hub.simulators.targets import Delivered, DeliveryLog
from hub.simulators.traffic import TrafficPayload
from mappings.decoding import decode_payload
from mappings.errors import PayloadRejected
from systems import ChannelConfig, SystemConfig

PUSH_ADAPTERS = frozenset({"rest_push", "xml_push", "soap_push"})


@dataclass
class PushOutcome:
    """What the hub answered to one pushed payload.

    Attributes:
      received: records the hub read (a payload refused whole counts as one).
      accepted, rejected, failed: of those; failed ones were not confirmed by the bus.
      refused: why the payload was refused whole (a payload problem's kind, a refusal such as
        unauthenticated or too-large, a SOAP fault's subcode); None when it was read.
      reasons: the rules of the rejected records, and the refusal.
      message_ids: ids of the accepted records' messages.
      status: the HTTP status.
    """

    system: str
    message_type: str
    label: str
    status: int | None = None
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    refused: str | None = None
    reasons: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)


def _refused(outcome: PushOutcome, why: str) -> PushOutcome:
    outcome.refused = why
    outcome.received = 1
    outcome.rejected = 1
    outcome.reasons.append(why)
    return outcome


class SystemClient:
    """One external system pushing to the hub through its configured channels."""

    def __init__(self, system: SystemConfig, hub_url: str, *, timeout: float = 30.0) -> None:
        self.system = system
        self.hub_url = hub_url.rstrip("/")
        self.secret = system.auth.secret() if system.auth.scheme != "mtls" else None
        self._http = httpx.Client(base_url=self.hub_url, timeout=timeout)
        self._timeout = timeout
        self._soap: dict[str, tuple[SoapChannel, Client]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()
        with self._lock:
            for _, client in self._soap.values():
                client.transport.session.close()
            self._soap.clear()

    @property
    def channels(self) -> list[ChannelConfig]:
        """The system's push channels (pollers are read by the hub, not pushed)."""
        return [c for c in self.system.inbound if c.adapter in PUSH_ADAPTERS]

    def can_send(self, channel: ChannelConfig, payload: TrafficPayload) -> bool:
        """False for bytes no client could put in this channel as they are.

        A SOAP string parameter carries text, so bytes that do not decode cannot travel in it;
        base64 and element documents carry no transport charset, so a document that relies on
        one (no XML declaration, charset only in an HTTP header) cannot travel in them.
        """
        if channel.adapter != "soap_push":
            return True
        contract = self._soap_channel(channel)[0]
        parameter = (
            contract.operation.parameter(contract.document_parameter)
            if contract.document_parameter
            else None
        )
        if parameter is None or parameter.kind is not ParameterKind.STRING:
            declared = payload.body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<?xml")
            return payload.charset is None or declared
        try:
            decode_payload(payload.body, "xml", payload.charset)
        except PayloadRejected:
            return False
        return True

    def push(self, channel: ChannelConfig, payload: TrafficPayload) -> PushOutcome:
        """Send `payload` through `channel`; the hub's answer as a PushOutcome."""
        outcome = PushOutcome(self.system.id, channel.message_type, payload.label)
        if channel.adapter == "soap_push":
            return self._push_soap(channel, payload, outcome)
        return self._push_http(channel, payload, outcome)

    # ------------------------------------------------------------------ REST and XML

    def _push_http(
        self, channel: ChannelConfig, payload: TrafficPayload, outcome: PushOutcome
    ) -> PushOutcome:
        kind = "rest" if channel.adapter == "rest_push" else "xml"
        path = (
            channel.options.get("path")
            or f"/systems/{self.system.id}/{kind}/{channel.message_type}"
        )
        media = "application/json" if kind == "rest" else "application/xml"
        content_type = f"{media}; charset={payload.charset}" if payload.charset else media
        headers = {"Content-Type": content_type, **key_headers(self.system, self.secret)}
        body = payload.body
        if self.system.auth.scheme == "signed_app_key" and self.secret:
            body, signed = self._signed(body)
            headers.update(signed)
        response = self._http.post(
            str(path), content=body, headers=headers, auth=basic_auth(self.system, self.secret)
        )
        outcome.status = response.status_code
        receipt = channel.options.get("receipt")
        if receipt:
            return _from_receipt(response.content, receipt, response.status_code, outcome)
        if "xml" in response.headers.get("content-type", ""):
            return _from_xml_answer(response.content, outcome)
        try:
            answer = response.json()
        except ValueError:
            return _refused(outcome, f"http-{response.status_code}")
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            return _from_problem(answer, outcome)
        return _from_result(answer, outcome)

    def _signed(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        """The body re-signed now (appKey, requestTime, sign in it), or signature headers."""
        app_key = self.system.auth.app_key or ""
        assert self.secret is not None
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        signer = RequestSigner(app_key, self.secret)
        if isinstance(document, dict) and ("sign" in document or "appKey" in document):
            # A fresh signature for every request: the hub lets each one through once.
            request_time, sign = signer.sign()
            document["appKey"] = app_key
            is_number = isinstance(document.get("requestTime"), int)
            document["requestTime"] = int(request_time) if is_number else request_time
            document["sign"] = sign
            return json.dumps(document, ensure_ascii=False).encode("utf-8"), {}
        return body, signer.headers()

    # ------------------------------------------------------------------ SOAP

    def _soap_channel(self, channel: ChannelConfig) -> tuple[SoapChannel, Client]:
        key = f"{channel.message_type}"
        with self._lock:
            found = self._soap.get(key)
            if found is not None:
                return found
            options = SoapPushOptions.model_validate(channel.options)
            adapter = SoapPush(options, AdapterContext(system=self.system, data_dir=Path(".")))
            contract = adapter.contract(self.system, channel)
            session = requests.Session()
            if not (contract.token_parameter or contract.ws_security):
                session.headers.update(key_headers(self.system, self.secret))
                if self.system.auth.scheme == "basic" and self.secret:
                    session.auth = (self.system.auth.username or "", self.secret)
            transport = Transport(
                session=session, timeout=self._timeout, operation_timeout=self._timeout
            )
            wsse = (
                UsernameToken(self.system.auth.username or self.system.id, self.secret)
                if contract.ws_security and self.secret
                else None
            )
            client = Client(f"{self.hub_url}{contract.path}?wsdl", transport=transport, wsse=wsse)
            self._soap[key] = (contract, client)
            return contract, client

    def _push_soap(
        self, channel: ChannelConfig, payload: TrafficPayload, outcome: PushOutcome
    ) -> PushOutcome:
        contract, client = self._soap_channel(channel)
        operation = contract.operation
        service = (
            client.bind(*_port_of(client, operation.version is SOAP12))
            if len(contract.service.versions) > 1
            else client.service
        )
        arguments: dict[str, Any] = {}
        if contract.token_parameter and self.secret:
            arguments[contract.token_parameter] = self.secret
        if contract.document_parameter is None:
            try:
                root = etree.fromstring(payload.body, etree.XMLParser(resolve_entities=False))
            except etree.XMLSyntaxError:
                root = None
            if root is None or etree.QName(root) != operation.request_element:
                return self._push_raw_soap(contract, payload, outcome)
            arguments["_value_1"] = list(root)
            if root.attrib:
                arguments["_attr_1"] = dict(root.attrib)
        else:
            parameter = operation.parameter(contract.document_parameter)
            if parameter is not None and parameter.kind is ParameterKind.BASE64:
                arguments[contract.document_parameter] = payload.body
            else:
                text = decode_payload(payload.body, "xml", payload.charset).text
                arguments[contract.document_parameter] = text
        try:
            answer = getattr(service, operation.name)(**arguments)
        except Fault as fault:
            subcodes = [getattr(code, "localname", str(code)) for code in fault.subcodes or []]
            code = fault.code or "Fault"
            why = subcodes[0] if subcodes else code.rsplit(".", 1)[-1].split(":")[-1]
            return _refused(outcome, _fault_reason(why, fault))
        except (ZeepError, requests.RequestException) as error:
            return _refused(outcome, f"transport: {type(error).__name__}")
        outcome.status = 200
        return _from_soap_answer(answer, outcome)

    def _push_raw_soap(
        self, contract: SoapChannel, payload: TrafficPayload, outcome: PushOutcome
    ) -> PushOutcome:
        version = contract.operation.version
        document = payload.body
        if document.startswith(b"<?xml"):
            document = document[document.index(b"?>") + 2 :]
        envelope = (
            f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap='
            f'"{version.envelope}"><soap:Body>'.encode()
            + document
            + b"</soap:Body></soap:Envelope>"
        )
        headers = {"Content-Type": version.content_type}
        if version is SOAP12:
            headers["Content-Type"] += f'; action="{contract.operation.action}"'
        else:
            headers["SOAPAction"] = f'"{contract.operation.action}"'
        headers.update(key_headers(self.system, self.secret))
        response = self._http.post(
            contract.path,
            content=envelope,
            headers=headers,
            auth=basic_auth(self.system, self.secret),
        )
        outcome.status = response.status_code
        return _refused(outcome, _fault_subcode(response.content) or f"http-{response.status_code}")


class OutboxPuller:
    """Pulls one system's outbox from the hub until stopped; logs and acknowledges what it gets.

    Given several hub URLs (hosts behind a load balancer), pulls go to each in turn and each
    lease is acknowledged through the next one, as a balancer may route the acknowledgement to
    another host than the pull; a host that does not answer is passed over (`failovers`).
    `pulled` counts the message ids handed out, `acked` those whose acknowledgement the hub
    answered, `pending` is what the hub said was left after the last acknowledgement.
    """

    def __init__(
        self,
        system: SystemConfig,
        hub_url: str | Sequence[str],
        *,
        log: DeliveryLog | None = None,
        interval_s: float = 0.2,
        limit: int = 100,
        timeout: float = 30.0,
    ) -> None:
        self.system = system
        self.log = log or DeliveryLog()
        self.interval_s = interval_s
        self.limit = limit
        self.secret = system.auth.secret() if system.auth.scheme != "mtls" else None
        urls = [hub_url] if isinstance(hub_url, str) else list(hub_url)
        self._hubs = [httpx.Client(base_url=url.rstrip("/"), timeout=timeout) for url in urls]
        self._turn = 0
        self.pulled: Counter[str] = Counter()
        self.acked: set[str] = set()
        self.acked_elsewhere = 0
        self.failovers = 0
        self.pending: int | None = None

    def _headers(self) -> dict[str, str]:
        if self.secret is None:
            return {}
        if self.system.auth.scheme != "signed_app_key":
            return key_headers(self.system, self.secret)
        if self.system.auth.scheme == "signed_app_key":
            return RequestSigner(self.system.auth.app_key or "", self.secret).headers()
        return {}

    def _request(self, first: int, method: str, path: str, **request: Any) -> tuple[int, Any]:
        """Send through hub `first`, or the next ones in turn when it does not answer; the
        index of the hub that answered and its answer. The last hub's failure is raised."""
        for step in range(len(self._hubs)):
            index = (first + step) % len(self._hubs)
            try:
                response = self._hubs[index].request(method, path, **request)
                response.raise_for_status()
                return index, response
            except httpx.TransportError:
                if step == len(self._hubs) - 1:
                    raise
                self.failovers += 1
        raise AssertionError("unreachable")

    def pull_once(self) -> int:
        """One pull and its acknowledgement; the number of messages received."""
        base = f"/systems/{self.system.id}/outbox"
        auth = basic_auth(self.system, self.secret)
        self._turn += 1
        pulled_from, response = self._request(
            self._turn,
            "GET",
            base,
            params={"limit": self.limit},
            headers=self._headers(),
            auth=auth,
        )
        lease = response.json()
        messages = lease.get("messages") or []
        for message in messages:
            body = message.get("body", "")
            raw = (
                base64.b64decode(body)
                if message.get("encoding") == "base64"
                else str(body).encode("utf-8")
            )
            self.pulled[str(message.get("id"))] += 1
            self.log.add(
                Delivered(
                    system=self.system.id,
                    operation="outbox",
                    idempotency_key=message.get("idempotency_key"),
                    content_type=str(message.get("content_type", "")),
                    body=raw,
                    outcome="accepted",
                    at=time.time(),
                )
            )
        if messages:
            acked_through, acked = self._request(
                pulled_from + 1,
                "POST",
                f"{base}/ack",
                json={"lease_id": lease["lease_id"], "cursor": lease["cursor"]},
                headers=self._headers(),
                auth=auth,
            )
            self.acked.update(str(message.get("id")) for message in messages)
            self.acked_elsewhere += acked_through != pulled_from
            self.pending = acked.json().get("pending")
        return len(messages)

    def run(self, stop: threading.Event) -> None:
        """Pull until `stop` is set; a failing pull is retried at the next interval."""
        while not stop.is_set():
            try:
                got = self.pull_once()
            except httpx.HTTPError:
                got = 0
            if not got:
                stop.wait(self.interval_s)

    def close(self) -> None:
        for client in self._hubs:
            client.close()


# ---------------------------------------------------------------------- answers


def key_headers(system: SystemConfig, secret: str | None) -> dict[str, str]:
    """The header carrying an api_key system's key: its own header, or Authorization: Bearer."""
    if system.auth.scheme != "api_key" or not secret:
        return {}
    header = system.auth.header or "X-Api-Key"
    if header.lower() == "authorization":
        return {"Authorization": f"Bearer {secret}"}
    return {header: secret}


def basic_auth(system: SystemConfig, secret: str | None) -> Any:
    """httpx's HTTP Basic auth for a basic system; else the client's default (none)."""
    if system.auth.scheme != "basic" or not secret:
        return httpx.USE_CLIENT_DEFAULT
    return httpx.BasicAuth(system.auth.username or "", secret)


def _from_receipt(
    body: bytes, receipt: dict[str, Any], status: int, outcome: PushOutcome
) -> PushOutcome:
    """Read a system's own receipt format (xml_push `receipt` option) back into an outcome."""
    try:
        root = etree.fromstring(body)
    except etree.XMLSyntaxError:
        return _refused(outcome, f"http-{status}")
    form = Receipt.model_validate(receipt)
    refusal = root.find(form.refusal.element)
    if refusal is not None:
        # Refused whole: the refusal element says why (its kind, where the form puts it).
        kinds = [refusal.get(n) for n, t in form.refusal.attributes.items() if t == "{kind}"]
        kind = next((k for k in kinds if k), f"HTTP {status}")
        return _refused(outcome, f"payload {kind}" if status == 400 else kind)
    # Reversed so that when two statuses share a code, the first listed (rejected) wins.
    codes = {str(v): k for k, v in reversed(list(form.codes.items()))}
    named = {template: name for name, template in form.item_attributes.items()}
    records: list[dict[str, Any]] = []
    for node in root.iter(form.item):
        if "{status}" in named:
            state = node.get(named["{status}"]) or "rejected"
        elif "{accepted}" in named:
            state = "accepted" if node.get(named["{accepted}"]) == "true" else "rejected"
        elif "{code}" in named:
            state = codes.get(node.get(named["{code}"]) or "", "rejected")
        else:
            state = "accepted"
        message_id = node.get(named["{message_id}"]) if "{message_id}" in named else None
        reason = node.get(named["{message}"]) if "{message}" in named else None
        if state == "accepted" and not message_id:
            message_id = f"receipt-{len(records)}"
        records.append(
            {
                "status": state,
                "message_id": message_id,
                # A receipt's message leads with the field it is about ("deadline: ...").
                "errors": [{"rule": (reason or "rejected").split(":")[0][:40]}],
            }
        )
    if status == 400 or not records:
        return _refused(outcome, f"payload refused (HTTP {status})")
    return _from_result(
        {
            "accepted": sum(r["status"] == "accepted" for r in records),
            "rejected": sum(r["status"] == "rejected" for r in records),
            "failed": sum(r["status"] == "failed" for r in records),
            "records": records,
        },
        outcome,
    )


def _port_of(client: Client, soap12: bool) -> tuple[str, str]:
    for service in client.wsdl.services.values():
        for port in service.ports.values():
            if ("12" in type(port.binding).__name__) == soap12:
                return service.name, port.name
    raise ValueError("the WSDL has no port of that SOAP version")


def _fault_reason(why: str, fault: Fault) -> str:
    detail = fault.detail
    if why == "PayloadRejected" and detail is not None:
        for node in detail.iter():
            if etree.QName(node).localname == "kind" and node.text:
                return f"payload {node.text}"
    return why


def _fault_subcode(body: bytes) -> str | None:
    try:
        root = etree.fromstring(body)
    except etree.XMLSyntaxError:
        return None
    for node in root.iter():
        if not isinstance(node.tag, str):
            continue
        local = etree.QName(node).localname
        if local == "faultcode" and node.text:
            return node.text.rsplit(".", 1)[-1].split(":")[-1]
        if local == "Subcode":
            value = node.find(f"{{{etree.QName(node).namespace}}}Value")
            if value is not None and value.text:
                return value.text.split(":")[-1]
    return None


def _reasons(records: list[dict[str, Any]]) -> list[str]:
    reasons = []
    for record in records:
        if record.get("status") != "rejected":
            continue
        errors = record.get("errors") or record.get("error") or []
        rules = [str(e.get("rule") or e.get("kind") or "rejected") for e in errors]
        reasons.append(rules[0] if rules else "rejected")
    return reasons


def _from_problem(problem: dict[str, Any], outcome: PushOutcome) -> PushOutcome:
    """A push refused whole: its problem type's name (urn:jghub:problem:NAME), or for a payload
    that could not be read "payload KIND", as the XML answers say."""
    errors = problem.get("errors")
    if errors and problem.get("quarantine_id"):  # read and kept, but not understood
        return _refused(outcome, f"payload {errors[0].get('rule')}")
    return _refused(outcome, str(problem.get("type", "")).rpartition(":")[2])


def _from_result(answer: dict[str, Any], outcome: PushOutcome) -> PushOutcome:
    records = answer.get("records") or []
    outcome.accepted = int(answer.get("accepted", 0))
    outcome.rejected = int(answer.get("rejected", 0))
    outcome.failed = int(answer.get("failed", 0))
    outcome.received = len(records)
    outcome.message_ids = [r["message_id"] for r in records if r.get("message_id")]
    outcome.reasons = _reasons(records)
    return outcome


def _from_xml_answer(body: bytes, outcome: PushOutcome) -> PushOutcome:
    root = etree.fromstring(body)
    if root.tag == "Refusal":  # refused before the payload was read
        return _refused(outcome, root.findtext("error") or "refused")
    problem = root.find("payload_error")
    if problem is not None:
        return _refused(outcome, f"payload {problem.findtext('kind')}")
    records = []
    for node in root.iterfind("records/record"):
        errors = [{child.tag: child.text for child in error} for error in node.iterfind("error")]
        records.append(
            {
                "status": node.get("status"),
                "message_id": node.findtext("message_id"),
                "errors": errors,
            }
        )
    return _from_result(
        {
            "accepted": root.findtext("accepted") or 0,
            "rejected": root.findtext("rejected") or 0,
            "failed": root.findtext("failed") or 0,
            "records": records,
        },
        outcome,
    )


def _from_soap_answer(answer: Any, outcome: PushOutcome) -> PushOutcome:
    if isinstance(answer, str):
        root = etree.fromstring(answer.encode("utf-8"))
        records = [
            {
                "status": node.get("Status"),
                "message_id": node.get("MessageId"),
                "errors": [{"rule": e.get("Rule")} for e in node.iterfind("Error")],
            }
            for node in root.iterfind("Records/Record")
        ]
        return _from_result(
            {
                "accepted": root.findtext("Accepted") or 0,
                "rejected": root.findtext("Rejected") or 0,
                "failed": root.findtext("Failed") or 0,
                "records": records,
            },
            outcome,
        )
    listed = getattr(answer, "record", None)
    if listed is None:
        listed = getattr(answer, "Outcome", None) or []
    records = [
        {
            "status": item.status,
            "message_id": item.messageId,
            "errors": [{"rule": e.rule, "kind": e.kind} for e in (item.error or [])],
        }
        for item in listed
    ]
    return _from_result(
        {
            "accepted": answer.accepted,
            "rejected": answer.rejected,
            "failed": answer.failed,
            "records": records,
        },
        outcome,
    )


def reason_counts(outcomes: list[PushOutcome]) -> Counter[str]:
    """How often each rejection reason occurred across `outcomes`."""
    counts: Counter[str] = Counter()
    for outcome in outcomes:
        counts.update(outcome.reasons)
    return counts
