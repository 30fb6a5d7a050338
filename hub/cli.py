"""The `jghub` command line: one entry point, one sub-command group per room."""

from __future__ import annotations

import typer

from hub import __version__
from hub.commands import adapters as adapters_commands
from hub.commands import dead as dead_commands
from hub.commands import demo as demo_command
from hub.commands import journal as journal_commands
from hub.commands import mappings as mappings_commands
from hub.commands import quality as quality_command
from hub.commands import serve as serve_command
from hub.commands import simulate as simulate_command
from hub.commands import standard as standard_commands
from hub.commands import trace as trace_command
from hub.commands import worker as worker_command

app = typer.Typer(
    name="jghub",
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
app.command("serve")(serve_command.serve)
app.command("worker")(worker_command.worker)
app.command("simulate")(simulate_command.simulate)
app.command("demo")(demo_command.demo)
app.command("trace")(trace_command.trace)
app.add_typer(journal_commands.app, name="journal")
app.add_typer(dead_commands.app, name="dead")
app.command("quality")(quality_command.quality)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
