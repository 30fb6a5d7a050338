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
- An overlap window (`overlap_s`) asks from that long before the cursor instead, for sources
  whose records appear late (a long transaction commits a record with an earlier change time
  after others were read) or whose clock runs behind the hub's: the window's records are handed
  over again, and ingress recognises those it published before as repeats (`adapters.repeats`).
- A source whose records carry no change time (`timed` False) is asked from the start of the
  last poll that read it to its end, less the overlap window: every record of its answer is
  handed over, repeats recognised by ingress, and the cursor becomes that poll's start (the
  hub's clock) once its last page was handed over.
- Paging: when the cursor moved to a later time, the next request starts again at the first page
  "since" the new cursor (keyset paging, which does not skip records that change while we page);
  while it stays at the same time (many records changed at one instant) the poller follows the
  source's continuation (the next page number, or the next-page token a cursor API returns).
- Schedule: after a poll that found nothing more, wait `interval_s`; when the source fails (HTTP
  error, timeout, an error answer), wait with exponential backoff up to `backoff_max_s`.
- One poller per channel across every worker on the store: a lease row (table `poller_lease`,
  one per system and message type: its holder and when it expires) names the worker that polls.
  A worker takes it when it is free or expired, in one conditional upsert (of two racing, one
  wins), renews it every third of the period while it polls, and deletes it on a clean stop.
  The others try every third of the period, or as the lease they saw expires if that is sooner,
  so when a holder dies (kill -9, a lost host) another takes over within one period of its last
  renewal, and continues from the cursor in the store.
  The period is `JGHUB_POLLER_LEASE_S` (default 30 s). Holders compare their own clocks with
  the expiry: keep the hosts' clocks in step (NTP), well within the period.
