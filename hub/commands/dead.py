"""`jghub dead list|show|replay`: the dead letters, by target, reason and age, and their replay.

Run on the hub's host, these commands act as whoever runs them: `show` (which prints a payload
body) and `replay` are journalled under the login name, or as "NAME (login LOGIN)" with
`--as NAME`: anyone on the host can type any --as, so the login it came from stays beside it.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.text import Text

import bus
from bus import Broker, BusError, Topology
from hub.commands.journal import console
from hub.commands.options import DataDir, SystemsFile, hub_settings
from hub.settings import HubSettings
from hub.systems import SystemsConfig, SystemsConfigError, load_systems
from monitor import dead_letters
from monitor.console_tables import dead_letters_table, history_table, local
from monitor.errors import InvalidRequest, JournalUnavailable, UnknownTarget
from monitor.literal import literal
from monitor.observer import Observer
from monitor.settings import MonitorSettings
from store import StoreError

app = typer.Typer(
    help="Dead letters: messages whose delivery failed for good. List, inspect, replay.",
    no_args_is_help=True,
)

Target = Annotated[
    str | None,
    typer.Option(help="The target system whose deliveries failed (its id; '_' for '-' also does)."),
]
Reason = Annotated[
    str | None, typer.Option(help="Text the last failure's reason contains, e.g. 'HTTP 503'.")
]
OlderThan = Annotated[str | None, typer.Option(help="Dead for at least this long: 30m, 2h, 7d ...")]
ActingAs = Annotated[
    str | None,
    typer.Option(
        "--as",
        "--by",
        help="Who acts, for the journal (default: the login name, which is journalled too).",
    ),
]


def fail(what: str, error: Exception, code: int = 2) -> typer.Exit:
    """Say `what` failed and why (red, values shown as written); the exit to raise."""
    console().print(Text.assemble((what, "red"), ": ", literal(error)))
    return typer.Exit(code)


@contextmanager
def _bus(settings: HubSettings) -> Iterator[tuple[Broker, SystemsConfig, Topology]]:
    try:
        systems = load_systems(settings.systems_file)
    except SystemsConfigError as error:
        raise fail("systems configuration", error) from None
    try:
        broker = bus.connect(settings.bus_url)
    except BusError as error:
        raise fail("bus unavailable", error, 3) from None
    topology = systems.topology(settings.namespace)
    with broker:
        try:
            # Declaring is idempotent; it also tells the broker the namespace to work in.
            broker.declare(topology)
        except BusError as error:
            raise fail("bus unavailable", error, 3) from None
        yield broker, systems, topology


@contextmanager
def journalled(
    settings: HubSettings, systems: SystemsConfig | None, *, journalled: bool = True
) -> Iterator[Observer]:
    """An observer writing to the hub's journal (none when `journalled` is false or the journal
    is off), knowing the topology of `systems` when given; exit 2 when the journal cannot be
    opened."""
    monitor_settings = MonitorSettings()
    try:
        journal = (
            monitor_settings.open_journal(settings.store(), settings.data_dir)
            if journalled
            else None
        )
    except (JournalUnavailable, StoreError) as error:
        raise fail("journal unavailable", error) from None
    try:
        topology = systems.topology(settings.namespace) if systems is not None else None
        yield Observer(topology, journal)
    finally:
        if journal is not None:
            journal.close()


def acting(name: str | None) -> str:
    """Who the journal says acted: --as NAME, else the login name (kept beside it anyway)."""
    login = getpass.getuser()
    return login if not name or name == login else f"{name} (login {login})"


def _target(topology: Topology, given: str | None) -> str | None:
    """The target `given` names (see `dead_letters.target_named`); exit 2 naming the known ones."""
    if given is None:
        return None
    try:
        return dead_letters.target_named(topology, given)
    except UnknownTarget as error:
        raise fail("unknown target", error) from None


def _query(
    topology: Topology,
    *,
    target: str | None,
    reason: str | None,
    older_than: str | None,
    ids: list[str] | None = None,
    limit: int = 1000,
) -> dead_letters.DeadLetterQuery:
    try:
        return dead_letters.DeadLetterQuery(
            target=_target(topology, target),
            reason=reason,
            older_than=older_than,
            ids=ids or None,
            limit=limit,
        )
    except ValueError as error:
        raise fail("bad filter", error) from None


@app.command("list")
def list_command(
    target: Target = None,
    reason: Reason = None,
    older_than: OlderThan = None,
    limit: Annotated[int, typer.Option(min=1, help="Most dead letters listed.")] = 100,
    systems_file: SystemsFile = None,
    data_dir: DataDir = None,
) -> None:
    """List dead letters, oldest first: id, target, when, age, tries, last reason."""
    settings = hub_settings(data_dir=data_dir, systems_file=systems_file)
    with _bus(settings) as (broker, _, topology):
        query = _query(topology, target=target, reason=reason, older_than=older_than, limit=limit)
        found = dead_letters.find(broker, query)
    out = console()
    if not found:
        out.print("no dead letters match")
        return
    out.print(dead_letters_table(found, title=f"{len(found)} dead letter(s)"))


@app.command()
def show(
    message_id: Annotated[str, typer.Argument(help="The dead letter's message id.")],
    acting_as: ActingAs = None,
    systems_file: SystemsFile = None,
    data_dir: DataDir = None,
) -> None:
    """One dead letter: its headers, every failed attempt, and its body. Exit 1 when unknown.

    Reading the body is journalled (operator_read) under --as NAME or the login name.
    """
    settings = hub_settings(data_dir=data_dir, systems_file=systems_file)
    with _bus(settings) as (broker, systems, _), journalled(settings, systems) as observer:
        found = dead_letters.show(broker, message_id)
        dead_letters.read_bodies(found, by=acting(acting_as), via="cli", observer=observer)
    out = console()
    if not found:
        out.print(Text.assemble("no dead letter ", literal(message_id)))
        raise typer.Exit(1)
    for dead in found:
        message = dead.message
        out.print(
            Text.assemble(literal(message.id, "bold"), " for target ", literal(dead.target, "bold"))
        )
        out.print(Text.assemble("  routing key      ", literal(message.routing_key)))
        out.print(Text.assemble("  idempotency key  ", literal(message.idempotency_key)))
        out.print(f"  first published  {local(message.published_at)} (Shanghai)")
        out.print(f"  dead since       {local(dead.dead_at)} (Shanghai)")
        out.print(Text.assemble("  last reason      ", literal(dead.reason)))
        out.print(history_table(dead))
        out.print("[bold]body[/bold]")
        # Line breaks kept (the body is a document), every other control character shown.
        body = message.body.decode("utf-8", "replace")[:4000]
        out.print(Text("\n").join(literal(line) for line in body.splitlines()), soft_wrap=True)


@app.command()
def replay(
    why: Annotated[
        str,
        typer.Option(help="Why these messages should go again; recorded in the journal."),
    ],
    target: Target = None,
    reason: Reason = None,
    older_than: OlderThan = None,
    message_id: Annotated[
        list[str] | None, typer.Option("--id", help="Only this message id (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would move.")] = False,
    acting_as: ActingAs = None,
    systems_file: SystemsFile = None,
    data_dir: DataDir = None,
) -> None:
    """Move matching dead letters back to their target queues (every retry tier again).

    At least one filter is needed; --why is mandatory and goes to the journal with each
    message, with who asked (--as NAME, else the login name). --dry-run lists what would move
    and moves nothing.
    """
    settings = hub_settings(data_dir=data_dir, systems_file=systems_file)
    who = acting(acting_as)
    with _bus(settings) as (broker, systems, topology):
        query = _query(
            topology, target=target, reason=reason, older_than=older_than, ids=message_id
        )
        with journalled(settings, systems, journalled=not dry_run) as observer:
            try:
                plan = dead_letters.replay(
                    broker, query, why=why, by=who, observer=observer, dry_run=dry_run
                )
            except InvalidRequest as error:
                raise fail("replay refused", error) from None
    out = console()
    if not plan.matched:
        out.print("no dead letters match; nothing to replay")
        return
    # What happened first, in plain words, then the details: the messages have moved already,
    # so the outcome is said before anything that shows what senders wrote.
    if plan.dry_run:
        out.print(f"dry run: would replay {len(plan.matched)}; nothing moved")
    else:
        out.print(
            Text.assemble(
                f"replayed {len(plan.replayed)} of {len(plan.matched)} by ",
                literal(who),
                ": ",
                literal(plan.why),
            )
        )
    out.print(dead_letters_table(plan.matched, title=f"{len(plan.matched)} dead letter(s) match"))
