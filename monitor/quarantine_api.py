"""The quarantine over HTTP, for operator accounts (HTTP Basic, `monitor.operators`).

    app.include_router(quarantine_router(quarantine, runtime.release, observer, gate=gate))

    GET  /quarantine?system=&reason=&state=&older_than=&limit=   entries, oldest first
    GET  /quarantine/{id}           one entry: its reasons, its state, its payload decoded
    GET  /quarantine/{id}/payload   the payload as kept, in its own content type (a download)
    POST /quarantine/{id}/release   {"why": "..."}: translate it again, publish what passes now
    POST /quarantine/{id}/discard   {"why": "..."}: drop the payload, keep a tombstone

A `reader` lists, shows and downloads; an `operator` also releases and discards. Every read of
a payload is journalled (operator_read) under the account's name before the payload leaves,
and so is every release and discard, with its reason: the payloads carry the parties' names
and ID numbers. What each route does is in `monitor.quarantine` and `adapters.release`; the
routes only translate between HTTP and those.
"""

# No `from __future__ import annotations` here: FastAPI must see the Depends() objects.

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, Field

from mappings import MappingVersion
from monitor.api import operator_access
from monitor.errors import (
    InvalidRequest,
    MappingNotLoadable,
    NotHeld,
    NotInQuarantine,
    ReleaseNotNow,
)
from monitor.observer import Observer
from monitor.operators import Operator, OperatorGate, Role
from monitor.quarantine import (
    Quarantine,
    QuarantineEntry,
    QuarantineQuery,
    Released,
    Releaser,
    State,
    discard,
    read,
)

PAYLOAD_PREVIEW_CHARS = 100_000
"""Characters of a decoded payload in GET /quarantine/{id}; the download has all of it."""


class QuarantineEntryView(BaseModel):
    """A quarantine entry as an operator sees it in a list (no payload)."""

    id: str = Field(description="The quarantine id the sender was answered with.")
    at: datetime = Field(description="When it was kept (UTC).")
    system: str = Field(description="The system that sent it.")
    message_type: str | None = Field(
        description="Its message type; null for a refused SOAP envelope (read and discard it)."
    )
    receipt: str | None = Field(description="The receipt id the sender was answered with.")
    kind: str = Field(description="records-rejected, malformed, encoding, too-many-records ...")
    reason: str = Field(description="Why, in words: one line per problem (cut at 8,000 chars).")
    problems: list[dict[str, Any]] = Field(
        description="The first 100 problems: record (0-based, null: the whole payload), rule, "
        "message, field, location, line."
    )
    rejected: int = Field(description="How many records were rejected.")
    content_type: str = Field(description="The payload's media type.")
    size: int = Field(description="The payload's bytes as kept.")
    state: State = Field(description="held, released or discarded.")
    payload_kept: bool = Field(description="False once discarded (or given up after release).")
    published_records: dict[int, str] = Field(
        description="Records a release published: index → message id."
    )
    released_by: str | None = None
    released_why: str | None = None
    released_at: datetime | None = None
    discarded_by: str | None = None
    discarded_why: str | None = None
    discarded_at: datetime | None = None

    @classmethod
    def of(cls, entry: QuarantineEntry) -> Self:
        return cls(
            id=entry.id,
            at=entry.at,
            system=entry.system,
            message_type=entry.message_type,
            receipt=entry.receipt,
            kind=entry.kind,
            reason=entry.reason,
            problems=[problem.to_dict() for problem in entry.problems],
            rejected=entry.rejected,
            content_type=entry.content_type,
            size=entry.size,
            state=entry.state,
            payload_kept=entry.payload_kept,
            published_records=dict(entry.published_records),
            released_by=entry.released_by,
            released_why=entry.released_why,
            released_at=entry.released_at,
            discarded_by=entry.discarded_by,
            discarded_why=entry.discarded_why,
            discarded_at=entry.discarded_at,
        )


