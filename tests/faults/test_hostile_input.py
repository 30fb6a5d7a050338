"""A hostile-input corpus against `jghub serve` as a process: each refused, nothing published."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fault_pipeline import ECO_KEY, JSON_KEY, Pipeline, case_batch, tally

pytestmark = [pytest.mark.rabbitmq]

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
XML_PATH = "/systems/eco-env-penalty/xml/case_batch"
JSON_PATH = "/systems/json-dept/rest/event_report"
HEAD = '<?xml version="1.0" encoding="UTF-8"?>'
CF = 'xmlns:cf="http://sthjt.zj.gov.cn/schema/xzcf/2.1"'


def corpus(secret_file: Path, canary_url: str) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """name → (path, body, extra headers)."""
    xml = {"Content-Type": "application/xml"}
    laughs = "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10 if n else "lol"}">' for n in range(10))
    blowup = "x" * 100_000
    utf8_batch = case_batch(0, 1).decode("gb18030").replace('encoding="GB2312"', 'encoding="UTF-8"')
    return {
        "malformed": (XML_PATH, f"{HEAD}<cf:AJPC {CF}><cf:AJ>".encode(), xml),
        "billion laughs": (
            XML_PATH,
            f"{HEAD}<!DOCTYPE r [{laughs}]><cf:AJPC {CF}>&l9;</cf:AJPC>".encode(),
            xml,
        ),
        "quadratic blowup": (
            XML_PATH,
            f'{HEAD}<!DOCTYPE r [<!ENTITY a "{blowup}">]>'
            f"<cf:AJPC {CF}>{'&a;' * 10000}</cf:AJPC>".encode(),
            xml,
        ),
        "external entity, file": (
            XML_PATH,
            f'{HEAD}<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret_file}">]>'
            f"<cf:AJPC {CF}>&x;</cf:AJPC>".encode(),
            xml,
        ),
        "external entity, URL": (
            XML_PATH,
            f'{HEAD}<!DOCTYPE r [<!ENTITY x SYSTEM "{canary_url}">]>'
            f"<cf:AJPC {CF}>&x;</cf:AJPC>".encode(),
            xml,
        ),
        "external DTD": (
            XML_PATH,
            f'{HEAD}<!DOCTYPE r SYSTEM "{canary_url}/dtd"><cf:AJPC {CF}/>'.encode(),
            xml,
        ),
        "wrong declared encoding": (
            XML_PATH,
            f'<?xml version="1.0" encoding="x-klingon"?><cf:AJPC {CF}/>'.encode(),
            xml,
        ),
        "GBK bytes declared UTF-8": (XML_PATH, utf8_batch.encode("gb18030"), xml),
        "100 MB body": (XML_PATH, b"<a>" + b"x" * (100 * 2**20) + b"</a>", xml),
        "deeply nested JSON": (
            JSON_PATH,
            b'{"data":{"events":' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
            {"Content-Type": "application/json"},
        ),
        "SOAP with a wrong action": (
            "/systems/eco-env-penalty/soap",
            f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><x:Nope xmlns:x="urn:x"/></s:Body>'
            "</s:Envelope>".encode(),
            {"Content-Type": "text/xml", "SOAPAction": '"urn:wrong"'},
        ),
        "non-XML in an XML field": (XML_PATH, b"\x00\x01{not: xml} \xff\xfe", xml),
    }


@pytest.mark.timeout(150)
def test_every_hostile_payload_is_refused_with_a_reason_and_nothing_reaches_the_bus(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CANARY")
    touched: list[str] = []

    class Canary(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            touched.append(self.path)
            self.send_response(200)
            self.end_headers()

    canary = ThreadingHTTPServer(("127.0.0.1", 0), Canary)
    threading.Thread(target=canary.serve_forever, daemon=True).start()
    canary_url = f"http://127.0.0.1:{canary.server_address[1]}/entity"
    refused = 0
    try:
        with Pipeline(tmp_path) as line:
            assert line.client is not None
            before_mib = line.rss_mib()
            for name, (path, body, headers) in corpus(secret, canary_url).items():
                key = {"X-Api-Key": JSON_KEY if path == JSON_PATH else ECO_KEY}
                answer = line.client.post(path, content=body, headers={**headers, **key})
                text = answer.text
                assert answer.status_code in (400, 413, 500), (name, answer.status_code, text[:300])
                assert "TOP-SECRET-CANARY" not in text, name
                reason = _reason(text)
                assert reason, (name, text[:300])
                print(f"  {name}: {answer.status_code} {reason[:110]}")
                refused += 1
                assert line.client.get("/health").status_code == 200, f"down after {name}"
            growth = line.rss_mib() - before_mib
            depth = line.broker().depth("national")
            tally(
                "hostile input",
                sent=len(corpus(secret, canary_url)),
                refused=refused,
                published=depth,
                network_touched=len(touched),
                rss_growth_mib=int(growth),
            )
            assert depth == 0 and not touched
            assert growth < 200, f"serve grew {growth:.0f} MiB on hostile input"
    finally:
        canary.shutdown()


def _reason(text: str) -> str:
    """The refusal's reason from a problem document (JSON channels), a per-record receipt or a
    SOAP fault."""
    try:
        document = json.loads(text)
    except ValueError:
        return text if "faultstring" in text or "Reason" in text else ""
    if str(document.get("type", "")).startswith("urn:jghub:problem:"):
        return (
            f"{document['type']}: {document.get('detail') or ''}" if document.get("detail") else ""
        )
    return str(document.get("records") or "")
