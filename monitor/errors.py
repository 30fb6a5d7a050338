"""The monitor's errors: one small hierarchy an operator's tool can catch by meaning.

    MonitorError
    ├── MetricsSetupError: multiprocess metrics asked for too late, or in an unusable folder
    ├── JournalUnavailable: the journal's file cannot be opened or written
    └── InvalidRequest (also a ValueError): an operator's request breaks a rule (a replay without a
        reason, an age that does not parse, a filter that matches everything by accident)

A broken hash chain is not an exception: `Journal.verify` returns a report naming the first bad
entry, because finding one is the normal outcome of the check, not a failure of it.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Anything the monitor raises on purpose."""


class MetricsSetupError(MonitorError):
    """Multiprocess metrics cannot be set up as asked; the message says what to do instead."""


class JournalUnavailable(MonitorError):
    """The journal's SQLite file cannot be opened, read or written."""


class InvalidRequest(MonitorError, ValueError):
    """An operator's request breaks a rule; the message names the option, the rule and the value."""
