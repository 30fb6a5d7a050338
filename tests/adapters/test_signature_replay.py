"""A signed app key is good for one request: two `jghub serve` processes on one data folder.

md5(appKey + secret + requestTime) covers neither the body nor a nonce, so a captured signature
could carry any body within its clock window. The serve processes share one replay cache (in the
data folder), so a signature used on one is refused on the other, with the same body or an
altered one; a fresh signature goes through; once a signature's window has passed the cache
forgets it (the clock check refuses it by then). Real processes, the real RabbitMQ.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq
from hub_harness import SECRETS, TEST_SYSTEMS, sample, signed
from serve_process import hub_environment, serve_processes
from store_support import embedded_store

import bus
from adapters.replay_cache import StoredReplayCache
from bus import Broker
from hub.systems import load_systems

WINDOW_S = 6
"""The grassroots platform's max_clock_skew_s here: short, so that the test sees it pass."""
PUSH = "/systems/grassroots-platform/rest/event_report"
JSON = {"Content-Type": "application/json"}
TARGET = "eco-env-penalty"  # grassroots events go to eco-env-penalty's outbox queue
REPLAYED = "signature already used within its window"


@dataclass
class TwoServes:
    """Two serve processes on one data folder and one namespace, and a broker to look behind."""

    first: httpx.Client
    second: httpx.Client
    data_dir: Path
    broker: Broker

    def published(self) -> int:
        return self.broker.depth(TARGET)


@pytest.fixture(scope="module")
def serves(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoServes]:
    require_rabbitmq()
    folder = tmp_path_factory.mktemp("replay")
    text = TEST_SYSTEMS.replace(
        "app_key: jczl-hub-01}", f"app_key: jczl-hub-01, max_clock_skew_s: {WINDOW_S}}}"
    )
    assert text != TEST_SYSTEMS
    systems = folder / "systems.yaml"
    systems.write_text(text, encoding="utf-8")
    namespace = f"replay{uuid.uuid4().hex[:10]}"
    env = hub_environment(
        **SECRETS,
        JGHUB_SYSTEMS_FILE=str(systems),
        JGHUB_DATA_DIR=str(folder / "var"),
        JGHUB_NAMESPACE=namespace,
        JGHUB_AMQP_URL=RABBITMQ_URL,
        # The tests push one sample under fresh signatures and count what is published: the
        # hub's recognition of records sent again is off (tests/adapters/test_repeats.py).
        JGHUB_REPEAT_WINDOW_S="0",
    )
    topology = load_systems(systems).topology(namespace)
    with (
        serve_processes(env, 2) as (first, second),
        httpx.Client(base_url=first, timeout=30) as one,
        httpx.Client(base_url=second, timeout=30) as other,
        bus.connect(RABBITMQ_URL) as broker,
    ):
        broker.declare(topology)
        try:
            yield TwoServes(one, other, folder / "var", broker)
        finally:
            broker.delete_topology(topology)


def _events() -> bytes:
    return sample("grassroots-platform", "event_report", "valid-events")


def _altered(body: bytes) -> bytes:
    """The same signature (appKey, requestTime, sign) over other data: one event dropped, one
    event's text changed."""
    document = json.loads(body)
    events = document["data"]["events"]
    events.pop()
    events[0]["eventId"] = events[0]["eventId"][:-4] + "9999"
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def test_a_signature_used_on_one_serve_is_refused_on_both_whatever_the_body(
    serves: TwoServes,
) -> None:
    before = serves.published()
    body = signed(_events())
    first = serves.first.post(PUSH, content=body, headers=JSON)
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 3

    for client, replay in (
        (serves.first, body),  # the same request again, to the same process
        (serves.second, body),  # to the other process
        (serves.second, _altered(body)),  # altered data under the captured signature
        (serves.first, _altered(body)),
    ):
        refused = client.post(PUSH, content=replay, headers=JSON)
        assert refused.status_code == 401, refused.text
        answer = refused.json()
        assert answer["type"] == "urn:jghub:problem:unauthenticated"
        assert REPLAYED in answer["detail"]
        assert "sign each request with a fresh requestTime" in answer["detail"]
    assert serves.published() == before + 3  # the first request's records, nothing more


def test_a_fresh_signature_is_accepted_on_either_serve(serves: TwoServes) -> None:
    before = serves.published()
    for client in (serves.second, serves.first, serves.second):
        answer = client.post(PUSH, content=signed(_events()), headers=JSON)
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 3
    assert serves.published() == before + 9


def test_the_cache_forgets_a_signature_once_its_window_has_passed(serves: TwoServes) -> None:
    body = signed(_events())
    assert serves.first.post(PUSH, content=body, headers=JSON).status_code == 200
    cache = StoredReplayCache(embedded_store(serves.data_dir))
    try:
        assert cache.remembered() >= 1
        time.sleep(WINDOW_S + 1.5)
        # Past its window the signature is refused by the clock check, no longer by the cache.
        late = serves.second.post(PUSH, content=body, headers=JSON)
        assert late.status_code == 401
        assert "away from the hub's clock" in late.json()["detail"]
        fresh = serves.second.post(PUSH, content=signed(_events()), headers=JSON)
        assert fresh.status_code == 200, fresh.text
        # Only the fresh signature is remembered: every older one was past its window.
        assert cache.remembered() == 1
    finally:
        cache.close()
