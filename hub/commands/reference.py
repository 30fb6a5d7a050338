"""`jghub reference`: the reference lists the cross-checks read, from the hub's store.

    jghub reference status                        per list: rows, newest change, last fed,
                                                  late changes ignored
    jghub reference show catalogue|officers|objects KEY
                                                  one entry as the list holds it

The store is JGHUB_DATABASE_URL's, else the data folder's SQLite file. Exit 2 when it cannot be
opened; `show` exits 1 when the list has no such key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from hub.commands.journal import console
from hub.commands.options import DataDir, hub_settings
from monitor.literal import literal
from reference.lists import LIST_DATASETS
from reference.stored import StoreLists
from store import StoreError

app = typer.Typer(
    help="The reference lists (catalogue, officers, objects): how fresh they are, one entry.",
    no_args_is_help=True,
)


class ListChoice(StrEnum):
    """The lists, as `show` names them."""

    catalogue = "catalogue"
    officers = "officers"
    objects = "objects"


KEY_NAMES = {
    "catalogue": "catalogue code (14 digits)",
    "officers": "certificate number (执法证号)",
    "objects": "certificate code (credit code or ID number)",
}
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextmanager
def open_lists(data_dir: Path | None) -> Iterator[StoreLists]:
    """The store's lists; exit 2 saying why when the store cannot be opened or read."""
    settings = hub_settings(data_dir=data_dir)
    try:
        store = settings.store()
    except StoreError as error:
        console().print(Text.assemble(("cannot open the lists: ", "red"), literal(error)))
        raise typer.Exit(2) from None
    try:
        yield settings.reference_lists(store)
    except StoreError as error:
        console().print(Text.assemble(("cannot read the lists: ", "red"), literal(error)))
        raise typer.Exit(2) from None
    finally:
        store.close()


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


@app.command()
def status(as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """Per list: the rows it holds, its newest change, when a change last arrived, and the late
    changes it ignored (older than the row they would have replaced)."""
    with open_lists(data_dir) as lists:
        found = lists.status()
    rows: list[dict[str, Any]] = [
        {
            "list": item.name,
            "dataset": LIST_DATASETS[item.name],
            "rows": item.rows,
            "newest": _when(item.newest),
            "fed_at": _when(item.fed_at),
            "late_ignored": item.late_ignored,
        }
        for item in found
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title="reference lists")
    for name in ("list", "dataset", "rows", "newest change", "last fed", "late ignored"):
        table.add_column(name)
    for row in rows:
        table.add_row(*(literal(value) for value in row.values()))
    console().print(table)
    if not any(item.rows for item in found):
        console().print(
            "no list holds a row yet: the checks on them say 'not checked' until one is fed"
        )


@app.command()
def show(
    name: Annotated[ListChoice, typer.Argument(help="Which list.", case_sensitive=False)],
    key: Annotated[
        str,
        typer.Argument(
            help="catalogue: the catalogue code; officers: the certificate number; "
            "objects: the certificate code."
        ),
    ],
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """One entry as the list holds it: the record last applied, its change time, and whether it
    was deleted; exit 1 when the list never held the key."""
    with open_lists(data_dir) as lists:
        found = lists.stored(name.value, key)
    if found is None:
        console().print(
            Text.assemble(f"the {name.value} list has no {KEY_NAMES[name.value]} ", literal(key))
        )
        raise typer.Exit(1)
    document = {
        "list": name.value,
        "key": found.key,
        "updated_time": found.updated_time.isoformat(),
        "deleted": found.deleted,
        "record": found.record,
    }
    if as_json:
        typer.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    state = "deleted" if found.deleted else "held"
    changed = f": {state}, changed {document['updated_time']}"
    console().print(Text.assemble((f"{name.value} ", "bold"), literal(key), changed))
    if found.record is not None:
        table = Table(show_header=False)
        for field_name, value in found.record.items():
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            table.add_row(literal(field_name), literal(shown))
        console().print(table)
