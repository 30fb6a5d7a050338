"""The quarantine: rejected inbound payloads kept in the hub's store, found by the id the sender
was told, bounded, released after a mapping fix or discarded with a reason.

    quarantine = Quarantine(store, QuarantineLimits(max_bytes=512 * 2**20, max_age=timedelta(30)))
    kept = quarantine.keep(Rejection(system="agri-penalty", message_type="case_records",
                                     receipt=receipt, kind="records-rejected", problems=problems,
                                     rejected=3, payload=body, content_type="application/json"))
    quarantine.get(kept)                                   # NotInQuarantine when unknown
    quarantine.find(QuarantineQuery(system="agri-penalty", state="held", reason="wan_yuan"))
    discard(quarantine, kept, why="the department's test data", by="ops-li", observer=observer)

Releasing re-translates the payload through the one inbound path, so it lives with ingress
(`adapters.release`); this module keeps the entries and their states.

**An entry** holds the quarantine id the sender was answered with, when, the system and message
type, the receipt id of the exchange, the kind of refusal, the problems (record index, field,
rule, location, message: the first `MAX_PROBLEMS_KEPT`, and how many records were rejected),
the payload bytes as kept (credentials redacted by ingress), its content type and size, and
its state with who, why and when for a release or a discard. The offending values are not
copied into the problems: they are in the payload, and a discarded entry keeps no payload.

**States.** `held` → `released` (a release published every record that had not been published
before) or `discarded` (the operator's tombstone: who, why, when; the payload is dropped). A
release whose records still fail leaves the entry held with the new reasons. The entry remembers
which of its records were published, when it was kept and by each release, so a release
publishes only the others: each record once. While a
release runs the entry is claimed for `RELEASE_CLAIM_S` seconds: a second release, or a
discard, at the same time is refused (NotHeld) instead of publishing twice; the claim of a
process that died expires.

**Bounded.** `max_bytes` bounds the payload bytes kept. A released payload is kept for reference
until room is needed (then the oldest released payloads are given up first) or it is `max_age`
old; keeping a payload that would still pass the limit raises QuarantineFull, and ingress then
refuses the payload with 503, publishing nothing of it: the hub does not accept what it could
not keep. Released and discarded entries are removed `max_age` after they were settled. A held
entry is never removed: past `max_age` it is counted (`jghub_quarantine_aged_entries`) and
logged, and waits for an operator to release or discard it. On SQLite the limit is checked under
the file's write lock, on PostgreSQL under an advisory lock, so hubs keeping payloads at once
do not pass it together.

**Taken over from the bus.** A hub before the store kept rejected payloads in the bus queue
`<ns>.quarantine`. `adopt(broker)` moves them into the store once (`serve` does it when it
connects), under the ids their senders were told, whatever the limit: nothing is lost on
upgrade. Each is written before it is removed from the bus, and a payload written twice is kept
once.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Double,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import RowMapping

from bus import Broker, Quarantined
from bus.message import QUARANTINE_REASON_MAX_CHARS, clipped
from mappings.decoding import Syntax, decode_payload
from mappings.errors import EncodingMismatch
from mappings.system import MappingVersion
from monitor.dead_letters import Age, check_why, parse_age
from monitor.errors import NotHeld, NotInQuarantine, QuarantineFull
from monitor.journal import Step
from monitor.observer import Observer
from store import METADATA, Store, StoreError, upsert

log = logging.getLogger("monitor.quarantine")

MAX_PROBLEMS_KEPT = 100
"""Problems kept with an entry (of 30,000 rejected records, the first hundred say enough)."""
RELEASE_CLAIM_S = 300.0
"""How long a release holds its entry: a release that takes longer may be started again."""
PRUNE_EVERY_S = 60.0
AGED_LOG_EVERY_S = 3600.0
"""Shortest time between two WARNING lines about held entries past their age."""
ADOPT_BATCH = 500
QUARANTINE_LOCK = 0x6A67687571  # "jghuq": the PostgreSQL advisory lock of the size limit
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_AGE = timedelta(days=30)


class State(StrEnum):
    """Where a quarantined payload stands."""

    HELD = "held"
    RELEASED = "released"
    DISCARDED = "discarded"


QUARANTINE_ENTRY = Table(
    "quarantine_entry",
    METADATA,
    Column("id", String, primary_key=True),
    Column("at", Double, nullable=False),
    Column("system", String, nullable=False),
    Column("message_type", String),
    Column("receipt", String),
    Column("kind", String, nullable=False),
    Column("reason", Text, nullable=False),
    Column("problems", Text, nullable=False),
    Column("rejected", BigInteger, nullable=False),
    Column("content_type", String, nullable=False),
    Column("charset", String),
    Column("size", BigInteger, nullable=False),
    Column("payload", LargeBinary),
    Column("state", String, nullable=False),
    Column("published_records", Text, nullable=False),
    Column("claimed_until", Double),
    Column("released_by", String),
    Column("released_why", Text),
    Column("released_at", Double),
    Column("discarded_by", String),
    Column("discarded_why", Text),
    Column("discarded_at", Double),
    Index("ix_quarantine_entry_state_at", "state", "at"),
    Index("ix_quarantine_entry_system", "system"),
)
_KEPT = QUARANTINE_ENTRY.c.payload.is_not(None).label("payload_kept")
_LISTED = [*(column for column in QUARANTINE_ENTRY.c if column.name != "payload"), _KEPT]


@dataclass(frozen=True)
class Problem:
    """One reason a payload or a record of it was rejected.

    Attributes:
      record: 0-based index of the record in the payload; None for the payload as a whole.
      rule: the rule broken (mandatory, wan_yuan, route, malformed, ...).
      message: what is wrong, in words.
      field: the canonical field, when one is to blame.
      location: where in the payload (XPath or JMESPath of the record, a byte offset).
      line: the source line, when known.
    """

    record: int | None
    rule: str
    message: str
    field: str | None = None
    location: str | None = None
    line: int | None = None

    @classmethod
    def of(cls, record: int | None, error: Mapping[str, Any]) -> Problem:
        """The problem a record answer's error (`TranslationError.to_dict()`, an unroutable or
        unaddressable record's error, a payload problem) describes."""
        location = error.get("location") or error.get("routing_key")
        if location is None and error.get("offset") is not None:
            location = f"byte {error['offset']}"
        return cls(
            record=record,
            rule=str(error.get("rule") or error.get("kind") or "unknown"),
            message=str(error.get("message") or error.get("reason") or ""),
            field=error.get("field"),
            location=location,
            line=error.get("line"),
        )

    def __str__(self) -> str:
        where = "payload" if self.record is None else f"record {self.record + 1}"
        if self.location:
            where += f" at {self.location}"
        if self.line is not None:
            where += f" (line {self.line})"
        target = f" {self.field}:" if self.field else ""
        return f"{where}:{target} rule '{self.rule}': {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "rule": self.rule,
            "message": self.message,
            "field": self.field,
            "location": self.location,
            "line": self.line,
        }


