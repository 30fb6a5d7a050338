"""The disposal ledger over HTTP: what is open or overdue, per department; an item's timeline;
the per-department scorecard.

    gate = OperatorGate(load_operators(path))
    app.include_router(centre_router(ledger, gate=gate, limits=settings.penalty_limits(systems)))

    GET /centre/items?kind=task&state=accepted&department=D&overdue=true   rows, oldest first
    GET /centre/items/{id}        every row of a warning or task, and its timeline across every
                                  message, with the complaint it came from and its result
    GET /centre/scorecard?department=D   on-time %, median disposal time, feedback completeness
                                  and returns per department and kind; penalty cases overdue

Behind the operator accounts (`reader` or higher), like the dead-letter routes: the ledger names
departments, parties and results.
"""

# No `from __future__ import annotations`: FastAPI must see the Depends() objects.

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from centre.ledger import STATES, Ledger
from centre.penalties import PenaltyLimits
from centre.scorecard import Scorecard, scorecard
from monitor.api import operator_access
from monitor.operators import Operator, OperatorGate, Role


class CentreItems(BaseModel):
    """Ledger rows matching the query."""

    count: int
    items: list[dict[str, Any]] = Field(description="One per (warning or task, department).")


def centre_router(
    ledger: Ledger, *, gate: OperatorGate, limits: PenaltyLimits | None = None
) -> APIRouter:
    """The /centre routes (see the module docstring); `limits`: the penalty time limits the
    scorecard counts overdue cases by (default: the law's and the national rule's)."""
    router = APIRouter(prefix="/centre", tags=["centre"])
    reader = operator_access(gate, Role.READER)
    watched = limits or PenaltyLimits()

    @router.get("/items", response_model=CentreItems, summary="Ledger rows")
    def listing(
        who: Annotated[Operator, Depends(reader)],
        kind: Annotated[Literal["warning", "task"] | None, Query()] = None,
        state: Annotated[str | None, Query(description=f"One of {', '.join(STATES)}.")] = None,
        department: Annotated[
            str | None, Query(description="Department credit code or name.")
        ] = None,
        overdue: Annotated[bool, Query(description="Only rows past their due time.")] = False,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> CentreItems:
        """Rows by kind, state and department; overdue=true: past due and not fed back."""
        if state is not None and state not in STATES:
            raise HTTPException(422, f"state {state!r} is not one of {', '.join(STATES)}")
        found = ledger.items(
            kind=kind, state=state, department=department, overdue=overdue, limit=limit
        )
        return CentreItems(count=len(found), items=found)

    @router.get("/scorecard", response_model=Scorecard, summary="Per-department scorecard")
    def card(
        who: Annotated[Operator, Depends(reader)],
        department: Annotated[
            str | None, Query(description="Only this department (credit code or name).")
        ] = None,
    ) -> Scorecard:
        """On time, late and overdue, median disposal time, feedback completeness and returns
        per department and kind; penalty decisions and publications overdue per department."""
        return scorecard(ledger, watched, department)

    @router.get(
        "/items/{item_id:path}",
        summary="One warning or task with its timeline",
        responses={404: {"description": "The ledger has no such item."}},
    )
    def one(item_id: str, who: Annotated[Operator, Depends(reader)]) -> dict[str, Any]:
        """Every row of the item, and every event of it (and of its complaint) in time order."""
        found = ledger.item(item_id)
        if found is None:
            raise HTTPException(404, f"the ledger has no warning or task {item_id!r}")
        return found

    return router
