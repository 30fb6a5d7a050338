"""The journal's figures over a window, aggregated by the database (SQLite and PostgreSQL).

    scores = quality_figures(journal, since=day_ago)       # the figures of `quality_report`
    steps = delivery_figures(journal, since=day_ago)       # the counts of `delivery_counts`

The operators' console shows, per system, what came in (accepted, rejected, refused by the hub,
with rules, completeness, delays and values assumed, not sent) and, per target, what went out
(delivered, retried, dead-lettered, replayed) over a window of a day or a week: hundreds of
thousands of entries. `monitor.quality.score` and `monitor.overview.delivery_counts` read every
entry of the window into Python and parse its detail; these ask the database for the aggregates
and move only them: counts grouped by system and rule or by target and step, sums of the
completeness fields, the accepted records' assumed fields counted by name (the elements of the
detail's `assumed` array: SQLite `json_each`, PostgreSQL `jsonb_array_elements_text`), and the
two delay quantiles picked by rank with a window function. They answer exactly what the Python
readings answer (a test compares both on a seeded journal of each store;
`bench/console_overview.py` measures both). Detail fields are read with the backend's JSON
functions (SQLite `json_extract` and `->`, PostgreSQL `jsonb`).

Three differences, on entries the hub never writes: a `received` entry without a receipt or a
message id is never refused here (SQL's NULL equals nothing), where the Python reading would
match it with a `not_published` entry missing the same; a JSON true or false where a
completeness count or a delay belongs counts as 1 or 0 in Python (a bool is an int) and on
SQLite (json_extract makes it one), not on PostgreSQL; and an element of `assumed` that is not
a string (the hub writes field names) is named by the database's text of it here (a JSON null
not at all), by Python's `str` there.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.selectable import Select, TableValuedAlias

from bus import queue_word
from monitor.journal import JOURNAL_ENTRY, Journal, Step, timestamp
from monitor.quality import QUANTILES, SystemQuality

_E = JOURNAL_ENTRY.c
OUT_STEPS = (Step.DELIVERED, Step.RETRIED, Step.DEAD_LETTERED, Step.REPLAYED)
"""The journal steps of a delivery the overview counts per target."""
LISTED = ("assumed", "warnings", "unchecked")
"""The arrays of names in a received entry's detail counted by name: the fields assumed, the
cross-checks that warned, those that could not judge (`monitor.quality.score`)."""
Figures = Callable[[str], SystemQuality]
"""A system's figures, made when first asked for."""


def quality_figures(
    journal: Journal,
    *,
    since: datetime,
    until: datetime | None = None,
    system: str | None = None,
) -> list[SystemQuality]:
    """Quality per source system (or only `system`) between `since` and `until`, as
    `quality_report` computes it (its `delays` left empty: the quantiles are in
    `delay_quantiles`)."""
    with journal.reading() as db:
        window = _window(since, until, system=system)
        systems: dict[str, SystemQuality] = {}

        def figures(system: str) -> SystemQuality:
            found = systems.get(system)
            if found is None:
                found = systems[system] = SystemQuality(system, delay_quantiles={})
            return found

        _rejections(db, window, figures)
        _receptions(db, window, figures)
    return sorted(systems.values(), key=lambda f: f.system)


def delivery_figures(
    journal: Journal, *, since: datetime, until: datetime | None = None
) -> dict[str, Counter[Step]]:
    """Per target, how many delivery steps of each kind the window holds (`delivery_counts`),
    keyed by the target's `queue_word`, so entries journalled under the target's old name (its
    system id with '_' for '-') count for it all the same."""
    query = (
        select(_E.target, _E.step, func.count())
        .where(*_window(since, until, sources=False))
        .where(_E.step.in_([s.value for s in OUT_STEPS]), _E.target.is_not(None))
        .group_by(_E.target, _E.step)
    )
    counts: dict[str, Counter[Step]] = {}
    with journal.reading() as db:
        for target, step, n in db.execute(query):
            counts.setdefault(queue_word(str(target)), Counter())[Step(step)] += int(n)
    return counts


