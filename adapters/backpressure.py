"""Back-pressure at ingress: refuse payloads bound for a target whose queue is above its mark.

A slow or stopped target makes its queue grow; without a limit the broker's disk and memory take
whatever the senders push, and the hub falls over long after the target did. `BackPressure` keeps
the ready count the broker last reported for each target (`Broker.queue_stats_many`, read again
every `refresh_s` by a background thread, so no request waits for the broker) and `Ingress.accept`
asks it before publishing:

    back_pressure.check(routing_keys)   # IngressOverloaded when one of their targets is full

The push adapters answer that with HTTP 503 and Retry-After (a SOAP Server fault, subcode
BackPressure, over HTTP 503); the worker's pollers treat it as any IngressUnavailable: the page
is not handed over, the cursor stays, and they poll the same page again after their backoff. The
per-system rate limit is a different refusal (429: that system sends too fast), not this one
(503: the hub is behind on a target, whoever sends).

Which targets a payload reaches: its routing keys ("dataset.region.source") are known only after
translation, since the region word comes from each record. So the check runs after translating
and before publishing, and routes the keys through the topology's bindings as the broker will.
A payload is refused whole when any of its records would land in a target above its mark; none of
its records is published, so the sender can send the same payload again after Retry-After, with
no duplicates and no gaps. The price of this rule is that a refused payload was translated for
nothing; in exchange only the senders that feed the full target are held back, not everyone.

The counts are up to `refresh_s` old, so a queue can pass its mark by what ingress publishes in
that time: the mark bounds the backlog give or take one refresh interval of traffic. When the
counts cannot be read (the broker is away), the last ones read stay in force; publishing fails on
its own then.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from adapters.errors import IngressOverloaded
from bus import Broker, BusError, Topology
from bus.routing import RoutingTable

log = logging.getLogger("adapters.backpressure")

DEFAULT_MAX_READY = 50_000
"""Ready messages in one target's queue above which payloads for it are refused."""


class BackPressure:
    """High-water marks per target, checked against queue counts read in the background.

    Parameters:
      topology: the declared topology: its targets, and the routes that say which messages
        reach each.
      max_ready: ready messages in a target's queue above which payloads that would reach it
        are refused; 0 turns back-pressure off. Default DEFAULT_MAX_READY (50,000): at a few
        kilobytes a message, a backlog the broker holds comfortably, and hours of a department
        system's traffic.
      refresh_s: seconds between two reads of the queue counts (default 1).
      retry_after_s: seconds the refusal's Retry-After asks the sender to wait (default 5).
    """

    def __init__(
        self,
        topology: Topology,
        *,
        max_ready: int = DEFAULT_MAX_READY,
        refresh_s: float = 1.0,
        retry_after_s: int = 5,
    ) -> None:
        if max_ready < 0 or refresh_s <= 0 or retry_after_s < 1:
            raise ValueError(
                f"back-pressure needs max_ready >= 0, refresh_s > 0 and retry_after_s >= 1 "
                f"(got {max_ready}, {refresh_s}, {retry_after_s})"
            )
        self.max_ready = max_ready
        self.refresh_s = refresh_s
        self.retry_after_s = retry_after_s
        self._targets = [t.name for t in topology.targets]
        self._routes = RoutingTable({t.name: t.routes for t in topology.targets})
        # Replaced whole by the refresher, read without a lock by every request.
        self._full: dict[str, int] = {}
        self._broker: Broker | None = None
        self._stop: threading.Event | None = None
        self._lock = threading.Lock()

    @property
    def full(self) -> dict[str, int]:
        """The targets above their mark at the last read, with their ready counts."""
        return dict(self._full)

    def attach(self, broker: Broker | None) -> None:
        """Read the counts from `broker` from now on, in a background thread; None stops it."""
        with self._lock:
            self._broker = broker
            if self._stop is not None:
                self._stop.set()
                self._stop = None
            if broker is None or not self.max_ready:
                return
            stop = threading.Event()
            self._stop = stop
            threading.Thread(
                target=self._keep_reading, args=(broker, stop), name="backpressure", daemon=True
            ).start()

    def refresh(self, broker: Broker | None = None) -> None:
        """Read every target's ready count now (the background thread calls this)."""
        broker = broker or self._broker
        if broker is None or not self.max_ready:
            return
        try:
            stats = broker.queue_stats_many(self._targets)
        except BusError as error:
            log.warning("back-pressure: queue counts unavailable, keeping the last ones: %s", error)
            return
        full = {s.target: s.ready for s in stats if s.ready > self.max_ready}
        if full.keys() != self._full.keys():
            log.warning(
                "back-pressure: targets above %d ready messages: %s",
                self.max_ready,
                ", ".join(f"{t} ({n})" for t, n in sorted(full.items())) or "none",
            )
        self._full = full

    def check(self, routing_keys: Iterable[str]) -> None:
        """Raise IngressOverloaded when a message under one of `routing_keys` would reach a
        target above its mark; return at once when no target is (the usual case)."""
        full = self._full
        if not full:
            return
        for key in routing_keys:
            for target in self._routes.targets_for(key):
                ready = full.get(target)
                if ready is not None:
                    raise IngressOverloaded(
                        f"target {target} is behind: {ready} messages wait in its queue, above "
                        f"the high-water mark of {self.max_ready}; nothing of this payload was "
                        f"accepted, send it again in {self.retry_after_s} s",
                        target=target,
                        ready=ready,
                        mark=self.max_ready,
                        retry_after=self.retry_after_s,
                    )

    def _keep_reading(self, broker: Broker, stop: threading.Event) -> None:
        while not stop.is_set():
            self.refresh(broker)
            stop.wait(self.refresh_s)
