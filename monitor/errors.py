"""The monitor's errors: one small hierarchy an operator's tool can catch by meaning.

    MonitorError
    ├── MetricsSetupError: multiprocess metrics asked for too late, or in an unusable folder
    ├── JournalUnavailable: the journal cannot be opened or read in the store
    ├── InvalidRequest (also a ValueError): an operator's request breaks a rule (a replay without a
    │   reason, an age that does not parse, a filter that matches everything by accident)
    │   └── UnknownTarget: a request names a target the hub does not deliver to (404)
    ├── OperatorsFileError (also a ValueError): the operator accounts file is wrong (file:line)
    ├── OperatorRefused: an operator's name and secret do not match (401), or their address
    │   failed too often (429)
    ├── QuarantineFull: keeping a payload would pass the quarantine's size limit (the sender is
    │   answered 503: the hub does not accept what it could not keep)
    ├── NotInQuarantine: no quarantine entry has this id (404)
    ├── NotHeld: the entry is not held any more (released, discarded), or is being released
    │   right now, so it cannot be released or discarded (409)
    ├── ReleaseNotNow: the bus cannot take a release's records now (unreachable, a target far
    │   behind); nothing was published, the entry is held as before (503)
    └── MappingNotLoadable: the system's mapping on disk, which a release translates with, does
        not load (the check `serve` makes when it starts); nothing was released (409)

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


class UnknownTarget(InvalidRequest):
    """A request names a target system the hub does not deliver to; the message lists the known."""


class OperatorsFileError(MonitorError, ValueError):
    """The operator accounts file (or the settings naming it) is wrong; the message says where."""


class OperatorRefused(MonitorError):
    """An operator is not let in: `status` 401 (name or secret wrong) or 429 (too many failed
    logins from their address; `retry_after_s` says how long to wait)."""

    def __init__(self, status: int, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class QuarantineFull(MonitorError):
    """Keeping a payload of `size` bytes would pass the quarantine's limit.

    Attributes: `held` (bytes kept now), `limit` (JGHUB_QUARANTINE_MAX_BYTES), `size`.
    """

    def __init__(self, message: str, *, held: int, limit: int, size: int) -> None:
        super().__init__(message)
        self.held = held
        self.limit = limit
        self.size = size


class NotInQuarantine(MonitorError):
    """No quarantine entry has the id asked for."""


class NotHeld(MonitorError):
    """The quarantine entry cannot be released or discarded: it was settled already (the message
    says by whom, when and why), it is being released right now, or it holds nothing to
    translate."""


class ReleaseNotNow(MonitorError):
    """A release could not publish now: the bus is unreachable or a target is far behind. Nothing
    was published and the entry is held as before; release it again after `retry_after` s."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MappingNotLoadable(MonitorError):
    """A release was refused because the system's mapping on disk does not load now (a mapping
    file or code table being edited, or broken): the message names the folder, its version and
    the load error. Nothing was published and the entry is held as before."""
