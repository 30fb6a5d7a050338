"""A slow target: ingress answers 503 with Retry-After instead of buffering without bound.

`jghub serve` and `jghub worker` run as processes on RabbitMQ with a small high-water mark; the
sink answers slowly, so the target's queue grows until back-pressure refuses further pushes.
Then the sink speeds up and everything accepted must arrive, and nothing refused may.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from fault_pipeline import ECO_KEY, JSON_KEY, Pipeline, case_batch, rss_mib, tally
from prometheus_client.parser import text_string_to_metric_families
from zeep import Client, Plugin
from zeep.exceptions import Fault
from zeep.transports import Transport

from mappings import SYSTEMS_ROOT

pytestmark = [pytest.mark.rabbitmq]

MARK = 300
"""The high-water mark for the test: small, so the queue passes it within seconds."""
BATCH = 100
RSS_BOUND_MIB = 400.0
"""Generous: serve and worker each sit near 100-150 MiB; an unbounded buffer would pass this."""


def _record_ids(first: int, count: int) -> set[str]:
    return {f"F-{n:010d}" for n in range(first, first + count)}


class _Headers(Plugin):  # type: ignore[misc]
    """Keeps the HTTP headers of the last answer zeep received (Retry-After is among them)."""

    def __init__(self) -> None:
        self.last: dict[str, str] = {}

    def ingress(self, envelope: Any, http_headers: Any, operation: Any) -> tuple[Any, Any]:
        self.last = {k.lower(): v for k, v in dict(http_headers).items()}
        return envelope, http_headers


@pytest.mark.timeout(90)
def test_a_slow_target_pushes_back_as_503_and_loses_nothing(tmp_path: Path) -> None:
    settings = {
        "JGHUB_BACKPRESSURE_MAX_READY": str(MARK),
        "JGHUB_BACKPRESSURE_REFRESH_S": "0.2",
        "JGHUB_BACKPRESSURE_RETRY_AFTER_S": "2",
    }
    started = time.monotonic()
    with Pipeline(tmp_path, settings=settings) as line:
        assert line.client is not None and line.serve is not None
        line.sink.delay_s = 0.05  # about 20 deliveries a second: far slower than ingress
        worker = line.start_worker()
        accepted: set[str] = set()
        refused: set[str] = set()
        refusal: httpx.Response | None = None
        sent = 0
        peak_rss = 0.0
        first = 0
        # Push until back-pressure refuses three batches (the mark is passed within a few
        # batches; the bound on the loop only keeps a broken hub from pushing forever).
        while len(refused) < 3 * BATCH and first < 60 * BATCH:
            answer = line.push(first, BATCH)
            sent += BATCH
            if answer.status_code == 200:
                assert answer.json()["accepted"] == BATCH, answer.text
                accepted |= _record_ids(first, BATCH)
            else:
                assert answer.status_code == 503, answer.text
                refusal = answer
                refused |= _record_ids(first, BATCH)
            first += BATCH
            peak_rss = max(peak_rss, rss_mib(line.serve.pid), rss_mib(worker.pid))
            time.sleep(0.05)
        assert refusal is not None, f"no push was refused after {sent} records"
        body = refusal.json()
        assert body["type"] == "urn:jghub:problem:back-pressure" and body["status"] == 503
        assert "national" in body["detail"] and str(MARK) in body["detail"]
        assert refusal.headers["Retry-After"] == "2"

        # The SOAP channel of the same system: a Server fault over HTTP 503 with Retry-After.
        headers = _Headers()
        session = requests.Session()
        session.headers["X-Api-Key"] = ECO_KEY
        soap = Client(
            f"{line.base}/systems/eco-env-penalty/soap?wsdl",
            transport=Transport(session=session, timeout=30),
            plugins=[headers],
        )
        with pytest.raises(Fault) as fault:
            soap.service.ReceiveCaseBatch(batch=case_batch(first, BATCH))
        # SOAP 1.1 carries the subcode in the faultcode: soap:Server.BackPressure
        assert fault.value.code.endswith("Server.BackPressure"), fault.value.code
        assert "high-water mark" in fault.value.message
        assert headers.last.get("retry-after") == "2"
        refused |= _record_ids(first, BATCH)
        sent += BATCH

        # A system whose records go nowhere near the full target is not held back.
        events = SYSTEMS_ROOT / "grassroots-platform/samples/event_report/valid-events.json"
        other = line.client.post(
            "/systems/json-dept/rest/event_report",
            content=events.read_bytes(),
            headers={"X-Api-Key": JSON_KEY, "Content-Type": "application/json"},
        )
        assert other.status_code == 200, other.text

        # The target speeds up: everything accepted arrives, nothing refused ever does.
        line.sink.delay_s = 0.0
        delivered = line.sink.wait_unique(len(accepted), timeout=40)
        peak_rss = max(peak_rss, rss_mib(line.serve.pid), rss_mib(worker.pid))
        time.sleep(0.5)  # a refused record published by mistake would arrive behind the rest
        refusals = sum(
            sample.value
            for family in text_string_to_metric_families(line.client.get("/metrics").text)
            for sample in family.samples
            if sample.name == "jghub_backpressure_refused_total"
            and sample.labels == {"system": "eco-env-penalty", "target": "national"}
        )
        lost = len(accepted - line.sink.ids)
        leaked = len(refused & line.sink.ids)
        tally(
            "back-pressure",
            sent=sent,
            accepted=len(accepted),
            refused=len(refused),
            delivered=len(line.sink.ids),
            lost=lost,
            refused_but_delivered=leaked,
            duplicates=line.sink.duplicates,
            refusals_counted=int(refusals),
            peak_rss_mib=round(peak_rss),
            seconds=round(time.monotonic() - started),
        )
        assert delivered and lost == 0 and leaked == 0
        assert line.sink.ids == accepted
        assert peak_rss < RSS_BOUND_MIB
        assert refusals == len(refused) // BATCH  # each refused payload counted once
        # Drained below the mark, the hub takes pushes again.
        assert line.push_until_accepted(first + BATCH, BATCH, time.monotonic() + 20) >= 0
