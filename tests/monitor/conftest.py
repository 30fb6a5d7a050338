"""Fixtures of the monitor's tests: `store`, a fresh store on each backend (for the journal)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_support import STORE_BACKENDS, fresh_store_url

from store import Store


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store on each backend (PostgreSQL: its own database, dropped after; skipped
    saying why when PostgreSQL is absent, failed under CI=true)."""
    with fresh_store_url(request.param, tmp_path) as url:
        opened = Store.open(url, migrate=True)
        yield opened
        opened.close()
