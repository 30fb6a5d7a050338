"""SOAP 1.1 and 1.2 on the serving side: a WSDL's operations, hardened request parsing, faults.

The hub serves SOAP for department systems whose contract is a WSDL they were given (ASMX style,
document/literal, SOAP 1.1 or 1.2). No maintained Python SOAP *server* fits: spyne (last release
2022) generates its WSDL from Python classes, cannot serve a given contract as it is, speaks WSGI
and lacks SOAP 1.2. So the contract is a static WSDL file, zeep (already the hub's SOAP client)
reads it into a model of bindings, operations and schema types, and builds the responses from that
schema, which keeps them exactly what a client generated from the same WSDL expects. Requests are
parsed by `mappings.payloads.parse_xml` (no DTD, no entities, no network, limited depth) before
anything looks at them; zeep never sees request bytes.

    service = SoapService.load(Path("adapters/wsdl/eco-env-penalty.wsdl"))
    request = service.parse_request(body, content_type=..., soap_action=..., limits=...)
    request.operation.name, request.parameters["batch"]      # bytes of a base64Binary parameter
    service.response(request, {"receipt": {...}})             # the response envelope, bytes
    fault_response_body(SoapFault(FaultCode.SENDER, "..."), SOAP11)

Fault HTTP statuses follow the bindings: SOAP 1.1 answers every fault with 500 (WS-I Basic
Profile R1126); SOAP 1.2 answers a Sender fault with 400 and the others with 500 (SOAP 1.2 part 2,
7.5.1.2). Transport refusals (413 too large, 429 rate limited) keep their status and carry a fault.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from lxml import etree
from zeep.settings import Settings
from zeep.transports import Transport
from zeep.wsdl import Document
from zeep.wsdl.bindings.soap import Soap11Binding, Soap12Binding
from zeep.xsd.elements.any import Any as Any_
from zeep.xsd.types.builtins import Base64Binary, String

from mappings import PayloadLimits, PayloadRejected, parse_xml
from standard.errors import quoted

SOAP11_ENVELOPE = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENVELOPE = "http://www.w3.org/2003/05/soap-envelope"
WSDL_SOAP11 = "http://schemas.xmlsoap.org/wsdl/soap/"
WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
FAULT_DETAIL_NAMESPACE = "urn:jghub:soap:fault"
"""Namespace of the hub's fault subcodes and of the elements inside a fault's detail."""

WSDL_FOLDER = Path(__file__).parents[1] / "wsdl"
"""Where the shipped WSDL files live, one per system: `<system id>.wsdl`."""

_XML_MEDIA_TYPES = frozenset({"text/xml", "application/soap+xml", "application/xml"})


@dataclass(frozen=True)
class SoapVersion:
    """One SOAP version: its envelope namespace, media type and fault vocabulary."""

    name: str
    envelope: str
    media_type: str

    @property
    def content_type(self) -> str:
        """The Content-Type of a UTF-8 message in this version."""
        return f"{self.media_type}; charset=utf-8"


SOAP11 = SoapVersion("1.1", SOAP11_ENVELOPE, "text/xml")
SOAP12 = SoapVersion("1.2", SOAP12_ENVELOPE, "application/soap+xml")
_BY_ENVELOPE = {SOAP11.envelope: SOAP11, SOAP12.envelope: SOAP12}


class FaultCode(StrEnum):
    """A fault's class; rendered as SOAP 1.1 faultcode or SOAP 1.2 Code/Value."""

    VERSION_MISMATCH = "VersionMismatch"
    MUST_UNDERSTAND = "MustUnderstand"
    SENDER = "Sender"
    """The request is wrong and will fail again unchanged (1.1: Client)."""
    RECEIVER = "Receiver"
    """The hub could not process a good request; it may succeed later (1.1: Server)."""

    def name_in(self, version: SoapVersion) -> str:
        """The code's local name in `version` (1.1 says Client and Server)."""
        if version is SOAP11:
            return {FaultCode.SENDER: "Client", FaultCode.RECEIVER: "Server"}.get(self, self.value)
        return self.value


