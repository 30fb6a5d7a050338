"""SOAP push: systems call the hub's SOAP service (WSDL served at `?wsdl`); one answer per record.

Each channel names the WSDL operation that carries its message type; the channels of one system
that share a path share one endpoint and one WSDL (an ASMX-style service has several operations
at one address). A request goes:

1. through the gatekeeper before the body is parsed (`Gatekeeper.admit`): size (413), a
   credential in the headers (X-Api-Key, a client certificate; 401/403) or, where the channel
   takes one inside the envelope, a token parameter (ASMX services pass the key as an argument)
   or a WS-Security UsernameToken, found by a streaming parse of the envelope's first
   `CREDENTIAL_PREFIX_BYTES` (401 when it is not there or does not verify; nothing of such a
   request is kept), then the rate limit (429) and the rest of the body;
2. into `SoapService.parse_request` (adapters.protocols.soap_service): hardened parsing of the
   envelope, SOAP 1.1 or 1.2 by its namespace, dispatch by the Body's element, SOAPAction
   checked against it;
3. to `Ingress.accept` with the XML document the operation carries: an xs:string parameter, an
   xs:base64Binary parameter, or the Body's element itself (document/literal);
4. back as the operation's response, built from the WSDL's schema, one record element per record.

Everything that goes wrong is a SOAP fault (see `adapters.protocols.soap_service`): Sender/Client
faults with a subcode for a refused credential (Authentication, Forbidden), a wrong SOAPAction
(WrongAction), an unknown operation (UnknownOperation), a broken envelope (MalformedEnvelope), a
document that cannot be read (PayloadRejected); Receiver/Server faults over HTTP 503 with
Retry-After when the bus cannot be reached (BusUnavailable), a target is behind (BackPressure) or
the hub's store does not answer (StoreUnavailable). What the app answers on the service's path
outside the call (another method than GET and POST: MethodNotAllowed, over 405) is a fault too
(`error_answers`), never JSON.
Envelopes and documents of an authenticated system refused for their content are kept in the
quarantine. The POST endpoints
stay out of the OpenAPI document: their contract is the WSDL, and SOAP answers faults with 500,
which an OpenAPI client would read as a server error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from adapters.base import InboundAdapter
from adapters.credentials import WSSE_SECURITY, envelope_credentials
from adapters.errors import AdapterConfigError, IngressUnavailable, RequestRefused, Unauthenticated
from adapters.ingress import IngressResult
from adapters.openapi import body_limit_text
from adapters.problems import ChannelAnswer, store_unavailable_refusal
from adapters.protocols.soap_service import (
    SOAP11,
    SOAP12,
    WSDL_FOLDER,
    FaultCode,
    ParameterKind,
    SoapFault,
    SoapOperation,
    SoapRequest,
    SoapService,
    SoapVersion,
    fault_response_body,
)
from adapters.security import Gatekeeper
from mappings import PayloadLimits, encode_as_declared
from standard.errors import quoted
from store import StoreUnavailable
from systems import ChannelConfig, SystemConfig

if TYPE_CHECKING:
    from adapters.ingress import Ingress

log = logging.getLogger("adapters.protocols.soap_push")

WSDL_QUERY_NAMES = frozenset({"wsdl", "singlewsdl"})
RETRY_AFTER_UNAVAILABLE = 5
ENVELOPE_MAX_DEPTH = 64
"""Deepest element nesting accepted in a SOAP envelope (a document in it adds ~3 levels)."""

_REFUSAL_SUBCODES = {
    "unauthenticated": "Authentication",
    "forbidden": "Forbidden",
    "too-large": "TooLarge",
    "too-many-records": "TooManyRecords",
    "rate-limited": "RateLimited",
    "bad-request": "BadRequest",
    "timeout": "Timeout",
    "method-not-allowed": "MethodNotAllowed",
    "not-found": "NotFound",
    "store-unavailable": "StoreUnavailable",
    "internal-error": "InternalError",
}
_TRANSPORT_STATUSES = frozenset({405, 408, 413, 429})


class SoapPushOptions(BaseModel):
    """Options of one SOAP push channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wsdl: str | None = Field(
        default=None,
        description=(
            "The service's WSDL: a path, or a file name in adapters/wsdl/. Default: "
            "adapters/wsdl/<system id>.wsdl. It is served at <path>?wsdl with the service "
            "address set to the URL it was fetched from."
        ),
        examples=["eco-env-penalty.wsdl", "/etc/jghub/wsdl/market-penalty.wsdl"],
    )
    operation: str | None = Field(
        default=None,
        description=(
            "The WSDL operation carrying this channel's message type; default: the WSDL's only "
            "operation (a WSDL with several needs one named per channel)."
        ),
        examples=["ReceiveCaseBatch", "UploadCaseXml"],
    )
    path: str | None = Field(
        default=None,
        pattern=r"^/[A-Za-z0-9_\-./]*$",
        description=(
            "URL path of the service; default /systems/{system id}/soap. Channels of one system "
            "with the same path are operations of one service."
        ),
        examples=["/systems/market-penalty/soap/CaseService.asmx"],
    )
    document_parameter: str | None = Field(
        default=None,
        description=(
            "The request parameter holding the XML document (xs:string or xs:base64Binary). "
            "Default: the operation's only string or base64Binary parameter other than the "
            "token; with none, the Body's element itself is the document (document/literal)."
        ),
        examples=["xmlDoc", "batch"],
    )
    token_parameter: str | None = Field(
        default=None,
        description=(
            "A request parameter carrying the system's API key (ASMX services pass a token "
            "argument); checked like the X-Api-Key header when the request has no header "
            "credential. Default: none."
        ),
        examples=["token"],
    )
    ws_security: bool = Field(
        default=False,
        description=(
            "Accept a WS-Security UsernameToken (PasswordText) in the SOAP header, its Username "
            "being the system's auth.username and its password the system's API key, checked "
            "when the request has no header credential; the wsse:Security block is then "
            "understood even when marked mustUnderstand. Default: off."
        ),
    )


