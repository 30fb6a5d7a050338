"""`jghub db`: the store's schema — which version it is at, and migrating it to this hub's."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from hub.commands.options import DataDir, hub_settings
from store import Store, StoreError, schema, store_url

app = typer.Typer(
    help="The store (JGHUB_DATABASE_URL, else the embedded SQLite file): its schema version.",
    no_args_is_help=True,
)


def console() -> Console:
    return Console(highlight=False, soft_wrap=True)


@app.command()
def upgrade(data_dir: DataDir = None) -> None:
    """Migrate the store to this hub's schema (nothing to do when it is there already).

    Safe while hubs run, and when several hosts run it at once: one migrates, the others wait
    and find it done. Exit 2 when the database does not answer.
    """
    try:
        store = hub_settings(data_dir=data_dir).store(migrate=True)
    except StoreError as error:
        console().print(f"[red]cannot upgrade[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None
    console().print(f"{escape(str(store))}: schema {store.current()} (current)")


@app.command()
def current(data_dir: DataDir = None) -> None:
    """Print the store's schema version and this hub's; exit 1 when the store is behind.

    Reads only: it migrates nothing, not even the embedded SQLite file.
    """
    settings = hub_settings(data_dir=data_dir)
    head = schema.head()
    store = Store(store_url(settings.database_url, settings.data_dir))
    try:
        at = store.current()
    except StoreError as error:
        console().print(f"[red]store unavailable[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None
    finally:
        store.close()
    console().print(f"schema {at or 'none'}; this hub needs {head}")
    if at != head:
        console().print("behind: run `jghub db upgrade`")
        raise typer.Exit(1)
