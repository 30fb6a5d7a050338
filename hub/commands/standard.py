"""`jghub standard`: export the unified standard's JSON Schemas and check codes."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="The unified data standard: JSON Schemas and code checks.", no_args_is_help=True
)
