"""The adapters' errors: one small hierarchy a caller can catch by meaning.

AdapterError
├── AdapterConfigError (also a ValueError): an unknown adapter, an adapter of the wrong
│   kind, or options its Options model refuses
├── DeliveryError: an outbound delivery did not happen
│   ├── PermanentDeliveryError: the target refused the content (4xx, a SOAP fault about the
│   │   data); retrying will not help, so the message goes to the dead letters
│   └── TransientDeliveryError: the target could not take it now (5xx, timeout, refused
│       connection); retried in process, then in the bus's retry tiers
├── IngressUnavailable: the bus did not confirm an inbound message; the sender should
│   send again later (HTTP 503 with Retry-After)
│   ├── IngressOverloaded: a target the payload would reach holds more ready messages than
│   │   its high-water mark (back-pressure); nothing was published (HTTP 503, Retry-After)
│   └── IngressQuarantineFull: the quarantine has no room to keep what the hub would reject
│       of the payload; nothing was published (HTTP 503, Retry-After)
└── RequestRefused: an inbound request refused before any of its records was taken, with
    the HTTP status it answers
    ├── Unauthenticated (401): no credential, or one that no system owns
    ├── Forbidden (403): a system pushing to, or pulling from, another system's channel
    ├── BodyTooLarge (413): more bytes than the system's limit
    ├── TooManyRecords (413): more records than the channel takes in one payload (counted
    │   before any was translated; the payload is kept in the quarantine)
    ├── RateLimited (429): the system's token bucket is empty, or the client address failed
    │   to authenticate too often; `retry_after` seconds
    ├── RequestTimedOut (408): the body did not arrive within the hub's time limit
    ├── BadRequest (400): a request the hub cannot use at all (not the payload's records)
    └── PayloadUnreadable (400, or 413 when too large to parse): the payload was read but could
        not be understood at all (malformed, wrong encoding, forbidden markup, no records);
        it is kept in the quarantine

How each is answered is the channel's: a problem document (adapters.problems) on JSON channels
and the hub's own APIs, the channel's XML refusal or a SOAP fault on XML and SOAP channels.
"""

from __future__ import annotations

import math
from typing import Any

QUARANTINE_FULL_RETRY_AFTER_S = 300
"""Retry-After of a refusal for a full quarantine: room comes from an operator, not in seconds."""


class AdapterError(Exception):
    """Anything the adapters raise on purpose."""


class AdapterConfigError(AdapterError, ValueError):
    """An adapter name, kind or option that cannot be used; the message says which and why."""