def new_quarantine_id() -> str:
    """A new quarantine id: 32 hex digits, random (the id a sender is told)."""
    return uuid.uuid4().hex


def summary(problems: Sequence[Problem], total: int | None = None) -> str:
    """The problems, one a line, as many as a reason keeps, then how many there were."""
    room = QUARANTINE_REASON_MAX_CHARS - 100  # for the last line
    lines: list[str] = []
    for problem in problems:
        line = str(problem)
        room -= len(line) + 1
        if room < 0:
            break
        lines.append(line)
    count = max(total or 0, len(problems))
    if count > len(lines):
        lines.append(f"... ({count} problems in all)")
    return "\n".join(lines)


@dataclass(frozen=True)
class Rejection:
    """What ingress hands the quarantine to keep.

    Attributes:
      system: the sending system.
      message_type: its message type; None for what is not a document of one (a refused
        SOAP envelope), which cannot be released, only read and discarded.
      receipt: the receipt id the sender was answered with.
      kind: the refusal's kind: records-rejected, malformed, encoding, too-many-records, ...
      problems: why, the payload's or each record's (the first MAX_PROBLEMS_KEPT are kept).
      rejected: how many records were rejected (0 when the payload could not be read at all).
      payload: the bytes to keep (credentials redacted).
      content_type: the payload's media type, charset included when known.
      charset: the charset the transport declared, handed to the mapping again on release.
      reason: the reason in words; default: the problems' summary.
      published: the payload's records that were published (index → message id): a release
        publishes only the others.
    """

    system: str
    message_type: str | None
    receipt: str | None
    kind: str
    problems: Sequence[Problem]
    payload: bytes
    content_type: str
    rejected: int = 0
    charset: str | None = None
    reason: str | None = None
    published: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class QuarantineEntry:
    """A kept payload and what became of it (see the module docstring)."""

    id: str
    at: datetime
    system: str
    message_type: str | None
    receipt: str | None
    kind: str
    reason: str
    problems: tuple[Problem, ...]
    rejected: int
    content_type: str
    charset: str | None
    size: int
    state: State
    payload_kept: bool
    payload: bytes | None = None
    published_records: Mapping[int, str] = field(default_factory=dict)
    released_by: str | None = None
    released_why: str | None = None
    released_at: datetime | None = None
    discarded_by: str | None = None
    discarded_why: str | None = None
    discarded_at: datetime | None = None

    @property
    def releasable(self) -> bool:
        """Whether a release can translate it: held, a document of a message type, kept."""
        return self.state is State.HELD and self.message_type is not None and bool(self.payload)

    def text(self) -> tuple[str, str | None]:
        """The payload as text, and a note when it is not what was sent or not all of it: the
        bytes are decoded as a mapping would (BOM, XML declaration, charset; GB2312 and GBK as
        GB18030), and bytes that do not decode are shown as replacement characters."""
        if self.payload is None:
            return "", "the payload is no longer kept"
        syntax: Syntax = "json" if "json" in self.content_type else "xml"
        try:
            return decode_payload(self.payload, syntax, self.charset).text, None
        except EncodingMismatch as mismatch:
            shown = self.payload.decode("utf-8", "replace")
            return shown, f"not decodable ({mismatch}); shown as UTF-8 with replacements"


