"""The circuit breaker of a target, driven by real deliveries to a loopback HTTP target."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback_target import LoopbackTarget
from pydantic import ValidationError

from adapters.base import AdapterContext
from adapters.breaker import BreakerOpen, BreakerOptions, BreakerState, CircuitBreaker
from adapters.delivery import DeliveryFailed, TargetDelivery
from adapters.errors import PermanentDeliveryError, TransientDeliveryError
from adapters.protocols.rest_sender import RestSender, RestSenderOptions
from mappings import SYSTEMS_ROOT, load_system
from standard.envelope import Envelope
from systems import AuthConfig, SystemConfig

SYSTEM = SystemConfig(
    id="grassroots-platform",
    name_zh="基层治理四平台",
    auth=AuthConfig(scheme="api_key", key_env="JGHUB_TEST_UNUSED"),
)
COOLDOWN = 0.4


@pytest.fixture(scope="module")
def envelope() -> Envelope:
    system = load_system(SYSTEMS_ROOT / "grassroots-platform")
    sample = SYSTEMS_ROOT / "grassroots-platform/samples/event_report/valid-events.json"
    return system.translate("event_report", sample.read_bytes()).envelopes[0]


@pytest.fixture
def target() -> Iterator[LoopbackTarget]:
    with LoopbackTarget() as running:
        yield running


class Transitions:
    def __init__(self) -> None:
        self.seen: list[tuple[str, BreakerState, BreakerState]] = []

    def __call__(self, target: str, old: BreakerState, new: BreakerState) -> None:
        self.seen.append((target, old, new))

    @property
    def states(self) -> list[str]:
        return [str(new) for _, _, new in self.seen]


def breaker_and_sender(
    target: LoopbackTarget, tmp_path: Path, transitions: Transitions, failures: int = 3
) -> tuple[CircuitBreaker, RestSender]:
    breaker = CircuitBreaker(
        "grassroots-platform",
        BreakerOptions(failures=failures, cooldown_s=COOLDOWN),
        on_change=transitions,
    )
    sender = RestSender(RestSenderOptions(url=target.url), AdapterContext(SYSTEM, tmp_path))
    return breaker, sender


def call(breaker: CircuitBreaker, sender: RestSender, envelope: Envelope) -> None:
    breaker.call(
        lambda: sender.deliver(
            b"{}", content_type="application/json", idempotency_key="k", envelope=envelope
        )
    )


def test_opens_after_consecutive_transient_failures_and_then_stops_calling(
    target: LoopbackTarget, tmp_path: Path, envelope: Envelope
) -> None:
    transitions = Transitions()
    breaker, sender = breaker_and_sender(target, tmp_path, transitions)
    target.always(503, b"down")
    for expected_failures in (1, 2):
        with pytest.raises(TransientDeliveryError):
            call(breaker, sender, envelope)
        assert breaker.consecutive_failures == expected_failures
        assert breaker.state is BreakerState.CLOSED
    # The third failure trips it; the caller still sees the target's own error.
    with pytest.raises(TransientDeliveryError) as tripping:
        call(breaker, sender, envelope)
    assert not isinstance(tripping.value, BreakerOpen) and tripping.value.status == 503
    assert breaker.state is BreakerState.OPEN
    assert transitions.seen == [("grassroots-platform", BreakerState.CLOSED, BreakerState.OPEN)]
    with pytest.raises(BreakerOpen) as open_error:
        call(breaker, sender, envelope)
    assert len(target.requests) == 3  # not called while open
    assert 0 < open_error.value.retry_in <= COOLDOWN
    assert "circuit breaker of target 'grassroots-platform' is open" in str(open_error.value)
    # The wait is a field, not part of the text that reasons and dead letters carry.
    assert "next trial" not in str(open_error.value)


def test_half_open_after_the_cooldown_closes_on_success(
    target: LoopbackTarget, tmp_path: Path, envelope: Envelope
) -> None:
    transitions = Transitions()
    breaker, sender = breaker_and_sender(target, tmp_path, transitions, failures=2)
    target.answer(500, b"down", times=2)
    for _ in range(2):
        with pytest.raises(TransientDeliveryError):
            call(breaker, sender, envelope)
    assert breaker.state is BreakerState.OPEN
    time.sleep(COOLDOWN + 0.05)
    assert breaker.retry_in() == 0
    call(breaker, sender, envelope)  # the target recovered: the trial delivery succeeds
    assert breaker.state is BreakerState.CLOSED
    assert transitions.states == ["open", "half-open", "closed"]
    assert BreakerState.OPEN.level > BreakerState.HALF_OPEN.level > BreakerState.CLOSED.level


def test_a_failed_trial_opens_it_again(
    target: LoopbackTarget, tmp_path: Path, envelope: Envelope
) -> None:
    transitions = Transitions()
    breaker, sender = breaker_and_sender(target, tmp_path, transitions, failures=1)
    target.always(502, b"still down")
    with pytest.raises(TransientDeliveryError):
        call(breaker, sender, envelope)
    time.sleep(COOLDOWN + 0.05)
    with pytest.raises(TransientDeliveryError):
        call(breaker, sender, envelope)  # the trial
    assert breaker.state is BreakerState.OPEN
    assert transitions.states == ["open", "half-open", "open"]
    with pytest.raises(BreakerOpen):
        call(breaker, sender, envelope)
    assert len(target.requests) == 2


def test_a_failed_trial_is_recorded_as_what_the_target_answered(
    target: LoopbackTarget, tmp_path: Path, envelope: Envelope
) -> None:
    # Three attempts in process: the one after a failed trial meets the breaker open again.
    # What failed is the trial's call, so that is the failure, with the target's status and body.
    transitions = Transitions()
    breaker, sender = breaker_and_sender(target, tmp_path, transitions, failures=1)
    answer = "数据库连接失败 ORA-12541"
    target.always(500, answer.encode())
    guarded = TargetDelivery(
        sender, attempts=3, breaker=breaker, backoff_initial_s=0.01, backoff_max_s=0.01
    )

    def deliver() -> DeliveryFailed:
        with pytest.raises(DeliveryFailed) as failed:
            guarded.deliver(
                b"{}", content_type="application/json", idempotency_key="k", envelope=envelope
            )
        return failed.value

    first = deliver()  # its failure opens the breaker
    time.sleep(COOLDOWN + 0.05)
    trial = deliver()
    assert transitions.states == ["open", "half-open", "open"]
    assert len(target.requests) == 2  # one call each; the retries met the open breaker
    for failed in (first, trial):
        assert isinstance(failed.error, TransientDeliveryError)
        assert not isinstance(failed.error, BreakerOpen)
        assert failed.error.status == 500 and failed.error.detail == answer
        assert failed.attempts == 1 and not failed.untried
        assert f"HTTP 500: {answer}" in failed.reason
    # Refused before the next trial: nothing was tried, and the reason says only that.
    refused = deliver()
    assert refused.untried and refused.attempts == 0 and len(target.requests) == 2
    assert isinstance(refused.error, BreakerOpen) and refused.error.retry_in > 0
    assert refused.reason == str(refused.error) and "next trial" not in refused.reason


def test_a_permanent_refusal_is_a_sign_of_life(
    target: LoopbackTarget, tmp_path: Path, envelope: Envelope
) -> None:
    transitions = Transitions()
    breaker, sender = breaker_and_sender(target, tmp_path, transitions, failures=2)
    target.answer(500, b"down")
    target.answer(400, b"bad record")
    target.answer(500, b"down")
    with pytest.raises(TransientDeliveryError):
        call(breaker, sender, envelope)
    with pytest.raises(PermanentDeliveryError):
        call(breaker, sender, envelope)
    assert breaker.consecutive_failures == 0
    with pytest.raises(TransientDeliveryError):
        call(breaker, sender, envelope)
    assert breaker.state is BreakerState.CLOSED  # 500, 400, 500 are not two in a row


def test_in_process_retries_stop_at_an_open_breaker(
    target: LoopbackTarget, tmp_path: Path, envelope: Envelope
) -> None:
    transitions = Transitions()
    breaker, sender = breaker_and_sender(target, tmp_path, transitions, failures=2)
    target.always(503, b"down")
    guarded = TargetDelivery(
        sender, attempts=5, breaker=breaker, backoff_initial_s=0.01, backoff_max_s=0.01
    )
    with pytest.raises(DeliveryFailed) as failed:
        guarded.deliver(
            b"{}", content_type="application/json", idempotency_key="k", envelope=envelope
        )
    # Two calls opened the breaker; the third attempt met it open and was not made. The
    # failure is the target's own answer, not the breaker's refusal.
    assert len(target.requests) == 2
    assert not isinstance(failed.value.error, BreakerOpen)
    assert failed.value.error.status == 503 and not failed.value.untried
    assert failed.value.attempts == 2 and "2 attempts in process" in failed.value.reason
    assert "HTTP 503: down" in failed.value.reason
    with pytest.raises(DeliveryFailed) as again:
        guarded.deliver(
            b"{}", content_type="application/json", idempotency_key="k", envelope=envelope
        )
    assert again.value.attempts == 0 and len(target.requests) == 2


def test_a_closed_breaker_lets_deliveries_run_side_by_side(
    target: LoopbackTarget, tmp_path: Path, envelope: Envelope
) -> None:
    # The worker delivers to a target N at a time through one breaker; pybreaker's own call
    # would hold its lock around each delivery and serialise them.
    transitions = Transitions()
    breaker, sender = breaker_and_sender(target, tmp_path, transitions, failures=3)
    target.hold()
    threads = [threading.Thread(target=call, args=(breaker, sender, envelope)) for _ in range(3)]
    for thread in threads:
        thread.start()
    target.wait_in_flight(3)  # all three are at the target at once
    target.release()
    for thread in threads:
        thread.join(timeout=10)
    assert target.max_in_flight == 3 and breaker.state is BreakerState.CLOSED
    # Failures from concurrent deliveries still count, and trip it at the threshold.
    target.always(503, b"down")
    target.hold()
    errors: list[BaseException] = []

    def failing_call() -> None:
        try:
            call(breaker, sender, envelope)
        except TransientDeliveryError as error:
            errors.append(error)

    failing = [threading.Thread(target=failing_call) for _ in range(3)]
    for thread in failing:
        thread.start()
    target.wait_in_flight(3)
    target.release()
    for thread in failing:
        thread.join(timeout=10)
    assert len(errors) == 3 and not any(isinstance(e, BreakerOpen) for e in errors)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(BreakerOpen):
        call(breaker, sender, envelope)
    assert len(target.requests) == 6


@pytest.mark.parametrize("late_failure", [True, False], ids=["fails", "succeeds"])
def test_a_delivery_begun_while_closed_is_not_taken_for_the_trial(late_failure: bool) -> None:
    # A delivery still running when others open the breaker ends after the cool-down: it began
    # before the breaker opened, so it neither opens it again nor closes it; the next call is
    # the trial.
    transitions = Transitions()
    breaker = CircuitBreaker(
        "grassroots-platform",
        BreakerOptions(failures=1, cooldown_s=COOLDOWN),
        on_change=transitions,
    )
    started, finish = threading.Event(), threading.Event()
    outcome: list[str] = []

    def slow_delivery() -> str:
        started.set()
        finish.wait(10)
        if late_failure:
            raise TransientDeliveryError("late 503")
        return "late answer"

    def deliver_slowly() -> None:
        try:
            outcome.append(breaker.call(slow_delivery))
        except TransientDeliveryError as error:
            outcome.append(str(error))

    def refused() -> None:
        raise TransientDeliveryError("503")

    slow = threading.Thread(target=deliver_slowly)
    slow.start()
    assert started.wait(10)
    with pytest.raises(TransientDeliveryError):
        breaker.call(refused)  # opens the breaker while the slow delivery runs
    time.sleep(COOLDOWN + 0.05)
    finish.set()
    slow.join(10)
    # The caller sees the delivery's own outcome; the breaker stays open and its trial is due.
    assert outcome == (["late 503"] if late_failure else ["late answer"])
    assert breaker.state is BreakerState.OPEN and transitions.states == ["open"]
    assert breaker.retry_in() == 0
    assert breaker.consecutive_failures == (2 if late_failure else 0)
    breaker.call(lambda: None)  # the trial
    assert transitions.states == ["open", "half-open", "closed"]


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="failures"):
        BreakerOptions(failures=0)
    with pytest.raises(ValidationError, match="cooldown_s"):
        BreakerOptions(cooldown_s=0)
