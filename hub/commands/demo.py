"""`jghub demo`: the hub with every simulated system, through a day of traffic, then its books."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.simulators.demo import DemoOptions, DemoReport, DisposalLoop, run_demo
from standard.types import SHANGHAI


def demo(
    records: Annotated[
        int, typer.Option(help="Generated records over all channels (scales the run).", min=1)
    ] = 400,
    amqp: Annotated[
        str | None,
        typer.Option(
            "--amqp",
            help="Run on RabbitMQ at this URL (amqp://user:password@host:port/vhost); default: "
            "the embedded bus, no RabbitMQ needed.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for the run's files (bus, outbox); default var/demo-<time>."),
    ] = None,
    invalid_share: Annotated[
        float, typer.Option(help="Share of generated records spoiled on purpose.", min=0, max=1)
    ] = 0.08,
    hostile: Annotated[
        bool,
        typer.Option(
            "--hostile/--no-hostile",
            help="Also send each system's invalid and hostile samples and an oversized body.",
        ),
    ] = True,
    fail_share: Annotated[
        float,
        typer.Option(
            help="Share of deliveries the national system answers with 503.", min=0, max=1
        ),
    ] = 0.12,
    seed: Annotated[int, typer.Option(help="Seed of the generated traffic.")] = 7,
    verbose: Annotated[bool, typer.Option(help="Show the hub's warnings while it runs.")] = False,
) -> None:
    """Run the hub, its worker and every simulated system through a day of traffic.

    No RabbitMQ and no configuration needed: the hub serves on a loopback port over the embedded
    bus in a new data folder; the simulators push batches grown from each system's samples
    (with spoiled records, hostile payloads and an oversized body) in each system's own protocol
    (REST with keys or signed app keys, XML over HTTP, SOAP 1.1/1.2), while the national system
    fails a share of deliveries.

    The departments answer what they received: most on time, one late, one returning its
    tasks, one never; the collaboration centre closes the tasks fed back.

    Prints per system what was received, accepted, rejected (top reasons), delivered, retried and
    dead-lettered, then the disposal loop per department (open, overdue, returned, closed, late)
    from the centre's ledger, on the demo's business-time clock. Exits 1 if the books do not
    balance.
    """
    console = Console(highlight=False)
    logging.basicConfig(level=logging.WARNING if verbose else logging.ERROR)
    if not verbose:
        for name in ("hub", "adapters", "bus", "uvicorn", "uvicorn.error", "zeep", "httpx"):
            logging.getLogger(name).setLevel(logging.ERROR)
    defaults = DemoOptions()
    options = DemoOptions(
        records=records,
        invalid_share=invalid_share,
        hostile=hostile,
        amqp_url=amqp,
        data_dir=data_dir,
        seed=seed,
        flaky=defaults.flaky.model_copy(update={"error_share": fail_share}),
    )
    bus = "RabbitMQ" if amqp else "the embedded bus (no RabbitMQ needed)"
    console.print(f"[bold]jghub demo[/bold]: hub, worker and simulated systems on {bus}")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("starting the hub and the simulators", total=None)

        def advance(done: int, total: int, label: str) -> None:
            description = f"pushing: {label}" if done < total else "waiting for deliveries"
            progress.update(task, completed=done, total=total, description=escape(description))

        report = run_demo(options, progress=advance)
    _print_report(console, report)
    _print_loop(console, report.loop)
    _print_next(console, report)
    if not _balanced(report):
        raise typer.Exit(1)


def _balanced(report: DemoReport) -> bool:
    per_system = all(b.received == b.accepted + b.rejected for b in report.books.values())
    return report.settled and per_system and report.queued == 0


def _top(counts: Counter[str], limit: int = 3) -> str:
    return ", ".join(f"{escape(reason)} ×{n}" for reason, n in counts.most_common(limit))


def _print_report(console: Console, report: DemoReport) -> None:
    table = Table(title="Per system", title_justify="left", header_style="bold")
    table.add_column("system")
    for column in ("received", "accepted", "rejected", "delivered", "retried", "dead-lettered"):
        table.add_column(column, justify="right")
    for book in report.books.values():
        receives = book.receives
        table.add_row(
            book.system,
            str(book.received),
            str(book.accepted),
            str(book.rejected),
            str(book.delivered) if receives else "-",
            str(book.retried) if receives else "-",
            str(book.dead_lettered) if receives else "-",
        )
    received = sum(b.received for b in report.books.values())
    rejected = sum(b.rejected for b in report.books.values())
    retried = sum(b.retried for b in report.books.values())
    table.add_section()
    table.add_row(
        "[bold]all[/bold]",
        str(received),
        str(report.accepted),
        str(rejected),
        str(report.delivered),
        str(retried),
        str(report.dead_lettered),
    )
    console.print(table)
    console.print("[bold]Top rejection reasons[/bold] (a payload refused whole counts once)")
    for book in report.books.values():
        if book.reasons:
            console.print(f"  {book.system}: {_top(book.reasons)}")
    pulled = [b for b in report.books.values() if b.pulled]
    for book in pulled:
        console.print(f"  {book.system} pulled {book.pulled} message(s) from its outbox")
    ok = "[green]balanced[/green]" if _balanced(report) else "[red]NOT balanced[/red]"
    console.print(
        f"Books: received {received} = accepted {report.accepted} + rejected {rejected}; "
        f"accepted {report.accepted} = delivered {report.delivered} + dead-lettered "
        f"{report.dead_lettered} + sent again {report.repeated} + still queued {report.queued}: "
        f"{ok} "
        f"(in {report.elapsed_s:.1f} s)."
    )
    dead = [
        (b.system, reason, n) for b in report.books.values() for reason, n in b.dead_reasons.items()
    ]
    if dead:
        console.print("Dead letters (kept with their history, to inspect and replay):")
        for system, reason, count in sorted(dead, key=lambda item: -item[2])[:5]:
            console.print(f"  {system}: {escape(reason)} ×{count}")


ANSWERS = {"on_time": "on time", "late": "late", "return": "returns", "never": "never"}


def _print_loop(console: Console, loop: DisposalLoop) -> None:
    """The disposal loop per department, as the centre's ledger tells it."""
    table = Table(
        title=f"Disposal loop per department (the centre's scorecard, {_shown(loop.closed_at)})",
        title_justify="left",
        header_style="bold",
    )
    table.add_column("department", overflow="fold")  # wrapped, never cut: it is the answer
    table.add_column("system")
    table.add_column("kind")
    table.add_column("answers")
    for column in ("items", "open", "overdue", "returned", "closed", "on time", "late"):
        table.add_column(column, justify="right")
    for score in loop.scores:
        system = loop.systems.get(score.department, "?")
        behaviour = loop.behaviours.get(system)
        answers = ANSWERS[behaviour.of(score.kind)] if behaviour is not None else "-"
        if loop.unanswerable.get((system, score.kind)):
            answers += " (no channel)"
        closed = score.rows - score.open
        counts = (score.rows, score.open, score.overdue, score.returned, closed, score.on_time)
        table.add_row(
            escape(score.label), system, score.kind, answers, *map(str, (*counts, score.late))
        )
    console.print(table)
    console.print(
        f"Demo clock: the day of traffic ended {_shown(loop.day_ends)}; the loop is scored at "
        f"{_shown(loop.closed_at)}, once every due time had passed. Open counts returned and "
        "fed-back items waiting for their dispatcher; on time and late say when items were fed "
        "back; tasks fed back are closed by the collaboration centre."
    )
    refused = sum(loop.refused.values())
    console.print(
        f"The departments pushed {loop.answers} answers; the hub refused {refused}"
        + (f": {_top(loop.refused)}." if refused else ".")
    )
    for (system, kind), count in sorted(loop.unanswerable.items()):
        console.print(f"  {system} has no channel to answer a {kind}: {count} left unanswered")


def _shown(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _print_next(console: Console, report: DemoReport) -> None:
    console.print()
    console.print("[bold]Where to look next[/bold]")
    console.print(
        f"  • The run's bus: {escape(report.bus_url)} (namespace {report.namespace}); its "
        f"store's quarantine keeps the {report.quarantined} refused payloads with their reasons "
        f"(JGHUB_DATA_DIR={escape(str(report.data_dir))} jghub quarantine list)."
    )
    console.print(f"  • The run's files: {escape(str(report.data_dir))}")
    console.print(
        "  • The reference lists it fed (catalogue, officers, objects): "
        f"JGHUB_DATA_DIR={escape(str(report.data_dir))} jghub reference status"
    )
    console.print(
        "  • Run the hub for real: jghub serve and jghub worker (config/systems.yaml; "
        "JGHUB_AMQP_URL for RabbitMQ); OpenAPI at /docs, metrics at /metrics, SOAP WSDLs at "
        "/systems/<id>/soap?wsdl."
    )
    console.print(
        "  • Play one system against it: jghub simulate SYSTEM... --hub http://127.0.0.1:8080"
    )
    console.print("  • Check every system's mappings and samples: jghub mappings test")