class QuarantineLimits(BaseModel):
    """How much the quarantine keeps, and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: int = Field(
        default=DEFAULT_MAX_BYTES,
        gt=0,
        description=(
            "Most payload bytes kept. A payload that would pass it (after released payloads "
            "are given up to make room) is refused to its sender with 503."
        ),
    )
    max_age: timedelta = Field(
        default=DEFAULT_MAX_AGE,
        description=(
            "Released and discarded entries are removed this long after they were settled; "
            "held entries older than this are kept, counted and logged."
        ),
    )


class QuarantineQuery(BaseModel):
    """Which entries: every filter given must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str | None = Field(default=None, description="The sending system's id.")
    reason: str | None = Field(
        default=None, description="Text the reasons contain (any case), e.g. 'wan_yuan'."
    )
    state: State | None = Field(default=None, description="held, released or discarded.")
    older_than: Age | None = Field(
        default=None, description="Kept for at least this long: 30m, 2h, 7d ..."
    )
    limit: int = Field(default=100, ge=1, le=10_000, description="Most entries listed.")


@dataclass(frozen=True)
class Usage:
    """What the quarantine holds now.

    Attributes:
      entries: entries by state.
      bytes: payload bytes kept by state (a discarded entry keeps none).
      aged: held entries older than the limits' max_age.
      limit: the most payload bytes kept.
    """

    entries: Mapping[State, int]
    bytes: Mapping[State, int]
    aged: int
    limit: int


