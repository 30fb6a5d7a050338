"""`jghub search KEY`: what the journal knows of a business key, following derived records;
`jghub search --reindex`: rebuild the index of credit codes and links from the entries."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from hub.commands.journal import console, open_journal
from hub.commands.options import DataDir
from monitor.console_tables import search_tables
from monitor.errors import JournalUnavailable
from monitor.literal import literal
from monitor.search import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    REINDEX_BATCH,
    ReindexReport,
    SearchResult,
    reindex,
    search,
)


def search_command(
    key: Annotated[
        str | None,
        typer.Argument(
            help="A case number, complaint, task, warning, event or notice id, a credit code, "
            "a message id, a receipt or a quarantine id."
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(min=1, max=MAX_LIMIT, help="Most steps shown, and entries read per key."),
    ] = DEFAULT_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    reindex_keys: Annotated[
        bool,
        typer.Option(
            "--reindex",
            help="Rebuild the index of the credit codes and links the entries name, newest "
            "entries first, batch by batch (after restoring a journal without it).",
        ),
    ] = False,
    below: Annotated[
        int | None,
        typer.Option(
            min=1, help="With --reindex: start below this entry (to resume where a run stopped)."
        ),
    ] = None,
    batch: Annotated[
        int, typer.Option(min=1, help="With --reindex: entries per transaction.")
    ] = REINDEX_BATCH,
    data_dir: DataDir = None,
) -> None:
    """Search the journal by any key and follow the record to the records derived from it.

    A complaint leads to its task, the task's feedback and the complaint's result; a warning to
    its feedback; a task or warning to its notices. Shows the records reached and every step of
    their messages in time order (system, dataset, operation, outcome, message id). Exit 1 when
    no entry names the key.
    """
    if reindex_keys == (key is not None):
        console().print("[red]give a KEY to search, or --reindex[/red] (not both)")
        raise typer.Exit(2)
    with open_journal(data_dir) as journal:
        try:
            if key is None:
                done = reindex(journal, batch=batch, below=below, progress=_progress)
                console().print(_reindexed(done))
                return
            found = search(journal, key, limit=limit)
        except JournalUnavailable as error:
            console().print(Text.assemble(("journal unavailable", "red"), ": ", literal(error)))
            raise typer.Exit(2) from None
    if as_json:
        typer.echo(found.model_dump_json(indent=2))
    else:
        _show(found)
    if not found.found:
        raise typer.Exit(1)


def _show(found: SearchResult) -> None:
    out = console()
    if found.found:
        for table in search_tables(found):
            out.print(table)
    for remark in (found.truncated, found.note):
        if remark:
            out.print(literal(remark))


def _progress(report: ReindexReport) -> None:
    console().print(
        f"indexed {report.entries} entries ({report.keys} keys), down to #{report.oldest}"
    )


def _reindexed(report: ReindexReport) -> str:
    if not report.entries:
        return "no journal entries that could name credit codes or links: nothing to index"
    return (
        f"indexed {report.entries} entries in {report.batches} batches: {report.keys} keys, "
        f"down to entry #{report.oldest}"
    )
