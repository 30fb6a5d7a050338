"""`jghub journal`: check the message journal's hash chain, print its head, prune old entries."""

from __future__ import annotations

from datetime import UTC, datetime
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

app = typer.Typer(
    help="The message journal: where every message has been, hash-chained.",
    no_args_is_help=True,
)


def console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def journal_path(data_dir: Path | None) -> Path:
    """Where the journal is, from the settings (JGHUB_JOURNAL_FILE, else data_dir)."""
    return MonitorSettings().journal_path(hub_settings(data_dir=data_dir).data_dir)


def open_journal(data_dir: Path | None) -> Journal:
    """The hub's journal for reading; exit 2 saying where when there is none."""
    path = journal_path(data_dir)
    if not path.exists():
        console().print(
            f"[red]no journal[/red] at {escape(str(path))}: nothing was journalled there yet "
            "(is --data-dir / JGHUB_DATA_DIR the hub's?)"
        )
        raise typer.Exit(2)
    try:
        return Journal(path)
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
    older_than: Annotated[str, typer.Option(help="Delete entries older than this: 90d, 12w ...")],
    data_dir: DataDir = None,
) -> None:
    """Delete the oldest entries; the rest of the chain stays verifiable."""
    try:
        age = parse_age(older_than)
    except InvalidRequest as error:
        console().print(f"[red]bad --older-than[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None
    with open_journal(data_dir) as journal:
        deleted = journal.prune(datetime.now(UTC) - age)
    console().print(f"pruned {deleted} entries older than {older_than}")