@dataclass(frozen=True)
class Released:
    """What a release did.

    Attributes:
      entry: the entry after it (released, or held with the reasons that remain).
      published: records published by this release.
      repeated: records published before (by an earlier release, or sent again since) and
        not published again.
      rejected: records that still fail (the entry stays held with their reasons).
      failed: records the bus did not confirm (released again, they go out then).
      mapping: the version of the system's mapping the release translated with, read from
        disk when it ran (None: the mappings the process started with).
      serving: the version the process translates new payloads with (loaded when it started);
        when it differs from `mapping`, new pushes still use the old one until a restart.
    """

    entry: QuarantineEntry
    published: int
    repeated: int
    rejected: int
    failed: int
    mapping: MappingVersion | None = None
    serving: MappingVersion | None = None

    @property
    def mapping_used(self) -> str | None:
        """Which mapping the release translated with, in words (None: the process's own)."""
        used = self.mapping
        if used is None:
            return None
        said = (
            f"translated with the mapping {used.folder} on disk, version {used.short} "
            f"(changed {used.modified:%Y-%m-%d %H:%M:%S} UTC)"
        )
        if self.serving_older:
            assert self.serving is not None
            said += (
                f"; new payloads are still translated with version {self.serving.short}, "
                "loaded when this hub process started: restart it to apply the fix to them"
            )
        return said

    @property
    def serving_older(self) -> bool:
        """Whether the process still translates new payloads with another version than the
        one this release used (a mapping fix not yet deployed by a restart)."""
        return (
            self.mapping is not None
            and self.serving is not None
            and self.mapping.digest != self.serving.digest
        )


class Releaser(Protocol):
    """What releases a held payload: `adapters.release.QuarantineRelease`."""

    def release(self, quarantine_id: str, *, why: str, by: str) -> Released: ...


