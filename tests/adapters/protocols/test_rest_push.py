"""REST push over a real uvicorn server, on the embedded bus and on RabbitMQ."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from hub_harness import (
    AGRI_KEY,
    APP_KEY,
    BACKENDS,
    ECO_KEY,
    GRASSROOTS_SECRET,
    RunningHub,
    republishing_hub,
    sample,
    signed,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from adapters.redaction import Redaction
from adapters.security import RequestSigner
from monitor.journal import JOURNAL_ENTRY, Step
from standard.envelope import Envelope

PUSH = "/systems/grassroots-platform/rest/event_report"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module", params=BACKENDS)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    # The tests here push the shipped samples again and again; each push must be published.
    with republishing_hub(request, tmp_path_factory) as running:
        yield running


def test_a_valid_batch_is_answered_per_record_and_consumable(hub: RunningHub) -> None:
    response = hub.client.post(PUSH, content=signed(sample(*EVENTS, "valid-events")), headers=JSON)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"], answer["failed"]) == (3, 0, 0)
    assert [record["status"] for record in answer["records"]] == ["accepted"] * 3
    sent = {record["message_id"]: record for record in answer["records"]}
    messages = hub.drain("eco-env-penalty", 3)
    assert {message.id for message in messages} == set(sent)
    for message in messages:
        envelope = Envelope.from_amqp(
            {"content_type": message.content_type, "headers": message.headers}, message.body
        )
        assert envelope.subject == sent[message.id]["subject"]
        assert message.routing_key == sent[message.id]["routing_key"]
        assert envelope.correlationid == answer["receipt_id"]


def test_a_small_answer_goes_out_once_its_records_are_confirmed_and_journalled(
    hub: RunningHub,
) -> None:
    # Rendered on the event loop (ANSWERED_ON_THE_LOOP), the answer still waits for the
    # broker's confirms and the journal's commit of the payload's entries.
    response = hub.client.post(PUSH, content=signed(sample(*EVENTS, "valid-events")), headers=JSON)
    assert response.status_code == 200, response.text
    answer = response.json()
    ids = {record["message_id"] for record in answer["records"]}
    assert len(ids) == answer["accepted"] == 3
    journal = hub.runtime.journal
    assert journal is not None
    # Read from the store as it is, without Journal.trace's flush.
    entry = JOURNAL_ENTRY.c
    with journal.store.begin() as db:
        rows = db.execute(
            select(entry.message_id, entry.step).where(entry.receipt == answer["receipt_id"])
        ).all()
    steps = {(message_id, Step(step)) for message_id, step in rows}
    assert {(i, Step.RECEIVED) for i in ids} | {(i, Step.PUBLISHED) for i in ids} <= steps
    assert {message.id for message in hub.drain("eco-env-penalty", 3)} == ids


def test_an_invalid_record_is_rejected_with_field_rule_and_location(hub: RunningHub) -> None:
    payload = signed(sample(*EVENTS, "invalid-events"))
    response = hub.client.post(PUSH, content=payload, headers=JSON)
    assert response.status_code == 200, response.text
    answer = response.json()
    rejected = [record for record in answer["records"] if record["status"] == "rejected"]
    assert answer["rejected"] == len(rejected) > 0
    problem = next(e for r in rejected for e in r["errors"] if e["field"] == "reported_time")
    assert problem["rule"] == "datetime 'epoch_millis'"
    assert problem["location"] == "data.events[1]"
    assert problem["value"] == "昨天上午"
    kept = [q for q in hub.quarantined() if q.id == answer["quarantine_id"]]
    # Kept as sent but for the signature (adapters.redaction: no credential at rest).
    sign = json.loads(payload)["sign"]
    assert len(kept) == 1 and kept[0].payload == payload.replace(sign.encode(), b"***")
    assert "reported_time" in kept[0].reason
    accepted = [record["message_id"] for record in answer["records"] if record["message_id"]]
    assert [m.id for m in hub.drain("eco-env-penalty", len(accepted))] == accepted


def test_malformed_json_signed_in_its_body_cannot_be_authenticated(hub: RunningHub) -> None:
    body = signed(sample(*EVENTS, "valid-events"))[:-40]
    before = len(hub.quarantined())
    response = hub.client.post(PUSH, content=body, headers=JSON)
    # Without a readable body there is no signature: refused, and nobody's junk is kept.
    assert response.status_code == 401
    assert len(hub.quarantined()) == before


def test_malformed_json_signed_in_headers_is_a_400_with_the_reason_and_kept(
    hub: RunningHub,
) -> None:
    body = sample(*EVENTS, "valid-events")[:-40]
    response = hub.client.post(PUSH, content=body, headers={**JSON, **header_signature()})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    answer = response.json()
    assert answer["type"] == "urn:jghub:problem:payload-unreadable" and answer["instance"] == PUSH
    (error,) = answer["errors"]
    assert error["rule"] == "malformed" and error["where"].startswith("line ")
    kept = [q for q in hub.quarantined() if q.id == answer["quarantine_id"]]
    # Kept as sent but for the sample's `sign` member (adapters.redaction), broken JSON or not.
    assert len(kept) == 1 and kept[0].payload == Redaction().payload(body) != body
    assert b'"sign": "***"' in kept[0].payload


def test_a_signed_payload_the_mapping_cannot_read_is_a_400(hub: RunningHub) -> None:
    document = json.loads(signed(sample(*EVENTS, "valid-events")))
    document["data"] = {"total": 0}
    response = hub.client.post(PUSH, content=json.dumps(document).encode(), headers=JSON)
    assert response.status_code == 400
    answer = response.json()
    assert answer["errors"][0]["rule"] == "no-records"
    assert answer["quarantine_id"] and answer["receipt_id"]


def test_a_wrong_signature_is_401_and_nothing_is_published(hub: RunningHub) -> None:
    depth = hub.depth("eco-env-penalty")
    body = signed(sample(*EVENTS, "valid-events"), secret="not-the-secret")
    response = hub.client.post(PUSH, content=body, headers=JSON)
    assert response.status_code == 401
    assert response.json()["type"] == "urn:jghub:problem:unauthenticated"
    assert "sign does not match" in response.json()["detail"]
    assert hub.depth("eco-env-penalty") == depth


def test_a_stale_request_time_is_401(hub: RunningHub) -> None:
    body = signed(sample(*EVENTS, "valid-events"), at=time.time() - 3600)
    response = hub.client.post(PUSH, content=body, headers=JSON)
    assert response.status_code == 401
    assert "away from the hub's clock" in response.json()["detail"]


def test_no_credential_is_401(hub: RunningHub) -> None:
    response = hub.client.post(PUSH, content=sample(*EVENTS, "valid-events")[:0] + b"{}")
    assert response.status_code == 401
    assert "no credential" in response.json()["detail"]


def test_another_systems_channel_is_403_and_nothing_is_published(hub: RunningHub) -> None:
    depth = hub.depth("eco-env-penalty")
    body = signed(sample(*EVENTS, "valid-events"))
    response = hub.client.post(PUSH, content=body, headers={**JSON, "X-Api-Key": ECO_KEY})
    assert response.status_code == 403
    assert response.json()["type"] == "urn:jghub:problem:forbidden"
    # Whose the key is stays unsaid (tests/security/test_security_authentication.py).
    assert "not for this channel" in response.json()["detail"]
    assert "eco-env-penalty" not in response.json()["detail"]
    assert hub.depth("eco-env-penalty") == depth


def test_more_records_than_the_channel_takes_is_413_with_the_numbers_and_kept(
    hub: RunningHub,
) -> None:
    # Issue 12: 30,000 empty records (120 KB) to agri-penalty; its channel takes the default
    # 10,000. Refused whole before any record is translated or published.
    payload = json.dumps({"batchNo": "2026021500004", "records": [{}] * 30_000}).encode()
    depth = hub.depth("grassroots-platform")
    refused_before = _refused(hub, "agri-penalty", "case_records", "too-many-records")
    response = hub.client.post(
        "/systems/agri-penalty/rest/case_records",
        content=payload,
        headers={**JSON, "Authorization": f"Bearer {AGRI_KEY}"},
    )
    assert response.status_code == 413, response.text
    answer = response.json()
    assert answer["type"] == "urn:jghub:problem:too-many-records" and answer["status"] == 413
    assert (answer["records"], answer["max_records"]) == (30_000, 10_000)
    assert "30000 records, more than the 10000" in answer["detail"]
    assert "payloads of at most 10000 records" in answer["detail"]
    (kept,) = [q for q in hub.quarantined() if q.id == answer["quarantine_id"]]
    assert kept.payload == payload and "too-many-records" in kept.reason
    assert hub.depth("grassroots-platform") == depth
    # Counted and journalled like the other refused payloads.
    refused = _refused(hub, "agri-penalty", "case_records", "too-many-records")
    assert refused == refused_before + 1
    journal = hub.runtime.journal
    assert journal is not None
    (entry,) = journal.trace(answer["receipt_id"])
    assert entry.step is Step.REJECTED and entry.detail["kind"] == "too-many-records"
    assert entry.detail["quarantine_id"] == answer["quarantine_id"]


def _refused(hub: RunningHub, system: str, message_type: str, reason: str) -> float:
    """jghub_payloads_refused_total of one system, type and reason, as /metrics says now."""
    wanted = {"system": system, "message_type": message_type, "reason": reason}
    found = [
        sample.value
        for family in text_string_to_metric_families(hub.client.get("/metrics").text)
        for sample in family.samples
        if sample.name == "jghub_payloads_refused_total" and sample.labels == wanted
    ]
    return sum(found)


def header_signature() -> dict[str, str]:
    headers = RequestSigner(APP_KEY, GRASSROOTS_SECRET).headers()
    headers["X-Sign"] = headers["X-Sign"].upper()  # hex is compared whatever its case
    return headers


def test_signing_in_headers_works_as_in_the_body(hub: RunningHub) -> None:
    headers = {**JSON, **header_signature()}
    response = hub.client.post(PUSH, content=sample(*EVENTS, "valid-events"), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3
    assert len(hub.drain("eco-env-penalty", 3)) == 3


EVENTS = ("grassroots-platform", "event_report")