@dataclass(frozen=True)
class SoapChannel:
    """One channel's SOAP contract: where it is served and how its request carries the document.

    `document_parameter` None means the Body's element is the document (document/literal).
    """

    path: str
    service: SoapService
    operation: SoapOperation
    document_parameter: str | None
    token_parameter: str | None
    ws_security: bool


@dataclass
class _Operation:
    """What one configured channel adds to an endpoint."""

    message_type: str
    operation: SoapOperation
    document_parameter: str | None
    token_parameter: str | None
    ws_security: bool
    max_records: int


@dataclass
class _Endpoint:
    """One SOAP service address of one system: its WSDL and the channels' operations."""

    service: SoapService
    system: SystemConfig
    gatekeeper: Gatekeeper
    ingress: Ingress
    path: str
    public_url: str
    operations: dict[str, _Operation] = field(default_factory=dict)

    @property
    def credential_in_message(self) -> bool:
        """True when some operation may carry its credential inside the envelope."""
        return any(op.token_parameter or op.ws_security for op in self.operations.values())

    @property
    def understood(self) -> frozenset[str]:
        """Header blocks the endpoint processes."""
        if any(op.ws_security for op in self.operations.values()):
            return frozenset({WSSE_SECURITY})
        return frozenset()

    def credential_in_envelope(self, prefix: bytes, whole: bool) -> str:
        """The system whose credential the envelope's first bytes carry (a `BodyCredential`):
        a token parameter, or a UsernameToken; Unauthenticated (401) otherwise."""
        tokens = sorted(
            {op.token_parameter for op in self.operations.values() if op.token_parameter}
        )
        ws_security = any(op.ws_security for op in self.operations.values())
        found = envelope_credentials(prefix, tokens)
        if found.token:
            return self.gatekeeper.identify_key(
                found.token, f"the key in parameter {tokens[0]!r} of {found.operation}"
            )
        if ws_security and found.password is not None:
            return self.gatekeeper.identify_username_token(found.username, found.password)
        where = "the X-Api-Key header"
        if tokens:
            where += f" or the system's key in parameter {' or '.join(map(repr, tokens))}"
        if ws_security:
            where += " or a WS-Security UsernameToken with the system's user name and key"
        within = "" if whole else f" within the envelope's first {len(prefix)} bytes"
        raise Unauthenticated(f"no credential{within}: send {where}", system=self.system.id)

    async def call(self, request: Request) -> Response:
        """The POST route: one SOAP request. Being the route's endpoint, it also marks the route
        as this endpoint's, which is how `_mounted_endpoint` finds it again."""
        return await _call(self, request)


