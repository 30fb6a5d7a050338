"""The store stops answering (its PostgreSQL database is gone): requests answer 503 with
Retry-After and say what and where, never 500; a delivery into the outbox waits, without
spending a retry tier, and is delivered once the store is back."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hub_harness import ECO_KEY, TEST_SYSTEMS, running_hub, sample, signed
from lxml import etree
from store_support import create_database, drop_database, fresh_store_url, require_postgresql

import bus
from adapters.egress import build_egress
from adapters.ingress import Ingress
from adapters.protocols.outbox import StoredOutbox
from bus import Delivery
from hub.systems import load_systems
from mappings import load_all
from store import Store

pytestmark = pytest.mark.postgresql


def test_requests_answer_503_with_retry_after_while_the_store_is_down(tmp_path: Path) -> None:
    require_postgresql()
    with fresh_store_url("postgresql", tmp_path) as url:
        overrides = {"database_url": url, "database_migrate": True}
        with running_hub(tmp_path, "embedded", settings_overrides=overrides) as hub:
            pull = "/systems/eco-env-penalty/outbox"
            keyed = {"X-Api-Key": ECO_KEY}
            assert hub.client.get(pull, headers=keyed).status_code == 200
            drop_database(url)
            requests = [
                ("GET", pull, {"headers": keyed}),  # the outbox
                (
                    "POST",  # the accepted changes, before anything is published
                    "/systems/eco-env-penalty/xml/case_batch",
                    {
                        "headers": keyed,
                        "content": sample("eco-env-penalty", "case_batch", "valid-batch"),
                    },
                ),
                (
                    "POST",  # the replay cache of a signed request
                    "/systems/grassroots-platform/rest/event_report",
                    {
                        "content": signed(
                            sample("grassroots-platform", "event_report", "valid-events")
                        ),
                        "headers": {"Content-Type": "application/json"},
                    },
                ),
            ]
            for method, path, arguments in requests:
                answer = hub.client.request(method, path, **arguments)
                assert answer.status_code == 503, (path, answer.text)
                assert answer.headers["Retry-After"] == "5"
                assert "postgresql" not in answer.text  # the database's address stays inside
                if "/xml/" in path:  # an XML channel refuses in XML (README "Errors")
                    refusal = etree.fromstring(answer.content)
                    assert answer.headers["content-type"] == "application/xml"
                    assert (refusal.tag, refusal.findtext("error")) == (
                        "Refusal",
                        "store-unavailable",
                    )
                    assert "send it again later" in (refusal.findtext("reason") or "")
                    continue
                assert answer.headers["content-type"] == "application/problem+json"
                body = answer.json()
                assert body["type"] == "urn:jghub:problem:store-unavailable"
                assert (body["status"], body["instance"], body["retry_after"]) == (503, path, 5)
                assert f"{method} {path}" in body["detail"]
                assert "send it again later" in body["detail"]
            assert hub.client.get("/health").status_code == 200
            create_database(url)
            Store(url).upgrade()
            # Back: the pool's dead connections are replaced before use.
            assert hub.client.get(pull, headers=keyed).status_code == 200


def test_a_delivery_into_the_outbox_waits_for_the_store_without_spending_a_tier(
    tmp_path: Path,
) -> None:
    require_postgresql()
    systems_file = tmp_path / "systems.yaml"
    # One short tier: a postponed message comes back quickly, and a second failure counted as
    # an attempt would reach the dead letters.
    systems_file.write_text(
        TEST_SYSTEMS.replace(
            'routes: ["grassroots_event.#", "complaint.#"]',
            'routes: ["grassroots_event.#", "complaint.#"]\n    retry: {tiers: [0.2]}',
        ),
        encoding="utf-8",
    )
    config = load_systems(systems_file)
    system = config.system("eco-env-penalty")
    assert system.retry.tiers == [0.2]
    topology = config.topology("outage")
    broker = bus.connect(f"sqlite:///{tmp_path / 'bus.sqlite3'}")
    broker.declare(topology)
    with fresh_store_url("postgresql", tmp_path) as url:
        store = Store.open(url, migrate=True)
        ingress = Ingress(broker, config.bind_mappings(load_all()))
        payload = sample("grassroots-platform", "event_report", "valid-events")
        published = ingress.accept("grassroots-platform", "event_report", payload).accepted
        assert published == 3
        egress = build_egress(
            system,
            None,
            data_dir=tmp_path,
            store=store,
            on_breaker_change=lambda *_: None,
            stop=threading.Event(),
        )
        drop_database(url)
        seen: list[tuple[str, int]] = []
        stop = threading.Event()

        def handle(delivery: Delivery) -> None:
            seen.append((delivery.message.id, delivery.message.attempts))
            egress.handle(delivery)
            if len(seen) >= 9:
                stop.set()

        # Three rounds of three: the store is down, each message waits in the tier and comes
        # back, its attempts unchanged.
        broker.consume(system.id, handle, stop=stop)
        assert {attempts for _, attempts in seen} == {0}
        assert len({message_id for message_id, _ in seen}) == 3
        assert broker.dead_letters(system.id) == []
        create_database(url)
        Store(url).upgrade()
        outbox = StoredOutbox(store)
        stop = threading.Event()

        def deliver(delivery: Delivery) -> None:
            egress.handle(delivery)
            if outbox.pending(system.id) == 3:
                stop.set()

        broker.consume(system.id, deliver, stop=stop)
        assert outbox.pending(system.id) == 3  # every message, once the store is back
        egress.close()
        store.close()
    broker.close()