class SoapFault(Exception):
    """A request the hub answers with a SOAP fault.

    Attributes: `code` (FaultCode), `reason` (what is wrong and what to do), `subcode` (a local
    name in FAULT_DETAIL_NAMESPACE saying which rule, e.g. "Authentication", "WrongAction"),
    `detail` (scalar facts for the detail element: kind, line, offending value...), `status` (an
    HTTP status that overrides the binding's, for transport refusals such as 413 and 429),
    `headers` (extra HTTP headers, e.g. Retry-After).
    """

    def __init__(
        self,
        code: FaultCode,
        reason: str,
        *,
        subcode: str | None = None,
        detail: Mapping[str, Any] | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.subcode = subcode
        self.detail = dict(detail or {})
        self.status = status
        self.headers = dict(headers or {})
        super().__init__(reason)

    def __str__(self) -> str:
        sub = f".{self.subcode}" if self.subcode else ""
        return f"{self.code.value}{sub}: {self.reason}"

    def http_status(self, version: SoapVersion) -> int:
        """The HTTP status that carries this fault in `version`."""
        if self.status is not None:
            return self.status
        if version is SOAP12 and self.code is FaultCode.SENDER:
            return 400
        return 500


def fault_response_body(fault: SoapFault, version: SoapVersion) -> bytes:
    """The envelope carrying `fault` in `version`, UTF-8 with an XML declaration."""
    env = version.envelope
    nsmap = {"soap": env, "jg": FAULT_DETAIL_NAMESPACE}
    envelope = etree.Element(etree.QName(env, "Envelope"), nsmap=nsmap)
    body = etree.SubElement(envelope, etree.QName(env, "Body"))
    node = etree.SubElement(body, etree.QName(env, "Fault"))
    code = f"soap:{fault.code.name_in(version)}"
    if version is SOAP11:
        # SOAP 1.1 refines a code with dots ("Client.Authentication"), section 4.4.1.
        faultcode = etree.SubElement(node, "faultcode")
        faultcode.text = f"{code}.{fault.subcode}" if fault.subcode else code
        etree.SubElement(node, "faultstring").text = fault.reason
        detail_parent = etree.SubElement(node, "detail") if fault.detail else None
    else:
        code_node = etree.SubElement(node, etree.QName(env, "Code"))
        etree.SubElement(code_node, etree.QName(env, "Value")).text = code
        if fault.subcode:
            subcode = etree.SubElement(code_node, etree.QName(env, "Subcode"))
            etree.SubElement(subcode, etree.QName(env, "Value")).text = f"jg:{fault.subcode}"
        reason = etree.SubElement(node, etree.QName(env, "Reason"))
        text = etree.SubElement(reason, etree.QName(env, "Text"))
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = fault.reason
        detail_parent = etree.SubElement(node, etree.QName(env, "Detail")) if fault.detail else None
    if detail_parent is not None:
        facts = etree.SubElement(detail_parent, etree.QName(FAULT_DETAIL_NAMESPACE, "fault"))
        for key, value in fault.detail.items():
            if value is None:
                continue
            etree.SubElement(facts, etree.QName(FAULT_DETAIL_NAMESPACE, key)).text = str(value)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))


class ParameterKind(StrEnum):
    """How a parameter's value is read from its element."""

    STRING = "string"
    BASE64 = "base64"
    ELEMENT = "element"


@dataclass(frozen=True)
class Parameter:
    """One child of an operation's request wrapper, as the WSDL's schema declares it."""

    name: str
    kind: ParameterKind
    required: bool


@dataclass(frozen=True)
class SoapOperation:
    """One operation of one binding: its SOAP version, action, request element and parameters."""

    name: str
    version: SoapVersion
    action: str
    request_element: etree.QName
    parameters: tuple[Parameter, ...]
    open_content: bool
    """True when the request element takes any content (xs:any): a document, not parameters."""
    zeep_operation: Any = field(repr=False, compare=False)

    def parameter(self, name: str) -> Parameter | None:
        """The parameter called `name`, or None."""
        return next((p for p in self.parameters if p.name == name), None)


@dataclass(frozen=True)
class SoapRequest:
    """A parsed, dispatched request.

    `parameters` maps each parameter present to its value: str (xs:string), bytes (decoded
    xs:base64Binary) or an lxml element (anything else: the parameter's first child element).
    `document` is the Body's child (the request element, or the document itself for an
    operation whose request element is the document). `headers` are the Header's blocks.
    """

    version: SoapVersion
    operation: SoapOperation
    parameters: Mapping[str, Any]
    document: etree._Element
    headers: tuple[etree._Element, ...] = ()

    def header(self, qname: str) -> etree._Element | None:
        """The header block named `qname` ("{namespace}local"), or None."""
        return next((block for block in self.headers if block.tag == qname), None)


