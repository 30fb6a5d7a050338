"""The outbox sender and its HTTP face: pull under a lease, acknowledge, and what is not
acknowledged comes back (the outbox itself on each backend: tests/store/test_outbox_store.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hub_harness import BACKENDS, ECO_KEY, THROTTLED_KEY, running_hub, sample
from store_support import embedded_store

from adapters.base import AdapterContext
from adapters.errors import AdapterConfigError, TransientDeliveryError
from adapters.protocols.outbox import OutboxSender, OutboxSenderOptions, StoredOutbox
from mappings import load_system
from mappings.system import SYSTEMS_ROOT
from standard.envelope import Envelope
from store import Store
from systems import SystemConfig


def system(system_id: str = "eco-env-penalty") -> SystemConfig:
    return SystemConfig.model_validate(
        {
            "id": system_id,
            "name_zh": "测试",
            "auth": {"scheme": "api_key", "key_env": "X"},
            "outbound": {"adapter": "outbox"},
            "routes": ["#"],
        }
    )


def envelope_of_sample() -> Envelope:
    mappings = load_system(SYSTEMS_ROOT / "grassroots-platform")
    payload = sample("grassroots-platform", "event_report", "valid-events")
    return mappings.translate("event_report", payload).envelopes[0]


def test_the_sender_writes_where_another_process_reads(tmp_path: Path) -> None:
    # The worker (one process) writes; serve (another) hands out: one store between them.
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from adapters.base import AdapterContext
        from systems import SystemConfig
        from adapters.protocols.outbox import OutboxSender, OutboxSenderOptions
        from store import Store, store_url
        from mappings import load_system
        from mappings.system import SYSTEMS_ROOT
        mappings = load_system(SYSTEMS_ROOT / "grassroots-platform")
        payload = (SYSTEMS_ROOT / "grassroots-platform/samples/event_report/valid-events.json")
        for envelope in mappings.translate("event_report", payload.read_bytes()).envelopes:
            system = SystemConfig.model_validate({{"id": "eco-env-penalty", "name_zh": "t",
                "auth": {{"scheme": "api_key", "key_env": "X"}},
                "outbound": {{"adapter": "outbox"}}, "routes": ["#"]}})
            data_dir = Path({str(tmp_path)!r})
            sender = OutboxSender(OutboxSenderOptions(), AdapterContext(system=system,
                data_dir=data_dir, store=Store.open(store_url(None, data_dir))))
            sender.deliver(envelope.to_json(), content_type="application/cloudevents+json",
                idempotency_key=envelope.idempotencykey, envelope=envelope)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    lease = StoredOutbox(embedded_store(tmp_path)).pull("eco-env-penalty", limit=10, lease_s=30)
    assert len(lease.items) == 3
    for item in lease.items:
        envelope = Envelope.from_json(item.body)
        assert envelope.id == item.message_id and envelope.subject == item.subject
        assert item.dataset == "grassroots_event"


def test_the_sender_pushes_back_when_the_system_does_not_pull(tmp_path: Path) -> None:
    envelope = envelope_of_sample()
    context = AdapterContext(system=system(), data_dir=tmp_path, store=embedded_store(tmp_path))
    sender = OutboxSender(OutboxSenderOptions(max_pending=1), context)
    arguments = {"content_type": "application/json", "envelope": envelope}
    sender.deliver(b"{}", idempotency_key="k1", **arguments)
    with pytest.raises(TransientDeliveryError, match="max_pending"):
        sender.deliver(b"{}", idempotency_key="k2", **arguments)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pull_ack_and_lease_expiry_over_http(tmp_path: Path, backend: str) -> None:
    with running_hub(tmp_path, backend, settings_overrides={"outbox_lease_s": 1.0}) as hub:
        # What the worker does for an outbox target: consume, deliver into the outbox.
        envelopes = [envelope_of_sample()]
        mappings = load_system(SYSTEMS_ROOT / "eco-env-penalty")
        feedback = mappings.translate(
            "task_feedback", sample("eco-env-penalty", "task_feedback", "valid-feedback")
        ).envelopes[0]
        rendered = mappings.render("task_push", feedback)
        # The worker's sender, on the hub's store (another handle: another process's).
        context = AdapterContext(
            system=system(), data_dir=hub.settings.data_dir, store=Store(hub.runtime.store.url)
        )
        sender = OutboxSender(OutboxSenderOptions(), context)
        sender.deliver(
            envelopes[0].to_json(),
            content_type="application/cloudevents+json",
            idempotency_key=envelopes[0].idempotencykey,
            envelope=envelopes[0],
        )
        # A legacy target declares gb2312; rare characters in names need its superset GB18030.
        legacy = rendered.decode("utf-8").encode("gb18030")
        sender.deliver(
            legacy,
            content_type="application/xml; charset=gb2312",
            idempotency_key=feedback.idempotencykey,
            envelope=feedback,
        )
        pull = "/systems/eco-env-penalty/outbox"
        keyed = {"X-Api-Key": ECO_KEY}
        assert hub.client.get(pull, headers={"X-Api-Key": "wrong"}).status_code == 401
        assert hub.client.get(pull, headers={"X-Api-Key": THROTTLED_KEY}).status_code == 403
        first = hub.client.get(pull, headers=keyed, params={"limit": 10})
        assert first.status_code == 200
        lease = first.json()
        assert [m["deliveries"] for m in lease["messages"]] == [1, 1]
        event, task = lease["messages"]
        assert event["encoding"] == "text"
        assert Envelope.from_json(event["body"]).id == event["id"]
        assert task["encoding"] == "text" and task["body"] == rendered.decode("utf-8")
        assert lease["cursor"] == task["seq"]
        # Acknowledge only the event; the task comes back once the lease has expired.
        acked = hub.client.post(f"{pull}/ack", headers=keyed, json={"ids": [event["id"]]})
        assert acked.json() == {"acknowledged": 1, "pending": 1}
        assert hub.client.get(pull, headers=keyed).json()["messages"] == []
        time.sleep(1.1)
        again = hub.client.get(pull, headers=keyed).json()
        assert [(m["id"], m["deliveries"]) for m in again["messages"]] == [(task["id"], 2)]
        by_cursor = {"lease_id": again["lease_id"], "cursor": again["cursor"]}
        acked = hub.client.post(f"{pull}/ack", headers=keyed, json=by_cursor)
        assert acked.json() == {"acknowledged": 1, "pending": 0}
        bad = hub.client.post(f"{pull}/ack", headers=keyed, json={"cursor": 3})
        assert bad.status_code == 400 and "lease_id" in bad.json()["detail"]
        # Systems without an outbox have no such endpoint.
        assert hub.client.get("/systems/throttled-platform/outbox").status_code == 404


def test_the_sender_needs_the_store(tmp_path: Path) -> None:
    sender = OutboxSender(OutboxSenderOptions(), AdapterContext(system=system(), data_dir=tmp_path))
    with pytest.raises(AdapterConfigError, match="outbox of system eco-env-penalty was built "):
        sender.prepare()
