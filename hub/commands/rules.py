"""`jghub rules`: the cross-checks against the reference lists, and what the rules file makes of
each (reject, warn or off; per system where it says so)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hub.settings import HubSettings
from reference.rulebook import Rulebook, RulesFileError
from reference.rules import RULES


def rules(
    file: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            help="The rules file; default: JGHUB_RULES_FILE, else config/rules.yaml.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """List every cross-check: its name, its disposition (the default in parentheses when the
    file changes it), the systems the file gives another one, the datasets it judges, the
    reference lists it needs, and its statement.

    A rule whose list was never fed does not judge: the record is counted "not checked" for
    it (`jghub quality`). Exit status 1 when the rules file has problems, each with file:line.
    """
    console = Console(highlight=False, soft_wrap=True)
    try:
        rulebook = Rulebook.load(file or HubSettings().rules_file)
    except RulesFileError as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        raise typer.Exit(1) from None
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in ("rule", "disposition", "per system", "datasets", "needs", "statement"):
        table.add_column(column, overflow="fold")
    for name, rule in RULES.items():
        disposition: str = rulebook.dispositions[name]
        if disposition != rule.default:
            disposition += f" (default {rule.default})"
        systems = ", ".join(
            f"{system}: {own[name]}" for system, own in sorted(rulebook.overrides.items())
            if name in own
        )  # fmt: skip
        table.add_row(
            name,
            disposition,
            systems or "-",
            ", ".join(rule.datasets),
            ", ".join(rule.needs) or "-",
            escape(rule.statement),
        )
    console.print(table)
    console.print(f"from {rulebook.file or 'the defaults'}")
