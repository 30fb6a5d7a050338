"""The REST sender against a real loopback HTTP target: statuses, timeouts, keys, retries."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback_target import LoopbackTarget
from pydantic import ValidationError

from adapters.base import AdapterContext
from adapters.breaker import BreakerOptions, CircuitBreaker
from adapters.delivery import DeliveryFailed, TargetDelivery
from adapters.errors import AdapterConfigError, PermanentDeliveryError, TransientDeliveryError
from adapters.protocols.rest_sender import RestSender, RestSenderOptions
from mappings import SYSTEMS_ROOT, load_system
from standard.envelope import Envelope
from systems import AuthConfig, SystemConfig

SYSTEM = SystemConfig(
    id="grassroots-platform",
    name_zh="基层治理四平台",
    auth=AuthConfig(scheme="api_key", key_env="JGHUB_TEST_UNUSED"),
)


@pytest.fixture(scope="module")
def envelope_and_body() -> tuple[Envelope, bytes]:
    system = load_system(SYSTEMS_ROOT / "grassroots-platform")
    sample = SYSTEMS_ROOT / "grassroots-platform/samples/event_report/valid-events.json"
    envelope = system.translate("event_report", sample.read_bytes()).envelopes[0]
    return envelope, system.render("event_feedback", envelope)


@pytest.fixture
def target() -> Iterator[LoopbackTarget]:
    with LoopbackTarget() as running:
        yield running


def sender(tmp_path: Path, **options: object) -> RestSender:
    return RestSender(RestSenderOptions.model_validate(options), AdapterContext(SYSTEM, tmp_path))


def send(rest: RestSender, envelope_and_body: tuple[Envelope, bytes], key: str = "k-1") -> None:
    envelope, body = envelope_and_body
    rest.deliver(body, content_type="application/json", idempotency_key=key, envelope=envelope)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_delivers_the_body_with_content_type_idempotency_key_and_api_key(
    target: LoopbackTarget,
    tmp_path: Path,
    envelope_and_body: tuple[Envelope, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JGHUB_TEST_TARGET_KEY", "s3cret")
    rest = sender(
        tmp_path, url=target.url, api_key_env="JGHUB_TEST_TARGET_KEY", headers={"X-From": "hub"}
    )
    send(rest, envelope_and_body, key="idem-42")
    (got,) = target.requests
    assert got.body == envelope_and_body[1]
    assert json.loads(got.body)["eventId"] == envelope_and_body[0].subject
    assert got.header("Content-Type") == "application/json"
    assert got.header("Idempotency-Key") == "idem-42"
    assert got.header("X-Api-Key") == "s3cret"
    assert got.header("X-From") == "hub"
    rest.close()


def test_4xx_is_permanent_with_status_and_body_excerpt(
    target: LoopbackTarget, tmp_path: Path, envelope_and_body: tuple[Envelope, bytes]
) -> None:
    target.answer(422, b'{"error":"eventId unknown: SJ330106"}')
    with pytest.raises(PermanentDeliveryError) as raised:
        send(sender(tmp_path, url=target.url), envelope_and_body)
    assert raised.value.status == 422
    assert "HTTP 422" in str(raised.value)
    assert "eventId unknown: SJ330106" in str(raised.value)


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_5xx_and_try_later_statuses_are_transient(
    status: int, target: LoopbackTarget, tmp_path: Path, envelope_and_body: tuple[Envelope, bytes]
) -> None:
    target.answer(status, b"busy")
    with pytest.raises(TransientDeliveryError) as raised:
        send(sender(tmp_path, url=target.url), envelope_and_body)
    assert raised.value.status == status
    assert f"HTTP {status}: busy" in str(raised.value)


def test_redirect_is_permanent_not_followed(
    target: LoopbackTarget, tmp_path: Path, envelope_and_body: tuple[Envelope, bytes]
) -> None:
    target.answer(301, b"moved")
    with pytest.raises(PermanentDeliveryError, match="redirect"):
        send(sender(tmp_path, url=target.url), envelope_and_body)
    assert len(target.requests) == 1


def test_a_slow_target_is_a_transient_timeout(
    target: LoopbackTarget, tmp_path: Path, envelope_and_body: tuple[Envelope, bytes]
) -> None:
    target.answer(200, delay_s=1.0)
    with pytest.raises(TransientDeliveryError, match=r"did not answer .* in time"):
        send(sender(tmp_path, url=target.url, timeout_s=0.2), envelope_and_body)


def test_a_refused_connection_is_transient(
    tmp_path: Path, envelope_and_body: tuple[Envelope, bytes]
) -> None:
    url = f"http://127.0.0.1:{free_port()}/receive"
    with pytest.raises(TransientDeliveryError, match="unreachable"):
        send(sender(tmp_path, url=url, connect_timeout_s=1), envelope_and_body)


def test_answer_check_refuses_a_200_with_an_error_code(
    target: LoopbackTarget, tmp_path: Path, envelope_and_body: tuple[Envelope, bytes]
) -> None:
    check = {"path": "code", "success": ["0", 0], "message_path": "msg"}
    rest = sender(tmp_path, url=target.url, answer_check=check)
    target.answer(200, '{"code":"E102","msg":"事件编号不存在"}'.encode())
    with pytest.raises(PermanentDeliveryError) as raised:
        send(rest, envelope_and_body)
    assert "'E102'" in str(raised.value) and "事件编号不存在" in str(raised.value)
    target.answer(200, b'{"code":0}')
    send(rest, envelope_and_body)  # integer 0 is a success value too
    target.answer(200, b"<html>gateway</html>", content_type="text/html")
    with pytest.raises(PermanentDeliveryError, match="not JSON"):
        send(rest, envelope_and_body)


def test_options_are_validated_with_clear_errors() -> None:
    with pytest.raises(ValidationError, match="url"):
        RestSenderOptions.model_validate({})
    with pytest.raises(ValidationError, match=r"answer_check\.path"):
        RestSenderOptions.model_validate(
            {"url": "http://x", "answer_check": {"path": "code[", "success": ["0"]}}
        )
    with pytest.raises(ValidationError, match="extra"):
        RestSenderOptions.model_validate({"url": "http://x", "timeout": 3})


def test_a_missing_key_variable_is_a_configuration_error(
    target: LoopbackTarget, tmp_path: Path, envelope_and_body: tuple[Envelope, bytes]
) -> None:
    rest = sender(tmp_path, url=target.url, api_key_env="JGHUB_TEST_NOT_SET_ANYWHERE")
    with pytest.raises(AdapterConfigError, match="JGHUB_TEST_NOT_SET_ANYWHERE"):
        send(rest, envelope_and_body)
    assert target.requests == []


# ---------------------------------------------------------------- in-process retries (tenacity)


def delivery(rest: RestSender, attempts: int = 3, failures: int = 5) -> TargetDelivery:
    return TargetDelivery(
        rest,
        attempts=attempts,
        breaker=CircuitBreaker("grassroots-platform", BreakerOptions(failures=failures)),
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )


def test_5xx_is_retried_with_the_same_key_then_delivered(
    target: LoopbackTarget, tmp_path: Path, envelope_and_body: tuple[Envelope, bytes]
) -> None:
    target.answer(503, b"busy", times=2)
    envelope, body = envelope_and_body
    attempts = delivery(sender(tmp_path, url=target.url)).deliver(
        body, content_type="application/json", idempotency_key="stable-1", envelope=envelope
    )
    assert attempts == 3
    assert [r.header("Idempotency-Key") for r in target.requests] == ["stable-1"] * 3
    assert all(r.body == body for r in target.requests)


def test_4xx_is_not_retried(
    target: LoopbackTarget, tmp_path: Path, envelope_and_body: tuple[Envelope, bytes]
) -> None:
    target.answer(400, b"bad eventId")
    envelope, body = envelope_and_body
    with pytest.raises(DeliveryFailed) as raised:
        delivery(sender(tmp_path, url=target.url)).deliver(
            body, content_type="application/json", idempotency_key="k", envelope=envelope
        )
    assert raised.value.permanent and raised.value.attempts == 1
    assert "HTTP 400: bad eventId" in raised.value.reason
    assert len(target.requests) == 1


def test_transient_failures_exhaust_the_in_process_attempts(
    target: LoopbackTarget, tmp_path: Path, envelope_and_body: tuple[Envelope, bytes]
) -> None:
    target.always(500, b"down")
    envelope, body = envelope_and_body
    with pytest.raises(DeliveryFailed) as raised:
        delivery(sender(tmp_path, url=target.url), attempts=4).deliver(
            body, content_type="application/json", idempotency_key="k", envelope=envelope
        )
    assert not raised.value.permanent
    assert raised.value.attempts == 4 and len(target.requests) == 4
    assert "[4 attempts in process]" in raised.value.reason


def test_a_stop_request_cuts_the_backoff_short(
    target: LoopbackTarget, tmp_path: Path, envelope_and_body: tuple[Envelope, bytes]
) -> None:
    target.always(500, b"down")
    stop = threading.Event()
    guarded = TargetDelivery(
        sender(tmp_path, url=target.url),
        attempts=10,
        breaker=CircuitBreaker("grassroots-platform"),
        backoff_initial_s=30,
        backoff_max_s=30,
        stop=stop,
    )
    envelope, body = envelope_and_body
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(DeliveryFailed) as raised:
        guarded.deliver(
            body, content_type="application/json", idempotency_key="k", envelope=envelope
        )
    assert raised.value.attempts == 1  # the 30 s wait ended at the stop request
