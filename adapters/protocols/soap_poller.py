"""Polling a SOAP operation that answers the records changed since a time (`QueryCases(since)`).

Some department systems only answer a query: no push, no REST. The SOAP poller calls their
WSDL operation through zeep with the cursor's time written as the system writes times, finds
the XML document in the answer — the SOAP body's element itself (document/literal), or a
document carried as text (or base64 bytes) in one of the result's parts, read in the charset
its own declaration names (GB18030 included) — and hands the records the hub has not seen yet
to the system's inbound mapping through ingress. Cursor, lease, paging by change time,
backoff and back-pressure are the paged poller's (`adapters.protocols.poller`); reading the
WSDL only where configured and never following a redirect are the SOAP sender's
(`adapters.protocols.soap_sender.bind_service`).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import requests
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.base import AdapterContext
from adapters.delivery import excerpt
from adapters.errors import DeliveryError
from adapters.protocols.poller import (
    Page,
    PagedPoller,
    PagedPollerOptions,
    SourceRecord,
    SourceUnavailable,
)
from adapters.protocols.soap_sender import (
    ENV_NAME,
    BoundService,
    WsdlCallOptions,
    bind_service,
    secret_from,
)
from mappings import PayloadLimits, PayloadRejected, encode_as_declared, parse_xml


def _xpath(expression: str | None, namespaces: dict[str, str]) -> etree.XPath | None:
    if expression is None:
        return None
    try:
        return etree.XPath(expression, namespaces=namespaces)
    except etree.XPathSyntaxError as error:
        raise ValueError(f"{expression!r} is not an XPath expression: {error}") from None


class SoapAccount(BaseModel):
    """A user name and the environment variable holding its password."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1, description="The user name (not a secret).")
    password_env: str = Field(
        pattern=ENV_NAME,
        description="NAME of the environment variable holding the password.",
        examples=["JGHUB_SOURCE_PASSWORD_CITY_CULTURE"],
    )

    def password(self, system: str, option: str) -> str:
        return secret_from(self.password_env, f"soap_poller of {system}", f"{option}.password_env")


