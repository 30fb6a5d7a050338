"""Options several `jghub` commands take, declared once, and the hub settings they give.

A command declares a parameter with one of these types and passes what it got to
`hub_settings`; an option left out keeps the value from the environment (JGHUB_*) or the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from hub.commands.startup import error_console
from hub.settings import HubSettings

SystemsFile = Annotated[
    Path | None,
    typer.Option(
        "--systems",
        help="Systems configuration (default: JGHUB_SYSTEMS_FILE or the shipped "
        "config/systems.yaml).",
    ),
]
DataDir = Annotated[
    Path | None, typer.Option(help="Data folder (default: JGHUB_DATA_DIR or ./var).")
]
Migrate = Annotated[
    bool | None,
    typer.Option(
        "--migrate",
        help="Migrate a PostgreSQL store to this hub's schema at start (default: "
        "JGHUB_DATABASE_MIGRATE; the embedded SQLite store is always migrated).",
    ),
]
LogLevel = Annotated[str, typer.Option(help="Log level: debug, info, warning, error or critical.")]


def hub_settings(**given: Any) -> HubSettings:
    """The hub's settings, with the options given on the command line (those not None) in place
    of the environment's; exit 2 naming each setting that breaks its rule."""
    try:
        return HubSettings(**{name: value for name, value in given.items() if value is not None})
    except ValidationError as error:
        console = error_console()
        for problem in error.errors():
            name = ".".join(str(part) for part in problem["loc"])
            # The value is not echoed: a setting such as the AMQP URL may hold a password.
            console.print(
                f"cannot start: the setting JGHUB_{name.upper()} is not valid: {problem['msg']}",
                markup=False,
            )
        raise typer.Exit(2) from None
