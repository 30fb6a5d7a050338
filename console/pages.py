"""The console's pages: thin routes over the functions the API and the `jghub` commands call.

    mount_console(app, ConsoleSources(gate=..., broker=..., observer=..., journal=..., ...))

    GET  /console                           the overview (?since=24h)
    GET  /console/dead-letters              ?target=&reason=&older_than=&limit=
    GET  /console/dead-letters/{id}         one dead letter's history (and body, for operators)
    POST /console/dead-letters/replay       form: id (repeated), why, token (operators only)
    GET  /console/centre                    ?kind=&state=&department=&overdue=true
    GET  /console/centre/items/{id}         a warning's or task's rows and timeline
    GET  /console/quarantine                ?system=&reason=&state=&older_than=&limit=
    GET  /console/quarantine/{id}           one entry: its reasons, its payload by line
    POST /console/quarantine/{id}/release   form: why, token (operators only)
    POST /console/quarantine/{id}/discard   form: why, token (operators only)
    GET  /console/search                    ?q=KEY: the records found and their timeline
    GET  /console/static/console.css        the one style sheet

Every filter is in the query string, so an operator pastes a page's address into a ticket and
whoever opens it sees the same selection. Everything is behind the operator accounts (HTTP
Basic, `monitor.api.operator_access`): a reader sees every page but no dead letter's body and
no replay, release or discard form, and a form it posts anyway is refused (403) before anything
is read; a quarantined payload it may read, as over the API, and the read is journalled. Errors
are pages too (`console.errors`), saying what was wrong and what to do, with the status the API
would answer.
"""

# No `from __future__ import annotations`: FastAPI must see the Depends() and Form() objects.

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.responses import Response

from bus import Broker, Topology
from centre.ledger import STATES, Ledger
from centre.penalties import PenaltyLimits
from centre.scorecard import scorecard
from console.csrf import CsrfRefused, FormTokens
from console.errors import error_pages
from console.templating import Pages
from monitor import dead_letters
from monitor.api import (
    DeadLetterView,
    bus_errors_answered,
    connected_broker,
    dead_letter_views,
    operator_access,
    target_asked,
)
from monitor.errors import InvalidRequest
from monitor.journal import Journal
from monitor.observer import Observer
from monitor.operators import Operator, OperatorGate, Role
from monitor.overview import overview
from monitor.quarantine import (
    Quarantine,
    QuarantineQuery,
    Releaser,
    State,
    discard,
    read,
)
from monitor.quarantine_api import (
    QuarantineEntryDetail,
    QuarantineEntryView,
    quarantine_errors_answered,
)
from monitor.queues import BrokerQueueStats
from monitor.search import DEFAULT_LIMIT, MAX_LIMIT, SearchResult, search

PREFIX = "/console"
STATIC = Path(__file__).parent / "static"
KINDS = ("warning", "task")
DEFAULT_WINDOW = "24h"
MAX_REPLAY = 10_000
"""The most dead letters one form replays (the most a list page shows)."""

Text = Annotated[str | None, Query()]
Limit = Annotated[int, Query(ge=1, le=10_000)]


@dataclass(frozen=True)
class ConsoleSources:
    """What the console reads and acts through: the objects the API routes are handed.

    Attributes:
      gate: the operator accounts.
      broker: the hub's broker, or None while it is not connected.
      topology: the bus topology: the targets a filter may name, the queues read.
      observer: journals replays and body reads.
      journal: the journal (None: it is off).
      ledger: the disposal centre's ledger.
      limits: the penalty time limits the scorecard counts by.
      systems: (system id, its target name or None), in the configuration's order.
      metrics: the registry /metrics renders (the breakers' states are read from it).
      quarantine: the quarantined payloads (None: the hub keeps none).
      release: releases held payloads (None: the hub is not connected to the bus).
    """

    gate: OperatorGate
    broker: Callable[[], Broker | None]
    topology: Topology
    observer: Observer
    journal: Journal | None
    ledger: Ledger
    limits: PenaltyLimits
    systems: Sequence[tuple[str, str | None]]
    metrics: CollectorRegistry
    quarantine: Quarantine | None = None
    release: Releaser | None = None


class OperatorsAct(NamedTuple):
    """A release or discard form as sent: the operator (its token checked) and their reason."""

    who: Operator
    why: str


def mount_console(app: FastAPI, sources: ConsoleSources) -> None:
    """Serve the console's pages and style sheet on `app`, its errors as pages."""
    pages = Pages()
    # The style sheet first: the router's last route answers every other /console address.
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
    app.include_router(console_router(sources, pages))


def _given(value: str | None) -> str | None:
    """A query value, with an empty one (a form's blank field) as not given."""
    if value is None or not value.strip():
        return None
    return value.strip()


