"""Where the tests find the real RabbitMQ, and what they do when it is not there.

Every folder's tests import this one module (tests/support is on pytest's `pythonpath`), so the
broker URL, the CI switch and the skip-or-fail rule are written once: without RabbitMQ a test
skips saying why, except under CI=true, where a missing broker must fail the run rather than
quietly turn the RabbitMQ half of the suite into skips.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from bus import Broker, Delivery, Message

RABBITMQ_URL = os.environ.get("JGHUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(problem: str) -> NoReturn:
    """Skip the test with `problem` as the reason; under CI=true fail it instead."""
    if IN_CI:
        pytest.fail(f"{problem}; CI=true requires it")
    pytest.skip(problem)


def rabbitmq_answers(url: str = RABBITMQ_URL, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at the broker's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout):
            return True
    except OSError:
        return False


def require_rabbitmq() -> None:
    """Skip (fail under CI=true) when RabbitMQ or its backend is not there."""
    if not rabbitmq_answers():
        skip_or_fail(
            f"RabbitMQ does not answer at {RABBITMQ_URL} (start it: rabbitmq-server -detached)"
        )
    try:
        import bus.rabbitmq  # noqa: F401
    except ImportError as exc:
        skip_or_fail(f"the RabbitMQ backend cannot be imported: {exc}")


def drain(broker: Broker, target: str, count: int, timeout: float = 15.0) -> list[Message]:
    """Consume and ack up to `count` messages of `target`, waiting at most `timeout` seconds."""
    got: list[Message] = []
    if count <= 0:
        return got
    stop = threading.Event()

    def handle(delivery: Delivery) -> None:
        got.append(delivery.message)
        delivery.ack()
        if len(got) >= count:
            stop.set()

    consumer = threading.Thread(
        target=broker.consume, args=(target, handle), kwargs={"stop": stop}, daemon=True
    )
    consumer.start()
    stop.wait(timeout)
    stop.set()
    consumer.join(timeout=10)
    return got