def _mounted_endpoint(app_or_router: FastAPI | APIRouter, path: str) -> _Endpoint | None:
    """The SOAP endpoint `app_or_router` already serves at `path` (as mounted), if any.

    The app's own routes are the registry of its endpoints, so the channels of one system that
    share a path find one endpoint, two apps in one process never see each other's, and an
    endpoint goes when its app goes.
    """
    for route in app_or_router.routes:
        owner = getattr(getattr(route, "endpoint", None), "__self__", None)
        if isinstance(owner, _Endpoint) and owner.path == path:
            return owner
    return None


class SoapPush(InboundAdapter):
    """SOAP 1.1/1.2 push endpoint serving a static WSDL; one answer per record.

    The operation's request carries the system's XML document as a string parameter (decoded as
    its declaration says, gb2312 read as GB18030), a base64Binary parameter (bytes unchanged) or
    the Body's element (document/literal). Faults are SOAP faults with a subcode in
    urn:jghub:soap:fault naming the rule broken.
    """

    name: ClassVar[str] = "soap_push"
    Options: ClassVar[type[BaseModel]] = SoapPushOptions
    # Whichever way the operation carries it (string, base64Binary, the Body's element), what
    # reaches the mapping is an XML document (`_document`).
    payload_format: ClassVar[Literal["xml", "json"] | None] = "xml"

    @property
    def soap_options(self) -> SoapPushOptions:
        assert isinstance(self.options, SoapPushOptions)
        return self.options

    def wsdl_path(self, system: SystemConfig) -> Path:
        """The WSDL file this channel's service is described by."""
        given = self.soap_options.wsdl
        if not given:
            return WSDL_FOLDER / f"{system.id}.wsdl"
        path = Path(given)
        if not path.is_absolute() and not path.exists():
            path = WSDL_FOLDER / given
        return path

    def route_path(self, system: SystemConfig) -> str:
        """The service's URL path."""
        return self.soap_options.path or f"/systems/{system.id}/soap"

    def contract(self, system: SystemConfig, channel: ChannelConfig) -> SoapChannel:
        """What a client of this channel must send: service, operation, where the document goes.

        Raises AdapterConfigError when the WSDL, the operation or a named parameter is missing.
        """
        wsdl = self.wsdl_path(system)
        if not wsdl.is_file():
            raise AdapterConfigError(
                f"system {system.id}, channel {channel.message_type}: WSDL file {wsdl} does not "
                "exist (option wsdl)"
            )
        try:
            service = SoapService.load(wsdl)
        except Exception as error:
            raise AdapterConfigError(f"WSDL {wsdl} cannot be read: {error}") from error
        operation = self._operation(service, system, channel)
        if self.soap_options.ws_security and system.auth.username is None:
            raise AdapterConfigError(
                f"system {system.id}, channel {channel.message_type}: option ws_security needs "
                "auth.username, the Username its WS-Security UsernameToken carries (the token's "
                "user name is checked as well as its password)"
            )
        return SoapChannel(
            path=self.route_path(system),
            service=service,
            operation=operation,
            document_parameter=self._document_parameter(operation, system),
            token_parameter=self.soap_options.token_parameter,
            ws_security=self.soap_options.ws_security,
        )

    def mount(
        self,
        app_or_router: FastAPI | APIRouter,
        system: SystemConfig,
        channel: ChannelConfig,
        ingress: Ingress,
    ) -> None:
        gatekeeper = self.context.require_gatekeeper(self.name)
        contract = self.contract(system, channel)
        service, operation, path = contract.service, contract.operation, contract.path
        endpoint = _mounted_endpoint(app_or_router, path)
        if endpoint is None:
            endpoint = _Endpoint(
                service, system, gatekeeper, ingress, path, self.context.public_url
            )
            _add_routes(app_or_router, endpoint)
        elif endpoint.system.id != system.id or endpoint.service is not service:
            raise AdapterConfigError(
                f"SOAP path {path} is already the service of system {endpoint.system.id} with "
                f"{endpoint.service.path.name}; give channel {channel.message_type} of "
                f"{system.id} its own path"
            )
        if operation.name in endpoint.operations:
            raise AdapterConfigError(
                f"system {system.id}: operation {operation.name} at {path} already carries "
                f"{endpoint.operations[operation.name].message_type}"
            )
        endpoint.operations[operation.name] = _Operation(
            channel.message_type,
            operation,
            contract.document_parameter,
            contract.token_parameter,
            contract.ws_security,
            channel.max_records,
        )

    def error_answers(
        self, system: SystemConfig, channel: ChannelConfig
    ) -> dict[str, ChannelAnswer]:
        # The POST route answers its own faults; this covers what the app's handlers answer on
        # the service's path (another method, the store's outage).
        return {self.route_path(system): refusal_as_fault}

    def _operation(
        self, service: SoapService, system: SystemConfig, channel: ChannelConfig
    ) -> SoapOperation:
        name = self.soap_options.operation
        if name is None:
            names = service.operation_names()
            if len(names) != 1:
                raise AdapterConfigError(
                    f"system {system.id}, channel {channel.message_type}: {service.path.name} has "
                    f"several operations ({', '.join(names)}); name one in option `operation`"
                )
            name = names[0]
        try:
            return service.operation(name)
        except KeyError as error:
            raise AdapterConfigError(f"system {system.id}: {error.args[0]}") from None

    def _document_parameter(self, operation: SoapOperation, system: SystemConfig) -> str | None:
        options = self.soap_options
        for name in (options.document_parameter, options.token_parameter):
            if name is not None and operation.parameter(name) is None:
                raise AdapterConfigError(
                    f"system {system.id}: operation {operation.name} has no parameter {name!r} "
                    f"(parameters: {', '.join(p.name for p in operation.parameters) or 'none'})"
                )
        if options.document_parameter is not None:
            return options.document_parameter
        candidates = [
            p.name
            for p in operation.parameters
            if p.kind in (ParameterKind.STRING, ParameterKind.BASE64)
            and p.name != options.token_parameter
        ]
        if len(candidates) > 1:
            raise AdapterConfigError(
                f"system {system.id}: operation {operation.name} has several text parameters "
                f"({', '.join(candidates)}); name the document's in option `document_parameter`"
            )
        return candidates[0] if candidates else None


