"""The dead-letter console: list what failed for good, by target, reason and age, and replay it.

    found = find(broker, DeadLetterQuery(target="national", reason="HTTP 503", older_than="1h"))
    plan = replay(broker, query, why="national gateway back after maintenance", by="ops-li",
                  observer=observer, dry_run=True)      # plan.matched: what would move
    plan = replay(broker, query, why=..., by=..., observer=observer)   # plan.replayed: moved

A replay always lists first and then moves exactly the listed ids, so a dry run shows what the
real run moves (dead letters arriving in between are left alone). Every replayed message gets a
`replayed` journal entry with the operator's reason (`why`, mandatory) and who asked (`by`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bus import Broker, DeadLetter, Topology, TopologyError
from monitor.errors import InvalidRequest, UnknownTarget
from monitor.observer import Observer

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MIN_WHY_CHARS = 5


def parse_age(text: str) -> timedelta:
    """ "90s", "15m", "2h", "3d", "1w" as a timedelta; InvalidRequest saying the form otherwise."""
    found = _AGE.match(text)
    if found is None:
        raise InvalidRequest(
            f"age {text!r} is not a number followed by s, m, h, d or w (e.g. 30m, 2h, 7d)"
        )
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2).lower()])


def _parses_as_age(text: str) -> str:
    parse_age(text)
    return text


Age = Annotated[str, AfterValidator(_parses_as_age)]
"""An age as an operator writes it (30m, 2h, 7d), checked when a query is made."""


class DeadLetterQuery(BaseModel):
    """Which dead letters: every filter given must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str | None = Field(
        default=None, description="The target system whose deliveries failed (its id)."
    )
    reason: str | None = Field(
        default=None,
        description="Text the last failure's reason contains (case-sensitive), e.g. 'HTTP 503'.",
    )
    older_than: Age | None = Field(
        default=None,
        description="Dead for at least this long: a number and s, m, h, d or w (30m, 2h, 7d).",
    )
    ids: list[str] | None = Field(default=None, description="Only these message ids.")
    limit: int = Field(default=1000, ge=1, le=100_000, description="Most dead letters listed.")

    @property
    def age(self) -> timedelta | None:
        return parse_age(self.older_than) if self.older_than else None


def target_named(topology: Topology, given: str) -> str:
    """The target `given` names: the id of the system it is, or the name with '_' for '-' it had
    before (see `Topology.target`); UnknownTarget naming the known targets otherwise."""
    try:
        return topology.target(given).name
    except TopologyError:
        known = ", ".join(sorted(t.name for t in topology.targets)) or "no system"
        raise UnknownTarget(f"no target {given!r}: the hub delivers to {known}") from None


def find(broker: Broker, query: DeadLetterQuery) -> list[DeadLetter]:
    """The dead letters matching `query`, oldest first, without moving them."""
    return broker.dead_letters(
        query.target,
        reason=query.reason,
        ids=query.ids,
        older_than=query.age,
        limit=query.limit,
    )


def show(broker: Broker, message_id: str, *, target: str | None = None) -> list[DeadLetter]:
    """The dead letter(s) with id `message_id` (one per target it failed for)."""
    return broker.dead_letters(target, ids=[message_id])


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay matched and, unless it was a dry run, moved.

    Attributes:
      matched: the dead letters the query matched (what a dry run would move).
      replayed: ids moved back to their target queues (empty for a dry run).
      dry_run: True when nothing was moved.
      why: the operator's reason.
      by: who asked.
    """

    matched: Sequence[DeadLetter]
    replayed: Sequence[str] = field(default_factory=list)
    dry_run: bool = False
    why: str = ""
    by: str = ""


def check_why(
    why: str | None,
    *,
    act: str = "a replay",
    meaning: str = "why the messages should go again",
    example: str = "target fixed its schema",
) -> str:
    """The operator's reason for `act`, stripped; InvalidRequest when it is missing or too short
    to mean anything (the message says what it should say: `meaning`, e.g. `example`)."""
    text = (why or "").strip()
    if len(text) < MIN_WHY_CHARS:
        raise InvalidRequest(
            f"{act} needs a reason of at least {MIN_WHY_CHARS} characters saying {meaning} "
            f'(got {text!r}), e.g. --why "{example}"'
        )
    return text


def replay(
    broker: Broker,
    query: DeadLetterQuery,
    *,
    why: str,
    by: str,
    observer: Observer | None = None,
    dry_run: bool = False,
) -> ReplayPlan:
    """Move the dead letters `query` matches back to their target queues (see the module
    docstring); with `dry_run`, only say what would move. Raises InvalidRequest without a reason,
    or for a query without any filter (replaying everything must be asked for by target)."""
    reason = check_why(why)
    if query.target is None and query.reason is None and not query.ids and query.age is None:
        raise InvalidRequest(
            "a replay needs at least one filter (target, reason, older_than or ids), so that "
            "nothing is replayed by accident; to replay every dead letter of a target, name it"
        )
    matched = find(broker, query)
    if dry_run or not matched:
        return ReplayPlan(matched=matched, dry_run=dry_run, why=reason, by=by)
    by_target: dict[str, list[DeadLetter]] = {}
    for dead in matched:
        by_target.setdefault(dead.target, []).append(dead)
    replayed: list[str] = []
    for target, letters in by_target.items():
        moving_at = datetime.now(UTC)
        moved = set(broker.replay(target, ids=[d.message.id for d in letters]))
        for dead in letters:
            if dead.message.id in moved:
                replayed.append(dead.message.id)
                if observer is not None:
                    observer.replayed(dead, why=reason, by=by, at=moving_at)
    if observer is not None:
        # Journalled before whoever asked hears of it: a replay the journal lacks never happened.
        observer.durable()
    return ReplayPlan(matched=matched, replayed=replayed, why=reason, by=by)


def read_bodies(found: Sequence[DeadLetter], *, by: str, via: str, observer: Observer) -> None:
    """Journal that `by` reads the payload bodies of `found` (`via`: http, console, cli), and
    return once that is written: a read the journal does not show never happened, so the
    bodies leave only after this."""
    for dead in found:
        observer.body_read(dead, by=by, via=via)
    observer.durable()
