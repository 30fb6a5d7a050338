"""One system's payload does not stall the others: `jghub serve` on RabbitMQ, pushes over HTTP.

Issue 12, item 1: a REST payload of 30,000 empty records to agri-penalty got HTTP 500 after
32 s; a valid complaint-platform push sent 2 s later waited 30 s; with 100,000 records serve
grew by 250 MB. Here the same payloads go to a real `jghub serve` while the complaint platform
keeps pushing: every one of its pushes is answered in normal time, measured against its own
time alone in the same run. Twice: with the channel's default cap (the big payload is refused
with 413 before anything of it is translated), and with a cap raised above it (30,000 records
translated, rejected and quarantined while the other system pushes).
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_pipeline import Pipeline, rss_mib

from mappings import SYSTEMS_ROOT

pytestmark = [pytest.mark.rabbitmq]

AGRI_KEY, COMPLAINT_KEY = "isolation-agri-key", "isolation-complaint-key"
BIG_RECORDS = 30_000
GENEROUS = 50
"""A push during the big one may take this many times its time alone (two cores shared by
serve, RabbitMQ and this test; the translation holds the GIL in long stretches), or a few
seconds, whichever is more. Before the fix it took the publish timeout: 30 s."""
FEW_SECONDS = 3.0
RSS_GROWTH_MIB = 100.0
"""Refused before translation, a 100,000-record payload must not grow serve by more than this
(it grew by 250 MiB when every record was translated, answered and journalled)."""

COMPLAINT = SYSTEMS_ROOT / "complaint-platform/samples/complaint_push/valid-complaints.xml"


def _systems(max_records: int | None) -> list[dict[str, Any]]:
    channel: dict[str, Any] = {"adapter": "rest_push", "message_type": "case_records"}
    if max_records is not None:
        channel["max_records"] = max_records
    return [
        {
            "id": "agri-penalty",
            "name_zh": "省农业农村厅行政处罚系统",
            "auth": {"scheme": "api_key", "key_env": "JGHUB_ISOLATION_KEY_AGRI"},
            "inbound": [channel],
            "rate_limit": {"per_second": 1000, "burst": 1000},
        },
        {
            "id": "complaint-platform",
            "name_zh": "统一投诉举报平台",
            "auth": {"scheme": "api_key", "key_env": "JGHUB_ISOLATION_KEY_COMPLAINT"},
            "inbound": [{"adapter": "xml_push", "message_type": "complaint_push"}],
            # Its complaints need a route to be accepted; who receives them does not matter.
            "outbound": {"adapter": "outbox", "render": {"complaint": "cloudevent"}},
            "routes": ["complaint.#"],
            "rate_limit": {"per_second": 1000, "burst": 1000},
        },
    ]


def _empty_records(count: int) -> bytes:
    return ('{"batchNo": "2026021500004", "records": [' + ",".join(["{}"] * count) + "]}").encode()


class _Pushes:
    """The two systems' pushes against one running serve."""

    def __init__(self, line: Pipeline) -> None:
        self.base = line.base
        self.complaint = COMPLAINT.read_bytes()

    def small(self) -> float:
        """One valid complaint push; its seconds. It must be accepted whole."""
        started = time.perf_counter()
        answer = httpx.post(
            f"{self.base}/systems/complaint-platform/xml/complaint_push",
            content=self.complaint,
            headers={"X-Api-Key": COMPLAINT_KEY, "Content-Type": "application/xml"},
            timeout=60,
        )
        took = time.perf_counter() - started
        assert answer.status_code == 200, answer.text[:500]
        assert "<rejected>0</rejected>" in answer.text and "<failed>0</failed>" in answer.text
        return took

    def big(self, body: bytes) -> httpx.Response:
        return httpx.post(
            f"{self.base}/systems/agri-penalty/rest/case_records",
            content=body,
            headers={"X-Api-Key": AGRI_KEY, "Content-Type": "application/json"},
            timeout=120,
        )


def _during(pushes: _Pushes, body: bytes) -> tuple[httpx.Response, list[float], float]:
    """Push `body` as agri-penalty and, meanwhile, complaints one after the other: one at once,
    one 2 s later (as in the issue), and on until the big push is answered."""
    answered: list[httpx.Response] = []
    took: list[float] = []

    def push_big() -> None:
        answered.append(pushes.big(body))
        took.append(time.perf_counter() - started)

    big = threading.Thread(target=push_big)
    started = time.perf_counter()
    big.start()
    during = [pushes.small()]
    time.sleep(max(0.0, 2.0 - (time.perf_counter() - started)))
    during.append(pushes.small())
    while big.is_alive():
        during.append(pushes.small())
        time.sleep(0.2)
    big.join()
    return answered[0], during, took[0]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("max_records", [None, 50_000], ids=["default-cap", "raised-cap"])
def test_a_big_payload_of_one_system_does_not_stall_another_systems_push(
    tmp_path: Path, max_records: int | None
) -> None:
    settings = {
        "JGHUB_ISOLATION_KEY_AGRI": AGRI_KEY,
        "JGHUB_ISOLATION_KEY_COMPLAINT": COMPLAINT_KEY,
    }
    with Pipeline(tmp_path, settings=settings, extra_systems=_systems(max_records)) as line:
        assert line.serve is not None
        pushes = _Pushes(line)
        for _ in range(3):
            pushes.small()  # warm: first requests load lazily
        alone = statistics.median(pushes.small() for _ in range(7))
        answer, during, big_took = _during(pushes, _empty_records(BIG_RECORDS))
        bound = max(GENEROUS * alone, FEW_SECONDS)
        print(
            f"\nisolation {max_records or 'default'}: complaint alone {alone * 1000:.0f} ms; "
            f"during the {BIG_RECORDS}-record push ({answer.status_code} in {big_took:.2f} s): "
            f"{len(during)} pushes, median {statistics.median(during) * 1000:.0f} ms, "
            f"max {max(during) * 1000:.0f} ms"
        )
        assert all(took <= bound for took in during), (during, alone)

        found = answer.json()
        if max_records is None:
            assert answer.status_code == 413, answer.text[:500]
            assert (found["records"], found["max_records"]) == (BIG_RECORDS, 10_000)
        else:
            assert answer.status_code == 200, answer.text[:500]
            assert (found["accepted"], found["rejected"], found["failed"]) == (0, BIG_RECORDS, 0)
        # Kept whole either way, with its reason.
        kept = line.kept(found["quarantine_id"])
        assert kept.payload == _empty_records(BIG_RECORDS) and kept.reason

        if max_records is None:
            # Refused before translation, even 100,000 records leave serve's memory flat.
            before = rss_mib(line.serve.pid)
            larger = pushes.big(_empty_records(100_000))
            assert larger.status_code == 413, larger.text[:500]
            grown = rss_mib(line.serve.pid) - before
            print(f"serve RSS {before:.0f} MiB, +{grown:.0f} MiB after a 100,000-record push")
            assert grown < RSS_GROWTH_MIB
