"""`jghub mappings`: test system folders, translate one payload, document the mapping functions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mappings.errors import MappingEngineError, MappingError, PayloadRejected
from mappings.functions import FUNCTIONS, MappingFunction
from mappings.language import (
    Assumption,
    Condition,
    EnvelopeRules,
    FieldRule,
    Ignored,
    InboundMapping,
    OutboundMapping,
    SystemSpec,
)
from mappings.payloads import PayloadLimits
from mappings.samples import (
    ignore_warnings,
    run_samples,
    translation_as_data,
    unread_source_fields,
)
from mappings.system import SYSTEMS_ROOT, SystemMappings, load_all, load_system
from standard.envelope import Envelope

app = typer.Typer(
    help="Mappings between external systems' payloads and the unified standard.",
    no_args_is_help=True,
)

RootOption = Annotated[
    Path,
    typer.Option(
        "--root",
        help="Folder holding the system folders.",
        file_okay=False,
        show_default="the systems shipped in mappings/systems",
    ),
]


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _load(system: str | None, root: Path) -> dict[str, SystemMappings]:
    try:
        if system is None:
            return load_all(root)
        folder = root / system
        if not folder.is_dir():
            known = sorted(path.name for path in root.iterdir() if (path / "system.yaml").is_file())
            raise typer.BadParameter(
                f"no system folder '{system}' in {root} (systems: {', '.join(known) or 'none'})",
                param_hint="SYSTEM",
            )
        return {system: load_system(folder)}
    except MappingError as error:
        _console().print(f"[red]mapping error[/red] {escape(str(error))}")
        raise typer.Exit(1) from None


@app.command("test")
def test_command(
    system: Annotated[
        str | None, typer.Argument(help="The system to test (a folder name); default: all.")
    ] = None,
    root: RootOption = SYSTEMS_ROOT,
    update: Annotated[
        bool,
        typer.Option("--update", help="Write the expected files from the current results."),
    ] = False,
) -> None:
    """Run every sample of a system (or all) through its mappings and compare with expected/.

    Shows a unified diff for a mismatch, then the source fields of the samples that no mapping
    reads. Exits 1 when a sample fails or a mapping does not load.
    """
    console = _console()
    systems = _load(system, root)
    failures = 0
    total = 0
    for mappings in systems.values():
        outcomes = run_samples(mappings, update=update)
        for outcome in outcomes:
            total += 1
            label = f"{outcome.system} {outcome.message_type} {outcome.sample.name}"
            if outcome.updated:
                console.print(f"[yellow]wrote[/yellow]  {escape(label)} → {outcome.expected}")
            elif outcome.passed:
                console.print(f"[green]ok[/green]     {escape(label)}")
            else:
                failures += 1
                console.print(f"[red]FAILED[/red] {escape(label)}")
                if outcome.problem:
                    console.print(f"       {escape(outcome.problem)}")
                if outcome.diff:
                    console.print(escape(outcome.diff), markup=False)
        for message_type, fields in unread_source_fields(mappings).items():
            if fields:
                console.print(
                    f"[yellow]unread[/yellow] {mappings.id} {message_type}: {len(fields)} source "
                    "field(s) in the samples that no mapping reads:"
                )
                for field in fields:
                    console.print(f"         {escape(field)}")
        for message_type, problems in ignore_warnings(mappings).items():
            for problem in problems:
                console.print(
                    f"[yellow]ignore[/yellow] {mappings.id} {message_type}: {escape(problem)}"
                )
    verdict = "[red]failed[/red]" if failures else "[green]passed[/green]"
    console.print(f"{total - failures} of {total} samples passed: {verdict}")
    if failures:
        raise typer.Exit(1)


@app.command("run")
def run_command(
    system: Annotated[str, typer.Argument(help="The system (a folder name).")],
    file: Annotated[
        Path,
        typer.Argument(
            help="An inbound payload, or for an outbound type a record or envelope as JSON.",
            exists=True,
            dir_okay=False,
        ),
    ],
    message_type: Annotated[
        str | None,
        typer.Option("--type", "-t", help="Message type; needed when the system has several."),
    ] = None,
    charset: Annotated[
        str | None, typer.Option("--charset", help="The charset the transport would declare.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document with envelopes and errors.")
    ] = False,
    root: RootOption = SYSTEMS_ROOT,
) -> None:
    """Translate one payload and print the envelopes or the errors (exit 1 on any error).

    For an outbound message type, render the record in FILE and print the payload.
    """
    console = _console()
    mappings = _load(system, root)[system]
    chosen = _message_type(mappings, message_type)
    payload = file.read_bytes()
    if chosen in mappings.outbound:
        try:
            given: Any = json.loads(payload)
            source = Envelope.from_json(payload) if "specversion" in given else given
            typer.echo(mappings.render(chosen, source).decode("utf-8", "replace"))
        except (MappingEngineError, ValueError) as error:
            console.print(f"[red]cannot render[/red] {escape(str(error))}")
            raise typer.Exit(1) from None
        return
    translation = mappings.inbound[chosen]
    try:
        result = mappings.translate(chosen, payload, charset=charset)
    except PayloadRejected as rejected:
        if as_json:
            typer.echo(json.dumps({"rejected": rejected.to_dict()}, ensure_ascii=False, indent=2))
        else:
            console.print(f"[red]payload rejected[/red] {escape(str(rejected))}")
        raise typer.Exit(1) from None
    if as_json:
        data = translation_as_data(translation, result)
        data["envelopes"] = [json.loads(envelope.to_json()) for envelope in result.envelopes]
        data["errors"] = [error.to_dict() for error in result.errors]
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for envelope in result.envelopes:
            typer.echo(json.dumps(json.loads(envelope.to_json()), ensure_ascii=False, indent=2))
        for problem in result.errors:
            console.print(f"[red]error[/red] {escape(str(problem))}")
        console.print(
            f"{len(result.envelopes)} envelope(s), {len(result.errors)} error(s) in "
            f"{len(result.rejected_records())} record(s)"
        )
    if result.errors:
        raise typer.Exit(1)


def _message_type(mappings: SystemMappings, given: str | None) -> str:
    known = sorted({*mappings.inbound, *mappings.outbound})
    if given is not None:
        if given not in known:
            raise typer.BadParameter(
                f"system '{mappings.id}' has no message type '{given}' "
                f"(it has: {', '.join(known)})",
                param_hint="--type",
            )
        return given
    if len(mappings.inbound) == 1:
        return next(iter(mappings.inbound))
    raise typer.BadParameter(
        f"system '{mappings.id}' has several message types; choose one of: {', '.join(known)}",
        param_hint="--type",
    )


@app.command("functions")
def functions_command(
    name: Annotated[
        str | None, typer.Argument(help="One function to document; default: all.")
    ] = None,
) -> None:
    """Print the documentation of the mapping functions and their options."""
    console = _console()
    if name is not None and name not in FUNCTIONS:
        raise typer.BadParameter(
            f"no function '{name}' (functions: {', '.join(sorted(FUNCTIONS))})",
            param_hint="NAME",
        )
    chosen = [FUNCTIONS[name]] if name else [FUNCTIONS[key] for key in sorted(FUNCTIONS)]
    for function in chosen:
        _document(console, function)


def _document(console: Console, function: MappingFunction) -> None:
    scope = "  [dim](works on a whole list)[/dim]" if function.whole_list else ""
    console.print(f"[bold]{function.name}[/bold]{scope}")
    for line in function.doc.strip().splitlines():
        console.print(f"  {escape(line.strip())}")
    fields = function.options.model_fields
    if fields:
        table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        table.add_column("option")
        table.add_column("type")
        table.add_column("default")
        table.add_column("description")
        for option, info in fields.items():
            shown = info.alias or option
            if option == function.primary:
                shown += " (main)"
            default = "required" if info.is_required() else _default(info.default)
            annotation = _type_name(info.annotation)
            table.add_row(
                shown, escape(annotation), escape(default), escape(info.description or "")
            )
        console.print(table)
    for example in function.examples:
        console.print(f"  e.g. [cyan]{escape(example)}[/cyan]")
    console.print()


@app.command("language")
def language_command() -> None:
    """Print the reference of the mapping language: every key of system and mapping files."""
    console = _console()
    for model in (
        SystemSpec,
        PayloadLimits,
        InboundMapping,
        EnvelopeRules,
        Assumption,
        Ignored,
        OutboundMapping,
        FieldRule,
        Condition,
    ):
        console.print(f"[bold]{model.__name__}[/bold]")
        for line in (model.__doc__ or "").strip().splitlines():
            console.print(f"  {escape(line.strip())}")
        table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        for column in ("key", "type", "default", "description"):
            table.add_column(column)
        for name, info in model.model_fields.items():
            default = "required" if info.is_required() else _default_of(info)
            annotation = _type_name(info.annotation)
            table.add_row(
                info.alias or name,
                escape(annotation),
                escape(default),
                escape(info.description or ""),
            )
        console.print(table)
        console.print()


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation).replace("typing.", "")
    return re.sub(r"(?:[a-z_]+\.)+([A-Z]\w*)", r"\1", text)


def _default_of(info: Any) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
        return json.dumps(value.model_dump() if hasattr(value, "model_dump") else value)
    return _default(info.default)


def _default(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    return json.dumps(value, ensure_ascii=False)
