"""Delivering to one target: the HTTP failure rules, the breaker and the in-process retries, once.

Every sender (REST, SOAP, ...) raises `PermanentDeliveryError` or `TransientDeliveryError`; the
rules deciding which live here so they read the same for every protocol:

- 2xx: delivered.
- 408 Request Timeout, 425 Too Early, 429 Too Many Requests: transient (the target asks to try
  again later); other 4xx: permanent (the target refused the content or the request).
- 3xx: permanent (redirects are not followed: a moved endpoint is a configuration problem).
- 5xx, timeouts, refused or dropped connections: transient.

`TargetDelivery` wraps a sender with the target's circuit breaker and the in-process retries
(tenacity): only transient failures are retried, with exponential backoff, up to the system's
`RetryPolicy.in_process_attempts`; an open breaker is not retried here (the bus's delayed tiers
are the place to wait for it, without spending one: see `DeliveryFailed.untried`). When an
attempt's failure opens the breaker (the half-open trial's included) and the breaker refuses the
next attempt, the failure recorded is still what the target answered (status and body), not the
refusal. A stop event cuts the waits short, so a worker shuts down promptly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential,
)

from adapters.breaker import BreakerOpen, BreakerOptions, CircuitBreaker
from adapters.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from standard.errors import quoted, render_value

if TYPE_CHECKING:
    from adapters.base import Sender
    from standard.envelope import Envelope

T = TypeVar("T")

TRANSIENT_CLIENT_STATUSES = frozenset({408, 425, 429})
DETAIL_CHARS = 300
"""How much of a target's answer a failure reason quotes."""


class AnswerCheck(BaseModel):
    """How to tell a refusal that arrives with HTTP 200 (common in provincial gateways)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(
        description="JMESPath over the JSON answer to the value saying success, e.g. `code`.",
        examples=["code", "result.success"],
    )
    success: list[str | int | bool] = Field(
        min_length=1,
        description=(
            "Values of `path` meaning the target took the payload; any other value (or a missing "
            "one, or an answer that is not JSON) is a permanent refusal quoting the answer."
        ),
        examples=[["0", 0, "200"], [True]],
    )
    message_path: str | None = Field(
        default=None,
        description="JMESPath to the target's explanation (quoted in the failure reason).",
        examples=["msg", "message"],
    )

    @field_validator("path", "message_path")
    @classmethod
    def _compiles(cls, expression: str | None) -> str | None:
        if expression is not None:
            try:
                jmespath.compile(expression)
            except JMESPathError as error:
                raise ValueError(f"not a JMESPath expression: {error}") from None
        return expression

    def refusal(self, document: Any) -> str | None:
        """None when `document` (the parsed answer) says success, else why it does not."""
        value = jmespath.search(self.path, document)
        wanted = {str(v).lower() if isinstance(v, bool) else str(v) for v in self.success}
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        if value is not None and shown in wanted:
            return None
        said = jmespath.search(self.message_path, document) if self.message_path else None
        explanation = f" ({excerpt(str(said))})" if said is not None else ""
        return f"`{self.path}` is {quoted(value)}, not one of {self.success}{explanation}"


class OutboundOptions(BaseModel):
    """Options every network sender shares: time limits, its breaker and in-process backoff."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "Seconds to wait for the target's answer (reading, writing, pool) before the attempt "
            "counts as a transient failure."
        ),
    )
    connect_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="Seconds to wait for a connection to the target (a transient failure after).",
    )
    breaker: BreakerOptions = Field(
        default_factory=BreakerOptions,
        description="The target's circuit breaker: when it opens and when it tries again.",
    )
    backoff_initial_s: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description=(
            "Wait before the second in-process attempt; it doubles for each further attempt "
            "(the number of attempts is the system's retry.in_process_attempts)."
        ),
    )
    backoff_max_s: float = Field(
        default=5.0,
        ge=0,
        le=600,
        description="Longest wait between two in-process attempts.",
    )


