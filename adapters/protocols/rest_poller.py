"""Polling a JSON REST API paged by change time (`?since=...&page=N&pageSize=M`)."""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import httpx
import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from adapters.base import AdapterContext
from adapters.delivery import AnswerCheck, excerpt
from adapters.errors import AdapterConfigError
from adapters.protocols.poller import (
    Page,
    PagedPoller,
    PagedPollerOptions,
    SourceRecord,
    SourceUnavailable,
)
from mappings import value_at

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
TOKEN_MARGIN_S = 30.0
"""A token is fetched again this long before it expires."""


def _jmespath(expression: str | None) -> str | None:
    if expression is not None:
        try:
            jmespath.compile(expression)
        except JMESPathError as error:
            raise ValueError(f"not a JMESPath expression: {error}") from None
    return expression


class TokenAuth(BaseModel):
    """A token exchanged for client credentials before polling (POST JSON → token)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        pattern=r"^https?://",
        description="Token endpoint (required), called with POST and a JSON body.",
        examples=["https://yjglt.example/openapi/v1/auth/token"],
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Fixed fields of the JSON body (never secrets).",
        examples=[{"clientId": "jghub"}],
    )
    secret_fields: dict[str, str] = Field(
        default_factory=dict,
        description="Body fields filled from environment variables: field → variable NAME.",
        examples=[{"clientSecret": "JGHUB_SECRET_EMERGENCY"}],
    )
    token_path: str = Field(
        default="result.accessToken", description="JMESPath to the token in the answer."
    )
    expires_path: str | None = Field(
        default="result.expiresIn",
        description="JMESPath to its lifetime in seconds; None: fetched again after a refusal.",
    )
    encoding: Literal["json", "form"] = Field(
        default="json",
        description="How the credentials are sent: a JSON body, or a form (OAuth2 style).",
    )
    header: str = Field(default="Authorization", description="Header carrying the token.")
    prefix: str = Field(default="", description="Text before the token, e.g. 'Bearer '.")

    @field_validator("token_path", "expires_path")
    @classmethod
    def _paths(cls, value: str | None) -> str | None:
        return _jmespath(value)

    @field_validator("secret_fields")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for name, variable in value.items():
            if not re.fullmatch(ENV_NAME, variable):
                raise ValueError(f"secret_fields.{name}: {variable!r} is not a variable name")
        return value


class RestPollerOptions(PagedPollerOptions):
    """Where the source is, how it pages and filters by change time, and where records are."""

    url: str = Field(
        pattern=r"^https?://",
        description="The list endpoint (required), asked with GET.",
        examples=["https://yjglt.example/openapi/v1/punish/cases"],
    )
    query: dict[str, str] = Field(
        default_factory=dict, description="Fixed query parameters sent with every request."
    )
    since_param: str = Field(
        default="changedSince",
        description="Query parameter with the change time to read from (inclusive).",
        examples=["updateTimeBegin"],
    )
    until_param: str | None = Field(
        default=None,
        description="Query parameter with the end of the window (now), for APIs that want one.",
        examples=["updateTimeEnd"],
    )
    paging: Literal["page_number", "next_cursor"] = Field(
        default="page_number",
        description=(
            "page_number: pages are numbered (`page_param`; `total_path` or a short page tells "
            "the last). next_cursor: each answer names the next page (`next_cursor_path`, "
            "`has_more_path`), sent back in `cursor_param`."
        ),
    )
    page_param: str = Field(default="page", description="Query parameter with the page number.")
    cursor_param: str = Field(
        default="cursor", description="Query parameter with the next-page token (next_cursor)."
    )
    next_cursor_path: str = Field(
        default="next_cursor",
        description="JMESPath to the next-page token in an answer (null on the last page).",
    )
    has_more_path: str | None = Field(
        default="has_more",
        description="JMESPath to the flag saying more pages follow (next_cursor); None: unused.",
    )
    page_size_param: str = Field(
        default="pageSize", description="Query parameter with the page size."
    )
    first_page: int = Field(default=1, ge=0, description="Number of the first page (0 or 1).")
    records_path: str = Field(
        default="items",
        pattern=r"^[^.\s]+(\.[^.\s]+)*$",
        description="Dotted path to the list of records in a page, e.g. 'result.records'.",
    )
    total_path: str | None = Field(
        default="total",
        description=(
            "JMESPath to the number of records matching the query; None: a page shorter than "
            "page_size is the last."
        ),
    )
    record_time_path: str = Field(
        default="changeTime", description="JMESPath to a record's change time."
    )
    record_id_path: str = Field(default="id", description="JMESPath to a record's id.")
    answer_check: AnswerCheck | None = Field(
        default=None,
        description=(
            "For APIs answering errors with HTTP 200 and a code: which value means success "
            "(another answer is a source failure, retried with backoff)."
        ),
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=ENV_NAME,
        description="NAME of the environment variable with an API key for the source.",
    )
    api_key_header: str = Field(default="X-Api-Key", description="Header carrying that key.")
    token: TokenAuth | None = Field(
        default=None, description="Client-credential token exchange before polling."
    )
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="Seconds to wait for a page.")
    connect_timeout_s: float = Field(
        default=5.0, gt=0, le=600, description="Seconds to wait for a connection."
    )
    verify_tls: bool = Field(default=True, description="Check the source's TLS certificate.")

    @field_validator(
        "total_path", "record_time_path", "record_id_path", "next_cursor_path", "has_more_path"
    )
    @classmethod
    def _paths(cls, value: str | None) -> str | None:
        return _jmespath(value)


class RestPoller(PagedPoller):
    """Pull records from a JSON REST API that pages them by change time.

    Each poll asks for the records changed since the cursor (`since_param`, inclusive), page by
    page (`page_param`, `page_size_param`), drops those already handed over, and hands the page
    — reduced to its new records — to the system's inbound mapping through the ingress. An API
    key header or a client-credential token (fetched again before it expires or after a 401)
    authenticates; errors, timeouts and error answers back off exponentially.
    """

    name: ClassVar[str] = "rest_poller"
    Options: ClassVar[type[BaseModel]] = RestPollerOptions
    payload_format: ClassVar[Literal["xml", "json"] | None] = "json"

    def __init__(self, options: BaseModel, context: AdapterContext) -> None:
        super().__init__(options, context)
        assert isinstance(options, RestPollerOptions)
        self.source: RestPollerOptions = options
        self._client = httpx.Client(
            timeout=httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s),
            verify=options.verify_tls,
            follow_redirects=False,
        )
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ HTTP

    def _get_json(self, method: str, url: str, **request: Any) -> Any:
        try:
            answer = self._client.request(method, url, **request)
        except httpx.HTTPError as error:
            raise SourceUnavailable(
                f"{self.system.id} source {url} unreachable ({type(error).__name__}: {error})"
            ) from error
        if answer.status_code == 401:
            self._token = None
        if answer.is_redirect:
            # The request carries the source's key or token: it goes to the configured URL only.
            raise SourceUnavailable(
                f"{self.system.id} source {url} answered HTTP {answer.status_code} redirecting "
                f"to {answer.headers.get('location')}; redirects are not followed, so nothing "
                "was asked there: fix the poller's url"
            )
        if not 200 <= answer.status_code < 300:
            raise SourceUnavailable(
                f"{self.system.id} source {url} answered HTTP {answer.status_code}: "
                f"{excerpt(answer.content)}"
            )
        try:
            return json.loads(answer.content)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SourceUnavailable(
                f"{self.system.id} source {url} answered something that is not JSON ({error}): "
                f"{excerpt(answer.content)}"
            ) from None
        except (ValueError, RecursionError) as error:
            # An integer past Python's digit limit, or arrays nested past the recursion limit:
            # the source's fault, retried with backoff like any failing answer, never a crash.
            why = "arrays or objects nest too deep" if isinstance(error, RecursionError) else error
            raise SourceUnavailable(
                f"{self.system.id} source {url} answered JSON the hub cannot read ({why}): "
                f"{excerpt(answer.content)}"
            ) from None

    def _headers(self) -> dict[str, str]:
        source = self.source
        headers: dict[str, str] = {}
        if source.api_key_env:
            headers[source.api_key_header] = _secret(source.api_key_env, self.system.id)
        if source.token is not None:
            headers[source.token.header] = source.token.prefix + self._current_token()
        return headers

    def _current_token(self) -> str:
        auth = self.source.token
        assert auth is not None
        with self._lock:
            if self._token is not None and time.monotonic() < self._token[1]:
                return self._token[0]
            body: dict[str, Any] = dict(auth.fields)
            for field, variable in auth.secret_fields.items():
                body[field] = _secret(variable, self.system.id)
            if auth.encoding == "form":
                answer = self._get_json("POST", auth.url, data=body)
            else:
                answer = self._get_json("POST", auth.url, json=body)
            token = jmespath.search(auth.token_path, answer)
            if not isinstance(token, str) or not token:
                raise SourceUnavailable(
                    f"{self.system.id} token endpoint answered no token at `{auth.token_path}`: "
                    f"{excerpt(json.dumps(answer, ensure_ascii=False))}"
                )
            lifetime = jmespath.search(auth.expires_path, answer) if auth.expires_path else None
            seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
            self._token = (token, time.monotonic() + max(0.0, seconds - TOKEN_MARGIN_S))
            return token

    # ------------------------------------------------------------------ paging

    def fetch(self, since: datetime, after: Any | None) -> tuple[Page, Any]:
        source = self.source
        params = dict(source.query)
        params[source.since_param] = self.query_time.format(since)
        if source.until_param:
            params[source.until_param] = self.query_time.format(datetime.now(UTC))
        page_number = 1 if after is None else int(after)
        if source.paging == "page_number":
            params[source.page_param] = str(source.first_page + page_number - 1)
        elif after is not None:
            params[source.cursor_param] = str(after)
        params[source.page_size_param] = str(source.page_size)
        document = self._get_json("GET", source.url, params=params, headers=self._headers())
        if source.answer_check is not None:
            refusal = source.answer_check.refusal(document)
            if refusal is not None:
                self._token = None  # an expired token is the usual cause; fetch a new one
                raise SourceUnavailable(
                    f"{self.system.id} source {source.url} answered an error: {refusal}"
                )
        items = value_at(document, source.records_path)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise SourceUnavailable(
                f"{self.system.id} source {source.url}: `{source.records_path}` is not a list "
                f"of records: {excerpt(json.dumps(items, ensure_ascii=False))}"
            )
        records = [self._record(item) for item in items]
        if source.paging == "next_cursor":
            return Page(records, self._next_cursor(document)), document
        total = jmespath.search(source.total_path, document) if source.total_path else None
        if isinstance(total, int) and not isinstance(total, bool):
            more = page_number * source.page_size < total and bool(items)
        else:
            more = len(items) >= source.page_size
        return Page(records, page_number + 1 if more else None), document

    def _next_cursor(self, document: Any) -> str | None:
        source = self.source
        token = jmespath.search(source.next_cursor_path, document)
        more = jmespath.search(source.has_more_path, document) if source.has_more_path else True
        if token in (None, "") or more is False:
            return None
        return str(token)

    def _record(self, item: Any) -> SourceRecord:
        source = self.source
        raw_time = jmespath.search(source.record_time_path, item)
        raw_id = jmespath.search(source.record_id_path, item)
        try:
            changed: datetime | None = self.record_time.parse(raw_time)
        except (ValueError, OverflowError):
            changed = None  # handed over all the same: the mapping says what is wrong with it
        return SourceRecord(changed, "" if raw_id is None else str(raw_id), item)

    def payload(self, document: Any, records: Sequence[SourceRecord]) -> bytes:
        page = copy.copy(document)
        _put(page, self.source.records_path, [r.raw for r in records])
        return json.dumps(page, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def close(self) -> None:
        self._client.close()


def _secret(variable: str, system: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise AdapterConfigError(
            f"rest_poller of {system}: environment variable {variable} is not set or empty"
        )
    return value


def _put(document: Any, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        child = document.get(key)
        # Copies on the way down: the fetched document stays as the source sent it.
        document[key] = copy.copy(child)
        document = document[key]
    document[last] = value
