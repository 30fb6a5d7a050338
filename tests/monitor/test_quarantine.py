"""The quarantine in the store, on SQLite and PostgreSQL: found by the id its sender was told,
bounded by size and age, settled by a release or a discard once, adopted from an old bus queue,
and seen in /metrics."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

import pytest
from monitor_support import BACKENDS, buses_for
from prometheus_client.parser import text_string_to_metric_families

from monitor.errors import InvalidRequest, NotHeld, NotInQuarantine, QuarantineFull
from monitor.journal import Journal, JournalOptions, Step
from monitor.metrics import exposition, scrape_registry
from monitor.observer import Observer
from monitor.quarantine import (
    Problem,
    Quarantine,
    QuarantineCollector,
    QuarantineLimits,
    QuarantineQuery,
    Rejection,
    State,
    discard,
    read,
)
from store import Store

FAST = JournalOptions(flush_interval_s=0.01)
PROBLEM = Problem(
    record=2,
    rule="lookup case_source",
    message="code '10' is not in table 'case_source'",
    field="case_source",
    location="records[2]",
)


def rejection(
    payload: bytes = b'{"records": [1, 2, 3]}', system: str = "agri-penalty"
) -> Rejection:
    return Rejection(
        system=system,
        message_type="case_records",
        receipt="r-1",
        kind="records-rejected",
        problems=[PROBLEM],
        rejected=1,
        payload=payload,
        content_type="application/json",
        published={0: "m-0", 1: "m-1"},
    )


def test_a_kept_payload_is_found_by_the_id_its_sender_was_given(store: Store) -> None:
    quarantine = Quarantine(store)
    kept = quarantine.keep(rejection())
    other = quarantine.keep(rejection(b"<bad", system="eco-env-penalty"))
    entry = quarantine.get(kept)
    assert (entry.system, entry.message_type, entry.receipt, entry.state) == (
        "agri-penalty", "case_records", "r-1", State.HELD,
    )  # fmt: skip
    assert entry.payload == b'{"records": [1, 2, 3]}' and entry.payload_kept
    assert entry.problems == (PROBLEM,) and entry.rejected == 1
    assert entry.reason == "record 3 at records[2]: case_source: rule 'lookup case_source': " \
        "code '10' is not in table 'case_source'"  # fmt: skip
    assert entry.published_records == {0: "m-0", 1: "m-1"}
    assert entry.text() == ('{"records": [1, 2, 3]}', None)

    assert [e.id for e in quarantine.find(QuarantineQuery(system="agri-penalty"))] == [kept]
    assert [e.id for e in quarantine.find(QuarantineQuery(reason="CASE_SOURCE"))] == [kept, other]
    assert quarantine.find(QuarantineQuery(state=State.RELEASED)) == []
    assert quarantine.find(QuarantineQuery(older_than="1h")) == []
    listed = quarantine.find(QuarantineQuery(limit=1))[0]
    assert listed.id == kept and listed.payload is None and listed.payload_kept  # no bytes listed
    with pytest.raises(NotInQuarantine, match="no entry never-given"):
        quarantine.get("never-given")
    with pytest.raises(ValueError, match="s, m, h, d or w"):
        QuarantineQuery(older_than="yesterday")


def test_the_size_limit_refuses_and_released_payloads_make_room_first(store: Store) -> None:
    quarantine = Quarantine(store, QuarantineLimits(max_bytes=100))
    first = quarantine.keep(rejection(b"x" * 60))
    with pytest.raises(QuarantineFull, match=r"holds 60 bytes .* these 50 bytes .* limit of 100"):
        quarantine.keep(rejection(b"y" * 50))
    with pytest.raises(QuarantineFull):
        quarantine.make_room(41, "agri-penalty")
    quarantine.make_room(40, "agri-penalty")  # fits: nothing changes
    # What was published must be kept: room was checked before (ingress does so).
    beyond = quarantine.keep(rejection(b"z" * 50), beyond_limit=True)
    assert quarantine.usage().bytes[State.HELD] == 110

    quarantine.claim(first)
    quarantine.settle_release(first, by="ops-li", why="fixed", published={2: "m-2"}, problems=[],
                              rejected=0)  # fmt: skip
    quarantine.discard(beyond, by="ops-li", why="test data")
    # 60 bytes of a released payload are kept until room is needed, then given up.
    assert quarantine.usage().bytes == {State.RELEASED: 60, State.DISCARDED: 0}
    third = quarantine.keep(rejection(b"w" * 90))
    assert not quarantine.get(first).payload_kept and quarantine.get(first).payload is None
    assert quarantine.get(third).payload == b"w" * 90
    usage = quarantine.usage()
    assert usage.bytes[State.HELD] == 90 and usage.limit == 100
    assert usage.entries == {State.HELD: 1, State.RELEASED: 1, State.DISCARDED: 1}


def test_settled_entries_leave_after_their_age_and_held_ones_stay_counted(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    quarantine = Quarantine(store, QuarantineLimits(max_age=timedelta(days=1)))
    held = quarantine.keep(rejection())
    released = quarantine.keep(rejection())
    discarded = quarantine.keep(rejection())
    quarantine.claim(released)
    quarantine.settle_release(released, by="ops-li", why="fixed", published={2: "m-2"},
                              problems=[], rejected=0)  # fmt: skip
    quarantine.discard(discarded, by="ops-li", why="test data")
    assert quarantine.prune() == 0 and quarantine.usage().aged == 0
    with caplog.at_level(logging.WARNING, logger="monitor.quarantine"):
        assert quarantine.prune(time.time() + 2 * 86400) == 2
    assert [e.id for e in quarantine.find(QuarantineQuery())] == [held]
    assert "1 held payload(s) older than 1 day, 0:00:00 wait for an operator" in caplog.text


def test_a_release_claims_the_entry_and_a_second_release_does_nothing(store: Store) -> None:
    quarantine = Quarantine(store)
    kept = quarantine.keep(rejection())
    claimed = quarantine.claim(kept)
    assert claimed.payload == b'{"records": [1, 2, 3]}'
    with pytest.raises(NotHeld, match="being released right now"):
        quarantine.claim(kept)
    with pytest.raises(NotHeld, match="being released right now"):
        quarantine.discard(kept, by="ops-wang", why="not needed")
    # Records still failing: held with the new reasons, the published records remembered.
    still = Problem(record=4, rule="mandatory", message="missing", field="decision_number")
    held = quarantine.settle_release(kept, by="ops-li", why="half fixed", published={2: "m-2"},
                                     problems=[still], rejected=1)  # fmt: skip
    assert held.state is State.HELD and held.problems == (still,)
    assert held.published_records == {0: "m-0", 1: "m-1", 2: "m-2"}
    assert (held.released_by, held.released_why) == ("ops-li", "half fixed")
    quarantine.claim(kept)
    done = quarantine.settle_release(kept, by="ops-li", why="fixed", published={4: "m-4"},
                                     problems=[], rejected=0)  # fmt: skip
    assert done.state is State.RELEASED and len(done.published_records) == 4
    with pytest.raises(NotHeld, match=r"was released by ops-li at .* \(fixed\); .* nothing was"):
        quarantine.claim(kept)
    with pytest.raises(NotInQuarantine):
        quarantine.claim("never-given")


def test_what_holds_no_document_cannot_be_released(store: Store) -> None:
    quarantine = Quarantine(store)
    envelope = Rejection(system="eco-env-penalty", message_type=None, receipt=None,
                         kind="soap-malformed", problems=[], payload=b"<soap:Envelope",
                         content_type="text/xml")  # fmt: skip
    kept = quarantine.keep(envelope)
    with pytest.raises(NotHeld, match="holds no document of a message type"):
        quarantine.claim(kept)
    assert quarantine.get(kept).state is State.HELD  # and it is not left claimed:
    assert quarantine.discard(kept, by="ops-li", why="read it").state is State.DISCARDED


def test_discard_keeps_a_tombstone_and_journals_who_and_why(store: Store) -> None:
    quarantine = Quarantine(store)
    kept = quarantine.keep(rejection())
    with Journal(store, FAST) as journal:
        observer = Observer(None, journal)
        with pytest.raises(InvalidRequest, match="a discard needs a reason"):
            discard(quarantine, kept, why=" ", by="ops-li", observer=observer)
        seen = read(quarantine, kept, by="ops-wang", via="cli", observer=observer)
        assert seen.payload == b'{"records": [1, 2, 3]}'
        tomb = discard(quarantine, kept, why="  the department's test data ", by="ops-li",
                       observer=observer)  # fmt: skip
        with pytest.raises(NotHeld, match="was discarded by ops-li"):
            discard(quarantine, kept, why="again, to be sure", by="ops-li", observer=observer)
        steps = journal.trace(kept)
    assert tomb.state is State.DISCARDED and tomb.payload is None and not tomb.payload_kept
    assert (tomb.discarded_by, tomb.discarded_why) == ("ops-li", "the department's test data")
    assert tomb.discarded_at is not None and tomb.problems == (PROBLEM,)  # the reasons stay
    assert [(s.step, s.detail["by"]) for s in steps] == [
        (Step.OPERATOR_READ, "ops-wang"),
        (Step.DISCARDED, "ops-li"),
    ]
    assert steps[1].reason == "the department's test data" and steps[1].system == "agri-penalty"


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_old_bus_quarantine_is_adopted_once_under_its_ids(
    store: Store, backend: str, tmp_path: Path
) -> None:
    buses = buses_for(backend, tmp_path)
    try:
        broker = buses.open(buses.topology({"national": ["penalty_case.#"]}))
        # As ingress kept them before the store: the reason, and facts in headers.
        old = broker.quarantine(
            b'{"records": [{}]}',
            "record 1 at records[0]: rule 'operation': no operation found",
            source="agri-penalty",
            headers={"system": "agri-penalty", "message_type": "case_records",
                     "receipt_id": "r-old", "kind": "records-rejected", "rejected_count": 1},
        )  # fmt: skip
        envelope = broker.quarantine(b"<soap:Envelope", "malformed", source="eco-env-penalty")
        quarantine = Quarantine(store, QuarantineLimits(max_bytes=1))  # adopted whatever the limit
        assert quarantine.adopt(broker) == 2
        assert broker.quarantined() == []
        assert quarantine.adopt(broker) == 0
    finally:
        buses.cleanup()
    taken = quarantine.get(old)
    assert (taken.system, taken.message_type, taken.receipt, taken.kind, taken.rejected) == (
        "agri-penalty", "case_records", "r-old", "records-rejected", 1,
    )  # fmt: skip
    assert taken.payload == b'{"records": [{}]}' and taken.content_type == "application/json"
    assert taken.reason == "record 1 at records[0]: rule 'operation': no operation found"
    assert taken.releasable
    soap = quarantine.get(envelope)
    assert (soap.system, soap.message_type, soap.content_type) == (
        "eco-env-penalty", None, "application/xml",
    )  # fmt: skip


def test_the_quarantine_gauges_are_scraped(store: Store) -> None:
    quarantine = Quarantine(store, QuarantineLimits(max_bytes=1000, max_age=timedelta(0)))
    quarantine.keep(rejection(b"x" * 300))
    discarded = quarantine.keep(rejection(b"y" * 200))
    quarantine.discard(discarded, by="ops-li", why="test data")
    body, _ = exposition(scrape_registry(QuarantineCollector(quarantine)))
    samples = {
        (sample.name, sample.labels.get("state")): sample.value
        for family in text_string_to_metric_families(body.decode())
        # The gauges of this store (the refusals are a counter of the whole process).
        if family.name.startswith("jghub_quarantine") and family.type == "gauge"
        for sample in family.samples
    }
    assert samples == {
        ("jghub_quarantine_entries", "held"): 1.0,
        ("jghub_quarantine_entries", "released"): 0.0,
        ("jghub_quarantine_entries", "discarded"): 1.0,
        ("jghub_quarantine_bytes", "held"): 300.0,
        ("jghub_quarantine_bytes", "released"): 0.0,
        ("jghub_quarantine_aged_entries", None): 1.0,  # max_age 0: the held one is past it
        ("jghub_quarantine_limit_bytes", None): 1000.0,
    }