class SoapPollerOptions(PagedPollerOptions, WsdlCallOptions):
    """Which operation to call with what, where the document and its records are, and how to
    authenticate."""

    operation: str = Field(
        min_length=1,
        description="The WSDL operation answering the records changed since a time (required).",
        examples=["QueryCases"],
    )
    soap_action: str | None = Field(
        default=None,
        description="SOAPAction header overriding the one the WSDL declares (SOAP 1.1).",
        examples=["http://whly.example/QueryCases"],
    )
    since_parameter: str = Field(
        default="since",
        min_length=1,
        description="The operation's parameter taking the change time to read from (inclusive).",
    )
    until_parameter: str | None = Field(
        default=None,
        description="Parameter taking the end of the window (now), for operations that want one.",
    )
    time_format: str = Field(
        default="yyyy-MM-dd HH:mm:ss",
        description=(
            "How the system writes the since value: a pattern (the default is the one ASMX "
            "services mostly take), or epoch_millis, epoch_seconds, iso8601."
        ),
    )
    ws_security: SoapAccount | None = Field(
        default=None,
        description="Send a WS-Security UsernameToken (PasswordText) with every call.",
    )
    basic_auth: SoapAccount | None = Field(
        default=None,
        description=(
            "Authenticate every call with HTTP Basic (a WSDL behind the same password: give "
            "it as a file)."
        ),
    )
    page_parameter: str | None = Field(
        default=None,
        description=(
            "Parameter taking the page number, for an operation that pages; None: one call "
            "answers every record since the time."
        ),
        examples=["pageNo"],
    )
    page_size_parameter: str | None = Field(
        default=None,
        description="Parameter taking the page size (`page_size`), for an operation that pages.",
        examples=["pageSize"],
    )
    first_page: int = Field(default=1, ge=0, description="Number of the first page (0 or 1).")
    document_as: Literal["string", "element"] = Field(
        default="string",
        description=(
            "string: the answer carries the XML document as text (or base64 bytes) in the "
            "result part `document_parameter`; its own XML declaration says its charset. "
            "element: the SOAP body's element is the document (document/literal)."
        ),
    )
    document_parameter: str | None = Field(
        default=None,
        description=(
            "The result part holding the document (document_as string), when the answer has "
            "several; an answer of one part is that part. None: the result is the document."
        ),
        examples=["QueryCasesResult"],
    )
    namespaces: dict[str, str] = Field(
        default_factory=dict,
        description="Prefix → namespace URI for the XPath expressions below.",
    )
    records_path: str = Field(
        min_length=1,
        description="XPath from the document to its records (required), e.g. '/CaseData/Case'.",
        examples=["/CaseData/Case"],
    )
    record_time_path: str | None = Field(
        default=None,
        description=(
            "XPath from a record to its change time, e.g. '@updateTime'. None: the records "
            "carry none, and the cursor is the start of the last poll that read the system to "
            "its end (set overlap_s to cover the two clocks' difference)."
        ),
        examples=["@updateTime"],
    )
    record_id_path: str | None = Field(
        default=None,
        description="XPath from a record to its id (orders records of one change time).",
        examples=["@recId"],
    )
    total_path: str | None = Field(
        default=None,
        description=(
            "XPath from the document to the number of records matching the query, for an "
            "operation that pages; None: a page shorter than page_size is the last."
        ),
        examples=["/CaseData/@total"],
    )
    timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="Seconds to wait for an answer."
    )
    max_bytes: int = Field(
        default=PayloadLimits().max_bytes,
        gt=0,
        description="Largest document accepted in an answer, in bytes.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SoapPollerOptions:
        for name in ("records_path", "record_time_path", "record_id_path", "total_path"):
            try:
                _xpath(getattr(self, name), self.namespaces)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        names = [self.since_parameter, *self.parameters, *self.secret_parameters]
        names += [n for n in (self.until_parameter, self.page_parameter) if n]
        names += [self.page_size_parameter] if self.page_size_parameter else []
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"parameters given twice: {', '.join(repeated)}")
        if self.page_size_parameter and not self.page_parameter:
            raise ValueError("page_size_parameter needs page_parameter (the page number)")
        return self


