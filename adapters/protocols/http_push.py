"""Push over HTTP, shared by the REST and XML push adapters: one endpoint per system channel.

A request is admitted by the gatekeeper (size, credential, ownership, then the rate limit and
the rest of the body; see `adapters.security`), its body goes through `Ingress.accept`, and the
answer lists every record:

    200  every record settled: accepted (with its message id) or rejected (with field, rule,
         source location and value); rejected records are kept in the quarantine
    400  the payload could not be read at all (kind, reason, line/offset); kept in the quarantine
    401 / 403 / 408 / 413 / 429  refused before any record was taken (see RefusalBody), in the
         channel's answer format, so a system that reads only XML gets XML: 413 for a body
         over the system's limit (too-large) or for more records than the channel takes in
         one payload (too-many-records, with both numbers; the payload is quarantined)
    503  the bus did not confirm some records ("failed"), or could not be reached
         ("unavailable"), or back-pressure: a target the records would reach is behind
         ("backpressure", nothing published); send again after Retry-After
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from lxml import etree
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from adapters.base import InboundAdapter
from adapters.errors import IngressUnavailable, RequestRefused
from adapters.ingress import IngressResult
from adapters.openapi import body_limit_text, security_requirement
from systems import ChannelConfig, SystemConfig

if TYPE_CHECKING:
    from adapters.ingress import Ingress

RETRY_AFTER_UNAVAILABLE = 5


class RefusalBody(BaseModel):
    """The answer to a request refused before any of its records was taken."""

    error: str = Field(
        description=(
            "unauthenticated, forbidden, too-large, too-many-records, rate-limited, "
            "timeout, bad-request, unavailable, backpressure"
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


REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": IngressResult, "description": "The payload could not be read at all."},
    401: {"model": RefusalBody, "description": "No credential, or one no system owns."},
    403: {"model": RefusalBody, "description": "Another system's channel."},
    408: {"model": RefusalBody, "description": "The body did not arrive in time (timeout)."},
    413: {
        "model": RefusalBody,
        "description": "Body larger than the system's limit (too-large), or more records than "
        "the channel takes in one payload (too-many-records, with records and max_records).",
    },
    429: {"model": RefusalBody, "description": "Rate limit; see the Retry-After header."},
    503: {
        "model": IngressResult,
        "description": "The bus did not confirm, or a target is behind (back-pressure); send "
        "again after Retry-After.",
    },
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


def refusal_as_xml(refusal: RefusalBody) -> bytes:
    """`refusal` as an XML document (UTF-8): <Refusal> with error, status and reason."""
    root = etree.Element("Refusal")
    for name, value in refusal.model_dump().items():
        etree.SubElement(root, name).text = str(value)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


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
        if getattr(self.options, "answer", "json") == "xml":
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

    def refuse(self, refusal: RefusalBody, headers: dict[str, str] | None) -> Response:
        """The HTTP answer refusing a request whole, in the same format as `answer`."""
        if getattr(self.options, "answer", "json") == "xml":
            return Response(
                refusal_as_xml(refusal),
                status_code=refusal.status,
                media_type="application/xml",
                headers=headers,
            )
        return JSONResponse(refusal.model_dump(), status_code=refusal.status, headers=headers)

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
            try:
                admission = await gatekeeper.admit(request, system_id)
            except RequestRefused as refused:
                refusal = RefusalBody(
                    error=refused.kind, status=refused.status, reason=refused.reason
                )
                return self.refuse(refusal, refused.headers or None)
            charset = declared_charset(request.headers.get("content-type")) or default_charset
            try:
                result = await run_in_threadpool(
                    ingress.accept,
                    system_id,
                    message_type,
                    admission.body,
                    charset=charset,
                    max_records=channel.max_records,
                )
            except RequestRefused as refused:  # too many records: in the channel's format too
                return self.refuse(
                    RefusalBody.model_validate(refused.to_dict()), refused.headers or None
                )
            except IngressUnavailable as error:
                return self.refuse(
                    RefusalBody(error=error.kind, status=503, reason=str(error)),
                    {"Retry-After": str(error.retry_after)},
                )
            status = status_of(result)
            headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)} if status == 503 else None
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
            responses=REFUSALS,
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
