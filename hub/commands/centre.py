"""`jghub centre`: what the disposal centre watches, read from the hub's store.

    jghub centre overdue [--department D]         ledger rows past due, not fed back
    jghub centre show ID                          a warning's or task's rows (when reminded and
                                                  escalated) and timeline (the notices too)
    jghub centre penalties overdue [--department D] [--on DAY]
                                                  penalty cases past their legal time limits

The store is JGHUB_DATABASE_URL's, else the data folder's SQLite file; the deadlines and the
calendar are those the settings name (JGHUB_DEADLINES_FILE, JGHUB_CALENDAR_FILE).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from centre.deadlines import DeadlinesFileError
from centre.ledger import Ledger
from centre.penalties import PenaltyLimits, overdue_cases, today_in_shanghai
from centre.workdays import CalendarFileError
from hub.commands.journal import console
from hub.commands.options import DataDir, SystemsFile, hub_settings
from hub.systems import SystemsConfigError, load_systems
from monitor.literal import literal
from store import StoreError

app = typer.Typer(
    help="The disposal centre's ledger: warnings and tasks per department, and what is overdue.",
    no_args_is_help=True,
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


AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextmanager
def open_ledger(data_dir: Path | None, systems_file: Path | None) -> Iterator[Ledger]:
    """The hub's ledger; exit 2 saying why when the store or a configuration cannot be used."""
    with open_centre(data_dir, systems_file) as (ledger, _):
        yield ledger


@contextmanager
def open_centre(
    data_dir: Path | None, systems_file: Path | None
) -> Iterator[tuple[Ledger, PenaltyLimits]]:
    """The hub's ledger and the penalty time limits its systems set; exit 2 saying why when the
    store or a configuration cannot be used."""
    settings = hub_settings(data_dir=data_dir, systems_file=systems_file)
    try:
        systems = load_systems(settings.systems_file).systems
        store = settings.store()
    except (SystemsConfigError, StoreError) as error:
        console().print(Text.assemble(("cannot open the ledger: ", "red"), literal(error)))
        raise typer.Exit(2) from None
    try:
        yield settings.ledger(store, systems), settings.penalty_limits(systems)
    except (DeadlinesFileError, CalendarFileError) as error:
        console().print(Text.assemble(("cannot open the ledger: ", "red"), literal(error)))
        raise typer.Exit(2) from None
    finally:
        store.close()


def _rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    columns = ("kind", "item", "department", "state", "dispatched", "due", "reminded", "escalated")
    for name in (*columns, "flags"):
        table.add_column(name)
    for row in rows:
        table.add_row(
            literal(row["kind"]),
            literal(row["item_id"]),
            literal(row["department_name"] or row["department"]),
            literal(row["state"]),
            literal(row["dispatched_at"] or "-"),
            literal(row["due_at"] or row["due_error"] or "-"),
            literal(row["reminded_at"] or "-"),
            literal(row["escalated_at"] or "-"),
            literal(len(row["flags"]) or ""),
        )
    return table


@app.command()
def overdue(
    department: Annotated[
        str | None, typer.Option(help="Only this department (credit code or name).")
    ] = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    systems_file: SystemsFile = None,
) -> None:
    """Rows past their due time that the department has not fed back, oldest first."""
    with open_ledger(data_dir, systems_file) as ledger:
        rows = ledger.items(department=department, overdue=True)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    where = f" at {department}" if department else ""
    console().print(_rows_table(f"{len(rows)} overdue{where}", rows))


@app.command()
def show(
    item_id: Annotated[str, typer.Argument(help="A warning id or a task id.")],
    as_json: AsJson = False,
    data_dir: DataDir = None,
    systems_file: SystemsFile = None,
) -> None:
    """Every row of a warning or task and its timeline; exit 1 when the ledger has none."""
    with open_ledger(data_dir, systems_file) as ledger:
        found = ledger.item(item_id)
    if found is None:
        console().print(Text.assemble("no warning or task ", literal(item_id), " in the ledger"))
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    console().print(_rows_table(f"{found['kind']} {found['item_id']}", found["rows"]))
    timeline = Table(title="timeline")
    for name in ("at", "what", "department", "event", "message", "flag"):
        timeline.add_column(name)
    for event in found["timeline"]:
        timeline.add_row(
            literal(event["at"]),
            literal(f"{event['kind']} {event['item_id']}"),
            literal(event["department"] or "-"),
            literal(event["event"]),
            literal(event["message_id"]),
            literal(event["flag"] or "", style="red"),
        )
    console().print(timeline)


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
