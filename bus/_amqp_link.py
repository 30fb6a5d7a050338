"""One AMQP connection driven by its own I/O thread, reconnected with backoff until closed.

pika connections are not thread-safe, so every pika call of a link runs in the link's thread;
other threads hand work over with `AmqpLink.call` (pika's `add_callback_threadsafe`). Because
that thread never runs user code, heartbeats keep flowing however long a handler works.

Two parts ride on a link:

- `ConfirmedPublisher`: a confirm-mode channel with `mandatory=True` publishes; confirms are
  pipelined (a window of unconfirmed messages, acks matched by delivery tag, `multiple=True`
  acks honoured). A basic.return (no route) arrives before the ack of the same message and turns
  it into an "unroutable" outcome. Messages not yet confirmed when the connection drops are sent
  again after the reconnect, unless their caller gave up waiting. A message the broker can
  never take (properties larger than one frame, a body over its max_message_size) fails at
  once with the reason and is never sent: the broker would close the whole connection over it,
  and sending it again after each reconnect would stall every other publisher on the link.
  Callers are served in turns (`Outbox`), so one caller's thousands of messages do not queue
  ahead of another caller's one.
- `ConsumerFeed`: a channel with basic.qos and basic.consume whose deliveries go to a queue the
  consuming thread reads; settles come back in batches and contiguous acks are folded into one
  `multiple=True` ack.

A connection lost within `STABLE_AFTER_S` of opening counts as a failed attempt, so a broker
that keeps dropping the link (a frame it refuses, an overloaded node) is retried with the same
jittered, bounded backoff as one that does not answer, never in a tight loop.

A link given several nodes of a cluster tries them in turn: the first at the start, and after a
failed attempt or a lost connection the next one, so a node that died is not the one the link
waits for.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pika
import pika.connection
import pika.exceptions
from pika.adapters.select_connection import IOLoop
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from bus.message import header_bytes, header_bytes_at_most

log = logging.getLogger("bus.rabbitmq")

STABLE_AFTER_S = 10.0
"""Seconds a connection must stay open to count as a success; lost sooner, the next attempt
waits like after a failed one."""

FIRST_BACKOFF_S = 0.1
"""Wait after the first failed attempt; it doubles per attempt up to the link's max_backoff."""

FRAME_OVERHEAD = 8 + 14
"""Bytes of a content header frame besides the properties: frame header and end (8), class,
weight, body size and property flags (14)."""

# Reply codes with which RabbitMQ closes a connection over a frame the client sent.
_FRAME_REFUSALS = frozenset({501, 502, 505})  # FRAME_ERROR, SYNTAX_ERROR, UNEXPECTED_FRAME


class LinkListener(Protocol):
    """A part of a link told when its connection opens and when it is lost (in the I/O thread)."""

    def link_opened(self, connection: Any) -> None: ...

    def link_lost(self, reason: str) -> None: ...


class _OpenFailed(Exception):
    """A connection attempt failed, or its connection was lost soon after opening (tenacity
    retries on it, with backoff)."""


