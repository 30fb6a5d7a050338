"""A circuit breaker per target system: stop calling a target that keeps failing, try again later.

    closed ──(N consecutive transient failures)──▶ open ──(cool-down elapsed)──▶ half-open
      ▲                                                                            │
      └─────────────(a trial delivery succeeds)──────────(a trial fails: open again)┘

Built on pybreaker (thread-safe, listeners, success threshold) rather than written by hand. Only
`TransientDeliveryError` counts as a failure: a target that answers 4xx is up and judging the
content, so a permanent refusal counts as a sign of life. While the breaker is open `call` raises
`BreakerOpen` (itself transient) without calling the target; the worker then parks the message in
the bus's retry tiers instead of hammering a target that is down.

A message the breaker refused was not tried, so it must not spend a retry tier: otherwise a
target down for longer than the tiers span would see its messages dead-lettered without one
attempt, while only the breaker's trial deliveries ever reached it. The worker `postpone`s such a
message (`DeliveryFailed.untried`): it waits in its current tier and comes back with its attempts
unchanged. Checking instead that the tiers outlast the cool-down would not be enough: one trial
per cool-down reaches the target, and every other message would still use up its tiers uncalled.

pybreaker holds a lock around the guarded call, which would serialise a target's concurrent
deliveries (the worker delivers N at a time); so while the breaker is closed `call` runs the
delivery outside pybreaker and then counts its outcome through pybreaker's own call, given a
function that replays the outcome at once. Open and half-open go through pybreaker's own call:
refused at once, or one trial delivery at a time. Only pybreaker's public API is used: the
breaker's state storage is created here (its `opened_at` tells the time left), and a lock of the
wrapper makes "look at the state, then count" one step.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

import pybreaker
from pydantic import BaseModel, ConfigDict, Field

from adapters.errors import TransientDeliveryError

log = logging.getLogger("adapters.breaker")

T = TypeVar("T")


class BreakerState(StrEnum):
    """Where a breaker is; `level` orders them for a metrics gauge (0 closed .. 2 open)."""

    CLOSED = "closed"
    HALF_OPEN = "half-open"
    OPEN = "open"

    @property
    def level(self) -> int:
        return _LEVELS[self]


_LEVELS = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class BreakerOptions(BaseModel):
    """When a target's breaker opens and how it closes again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description=(
            "Consecutive transient failures (5xx, timeout, refused connection) that open the "
            "breaker; any success or permanent refusal resets the count."
        ),
    )
    cooldown_s: float = Field(
        default=30.0,
        gt=0,
        le=86400,
        description=(
            "Seconds the breaker stays open before it lets one trial delivery through "
            "(half-open). Messages arriving meanwhile go to the bus's retry tiers uncalled."
        ),
    )
    successes_to_close: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Successful trial deliveries in a row that close a half-open breaker.",
    )


class BreakerOpen(TransientDeliveryError):
    """The target's breaker is open: the delivery was not attempted.

    The message is the same whenever it is raised, so the reasons it ends up in (a dead letter's,
    a message's history) can be searched and grouped; the wait is a field of its own.

    Attributes:
      target: the target system.
      retry_in: seconds until the breaker lets a trial delivery through (0 when due now).
    """

    def __init__(self, target: str, retry_in: float) -> None:
        super().__init__(
            f"circuit breaker of target {target!r} is open after repeated transient failures; "
            "not calling it"
        )
        self.target = target
        self.retry_in = retry_in


StateListener = Callable[[str, BreakerState, BreakerState], None]
"""Called with (target, old state, new state) on every change, e.g. to update a gauge."""


