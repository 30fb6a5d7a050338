"""Who may push: body limits before parsing, rate limits, signed app keys, mTLS subjects."""

from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from hub_harness import (
    AGRI_KEY,
    APP_KEY,
    BACKENDS,
    GRASSROOTS_SECRET,
    TEST_SYSTEMS,
    THROTTLED_KEY,
    RunningHub,
    request_time,
    running_hub,
    sample,
)
from lxml import etree
from store_support import embedded_store
from zeep.wsse.username import UsernameToken

from adapters.credentials import WSSE, envelope_credentials, signed_fields
from adapters.errors import AdapterConfigError, Unauthenticated
from adapters.replay_cache import StoredReplayCache
from adapters.security import (
    Gatekeeper,
    TokenBucket,
    expected_sign,
    format_subject,
    parse_request_time,
    subject_attributes,
)
from hub.commands.serve import server_options
from hub.settings import HubSettings
from systems import AuthConfig, SystemConfig

THROTTLED = "/systems/throttled-platform/rest/event_report"
KEYED = {"X-Api-Key": THROTTLED_KEY, "Content-Type": "application/json"}


@pytest.fixture(params=BACKENDS)
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningHub]:
    with running_hub(tmp_path, request.param) as running:
        yield running


# -- over HTTP, on both buses ------------------------------------------------------------------


def test_a_declared_oversized_body_is_413_before_it_is_read(hub: RunningHub) -> None:
    # Announce 50 MB and send one byte: the answer comes at once, so nothing waited for, read
    # or parsed the body.
    where = urlsplit(hub.base_url)
    with socket.create_connection((where.hostname, where.port), timeout=5) as conn:
        conn.sendall(
            (
                f"POST {THROTTLED} HTTP/1.1\r\nHost: hub\r\nX-Api-Key: {THROTTLED_KEY}\r\n"
                "Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{"
            ).encode()
        )
        received = b""
        while b"its limit" not in received:
            chunk = conn.recv(4096)
            if not chunk:
                break
            received += chunk
    answer = received.decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "its limit is 2048 bytes" in answer
    assert hub.quarantined() == []


def test_a_streamed_body_is_cut_off_at_the_limit(hub: RunningHub) -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            sent.append(1024)
            yield b" " * 1024

    # No Content-Length (chunked): the limit is enforced while counting the bytes.
    response = hub.client.post(THROTTLED, content=chunks(), headers=KEYED)
    assert response.status_code == 413
    assert "while being received" in response.json()["detail"]
    assert hub.quarantined() == []


def test_the_rate_limit_answers_429_with_retry_after(hub: RunningHub) -> None:
    statuses = [hub.client.post(THROTTLED, content=b"{}", headers=KEYED) for _ in range(4)]
    assert [r.status_code for r in statuses[:3]] == [400, 400, 400]  # burst 3, then empty
    refused = statuses[3]
    assert refused.status_code == 429
    assert refused.json()["type"] == "urn:jghub:problem:rate-limited"
    # per_second 0.05: the next token is 20 s away (less the time the first calls took).
    assert 15 <= int(refused.headers["Retry-After"]) <= 20


def test_the_rate_limit_is_per_system(hub: RunningHub) -> None:
    for _ in range(4):
        hub.client.post(THROTTLED, content=b"{}", headers=KEYED)
    stamp = request_time()
    other = hub.client.post(
        "/systems/grassroots-platform/rest/event_report",
        content=sample("grassroots-platform", "event_report", "valid-events"),
        headers={
            "Content-Type": "application/json",
            "X-App-Key": APP_KEY,
            "X-Request-Time": stamp,
            "X-Sign": expected_sign(APP_KEY, GRASSROOTS_SECRET, stamp),
        },
    )
    assert other.status_code == 200