class SoapPoller(PagedPoller):
    """Pull records from a SOAP operation that answers those changed since a time.

    Each poll calls `operation` (zeep) with `since_parameter` set to the cursor's time in the
    system's notation, page by page when the operation pages, finds the XML document in the
    answer (the body's element, or text in a result part decoded by its own declaration, e.g.
    GB18030), drops the records already handed over (by change time and id, or — for records
    without a change time — lets ingress recognise them as repeats) and hands the rest to the
    system's inbound mapping through ingress. A token parameter, a WS-Security UsernameToken or
    HTTP Basic authenticates, with secrets from the environment; faults, HTTP errors, timeouts
    and unreadable answers back off exponentially.
    """

    name: ClassVar[str] = "soap_poller"
    Options: ClassVar[type[BaseModel]] = SoapPollerOptions
    payload_format: ClassVar[Literal["xml", "json"] | None] = "xml"

    def __init__(self, options: BaseModel, context: AdapterContext) -> None:
        super().__init__(options, context)
        assert isinstance(options, SoapPollerOptions)
        self.source: SoapPollerOptions = options
        self.timed = options.record_time_path is not None
        spaces = options.namespaces
        records = _xpath(options.records_path, spaces)
        assert records is not None  # records_path is required
        self._records: etree.XPath = records
        self._record_time = _xpath(options.record_time_path, spaces)
        self._record_id = _xpath(options.record_id_path, spaces)
        self._total = _xpath(options.total_path, spaces)
        self._limits = PayloadLimits(max_bytes=options.max_bytes)
        self._lock = threading.Lock()
        self._bound: BoundService | None = None

    # ------------------------------------------------------------------ the zeep client

    def bind_wsdl(self) -> None:
        """Read and bind the WSDL now (`jghub systems check`; polls do it at the first poll):
        SourceUnavailable saying why when it cannot be read or used as configured."""
        self._service()

    def _service(self) -> BoundService:
        """The bound WSDL, read at the first poll (a system down at start is a failed poll)."""
        with self._lock:
            if self._bound is None:
                options = self.source
                try:
                    self._bound = bind_service(
                        options.wsdl,
                        service=options.service,
                        port=options.port,
                        address=options.address,
                        operations=(options.operation,),
                        timeout_s=options.timeout_s,
                        system=self.system.id,
                        adapter=self.name,
                        role="source",
                    )
                except DeliveryError as error:
                    raise SourceUnavailable(str(error)) from error
            return self._bound

    def _call(self, arguments: dict[str, Any]) -> tuple[Any, requests.Response]:
        """Call the operation; its parsed result and the HTTP answer (for the body element)."""
        from zeep.exceptions import Error as ZeepError
        from zeep.exceptions import Fault, TransportError
        from zeep.wsse.username import UsernameToken

        options = self.source
        system = self.system.id
        bound = self._service()
        where = f"{system} source {options.operation}"
        if options.ws_security is not None:
            account = options.ws_security
            bound.client.wsse = UsernameToken(
                account.username, account.password(system, "ws_security")
            )
        if options.basic_auth is not None:
            account = options.basic_auth
            bound.transport.session.auth = (
                account.username,
                account.password(system, "basic_auth"),
            )
        headers = {"SOAPAction": f'"{options.soap_action}"'} if options.soap_action else None
        try:
            with bound.client.settings(raw_response=True, extra_http_headers=headers):
                answer = bound.proxy[options.operation](**arguments)
            result = bound.binding.process_reply(
                bound.client, bound.binding.get(options.operation), answer
            )
        except Fault as fault:
            code = fault.code or "(no code)"
            raise SourceUnavailable(
                f"{where} answered SOAP fault {code}: {excerpt(fault.message or '')}"
            ) from fault
        except TransportError as error:
            raise SourceUnavailable(
                f"{where} answered HTTP {error.status_code}: {excerpt(error.content)}"
            ) from error
        except requests.Timeout as error:
            raise SourceUnavailable(
                f"{where} did not answer within {options.timeout_s}s ({type(error).__name__})"
            ) from error
        except requests.RequestException as error:
            raise SourceUnavailable(
                f"{where} unreachable ({type(error).__name__}: {error})"
            ) from error
        except DeliveryError as error:  # a redirect, refused by the transport
            raise SourceUnavailable(str(error)) from error
        except (ZeepError, etree.XMLSyntaxError) as error:
            raise SourceUnavailable(
                f"{where} answered something zeep cannot read ({type(error).__name__}: {error})"
            ) from error
        return result, answer

    # ------------------------------------------------------------------ paging

    def fetch(self, since: datetime, after: Any | None) -> tuple[Page, Any]:
        options = self.source
        arguments = options.arguments(self.system.id, self.name)
        arguments[options.since_parameter] = self.query_time.format(since)
        if options.until_parameter:
            arguments[options.until_parameter] = self.query_time.format(datetime.now(UTC))
        page_number = 1 if after is None else int(after)
        if options.page_parameter:
            arguments[options.page_parameter] = options.first_page + page_number - 1
        if options.page_size_parameter:
            arguments[options.page_size_parameter] = options.page_size
        result, answer = self._call(arguments)
        root = self._document(result, answer)
        if root is None:
            return Page([], None), None
        elements = self._records(root)
        if not isinstance(elements, list) or not all(
            isinstance(element, etree._Element) for element in elements
        ):
            raise SourceUnavailable(
                f"{self.system.id} source {options.operation}: records_path "
                f"{options.records_path!r} does not select elements"
            )
        records = [self._record(index, element) for index, element in enumerate(elements)]
        return Page(records, self._next(root, page_number, len(records))), root

    def _next(self, root: etree._Element, page_number: int, count: int) -> int | None:
        options = self.source
        if not options.page_parameter or count == 0:
            return None
        total = _text(self._total(root)) if self._total is not None else None
        if total is not None and total.strip().isdigit():
            more = page_number * options.page_size < int(total)
        else:
            more = count >= options.page_size
        return page_number + 1 if more else None

    def _document(self, result: Any, answer: requests.Response) -> etree._Element | None:
        """The answer's document as a parsed tree; None when the answer holds none (empty)."""
        from zeep.helpers import serialize_object

        options = self.source
        where = f"{self.system.id} source {options.operation}"
        if options.document_as == "element":
            body = _body_element(answer.content)
            if body is None:
                return None
            payload = etree.tostring(body, encoding="utf-8", xml_declaration=True)
        else:
            value = result
            # zeep answers a response of one part with the part's value itself.
            if options.document_parameter is not None and not isinstance(value, str | bytes | None):
                value = serialize_object(value, dict)
                if not isinstance(value, dict) or options.document_parameter not in value:
                    raise SourceUnavailable(
                        f"{where} answered no part {options.document_parameter!r} "
                        f"(document_parameter): {excerpt(str(value))}"
                    )
                value = value[options.document_parameter]
            if value is None or (isinstance(value, str | bytes) and not value.strip()):
                return None
            if isinstance(value, bytes):
                payload = value  # base64Binary: the bytes as the system wrote them
            elif isinstance(value, str):
                try:
                    payload = encode_as_declared(value)
                except UnicodeEncodeError as error:
                    raise SourceUnavailable(
                        f"{where}: the document declares encoding {error.encoding!r} but holds "
                        f"a character it cannot encode (character {error.start})"
                    ) from None
            else:
                raise SourceUnavailable(
                    f"{where} answered a {type(value).__name__} where the document was "
                    f"expected (document_parameter): {excerpt(str(value))}"
                )
        try:
            return parse_xml(payload, self._limits)
        except PayloadRejected as error:
            raise SourceUnavailable(
                f"{where} answered a document the hub cannot read ({error}): {excerpt(payload)}"
            ) from None

    def _record(self, index: int, element: Any) -> SourceRecord:
        record_id = _text(self._record_id(element)) if self._record_id is not None else None
        changed: datetime | None = None
        if self._record_time is not None:
            raw_time = _text(self._record_time(element))
            try:
                changed = self.record_time.parse(raw_time)
            except (ValueError, OverflowError):
                changed = None  # handed over all the same: the mapping says what is wrong
        return SourceRecord(changed, (record_id or "").strip(), index)

    def payload(self, document: Any, records: Sequence[SourceRecord]) -> bytes:
        keep = {record.raw for record in records}
        root = copy.deepcopy(document)
        for index, element in enumerate(self._records(root)):
            if index not in keep:
                parent = element.getparent()
                if parent is not None:
                    _remove(parent, element)
        return bytes(etree.tostring(root, encoding="utf-8", xml_declaration=True))

    def close(self) -> None:
        with self._lock:
            if self._bound is not None:
                self._bound.transport.session.close()
            self._bound = None


def _body_element(envelope: bytes) -> etree._Element | None:
    """The SOAP Body's first element of an answer (which zeep has already read as SOAP)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    root = etree.fromstring(envelope, parser)
    body = root.find("{*}Body")
    if body is None or len(body) == 0:
        return None
    return body[0]


def _text(found: Any) -> str | None:
    """The text an XPath result stands for: a string, a number, or the first node's text."""
    if isinstance(found, list):
        found = found[0] if found else None
    if found is None:
        return None
    if isinstance(found, etree._Element):
        return found.text
    if isinstance(found, float) and found.is_integer():
        return str(int(found))
    return str(found)


def _remove(parent: etree._Element, element: etree._Element) -> None:
    # Keep the text after the element (its tail) in place, as lxml would drop it with it.
    tail = element.tail
    previous = element.getprevious()
    if tail and tail.strip():
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)