class _Entries:
    """The window's entries of one step, each one's detail parsed once (PostgreSQL: as jsonb,
    in a subquery the planner keeps, so the fields read from it do not parse it again), and
    expressions on the fields of that detail.

    Attributes: `table`, the subquery; `c`, its columns (system, receipt, message_id, seq,
    detail).
    """

    def __init__(self, db: Connection, window: list[ColumnElement[bool]], step: Step) -> None:
        self.postgresql = db.dialect.name == "postgresql"
        detail = cast(_E.detail, JSONB) if self.postgresql else _E.detail
        query = select(_E.system, _E.receipt, _E.message_id, _E.seq, detail.label("detail"))
        query = query.where(*window, _E.step == step.value)
        if self.postgresql:
            query = query.offset(0)  # not pulled up into the query using it
        self.table = query.subquery()
        self.c = self.table.c

    def _json(self, name: str) -> ColumnElement[Any]:
        return self.c.detail[name]

    def text(self, name: str) -> ColumnElement[str]:
        """The field as text: a string as it is, a number as its digits, missing as NULL."""
        if self.postgresql:
            return self._json(name).astext
        return cast(func.json_extract(self.c.detail, f"$.{name}"), String)

    def kind(self, name: str) -> ColumnElement[str]:
        """The field's JSON type: number (integer, real on SQLite), string, true, false ..."""
        if self.postgresql:
            return func.jsonb_typeof(self._json(name))
        return func.json_type(self.c.detail, f"$.{name}")

    def raw(self, name: str) -> ColumnElement[Any]:
        """The field's value: PostgreSQL's jsonb value; SQLite's SQL value (an integer, a real,
        text; true as 1), which `is_integer`, `is_number` and `number` take."""
        if self.postgresql:
            return self._json(name)
        return func.json_extract(self.c.detail, f"$.{name}")

    def is_number(self, value: ColumnElement[Any]) -> ColumnElement[bool]:
        """Whether a `raw` value is a number (SQLite: true and false too, as Python's int)."""
        if self.postgresql:
            return func.jsonb_typeof(value) == "number"
        return func.typeof(value).in_(("integer", "real"))

    def is_integer(self, value: ColumnElement[Any]) -> ColumnElement[bool]:
        """Whether a `raw` value is an integer (SQLite: true and false too, as Python's int)."""
        if self.postgresql:
            return and_(self.is_number(value), ~cast(value, String).contains("."))
        return func.typeof(value) == "integer"

    def number(self, value: ColumnElement[Any]) -> ColumnElement[float]:
        """A `raw` number as a float."""
        if self.postgresql:
            return cast(cast(value, String), Float)
        return cast(value, Float)

    def listed(self, name: str) -> ColumnElement[Any]:
        """The field as JSON, for `length` and `elements`: PostgreSQL's jsonb value; SQLite's
        JSON text (its `->`: a string quoted, so it is read as JSON again)."""
        if self.postgresql:
            return self._json(name)
        return self.c.detail.op("->", return_type=String)(f"$.{name}")

    def length(self, value: ColumnElement[Any]) -> ColumnElement[int]:
        """How many elements a `listed` value holds: 0 when it is missing or not an array."""
        if self.postgresql:
            array = func.jsonb_typeof(value) == "array"
            return case((array, func.jsonb_array_length(value)), else_=0)
        return func.coalesce(func.json_array_length(value), 0)  # 0 for a non-array

    def elements(self, value: ColumnElement[Any]) -> TableValuedAlias:
        """The elements of a `listed` array as text (column `value`); none when it is not one."""
        if self.postgresql:
            array = case((func.jsonb_typeof(value) == "array", value))
            return func.jsonb_array_elements_text(array).table_valued("value")
        array = case((func.json_type(value) == "array", value))
        return func.json_each(array).table_valued("value")

    def truthy(self, name: str) -> ColumnElement[bool]:
        """Whether the field is JSON true (the only truthy value the journal writes there)."""
        if self.postgresql:
            return and_(self.kind(name) == "boolean", self.text(name) == "true")
        return self.kind(name) == "true"

    def rule(self) -> ColumnElement[str]:
        """The entry's rule, "unknown" when it names none (as `quality.score` says it)."""
        return func.coalesce(func.nullif(self.text("rule"), ""), "unknown")


def _window(
    since: datetime, until: datetime | None, *, sources: bool = True, system: str | None = None
) -> list[ColumnElement[bool]]:
    """The entries between `since` and `until`; `sources`: only those naming their system
    (`system`: only that one's)."""
    conditions = [_E.at >= timestamp(since)]
    if system is not None:
        conditions.append(_E.system == system)
    elif sources:
        conditions.append(_E.system.is_not(None))
    if until is not None:
        conditions.append(_E.at < timestamp(until))
    return conditions


def _rejections(db: Connection, window: list[ColumnElement[bool]], figures: Figures) -> None:
    """Records rejected for their content (by rule) and payloads refused, per system."""
    entries = _Entries(db, window, Step.REJECTED)
    # Grouped outside: PostgreSQL sees two JSON expressions with parameters as two expressions.
    rejected = select(
        entries.c.system, entries.truthy("payload").label("whole"), entries.rule().label("rule")
    ).subquery()
    r = rejected.c
    query = select(r.system, r.whole, r.rule, func.count()).group_by(r.system, r.whole, r.rule)
    for system, whole, rule, n in db.execute(query):
        found = figures(str(system))
        if whole:
            found.refused_payloads += int(n)
        else:
            found.rejected += int(n)
            found.rejections[str(rule)] += int(n)


