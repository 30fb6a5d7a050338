"""A simulated pull-only SOAP system: the city culture-and-tourism enforcement system's QueryCases.

`CaseQuerySource` serves, on loopback, the WSDL `wsdl/city-culture-enforcement.wsdl` (GET
`...?wsdl`, its address rewritten to the server's) and answers QueryCases(token, since, pageNo,
pageSize) as the department does: the cases whose UpdateTime is at or after `since`, ordered
by (UpdateTime, RecId), a page at a time, as an XML document declared GB18030 inside the
QueryCasesResult string, the whole SOAP answer encoded and declared GB18030 (QueryCasesXml
answers the same CaseList as the body's element, document/literal). Cases are grown
from the mapping's valid sample, each with its own RecId, CaseNo and UpdateTime.

For tests of what goes wrong, the next answers can be a SOAP fault (`fault_next`), late
(`delay_next`, seconds), empty (`empty_next`: no QueryCasesResult), given bytes
(`raw_next`) or a redirect to another address (`redirect_next`). It authenticates the way it
is told: the token parameter, HTTP Basic (`basic`: user, password) or a WS-Security
UsernameToken (`username_token`: user, password).
"""

from __future__ import annotations

import base64
import copy
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from lxml import etree

from mappings import SYSTEMS_ROOT
from systems import SystemConfig

WSDL = Path(__file__).parent / "wsdl" / "city-culture-enforcement.wsdl"
SAMPLE = SYSTEMS_ROOT / "city-culture-enforcement" / "samples" / "case_query" / "valid-cases.xml"
NAMESPACE = "http://whlyzf.hangzhou.example/"
PATH = "/whlyzf/CaseQuery.asmx"
SHANGHAI = ZoneInfo("Asia/Shanghai")
_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"


@dataclass(frozen=True)
class SourceCase:
    """One case the source holds: its id, change time (yyyy-MM-dd HH:mm:ss) and XML."""

    rec_id: str
    update_time: str
    xml: str


def grown_case(number: int, update_time: str, *, name: str | None = None) -> SourceCase:
    """A case of the sample's first shape with its own RecId, CaseNo and UpdateTime."""
    root = etree.fromstring(SAMPLE.read_bytes())
    case = copy.deepcopy(root.find("Case"))
    assert case is not None
    rec_id = f"HZWL-{number:06d}"
    for tag, value in (
        ("RecId", rec_id),
        ("UpdateTime", update_time),
        ("CaseNo", f"330100WL2026{number:06d}"),
    ):
        element = case.find(tag)
        assert element is not None
        element.text = value
    if name is not None:
        party = case.find("Party/Name")
        assert party is not None
        party.text = name
    case.tail = None
    return SourceCase(rec_id, update_time, etree.tostring(case, encoding="unicode"))


