"""`jghub systems check`: the systems file and its mappings checked as serve and worker would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hub.settings import HubSettings
from hub.systems_check import check_systems

app = typer.Typer(help="The connected systems' configuration.", no_args_is_help=True)


@app.command("check")
def check_command(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="The systems file; default: JGHUB_SYSTEMS_FILE, else config/systems.yaml.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    mappings: Annotated[
        Path | None,
        typer.Option(
            "--mappings",
            help="Folder of the mapping folders; default: JGHUB_MAPPINGS_ROOT, else the shipped.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    fetch: Annotated[
        bool,
        typer.Option(
            "--fetch", help="Also read the WSDLs given as URLs (the check's only network use)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Load the systems file and every mapping folder it names, and the cross-checks' rules
    file (JGHUB_RULES_FILE), and apply every check serve and worker apply when they start,
    without starting anything: no port, bus, store or network (a WSDL given as a URL is not
    fetched unless --fetch).

    Prints every problem, each with file:line and the rule broken, then a one-line summary.
    Exit status 0 when clean, 1 with problems, 2 on a usage error.
    """
    settings = HubSettings()
    report = check_systems(
        file or settings.systems_file,
        mappings or settings.mappings_root,
        fetch=fetch,
        rules_file=settings.rules_file,
    )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        for finding in report.findings:
            typer.echo(str(finding))
        typer.echo(report.summary())
    if not report.clean:
        raise typer.Exit(1)
