"""The store's schema on each backend: the migrations build exactly the tables the rooms
declare, the embedded store migrates itself, and PostgreSQL is migrated only when asked."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

# The rooms that declare tables on the store's metadata (imported for that alone).
import adapters.authorisation
import adapters.protocols.outbox
import adapters.protocols.poller
import adapters.repeats
import adapters.replay_cache  # noqa: F401
import centre.collaboration
import centre.notices
import centre.penalties  # noqa: F401
import monitor.journal
import monitor.quarantine  # noqa: F401
import reference.stored  # noqa: F401
from store import METADATA, SchemaBehind, Store, StoreError, schema, store_url

DECLARED = {"used_signature", "accepted_change", "warning_addressee", "centre_complaint"}
DECLARED |= {"journal_entry", "journal_chain", "journal_key"}
DECLARED |= {"outbox", "poller_lease"}
DECLARED |= {"centre_item", "centre_event", "centre_notice"}
DECLARED |= {"quarantine_entry"}
DECLARED |= {"reference_catalogue", "reference_officer", "reference_object", "reference_list"}


def test_the_migrations_build_the_tables_the_rooms_declare(store: Store) -> None:
    assert store.current() == schema.head()
    assert DECLARED | {"poller_cursor"} <= set(METADATA.tables)
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), METADATA)
    # Only the version table is the store's own; every other difference is a missed migration.
    assert [d for d in differences if not _is_version_table(d)] == []


def _is_version_table(difference: object) -> bool:
    return (
        isinstance(difference, tuple)
        and difference[0] == "remove_table"
        and difference[1].name == schema.VERSION_TABLE
    )


def test_a_database_behind_is_refused_until_migrated(store_url: str) -> None:
    if store_url.startswith("sqlite"):
        # The embedded store needs no setup: opening it migrates it.
        assert Store.open(store_url).current() == schema.head()
        return
    with pytest.raises(SchemaBehind, match=r"schema none, this hub needs .*jghub db upgrade"):
        Store.open(store_url)
    # The legitimate twin: asked to migrate, it opens; then it opens without asking too.
    assert Store.open(store_url, migrate=True).current() == schema.head()
    assert Store.open(store_url).current() == schema.head()


def _upgrade(url: str) -> str | None:
    store = Store(url)
    try:
        store.upgrade()
        return store.current()
    finally:
        store.close()


def test_hubs_migrating_at_once_end_at_the_head(store_url: str) -> None:
    # Two processes starting on an empty database: one migrates, the other waits and finds
    # it done (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock). Neither fails.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=3, mp_context=context) as pool:
        versions = list(pool.map(_upgrade, [store_url] * 3))
    assert versions == [schema.head()] * 3


def test_urls_the_setting_accepts(tmp_path: Path) -> None:
    embedded = store_url(None, tmp_path)
    assert embedded == f"sqlite:///{tmp_path.resolve() / 'store.sqlite3'}"
    assert store_url("", tmp_path) == embedded
    assert store_url("postgresql://hub:pw@db:5432/jghub", tmp_path) == (
        "postgresql+psycopg://hub:pw@db:5432/jghub"
    )
    assert store_url("postgres://hub@db/jghub", tmp_path).startswith("postgresql+psycopg://")


@pytest.mark.parametrize("wrong", ["mysql://hub@db/jghub", "not a url", "sqlite://"])
def test_a_url_the_store_does_not_speak_says_what_to_give(tmp_path: Path, wrong: str) -> None:
    with pytest.raises(StoreError, match="JGHUB_DATABASE_URL"):
        store_url(wrong, tmp_path)


def test_a_database_that_does_not_answer_is_named_without_its_password(tmp_path: Path) -> None:
    url = store_url("postgresql://hub:s3cret@127.0.0.1:1/jghub", tmp_path)
    with pytest.raises(StoreError, match="does not answer") as failed:
        Store.open(url)
    assert "s3cret" not in str(failed.value)
