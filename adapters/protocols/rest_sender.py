"""Outbound REST: POST each rendered payload to the target's URL with an Idempotency-Key header."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, Field, model_validator

from adapters.base import AdapterContext, Sender
from adapters.delivery import (
    TRANSIENT_CLIENT_STATUSES,
    AnswerCheck,
    OutboundOptions,
    excerpt,
    status_error,
)
from adapters.errors import AdapterConfigError, PermanentDeliveryError, TransientDeliveryError

if TYPE_CHECKING:
    from standard.envelope import Envelope

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class RestSenderOptions(OutboundOptions):
    """Where and how to POST; time limits, breaker and backoff as for every sender."""

    # No default: there is no endpoint that would work for every target, and a made-up one
    # would only fail later, at the first message, instead of when the config is loaded.
    url: str = Field(
        pattern=r"^https?://[^\s]+$",
        description="The target's endpoint (required); the rendered payload is the request body.",
        examples=["https://gateway.example.gov.cn/api/v1/feedback"],
    )
    method: Literal["POST", "PUT"] = Field(default="POST", description="HTTP method.")
    batch_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description=(
            "Where batch requests go, for a system with `outbound.batch` (the target's batch "
            "upload); default: `url`."
        ),
        examples=["https://gateway.example.gov.cn/api/v1/batch"],
    )
    idempotency_header: str = Field(
        default="Idempotency-Key",
        min_length=1,
        description=(
            "Header carrying the message's idempotency key, the same on every attempt and "
            "replay, so the target can drop duplicates."
        ),
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Fixed extra headers (never secrets: use api_key_env).",
        examples=[{"X-Source": "jghub"}],
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=ENV_NAME,
        description="NAME of the environment variable holding the key the target expects.",
        examples=["JGHUB_TARGET_KEY_NATIONAL"],
    )
    api_key_header: str = Field(
        default="X-Api-Key", description="Header carrying that key (with api_key_env)."
    )
    transient_statuses: list[int] = Field(
        default=sorted(TRANSIENT_CLIENT_STATUSES),
        description=(
            "4xx statuses that mean 'try again later' rather than 'refused'; every 5xx is "
            "transient anyway."
        ),
    )
    answer_check: AnswerCheck | None = Field(
        default=None,
        description="For targets that answer HTTP 200 with an error code in the JSON body.",
    )
    verify_tls: bool = Field(
        default=True, description="Check the target's TLS certificate (https URLs)."
    )
    ca_file: Path | None = Field(
        default=None, description="CA bundle to check the target's certificate with."
    )
    client_cert_file: Path | None = Field(
        default=None, description="Client certificate (PEM) for targets that require mTLS."
    )
    client_key_file: Path | None = Field(
        default=None, description="Private key (PEM) of the client certificate."
    )

    @model_validator(mode="after")
    def _pairs(self) -> RestSenderOptions:
        if self.client_key_file is not None and self.client_cert_file is None:
            raise ValueError("client_key_file needs client_cert_file")
        return self


class RestSender(Sender):
    """POST (or PUT) rendered payloads to a target's HTTP endpoint.

    The body is the payload the target's reverse mapping rendered, sent with its content type
    and an `Idempotency-Key` header (the message's key, stable across retries and replays).
    2xx is delivered; 4xx a permanent refusal (except 408/425/429); 5xx, timeouts and refused
    connections transient (see adapters.delivery). One HTTP connection pool per target.
    """

    name: ClassVar[str] = "rest_sender"
    Options: ClassVar[type[BaseModel]] = RestSenderOptions
    batches: ClassVar[bool] = True

    def __init__(self, options: BaseModel, context: AdapterContext) -> None:
        super().__init__(options, context)
        assert isinstance(options, RestSenderOptions)
        self.settings: RestSenderOptions = options
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> httpx.Client:
        options = self.settings
        headers = dict(options.headers)
        if options.api_key_env:
            key = os.environ.get(options.api_key_env)
            if not key:
                raise AdapterConfigError(
                    f"rest_sender of {self.system.id}: environment variable "
                    f"{options.api_key_env} (api_key_env) is not set or empty"
                )
            headers[options.api_key_header] = key
        verify: Any = options.verify_tls
        if options.ca_file is not None and options.verify_tls:
            verify = str(options.ca_file)
        cert: Any = None
        if options.client_cert_file is not None:
            cert = (
                (str(options.client_cert_file), str(options.client_key_file))
                if options.client_key_file
                else str(options.client_cert_file)
            )
        return httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s),
            verify=verify,
            cert=cert,
            follow_redirects=False,
        )

    def deliver(
        self,
        body: bytes,
        *,
        content_type: str,
        idempotency_key: str,
        envelope: Envelope,
    ) -> None:
        self._check_answer(self._send(self.settings.url, body, content_type, idempotency_key))

    def send_batch(self, body: bytes, *, content_type: str, idempotency_key: str) -> bytes:
        """POST a batch to `batch_url` (else `url`); the answer's body, for its results."""
        url = self.settings.batch_url or self.settings.url
        answer = self._send(url, body, content_type, idempotency_key)
        self._check_answer(answer)
        return answer.content

    def _send(
        self, url: str, body: bytes, content_type: str, idempotency_key: str
    ) -> httpx.Response:
        """Send `body` to `url`; the answer when its status says delivered, else raise."""
        options = self.settings
        target = self.system.id
        try:
            answer = self._http().request(
                options.method,
                url,
                content=body,
                headers={
                    "Content-Type": content_type,
                    options.idempotency_header: idempotency_key,
                },
            )
        except httpx.TimeoutException as error:
            raise TransientDeliveryError(
                f"target {target} did not answer {options.method} {url} in time "
                f"({type(error).__name__}: {error})"
            ) from error
        except httpx.TransportError as error:
            raise TransientDeliveryError(
                f"target {target} unreachable at {url} ({type(error).__name__}: {error})"
            ) from error
        failure = status_error(
            answer.status_code,
            answer.content,
            target=target,
            transient_statuses=options.transient_statuses,
            location=answer.headers.get("location"),
        )
        if failure is not None:
            raise failure
        return answer

    def _check_answer(self, answer: httpx.Response) -> None:
        check = self.settings.answer_check
        if check is None:
            return
        quoted = excerpt(answer.content)
        try:
            document = json.loads(answer.content)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise PermanentDeliveryError(
                f"target {self.system.id} answered HTTP {answer.status_code} with a body that "
                f"is not JSON, so answer_check `{check.path}` cannot confirm the delivery: "
                f"{quoted}",
                status=answer.status_code,
                detail=quoted,
            ) from None
        refusal = check.refusal(document)
        if refusal is not None:
            raise PermanentDeliveryError(
                f"target {self.system.id} refused the delivery: {refusal}; answer: {quoted}",
                status=answer.status_code,
                detail=quoted,
            )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
