"""The reference lists in the hub's store, fed change by change, read through a bounded cache.

    lists = StoreLists(store, refresh_s=5.0)
    lists.apply(envelope)                 # the worker's reference consumer, one change at a time
    lists.officer("33010020260001")       # ingress's checks, on every record: from the cache

Each list is a table (`reference_catalogue`, `reference_officer`, `reference_object`) with one
row per key: the catalogue code, the certificate number, the object's certificate code. The
records' own keys come along (an officer's `officer_id`, an object's `object_id`) because a
delete carries only the record key (the envelope keeps nothing else), and finds its rows by it.

Newer wins: a change is applied when its time (the record's `updated_time`; for a delete the
envelope's change time) is not older than the row's; an older change arriving late (a redelivery
after a newer one, a slow poller) is ignored and counted (`reference_list.late_ignored`). A
delete leaves a tombstone with its time, so an older insert arriving after it does not bring
the row back; the lists answer None for it.

Reads are on the ingress hot path, so a `StoreLists` answers from an in-process cache of the
keys it was asked for (found or not; at most `capacity` per list, the least recently asked
dropped first). Every write stamps its row with the list's next version number
(`reference_list.version`, taken under the list row's lock, so versions commit in order); a
reader checks the three version numbers at most every `refresh_s` seconds and drops the cached
keys whose rows changed since. So a change committed by any host is seen by every other host
within `refresh_s` (plus one query). Between checks a lookup is a dictionary read under a lock.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    Double,
    Index,
    RowMapping,
    String,
    Table,
    Text,
    false,
    func,
    select,
    update,
)

from reference.lists import (
    LIST_DATASETS,
    CatalogueEntry,
    ListName,
    ObjectEntry,
    OfficerEntry,
)
from standard.datasets.base import StandardRecord
from standard.envelope import Envelope
from standard.types import SHANGHAI
from store import METADATA, Store, replacing

DEFAULT_REFRESH_S = 5.0
"""Seconds a host may answer from its cache before it looks for other hosts' writes."""
DEFAULT_CAPACITY = 100_000
"""Keys cached per list: the certificates and objects one hub meets in a day or so."""

Entry = CatalogueEntry | OfficerEntry | ObjectEntry
Outcome = Literal["applied", "late", "absent"]
"""What a change did: applied (a row written), late (older than the row: ignored and
counted), absent (a delete of a record the list never held: nothing to do)."""


