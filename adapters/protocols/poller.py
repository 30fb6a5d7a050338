"""Pulling from systems that only offer pull APIs: a persisted cursor, paging, schedule, backoff.

A paged poller asks its source for the records changed since its cursor, page by page, hands
each page's new records to `Ingress.accept` (the one inbound path) and moves the cursor only
after the bus confirmed them — so a restart neither skips nor repeats a record:

- The cursor is (change time, record id) of the last record accepted, kept in the hub's store
  (table `poller_cursor`, one row per system and message type, replaced in one transaction). A
  cursor file `data_dir/pollers/<system>.<message type>.json` from before the store is read
  while the store holds none for that poller.
- Sources filter on change time inclusively ("changed since"), so records at the cursor's time
  come again; those at or before the cursor (by time, then id) are dropped before the page goes
  to ingress. A record whose page was not confirmed comes again at the next poll.
- Paging: when the cursor moved to a later time, the next request starts again at the first page
  "since" the new cursor (keyset paging, which does not skip records that change while we page);
  while it stays at the same time (many records changed at one instant) the poller follows the
  source's continuation (the next page number, or the next-page token a cursor API returns).
- Schedule: after a poll that found nothing more, wait `interval_s`; when the source fails (HTTP
  error, timeout, an error answer), wait with exponential backoff up to `backoff_max_s`.
- One poller per channel and data folder: a lock file keeps a second worker on the same data
  folder from polling the same channel twice. Workers on separate machines need separate
  sources, or they fetch the same records (targets drop the duplicates by idempotency key).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Column, String, Table, select

from adapters.base import AdapterContext, Poller
from adapters.errors import AdapterConfigError, AdapterError, IngressUnavailable
from adapters.ingress import Ingress, IngressResult
from mappings import (
    EPOCH_NAMES,
    PatternInvalid,
    build_datetime,
    compile_pattern,
    from_epoch,
    to_epoch,
)
from standard.errors import quoted
from store import METADATA, Store, replacing

log = logging.getLogger("adapters.protocols.poller")

CURSOR_FOLDER = "pollers"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SourceUnavailable(AdapterError):
    """The source could not be read now (HTTP error, timeout, an error answer): back off."""


class CursorError(AdapterError):
    """The saved cursor (a store row, or an old cursor file) cannot be read; the message says
    which and how to start again."""


# ---------------------------------------------------------------------- times as sources write them


class TimeFormat:
    """A source's time notation: a Java-style pattern (`yyyy-MM-dd HH:mm:ss`), `epoch_millis`,
    `epoch_seconds` or `iso8601`; local times are in `zone`."""

    def __init__(self, notation: str, zone: str) -> None:
        self.notation = notation
        try:
            self.zone = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise AdapterConfigError(f"unknown time zone {zone!r}: {error}") from None
        self._pattern = None
        if notation not in (*EPOCH_NAMES, "iso8601"):
            try:
                self._pattern = compile_pattern(notation)
            except PatternInvalid as error:
                raise AdapterConfigError(f"time format {notation!r}: {error}") from None

    def parse(self, value: Any) -> datetime:
        """The instant `value` stands for; ValueError saying why when it is not one."""
        if self.notation in EPOCH_NAMES:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError(f"{quoted(value)} is not an {self.notation} number")
            return from_epoch(int(value), self.notation, self.zone)
        if not isinstance(value, str):
            raise ValueError(f"{quoted(value)} is not a {self.notation} time")
        if self._pattern is None:
            parsed = datetime.fromisoformat(value.strip())
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=self.zone)
        fields = self._pattern.parse_fields(value.strip())
        if fields is None:
            raise ValueError(f"{quoted(value)} does not have the form {self.notation}")
        return build_datetime(fields, self.zone)

    def format(self, moment: datetime) -> str:
        """`moment` as the source writes it (in its zone)."""
        if self.notation in EPOCH_NAMES:
            return str(to_epoch(moment, self.notation))
        local = moment.astimezone(self.zone)
        if self._pattern is None:
            return local.isoformat()
        return self._pattern.format(local)


# ---------------------------------------------------------------------- the cursor


@dataclass(frozen=True, order=True)
class Cursor:
    """Where a poller is: the change time and id of the last record it handed over."""

    time: datetime
    record_id: str = ""

    @staticmethod
    def key(time: datetime, record_id: str) -> tuple[datetime, int, int | str]:
        """Ordering key: by time, then by id — numerically when the id is a number."""
        if record_id.isdigit():
            return (time, 0, int(record_id))
        return (time, 1, record_id)

    def before(self, time: datetime, record_id: str) -> bool:
        """True when the record (time, id) comes after this cursor (it is new)."""
        return Cursor.key(time, record_id) > Cursor.key(self.time, self.record_id)


POLLER_CURSOR = Table(
    "poller_cursor",
    METADATA,
    Column("system", String, primary_key=True),
    Column("message_type", String, primary_key=True),
    Column("time", String, nullable=False),  # ISO 8601 with its offset, exactly as it was
    Column("record_id", String, nullable=False),
)


class CursorStore:
    """One poller's cursor in the hub's store; a lock file in the data folder for its owner."""

    def __init__(self, store: Store, data_dir: Path, system: str, message_type: str) -> None:
        self.store = store
        self.system = system
        self.message_type = message_type
        self.folder = Path(data_dir) / CURSOR_FOLDER
        self.path = self.folder / f"{system}.{message_type}.json"
        """The cursor file of hubs before the store: read while the store holds no cursor."""
        self._lock_path = self.folder / f"{system}.{message_type}.lock"

    def load(self) -> Cursor | None:
        """The saved cursor, or None when the poller never handed anything over."""
        table = POLLER_CURSOR
        with self.store.begin() as db:
            row = db.execute(
                select(table.c.time, table.c.record_id).where(
                    table.c.system == self.system, table.c.message_type == self.message_type
                )
            ).first()
        if row is None:
            return self._load_file()
        try:
            return Cursor(datetime.fromisoformat(row[0]), str(row[1]))
        except ValueError as error:
            raise CursorError(
                f"poller cursor of {self.system} {self.message_type} in {self.store} cannot be "
                f"read ({error}); delete its row in poller_cursor to start again from the "
                "poller's initial time"
            ) from None

    def save(self, cursor: Cursor) -> None:
        """Replace the saved cursor: one transaction, so the old one or the new one, never half."""
        row = {
            "system": self.system,
            "message_type": self.message_type,
            "time": cursor.time.isoformat(),
            "record_id": cursor.record_id,
        }
        # Durable: the records up to the cursor are not fetched again after a power cut.
        with self.store.begin(durable=True) as db:
            db.execute(replacing(db, POLLER_CURSOR), row)

    def _load_file(self) -> Cursor | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Cursor(datetime.fromisoformat(data["time"]), str(data.get("record_id", "")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CursorError(
                f"poller cursor {self.path} cannot be read ({error}); fix or delete it (deleting "
                "it makes the poller start again from its initial time)"
            ) from None

    @contextlib.contextmanager
    def owned(self, stop: threading.Event, wait_s: float = 5.0) -> Iterator[bool]:
        """Hold the channel's lock while polling; yields False if `stop` came first."""
        self.folder.mkdir(parents=True, exist_ok=True)
        file: IO[str] = open(self._lock_path, "a")  # noqa: SIM115 - held for the whole block
        try:
            announced = False
            while True:
                try:
                    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not announced:
                        log.info("another process polls %s; waiting for it to stop", self.path)
                        announced = True
                    if stop.wait(wait_s):
                        yield False
                        return
            yield True
        finally:
            file.close()  # releases the lock