def _add_routes(app_or_router: FastAPI | APIRouter, endpoint: _Endpoint) -> None:
    system = endpoint.system

    # From the configured public URL, never from the request: its Host header is the client's
    # to choose, and a WSDL naming another host would send the next client's calls there.
    address = endpoint.public_url + endpoint.path

    async def describe(request: Request) -> Response:
        if not WSDL_QUERY_NAMES & {name.lower() for name in request.query_params}:
            return Response(
                f"SOAP service of {system.name_zh} ({system.id}); its WSDL is at {address}?wsdl\n",
                status_code=200,
                media_type="text/plain; charset=utf-8",
            )
        return Response(endpoint.service.wsdl(address), media_type="text/xml; charset=utf-8")

    app_or_router.add_api_route(
        endpoint.path,
        describe,
        methods=["GET"],
        name=f"{system.id}:soap_push:wsdl",
        summary=f"WSDL of the SOAP service of {system.name_zh} ({system.id})",
        description=(
            "GET with the query `?wsdl` returns the service's WSDL, its address set to this "
            "path under the hub's public URL (JGHUB_PUBLIC_URL); POST SOAP 1.1 or 1.2 requests "
            f"to the same URL (see the WSDL), authenticated ({system.auth.scheme}). "
            f"{body_limit_text(endpoint.gatekeeper, system)}"
        ),
        tags=[system.id],
        response_class=Response,
        responses={200: {"content": {"text/xml": {}}, "description": "The WSDL."}},
    )
    app_or_router.add_api_route(
        endpoint.path,
        endpoint.call,
        methods=["POST"],
        name=f"{system.id}:soap_push",
        include_in_schema=False,
    )