def _media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    if not content_type:
        return "", {}
    kind, _, rest = content_type.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        key, _, value = item.partition("=")
        if key.strip():
            params[key.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), params


def _unquote(action: str) -> str:
    action = action.strip()
    return action[1:-1] if len(action) >= 2 and action[0] == action[-1] == '"' else action


class SoapService:
    """The operations of one WSDL file and how to answer them; immutable after loading."""

    _cache: ClassVar[dict[Path, SoapService]] = {}
    _cache_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        settings = Settings(strict=True, forbid_dtd=True, forbid_entities=True)
        # A shipped local file: zeep reads it directly; the transport is never asked for a URL
        # because the WSDLs are self-contained (no imports).
        self._document = Document(str(path), Transport(), settings=settings)  # type: ignore[arg-type]
        self._source = path.read_bytes()
        operations: dict[tuple[str, str], SoapOperation] = {}
        for binding in self._document.bindings.values():
            version = SOAP12 if isinstance(binding, Soap12Binding) else SOAP11
            if not isinstance(binding, Soap11Binding | Soap12Binding):
                continue
            for name, zeep_operation in binding.all().items():
                body = zeep_operation.input.body
                operations[(version.name, name)] = SoapOperation(
                    name=name,
                    version=version,
                    action=zeep_operation.soapaction or "",
                    request_element=etree.QName(body.qname),
                    parameters=_parameters(body),
                    open_content=_open_content(body),
                    zeep_operation=zeep_operation,
                )
        if not operations:
            raise ValueError(f"{path}: the WSDL has no SOAP 1.1 or 1.2 binding with operations")
        self._operations = operations

    @classmethod
    def load(cls, path: Path | str) -> SoapService:
        """The service of the WSDL at `path`, loaded once per process."""
        resolved = Path(path).resolve()
        with cls._cache_lock:
            found = cls._cache.get(resolved)
            if found is None:
                found = cls._cache[resolved] = cls(resolved)
            return found

    @property
    def versions(self) -> tuple[SoapVersion, ...]:
        """The SOAP versions the WSDL binds, 1.1 first."""
        names = {version for version, _ in self._operations}
        return tuple(v for v in (SOAP11, SOAP12) if v.name in names)

    def operation_names(self) -> list[str]:
        """Every operation's name, sorted."""
        return sorted({name for _, name in self._operations})

    def operation(self, name: str, version: SoapVersion | None = None) -> SoapOperation:
        """The operation called `name` (in `version`, else the first version binding it)."""
        for candidate in (version,) if version else self.versions:
            assert candidate is not None
            found = self._operations.get((candidate.name, name))
            if found is not None:
                return found
        raise KeyError(
            f"{self.path.name} has no operation {name!r} "
            f"(operations: {', '.join(self.operation_names())})"
        )

    def wsdl(self, address: str) -> bytes:
        """The WSDL with every SOAP address location set to `address` (the URL it is served at)."""
        root = etree.fromstring(self._source, etree.XMLParser(resolve_entities=False))
        for ns in (WSDL_SOAP11, WSDL_SOAP12):
            for node in root.iter(etree.QName(ns, "address").text):
                node.set("location", address)
        return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))

    def parse_request(
        self,
        body: bytes,
        *,
        content_type: str | None,
        soap_action: str | None,
        limits: PayloadLimits,
        understood: frozenset[str] = frozenset(),
    ) -> SoapRequest:
        """Parse and dispatch a request, or raise SoapFault saying what is wrong with it.

        `soap_action` is the SOAPAction HTTP header (SOAP 1.1) or None when absent; SOAP 1.2
        takes the action from the Content-Type's `action` parameter. `understood` names the
        header blocks ("{namespace}local") the caller processes; any other block marked
        mustUnderstand is refused.
        """
        media_type, params = _media_type(content_type)
        guessed = SOAP12 if media_type == "application/soap+xml" else SOAP11
        if media_type not in _XML_MEDIA_TYPES:
            raise SoapFault(
                FaultCode.SENDER,
                f"Content-Type {quoted(content_type or '(none)')} is not a SOAP message: use "
                f"'text/xml' (SOAP 1.1) or 'application/soap+xml' (SOAP 1.2)",
                subcode="UnsupportedMediaType",
                status=415,
            )
        try:
            root = parse_xml(body, limits, params.get("charset"))
        except PayloadRejected as rejected:
            raise SoapFault(
                FaultCode.SENDER,
                f"the SOAP envelope cannot be read: {rejected.kind}: {rejected.reason}",
                subcode="MalformedEnvelope",
                detail=rejected.to_dict(),
            ) from None
        version = self._version_of(root, guessed)
        envelope = version.envelope
        children = [child for child in root if isinstance(child.tag, str)]
        names = [etree.QName(child).localname for child in children]
        wrong_ns = [child for child in children if etree.QName(child).namespace != envelope]
        if wrong_ns or names not in (["Body"], ["Header", "Body"]):
            raise SoapFault(
                FaultCode.SENDER,
                "a SOAP Envelope holds an optional Header, then a Body, both in the envelope "
                f"namespace {envelope}; this one holds {names or 'nothing'}",
                subcode="MalformedEnvelope",
            )
        headers: tuple[etree._Element, ...] = ()
        if names[0] == "Header":
            headers = tuple(block for block in children[0] if isinstance(block.tag, str))
            self._check_headers(headers, version, understood)
        body_children = [child for child in children[-1] if isinstance(child.tag, str)]
        if len(body_children) != 1:
            raise SoapFault(
                FaultCode.SENDER,
                f"the SOAP Body must hold exactly one element (the operation's request); it "
                f"holds {len(body_children)}",
                subcode="MalformedEnvelope",
            )
        document = body_children[0]
        operation = self._dispatch(document, version)
        self._check_action(operation, version, soap_action, params.get("action"))
        return SoapRequest(
            version=version,
            operation=operation,
            parameters=_read_parameters(operation, document),
            document=document,
            headers=headers,
        )

    def response(self, request: SoapRequest, values: Mapping[str, Any]) -> bytes:
        """The response envelope of `request`'s operation, built from `values` by its schema."""
        serialized = request.operation.zeep_operation.output.serialize(**values)
        return bytes(etree.tostring(serialized.content, xml_declaration=True, encoding="utf-8"))

    def response_fields(self, operation: SoapOperation) -> list[str]:
        """The names of the children of `operation`'s response wrapper."""
        body = operation.zeep_operation.output.body
        return [name for name, _ in getattr(body.type, "elements", [])]

    def repeated_field(self, operation: SoapOperation) -> str | None:
        """The name of the response wrapper's repeated (maxOccurs > 1) child, if it has one."""
        for name, element in getattr(operation.zeep_operation.output.body.type, "elements", []):
            if getattr(element, "max_occurs", 1) == "unbounded" or (
                isinstance(element.max_occurs, int) and element.max_occurs > 1
            ):
                return str(name)
        return None

    def response_is_text(self, operation: SoapOperation) -> bool:
        """True when `operation` answers with one xs:string (ASMX services returning XML text)."""
        elements = getattr(operation.zeep_operation.output.body.type, "elements", [])
        return len(elements) == 1 and isinstance(elements[0][1].type, String)

    def _version_of(self, root: etree._Element, guessed: SoapVersion) -> SoapVersion:
        qname = etree.QName(root)
        if qname.localname != "Envelope":
            raise SoapFault(
                FaultCode.SENDER,
                f"the document element is {quoted(qname.localname)}, not a SOAP Envelope",
                subcode="MalformedEnvelope",
            )
        version = _BY_ENVELOPE.get(qname.namespace or "")
        if version is None:
            raise SoapFault(
                FaultCode.VERSION_MISMATCH,
                f"envelope namespace {quoted(qname.namespace)} is neither SOAP 1.1 "
                f"({SOAP11_ENVELOPE}) nor SOAP 1.2 ({SOAP12_ENVELOPE})",
            )
        if version not in self.versions:
            bound = " and ".join(v.name for v in self.versions)
            raise SoapFault(
                FaultCode.VERSION_MISMATCH,
                f"this service speaks SOAP {bound}, not SOAP {version.name}",
            )
        return version

    def _check_headers(
        self, blocks: tuple[etree._Element, ...], version: SoapVersion, understood: frozenset[str]
    ) -> None:
        # A block the sender marks mandatory that the hub does not process cannot be honoured;
        # SOAP says to refuse the whole message rather than ignore it.
        must = etree.QName(version.envelope, "mustUnderstand").text
        for block in blocks:
            if block.tag in understood:
                continue
            if (block.get(must) or "").strip() in ("1", "true"):
                raise SoapFault(
                    FaultCode.MUST_UNDERSTAND,
                    f"header block {block.tag} is marked mustUnderstand and this service does "
                    "not process it",
                    detail={"header": block.tag},
                )

    def _dispatch(self, document: etree._Element, version: SoapVersion) -> SoapOperation:
        qname = etree.QName(document)
        for (version_name, _), operation in self._operations.items():
            if version_name == version.name and operation.request_element == qname:
                return operation
        known = ", ".join(
            f"{op.name} ({op.request_element.text})"
            for (v, _), op in sorted(self._operations.items())
            if v == version.name
        )
        raise SoapFault(
            FaultCode.SENDER,
            f"no operation takes a {qname.text} request; operations: {known}",
            subcode="UnknownOperation",
            detail={"element": qname.text},
        )

    def _check_action(
        self,
        operation: SoapOperation,
        version: SoapVersion,
        header: str | None,
        parameter: str | None,
    ) -> None:
        if version is SOAP11:
            if header is None:
                raise SoapFault(
                    FaultCode.SENDER,
                    f"the SOAPAction HTTP header is missing (SOAP 1.1 requires it); send "
                    f'SOAPAction: "{operation.action}"',
                    subcode="WrongAction",
                )
            given = _unquote(header)
        else:
            given = parameter or ""
        # An empty action leaves dispatch to the Body (SOAP 1.1 section 6.1.1).
        if given and operation.action and given != operation.action:
            raise SoapFault(
                FaultCode.SENDER,
                f"SOAPAction {quoted(given)} does not name operation {operation.name}, whose "
                f"request the Body holds; its action is {operation.action!r}",
                subcode="WrongAction",
                detail={"action": given, "expected": operation.action},
            )