class Quarantine:
    """The entries in the hub's store; thread-safe, shared by every process on the store.

    Parameters:
      store: the hub's store (`Store.open`); not closed by this.
      limits: how much it keeps and for how long (default: QuarantineLimits()).
    """

    def __init__(self, store: Store, limits: QuarantineLimits | None = None) -> None:
        self.store = store
        self.limits = limits or QuarantineLimits()
        self._pruned_at = 0.0
        self._aged_logged_at = 0.0

    # -- keeping ------------------------------------------------------------------------------

    def keep(
        self, rejection: Rejection, *, beyond_limit: bool = False, quarantine_id: str | None = None
    ) -> str:
        """Keep `rejection`; return its quarantine id: `quarantine_id` when given (ingress names
        it in the journal before keeping, `new_quarantine_id`), else a new one.

        Raises QuarantineFull when its payload would pass the size limit, unless
        `beyond_limit` (ingress checked the room with `make_room` before it published the
        payload's good records: what is published must be kept).
        """
        quarantine_id = quarantine_id or new_quarantine_id()
        now = time.time()
        with self._locked() as db:
            if not beyond_limit:
                self._room(db, len(rejection.payload), rejection.system)
            db.execute(QUARANTINE_ENTRY.insert().values(_row(quarantine_id, now, rejection)))
        self._prune_now_and_then(now)
        return quarantine_id

    def make_room(self, size: int, system: str) -> None:
        """Make sure a payload of `size` bytes from `system` fits (giving up released payloads,
        oldest first, when it would not); QuarantineFull when it still does not."""
        with self._locked() as db:
            self._room(db, size, system)

    def _room(self, db: Connection, size: int, system: str) -> None:
        held, released = self._kept_bytes(db)
        limit = self.limits.max_bytes
        if held + released + size <= limit:
            return
        if held + size <= limit:
            self._give_up_released(db, held + released + size - limit)
            return
        raise QuarantineFull(
            f"the quarantine holds {held} bytes of payloads waiting for an operator, and "
            f"keeping these {size} bytes from {system} would pass its limit of {limit} bytes "
            "(JGHUB_QUARANTINE_MAX_BYTES)",
            held=held,
            limit=limit,
            size=size,
        )

    def _kept_bytes(self, db: Connection) -> tuple[int, int]:
        """(held, released) payload bytes kept."""
        entry = QUARANTINE_ENTRY.c
        rows = db.execute(
            select(entry.state, func.coalesce(func.sum(entry.size), 0))
            .where(entry.payload.is_not(None))
            .group_by(entry.state)
        )
        kept = {state: int(total) for state, total in rows}
        return kept.get(State.HELD.value, 0), kept.get(State.RELEASED.value, 0)

    def _give_up_released(self, db: Connection, needed: int) -> None:
        entry = QUARANTINE_ENTRY.c
        rows = db.execute(
            select(entry.id, entry.size)
            .where(entry.state == State.RELEASED.value, entry.payload.is_not(None))
            .order_by(entry.released_at)
        )
        dropped: list[str] = []
        for quarantine_id, size in rows:
            dropped.append(quarantine_id)
            needed -= size
            if needed <= 0:
                break
        db.execute(update(QUARANTINE_ENTRY).where(entry.id.in_(dropped)).values(payload=None))
        log.info("quarantine: gave up %d released payload(s) to make room", len(dropped))

    @contextmanager
    def _locked(self) -> Iterator[Connection]:
        """A transaction holding the quarantine's size lock (SQLite: the write lock)."""
        with self.store.begin(immediate=True) as db:
            if db.dialect.name == "postgresql":
                db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUARANTINE_LOCK})
            yield db

    # -- reading ------------------------------------------------------------------------------

    def get(self, quarantine_id: str) -> QuarantineEntry:
        """The entry with its payload; NotInQuarantine when there is none."""
        with self.store.begin() as db:
            row = db.execute(
                select(QUARANTINE_ENTRY, _KEPT).where(QUARANTINE_ENTRY.c.id == quarantine_id)
            ).first()
        if row is None:
            raise NotInQuarantine(f"the quarantine holds no entry {quarantine_id}")
        return _entry(row._mapping)

    def find(self, query: QuarantineQuery) -> list[QuarantineEntry]:
        """The entries `query` matches, oldest first, without their payloads."""
        entry = QUARANTINE_ENTRY.c
        chosen = select(*_LISTED).order_by(entry.at).limit(query.limit)
        if query.system is not None:
            chosen = chosen.where(entry.system == query.system)
        if query.state is not None:
            chosen = chosen.where(entry.state == query.state.value)
        if query.reason:
            chosen = chosen.where(
                func.lower(entry.reason).contains(query.reason.lower(), autoescape=True)
            )
        if query.older_than is not None:
            cutoff = time.time() - parse_age(query.older_than).total_seconds()
            chosen = chosen.where(entry.at <= cutoff)
        with self.store.begin() as db:
            return [_entry(row._mapping) for row in db.execute(chosen)]

    def usage(self) -> Usage:
        """Entries and payload bytes by state, and the held entries past their age."""
        entry = QUARANTINE_ENTRY.c
        kept_bytes = func.sum(entry.size).filter(entry.payload.is_not(None))
        cutoff = time.time() - self.limits.max_age.total_seconds()
        with self.store.begin() as db:
            rows = db.execute(
                select(entry.state, func.count(), func.coalesce(kept_bytes, 0)).group_by(
                    entry.state
                )
            ).all()
            aged = db.execute(
                select(func.count()).where(entry.state == State.HELD.value, entry.at < cutoff)
            ).scalar_one()
        return Usage(
            entries={State(state): int(count) for state, count, _ in rows},
            bytes={State(state): int(size) for state, _, size in rows},
            aged=int(aged),
            limit=self.limits.max_bytes,
        )

    # -- releasing and discarding ----------------------------------------------------------------

    def claim(self, quarantine_id: str) -> QuarantineEntry:
        """Hold a held entry for a release (RELEASE_CLAIM_S); the entry with its payload.

        Raises NotInQuarantine, or NotHeld saying why (settled before, being released now, or
        nothing to translate: a refused SOAP envelope, a payload no longer kept).
        """
        now = time.time()
        with self.store.begin() as db:
            claimed = db.execute(
                _unclaimed(update(QUARANTINE_ENTRY), quarantine_id, now).values(
                    claimed_until=now + RELEASE_CLAIM_S
                )
            ).rowcount
        entry = self.get(quarantine_id)
        if not claimed:
            raise NotHeld(_why_not_held(entry, "released"))
        if not entry.releasable:
            self.unclaim(quarantine_id)
            raise NotHeld(
                f"{quarantine_id} ({entry.kind}) holds no document of a message type to "
                "translate again; read it, and discard it once it is understood"
            )
        return entry

    def unclaim(self, quarantine_id: str) -> None:
        """Let go of a claimed entry (its release did not happen: the bus was away)."""
        with self.store.begin() as db:
            db.execute(
                update(QUARANTINE_ENTRY)
                .where(QUARANTINE_ENTRY.c.id == quarantine_id)
                .values(claimed_until=None)
            )

    def settle_release(
        self,
        quarantine_id: str,
        *,
        by: str,
        why: str,
        published: Mapping[int, str],
        problems: Sequence[Problem],
        rejected: int,
    ) -> QuarantineEntry:
        """Record a release of a claimed entry: `published` (record index → message id) joins
        the records published before; with `problems` left it stays held with them as its
        reasons, else it is released. The claim ends."""
        now = time.time()
        with self.store.begin() as db:
            earlier = db.execute(
                select(QUARANTINE_ENTRY.c.published_records).where(
                    QUARANTINE_ENTRY.c.id == quarantine_id
                )
            ).scalar_one()
            records = {**json.loads(earlier), **{str(i): m for i, m in published.items()}}
            values: dict[str, Any] = {
                "state": (State.HELD if problems else State.RELEASED).value,
                "published_records": json.dumps(records),
                "released_by": by,
                "released_why": why,
                "released_at": now,
                "claimed_until": None,
            }
            if problems:
                values.update(_reasons(problems, rejected, reason=None))
            db.execute(
                update(QUARANTINE_ENTRY)
                .where(QUARANTINE_ENTRY.c.id == quarantine_id)
                .values(**values)
            )
        self._prune_now_and_then(now)
        return self.get(quarantine_id)

    def discard(self, quarantine_id: str, *, by: str, why: str) -> QuarantineEntry:
        """Discard a held entry: its payload is dropped, a tombstone (who, why, when) stays.
        NotInQuarantine, or NotHeld saying why it cannot be discarded."""
        now = time.time()
        with self.store.begin() as db:
            done = db.execute(
                _unclaimed(update(QUARANTINE_ENTRY), quarantine_id, now).values(
                    state=State.DISCARDED.value,
                    payload=None,
                    discarded_by=by,
                    discarded_why=why,
                    discarded_at=now,
                )
            ).rowcount
        entry = self.get(quarantine_id)
        if not done:
            raise NotHeld(_why_not_held(entry, "discarded"))
        self._prune_now_and_then(now)
        return entry

    # -- age -----------------------------------------------------------------------------------

    def prune(self, now: float | None = None) -> int:
        """Remove released and discarded entries settled more than max_age ago; log the held
        entries past that age (they are kept). Returns the entries removed."""
        now = time.time() if now is None else now
        cutoff = now - self.limits.max_age.total_seconds()
        entry = QUARANTINE_ENTRY.c
        settled_at = func.coalesce(entry.discarded_at, entry.released_at)
        with self.store.begin() as db:
            removed = db.execute(
                QUARANTINE_ENTRY.delete().where(
                    entry.state.in_([State.RELEASED.value, State.DISCARDED.value]),
                    settled_at < cutoff,
                )
            ).rowcount
            aged = db.execute(
                select(func.count()).where(entry.state == State.HELD.value, entry.at < cutoff)
            ).scalar_one()
        if aged and now - self._aged_logged_at >= AGED_LOG_EVERY_S:
            self._aged_logged_at = now
            log.warning(
                "quarantine: %d held payload(s) older than %s wait for an operator; they are "
                "kept until released or discarded (jghub quarantine list --state held "
                "--older-than %dd)",
                aged, self.limits.max_age, self.limits.max_age.days,
            )  # fmt: skip
        return int(removed)

    def _prune_now_and_then(self, now: float) -> None:
        """Prune at most every PRUNE_EVERY_S; a prune that fails is logged, never raised: what
        was just kept or settled stands, and the next write tries again."""
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        try:
            self.prune(now)
        except StoreError as error:
            self._pruned_at = 0.0
            log.warning("quarantine: settled entries past their age not removed yet: %s", error)

    # -- taking over the bus's quarantine ----------------------------------------------------

    def adopt(self, broker: Broker) -> int:
        """Move what the bus's quarantine queue holds into the store (see the module
        docstring); return how many payloads were moved."""
        adopted = 0
        while batch := broker.quarantined(limit=ADOPT_BATCH):
            with self.store.begin() as db:
                db.execute(
                    upsert(db, QUARANTINE_ENTRY).on_conflict_do_nothing(index_elements=["id"]),
                    [_row(kept.id, kept.at.timestamp(), _rejection_of(kept)) for kept in batch],
                )
            removed = broker.forget_quarantined([kept.id for kept in batch])
            adopted += len(removed)
            if not removed:  # the bus would hand the same batch again
                break
        if adopted:
            log.info("quarantine: took %d payload(s) over from the bus's quarantine", adopted)
        return adopted


