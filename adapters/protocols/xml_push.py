"""XML over HTTP push: a system POSTs an XML batch document and gets one answer per record."""

from __future__ import annotations

import string
from typing import Any, ClassVar, Literal

from fastapi.responses import Response
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, field_validator

from adapters.ingress import IngressResult, RecordAnswer
from adapters.protocols.http_push import HttpPush

XML_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
RECORD_FIELDS = frozenset(
    {"index", "number", "status", "accepted", "code", "message_id", "subject", "message"}
)
BATCH_FIELDS = frozenset(
    {"total", "accepted", "rejected", "failed", "receipt_id", "code", "error", "quarantine_id"}
)


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _check_templates(values: dict[str, str], allowed: frozenset[str]) -> dict[str, str]:
    for attribute, template in values.items():
        try:
            used = _template_fields(template)
        except ValueError as error:
            raise ValueError(f"attribute {attribute!r}: template {template!r}: {error}") from None
        unknown = sorted(used - allowed)
        if unknown:
            raise ValueError(
                f"attribute {attribute!r}: template {template!r} uses {unknown}; the fields "
                f"are {sorted(allowed)}"
            )
    return values


class Receipt(BaseModel):
    """The system's own receipt format: a root element and one element per record.

    Attribute values are templates. Per record: {number} (1-based position), {index} (0-based),
    {status} (accepted, rejected, failed), {accepted} (true/false), {code} (from `codes`),
    {message_id}, {subject}, {message} (the first problem, empty when accepted). On the root:
    {total}, {accepted}, {rejected}, {failed}, {receipt_id}, {quarantine_id}, {code} (rejected
    when something was refused, else accepted) and {error} (why the payload could not be read).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str = Field(default="ack", pattern=XML_NAME, description="Name of the root element.")
    root_attributes: dict[str, str] = Field(
        default_factory=dict, description="Attributes of the root element (batch templates)."
    )
    item: str = Field(
        default="item", pattern=XML_NAME, description="Name of the element for each record."
    )
    item_attributes: dict[str, str] = Field(
        default_factory=lambda: {"seq": "{number}", "accepted": "{accepted}"},
        description="Attributes of each record's element (record templates).",
    )
    codes: dict[str, str] = Field(
        default_factory=lambda: {"accepted": "0", "rejected": "1", "failed": "2"},
        description="What {code} stands for, per record status.",
    )
    encoding: Literal["UTF-8", "GBK", "GB18030"] = Field(
        default="UTF-8", description="Encoding of the receipt document (and its declaration)."
    )

    @field_validator("codes")
    @classmethod
    def _known_statuses(cls, codes: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(codes) - {"accepted", "rejected", "failed"})
        if unknown:
            raise ValueError(f"codes are per status accepted, rejected, failed; not {unknown}")
        return codes

    @field_validator("root_attributes")
    @classmethod
    def _batch_templates(cls, values: dict[str, str]) -> dict[str, str]:
        return _check_templates(values, BATCH_FIELDS)

    @field_validator("item_attributes")
    @classmethod
    def _record_templates(cls, values: dict[str, str]) -> dict[str, str]:
        return _check_templates(values, RECORD_FIELDS)

    def render(self, result: IngressResult) -> bytes:
        """The receipt of `result`."""
        codes: dict[str, str] = {"accepted": "0", "rejected": "1", "failed": "2", **self.codes}
        problem = result.payload_error
        batch_status = (
            "rejected" if (problem is not None or result.rejected or result.failed) else "accepted"
        )
        batch = {
            "total": len(result.records),
            "accepted": result.accepted,
            "rejected": result.rejected,
            "failed": result.failed,
            "receipt_id": result.receipt_id,
            "quarantine_id": result.quarantine_id or "",
            "code": codes[batch_status],
            "error": f"{problem.kind}: {problem.reason}" if problem is not None else "",
        }
        root = etree.Element(self.root)
        for name, template in self.root_attributes.items():
            root.set(name, template.format_map(batch))
        for answer in result.records:
            element = etree.SubElement(root, self.item)
            values = _record_values(answer, codes)
            for name, template in self.item_attributes.items():
                element.set(name, template.format_map(values))
        return bytes(etree.tostring(root, xml_declaration=True, encoding=self.encoding))


def _record_values(answer: RecordAnswer, codes: dict[str, str]) -> dict[str, Any]:
    first = answer.errors[0] if answer.errors else {}
    message = first.get("message") or first.get("reason") or ""
    if first.get("field"):
        message = f"{first['field']}: {message}"
    return {
        "index": answer.index,
        "number": answer.index + 1,
        "status": answer.status,
        "accepted": "true" if answer.status == "accepted" else "false",
        "code": codes[answer.status],
        "message_id": answer.message_id or "",
        "subject": answer.subject or "",
        "message": message,
    }


class XmlPushOptions(BaseModel):
    """Options of the XML push endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(
        default=None,
        pattern=r"^/[A-Za-z0-9_\-./]*$",
        description="URL path of the endpoint; default /systems/{system id}/xml/{message type}.",
        examples=["/ingest/complaint-platform/complaint_push"],
    )
    default_charset: str | None = Field(
        default=None,
        description=(
            "Charset assumed when neither a byte order mark, the XML declaration nor the "
            "Content-Type names one (e.g. gb2312 for a legacy sender); default: UTF-8."
        ),
        examples=["gb2312"],
    )
    answer: Literal["json", "xml"] = Field(
        default="xml",
        description=(
            "Format of the answer when no `receipt` is configured: an <IngressResult> XML "
            "document (the default, for systems that only read XML) or the same content as JSON."
        ),
    )
    receipt: Receipt | None = Field(
        default=None,
        description=(
            "The system's own receipt format (root, one element per record, attribute "
            "templates); when set, it is the answer."
        ),
        examples=[
            {
                "root": "RESULT",
                "item": "ROW",
                "item_attributes": {"XH": "{number}", "ZT": "{code}", "MSG": "{message}"},
            }
        ],
    )


class XmlPush(HttpPush):
    """XML over HTTP push endpoint: a batch document per POST, one answer per record.

    The body is the system's XML document, exactly as its mapping reads it (charset from the
    byte order mark, the XML declaration, or the Content-Type, in that order). DOCTYPEs and
    entity declarations are refused. Authenticate with X-Api-Key (or the system's own key
    header), HTTP Basic, a client certificate, or the X-App-Key, X-Request-Time and X-Sign
    headers. The answer is an <IngressResult> document, or the system's own receipt format.
    """

    name: ClassVar[str] = "xml_push"
    Options: ClassVar[type[BaseModel]] = XmlPushOptions
    media_types: ClassVar[tuple[str, ...]] = ("application/xml", "text/xml")
    path_kind: ClassVar[str] = "xml"

    def answer(
        self, result: IngressResult, status: int, headers: dict[str, str] | None
    ) -> Response:
        receipt = getattr(self.options, "receipt", None)
        if receipt is None:
            return super().answer(result, status, headers)
        assert isinstance(receipt, Receipt)
        return Response(
            receipt.render(result),
            status_code=status,
            media_type=f"application/xml; charset={receipt.encoding}",
            headers=headers,
        )