def _open_content(body: Any) -> bool:
    return any(isinstance(element, Any_) for _, element in getattr(body.type, "elements", []))


def _parameters(body: Any) -> tuple[Parameter, ...]:
    found: list[Parameter] = []
    for name, element in getattr(body.type, "elements", []):
        if isinstance(element, Any_):
            continue
        xsd_type = element.type
        if isinstance(xsd_type, Base64Binary):
            kind = ParameterKind.BASE64
        elif isinstance(xsd_type, String):
            kind = ParameterKind.STRING
        else:
            kind = ParameterKind.ELEMENT
        found.append(Parameter(name, kind, required=(element.min_occurs or 0) >= 1))
    return tuple(found)


_BASE64_SPACE = re.compile(rb"\s+")


def _read_parameters(operation: SoapOperation, wrapper: etree._Element) -> dict[str, Any]:
    if not operation.parameters:
        return {}
    values: dict[str, Any] = {}
    for child in wrapper:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        parameter = operation.parameter(name)
        if parameter is None and operation.open_content:
            continue
        if parameter is None:
            expected = ", ".join(p.name for p in operation.parameters)
            raise SoapFault(
                FaultCode.SENDER,
                f"{operation.name} has no parameter {quoted(name)} (parameters: {expected})",
                subcode="InvalidParameter",
                detail={"parameter": name, "line": child.sourceline},
            )
        if name in values:
            raise SoapFault(
                FaultCode.SENDER,
                f"parameter {quoted(name)} of {operation.name} is given twice",
                subcode="InvalidParameter",
                detail={"parameter": name, "line": child.sourceline},
            )
        values[name] = _value(operation, parameter, child)
    for parameter in operation.parameters:
        if parameter.required and parameter.name not in values:
            raise SoapFault(
                FaultCode.SENDER,
                f"{operation.name} needs parameter {parameter.name!r}",
                subcode="InvalidParameter",
                detail={"parameter": parameter.name},
            )
    return values


def _value(operation: SoapOperation, parameter: Parameter, node: etree._Element) -> Any:
    if parameter.kind is ParameterKind.STRING:
        return node.text or ""
    if parameter.kind is ParameterKind.BASE64:
        text = _BASE64_SPACE.sub(b"", (node.text or "").encode("ascii", "replace"))
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise SoapFault(
                FaultCode.SENDER,
                f"parameter {parameter.name!r} of {operation.name} is not valid base64",
                subcode="InvalidParameter",
                detail={"parameter": parameter.name, "line": node.sourceline},
            ) from None
    return next((child for child in node if isinstance(child.tag, str)), None)