async def _call(endpoint: _Endpoint, request: Request) -> Response:
    owner = endpoint.system.id
    content_type = request.headers.get("content-type")
    version = _version_of(content_type)
    try:
        admission = await endpoint.gatekeeper.admit(
            request,
            owner,
            in_body=endpoint.credential_in_envelope if endpoint.credential_in_message else None,
            accepted=(
                f"the X-Api-Key header (or use the client certificate configured for {owner})"
            ),
        )
        return await run_in_threadpool(
            _answer, endpoint, admission.body, content_type, request.headers.get("soapaction")
        )
    except RequestRefused as refused:
        return _fault(_refusal_fault(refused), version)
    except SoapFault as fault:
        return _fault(fault, version)
    except StoreUnavailable as error:
        log.warning("SOAP request of %s: %s", owner, error)
        return _fault(_refusal_fault(store_unavailable_refusal(request)), version)
    except Exception:
        log.exception("SOAP request of %s failed", owner)
        return _fault(
            SoapFault(
                FaultCode.RECEIVER,
                "the hub could not process the request (the error is in its log); send it "
                "again later",
            ),
            version,
        )


def _answer(
    endpoint: _Endpoint,
    body: bytes,
    content_type: str | None,
    soap_action: str | None,
) -> Response:
    owner = endpoint.system.id
    limits = PayloadLimits(
        max_bytes=endpoint.gatekeeper.body_limit(owner), max_depth=ENVELOPE_MAX_DEPTH
    )
    version = _version_of(content_type)
    try:
        request = endpoint.service.parse_request(
            body,
            content_type=content_type,
            soap_action=soap_action,
            limits=limits,
            understood=endpoint.understood,
        )
        version = request.version
        configured = endpoint.operations.get(request.operation.name)
        if configured is None:
            raise SoapFault(
                FaultCode.SENDER,
                f"operation {request.operation.name} is in the WSDL but not configured for "
                f"{owner} (configured: {', '.join(sorted(endpoint.operations))})",
                subcode="UnknownOperation",
            )
        document, charset = _document(configured, request)
    except RequestRefused as refused:
        return _fault(_refusal_fault(refused), version)
    except SoapFault as fault:
        if fault.code is not FaultCode.RECEIVER and body:
            _keep(endpoint, body, fault, content_type)
        return _fault(fault, version)
    try:
        result = endpoint.ingress.accept(
            owner,
            configured.message_type,
            document,
            charset=charset,
            max_records=configured.max_records,
        )
    except RequestRefused as refused:
        return _fault(_refusal_fault(refused), version)
    except IngressUnavailable as error:
        return _fault(
            SoapFault(
                FaultCode.RECEIVER,
                str(error),
                subcode=error.subcode,
                status=503,
                headers={"Retry-After": str(error.retry_after)},
            ),
            version,
        )
    if result.payload_error is not None:
        problem = result.payload_error
        return _fault(
            SoapFault(
                FaultCode.SENDER,
                f"the {configured.message_type} document cannot be read: {problem.kind}: "
                f"{problem.reason}",
                subcode="PayloadRejected",
                detail={
                    **problem.model_dump(),
                    "receiptId": result.receipt_id,
                    "quarantineId": result.quarantine_id,
                },
            ),
            version,
        )
    return Response(
        endpoint.service.response(request, _response_values(endpoint.service, request, result)),
        media_type=request.version.content_type,
    )


