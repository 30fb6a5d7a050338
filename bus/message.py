"""What travels on the bus: outgoing and delivered messages, failure history, dead letters.

A message's identity and history travel in its headers (`x-jghub-*`), so they survive broker
restarts and moves between queues (retry tiers, dead letters, replay):

    x-jghub-id               message id (also the AMQP message_id property)
    x-jghub-idempotency-key  the key a target uses to drop duplicates; defaults to the id
    x-jghub-published-at     ISO 8601 UTC time of the first publish
    x-jghub-attempts         failed attempts so far (0 on first delivery; reset by replay)
    x-jghub-history          JSON list of Failure records, oldest first

Both backends build and read headers with `wire_headers` and `from_wire`, and derive new states
with `Message.with_failure` and `Message.replayed`, so the rules live once.

Headers are bounded: RabbitMQ carries all of a message's properties in one frame (frame_max,
128 KiB by default) and closes the whole connection over a larger one. A publisher's headers
may take `HEADERS_MAX_BYTES` (`check_headers` refuses more, naming the largest), a failure
reason or a quarantine reason is clipped to `REASON_MAX_CHARS` or `QUARANTINE_REASON_MAX_CHARS`,
and the history keeps its last `HISTORY_MAX_ENTRIES` entries. Counts and a short excerpt
belong in headers; the detail belongs in the body.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from bus.errors import InvalidMessage
from bus.routing import check_routing_key

HeaderValue = str | int | float | bool
"""What a header may hold: plain scalars, so every backend can store it unchanged."""

HEADER_PREFIX = "x-jghub-"
HEADER_ID = "x-jghub-id"
HEADER_IDEMPOTENCY_KEY = "x-jghub-idempotency-key"
HEADER_PUBLISHED_AT = "x-jghub-published-at"
HEADER_ATTEMPTS = "x-jghub-attempts"
HEADER_HISTORY = "x-jghub-history"

REPLAY_STAGE = "replay"
"""The stage of the history entry `replay` adds; it marks a replay, not a failure."""

MAX_ID_LENGTH = 200

HEADERS_MAX_BYTES = 32 * 1024
"""Most bytes a publisher's headers may take, AMQP-encoded: a quarter of RabbitMQ's default
frame_max, leaving room for the bus's own x-jghub-* headers in the same frame."""

REASON_MAX_CHARS = 1000
"""Characters of a failure's reason kept in the history (the rest is cut, and counted)."""

HISTORY_MAX_ENTRIES = 20
"""History entries a message keeps (the most recent); retries and replays add one each."""

