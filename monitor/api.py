"""HTTP routes of the monitor for the hub's FastAPI app: message traces, dead letters, /metrics.

The app includes the routers it wants and hands in how callers are authenticated, so the
monitor does not decide who may see what:

    app.include_router(messages_router(journal, caller=gatekeeper.identify))
    app.include_router(dead_letters_router(lambda: runtime.broker, observer,
                                           operator=operator_key(secret)))
    app.include_router(metrics_router(scrape_registry(QueueCollector(...))))

- `GET /messages/{id}`: where a message (or every record of a receipt) has been. `caller` is a
  FastAPI dependency returning the authenticated system's id; a system sees only the messages it
  sent, and another system's id answers 404 as if it did not exist.
- `GET /dead-letters`, `GET /dead-letters/{id}`, `POST /dead-letters/replay`: the dead-letter
  console for operators (`operator` returns who is asking, recorded with every replay).
- `GET /metrics`: the registry's exposition, OpenMetrics when the scraper asks for it.
"""

# No `from __future__ import annotations` here: FastAPI must see `Depends(caller)` on the
# routes' parameters as objects, and `caller` is a local of the router factory.

import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field

from bus import Broker, BusError, DeadLetter
from monitor import dead_letters
from monitor.errors import InvalidRequest, JournalUnavailable
from monitor.journal import Entry, Journal
from monitor.metrics import exposition
from monitor.observer import Observer

OPERATOR_KEY_HEADER = "X-Operator-Key"
OPERATOR_NAME_HEADER = "X-Operator"
BODY_PREVIEW_CHARS = 4000


class TraceStep(BaseModel):
    """One step of a message."""

    seq: int = Field(description="Position in the journal's hash chain.")
    at: datetime = Field(description="When it happened (UTC).")
    step: str = Field(
        description="received, rejected, published, not_published, delivered, retried, "
        "dead_lettered or replayed."
    )
    message_id: str | None = Field(description="The message (None for a refused record).")
    receipt: str | None = Field(description="The receipt id of the exchange it came in with.")
    system: str | None = Field(description="The source system.")
    target: str | None = Field(description="The target system, for delivery steps.")
    dataset: str | None = Field(description="The canonical dataset.")
    reason: str | None = Field(description="Why: a rule broken, a failure, a replay's reason.")
    attempt: int | None = Field(description="Delivery attempt, from 1.")
    detail: dict[str, Any] = Field(description="Anything else recorded with the step.")

    @classmethod
    def of(cls, entry: Entry) -> Self:
        return cls(
            seq=entry.seq,
            at=entry.at,
            step=entry.step.value,
            message_id=entry.message_id,
            receipt=entry.receipt,
            system=entry.system,
            target=entry.target,
            dataset=entry.dataset,
            reason=entry.reason,
            attempt=entry.attempt,
            detail=entry.detail,
        )


class MessageTrace(BaseModel):
    """Where a message has been, oldest step first."""

    id: str = Field(description="The message id or receipt id asked for.")
    steps: list[TraceStep] = Field(description="Its steps, oldest first.")


class FailureView(BaseModel):
    """One failed attempt (or a replay marker) in a dead letter's history."""

    attempt: int
    at: datetime
    stage: str
    reason: str
    permanent: bool


class DeadLetterView(BaseModel):
    """A dead letter as an operator sees it."""

    message_id: str = Field(description="The message id.")
    target: str = Field(description="The target its delivery failed for.")
    routing_key: str = Field(description="dataset.region.source.")
    dead_at: datetime = Field(description="When it was dead-lettered.")
    reason: str = Field(description="Its last failure's reason.")
    attempts: int = Field(description="Failed attempts before it was dead-lettered.")
    idempotency_key: str = Field(description="The key the target drops duplicates by.")
    published_at: datetime = Field(description="When it was first published.")
    history: list[FailureView] = Field(description="Every failure and replay, oldest first.")
    body: str | None = Field(
        default=None, description="The body as text (cut), in the single-message view only."
    )

    @classmethod
    def of(cls, dead: DeadLetter, *, with_body: bool = False) -> Self:
        message = dead.message
        body = None
        if with_body:
            body = message.body.decode("utf-8", "replace")[:BODY_PREVIEW_CHARS]
        return cls(
            message_id=message.id,
            target=dead.target,
            routing_key=message.routing_key,
            dead_at=dead.dead_at,
            reason=dead.reason,
            attempts=message.attempts,
            idempotency_key=message.idempotency_key,
            published_at=message.published_at,
            history=[
                FailureView(
                    attempt=f.attempt,
                    at=f.at,
                    stage=f.stage,
                    reason=f.reason,
                    permanent=f.permanent,
                )
                for f in message.history
            ],
            body=body,
        )


class DeadLetterList(BaseModel):
    """Dead letters matching a query, oldest first."""

    count: int = Field(description="How many matched (at most the limit).")
    dead_letters: list[DeadLetterView]


class ReplayRequest(dead_letters.DeadLetterQuery):
    """Which dead letters to move back to their target queues, and why."""

    why: str = Field(
        description="Why they should go again (recorded in the journal), e.g. 'target fixed'."
    )
    dry_run: bool = Field(default=False, description="Only say what would move.")


