"""Push over HTTP, shared by the REST and XML push adapters: one endpoint per system channel.

A request is admitted by the gatekeeper (size, credential, ownership, then the rate limit and
the rest of the body; see `adapters.security`), its body goes through `Ingress.accept`, and the
answer lists every record:

    200  every record settled: accepted (with its message id) or rejected (with field, rule,
         source location and value); rejected records are kept in the quarantine
    503  the bus did not confirm some records ("failed" in their answers): send those again
         after Retry-After

A request refused whole is raised, and the app's handlers (adapters.problems) answer it in the
channel's format: a problem document (application/problem+json) on a JSON channel, the
channel's XML refusal (`refusal_as_xml`, or the system's receipt) on an XML one:

    400  the payload could not be read at all (payload-unreadable: kind, line/offset; kept in
         the quarantine, its quarantine_id in the answer)
    401 / 403 / 408 / 413 / 429  refused before any record was taken: 413 for a body over the
         system's limit (payload-too-large) or for more records than the channel takes in one
         payload (too-many-records, with both numbers; the payload is quarantined)
    503  the bus could not be reached (bus-unavailable), a target the records would reach is
         behind (back-pressure, nothing published), or the quarantine is full; Retry-After
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, Any, ClassVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from lxml import etree
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from adapters.base import InboundAdapter
from adapters.errors import PayloadUnreadable, RequestRefused
from adapters.ingress import IngressResult
from adapters.openapi import body_limit_text, security_requirement
from adapters.problems import PROBLEM_MEDIA_TYPE, ChannelAnswer
from systems import ChannelConfig, SystemConfig

if TYPE_CHECKING:
    from adapters.ingress import Ingress

RETRY_AFTER_UNAVAILABLE = 5

ANSWERED_ON_THE_LOOP = 64
"""Most records of an answer rendered on the event loop; a longer one is rendered in a worker
thread. A one-record answer takes tens of µs to render, less than the hand-over to a thread and
back, which waits for the interpreter lock while other requests compute."""

_XML_ENCODINGS = frozenset({"utf-8", "utf-16", "gb18030", "gbk", "big5", "iso8859-1", "ascii"})
"""Encodings an XML refusal is written in when the request declared one of them."""


class RefusalBody(BaseModel):
    """What an XML channel answers to a request refused whole (as <Refusal>, or in its system's
    receipt); JSON channels answer a problem document (adapters.problems) instead."""

    error: str = Field(
        description=(
            "unauthenticated, forbidden, too-large, too-many-records, rate-limited, "
            "timeout, bad-request, unavailable, backpressure, quarantine-full, "
            "store-unavailable, method-not-allowed, internal-error"
        )
    )
    status: int = Field(description="The HTTP status, repeated.")
    reason: str = Field(description="What was wrong and what to do.")
    records: int | None = Field(
        default=None, description="too-many-records: how many records the payload holds."
    )
    max_records: int | None = Field(
        default=None, description="too-many-records: the most the channel takes in one payload."
    )
    receipt_id: str | None = Field(
        default=None, description="too-many-records: the id of this exchange in the journal."
    )
    quarantine_id: str | None = Field(
        default=None, description="too-many-records: where the refused payload is kept."
    )


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


REFUSALS: dict[int | str, dict[str, Any]] = {
    400: _problem(
        "The payload could not be read at all (payload-unreadable), kept in the "
        "quarantine; or a request the hub cannot use (bad-request)."
    ),
    401: _problem("No credential, or one no system owns (unauthenticated)."),
    403: _problem("Another system's channel (forbidden)."),
    408: _problem("The body did not arrive in time (request-timeout)."),
    413: _problem(
        "Body larger than the system's limit (payload-too-large), or more records than the "
        "channel takes in one payload (too-many-records, with records and max_records)."
    ),
    429: _problem("Rate limit (rate-limited); see retry_after and the Retry-After header."),
    503: {
        "model": IngressResult,
        "description": "Some records were not confirmed by the bus (their status is failed): "
        "send them again after Retry-After. Refused whole (bus-unavailable, back-pressure, "
        "quarantine-full, store-unavailable): a problem document.",
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
}
"""The error answers of a JSON push channel, for its OpenAPI operation (the Problem schema is
added to the document's components by the app: adapters.openapi.declare_problems)."""


def xml_refusals() -> dict[int | str, dict[str, Any]]:
    """The error answers of an XML push channel: the same statuses, as XML documents (a
    <Refusal>, an <IngressResult> with its payload_error, or the system's receipt)."""
    xml = {"application/xml": {"schema": {"type": "string"}}}
    return {
        status: {"description": answer["description"], "content": xml}
        for status, answer in REFUSALS.items()
    }


def declared_charset(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type header, or None."""
    if not content_type:
        return None
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None


def status_of(result: IngressResult) -> int:
    """The HTTP status answering `result` (see the module docstring)."""
    if result.payload_error is not None:
        return 413 if result.payload_error.kind == "too-large" else 400
    if result.failed:
        return 503
    return 200


def refusal_as_xml(refusal: RefusalBody, encoding: str = "UTF-8") -> bytes:
    """`refusal` as an XML document in `encoding`: <Refusal> with error, status, reason and the
    facts that are known."""
    root = etree.Element("Refusal")
    for name, value in refusal.model_dump(exclude_none=True).items():
        etree.SubElement(root, name).text = str(value)
    return bytes(etree.tostring(root, xml_declaration=True, encoding=encoding))


def answer_encoding(content_type: str | None) -> str:
    """The encoding of an XML refusal: the request's declared charset when XML can be written
    in it (gb2312 as GB18030, its superset), else UTF-8."""
    charset = (declared_charset(content_type) or "").lower()
    if charset in ("gb2312", "gbk", "cp936"):
        return "GB18030"
    try:
        if charset and codecs.lookup(charset).name in _XML_ENCODINGS:
            return codecs.lookup(charset).name.upper()
    except LookupError:
        pass
    return "UTF-8"


def refusal_body(refused: RequestRefused) -> RefusalBody:
    """A refusal as an XML channel's RefusalBody (its known facts included)."""
    facts = {
        name: value for name, value in refused.facts.items() if name in RefusalBody.model_fields
    }
    return RefusalBody(error=refused.kind, status=refused.status, reason=refused.reason, **facts)


def unreadable(result: IngressResult) -> PayloadUnreadable:
    """The refusal of a payload `result` says could not be read at all (payload_error set)."""
    problem = result.payload_error
    assert problem is not None
    place = {"line": problem.line, "column": problem.column, "offset": problem.offset}
    where = ", ".join(f"{name} {value}" for name, value in place.items() if value is not None)
    return PayloadUnreadable(
        f"the {result.message_type} payload of {result.system} cannot be read "
        f"({problem.kind}{', ' + where if where else ''}): {problem.reason}"
        + ("; it is kept in the quarantine" if result.quarantine_id else ""),
        kind=problem.kind,
        message=problem.reason,
        where=where or "payload",
        place=place,
        receipt_id=result.receipt_id,
        quarantine_id=result.quarantine_id,
        system=result.system,
    )


def result_as_xml(result: IngressResult) -> bytes:
    """`result` as an XML document (UTF-8), for systems that read XML answers."""
    root = etree.Element("IngressResult")
    for name in ("system", "message_type", "receipt_id", "accepted", "rejected", "failed"):
        etree.SubElement(root, name).text = str(getattr(result, name))
    if result.quarantine_id:
        etree.SubElement(root, "quarantine_id").text = result.quarantine_id
    if result.payload_error is not None:
        problem = etree.SubElement(root, "payload_error")
        for name, value in result.payload_error.model_dump(exclude_none=True).items():
            etree.SubElement(problem, name).text = str(value)
    records = etree.SubElement(root, "records")
    for answer in result.records:
        record = etree.SubElement(records, "record", index=str(answer.index), status=answer.status)
        for name in ("message_id", "dataset", "subject", "routing_key"):
            value = getattr(answer, name)
            if value is not None:
                etree.SubElement(record, name).text = value
        for problem_data in answer.errors:
            problem = etree.SubElement(record, "error")
            for name, value in problem_data.items():
                if value is not None:
                    etree.SubElement(problem, name).text = str(value)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


class HttpPush(InboundAdapter):
    """Common part of the HTTP push adapters; a subclass names its media types and path."""

    media_types: ClassVar[tuple[str, ...]] = ("application/json",)
    path_kind: ClassVar[str] = "rest"

    def route_path(self, system: SystemConfig, channel: ChannelConfig) -> str:
        """The channel's URL path (the `path` option, or the default for the adapter)."""
        custom = getattr(self.options, "path", None)
        if custom:
            return str(custom)
        return f"/systems/{system.id}/{self.path_kind}/{channel.message_type}"

    def answer(
        self, result: IngressResult, status: int, headers: dict[str, str] | None
    ) -> Response:
        """The HTTP answer carrying `result`: JSON, or XML when the `answer` option says so."""
        if self.answers_xml:
            return Response(
                result_as_xml(result),
                status_code=status,
                media_type="application/xml",
                headers=headers,
            )
        # Serialised by pydantic in one pass: several times faster than dumping to dicts and
        # then to JSON, which matters for answers of thousands of records.
        return Response(
            result.model_dump_json(),
            status_code=status,
            media_type="application/json",
            headers=headers,
        )

    @property
    def answers_xml(self) -> bool:
        """True when the channel answers XML (errors included), False for JSON."""
        return getattr(self.options, "answer", "json") == "xml"

    def refuse(self, request: Request, refused: RequestRefused) -> Response:
        """The XML answer refusing a request whole: a <Refusal> document in the request's
        charset (a subclass may answer the system's own format)."""
        return Response(
            refusal_as_xml(
                refusal_body(refused), answer_encoding(request.headers.get("content-type"))
            ),
            status_code=refused.status,
            media_type="application/xml",
            headers=refused.headers or None,
        )

    def error_answers(
        self, system: SystemConfig, channel: ChannelConfig
    ) -> dict[str, ChannelAnswer]:
        # A JSON channel answers problem documents, as the hub's own APIs do.
        return {self.route_path(system, channel): self.refuse} if self.answers_xml else {}

    def mount(
        self,
        app_or_router: FastAPI | APIRouter,
        system: SystemConfig,
        channel: ChannelConfig,
        ingress: Ingress,
    ) -> None:
        gatekeeper = self.context.require_gatekeeper(self.name)
        default_charset = getattr(self.options, "default_charset", None)
        message_type = channel.message_type
        system_id = system.id

        async def push(request: Request) -> Response:
            # A refusal (RequestRefused, IngressUnavailable, the store's outage) is raised: the
            # app's handlers answer it in this channel's format (`error_answers`).
            admission = await gatekeeper.admit(request, system_id)
            charset = declared_charset(request.headers.get("content-type")) or default_charset
            result = await run_in_threadpool(
                ingress.accept,
                system_id,
                message_type,
                admission.body,
                charset=charset,
                max_records=channel.max_records,
            )
            if result.payload_error is not None and not self.answers_xml:
                raise unreadable(result)
            status = status_of(result)
            headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)} if status == 503 else None
            if len(result.records) <= ANSWERED_ON_THE_LOOP:
                return self.answer(result, status, headers)
            # Rendering thousands of record answers takes a while: off the event loop, which
            # serves every other system's requests meanwhile.
            return await run_in_threadpool(self.answer, result, status, headers)

        app_or_router.add_api_route(
            self.route_path(system, channel),
            push,
            methods=["POST"],
            name=f"{system_id}:{self.name}:{message_type}",
            summary=f"{system.name_zh} ({system_id}) pushes {message_type}",
            description=self.describe(system, channel),
            tags=[system_id],
            response_model=IngressResult,
            responses=xml_refusals() if self.answers_xml else REFUSALS,
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        media: {"schema": {"type": "string"}} for media in self.media_types
                    },
                },
                "security": security_requirement(system.auth),
            },
        )

    def describe(self, system: SystemConfig, channel: ChannelConfig) -> str:
        """The endpoint's description in the OpenAPI document: what it takes, how much of it."""
        gatekeeper = self.context.require_gatekeeper(self.name)
        return (
            f"{(type(self).__doc__ or '').strip().splitlines()[0]}\n\n"
            f"Authentication: {system.auth.scheme}. {body_limit_text(gatekeeper, system)} "
            f"Records per payload: at most {channel.max_records} (max_records). Answers one "
            "entry per record (accepted with its message id, or rejected with field, rule and "
            "location)."
        )
