"""The journal's search keys: every key an entry names, in an indexed table beside the chain.

An entry names a message (its id), the exchange it came with (its receipt), a payload kept in
the quarantine, and — from its detail — the record it is about: the record's key (its
CloudEvents subject: a case number, a complaint, task, warning, event or notice id), the
credit codes of the organisations in it and the keys of the records it links to (a task's
source_record_id, a feedback's warning_id, a notice's item_id). Which fields are credit codes
and links the standard says (`standard.references`); the observer writes what it finds into the
detail of the entry that first sees the record (`received`), so the keys are part of the hashed
entry, and `journal_key` is an index of what the entries say: the writer fills it in the
transaction that appends the entries, and it can always be rebuilt from them
(`monitor.search.reindex`).

    keys = entry_keys(message_id="m-1", receipt="r-1", dataset="complaint",
                      detail={"subject": "TS33…", "credit_codes": {"respondent_credit_code": …}})
    # [Key(MESSAGE, "m-1", None), Key(RECEIPT, "r-1", None), Key(RECORD, "TS33…", "complaint_id"),
    #  Key(CREDIT_CODE, "9133…", "respondent_credit_code")]

On PostgreSQL the table is partitioned by day like `journal_entry`, and a day's keys go when
its entries are pruned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, Date, Index, PrimaryKeyConstraint, String, Table

from standard.datasets import DATASETS
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


@dataclass(frozen=True)
class Key:
    """One key an entry names: its kind, its value, and the record's field it came from (the
    key field for RECORD, a path such as ``assignees[0].credit_code`` for CREDIT_CODE and LINK;
    None for the others)."""

    kind: KeyKind
    value: str
    field: str | None = None


JOURNAL_KEY = Table(
    "journal_key",
    METADATA,
    Column("value", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("seq", BigInteger, nullable=False),
    # The entry's day: in the key because PostgreSQL partitions by it, as it does the entries.
    Column("day", Date, nullable=False),
    Column("field", String),
    # value first: a search asks for one value (and kind), newest entries first.
    PrimaryKeyConstraint("value", "kind", "seq", "day", name="pk_journal_key"),
    Index("ix_journal_key_seq", "seq"),
    postgresql_partition_by="RANGE (day)",
    # On SQLite the primary key is the table: no second copy of every key in a rowid table.
    sqlite_with_rowid=False,
)
"""Every key of every entry; on PostgreSQL one partition per day (`journal_key_YYYYMMDD`)."""


def entry_keys(
    *, message_id: str | None, receipt: str | None, dataset: str | None, detail: Mapping[str, Any]
) -> list[Key]:
    """The keys an entry names, each (kind, value) once. `message_id` and `receipt` as the
    entry stores them; values from `detail` are cut like ids (KEY_CHARS)."""
    found: list[Key] = []
    if message_id:
        found.append(Key(KeyKind.MESSAGE, message_id))
    if receipt:
        found.append(Key(KeyKind.RECEIPT, receipt))
    quarantine_id = detail.get("quarantine_id")
    if quarantine_id is not None:
        found.append(Key(KeyKind.QUARANTINE, stored_value(str(quarantine_id))))
    subject = detail.get("subject")
    if subject is not None:
        spec = DATASETS.get(dataset or "")
        key_field = spec.key_field if spec else None
        found.append(Key(KeyKind.RECORD, stored_value(str(subject)), key_field))
    found += _named(KeyKind.CREDIT_CODE, detail.get("credit_codes"))
    found += _named(KeyKind.LINK, detail.get("links"))
    return _once(found)


def _named(kind: KeyKind, by_path: object) -> list[Key]:
    """The keys of a detail's {field path: value} (credit_codes, links)."""
    if not isinstance(by_path, Mapping):
        return []
    return [Key(kind, stored_value(str(value)), str(path)) for path, value in by_path.items()]


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
