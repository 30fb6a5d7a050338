"""Outbound SOAP: call a target's WSDL operation with the rendered XML document, through zeep.

Department systems mostly take the document as a string parameter of an ASMX-style operation
(`UploadTask(token, xmlDoc)`); others expect the document itself as the operation's body element
(document/literal). The zeep client is built once per target when the worker starts
(`prepare`), or on the first delivery when the WSDL's URL could not be reached then (a target
that is down at start is a transient failure, not a crash), and reused.

Nothing goes where the configuration did not say: no redirect is followed (a 3xx is a permanent
failure naming the Location, which is never called), and the WSDL and what it imports are read
only from the URL `wsdl` names or from the folder of the file it names (`_source_transport`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import requests
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.base import AdapterContext, Sender
from adapters.delivery import AnswerCheck, OutboundOptions, excerpt, status_error
from adapters.errors import (
    AdapterConfigError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from mappings import EncodingMismatch, decode_payload

if TYPE_CHECKING:
    from standard.envelope import Envelope

log = logging.getLogger("adapters.protocols.soap_sender")

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
DEFAULT_IDEMPOTENCY_HEADER = "{urn:jghub:soap}IdempotencyKey"


class WsdlCallOptions(BaseModel):
    """Where a WSDL operation is called and with which fixed and secret parameters: what the
    SOAP sender and the SOAP poller share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # No default for wsdl: no value would work for every system, and a wrong one should fail
    # when the configuration is loaded, not at the first call.
    wsdl: str = Field(
        min_length=1,
        description=(
            "The system's WSDL: an http(s) URL or a file path (required), read when the "
            "worker starts (a sender) or at the first poll (a poller). A URL is fetched as "
            "written (no redirect is followed); a file's imports and includes are read only "
            "from files in its own folder."
        ),
        examples=["http://sthjt.example/PenaltyService.asmx?wsdl", "config/wsdl/market.wsdl"],
    )
    service: str | None = Field(
        default=None, description="WSDL service name; default: the WSDL's first service."
    )
    port: str | None = Field(
        default=None, description="WSDL port name; default: the service's first port."
    )
    address: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description=(
            "Endpoint URL overriding the WSDL's soap:address (WSDLs often name an internal "
            "host); default: the address in the WSDL."
        ),
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Fixed values for the operation's other parameters (never secrets).",
        examples=[{"sourceCode": "jghub"}],
    )
    secret_parameters: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Parameters filled from environment variables: parameter name → NAME of the "
            "variable (e.g. the token an ASMX service wants)."
        ),
        examples=[{"token": "JGHUB_TARGET_TOKEN_MARKET"}],
    )

    @field_validator("secret_parameters")
    @classmethod
    def _variable_names(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for parameter, variable in value.items():
            if not re.fullmatch(ENV_NAME, variable):
                raise ValueError(
                    f"secret_parameters.{parameter}: {variable!r} is not an environment "
                    "variable name"
                )
        return value

    def arguments(self, system: str, adapter: str) -> dict[str, Any]:
        """The fixed parameters and the secret ones read from the environment now;
        AdapterConfigError naming the variable that is not set."""
        arguments: dict[str, Any] = dict(self.parameters)
        for parameter, variable in self.secret_parameters.items():
            arguments[parameter] = secret_from(
                variable, f"{adapter} of {system}", f"secret_parameters.{parameter}"
            )
        return arguments


def secret_from(variable: str, who: str, option: str) -> str:
    """The value of environment variable `variable`, which `who`'s `option` names;
    AdapterConfigError when it is not set or empty."""
    value = os.environ.get(variable)
    if not value:
        raise AdapterConfigError(
            f"{who}: environment variable {variable} ({option}) is not set or empty"
        )
    return value


class SoapSenderOptions(OutboundOptions, WsdlCallOptions):
    """Which WSDL operation to call and where the document and the idempotency key go."""

    # No default for operation: no value would work for every target.
    operation: str = Field(
        min_length=1,
        description="The WSDL operation that receives the document (required).",
        examples=["ReceiveTask"],
    )
    operations: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Dataset → the operation receiving it, for a target taking several datasets through "
            "different operations; a dataset not listed goes to `operation`."
        ),
        examples=[{"collaboration_task": "ReceiveTaskXml", "risk_warning": "ReceiveWarningXml"}],
    )
    document_as: Literal["string", "element"] = Field(
        default="string",
        description=(
            "string: the rendered XML goes, as text, into the parameter `document_parameter` "
            "(ASMX style). element: the rendered XML is the operation's body element "
            "(document/literal); its root must be the operation's input element."
        ),
    )
    document_parameter: str = Field(
        default="xmlDoc",
        min_length=1,
        description="The operation's string parameter taking the document (document_as string).",
    )
    idempotency_parameter: str | None = Field(
        default=None,
        description=(
            "Parameter taking the idempotency key, when the target's operation declares one; "
            "otherwise the key goes in the SOAP header `idempotency_header`."
        ),
        examples=["requestId"],
    )
    idempotency_header: str | None = Field(
        default=DEFAULT_IDEMPOTENCY_HEADER,
        description=(
            "SOAP header element (Clark notation {namespace}name) carrying the idempotency key "
            "(without mustUnderstand, so a target that does not know it ignores it); None: no "
            "SOAP header. The HTTP header `http_idempotency_header` is sent in any case."
        ),
    )
    http_idempotency_header: str = Field(
        default="Idempotency-Key",
        min_length=1,
        description="HTTP header carrying the idempotency key on every call.",
    )
    transient_fault_codes: list[str] = Field(
        default=["Server", "Receiver"],
        description=(
            "SOAP fault codes (local names; the part before a dot for 1.1 codes such as "
            "Server.Busy) meaning 'try again later'. Other faults (Client, Sender, ...) are "
            "permanent: the target refused the content."
        ),
    )
    answer_check: AnswerCheck | None = Field(
        default=None,
        description=(
            "For operations that answer success or failure in their result: JMESPath over the "
            "result (`@` for a plain string result) and the values meaning success."
        ),
    )

    @field_validator("idempotency_header")
    @classmethod
    def _clark(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                etree.QName(value)
            except ValueError as error:
                raise ValueError(f"not an XML name in Clark notation: {error}") from None
        return value

    @model_validator(mode="after")
    def _one_home_per_parameter(self) -> SoapSenderOptions:
        names = [*self.parameters, *self.secret_parameters]
        if self.document_as == "string":
            names.append(self.document_parameter)
        if self.idempotency_parameter:
            names.append(self.idempotency_parameter)
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"parameters given twice: {', '.join(repeated)}")
        return self


