"""No outbound request the configuration did not name: no redirects, WSDLs from named places only.

Every sender kind (SOAP through zeep, REST through httpx) and the REST poller talk to real
loopback servers that answer 307/302; a second server stands where the redirect points and
records whether anything reached it. The SOAP sender's WSDL tests use a WSDL whose import
points at a recording loopback URL, and a WSDL URL answering 302.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from loopback_target import TASK_WSDL, soap_body_child, soap_result
from store_support import embedded_store

from adapters.base import AdapterContext
from adapters.breaker import BreakerOptions, CircuitBreaker
from adapters.delivery import DeliveryFailed, TargetDelivery
from adapters.egress import Egress, build_egress
from adapters.errors import AdapterConfigError
from adapters.protocols.poller import SourceUnavailable
from adapters.protocols.rest_poller import RestPoller
from adapters.protocols.rest_sender import RestSender, RestSenderOptions
from adapters.protocols.soap_sender import SoapSender, SoapSenderOptions
from mappings import SYSTEMS_ROOT, load_system
from standard.envelope import Envelope
from systems import AuthConfig, ChannelConfig, SystemConfig

SYSTEM = SystemConfig(
    id="market-penalty",
    name_zh="省市场监督管理局行政处罚办案系统",
    auth=AuthConfig(scheme="api_key", key_env="JGHUB_TEST_UNUSED"),
)
TOKEN = "dept-token-4c1f9e"
TOKEN_ENV = "JGHUB_TEST_OUTBOUND_TOKEN"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Recorder:
    """A loopback HTTP server answering each path as told, recording every request it gets."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                owner.hits.append(
                    Hit(self.command, self.path, dict(self.headers), self.rfile.read(length))
                )
                status, headers, body = owner.answers.get(
                    self.path.split("?")[0], (404, {}, b"not here")
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def answer(self, path: str, status: int, body: bytes = b"", **headers: str) -> None:
        self.answers[path] = (status, {k.replace("_", "-"): v for k, v in headers.items()}, body)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def target() -> Iterator[Recorder]:
    running = Recorder()
    yield running
    running.close()


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    """Where redirects and imports point: nothing may ever reach it."""
    running = Recorder()
    running.answer("/stolen", 200, soap_result("ReceiveTask", "OK"), Content_Type="text/xml")
    running.answer("/evil.xsd", 200, b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>')
    yield running
    running.close()


@pytest.fixture(scope="module")
def case() -> tuple[Envelope, bytes]:
    system = load_system(SYSTEMS_ROOT / "eco-env-penalty")
    sample = SYSTEMS_ROOT / "eco-env-penalty/samples/case_batch/valid-batch.xml"
    envelope = system.translate("case_batch", sample.read_bytes()).envelopes[0]
    return envelope, system.render("case_return", envelope)


def soap_sender(tmp_path: Path, wsdl: str, **options: object) -> SoapSender:
    settings = {"wsdl": wsdl, "operation": "ReceiveTask", **options}
    return SoapSender(SoapSenderOptions.model_validate(settings), AdapterContext(SYSTEM, tmp_path))


def wsdl_file(folder: Path, address: str, wsdl: bytes = TASK_WSDL) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "task.wsdl"
    path.write_bytes(wsdl.replace(b"{{ADDRESS}}", address.encode()))
    return str(path)


def deliver(sender: SoapSender | RestSender, case: tuple[Envelope, bytes]) -> int:
    """Deliver as egress does (breaker, up to 3 attempts in process); the attempts made."""
    breaker = CircuitBreaker("t", BreakerOptions(), on_change=lambda *_: None)
    envelope, body = case
    return TargetDelivery(sender, attempts=3, breaker=breaker, backoff_initial_s=0.0).deliver(
        body, content_type="application/xml", idempotency_key="k", envelope=envelope
    )


# ---------------------------------------------------------------- redirects on delivery


def test_soap_sender_refuses_a_307_and_the_token_reaches_only_the_configured_address(
    tmp_path: Path,
    target: Recorder,
    elsewhere: Recorder,
    case: tuple[Envelope, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    target.answer("/soap", 307, b"", Location=elsewhere.url("/stolen"))
    sender = soap_sender(
        tmp_path, wsdl_file(tmp_path, target.url("/soap")), secret_parameters={"token": TOKEN_ENV}
    )
    for attempt in (1, 2):  # the bus's later tiers try again: each goes to the same address
        with pytest.raises(DeliveryFailed) as failed:
            deliver(sender, case)
        assert failed.value.permanent and failed.value.attempts == 1  # dead letters at once
        assert "HTTP 307" in failed.value.reason and elsewhere.url("/stolen") in failed.value.reason
        assert [h.path for h in target.hits] == ["/soap"] * attempt
    assert TOKEN.encode() in target.hits[0].body
    assert elsewhere.hits == []
    sender.close()


def test_soap_sender_twin_a_200_at_the_configured_address_is_delivered(
    tmp_path: Path, target: Recorder, case: tuple[Envelope, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    target.answer("/soap", 200, soap_result("ReceiveTask", "OK"), Content_Type="text/xml")
    sender = soap_sender(
        tmp_path, wsdl_file(tmp_path, target.url("/soap")), secret_parameters={"token": TOKEN_ENV}
    )
    assert deliver(sender, case) == 1
    assert len(target.hits) == 1
    sender.close()


@pytest.mark.parametrize("status", [302, 307, 308])
def test_rest_sender_refuses_a_redirect_and_the_key_reaches_only_the_configured_url(
    status: int,
    tmp_path: Path,
    target: Recorder,
    elsewhere: Recorder,
    case: tuple[Envelope, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    target.answer("/in", status, b"moved", Location=elsewhere.url("/stolen"))
    sender = RestSender(
        RestSenderOptions.model_validate({"url": target.url("/in"), "api_key_env": TOKEN_ENV}),
        AdapterContext(SYSTEM, tmp_path),
    )
    with pytest.raises(DeliveryFailed) as failed:
        deliver(sender, case)
    assert failed.value.permanent and failed.value.attempts == 1
    assert f"HTTP {status}" in failed.value.reason
    assert elsewhere.url("/stolen") in failed.value.reason
    assert len(target.hits) == 1 and elsewhere.hits == []
    target.answer("/in", 200, b'{"code":"0"}')  # the twin: the configured URL answering 200
    assert deliver(sender, case) == 1
    assert len(target.hits) == 2 and elsewhere.hits == []
    sender.close()


def test_rest_poller_does_not_follow_a_redirect_with_its_key(
    tmp_path: Path, target: Recorder, elsewhere: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    settings = {"url": target.url("/cases"), "api_key_env": TOKEN_ENV}
    channel = ChannelConfig(adapter="rest_poller", message_type="case_page", options=settings)
    poller = RestPoller(
        RestPoller.Options.model_validate(settings),
        AdapterContext(SYSTEM, tmp_path, channel=channel, store=embedded_store(tmp_path)),
    )
    since = datetime(2026, 1, 1, tzinfo=UTC)
    target.answer("/cases", 302, b"", Location=elsewhere.url("/stolen"))
    with pytest.raises(SourceUnavailable, match=r"HTTP 302 redirecting to .*/stolen"):
        poller.fetch(since, None)
    assert len(target.hits) == 1 and elsewhere.hits == []
    target.answer("/cases", 200, b"[]", Content_Type="application/json")  # the twin
    poller.fetch(since, None)
    assert len(target.hits) == 2 and elsewhere.hits == []
    assert target.hits[1].headers.get("X-Api-Key") == TOKEN


# ---------------------------------------------------------------- where WSDLs come from

IMPORTING_WSDL = TASK_WSDL.replace(
    b"<wsdl:types>",
    b'<wsdl:types><xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
    b'targetNamespace="urn:imported"><xs:import namespace="urn:evil" '
    b'schemaLocation="{{IMPORT}}"/></xs:schema>',
    1,
)


def test_a_wsdl_importing_a_url_is_refused_before_the_url_is_fetched(
    tmp_path: Path, target: Recorder, elsewhere: Recorder
) -> None:
    assert IMPORTING_WSDL != TASK_WSDL
    wsdl = IMPORTING_WSDL.replace(b"{{IMPORT}}", elsewhere.url("/evil.xsd").encode())
    sender = soap_sender(tmp_path, wsdl_file(tmp_path / "market", target.url("/soap"), wsdl))
    with pytest.raises(AdapterConfigError, match=r"evil\.xsd is not the configured WSDL URL"):
        sender.prepare()
    assert elsewhere.hits == []


def test_a_wsdl_importing_a_file_outside_its_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.xsd"
    outside.write_bytes(b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>')
    wsdl = IMPORTING_WSDL.replace(b"{{IMPORT}}", b"../secret.xsd")
    sender = soap_sender(tmp_path, wsdl_file(tmp_path / "market", "http://127.0.0.1:9/x", wsdl))
    with pytest.raises(AdapterConfigError, match="outside the WSDL's folder"):
        sender.prepare()


def test_twin_a_wsdl_importing_a_file_of_its_own_folder_loads(tmp_path: Path) -> None:
    folder = tmp_path / "market"
    folder.mkdir()
    (folder / "types.xsd").write_bytes(
        b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:evil"/>'
    )
    wsdl = IMPORTING_WSDL.replace(b"{{IMPORT}}", b"types.xsd")
    sender = soap_sender(tmp_path, wsdl_file(folder, "http://127.0.0.1:9/x", wsdl))
    sender.prepare()  # no error: the import was read from the WSDL's folder


def test_a_wsdl_url_answering_302_is_refused_and_the_location_not_fetched(
    tmp_path: Path, target: Recorder, elsewhere: Recorder
) -> None:
    target.answer("/Service.asmx", 302, b"", Location=elsewhere.url("/evil.xsd"))
    sender = soap_sender(tmp_path, target.url("/Service.asmx?wsdl"))
    with pytest.raises(AdapterConfigError, match=r"HTTP 302 redirecting to .*/evil\.xsd"):
        sender.prepare()
    assert [h.path for h in target.hits] == ["/Service.asmx?wsdl"] and elsewhere.hits == []


def test_twin_a_wsdl_url_answering_200_loads_and_is_called(
    tmp_path: Path, target: Recorder, case: tuple[Envelope, bytes]
) -> None:
    target.answer(
        "/Service.asmx", 200, TASK_WSDL.replace(b"{{ADDRESS}}", target.url("/soap").encode())
    )
    target.answer("/soap", 200, soap_result("ReceiveTask", "OK"), Content_Type="text/xml")
    sender = soap_sender(tmp_path, target.url("/Service.asmx?wsdl"))
    envelope, body = case
    sender.deliver(body, content_type="application/xml", idempotency_key="k", envelope=envelope)
    assert [h.path for h in target.hits] == ["/Service.asmx?wsdl", "/soap"]
    assert soap_body_child_text(target.hits[1].body) == "ReceiveTask"


def soap_body_child_text(body: bytes) -> str:
    from loopback_target import Recorded

    element = soap_body_child(Recorded("POST", "/soap", {}, body, 0.0))
    return element.tag.rsplit("}", 1)[-1]


SHIPPED_WSDLS = sorted(
    [*REPO.glob("adapters/wsdl/*.wsdl"), *REPO.glob("hub/simulators/wsdl/*.wsdl")]
)


@pytest.mark.parametrize("wsdl", SHIPPED_WSDLS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_the_shipped_wsdls_still_load(wsdl: Path, tmp_path: Path) -> None:
    from lxml import etree

    operation = etree.parse(str(wsdl)).find(
        ".//{http://schemas.xmlsoap.org/wsdl/}portType/{http://schemas.xmlsoap.org/wsdl/}operation"
    )
    assert operation is not None
    sender = soap_sender(tmp_path, str(wsdl), operation=operation.get("name"))
    sender.prepare()


def soap_target_egress(tmp_path: Path, wsdl: str) -> Egress:
    """What the worker builds at start for a SOAP target whose WSDL is at `wsdl`."""
    system = SystemConfig.model_validate(
        {
            "id": "market-penalty",
            "name_zh": "省市场监督管理局行政处罚办案系统",
            "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"},
            "outbound": {
                "adapter": "soap_sender",
                "render": {"grassroots_event": "cloudevent"},
                "options": {"wsdl": wsdl, "operation": "ReceiveTask"},
            },
            "routes": ["grassroots_event.#"],
        }
    )
    return build_egress(
        system, None, data_dir=tmp_path, on_breaker_change=lambda *_: None, stop=threading.Event()
    )


def test_the_worker_does_not_start_with_a_wsdl_url_that_redirects(
    tmp_path: Path, target: Recorder, elsewhere: Recorder
) -> None:
    target.answer("/Service.asmx", 302, b"", Location=elsewhere.url("/evil.xsd"))
    with pytest.raises(AdapterConfigError, match=r"soap_sender of market-penalty: .*HTTP 302"):
        soap_target_egress(tmp_path, target.url("/Service.asmx?wsdl"))
    assert elsewhere.hits == []


def test_twin_a_wsdl_url_down_at_start_does_not_stop_the_worker(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    soap_target_egress(tmp_path, f"http://127.0.0.1:{port}/Service.asmx?wsdl").close()
