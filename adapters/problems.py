"""Problem documents (RFC 9457, `application/problem+json`): how every JSON route says no.

    problem = Problem.of("unauthenticated", "no credential: send X-Api-Key", request)
    return problem_response(problem, headers={"WWW-Authenticate": ...})
    install_problem_handlers(app, channels)   # once, after every route is mounted

One place builds them: the handlers `install_problem_handlers` puts on the app turn FastAPI's
HTTPException and RequestValidationError, the adapters' refusals (RequestRefused,
IngressUnavailable), the store's outage and an unexpected exception into a problem document.
The routes raise; none of them writes an error body of its own. Two kinds of path answer
otherwise, by the channel they belong to, whatever the Accept header says:

- a path of an XML or SOAP channel (`ChannelAnswers`): that channel's own refusal (the XML
  push's <Refusal> or its system's receipt, a SOAP fault in the request's SOAP version);
- a path under a prefix that keeps the handlers installed before (the console's HTML pages,
  `kept_prefixes`): those handlers answer, as they did.

Each kind of problem has a stable `type` URI, `urn:jghub:problem:<name>` (a URN: it names the
kind and is compared as a string; it is not a page to fetch), listed in PROBLEM_TYPES and in
the README's "Errors" section.

A maintained package was considered (fastapi-problem 0.12, with starlette-problem and
rfc9457): it registers one catch-all handler that owns every error of the app, so it cannot
leave the console's and the SOAP and XML channels' errors to them, its types are bare names
rather than URIs unless templated, and three pre-1.0 packages for one pydantic model and
five handlers did not pay.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match

from adapters.errors import IngressUnavailable, PayloadUnreadable, RequestRefused
from store import StoreUnavailable

log = logging.getLogger("adapters.problems")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:jghub:problem:"
STORE_RETRY_AFTER_S = 5
"""Retry-After (seconds) of a 503 answered while the store does not answer."""


@dataclass(frozen=True)
class ProblemType:
    """One kind of problem: its name (the `type` URI's last part), title and usual status."""

    name: str
    title: str
    status: int

    @property
    def uri(self) -> str:
        return TYPE_PREFIX + self.name


PROBLEM_TYPES: dict[str, ProblemType] = {
    kind.name: kind
    for kind in (
        ProblemType("bad-request", "The request cannot be used", 400),
        ProblemType("payload-unreadable", "The payload could not be read at all", 400),
        ProblemType("unauthenticated", "No valid credential", 401),
        ProblemType("forbidden", "Not allowed for this caller", 403),
        ProblemType("not-found", "No such resource", 404),
        ProblemType("method-not-allowed", "Method not allowed on this path", 405),
        ProblemType("request-timeout", "The body did not arrive in time", 408),
        ProblemType("conflict", "Not possible in the resource's present state", 409),
        ProblemType("gone", "No longer kept", 410),
        ProblemType("payload-too-large", "The body is larger than the system's limit", 413),
        ProblemType("too-many-records", "More records than the channel takes at once", 413),
        ProblemType("validation-failed", "The request's parameters break a rule", 422),
        ProblemType("rate-limited", "Too many requests", 429),
        ProblemType("internal-error", "The hub failed to answer", 500),
        ProblemType("unavailable", "The hub cannot serve this now", 503),
        ProblemType("bus-unavailable", "The bus did not confirm", 503),
        ProblemType("back-pressure", "A target is too far behind", 503),
        ProblemType("quarantine-full", "The quarantine has no room", 503),
        ProblemType("store-unavailable", "The hub's store does not answer", 503),
    )
}

_BY_STATUS = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    409: "conflict",
    410: "gone",
    413: "payload-too-large",
    422: "validation-failed",
    429: "rate-limited",
    503: "unavailable",
}

_BY_REFUSAL_KIND = {
    "too-large": "payload-too-large",
    "timeout": "request-timeout",
    "unavailable": "bus-unavailable",
    "backpressure": "back-pressure",
}
"""The adapters' refusal kinds (RequestRefused.kind, IngressUnavailable.kind) whose problem
type has another name; every other kind is its own type's name."""


def problem_type_of_kind(kind: str, status: int) -> ProblemType:
    """The problem type of a refusal of `kind` (the adapters' names) answered with `status`."""
    name = _BY_REFUSAL_KIND.get(kind, kind)
    return PROBLEM_TYPES.get(name) or problem_type_of_status(status)


def problem_type_of_status(status: int) -> ProblemType:
    """The generic problem type of an HTTP status (500's for any status not listed)."""
    name = _BY_STATUS.get(status, "unavailable" if status > 500 else "internal-error")
    if 400 <= status < 500 and status not in _BY_STATUS:
        name = "bad-request"
    return PROBLEM_TYPES[name]


class ProblemError(BaseModel):
    """One broken rule of a request or payload: where, which rule, what is wrong."""

    where: str = Field(description="Where: a parameter (query.limit), a body path, a line.")
    rule: str = Field(description="The rule broken (missing, int_parsing, malformed ...).")
    message: str = Field(description="What is wrong, in words.")
    line: int | None = Field(default=None, description="1-based line in the payload, if known.")
    column: int | None = Field(default=None, description="1-based column, if known.")
    offset: int | None = Field(default=None, description="Byte offset in the payload, if known.")


