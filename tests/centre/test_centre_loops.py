"""The centre closes the loops (#15.3), end to end on both buses: a returned task goes back to
the platform and is dispatched again on its next change, acceptance and progress reach the
complaint platform, warning feedback is matched (or quarantined), and grassroots events of the
configured kinds become tasks whose results go back to the grassroots platform.

Every push goes through the pushing system's own channel (health-penalty's signed REST/JSON
feedback, the grassroots platform's signed event report, national's warnings), every delivery
is what the receiving simulator recorded.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flows_harness import CENTRE, DEPARTMENTS, Flows, complaint_xml, wait_for
from flows_harness import flows as flows  # the fixture: the landscape on each bus

from adapters.authorisation import WARNING_MATCH_RULE
from centre.collaboration import ACCEPT_RANK, PROGRESS_RANK, RESULT_RANK, RETURN_RANK, Loop, Step
from centre.deadlines import DeadlineRules
from centre.ledger import RECORD_DEADLINE
from centre.workdays import WorkingCalendar
from hub.simulators.answers import Answers
from mappings import SYSTEMS_ROOT
from monitor.metrics import sample_total

SHANGHAI = ZoneInfo("Asia/Shanghai")
HEALTH = {"mc": "浙江省卫生健康委员会", "dm": "11330000002502952J"}
"""health-penalty's first department: the assignee of the centre's tasks for it."""
ACCEPTED_AT = datetime(2026, 3, 1, 10, 0, tzinfo=SHANGHAI)
"""When `complaint_xml`'s complaints are accepted: their tasks' dispatch time."""


def millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def sample_document(system: str, message_type: str, name: str) -> Any:
    path = SYSTEMS_ROOT / system / "samples" / message_type / name
    return json.loads(path.read_text(encoding="utf-8"))


def health_step(flows: Flows, task_id: str, status: str, at: datetime, **fields: Any) -> bytes:
    """health-penalty's task_feedback reporting `status` (QS, TH, BL, FK) of `task_id` at `at`,
    grown from its valid sample (the push re-signs it)."""
    document = sample_document("health-penalty", "task_feedback", "valid-feedback.json")
    record = document["data"]["feedbacks"][0]
    for name in ("qssj", "qsr", "fksj", "fkjg", "thly", "gljcbh", "glajbh"):
        record.pop(name, None)
    record |= {
        "jlid": f"WJXT-{uuid.uuid4().hex[:12]}",
        "gxsj": millis(at),
        "rwbh": task_id,
        "rwlx": "02",
        "lysjj": "complaint",
        "pfdw": {"mc": CENTRE["name"], "dm": CENTRE["credit_code"]},
        "cbdw": [HEALTH],
        "xzqh": ["330106"],
        "pfsj": millis(ACCEPTED_AT),
        "blsx": millis(ACCEPTED_AT + timedelta(days=15)),
        "rwzt": status,
        **fields,
    }
    if status in ("QS", "BL", "FK"):
        record |= {"qssj": millis(ACCEPTED_AT + timedelta(hours=1)), "qsr": "黄志强"}
    document["data"]["feedbacks"] = [record]
    return json.dumps(document, ensure_ascii=False).encode()


def push_step(flows: Flows, task_id: str, status: str, at: datetime, **fields: Any) -> None:
    answered = flows.push(
        "health-penalty", "task_feedback", health_step(flows, task_id, status, at, **fields)
    )
    assert (answered.accepted, answered.rejected) == (1, 0), answered


def told(flows: Flows, case: str) -> list[str]:
    """What the complaint platform was told of `case`, in arrival order."""
    return [
        d.body.decode() for d in flows.received("complaint-platform", f"<caseNo>{case}</caseNo>")
    ]


def new_case() -> tuple[str, str]:
    case = f"TS{uuid.uuid4().hex[:16].upper()}"
    return case, f"XT-{case}"


def test_centre_tells_acceptance_and_progress_then_the_result_and_nothing_after(
    flows: Flows,
) -> None:
    case, task_id = new_case()
    pushed = flows.push("complaint-platform", "complaint_push", complaint_xml(case, "医疗美容"))
    assert pushed.accepted == 1, pushed
    wait_for(lambda: flows.received("health-penalty", task_id), f"{task_id} at health-penalty")

    push_step(flows, task_id, "QS", ACCEPTED_AT + timedelta(hours=1))
    wait_for(lambda: len(told(flows, case)) == 1, "the acceptance at the platform")
    (accepted,) = told(flows, case)
    assert "<status>30</status>" in accepted  # 已转办: the department took it
    assert f"<deptCode>{HEALTH['dm']}</deptCode>" in accepted
    assert f"<taskNo>{task_id}</taskNo>" in accepted

    push_step(flows, task_id, "BL", ACCEPTED_AT + timedelta(days=2), fkjg="已约谈经营者，正在核查")
    wait_for(lambda: len(told(flows, case)) == 2, "the progress at the platform")
    progress = told(flows, case)[1]
    assert "<status>40</status>" in progress and "已约谈经营者，正在核查" in progress

    # An acceptance arriving after the progress (out of order) tells nothing.
    push_step(flows, task_id, "QS", ACCEPTED_AT + timedelta(hours=1))
    result_at = ACCEPTED_AT + timedelta(days=5)
    push_step(flows, task_id, "FK", result_at, fksj=millis(result_at), fkjg="已立案查处")
    wait_for(lambda: len(told(flows, case)) >= 3, "the result at the platform")
    # A progress step after the result changes nothing; the result again is the same message.
    push_step(flows, task_id, "BL", ACCEPTED_AT + timedelta(days=6), fkjg="迟到的进展")
    # (sent again later: the same step, the same fksj, a new change at the door)
    push_step(
        flows,
        task_id,
        "FK",
        result_at + timedelta(days=2),
        fksj=millis(result_at),
        fkjg="已立案查处",
    )
    wait_for(lambda: len(told(flows, case)) >= 4, "the repeated result at the platform")
    seen = told(flows, case)
    assert ["<status>30</status>" in t for t in seen].count(True) == 1, seen
    assert all("迟到的进展" not in t for t in seen), seen
    closed = [d for d in flows.received("complaint-platform", f"<caseNo>{case}</caseNo>")[2:]]
    assert all("<status>50</status>" in d.body.decode() for d in closed)
    assert len({d.idempotency_key for d in closed}) == 1  # one change, told twice at most


def test_centre_closes_a_task_fed_back_and_its_department_hears_it_closed(flows: Flows) -> None:
    case, task_id = new_case()
    pushed = flows.push("complaint-platform", "complaint_push", complaint_xml(case, "医疗美容"))
    assert pushed.accepted == 1, pushed
    wait_for(lambda: flows.received("health-penalty", task_id), f"{task_id} at health-penalty")
    result_at = ACCEPTED_AT + timedelta(days=5)
    push_step(flows, task_id, "FK", result_at, fksj=millis(result_at), fkjg="已立案查处")

    # The centre dispatched it, so the centre closes it: the task, status 6 in health's own
    # code (BJ 已办结), comes to the department, a change of its own after the result.
    wait_for(lambda: len(flows.received("health-penalty", task_id)) == 2, "the close at health")
    dispatched, closed = (json.loads(d.body) for d in flows.received("health-penalty", task_id))
    assert (dispatched["rwzt"], closed["rwzt"]) == ("PF", "BJ")
    assert closed["pfdw"] == {"mc": CENTRE["name"], "dm": CENTRE["credit_code"]}
    assert closed["gxsj"] == millis(result_at + timedelta(seconds=1))
    wait_for(lambda: told(flows, case), "the result at the platform")
    assert "<status>50</status>" in told(flows, case)[0]
    # The ledger closed the department's row; nobody else heard of the close. (The ledger
    # records a publish once the bus confirmed it: the close may reach health before that.)

    def rows() -> list[dict[str, Any]]:
        followed = flows.ledger().item(task_id)
        return followed["rows"] if followed is not None else []

    wait_for(lambda: [r["state"] for r in rows()] == ["closed"], f"{task_id} closed in the ledger")
    (row,) = rows()
    assert row["state"] == "closed" and not row["flags"], row
    assert row["closed_at"] == (result_at + timedelta(seconds=1)).astimezone(UTC).isoformat()
    assert flows.others_got("health-penalty", task_id) == []


def test_centre_sends_a_returned_task_back_and_dispatches_it_again_on_the_next_change(
    flows: Flows,
) -> None:
    case, task_id = new_case()
    flows.push("complaint-platform", "complaint_push", complaint_xml(case, "医疗美容"))
    wait_for(lambda: flows.received("health-penalty", task_id), f"{task_id} at health-penalty")

    returned_at = ACCEPTED_AT + timedelta(days=1)
    push_step(flows, task_id, "TH", returned_at, thly="不属于卫生健康部门职责，应由住建部门处理")
    wait_for(lambda: told(flows, case), "the return at the platform")
    (back,) = told(flows, case)
    assert "<status>20</status>" in back  # 已受理 again, for the platform to dispatch
    assert "不属于卫生健康部门职责" in back and "<deptCode>" not in back

    # A change the platform made before the return dispatches nothing; the one after it
    # (another scene) dispatches the task again, to that scene's department, under a new key.
    stale = complaint_xml(case, "违章建筑", updated="2026-03-01T15:00:00")
    fresh = complaint_xml(case, "违章建筑", updated="2026-03-03T09:00:00")
    for body in (stale, fresh):
        assert flows.push("complaint-platform", "complaint_push", body).accepted == 1
    wait_for(lambda: flows.received("housing-penalty", task_id), f"{task_id} at housing-penalty")
    (again,) = flows.received("housing-penalty", task_id)
    (first,) = flows.received("health-penalty", task_id)
    assert again.idempotency_key != first.idempotency_key
    # The old assignee's steps are no longer taken: the task is housing's now.
    answers = Answers(flows.mappings["housing-penalty"], dispatcher=CENTRE)
    feedback = answers.task("fed_back", task_id)
    flows.push("housing-penalty", "task_feedback", feedback.body, feedback.charset)
    wait_for(lambda: len(told(flows, case)) == 2, "housing's result at the platform")
    assert answers.result in told(flows, case)[1] and "<status>50</status>" in told(flows, case)[1]
    assert [d for d in DEPARTMENTS if d not in ("health-penalty", "housing-penalty")
            and flows.received(d, task_id)] == []  # fmt: skip


def test_centre_matches_warning_feedback_and_quarantines_feedback_on_an_unknown_warning(
    flows: Flows,
) -> None:
    warning, stranger = (f"GJYJ{uuid.uuid4().hex[:14].upper()}" for _ in range(2))
    body = flows.sample_with("national", "risk_warning", {"GJYJ20260506000341": warning})
    flows.push("national", "risk_warning", body)
    wait_for(lambda: flows.received("market-penalty", warning), "the warning at market-penalty")
    unmatched = sample_total("jghub_unmatched_feedback_total", system="market-penalty")

    def feedback_on(warning_id: str) -> bytes:
        return flows.sample_with(
            "market-penalty", "risk_feedback",
            {"YJ330000202605060031": warning_id, "YJ330000202605070008": warning_id},
        )  # fmt: skip

    answered = flows.push("market-penalty", "risk_feedback", feedback_on(warning))
    assert (answered.accepted, answered.rejected) == (3, 0), answered
    wait_for(lambda: len(flows.received("national", warning)) == 3, "the feedback at national")

    refused = flows.push("market-penalty", "risk_feedback", feedback_on(stranger))
    assert (refused.accepted, refused.rejected) == (0, 3), refused
    assert set(refused.reasons) == {WARNING_MATCH_RULE}, refused.reasons
    kept = [q for q in flows.quarantined() if stranger in q.reason]
    assert kept and all(WARNING_MATCH_RULE in q.reason for q in kept), kept
    assert sample_total("jghub_unmatched_feedback_total", system="market-penalty") == unmatched + 3
    assert flows.received("national", stranger) == []


def grassroots_event(event_id: str, kind: str, updated: datetime) -> bytes:
    """One reported grassroots event of `kind` (the platform's eventType), nobody handling it."""
    document = sample_document("grassroots-platform", "event_report", "valid-events.json")
    event = document["data"]["events"][0]
    for name in ("handleDept", "handleResult", "finishTime", "taskNo"):
        event.pop(name, None)
    event |= {
        "eventId": event_id,
        "eventType": kind,
        "status": "REPORTED",
        "updateTime": millis(updated),
    }
    document["data"] = {"total": 1, "events": [event]}
    return json.dumps(document, ensure_ascii=False).encode()


def test_centre_turns_a_grassroots_event_into_a_task_and_its_result_into_event_feedback(
    flows: Flows,
) -> None:
    event_id = f"SJ{uuid.uuid4().hex[:16].upper()}"
    task_id = f"SJ-{event_id}"
    reported = datetime(2026, 3, 1, 12, 0, tzinfo=SHANGHAI)
    for updated in (reported, reported, reported + timedelta(hours=2)):  # redelivered, updated
        pushed = flows.push(
            "grassroots-platform", "event_report", grassroots_event(event_id, "WZJZ", updated)
        )
        assert pushed.accepted == 1, pushed
    wait_for(lambda: len(flows.received("housing-penalty", task_id)) == 2, "both deliveries")
    tasks = flows.received("housing-penalty", task_id)
    assert len({d.idempotency_key for d in tasks}) == 1  # the same task: housing keeps one
    assert flows.others_got("housing-penalty", task_id) == []
    # A kind the table does not name stays with the platform.
    other = f"SJ{uuid.uuid4().hex[:16].upper()}"
    flows.push("grassroots-platform", "event_report", grassroots_event(other, "ZDJY", reported))

    answers = Answers(flows.mappings["housing-penalty"], dispatcher=CENTRE)
    feedback = answers.task("fed_back", task_id)
    answered = flows.push("housing-penalty", "task_feedback", feedback.body, feedback.charset)
    assert answered.accepted >= 1 and answered.rejected == 0, answered
    wait_for(lambda: flows.received("grassroots-platform", event_id), "the event feedback")
    (back,) = flows.received("grassroots-platform", event_id)
    sent = json.loads(back.body)
    assert (sent["eventId"], sent["status"], sent["taskNo"]) == (event_id, "FINISHED", task_id)
    assert sent["handleResult"] == answers.result
    assert [d for d in DEPARTMENTS if flows.received(d, f"SJ-{other}")] == []


def test_centre_loop_tells_later_steps_only() -> None:
    day = datetime(2026, 3, 2, 9, tzinfo=SHANGHAI)
    accepted, progress = Step(ACCEPT_RANK, day), Step(PROGRESS_RANK, day + timedelta(hours=1))
    result = Step(RESULT_RANK, day + timedelta(days=1))
    loop = Loop().after(accepted).after(progress)
    assert not loop.admits(accepted)  # earlier
    assert loop.admits(progress)  # the same again: the same message
    assert loop.admits(Step(PROGRESS_RANK, day + timedelta(hours=2)))
    closed = loop.after(result)
    assert not closed.admits(Step(PROGRESS_RANK, day + timedelta(days=2)))
    assert closed.admits(result)
    returned = loop.after(Step(RETURN_RANK, day + timedelta(hours=3)))
    assert returned.returned_at == day + timedelta(hours=3)
    assert not returned.admits(result)  # the old assignment's result comes too late
    assert Loop.from_json(returned.to_json()) == returned


def test_centre_task_deadline_follows_the_deadline_rules_and_the_ledger_holds_it(
    flows: Flows,
) -> None:
    """The task the department receives carries the deadline the ledger holds it to: the
    centre's rules (config/deadlines.yaml: a forwarded complaint, type 2, has 15 working days),
    counted on the official calendar, not a flat number of calendar days."""
    case, task_id = new_case()
    pushed = flows.push("complaint-platform", "complaint_push", complaint_xml(case, "医疗美容"))
    assert pushed.accepted == 1, pushed
    wait_for(lambda: flows.received("health-penalty", task_id), f"{task_id} at health-penalty")
    (delivered,) = flows.received("health-penalty", task_id)
    sent = json.loads(delivered.body)
    rules = DeadlineRules.load(Path("config/deadlines.yaml"))
    chosen, rule = rules.rule("task", task_type="2", scenario="03")
    assert (chosen, rule.count) == ("type 2", "working")
    due = rule.due(ACCEPTED_AT, WorkingCalendar())
    assert due - ACCEPTED_AT > timedelta(days=rule.days)  # weekends are not counted
    assert [found for found in _values(sent, "blsx")] == [millis(due)], (
        f"the task's 办理时限 at health-penalty: {sent}"
    )
    # The department may acknowledge the delivery before the observer records the publish (it
    # does so once the bus confirms it): the row exists from the delivery, and takes its
    # deadline from the published task a moment later.
    wait_for(lambda: _due_rules(flows, task_id), f"{task_id}'s deadline in the ledger")
    shown = flows.ledger().item(task_id)
    assert shown is not None
    (row,) = shown["rows"]
    assert row["due_rule"] == RECORD_DEADLINE
    assert row["due_at"] == due.astimezone(UTC).isoformat()


def _due_rules(flows: Flows, item_id: str) -> list[str]:
    """The due rules of the item's ledger rows that have one ([] before the item is known)."""
    shown = flows.ledger().item(item_id)
    return [row["due_rule"] for row in shown["rows"] if row["due_rule"]] if shown else []


def _values(document: Any, key: str) -> list[Any]:
    """Every value of `key` anywhere in a JSON document."""
    if isinstance(document, dict):
        own = [document[key]] if key in document else []
        return own + [v for value in document.values() for v in _values(value, key)]
    if isinstance(document, list):
        return [v for value in document for v in _values(value, key)]
    return []
