"""The demo's clock: business time as the simulated day of traffic tells it, moved, never slept.

The demo's records carry their samples' business times (warnings issued, complaints accepted in
spring 2026), not the wall clock's, and a department that answers late does so days after a
deadline. So the hub's ledger reads "now" from this clock instead (`Ledger(clock=...)`): it
stands at the end of the day of traffic while the hub delivers it, and the demo moves it forward,
never back, to the moment the books are closed, when every item's due time has passed.

The samples' times span weeks, so one clock cannot sit right after every dispatch: a task
dispatched in April is stamped delivered at the day's end, after the answers its department
dates from the dispatch (the ledger tolerates a delivery recorded late: it races the answers).

    clock = DemoClock(day_ends)          # the latest change time of the day's records
    Ledger(store, clock=clock)           # `now` for deliveries and for what is overdue
    clock.advance_to(closing)            # no sleeping for days
"""

from __future__ import annotations

import threading
from datetime import datetime


class DemoClock:
    """A settable clock, read by the hub's threads (a callable returning an aware datetime).

    Parameters:
      start: the first `now` (aware).
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(f"the demo clock needs an aware time, not {start.isoformat()}")
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance_to(self, moment: datetime) -> datetime:
        """Move to `moment` if it is later (the clock never goes back); the new `now`."""
        with self._lock:
            self._now = max(self._now, moment)
            return self._now
