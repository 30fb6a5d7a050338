"""The `jghub` command line: one entry point, one sub-command group per room."""

from __future__ import annotations

import inspect
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from hub import __version__
from hub.commands import adapters as adapters_commands
from hub.commands import centre as centre_commands
from hub.commands import db as db_commands
from hub.commands import dead as dead_commands
from hub.commands import demo as demo_command
from hub.commands import journal as journal_commands
from hub.commands import mappings as mappings_commands
from hub.commands import operators as operators_commands
from hub.commands import quality as quality_command
from hub.commands import quarantine as quarantine_commands
from hub.commands import reference as reference_commands
from hub.commands import rules as rules_command
from hub.commands import search as search_command
from hub.commands import serve as serve_command
from hub.commands import simulate as simulate_command
from hub.commands import standard as standard_commands
from hub.commands import systems as systems_commands
from hub.commands import trace as trace_command
from hub.commands import worker as worker_command


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


app = typer.Typer(
    name="jghub",
    cls=ReflowedHelp,
    help="Integration hub for the provincial Internet + Supervision system.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"jghub {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Integration hub for the provincial Internet + Supervision system."""


app.add_typer(standard_commands.app, name="standard")
app.add_typer(mappings_commands.app, name="mappings")
app.add_typer(adapters_commands.app, name="adapters")
app.add_typer(systems_commands.app, name="systems")
app.command("serve")(serve_command.serve)
app.command("worker")(worker_command.worker)
app.command("simulate")(simulate_command.simulate)
app.command("demo")(demo_command.demo)
app.command("trace")(trace_command.trace)
app.command("search")(search_command.search_command)
app.add_typer(journal_commands.app, name="journal")
app.add_typer(dead_commands.app, name="dead")
app.add_typer(quarantine_commands.app, name="quarantine")
app.add_typer(operators_commands.app, name="operators")
app.add_typer(db_commands.app, name="db")
app.add_typer(centre_commands.app, name="centre")
app.add_typer(reference_commands.app, name="reference")
app.command("quality")(quality_command.quality)
app.command("rules")(rules_command.rules)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
