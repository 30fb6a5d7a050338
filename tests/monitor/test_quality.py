"""Data quality on known inputs: timeliness, completeness, accuracy, as metrics and report."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from broker_support import drain
from journal_seed import seeded_entries
from monitor_support import SAMPLES, value

import bus
from adapters.ingress import Ingress
from adapters.routing import Directory
from bus import Target, Topology
from hub.systems import load_systems
from mappings import load_all, load_system
from monitor.journal import Journal, JournalOptions, Step
from monitor.journal_figures import delivery_figures, quality_figures
from monitor.observer import Observer
from monitor.overview import delivery_counts
from monitor.quality import (
    SystemQuality,
    completeness,
    delay_seconds,
    optional_fields,
    quality_report,
    quantile,
    score,
)
from standard.datasets import validate
from standard.envelope import Envelope
from store import Store

CHANGED = datetime(2026, 6, 18, 22, 35, tzinfo=UTC)

MANDATORY = {
    "event_id": "SJ330106202606180044",
    "title": "古荡街道某工地夜间违规施工扬尘",
    "description": "网格员巡查发现工地22时后仍在进行土方作业。",
    "scenario": "04",
    "source": "1",
    "region_code": "330106",
    "reported_time": "2026-06-18T22:35:00+08:00",
    "status": "1",
}


def _event(**optional: Any) -> Envelope:
    record = validate("grassroots_event", {**MANDATORY, **optional})
    return Envelope.wrap(record, source="330000/jczl", operation="insert", time=CHANGED)


def test_the_standard_says_which_fields_are_optional() -> None:
    names = optional_fields("grassroots_event")
    assert "township" in names and "address" in names
    assert "event_id" not in names and "title" not in names  # mandatory ones never count
    assert len(names) == 10


def test_completeness_counts_filled_optional_fields() -> None:
    envelope = _event(reporter_name="钱小芳", township="古荡街道", address="学院路", task_id=None)
    assert completeness(envelope) == (3, 10)  # null is not filled
    assert completeness(_event()) == (0, 10)


def test_a_delete_says_nothing_about_completeness() -> None:
    delete = Envelope.wrap_delete("grassroots_event", "SJ1", source="330000/jczl", time=CHANGED)
    assert completeness(delete) is None


def test_timeliness_is_arrival_minus_change_time() -> None:
    envelope = _event()
    assert delay_seconds(envelope, CHANGED + timedelta(hours=2)) == 7200.0
    assert delay_seconds(envelope, CHANGED - timedelta(minutes=5)) == 0.0  # sender's clock ahead


def test_quantiles_are_nearest_rank() -> None:
    assert quantile([], 0.5) is None
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert quantile([float(n) for n in range(1, 11)], 0.9) == 9.0


def test_scores_per_system_from_journal_entries(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3", JournalOptions(flush_interval_s=0.01)) as journal:
        for delay, filled in ((60.0, 3), (600.0, 10), (120.0, 5)):
            journal.record(
                Step.RECEIVED,
                message_id=uuid.uuid4().hex,
                system="a",
                detail={"delay_s": delay, "filled": filled, "optional": 10},
            )
        journal.record(Step.REJECTED, receipt="r1", system="a", detail={"rule": "mandatory"})
        journal.record(Step.REJECTED, receipt="r2", system="a", detail={"payload": True})
        journal.record(Step.PUBLISHED, message_id="x", system="a")  # not a quality step
        journal.record(Step.REJECTED, receipt="r3", system="b", detail={"rule": "wan_yuan"})
        journal.flush()
        a, b = score(journal.entries())
    assert (a.system, a.accepted, a.rejected, a.refused_payloads) == ("a", 3, 1, 1)
    assert a.accuracy == 0.75
    assert a.completeness == pytest.approx(18 / 30)
    assert a.delays == [60.0, 120.0, 600.0]
    assert (a.delay_median, a.delay_p90) == (120.0, 600.0)
    assert dict(a.rejections) == {"mandatory": 1}
    assert (b.system, b.accepted, b.rejected, b.accuracy, b.completeness) == (
        "b",
        0,
        1,
        0.0,
        None,
    )


def test_translated_payload_feeds_metrics_journal_and_report(tmp_path: Path) -> None:
    system = f"eco-{uuid.uuid4().hex[:6]}"  # fresh labels: the registry is shared by the tests
    mapping = load_system(SAMPLES / "eco-env-penalty")
    payload = (SAMPLES / "eco-env-penalty/samples/case_batch/invalid-records.xml").read_bytes()
    translation = mapping.translate("case_batch", payload, charset="gb2312")
    assert len(translation.envelopes) == 1  # records 2, 3 and 4 are broken

    with Journal(tmp_path / "j.sqlite3", JournalOptions(flush_interval_s=0.01)) as journal:
        observer = Observer(journal=journal)
        seen = observer.received(system, "case_batch", receipt="rcpt-1", size=len(payload))
        observer.translated(
            seen, seconds=0.01, envelopes=translation.envelopes, errors=translation.errors
        )
        steps = journal.trace("rcpt-1")
        report = quality_report(journal, since=datetime.now(UTC) - timedelta(minutes=5))

    assert value("jghub_payloads_received_total", system=system, message_type="case_batch") == 1
    assert value("jghub_records_accepted_total", system=system, message_type="case_batch") == 1
    rejected = {
        rule: value(
            "jghub_records_rejected_total", system=system, message_type="case_batch", reason=rule
        )
        for rule in ("mandatory", "date 'yyyyMMdd'", "lookup values")
    }
    assert rejected == {"mandatory": 1, "date 'yyyyMMdd'": 1, "lookup values": 1}
    labels = {"system": system, "dataset": "penalty_case"}
    assert value("jghub_optional_fields_total", **labels) == 34
    assert value("jghub_optional_fields_filled_total", **labels) == 4
    assert value("jghub_record_delay_seconds_count", **labels) == 1
    assert value("jghub_translation_seconds_count", system=system, message_type="case_batch") == 1

    assert [s.step for s in steps] == [Step.RECEIVED, Step.REJECTED, Step.REJECTED, Step.REJECTED]
    received = steps[0]
    assert received.message_id == translation.envelopes[0].id
    assert (received.detail["filled"], received.detail["optional"]) == (4, 34)
    assert received.detail["delay_s"] > 0  # the sample's records changed in March 2026
    first_bad = steps[1]
    assert first_bad.detail["index"] == 1
    assert first_bad.detail["rules"] == ["certificate code matches type", "mandatory"]
    assert "name" in (first_bad.reason or "")

    (figures,) = report
    assert (figures.system, figures.accepted, figures.rejected) == (system, 1, 3)
    assert figures.accuracy == 0.25
    assert figures.completeness == pytest.approx(4 / 34)


def test_assumed_values_are_counted_as_assumed_through_the_ingress(tmp_path: Path) -> None:
    """national's risk_warning assumes status (its push has none): on the embedded bus the
    published envelope names it in its lineage, the journal and the report count it as
    assumed, and completeness does not count it as sent."""

    system = "national"
    before = value(
        "jghub_assumed_values_total", system=system, dataset="risk_warning", field="status"
    )
    broker = bus.connect(f"sqlite:///{tmp_path / 'bus.sqlite3'}")
    topology = Topology(
        namespace=f"t{uuid.uuid4().hex[:12]}",
        targets=[Target(name="warnings", routes=["risk_warning.#"])],
    )
    broker.declare(topology)
    payload = (SAMPLES / "national/samples/risk_warning/valid-warnings.json").read_bytes()
    try:
        with Journal(tmp_path / "j.sqlite3", JournalOptions(flush_interval_s=0.01)) as journal:
            # The configured systems serve the departments the warnings name.
            directory = Directory(load_systems(SAMPLES.parents[1] / "config/systems.yaml").systems)
            ingress = Ingress(
                broker,
                {system: load_all()[system]},
                observer=Observer(journal=journal),
                directory=directory,
            )
            result = ingress.accept(system, "risk_warning", payload)
            assert (result.accepted, result.rejected, result.failed) == (2, 0, 0)
            journal.flush()
            steps = journal.trace(result.receipt_id)
            report = quality_report(journal, since=datetime.now(UTC) - timedelta(minutes=5))
        messages = drain(broker, "warnings", 2)
    finally:
        broker.close()

    assert len(messages) == 2
    for message in messages:
        envelope = Envelope.from_amqp(
            {"content_type": message.content_type, "headers": message.headers}, message.body
        )
        assert envelope.data["status"] == "1"
        assert list(envelope.assumed()) == ["status"]
        assert "carries no 预警状态" in envelope.assumed()["status"]
    received = [step for step in steps if step.step is Step.RECEIVED]
    assert [step.detail.get("assumed") for step in received] == [["status"], ["status"]]
    (figures,) = [f for f in report if f.system == system]
    assert figures.accepted == 2
    assert (figures.assumed_records, dict(figures.assumed)) == (2, {"status": 2})
    after = value(
        "jghub_assumed_values_total", system=system, dataset="risk_warning", field="status"
    )
    assert after - before == 2


def test_an_assumed_optional_field_is_not_counted_as_filled() -> None:
    record = validate(
        "grassroots_event", {**MANDATORY, "township": "古荡街道", "address": "学院路"}
    )
    sent = Envelope.wrap(record, source="330000/jczl", operation="insert", time=CHANGED)
    assumed = Envelope.wrap(
        record,
        source="330000/jczl",
        operation="insert",
        time=CHANGED,
        lineageassumed=json.dumps({"township": "the platform sends no township"}),
    )
    assert completeness(sent) == (2, 10)
    assert completeness(assumed) == (1, 10)


@pytest.mark.parametrize(("count", "offset_s"), [(3_000, 30.0), (1_000, 0.0)])
def test_the_databases_aggregates_answer_what_reading_the_journal_answers(
    store: Store, count: int, offset_s: float
) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    seeded = list(seeded_entries(count, start=start))
    with Journal(store, JournalOptions(flush_interval_s=0.01)) as journal:
        for entry in seeded:
            journal.record(**entry)
        assert journal.flush(timeout=None)
        since = start + timedelta(seconds=offset_s)  # some entries fall before the window
        until = start + timedelta(seconds=count * 0.05 - 10)  # and some after it
        for window in ({"since": since}, {"since": since, "until": until}):
            expected = quality_report(journal, **window)
            found = quality_figures(journal, **window)
            assert [_figures(q) for q in found] == [_figures(q) for q in expected]
            assert delivery_figures(journal, **window) == delivery_counts(journal, **window)
        (one,) = quality_figures(journal, since=since, system="national")
        assert _figures(one) == _figures(*quality_report(journal, since=since, system="national"))
    assert any(q.refused_records and q.refused_payloads and q.rejected for q in expected)
    assert all(q.delay_median is not None for q in expected)
    # Assumed values both in accepted records (counted) and in records the hub refused (not).
    assert all(q.assumed_records and q.assumed for q in expected)
    refused = {(e["receipt"], e["message_id"]) for e in seeded if e["step"] is Step.NOT_PUBLISHED}
    assert any(
        e["detail"].get("assumed") and (e["receipt"], e["message_id"]) in refused
        for e in seeded
        if e["step"] is Step.RECEIVED
    )
    # The cross-checks' warnings and "not checked", per rule, of accepted records only.
    assert all(q.warnings and q.unchecked for q in expected)
    assert any(
        e["detail"].get("warnings") and (e["receipt"], e["message_id"]) in refused
        for e in seeded
        if e["step"] is Step.RECEIVED
    )


def _figures(quality: SystemQuality) -> tuple[object, ...]:
    return (
        quality.system, quality.accepted, quality.rejected, quality.refused_payloads,
        quality.refused_records, dict(quality.refusals), dict(quality.rejections),
        quality.filled, quality.optional, quality.delay_median, quality.delay_p90,
        quality.assumed_records, dict(quality.assumed), dict(quality.warnings),
        dict(quality.unchecked),
    )  # fmt: skip
