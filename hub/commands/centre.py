"""`jghub centre`: what the disposal centre watches — penalty cases past their legal time limits."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from centre.penalties import overdue_cases, today_in_shanghai
from centre.workdays import CalendarFileError
from hub.commands.options import DataDir, SystemsFile, hub_settings
from hub.systems import SystemsConfigError, load_systems
from store import StoreError

app = typer.Typer(
    help="The disposal centre: what is open and overdue, per department.", no_args_is_help=True
)
penalties = typer.Typer(
    help="Penalty cases watched: stages and the legal time limits (APL arts. 60, 51; 双公示).",
    no_args_is_help=True,
)
app.add_typer(penalties, name="penalties")

Department = Annotated[
    str | None,
    typer.Option(help="Only this department (the case's implementing organ, as records name it)."),
]
OnDay = Annotated[
    str | None,
    typer.Option("--on", help="Count as of this day, YYYY-MM-DD (default: today in Shanghai)."),
]


def console() -> Console:
    return Console(highlight=False, soft_wrap=True)


@penalties.command("overdue")
def penalties_overdue(
    department: Department = None,
    on: OnDay = None,
    systems_file: SystemsFile = None,
    data_dir: DataDir = None,
) -> None:
    """List the penalty cases whose legal time limit passed before the step was taken.

    Limits: the decision within 90 days of filing (APL art. 60; a recorded extension moves it),
    and the 双公示 publication within 7 working days of the decision (a system's
    `penalty_publication_working_days`: market regulation 20). `open`: the step is still
    missing; `late`: it came after the limit. Exit 2 when the store, the systems file or the
    calendar cannot be read.
    """
    out = console()
    settings = hub_settings(data_dir=data_dir, systems_file=systems_file)
    try:
        today = dt.date.fromisoformat(on) if on else today_in_shanghai(time.time)
        systems = load_systems(settings.systems_file).systems
        calendar = settings.working_calendar()
        store = settings.store()
        report = overdue_cases(
            store, calendar, settings.penalty_limits(systems), today, department=department
        )
    except (ValueError, StoreError, SystemsConfigError, CalendarFileError) as error:
        out.print(f"[red]cannot report[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None
    for problem in report.uncounted:
        out.print(f"[yellow]not counted[/yellow]: {escape(problem)}")
    if not report.overdue:
        out.print(f"no penalty case overdue on {today.isoformat()}")
        return
    table = Table(title=f"penalty cases overdue on {today.isoformat()}")
    for column in ("department", "case", "limit", "due", "state", "days late", "stage"):
        table.add_column(column)
    for case in report.overdue:
        table.add_row(
            escape(case.department),
            escape(case.case_id),
            case.limit,
            case.due.isoformat(),
            case.state if case.done is None else f"late ({case.done.isoformat()})",
            str(case.days_late(today)),
            case.stage,
        )
    out.print(table)
    for (name, limit), count in sorted(report.counts().items()):
        out.print(f"{escape(name)}: {count} overdue ({limit})")
