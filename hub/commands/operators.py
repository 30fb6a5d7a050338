"""`jghub operators`: hash an operator's secret for the accounts file, check that file."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hub.commands.journal import console
from monitor.errors import OperatorsFileError
from monitor.operators import MIN_SECRET_CHARS, hash_secret, load_operators

app = typer.Typer(
    help="Operator accounts: who may use the dead-letter HTTP routes (JGHUB_OPERATORS_FILE).",
    no_args_is_help=True,
)


def _read_secret() -> str:
    """The secret from a prompt without echo (asked twice), or the first line of stdin."""
    if sys.stdin.isatty():
        secret = getpass.getpass("secret: ")
        if getpass.getpass("again: ") != secret:
            console().print("[red]the two secrets differ[/red]; nothing printed")
            raise typer.Exit(2)
        return secret
    return sys.stdin.readline().rstrip("\r\n")


@app.command("hash")
def hash_command() -> None:
    """Print the secret_hash line for an operator's secret (scrypt, a fresh salt each time).

    The secret is read from a prompt that does not echo it, or from the first line of stdin
    (`printf '%s' "$SECRET" | jghub operators hash`), never from the command line, where other
    users of the host would see it. Paste the line as the account's secret_hash.
    """
    secret = _read_secret()
    if len(secret) < MIN_SECRET_CHARS:
        console().print(
            f"[red]too short[/red]: an operator's secret needs at least {MIN_SECRET_CHARS} "
            "characters (a passphrase of a few words is easiest to type)"
        )
        raise typer.Exit(2)
    typer.echo(hash_secret(secret))


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="The operator accounts file (YAML).")],
) -> None:
    """Validate an operator accounts file as `serve` does at start; exit 2 naming file:line."""
    try:
        accounts = load_operators(file)
    except OperatorsFileError as error:
        console().print(f"[red]invalid[/red]: {escape(str(error))}")
        raise typer.Exit(2) from None
    for account in accounts.operators:
        console().print(f"{escape(account.name)}  {account.role}")
