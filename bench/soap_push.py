"""How much the SOAP push endpoint costs over the inbound path itself, per carrier style.

Run: ``.venv/bin/python bench/soap_push.py [--quick]``. The same generated batches (grown from
each system's samples by the simulators' traffic generator) go once straight into
``Ingress.accept`` (the reference: translation, quarantine, publish with confirms on the
embedded bus) and once through the hub's SOAP endpoint over loopback HTTP with zeep as the
client: eco-env-penalty (SOAP 1.1, base64Binary batch), market-penalty (ASMX, xmlDoc string
declared gb2312, re-encoded as GB18030) and transport-penalty (SOAP 1.2, document/literal Body
element, WS-Security UsernameToken). The figure that compares across machines is
``soap_vs_ingress``: records/s through SOAP over records/s straight into ingress, same run, same
batches. The generator's own rate (records/s grown and judged) is printed too. The last line is
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path, and bench/bus.py would shadow the
# `bus` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import bus  # noqa: E402
from hub.app import create_app, runtime_of  # noqa: E402
from hub.settings import HubSettings  # noqa: E402
from hub.simulators.clients import SystemClient  # noqa: E402
from hub.simulators.landscape import build_landscape  # noqa: E402
from hub.simulators.server import LoopbackServer, free_port  # noqa: E402
from hub.simulators.traffic import SystemTraffic, TrafficPayload  # noqa: E402
from mappings import load_all  # noqa: E402

CASES = {
    "eco-env-penalty": "case_batch",
    "market-penalty": "case_upload",
    "transport-penalty": "case_report",
}


def _rate(records: int, seconds: float) -> float:
    return records / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and smaller batches")
    args = parser.parse_args()
    batches, size = (6, 50) if args.quick else (20, 200)
    mappings = load_all()
    landscape = build_landscape(mappings)
    landscape.apply_environment()
    figures: dict[str, Any] = {"batches": batches, "batch_size": size}
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        broker = bus.connect(f"sqlite:///{data / 'bus.sqlite3'}")
        # The port is known before the hub starts: its WSDLs name their address under it.
        settings = HubSettings(
            data_dir=data, namespace="bench", max_body_bytes=64 * 1024 * 1024, port=free_port()
        )
        app = create_app(settings, systems=landscape.systems, broker=broker)
        with LoopbackServer(app, port=settings.port, name="hub") as server:
            ingress = runtime_of(app).ingress
            for system_id, message_type in CASES.items():
                system = landscape.systems.system(system_id)
                channel = next(c for c in system.inbound if c.message_type == message_type)
                traffic = SystemTraffic(mappings[system_id], message_type, seed=1)
                client = SystemClient(system, server.url, timeout=120)
                started = time.perf_counter()
                payloads: list[TrafficPayload] = []
                grown_records = 0
                while len(payloads) < batches:
                    payload = traffic.batch(size)
                    grown_records += payload.records
                    # Templates whose charset only a transport header names cannot ride SOAP.
                    if client.can_send(channel, payload):
                        payloads.append(payload)
                grown = time.perf_counter() - started
                records = sum(p.records for p in payloads)
                started = time.perf_counter()
                for payload in payloads:
                    ingress.accept(system_id, message_type, payload.body, charset=payload.charset)
                direct = time.perf_counter() - started
                client.push(channel, payloads[0])  # builds the zeep client from the WSDL
                started = time.perf_counter()
                accepted = 0
                for payload in payloads:
                    accepted += client.push(channel, payload).accepted
                over_soap = time.perf_counter() - started
                client.close()
                figures[system_id] = {
                    "records": records,
                    "accepted_over_soap": accepted,
                    "generator_records_per_s": round(_rate(grown_records, grown)),
                    "ingress_records_per_s": round(_rate(records, direct)),
                    "soap_records_per_s": round(_rate(records, over_soap)),
                    "soap_vs_ingress": round(direct / over_soap, 3) if over_soap else None,
                }
                print(
                    f"{system_id:18} {records:6} records: ingress "
                    f"{figures[system_id]['ingress_records_per_s']:7} rec/s, SOAP "
                    f"{figures[system_id]['soap_records_per_s']:7} rec/s "
                    f"(soap_vs_ingress {figures[system_id]['soap_vs_ingress']}), generator "
                    f"{figures[system_id]['generator_records_per_s']} rec/s"
                )
        broker.close()
    print(json.dumps(figures, ensure_ascii=False))
    sys.stdout.flush()
    os._exit(0)  # the zeep/requests sessions of the hub's app need no orderly teardown here


if __name__ == "__main__":
    main()