def _document(configured: _Operation, request: SoapRequest) -> tuple[bytes, str | None]:
    name = configured.document_parameter
    if name is None:
        # Document/literal: the Body's element is the document; as its own document it keeps
        # the namespaces it uses, and UTF-8 says its encoding truthfully.
        element = request.document
        return bytes(etree.tostring(element, encoding="utf-8", xml_declaration=True)), None
    value = request.parameters.get(name)
    if value is None:
        raise SoapFault(
            FaultCode.SENDER,
            f"{request.operation.name} needs parameter {name!r} (the XML document)",
            subcode="InvalidParameter",
            detail={"parameter": name},
        )
    if isinstance(value, bytes):
        # base64Binary: the bytes exactly as the system wrote them; their declaration holds.
        return value, None
    if isinstance(value, str):
        return _encoded_as_declared(value, name, request.operation.name), None
    return bytes(etree.tostring(value, encoding="utf-8", xml_declaration=True)), None


def _encoded_as_declared(text: str, parameter: str, operation: str) -> bytes:
    """The document in a string parameter as bytes that agree with its own XML declaration.

    Parsing the envelope already turned the parameter into Unicode, but the document inside may
    still declare `encoding="gb2312"`; the mapping reads bytes and honours that declaration, so
    the text is encoded as it says (`mappings.encode_as_declared`). A character the declared
    encoding cannot hold is the sender's mistake, answered with a fault naming it.
    """
    try:
        return encode_as_declared(text)
    except UnicodeEncodeError as error:
        declared, held = error.encoding, error.object[error.start]
        raise SoapFault(
            FaultCode.SENDER,
            f"the document in parameter {parameter!r} of {operation} declares encoding "
            f"{quoted(declared)} but holds {quoted(held)} (character {error.start}), which "
            f"{declared} cannot encode; declare an encoding that can (UTF-8, GB18030)",
            subcode="InvalidParameter",
            detail={"parameter": parameter, "declared": declared, "position": error.start},
        ) from None


def _response_values(
    service: SoapService, request: SoapRequest, result: IngressResult
) -> dict[str, Any]:
    """The response wrapper's children, filled from `result` as the WSDL's schema has them.

    One child: the receipt itself (a Receipt element, or for ASMX services a string holding the
    <Result> document). Several: the receipt's fields side by side, its record list under the
    wrapper's repeated element (e.g. jt:Outcome).
    """
    names = service.response_fields(request.operation)
    if len(names) == 1:
        if service.response_is_text(request.operation):
            return {names[0]: asmx_result(result)}
        return {names[0]: receipt(result)}
    fields = receipt(result)
    records = fields.pop("record")
    values = {name: fields.get(name) for name in names}
    repeated = service.repeated_field(request.operation)
    if repeated is None:
        raise SoapFault(
            FaultCode.RECEIVER,
            f"the WSDL's response of {request.operation.name} has no repeated element for the "
            "per-record answers",
        )
    values[repeated] = records
    return values


def asmx_result(result: IngressResult) -> str:
    """`result` as the XML text ASMX-style services return: <Result><Code>0</Code>...</Result>.

    Code 0: every record accepted; 1: some rejected (see their Error elements; sending them
    again unchanged will not help); 2: some not confirmed by the bus (send those again).
    """
    code = 2 if result.failed else 1 if result.rejected else 0
    root = etree.Element("Result")
    etree.SubElement(root, "Code").text = str(code)
    etree.SubElement(
        root, "Message"
    ).text = f"{result.accepted} accepted, {result.rejected} rejected, {result.failed} failed"
    etree.SubElement(root, "ReceiptId").text = result.receipt_id
    for name in ("accepted", "rejected", "failed"):
        etree.SubElement(root, name.capitalize()).text = str(getattr(result, name))
    if result.quarantine_id:
        etree.SubElement(root, "QuarantineId").text = result.quarantine_id
    records = etree.SubElement(root, "Records")
    for answer in result.records:
        record = etree.SubElement(records, "Record", Index=str(answer.index), Status=answer.status)
        if answer.message_id:
            record.set("MessageId", answer.message_id)
        if answer.subject:
            record.set("Subject", answer.subject)
        for problem in answer.errors:
            error = _record_error(problem)
            node = etree.SubElement(record, "Error")
            for key in ("field", "rule", "value", "location"):
                if error[key] is not None:
                    node.set(key.capitalize(), error[key])
            node.text = error["message"]
    return str(etree.tostring(root, encoding="unicode"))


