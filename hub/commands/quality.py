"""`jghub quality`: timeliness, completeness and accuracy per source system, from the journal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from hub.commands.journal import console, open_journal
from hub.commands.options import DataDir
from monitor.console_tables import quality_table
from monitor.dead_letters import parse_age
from monitor.errors import InvalidRequest
from monitor.quality import quality_report


def quality(
    since: Annotated[
        str, typer.Option(help="The window: records received in the last 24h, 7d, 30m ...")
    ] = "24h",
    system: Annotated[str | None, typer.Option(help="Only this source system.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Data quality per source system: accuracy, completeness, timeliness.

    Accuracy (准确性): records accepted against rejected, and the rules that rejected most.

    Completeness (完整性): the share of the standard's optional fields filled.

    Timeliness (时效性): delay from a record's own change time to its arrival (median and p90).
    """
    out = console()
    try:
        window = parse_age(since)
    except InvalidRequest as error:
        out.print(f"[red]bad --since[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None
    with open_journal(data_dir) as journal:
        scores = quality_report(journal, since=datetime.now(UTC) - window, system=system)
    if not scores:
        whose = f" from {system}" if system else ""
        out.print(f"no records{whose} in the last {since}")
        return
    out.print(quality_table(scores, title=f"data quality, last {since}"))