def test_message_traces_identify_the_caller_within_its_rate_limit(hub: RunningHub) -> None:
    # GET /messages/{id} is nobody's channel: Gatekeeper.identify names the caller from its
    # header credential and spends that system's tokens, like a push would.
    mine = {"X-Api-Key": THROTTLED_KEY}
    answers = [hub.client.get("/messages/no-such-message", headers=mine) for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [404, 404, 404]  # burst 3, then empty
    assert answers[3].status_code == 429 and int(answers[3].headers["Retry-After"]) >= 1
    anonymous = hub.client.get("/messages/no-such-message")
    assert anonymous.status_code == 401 and "X-Api-Key" in anonymous.json()["detail"]
    unknown = hub.client.get("/messages/no-such-message", headers={"X-Api-Key": "nobody's"})
    assert unknown.status_code == 401


def test_a_bearer_key_in_authorization(hub: RunningHub) -> None:
    push = "/systems/agri-penalty/rest/case_records"
    body = sample("agri-penalty", "case_records", "valid-records")
    bearer = {"Authorization": f"Bearer {AGRI_KEY}", "Content-Type": "application/json"}
    response = hub.client.post(push, content=body, headers=bearer)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 5
    assert len(hub.drain("grassroots-platform", 5)) == 5
    # A key is accepted only in the header its system is configured with (changed on purpose:
    # X-Api-Key used to take every api_key system's key; tests/security covers the rule).
    assert hub.client.post(push, content=body, headers={"X-Api-Key": AGRI_KEY}).status_code == 401
    wrong = hub.client.post(push, content=body, headers={"Authorization": "Bearer guessed"})
    assert wrong.status_code == 401
    assert "Authorization header matches no configured system" in wrong.json()["detail"]
    elsewhere = hub.client.post(THROTTLED, content=b"{}", headers=bearer)
    assert elsewhere.status_code == 403


def test_a_key_in_authorization_without_bearer_gets_a_hint(hub: RunningHub) -> None:
    push = "/systems/agri-penalty/rest/case_records"
    body = sample("agri-penalty", "case_records", "valid-records")
    for value in (AGRI_KEY, f"Token {AGRI_KEY}"):
        refused = hub.client.post(
            push, content=body, headers={"Authorization": value, "Content-Type": "application/json"}
        )
        assert refused.status_code == 401
        reason = refused.json()["detail"]
        assert "Authorization: Bearer <key>" in reason, reason
        assert AGRI_KEY not in reason  # the hint never repeats what may be a key
    assert hub.depth("grassroots-platform") == 0


# -- the gatekeeper's parts -------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() == 0.0
    clock.now += 100  # never more than the burst
    assert [bucket.take() == 0.0 for _ in range(4)] == [True, True, True, False]


def signed_system(skew: int = 300) -> SystemConfig:
    return SystemConfig(
        id="gateway",
        name_zh="网关",
        auth=AuthConfig(
            scheme="signed_app_key",
            key_env="JGHUB_TEST_GATEWAY",
            app_key="gw",
            max_clock_skew_s=skew,
        ),
    )


def test_a_missing_secret_fails_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JGHUB_TEST_GATEWAY", raising=False)
    with pytest.raises(AdapterConfigError, match="JGHUB_TEST_GATEWAY is not set"):
        Gatekeeper([signed_system()], default_max_body_bytes=1024)


def test_a_gatekeeper_for_signing_systems_needs_a_replay_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JGHUB_TEST_GATEWAY", "s3cret")
    with pytest.raises(AdapterConfigError, match=r"systems gateway sign .* replay cache"):
        Gatekeeper([signed_system()], default_max_body_bytes=1024)


def test_without_required_secrets_the_system_is_listed_and_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JGHUB_TEST_UNSET", raising=False)
    gate = Gatekeeper([signed_system()], default_max_body_bytes=1024, require_secrets=False)
    assert "JGHUB_TEST_GATEWAY is not set" in gate.missing_secrets["gateway"]
    unset = TEST_SYSTEMS.replace("JGHUB_TEST_KEY_THROTTLED", "JGHUB_TEST_UNSET")
    with running_hub(tmp_path, "embedded", systems_text=unset, monkeypatch=monkeypatch) as hub:
        ready = hub.client.get("/ready").json()
        assert ready["ready"] is True
        assert ready["warnings"] == [
            "system throttled-platform: environment variable JGHUB_TEST_UNSET is not set or "
            "empty; it must hold the API key of this system"
        ]
        refused = hub.client.post(THROTTLED, content=b"{}", headers={"X-Api-Key": ""})
        assert refused.status_code == 401
        assert "no credential configured for system throttled-platform" in refused.text
        assert "JGHUB_TEST_UNSET" not in refused.text  # the outside learns no variable names


def test_signature_checks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JGHUB_TEST_GATEWAY", "s3cret")
    clock = FakeClock(parse_request_time("20260301100000"))
    replays = StoredReplayCache(embedded_store(tmp_path), clock=clock)
    gate = Gatekeeper([signed_system()], default_max_body_bytes=1024, replays=replays, clock=clock)
    sign = hashlib.md5(b"gws3cret20260301100000").hexdigest()
    assert gate.verify_signature("gw", "20260301100000", sign, where="body") == "gateway"
    # Epoch milliseconds name the same instant.
    millis = str(int(clock.now * 1000))
    assert gate.verify_signature("gw", millis, expected_sign("gw", "s3cret", millis), where="body")
    # Each signature once; the same one in capitals is the same signature.
    with pytest.raises(Unauthenticated, match="signed app key in the headers: signature already"):
        gate.verify_signature("gw", "20260301100000", sign.upper(), where="headers")
    with pytest.raises(Unauthenticated, match="does not match"):
        gate.verify_signature("gw", "20260301100000", sign[:-1] + "0", where="body")
    with pytest.raises(Unauthenticated, match="belongs to no configured system"):
        gate.verify_signature("other", "20260301100000", sign, where="body")
    with pytest.raises(Unauthenticated, match="sign missing"):
        gate.verify_signature("gw", "20260301100000", None, where="body")
    with pytest.raises(Unauthenticated, match="neither yyyyMMddHHmmss"):
        gate.verify_signature("gw", "2026-03-01", sign, where="body")
    clock.now += 301
    with pytest.raises(Unauthenticated, match="301 s away"):
        gate.verify_signature("gw", "20260301100000", sign, where="body")


def _envelope(token: UsernameToken) -> etree._Element:
    """A SOAP envelope with the wsse:Security header block zeep, a real SOAP client, writes."""
    envelope = etree.fromstring(
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>'
    )
    token.apply(envelope, {})
    return envelope


def _password(envelope: etree._Element) -> str | None:
    return envelope_credentials(etree.tostring(envelope), ()).password


def test_a_username_token_password_is_read_as_text_and_a_digest_is_refused() -> None:
    first = envelope_credentials(etree.tostring(_envelope(UsernameToken("jt", "k-1"))), ())
    assert (first.username, first.password) == ("jt", "k-1")
    no_type = _envelope(UsernameToken("jt", "k-2"))
    for password in no_type.iter(f"{{{WSSE}}}Password"):
        del password.attrib["Type"]
    assert _password(no_type) == "k-2"  # PasswordText is the default type
    assert _password(_envelope(UsernameToken("jt"))) is None
    with pytest.raises(Unauthenticated, match="PasswordDigest"):
        _password(_envelope(UsernameToken("jt", "k-3", use_digest=True)))


def test_request_time_is_shanghai_time() -> None:
    assert parse_request_time("19700101080000") == 0.0
    assert parse_request_time("1772418600000") == 1772418600.0


def test_subjects_compare_by_attributes_in_any_order() -> None:
    peer = ((("countryName", "CN"),), (("organizationName", "Test"),), (("commonName", "a"),))
    assert subject_attributes(peer) == subject_attributes("CN=a, O=Test, C=CN")
    assert format_subject(peer) == "CN=a,O=Test,C=CN"
    assert subject_attributes("CN=a,O=Test") != subject_attributes(peer)


# -- mutual TLS, end to end --------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and two client certificates."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=jghub test CA", cwd=folder)  # fmt: skip
    for name, subject, extension in (
        ("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"),
        ("client", "/C=CN/O=Test/CN=mtls-client", "extendedKeyUsage=clientAuth"),
        ("stranger", "/C=CN/O=Test/CN=stranger", "extendedKeyUsage=clientAuth"),
    ):
        (folder / f"{name}.ext").write_text(extension + "\n")
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
                 cwd=folder)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                 "-extfile", f"{name}.ext", cwd=folder)  # fmt: skip


