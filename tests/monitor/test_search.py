"""Searching the journal by business keys, on both stores: every kind of key finds its entries,
a complaint leads to its task, the task's feedback and the complaint's result, a warning to its
feedback and notices; unknown keys, limits, pruning and the reindex of older entries."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flows_harness import complaint_xml
from ledger_support import DISPATCHED, MARKET, feedback, task, warning, wrap
from monitor_support import operator_environment, outgoing
from notice_support import fresh_notice
from operator_accounts import READER, write_operators
from sqlalchemy import delete, func, select, text
from store_support import STORE_BACKENDS, embedded_store, fresh_store_url
from typer.testing import CliRunner
from worker_harness import folders

from hub.cli import app as jghub
from monitor import search as search_module
from monitor.api import search_router
from monitor.journal import Journal, JournalOptions, Step
from monitor.journal_keys import JOURNAL_KEY, KeyKind
from monitor.observer import Observer
from monitor.operators import OperatorGate, load_operators
from monitor.search import SearchResult, named_as, reindex, search
from standard.datasets.complaint import Complaint
from standard.envelope import Envelope, Operation
from store import Store, schema

FAST = JournalOptions(flush_interval_s=0.01)
PARTY = "91330106MA2CDN7P4X"
"""The credit code of the company complained about."""


@dataclass
class Chain:
    """A complaint that became a task, fed back and answered, as the hub journals it."""

    case: str
    task_id: str
    notice_id: str
    messages: dict[str, str]
    """What each message is ("complaint", "task", "feedback", "result", "notice") → its id."""
    quarantine_id: str
    refused_receipt: str


@pytest.fixture
def journal(store: Store) -> Iterator[Journal]:
    with Journal(store, FAST) as opened:
        yield opened


def _journal(observer: Observer, system: str, envelope: Envelope, *, to: str | None) -> str:
    """Journal `envelope` as the hub does: received and published by `system` (through the
    observer, which reads its keys), then delivered to `to`; return its message id."""
    seen = observer.received(system, "push", receipt=f"r-{uuid.uuid4().hex}", size=1)
    observer.translated(seen, seconds=0.001, envelopes=[envelope], errors=[])
    message = outgoing(envelope, system)
    observer.published(seen, seconds=0.0, outgoing=[message])
    if to is not None:
        assert observer.journal is not None
        observer.journal.record(
            Step.DELIVERED, message_id=envelope.id, system=system, target=to,
            dataset=envelope.spec.name, attempt=1, detail={"subject": envelope.subject},
        )  # fmt: skip
    return envelope.id


def _complaint(case: str) -> Envelope:
    (pushed,) = (
        folders()["complaint-platform"]
        .translate("complaint_push", complaint_xml(case, "假冒伪劣"))
        .envelopes
    )
    record = Complaint.model_validate({**pushed.data, "respondent_credit_code": PARTY})
    return wrap(record, DISPATCHED, Operation.INSERT)


def _result(complaint: Envelope, task_id: str, at: dt.datetime) -> Envelope:
    closed = {"status": "6", "result": "已查处", "closed_time": at, "task_id": task_id}
    return wrap(Complaint.model_validate({**complaint.data, **closed}), at)


def _chain(journal: Journal) -> Chain:
    observer = Observer(journal=journal)
    case = f"TS{uuid.uuid4().hex[:16].upper()}"
    task_id = f"XT-{case}"
    complaint = _complaint(case)
    later = DISPATCHED + dt.timedelta(days=2)
    notice = fresh_notice("market-penalty", item_id=task_id)
    messages = {
        "complaint": _journal(observer, "complaint-platform", complaint, to="collaboration"),
        "task": _journal(
            observer, "collaboration", task("1", task_id=task_id, source_record_id=case),
            to="market-penalty",
        ),
        "feedback": _journal(
            observer, "market-penalty", task("5", later, task_id=task_id, source_record_id=case),
            to="collaboration",
        ),
        "result": _journal(
            observer, "collaboration", _result(complaint, task_id, later), to="complaint-platform"
        ),
        "notice": _journal(observer, "collaboration", notice, to="market-penalty"),
    }  # fmt: skip
    # Another record's chain, which no search of this complaint may reach.
    _journal(observer, "national", warning("YJ-OTHER"), to="market-penalty")
    _journal(observer, "market-penalty", feedback("2", later, warning_id="YJ-OTHER"), to=None)
    refused = observer.received("complaint-platform", "push", receipt="r-refused", size=9)
    quarantine_id = f"Q-{uuid.uuid4().hex[:12]}"
    observer.refused(refused, kind="malformed", reason="not XML", quarantine_id=quarantine_id)
    return Chain(case, task_id, notice.subject, messages, quarantine_id, "r-refused")


def _records(found: SearchResult) -> set[tuple[str, str]]:
    return {(record.dataset, record.key) for record in found.records}


def test_search_finds_each_kind_of_key(journal: Journal) -> None:
    chain = _chain(journal)
    complaint_receipt = next(
        e.receipt for e in journal.trace(chain.messages["complaint"]) if e.step is Step.RECEIVED
    )
    expected = {
        chain.messages["task"]: KeyKind.MESSAGE,
        complaint_receipt: KeyKind.RECEIPT,
        chain.quarantine_id: KeyKind.QUARANTINE,
        chain.case: KeyKind.RECORD,
        PARTY: KeyKind.CREDIT_CODE,
        "11330000MB1P273395": KeyKind.CREDIT_CODE,  # the centre, the tasks' dispatcher
        chain.task_id: KeyKind.LINK,  # the complaint's result names its task
    }
    for key, kind in expected.items():
        found = search(journal, key)
        assert found.found, (key, found.note)
        assert kind in {match.kind for match in found.matched}, (key, found.matched)
        assert found.timeline, key
    by_link = search(journal, chain.task_id)
    assert {(m.kind, m.field, m.dataset) for m in by_link.matched} >= {
        (KeyKind.RECORD, "task_id", "collaboration_task"),
        (KeyKind.LINK, "task_id", "complaint"),
        (KeyKind.LINK, "item_id", "supervision_notice"),
    }
    refused = search(journal, chain.quarantine_id)
    assert [(s.step, s.receipt) for s in refused.timeline] == [("rejected", chain.refused_receipt)]
    assert named_as(journal, PARTY) == [KeyKind.CREDIT_CODE]


def test_search_of_a_complaint_leads_to_its_task_feedback_result_and_notices(
    journal: Journal,
) -> None:
    chain = _chain(journal)
    found = search(journal, chain.case)
    assert _records(found) == {
        ("complaint", chain.case),
        ("collaboration_task", chain.task_id),
        ("supervision_notice", chain.notice_id),
    }
    assert found.records[0].how == "searched"
    # Every step of every message of the chain, in time order, and nothing of the warning's.
    assert {step.message_id for step in found.timeline} == set(chain.messages.values())
    assert [s.at for s in found.timeline] == sorted(s.at for s in found.timeline)
    received = [(s.dataset, s.system, s.operation) for s in found.timeline if s.step == "received"]
    assert received == [
        ("complaint", "complaint-platform", "insert"),
        ("collaboration_task", "collaboration", "insert"),
        ("collaboration_task", "market-penalty", "update"),
        ("complaint", "collaboration", "update"),
        ("supervision_notice", "collaboration", "insert"),
    ]
    delivered = [s.outcome for s in found.timeline if s.step == "delivered"]
    assert delivered[:2] == ["delivered to collaboration", "delivered to market-penalty"]
    assert all(s.operation for s in found.timeline)
    # The same chain from its other end: the department's feedback message.
    back = search(journal, chain.messages["feedback"])
    assert _records(back) == _records(found)
    assert found.truncated is None and found.note is None


def test_search_of_a_warning_leads_to_its_feedback_only(journal: Journal) -> None:
    _chain(journal)
    found = search(journal, "YJ-OTHER")
    assert _records(found) == {("risk_warning", "YJ-OTHER"), ("risk_feedback", "FK-YJ-OTHER-2")}
    linked = next(r for r in found.records if r.dataset == "risk_feedback")
    assert linked.how == "its warning_id names YJ-OTHER"


def test_search_of_an_unknown_key_says_so(journal: Journal) -> None:
    _chain(journal)
    found = search(journal, "TS-NOBODY-SENT-THIS")
    assert not found.found and found.records == [] and found.timeline == []
    assert found.note is not None
    assert "no journal entry names 'TS-NOBODY-SENT-THIS'" in found.note
    assert "reindex" not in found.note  # every entry is indexed
    with pytest.raises(ValueError, match="limit 0 is not between 1 and"):
        search(journal, "x", limit=0)


def test_search_says_every_step_in_words(journal: Journal) -> None:
    """A quarantine id's timeline holds the operators' acts on it: each step has its words."""
    chain = _chain(journal)
    (step,) = [e for e in journal.trace(chain.messages["complaint"]) if e.step is Step.RECEIVED]
    said = {kind: search_module.outcome(replace(step, step=kind)) for kind in Step}
    assert len(set(said.values())) == len(Step)
    acted = replace(step, step=Step.RELEASED, detail={"by": "ops-li", "published": 1,
                                                      "state": "released"})  # fmt: skip
    assert search_module.outcome(acted) == (
        "released from the quarantine by ops-li: 1 published, now released"
    )


def test_search_is_bounded_and_says_where_it_stopped(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    observer = Observer(journal=journal)
    for index in range(6):
        _journal(observer, "national", warning(f"YJ-{index}"), to=None)
    department = MARKET["credit_code"]  # every warning's responsible department
    found = search(journal, department, limit=5)
    assert len(found.timeline) == 5
    assert found.truncated is not None
    assert f"{department} is the credit_code of more than 5 entries" in found.truncated
    assert "the first 5 are shown" in found.truncated
    assert len(found.records) == 5  # the newest five warnings, not followed further
    # Records followed from a key: bounded too.
    chain = _chain(journal)
    monkeypatch.setattr(search_module, "MAX_RECORDS", 2)
    stopped = search(journal, chain.case)
    assert len(stopped.records) == 2
    assert stopped.truncated is not None and "followed 2 records" in stopped.truncated


def _keys(store: Store) -> list[tuple[str, str, int, str | None]]:
    k = JOURNAL_KEY.c
    with store.begin() as db:
        rows = db.execute(select(k.value, k.kind, k.seq, k.field).order_by(k.seq, k.kind, k.value))
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_search_reindex_rebuilds_the_keys_from_the_entries(journal: Journal, store: Store) -> None:
    chain = _chain(journal)
    journal.flush()
    written = _keys(store)
    assert {kind for _, kind, _, _ in written} == {"credit_code", "link"}
    # A journal restored without its key index: the records are found by their own keys, but
    # neither credit codes nor links lead anywhere.
    with store.begin() as db:
        db.execute(delete(JOURNAL_KEY))
    assert not search(journal, PARTY).found
    assert _records(search(journal, chain.case)) == {("complaint", chain.case)}
    seen: list[int] = []
    done = reindex(journal, batch=4, progress=lambda report: seen.append(report.entries))
    assert done.entries == journal.count() and done.oldest == 1
    assert seen == [*range(4, journal.count(), 4), journal.count()]
    assert _keys(store) == written  # the same keys the writer wrote
    assert ("collaboration_task", chain.task_id) in _records(search(journal, chain.case))
    # Again: each batch replaces its entries' keys; `below` resumes a run that stopped.
    assert reindex(journal).keys == len(written)
    resumed = reindex(journal, batch=2, below=5)
    assert (resumed.entries, resumed.oldest) == (4, 1)
    assert _keys(store) == written


def test_search_says_when_records_predate_their_keys(journal: Journal, store: Store) -> None:
    # A complaint and its task journalled before migration 0010: no credit codes, no links.
    old_case = f"TS{uuid.uuid4().hex[:16].upper()}"
    for message_id, dataset, subject in (
        ("old-complaint", "complaint", old_case),
        ("old-task", "collaboration_task", f"XT-{old_case}"),
    ):
        journal.record(
            Step.RECEIVED, message_id=message_id, receipt=f"r-{message_id}",
            system="complaint-platform", dataset=dataset, detail={"subject": subject},
        )  # fmt: skip
    journal.flush()
    with store.begin() as db:  # what the migration does
        db.execute(text("UPDATE journal_chain SET keys_from = seq + 1"))
    chain = _chain(journal)
    old = search(journal, old_case)
    assert _records(old) == {("complaint", old_case)}
    assert old.note is not None
    assert "some of these records were journalled before entry #3" in old.note
    assert "do not lead to the records derived from them" in old.note
    assert search(journal, chain.case).note is None
    unknown = search(journal, "TS-NOBODY-SENT-THIS").note
    assert unknown is not None
    assert "entries journalled before entry #3, when the journal kept no credit codes" in unknown


@pytest.mark.parametrize("backend", STORE_BACKENDS)
def test_search_keys_migration_marks_where_keys_begin(backend: str, tmp_path: Path) -> None:
    with fresh_store_url(backend, tmp_path) as url:
        store = Store(url)
        try:
            with store.begin() as db:
                schema.upgrade(db, "0008")
                db.execute(
                    text(
                        "INSERT INTO journal_chain (id, seq, hash, day, base_seq, base_hash) "
                        "VALUES (1, 41, :hash, NULL, 0, :hash)"
                    ),
                    {"hash": "0" * 64},
                )
            store.upgrade()
            with store.begin() as db:
                assert db.execute(text("SELECT keys_from FROM journal_chain")).scalar() == 42
        finally:
            store.close()


def test_search_keys_go_with_the_days_they_belong_to(store: Store) -> None:
    today = dt.datetime(2026, 10, 30, 12, tzinfo=dt.UTC)
    clock = [today]
    with Journal(store, FAST, clock=lambda: clock[0]) as journal:
        observer = Observer(journal=journal)
        _journal(observer, "national", warning("YJ-OLD"), to=None)
        journal.flush()
        clock[0] = today + dt.timedelta(days=1)
        _journal(observer, "national", warning("YJ-NEW"), to=None)
        journal.flush()
        assert journal.prune(dt.date(2026, 10, 31)) == 2
        assert not search(journal, "YJ-OLD").found
        assert search(journal, "YJ-NEW").found
        with store.begin() as db:
            kept = db.execute(select(func.min(JOURNAL_KEY.c.seq))).scalar()
        assert kept == 3
        if not store.embedded:
            assert _key_partitions(store) == ["journal_key_20261031"]


def _key_partitions(store: Store) -> list[str]:
    with store.begin() as db:
        return sorted(
            db.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'journal_key'::regclass"
                )
            ).scalars()
        )


def test_search_over_http_for_readers(journal: Journal, tmp_path: Path) -> None:
    chain = _chain(journal)
    app = FastAPI()
    app.include_router(
        search_router(journal, gate=OperatorGate(load_operators(write_operators(tmp_path))))
    )
    client = TestClient(app)
    assert client.get("/search", params={"q": chain.case}).status_code == 401
    answer = client.get("/search", params={"q": chain.case}, auth=READER)
    assert answer.status_code == 200, answer.text
    found = SearchResult.model_validate(answer.json())
    assert ("collaboration_task", chain.task_id) in _records(found)
    assert found.timeline[0].step == "received" and found.timeline[0].dataset == "complaint"
    unknown = client.get("/search", params={"q": "nothing-like-it"}, auth=READER).json()
    assert unknown["found"] is False and "no journal entry names" in unknown["note"]
    too_many = client.get("/search", params={"q": chain.case, "limit": 0}, auth=READER)
    assert too_many.status_code == 422


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(jghub, list(args), catch_exceptions=False, terminal_width=250)
    return result.exit_code, result.output


def test_search_command_and_trace_sending_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = operator_environment(tmp_path, monkeypatch)
    with Journal(embedded_store(data), FAST) as journal:
        chain = _chain(journal)
    code, output = _run("search", chain.case)
    assert code == 0, output
    assert f"records reached from {chain.case}" in output
    for text_shown in (chain.task_id, "its source_record_id names", "delivered to collaboration"):
        assert text_shown in output
    code, output = _run("search", chain.case, "--json")
    assert code == 0
    answer = SearchResult.model_validate_json(output)
    assert ("collaboration_task", chain.task_id) in _records(answer)
    code, output = _run("search", "TS-NOBODY-SENT-THIS")
    assert code == 1 and "no journal entry names 'TS-NOBODY-SENT-THIS'" in output
    code, output = _run("trace", PARTY)
    assert code == 1
    assert f"{PARTY} is the credit code of journalled records: `jghub search {PARTY}`" in output
    code, output = _run("search")
    assert code == 2 and "give a KEY to search, or --reindex" in output
    with embedded_store(data).begin() as db:
        db.execute(delete(JOURNAL_KEY))
    code, output = _run("search", "--reindex", "--batch", "10")
    assert code == 0 and "indexed 10 entries" in output, output
    assert "batches" in output and "down to entry #1" in output
    code, output = _run("search", PARTY)
    assert code == 0 and chain.case in output
    code, output = _run("search", "--reindex", "--below", "1")
    assert code == 0 and "nothing to index" in output