def _unclaimed(statement: Any, quarantine_id: str, now: float) -> Any:
    """`statement` (an UPDATE) restricted to the held entry `quarantine_id` no release holds."""
    entry = QUARANTINE_ENTRY.c
    return statement.where(
        entry.id == quarantine_id,
        entry.state == State.HELD.value,
        or_(entry.claimed_until.is_(None), entry.claimed_until < now),
    )


def _why_not_held(entry: QuarantineEntry, asked: str) -> str:
    if entry.state is State.RELEASED:
        return (
            f"{entry.id} was released by {entry.released_by} at {_utc(entry.released_at)} "
            f"({entry.released_why}); it cannot be {asked} again, nothing was done"
        )
    if entry.state is State.DISCARDED:
        return (
            f"{entry.id} was discarded by {entry.discarded_by} at {_utc(entry.discarded_at)} "
            f"({entry.discarded_why}); it cannot be {asked}, nothing was done"
        )
    return f"{entry.id} is being released right now; nothing was done, look again shortly"


def _utc(at: datetime | None) -> str:
    return "an unknown time" if at is None else f"{at:%Y-%m-%d %H:%M:%S} UTC"


def _reasons(problems: Sequence[Problem], rejected: int, reason: str | None) -> dict[str, Any]:
    return {
        "reason": clipped(reason or summary(problems, rejected), QUARANTINE_REASON_MAX_CHARS),
        "problems": json.dumps([p.to_dict() for p in problems[:MAX_PROBLEMS_KEPT]]),
        "rejected": rejected,
    }