class SoapSender(Sender):
    """Call a target's SOAP operation (zeep) with the rendered document.

    The document goes as a string parameter (ASMX style; an XML declaration such as gb2312 is
    kept as written, as such services expect) or as the body element (document/literal). The
    idempotency key travels in a SOAP header or an operation parameter, and in an HTTP header.
    Faults with code Client/Sender are permanent, Server/Receiver transient; HTTP 4xx without a
    fault permanent, 5xx, timeouts and refused connections transient.
    """

    name: ClassVar[str] = "soap_sender"
    Options: ClassVar[type[BaseModel]] = SoapSenderOptions

    def __init__(self, options: BaseModel, context: AdapterContext) -> None:
        super().__init__(options, context)
        assert isinstance(options, SoapSenderOptions)
        self.settings: SoapSenderOptions = options
        self._lock = threading.Lock()
        self._client: Any = None
        self._proxy: Any = None
        self._binding: Any = None
        self._transport: Any = None

    # ------------------------------------------------------------------ the zeep client

    def prepare(self) -> None:
        """Read and check the target's WSDL at start.

        A WSDL that cannot be used — not a WSDL, without the operation, read from (or importing
        from) a place the options do not name, its URL redirecting — raises AdapterConfigError
        with the reason. One whose URL cannot be reached now is logged and read again at the
        first delivery: a target that is down must not keep the worker from starting.
        """
        try:
            self._service()
        except PermanentDeliveryError as error:
            raise AdapterConfigError(f"soap_sender of {self.system.id}: {error}") from error
        except TransientDeliveryError as error:
            log.warning("%s; it is read again at the first delivery", error)

    def bind_wsdl(self) -> None:
        """Read and bind the WSDL now (`jghub systems check`): PermanentDeliveryError when it
        cannot be used as configured, TransientDeliveryError when it cannot be reached."""
        self._service()

    def _service(self) -> tuple[Any, Any, Any]:
        """The zeep client, the service proxy that calls the target and the proxy's binding."""
        with self._lock:
            if self._proxy is None:
                self._client, self._proxy, self._binding = self._build()
            return self._client, self._proxy, self._binding

    def _build(self) -> tuple[Any, Any, Any]:
        options = self.settings
        bound = bind_service(
            options.wsdl,
            service=options.service,
            port=options.port,
            address=options.address,
            operations=(options.operation, *options.operations.values()),
            timeout_s=options.timeout_s,
            system=self.system.id,
            adapter=self.name,
        )
        self._transport = bound.transport
        return bound.client, bound.proxy, bound.binding

    # ------------------------------------------------------------------ delivering

    def deliver(
        self,
        body: bytes,
        *,
        content_type: str,
        idempotency_key: str,
        envelope: Envelope,
    ) -> None:
        from zeep.exceptions import Error as ZeepError
        from zeep.exceptions import Fault, TransportError
        from zeep.helpers import serialize_object

        options = self.settings
        target = self.system.id
        client, proxy, _ = self._service()
        name = options.operations.get(envelope.spec.name, options.operation)
        arguments = self._arguments(body, client, idempotency_key, name)
        headers = []
        if options.idempotency_header and not options.idempotency_parameter:
            element = etree.Element(options.idempotency_header)
            element.text = idempotency_key
            headers.append(element)
        operation = proxy[name]
        try:
            with client.settings(
                extra_http_headers={options.http_idempotency_header: idempotency_key}
            ):
                result = operation(**arguments, _soapheaders=headers or None)
        except Fault as fault:
            answer = self._transport.last_response()
            if fault.code is None and answer is not None and answer.status_code != 200:
                # Not a SOAP fault but an error page that happens to be XML (<html>...): the
                # HTTP status says what happened.
                failure = status_error(answer.status_code, answer.content, target=target)
                if failure is not None:
                    raise failure from fault
            raise self._fault_error(fault) from fault
        except TransportError as error:
            failure = status_error(error.status_code, error.content, target=target)
            if failure is None:  # a 2xx whose body is not a SOAP envelope: cannot confirm
                failure = TransientDeliveryError(
                    f"target {target} answered HTTP {error.status_code} with a body that is not "
                    f"a SOAP envelope: {excerpt(error.content)}",
                    status=error.status_code,
                    detail=excerpt(error.content),
                )
            raise failure from error
        except requests.Timeout as error:
            raise TransientDeliveryError(
                f"target {target} did not answer {name} in time ({type(error).__name__}: {error})"
            ) from error
        except requests.RequestException as error:
            raise TransientDeliveryError(
                f"target {target} unreachable for {name} ({type(error).__name__}: {error})"
            ) from error
        except (ZeepError, etree.XMLSyntaxError) as error:
            # The call was made but its answer does not fit the WSDL: we cannot tell whether
            # the target kept the document; the idempotency key makes another attempt safe.
            raise TransientDeliveryError(
                f"target {target} answered {name} with something zeep cannot "
                f"read ({type(error).__name__}: {error})"
            ) from error
        if options.answer_check is not None:
            refusal = options.answer_check.refusal(serialize_object(result, dict))
            if refusal is not None:
                raise PermanentDeliveryError(
                    f"target {target} refused the delivery: {name} answered {refusal}",
                    detail=excerpt(str(result)),
                )

    def _arguments(
        self, body: bytes, client: Any, idempotency_key: str, operation: str
    ) -> dict[str, Any]:
        """The call's parameters: fixed and secret ones, the key, and the document as the
        string parameter or as the fields of `operation`'s body element."""
        options = self.settings
        arguments = options.arguments(self.system.id, self.name)
        if options.idempotency_parameter:
            arguments[options.idempotency_parameter] = idempotency_key
        if options.document_as == "string":
            arguments[options.document_parameter] = self._document_text(body)
        else:
            arguments.update(self._document_fields(body, client, operation))
        return arguments

    def _document_text(self, body: bytes) -> str:
        # The declaration inside the string is kept as rendered (e.g. encoding="gb2312"): legacy
        # services read it as their document's declaration, the characters travel as Unicode in
        # the envelope. gb2312/gbk bytes are decoded as GB18030, which covers rare name characters.
        try:
            return decode_payload(body, "xml").text
        except EncodingMismatch as error:
            raise PermanentDeliveryError(
                f"rendered document for target {self.system.id} does not decode: {error}"
            ) from error

    def _document_fields(self, body: bytes, client: Any, operation: str) -> dict[str, Any]:
        """The rendered document read as `operation`'s body element (the operation the
        envelope's dataset goes to: a target's tasks and notices take different elements)."""
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        try:
            root = etree.fromstring(body, parser)
        except etree.XMLSyntaxError as error:
            raise PermanentDeliveryError(
                f"rendered document for target {self.system.id} is not XML: {error}"
            ) from error
        _, _, binding = self._service()
        body_element = binding.get(operation).input.body
        if body_element is None or etree.QName(root).text != body_element.qname.text:
            expected = body_element.qname.text if body_element is not None else "none"
            raise PermanentDeliveryError(
                f"rendered document for target {self.system.id} has root {root.tag}; operation "
                f"{operation} takes {expected} (document_as element)"
            )
        value = body_element.parse(root, client.wsdl.types)
        return {name: value[name] for name in value}

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.session.close()
            self._client = self._proxy = self._binding = self._transport = None

    def _fault_error(self, fault: Any) -> PermanentDeliveryError | TransientDeliveryError:
        code = str(fault.code or "")
        local = code.rsplit(":", 1)[-1].rsplit("}", 1)[-1].split(".", 1)[0]
        detail = excerpt(fault.message or "")
        text = (
            f"target {self.system.id} answered {self.settings.operation} with SOAP fault "
            f"{code or '(no code)'}: {detail}"
        )
        if local in self.settings.transient_fault_codes:
            return TransientDeliveryError(text, detail=detail)
        return PermanentDeliveryError(text, detail=detail)


