"""What the hub remembers: one database, embedded SQLite by default, PostgreSQL in production.

    store = Store.open(store_url(setting, data_dir))   # migrated (SQLite) or checked (PostgreSQL)
    with store.engine.begin() as connection: ...     # SQLAlchemy Core statements

Each room declares its own tables on `METADATA` beside the code that uses them; `store` knows
neither the tables nor the rooms, only how to open a database and migrate it (`store.schema`).
"""

from store.database import (
    DATABASE_FILE,
    METADATA,
    SchemaBehind,
    Store,
    StoreError,
    StoreUnavailable,
    replacing,
    store_url,
    upsert,
    upsert_in,
)

__all__ = [
    "DATABASE_FILE",
    "METADATA",
    "SchemaBehind",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "replacing",
    "store_url",
    "upsert",
    "upsert_in",
]