MTLS_SYSTEMS = """\
systems:
  - id: tls-platform
    name_zh: 双向认证平台
    mapping: grassroots-platform
    auth: {scheme: mtls, client_subject: "CN=mtls-client, O=Test, C=CN"}
    inbound:
      - {adapter: rest_push, message_type: event_report}
  - id: grassroots-platform
    name_zh: 基层治理四平台
    auth: {scheme: signed_app_key, key_env: JGHUB_TEST_SECRET_GRASSROOTS, app_key: jczl-hub-01}
    outbound: {adapter: outbox, render: {grassroots_event: cloudevent}}
    routes: ["grassroots_event.#"]
"""


@pytest.mark.slow
def test_a_client_certificate_names_its_system(tmp_path: Path) -> None:
    _certificates(tmp_path)
    tls = {
        "ssl_certfile": tmp_path / "server.pem",
        "ssl_keyfile": tmp_path / "server.key",
        "ssl_ca_certs": tmp_path / "ca.pem",
    }
    options = server_options(HubSettings(**tls))

    def client(name: str | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        if name:
            context.load_cert_chain(tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
        return context

    push = "/systems/tls-platform/rest/event_report"
    body = sample("grassroots-platform", "event_report", "valid-events")
    with running_hub(
        tmp_path / "hub",
        "embedded",
        systems_text=MTLS_SYSTEMS,
        settings_overrides=tls,
        uvicorn_options=options,
        client_options={"verify": client("client")},
    ) as hub:
        accepted = hub.client.post(push, content=body)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["accepted"] == 3
        assert len(hub.drain("grassroots-platform", 3)) == 3
        for name in (None, "stranger"):
            with httpx.Client(base_url=hub.base_url, verify=client(name)) as other:
                refused = other.post(push, content=body)
            assert refused.status_code == 401, (name, refused.text)
        # A certificate alone does not open another system's channel.
        with httpx.Client(base_url=hub.base_url, verify=client("client")) as mine:
            grassroots = mine.get("/systems/grassroots-platform/outbox")
        assert grassroots.status_code == 403


def test_signed_fields_are_the_top_level_members_found_in_the_prefix() -> None:
    body = (
        b'{"appKey": "jczl-hub-01", "records": [{"appKey": "nested", "sign": "nested"}],'
        b' "requestTime": "20260301100000", "sign": "first", "sign": "last", "tail": "cut here'
    )
    # Nested members are not the body's; a member named twice counts as the last, as in
    # json.loads; the prefix ending inside a value ends the search with what came before.
    assert signed_fields(body) == {
        "appKey": "jczl-hub-01",
        "requestTime": "20260301100000",
        "sign": "last",
    }
    assert signed_fields(b'{"records": [1, 2, {"sign": "x"') == {}
    assert signed_fields(b"not json at all") == {}
    assert signed_fields(b'{"sign": {"not": "a scalar"}, "appKey": 7}') == {"appKey": 7}
