"""The store's schema versions: Alembic, run from code on the store's own connection.

The version scripts in `store/migrations/versions/` are explicit (`op.create_table`, no
autogenerate at run time), so `store` imports no room above it; a test checks that the migrated
schema matches the tables the rooms declare on `store.METADATA`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "store_version"
"""The table holding the schema version (Alembic's `alembic_version`, named for the hub)."""


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["version_table"] = VERSION_TABLE
    return config


def head() -> str:
    """The newest schema version this hub knows."""
    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None, f"no migration scripts in {MIGRATIONS}"
    return found


def current(connection: Connection) -> str | None:
    """The schema version of the connection's database; None when it was never migrated."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Migrate the connection's database to `revision`, in the connection's transaction."""
    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
