"""Fixtures of the bus tests: `under_test`, one broker backend per parameter, cleaned up after;
`rabbit` and `embedded`, one backend alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq
from contract import BACKENDS, BusUnderTest


@pytest.fixture(params=BACKENDS)
def under_test(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BusUnderTest]:
    """Each backend in turn; RabbitMQ skips with the reason when absent (fails under CI=true)."""
    if request.param == "rabbitmq":
        require_rabbitmq()
        url = RABBITMQ_URL
    else:
        url = f"sqlite:///{tmp_path / 'bus.sqlite3'}"
    harness = BusUnderTest(kind=request.param, url=url)
    yield harness
    harness.cleanup()


@pytest.fixture
def rabbit() -> Iterator[BusUnderTest]:
    """The RabbitMQ backend alone, for its own tests (skips, or fails under CI=true, without)."""
    require_rabbitmq()
    harness = BusUnderTest(kind="rabbitmq", url=RABBITMQ_URL)
    yield harness
    harness.cleanup()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[BusUnderTest]:
    """The embedded backend alone, for its own tests."""
    harness = BusUnderTest(kind="embedded", url=f"sqlite:///{tmp_path / 'bus.sqlite3'}")
    yield harness
    harness.cleanup()
