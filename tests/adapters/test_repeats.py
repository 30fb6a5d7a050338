"""A change sent again is recognised: the same key and id whenever it is read, published once.

The keys come from what the change is (dataset, record key, operation, and the source's change
time or, without one, the record's content), never from the clock: every shipped valid sample,
translated twice a day apart, gives the same keys and ids. A batch pushed twice reaches its
target once; the repeat is answered accepted with the same message ids and counted.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hub_harness import AGRI_KEY, BACKENDS, RunningHub, running_hub, sample
from prometheus_client.parser import text_string_to_metric_families

from mappings import SYSTEMS_ROOT, SystemMappings, load_all, load_system
from standard.envelope import Envelope
from standard.types import SHANGHAI

PUSH = "/systems/agri-penalty/rest/case_records"
MONDAY = datetime(2026, 12, 7, 9, 30, tzinfo=SHANGHAI)


def valid_samples() -> list[tuple[SystemMappings, str, Path, str | None]]:
    """Every shipped valid inbound sample: (folder, message type, file, declared charset)."""
    found = []
    for folder in load_all().values():
        for message_type in folder.inbound:
            for path in sorted((folder.folder / "samples" / message_type).glob("valid*")):
                expected = folder.folder / "expected" / message_type / f"{path.stem}.json"
                document = json.loads(expected.read_text(encoding="utf-8"))
                found.append(
                    (folder, message_type, path, (document.get("input") or {}).get("charset"))
                )
    return found


def test_every_valid_sample_read_a_day_apart_gives_the_same_keys_and_ids() -> None:
    compared = 0
    for folder, message_type, path, charset in valid_samples():
        payload = path.read_bytes()
        today = folder.translate(message_type, payload, charset=charset, read_at=MONDAY)
        tomorrow = folder.translate(
            message_type, payload, charset=charset, read_at=MONDAY + timedelta(days=1)
        )
        assert today.envelopes, f"{path} gives no record"
        for first, second in zip(today.envelopes, tomorrow.envelopes, strict=True):
            where = f"{path.relative_to(folder.folder)} {first.subject}"
            assert first.idempotencykey == second.idempotencykey, where
            assert first.id == second.id, where
            compared += 1
    assert compared > 100


@pytest.fixture(scope="module")
def timeless(tmp_path_factory: pytest.TempPathFactory) -> SystemMappings:
    """The grassroots platform as a system whose source gives no change time (as an unseen
    department's often does): its event_report mapping without the envelope's time."""
    folder = tmp_path_factory.mktemp("timeless") / "grassroots-platform"
    shutil.copytree(SYSTEMS_ROOT / "grassroots-platform", folder)
    mapping = folder / "event_report.yaml"
    text = mapping.read_text(encoding="utf-8")
    without = "\n".join(line for line in text.splitlines() if not line.startswith("  time:"))
    assert without != text
    mapping.write_text(without + "\n", encoding="utf-8")
    return load_system(folder)


def events(**changed: str) -> bytes:
    document = json.loads(sample("grassroots-platform", "event_report", "valid-events"))
    document["data"]["events"][0].update(changed)
    return json.dumps(document, ensure_ascii=False).encode()


def test_without_a_source_time_the_clock_moves_the_event_time_not_its_key(
    timeless: SystemMappings,
) -> None:
    today = timeless.translate("event_report", events(), read_at=MONDAY)
    tomorrow = timeless.translate("event_report", events(), read_at=MONDAY + timedelta(days=1))
    assert len(today.envelopes) == 3
    for first, second in zip(today.envelopes, tomorrow.envelopes, strict=True):
        assert first.time == MONDAY and second.time == MONDAY + timedelta(days=1)
        assert (first.idempotencykey, first.id) == (second.idempotencykey, second.id)


def test_without_a_source_time_a_changed_record_gets_a_new_key_and_id(
    timeless: SystemMappings,
) -> None:
    original = timeless.translate("event_report", events(), read_at=MONDAY)
    changed = timeless.translate(
        "event_report", events(eventTitle="违章搭建（复查）"), read_at=MONDAY
    )
    before, after = original.envelopes[0], changed.envelopes[0]
    assert before.subject == after.subject and before.data != after.data
    assert before.idempotencykey != after.idempotencykey and before.id != after.id
    # The other records did not change: their keys did not either.
    assert [e.idempotencykey for e in original.envelopes[1:]] == [
        e.idempotencykey for e in changed.envelopes[1:]
    ]


def test_an_event_keeps_the_id_its_sender_gave_it() -> None:
    event = {
        "specversion": "1.0",
        "source": "330000/nyt",
        "type": "gov.supervision.grassroots_event.v1",
        "subject": "x",
        "time": "2026-12-07T09:30:00+08:00",
        "operation": "delete",
        "data": {"event_id": "x"},
    }
    named = Envelope.from_json(json.dumps({**event, "id": "sender-event-1"}))
    derived = Envelope.from_json(json.dumps(event))
    assert named.id == "sender-event-1"
    assert derived.id != named.id and derived.id == Envelope.from_json(json.dumps(event)).id
    assert named.idempotencykey == derived.idempotencykey


def duplicates(hub: RunningHub, system: str) -> float:
    for family in text_string_to_metric_families(hub.client.get("/metrics").text):
        for metric in family.samples:
            if metric.name == "jghub_duplicates_total" and metric.labels["system"] == system:
                return metric.value
    return 0.0


def push(hub: RunningHub, body: bytes) -> dict[str, object]:
    answer = hub.client.post(
        PUSH,
        content=body,
        # agri-penalty's key counts only in its own header (README, Security).
        headers={"Authorization": f"Bearer {AGRI_KEY}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_pushed_twice_reaches_its_target_once_and_the_repeat_is_counted(
    tmp_path: Path, backend: str
) -> None:
    body = sample("agri-penalty", "case_records", "valid-records")
    with running_hub(tmp_path, backend) as hub:
        counted = duplicates(hub, "agri-penalty")
        first = push(hub, body)
        second = push(hub, body)
        assert first["accepted"] == second["accepted"] == 5
        first_records = first["records"]
        second_records = second["records"]
        assert isinstance(first_records, list) and isinstance(second_records, list)
        assert not any(record["repeat"] for record in first_records)
        assert all(record["repeat"] for record in second_records)
        assert [r["message_id"] for r in first_records] == [r["message_id"] for r in second_records]
        delivered = hub.drain("grassroots-platform", 5)
        assert sorted(m.id for m in delivered) == sorted(
            str(r["message_id"]) for r in first_records
        )
        assert hub.depth("grassroots-platform") == 0  # nothing of the second push was published
        assert duplicates(hub, "agri-penalty") - counted == 5