class AmqpLink:
    """A pika SelectConnection owned by one thread, reopened with exponential backoff.

    Parameters:
      parameters: pika connection parameters (host, credentials, heartbeat, timeouts), or a
        sequence of them, one per node of a cluster, tried in turn.
      name: shown in the thread name and in the broker's connection list.
      max_backoff: longest wait in seconds between two connection attempts; the waits grow
        from FIRST_BACKOFF_S, doubling, half of each random, so many clients cut off at once
        do not come back at once.
      give_up_after: seconds of failed attempts in a row after which the link gives up
        (`failed` is set, `error` says why); None keeps trying until closed.

    What it tells about its connection: `connected` (set while open), `error` (why it is not),
    `blocked` (why the broker holds its publishes back, e.g. a memory alarm; "" when not),
    `refused` (the broker closed it over a frame it would not take; "" when not), `frame_max`
    (the largest frame the broker takes, as last negotiated).
    """

    def __init__(
        self,
        parameters: pika.connection.Parameters | Sequence[pika.connection.Parameters],
        *,
        name: str,
        max_backoff: float = 5.0,
        give_up_after: float | None = None,
    ) -> None:
        self.name = name
        self._nodes = (
            [parameters] if isinstance(parameters, pika.connection.Parameters) else list(parameters)
        )
        if not self._nodes:
            raise ValueError(f"link {name}: no connection parameters given")
        self._next_node = 0
        self._max_backoff = max_backoff
        self._give_up_after = give_up_after
        self._listeners: list[LinkListener] = []
        self._ioloop = IOLoop()
        self._connection: Any = None
        self._opened_this_attempt = False
        self._closing = threading.Event()
        self._finished = threading.Event()
        self.connected = threading.Event()
        self.failed = threading.Event()
        self.error = ""
        self.blocked = ""
        self.refused = ""
        self.frame_max: int = self._nodes[0].frame_max
        self.node = ""  # host:port of the node of the last connection attempt
        self.opened_count = 0
        self._opened_at = 0.0
        self._thread = threading.Thread(target=self._run, name=f"jghub-amqp-{name}", daemon=True)

    def add_listener(self, listener: LinkListener) -> None:
        """Register a part before `start` (or from the I/O thread)."""
        self._listeners.append(listener)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return not (self._finished.is_set() or self._closing.is_set())

    def call(self, callback: Callable[[], None]) -> None:
        """Run `callback` in the I/O thread soon; callbacks run in the order they were handed."""
        if self._finished.is_set():
            return
        try:
            self._ioloop.add_callback_threadsafe(callback)
        except (OSError, ValueError, AttributeError):
            # The I/O thread closed its loop between the check and the call: nothing to run.
            log.debug("link %s: dropped a callback after the link ended", self.name)

    def later(self, callback: Callable[[], None]) -> None:
        """From the I/O thread: run `callback` once the current I/O events are handled."""
        self._ioloop.call_later(0, callback)

    def close(self, timeout: float = 10.0) -> None:
        """Close the connection (after callbacks already handed over) and end the thread."""
        if not self._closing.is_set():
            self._closing.set()
            self.call(self._close_in_loop)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # --- the I/O thread

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                if not self._connect_until_lost():
                    break
        except Exception as exc:  # pragma: no cover - a bug in a listener; keep it visible
            log.exception("link %s: I/O thread crashed", self.name)
            self.error = f"I/O thread crashed: {exc!r}"
            self.failed.set()
        finally:
            self.connected.clear()
            self._finished.set()
            if not self.failed.is_set() and not self._closing.is_set():  # pragma: no cover
                self.failed.set()
            for listener in list(self._listeners):
                try:
                    listener.link_lost(self.error or "link closed")
                except Exception:  # pragma: no cover
                    log.exception("link %s: listener failed on close", self.name)
            self._ioloop.close()

    def _connect_until_lost(self) -> bool:
        """Open a connection (retrying with backoff) and serve it until it is lost.

        False when the link should end: it is closing, or it gave up.
        """
        stop: stop_base = stop_when_event_set(self._closing)
        if self._give_up_after is not None:
            stop = stop | stop_after_delay(self._give_up_after)
        # Equal jitter: half of each wait fixed, half random; both halves bounded.
        half = self._max_backoff / 2
        retrying = Retrying(
            retry=retry_if_exception_type(_OpenFailed),
            wait=wait_exponential(multiplier=FIRST_BACKOFF_S / 2, max=half)
            + wait_random_exponential(multiplier=FIRST_BACKOFF_S / 2, max=half),
            stop=stop,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            retrying(self._serve_one_connection)
        except _OpenFailed:
            if not self._closing.is_set():
                log.error("link %s: giving up on the broker: %s", self.name, self.error)
                self.failed.set()
            return False
        return not self._closing.is_set()

    def _sleep(self, seconds: float) -> None:
        # Wait between attempts, but wake at once when the link is closed.
        self._closing.wait(seconds)

    def _log_retry(self, state: RetryCallState) -> None:
        log.warning(
            "link %s: no usable connection to the broker (attempt %d): %s; retrying in %.2f s",
            self.name,
            state.attempt_number,
            self.error,
            state.next_action.sleep if state.next_action else 0.0,
        )

    def _serve_one_connection(self) -> None:
        if self._closing.is_set():
            return
        self._opened_this_attempt = False
        parameters = self._nodes[self._next_node % len(self._nodes)]
        # The next attempt (after a failure, or after this connection is lost) goes to the next
        # node: the one just tried may be the one that died.
        self._next_node += 1
        self.node = f"{parameters.host}:{parameters.port}"
        self._connection = pika.SelectConnection(
            parameters,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
            custom_ioloop=self._ioloop,
        )
        self._ioloop.start()
        self._connection = None
        if self._closing.is_set():
            return
        if not self._opened_this_attempt:
            raise _OpenFailed(self.error)
        if time.monotonic() - self._opened_at < STABLE_AFTER_S:
            # Lost soon after it opened: reconnecting at once would loop as fast as the broker
            # can refuse (it did, ~100 times a second, over a frame it would not take).
            raise _OpenFailed(self.error)

    def _on_open(self, connection: Any) -> None:
        self._opened_this_attempt = True
        self._opened_at = time.monotonic()
        self.opened_count += 1
        self.error = self.blocked = self.refused = ""
        self.frame_max = int(connection.params.frame_max)
        if self.opened_count > 1:
            log.warning("link %s: reconnected to the broker at %s", self.name, self.node)
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        self.connected.set()
        if self._closing.is_set():
            connection.close()
            return
        for listener in list(self._listeners):
            listener.link_opened(connection)

    def _on_blocked(self, _connection: Any, frame: Any) -> None:
        self.blocked = str(getattr(frame.method, "reason", "") or "the broker blocks publishing")
        log.warning("link %s: the broker blocks publishing: %s", self.name, self.blocked)

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        self.blocked = ""
        log.warning("link %s: the broker takes publishes again", self.name)

    def _on_open_error(self, _connection: Any, error: BaseException | str) -> None:
        self.error = f"cannot connect to {self.node}: {error!r}"
        self._ioloop.stop()

    def _on_closed(self, _connection: Any, reason: BaseException) -> None:
        self.connected.clear()
        self.blocked = ""
        if (
            isinstance(reason, pika.exceptions.ConnectionClosedByBroker)
            and reason.reply_code in _FRAME_REFUSALS
        ):
            self.refused = repr(reason)
        if not self._closing.is_set():
            self.error = f"connection to {self.node} lost: {reason!r}"
            log.warning("link %s: %s", self.name, self.error)
        for listener in list(self._listeners):
            listener.link_lost(repr(reason))
        self._ioloop.stop()

    def _close_in_loop(self) -> None:
        connection = self._connection
        if connection is None:
            self._ioloop.stop()
            return
        try:
            connection.close()
        except pika.exceptions.ConnectionWrongStateError:
            # Still opening or already closing: the close/open-error callback stops the loop;
            # if neither is coming, stop it now.
            if connection.is_closed:
                self._ioloop.stop()


# --- publishing with confirms


@dataclass(frozen=True)
class Outcome:
    """What became of one published message: confirmed (ok) or why not."""

    ok: bool
    reason: str = ""
    unroutable: bool = False


CONFIRMED = Outcome(ok=True)
_PENDING = Outcome(ok=False, reason="not confirmed in time")


class PublishBatch:
    """Outcomes of the messages one caller handed over, filled in by the I/O thread."""

    __slots__ = ("cancelled", "done", "outcomes", "remaining")

    def __init__(self, size: int) -> None:
        self.outcomes: list[Outcome] = [_PENDING] * size
        self.remaining = size
        self.done = threading.Event()
        # Set by the caller when it stops waiting: its messages are then neither sent nor sent
        # again after a reconnect (the caller was told they failed).
        self.cancelled = False
        if size == 0:
            self.done.set()

    def resolve(self, index: int, outcome: Outcome) -> None:
        if self.outcomes[index] is _PENDING:
            self.outcomes[index] = outcome
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()


class PendingPublish:
    """One message on its way: where to, what, and whose batch it belongs to."""

    __slots__ = (
        "batch",
        "body",
        "exchange",
        "index",
        "message_id",
        "properties",
        "returned",
        "routing_key",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Any,
        batch: PublishBatch,
        index: int,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.body = body
        self.properties = properties
        self.message_id: str = properties.message_id
        self.batch = batch
        self.index = index
        self.returned = False


HANDOVER_CHUNK = 256
"""Messages a publishing thread hands to the I/O thread at a time."""

FAIR_SHARE = 64
"""Messages of one caller sent in a row while other callers' messages wait (see Outbox)."""

Publication = tuple[str, str, bytes, Any]
"""(exchange, routing key, body, pika BasicProperties with message_id set)."""


class Outbox:
    """What waits to be sent: one queue per caller's batch, served in turns.

    Publishing threads add; the I/O thread takes up to FAIR_SHARE messages of the first batch,
    then puts that batch at the back. A caller with 10,000 messages waiting thus delays another
    caller's one message by a share per batch waiting, not by all of its own messages: one
    system's large payload does not hold back another system's push on the shared publisher.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: OrderedDict[PublishBatch, deque[PendingPublish]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._queues)

    def __len__(self) -> int:
        """Messages waiting, of every batch."""
        with self._lock:
            return sum(len(waiting) for waiting in self._queues.values())

    def add(self, entries: Sequence[PendingPublish]) -> None:
        """Add `entries`, all of one batch, behind what that batch has waiting."""
        batch = entries[0].batch
        with self._lock:
            waiting = self._queues.get(batch)
            if waiting is None:
                self._queues[batch] = deque(entries)
            else:
                waiting.extend(entries)

    def take(self, most: int) -> list[PendingPublish]:
        """Up to `most` entries of the batch whose turn it is ([] when nothing waits)."""
        with self._lock:
            while self._queues:
                batch, waiting = next(iter(self._queues.items()))
                if batch.cancelled:
                    del self._queues[batch]  # its caller stopped waiting: nothing goes out
                    continue
                share = [waiting.popleft() for _ in range(min(most, len(waiting)))]
                if waiting:
                    self._queues.move_to_end(batch)
                else:
                    del self._queues[batch]
                return share
            return []

    def put_back(self, entries: Iterable[PendingPublish]) -> None:
        """Entries to send first again, in their order (not sent, or not confirmed before the
        connection dropped)."""
        by_batch: dict[PublishBatch, list[PendingPublish]] = {}
        for entry in entries:
            if not entry.batch.cancelled:
                by_batch.setdefault(entry.batch, []).append(entry)
        with self._lock:
            for batch, group in reversed(by_batch.items()):
                waiting = self._queues.setdefault(batch, deque())
                waiting.extendleft(reversed(group))
                self._queues.move_to_end(batch, last=False)

    def drain(self) -> list[PendingPublish]:
        """Everything waiting, removed."""
        with self._lock:
            entries = [entry for waiting in self._queues.values() for entry in waiting]
            self._queues.clear()
        return entries


class ConfirmedPublisher:
    """Publishes with confirms and mandatory=True on one channel of a link.

    Parameters:
      link: the link it rides on (it registers itself as a listener).
      window: most messages sent but not yet confirmed; more wait in the outbox (one queue per
        caller, served in turns: `Outbox`), which keeps memory bounded and the socket from
        filling with messages the broker cannot take yet.
      max_message_bytes: the broker's max_message_size: a longer body fails at once.

    A basic.nack fails the messages it names, and the publisher goes on on a new channel: after
    the leader of a quorum queue died, RabbitMQ (seen on 3.10) went on nacking every publish of
    a channel that had sent to it — for minutes — while a channel opened a moment later had its
    publishes confirmed.
    """

    def __init__(
        self, link: AmqpLink, *, window: int = 2000, max_message_bytes: int | None = None
    ) -> None:
        self._link = link
        self._window = window
        self._max_message_bytes = max_message_bytes
        self._outbox = Outbox()
        self._inflight: OrderedDict[int, PendingPublish] = OrderedDict()
        self._channel: Any = None
        self._next_tag = 1
        self._renewing: Any = None  # the channel being closed to be replaced after a nack
        link.add_listener(self)

    def publish(
        self, publications: Iterable[Publication], count: int, timeout: float
    ) -> list[Outcome]:
        """Send the `count` `publications` and wait up to `timeout` seconds for their confirms.

        `publications` may be a generator: they are handed to the I/O thread in chunks as they
        come, so the broker already stores the first ones while the caller builds the rest.
        """
        batch = PublishBatch(count)
        if count == 0:
            return []
        if not self._link.alive:
            deque(publications, maxlen=0)  # a generator may record what it yields: let it
            reason = f"broker unavailable: {self._link.error or 'the connection is closed'}"
            return [Outcome(ok=False, reason=reason)] * count
        outbox = self._outbox
        chunk: list[PendingPublish] = []
        for index, (exchange, routing_key, body, properties) in enumerate(publications):
            unsendable = self._unsendable(body, properties)
            if unsendable:
                batch.resolve(index, Outcome(ok=False, reason=unsendable))
                continue
            chunk.append(PendingPublish(exchange, routing_key, body, properties, batch, index))
            if len(chunk) >= HANDOVER_CHUNK:
                outbox.add(chunk)
                self._link.call(self._pump)
                chunk = []
        if chunk:
            outbox.add(chunk)
            self._link.call(self._pump)
        if not batch.done.wait(timeout):
            batch.cancelled = True
        outcomes = list(batch.outcomes)
        if not batch.done.is_set() and not self._link.alive:
            reason = f"broker unavailable: {self._link.error or 'the connection is closed'}"
            outcomes = [o if o is not _PENDING else Outcome(False, reason) for o in outcomes]
        elif not batch.done.is_set():
            reason = f"not confirmed within {timeout:g} s"
            if not self._link.connected.is_set():
                reason += f" (no connection: {self._link.error or 'reconnecting'})"
            outcomes = [o if o is not _PENDING else Outcome(False, reason) for o in outcomes]
        return outcomes

    def _unsendable(self, body: bytes, properties: Any) -> str:
        """Why the broker could never take this message ("" when it could)."""
        limit = self._max_message_bytes
        if limit is not None and len(body) > limit:
            return (
                f"the message body has {len(body)} bytes, more than the broker's "
                f"max_message_size of {limit} bytes; it was not sent"
            )
        room = self._link.frame_max - FRAME_OVERHEAD
        if properties_bytes(properties, at_most=True) <= room:
            return ""
        size = properties_bytes(properties)
        if size > room:
            return (
                f"the message's properties (its headers) take {size} bytes, more than the "
                f"{room} one AMQP frame holds (frame_max {self._link.frame_max}); the broker "
                "would close the connection over it, so it was not sent"
            )
        return ""

    # --- I/O thread

    def link_opened(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def link_lost(self, reason: str) -> None:
        self._channel = None
        self._renewing = None
        if self._link.refused:
            # The broker closed the connection over a frame it would not take: what was in
            # flight would be sent again first and close the next connection too.
            self._fail_inflight(f"the broker refused what was sent: {self._link.refused}")
        self._requeue_inflight()
        if not self._link.alive:
            # The link ended for good: nobody will send what waits; tell the callers now.
            for entry in self._outbox.drain():
                entry.batch.resolve(entry.index, Outcome(False, f"broker unavailable: {reason}"))

    def _on_channel_open(self, channel: Any) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm, callback=lambda _frame: self._ready(channel))

    def _ready(self, channel: Any) -> None:
        self._channel = channel
        self._next_tag = 1
        self._pump()

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        if channel is self._renewing:
            # Closed by us after a nack, once settled (or by the broker before): what it had
            # not confirmed, if anything, goes first on the new one.
            self._renewing = None
            self._requeue_inflight()
            connection = channel.connection
            if self._channel is None and connection is not None and connection.is_open:
                connection.channel(on_open_callback=self._on_channel_open)
            return
        if self._channel is not None and channel is not self._channel:
            return
        self._channel = None
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            # The broker closed this channel over something we sent (e.g. an exchange that does
            # not exist): sending the same again would close the next channel too.
            log.error("publisher channel closed by the broker: %r", reason)
            self._fail_inflight(f"broker refused: {reason}")
            connection = channel.connection
            if connection is not None and connection.is_open:
                connection.channel(on_open_callback=self._on_channel_open)
        elif not isinstance(reason, pika.exceptions.AMQPConnectionError):
            # A lost connection closes its channels first; link_lost then decides what becomes
            # of the messages in flight (sent again, or failed if the broker refused them).
            self._requeue_inflight()

    def _fail_inflight(self, reason: str) -> None:
        for entry in self._inflight.values():
            entry.batch.resolve(entry.index, Outcome(False, reason))
        self._inflight.clear()

    def _requeue_inflight(self) -> None:
        # Unconfirmed messages go back to the head of the outbox, in the order they were sent.
        survivors = [e for e in self._inflight.values() if not e.batch.cancelled]
        self._inflight.clear()
        self._outbox.put_back(survivors)
        if survivors:
            log.warning(
                "link %s: %d messages were not confirmed before the connection dropped; "
                "they will be sent again (duplicates are possible)",
                self._link.name,
                len(survivors),
            )

    def _pump(self) -> None:
        channel = self._channel
        if channel is None:
            return
        outbox = self._outbox
        inflight = self._inflight
        window = self._window
        publish = channel.basic_publish
        tag = self._next_tag
        try:
            while len(inflight) < window:
                share = outbox.take(min(FAIR_SHARE, window - len(inflight)))
                if not share:
                    break
                for position, entry in enumerate(share):
                    try:
                        publish(
                            entry.exchange, entry.routing_key, entry.body, entry.properties, True
                        )
                    except (
                        pika.exceptions.ChannelWrongStateError,
                        pika.exceptions.ConnectionWrongStateError,
                    ):
                        outbox.put_back(share[position:])
                        raise
                    except Exception as error:
                        # pika could not encode it (it encodes before writing, so nothing went
                        # out): it would fail the same way every time, so it fails now.
                        reason = f"cannot be sent: {error!r}"
                        entry.batch.resolve(entry.index, Outcome(False, reason))
                        continue
                    inflight[tag] = entry
                    tag += 1
        except (pika.exceptions.ChannelWrongStateError, pika.exceptions.ConnectionWrongStateError):
            log.debug("publisher channel not open; keeping the outbox for the next channel")
        finally:
            self._next_tag = tag

    def _on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        # Returns carry no delivery tag; they come before the ack of the same message and in
        # publish order, so the oldest unconfirmed message with this id is the one returned.
        message_id = properties.message_id
        for entry in self._inflight.values():
            if not entry.returned and entry.message_id == message_id:
                entry.returned = True
                return
        log.warning("basic.return for message %s, which is not in flight", message_id)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        tag = method.delivery_tag
        inflight = self._inflight
        if method.multiple:
            while inflight:
                first = next(iter(inflight))
                if first > tag:
                    break
                self._settle(inflight.pop(first), acked)
        else:
            entry = inflight.pop(tag, None)
            if entry is not None:
                self._settle(entry, acked)
        if not acked:
            self._renew_channel()
        if self._renewing is not None:
            self._close_renewed_once_settled()
        elif self._outbox:
            self._pump()

    def _renew_channel(self) -> None:
        """Send nothing more on the channel that had a nack, and replace it once everything it
        has in flight is settled (see the class docstring): closed with messages in flight, it
        would have them sent again on the next channel, and those the broker took doubled."""
        channel = self._channel
        if channel is None or not channel.is_open or self._renewing is not None:
            return
        log.warning(
            "link %s: the broker nacked a publish; going on on a new channel", self._link.name
        )
        self._channel = None  # nothing more is sent on it
        self._renewing = channel

    def _close_renewed_once_settled(self) -> None:
        channel = self._renewing
        if channel is not None and not self._inflight and channel.is_open:
            channel.close()  # _on_channel_closed opens the next one

    @staticmethod
    def _settle(entry: PendingPublish, acked: bool) -> None:
        if not acked:
            outcome = Outcome(False, "the broker refused the message (basic.nack)")
        elif entry.returned:
            outcome = Outcome(False, "no route matches the routing key", unroutable=True)
        else:
            outcome = CONFIRMED
        entry.batch.resolve(entry.index, outcome)


def properties_bytes(properties: Any, *, at_most: bool = False) -> int:
    """The encoded size of pika BasicProperties (an upper bound: numbers count their largest
    size); with `at_most`, a cheaper and looser bound (`header_bytes_at_most`)."""
    size = 2 + 8 * 3  # property flags; delivery mode, priority, timestamp at most
    for value in (
        properties.content_type,
        properties.content_encoding,
        properties.correlation_id,
        properties.reply_to,
        properties.expiration,
        properties.message_id,
        properties.type,
        properties.user_id,
        properties.app_id,
        properties.cluster_id,
    ):
        if value:
            size += 1 + len(str(value).encode())
    headers = properties.headers
    if not headers:
        return size
    return size + (header_bytes_at_most(headers) if at_most else header_bytes(headers))


# --- consuming


@dataclass(frozen=True, slots=True)
class Incoming:
    """A delivery as the I/O thread hands it over: raw, decoded by the consuming thread."""

    generation: int
    delivery_tag: int
    redelivered: bool
    routing_key: str
    properties: Any
    body: bytes


Settle = tuple[bool, int]
"""(True to ack / False to nack with requeue, delivery tag)."""


class ConsumerFeed:
    """basic.consume on one queue of a link; deliveries land in `inbox` for the consuming thread.

    Deliveries go over in lists: all those one read from the socket produced, handed over once
    the I/O thread has decoded them, so the consuming thread wakes once per read rather than once
    per message.

    Each (re)opened channel gets a new generation number; deliveries and settles carry the
    generation they belong to, and settles for an older channel are dropped (the broker has
    already given those messages back to the queue).

    Parameters:
      link: the link it rides on.
      queue_name: the queue to consume.
      prefetch: basic.qos prefetch count: most unsettled deliveries the broker hands over.
    """

    def __init__(self, link: AmqpLink, queue_name: str, prefetch: int) -> None:
        self._link = link
        self._queue_name = queue_name
        self._prefetch = prefetch
        self.inbox: queue.SimpleQueue[list[Incoming]] = queue.SimpleQueue()
        self._arrived: list[Incoming] = []
        self.generation = 0
        self.fatal = ""
        self._channel: Any = None
        self._unsettled: deque[int] = deque()
        self._stopping = False
        link.add_listener(self)

    def settle(self, generation: int, settles: Sequence[Settle]) -> None:
        """Hand settles over to the I/O thread (they are applied there, in order)."""
        if settles:
            self._link.call(lambda: self._apply(generation, settles))

    def stop(self) -> None:
        """Cancel the consumer; unsettled deliveries go back when the link closes."""
        self._link.call(self._cancel)

    # --- I/O thread

    def link_opened(self, connection: Any) -> None:
        if not self._stopping:
            connection.channel(on_open_callback=self._on_channel_open)

    def link_lost(self, reason: str) -> None:
        self._channel = None
        self._unsettled.clear()

    def _on_channel_open(self, channel: Any) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_cancel_callback(self._on_cancelled)
        channel.basic_qos(
            prefetch_count=self._prefetch, callback=lambda _frame: self._subscribe(channel)
        )

    def _subscribe(self, channel: Any) -> None:
        self.generation += 1
        self._channel = channel
        self._unsettled.clear()
        channel.basic_consume(self._queue_name, self._on_message, auto_ack=False)

    def _on_message(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        tag = method.delivery_tag
        self._unsettled.append(tag)
        if not self._arrived:
            # Runs after the I/O loop has handled the rest of this read.
            self._link.later(self._hand_over)
        self._arrived.append(
            Incoming(self.generation, tag, method.redelivered, method.routing_key, properties, body)
        )

    def _hand_over(self) -> None:
        arrived, self._arrived = self._arrived, []
        if arrived:
            self.inbox.put(arrived)

    def _on_cancelled(self, _frame: Any) -> None:
        # The broker cancelled the consumer (the queue was deleted, or it moved): reopen the
        # channel; if the queue is gone the new basic.consume fails and `fatal` says so.
        log.warning("consumer of %s cancelled by the broker; subscribing again", self._queue_name)
        channel = self._channel
        self._channel = None
        if channel is not None and channel.is_open:
            channel.close()

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        if channel is self._channel:
            self._channel = None
        self._unsettled.clear()
        connection = channel.connection
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            if reason.reply_code == 404:
                self.fatal = f"queue {self._queue_name!r} does not exist: {reason.reply_text}"
                return
            log.error("consumer channel of %s closed by the broker: %r", self._queue_name, reason)
        if (
            not self._stopping
            and self._link.alive
            and connection is not None
            and connection.is_open
        ):
            connection.channel(on_open_callback=self._on_channel_open)

    def _apply(self, generation: int, settles: Sequence[Settle]) -> None:
        channel = self._channel
        if channel is None or generation != self.generation or not channel.is_open:
            log.debug("dropping %d settles of an old channel: redelivered anyway", len(settles))
            return
        unsettled = self._unsettled
        acks = {tag for ack, tag in settles if ack}
        # Fold the acks at the head of the unsettled deliveries into one multiple=True ack;
        # acks behind a still-unsettled delivery must go one by one.
        last = 0
        while unsettled and unsettled[0] in acks:
            last = unsettled.popleft()
            acks.discard(last)
        if last:
            channel.basic_ack(last, multiple=True)
        for tag in sorted(acks):
            channel.basic_ack(tag)
            self._forget(tag)
        for ack, tag in settles:
            if not ack:
                channel.basic_nack(tag, requeue=True)
                self._forget(tag)

    def _forget(self, tag: int) -> None:
        with contextlib.suppress(ValueError):
            self._unsettled.remove(tag)

    def _cancel(self) -> None:
        self._stopping = True
        channel = self._channel
        if channel is not None and channel.is_open:
            for consumer_tag in channel.consumer_tags:
                channel.basic_cancel(consumer_tag)
