"""XML over HTTP push: a system POSTs an XML batch document and gets one answer per record.

The answer is an <IngressResult> document (or JSON, with `answer: json`), or the system's own
receipt format (`receipt`). Whatever the format, a payload refused whole says why: an
<IngressResult> has its payload_error, a receipt its refusal element (`receipt.refusal`, by
default <error kind="...">reason</error> under the root), and a request refused before its
payload was read (401, 403, 413, 429, 503) is answered in the same format, not in JSON.
"""

from __future__ import annotations

import string
from typing import Any, ClassVar, Literal

from fastapi import Request
from fastapi.responses import Response
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.errors import RequestRefused
from adapters.ingress import IngressResult, PayloadProblem, RecordAnswer
from adapters.protocols.http_push import HttpPush, RefusalBody, refusal_body

XML_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
RECORD_FIELDS = frozenset(
    {"index", "number", "status", "accepted", "code", "message_id", "subject", "message"}
)
BATCH_FIELDS = frozenset(
    {
        "total",
        "accepted",
        "rejected",
        "failed",
        "receipt_id",
        "code",
        "error",
        "kind",
        "reason",
        "quarantine_id",
    }
)
REFUSAL_FIELDS = frozenset(
    {"kind", "reason", "line", "column", "offset", "receipt_id", "quarantine_id"}
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


class ReceiptRefusal(BaseModel):
    """How a receipt says why a request was refused whole: one element under the root.

    It is written when the payload could not be read at all (a DOCTYPE or entity bomb, a wrong
    encoding, an empty or malformed body: HTTP 400 or 413) and when the request was refused
    before its payload was read (401, 403, 413, 429, 503); the receipt then has no record
    elements. Templates: {kind} (e.g. forbidden-markup, encoding, malformed, unauthenticated,
    forbidden, too-large, rate-limited, unavailable, backpressure), {reason} (what was wrong
    and what to do), {line}, {column}, {offset} (where, when known), {receipt_id} and
    {quarantine_id} (where the refused payload is kept, when it was read). It must carry both
    {kind} and {reason}: a refusal that does not say why helps nobody.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    element: str = Field(
        default="error",
        pattern=XML_NAME,
        description="Name of the element, a child of the receipt's root.",
        examples=["error", "ERROR"],
    )
    attributes: dict[str, str] = Field(
        default_factory=lambda: {"kind": "{kind}"},
        description="Attributes of the element (refusal templates).",
        examples=[{"LX": "{kind}", "HH": "{line}"}],
    )
    text: str = Field(default="{reason}", description="Text of the element (a refusal template).")

    @model_validator(mode="after")
    def _says_why(self) -> ReceiptRefusal:
        # The text is checked as one more template, under a name no attribute can have.
        templates = _check_templates({**self.attributes, "(text)": self.text}, REFUSAL_FIELDS)
        used = set().union(*(_template_fields(t) for t in templates.values()))
        missing = sorted({"kind", "reason"} - used)
        if missing:
            raise ValueError(
                f"the refusal element must carry {', '.join('{' + m + '}' for m in missing)} "
                "(in its text or an attribute), so that a refused payload says why"
            )
        return self

    def render(self, values: dict[str, Any]) -> etree._Element:
        """The element, filled with `values` (every refusal field)."""
        element = etree.Element(self.element)
        for name, template in self.attributes.items():
            element.set(name, template.format_map(values))
        element.text = self.text.format_map(values)
        return element


class Receipt(BaseModel):
    """The system's own receipt format: a root element and one element per record.

    Attribute values are templates. Per record: {number} (1-based position), {index} (0-based),
    {status} (accepted, rejected, failed), {accepted} (true/false), {code} (from `codes`),
    {message_id}, {subject}, {message} (the first problem, empty when accepted). On the root:
    {total}, {accepted}, {rejected}, {failed}, {receipt_id}, {quarantine_id}, {code} (rejected
    when something was refused, else accepted), {kind} and {reason} (why the payload was refused
    whole, empty otherwise) and {error} ("kind: reason"). A payload refused whole gets the
    `refusal` element instead of record elements.
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
    refusal: ReceiptRefusal = Field(
        default_factory=ReceiptRefusal,
        description=(
            "The element saying why a payload or a request was refused whole; by default "
            '<error kind="{kind}">{reason}</error> under the root.'
        ),
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
        codes = self._codes()
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
            **_why(problem),
        }
        root = self._root(batch)
        if problem is not None:
            where = {"receipt_id": result.receipt_id, "quarantine_id": result.quarantine_id or ""}
            root.append(self.refusal.render(_refusal_values(problem, **where)))
        for answer in result.records:
            element = etree.SubElement(root, self.item)
            values = _record_values(answer, codes)
            for name, template in self.item_attributes.items():
                element.set(name, template.format_map(values))
        return bytes(etree.tostring(root, xml_declaration=True, encoding=self.encoding))

    def render_refusal(self, refusal: RefusalBody) -> bytes:
        """The receipt of a request refused before its payload was read (nothing of it kept)."""
        problem = PayloadProblem(kind=refusal.error, reason=refusal.reason)
        batch = {
            **dict.fromkeys(("total", "accepted", "rejected", "failed"), 0),
            **dict.fromkeys(("receipt_id", "quarantine_id"), ""),
            "code": self._codes()["rejected"],
            **_why(problem),
        }
        root = self._root(batch)
        root.append(self.refusal.render(_refusal_values(problem)))
        return bytes(etree.tostring(root, xml_declaration=True, encoding=self.encoding))

    def _codes(self) -> dict[str, str]:
        return {"accepted": "0", "rejected": "1", "failed": "2", **self.codes}

    def _root(self, batch: dict[str, Any]) -> etree._Element:
        root = etree.Element(self.root)
        for name, template in self.root_attributes.items():
            root.set(name, template.format_map(batch))
        return root


def _refusal_values(
    problem: PayloadProblem, *, receipt_id: str = "", quarantine_id: str = ""
) -> dict[str, Any]:
    """Every refusal field (REFUSAL_FIELDS); what is not known is empty."""
    known = {name: "" if value is None else value for name, value in problem}
    return {**known, "receipt_id": receipt_id, "quarantine_id": quarantine_id}


def _why(problem: PayloadProblem | None) -> dict[str, str]:
    """The batch fields saying why a payload was refused whole (empty when it was not)."""
    if problem is None:
        return {"kind": "", "reason": "", "error": ""}
    return {
        "kind": problem.kind,
        "reason": problem.reason,
        "error": f"{problem.kind}: {problem.reason}",
    }


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
            "templates, and the `refusal` element saying why a payload or a request was "
            'refused whole, by default <error kind="{kind}">{reason}</error>); when set, it is '
            "the answer, refusals included."
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
    headers. The answer is an <IngressResult> document, or the system's own receipt format;
    a refusal (401, 403, 413, 429, 503, or a payload refused whole) comes in the same format.
    """

    name: ClassVar[str] = "xml_push"
    Options: ClassVar[type[BaseModel]] = XmlPushOptions
    media_types: ClassVar[tuple[str, ...]] = ("application/xml", "text/xml")
    path_kind: ClassVar[str] = "xml"
    payload_format: ClassVar[Literal["xml", "json"] | None] = "xml"

    def answer(
        self, result: IngressResult, status: int, headers: dict[str, str] | None
    ) -> Response:
        receipt = self._receipt()
        if receipt is None:
            return super().answer(result, status, headers)
        return Response(
            receipt.render(result),
            status_code=status,
            media_type=f"application/xml; charset={receipt.encoding}",
            headers=headers,
        )

    def refuse(self, request: Request, refused: RequestRefused) -> Response:
        receipt = self._receipt()
        if receipt is None:
            return super().refuse(request, refused)
        return Response(
            receipt.render_refusal(refusal_body(refused)),
            status_code=refused.status,
            media_type=f"application/xml; charset={receipt.encoding}",
            headers=refused.headers or None,
        )

    def _receipt(self) -> Receipt | None:
        receipt = getattr(self.options, "receipt", None)
        assert receipt is None or isinstance(receipt, Receipt)
        return receipt