class QuarantineEntryDetail(QuarantineEntryView):
    """One entry with its payload decoded as its mapping would decode it."""

    payload: str = Field(description="The payload as text (its first 100,000 characters).")
    payload_note: str | None = Field(
        description="Set when the text is not the payload as sent, or not all of it."
    )

    @classmethod
    def of(cls, entry: QuarantineEntry) -> Self:
        text, note = entry.text()
        if len(text) > PAYLOAD_PREVIEW_CHARS:
            text = text[:PAYLOAD_PREVIEW_CHARS]
            note = f"the first {PAYLOAD_PREVIEW_CHARS} characters; download it for all of it"
        view = QuarantineEntryView.of(entry).model_dump()
        return cls(**view, payload=text, payload_note=note)


class QuarantineList(BaseModel):
    """Entries matching a query, oldest first."""

    count: int = Field(description="How many matched (at most the limit).")
    entries: list[QuarantineEntryView]


class OperatorsReason(BaseModel):
    """Why an operator releases or discards an entry; journalled with their account's name."""

    why: str = Field(description="Why, in words (at least 5 characters).")


class MappingVersionView(BaseModel):
    """A version of a system's mapping folder (`mappings.MappingVersion`)."""

    folder: str = Field(description="The system's mapping folder.")
    digest: str = Field(description="SHA-256 of the files loading reads, hex.")
    modified: datetime = Field(description="The newest of those files' modification times.")

    @classmethod
    def of(cls, version: MappingVersion | None) -> Self | None:
        if version is None:
            return None
        return cls(folder=version.folder, digest=version.digest, modified=version.modified)


class ReleaseAnswer(BaseModel):
    """What a release did."""

    entry: QuarantineEntryView = Field(description="The entry after it: released or held.")
    published: int = Field(description="Records this release published.")
    repeated: int = Field(description="Records published before, not published again.")
    rejected: int = Field(description="Records that still fail: the entry stays held.")
    failed: int = Field(description="Records the bus did not confirm: release it again.")
    mapping: MappingVersionView | None = Field(
        default=None,
        description="The version of the system's mapping the release translated with, read from "
        "disk when it ran.",
    )
    serving: MappingVersionView | None = Field(
        default=None,
        description="The version this hub process translates new payloads with (loaded when it "
        "started); when it differs, restart the process to apply the fix to new payloads.",
    )
    mapping_used: str | None = Field(default=None, description="Both, in words.")

    @classmethod
    def of(cls, done: Released) -> Self:
        """The answer to a release that did `done`."""
        return cls(
            entry=QuarantineEntryView.of(done.entry),
            published=done.published,
            repeated=done.repeated,
            rejected=done.rejected,
            failed=done.failed,
            mapping=MappingVersionView.of(done.mapping),
            serving=MappingVersionView.of(done.serving),
            mapping_used=done.mapping_used,
        )


