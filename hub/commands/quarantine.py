"""`jghub quarantine list|show|download|release|discard`: the payloads the hub rejected, kept in
its store with their reasons, and what operators do with them.

Like `jghub dead`, these commands act as whoever runs them: `show` and `download` (which read a
payload), `release` and `discard` are journalled under the login name, or as "NAME (login
LOGIN)" with `--as NAME`. `release` loads the systems file and the mappings from disk when it
runs, so it translates with the mappings as they are now (as a release over HTTP or the console
does: `hub.mapping_reload`), prints which version of the system's mapping it used, and publishes
through the same inbound path as `serve`. A mapping that does not load refuses it (exit 1).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from hub.app import build_runtime
from hub.commands.dead import ActingAs, acting, fail, journalled
from hub.commands.journal import console
from hub.commands.options import DataDir, SystemsFile, hub_settings
from hub.commands.startup import error_console, exit_2_on_configuration_error
from hub.settings import HubSettings
from monitor import quarantine as kept
from monitor.console_tables import local, problems_table, quarantine_table
from monitor.errors import (
    InvalidRequest,
    MappingNotLoadable,
    NotHeld,
    NotInQuarantine,
    ReleaseNotNow,
)
from monitor.literal import literal
from monitor.quarantine import Quarantine, QuarantineEntry, QuarantineQuery, State
from monitor.settings import MonitorSettings
from store import StoreError

app = typer.Typer(
    help="The quarantine: payloads the hub rejected, kept with their reasons. List, show, "
    "download, release after a fix, discard.",
    no_args_is_help=True,
)

QuarantineId = Annotated[
    str, typer.Argument(help="The quarantine id (the one the sender was answered with).")
]
Why = Annotated[str, typer.Option(help="Why, in words; recorded in the journal.")]

HeldFor = Annotated[str | None, typer.Option(help="Kept for at least this long: 30m, 2h, 7d ...")]


@contextmanager
def _quarantine(settings: HubSettings) -> Iterator[Quarantine]:
    """The hub's quarantine in its store; exit 2 when the store cannot be opened."""
    try:
        store = settings.store()
    except StoreError as error:
        raise fail("store unavailable", error) from None
    try:
        yield MonitorSettings().quarantine(store)
    finally:
        store.close()


@contextmanager
def _settling(what: str) -> Iterator[None]:
    """The quarantine's refusals as exits: 1 for an id it does not hold or an entry that is not
    held, 2 for a request that breaks a rule, 3 when the bus cannot take a release now."""
    try:
        yield
    except (NotInQuarantine, NotHeld, MappingNotLoadable) as error:
        raise fail(f"{what} refused", error, 1) from None
    except InvalidRequest as error:
        raise fail(f"{what} refused", error) from None
    except ReleaseNotNow as error:
        raise fail(f"{what} not done", error, 3) from None


@app.command("list")
def list_command(
    system: Annotated[str | None, typer.Option(help="The sending system's id.")] = None,
    reason: Annotated[
        str | None, typer.Option(help="Text the reasons contain (any case), e.g. 'wan_yuan'.")
    ] = None,
    state: Annotated[State | None, typer.Option(help="held, released or discarded.")] = None,
    older_than: HeldFor = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Most entries listed.")] = 100,
    data_dir: DataDir = None,
) -> None:
    """List quarantined payloads, oldest first: id, system, message type, when, age, state,
    size, first reason."""
    settings = hub_settings(data_dir=data_dir)
    try:
        query = QuarantineQuery(
            system=system, reason=reason, state=state, older_than=older_than, limit=limit
        )
    except ValueError as error:
        raise fail("bad filter", error) from None
    with _quarantine(settings) as quarantine:
        found = quarantine.find(query)
    out = console()
    if not found:
        out.print("nothing in the quarantine matches")
        return
    out.print(quarantine_table(found, title=f"{len(found)} quarantined payload(s)"))


@app.command()
def show(
    quarantine_id: QuarantineId,
    acting_as: ActingAs = None,
    data_dir: DataDir = None,
) -> None:
    """One quarantined payload: who sent it, when, its state, every problem kept, and its text.
    Exit 1 when the quarantine holds no such id.

    Reading the payload is journalled (operator_read) under --as NAME or the login name.
    """
    settings = hub_settings(data_dir=data_dir)
    with (
        _quarantine(settings) as quarantine,
        journalled(settings, None) as observer,
        _settling("show"),
    ):
        entry = kept.read(
            quarantine, quarantine_id, by=acting(acting_as), via="cli", observer=observer
        )
    _print_entry(entry)