class ReplayAnswer(BaseModel):
    """What a replay matched and moved."""

    dry_run: bool = Field(description="True when nothing was moved.")
    matched: list[DeadLetterView] = Field(description="What the query matched.")
    replayed: list[str] = Field(description="Ids moved back (empty for a dry run).")
    why: str = Field(description="The reason recorded.")
    by: str = Field(description="Who asked.")


def operator_key(key: str) -> Callable[..., str]:
    """A dependency admitting operators who send `X-Operator-Key: key`; returns who asks
    (`X-Operator`, else "operator"). 401 without the right key (compared in constant time)."""
    expected = key.encode()

    def admitted(
        given: Annotated[str | None, Header(alias=OPERATOR_KEY_HEADER)] = None,
        name: Annotated[str | None, Header(alias=OPERATOR_NAME_HEADER)] = None,
    ) -> str:
        if given is None or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPException(
                401, f"operator routes need the {OPERATOR_KEY_HEADER} header with the key"
            )
        return (name or "operator").strip()[:100] or "operator"

    return admitted


def messages_router(journal: Journal, *, caller: Callable[..., Any]) -> APIRouter:
    """`GET /messages/{message_id}` for external systems (see the module docstring)."""
    router = APIRouter(tags=["messages"])

    @router.get(
        "/messages/{message_id}",
        response_model=MessageTrace,
        summary="Where a message has been",
        responses={404: {"description": "No such message sent by the calling system."}},
    )
    def trace(message_id: str, system: Annotated[str, Depends(caller)]) -> MessageTrace:
        """Every step of one of your messages (or of every record of one of your receipts)."""
        try:
            entries = journal.trace(message_id, system=system)
        except JournalUnavailable as error:
            raise HTTPException(503, str(error)) from error
        if not entries:
            raise HTTPException(404, f"no message or receipt {message_id} sent by {system}")
        return MessageTrace(id=message_id, steps=[TraceStep.of(e) for e in entries])

    return router


def dead_letters_router(
    broker: Callable[[], Broker | None],
    observer: Observer,
    *,
    operator: Callable[..., str],
) -> APIRouter:
    """The dead-letter console for operators (see the module docstring).

    `broker` returns the hub's broker, or None while the hub is not connected (503).
    """
    router = APIRouter(prefix="/dead-letters", tags=["operations"])

    def connected() -> Broker:
        found = broker()
        if found is None:
            raise HTTPException(503, "the hub is not connected to the bus; try again shortly")
        return found

    @router.get("", response_model=DeadLetterList, summary="List dead letters")
    def listing(
        who: Annotated[str, Depends(operator)],
        target: Annotated[str | None, Query(description="Target system.")] = None,
        reason: Annotated[str | None, Query(description="Text in the last reason.")] = None,
        older_than: Annotated[str | None, Query(description="30m, 2h, 7d ...")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> DeadLetterList:
        """Dead letters by target, reason and age, oldest first."""
        query = _query(target=target, reason=reason, older_than=older_than, limit=limit)
        try:
            found = dead_letters.find(connected(), query)
        except BusError as error:
            raise HTTPException(503, f"{type(error).__name__}: {error}") from error
        return DeadLetterList(count=len(found), dead_letters=[DeadLetterView.of(d) for d in found])

    @router.post("/replay", response_model=ReplayAnswer, summary="Replay dead letters")
    def replay(request: ReplayRequest, who: Annotated[str, Depends(operator)]) -> ReplayAnswer:
        """Move matching dead letters back to their target queues (or, dry run, list them)."""
        query = dead_letters.DeadLetterQuery.model_validate(
            request.model_dump(exclude={"why", "dry_run"})
        )
        try:
            plan = dead_letters.replay(
                connected(),
                query,
                why=request.why,
                by=who,
                observer=observer,
                dry_run=request.dry_run,
            )
        except InvalidRequest as error:
            raise HTTPException(400, str(error)) from error
        except BusError as error:
            raise HTTPException(503, f"{type(error).__name__}: {error}") from error
        return ReplayAnswer(
            dry_run=plan.dry_run,
            matched=[DeadLetterView.of(d) for d in plan.matched],
            replayed=list(plan.replayed),
            why=plan.why,
            by=plan.by,
        )

    @router.get(
        "/{message_id}",
        response_model=list[DeadLetterView],
        summary="One dead letter with its history and body",
        responses={404: {"description": "No dead letter with this id."}},
    )
    def one(message_id: str, who: Annotated[str, Depends(operator)]) -> list[DeadLetterView]:
        """The dead letter(s) with this id: one per target its delivery failed for."""
        try:
            found = dead_letters.show(connected(), message_id)
        except BusError as error:
            raise HTTPException(503, f"{type(error).__name__}: {error}") from error
        if not found:
            raise HTTPException(404, f"no dead letter {message_id}")
        return [DeadLetterView.of(d, with_body=True) for d in found]

    return router


def _query(**fields: Any) -> dead_letters.DeadLetterQuery:
    try:
        return dead_letters.DeadLetterQuery(**fields)
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        raise HTTPException(400, str(error)) from error


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    """`GET /metrics`: `registry` in the format the scraper asks for."""
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        body, content_type = exposition(registry, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return router