def quarantine_router(
    quarantine: Quarantine,
    releaser: Releaser | None,
    observer: Observer | None,
    *,
    gate: OperatorGate,
) -> APIRouter:
    """The /quarantine routes (see the module docstring). `releaser` None: releasing answers
    503 (the hub is not connected to the bus)."""
    router = APIRouter(prefix="/quarantine", tags=["operations"])
    reader = operator_access(gate, Role.READER)
    operator = operator_access(gate, Role.OPERATOR)

    @router.get("", response_model=QuarantineList, summary="List quarantined payloads")
    def listing(
        who: Annotated[Operator, Depends(reader)],
        system: Annotated[str | None, Query(description="The sending system's id.")] = None,
        reason: Annotated[str | None, Query(description="Text in the reasons.")] = None,
        state: Annotated[State | None, Query(description="held, released, discarded.")] = None,
        older_than: Annotated[str | None, Query(description="30m, 2h, 7d ...")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> QuarantineList:
        """Entries by system, reason, state and age, oldest first (no payloads)."""
        with quarantine_errors_answered():
            query = QuarantineQuery(
                system=system, reason=reason, state=state, older_than=older_than, limit=limit
            )
            found = quarantine.find(query)
        return QuarantineList(count=len(found), entries=[QuarantineEntryView.of(e) for e in found])

    @router.get(
        "/{quarantine_id}",
        response_model=QuarantineEntryDetail,
        summary="One quarantined payload, its reasons and its text",
        responses={404: {"description": "No such entry."}},
    )
    def one(quarantine_id: str, who: Annotated[Operator, Depends(reader)]) -> QuarantineEntryDetail:
        """The entry the sender was answered with this id: reasons, state, the payload decoded.
        The read is journalled under the account's name."""
        with quarantine_errors_answered():
            entry = read(quarantine, quarantine_id, by=who.name, via="http", observer=observer)
        return QuarantineEntryDetail.of(entry)

    @router.get(
        "/{quarantine_id}/payload",
        summary="Download a quarantined payload as it was kept",
        responses={
            200: {"content": {"application/octet-stream": {}}},
            404: {"description": "No such entry."},
            410: {"description": "The payload is no longer kept (discarded)."},
        },
    )
    def payload(quarantine_id: str, who: Annotated[Operator, Depends(reader)]) -> Response:
        """The payload's bytes in their own content type, the read journalled."""
        with quarantine_errors_answered():
            entry = read(quarantine, quarantine_id, by=who.name, via="http", observer=observer)
        if entry.payload is None:
            raise HTTPException(410, f"the payload of {quarantine_id} is no longer kept")
        extension = "json" if "json" in entry.content_type else "xml"
        disposition = f'attachment; filename="{entry.id}.{extension}"'
        return Response(
            entry.payload,
            media_type=entry.content_type,
            headers={"Content-Disposition": disposition},
        )

    @router.post(
        "/{quarantine_id}/release",
        response_model=ReleaseAnswer,
        summary="Release a held payload: translate it again, publish what passes",
        responses={
            403: {"description": "The account is a reader."},
            404: {"description": "No such entry."},
            409: {
                "description": "Not held (released or discarded before), or being released; or "
                "the system's mapping on disk does not load."
            },
            503: {"description": "The bus cannot take its records now; nothing was published."},
        },
    )
    def release(
        quarantine_id: str,
        asked: OperatorsReason,
        who: Annotated[Operator, Depends(operator)],
    ) -> ReleaseAnswer:
        """Translate the payload again with the system's mapping as it is on disk now (loaded
        and checked as at start; the answer names its version), publish what passes (confirmed,
        journalled with the account's name and the reason); what still fails stays held with
        its new reasons. A second release of a released entry does nothing (409); a mapping on
        disk that does not load refuses the release (409, saying why)."""
        if releaser is None:
            raise HTTPException(503, "the hub is not connected to the bus; try again shortly")
        with quarantine_errors_answered():
            done = releaser.release(quarantine_id, why=asked.why, by=who.name)
        return ReleaseAnswer.of(done)

    @router.post(
        "/{quarantine_id}/discard",
        response_model=QuarantineEntryView,
        summary="Discard a held payload, keeping a tombstone",
        responses={
            403: {"description": "The account is a reader."},
            404: {"description": "No such entry."},
            409: {"description": "Not held (released or discarded before), or being released."},
        },
    )
    def discarding(
        quarantine_id: str,
        asked: OperatorsReason,
        who: Annotated[Operator, Depends(operator)],
    ) -> QuarantineEntryView:
        """Drop the payload; who, why and when stay (journalled too)."""
        with quarantine_errors_answered():
            entry = discard(
                quarantine, quarantine_id, why=asked.why, by=who.name, observer=observer
            )
        return QuarantineEntryView.of(entry)

    return router


@contextmanager
def quarantine_errors_answered() -> Iterator[None]:
    """The quarantine's errors as HTTP answers (the store's outage is the app's 503)."""
    try:
        yield
    except NotInQuarantine as error:
        raise HTTPException(404, str(error)) from error
    except (NotHeld, MappingNotLoadable) as error:
        raise HTTPException(409, str(error)) from error
    except ReleaseNotNow as error:
        raise HTTPException(503, str(error), {"Retry-After": str(error.retry_after)}) from error
    except (InvalidRequest, ValueError) as error:  # pydantic's ValidationError is a ValueError
        raise HTTPException(400, str(error)) from error
