"""Business-level authorisation (#13.1): a system acts only for the departments it serves.

The forgeries of the issue, tried as agri-penalty through its real REST push endpoint of the
demo landscape on RabbitMQ, each beside its legitimate twin: agri-penalty feeding back
market-penalty's task in the centre's name (the complaint platform must receive market's result
and nothing forged), agri-penalty dispatching a task to health-penalty in the centre's name (the
centre's own dispatch still reaches health), feedback on a warning routed to health from
agri-penalty (health's own passes, and feedback on a warning the hub never saw is refused,
quarantined and counted as unmatched). The centre's own check is tried with ingress bypassed: a
forged step published straight onto the bus goes to the dead letters, the assignee's reaches the
platform.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from broker_support import drain
from flows_harness import CENTRE, DEPARTMENTS, Flows, complaint_xml, running_flows, wait_for
from store_support import embedded_store
from worker_harness import folders, open_hub

from adapters.authorisation import (
    SERVED_RULE,
    WARNING_MATCH_RULE,
    WARNING_RULE,
    Authorisation,
    NotAuthorised,
    StoredWarningAddressees,
)
from adapters.egress import NotDelivered
from adapters.ingress import Ingress, outgoing_message
from adapters.routing import Directory
from centre.collaboration import CollaborationCentre
from hub.simulators.answers import Answers
from hub.systems import load_systems, parse_systems
from mappings import SYSTEMS_ROOT
from monitor.metrics import sample_total
from standard.datasets.collaboration_task import CollaborationTask
from standard.envelope import Envelope
from store import Store

MARKET = {"name": "浙江省市场监督管理局", "credit_code": "11330000002502194F"}
HEALTH = {"name": "浙江省卫生健康委员会", "credit_code": "11330000002502952J"}
AGRI_OWN = {"name": "衢州市农业农村局", "credit_code": "11330800002839459N"}
FORGED = "FORGED BY AGRI-PENALTY"
AGRI_SAMPLES = SYSTEMS_ROOT / "agri-penalty/samples"
CONFIG_FILE = Path(__file__).parents[2] / "config/systems.yaml"
"""The shipped systems configuration (config/systems.yaml)."""


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flows]:
    with running_flows("rabbitmq", tmp_path_factory) as running:
        yield running


def unit(department: dict[str, str]) -> dict[str, str]:
    """A department as agri-penalty's payloads name it."""
    return {"unitName": department["name"], "creditCode": department["credit_code"]}


def agri_task(
    task_no: str,
    status: str,
    *,
    dispatcher: dict[str, str],
    assignee: dict[str, str],
    result: str | None = None,
) -> bytes:
    """One task step in agri-penalty's own task_feedback format (its sample's first record)."""
    document = json.loads(AGRI_SAMPLES.joinpath("task_feedback/valid-feedback.json").read_bytes())
    record = dict(document["records"][0], changeId=f"NY{uuid.uuid4().hex[:12]}", taskNo=task_no)
    record.update(taskStatus=status, dispatchUnit=unit(dispatcher), handleUnits=[unit(assignee)])
    record.update(sourceDataset="complaint", areaCodes=["330106"])
    if result is None:  # just dispatched: no acceptance, no feedback
        for step_field in ("signTime", "signUser", "feedbackTime", "feedbackContent"):
            record.pop(step_field)
    else:
        record["feedbackContent"] = result
    document["records"] = [record]
    return json.dumps(document, ensure_ascii=False).encode()


def agri_warning_feedback(warning_id: str, department: dict[str, str]) -> bytes:
    """One disposal step on `warning_id` in agri-penalty's own risk_feedback format."""
    document = json.loads(AGRI_SAMPLES.joinpath("risk_feedback/valid-feedback.json").read_bytes())
    record = dict(document["records"][0], warningNo=warning_id)
    record.update(feedbackNo=f"NYFK{uuid.uuid4().hex[:16]}", changeId=uuid.uuid4().hex[:16])
    record.update(unitName=department["name"], unitCreditCode=department["credit_code"])
    document["records"] = [record]
    return json.dumps(document, ensure_ascii=False).encode()


def fresh_ids() -> dict[str, str]:
    """New ids for the feedback records of health-penalty's sample: the same records sent by an
    earlier test would be recognised as sent again, and not published again."""
    sample_ids = ("WJFK330106202605080001", "WJFK330106202605080002", "WJFK330300202605090001")
    return {old: f"WJFK{uuid.uuid4().hex[:18]}" for old in sample_ids}