class Problem(BaseModel):
    """An RFC 9457 problem document; the extensions are set only where they apply."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="The kind of problem: urn:jghub:problem:<name> (README).")
    title: str = Field(description="The kind of problem in words; the same for every instance.")
    status: int = Field(description="The HTTP status, repeated.")
    detail: str = Field(description="This occurrence: what was wrong, where, which rule.")
    instance: str = Field(description="The request's path.")
    errors: list[ProblemError] | None = Field(
        default=None, description="validation-failed, payload-unreadable: each broken rule."
    )
    retry_after: int | None = Field(
        default=None, description="Seconds to wait before sending again (as in Retry-After)."
    )
    quarantine_id: str | None = Field(
        default=None, description="Where the refused payload is kept (when it was read)."
    )
    receipt_id: str | None = Field(
        default=None, description="The id of this exchange in the journal (when it has one)."
    )

    @classmethod
    def of(
        cls,
        kind: ProblemType | str,
        detail: str,
        instance: str,
        *,
        status: int | None = None,
        **extensions: Any,
    ) -> Problem:
        """The problem of `kind` (a ProblemType or its name) at `instance`; extensions that are
        None are left out."""
        found = kind if isinstance(kind, ProblemType) else PROBLEM_TYPES[kind]
        present = {name: value for name, value in extensions.items() if value is not None}
        return cls(
            type=found.uri,
            title=found.title,
            status=status or found.status,
            detail=detail,
            instance=instance,
            **present,
        )


def problem_response(problem: Problem, headers: Mapping[str, str] | None = None) -> Response:
    """`problem` as an HTTP answer: its status, application/problem+json, `headers`."""
    return Response(
        problem.model_dump_json(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def retry_after_of(headers: Mapping[str, str] | None) -> int | None:
    """The seconds of a Retry-After header in `headers`, if it holds a number."""
    value = (headers or {}).get("Retry-After")
    return int(value) if value is not None and value.isdigit() else None


def refusal_problem(refused: RequestRefused, instance: str) -> Problem:
    """A request refused before any of its records was taken (401, 403, 408, 413, 429 ...)."""
    kind = problem_type_of_kind(refused.kind, refused.status)
    if isinstance(refused, PayloadUnreadable) and refused.status == 400:
        kind = PROBLEM_TYPES["payload-unreadable"]
    return Problem.of(
        kind,
        refused.reason,
        instance,
        status=refused.status,
        retry_after=retry_after_of(refused.headers),
        **refused.facts,
    )


def unavailable_problem(error: IngressUnavailable, instance: str) -> Problem:
    """The bus did not confirm, a target is behind or the quarantine is full: 503."""
    facts = {
        name: getattr(error, name) for name in ("target", "ready", "mark") if hasattr(error, name)
    }
    return Problem.of(
        problem_type_of_kind(error.kind, 503),
        str(error),
        instance,
        status=503,
        retry_after=error.retry_after,
        **facts,
    )


ChannelAnswer = Callable[[Request, RequestRefused], Response]
"""A channel's own answer to a request refused whole (its status, reason, headers)."""


@dataclass
class ChannelAnswers:
    """The paths of channels that answer errors in their own format (XML, SOAP), with the
    function that renders a refusal in it. A path not here answers problem documents."""

    by_path: dict[str, ChannelAnswer] = field(default_factory=dict)

    def add(self, path: str, answer: ChannelAnswer) -> None:
        self.by_path[path] = answer

    def answer(self, request: Request, refused: RequestRefused) -> Response | None:
        found = self.by_path.get(request.url.path)
        return None if found is None else found(request, refused)


def _refusal(
    reason: str, status: int, kind: str, headers: Mapping[str, str] | None = None
) -> RequestRefused:
    """A refusal to hand to a channel that answers in its own format (`ChannelAnswers`)."""
    refused = RequestRefused(reason)
    refused.status, refused.kind, refused.headers = status, kind, dict(headers or {})
    return refused


def store_unavailable_refusal(request: Request) -> RequestRefused:
    """A request the hub's store failed (503, Retry-After), saying what and where: never the
    database's address, which stays in the log."""
    detail = (
        f"the hub's store (its database) does not answer, so {request.method} "
        f"{request.url.path} was not served; nothing of it was kept: send it again later"
    )
    headers = {"Retry-After": str(STORE_RETRY_AFTER_S)}
    return _refusal(detail, 503, "store-unavailable", headers)


def _detail_of(request: Request, error: StarletteHTTPException) -> str:
    """The HTTPException's detail; for the router's bare "Not Found" and "Method Not Allowed",
    what was asked and what to do instead."""
    where = f"{request.method} {request.url.path}"
    if error.status_code == 404 and error.detail == "Not Found":
        return f"no route answers {where}; the hub's routes are listed at /docs"
    allowed = (error.headers or {}).get("Allow")
    if error.status_code == 405 and error.detail == "Method Not Allowed" and allowed:
        return f"{request.url.path} does not take {request.method}; it takes {allowed}"
    return str(error.detail)