# ---------------------------------------------------------------------- one page of a source


@dataclass(frozen=True)
class SourceRecord:
    """One record of a page, with its change time and id as the source states them.

    `time` is None when the record's change time cannot be read: it is handed over all the same
    (the mapping rejects it with its reason, into the quarantine) but cannot move the cursor.
    """

    time: datetime | None
    record_id: str
    raw: Any


@dataclass(frozen=True)
class Page:
    """One page a source answered.

    Attributes:
      records: the page's records, in the source's order (change time, then id).
      next: how to ask for the following page of the same query (a page number, a cursor
        token), or None on the last page.
    """

    records: Sequence[SourceRecord]
    next: Any | None


class PagedPollerOptions(BaseModel):
    """Schedule, paging and backoff of a poller that pages by change time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_s: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="Seconds between polls once the poller has caught up with the source.",
    )
    page_size: int = Field(default=100, ge=1, le=10000, description="Records asked for per page.")
    initial_since: datetime = Field(
        default=EPOCH,
        description=(
            "Change time to start from when no cursor was saved yet (ISO 8601); default: the "
            "beginning, i.e. everything the source has."
        ),
        examples=["2026-01-01T00:00:00+08:00"],
    )
    backoff_initial_s: float = Field(
        default=1.0, gt=0, le=3600, description="Wait after the first failed poll."
    )
    backoff_max_s: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        description="Longest wait between failed polls (the wait doubles after each failure).",
    )

    @field_validator("initial_since")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=ZoneInfo("Asia/Shanghai"))


class PagedPoller(Poller):
    """Base of pollers whose source pages records by change time (see the module docstring).

    A subclass implements `fetch(since, after)` → (Page, document) and `payload(document,
    records)` → the bytes handed to ingress holding only `records`.
    """

    Options: ClassVar[type[BaseModel]] = PagedPollerOptions

    def __init__(self, options: BaseModel, context: AdapterContext) -> None:
        super().__init__(options, context)
        assert isinstance(options, PagedPollerOptions)
        self.schedule: PagedPollerOptions = options
        if context.channel is None:
            raise AdapterConfigError(
                f"poller {self.name} of {context.system.id} was built without its channel"
            )
        self.message_type = context.channel.message_type
        self.cursors = CursorStore(
            context.require_store(self.name), context.data_dir, context.system.id, self.message_type
        )

    @abstractmethod
    def fetch(self, since: datetime, after: Any | None) -> tuple[Page, Any]:
        """A page of records changed at or after `since`: the first when `after` is None, else
        the one a previous page's `next` names; SourceUnavailable when the source fails."""

    @abstractmethod
    def payload(self, document: Any, records: Sequence[SourceRecord]) -> bytes:
        """The page `document` holding only `records`, as the system's mapping reads it."""

    @property
    def ingress(self) -> Ingress:
        if self.context.ingress is None:
            raise AdapterConfigError(f"poller {self.name} of {self.system.id} has no ingress")
        return self.context.ingress

    def run(self, stop: threading.Event) -> None:
        """Poll on schedule until `stop` is set, backing off while the source or bus fails."""
        with self.cursors.owned(stop) as owned:
            if not owned:
                return
            failures = 0
            caught_up: float | None = None  # when the last successful poll started
            while not stop.is_set():
                started = time.time()
                try:
                    self.poll_once(stop)
                    failures = 0
                    caught_up = started
                    self._report(ok=True, caught_up=caught_up)
                    stop.wait(self.schedule.interval_s)
                except (SourceUnavailable, IngressUnavailable) as error:
                    self._report(ok=False, caught_up=caught_up)
                    failures += 1
                    pause = min(
                        self.schedule.backoff_initial_s * 2 ** (failures - 1),
                        self.schedule.backoff_max_s,
                    )
                    log.warning(
                        "poller %s of %s: %s; trying again in %.1fs",
                        self.name, self.system.id, error, pause,
                    )  # fmt: skip
                    stop.wait(pause)

    def _report(self, *, ok: bool, caught_up: float | None) -> None:
        """Tell the ingress's observer of a poll; lag is how long ago the source was last read
        to its end (small while polls succeed, growing while they fail)."""
        observer = self.ingress.observer
        if observer is not None:
            lag = None if caught_up is None else time.time() - caught_up
            observer.polled(f"{self.system.id}/{self.message_type}", ok=ok, lag_seconds=lag)

    def poll_once(self, stop: threading.Event | None = None) -> int:
        """Read every page from the cursor on, handing new records to ingress; return how many.

        Raises SourceUnavailable or IngressUnavailable; what was handed over before stays
        handed over (the cursor was saved after each page).
        """
        cursor = self.cursors.load() or Cursor(self.schedule.initial_since)
        since = cursor.time
        after: Any | None = None
        handed = 0
        while stop is None or not stop.is_set():
            page, document = self.fetch(since, after)
            timed = sorted(
                (r for r in page.records if r.time is not None),
                key=lambda r: Cursor.key(_known(r.time), r.record_id),
            )
            new = [r for r in timed if cursor.before(_known(r.time), r.record_id)]
            unreadable = [r for r in page.records if r.time is None]
            if new or unreadable:
                handing = new + unreadable
                result = self.ingress.accept(
                    self.system.id, self.message_type, self.payload(document, handing)
                )
                self._check(result, len(handing))
                handed += len(handing)
            if new:
                last = new[-1]
                cursor = Cursor(_known(last.time), last.record_id)
                self.cursors.save(cursor)
            if page.next is None:
                break
            if cursor.time > since:
                since, after = cursor.time, None  # keyset: restart after the new cursor
            else:
                after = page.next  # a run of records at one instant: step through its pages
        return handed

    def _check(self, result: IngressResult, count: int) -> None:
        if result.failed:
            raise IngressUnavailable(
                f"the bus did not confirm {result.failed} of {count} records of "
                f"{self.message_type} from {self.system.id}; the page is read again"
            )
        if result.payload_error is not None:
            log.error(
                "poller %s of %s: the page was refused as a whole (%s); kept in the quarantine "
                "as %s, moving on",
                self.name, self.system.id, result.payload_error.reason, result.quarantine_id,
            )  # fmt: skip
        elif result.rejected:
            log.warning(
                "poller %s of %s: %d of %d records rejected, kept in the quarantine as %s",
                self.name, self.system.id, result.rejected, count, result.quarantine_id,
            )  # fmt: skip


def _known(time: datetime | None) -> datetime:
    assert time is not None
    return time
