"""A poller in a process of its own, for the lease tests: what a worker on another host runs.

    python tests/support/lease_poller.py STORE_URL FOLDER LEASE_PERIOD_S

It pages through RECORDS records of a made-up source (PAGE_SIZE at a time) under the channel's
lease in the store, and writes each record it hands over as a line "<pid> <record>" to
FOLDER/ledger (standing in for ingress). The first process to reach page STALL_AT creates
FOLDER/stalled holding its pid and hangs in that fetch for good (its lease still renewed), as a
worker stuck on a source does, until the test kills it. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from adapters.base import AdapterContext
from adapters.protocols.poller import Page, PagedPoller, PagedPollerOptions, SourceRecord
from store import Store
from systems import SystemConfig

RECORDS = 30
PAGE_SIZE = 3
STALL_AT = 4
START = datetime(2026, 3, 1, tzinfo=UTC)
SYSTEM = "emergency-penalty"
MESSAGE_TYPE = "case_page"


class Ledger:
    """Stands in for ingress: appends what it is handed to FOLDER/ledger."""

    observer = None

    def __init__(self, folder: Path) -> None:
        self.path = folder / "ledger"

    def accept(self, system: str, message_type: str, payload: bytes) -> Any:
        lines = "".join(f"{os.getpid()} {n}\n" for n in json.loads(payload))
        with open(self.path, "a", encoding="utf-8") as ledger:
            ledger.write(lines)
        return SimpleNamespace(failed=0, payload_error=None, rejected=0, quarantine_id=None)


class LedgerPoller(PagedPoller):
    name = "ledger_poller"

    def __init__(self, options: PagedPollerOptions, context: AdapterContext) -> None:
        super().__init__(options, context)
        self.folder = context.data_dir
        self.ledger = Ledger(self.folder)
        self.pages = 0

    @property
    def ingress(self) -> Any:
        return self.ledger

    def fetch(self, since: datetime, after: Any | None) -> tuple[Page, Any]:
        self.pages += 1
        if self.pages == STALL_AT:
            try:
                marker = os.open(self.folder / "stalled", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass  # the stuck one was another process: go on
            else:
                os.write(marker, str(os.getpid()).encode())
                os.close(marker)
                threading.Event().wait()
        due = [n for n in range(RECORDS) if START + timedelta(minutes=n) >= since][:PAGE_SIZE]
        records = [SourceRecord(START + timedelta(minutes=n), str(n), n) for n in due]
        return Page(records, 1 if due and due[-1] < RECORDS - 1 else None), None

    def payload(self, document: Any, records: Any) -> bytes:
        return json.dumps([record.raw for record in records]).encode()


def main() -> None:
    url, folder, period_s = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    system = SystemConfig.model_validate(
        {
            "id": SYSTEM,
            "name_zh": "测试",
            "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"},
            "inbound": [{"adapter": "rest_poller", "message_type": MESSAGE_TYPE}],
        }
    )
    context = AdapterContext(
        system=system,
        data_dir=folder,
        channel=system.inbound[0],
        poller_lease_s=period_s,
        store=Store.open(url),
    )
    options = PagedPollerOptions(
        interval_s=3600, page_size=PAGE_SIZE, initial_since=START - timedelta(days=1)
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    LedgerPoller(options, context).run(stop)


if __name__ == "__main__":
    main()