class DeliveryError(AdapterError):
    """An outbound delivery did not happen.

    Attributes:
      status: the target's HTTP status, when it answered with one.
      detail: what the target said (a short excerpt of its answer), when known.
    """

    def __init__(self, message: str, *, status: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.status = status
        self.detail = detail


class PermanentDeliveryError(DeliveryError):
    """The target refused the content (4xx, a fault about the data): do not retry."""


class TransientDeliveryError(DeliveryError):
    """The target could not take it now (5xx, timeout, refused connection): retry later."""


class IngressUnavailable(AdapterError):
    """The bus did not confirm inbound messages; nothing that is not listed as accepted is kept.

    Attributes:
      retry_after: seconds the sender should wait before sending again.
      kind: the refusal's name in answers: "unavailable" (a SOAP fault's subcode: `subcode`).
    """

    kind = "unavailable"
    subcode = "BusUnavailable"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IngressOverloaded(IngressUnavailable):
    """Back-pressure: a target the payload would reach is above its high-water mark.

    Refused before anything was published, so sending the same payload again later is safe.

    Attributes:
      target: the first target found above its mark.
      ready: the ready messages last read from its queue.
      mark: its high-water mark.
    """

    kind = "backpressure"
    subcode = "BackPressure"

    def __init__(self, message: str, *, target: str, ready: int, mark: int, retry_after: int):
        super().__init__(message, retry_after=retry_after)
        self.target = target
        self.ready = ready
        self.mark = mark


class IngressQuarantineFull(IngressUnavailable):
    """The quarantine cannot keep what the hub would reject of the payload (its size limit).

    Refused whole before anything was published: the hub does not accept part of a payload
    whose rejected rest it could not keep. The reason names what would be rejected, so the
    sender can correct it; sent again unchanged, it is taken once operators made room.
    """

    kind = "quarantine-full"
    subcode = "QuarantineFull"

    def __init__(self, message: str, *, retry_after: int = QUARANTINE_FULL_RETRY_AFTER_S) -> None:
        super().__init__(message, retry_after=retry_after)


class RequestRefused(AdapterError):
    """An inbound request refused before any of its records was taken.

    Attributes:
      status: the HTTP status to answer.
      reason: what was wrong and what to do, in words.
      system: the system the request was for (the channel's owner), when known.
      headers: extra HTTP headers to answer with (Retry-After for 429).
      facts: further facts for the answer's body (the numbers of a TooManyRecords).
    """

    status = 400
    kind = "bad-request"

    def __init__(self, reason: str, *, system: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.system = system
        self.headers: dict[str, str] = {}
        self.facts: dict[str, Any] = {}


class BadRequest(RequestRefused):
    """A request the hub cannot use at all (e.g. a charset nobody knows)."""


class Unauthenticated(RequestRefused):
    """No credential, or one that no configured system owns (HTTP 401)."""

    status = 401
    kind = "unauthenticated"


class Forbidden(RequestRefused):
    """An authenticated system asked for another system's channel or outbox (HTTP 403)."""

    status = 403
    kind = "forbidden"


class BodyTooLarge(RequestRefused):
    """The body has more bytes than the system's limit (HTTP 413); nothing of it was parsed."""

    status = 413
    kind = "too-large"


class TooManyRecords(RequestRefused):
    """The payload holds more records than its channel takes in one payload (HTTP 413).

    Refused whole before any record was translated or published; the payload is kept in the
    quarantine. `facts`: records, max_records, receipt_id, quarantine_id.
    """

    status = 413
    kind = "too-many-records"

    def __init__(
        self,
        reason: str,
        *,
        records: int,
        max_records: int,
        receipt_id: str,
        quarantine_id: str | None,
        system: str | None = None,
    ) -> None:
        super().__init__(reason, system=system)
        self.facts.update(
            records=records,
            max_records=max_records,
            receipt_id=receipt_id,
            quarantine_id=quarantine_id,
        )


class RequestTimedOut(RequestRefused):
    """The body did not arrive in full within the hub's time limit (HTTP 408)."""

    status = 408
    kind = "timeout"


class RateLimited(RequestRefused):
    """The system's request budget is spent (HTTP 429); try again after `retry_after` seconds."""

    status = 429
    kind = "rate-limited"

    def __init__(self, reason: str, *, retry_after: float, system: str | None = None) -> None:
        super().__init__(reason, system=system)
        self.retry_after = retry_after
        # Retry-After takes whole seconds; rounding up never invites a request that would fail.
        self.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))


class PayloadUnreadable(RequestRefused):
    """The payload could not be read at all: no record of it was taken (HTTP 400; 413 when it is
    too large to parse). It is kept in the quarantine.

    `reason` says it all in words; `kind` is the reader's rule (malformed, encoding,
    forbidden-markup, no-records, too-large ...), `message` its words, `where` the place;
    `facts`: receipt_id, quarantine_id, and errors (one {where, rule, message}, with the `place`:
    line, column, offset where known).
    """

    def __init__(
        self,
        reason: str,
        *,
        kind: str,
        message: str,
        where: str,
        place: dict[str, int | None],
        receipt_id: str,
        quarantine_id: str | None,
        system: str | None = None,
    ) -> None:
        super().__init__(reason, system=system)
        self.kind = kind
        self.status = 413 if kind == "too-large" else 400
        self.facts.update(
            receipt_id=receipt_id,
            quarantine_id=quarantine_id,
            errors=[{"where": where, "rule": kind, "message": message, **place}],
        )