class CaseQuerySource:
    """The QueryCases service on loopback (see the module docstring)."""

    def __init__(
        self,
        *,
        token: str | None = "city-token",
        basic: tuple[str, str] | None = None,
        username_token: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.basic = basic
        self.username_token = username_token
        self.cases: list[SourceCase] = []
        self.calls: list[dict[str, str]] = []
        self.served: set[str] = set()
        """RecIds of the cases some answer held."""
        self.fault_next = 0
        self.delay_next = 0.0
        self.empty_next = 0
        self.raw_next: bytes | None = None
        self.redirect_next: str | None = None
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                wsdl = WSDL.read_text(encoding="utf-8").replace(
                    "http://127.0.0.1/whlyzf/CaseQuery.asmx", owner.url
                )
                self._send(200, wsdl.encode("utf-8"), "text/xml; charset=utf-8")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with owner._lock:
                    moved, owner.redirect_next = owner.redirect_next, None
                if moved is not None:
                    self.send_response(307)
                    self.send_header("Location", moved)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, answer = owner.answer(body, self.headers.get("Authorization"))
                self._send(status, answer, "text/xml; charset=GB18030")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller gave up waiting (a timeout test)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @classmethod
    def serving(cls, system: SystemConfig, *, port: int, records: int) -> CaseQuerySource:
        """The source a landscape's soap_poller channel of `system` reads, on `port`, holding
        `records` cases changed a second apart over the last day; its token is the one the
        channel sends (the variable its secret_parameters name)."""
        channel = next(c for c in system.inbound if c.adapter == "soap_poller")
        variable = channel.options.get("secret_parameters", {}).get("token")
        source = cls(token=os.environ.get(variable) if variable else None, port=port)
        source.grow(records)
        return source

    def grow(self, records: int) -> None:
        """Hold `records` more cases, changed a second apart from a day ago on, numbered after
        the cases held so far."""
        start = datetime.now(UTC).astimezone(SHANGHAI) - timedelta(days=1)
        with self._lock:
            first = len(self.cases)
        self.add(
            grown_case(n, (start + timedelta(seconds=n)).strftime("%Y-%m-%d %H:%M:%S"))
            for n in range(first, first + records)
        )

    def counts(self) -> dict[str, int]:
        """records (held), served (answered to a poller), valid and served_valid (every case
        grown from the valid sample is valid), as a demo reports a source."""
        with self._lock:
            records, served = len(self.cases), len(self.served)
        return {"records": records, "served": served, "valid": records, "served_valid": served}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{PATH}"

    @property
    def wsdl_url(self) -> str:
        return f"{self.url}?wsdl"

    def add(self, cases: Iterable[SourceCase]) -> None:
        with self._lock:
            self.cases.extend(cases)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ answering

    def answer(self, body: bytes, authorization: str | None) -> tuple[int, bytes]:
        """(HTTP status, GB18030 SOAP answer) to one call."""
        envelope = etree.fromstring(body, etree.XMLParser(resolve_entities=False))
        query = envelope.find(f"{{{_SOAP}}}Body/{{{NAMESPACE}}}QueryCases")
        as_element = query is None
        if as_element:
            query = envelope.find(f"{{{_SOAP}}}Body/{{{NAMESPACE}}}QueryCasesXml")
        if query is None:
            return 500, _fault("soap:Client", "unknown operation")
        parameters = {etree.QName(child).localname: child.text or "" for child in query}
        with self._lock:
            self.calls.append(parameters)
            faulting, self.fault_next = self.fault_next > 0, max(0, self.fault_next - 1)
            emptying, self.empty_next = self.empty_next > 0, max(0, self.empty_next - 1)
            delay, self.delay_next = self.delay_next, 0.0
            raw, self.raw_next = self.raw_next, None
            cases = sorted(self.cases, key=lambda c: (c.update_time, c.rec_id))
        if delay:
            time.sleep(delay)
        if raw is not None:
            return 200, raw
        refusal = self._refusal(envelope, parameters, authorization)
        if refusal is not None:
            return 500, _fault("soap:Client", refusal)
        if faulting:
            return 500, _fault("soap:Server", "数据库连接超时，请稍后重试")
        if emptying:
            return 200, _response(None)
        with self._lock:
            self.served.update(c.rec_id for c in _page(cases, parameters)[1])
        if as_element:
            return 200, _element_response(cases, parameters)
        return 200, _response(
            '<?xml version="1.0" encoding="GB18030"?>\n' + _case_list(cases, parameters)
        )

    def _refusal(
        self, envelope: Any, parameters: dict[str, str], authorization: str | None
    ) -> str | None:
        if self.token is not None and parameters.get("token") != self.token:
            return "token无效"
        if self.basic is not None:
            expected = "Basic " + base64.b64encode(":".join(self.basic).encode()).decode()
            if authorization != expected:
                return "HTTP Basic credentials missing or wrong"
        if self.username_token is not None:
            user = envelope.findtext(f".//{{{_WSSE}}}UsernameToken/{{{_WSSE}}}Username")
            password = envelope.findtext(f".//{{{_WSSE}}}UsernameToken/{{{_WSSE}}}Password")
            if (user, password) != self.username_token:
                return "WS-Security UsernameToken missing or wrong"
        return None


def _page(
    cases: list[SourceCase], parameters: dict[str, str]
) -> tuple[list[SourceCase], list[SourceCase], int]:
    """(the cases since `since`, the page of them asked for, its number)."""
    since = parameters.get("since", "")
    chosen = [c for c in cases if c.update_time >= since]
    number = int(parameters.get("pageNo") or 1)
    size = int(parameters.get("pageSize") or 100_000)
    return chosen, chosen[(number - 1) * size : number * size], number


def _case_list(cases: list[SourceCase], parameters: dict[str, str], xmlns: str = "") -> str:
    """The page of `cases` the query's since, pageNo and pageSize ask for, as a CaseList."""
    chosen, page, number = _page(cases, parameters)
    return (
        f'<CaseList{xmlns} total="{len(chosen)}" pageNo="{number}">\n'
        + "".join(f"  {c.xml}\n" for c in page)
        + "</CaseList>\n"
    )


def _element_response(cases: list[SourceCase], parameters: dict[str, str]) -> bytes:
    """QueryCasesXml's answer: the CaseList as the response's child, in the service namespace."""
    listing = _case_list(cases, parameters, xmlns=f' xmlns="{NAMESPACE}"')
    return _envelope(
        f'<QueryCasesXmlResponse xmlns="{NAMESPACE}">{listing}</QueryCasesXmlResponse>'
    )


def _response(document: str | None) -> bytes:
    result = "" if document is None else f"<QueryCasesResult>{escape(document)}</QueryCasesResult>"
    return _envelope(f'<QueryCasesResponse xmlns="{NAMESPACE}">{result}</QueryCasesResponse>')


def _fault(code: str, message: str) -> bytes:
    return _envelope(
        f"<soap:Fault><faultcode>{code}</faultcode><faultstring>{escape(message)}</faultstring>"
        "</soap:Fault>"
    )


def _envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="GB18030"?>'
        f'<soap:Envelope xmlns:soap="{_SOAP}"><soap:Body>{body}</soap:Body></soap:Envelope>'
    ).encode("gb18030")