def _receptions(db: Connection, window: list[ColumnElement[bool]], figures: Figures) -> None:
    """Records received, accepted or refused by the hub (the rule of the newest `not_published`
    entry of their receipt and message), with the completeness sums and the delay quantiles of
    the accepted and their assumed fields. One statement, so each received entry's detail is
    parsed once: a CTE of their fields, aggregated by (system, rule) and, UNION ALL, the
    accepted delays at the ranks the quantiles pick (nearest rank, as `quality.quantile`) and
    the accepted records' assumed fields by name (a row per system and field)."""
    not_published = _Entries(db, window, Step.NOT_PUBLISHED)
    n = not_published.c
    refusals = select(
        n.receipt,
        n.message_id,
        not_published.rule().label("rule"),
        func.row_number()
        .over(partition_by=(n.receipt, n.message_id), order_by=n.seq.desc())
        .label("newest"),
    ).subquery()
    refused = (
        select(refusals.c.receipt, refusals.c.message_id, refusals.c.rule)
        .where(refusals.c.newest == 1)
        .subquery()
    )
    received = _Entries(db, window, Step.RECEIVED)
    r = received.c
    fields = (
        select(
            r.system.label("system"),
            refused.c.rule.label("rule"),
            received.raw("filled").label("filled"),
            received.raw("optional").label("optional"),
            received.raw("delay_s").label("delay"),
            *(received.listed(name).label(name) for name in LISTED),
        )
        .select_from(
            received.table.outerjoin(
                refused, and_(r.receipt == refused.c.receipt, r.message_id == refused.c.message_id)
            )
        )
        .cte("received_fields")
        .prefix_with("MATERIALIZED")  # each detail's fields read once, for the parts below
    )
    raw = fields.c
    both = and_(received.is_integer(raw.filled), received.is_integer(raw.optional))
    f = (
        select(
            raw.system,
            raw.rule,
            case((both, cast(received.number(raw.filled), Integer)), else_=0).label("filled"),
            case((both, cast(received.number(raw.optional), Integer)), else_=0).label("optional"),
            case((received.is_number(raw.delay), received.number(raw.delay))).label("delay"),
            case((received.length(raw.assumed) > 0, 1), else_=0).label("assumed"),
        )
        .subquery()
        .c
    )
    counts = select(
        f.system, f.rule, func.count(), func.sum(f.filled), func.sum(f.optional),
        func.sum(f.assumed), null().label("rank"), null().label("delay"), null().label("field"),
        null().label("listed"),
    ).group_by(f.system, f.rule)  # fmt: skip
    ranked = (
        select(
            f.system,
            f.delay,
            func.row_number().over(partition_by=f.system, order_by=f.delay).label("rank"),
            func.count().over(partition_by=f.system).label("n"),
        )
        .where(f.rule.is_(None), f.delay.is_not(None))
        .subquery()
    )
    k = ranked.c
    at_ranks = select(
        k.system, null(), k.n, null(), null(), null(), k.rank, k.delay, null(), null()
    ).where(or_(*(k.rank == _ceiling(db, q, k.n) for q in QUANTILES)))  # fmt: skip

    def named(listed: str) -> Select[Any]:
        """The accepted records' names in their detail's `listed` array, counted by name."""
        names = received.elements(raw[listed])
        return (
            select(raw.system, null(), func.count(), null(), null(), null(), null(), null(),
                   cast(names.c.value, String).label("field"), literal(listed, String))
            .select_from(fields)
            .join(names, true())
            .where(raw.rule.is_(None), names.c.value.is_not(None))
            .group_by(raw.system, names.c.value)
        )  # fmt: skip

    delays: dict[str, dict[int, float]] = {}
    with_delay: dict[str, int] = {}
    rows = db.execute(counts.union_all(at_ranks, *(named(listed) for listed in LISTED)))
    for system, rule, count, filled_n, optional_n, assumed_n, rank, delay, name, listed in rows:
        found = figures(str(system))
        if name is not None:  # a name in an array; `count`: how many accepted records have it
            _named_counts(found, str(listed))[str(name)] += int(count)
        elif rank is not None:  # a delay at a rank; `count` holds how many delays there are
            delays.setdefault(found.system, {})[int(rank)] = float(delay)
            with_delay[found.system] = int(count)
        elif rule is not None:
            found.refused_records += int(count)
            found.refusals[str(rule)] += int(count)
        else:
            found.accepted += int(count)
            found.filled += int(filled_n or 0)
            found.optional += int(optional_n or 0)
            found.assumed_records += int(assumed_n or 0)
    for system, by_rank in delays.items():
        count = with_delay[system]
        figures(system).delay_quantiles = {
            q: by_rank.get(max(1, math.ceil(q * count))) for q in QUANTILES
        }


def _named_counts(found: SystemQuality, listed: str) -> Counter[str]:
    """The counter of `found` that the names of the received entries' `listed` array go to."""
    return {"assumed": found.assumed, "warnings": found.warnings, "unchecked": found.unchecked}[
        listed
    ]


def _ceiling(db: Connection, q: float, n: ColumnElement[int]) -> ColumnElement[int]:
    """ceil(q * n) computed in double precision, as Python's `math.ceil(q * n)` is (SQLite
    has no ceil() unless built with its math functions)."""
    x = literal(q, Float) * cast(n, Float)
    if db.dialect.name == "postgresql":
        return cast(func.ceil(x), Integer)
    whole = cast(x, Integer)
    return whole + case((x > whole, 1), else_=0)
