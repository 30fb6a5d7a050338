"""`jghub journal`: check the message journal's hash chain, print its head, prune old days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from hub.commands.options import DataDir, hub_settings
from monitor.dead_letters import parse_age
from monitor.errors import InvalidRequest, JournalUnavailable
from monitor.journal import ChainHead, Journal
from monitor.literal import literal
from monitor.settings import MonitorSettings
from store import DATABASE_FILE, StoreError

app = typer.Typer(
    help="The message journal: where every message has been, hash-chained.",
    no_args_is_help=True,
)


def console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def open_journal(data_dir: Path | None) -> Journal:
    """The hub's journal, in its store (JGHUB_DATABASE_URL, else the data folder's SQLite
    file); an old journal file there is adopted on the way. Exit 2 saying why when the store
    or the journal cannot be opened."""
    settings = hub_settings(data_dir=data_dir)
    monitoring = MonitorSettings()
    old = monitoring.old_journal_path(settings.data_dir)
    embedded = settings.data_dir / DATABASE_FILE
    if not settings.database_url and not embedded.exists() and not old.exists():
        console().print(
            f"[red]no journal[/red] in {escape(str(settings.data_dir))}: no store there "
            f"({DATABASE_FILE}), nothing was journalled yet (is --data-dir / JGHUB_DATA_DIR the "
            "hub's, or does the hub use JGHUB_DATABASE_URL?)"
        )
        raise typer.Exit(2)
    try:
        store = settings.store()
        return Journal(monitoring.journal_store(store), monitoring.journal, adopt=old)
    except StoreError as error:
        console().print(f"[red]store unavailable[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None
    except JournalUnavailable as error:
        console().print(f"[red]journal unavailable[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None


@app.command()
def verify(
    anchor: Annotated[
        str | None,
        typer.Option(
            help="SEQ:HASH noted earlier from `jghub journal head`: the journal must still "
            "hold that entry unchanged (reveals entries cut from the end)."
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Walk the hash chain and check each message's steps; exit 1 naming the first bad entry
    (edited, rewritten, deleted) or the messages whose acknowledged steps lack entries."""
    out = console()
    try:
        expected = ChainHead.parse(anchor) if anchor else None
    except ValueError as error:
        out.print(f"[red]bad --anchor[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None
    with open_journal(data_dir) as journal:
        report = journal.verify(anchor=expected)
        gaps = journal.gaps() if report.broken is None else []
    if report.broken is not None:
        out.print(
            f"[red]journal broken[/red] at entry {report.broken.seq} ({report.broken.kind}): "
            f"{escape(report.broken.explanation)}"
        )
        out.print(f"{report.checked} entries before it are intact")
        raise typer.Exit(1)
    head = f", head {report.head}" if report.head else ""
    out.print(f"[green]journal intact[/green]: {report.checked} entries{head}")
    for gap in gaps:
        colour = "red" if gap.kind == "missing" else "yellow"
        out.print(
            Text.assemble(
                (gap.kind, colour), " ", literal(gap.message_id), ": ", literal(gap.explanation)
            )
        )
    if any(gap.kind == "missing" for gap in gaps):
        out.print(
            "[red]journal incomplete[/red]: acknowledged steps of the messages above lack entries"
        )
        raise typer.Exit(1)
    if not gaps:
        out.print(
            "[green]journal complete[/green]: every delivered message's publishing is journalled"
        )


@app.command()
def head(data_dir: DataDir = None) -> None:
    """Print the newest entry as SEQ:HASH, to keep outside the hub as an anchor."""
    with open_journal(data_dir) as journal:
        found = journal.head()
    if found is None:
        console().print("the journal is empty")
        raise typer.Exit(1)
    typer.echo(str(found))


@app.command()
def prune(
    before: Annotated[
        str | None,
        typer.Option(help="Drop the days before this UTC date (YYYY-MM-DD), whole days."),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(help="Or: drop the days older than this age (90d, 12w ...), whole days."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Drop the oldest days of entries (PostgreSQL: their partitions); the rest of the chain
    stays verifiable from the last dropped entry, and from any anchor kept since."""
    out = console()
    if (before is None) == (older_than is None):
        out.print("[red]give one of --before DATE or --older-than AGE[/red]")
        raise typer.Exit(2)
    if before is not None:
        try:
            cut = date.fromisoformat(before)
        except ValueError:
            out.print(f"[red]bad --before[/red]: {escape(before)!r} is not a date YYYY-MM-DD")
            raise typer.Exit(2) from None
    else:
        try:
            age = parse_age(older_than or "")
        except InvalidRequest as error:
            out.print(f"[red]bad --older-than[/red]: {escape(str(error))}")
            raise typer.Exit(2) from None
        cut = (datetime.now(UTC) - age).date()
    with open_journal(data_dir) as journal:
        try:
            dropped = journal.prune(cut)
        except JournalUnavailable as error:
            out.print(f"[red]journal unavailable[/red]: {escape(str(error))}")
            raise typer.Exit(2) from None
    out.print(f"pruned {dropped} entries of the days before {cut.isoformat()}")
