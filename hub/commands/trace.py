"""`jghub trace ID`: where a message (or every record of a receipt) has been, from the journal."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.text import Text

from hub.commands.journal import console, open_journal
from hub.commands.options import DataDir
from monitor.console_tables import trace_table
from monitor.literal import literal


def trace(
    message_id: Annotated[str, typer.Argument(help="A message id or a receipt id.")],
    system: Annotated[
        str | None, typer.Option(help="Only if this source system sent it (as a sender sees it).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Where a message (or every record of a receipt) has been, step by step.

    Steps: received, rejected, published, delivered, retried, dead-lettered, replayed, with the
    system, target, attempt and reason of each. Exit 1 when the journal has no such message.
    """
    with open_journal(data_dir) as journal:
        entries = journal.trace(message_id, system=system)
    if not entries:
        whose = f" sent by {system}" if system else ""
        console().print(
            Text.assemble("no message or receipt ", literal(message_id), literal(whose)),
            " in the journal",
            sep="",
        )
        raise typer.Exit(1)
    if as_json:
        for entry in entries:
            typer.echo(
                json.dumps(
                    {
                        "seq": entry.seq,
                        "at": entry.at.isoformat(),
                        "step": entry.step.value,
                        "message_id": entry.message_id,
                        "receipt": entry.receipt,
                        "system": entry.system,
                        "target": entry.target,
                        "dataset": entry.dataset,
                        "reason": entry.reason,
                        "attempt": entry.attempt,
                        "detail": entry.detail,
                    },
                    ensure_ascii=False,
                )
            )
        return
    console().print(trace_table(message_id, entries))
