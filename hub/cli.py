"""The `jghub` command line: one entry point, one sub-command group per room."""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from hub import __version__


def one_line_paragraphs(text: str) -> str:
    """`text` with the lines of each paragraph joined, for the terminal alone to break; a
    paragraph click marks as preformatted (starting with \\b) stays as written."""
    return "\n\n".join(
        paragraph
        if paragraph.startswith("\b")
        else " ".join(line.strip() for line in paragraph.splitlines())
        for paragraph in inspect.cleandoc(text).split("\n\n")
    )


class ReflowedHelp(TyperGroup):
    """The `jghub` group: every help text below it reaches typer with one line per paragraph.

    Docstrings and help strings are wrapped at the source's line length. Typer's rich help keeps
    some of those single newlines as line breaks (a command's later paragraphs, its summary in a
    group's list of commands), and the terminal wraps the lines again, which reads ragged ("over
    the embedded" / "bus in a new data folder") at any width but the source's. Joining the lines
    here, once typer has built the whole tree, leaves every break to the terminal: for each
    command, group, option and argument, whichever typer version and markup mode renders it.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        _reflow(self)


def _reflow(command: TyperCommand | TyperGroup) -> None:
    """Join the lines of each help paragraph of `command`, its parameters and the commands below."""
    if command.help:
        command.help = one_line_paragraphs(command.help)
    for param in command.params:
        if isinstance(param, TyperOption | TyperArgument) and param.help:
            param.help = one_line_paragraphs(param.help)
    for sub in command.commands.values() if isinstance(command, TyperGroup) else ():
        if isinstance(sub, TyperCommand | TyperGroup):
            _reflow(sub)


COMMANDS: dict[str, tuple[str, str]] = {
    "standard": ("hub.commands.standard", "app"),
    "mappings": ("hub.commands.mappings", "app"),
    "adapters": ("hub.commands.adapters", "app"),
    "systems": ("hub.commands.systems", "app"),
    "serve": ("hub.commands.serve", "serve"),
    "worker": ("hub.commands.worker", "worker"),
    "simulate": ("hub.commands.simulate", "simulate"),
    "demo": ("hub.commands.demo", "demo"),
    "trace": ("hub.commands.trace", "trace"),
    "search": ("hub.commands.search", "search_command"),
    "journal": ("hub.commands.journal", "app"),
    "dead": ("hub.commands.dead", "app"),
    "quarantine": ("hub.commands.quarantine", "app"),
    "operators": ("hub.commands.operators", "app"),
    "db": ("hub.commands.db", "app"),
    "centre": ("hub.commands.centre", "app"),
    "reference": ("hub.commands.reference", "app"),
    "quality": ("hub.commands.quality", "quality"),
    "rules": ("hub.commands.rules", "rules"),
}
"""Each command of `jghub`: its module and, there, its Typer group or its function."""


def _version(value: bool) -> None:
    if value:
        typer.echo(f"jghub {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Integration hub for the provincial Internet + Supervision system."""


def build(only: str | None = None) -> typer.Typer:
    """The `jghub` app with every command, or with the command `only` alone.

    A process started as `jghub serve ...` (or worker, journal ...) needs its own command's
    room and no other: importing every room (the centre, the simulators, the demo) cost each
    start of serve or the worker about a second. The app with every command is `app`.
    """
    built = typer.Typer(
        name="jghub",
        cls=ReflowedHelp,
        help="Integration hub for the provincial Internet + Supervision system.",
        no_args_is_help=True,
        add_completion=False,
    )
    built.callback()(_root)
    for name, (module, attribute) in COMMANDS.items():
        if only is not None and name != only:
            continue
        command = getattr(importlib.import_module(module), attribute)
        if isinstance(command, typer.Typer):
            built.add_typer(command, name=name)
        else:
            built.command(name)(command)
    return built


@functools.cache
def _full_app() -> typer.Typer:
    return build()


def __getattr__(name: str) -> typer.Typer:
    # `hub.cli.app`, built (every room imported) when first asked for: by the tests and by
    # `jghub --help`, not by a process that runs one command.
    if name == "app":
        return _full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    asked = sys.argv[1] if len(sys.argv) > 1 else ""
    build(only=asked if asked in COMMANDS else None)()


if __name__ == "__main__":
    main()