def agri_push(flows: Flows, message_type: str, body: bytes) -> dict[str, Any]:
    """POST `body` to agri-penalty's REST endpoint with its own key; the hub's JSON answer."""
    key_env = flows.system("agri-penalty").auth.key_env
    assert key_env is not None
    answer = httpx.post(
        f"{flows.running.hub_url}/systems/agri-penalty/rest/{message_type}",
        content=body,
        headers={
            "Authorization": f"Bearer {os.environ[key_env]}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def kept(flows: Flows, text: str) -> list[str]:
    """The quarantine's reasons that mention `text`."""
    return [q.reason for q in flows.quarantined() if text in q.reason]


def anyone_got(flows: Flows, text: str) -> list[str]:
    receivers = (*DEPARTMENTS, "complaint-platform", "national")
    return [system for system in receivers if flows.received(system, text)]


def test_agri_cannot_feed_back_markets_task_and_markets_own_result_reaches_the_platform(
    flows: Flows,
) -> None:
    case = f"TS{uuid.uuid4().hex[:16].upper()}"
    task_id = f"XT-{case}"
    pushed = flows.push("complaint-platform", "complaint_push", complaint_xml(case, "假冒伪劣"))
    assert pushed.accepted == 1, pushed
    wait_for(lambda: flows.received("market-penalty", task_id), f"{task_id} at market-penalty")

    # The forgery: a "fed back" step of market's task, the centre named as dispatcher.
    forged = agri_task(task_id, "4", dispatcher=CENTRE, assignee=MARKET, result=FORGED)
    answer = agri_push(flows, "task_feedback", forged)
    assert (answer["accepted"], answer["rejected"]) == (0, 1), answer
    (error,) = answer["records"][0]["errors"]
    assert (error["field"], error["rule"]) == ("assignees", SERVED_RULE)
    assert "浙江省市场监督管理局 (11330000002502194F) is served by market-penalty" in (
        error["message"].replace("'", "")
    )
    assert "agri-penalty serves '浙江省农业农村厅'" in error["message"]
    (reason,) = kept(flows, task_id)
    assert SERVED_RULE in reason and "agri-penalty" in reason

    # Its twin: market's own feedback closes the complaint with market's result.
    answers = Answers(flows.mappings["market-penalty"], dispatcher=CENTRE)
    feedback = answers.task("fed_back", task_id)
    answered = flows.push("market-penalty", "task_feedback", feedback.body, feedback.charset)
    assert answered.accepted >= 1 and answered.rejected == 0, answered
    wait_for(
        lambda: flows.received("complaint-platform", f"<caseNo>{case}</caseNo>"),
        f"the handling result of {case}",
    )
    (handled,) = flows.received("complaint-platform", f"<caseNo>{case}</caseNo>")
    text = handled.body.decode("utf-8")
    assert answers.result in text and "<status>50</status>" in text
    assert FORGED not in text
    assert anyone_got(flows, FORGED) == []


def test_agri_cannot_dispatch_to_health_in_the_centres_name_while_the_centre_can(
    flows: Flows,
) -> None:
    forged_task = f"XT-TS{uuid.uuid4().hex[:16].upper()}"
    answer = agri_push(
        flows, "task_feedback", agri_task(forged_task, "0", dispatcher=CENTRE, assignee=HEALTH)
    )
    assert (answer["accepted"], answer["rejected"]) == (0, 1), answer
    (error,) = answer["records"][0]["errors"]
    assert (error["field"], error["rule"]) == ("dispatcher", SERVED_RULE)
    assert "is served by collaboration" in error["message"]
    assert error["value"]["credit_code"] == CENTRE["credit_code"]
    assert len(kept(flows, forged_task)) == 1

    # Its twin: the centre dispatches a medical-cosmetology complaint to health-penalty.
    case = f"TS{uuid.uuid4().hex[:16].upper()}"
    pushed = flows.push("complaint-platform", "complaint_push", complaint_xml(case, "医疗美容"))
    assert pushed.accepted == 1, pushed
    wait_for(lambda: flows.received("health-penalty", f"XT-{case}"), "the centre's task at health")
    assert anyone_got(flows, forged_task) == []


def test_agri_cannot_feed_back_a_warning_routed_to_health_while_health_can(
    flows: Flows,
) -> None:
    warning, other = (f"GJYJ{uuid.uuid4().hex[:14].upper()}" for _ in range(2))
    warnings = flows.sample_with(
        "national",
        "risk_warning",
        {
            "GJYJ20260506000341": warning,
            "GJYJ20260428000127": other,
            MARKET["name"]: HEALTH["name"],
            MARKET["credit_code"]: HEALTH["credit_code"],
        },
    )
    pushed = flows.push("national", "risk_warning", warnings)
    assert (pushed.accepted, pushed.rejected) == (2, 0), pushed
    wait_for(lambda: flows.received("health-penalty", warning), "the warning at health-penalty")

    # In health's name: agri does not serve it.
    in_health_name = agri_push(flows, "risk_feedback", agri_warning_feedback(warning, HEALTH))
    assert in_health_name["rejected"] == 1, in_health_name
    (error,) = in_health_name["records"][0]["errors"]
    assert (error["field"], error["rule"]) == ("department", SERVED_RULE)
    # In its own name, on a warning the hub routed to health: not its warning.
    in_own_name = agri_push(flows, "risk_feedback", agri_warning_feedback(warning, AGRI_OWN))
    assert in_own_name["rejected"] == 1, in_own_name
    (error,) = in_own_name["records"][0]["errors"]
    assert (error["field"], error["rule"], error["value"]) == ("warning_id", WARNING_RULE, warning)
    assert "routed to health-penalty" in error["message"]

    # The twin: health's own feedback on its warning reaches national, matched.
    unmatched = sample_total("jghub_unmatched_feedback_total", system="health-penalty")
    feedback = flows.sample_with(
        "health-penalty",
        "risk_feedback",
        {"YJ330000202605080003": warning, "YJ330000202605090011": warning, **fresh_ids()},
    )
    answered = flows.push("health-penalty", "risk_feedback", feedback)
    assert (answered.accepted, answered.rejected) == (3, 0), answered
    wait_for(lambda: len(flows.received("national", warning)) == 3, "the feedback at national")
    assert sample_total("jghub_unmatched_feedback_total", system="health-penalty") == unmatched
    assert [system for system in anyone_got(flows, warning) if system != "national"] == [
        "health-penalty"  # the warning itself; none of agri's feedback went anywhere
    ]


def test_feedback_on_a_warning_the_hub_never_saw_is_quarantined_and_counted_unmatched(
    flows: Flows,
) -> None:
    stranger = f"YJ{uuid.uuid4().hex[:16].upper()}"
    unmatched = sample_total("jghub_unmatched_feedback_total", system="health-penalty")
    feedback = flows.sample_with(
        "health-penalty",
        "risk_feedback",
        {"YJ330000202605080003": stranger, "YJ330000202605090011": stranger, **fresh_ids()},
    )
    answered = flows.push("health-penalty", "risk_feedback", feedback)
    assert (answered.accepted, answered.rejected) == (0, 3), answered
    assert set(answered.reasons) == {WARNING_MATCH_RULE}, answered.reasons
    assert sample_total("jghub_unmatched_feedback_total", system="health-penalty") == (
        unmatched + 3
    )
    assert flows.received("national", stranger) == []


def test_a_system_without_departments_cannot_act_for_a_served_one(flows: Flows) -> None:
    warning, other = (f"GJYJ{uuid.uuid4().hex[:14].upper()}" for _ in range(2))
    # National issues its own warnings (国家市场监督管理总局: no system here serves it) ...
    body = flows.sample_with(
        "national",
        "risk_warning",
        {
            "GJYJ20260506000341": warning,
            "GJYJ20260428000127": other,
            "国家市场监督管理总局": MARKET["name"],
            "11100000MB0143028R": MARKET["credit_code"],
        },
    )
    # ... but not in the name of a department market-penalty serves.
    pushed = flows.push("national", "risk_warning", body)
    assert (pushed.accepted, pushed.rejected) == (1, 1), pushed
    assert pushed.reasons == [SERVED_RULE]
    (reason,) = kept(flows, warning)
    assert "national serves no department" in reason
    wait_for(lambda: flows.received("transport-penalty", other), "the other warning")
    assert anyone_got(flows, warning) == []


def test_agri_cannot_file_a_case_as_markets_organ_but_files_its_own(flows: Flows) -> None:
    own = AGRI_SAMPLES.joinpath("case_records/valid-records.json").read_bytes()
    pushed = flows.push("agri-penalty", "case_records", own)
    assert pushed.rejected == 0 and pushed.accepted >= 1, pushed
    as_market = own.replace("嘉兴市农业农村局".encode(), MARKET["name"].encode()).replace(
        b"11330400002645179Q", MARKET["credit_code"].encode()
    )
    refused = flows.push("agri-penalty", "case_records", as_market)
    assert refused.rejected >= 1 and set(refused.reasons) == {SERVED_RULE}, refused


# ---------------------------------------------------------------- the centre, ingress bypassed


def centre_systems() -> dict[str, Any]:
    """The complaint platform, the centre, market-penalty (takes tasks) and agri-penalty."""
    key = {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"}
    return {
        "systems": [
            {
                "id": "complaint-platform",
                "name_zh": "统一投诉举报平台",
                "auth": key,
                "inbound": [{"adapter": "xml_push", "message_type": "complaint_push"}],
                "outbound": {"adapter": "outbox", "render": {"complaint": "handling_result"}},
                "routes": ["complaint.*.*.complaint-platform"],
            },
            {
                "id": "collaboration",
                "name_zh": "业务协同中心",
                "departments": [CENTRE],
                "auth": {"scheme": "internal"},
                "collaboration": {"scenarios": {"01": "market-penalty"}},
                "routes": [
                    "complaint.*.complaint-platform",
                    "collaboration_task.*.*.collaboration",
                ],
            },
            {
                "id": "market-penalty",
                "name_zh": "省市场监督管理局行政处罚办案系统",
                "departments": [MARKET],
                "auth": key,
                "inbound": [{"adapter": "soap_push", "message_type": "task_feedback",
                             "options": {"operation": "UploadTaskFeedbackXml"}}],
                "outbound": {"adapter": "outbox", "render": {"collaboration_task": "task_push"}},
                "routes": ["collaboration_task.*.*.market-penalty"],
            },
            {
                "id": "agri-penalty",
                "name_zh": "省农业农村厅农业综合行政执法系统",
                "departments": [AGRI_OWN],
                "auth": key,
                "inbound": [{"adapter": "rest_push", "message_type": "task_feedback"}],
            },
        ]
    }  # fmt: skip


def translated(system: str, message_type: str, body: bytes, charset: str | None) -> Envelope:
    """The one record of `body` as `system`'s mapping reads it (no ingress, no check)."""
    translation = folders()[system].translate(message_type, body, charset=charset)
    (envelope,) = [e for e in translation.envelopes if e.data["status"] in {"5", "6"}]
    return envelope


def test_the_centre_takes_a_tasks_result_only_from_its_assignee_even_past_ingress(
    tmp_path: Path,
) -> None:
    with open_hub("rabbitmq", tmp_path) as hub:
        config = hub.configure(centre_systems())
        broker = hub.broker()
        mappings = config.bind_mappings(folders())
        ingress = Ingress(broker, mappings, directory=Directory(config.systems))
        case = f"TS{uuid.uuid4().hex[:16].upper()}"
        task_id = f"XT-{case}"
        complaint = ingress.accept(
            "complaint-platform", "complaint_push", complaint_xml(case, "假冒伪劣")
        )
        assert complaint.accepted == 1, complaint
        hub.start_worker(targets=["collaboration"], pollers=False)
        hub.wait(lambda: broker.depth("market-penalty") == 1)  # the task, dispatched

        # Straight onto the bus, past ingress's check: agri's "result" of market's task.
        forged = translated(
            "agri-penalty",
            "task_feedback",
            agri_task(task_id, "4", dispatcher=CENTRE, assignee=MARKET, result=FORGED),
            None,
        )
        assert forged.lineagesystem == "agri-penalty"
        broker.publish(
            outgoing_message(forged, "collaboration_task.330106.agri-penalty.collaboration")
        )

        def dead() -> list[str]:
            return [d.reason for d in broker.dead_letters("collaboration") if task_id in d.reason]

        hub.wait(dead)
        (reason,) = dead()
        assert SERVED_RULE in reason
        assert "came from agri-penalty, but the task was assigned to market-penalty" in reason

        # The twin: market's own result, published the same way, closes the complaint.
        answers = Answers(folders()["market-penalty"], dispatcher=CENTRE)
        feedback = answers.task("fed_back", task_id)
        market = translated("market-penalty", "task_feedback", feedback.body, feedback.charset)
        broker.publish(
            outgoing_message(market, "collaboration_task.330106.market-penalty.collaboration")
        )
        hub.wait(lambda: broker.depth("complaint-platform") == 1)
        (result,) = drain(broker, "complaint-platform", 1)
        assert answers.result.encode() in result.body and FORGED.encode() not in result.body
        assert len(dead()) == 1


# ---------------------------------------------------------------- the rule itself, no bus

JOINT_TASK = Path(__file__).parents[1] / "standard/samples/collaboration_task.json"
"""A joint task fed back, assigned to departments of health-penalty and market-penalty."""


def joint_task(**changes: Any) -> Envelope:
    record = CollaborationTask.model_validate({**json.loads(JOINT_TASK.read_bytes()), **changes})
    return Envelope.wrap(record, source="test", operation="update", time=record.dispatched_time)


def shipped_rule() -> Authorisation:
    return Authorisation(Directory(load_systems(CONFIG_FILE).systems))


def test_each_assignee_of_a_joint_task_feeds_it_back_and_no_one_else() -> None:
    rule = shipped_rule()
    for sender in ("health-penalty", "market-penalty"):
        assert rule.refusals(sender, "task_feedback", [(0, joint_task())]).refused == []
    (refused,) = rule.refusals("agri-penalty", "task_feedback", [(3, joint_task())]).refused
    assert (refused.record_index, refused.field, refused.rule) == (3, "assignees", SERVED_RULE)
    assert "in the name of one of assignees" in refused.message


def test_the_centre_dispatches_in_its_own_name_and_no_one_else_in_it() -> None:
    dispatched = joint_task(
        status="1", dispatcher=CENTRE, accepted_time=None, accepted_by=None,
        feedback_time=None, feedback_result=None,
    )  # fmt: skip
    shipped_rule().check("collaboration", [dispatched])
    with pytest.raises(NotAuthorised, match="is served by collaboration"):
        shipped_rule().check("market-penalty", [dispatched])


def test_the_centre_closes_a_task_it_dispatched_its_assignees_may_and_no_one_else() -> None:
    closed = joint_task(status="6", dispatcher=CENTRE)
    # The dispatcher's system closes it (the centre, once it accepted the result); each
    # assignee's system may report it closed too; a third system may not, in either name.
    for sender in ("collaboration", "health-penalty", "market-penalty"):
        shipped_rule().check(sender, [closed])
    with pytest.raises(NotAuthorised, match="in the name of one of assignees"):
        shipped_rule().check("agri-penalty", [closed])
    # Only a close: the dispatcher's system reports no other step of the assignees' work.
    with pytest.raises(NotAuthorised, match="collaboration serves"):
        shipped_rule().check("collaboration", [joint_task(status="5", dispatcher=CENTRE)])


def test_a_complaint_kept_before_assignees_were_recorded_is_held_to_its_scenarios_system(
    tmp_path: Path,
) -> None:
    # A complaint file of a hub before the store, written before the assigned system was kept
    # (one column fewer): the centre takes it into the store, its assigned system unknown.
    case = "TS330106202603010077"
    complaint = translated_complaint(case)
    with sqlite3.connect(tmp_path / "collaboration.sqlite3") as old:
        old.execute("CREATE TABLE complaint (task_id TEXT PRIMARY KEY, envelope TEXT)")
        old.execute(
            "INSERT INTO complaint VALUES (?, ?)", (f"XT-{case}", complaint.to_json().decode())
        )
    old.close()
    config = parse_systems(centre_systems())
    centre = CollaborationCentre(
        config.system("collaboration"),
        Ingress(None, {}, directory=Directory(config.systems)),  # no bus: nothing is published
        embedded_store(tmp_path),
        tmp_path,
    )
    assert (tmp_path / "collaboration.sqlite3.adopted").is_file()  # taken once, kept aside
    try:
        forged = translated(
            "agri-penalty",
            "task_feedback",
            agri_task(f"XT-{case}", "4", dispatcher=CENTRE, assignee=MARKET, result=FORGED),
            None,
        )
        with pytest.raises(NotDelivered, match="assigned to market-penalty") as refused:
            centre.act(forged)
        assert refused.value.settle_as == "dead_letter"
        # Market's own step passes the check and goes on to publish (the bus is away: retried).
        answers = Answers(folders()["market-penalty"], dispatcher=CENTRE)
        feedback = answers.task("fed_back", f"XT-{case}")
        market = translated("market-penalty", "task_feedback", feedback.body, feedback.charset)
        with pytest.raises(NotDelivered, match="not connected to the bus") as later:
            centre.act(market)
        assert later.value.settle_as == "retry"
    finally:
        centre.close()


def translated_complaint(case: str) -> Envelope:
    translation = folders()["complaint-platform"].translate(
        "complaint_push", complaint_xml(case, "假冒伪劣")
    )
    (envelope,) = translation.envelopes
    return envelope


def test_a_warning_routed_again_is_held_to_its_latest_system_in_every_process(
    tmp_path: Path,
) -> None:
    serve = StoredWarningAddressees(embedded_store(tmp_path))
    poller = StoredWarningAddressees(Store(embedded_store(tmp_path).url))  # another connection
    try:
        serve.remember({"GJYJ1": "market-penalty"})
        assert poller.responsible(["GJYJ1", "GJYJ2"]) == {"GJYJ1": "market-penalty"}
        serve.remember({"GJYJ1": "health-penalty"})  # its responsible department changed
        assert poller.responsible(["GJYJ1"]) == {"GJYJ1": "health-penalty"}
    finally:
        poller.store.close()
