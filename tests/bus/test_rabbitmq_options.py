"""RabbitMQ backend: options are validated when the broker is opened; an absent broker is named."""

from __future__ import annotations

import socket
import time

import pytest

import bus
from bus import BrokerUnavailable, ConfigurationError
from bus.rabbitmq import RabbitOptions


def a_closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"heartbeat": -1}, "heartbeat"),
        ({"publish_timeout": 0}, "publish_timeout"),
        ({"confirm_window": 0}, "confirm_window"),
        ({"prefetch": 10}, "prefetch"),  # not an option of the backend: a typo is an error
    ],
)
def test_a_bad_option_is_a_configuration_error_naming_it(
    options: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=rf"invalid RabbitMQ option: {named}"):
        bus.connect(f"amqp://guest:guest@127.0.0.1:{a_closed_port()}/%2F", **options)


def test_every_option_has_a_description_and_a_working_default() -> None:
    defaults = RabbitOptions()
    for name, spec in RabbitOptions.model_fields.items():
        assert spec.description, name
        assert getattr(defaults, name) == spec.default, name


def test_an_absent_broker_is_broker_unavailable_naming_where() -> None:
    port = a_closed_port()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=rf"127\.0\.0\.1:{port}"):
        bus.connect(f"amqp://guest:guest@127.0.0.1:{port}/%2F", connect_timeout=2)
    assert time.monotonic() - started < 10
