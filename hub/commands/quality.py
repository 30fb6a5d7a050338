"""`jghub quality`: timeliness, completeness and accuracy per source system, from the journal
(aggregated by the database, the figures the console's Overview shows); then the disposal
scorecard per department, from the centre's ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from centre.scorecard import DisposalScore, Scorecard, scorecard
from hub.commands.centre import open_centre
from hub.commands.journal import console, open_journal
from hub.commands.options import DataDir, SystemsFile
from monitor.console_tables import duration, local, percent, quality_table
from monitor.dead_letters import parse_age
from monitor.errors import InvalidRequest
from monitor.journal_figures import quality_figures
from monitor.literal import literal

ON_TIME_TARGET = 0.9
"""An on-time share below this is shown in red."""


def quality(
    since: Annotated[
        str, typer.Option(help="The window: records received in the last 24h, 7d, 30m ...")
    ] = "24h",
    system: Annotated[str | None, typer.Option(help="Only this source system.")] = None,
    department: Annotated[
        str | None,
        typer.Option(help="Only this department in the scorecard (credit code or name)."),
    ] = None,
    data_dir: DataDir = None,
    systems_file: SystemsFile = None,
) -> None:
    """Data quality per source system, then the disposal scorecard per department.

    Accuracy (准确性): records accepted against rejected, and the rules that rejected most.

    Completeness (完整性): the share of the standard's optional fields filled.

    Timeliness (时效性): delay from a record's own change time to its arrival (median and p90).

    Assumed: values the sender did not send and its mapping assumed (`assume:`), by field.

    The scorecard, per department and kind (warning, task), as of now: rows due so far (fed back
    or past their due time), on time, late, overdue and the on-time share; median time from
    dispatch to feedback; feedback complete (the result the standard expects); rows returned.
    Then the penalty cases whose decision or 双公示 publication is overdue.
    """
    out = console()
    try:
        window = parse_age(since)
    except InvalidRequest as error:
        out.print(f"[red]bad --since[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None
    with open_journal(data_dir) as journal:
        scores = quality_figures(journal, since=datetime.now(UTC) - window, system=system)
    if scores:
        out.print(quality_table(scores, title=f"data quality, last {since}"))
    else:
        whose = f" from {system}" if system else ""
        out.print(f"no records{whose} in the last {since}")
    with open_centre(data_dir, systems_file) as (ledger, limits):
        card = scorecard(ledger, limits, department)
    print_scorecard(out, card)


def print_scorecard(out: Console, card: Scorecard) -> None:
    """The scorecard's two tables, or a line saying there is nothing to show."""
    where = Text.assemble(" to ", literal(card.department)) if card.department else Text(" yet")
    if card.disposal:
        title = f"disposal as of {local(card.at)} (Shanghai)"
        out.print(disposal_table(card.disposal, title=title))
    else:
        out.print(Text.assemble("no warning or task dispatched", where))
    for problem in card.uncounted:
        out.print(Text.assemble(("not counted", "yellow"), ": ", literal(problem)))
    if card.penalties:
        out.print(penalty_table(card))
    else:
        at = Text.assemble(" at ", literal(card.department)) if card.department else ""
        out.print(Text.assemble("no penalty case overdue", at, f" on {local(card.at)[:10]}"))


def disposal_table(scores: list[DisposalScore], *, title: str) -> Table:
    """One row per department and kind."""
    table = Table(title=title, title_justify="left")
    columns = (
        "department", "kind", "rows", "open", "due", "on time", "late", "overdue", "on time %",
        "median disposal", "feedback complete", "returned", "undated",
    )  # fmt: skip
    for name in columns:
        justify = "left" if name in ("department", "kind") else "right"
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for score in scores:
        ratio = score.on_time_ratio
        complete = (
            f"{score.feedback_complete}/{score.feedback_judged} "
            f"({percent(score.feedback_completeness)})"
            if score.feedback_judged
            else "—"
        )
        table.add_row(
            literal(score.label),
            score.kind,
            str(score.rows),
            str(score.open),
            str(score.due),
            str(score.on_time),
            str(score.late),
            Text(str(score.overdue), style="red" if score.overdue else ""),
            Text(
                percent(ratio), style="red" if ratio is not None and ratio < ON_TIME_TARGET else ""
            ),
            duration(score.median_disposal_s),
            complete,
            str(score.returned),
            str(score.undated),
        )
    return table


def penalty_table(card: Scorecard) -> Table:
    """One row per department with penalty cases overdue: still missing (open) or late."""
    title = f"penalty cases overdue on {local(card.at)[:10]} (Shanghai)"
    table = Table(title=title, title_justify="left")
    for name in ("department", "decision open", "decided late", "双公示 open", "published late"):
        table.add_column(name, justify="left" if name == "department" else "right")
    for score in card.penalties:
        table.add_row(
            literal(score.department),
            str(score.decisions_open),
            str(score.decisions_late),
            str(score.publications_open),
            str(score.publications_late),
        )
    return table
