"""The collaboration flows end to end: complaints become tasks and results, warnings get feedback.

The demo landscape runs for real: the hub serves on a loopback port, the worker delivers, every
receiving department is a simulator recording what arrives (its own REST, XML or SOAP service, or
the outbox it pulls), and every push goes through the pushing system's own protocol and
credentials. RabbitMQ is the bus (the embedded one too, where it answers the same contract).
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from flows_harness import CENTRE, DEPARTMENTS, Flows, complaint_xml, wait_for
from flows_harness import flows as flows  # the fixture: the landscape on each bus

from hub.simulators.answers import Answers
from monitor.metrics import sample_total
from standard.checks import credit_code_check_char, org_code_check_char


def failures_unroutable() -> float:
    return sample_total("jghub_publish_failures_total", system="national", reason="unroutable")


@pytest.mark.parametrize(
    ("scene", "department"),
    [
        ("假冒伪劣", "market-penalty"),  # SOAP (ASMX, xmlDoc string)
        ("违章建筑", "housing-penalty"),  # XML over HTTP, GBK
        ("医疗美容", "health-penalty"),  # REST/JSON
        ("生态环境", "eco-env-penalty"),  # pulls its outbox
    ],
)
def test_a_complaint_becomes_a_task_for_its_department_and_the_result_goes_back(
    flows: Flows, scene: str, department: str
) -> None:
    case = f"TS{uuid.uuid4().hex[:16].upper()}"
    task_id = f"XT-{case}"
    pushed = flows.push("complaint-platform", "complaint_push", complaint_xml(case, scene), "utf-8")
    assert (pushed.accepted, pushed.rejected) == (1, 0), pushed

    wait_for(lambda: flows.received(department, task_id), f"{task_id} at {department}")
    (task,) = flows.received(department, task_id)
    # Its own task_push rendering, not the canonical event.
    spec = flows.mappings[department].outbound_mapping("task_push").mapping
    assert b"specversion" not in task.body
    assert (b"<" if spec.format == "xml" else b"{") in task.body[:200]
    assert flows.others_got(department, case) == []

    answers = Answers(flows.mappings[department], dispatcher=CENTRE)
    feedback = answers.task("fed_back", task_id)
    answered = flows.push(department, "task_feedback", feedback.body, feedback.charset)
    assert answered.accepted >= 1 and answered.rejected == 0, answered

    wait_for(
        lambda: flows.received("complaint-platform", f"<caseNo>{case}</caseNo>"),
        f"the handling result of {case}",
    )
    (handled,) = flows.received("complaint-platform", f"<caseNo>{case}</caseNo>")
    text = handled.body.decode("utf-8")
    assert "<status>50</status>" in text  # closed, in the platform's codes
    assert answers.result in text and f"<taskNo>{task_id}</taskNo>" in text
    assert flows.others_got(department, case) == []

    # The ledger followed it on what the hub and its worker really saw: one row, for the
    # department's own system, from dispatch through its delivery to the feedback.
    followed = flows.ledger().item(task_id)
    assert followed is not None and followed["complaint"] == case, followed
    (row,) = followed["rows"]  # a unit of the department fed back: still the one row
    assert row["state"] in ("fed_back", "closed") and row["due_at"] and not row["flags"], row
    events = [step["event"] for step in followed["timeline"] if step["kind"] == "task"]
    assert {"dispatched", "delivered"} <= set(events) and events[0] == "dispatched", events


def test_a_complaint_sent_again_or_updated_while_open_makes_one_task(flows: Flows) -> None:
    case = f"TS{uuid.uuid4().hex[:16].upper()}"
    repeats = sample_total("jghub_duplicates_total", system="complaint-platform")
    first = flows.push("complaint-platform", "complaint_push", complaint_xml(case, "食品安全"))
    # The same change again: recognised at the door, answered with the same message, not
    # published again.
    again = flows.push("complaint-platform", "complaint_push", complaint_xml(case, "食品安全"))
    # A later change of the still open complaint: published, and the centre derives its task
    # again: the same task under the same idempotency key.
    later = complaint_xml(case, "食品安全", updated="2026-03-01T15:00:00")
    updated = flows.push("complaint-platform", "complaint_push", later)
    for pushed in (first, again, updated):
        assert pushed.accepted == 1, pushed
    assert again.message_ids == first.message_ids != updated.message_ids
    assert sample_total("jghub_duplicates_total", system="complaint-platform") - repeats == 1
    wait_for(lambda: len(flows.received("market-penalty", case)) == 2, "both deliveries")
    deliveries = flows.received("market-penalty", case)
    # The department keeps one.
    assert len({d.idempotency_key for d in deliveries}) == 1
    assert len({d.body for d in deliveries}) == 1


def test_a_risk_warning_reaches_its_department_and_the_feedback_comes_back(
    flows: Flows,
) -> None:
    market, transport = (f"GJYJ{uuid.uuid4().hex[:14].upper()}" for _ in range(2))
    warnings = flows.sample_with(
        "national",
        "risk_warning",
        {"GJYJ20260506000341": market, "GJYJ20260428000127": transport},
    )
    pushed = flows.push("national", "risk_warning", warnings)
    assert (pushed.accepted, pushed.rejected) == (2, 0), pushed

    wait_for(lambda: flows.received("market-penalty", market), "the warning at market-penalty")
    wait_for(lambda: flows.received("transport-penalty", transport), "the warning at transport")
    assert flows.others_got("market-penalty", market) == []
    assert flows.others_got("transport-penalty", transport) == []
    (received,) = flows.received("market-penalty", market)
    assert b"ReceiveWarningXml" in received.body  # its warning operation, not the task one

    feedback = flows.sample_with(
        "market-penalty",
        "risk_feedback",
        {"YJ330000202605060031": market, "YJ330000202605070008": market},
    )
    answered = flows.push("market-penalty", "risk_feedback", feedback)
    assert (answered.accepted, answered.rejected) == (3, 0), answered
    # National has no payload of its own for feedback: it gets the canonical events.
    wait_for(lambda: len(flows.received("national", market)) == 3, "the feedback at national")
    for event in flows.received("national", market):
        assert b'"type":"gov.supervision.risk_feedback.v1"' in event.body.replace(b" ", b"")

    # The ledger: the market warning delivered to its department's system and fed back there;
    # the transport warning delivered and awaiting its feedback.
    def state(warning: str) -> str | None:
        followed = flows.ledger().item(warning)
        return followed["rows"][0]["state"] if followed else None

    wait_for(lambda: state(market) in ("fed_back", "closed"), "the market warning fed back")
    wait_for(lambda: state(transport) == "delivered", "the transport warning delivered")


def test_an_unmapped_scenario_is_dead_lettered_with_its_reason(flows: Flows) -> None:
    case = f"TS{uuid.uuid4().hex[:16].upper()}"
    pushed = flows.push("complaint-platform", "complaint_push", complaint_xml(case, "校外培训"))
    assert pushed.accepted == 1, pushed
    broker = flows.running.broker

    def dead() -> list[str]:
        return [d.reason for d in broker.dead_letters("collaboration") if case in d.reason]

    wait_for(dead, f"the dead letter of {case}")
    (reason,) = dead()
    assert "scenario 11 is not in the scenario table of collaboration" in reason
    assert [d for d in DEPARTMENTS if flows.received(d, case)] == []


def test_a_warning_to_an_unknown_department_is_quarantined_with_its_reason(
    flows: Flows,
) -> None:
    warning = f"GJYJ{uuid.uuid4().hex[:14].upper()}"
    org = f"MA{uuid.uuid4().int % 10**6:06d}"
    first17 = f"11330000{org}{org_code_check_char(org)}"
    stranger = first17 + credit_code_check_char(first17)  # a real-looking, unknown department
    body = flows.sample_with(
        "national",
        "risk_warning",
        {
            "GJYJ20260506000341": warning,
            "浙江省市场监督管理局": "浙江省不存在管理局",
            "11330000002502194F": stranger,
        },
    )
    counted = failures_unroutable()
    pushed = flows.push("national", "risk_warning", body)
    assert (pushed.accepted, pushed.rejected) == (1, 1), pushed
    assert failures_unroutable() == counted + 1  # counted like a record no route takes
    assert pushed.reasons == ["address"], pushed.reasons
    kept = [q for q in flows.quarantined() if warning in q.reason]
    assert len(kept) == 1
    assert "responsible_department names department '浙江省不存在管理局'" in kept[0].reason
    assert [d for d in DEPARTMENTS if flows.received(d, warning)] == []


def test_the_hub_with_the_centre_configured_is_ready(flows: Flows) -> None:
    # The centre has no mapping folder; readiness must not count that as a missing mapping.
    answer = httpx.get(f"{flows.running.hub_url}/ready", timeout=10).json()
    assert answer["checks"]["mappings"] is True, answer