def excerpt(text: str | bytes | None, limit: int = DETAIL_CHARS) -> str:
    """A short one-line quote of a target's answer for a failure reason, cut as every error
    cuts a value (`standard.errors.render_value`)."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return render_value(" ".join(text.split()), limit=limit)


def status_error(
    status: int,
    answer: str | bytes | None,
    *,
    target: str,
    transient_statuses: Iterable[int] = TRANSIENT_CLIENT_STATUSES,
    location: str | None = None,
) -> DeliveryError | None:
    """The error an HTTP `status` means (None for 2xx), quoting the target's `answer`.

    `location`: a redirect's Location header, named in the error so an operator sees where
    the target wanted the delivery to go (it is never sent there).
    """
    if 200 <= status < 300:
        return None
    detail = excerpt(answer)
    said = f": {detail}" if detail else ""
    if status >= 500 or status in set(transient_statuses):
        return TransientDeliveryError(
            f"target {target} answered HTTP {status}{said}", status=status, detail=detail
        )
    if 300 <= status < 400:
        towards = f" to {location}" if location else ""
        return PermanentDeliveryError(
            f"target {target} answered HTTP {status} (a redirect{towards}; redirects are not "
            f"followed, so nothing was sent there: fix the target's URL){said}",
            status=status,
            detail=detail,
        )
    return PermanentDeliveryError(
        f"target {target} refused the delivery with HTTP {status}{said}",
        status=status,
        detail=detail,
    )


class DeliveryFailed(Exception):
    """What `TargetDelivery.deliver` raises: the last error and how many attempts were made.

    Attributes:
      error: the last real attempt's error (PermanentDeliveryError, TransientDeliveryError:
        the target's status and answer), or BreakerOpen when the open breaker refused the
        first attempt, so that nothing was tried.
      attempts: attempts made in process (0 when the breaker was open from the start).
      breaker_opened: the breaker opened during these attempts and cut the retries short.
    """

    def __init__(self, error: DeliveryError, attempts: int, *, breaker_opened: bool = False):
        self.error = error
        self.attempts = attempts
        self.breaker_opened = breaker_opened
        super().__init__(self.reason)

    @property
    def permanent(self) -> bool:
        return isinstance(self.error, PermanentDeliveryError)

    @property
    def untried(self) -> bool:
        """True when the target was not called at all: its breaker was open from the start.

        Such a message should wait without spending a retry tier (`Delivery.postpone`): a tier
        spent on a refusal by the breaker would let a long outage dead-letter messages that
        were never attempted.
        """
        return isinstance(self.error, BreakerOpen) and self.attempts == 0

    @property
    def reason(self) -> str:
        """The failure in words, for the message's history and the dead letters.

        Nothing in it changes from one failure to the next but what the target said, so
        `jghub dead list --reason "HTTP 500"` finds what it should.
        """
        if self.untried:
            return str(self.error)
        plural = "s" if self.attempts != 1 else ""
        cut = "; then the circuit breaker opened" if self.breaker_opened else ""
        return f"{self.error} [{self.attempts} attempt{plural} in process{cut}]"


def _retryable(error: BaseException) -> bool:
    return isinstance(error, TransientDeliveryError) and not isinstance(error, BreakerOpen)


class TargetDelivery:
    """A target's sender behind its breaker, with in-process retries of transient failures.

    One instance per target per process; `deliver` is called from the target's consumer thread.
    """

    def __init__(
        self,
        sender: Sender,
        *,
        attempts: int,
        breaker: CircuitBreaker,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 5.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.sender = sender
        self.attempts = attempts
        self.breaker = breaker
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._stop = stop or threading.Event()

    def deliver(
        self, body: bytes, *, content_type: str, idempotency_key: str, envelope: Envelope
    ) -> int:
        """Deliver `body`; return the attempts it took. DeliveryFailed when it did not happen.

        The same `idempotency_key` goes with every attempt, so a target that got an attempt we
        count as failed (a timeout after it stored the body) drops the repeat.
        """

        def call() -> None:
            self.sender.deliver(
                body, content_type=content_type, idempotency_key=idempotency_key, envelope=envelope
            )

        return self._attempts(call)[1]

    def send_batch(
        self, body: bytes, *, content_type: str, idempotency_key: str
    ) -> tuple[bytes, int]:
        """Send one batch request as `deliver` sends a record (breaker, in-process retries of
        the whole request); the target's answer and the attempts it took, or DeliveryFailed."""

        def call() -> bytes:
            return self.sender.send_batch(
                body, content_type=content_type, idempotency_key=idempotency_key
            )

        return self._attempts(call)

    def _attempts(self, send: Callable[[], T]) -> tuple[T, int]:
        """Call `send` behind the breaker until it succeeds, fails for good or the attempts
        run out; what it returned and the attempts made, or DeliveryFailed."""
        made = 0
        last: DeliveryError | None = None  # what the target itself last answered

        def attempt() -> T:
            nonlocal made, last
            if last is not None and self._stop.is_set():
                raise last  # shutting down: the wait was cut short, do not call again

            def call() -> T:
                nonlocal made
                made += 1
                return send()

            try:
                return self.breaker.call(call)
            except BreakerOpen:
                raise
            except DeliveryError as error:
                last = error
                raise

        def pause(seconds: float) -> None:
            self._stop.wait(seconds)

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts) | stop_when_event_set(self._stop),
            wait=wait_exponential(
                multiplier=self._backoff_initial_s,
                min=self._backoff_initial_s,
                max=self._backoff_max_s,
            ),
            retry=retry_if_exception(_retryable),
            sleep=pause,
            reraise=True,
        )
        try:
            result = retrying(attempt)
        except BreakerOpen as refused:
            if last is None:
                raise DeliveryFailed(refused, made) from refused
            # A real attempt failed (it may have been the half-open trial) and opened the
            # breaker, which refused the next one: the failure is what the target answered.
            raise DeliveryFailed(last, made, breaker_opened=True) from last
        except DeliveryError as error:
            raise DeliveryFailed(error, made) from error
        return result, made
