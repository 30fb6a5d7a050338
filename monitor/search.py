"""Search the journal by any key it keeps, and follow a record to the records derived from it.

The journal indexes every key its entries name: message ids, receipts, quarantine ids and
record keys (a case number, a complaint, task, warning, event or notice id) in columns of
`journal_entry`, the credit codes and the keys of linked records in `journal_key`
(`monitor.journal_keys`). `search` finds the entries naming a key and, from
a record, follows the links the standard declares both ways — a complaint to the task whose
`source_record_id` names it, the task to its feedback and to the complaint's result (which names
the task in `task_id`), a warning to its feedback, a task or warning to its notices — and
returns one timeline of every step of every message of those records, in time order:

    found = search(journal, "TS330782202604080156")
    found.records     # complaint TS33…, collaboration_task XT-TS33… (linked), …
    found.timeline    # received, published, delivered …, each with system, dataset, operation

A credit code, a receipt or a quarantine id lists the records it names without following their
links (a department's credit code names thousands); search one of those records to follow it.
Everything is bounded: each key is looked up on an index for its newest `limit` entries, at most
`MAX_RECORDS` records are followed, the timeline holds at most `limit` steps, and the answer
says where it stopped.

Entries journalled before migration 0010 named no credit codes or links: their records are found
by their own keys and lead nowhere, and a search that meets them says so. `reindex` rebuilds
`journal_key` from the entries' details (after a restore that lacked it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Self

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Select, delete, insert, null, select

from monitor.journal import (
    JOURNAL_CHAIN,
    JOURNAL_ENTRY,
    Entry,
    Journal,
    Step,
    detail_data,
    entries_where,
)
from monitor.journal_keys import (
    FOLLOWED,
    JOURNAL_KEY,
    KeyKind,
    entry_keys,
    key_rows,
    stored_value,
)
from standard.datasets import DATASETS

DEFAULT_LIMIT = 500
"""Steps in a timeline, and entries read per key, unless asked otherwise."""
MAX_LIMIT = 5000
MAX_RECORDS = 100
"""Records followed from the key searched: a chain of derived messages is a handful."""
REINDEX_BATCH = 5000
"""Entries indexed per transaction by `reindex`."""
_IN_CHUNK = 500
"""Ids per IN (...) list: well under every backend's limit on bound parameters."""
_E = JOURNAL_ENTRY.c
_COLUMNS = {
    KeyKind.MESSAGE: _E.message_id,
    KeyKind.RECEIPT: _E.receipt,
    KeyKind.QUARANTINE: _E.quarantine_id,
    KeyKind.RECORD: _E.business_key,
}
"""The kinds an entry's own indexed columns hold (the others are in `journal_key`)."""


class KeyMatch(BaseModel):
    """How the key searched was found: as which kind of key, in which field of which dataset."""

    kind: KeyKind = Field(description="message, receipt, quarantine, record, credit_code, link.")
    field: str | None = Field(description="The record's field that holds it (record key, path).")
    dataset: str | None = Field(description="The dataset of the entries that name it.")
    entries: int = Field(description="How many entries name it so (at most the limit).")


class FoundRecord(BaseModel):
    """A record the search reached, and how."""

    dataset: str = Field(description="Its dataset, e.g. complaint, collaboration_task.")
    key: str = Field(description="Its record key.")
    how: str = Field(description="Why it is here: searched, or which link led to it.")


