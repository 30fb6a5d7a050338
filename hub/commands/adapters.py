"""`jghub adapters`: list the registered adapters and print one's documentation and options."""

from __future__ import annotations

import inspect
import json
from typing import Annotated, Any

import typer
from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from adapters.errors import AdapterConfigError
from adapters.registry import ENTRY_POINT_GROUP, adapter_class, adapters

app = typer.Typer(
    help=f"The protocol adapters registered in the entry-point group {ENTRY_POINT_GROUP}.",
    no_args_is_help=True,
)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _registered() -> dict[str, Any]:
    try:
        return dict(adapters())
    except AdapterConfigError as error:
        _console().print(f"[red]adapter registry[/red] {escape(str(error))}")
        raise typer.Exit(1) from None


@app.command("list")
def list_command() -> None:
    """List every registered adapter: name, kind (inbound, poller, sender) and what it does."""
    console = _console()
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    table.add_column("name")
    table.add_column("kind")
    table.add_column("class", overflow="fold")
    table.add_column("what it does")
    for name, cls in _registered().items():
        summary = (inspect.getdoc(cls) or "").splitlines()[0] if inspect.getdoc(cls) else ""
        table.add_row(name, cls.kind, f"{cls.__module__}:{cls.__qualname__}", escape(summary))
    console.print(table)


@app.command("doc")
def doc_command(
    name: Annotated[str, typer.Argument(help="The adapter's name, as `adapters list` shows it.")],
) -> None:
    """Print an adapter's documentation and every option: type, default and description."""
    console = _console()
    _registered()
    try:
        cls = adapter_class(name)
    except AdapterConfigError as error:
        raise typer.BadParameter(str(error), param_hint="NAME") from None
    console.print(
        f"[bold]{name}[/bold]  [dim]({cls.kind}; {cls.__module__}:{cls.__qualname__})[/dim]"
    )
    for line in (inspect.getdoc(cls) or "").splitlines():
        console.print(f"  {escape(line)}")
    fields = cls.Options.model_fields
    console.print()
    if not fields:
        console.print("  no options")
        return
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    table.add_column("option")
    table.add_column("type")
    table.add_column("default")
    table.add_column("description")
    for option, info in fields.items():
        if info.is_required():
            default = "required"
        elif info.default_factory is not None:
            default = _shown(info.default_factory())  # type: ignore[call-arg]
        else:
            default = _shown(info.default)
        table.add_row(
            option,
            escape(_type_name(info.annotation)),
            escape(default),
            escape(info.description or ""),
        )
    console.print(table)


def _shown(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    try:
        return json.dumps(value, ensure_ascii=False)
    except TypeError:
        return str(value)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")
