"""The journal's search keys: what an entry names, by kind, and the index of those its own
columns do not hold.

An entry names a message (its id), the exchange it came with (its receipt), a payload kept in
the quarantine, the record it is about (its key: the CloudEvents subject, a case number, a
complaint, task, warning, event or notice id) — four keys `journal_entry` has always indexed
in columns of its own — and, in the detail of the entry that first sees a record (`received`),
the credit codes of the organisations in it and the keys of the records it links to (a task's
source_record_id, a feedback's warning_id, a notice's item_id). Which fields those are the
standard says (`standard.references`); the observer writes them into the detail, so they are
hashed with the entry, and `journal_key` indexes them: the writer fills it in the transaction
that appends the entries, and it can be rebuilt from them (`monitor.search.reindex`).

    entry_keys({"subject": "XT-TS33…", "credit_codes": {"dispatcher.credit_code": "1133…"},
                "links": {"source_record_id": "TS33…"}})
    # [Key(CREDIT_CODE, "1133…", "dispatcher.credit_code"), Key(LINK, "TS33…", "source_record_id")]

The four the entry's columns hold are not copied here: a copy of them for every entry cost the
journal's writer 40-50 % of its batched throughput (`bench/store.py`, measured), for lookups
their own indexes answer as fast. On PostgreSQL the table is partitioned by day like
`journal_entry`, and a day's keys go when its entries are pruned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, Date, Index, PrimaryKeyConstraint, String, Table

from standard.errors import render_value
from store import METADATA

KEY_CHARS = 200
"""Longest key value kept (the journal's own limit for ids); a longer one is cut like its id."""


class KeyKind(StrEnum):
    """What a key is to the entry that names it."""

    MESSAGE = "message"
    """The message's id."""
    RECEIPT = "receipt"
    """The receipt of the exchange the message or refusal came with."""
    QUARANTINE = "quarantine"
    """The id of a payload kept in the quarantine."""
    RECORD = "record"
    """The key of the record the entry is about (its subject)."""
    CREDIT_CODE = "credit_code"
    """A unified social credit code in the record (a party, a department)."""
    LINK = "link"
    """The key of another record the record links to."""


FOLLOWED = (KeyKind.RECORD, KeyKind.LINK)
"""The kinds that name one record: a search follows them from record to record."""
INDEXED = (KeyKind.CREDIT_CODE, KeyKind.LINK)
"""The kinds `journal_key` holds; the others are columns of `journal_entry`."""


@dataclass(frozen=True)
class Key:
    """A credit code or link an entry names, and the record's field it came from (a path such
    as ``assignees[0].credit_code``)."""

    kind: KeyKind
    value: str
    field: str


JOURNAL_KEY = Table(
    "journal_key",
    METADATA,
    Column("value", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("seq", BigInteger, nullable=False),
    # The entry's day: in the key because PostgreSQL partitions by it, as it does the entries.
    Column("day", Date, nullable=False),
    Column("field", String, nullable=False),
    # value first: a search asks for one value (and kind), newest entries first.
    PrimaryKeyConstraint("value", "kind", "seq", "day", name="pk_journal_key"),
    Index("ix_journal_key_seq", "seq"),
    postgresql_partition_by="RANGE (day)",
    # On SQLite the primary key is the table: no second copy of every key in a rowid table.
    sqlite_with_rowid=False,
)
"""Every key of every entry; on PostgreSQL one partition per day (`journal_key_YYYYMMDD`)."""


def entry_keys(detail: Mapping[str, Any]) -> list[Key]:
    """The credit codes and links an entry's detail lists, each (kind, value) once, cut like
    ids (KEY_CHARS)."""
    listed = (
        (KeyKind.CREDIT_CODE, detail.get("credit_codes")),
        (KeyKind.LINK, detail.get("links")),
    )
    found = [
        Key(kind, stored_value(str(value)), str(path))
        for kind, by_path in listed
        if isinstance(by_path, Mapping)
        for path, value in by_path.items()
    ]
    return _once(found)


def _once(keys: Iterable[Key]) -> list[Key]:
    """Each (kind, value) once, from the first field that names it (a notice's department and
    addressee may be one department)."""
    seen: dict[tuple[KeyKind, str], Key] = {}
    for key in keys:
        if key.value and (key.kind, key.value) not in seen:
            seen[key.kind, key.value] = key
    return list(seen.values())


def stored_value(value: str) -> str:
    """A key's value as the table keeps it, and as a search must ask for it."""
    return stored(value, KEY_CHARS)


def stored(text: str, limit: int) -> str:
    """`text` as the journal keeps it: cut to `limit`, a lone surrogate (which no UTF-8 file can
    hold; JSON's "\\ud800" makes one) and NUL (which PostgreSQL text cannot hold) written as
    their escapes, so both backends keep the same characters."""
    cut = render_value(text, limit=limit).replace("\x00", "\\x00")
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


def key_rows(keys: Iterable[Key], seq: int, day: date) -> list[dict[str, Any]]:
    """The rows of `journal_key` for the keys of entry `seq` of `day`."""
    return [
        {"value": k.value, "kind": k.kind.value, "seq": seq, "day": day, "field": k.field}
        for k in keys
    ]
