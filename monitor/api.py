"""HTTP routes of the monitor for the hub's FastAPI app: message traces, dead letters, /metrics.

The app includes the routers it wants and hands in how callers are authenticated, so the
monitor does not decide who may see what:

    app.include_router(messages_router(journal, caller=gatekeeper.identify))
    app.include_router(dead_letters_router(lambda: runtime.broker, observer,
                                           gate=OperatorGate(load_operators(path))))
    app.include_router(metrics_router(scrape_registry(QueueCollector(...))))
    app.include_router(search_router(journal, gate=OperatorGate(load_operators(path))))

- `GET /messages/{id}`: where a message (or every record of a receipt) has been. `caller` is a
  FastAPI dependency returning the authenticated system's id; a system sees only the messages it
  sent, and another system's id answers 404 as if it did not exist.
- `GET /dead-letters`, `GET /dead-letters/{id}`, `POST /dead-letters/replay`: the dead-letter
  console for operators, who authenticate with HTTP Basic (their account's name and secret,
  monitor.operators). A `reader` lists and inspects; only an `operator` gets payload bodies and
  replays. The journal records every replay and every body read under the account's name; a
  request's own claims about who it is (the retired `X-Operator` header) are ignored.
- `GET /search?q=KEY`: what the journal knows of any key (a case number, a complaint, task or
  warning id, a credit code, a message id ...), following a record to those derived from it
  (`monitor.search`), for operator accounts (`reader` or higher): it names records of every
  system. A key nothing names is answered 200 with `found: false` and a note saying so.
- `GET /metrics`: the registry's exposition, OpenMetrics when the scraper asks for it.

Ids are path parameters of the `path` kind: a message id with `/` in it (sent as `/` or `%2F`)
reaches its message rather than another route or a 404.
"""
# No `from __future__ import annotations` here: FastAPI must see `Depends(caller)` on the
# routes' parameters as objects, and `caller` is a local of the router factory.

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field

from bus import Broker, BusError, DeadLetter, Topology
from monitor import dead_letters
from monitor.errors import InvalidRequest, JournalUnavailable, OperatorRefused, UnknownTarget
from monitor.journal import Journal
from monitor.metrics import exposition
from monitor.observer import Observer
from monitor.operators import Operator, OperatorGate, Role
from monitor.search import DEFAULT_LIMIT, MAX_LIMIT, SearchResult, TraceStep, search

OPERATOR_REALM = "jghub operators"
RETIRED_KEY_HEADER = "X-Operator-Key"
"""The shared key's header before named accounts: a request sending only it is told what to do."""
BODY_PREVIEW_CHARS = 4000


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
        default=None,
        description="The body as text (cut), in the single-message view only, and only for an "
        "account with the operator role (a reader gets null); each read is journalled.",
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
    by: str = Field(description="Who asked: the authenticated operator account's name.")


def operator_access(gate: OperatorGate, role: Role) -> Callable[..., Operator]:
    """A dependency admitting operator accounts of `role` (or a higher one) by HTTP Basic; returns
    the operator. 401 (with WWW-Authenticate) for a missing or wrong name or secret, 429 (with
    Retry-After) for an address that failed too often, 403 for an account whose role is lower."""
    basic = HTTPBasic(
        auto_error=False,
        realm=OPERATOR_REALM,
        description="An operator account's name and secret (JGHUB_OPERATORS_FILE).",
    )
    challenge = {"WWW-Authenticate": f'Basic realm="{OPERATOR_REALM}"'}

    def admitted(
        request: Request, credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)]
    ) -> Operator:
        if credentials is None:
            retired = (
                f" (the {RETIRED_KEY_HEADER} header is no longer accepted)"
                if RETIRED_KEY_HEADER in request.headers
                else ""
            )
            raise HTTPException(
                401,
                "operator routes need HTTP Basic authentication with your operator account's "
                f"name and secret{retired}",
                headers=challenge,
            )
        address = request.client.host if request.client else "unknown"
        try:
            operator = gate.authenticate(
                credentials.username, credentials.password, address=address
            )
        except OperatorRefused as refused:
            headers = challenge
            if refused.retry_after_s is not None:
                headers = {"Retry-After": str(math.ceil(refused.retry_after_s))}
            raise HTTPException(refused.status, str(refused), headers=headers) from None
        if not operator.may(role):
            raise HTTPException(
                403,
                f"operator account {operator.name} has the role {operator.role}; this needs the "
                f"role {role} (ask whoever keeps the operator accounts file)",
            )
        return operator

    return admitted


def messages_router(
    journal: Journal,
    *,
    caller: Callable[..., Any],
    security: list[dict[str, list[str]]] | None = None,
) -> APIRouter:
    """`GET /messages/{message_id}` for external systems (see the module docstring);
    `security` is the route's OpenAPI security, the ways `caller` identifies a system."""
    router = APIRouter(tags=["messages"])

    @router.get(
        "/messages/{message_id:path}",
        response_model=MessageTrace,
        summary="Where a message has been",
        responses={404: {"description": "No such message sent by the calling system."}},
        openapi_extra={"security": security} if security else None,
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


def search_router(journal: Journal, *, gate: OperatorGate) -> APIRouter:
    """`GET /search?q=KEY` for operator accounts (see the module docstring)."""
    router = APIRouter(tags=["operations"])
    reader = operator_access(gate, Role.READER)

    @router.get(
        "/search",
        response_model=SearchResult,
        summary="Search the journal by any key, following derived records",
    )
    def searching(
        who: Annotated[Operator, Depends(reader)],
        q: Annotated[
            str,
            Query(
                min_length=1,
                max_length=200,
                description="A case number, complaint, task, warning, event or notice id, a "
                "credit code, a message id, a receipt or a quarantine id (matched exactly).",
            ),
        ],
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="Most steps, and entries per key.")
        ] = DEFAULT_LIMIT,
    ) -> SearchResult:
        """The records the key leads to and every step of their messages, oldest first."""
        try:
            return search(journal, q, limit=limit)
        except JournalUnavailable as error:
            raise HTTPException(503, str(error)) from error

    return router