class TraceStep(BaseModel):
    """One step of a message."""

    seq: int = Field(description="Position in the journal's hash chain.")
    at: datetime = Field(description="When it happened (UTC).")
    step: str = Field(
        description="received, rejected, published, not_published, delivered, retried, "
        "dead_lettered, replayed or operator_read (an operator read its payload body)."
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
        """The step `entry` records (its hashes are the journal's own business)."""
        return cls.model_validate(entry, from_attributes=True)


class TimelineStep(TraceStep):
    """One step of one message of the records a search found."""

    outcome: str = Field(description="The step in words: where it went, who did it.")
    record: str | None = Field(description="The record's key (its subject).")
    operation: str | None = Field(description="insert, update or delete, as received.")

    @classmethod
    def of_step(cls, entry: Entry, operation: str | None) -> Self:
        """`entry` as a step of a timeline, its message's `operation` as received."""
        step = TraceStep.of(entry).model_dump()
        record = _text(entry.detail.get("subject"))
        return cls(**step, outcome=outcome(entry), record=record, operation=operation)


class SearchResult(BaseModel):
    """What the journal knows of a key: how it matched, the records reached, their timeline."""

    key: str = Field(description="The key searched.")
    found: bool = Field(description="Whether any entry names it.")
    matched: list[KeyMatch] = Field(description="How the key itself was found.")
    records: list[FoundRecord] = Field(description="Records reached, the key's own first.")
    timeline: list[TimelineStep] = Field(description="Every step of their messages, by time.")
    truncated: str | None = Field(
        default=None, description="Where the search stopped short of everything, and why."
    )
    note: str | None = Field(
        default=None,
        description="What else to know: why nothing was found, entries not yet indexed.",
    )


class _Hit(NamedTuple):
    """An entry naming a key: the key's kind and field, and the entry's message and record."""

    kind: KeyKind
    field: str | None
    seq: int
    message_id: str | None
    dataset: str | None
    record: str | None


@dataclass(frozen=True)
class _Lead:
    """A record key to look up: the datasets its record may be of (None: any), and why."""

    value: str
    datasets: frozenset[str] | None
    how: str


def search(journal: Journal, key: str, *, limit: int = DEFAULT_LIMIT) -> SearchResult:
    """The entries naming `key` and the timeline of the records they lead to (see the module
    docstring). `limit` (1..MAX_LIMIT) bounds the entries read per key and the steps returned."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit {limit} is not between 1 and {MAX_LIMIT}")
    journal.flush()
    with journal.reading() as db:
        _custom_plans(db)
        walk = _Walk(db, limit)
        asked = stored_value(key.strip())
        matched = walk.start(asked)
        walk.follow()
        steps = walk.timeline()
        keys_from = db.execute(select(JOURNAL_CHAIN.c.keys_from)).scalar()
    note = _before_keys(keys_from, steps, searched=bool(matched))
    if not matched:
        note = _not_found(key) + (f"; {note}" if note else "")
    return SearchResult(
        key=key,
        found=bool(matched),
        matched=matched,
        records=list(walk.records.values()),
        timeline=steps,
        truncated="; ".join(walk.stopped) or None,
        note=note,
    )


def _custom_plans(db: Connection) -> None:
    """On PostgreSQL, plan this transaction's statements for their values. After a statement's
    fifth run psycopg prepares it, and PostgreSQL may then choose one generic plan for any
    value: for "these messages' entries, by time, the first 500" that plan walks the journal's
    time index and filters, 50 ms on 100,000 entries where the value's own plan takes 1 ms
    (bench/search.py). Local to the transaction: the pool's connections keep their setting."""
    if db.dialect.name == "postgresql":
        db.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")


def named_as(journal: Journal, key: str) -> list[KeyKind]:
    """The kinds of key `key` is to the journal's entries ([] when none names it): one index
    probe per kind, for a caller that only needs to know where to send the user."""
    journal.flush()
    value = stored_value(key.strip())
    with journal.reading() as db:
        return [kind for kind in KeyKind if db.execute(_naming(kind, value).limit(1)).first()]


def _naming(kind: KeyKind, value: str) -> Select[Any]:
    """The entries naming `value` as a `kind` key, newest first: (field, seq, message id,
    dataset, record key). Each on an index of the value: `journal_key`'s holds the entries in
    order, so a department's credit code named a million times costs what one named ten times
    does once the limit is applied; an entry's own columns hold a message's, a record's or a
    payload's entries, a few, or a receipt's at most a payload's records."""
    column = _COLUMNS.get(kind)
    if column is not None:
        return (
            select(null(), _E.seq, _E.message_id, _E.dataset, _E.business_key)
            .where(column == value)
            .order_by(_E.seq.desc())
        )
    k = JOURNAL_KEY.c
    return (
        select(k.field, k.seq, _E.message_id, _E.dataset, _E.business_key)
        .join_from(JOURNAL_KEY, JOURNAL_ENTRY, (_E.seq == k.seq) & (_E.day == k.day))
        .where(k.value == value, k.kind == kind.value)
        .order_by(k.seq.desc())
    )


def _not_found(key: str) -> str:
    return (
        f"no journal entry names {key!r}: it is no message id, receipt, quarantine id, record "
        "key (case number, complaint, task, warning, event or notice id), credit code or "
        "linked record key the hub journalled (keys are matched exactly)"
    )


class _Walk:
    """One search: the lookups on the key index, the records reached, the entries to show."""

    def __init__(self, db: Connection, limit: int) -> None:
        self.db = db
        self.limit = limit
        self.records: dict[tuple[str, str], FoundRecord] = {}
        self.messages: set[str] = set()
        self.refusals: set[int] = set()
        """Entries of no message (refused records and payloads) that named the key."""
        self.stopped: list[str] = []
        self._leads: deque[_Lead] = deque()
        self._looked: set[str] = set()

    def start(self, key: str) -> list[KeyMatch]:
        """Look `key` up as every kind of key; queue the records it names to be followed."""
        hits = self._lookup(key, tuple(KeyKind))
        for hit in hits:
            self._take(hit)
            if hit.kind is KeyKind.MESSAGE and hit.record and hit.dataset:
                self._leads.append(
                    _Lead(hit.record, frozenset({hit.dataset}), f"its message {key} was searched")
                )
            elif hit.kind not in FOLLOWED and hit.record and hit.dataset:
                where = f" in {hit.field}" if hit.field else ""
                self._reached(hit.dataset, hit.record, f"names {key} as {hit.kind}{where}")
        if any(hit.kind in FOLLOWED for hit in hits):
            self._leads.appendleft(_Lead(key, None, "searched"))
        return _matches(hits)

    def follow(self) -> None:
        """Follow the queued records and their links, both ways, until none is left or
        MAX_RECORDS are reached."""
        while self._leads:
            if len(self.records) >= MAX_RECORDS:
                self.stopped.append(
                    f"followed {MAX_RECORDS} records; {len(self._leads)} more linked ones were "
                    "not followed (search one of them)"
                )
                return
            lead = self._leads.popleft()
            if lead.value not in self._looked:
                self._looked.add(lead.value)
                self._visit(lead)

    def _visit(self, lead: _Lead) -> None:
        hits = self._lookup(lead.value, FOLLOWED)
        own = [
            h
            for h in hits
            if h.kind is KeyKind.RECORD
            and h.dataset
            and (lead.datasets is None or h.dataset in lead.datasets)
        ]
        for hit in own:
            self._take(hit)
            self._reached(str(hit.dataset), lead.value, lead.how)
        datasets = {str(h.dataset) for h in own} or set(lead.datasets or ())
        for hit in hits:
            if hit.kind is KeyKind.LINK and hit.record and hit.dataset:
                pointed = set(DATASETS[hit.dataset].linked_datasets(str(hit.field)))
                if pointed & datasets or (not datasets and lead.datasets is None):
                    how = f"its {hit.field} names {lead.value}"
                    self._leads.append(_Lead(hit.record, frozenset({hit.dataset}), how))
        for dataset, field, value in self._links_of(own):
            targets = frozenset(DATASETS[dataset].linked_datasets(field))
            how = f"{dataset} {lead.value} names it in {field}"
            self._leads.append(_Lead(value, targets, how))

    def _take(self, hit: _Hit) -> None:
        if hit.message_id:
            self.messages.add(hit.message_id)
        else:
            self.refusals.add(hit.seq)

    def _reached(self, dataset: str, key: str, how: str) -> None:
        self.records.setdefault((dataset, key), FoundRecord(dataset=dataset, key=key, how=how))

    def _lookup(self, value: str, kinds: Iterable[KeyKind]) -> list[_Hit]:
        """The newest `limit` entries naming `value` as each of `kinds`."""
        hits: list[_Hit] = []
        for kind in kinds:
            rows = self.db.execute(_naming(kind, value).limit(self.limit + 1)).all()
            if len(rows) > self.limit:
                self.stopped.append(
                    f"{value} is the {kind} of more than {self.limit} entries: the newest "
                    f"{self.limit} are shown"
                )
            hits += [_hit(kind, *row) for row in rows[: self.limit]]
        return hits

    def _links_of(self, hits: Sequence[_Hit]) -> list[tuple[str, str, str]]:
        """(dataset, field, linked key) of every link the entries of `hits` name."""
        datasets = {hit.seq: str(hit.dataset) for hit in hits}
        k = JOURNAL_KEY.c
        found: set[tuple[str, str, str]] = set()
        for chunk in _chunks(sorted(datasets)):
            rows = self.db.execute(
                select(k.seq, k.field, k.value).where(
                    k.seq.in_(chunk), k.kind == KeyKind.LINK.value
                )
            )
            found |= {(datasets[seq], str(field), str(value)) for seq, field, value in rows}
        return sorted(found)

    def timeline(self) -> list[TimelineStep]:
        """Every step of the messages found (and the refusals that named the key), by time;
        at most `limit`, the oldest kept."""
        e = JOURNAL_ENTRY.c
        entries: list[Entry] = []
        for chunk in _chunks(sorted(self.messages)):
            entries += entries_where(self.db, e.message_id.in_(chunk), limit=self.limit + 1)
        for chunk in _chunks(sorted(self.refusals)):
            entries += entries_where(self.db, e.seq.in_(chunk), limit=self.limit + 1)
        entries.sort(key=lambda entry: (entry.at, entry.seq))
        if len(entries) > self.limit:
            self.stopped.append(
                f"the records found have more than {self.limit} steps: the first {self.limit} "
                "are shown (raise the limit, or search a narrower key)"
            )
            entries = entries[: self.limit]
        operations = {
            entry.message_id: entry.detail.get("operation")
            for entry in entries
            if entry.step is Step.RECEIVED
        }
        return [
            TimelineStep.of_step(entry, _text(operations.get(entry.message_id)))
            for entry in entries
        ]


def _hit(
    kind: KeyKind,
    field: str | None,
    seq: int,
    message_id: str | None,
    dataset: str | None,
    record: str | None,
) -> _Hit:
    """A hit; a record key's field is its dataset's key field."""
    if kind is KeyKind.RECORD and dataset in DATASETS:
        field = DATASETS[dataset].key_field
    return _Hit(kind, field, int(seq), message_id, dataset, record)


def _matches(hits: Iterable[_Hit]) -> list[KeyMatch]:
    counted: dict[tuple[KeyKind, str | None, str | None], int] = {}
    for hit in hits:
        group = (hit.kind, hit.field, hit.dataset)
        counted[group] = counted.get(group, 0) + 1
    return [
        KeyMatch(kind=kind, field=field, dataset=dataset, entries=entries)
        for (kind, field, dataset), entries in counted.items()
    ]


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


_OUTCOMES: dict[Step, Callable[[Entry], str]] = {
    Step.RECEIVED: lambda e: f"received from {e.system}",
    Step.REJECTED: lambda e: f"rejected from {e.system}",
    Step.PUBLISHED: lambda e: "published",
    Step.NOT_PUBLISHED: lambda e: "not published: the sender was told to send it again",
    Step.DELIVERED: lambda e: f"delivered to {e.target}",
    Step.RETRIED: lambda e: f"to be tried again for {e.target} (tier {e.detail.get('tier')})",
    Step.DEAD_LETTERED: lambda e: f"dead-lettered for {e.target}",
    Step.REPLAYED: lambda e: f"replayed to {e.target} by {e.detail.get('by')}",
    Step.OPERATOR_READ: lambda e: f"its body read by {e.detail.get('by')}",
    Step.RELEASED: lambda e: (
        f"released from the quarantine by {e.detail.get('by')}: "
        f"{e.detail.get('published')} published, now {e.detail.get('state')}"
    ),
    Step.DISCARDED: lambda e: f"discarded from the quarantine by {e.detail.get('by')}",
}
"""Every step in words: a step missing here would make a search that meets it fail."""


def outcome(entry: Entry) -> str:
    """A step in words: what happened to the message, where, by whom."""
    return _OUTCOMES[entry.step](entry)


# -- entries from before the keys, and rebuilding the index ----------------------------------------


def _before_keys(
    keys_from: int | None, steps: Sequence[TimelineStep], *, searched: bool
) -> str | None:
    """What to say of entries journalled before the records' credit codes and links were (None:
    nothing to say): a search that met them could not follow their records, and one that found
    nothing may be asking for a credit code or link named only there."""
    if not keys_from or keys_from <= 1:
        return None
    then = f"journalled before entry #{keys_from}, when the journal kept no credit codes and links"
    if not searched:
        return (
            f"entries {then}, are found only by message id, receipt, quarantine id and record key"
        )
    if any(step.seq < keys_from for step in steps):
        return (
            f"some of these records were {then}: they are found by their own keys and do not "
            "lead to the records derived from them"
        )
    return None


@dataclass(frozen=True)
class ReindexReport:
    """What `reindex` did: entries read, keys written, and the oldest entry reached."""

    entries: int
    keys: int
    batches: int
    oldest: int | None


def reindex(
    journal: Journal,
    *,
    batch: int = REINDEX_BATCH,
    below: int | None = None,
    progress: Callable[[ReindexReport], None] | None = None,
) -> ReindexReport:
    """Rebuild `journal_key` from the entries' details: newest first, `batch` entries per
    transaction (each replacing the keys of its entries), down to the first entry that could
    name any (`keys_from`). `below`: start below that seq (to resume a run that stopped, from
    the `oldest` it reported). `progress` hears the totals after each batch. Entries written
    meanwhile are keyed by their writers."""
    if batch < 1:
        raise ValueError(f"batch {batch} is not a positive number of entries")
    journal.flush()
    with journal.reading() as db:
        keys_from = db.execute(select(JOURNAL_CHAIN.c.keys_from)).scalar() or 1
    report = ReindexReport(0, 0, 0, None)
    while True:
        with journal.reading() as db:
            rows = _older(db, below, keys_from, batch)
        if not rows:
            return report
        for day in sorted({row.day for row in rows}):
            journal.make_partition(day)
        written = _index(journal, rows)
        below = int(rows[-1].seq)
        report = ReindexReport(
            report.entries + len(rows), report.keys + written, report.batches + 1, below
        )
        if progress is not None:
            progress(report)


def _older(db: Connection, below: int | None, keys_from: int, batch: int) -> list[Any]:
    """The `batch` newest entries from `keys_from` and older than seq `below` (all when None),
    newest first."""
    query = select(_E.seq, _E.day, _E.detail).where(_E.seq >= keys_from)
    if below is not None:
        query = query.where(_E.seq < below)
    return list(db.execute(query.order_by(_E.seq.desc()).limit(batch)))


def _index(journal: Journal, rows: Sequence[Any]) -> int:
    """Replace the keys of the entries `rows` by what their details name; return how many."""
    keys: list[dict[str, Any]] = []
    for row in rows:
        keys += key_rows(entry_keys(detail_data(row.detail)), int(row.seq), row.day)
    k = JOURNAL_KEY.c
    with journal.store.begin() as db:
        db.execute(delete(JOURNAL_KEY).where(k.seq.between(rows[-1].seq, rows[0].seq)))
        if keys:
            db.execute(insert(JOURNAL_KEY), keys)
    return len(keys)
