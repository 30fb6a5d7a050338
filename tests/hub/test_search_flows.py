"""Searching the journal end to end: a complaint pushed through the real landscape, turned into a
task for its department, answered, and told back to the complaint platform, is found by its case
number, its task id and its department's feedback, with every step of every message in order —
on RabbitMQ and on the embedded bus (issue #16)."""

from __future__ import annotations

import uuid

from flows_harness import CENTRE, Flows, complaint_xml, wait_for
from flows_harness import flows as flows  # the fixture: the landscape on each bus
from store_support import embedded_store
from typer.testing import CliRunner

from hub.cli import app
from hub.simulators.answers import Answers
from monitor.journal import Journal
from monitor.search import SearchResult, search


def _search(flows: Flows, key: str) -> SearchResult:
    """What the hub's journal (the run's embedded store) answers for `key` now."""
    with Journal(embedded_store(flows.data_dir)) as journal:
        return search(journal, key)


def _steps(found: SearchResult) -> list[tuple[str, str | None, str | None, str | None]]:
    return [(s.step, s.dataset, s.system, s.target) for s in found.timeline]


def test_search_of_a_complaint_leads_to_its_task_feedback_and_result(flows: Flows) -> None:
    case = f"TS{uuid.uuid4().hex[:16].upper()}"
    task_id = f"XT-{case}"
    pushed = flows.push("complaint-platform", "complaint_push", complaint_xml(case, "医疗美容"))
    assert pushed.accepted == 1, pushed
    wait_for(lambda: flows.received("health-penalty", task_id), f"{task_id} at health-penalty")
    answers = Answers(flows.mappings["health-penalty"], dispatcher=CENTRE)
    feedback = answers.task("fed_back", task_id)
    answered = flows.push("health-penalty", "task_feedback", feedback.body, feedback.charset)
    assert answered.accepted >= 1 and answered.rejected == 0, answered
    wait_for(
        lambda: flows.received("complaint-platform", f"<caseNo>{case}</caseNo>"),
        f"the handling result of {case}",
    )
    # Each message received, and delivered where it was going.
    received = [
        ("received", "complaint", "complaint-platform", None),
        ("received", "collaboration_task", "collaboration", None),
        ("received", "collaboration_task", "health-penalty", None),
        ("received", "complaint", "collaboration", None),
    ]
    delivered = [
        ("delivered", "complaint", "complaint-platform", "collaboration"),
        ("delivered", "collaboration_task", "collaboration", "health-penalty"),
        ("delivered", "collaboration_task", "health-penalty", "collaboration"),
        ("delivered", "complaint", "collaboration", "complaint-platform"),
    ]
    wait_for(
        lambda: set(received + delivered) <= set(_steps(_search(flows, case))),
        "every step of the chain journalled",
    )
    found = _search(flows, case)
    assert {(r.dataset, r.key) for r in found.records} >= {
        ("complaint", case),
        ("collaboration_task", task_id),
    }
    steps = _steps(found)
    # The complaint came in, became a task for the department, the department fed it back, the
    # result was derived and went to the complaint platform: in that order in time. (Each
    # delivery is journalled when the worker acknowledges it, which may be after the next
    # message of the chain arrived.)
    positions = [steps.index(step) for step in [*received, delivered[-1]]]
    assert positions == sorted(positions), steps
    operations = {(s.dataset, s.system): s.operation for s in found.timeline if s.operation}
    assert operations[("complaint", "complaint-platform")] == "insert"
    assert operations[("complaint", "collaboration")] == "update"
    assert all(s.message_id for s in found.timeline)

    # From the other ends: the task id, and the department's feedback message.
    by_task = _search(flows, task_id)
    assert {(r.dataset, r.key) for r in by_task.records} == {
        (r.dataset, r.key) for r in found.records
    }
    feedback_message = next(s.message_id for s in found.timeline if s.system == "health-penalty")
    assert ("complaint", case) in {
        (r.dataset, r.key) for r in _search(flows, feedback_message).records
    }

    # The issue's own words: `jghub trace XT-…` found no message.
    traced = CliRunner().invoke(app, ["trace", task_id, "--data-dir", str(flows.data_dir)])
    assert traced.exit_code == 0, traced.output
    searched = CliRunner().invoke(
        app, ["search", case, "--data-dir", str(flows.data_dir)], terminal_width=250
    )
    assert searched.exit_code == 0 and task_id in searched.output, searched.output


def test_search_of_a_key_the_hub_never_saw_says_so(flows: Flows) -> None:
    found = _search(flows, "TS-NEVER-PUSHED")
    assert not found.found and found.note is not None
    assert "no journal entry names 'TS-NEVER-PUSHED'" in found.note
