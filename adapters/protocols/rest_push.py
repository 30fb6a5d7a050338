"""REST push: a system POSTs JSON (one record or a batch) and gets one answer per record."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters.protocols.http_push import HttpPush


class RestPushOptions(BaseModel):
    """Options of the REST push endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(
        default=None,
        pattern=r"^/[A-Za-z0-9_\-./]*$",
        description=("URL path of the endpoint; default /systems/{system id}/rest/{message type}."),
    )
    default_charset: str | None = Field(
        default=None,
        description=(
            "Charset assumed when the Content-Type names none; default: UTF-8, as JSON "
            "requires (RFC 8259)."
        ),
    )


class RestPush(HttpPush):
    """REST/JSON push endpoint: one record or a batch per POST, one answer per record.

    The body is the system's JSON payload as its mapping reads it; a signed app key (appKey,
    requestTime, sign) may travel in it. The answer is JSON: counts, then per record accepted
    with its message id or rejected with the mapping's field, rule, location and value.
    """

    name: ClassVar[str] = "rest_push"
    Options: ClassVar[type[BaseModel]] = RestPushOptions
    media_types: ClassVar[tuple[str, ...]] = ("application/json",)
    path_kind: ClassVar[str] = "rest"
    # The body goes to the mapping unchanged, and the endpoint says it takes JSON.
    payload_format: ClassVar[Literal["xml", "json"] | None] = "json"