def _allowed_methods(request: Request) -> str | None:
    """Every method some route of the app takes at the request's path: Starlette's Allow
    names only those of the first route matching it (a SOAP service's GET, not its POST)."""
    methods: set[str] = set()
    for context in iter_route_contexts(request.app.routes):
        match, _ = context.matches({**request.scope, "method": "*"})
        if match is not Match.NONE:
            methods.update(context.methods or ())
    return ", ".join(sorted(methods)) or None


def _validation_errors(error: RequestValidationError) -> list[ProblemError]:
    return [
        ProblemError(
            where=".".join(str(part) for part in problem.get("loc", ())) or "request",
            rule=str(problem.get("type", "invalid")),
            message=str(problem.get("msg", "invalid")),
        )
        for problem in error.errors()
    ]


Handler = Callable[[Request, Exception], Awaitable[Response]]


def install_problem_handlers(
    app: FastAPI,
    channels: ChannelAnswers,
    *,
    kept_prefixes: tuple[str, ...] = (),
) -> None:
    """Answer every error of `app` with a problem document, but on `channels`' paths (their own
    format) and under `kept_prefixes` (the handlers installed before, e.g. the console's pages).

    Install it last, once every route and the console are mounted: it takes over the handlers
    found then for the paths under `kept_prefixes`.
    """
    # FastAPI's own JSON answers are not kept: with no console mounted, /console is a path
    # like any other.
    defaults = {http_exception_handler, request_validation_exception_handler}
    kept: dict[Any, Any] = {
        key: handler for key, handler in app.exception_handlers.items() if handler not in defaults
    }

    def keeps(request: Request) -> bool:
        return request.url.path.startswith(kept_prefixes) if kept_prefixes else False

    async def earlier(request: Request, error: Exception, key: Any) -> Response | None:
        handler = kept.get(key)
        if handler is None:
            return None
        answered = handler(request, error)
        return await answered if isinstance(answered, Awaitable) else answered

    async def refused(request: Request, refusal: RequestRefused, problem: Problem) -> Response:
        answered = channels.answer(request, refusal)
        if answered is not None:
            return answered
        return problem_response(problem, refusal.headers)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        if keeps(request):
            shown = await earlier(request, error, StarletteHTTPException)
            if shown is not None:
                return shown
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        error = StarletteHTTPException(error.status_code, error.detail, headers)
        detail = _detail_of(request, error)
        refusal = _refusal(
            detail,
            error.status_code,
            problem_type_of_status(error.status_code).name,
            error.headers,
        )
        problem = Problem.of(
            problem_type_of_status(error.status_code),
            detail,
            request.url.path,
            status=error.status_code,
            retry_after=retry_after_of(error.headers),
        )
        return await refused(request, refusal, problem)

    async def invalid_request(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        if keeps(request):
            shown = await earlier(request, error, RequestValidationError)
            if shown is not None:
                return shown
        errors = _validation_errors(error)
        detail = "; ".join(f"{e.where}: {e.message}" for e in errors) or "the request is invalid"
        problem = Problem.of("validation-failed", detail, request.url.path, errors=errors)
        return await refused(request, _refusal(detail, 422, "validation-failed"), problem)

    async def request_refused(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestRefused)
        return await refused(request, error, refusal_problem(error, request.url.path))

    async def ingress_unavailable(request: Request, error: Exception) -> Response:
        assert isinstance(error, IngressUnavailable)
        refusal = _refusal(str(error), 503, error.kind, {"Retry-After": str(error.retry_after)})
        return await refused(request, refusal, unavailable_problem(error, request.url.path))

    async def store_unavailable(request: Request, error: Exception) -> Response:
        # The database's address stays in the log; the caller learns what failed and where,
        # not how the hub is wired.
        log.warning("%s %s: %s", request.method, request.url.path, error)
        refusal = store_unavailable_refusal(request)
        problem = Problem.of(
            "store-unavailable", refusal.reason, request.url.path, retry_after=STORE_RETRY_AFTER_S
        )
        return await refused(request, refusal, problem)

    async def unexpected(request: Request, error: Exception) -> Response:
        # Starlette's ServerErrorMiddleware calls this and re-raises, so the error is logged
        # there with its traceback; the caller learns nothing of the hub's insides.
        if keeps(request):
            return PlainTextResponse("Internal Server Error", status_code=500)
        detail = (
            f"the hub could not answer {request.method} {request.url.path} (the error is in its "
            "log); send it again later"
        )
        problem = Problem.of("internal-error", detail, request.url.path)
        return await refused(request, _refusal(detail, 500, "internal-error"), problem)

    handlers: dict[type[Exception], Handler] = {
        StarletteHTTPException: http_error,
        RequestValidationError: invalid_request,
        RequestRefused: request_refused,
        IngressUnavailable: ingress_unavailable,
        StoreUnavailable: store_unavailable,
        Exception: unexpected,
    }
    for exception, handler in handlers.items():
        app.add_exception_handler(exception, handler)
