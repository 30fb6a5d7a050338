"""A fresh `jghub serve` on the shipped configuration, as an operator first meets it: every
configured system's and target's metric series at 0, structured logs, /docs served offline, and
an OpenAPI document naming how each channel authenticates and how large a body it takes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

import httpx
import lxml.html
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serve_process import REPOSITORY, hub_environment, serve_process

from hub.settings import HubSettings
from hub.systems import SystemsConfig, load_systems

SHIPPED = REPOSITORY / "config" / "systems.yaml"


@dataclass
class FreshHub:
    """The running hub, the configuration it was started with, and its log file."""

    base: str
    config: SystemsConfig
    log: IO[bytes]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", timeout=30)


@pytest.fixture(scope="module")
def fresh_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshHub]:
    """`jghub serve` on the embedded bus and store, the shipped systems file, no secrets set
    (each such system is refused until its secret is set; the hub is ready), JSON logs."""
    data = tmp_path_factory.mktemp("fresh-hub")
    env = hub_environment(
        JGHUB_DATA_DIR=str(data / "var"),
        JGHUB_SYSTEMS_FILE=str(SHIPPED),
        JGHUB_LOG_FORMAT="json",
    )
    with (
        (data / "serve.log").open("w+b") as log,
        serve_process(env, log_level="info", log=log) as base,
    ):
        yield FreshHub(base, load_systems(SHIPPED), log)


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The scrape's jghub_ samples by name: (labels, value)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("jghub_"):
                found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_every_configured_system_and_target_has_its_series_at_zero(fresh_hub: FreshHub) -> None:
    samples = _samples(fresh_hub.get("/metrics").text)

    def zero(name: str, **labels: str) -> list[dict[str, str]]:
        matching = [
            (found, value)
            for found, value in samples.get(name, [])
            if labels.items() <= found.items()
        ]
        assert matching, f"no {name} series with {labels}"
        assert all(value == 0 for _, value in matching), (name, labels, matching)
        return [found for found, _ in matching]

    systems = fresh_hub.config.systems
    for system in systems:
        for channel in system.inbound:
            where = {"system": system.id, "message_type": channel.message_type}
            for name in (
                "jghub_payloads_received_total",
                "jghub_records_accepted_total",
                "jghub_translation_seconds_count",
            ):
                zero(name, **where)
            zero("jghub_published_total", system=system.id)
            zero("jghub_publish_failures_total", system=system.id, reason="unroutable")
        if system.auth.scheme != "internal":
            zero("jghub_unauthenticated_total", channel=system.id, reason="bad-credential")
    receiving = [system for system in systems if system.routes]
    assert len(receiving) >= 10
    for system in receiving:
        target = system.id
        delivered = zero("jghub_delivered_total", target=target)
        if system.outbound is not None:
            assert {found["dataset"] for found in delivered} >= set(system.outbound.render)
        for tier in range(len(system.retry.tiers)):
            zero("jghub_retried_total", target=target, tier=str(tier))
        for stage in ("render", "deliver"):
            for reason in ("permanent", "retries_exhausted"):
                zero("jghub_dead_lettered_total", target=target, stage=stage, reason=reason)
        zero("jghub_delivery_failures_total", target=target, kind="transient")
        zero("jghub_replayed_total", target=target)
    # `serve` runs no circuit breaker: the state is a worker's to tell.
    assert "jghub_breaker_state" not in samples


def test_every_target_label_is_a_configured_system_id(fresh_hub: FreshHub) -> None:
    """A target is named by its system's id (`eco-env-penalty`), never by the name with '_' for
    '-' its queues carry (`eco_env_penalty`)."""
    samples = _samples(fresh_hub.get("/metrics").text)
    named = {
        (name, labels["target"])
        for name, found in samples.items()
        for labels, _ in found
        if "target" in labels
    }
    receiving = {system.id for system in fresh_hub.config.systems if system.routes}
    assert {target for _, target in named} == receiving
    underscored = {system_id.replace("-", "_") for system_id in receiving} - receiving
    assert len(underscored) >= 10  # the shipped ids are hyphenated
    assert not {(name, t) for name, t in named if t in underscored}
    # The queue series, read from the broker by queue name, too.
    assert {t for name, t in named if name == "jghub_queue_messages"} == receiving


def test_json_logs_are_one_object_per_line(fresh_hub: FreshHub) -> None:
    # An access line of the hub's own uvicorn, which takes the hub's formatter too.
    assert fresh_hub.get("/nothing%0Aforged").status_code == 404
    fresh_hub.log.seek(0)
    lines = fresh_hub.log.read().decode("ascii").splitlines()
    records = [json.loads(line) for line in lines]
    assert records, "serve logged nothing at info"
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert datetime.fromisoformat(record["time"]).utcoffset() == timedelta(0)
    loggers = {record["logger"] for record in records}
    assert {"hub.app", "uvicorn.access"} <= loggers, loggers
    # The systems whose secrets are not set are named at WARNING.
    unset = [r for r in records if r["level"] == "WARNING" and "is not set" in r["message"]]
    assert len(unset) == len([s for s in fresh_hub.config.systems if s.auth.key_env])


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_pages_load_everything_from_the_hub(fresh_hub: FreshHub, page: str) -> None:
    answer = fresh_hub.get(page)
    assert answer.status_code == 200
    html = lxml.html.fromstring(answer.text)
    assets = [*html.xpath("//script/@src"), *html.xpath("//link/@href")]
    assert any(asset.endswith(".js") for asset in assets), assets
    if page == "/docs":
        assert any(asset.endswith(".css") for asset in assets), assets
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), f"{asset} is not the hub's"
        served = fresh_hub.get(asset)
        assert served.status_code == 200 and served.content, asset
    # Nothing else in the page reaches out either (no CDN or font host named anywhere).
    assert "http://" not in answer.text and "https://" not in answer.text


def _what_authenticates(scheme: dict[str, Any]) -> tuple[str, ...]:
    """A security scheme as the credential it asks a client for."""
    if scheme["type"] == "apiKey":
        return ("header", scheme["name"])
    if scheme["type"] == "http":
        return ("http", scheme["scheme"])
    return (scheme["type"],)


def test_openapi_names_each_channels_credential_and_body_limit(fresh_hub: FreshHub) -> None:
    document = fresh_hub.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    default_limit = HubSettings.model_fields["max_body_bytes"].default
    pushes = 0
    for system in fresh_hub.config.systems:
        auth = system.auth
        expected = {
            "api_key": ("http", "bearer")
            if auth.header.lower() == "authorization"
            else ("header", auth.header),
            "basic": ("http", "basic"),
            "signed_app_key": ("header", "X-Sign"),
        }.get(auth.scheme)
        limit = system.max_body_bytes or default_limit
        origin = "the system's max_body_bytes" if system.max_body_bytes else "the hub default"
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                if system.id not in operation.get("tags", []) or method != "post":
                    continue
                (requirement,) = operation["security"]
                (name,) = requirement
                assert _what_authenticates(schemes[name]) == expected, (path, name)
                if auth.scheme == "signed_app_key":
                    assert "md5(appKey + secret + requestTime)" in schemes[name]["description"]
                if path.endswith("/outbox/ack"):
                    continue
                pushes += 1
                description = operation["description"]
                assert f"Body limit: {limit} bytes ({origin}" in description, path
                (channel,) = [c for c in system.inbound if path.endswith(c.message_type)]
                assert f"at most {channel.max_records} " in description, path
    assert pushes >= 10
    assert any(system.max_body_bytes for system in fresh_hub.config.systems)  # both kinds seen
    # A system asks where its own message is with any system's credential.
    messages = document["paths"]["/messages/{message_id}"]["get"]
    assert {name for requirement in messages["security"] for name in requirement} == set(schemes)