def _list_table(name: str, key: str, record_key: str | None, *columns: Column[Any]) -> Table:
    """A list's table: its key, the record's own key (when another), the entry's columns
    (empty in a tombstone), and the bookkeeping of newer-wins and of the readers' caches."""
    indexes = [Index(f"ix_{name}_version", "version")]
    own_key: list[Column[Any]] = []
    if record_key is not None:
        own_key = [Column(record_key, String, nullable=False)]
        indexes.append(Index(f"ix_{name}_{record_key}", record_key))
    return Table(
        name,
        METADATA,
        Column(key, String, primary_key=True),
        *own_key,
        *columns,
        Column("updated_at", Double, nullable=False),  # epoch seconds of the change
        Column("deleted", Boolean, nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("record", Text, nullable=True),  # the canonical record, JSON (None: deleted)
        *indexes,
    )


REFERENCE_CATALOGUE = _list_table(
    "reference_catalogue",
    "code",
    None,
    Column("name", String, nullable=True),
    Column("status", String, nullable=True),
    Column("valid_from", Date, nullable=True),
    Column("valid_until", Date, nullable=True),
)
REFERENCE_OFFICER = _list_table(
    "reference_officer",
    "certificate_number",
    "officer_id",
    Column("name", String, nullable=True),
    Column("agency", String, nullable=True),
    Column("status", String, nullable=True),
    Column("certificate_issued", Date, nullable=True),
    Column("certificate_valid_until", Date, nullable=True),
)
REFERENCE_OBJECT = _list_table(
    "reference_object",
    "certificate_code",
    "object_id",
    Column("name", String, nullable=True),
    Column("region_code", String, nullable=True),
    Column("in_random_draw", Boolean, nullable=True),
)
REFERENCE_LIST = Table(
    "reference_list",
    METADATA,
    Column("name", String, primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("fed_at", Double, nullable=True),
    Column("late_ignored", BigInteger, nullable=False),
)
"""One row per list (made by the migration): its version (raised by every write), when a change
last arrived, and how many late changes were ignored."""


class ReferenceListError(ValueError):
    """A change the lists cannot take: a record of another dataset."""


@dataclass(frozen=True)
class _List:
    """How one list is kept: its table, whose entry columns are named after the entry's fields
    (taken from the record's fields of the same name, or of the name `renamed` gives)."""

    name: ListName
    table: Table
    key: str
    record_key: str
    entry_type: type[Entry]
    renamed: Mapping[str, str] = field(default_factory=dict)

    @property
    def fields(self) -> list[str]:
        """The entry's fields kept as columns (its change time is `updated_at`)."""
        return [f.name for f in fields(self.entry_type) if f.name != "updated_time"]

    def entry(self, row: RowMapping) -> Entry:
        """The entry a live row stands for."""
        values = {name: row[name] for name in self.fields}
        return self.entry_type(**values, updated_time=_when(row["updated_at"]))

    def columns(self, record: StandardRecord) -> dict[str, Any]:
        """The row's keys and entry columns for a record of the list's dataset."""
        columns = {name: getattr(record, self.renamed.get(name, name)) for name in self.fields}
        columns[self.record_key] = getattr(
            record, self.renamed.get(self.record_key, self.record_key)
        )
        return columns


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, SHANGHAI)


_LISTS: dict[ListName, _List] = {
    "catalogue": _List(
        "catalogue",
        REFERENCE_CATALOGUE,
        "code",
        "code",
        CatalogueEntry,
        renamed={"code": "catalogue_code"},
    ),
    "officers": _List(
        "officers", REFERENCE_OFFICER, "certificate_number", "officer_id", OfficerEntry
    ),
    "objects": _List("objects", REFERENCE_OBJECT, "certificate_code", "object_id", ObjectEntry),
}
LIST_OF_DATASET: dict[str, ListName] = {dataset: name for name, dataset in LIST_DATASETS.items()}
"""The list each feeding dataset goes to."""


@dataclass(frozen=True)
class ListStatus:
    """What `jghub reference status` says of one list."""

    name: ListName
    rows: int
    newest: datetime | None
    fed_at: datetime | None
    late_ignored: int
    version: int


@dataclass(frozen=True)
class Stored:
    """One row as `jghub reference show` prints it: the record (None for a tombstone)."""

    key: str
    record: dict[str, Any] | None
    updated_time: datetime
    deleted: bool


class _Cache:
    """One list's cached lookups (key → entry, or None for a key the list lacks), least
    recently asked first, and the list version they are current to."""

    def __init__(self) -> None:
        self.entries: OrderedDict[str, Entry | None] = OrderedDict()
        self.version: int | None = None
        self.loaded = False


class StoreLists:
    """`ReferenceLists` kept in the hub's store, written by `apply`, read through a cache (see
    the module docstring).

    Parameters:
      store: the hub's store (its migrations made the tables and the three list rows).
      refresh_s: at most this many seconds between two looks for other hosts' writes: the
        bound on how stale a host's answer may be. 0: look before every lookup.
      capacity: keys cached per list.
      clock: the monotonic clock the refresh is timed by (tests pass their own).

    A lookup the cache cannot answer, and a due refresh, read the store: StoreUnavailable when
    it does not answer (the caller decides whether a record waits or goes "not checked").
    """

    def __init__(
        self,
        store: Store,
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self.capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self._caches: dict[ListName, _Cache] = {name: _Cache() for name in _LISTS}
        self._checked_at: float | None = None

    # ------------------------------------------------------------------ ReferenceLists

    def loaded(self, name: ListName) -> bool:
        with self._lock:
            self._refresh_if_due()
            return self._caches[name].loaded

    def catalogue_item(self, code: str) -> CatalogueEntry | None:
        found = self._lookup("catalogue", code)
        assert found is None or isinstance(found, CatalogueEntry)
        return found

    def officer(self, certificate_number: str) -> OfficerEntry | None:
        found = self._lookup("officers", certificate_number)
        assert found is None or isinstance(found, OfficerEntry)
        return found

    def supervised_object(self, certificate_code: str) -> ObjectEntry | None:
        found = self._lookup("objects", certificate_code)
        assert found is None or isinstance(found, ObjectEntry)
        return found

    # ------------------------------------------------------------------ the cache

    def _lookup(self, name: ListName, key: str) -> Entry | None:
        with self._lock:
            self._refresh_if_due()
            cache = self._caches[name]
            if key in cache.entries:
                cache.entries.move_to_end(key)
                return cache.entries[key]
            found = self._read(name, key)
            cache.entries[key] = found
            if len(cache.entries) > self.capacity:
                cache.entries.popitem(last=False)
            return found

    def _read(self, name: ListName, key: str) -> Entry | None:
        kept = _LISTS[name]
        table = kept.table
        with self.store.begin() as db:
            row = db.execute(
                select(table).where(table.c[kept.key] == key, table.c.deleted == false())
            ).first()
        return None if row is None else kept.entry(row._mapping)

    def _refresh_if_due(self) -> None:
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self.refresh_s:
            return
        with self.store.begin() as db:
            versions = {
                row.name: row.version
                for row in db.execute(select(REFERENCE_LIST.c.name, REFERENCE_LIST.c.version))
            }
            for name, cache in self._caches.items():
                version = versions.get(name, 0)
                if version != cache.version:
                    self._catch_up(db, name, cache, version)
        self._checked_at = now

    def _catch_up(self, db: Connection, name: ListName, cache: _Cache, version: int) -> None:
        """Drop the cached keys whose rows changed since the cache's version (all of them when
        more changed than the cache holds), and learn whether the list holds a row."""
        kept = _LISTS[name]
        table = kept.table
        if cache.entries and cache.version is not None:
            changed = db.execute(
                select(table.c[kept.key])
                .where(table.c.version > cache.version)
                .limit(self.capacity + 1)
            ).scalars()
            keys = list(changed)
            if len(keys) > self.capacity:
                cache.entries.clear()
            for key in keys:
                cache.entries.pop(key, None)
        cache.loaded = (
            db.execute(select(table.c[kept.key]).where(table.c.deleted == false()).limit(1)).first()
            is not None
        )
        cache.version = version

    # ------------------------------------------------------------------ feeding

    def apply(self, envelope: Envelope) -> Outcome:
        """Take one change of a list's dataset into its table (committed durably when this
        returns): newer wins, an older change is counted and ignored. ReferenceListError for a
        record of another dataset; RecordInvalid for a record that breaks the standard."""
        name = LIST_OF_DATASET.get(envelope.spec.name)
        if name is None:
            known = ", ".join(LIST_OF_DATASET)
            raise ReferenceListError(
                f"the reference lists take {known}, not {envelope.spec.name} "
                f"(message {envelope.id}, record {envelope.subject})"
            )
        kept = _LISTS[name]
        record = envelope.record()
        # A record's own change time; a delete has only the envelope's.
        changed: datetime = envelope.time if record is None else record.updated_time  # type: ignore[attr-defined]
        at = changed.timestamp()
        with self.store.begin(durable=True, immediate=True) as db:
            # Writers of one list take its row first: versions are then committed in order.
            db.execute(
                update(REFERENCE_LIST)
                .where(REFERENCE_LIST.c.name == name)
                .values(fed_at=time.time())
            )
            if record is None:
                outcome = self._delete(db, kept, envelope.subject, at)
            else:
                outcome = self._upsert(db, kept, record, at)
            if outcome == "late":
                db.execute(
                    update(REFERENCE_LIST)
                    .where(REFERENCE_LIST.c.name == name)
                    .values(late_ignored=REFERENCE_LIST.c.late_ignored + 1)
                )
        if outcome == "applied":
            with self._lock:
                # What this process wrote it reads at once: its next lookup looks for changes.
                self._checked_at = None
        return outcome

    def _upsert(self, db: Connection, kept: _List, record: Any, at: float) -> Outcome:
        row = kept.columns(record)
        table = kept.table
        held = db.execute(
            select(table.c.updated_at).where(table.c[kept.key] == row[kept.key])
        ).scalar()
        if held is not None and held > at:
            return "late"
        row.update(
            updated_at=at,
            deleted=False,
            version=_next_version(db, kept.name),
            record=json.dumps(record.model_dump(mode="json"), ensure_ascii=False),
        )
        db.execute(replacing(db, table), row)
        return "applied"

    def _delete(self, db: Connection, kept: _List, record_key: str, at: float) -> Outcome:
        table = kept.table
        held = db.execute(
            select(table.c[kept.key], table.c.updated_at).where(
                table.c[kept.record_key] == record_key
            )
        ).all()
        if not held and kept.key != kept.record_key:
            return "absent"  # no row names this record: nothing to keep a tombstone under
        due = [key for key, updated_at in held if updated_at <= at]
        if held and not due:
            return "late"
        version = _next_version(db, kept.name)
        tombstone: dict[str, Any] = {
            column.name: None for column in table.columns if column.nullable
        }
        tombstone.update(updated_at=at, deleted=True, version=version)
        if not held:
            db.execute(replacing(db, table), {**tombstone, kept.key: record_key})
            return "applied"
        db.execute(update(table).where(table.c[kept.key].in_(due)).values(**tombstone))
        return "applied"

    # ------------------------------------------------------------------ what operators read

    def status(self) -> list[ListStatus]:
        """Each list's live rows, newest change, last feeding and late changes ignored."""
        found = []
        with self.store.begin() as db:
            state = {row.name: row for row in db.execute(select(REFERENCE_LIST))}
            for name, kept in _LISTS.items():
                table = kept.table
                rows, newest = db.execute(
                    select(func.count(), func.max(table.c.updated_at)).where(
                        table.c.deleted == false()
                    )
                ).one()
                listed = state.get(name)
                found.append(
                    ListStatus(
                        name=name,
                        rows=rows,
                        newest=None if newest is None else _when(newest),
                        fed_at=_when(listed.fed_at) if listed and listed.fed_at else None,
                        late_ignored=listed.late_ignored if listed else 0,
                        version=listed.version if listed else 0,
                    )
                )
        return found

    def stored(self, name: ListName, key: str) -> Stored | None:
        """The row of `key` in list `name`, tombstones too (the cache is not asked)."""
        kept = _LISTS[name]
        table = kept.table
        with self.store.begin() as db:
            row = db.execute(
                select(table.c.record, table.c.updated_at, table.c.deleted).where(
                    table.c[kept.key] == key
                )
            ).first()
        if row is None:
            return None
        record = None if row.record is None else json.loads(row.record)
        return Stored(key, record, _when(row.updated_at), bool(row.deleted))


def _next_version(db: Connection, name: ListName) -> int:
    """Raise the list's version (its row is locked by this transaction) and return it."""
    db.execute(
        update(REFERENCE_LIST)
        .where(REFERENCE_LIST.c.name == name)
        .values(version=REFERENCE_LIST.c.version + 1)
    )
    version: int = db.execute(
        select(REFERENCE_LIST.c.version).where(REFERENCE_LIST.c.name == name)
    ).scalar_one()
    return version