def receipt(result: IngressResult) -> dict[str, Any]:
    """`result` as the WSDLs' Receipt type (camelCase element names, one record per record)."""
    return {
        "receiptId": result.receipt_id,
        "received": len(result.records),
        "accepted": result.accepted,
        "rejected": result.rejected,
        "failed": result.failed,
        "quarantineId": result.quarantine_id,
        "record": [
            {
                "index": answer.index,
                "status": answer.status,
                "messageId": answer.message_id,
                "dataset": answer.dataset,
                "subject": answer.subject,
                "error": [_record_error(problem) for problem in answer.errors],
            }
            for answer in result.records
        ],
    }


def _record_error(problem: Mapping[str, Any]) -> dict[str, Any]:
    def text(name: str) -> str | None:
        value = problem.get(name)
        return None if value is None else str(value)

    line = problem.get("line")
    return {
        "kind": text("kind"),
        "field": text("field"),
        "fieldZh": text("field_zh"),
        "rule": text("rule"),
        "message": text("message") or text("reason") or "rejected",
        "value": text("value"),
        "location": text("location"),
        "line": line if isinstance(line, int) else None,
        "sourcePath": text("source_path"),
    }


def _refusal_fault(refused: RequestRefused) -> SoapFault:
    status = refused.status if refused.status in _TRANSPORT_STATUSES else None
    if refused.status >= 500:
        # The hub's side (its store, the bus, itself): a Receiver/Server fault, with the status
        # and Retry-After a sender reads to send again later.
        return SoapFault(
            FaultCode.RECEIVER,
            refused.reason,
            subcode=_REFUSAL_SUBCODES.get(refused.kind, "Unavailable"),
            status=refused.status,
            headers=refused.headers,
        )
    return SoapFault(
        FaultCode.SENDER,
        refused.reason,
        subcode=_REFUSAL_SUBCODES.get(refused.kind, "Refused"),
        # The faults' detail names facts in camelCase, as the WSDLs' receipts do.
        detail={_camel(name): value for name, value in refused.facts.items()},
        status=status,
        headers=refused.headers,
    )


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def refusal_as_fault(request: Request, refused: RequestRefused) -> Response:
    """A request refused whole on a SOAP path outside the SOAP call (a method other than GET
    and POST, the store's outage) as a fault in the request's SOAP version."""
    return _fault(_refusal_fault(refused), _version_of(request.headers.get("content-type")))


def _version_of(content_type: str | None) -> SoapVersion:
    return SOAP12 if "application/soap+xml" in (content_type or "").lower() else SOAP11


def _fault(fault: SoapFault, version: SoapVersion) -> Response:
    return Response(
        fault_response_body(fault, version),
        status_code=fault.http_status(version),
        media_type=version.content_type,
        headers=fault.headers or None,
    )


def _keep(endpoint: _Endpoint, body: bytes, fault: SoapFault, content_type: str | None) -> None:
    # Broken and hostile envelopes are kept like unreadable documents, so operators can see
    # what a system sent; a bus or store that is down, or a full quarantine, must not turn the
    # fault into a crash: the sender is answered the fault either way. The envelope may carry
    # the system's token or UsernameToken: it is kept without them.
    try:
        endpoint.ingress.keep_refused(
            endpoint.system.id,
            body,
            kind=f"soap-{(fault.subcode or fault.code.value).lower()}",
            reason=str(fault),
            content_type=(content_type or "text/xml")[:200],
        )
    except Exception:
        log.exception("could not quarantine a refused SOAP request of %s", endpoint.system.id)
