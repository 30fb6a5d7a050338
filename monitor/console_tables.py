"""Tables an operator reads on the terminal (`jghub trace`, `search`, `dead`, `quality`,
`quarantine`): a message's trace, a search's records and timeline, dead letters, the data-quality
scorecard, quarantined payloads.

Times are shown in Asia/Shanghai, where the province's operators work; ages and delays in the
largest unit that keeps them readable (`3d 4h`, `12m 5s`). Every value that came from a system
(ids, reasons, stages) is a `literal`: shown as written, never read as markup or obeyed by the
terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rich.table import Table
from rich.text import Text

from bus import DeadLetter
from monitor.journal import Entry, Step
from monitor.literal import literal
from monitor.quality import SystemQuality
from monitor.quarantine import QuarantineEntry
from monitor.search import SearchResult

SHANGHAI = ZoneInfo("Asia/Shanghai")
REASON_CHARS = 160

_STEP_STYLES = {
    Step.RECEIVED: "cyan",
    Step.REJECTED: "red",
    Step.PUBLISHED: "blue",
    Step.NOT_PUBLISHED: "red",
    Step.DELIVERED: "green",
    Step.RETRIED: "yellow",
    Step.DEAD_LETTERED: "bold red",
    Step.REPLAYED: "magenta",
    Step.RELEASED: "magenta",
    Step.DISCARDED: "yellow",
}


def local(at: datetime) -> str:
    """`at` as Shanghai wall time, to the second."""
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """A duration in its two largest units: 3d 4h, 2h 5m, 12m 5s, 4.2s, 35ms; '—' for None."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def percent(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.1f}%"


def _cut(text: str | None, limit: int = REASON_CHARS) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _looked_up(asked: str, entries: Sequence[Entry]) -> str:
    """What `asked` was found as: a message id, a receipt, a quarantine id or a business key."""
    if any(entry.message_id == asked for entry in entries):
        return "message"
    if any(entry.receipt == asked for entry in entries):
        return "receipt"
    if any(entry.detail.get("quarantine_id") == asked for entry in entries):
        return "quarantine id"
    return "business key"


def trace_table(asked: str, entries: Sequence[Entry]) -> Table:
    """The steps found for a message id, receipt, quarantine id or business key, oldest
    first; the title says which of these `asked` is."""
    title = Text.assemble(_looked_up(asked, entries), " ", literal(asked))
    table = Table(title=title, title_justify="left", show_lines=False)
    for name in ("#", "at (Shanghai)", "step", "message", "system", "target", "try", "reason"):
        table.add_column(name, overflow="fold")
    for entry in entries:
        detail = entry.detail
        reason = entry.reason or ""
        if entry.step is Step.RETRIED and "tier" in detail:
            reason = f"tier {detail['tier']}: {reason}"
        if entry.step in (Step.REPLAYED, Step.RELEASED, Step.DISCARDED) and "by" in detail:
            reason = f"by {detail['by']}: {reason}"
        table.add_row(
            str(entry.seq),
            local(entry.at),
            Text(entry.step.value, style=_STEP_STYLES.get(entry.step, "")),
            literal(entry.message_id if entry.message_id != asked else ""),
            literal(entry.system),
            literal(entry.target),
            "" if entry.attempt is None else str(entry.attempt),
            literal(_cut(reason)),
        )
    return table


def search_tables(found: SearchResult) -> list[Table]:
    """A search's answer: how the key matched and the records reached, then every step of
    their messages, oldest first."""
    records = Table(
        title=Text.assemble("records reached from ", literal(found.key)), title_justify="left"
    )
    for name in ("dataset", "record", "how"):
        records.add_column(name, overflow="fold")
    for record in found.records:
        records.add_row(literal(record.dataset), literal(record.key), literal(record.how))
    timeline = Table(title="timeline", title_justify="left")
    columns = ("#", "at (Shanghai)", "step", "system", "dataset", "record", "op", "outcome")
    for name in (*columns, "message"):
        timeline.add_column(name, overflow="fold")
    for step in found.timeline:
        outcome = step.outcome + (f": {step.reason}" if step.reason else "")
        timeline.add_row(
            str(step.seq),
            local(step.at),
            Text(step.step, style=_STEP_STYLES.get(Step(step.step), "")),
            literal(step.system),
            literal(step.dataset),
            literal(step.record),
            literal(step.operation),
            literal(_cut(outcome)),
            literal(step.message_id),
        )
    return [records, timeline]


