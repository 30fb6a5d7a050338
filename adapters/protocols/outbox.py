"""The outbox: messages for pull-only systems, pulled under a lease and acknowledged.

The worker's `outbox` sender writes each rendered payload into the outbox; the system pulls
them over HTTP and acknowledges what it processed:

    GET  /systems/{id}/outbox?limit=100    → a lease: its id, expiry, cursor and the messages
    POST /systems/{id}/outbox/ack          {"ids": [...]} or {"lease_id": "...", "cursor": 42}

A pulled message is leased to the puller for `lease_s` seconds; what is not acknowledged by then
is handed out again (at-least-once: the system drops duplicates by the idempotency key each
message carries). Messages come out in the order they were written (their `seq`); acknowledging
by cursor acknowledges every message of that lease up to and including that seq.

`StoredOutbox` keeps the outbox in the hub's store (`store`, table `outbox`): the embedded SQLite
file shared by the `serve` and `worker` processes of one host, or PostgreSQL shared by every
host. A lease is rows of that table (their `lease_id` and `lease_until`), not a process's memory,
so a lease taken through one serve is acknowledged through any other. A pull is one statement:
on PostgreSQL its rows are chosen with `SELECT … FOR UPDATE SKIP LOCKED`, so two pulls at once
never hand out the same message and neither waits for the other; on SQLite the transaction takes
the write lock at BEGIN (`begin(immediate=True)`), which serialises pulls of every process.

An `outbox.sqlite3` file of hubs before the store is taken in once (its pending messages and
the acknowledged ones still within the retention, in their order; their leases are dropped, so
what was leased is handed out again) and renamed `outbox.sqlite3.adopted`.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    func,
    or_,
    select,
    update,
)
from starlette.concurrency import run_in_threadpool

from adapters.base import AdapterContext, Closeable, Sender
from adapters.errors import AdapterConfigError, BadRequest, TransientDeliveryError
from adapters.openapi import security_requirement
from adapters.protocols.http_push import REFUSALS
from store import METADATA, Store, StoreError, upsert
from systems import SystemConfig

if TYPE_CHECKING:
    from adapters.security import Gatekeeper
    from standard.envelope import Envelope

log = logging.getLogger("adapters.protocols.outbox")

OUTBOX_FILE = "outbox.sqlite3"
"""The outbox file of hubs before the store, taken in once (see the module docstring)."""
MAX_PULL = 1000
SQLITE_MAX_INTEGER = 2**63 - 1
RETENTION_S = 7 * 86400.0
"""How long acknowledged messages are remembered by default (see StoredOutbox)."""
PRUNE_EVERY_S = 60.0
"""How often a process deletes the acknowledged messages past their retention."""
ACK_CHUNK = 500
"""Message ids per UPDATE: well below SQLite's limit of bound parameters."""


@dataclass(frozen=True)
class OutboxItem:
    """One message waiting in a system's outbox.

    Attributes:
      seq: its position in the outbox (increasing in write order); the pull cursor.
      system: the system it is for.
      message_id: the bus message id it was delivered from.
      idempotency_key: what the system uses to drop a duplicate.
      content_type: MIME type of `body`.
      body: the payload rendered for the system.
      dataset: the canonical dataset of the record.
      subject: the record's key.
      created_at: when it was written (epoch seconds).
      deliveries: how often it has been handed out, this time included.
    """

    seq: int
    system: str
    message_id: str
    idempotency_key: str
    content_type: str
    body: bytes
    dataset: str | None
    subject: str | None
    created_at: float
    deliveries: int


@dataclass(frozen=True)
class OutboxLease:
    """What one pull handed out: the lease's id, when it expires and the messages."""

    lease_id: str
    expires_at: float
    items: list[OutboxItem]

    @property
    def cursor(self) -> int | None:
        """The highest seq handed out (acknowledge by cursor up to it), or None when empty."""
        return max((item.seq for item in self.items), default=None)


class OutboxStore(ABC):
    """Where pull-only systems' messages wait; thread-safe and shared by processes."""

    @abstractmethod
    def put(
        self,
        system: str,
        *,
        message_id: str,
        idempotency_key: str,
        body: bytes,
        content_type: str,
        dataset: str | None = None,
        subject: str | None = None,
    ) -> bool:
        """Add a message; False (and nothing added) when the system already has its key."""

    @abstractmethod
    def pull(self, system: str, *, limit: int, lease_s: float) -> OutboxLease:
        """Lease up to `limit` available messages, oldest first, for `lease_s` seconds."""

    @abstractmethod
    def ack(
        self,
        system: str,
        *,
        ids: Sequence[str] = (),
        lease_id: str | None = None,
        cursor: int | None = None,
    ) -> int:
        """Acknowledge by message ids, or every message of `lease_id` with seq ≤ `cursor`.

        Returns how many messages were acknowledged now (already acknowledged ones and ids the
        system does not have are not counted).
        """

    @abstractmethod
    def pending(self, system: str) -> int:
        """Messages of `system` not yet acknowledged (leased or not)."""

    @abstractmethod
    def close(self) -> None:
        """Release the store. Idempotent."""


