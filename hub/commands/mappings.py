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
    BatchRendering,
    BatchResults,
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
from mappings.scaffold import (
    CONFIDENT,
    MessagePlan,
    guess_dataset,
    mapping_yaml,
    merge_samples,
    read_sample,
    suggest,
    system_yaml,
)
from mappings.system import SYSTEMS_ROOT, SystemMappings, load_all, load_system
from standard.datasets import DATASETS
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
        BatchRendering,
        BatchResults,
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


@app.command("scaffold")
def scaffold_command(
    system: Annotated[str, typer.Argument(help="The new system's id (its folder name).")],
    samples: Annotated[
        list[Path],
        typer.Argument(
            help="Sample payloads (JSON or XML); their folder or name gives the message type.",
            exists=True,
            dir_okay=False,
        ),
    ],
    message_type: Annotated[
        str | None,
        typer.Option(
            "--type", "-t", help="Message type of every sample (default: from each file)."
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="The standard's dataset (default: guessed)."),
    ] = None,
    charset: Annotated[
        str | None,
        typer.Option("--charset", help="The charset the transport declares for the samples."),
    ] = None,
    root: RootOption = SYSTEMS_ROOT,
    force: Annotated[
        bool, typer.Option("--force", help="Write into an existing system folder.")
    ] = False,
) -> None:
    """Write a system folder from sample payloads: system.yaml, one mapping per message type
    listing every leaf with the canonical field it most likely feeds, and the samples.

    The mapping loads as written (the dataset's mandatory fields get the best-scoring leaf);
    `jghub mappings test SYSTEM` then says what is missing, and `--update` writes expected/.
    """
    console = _console()
    folder = root / system
    if not re.fullmatch(r"[a-z][a-z0-9-]*", system):
        raise typer.BadParameter(
            "a system id is lower-case letters, digits and dashes, starting with a letter",
            param_hint="SYSTEM",
        )
    if folder.exists() and not force:
        raise typer.BadParameter(
            f"{folder} exists; choose another id or pass --force to write into it",
            param_hint="SYSTEM",
        )
    if message_type is not None and not re.fullmatch(r"[a-z][a-z0-9_.-]*", message_type):
        raise typer.BadParameter(
            "a message type is lower-case letters, digits, '_', '.' and '-', starting with a "
            "letter",
            param_hint="--type",
        )
    if dataset is not None and dataset not in DATASETS:
        raise typer.BadParameter(
            f"the standard has no dataset '{dataset}' (it has: {', '.join(sorted(DATASETS))})",
            param_hint="--dataset",
        )
    plans = _scaffold_plans(samples, message_type, dataset, charset)
    (folder / "expected").mkdir(parents=True, exist_ok=True)
    (folder / "system.yaml").write_text(system_yaml(system, plans), encoding="utf-8")
    for plan in plans:
        (folder / f"{plan.message_type}.yaml").write_text(mapping_yaml(plan), encoding="utf-8")
        target = folder / "samples" / plan.message_type
        target.mkdir(parents=True, exist_ok=True)
        for file in plan.files:
            (target / file.name).write_bytes(file.read_bytes())
            if charset is not None:
                # The transport's charset travels in the expected file; --update keeps it.
                expected = folder / "expected" / plan.message_type / f"{file.stem}.json"
                expected.parent.mkdir(parents=True, exist_ok=True)
                expected.write_text(
                    json.dumps({"input": {"charset": charset}}, indent=2) + "\n", encoding="utf-8"
                )
        confident = sum(
            1 for leaf in plan.sample.leaves if suggest(leaf, plan.dataset, 1)[0].score >= CONFIDENT
        )
        guess = f" (guessed, mean score {plan.dataset_score:.2f})" if plan.dataset_guessed else ""
        console.print(
            f"[green]wrote[/green]  {escape(str(folder / plan.message_type))}.yaml: "
            f"{plan.sample.format}, records {escape(plan.sample.records)} "
            f"({plan.sample.records_found} in the samples), dataset {plan.dataset}{guess}, "
            f"{len(plan.sample.leaves)} leaves, {confident} with a confident suggestion"
        )
    try:
        load_system(folder)
    except MappingError as error:  # a scaffold that does not load is a bug: say so plainly
        console.print(f"[red]the scaffold does not load[/red] {escape(str(error))}")
        raise typer.Exit(1) from None
    console.print(
        f"next: edit {escape(str(folder))}, then `jghub mappings test {system}"
        + (f" --root {escape(str(root))}" if root != SYSTEMS_ROOT else "")
        + "`"
    )


def _scaffold_plans(
    files: list[Path], message_type: str | None, dataset: str | None, charset: str | None
) -> list[MessagePlan]:
    by_type: dict[str, list[Path]] = {}
    for file in files:
        by_type.setdefault(message_type or _type_of(file), []).append(file)
    plans = []
    for name, paths in by_type.items():
        read = []
        for path in paths:
            try:
                read.append(read_sample(path.read_bytes(), charset=charset))
            except PayloadRejected as rejected:
                raise typer.BadParameter(f"{path}: {rejected}", param_hint="SAMPLE") from None
        sample = merge_samples(read)
        if not sample.leaves:
            raise typer.BadParameter(f"{paths[0]}: the sample holds no values", param_hint="SAMPLE")
        chosen, score = (dataset, 0.0) if dataset else guess_dataset(sample)
        plans.append(MessagePlan(name, sample, chosen, dataset is None, score, paths))
    return plans


def _type_of(file: Path) -> str:
    """The message type a sample's place says: its folder under samples/, else its name."""
    candidates = [file.parent.name] if file.parent.parent.name == "samples" else []
    candidates.append(re.sub(r"^(valid|invalid)[-_]", "", file.stem))
    for candidate in candidates:
        name = re.sub(r"[^a-z0-9_.-]+", "_", candidate.lower()).strip("_.-")
        if re.fullmatch(r"[a-z][a-z0-9_.-]*", name):
            return name
    raise typer.BadParameter(
        f"cannot tell the message type of {file}; pass --type", param_hint="--type"
    )