class CircuitBreaker:
    """The breaker of one target system; share one instance among that target's deliveries."""

    def __init__(
        self,
        target: str,
        options: BreakerOptions | None = None,
        *,
        on_change: StateListener | None = None,
    ) -> None:
        self.target = target
        self.options = options or BreakerOptions()
        self._on_change = on_change
        # Held around every use of pybreaker that can count or change state, so that counting a
        # delivery run outside pybreaker sees the state it acts on (pybreaker's lock is private).
        self._lock = threading.RLock()
        # Created here rather than left to pybreaker, whose own is private: `retry_in` reads
        # its public `opened_at`, and a late outcome is counted on it (see `_count`).
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=self.options.failures,
            reset_timeout=self.options.cooldown_s,
            success_threshold=self.options.successes_to_close,
            exclude=[lambda error: not isinstance(error, TransientDeliveryError)],
            listeners=[_Listener(self)],
            state_storage=self._storage,
            name=target,
            # The caller needs the target's own error (status, detail) on the tripping call.
            throw_new_error_on_trip=False,
        )

    @property
    def state(self) -> BreakerState:
        """The state as last changed; an open breaker turns half-open at its next call once its
        cool-down has elapsed (see `retry_in`)."""
        return BreakerState(self._breaker.current_state)

    @property
    def consecutive_failures(self) -> int:
        return self._breaker.fail_counter

    def retry_in(self) -> float:
        """Seconds until an open breaker admits a trial delivery; 0 when it is not open."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        opened = self._storage.opened_at
        if opened is None:
            return 0.0
        elapsed = (datetime.now(UTC) - opened).total_seconds()
        return max(0.0, self.options.cooldown_s - elapsed)

    def call(self, deliver: Callable[[], T]) -> T:
        """Run `deliver` under the breaker; BreakerOpen when the breaker is open.

        Exceptions of `deliver` pass through unchanged (and TransientDeliveryError counts toward
        opening the breaker).
        """
        breaker = self._breaker
        if breaker.current_state == pybreaker.STATE_CLOSED:
            try:
                result = deliver()
            except BaseException as error:
                self._count(error)
                raise
            self._count(None)
            return result
        try:
            with self._lock:
                return breaker.call(deliver)
        except pybreaker.CircuitBreakerError:
            raise BreakerOpen(self.target, self.retry_in()) from None

    def _count(self, error: BaseException | None) -> None:
        """Count the outcome of a delivery that began while the breaker was closed.

        `error` is what the delivery raised, None when it succeeded. Closed or half-open (opened
        and tried meanwhile), pybreaker's own call counts it: a failure may open the breaker, a
        success may close a half-open one. Open (deliveries that finished first opened it), the
        outcome only updates the count: pybreaker's call would refuse it before the cool-down and
        take it for the trial after, but this delivery began before the breaker opened.
        """
        breaker = self._breaker
        with self._lock:
            if breaker.current_state != pybreaker.STATE_OPEN:
                # The outcome is known already: the replay returns or raises it at once, so
                # pybreaker's lock is never held for a delivery. pybreaker raises the error
                # again; the caller raises it itself, with the traceback the delivery gave it.
                traceback = error.__traceback__ if error is not None else None
                with contextlib.suppress(BaseException):
                    breaker.call(_replay, error)
                if error is not None:
                    error.__traceback__ = traceback
            elif error is not None and breaker.is_system_error(error):
                self._storage.increment_counter()
            else:
                self._storage.reset_counter()

    def reset(self) -> None:
        """Close the breaker by hand (an operator knows the target is back)."""
        with self._lock:
            self._breaker.close()

    def _changed(self, old: BreakerState, new: BreakerState) -> None:
        level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
        log.log(level, "circuit breaker of target %s: %s -> %s", self.target, old, new)
        if self._on_change is not None:
            self._on_change(self.target, old, new)


def _replay(error: BaseException | None) -> None:
    """Stand in for a delivery that has already run: raise its error, or return as it did."""
    if error is not None:
        raise error


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: CircuitBreaker) -> None:
        self._owner = owner

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = BreakerState(old_state.name) if old_state is not None else BreakerState.CLOSED
        self._owner._changed(old, BreakerState(new_state.name))