QUARANTINE_REASON_MAX_CHARS = 8000
"""Characters of a quarantined payload's reason kept with it (the rest is cut, and counted)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_message_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Failure:
    """One entry of a message's history: a failed attempt, or (stage "replay") a replay.

    Attributes:
      attempt: which attempt failed, 1 for the first delivery; for a replay marker, the attempts
        the message had when it was replayed.
      at: when (UTC).
      stage: where it failed: "handler" when a consumer's handler raised, else what the caller
        passed (e.g. "render", "deliver"); "replay" for a replay marker.
      reason: what went wrong, in words (for a handler exception, its repr).
      permanent: True when the failure sent the message straight to the dead letters.
    """

    attempt: int
    at: datetime
    stage: str
    reason: str
    permanent: bool = False

    @property
    def is_replay(self) -> bool:
        return self.stage == REPLAY_STAGE

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "at": self.at.isoformat(),
            "stage": self.stage,
            "reason": self.reason,
            "permanent": self.permanent,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Failure:
        return cls(
            attempt=int(data["attempt"]),
            at=_parse_time(str(data["at"])),
            stage=str(data["stage"]),
            reason=str(data["reason"]),
            permanent=bool(data.get("permanent", False)),
        )


@dataclass(frozen=True)
class Outgoing:
    """What a publisher hands to `Broker.publish`.

    Attributes:
      routing_key: "dataset.region.source"; decides which targets receive it.
      body: the payload bytes (the canonical envelope, usually JSON).
      headers: extra scalar headers; names starting with "x-jghub-" are reserved.
      message_id: the message's id; a new random one when None.
      idempotency_key: what a target uses to drop duplicates; the message id when None.
      content_type: MIME type of the body.
    """

    routing_key: str
    body: bytes
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    message_id: str | None = None
    idempotency_key: str | None = None
    content_type: str = "application/json"

    def __post_init__(self) -> None:
        try:
            check_routing_key(self.routing_key)
        except ValueError as exc:
            raise InvalidMessage(str(exc)) from None
        if not isinstance(self.body, bytes | bytearray | memoryview):
            raise InvalidMessage(
                f"message body must be bytes, got {type(self.body).__name__} "
                f"(routing key {self.routing_key!r}); encode it first"
            )
        for name, value in (
            ("message_id", self.message_id),
            ("idempotency_key", self.idempotency_key),
        ):
            if value is not None and not (0 < len(value) <= MAX_ID_LENGTH):
                raise InvalidMessage(
                    f"{name} must be 1 to {MAX_ID_LENGTH} characters, got {value[:60]!r} "
                    f"({len(value)} characters)"
                )
        check_headers(self.headers)


def check_headers(headers: Mapping[str, Any]) -> None:
    """Raise InvalidMessage for a header name or value the bus cannot carry unchanged, or for
    headers larger than HEADERS_MAX_BYTES."""
    for name, value in headers.items():
        if not isinstance(name, str) or not name:
            raise InvalidMessage(f"header names must be non-empty strings, got {name!r}")
        if name.lower().startswith(HEADER_PREFIX):
            raise InvalidMessage(
                f"header {name!r} uses the reserved prefix {HEADER_PREFIX!r}; "
                "set message_id / idempotency_key instead, or rename it"
            )
        if not isinstance(value, str | int | float | bool):
            raise InvalidMessage(
                f"header {name!r} has a {type(value).__name__} value {value!r}; "
                "header values must be str, int, float or bool"
            )
    if header_bytes_at_most(headers) <= HEADERS_MAX_BYTES:
        return
    size = header_bytes(headers)
    if size > HEADERS_MAX_BYTES:
        largest = max(headers, key=lambda name: header_bytes({name: headers[name]}))
        raise InvalidMessage(
            f"the headers take {size} bytes, more than the {HEADERS_MAX_BYTES} a message may "
            f"carry (the largest, {largest!r}, takes {header_bytes({largest: headers[largest]})}"
            "); headers travel in one AMQP frame: put counts and a short excerpt in a header, "
            "the detail in the body"
        )


def header_bytes(headers: Mapping[str, Any]) -> int:
    """The size of `headers` as an AMQP field table: what counts against the broker's frame."""
    size = 4
    for name, value in headers.items():
        size += 1 + len(name.encode())
        if isinstance(value, str):
            size += 5 + len(value.encode())
        elif isinstance(value, bytes | bytearray):
            size += 5 + len(value)
        elif isinstance(value, bool):
            size += 2
        elif isinstance(value, int | float):
            size += 9
        else:  # a broker's table or list (x-death): its text is longer than its encoding
            size += 5 + len(str(value).encode())
    return size


def header_bytes_at_most(headers: Mapping[str, Any]) -> int:
    """A cheap upper bound of `header_bytes`: no character takes more than 4 bytes in UTF-8,
    and the table's repr spells out every name and value with more than their encoding's
    overhead. Checked on every message, and most tables are far below any limit."""
    return 4 + 4 * len(repr(headers))


