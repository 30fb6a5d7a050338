"""XML over HTTP push: a system POSTs an XML batch document and gets one answer per record."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters.http_push import HttpPush


class XmlPushOptions(BaseModel):
    """Options of the XML push endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(
        default=None,
        pattern=r"^/[A-Za-z0-9_\-./]*$",
        description="URL path of the endpoint; default /systems/{system id}/xml/{message type}.",
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
            "Format of the answer: an <IngressResult> XML document (the default, for systems "
            "that only read XML) or the same content as JSON."
        ),
    )


class XmlPush(HttpPush):
    """XML over HTTP push endpoint: a batch document per POST, one answer per record.

    The body is the system's XML document, exactly as its mapping reads it (charset from the
    byte order mark, the XML declaration, or the Content-Type, in that order). DOCTYPEs and
    entity declarations are refused. Authenticate with X-Api-Key, a client certificate, or the
    X-App-Key, X-Request-Time and X-Sign headers.
    """

    name: ClassVar[str] = "xml_push"
    Options: ClassVar[type[BaseModel]] = XmlPushOptions
    media_types: ClassVar[tuple[str, ...]] = ("application/xml", "text/xml")
    path_kind: ClassVar[str] = "xml"
