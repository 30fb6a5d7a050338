"""Fixtures of the store's contract suite: `store_url`, a fresh database on each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_support import STORE_BACKENDS, fresh_store_url

from store import Store


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend in turn (PostgreSQL: created and dropped);
    PostgreSQL skips with the reason when absent (fails under CI=true)."""
    with fresh_store_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Store:
    """The store on `store_url`, migrated."""
    return Store.open(store_url, migrate=True)
