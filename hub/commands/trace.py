"""`jghub trace ID`: where a message (or every record of a receipt or business key) has been,
from the journal; a key it cannot trace (a credit code, a linked record's key) is sent to
`jghub search`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.text import Text

from hub.commands.journal import console, open_journal
from hub.commands.options import DataDir
from monitor.console_tables import trace_table
from monitor.literal import literal
from monitor.search import named_as


def trace(
    message_id: Annotated[
        str,
        typer.Argument(
            help="A message id, a receipt id, a quarantine id or a record key (case number, "
            "complaint or task id)."
        ),
    ],
    system: Annotated[
        str | None, typer.Option(help="Only if this source system sent it (as a sender sees it).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Where a message (or every record of a receipt) has been, step by step.

    Steps: received, rejected, published, delivered, retried, dead-lettered, replayed, with the
    system, target, attempt and reason of each. Exit 1 when the journal has no such message;
    when the key is one `jghub search` finds (a credit code, a linked record's key), it says so.
    """
    with open_journal(data_dir) as journal:
        entries = journal.trace(message_id, system=system)
        named = named_as(journal, message_id) if not entries and system is None else []
    if not entries:
        whose = f" sent by {system}" if system else ""
        console().print(
            Text.assemble("no message or receipt ", literal(message_id), literal(whose)),
            " in the journal",
            sep="",
        )
        if named:
            kinds = " and ".join(kind.value.replace("_", " ") for kind in named)
            hint = Text.assemble(
                literal(message_id), f" is the {kinds} of journalled records: `jghub search ",
                literal(message_id), "` finds them and what they led to",
            )  # fmt: skip
            console().print(hint)
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