def clipped(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how long it was, so a bounded field stays honest."""
    if len(text) <= limit:
        return text
    note = f" … (cut: {len(text)} characters in all)"
    return text[: max(0, limit - len(note))] + note


@dataclass(frozen=True)
class Message:
    """A message as a consumer sees it.

    Attributes:
      id: unique id, kept across retries, dead letters and replays.
      routing_key: the key it was published with.
      body: the payload bytes.
      headers: the publisher's extra headers (without the reserved x-jghub-* ones).
      idempotency_key: what a target uses to drop duplicates.
      content_type: MIME type of the body.
      published_at: when it was first published (UTC).
      attempts: failed attempts so far (0 on first delivery; replay resets it).
      history: failures (and replay markers), oldest first.
      redelivered: True when the broker delivers it again after a consumer died or gave it back
        unsettled; the handler may then have done part of its work already.
    """

    id: str
    routing_key: str
    body: bytes
    headers: Mapping[str, HeaderValue]
    idempotency_key: str
    content_type: str
    published_at: datetime
    attempts: int = 0
    history: tuple[Failure, ...] = ()
    redelivered: bool = False

    @classmethod
    def first(cls, outgoing: Outgoing, *, now: datetime | None = None) -> Message:
        """The message `outgoing` becomes when it is published."""
        message_id = outgoing.message_id or new_message_id()
        return cls(
            id=message_id,
            routing_key=outgoing.routing_key,
            body=bytes(outgoing.body),
            headers=dict(outgoing.headers),
            idempotency_key=outgoing.idempotency_key or message_id,
            content_type=outgoing.content_type,
            published_at=now or utc_now(),
        )

    @property
    def last_failure(self) -> Failure | None:
        """The most recent failure (replay markers skipped), or None."""
        for entry in reversed(self.history):
            if not entry.is_replay:
                return entry
        return None

    def with_failure(
        self, stage: str, reason: str, *, permanent: bool, at: datetime | None = None
    ) -> Message:
        """This message after one more failed attempt (attempts + 1, history + the failure)."""
        attempt = self.attempts + 1
        failure = Failure(
            attempt=attempt,
            at=at or utc_now(),
            stage=stage,
            reason=clipped(reason, REASON_MAX_CHARS),
            permanent=permanent,
        )
        history = _kept(self.history, failure)
        return replace(self, attempts=attempt, history=history, redelivered=False)

    def replayed(self, at: datetime | None = None) -> Message:
        """This message moved back from the dead letters: attempts 0, history + a replay marker."""
        marker = Failure(
            attempt=self.attempts,
            at=at or utc_now(),
            stage=REPLAY_STAGE,
            reason="replayed from the dead letters",
            permanent=False,
        )
        return replace(self, attempts=0, history=_kept(self.history, marker), redelivered=False)


@dataclass(frozen=True)
class DeadLetter:
    """A message that failed for good, as listed by `Broker.dead_letters`.

    Attributes:
      target: the target whose delivery failed.
      message: the message with its whole history.
      dead_at: when it was dead-lettered (its last failure's time).
      reason: its last failure's reason.
    """

    target: str
    message: Message
    dead_at: datetime
    reason: str

    @classmethod
    def of(cls, target: str, message: Message) -> DeadLetter:
        last = message.last_failure
        if last is None:
            return cls(target=target, message=message, dead_at=utc_now(), reason="")
        return cls(target=target, message=message, dead_at=last.at, reason=last.reason)


@dataclass(frozen=True)
class Quarantined:
    """An inbound payload rejected before it became a message, kept for inspection.

    Attributes:
      id: its id in the quarantine.
      body: the payload bytes as received, but for the credentials the adapter that kept
        it replaced with a marker (see adapters.redaction).
      reason: why it was rejected (what, where, which rule, the offending value).
      source: who sent it (an external system id or an adapter name).
      headers: what else the adapter recorded (content type, remote address, ...).
      at: when it was quarantined (UTC).
    """

    id: str
    body: bytes
    reason: str
    source: str
    headers: Mapping[str, HeaderValue]
    at: datetime


def _kept(history: tuple[Failure, ...], entry: Failure) -> tuple[Failure, ...]:
    """`history` with `entry` added, its oldest entries dropped beyond HISTORY_MAX_ENTRIES."""
    return (*history, entry)[-HISTORY_MAX_ENTRIES:]


def wire_headers(message: Message) -> dict[str, HeaderValue]:
    """All headers to store with `message`: the publisher's plus the reserved x-jghub-* ones."""
    headers: dict[str, HeaderValue] = dict(message.headers)
    headers[HEADER_ID] = message.id
    headers[HEADER_IDEMPOTENCY_KEY] = message.idempotency_key
    headers[HEADER_PUBLISHED_AT] = message.published_at.isoformat()
    headers[HEADER_ATTEMPTS] = message.attempts
    headers[HEADER_HISTORY] = history_to_json(message.history)
    return headers


def history_to_json(history: tuple[Failure, ...]) -> str:
    return json.dumps([f.to_json() for f in history], ensure_ascii=False, separators=(",", ":"))


def history_from_json(text: str | bytes | None) -> tuple[Failure, ...]:
    if not text:
        return ()
    return tuple(Failure.from_json(item) for item in json.loads(text))


def from_wire(
    *,
    routing_key: str,
    body: bytes,
    headers: Mapping[str, Any] | None,
    content_type: str | None,
    redelivered: bool,
    message_id: str | None = None,
) -> Message:
    """Rebuild a Message from what a broker stored.

    Lenient on purpose: a message someone published by hand (without x-jghub-* headers) still
    gets an id (the AMQP message_id, else a new one), 0 attempts and an empty history.
    """
    headers = dict(headers or {})

    def text(value: Any) -> str | None:
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return None if value is None else str(value)

    own = {k: headers.pop(k) for k in list(headers) if k.lower().startswith(HEADER_PREFIX)}
    found_id = text(own.get(HEADER_ID)) or message_id or new_message_id()
    published = text(own.get(HEADER_PUBLISHED_AT))
    user_headers: dict[str, HeaderValue] = {
        k: (text(v) or "") if not isinstance(v, str | int | float | bool) else v
        for k, v in headers.items()
    }
    return Message(
        id=found_id,
        routing_key=routing_key,
        body=bytes(body),
        headers=user_headers,
        idempotency_key=text(own.get(HEADER_IDEMPOTENCY_KEY)) or found_id,
        content_type=content_type or "application/octet-stream",
        published_at=_parse_time(published) if published else utc_now(),
        attempts=int(own.get(HEADER_ATTEMPTS) or 0),
        history=history_from_json(text(own.get(HEADER_HISTORY))),
        redelivered=redelivered,
    )


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