def _row(quarantine_id: str, at: float, rejection: Rejection) -> dict[str, Any]:
    return {
        "id": quarantine_id,
        "at": at,
        "system": rejection.system,
        "message_type": rejection.message_type,
        "receipt": rejection.receipt,
        "kind": rejection.kind,
        **_reasons(rejection.problems, rejection.rejected, rejection.reason),
        "content_type": rejection.content_type,
        "charset": rejection.charset,
        "size": len(rejection.payload),
        "payload": rejection.payload,
        "state": State.HELD.value,
        "published_records": json.dumps({str(i): m for i, m in rejection.published.items()}),
    }


def _entry(row: RowMapping) -> QuarantineEntry:
    def moment(name: str) -> datetime | None:
        value = row[name]
        return None if value is None else datetime.fromtimestamp(value, UTC)

    return QuarantineEntry(
        id=row["id"],
        at=datetime.fromtimestamp(row["at"], UTC),
        system=row["system"],
        message_type=row["message_type"],
        receipt=row["receipt"],
        kind=row["kind"],
        reason=row["reason"],
        problems=tuple(Problem(**p) for p in json.loads(row["problems"])),
        rejected=row["rejected"],
        content_type=row["content_type"],
        charset=row["charset"],
        size=row["size"],
        state=State(row["state"]),
        payload_kept=bool(row["payload_kept"]),
        payload=row.get("payload"),
        published_records={int(i): m for i, m in json.loads(row["published_records"]).items()},
        released_by=row["released_by"],
        released_why=row["released_why"],
        released_at=moment("released_at"),
        discarded_by=row["discarded_by"],
        discarded_why=row["discarded_why"],
        discarded_at=moment("discarded_at"),
    )