@app.command()
def download(
    quarantine_id: QuarantineId,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write it (default: ID.xml or ID.json here; - for standard output).",
        ),
    ] = None,
    acting_as: ActingAs = None,
    data_dir: DataDir = None,
) -> None:
    """Write a quarantined payload's bytes as they were kept. Exit 1 when unknown or no longer
    kept. The read is journalled (operator_read) under --as NAME or the login name."""
    settings = hub_settings(data_dir=data_dir)
    with (
        _quarantine(settings) as quarantine,
        journalled(settings, None) as observer,
        _settling("download"),
    ):
        entry = kept.read(
            quarantine, quarantine_id, by=acting(acting_as), via="cli", observer=observer
        )
    if entry.payload is None:
        raise fail("download refused", NotHeld(f"the payload of {entry.id} is no longer kept"), 1)
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(entry.payload)
        sys.stdout.buffer.flush()
        return
    extension = "json" if "json" in entry.content_type else "xml"
    target = output or Path(f"{entry.id}.{extension}")
    target.write_bytes(entry.payload)
    console().print(Text.assemble(f"wrote {entry.size} bytes ({entry.content_type}) to ",
                                  literal(target)))  # fmt: skip


@app.command()
def release(
    quarantine_id: QuarantineId,
    why: Why,
    acting_as: ActingAs = None,
    systems_file: SystemsFile = None,
    data_dir: DataDir = None,
) -> None:
    """Translate a held payload again with the mappings on disk now and publish what passes,
    through the same inbound path as `serve` (confirmed by the bus, journalled with --why and
    who asked). What still fails stays held with its new reasons; records published before are
    not published again. Prints the version of the system's mapping used. Exit 1 when not held
    (a second release does nothing) or when the mapping on disk does not load, 3 when the bus
    cannot take the records now."""
    settings = hub_settings(data_dir=data_dir, systems_file=systems_file)
    who = acting(acting_as)
    with exit_2_on_configuration_error(error_console()):
        runtime = build_runtime(settings)
    try:
        if not runtime.connect():
            raise fail("bus unavailable", ConnectionError(runtime.last_bus_error), 3)
        assert runtime.release is not None
        with _settling("release"):
            done = runtime.release.release(quarantine_id, why=why, by=who)
    finally:
        runtime.close()
    out = console()
    out.print(
        Text.assemble(
            f"{done.entry.state.value}: published {done.published}, {done.repeated} published "
            f"before, {done.rejected} still rejected, {done.failed} not confirmed; by ",
            literal(who),
            ": ",
            literal(why.strip()),
        )
    )
    if done.mapping_used is not None:
        out.print(done.mapping_used)
    if done.entry.state is State.HELD:
        out.print(problems_table(done.entry))


@app.command()
def discard(
    quarantine_id: QuarantineId,
    why: Why,
    acting_as: ActingAs = None,
    data_dir: DataDir = None,
) -> None:
    """Discard a held payload: its bytes are dropped, a tombstone stays (who, why, when), and
    the discard is journalled. Exit 1 when it is not held."""
    settings = hub_settings(data_dir=data_dir)
    who = acting(acting_as)
    with (
        _quarantine(settings) as quarantine,
        journalled(settings, None) as observer,
        _settling("discard"),
    ):
        entry = kept.discard(quarantine, quarantine_id, why=why, by=who, observer=observer)
    console().print(
        Text.assemble(
            "discarded ",
            literal(entry.id),
            " by ",
            literal(who),
            ": ",
            literal(entry.discarded_why),
        )
    )


def _print_entry(entry: QuarantineEntry) -> None:
    out = console()
    out.print(Text.assemble(literal(entry.id, "bold"), " from ", literal(entry.system, "bold")))
    out.print(Text.assemble("  message type     ", literal(entry.message_type or "—")))
    out.print(Text.assemble("  receipt          ", literal(entry.receipt or "—")))
    out.print(Text.assemble("  kind             ", literal(entry.kind)))
    out.print(f"  kept at          {local(entry.at)} (Shanghai)")
    out.print(Text.assemble("  content type     ", literal(entry.content_type),
                            f", {entry.size} bytes"))  # fmt: skip
    out.print(f"  state            {entry.state.value}")
    if entry.published_records:
        out.print(f"  published        {len(entry.published_records)} record(s) of it")
    if entry.released_at is not None:
        out.print(Text.assemble(f"  released         {local(entry.released_at)} by ",
                                literal(entry.released_by), ": ",
                                literal(entry.released_why)))  # fmt: skip
    if entry.discarded_at is not None:
        out.print(Text.assemble(f"  discarded        {local(entry.discarded_at)} by ",
                                literal(entry.discarded_by), ": ",
                                literal(entry.discarded_why)))  # fmt: skip
    out.print(problems_table(entry))
    text, note = entry.text()
    out.print(Text.assemble(("payload", "bold"), literal(f" ({note})" if note else "")))
    # Line breaks kept (the payload is a document), every other control character shown.
    out.print(Text("\n").join(literal(line) for line in text[:20_000].splitlines()), soft_wrap=True)
