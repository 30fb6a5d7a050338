"""The envelope: CloudEvents structured mode, the AMQP binary binding, operations, idempotency."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sample_records import sample

from standard.datasets import DATASETS, validate
from standard.datasets.base import StandardRecord
from standard.envelope import Envelope, Operation, idempotency_key, payload_digest
from standard.errors import EnvelopeInvalid, RecordInvalid, StandardError

CHANGED = datetime(2026, 5, 13, 10, 20)  # naive: Asia/Shanghai wall time
SOURCE = "330106/scjgj"


def record(name: str = "penalty_case") -> StandardRecord:
    return validate(name, sample(name))


def wrapped(name: str = "penalty_case", **extra: Any) -> Envelope:
    values: dict[str, Any] = {"source": SOURCE, "operation": "u", "time": CHANGED} | extra
    return Envelope.wrap(record(name), **values)


def event_dict(envelope: Envelope) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(envelope.to_json())
    return loaded


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_round_trips_through_both_modes(name: str) -> None:
    envelope = wrapped(name, correlationid="batch-7", batchno="2026051300002")
    assert Envelope.from_json(envelope.to_json()) == envelope
    properties, body = envelope.to_amqp()
    assert Envelope.from_amqp(properties, body) == envelope
    assert json.loads(body) == sample(name)
    assert envelope.record() == record(name)
    assert envelope.subject == sample(name)[DATASETS[name].key_field]


def test_structured_mode_has_the_cloudevents_attributes() -> None:
    event = event_dict(wrapped(lineagesystem="hz-scjg-cf", lineagelocation="/Root/Case[1]"))
    assert event["specversion"] == "1.0"
    assert event["type"] == "gov.supervision.penalty_case.v1"
    assert event["subject"] == "CF330106202603150008"
    assert event["time"] == "2026-05-13T10:20:00+08:00"
    assert event["datacontenttype"] == "application/json"
    assert event["dataschema"] == "urn:jghub:schema:penalty_case.v1"
    assert event["operation"] == "update" and event["schemaversion"] == 1
    assert "correlationid" not in event  # absent, not null
    assert event["data"]["transfer_time"] is None  # nulls inside the record are kept
    for name in event:
        assert re.fullmatch(r"[a-z0-9]+", name), f"{name} is not a CloudEvents attribute name"


def test_amqp_binary_mode_puts_attributes_in_prefixed_headers() -> None:
    envelope = wrapped(correlationid="batch-7")
    properties, _ = envelope.to_amqp()
    assert properties["content_type"] == "application/json"
    assert properties["message_id"] == envelope.id
    assert properties["correlation_id"] == "batch-7"
    headers = properties["headers"]
    assert headers["cloudEvents_type"] == "gov.supervision.penalty_case.v1"
    assert headers["cloudEvents_idempotencykey"] == envelope.idempotencykey
    assert all(key.startswith("cloudEvents_") for key in headers)
    assert "cloudEvents_data" not in headers


def test_amqp_accepts_the_colon_prefix_bytes_and_property_objects() -> None:
    envelope = wrapped()
    properties, body = envelope.to_amqp()
    old_style = {
        key.replace("cloudEvents_", "cloudEvents:"): (v.encode() if isinstance(v, str) else v)
        for key, v in properties["headers"].items()
    }

    class ClientProperties:  # the shape of a client library's message properties
        content_type = "application/json"
        headers = old_style

    assert Envelope.from_amqp(ClientProperties(), body) == envelope


@pytest.mark.parametrize(("given", "expected"), [("i", "insert"), ("U", "update"), ("d", "delete")])
def test_operation_letters_are_accepted(given: str, expected: str) -> None:
    event = event_dict(wrapped()) | {"operation": given, "idempotencykey": None}
    if expected == "delete":
        event["data"] = {"penalty_id": event["subject"]}
    assert Envelope.from_json(json.dumps(event)).operation is Operation(expected)


def test_idempotency_key_follows_the_documented_rule() -> None:
    envelope = wrapped()
    instant = "2026-05-13T02:20:00.000000+00:00"
    text = f"gov.supervision.penalty_case.v1\nCF330106202603150008\n{instant}\nupdate"
    assert envelope.idempotencykey == hashlib.sha256(text.encode()).hexdigest()


def test_the_same_change_gets_the_same_key_and_another_change_another() -> None:
    first, again = wrapped(), wrapped()
    # One change, one event: the id follows from the key.
    assert first.id == again.id and first.idempotencykey == again.idempotencykey
    same_instant = wrapped(time=datetime(2026, 5, 13, 2, 20, tzinfo=UTC))
    assert same_instant.idempotencykey == first.idempotencykey
    assert wrapped(time=CHANGED + timedelta(seconds=1)).idempotencykey != first.idempotencykey
    assert wrapped(operation="i").idempotencykey != first.idempotencykey
    derived = event_dict(first) | {"idempotencykey": None}
    assert Envelope.from_json(json.dumps(derived)).idempotencykey == first.idempotencykey
    assert idempotency_key(first.type, first.subject, first.time, "update") == first.idempotencykey


def test_without_the_source_time_the_key_follows_the_documented_content_rule() -> None:
    read_now, read_later = CHANGED, CHANGED + timedelta(days=1)
    first = wrapped(time=read_now, time_from_source=False)
    later = wrapped(time=read_later, time_from_source=False)
    assert (first.idempotencykey, first.id) == (later.idempotencykey, later.id)
    assert first.time != later.time  # the event time is still when the hub read it
    digest = hashlib.sha256(
        json.dumps(first.data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()
    text = f"gov.supervision.penalty_case.v1\nCF330106202603150008\ncontent:{digest}\nupdate"
    assert first.idempotencykey == hashlib.sha256(text.encode()).hexdigest()
    assert first.idempotencykey != wrapped(time=read_now).idempotencykey


def test_a_delete_carries_only_the_key() -> None:
    deleted = wrapped(operation="delete")
    assert deleted.data == {"penalty_id": "CF330106202603150008"}
    assert deleted.record() is None
    by_key = Envelope.wrap_delete(
        "penalty_case", "CF330106202603150008", source=SOURCE, time=CHANGED
    )
    assert by_key.idempotencykey == deleted.idempotencykey
    assert Envelope.from_json(by_key.to_json()) == by_key
    stuffed = event_dict(deleted) | {"data": sample("penalty_case")}
    with pytest.raises(EnvelopeInvalid) as caught:
        Envelope.from_json(json.dumps(stuffed))
    assert caught.value.rules() == ["delete carries only the key"]


def test_naive_change_time_becomes_shanghai() -> None:
    assert wrapped().time.utcoffset() == timedelta(hours=8)


def test_lineage_digest_is_the_sha256_of_the_raw_payload() -> None:
    raw = "<Case><AJBH>CF330106202603150008</AJBH></Case>".encode("gb18030")
    envelope = wrapped(lineagedigest=payload_digest(raw))
    assert envelope.lineagedigest == hashlib.sha256(raw).hexdigest()
    with pytest.raises(EnvelopeInvalid):
        wrapped(lineagedigest="not-a-digest")


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"subject": "CF000"}, "subject", "subject is the key"),
        ({"type": "gov.supervision.penalty.v1"}, "type", "known type"),
        ({"schemaversion": 2}, "schemaversion", "schema version"),
        ({"batchno": "2026133000001"}, "batchno", "batch number date"),
        ({"batchno": "20260513"}, "batchno", "string pattern mismatch"),
        ({"operation": "x"}, "operation", "allowed values"),
        ({"source": ""}, "source", "not empty"),
        ({"specversion": "0.3"}, "specversion", "allowed values"),
        ({"colour": "red"}, "colour", "known field"),
        ({"time": "yesterday"}, "time", "date format"),
    ],
)
def test_a_malformed_envelope_names_attribute_and_rule(
    changes: dict[str, Any], field: str, rule: str
) -> None:
    event = event_dict(wrapped()) | changes
    with pytest.raises(EnvelopeInvalid) as caught:
        Envelope.from_json(json.dumps(event))
    found = caught.value.violations[0]
    assert (found.dataset, found.field, found.rule) == ("envelope", field, rule)


def test_an_invalid_record_is_reported_against_its_dataset() -> None:
    event = event_dict(wrapped())
    event["data"]["decision_date"] = "2026-03-01"
    with pytest.raises(RecordInvalid) as caught:
        Envelope.from_json(json.dumps(event))
    assert not isinstance(caught.value, EnvelopeInvalid)
    assert caught.value.dataset == "penalty_case"
    assert "decision not before filing" in caught.value.rules()
    assert Envelope.from_json(json.dumps(event), check_record=False).data == event["data"]


def test_garbage_is_an_envelope_error_not_a_crash() -> None:
    for text in (b"\xff\xfe", b"[1, 2]", b"{", b'"event"'):
        with pytest.raises(StandardError):
            Envelope.from_json(text)
    properties, _ = wrapped().to_amqp()
    with pytest.raises(EnvelopeInvalid):
        Envelope.from_amqp(properties, b"not json")