def _rejection_of(kept: Quarantined) -> Rejection:
    """A payload of the bus's quarantine as an entry: what its headers say (ingress recorded
    the system, message type, receipt, kind and charset), its reason as one problem."""
    headers = kept.headers

    def said(name: str) -> str | None:
        value = headers.get(name)
        return None if value is None else str(value)

    kind = said("kind") or "unknown"
    rejected = headers.get("rejected_count")
    return Rejection(
        system=said("system") or kept.source,
        message_type=said("message_type"),
        receipt=said("receipt_id"),
        kind=kind,
        problems=[Problem(record=None, rule=kind, message=kept.reason)],
        rejected=rejected if isinstance(rejected, int) else 0,
        payload=kept.body,
        content_type=said("content_type") or _sniffed(kept.body),
        charset=said("charset"),
        reason=kept.reason,
    )


def _sniffed(body: bytes) -> str:
    """The media type of a payload the bus kept without one: XML, JSON or unknown bytes."""
    start = body.lstrip()[:1]
    if start == b"<":
        return "application/xml"
    if start in (b"{", b"["):
        return "application/json"
    return "application/octet-stream"


# -- operators' acts -----------------------------------------------------------------------------


def discard(
    quarantine: Quarantine,
    quarantine_id: str,
    *,
    why: str,
    by: str,
    observer: Observer | None = None,
) -> QuarantineEntry:
    """Discard a held entry with the operator's reason, journalled (`discarded`) under `by`.

    Raises InvalidRequest (no reason), NotInQuarantine, NotHeld."""
    reason = check_why(
        why, act="a discard", meaning="why the payload is not needed", example="test data"
    )
    entry = quarantine.discard(quarantine_id, by=by, why=reason)
    if observer is not None:
        observer.quarantine_act(
            Step.DISCARDED,
            quarantine_id=entry.id,
            system=entry.system,
            receipt=entry.receipt,
            reason=reason,
            by=by,
            detail={"kind": entry.kind, "size": entry.size},
        )
        observer.durable()
    return entry


def read(
    quarantine: Quarantine,
    quarantine_id: str,
    *,
    by: str,
    via: str,
    observer: Observer | None = None,
) -> QuarantineEntry:
    """The entry with its payload, the read journalled (`operator_read`) under `by` before it is
    returned: a payload carries the parties' names and ID numbers. NotInQuarantine."""
    entry = quarantine.get(quarantine_id)
    if observer is not None and entry.payload is not None:
        observer.quarantine_act(
            Step.OPERATOR_READ,
            quarantine_id=entry.id,
            system=entry.system,
            receipt=entry.receipt,
            reason=f"quarantined payload read by {by}",
            by=by,
            detail={"via": via, "what": "quarantined payload"},
        )
        observer.durable()
    return entry


class QuarantineCollector(Collector):
    """`jghub_quarantine_entries{state}`, `jghub_quarantine_bytes{state}`,
    `jghub_quarantine_aged_entries` and `jghub_quarantine_limit_bytes`, read from the store at
    scrape time: every process on the store sees the same figures."""

    def __init__(self, quarantine: Quarantine) -> None:
        self.quarantine = quarantine

    def collect(self) -> Iterator[Metric]:
        try:
            usage = self.quarantine.usage()
        except Exception:
            log.exception("the quarantine could not be read for /metrics")
            return
        entries = GaugeMetricFamily(
            "jghub_quarantine_entries",
            "Quarantined payloads by state: held (waiting for an operator), released, "
            "discarded (tombstones).",
            labels=["state"],
        )
        kept = GaugeMetricFamily(
            "jghub_quarantine_bytes",
            "Payload bytes the quarantine keeps, by state (released payloads are given up "
            "first when room is needed).",
            labels=["state"],
        )
        for state in State:
            entries.add_metric([state.value], usage.entries.get(state, 0))
            if state is not State.DISCARDED:
                kept.add_metric([state.value], usage.bytes.get(state, 0))
        yield entries
        yield kept
        yield GaugeMetricFamily(
            "jghub_quarantine_aged_entries",
            "Held payloads older than JGHUB_QUARANTINE_MAX_AGE: never removed unreleased, they "
            "wait for an operator's release or discard.",
            value=usage.aged,
        )
        yield GaugeMetricFamily(
            "jghub_quarantine_limit_bytes",
            "The most payload bytes the quarantine keeps (JGHUB_QUARANTINE_MAX_BYTES).",
            value=usage.limit,
        )