def dead_letters_table(found: Sequence[DeadLetter], *, title: str) -> Table:
    """Dead letters, oldest first, with their age and last reason."""
    now = datetime.now(UTC)
    table = Table(title=title, title_justify="left")
    for name in ("message", "target", "dead at (Shanghai)", "age", "tries", "reason"):
        table.add_column(name, overflow="fold")
    for dead in found:
        table.add_row(
            literal(dead.message.id),
            literal(dead.target),
            local(dead.dead_at),
            duration((now - dead.dead_at).total_seconds()),
            str(dead.message.attempts),
            literal(_cut(dead.reason)),
        )
    return table


def history_table(dead: DeadLetter) -> Table:
    """Every failed attempt (and replay) of one dead letter."""
    title = Text.assemble("history of ", literal(dead.message.id), " for ", literal(dead.target))
    table = Table(title=title, title_justify="left")
    for name in ("try", "at (Shanghai)", "stage", "permanent", "reason"):
        table.add_column(name, overflow="fold")
    for failure in dead.message.history:
        table.add_row(
            str(failure.attempt),
            local(failure.at),
            literal(failure.stage),
            "yes" if failure.permanent else "",
            literal(_cut(failure.reason, 400)),
        )
    return table


def quality_table(scores: Sequence[SystemQuality], *, title: str) -> Table:
    """The scorecard: one row per source system."""
    table = Table(title=title, title_justify="left")
    columns = (
        "system", "accepted", "rejected", "accuracy", "completeness", "delay p50", "delay p90",
        "refused payloads", "top rejection rules", "refused by hub", "assumed (not sent)",
        "cross-check warnings", "not checked",
    )  # fmt: skip
    left = ("system", "top rejection rules", "refused by hub", "assumed (not sent)",
            "cross-check warnings", "not checked")  # fmt: skip
    for name in columns:
        justify = "left" if name in left else "right"
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for figures in scores:
        accuracy = figures.accuracy
        style = "" if accuracy is None or accuracy >= 0.9 else "red"
        rules = ", ".join(f"{rule} ×{n}" for rule, n in figures.rejections.most_common(3))
        refusals = ", ".join(f"{rule} ×{n}" for rule, n in figures.refusals.most_common(3))
        assumed = ", ".join(f"{name} ×{n}" for name, n in figures.assumed.most_common(3))
        warnings = ", ".join(f"{rule} ×{n}" for rule, n in figures.warnings.most_common(3))
        unchecked = ", ".join(f"{rule} ×{n}" for rule, n in figures.unchecked.most_common(3))
        table.add_row(
            literal(figures.system),
            str(figures.accepted),
            str(figures.rejected),
            Text(percent(accuracy), style=style),
            percent(figures.completeness),
            duration(figures.delay_median),
            duration(figures.delay_p90),
            str(figures.refused_payloads),
            literal(rules),
            literal(refusals, style="red" if refusals else ""),
            literal(assumed, style="yellow" if assumed else ""),
            literal(warnings, style="yellow" if warnings else ""),
            literal(unchecked),
        )
    return table


def quarantine_table(found: Sequence[QuarantineEntry], *, title: str) -> Table:
    """Quarantined payloads, oldest first: id, system, message type, when, age, state, size and
    the first reason."""
    now = datetime.now(UTC)
    table = Table(title=title, title_justify="left")
    for name in ("id", "system", "message type", "kept at (Shanghai)", "age", "state", "bytes",
                 "reason"):  # fmt: skip
        table.add_column(name, overflow="fold")
    for entry in found:
        table.add_row(
            literal(entry.id),
            literal(entry.system),
            literal(entry.message_type or entry.kind),
            local(entry.at),
            duration((now - entry.at).total_seconds()),
            entry.state.value,
            str(entry.size),
            literal(_cut(entry.reason.partition("\n")[0])),
        )
    return table


def problems_table(entry: QuarantineEntry) -> Table:
    """Why a quarantined payload was rejected: one row per problem kept."""
    title = Text.assemble(f"{entry.rejected} record(s) rejected" if entry.rejected else "payload",
                          " of ", literal(entry.id))  # fmt: skip
    table = Table(title=title, title_justify="left")
    for name in ("record", "field", "rule", "where", "message"):
        table.add_column(name, overflow="fold")
    for problem in entry.problems:
        table.add_row(
            "payload" if problem.record is None else str(problem.record + 1),
            literal(problem.field),
            literal(problem.rule),
            literal(problem.location),
            literal(_cut(problem.message, 400)),
        )
    return table