_SEQ = BigInteger().with_variant(Integer, "sqlite")
OUTBOX = Table(
    "outbox",
    METADATA,
    # INTEGER on SQLite (the rowid, AUTOINCREMENT: never reused), BIGSERIAL on PostgreSQL.
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("system", String, nullable=False),
    Column("message_id", String, nullable=False),
    Column("idempotency_key", String, nullable=False),
    Column("content_type", String, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("dataset", String, nullable=True),
    Column("subject", String, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("deliveries", Integer, nullable=False, server_default="0"),
    Column("lease_id", String, nullable=True),
    Column("lease_until", Double, nullable=True),
    Column("acked_at", Double, nullable=True),
    UniqueConstraint("system", "idempotency_key"),
    Index("ix_outbox_system_acked_at_seq", "system", "acked_at", "seq"),
    Index("ix_outbox_lease_id", "lease_id"),
    sqlite_autoincrement=True,
)

_HANDED_OUT = (
    OUTBOX.c.seq,
    OUTBOX.c.system,
    OUTBOX.c.message_id,
    OUTBOX.c.idempotency_key,
    OUTBOX.c.content_type,
    OUTBOX.c.body,
    OUTBOX.c.dataset,
    OUTBOX.c.subject,
    OUTBOX.c.created_at,
    OUTBOX.c.deliveries,
)
_ADOPTED: tuple[str, ...] = ("system", "message_id", "idempotency_key", "content_type", "body")
_ADOPTED += ("dataset", "subject", "created_at", "deliveries", "acked_at")


class StoredOutbox(OutboxStore):
    """The outbox in the hub's store; thread-safe, shared by every process that opens the store.

    Parameters:
      store: the hub's store (`Store.open`); not closed by the outbox.
      retention_s: how long acknowledged messages are remembered, so that the same idempotency
        key written again (a replayed dead letter, a redelivery) is not handed out twice.
      clock: epoch seconds; replaceable for tests. Leases compare this clock across processes
        (and hosts, on PostgreSQL): keep the hosts' clocks in step (NTP).
    """

    def __init__(
        self,
        store: Store,
        *,
        retention_s: float = RETENTION_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.retention_s = retention_s
        self._clock = clock
        self._pruned_at = float("-inf")
        self._closed = False
        table = OUTBOX
        # Built once: every pull and put runs them.
        self._put = (
            upsert(store.engine, table)
            .on_conflict_do_nothing(index_elements=["system", "idempotency_key"])
            .returning(table.c.seq)
        )
        # Chosen and leased in one statement. PostgreSQL locks the chosen rows and skips the
        # ones another pull has locked; SQLite ignores FOR UPDATE (the write lock taken at
        # BEGIN IMMEDIATE serialises the pulls instead).
        available = (
            select(table.c.seq)
            .where(
                table.c.system == bindparam("b_system"),
                table.c.acked_at.is_(None),
                or_(table.c.lease_until.is_(None), table.c.lease_until <= bindparam("b_now")),
            )
            .order_by(table.c.seq)
            .limit(bindparam("b_limit"))
            .with_for_update(skip_locked=True)
        )
        self._lease = (
            update(table)
            .where(table.c.seq.in_(available.scalar_subquery()))
            .values(
                lease_id=bindparam("b_lease_id"),
                lease_until=bindparam("b_until"),
                deliveries=table.c.deliveries + 1,
            )
            .returning(*_HANDED_OUT)
        )
        acked: dict[str, Any] = {
            "acked_at": bindparam("b_now"),
            "lease_id": None,
            "lease_until": None,
        }
        unacked = (table.c.system == bindparam("b_system"), table.c.acked_at.is_(None))
        self._ack_ids = (
            update(table)
            .where(*unacked, table.c.message_id.in_(bindparam("b_ids", expanding=True)))
            .values(**acked)
        )
        self._ack_cursor = (
            update(table)
            .where(
                *unacked,
                table.c.lease_id == bindparam("b_lease_id"),
                table.c.seq <= bindparam("b_cursor"),
            )
            .values(**acked)
        )
        self._pending = select(func.count()).select_from(table).where(*unacked)

    def put(
        self,
        system: str,
        *,
        message_id: str,
        idempotency_key: str,
        body: bytes,
        content_type: str,
        dataset: str | None = None,
        subject: str | None = None,
    ) -> bool:
        self._check_open()
        row = {
            "system": system,
            "message_id": message_id,
            "idempotency_key": idempotency_key,
            "content_type": content_type,
            "body": bytes(body),
            "dataset": dataset,
            "subject": subject,
            "created_at": self._clock(),
        }
        with self.store.begin() as db:
            added = db.execute(self._put, row).first() is not None
        self._prune()
        return added

    def pull(self, system: str, *, limit: int, lease_s: float) -> OutboxLease:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._check_open()
        lease_id = uuid.uuid4().hex
        now = self._clock()
        until = now + lease_s
        arguments = {"b_system": system, "b_now": now, "b_limit": limit}
        with self.store.begin(immediate=True) as db:
            rows = db.execute(self._lease, {**arguments, "b_lease_id": lease_id, "b_until": until})
            # RETURNING follows no ORDER BY: the order is restored here.
            items = sorted((_item(tuple(row)) for row in rows), key=lambda item: item.seq)
        return OutboxLease(lease_id=lease_id, expires_at=until, items=items)

    def ack(
        self,
        system: str,
        *,
        ids: Sequence[str] = (),
        lease_id: str | None = None,
        cursor: int | None = None,
    ) -> int:
        if (lease_id is None) != (cursor is None):
            raise ValueError("acknowledging by cursor needs both lease_id and cursor")
        self._check_open()
        now = self._clock()
        count = 0
        # In id order: two acknowledgements of overlapping ids lock their rows in one order,
        # so on PostgreSQL neither waits for a lock the other holds (no deadlock).
        wanted = sorted(set(ids))
        with self.store.begin(immediate=True) as db:
            for start in range(0, len(wanted), ACK_CHUNK):
                chunk = wanted[start : start + ACK_CHUNK]
                arguments = {"b_system": system, "b_now": now, "b_ids": chunk}
                count += db.execute(self._ack_ids, arguments).rowcount
            if lease_id is not None and cursor is not None:
                arguments = {"b_system": system, "b_now": now}
                arguments |= {"b_lease_id": lease_id, "b_cursor": cursor}
                count += db.execute(self._ack_cursor, arguments).rowcount
        return count

    def pending(self, system: str) -> int:
        self._check_open()
        with self.store.begin() as db:
            return int(db.execute(self._pending, {"b_system": system}).scalar_one())

    def adopt(self, path: Path) -> int:
        """Take the messages a hub before the store kept in the SQLite file `path` (its pending
        ones and the acknowledged ones within the retention, in their order) into the store,
        keeping any key the store already has; then rename the file `<name>.adopted`. Their
        leases are dropped: what was leased is handed out again. Return how many were taken."""
        if not path.is_file():
            return 0
        since = self._clock() - self.retention_s
        old = create_engine(f"sqlite:///{path}")
        try:
            with old.connect() as db:
                kept = Table("outbox", MetaData(), autoload_with=db)
                rows = [
                    {name: row._mapping[name] for name in _ADOPTED}
                    for row in db.execute(
                        select(kept)
                        .where(or_(kept.c.acked_at.is_(None), kept.c.acked_at >= since))
                        .order_by(kept.c.seq)
                    )
                ]
        finally:
            old.dispose()
        for row in rows:
            row["body"] = bytes(row["body"])
        if rows:
            with self.store.begin(immediate=True) as db:
                # One row per execution: an executemany may insert in any order, and the new
                # seqs must keep the old order.
                for row in rows:
                    db.execute(self._put, row)
        try:
            path.rename(path.with_name(path.name + ".adopted"))
        except FileNotFoundError:
            return 0  # another process (serve, worker) took it in at the same time
        log.info("took %d outbox message(s) from %s into the store", len(rows), path)
        return len(rows)

    def close(self) -> None:
        """Nothing to release: the store belongs to whoever opened it."""
        self._closed = True

    def _prune(self) -> None:
        now = self._clock()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        # Its own transaction: a prune never holds the rows a pull or a put waits for.
        with self.store.begin() as db:
            db.execute(
                delete(OUTBOX).where(
                    OUTBOX.c.acked_at.is_not(None), OUTBOX.c.acked_at < now - self.retention_s
                )
            )

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the outbox in {self.store} is closed")


def _item(row: tuple[Any, ...]) -> OutboxItem:
    return OutboxItem(
        seq=row[0],
        system=row[1],
        message_id=row[2],
        idempotency_key=row[3],
        content_type=row[4],
        body=bytes(row[5]),
        dataset=row[6],
        subject=row[7],
        created_at=row[8],
        deliveries=row[9],
    )


def open_outbox(store: Store, data_dir: Path) -> StoredOutbox:
    """The outbox on `store`, after taking in the outbox file of `data_dir` a hub before the
    store left (once: the file is renamed)."""
    outbox = StoredOutbox(store)
    outbox.adopt(Path(data_dir) / OUTBOX_FILE)
    return outbox


class OutboxSenderOptions(BaseModel):
    """Options of the outbox sender."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_pending: int = Field(
        default=100_000,
        ge=1,
        description=(
            "Most messages the system may leave unacknowledged; past it, delivery fails as "
            "transient (the message waits in the retry tiers) instead of filling the disk."
        ),
    )


class OutboxSender(Sender):
    """Writes messages into the hub's outbox, from which a pull-only system fetches them.

    The system pulls with GET /systems/{id}/outbox and acknowledges with POST
    /systems/{id}/outbox/ack; unacknowledged messages come back after the lease expires.
    """

    name: ClassVar[str] = "outbox"
    Options: ClassVar[type[BaseModel]] = OutboxSenderOptions

    def __init__(self, options: BaseModel, context: AdapterContext) -> None:
        super().__init__(options, context)
        self._outbox: StoredOutbox | None = None
        self._opening = threading.Lock()

    @classmethod
    def mount_target_routes(
        cls, app_or_router: FastAPI | APIRouter, context: AdapterContext
    ) -> Closeable | None:
        """The system's pull and ack endpoints, on the outbox in the hub's store."""
        outbox = open_outbox(context.require_store(cls.name), context.data_dir)
        mount_outbox(
            app_or_router,
            context.system,
            outbox,
            context.require_gatekeeper(cls.name),
            lease_s=context.pull_lease_s,
        )
        return outbox

    def prepare(self) -> None:
        """AdapterConfigError when the sender was built without the store."""
        self.context.require_store(self.name)

    @property
    def outbox(self) -> StoredOutbox:
        """The outbox it writes into, opened at the first delivery (StoreUnavailable when the
        store does not answer: the egress postpones the message, see `adapters.egress`)."""
        with self._opening:
            if self._outbox is None:
                store = self.context.require_store(self.name)
                self._outbox = open_outbox(store, self.context.data_dir)
            return self._outbox

    def deliver(
        self,
        body: bytes,
        *,
        content_type: str,
        idempotency_key: str,
        envelope: Envelope,
    ) -> None:
        options = self.options
        assert isinstance(options, OutboxSenderOptions)
        outbox = self.outbox
        system = self.system.id
        if outbox.pending(system) >= options.max_pending:
            raise TransientDeliveryError(
                f"the outbox of {system} holds {options.max_pending} unacknowledged messages "
                "(max_pending); waiting for the system to pull"
            )
        outbox.put(
            system,
            message_id=envelope.id,
            idempotency_key=idempotency_key,
            body=body,
            content_type=content_type,
            dataset=envelope.spec.name,
            subject=envelope.subject,
        )


# -- HTTP ----------------------------------------------------------------------------------------


class OutboxMessage(BaseModel):
    """One message handed out by a pull."""

    id: str = Field(description="The message id; acknowledge with it.")
    seq: int = Field(description="Its position in the outbox (the cursor).")
    idempotency_key: str = Field(description="Drop a message whose key you already processed.")
    content_type: str = Field(description="MIME type of the body.")
    dataset: str | None = Field(default=None, description="Canonical dataset of the record.")
    subject: str | None = Field(default=None, description="The record's key.")
    deliveries: int = Field(description="How often it was handed out, this time included.")
    encoding: Literal["text", "base64"] = Field(
        description="text: `body` is the payload as text; base64: the payload's bytes in base64."
    )
    body: str = Field(description="The payload rendered for the system.")


class OutboxPull(BaseModel):
    """The answer to a pull: a lease over the messages handed out."""

    lease_id: str = Field(description="Acknowledge by cursor within this lease.")
    lease_expires_at: datetime = Field(
        description="Messages not acknowledged by then are handed out again."
    )
    cursor: int | None = Field(description="Highest seq handed out; None when nothing was.")
    messages: list[OutboxMessage] = Field(description="Oldest first.")


class OutboxAck(BaseModel):
    """What a system acknowledges: message ids, or everything of a lease up to a cursor."""

    model_config = ConfigDict(extra="ignore")

    ids: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=MAX_PULL, description="Message ids."
    )
    lease_id: str | None = Field(
        default=None, max_length=64, description="The lease the cursor belongs to."
    )
    cursor: int | None = Field(
        default=None,
        ge=0,
        le=SQLITE_MAX_INTEGER,
        description="Acknowledge the lease's messages with seq ≤ cursor.",
    )


class OutboxAcked(BaseModel):
    """The answer to an acknowledgement."""

    acknowledged: int = Field(description="Messages acknowledged by this call.")
    pending: int = Field(description="Messages of the system still not acknowledged.")


def _as_message(item: OutboxItem) -> OutboxMessage:
    charset = "utf-8"
    for parameter in item.content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"').lower()
    # GB2312 and GBK are read as GB18030, their superset, as everywhere in the hub.
    if charset in ("gb2312", "gbk", "cp936"):
        charset = "gb18030"
    try:
        text = item.body.decode(charset)
        encoding: Literal["text", "base64"] = "text"
    except (LookupError, UnicodeDecodeError):
        text = base64.b64encode(item.body).decode("ascii")
        encoding = "base64"
    return OutboxMessage(
        id=item.message_id,
        seq=item.seq,
        idempotency_key=item.idempotency_key,
        content_type=item.content_type,
        dataset=item.dataset,
        subject=item.subject,
        deliveries=item.deliveries,
        encoding=encoding,
        body=text,
    )


def mount_outbox(
    app_or_router: FastAPI | APIRouter,
    system: SystemConfig,
    store: OutboxStore,
    gatekeeper: Gatekeeper,
    *,
    lease_s: float,
) -> None:
    """Add the pull and ack endpoints of `system`'s outbox (only the system itself may use them)."""
    system_id = system.id
    if store is None:
        raise AdapterConfigError(f"the outbox of {system_id} has no store")

    async def pull(
        request: Request,
        limit: int = Query(100, ge=1, le=MAX_PULL, description="Most messages to hand out."),
    ) -> OutboxPull:
        await gatekeeper.admit(request, system_id, read_body=False)
        lease = await run_in_threadpool(store.pull, system_id, limit=limit, lease_s=lease_s)
        return OutboxPull(
            lease_id=lease.lease_id,
            lease_expires_at=datetime.fromtimestamp(lease.expires_at, UTC),
            cursor=lease.cursor,
            messages=[_as_message(item) for item in lease.items],
        )

    async def ack(request: Request) -> JSONResponse:
        admission = await gatekeeper.admit(request, system_id)
        try:
            given = OutboxAck.model_validate_json(admission.body or b"{}")
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                for e in error.errors(include_url=False)
            )
            raise BadRequest(
                f"the acknowledgement is not {{ids}} or {{lease_id, cursor}}: {problems}",
                system=system_id,
            ) from None
        if (given.lease_id is None) != (given.cursor is None):
            raise BadRequest("acknowledging by cursor needs both lease_id and cursor")
        if not given.ids and given.cursor is None:
            raise BadRequest("nothing to acknowledge: send ids, or lease_id and cursor")
        count = await run_in_threadpool(
            lambda: store.ack(
                system_id, ids=given.ids, lease_id=given.lease_id, cursor=given.cursor
            )
        )
        pending = await run_in_threadpool(store.pending, system_id)
        return JSONResponse(OutboxAcked(acknowledged=count, pending=pending).model_dump())

    refusals: dict[int | str, dict[str, Any]] = {
        k: v for k, v in REFUSALS.items() if k in (400, 401, 403, 413, 429)
    }
    security = security_requirement(system.auth)
    app_or_router.add_api_route(
        f"/systems/{system_id}/outbox",
        pull,
        methods=["GET"],
        name=f"{system_id}:outbox:pull",
        summary=f"{system.name_zh} ({system_id}) pulls its messages",
        description=(
            "Leases up to `limit` messages, oldest first. Acknowledge them before the lease "
            "expires, or they are handed out again."
        ),
        tags=[system_id],
        response_model=OutboxPull,
        responses=refusals,
        openapi_extra={"security": security},
    )
    app_or_router.add_api_route(
        f"/systems/{system_id}/outbox/ack",
        ack,
        methods=["POST"],
        name=f"{system_id}:outbox:ack",
        summary=f"{system.name_zh} ({system_id}) acknowledges pulled messages",
        description='Body: {"ids": [...]} or {"lease_id": ..., "cursor": seq}.',
        tags=[system_id],
        response_model=OutboxAcked,
        responses=refusals,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": OutboxAck.model_json_schema()}},
            },
            "security": security,
        },
    )
