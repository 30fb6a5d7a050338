"""Authentication before reading, rate limits after it, and identities that cannot be borrowed.

Each finding of jghub issue #13 (2b, 2c, 6) has its regression test beside the test of its
legitimate twin. The hubs are real: create_app under uvicorn on loopback, on the embedded bus and
on RabbitMQ; SOAP is called with zeep where a client would call it, and hostile bodies are sent
as bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub_harness import (
    AGRI_KEY,
    BACKENDS,
    COMPLAINT_TOKEN,
    ECO_KEY,
    GRASSROOTS_SECRET,
    HOUSING_USER,
    TEST_SYSTEMS,
    THROTTLED_KEY,
    RunningHub,
    running_hub,
    sample,
    signed,
)
from lxml import etree
from soap_harness import SAMPLES, SoapHub
from zeep.exceptions import Fault
from zeep.wsse.username import UsernameToken

from adapters.security import CREDENTIAL_PREFIX_BYTES, RequestSigner
from hub.commands.serve import server_options
from hub.settings import HubSettings
from monitor import metrics

FOUR_MB = 4 * 1024 * 1024
ANONYMOUS_POSTS = 20
SLACK_BYTES = 16 * 1024  # SQLite pages touched by reads, a journal line: not a body
GRASSROOTS_PUSH = "/systems/grassroots-platform/rest/event_report"
EVENTS = sample("grassroots-platform", "event_report", "valid-events")
MARKET_PATH = "/systems/market-penalty/CaseService.asmx"
MARKET_DOCUMENT = SAMPLES / "market-penalty" / "samples" / "case_upload" / "valid-batch.xml"
TRANSPORT_CASES = SAMPLES / "transport-penalty" / "samples" / "case_report" / "valid-cases.xml"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under `folder`."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def chunks(head: bytes, size: int) -> Iterator[bytes]:
    """`head`, then filler up to `size` bytes, in 64 KiB pieces (sent chunked: no
    Content-Length helps the hub refuse it early)."""
    yield head
    left = size - len(head)
    while left > 0:
        piece = min(left, 64 * 1024)
        yield b" " * piece
        left -= piece


def refused_statuses(send: object) -> list[int]:
    """The statuses of ANONYMOUS_POSTS calls of `send`; a connection the hub closed while the
    rest of the body was still being sent counts as refused unread (0)."""
    statuses = []
    for _ in range(ANONYMOUS_POSTS):
        try:
            statuses.append(send().status_code)  # type: ignore[operator]
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            statuses.append(0)
    return statuses


def unauthenticated(channel: str, reason: str) -> float:
    """The jghub_unauthenticated_total sample for (channel, reason)."""
    value = metrics.HUB_REGISTRY.get_sample_value(
        "jghub_unauthenticated_total", {"channel": channel, "reason": reason}
    )
    return value or 0.0


# -- 2b: authenticate before reading, keep nothing of an unauthenticated body ------------------


@pytest.fixture(scope="module", params=BACKENDS)
def soap_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SoapHub, Path]]:
    folder = tmp_path_factory.mktemp(f"soap-{request.param}")
    with SoapHub.start(request.param, folder) as running:
        yield running, folder


def _market_envelope(token_part: str) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><UploadCaseXml xmlns="http://tempuri.org/">'
        f"{token_part}<xmlDoc>"
    ).encode()


def _transport_envelope(header: str) -> bytes:
    return f'<s:Envelope xmlns:s="{SOAP12}">{header}<s:Body><CaseReport>'.encode()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("system", "head", "address"),
    [
        ("market-penalty", _market_envelope(""), "127.0.0.11"),
        ("market-penalty", _market_envelope("<token>stolen</token>"), "127.0.0.12"),
        ("transport-penalty", _transport_envelope(""), "127.0.0.13"),
        ("transport-penalty", b"not even XML " * 100, "127.0.0.14"),
    ],
    ids=["token-missing", "token-wrong", "usernametoken-missing", "garbage"],
)
def test_anonymous_4mb_soap_posts_are_refused_unread_and_not_kept(
    soap_hub: tuple[SoapHub, Path], system: str, head: bytes, address: str
) -> None:
    """Each case from an address of its own (all loopback): the hub's failed-authentication
    limit (20 in a row by default) is per address, and is tested after the 20."""
    hub, folder = soap_hub
    url = hub.endpoint(system)
    before = folder_bytes(folder)
    refused_before = unauthenticated(system, "no-credential") + unauthenticated(
        system, "bad-credential"
    )
    content_type = "application/soap+xml; charset=utf-8" if "transport" in system else "text/xml"
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(timeout=60, transport=transport) as client:

        def send() -> httpx.Response:
            return client.post(
                url, content=chunks(head, FOUR_MB), headers={"Content-Type": content_type}
            )

        statuses = refused_statuses(send)
        # A SOAP 1.1 fault travels with 500; SOAP 1.2 Sender faults with 400. Never accepted.
        assert all(status in (0, 400, 500) for status in statuses), statuses
        assert folder_bytes(folder) - before < SLACK_BYTES
        refused_after = unauthenticated(system, "no-credential") + unauthenticated(
            system, "bad-credential"
        )
        assert refused_after - refused_before == ANONYMOUS_POSTS
        # The 21st failure in a row from one address is not even looked at.
        limited = client.post(url, content=head, headers={"Content-Type": content_type})
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1


def test_an_anonymous_soap_fault_says_authentication(soap_hub: tuple[SoapHub, Path]) -> None:
    hub, _ = soap_hub
    answer = httpx.post(
        hub.endpoint("market-penalty"),
        content=_market_envelope("") + b"</xmlDoc></UploadCaseXml></s:Body></s:Envelope>",
        headers={"Content-Type": "text/xml"},
    )
    assert answer.status_code == 500
    assert b"Authentication" in answer.content and b"no credential" in answer.content


def test_an_authenticated_large_soap_push_still_works(soap_hub: tuple[SoapHub, Path]) -> None:
    hub, _ = soap_hub
    client = hub.zeep_client("market-penalty")
    document = MARKET_DOCUMENT.read_bytes().decode("gb18030")
    # Past the credential bound, within the system's 200,000-byte limit.
    padded = document + " " * (CREDENTIAL_PREFIX_BYTES + 50_000)
    answer = client.service.UploadCaseXml(token=hub.keys["market-penalty"], xmlDoc=padded)
    assert "<Code>" in answer and "accepted" in answer
    assert etree.fromstring(answer.encode()).findtext("Failed") == "0"
    transport = hub.zeep_client(
        "transport-penalty", wsse=UsernameToken("jtyst-xzzf", hub.keys["transport-penalty"])
    )
    assert report_cases(transport).accepted == 4


@pytest.fixture(scope="module", params=BACKENDS)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    folder = tmp_path_factory.mktemp(f"rest-{request.param}")
    # Failed authentications are limited per address; this module's many refusals come from
    # one address, so its bucket is large here (the limit has its own tests below).
    with running_hub(
        folder,
        request.param,
        settings_overrides={"repeat_window_s": 0, "failed_auth_burst": 10_000},
    ) as running:
        yield running


@pytest.mark.slow
def test_anonymous_4mb_json_posts_are_refused_unread_and_not_kept(hub: RunningHub) -> None:
    folder = hub.settings.data_dir
    before = folder_bytes(folder)
    heads = [b'{"records": [', b'{"appKey": "jczl-hub-01", "sign": "00", "data": [']
    refused_before = unauthenticated("grassroots-platform", "no-credential")
    for head in heads:

        def send(head: bytes = head) -> httpx.Response:
            return hub.client.post(
                GRASSROOTS_PUSH,
                content=chunks(head, FOUR_MB),
                headers={"Content-Type": "application/json"},
            )

        statuses = refused_statuses(send)
        assert all(status in (0, 401) for status in statuses), sorted(set(statuses))
        assert 401 in statuses
    assert folder_bytes(folder) - before < SLACK_BYTES
    assert unauthenticated("grassroots-platform", "no-credential") > refused_before


def test_a_signed_body_is_read_from_its_first_bytes(hub: RunningHub) -> None:
    """The signature travels first (as the departments' gateways send it); the records after it
    may run far past the bound."""
    document = json.loads(EVENTS)
    body = signed(EVENTS)
    signed_fields = {key: json.loads(body)[key] for key in ("appKey", "requestTime", "sign")}
    rest = {key: value for key, value in document.items() if key not in signed_fields}
    padding = " " * (CREDENTIAL_PREFIX_BYTES * 2)
    large = (
        json.dumps(signed_fields)[:-1] + "," + padding + json.dumps(rest, ensure_ascii=False)[1:]
    ).encode()
    accepted = hub.client.post(
        GRASSROOTS_PUSH, content=large, headers={"Content-Type": "application/json"}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] == 3
    hub.drain("eco-env-penalty", 3)


def test_a_signature_past_the_bound_is_refused_and_the_headers_still_carry_it(
    hub: RunningHub,
) -> None:
    document = json.loads(EVENTS)
    late = {"padding": "x" * CREDENTIAL_PREFIX_BYTES, **document}  # appKey comes after it
    body = signed(json.dumps(late, ensure_ascii=False).encode())
    refused = hub.client.post(
        GRASSROOTS_PUSH, content=body, headers={"Content-Type": "application/json"}
    )
    assert refused.status_code == 401
    assert f"within the body's first {CREDENTIAL_PREFIX_BYTES} bytes" in refused.json()["detail"]
    headers = RequestSigner("jczl-hub-01", GRASSROOTS_SECRET).headers()
    accepted = hub.client.post(
        GRASSROOTS_PUSH, content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert accepted.status_code == 200, accepted.text
    hub.drain("eco-env-penalty", 3)


# -- 2c: rate limit after authentication; failed authentication limited per address ------------


def test_anonymous_requests_do_not_spend_a_systems_rate_limit(tmp_path: Path) -> None:
    """The issue's case: 60 anonymous requests used to empty a signing system's bucket."""
    limited = TEST_SYSTEMS.replace(
        "app_key: jczl-hub-01}\n",
        "app_key: jczl-hub-01}\n    rate_limit: {per_second: 0.01, burst: 3}\n",
    )
    assert limited != TEST_SYSTEMS
    with running_hub(
        tmp_path,
        "embedded",
        systems_text=limited,
        settings_overrides={"failed_auth_burst": 100, "repeat_window_s": 0},
    ) as running:
        for anonymous in (b"{}", b'{"appKey": "jczl-hub-01", "sign": "forged"}') * 30:
            refused = running.client.post(GRASSROOTS_PUSH, content=anonymous)
            assert refused.status_code == 401
        for _ in range(3):  # its whole burst is still there
            accepted = running.client.post(GRASSROOTS_PUSH, content=signed(EVENTS))
            assert accepted.status_code == 200, accepted.text
        # And its own requests do spend it.
        assert running.client.post(GRASSROOTS_PUSH, content=signed(EVENTS)).status_code == 429


def test_failed_authentications_are_limited_per_address(tmp_path: Path) -> None:
    with running_hub(
        tmp_path,
        "embedded",
        settings_overrides={"failed_auth_burst": 5, "failed_auth_per_second": 0.01},
    ) as limited:
        before = unauthenticated("grassroots-platform", "too-many-failures")
        push = GRASSROOTS_PUSH
        wrong = [limited.client.post(push, content=b'{"appKey": "x"}') for _ in range(5)]
        assert [answer.status_code for answer in wrong] == [401] * 5
        blocked = limited.client.post(push, content=b'{"appKey": "x"}')
        assert blocked.status_code == 429
        assert int(blocked.headers["Retry-After"]) >= 1
        assert unauthenticated("grassroots-platform", "too-many-failures") == before + 1
        # A credential in the headers is not held back by its address's failures.
        headers = RequestSigner("jczl-hub-01", GRASSROOTS_SECRET).headers()
        accepted = limited.client.post(push, content=EVENTS, headers=headers)
        assert accepted.status_code == 200, accepted.text
        # Another address has its own bucket (127.0.0.2 is loopback too on Linux).
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=limited.base_url, transport=transport) as other:
            elsewhere = other.post(push, content=b'{"appKey": "x"}')
        assert elsewhere.status_code == 401


# -- 6: identity that cannot be borrowed ------------------------------------------------------

MTLS_BEHIND_PROXY = (
    TEST_SYSTEMS
    + """\
  - id: tls-platform
    name_zh: 证书测试平台
    mapping: grassroots-platform
    auth: {scheme: mtls, client_subject: "CN=tls-platform,O=Test,C=CN"}
    inbound:
      - {adapter: rest_push, message_type: event_report}
"""
)


def test_a_proxy_subject_header_counts_only_from_the_proxys_own_address(tmp_path: Path) -> None:
    proxy = "127.0.0.2"
    settings = HubSettings(trusted_proxies=[proxy])
    push = "/systems/tls-platform/rest/event_report"
    subject = {"X-Client-Subject": "CN=tls-platform,O=Test,C=CN"}
    with running_hub(
        tmp_path,
        "embedded",
        systems_text=MTLS_BEHIND_PROXY,
        settings_overrides={"trusted_proxies": [proxy]},
        uvicorn_options=server_options(settings),
    ) as running:
        # From 127.0.0.1, claiming to be the proxy: uvicorn's default would have believed it.
        borrowed = running.client.post(
            push, content=EVENTS, headers={**subject, "X-Forwarded-For": proxy}
        )
        assert borrowed.status_code == 401
        transport = httpx.HTTPTransport(local_address=proxy)
        with httpx.Client(base_url=running.base_url, transport=transport) as from_proxy:
            accepted = from_proxy.post(push, content=EVENTS, headers=subject)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["accepted"] == 3


def report_cases(client: Any) -> Any:
    """ReportCases with the shipped valid cases (parsed anew: zeep moves the elements)."""
    cases = etree.fromstring(TRANSPORT_CASES.read_bytes())
    return client.service.ReportCases(_value_1=list(cases), _attr_1=dict(cases.attrib))


def test_a_username_token_needs_the_systems_user_name(soap_hub: tuple[SoapHub, Path]) -> None:
    hub, _ = soap_hub
    key = hub.keys["transport-penalty"]
    for user in ("someone-else", "jtyst-xzzf "):
        wrong_user = hub.zeep_client("transport-penalty", wsse=UsernameToken(user, key))
        with pytest.raises(Fault) as raised:
            report_cases(wrong_user)
        assert [str(code.localname) for code in raised.value.subcodes] == ["Authentication"]
    right = hub.zeep_client("transport-penalty", wsse=UsernameToken("jtyst-xzzf", key))
    assert report_cases(right).accepted == 4


def test_a_key_with_whitespace_around_it_is_refused(soap_hub: tuple[SoapHub, Path]) -> None:
    hub, _ = soap_hub
    client = hub.zeep_client("market-penalty")
    document = MARKET_DOCUMENT.read_bytes().decode("gb18030")
    key = hub.keys["market-penalty"]
    for padded in (f"{key} ", f" {key}", f"{key}\n"):
        with pytest.raises(Fault) as raised:
            client.service.UploadCaseXml(token=padded, xmlDoc=document)
        assert raised.value.code == "soap:Client.Authentication"
    spaced = hub.zeep_client(
        "transport-penalty", wsse=UsernameToken("jtyst-xzzf", f"{hub.keys['transport-penalty']} ")
    )
    with pytest.raises(Fault) as raised:
        report_cases(spaced)
    assert [str(code.localname) for code in raised.value.subcodes] == ["Authentication"]
    answer = client.service.UploadCaseXml(token=key, xmlDoc=document)
    assert "<Code>" in answer


def test_a_key_counts_only_in_its_systems_header(hub: RunningHub) -> None:
    push = "/ingest/complaint-platform/complaint_push"  # its key travels in X-Tsjb-Token
    body = sample("complaint-platform", "complaint_push", "valid-complaints")
    xml = {"Content-Type": "application/xml"}
    basic = httpx.BasicAuth(HOUSING_USER, COMPLAINT_TOKEN)
    for elsewhere in (
        {"X-Api-Key": COMPLAINT_TOKEN},
        {"Authorization": f"Bearer {COMPLAINT_TOKEN}"},
    ):
        refused = hub.client.post(push, content=body, headers={**xml, **elsewhere})
        assert refused.status_code == 401, elsewhere
    assert hub.client.post(push, content=body, headers=xml, auth=basic).status_code == 401
    # An X-Api-Key system's key in another system's header is no key there either.
    agri = "/systems/agri-penalty/rest/case_records"
    records = sample("agri-penalty", "case_records", "valid-records")
    refused = hub.client.post(agri, content=records, headers={"Authorization": f"Bearer {ECO_KEY}"})
    assert refused.status_code == 401
    own = hub.client.post(push, content=body, headers={**xml, "X-Tsjb-Token": COMPLAINT_TOKEN})
    assert own.status_code == 200, own.text
    bearer = hub.client.post(agri, content=records, headers={"Authorization": f"Bearer {AGRI_KEY}"})
    assert bearer.status_code == 200, bearer.text


def test_refusals_do_not_say_whose_key_it_is(hub: RunningHub) -> None:
    system_ids = [
        "grassroots-platform",
        "eco-env-penalty",
        "throttled-platform",
        "complaint-platform",
        "housing-penalty",
        "agri-penalty",
    ]
    agri = "/systems/agri-penalty/rest/case_records"
    records = sample("agri-penalty", "case_records", "valid-records")
    unknown = hub.client.post(agri, content=records, headers={"Authorization": "Bearer guess"})
    foreign = hub.client.post(
        agri, content=records, headers={"Authorization": f"Bearer {COMPLAINT_TOKEN}"}
    )
    assert unknown.status_code == foreign.status_code == 401
    assert unknown.json() == foreign.json()  # an unknown key and another system's: one answer
    other_channel = hub.client.post(
        "/systems/eco-env-penalty/xml/case_batch",
        content=b"<x/>",
        headers={"X-Api-Key": THROTTLED_KEY},
    )
    assert other_channel.status_code == 403
    outbox = hub.client.get("/systems/grassroots-platform/outbox", headers={"X-Api-Key": ECO_KEY})
    assert outbox.status_code == 403
    for answer in (unknown, foreign, other_channel, outbox):
        # A problem document's instance is the path the caller asked for, naming that channel's
        # owner, which the caller knew; the rest must not say whose the key is.
        said = answer.text.replace(f'"instance":"{answer.request.url.path}"', "")
        assert not [name for name in system_ids if name in said], answer.text
