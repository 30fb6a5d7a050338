"""The outbox: messages for pull-only systems, pulled under a lease and acknowledged.

The worker's `outbox` sender writes each rendered payload into an `OutboxStore`; the system pulls
them over HTTP and acknowledges what it processed:

    GET  /systems/{id}/outbox?limit=100    → a lease: its id, expiry, cursor and the messages
    POST /systems/{id}/outbox/ack          {"ids": [...]} or {"lease_id": "...", "cursor": 42}

A pulled message is leased to the puller for `lease_s` seconds; what is not acknowledged by then
is handed out again (at-least-once: the system drops duplicates by the idempotency key each
message carries). Messages come out in the order they were written (their `seq`); acknowledging
by cursor acknowledges every message of that lease up to and including that seq.

`SqliteOutbox` keeps the outbox in one SQLite file in the hub's data folder (WAL mode), shared
by the `serve` and `worker` processes of one machine. Past one machine the same interface fits a
shared database (PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED` for the lease) or one RabbitMQ
queue per pulling system consumed with manual acks and a consumer timeout as the lease.
"""

from __future__ import annotations

import base64
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.concurrency import run_in_threadpool

from adapters.base import AdapterContext, Closeable, Sender
from adapters.errors import AdapterConfigError, BadRequest, TransientDeliveryError
from adapters.protocols.http_push import REFUSALS
from systems import SystemConfig

if TYPE_CHECKING:
    from adapters.security import Gatekeeper
    from standard.envelope import Envelope

OUTBOX_FILE = "outbox.sqlite3"
MAX_PULL = 1000
SQLITE_MAX_INTEGER = 2**63 - 1


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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    system TEXT NOT NULL,
    message_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    dataset TEXT,
    subject TEXT,
    created_at REAL NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    lease_id TEXT,
    lease_until REAL,
    acked_at REAL,
    UNIQUE (system, idempotency_key)
);
CREATE INDEX IF NOT EXISTS outbox_ready ON outbox (system, acked_at, seq);
CREATE INDEX IF NOT EXISTS outbox_lease ON outbox (lease_id);
"""


class SqliteOutbox(OutboxStore):
    """The outbox in one SQLite file (WAL), shared by the processes of one machine.

    Parameters:
      path: the SQLite file; its folder is created.
      retention_s: how long acknowledged messages are remembered, so that the same idempotency
        key written again (a replayed dead letter, a redelivery) is not handed out twice.
      clock: epoch seconds; replaceable for tests.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        retention_s: float = 7 * 86400,
        clock: Any = time.time,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retention_s = retention_s
        self._clock = clock
        self._lock = threading.Lock()
        self._puts = 0
        # One connection guarded by a lock: the work per call is tiny, and SQLite serialises
        # writers anyway; other processes wait on busy_timeout.
        self._db = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._closed = False

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
        with self._lock:
            self._check_open()
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO outbox (system, message_id, idempotency_key, "
                "content_type, body, dataset, subject, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    system,
                    message_id,
                    idempotency_key,
                    content_type,
                    bytes(body),
                    dataset,
                    subject,
                    self._clock(),
                ),
            )
            self._puts += 1
            if self._puts % 1000 == 0:
                self._db.execute(
                    "DELETE FROM outbox WHERE acked_at IS NOT NULL AND acked_at < ?",
                    (self._clock() - self.retention_s,),
                )
            return cursor.rowcount == 1

    def pull(self, system: str, *, limit: int, lease_s: float) -> OutboxLease:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        lease_id = uuid.uuid4().hex
        with self._lock:
            self._check_open()
            now = self._clock()
            until = now + lease_s
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT seq FROM outbox WHERE system = ? AND acked_at IS NULL "
                    "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY seq LIMIT ?",
                    (system, now, limit),
                ).fetchall()
                seqs = [row[0] for row in rows]
                self._db.executemany(
                    "UPDATE outbox SET lease_id = ?, lease_until = ?, deliveries = deliveries + 1 "
                    "WHERE seq = ?",
                    [(lease_id, until, seq) for seq in seqs],
                )
                items = [
                    _item(row)
                    for row in self._db.execute(
                        "SELECT seq, system, message_id, idempotency_key, content_type, body, "
                        "dataset, subject, created_at, deliveries FROM outbox WHERE lease_id = ? "
                        "ORDER BY seq",
                        (lease_id,),
                    )
                ]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
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
        with self._lock:
            self._check_open()
            now = self._clock()
            count = 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for chunk_start in range(0, len(ids), 500):
                    chunk = list(ids[chunk_start : chunk_start + 500])
                    marks = ",".join("?" * len(chunk))
                    count += self._db.execute(
                        f"UPDATE outbox SET acked_at = ?, lease_id = NULL, lease_until = NULL "
                        f"WHERE system = ? AND acked_at IS NULL AND message_id IN ({marks})",
                        (now, system, *chunk),
                    ).rowcount
                if lease_id is not None and cursor is not None:
                    count += self._db.execute(
                        "UPDATE outbox SET acked_at = ?, lease_id = NULL, lease_until = NULL "
                        "WHERE system = ? AND acked_at IS NULL AND lease_id = ? AND seq <= ?",
                        (now, system, lease_id, cursor),
                    ).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return count

    def pending(self, system: str) -> int:
        with self._lock:
            self._check_open()
            row = self._db.execute(
                "SELECT count(*) FROM outbox WHERE system = ? AND acked_at IS NULL", (system,)
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the outbox {self.path} is closed")


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


_stores: dict[Path, SqliteOutbox] = {}
_stores_lock = threading.Lock()


def shared_outbox(data_dir: Path) -> SqliteOutbox:
    """The process's one store for `data_dir` (senders of several systems share it)."""
    path = (data_dir / OUTBOX_FILE).resolve()
    with _stores_lock:
        store = _stores.get(path)
        if store is None or store._closed:
            store = _stores[path] = SqliteOutbox(path)
        return store


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

    @classmethod
    def mount_target_routes(
        cls, app_or_router: FastAPI | APIRouter, context: AdapterContext
    ) -> Closeable | None:
        """The system's pull and ack endpoints, on the outbox file in the data folder."""
        store = SqliteOutbox(context.data_dir / OUTBOX_FILE)
        mount_outbox(
            app_or_router,
            context.system,
            store,
            context.require_gatekeeper(cls.name),
            lease_s=context.pull_lease_s,
        )
        return store

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
        store = shared_outbox(self.context.data_dir)
        system = self.system.id
        try:
            if store.pending(system) >= options.max_pending:
                raise TransientDeliveryError(
                    f"the outbox of {system} holds {options.max_pending} unacknowledged messages "
                    "(max_pending); waiting for the system to pull"
                )
            store.put(
                system,
                message_id=envelope.id,
                idempotency_key=idempotency_key,
                body=body,
                content_type=content_type,
                dataset=envelope.spec.name,
                subject=envelope.subject,
            )
        except sqlite3.Error as error:
            raise TransientDeliveryError(f"the outbox cannot be written: {error}") from error


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
            }
        },
    )