- A cursor is saved only while its poller still holds the lease, checked in the cursor's own
  transaction (which renews the lease): a poller that was stuck past its lease while another
  took over stops with LeaseLost instead of writing over the new holder's cursor. The page it
  handed over meanwhile is published again by nobody (it was confirmed); the new holder may read
  it again, and ingress drops what it published before (`adapters.repeats`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import (
    Column,
    Connection,
    Double,
    String,
    Table,
    bindparam,
    delete,
    or_,
    select,
    update,
)

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
from store import METADATA, Store, StoreUnavailable, replacing, upsert

log = logging.getLogger("adapters.protocols.poller")

CURSOR_FOLDER = "pollers"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SourceUnavailable(AdapterError):
    """The source could not be read now (HTTP error, timeout, an error answer): back off."""


class LeaseLost(AdapterError):
    """Another worker took the poller's lease (this one let it expire): stop polling."""


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


POLLER_LEASE = Table(
    "poller_lease",
    METADATA,
    Column("system", String, primary_key=True),
    Column("message_type", String, primary_key=True),
    Column("holder", String, nullable=False),
    Column("expires_at", Double, nullable=False),
)


def holder_id() -> str:
    """Who holds a lease: host name, process id and a random part (a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class PollerLease:
    """The right to poll one system's message type, held by one worker at a time (see the
    module docstring): a row of `poller_lease` naming its holder and its expiry.

    Parameters:
      store: the hub's store, shared by every worker that may poll the channel.
      system, message_type: the channel.
      period_s: how long the lease lasts without a renewal (`JGHUB_POLLER_LEASE_S`).
      holder: this worker's name in the row; default: host, pid and a random part.
      clock: epoch seconds (tests replace it).
      on_change: called with "taken", "taken_over" (from a holder that let it expire), "lost"
        or "released"; the poller reports these to the observer (metrics).
    """

    def __init__(
        self,
        store: Store,
        system: str,
        message_type: str,
        *,
        period_s: float,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        if period_s <= 0:
            raise AdapterConfigError(f"a poller lease period must be positive, got {period_s}")
        self.store = store
        self.system = system
        self.message_type = message_type
        self.period_s = period_s
        self.holder = holder or holder_id()
        self._clock = clock
        self._on_change = on_change or (lambda change: None)
        self.lost = False
        """Whether the lease was lost during the last `held` block."""
        self._expires_at = 0.0  # the other holder's expiry, as the last refused `take` saw it
        table = POLLER_LEASE
        self._channel = (table.c.system == system, table.c.message_type == message_type)
        statement = upsert(store.engine, table).values(
            system=system,
            message_type=message_type,
            holder=self.holder,
            expires_at=bindparam("until"),
        )
        # Free (no row), expired, or ours already: one statement decides, so of two workers
        # racing for it exactly one gets a row back.
        self._take = statement.on_conflict_do_update(
            index_elements=["system", "message_type"],
            set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
            where=or_(table.c.expires_at <= bindparam("now"), table.c.holder == self.holder),
        ).returning(table.c.holder)
        self._renew = (
            update(table)
            .where(*self._channel, table.c.holder == self.holder)
            .values(expires_at=bindparam("until"))
        )

    @property
    def tick_s(self) -> float:
        """How often the holder renews, and the others try to take it: a third of the period."""
        return self.period_s / 3

    def take(self) -> bool:
        """Take the lease when it is free, expired or ours; True when this worker holds it now."""
        now = self._clock()
        with self.store.begin(immediate=True) as db:
            seen = db.execute(
                select(POLLER_LEASE.c.holder, POLLER_LEASE.c.expires_at).where(*self._channel)
            ).first()
            taken = db.execute(self._take, {"now": now, "until": now + self.period_s}).first()
        before = seen.holder if seen is not None else None
        if taken is None:
            self._expires_at = float(seen.expires_at) if seen is not None else now
            return False
        if before != self.holder:
            log.info(
                "poller %s %s: %s holds the lease%s",
                self.system, self.message_type, self.holder,
                f" (taken over from {before}, which let it expire)" if before else "",
            )  # fmt: skip
            self._on_change("taken_over" if before else "taken")
        return True

    def renew(self) -> bool:
        """Extend the lease by a period; False when another worker holds it now."""
        with self.store.begin() as db:
            return self.confirm(db)

    def confirm(self, db: Connection) -> bool:
        """In `db`'s transaction: extend the lease, True while this worker still holds it. On
        PostgreSQL the row stays locked until the transaction ends, so nobody takes the lease
        before what the transaction writes is committed."""
        until = self._clock() + self.period_s
        return db.execute(self._renew, {"until": until}).rowcount == 1

    def release(self) -> None:
        """Give the lease up (a clean stop), so another worker takes it at once."""
        with self.store.begin() as db:
            db.execute(
                delete(POLLER_LEASE).where(*self._channel, POLLER_LEASE.c.holder == self.holder)
            )
        self._on_change("released")

    @contextlib.contextmanager
    def held(self, stop: threading.Event) -> Iterator[threading.Event | None]:
        """Wait until this worker holds the lease, and keep it renewed for the block.

        Yields an event set when the block should end — `stop` was set, or the lease was lost
        (then `lost` is True) — or None when `stop` came before the lease. A clean end of the
        block releases the lease.
        """
        announced = False
        while not self._try_take():
            if not announced:
                log.info(
                    "poller %s %s: another worker holds the lease; trying every %.1fs",
                    self.system, self.message_type, self.tick_s,
                )  # fmt: skip
                announced = True
            if stop.wait(self._until_expiry()):
                yield None
                return
        self.lost = False
        halt = threading.Event()
        keeper = threading.Thread(
            target=self._keep, args=(stop, halt), name=f"lease-{self.system}-{self.message_type}"
        )
        keeper.daemon = True
        keeper.start()
        try:
            yield halt
        except LeaseLost:
            self.lost = True
            raise
        finally:
            halt.set()
            keeper.join()
            if self.lost:
                self._on_change("lost")
            else:
                with contextlib.suppress(StoreUnavailable):
                    self.release()  # unreleased, it expires after the period

    def _until_expiry(self) -> float:
        """How long a worker waiting for the lease sleeps: until the holder's lease runs out,
        if it does not renew it first, and at most a tick. So when a holder dies, another takes
        over as its lease expires: within one period of its last renewal."""
        return min(self.tick_s, max(0.0, self._expires_at - self._clock()) + 0.01)

    def _try_take(self) -> bool:
        try:
            return self.take()
        except StoreUnavailable as error:
            log.warning("poller %s %s: %s", self.system, self.message_type, error)
            return False

    def _keep(self, stop: threading.Event, halt: threading.Event) -> None:
        # Wakes at least once a second, so a stop ends the block without waiting for a tick.
        due = time.monotonic() + self.tick_s
        while not halt.wait(min(1.0, self.tick_s)):
            if stop.is_set():
                break
            if time.monotonic() < due:
                continue
            due = time.monotonic() + self.tick_s
            try:
                if not self.renew():
                    log.warning(
                        "poller %s %s: lost the lease (it expired and another worker took it); "
                        "stopping", self.system, self.message_type,
                    )  # fmt: skip
                    self.lost = True
                    break
            except StoreUnavailable as error:
                # The lease may expire meanwhile: the cursor's save checks it.
                log.warning(
                    "poller %s %s: renewing the lease: %s", self.system, self.message_type, error
                )
        halt.set()


class CursorStore:
    """One poller's cursor in the hub's store, saved only while its lease is held (if given)."""

    def __init__(
        self,
        store: Store,
        data_dir: Path,
        system: str,
        message_type: str,
        lease: PollerLease | None = None,
    ) -> None:
        self.store = store
        self.system = system
        self.message_type = message_type
        self.lease = lease
        self.folder = Path(data_dir) / CURSOR_FOLDER
        self.path = self.folder / f"{system}.{message_type}.json"
        """The cursor file of hubs before the store: read while the store holds no cursor."""

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
        """Replace the saved cursor: one transaction, so the old one or the new one, never half.

        With a lease: only while this worker holds it, checked (and the lease renewed) in the
        same transaction; LeaseLost, and nothing saved, when another worker holds it now.
        """
        row = {
            "system": self.system,
            "message_type": self.message_type,
            "time": cursor.time.isoformat(),
            "record_id": cursor.record_id,
        }
        # Durable: the records up to the cursor are not fetched again after a power cut.
        with self.store.begin(durable=True) as db:
            if self.lease is not None and not self.lease.confirm(db):
                raise LeaseLost(
                    f"poller of {self.system} {self.message_type}: another worker holds the "
                    f"lease now; the cursor {cursor.time.isoformat()} {cursor.record_id!r} is "
                    "not saved (the new holder goes on from its own)"
                )
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
    time_format: str = Field(
        default="epoch_millis",
        description=(
            "How the source writes times in the query: a pattern such as 'yyyy-MM-dd HH:mm:ss', "
            "or epoch_millis, epoch_seconds, iso8601."
        ),
    )
    record_time_format: str | None = Field(
        default=None, description="How records carry their change time; default: time_format."
    )
    time_zone: str = Field(
        default="Asia/Shanghai", description="Zone of local times without an offset."
    )
    overlap_s: float = Field(
        default=0.0,
        ge=0,
        le=86400,
        description=(
            "Seconds before the saved cursor each poll asks from again, for sources whose "
            "records become visible after others with later change times (long transactions), "
            "or whose clock differs from the hub's. Records in the window come again; ingress "
            "recognises those it published before as repeats and publishes them once."
        ),
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
    records)` → the bytes handed to ingress holding only `records`. One whose records carry no
    change time sets `timed` False: its cursor is then the start of its last complete poll.
    """

    Options: ClassVar[type[BaseModel]] = PagedPollerOptions
    timed: bool = True
    """Whether the source's records carry their change time (see the module docstring)."""

    def __init__(self, options: BaseModel, context: AdapterContext) -> None:
        super().__init__(options, context)
        assert isinstance(options, PagedPollerOptions)
        self.schedule: PagedPollerOptions = options
        if context.channel is None:
            raise AdapterConfigError(
                f"poller {self.name} of {context.system.id} was built without its channel"
            )
        self.message_type = context.channel.message_type
        self.query_time = TimeFormat(options.time_format, options.time_zone)
        """How the source reads times in a query."""
        self.record_time = TimeFormat(
            options.record_time_format or options.time_format, options.time_zone
        )
        """How its records carry their change time."""
        store = context.require_store(self.name)
        self.lease = PollerLease(
            store,
            context.system.id,
            self.message_type,
            period_s=context.poller_lease_s,
            on_change=self._lease_changed,
        )
        self.cursors = CursorStore(
            store, context.data_dir, context.system.id, self.message_type, self.lease
        )
        self._polling = False  # inside run, holding the lease

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
        """Poll on schedule until `stop` is set, while this worker holds the channel's lease
        (waiting for it while another does), backing off while the source or bus fails."""
        while not stop.is_set():
            try:
                with self.lease.held(stop) as halt:
                    if halt is None:
                        return
                    self._polling = True
                    try:
                        self._poll_while_held(halt)
                    finally:
                        self._polling = False
            except LeaseLost as error:
                log.warning("%s; waiting to take the lease again", error)

    def _poll_while_held(self, halt: threading.Event) -> None:
        failures = 0
        caught_up: float | None = None  # when the last successful poll started
        while not halt.is_set():
            started = time.time()
            try:
                self.poll_once(halt)
                failures = 0
                caught_up = started
                self._report(ok=True, caught_up=caught_up)
                halt.wait(self.schedule.interval_s)
            except (SourceUnavailable, IngressUnavailable, StoreUnavailable) as error:
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
                halt.wait(pause)

    def _lease_changed(self, change: str) -> None:
        observer = self.context.ingress.observer if self.context.ingress is not None else None
        if observer is not None:
            source = f"{self.system.id}/{self.message_type}"
            observer.poller_lease(source, holder=self.lease.holder, change=change)

    def _report(self, *, ok: bool, caught_up: float | None) -> None:
        """Tell the ingress's observer of a poll; lag is how long ago the source was last read
        to its end (small while polls succeed, growing while they fail)."""
        observer = self.ingress.observer
        if observer is not None:
            lag = None if caught_up is None else time.time() - caught_up
            observer.polled(f"{self.system.id}/{self.message_type}", ok=ok, lag_seconds=lag)

    def poll_once(self, stop: threading.Event | None = None) -> int:
        """Read every page from the cursor on, handing new records to ingress; return how many.

        Outside `run` (a single poll) it takes the lease for the poll and releases it after.
        Raises SourceUnavailable, IngressUnavailable, StoreUnavailable, or LeaseLost (another
        worker polls the channel now); what was handed over before stays handed over (the
        cursor was saved after each page).
        """
        if self._polling:
            return self._read_pages(stop)
        if not self.lease.take():
            raise LeaseLost(
                f"poller {self.name} of {self.system.id} {self.message_type}: another worker "
                "holds the lease and polls it"
            )
        try:
            return self._read_pages(stop)
        finally:
            self.lease.release()

    def _read_pages(self, stop: threading.Event | None) -> int:
        start = self.cursors.load() or Cursor(self.schedule.initial_since)
        overlap = timedelta(seconds=self.schedule.overlap_s)
        if not self.timed:
            return self._read_untimed(start.time - overlap, stop)
        cursor = start
        since = floor = start.time - overlap
        after: Any | None = None
        handed = 0
        while stop is None or not stop.is_set():
            page, document = self.fetch(since, after)
            timed = sorted(
                (r for r in page.records if r.time is not None),
                key=lambda r: Cursor.key(_known(r.time), r.record_id),
            )
            new = [r for r in timed if cursor.before(_known(r.time), r.record_id)]
            # The overlap window's records come again on purpose (until the first restart
            # after the start cursor); ingress answers those it published before as repeats.
            handing = timed if overlap and since == floor else list(new)
            handing += [r for r in page.records if r.time is None]
            if handing:
                handed += self._hand_over(document, handing)
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

    def _read_untimed(self, since: datetime, stop: threading.Event | None) -> int:
        """A poll of a source whose records carry no change time: every page since `since`,
        all handed over (ingress recognises repeats); the cursor becomes the poll's start once
        the last page was handed over."""
        began = datetime.now(UTC)
        after: Any | None = None
        handed = 0
        while stop is None or not stop.is_set():
            page, document = self.fetch(since, after)
            if page.records:
                handed += self._hand_over(document, page.records)
            if page.next is None:
                self.cursors.save(Cursor(began))
                break
            after = page.next
        return handed

    def _hand_over(self, document: Any, records: Sequence[SourceRecord]) -> int:
        result = self.ingress.accept(
            self.system.id, self.message_type, self.payload(document, records)
        )
        self._check(result, len(records))
        return len(records)

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