def console_router(sources: ConsoleSources, pages: Pages) -> APIRouter:
    """The console's routes (see the module docstring)."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=error_pages(pages))
    reader = operator_access(sources.gate, Role.READER)
    operator = operator_access(sources.gate, Role.OPERATOR)
    tokens = FormTokens(sources.gate)
    queues = BrokerQueueStats(sources.broker, sources.topology)

    def page(request: Request, name: str, who: Operator, **context: Any) -> Response:
        may_replay = who.may(Role.OPERATOR)
        token = tokens.issue(who) if may_replay else ""
        return pages.render(
            request, name, {"who": who, "may_replay": may_replay, "token": token, **context}
        )

    def check_token(who: Operator, token: str) -> None:
        try:
            tokens.check(who, token)
        except CsrfRefused as refused:
            raise HTTPException(refused.status, str(refused)) from None

    def act(
        who: Annotated[Operator, Depends(operator)],
        why: Annotated[str, Form()] = "",
        token: Annotated[str, Form()] = "",
    ) -> OperatorsAct:
        """An operator's form to release or discard: who, with the token checked, and why."""
        check_token(who, token)
        return OperatorsAct(who, why)

    def kept() -> Quarantine:
        if sources.quarantine is None:
            raise HTTPException(404, "this hub keeps no quarantine (it has no store)")
        return sources.quarantine

    def connected() -> Broker:
        return connected_broker(sources.broker)

    def target_named(given: str | None) -> str | None:
        return target_asked(sources.topology, given)

    @router.get("")
    def overview_page(
        request: Request, who: Annotated[Operator, Depends(reader)], since: Text = None
    ) -> Response:
        window = _given(since) or DEFAULT_WINDOW
        try:
            start = datetime.now(UTC) - dead_letters.parse_age(window)
            found = overview(
                sources.journal,
                systems=sources.systems,
                queues=queues,
                metrics=sources.metrics,
                since=start,
            )
        except InvalidRequest as error:
            raise HTTPException(400, f"since: {error}") from error
        return page(request, "overview.html", who, window=window, found=found)

    @router.get("/dead-letters")
    def dead_letters_page(
        request: Request,
        who: Annotated[Operator, Depends(reader)],
        target: Text = None,
        reason: Text = None,
        older_than: Text = None,
        limit: Limit = 100,
    ) -> Response:
        asked = {
            "target": target_named(_given(target)),
            "reason": _given(reason),
            "older_than": _given(older_than),
        }
        try:
            query = dead_letters.DeadLetterQuery(**asked, limit=limit)
        except ValueError as error:  # pydantic's ValidationError: an age that does not parse
            raise HTTPException(400, str(error)) from error
        with bus_errors_answered():
            found = dead_letters.find(connected(), query)
        targets = [target for _, target in sources.systems if target is not None]
        return page(
            request,
            "dead_letters.html",
            who,
            asked=asked,
            limit=limit,
            found=[DeadLetterView.of(dead) for dead in found],
            targets=targets,
            now=datetime.now(UTC),
        )

    @router.post("/dead-letters/replay")
    def replay(
        request: Request,
        who: Annotated[Operator, Depends(operator)],
        ids: Annotated[list[str], Form(alias="id")] = [],  # noqa: B006 (FastAPI copies it)
        target: Annotated[str, Form()] = "",
        why: Annotated[str, Form()] = "",
        token: Annotated[str, Form()] = "",
    ) -> Response:
        check_token(who, token)
        if not ids:
            raise HTTPException(400, "no dead letter was chosen: tick at least one and send again")
        # Exactly what the operator saw: these ids (of this target, when the page had one).
        query = dead_letters.DeadLetterQuery(
            ids=ids, target=target_named(_given(target)), limit=MAX_REPLAY
        )
        with bus_errors_answered():
            plan = dead_letters.replay(
                connected(), query, why=why, by=who.name, observer=sources.observer
            )
        return page(
            request,
            "replayed.html",
            who,
            plan=plan,
            matched=[DeadLetterView.of(dead) for dead in plan.matched],
            asked=ids,
        )

    # Last of the dead-letter routes, and of the path kind: an id may hold "/".
    @router.get("/dead-letters/{message_id:path}")
    def dead_letter_page(
        request: Request, message_id: str, who: Annotated[Operator, Depends(reader)]
    ) -> Response:
        found = dead_letter_views(
            connected(), message_id, who, observer=sources.observer, via="console"
        )
        return page(request, "dead_letter.html", who, message_id=message_id, found=found)

    @router.get("/centre")
    def centre_page(
        request: Request,
        who: Annotated[Operator, Depends(reader)],
        kind: Text = None,
        state: Text = None,
        department: Text = None,
        overdue: bool = False,
        limit: Limit = 500,
    ) -> Response:
        kind, state, department = _given(kind), _given(state), _given(department)
        if kind is not None and kind not in KINDS:
            raise HTTPException(400, f"kind {kind!r} is not one of {', '.join(KINDS)}")
        if state is not None and state not in STATES:
            raise HTTPException(400, f"state {state!r} is not one of {', '.join(STATES)}")
        rows = sources.ledger.items(
            kind=kind, state=state, department=department, overdue=overdue, limit=limit
        )
        card = scorecard(sources.ledger, sources.limits, department)
        asked = {"kind": kind, "state": state, "department": department, "overdue": overdue}
        return page(
            request,
            "centre.html",
            who,
            asked=asked,
            rows=rows,
            limit=limit,
            card=card,
            kinds=KINDS,
            states=STATES,
        )

    @router.get("/centre/items/{item_id:path}")
    def centre_item_page(
        request: Request, item_id: str, who: Annotated[Operator, Depends(reader)]
    ) -> Response:
        found = sources.ledger.item(item_id)
        if found is None:
            raise HTTPException(404, f"the ledger has no warning or task {item_id!r}")
        return page(request, "centre_item.html", who, item=found)

    @router.get("/quarantine")
    def quarantine_page(
        request: Request,
        who: Annotated[Operator, Depends(reader)],
        system: Text = None,
        reason: Text = None,
        state: Text = None,
        older_than: Text = None,
        limit: Limit = 100,
    ) -> Response:
        asked = {
            "system": _given(system),
            "reason": _given(reason),
            "state": _given(state),
            "older_than": _given(older_than),
        }
        with quarantine_errors_answered():
            found = kept().find(QuarantineQuery(**asked, limit=limit))
        return page(
            request,
            "quarantine.html",
            who,
            asked=asked,
            limit=limit,
            found=[QuarantineEntryView.of(entry) for entry in found],
            systems=[system for system, _ in sources.systems],
            states=list(State),
        )

    @router.get("/quarantine/{quarantine_id}")
    def quarantine_entry_page(
        request: Request, quarantine_id: str, who: Annotated[Operator, Depends(reader)]
    ) -> Response:
        with quarantine_errors_answered():
            entry = read(
                kept(), quarantine_id, by=who.name, via="console", observer=sources.observer
            )
        shown = QuarantineEntryDetail.of(entry)
        lines = shown.payload.splitlines()
        return page(
            request,
            "quarantine_entry.html",
            who,
            entry=shown,
            lines=enumerate(lines, start=1),
            named={_line_shown(problem.line, len(lines)) for problem in entry.problems},
            line_shown=_line_shown,
            last=len(lines),
            releasable=entry.releasable,
        )

    @router.post("/quarantine/{quarantine_id}/release")
    def release(
        request: Request, quarantine_id: str, asked: Annotated[OperatorsAct, Depends(act)]
    ) -> Response:
        kept()
        if sources.release is None:
            raise HTTPException(503, "the hub is not connected to the bus; try again shortly")
        with quarantine_errors_answered():
            done = sources.release.release(quarantine_id, why=asked.why, by=asked.who.name)
        return page(
            request,
            "quarantine_acted.html",
            asked.who,
            entry=QuarantineEntryView.of(done.entry),
            done=done,
        )

    @router.post("/quarantine/{quarantine_id}/discard")
    def discarding(
        request: Request, quarantine_id: str, asked: Annotated[OperatorsAct, Depends(act)]
    ) -> Response:
        with quarantine_errors_answered():
            entry = discard(
                kept(), quarantine_id, why=asked.why, by=asked.who.name, observer=sources.observer
            )
        return page(
            request,
            "quarantine_acted.html",
            asked.who,
            entry=QuarantineEntryView.of(entry),
            done=None,
        )

    @router.get("/search")
    def search_page(
        request: Request,
        who: Annotated[Operator, Depends(reader)],
        q: Text = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    ) -> Response:
        key = _given(q)
        found: SearchResult | None = None
        if key is not None:
            if sources.journal is None:
                raise HTTPException(503, "the journal is off: there is nothing to search")
            found = search(sources.journal, key, limit=limit)
        return page(
            request,
            "search.html",
            who,
            key=key,
            limit=limit,
            found=found,
            centre_items=_centre_items(sources.ledger, found),
        )

    @router.api_route("/{unknown:path}", methods=["GET", "POST"])
    def no_such_page(unknown: str, who: Annotated[Operator, Depends(reader)]) -> Response:
        raise HTTPException(404, f"the console has no page /console/{unknown}")

    return router


def _line_shown(line: int | None, last: int) -> int | None:
    """The payload line a reason's `line` marks: a parser that met the end of the input names
    the line after the last one (an unclosed tag), so that is the last line shown."""
    return None if line is None else min(line, last)


def _centre_items(ledger: Ledger, found: SearchResult | None) -> set[str]:
    """The keys of the records found that the centre's ledger holds (a warning, a task): the
    search page links those to their centre page."""
    if found is None:
        return set()
    return {record.key for record in found.records if ledger.item(record.key) is not None}
