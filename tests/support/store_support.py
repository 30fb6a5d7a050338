"""Where the tests find PostgreSQL for the store, and a fresh database per test on each backend.

Like `broker_support` for RabbitMQ: without PostgreSQL a test skips saying why, except under
CI=true, where it fails. Each PostgreSQL test gets a database of its own (CREATE DATABASE with a
unique name, through the `postgres` database) and drops it afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from broker_support import skip_or_fail
from sqlalchemy.engine import make_url

from store import Store, store_url

POSTGRESQL_ADMIN_URL = os.environ.get(
    "JGHUB_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
"""A PostgreSQL database the tests may CREATE and DROP databases from (trust auth)."""

POSTGRESQL = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)
"""The `store` fixture's PostgreSQL case alone, for a test that only PostgreSQL can show:
`@pytest.mark.parametrize("store", [POSTGRESQL], indirect=True)`."""
STORE_BACKENDS = [pytest.param("sqlite", id="sqlite"), POSTGRESQL]


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store on each backend (PostgreSQL: its own database, dropped after;
    skipped saying why when PostgreSQL is absent, failed under CI=true). A conftest makes it
    its folder's fixture by importing it."""
    with fresh_store_url(request.param, tmp_path) as url:
        opened = Store.open(url, migrate=True)
        try:
            yield opened
        finally:
            opened.close()


def embedded_store(data_dir: Path) -> Store:
    """The embedded SQLite store of `data_dir`, migrated: what a hub without a URL opens."""
    return Store.open(store_url(None, data_dir))


def _admin() -> psycopg.Connection[Any]:
    """A connection to the administrative database; skips (fails under CI=true) without one."""
    url = make_url(POSTGRESQL_ADMIN_URL)
    try:
        return psycopg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username or "postgres",
            password=url.password,
            dbname=url.database or "postgres",
            autocommit=True,
            connect_timeout=3,
        )
    except psycopg.OperationalError as error:
        skip_or_fail(
            f"PostgreSQL does not answer at {make_url(POSTGRESQL_ADMIN_URL).render_as_string()} "
            f"({str(error).strip()}; start it: service postgresql start)"
        )


def require_postgresql() -> None:
    """Skip (fail under CI=true) when PostgreSQL does not answer."""
    _admin().close()


@contextmanager
def fresh_store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database on `backend` ("sqlite" or "postgresql"), dropped after."""
    if backend == "sqlite":
        yield store_url(None, tmp_path)
        return
    name = f"jghub_test_{uuid.uuid4().hex[:16]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRESQL_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield store_url(url, tmp_path)
    finally:
        drop_database(url)


def drop_database(url: str) -> None:
    """Drop the PostgreSQL database of `url` (made by `fresh_store_url`), if it is there; what
    a store that loses its database meets next is StoreUnavailable."""
    name = make_url(url).database
    with _admin() as admin:
        # FORCE: a store another process of the test left open does not keep it alive.
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_database(url: str) -> None:
    """Create the (empty) PostgreSQL database of `url` again, after `drop_database`."""
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{make_url(url).database}"')