@dataclass(frozen=True)
class BoundService:
    """A WSDL read and bound: the zeep client, the proxy calling the chosen port (at `address`
    if one was given), its binding and the transport (`_source_transport`) it sends through."""

    client: Any
    proxy: Any
    binding: Any
    transport: Any


def bind_service(
    wsdl: str,
    *,
    service: str | None,
    port: str | None,
    address: str | None,
    operations: Iterable[str],
    timeout_s: float,
    system: str,
    adapter: str,
    role: str = "target",
) -> BoundService:
    """Read `wsdl` (only where it says: `_source_transport`) and bind its port, checking that
    it has every one of `operations`.

    Raises TransientDeliveryError when the WSDL cannot be reached now (connection, timeout,
    HTTP 5xx), PermanentDeliveryError when it cannot be used as configured (named `adapter`'s
    options to fix); `role` says what `system` is to the hub (target, source). Shared by the
    SOAP sender and the SOAP poller.
    """
    import zeep
    from zeep.exceptions import Error as ZeepError

    where, url, folder = _wsdl_sources(wsdl)
    transport = _source_transport(timeout_s, wsdl=wsdl, target=system, url=url, folder=folder)
    try:
        client = zeep.Client(where, transport=transport)
    except (requests.ConnectionError, requests.Timeout) as error:
        raise TransientDeliveryError(
            f"WSDL of {role} {system} cannot be loaded from {wsdl} "
            f"({type(error).__name__}: {error})"
        ) from error
    except (OSError, ZeepError, etree.XMLSyntaxError, requests.RequestException) as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if isinstance(status, int) and status >= 500:
            raise TransientDeliveryError(
                f"WSDL of {role} {system} at {wsdl}: HTTP {status}", status=status
            ) from error
        raise PermanentDeliveryError(
            f"WSDL of {role} {system} at {wsdl} cannot be used ({type(error).__name__}: {error}); "
            f"fix {adapter} options.wsdl"
        ) from error
    try:
        chosen = _chosen_port(client.wsdl, service, port)
    except ValueError as error:
        raise PermanentDeliveryError(
            f"WSDL of {role} {system} has no service {service!r} / port {port!r}: {error}; fix "
            f"{adapter} options.service/port"
        ) from error
    if chosen is None:
        raise PermanentDeliveryError(f"WSDL of {role} {system} declares no service")
    found_service, found_port = chosen
    binding = found_port.binding
    if address is not None:
        proxy = client.create_service(binding.name, address)
    else:
        proxy = client.bind(found_service.name, found_port.name)
    declared = binding.all()
    for wanted in operations:
        if wanted not in declared:
            raise PermanentDeliveryError(
                f"WSDL of {role} {system} has no operation {wanted!r} (operations: "
                f"{', '.join(sorted(declared))}); fix {adapter} options.operation(s)"
            )
    return BoundService(client, proxy, binding, transport)