def dead_letters_router(
    broker: Callable[[], Broker | None],
    observer: Observer,
    *,
    gate: OperatorGate,
) -> APIRouter:
    """The dead-letter console for operators (see the module docstring).

    `broker` returns the hub's broker, or None while the hub is not connected (503). The
    observer's topology names the targets a request may ask for (404 for another).
    """
    router = APIRouter(prefix="/dead-letters", tags=["operations"])
    reader = operator_access(gate, Role.READER)
    operator = operator_access(gate, Role.OPERATOR)

    def connected() -> Broker:
        return connected_broker(broker)

    def target_named(given: str | None) -> str | None:
        return target_asked(observer.topology, given)

    @router.get(
        "",
        response_model=DeadLetterList,
        summary="List dead letters",
        responses={404: {"description": "No such target; the answer names the known ones."}},
    )
    def listing(
        who: Annotated[Operator, Depends(reader)],
        target: Annotated[str | None, Query(description="Target system.")] = None,
        reason: Annotated[str | None, Query(description="Text in the last reason.")] = None,
        older_than: Annotated[str | None, Query(description="30m, 2h, 7d ...")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> DeadLetterList:
        """Dead letters by target, reason and age, oldest first (no bodies)."""
        query = _query(
            target=target_named(target), reason=reason, older_than=older_than, limit=limit
        )
        with bus_errors_answered():
            found = dead_letters.find(connected(), query)
        return DeadLetterList(count=len(found), dead_letters=[DeadLetterView.of(d) for d in found])

    @router.post(
        "/replay",
        response_model=ReplayAnswer,
        summary="Replay dead letters",
        responses={
            403: {"description": "The account is a reader."},
            404: {"description": "No such target; the answer names the known ones."},
        },
    )
    def replay(request: ReplayRequest, who: Annotated[Operator, Depends(operator)]) -> ReplayAnswer:
        """Move matching dead letters back to their target queues (or, dry run, list them); each
        move is journalled with the reason and the operator account's name."""
        fields = request.model_dump(exclude={"why", "dry_run"})
        fields["target"] = target_named(request.target)
        query = dead_letters.DeadLetterQuery.model_validate(fields)
        with bus_errors_answered():
            plan = dead_letters.replay(
                connected(),
                query,
                why=request.why,
                by=who.name,
                observer=observer,
                dry_run=request.dry_run,
            )
        return ReplayAnswer(
            dry_run=plan.dry_run,
            matched=[DeadLetterView.of(d) for d in plan.matched],
            replayed=list(plan.replayed),
            why=plan.why,
            by=plan.by,
        )

    # Last, and of the path kind: an id may hold "/" (sent as "/" or "%2F").
    @router.get(
        "/{message_id:path}",
        response_model=list[DeadLetterView],
        summary="One dead letter with its history (and, for operators, its body)",
        responses={404: {"description": "No dead letter with this id."}},
    )
    def one(message_id: str, who: Annotated[Operator, Depends(reader)]) -> list[DeadLetterView]:
        """The dead letter(s) with this id: one per target its delivery failed for. An operator
        gets the body too, and the read is journalled under their name; a reader gets null."""
        return dead_letter_views(connected(), message_id, who, observer=observer, via="http")

    return router


def connected_broker(broker: Callable[[], Broker | None]) -> Broker:
    """The hub's broker; 503 while the hub is not connected to the bus."""
    found = broker()
    if found is None:
        raise HTTPException(503, "the hub is not connected to the bus; try again shortly")
    return found


@contextmanager
def bus_errors_answered() -> Iterator[None]:
    """Answer what an operator asked wrongly 400 (a replay without a reason, an age that does
    not parse) and a bus that fails 503, each saying why."""
    try:
        yield
    except InvalidRequest as error:
        raise HTTPException(400, str(error)) from error
    except BusError as error:
        raise HTTPException(503, f"{type(error).__name__}: {error}") from error


def target_asked(topology: Topology | None, given: str | None) -> str | None:
    """The target a request's `given` names (its system id, or the old name with '_' for '-');
    404 naming the known targets when the hub delivers to no such target."""
    if given is None or topology is None:
        return given
    try:
        return dead_letters.target_named(topology, given)
    except UnknownTarget as error:
        raise HTTPException(404, str(error)) from error


def dead_letter_views(
    broker: Broker, message_id: str, who: Operator, *, observer: Observer, via: str
) -> list[DeadLetterView]:
    """The dead letter(s) `message_id` as `who` may see them: with their bodies for the operator
    role, each read journalled (`via` says where: http, console) before it leaves; 404 when
    there is none."""
    with bus_errors_answered():
        found = dead_letters.show(broker, message_id)
    if not found:
        raise HTTPException(404, f"no dead letter {message_id!r} (replayed already, or never dead)")
    with_body = who.may(Role.OPERATOR)
    if with_body:
        dead_letters.read_bodies(found, by=who.name, via=via, observer=observer)
    return [DeadLetterView.of(d, with_body=with_body) for d in found]


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