def _chosen_port(wsdl: Any, service: str | None, port: str | None) -> tuple[Any, Any] | None:
    """The WSDL service and port to call, as `zeep.Client.bind` picks them; None: no service.

    The named service and port, else the first service and its first port; ValueError when a
    named one is missing. Found here through zeep's public document model (`Document.services`,
    `Service.ports`) because the sender needs the port's binding (its operations, an operation's
    input element), which a ServiceProxy keeps private.
    """
    services = wsdl.services
    if not services:
        return None
    found = services.get(service) if service else next(iter(services.values()))
    if not found:
        raise ValueError("Service not found")
    chosen = found.ports.get(port) if port else next(iter(found.ports.values()), None)
    if not chosen:
        raise ValueError("Port not found")
    return found, chosen


class NoRedirectSession(requests.Session):
    """A requests session that never follows a redirect: every request goes where it was sent.

    zeep sends through a requests session, which follows redirects by default: a target
    answering 307 would get the envelope (and the token inside it) again at the address it
    names, on every retry, and a 302 on a WSDL would fetch whatever it points at. Here a 3xx is
    the answer itself, for the sender to refuse.
    """

    def request(
        self, method: str, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs["allow_redirects"] = False
        return super().request(method, url, *args, **kwargs)


def _wsdl_sources(wsdl: str) -> tuple[str, str | None, Path | None]:
    """Where a sender's WSDL may be read from: (what zeep loads, the URL, the folder).

    A URL WSDL is read from that URL only; a file WSDL, and the files it imports or includes,
    from the file's own folder only.
    """
    if wsdl.startswith(("http://", "https://")):
        return wsdl, wsdl, None
    path = Path(wsdl.removeprefix("file://")).resolve()
    return str(path), None, path.parent


def _source_transport(
    timeout_s: float, *, wsdl: str, target: str, url: str | None, folder: Path | None
) -> Any:
    """A zeep transport that sends only where configured and remembers each thread's answer.

    - Redirects are never followed (`NoRedirectSession`): a 3xx answer to a call is a permanent
      delivery failure naming the status and the Location, which is not called.
    - The WSDL, and every document it imports or includes (`wsdl:import`, `xsd:import`,
      `xsd:include`, a DTD), is read only from the configured URL, or from files under the
      configured file's folder; anything else is refused before it is fetched, as is a
      redirect on the WSDL's URL.
    - zeep turns any XML answer with a non-200 status into a Fault, even an HTML error page
      (which parses as XML); the status remembered tells a 503 from a 403 then.
    """
    from zeep.transports import Transport

    def refused(location: str, why: str) -> PermanentDeliveryError:
        return PermanentDeliveryError(
            f"WSDL of target {target} ({wsdl}): {location} {why}; a sender reads its WSDL "
            "only from the URL options.wsdl names, or from files in the folder of the file it "
            "names: put the imported documents in that folder and import them relatively"
        )

    class SourceTransport(Transport):
        def __init__(self) -> None:
            super().__init__(
                timeout=timeout_s, operation_timeout=timeout_s, session=NoRedirectSession()
            )
            self._last = threading.local()

        def load(self, location: str) -> bytes:
            if location.startswith(("http://", "https://")):
                if location != url:
                    raise refused(location, "is not the configured WSDL URL and was not fetched")
                remote: bytes = super().load(location)
                return remote
            path = Path(location.removeprefix("file://")).resolve()
            if folder is None or not path.is_relative_to(folder):
                raise refused(location, "is outside the WSDL's folder and was not read")
            return path.read_bytes()

        def _load_remote_data(self, url: str) -> bytes:
            response = self.session.get(url, timeout=self.load_timeout)
            if response.is_redirect:
                raise refused(
                    url,
                    f"answered HTTP {response.status_code} redirecting to "
                    f"{response.headers.get('location')}, which was not fetched",
                )
            response.raise_for_status()
            content: bytes = response.content
            return content

        def post(self, address: str, message: Any, headers: Any) -> Any:
            self._last.response = None
            response = super().post(address, message, headers)
            self._last.response = response
            if response.is_redirect:
                failure = status_error(
                    response.status_code,
                    response.content,
                    target=target,
                    location=response.headers.get("location"),
                )
                assert failure is not None
                raise failure
            return response

        def last_response(self) -> requests.Response | None:
            found: requests.Response | None = getattr(self._last, "response", None)
            return found

    return SourceTransport()
