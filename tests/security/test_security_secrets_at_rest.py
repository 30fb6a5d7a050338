"""No secret at rest: what the hub stores (quarantine, journal, dead letters, logs, /metrics)
holds no credential, on the embedded bus and on RabbitMQ.

The sweep runs a real hub (uvicorn) and a worker with every system's secret set to a random
value, drives traffic that ends in the quarantine (a SOAP push with a valid token and a wrong
SOAPAction, UsernameToken pushes with a wrong SOAPAction and with an invalid document, a signed
push with a bad record) and in the dead letters (a SOAP target refusing with a fault that
quotes the token it got), logs everything at DEBUG to a file, and then greps every file of the
data folder (SQLite WAL and SHM included), the log and /metrics for each secret, raw and
base64/URL-encoded; the quarantined payloads (in the store) and, on RabbitMQ, the dead-lettered
messages are read back and searched too.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import requests
from hub_harness import BACKENDS, running_hub, sample, signed
from loopback_target import TASK_WSDL, LoopbackTarget, soap_fault
from lxml import etree
from soap_harness import HeaderPlugin
from worker_harness import folders
from zeep import Client
from zeep.exceptions import Fault
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from adapters.redaction import MARKER, Redaction
from hub.systems import load_systems
from hub.worker import Worker

SECRET_ENV = {
    "market": "JGHUB_SWEEP_KEY_MARKET",
    "transport": "JGHUB_SWEEP_KEY_TRANSPORT",
    "grassroots": "JGHUB_SWEEP_SECRET_GRASSROOTS",
    "eco": "JGHUB_SWEEP_KEY_ECO",
    "target": "JGHUB_SWEEP_TARGET_TOKEN_ECO",
}

SYSTEMS = """\
systems:
  - id: market-penalty
    name_zh: 省市场监督管理局行政处罚办案系统
    auth: {scheme: api_key, key_env: JGHUB_SWEEP_KEY_MARKET}
    inbound:
      - adapter: soap_push
        message_type: case_upload
        options:
          operation: UploadCaseXml
          token_parameter: token
          path: /systems/market-penalty/CaseService.asmx
  - id: transport-penalty
    name_zh: 省交通运输厅行政执法系统
    auth: {scheme: api_key, key_env: JGHUB_SWEEP_KEY_TRANSPORT, username: jtyst-xzzf}
    inbound:
      - adapter: soap_push
        message_type: case_report
        options: {operation: ReportCases, ws_security: true}
  - id: grassroots-platform
    name_zh: 基层治理四平台
    auth: {scheme: signed_app_key, key_env: JGHUB_SWEEP_SECRET_GRASSROOTS, app_key: jczl-hub-01}
    inbound:
      - {adapter: rest_push, message_type: event_report}
  - id: eco-env-penalty
    name_zh: 省生态环境厅环境行政处罚系统
    auth: {scheme: api_key, key_env: JGHUB_SWEEP_KEY_ECO}
    outbound:
      adapter: soap_sender
      render: {grassroots_event: cloudevent}
      options:
        wsdl: "{WSDL}"
        operation: ReceiveTask
        secret_parameters: {token: JGHUB_SWEEP_TARGET_TOKEN_ECO}
        timeout_s: 5
        backoff_initial_s: 0.01
    routes: ["grassroots_event.#"]
"""

TEMPURI = "http://tempuri.org/"


def encodings(secret: str) -> set[bytes]:
    """The forms a secret could be stored in: raw, base64 (both alphabets), URL-encoded."""
    raw = secret.encode()
    return {
        raw,
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw),
        quote(secret, safe="").encode(),
        quote_plus(secret).encode(),
    }


def found_in(blob: bytes, secret_values: dict[str, str]) -> list[str]:
    return [
        name
        for name, value in secret_values.items()
        if any(form in blob for form in encodings(value))
    ]


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """Everything any logger says, at DEBUG, into a file (as an operator's log would keep it)."""
    path = tmp_path / "hub.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


WRONG_ACTION_11 = HeaderPlugin(SOAPAction='"http://tempuri.org/NotThisOne"')
WRONG_ACTION_12 = HeaderPlugin(
    **{"Content-Type": 'application/soap+xml; charset=utf-8; action="urn:not-this-one"'}
)


def zeep_client(
    url: str, *, wrong_action: HeaderPlugin | None = None, wsse: object = None
) -> Client:
    plugins = [wrong_action] if wrong_action else []
    transport = Transport(session=requests.Session(), timeout=30, operation_timeout=30)
    return Client(f"{url}?wsdl", transport=transport, plugins=plugins, wsse=wsse)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_secret_at_rest_after_quarantine_dead_letters_journal_and_logs(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_file: Path
) -> None:
    values = {name: f"{name}-{secrets.token_urlsafe(18)}" for name in SECRET_ENV}
    for name, variable in SECRET_ENV.items():
        monkeypatch.setenv(variable, values[name])
    with LoopbackTarget(wsdl=TASK_WSDL) as target:
        # The department refuses the delivery and quotes the token it was sent.
        target.always(
            500,
            soap_fault("soap:Client", f"token {values['target']} is not allowed here"),
            content_type="text/xml",
        )
        systems_text = SYSTEMS.replace("{WSDL}", f"{target.url}?wsdl")
        with running_hub(tmp_path, backend, systems_text=systems_text) as hub:
            market = f"{hub.base_url}/systems/market-penalty/CaseService.asmx"
            transport = f"{hub.base_url}/systems/transport-penalty/soap"
            document = sample("market-penalty", "case_upload", "valid-batch").decode("gb18030")

            # 1. a valid token, a wrong SOAPAction: the envelope is quarantined whole.
            with pytest.raises(Fault, match="SOAPAction"):
                zeep_client(market, wrong_action=WRONG_ACTION_11).service.UploadCaseXml(
                    token=values["market"], xmlDoc=document
                )
            # 2. a UsernameToken with the key, a wrong SOAPAction (envelope kept), then an
            #    invalid document (the document kept).
            cases = etree.fromstring(sample("transport-penalty", "case_report", "invalid-cases"))
            wsse = UsernameToken("jtyst-xzzf", values["transport"], use_digest=False)
            with pytest.raises(Fault):
                zeep_client(transport, wrong_action=WRONG_ACTION_12, wsse=wsse).service.ReportCases(
                    _value_1=list(cases), _attr_1=dict(cases.attrib)
                )
            with pytest.raises(Fault, match="cannot be read"):  # kept in the quarantine
                zeep_client(transport, wsse=wsse).service.ReportCases(
                    _value_1=list(cases), _attr_1=dict(cases.attrib)
                )
            # 3. a signed push with a bad record (quarantined), then a good one (delivered to
            #    the refusing target: dead letters).
            push = "/systems/grassroots-platform/rest/event_report"
            bad = signed(sample("grassroots-platform", "event_report", "invalid-events"),
                         secret=values["grassroots"])  # fmt: skip
            assert hub.client.post(push, content=bad).json()["rejected"] >= 1
            good = hub.client.post(
                push,
                content=signed(
                    sample("grassroots-platform", "event_report", "valid-events"),
                    secret=values["grassroots"],
                ),
            ).json()
            assert good["accepted"] >= 1, good
            # 4. the worker delivers them: the target refuses, they are dead letters.
            worker = Worker(
                hub.settings, targets=["eco-env-penalty"], pollers=False,
                mapping_folders=folders(),
            )  # fmt: skip
            stop = threading.Event()
            thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
            thread.start()
            broker = hub.broker()
            queue = "eco-env-penalty"
            try:
                wait_for(lambda: len(broker.dead_letters(queue)) >= good["accepted"])
            finally:
                stop.set()
                thread.join(timeout=30)
            metrics = hub.client.get("/metrics").content
            dead = broker.dead_letters(queue)
            quarantined = hub.quarantined()
            # While the hub runs, its SQLite files have their WAL and SHM beside them.
            open_files = leaks_in(tmp_path, values)
            assert any(name.endswith("-wal") for name in open_files), sorted(open_files)
        # What was sent carried the secrets (so finding none below means they were removed).
        assert values["target"].encode() in target.requests[0].body

    # Read back through the quarantine (in the store): redacted, with the structure kept.
    kept = {q.id: q.payload or b"" for q in quarantined}
    by_system = {q.system: q for q in quarantined}
    kept_market = next(
        kept[q.id]
        for q in quarantined
        if q.system == "market-penalty" and b"Envelope" in kept[q.id]
    )
    assert f"<token>{MARKER}</token>".encode() in kept_market.replace(b"ns0:", b"")
    assert b"UploadCaseXml" in kept_market  # the rest is still there to read
    kept_wsse = [body for body in kept.values() if b"UsernameToken" in body]
    assert kept_wsse and all(MARKER.encode() in body for body in kept_wsse)
    kept_signed = [kept[q.id] for q in quarantined if q.system == "grassroots-platform"]
    assert kept_signed and all(b'"sign": "***"' in body for body in kept_signed)
    assert {"market-penalty", "transport-penalty", "grassroots-platform"} <= set(by_system)
    assert dead and all("soap:Client" in d.reason and MARKER in d.reason for d in dead)

    stored = [kept[q.id] + q.reason.encode() for q in quarantined]
    stored += [d.reason.encode() + d.message.body for d in dead]
    assert [found_in(blob, values) for blob in stored] == [[]] * len(stored)
    assert found_in(metrics, values) == []
    log = log_file.read_bytes()
    # zeep logs each envelope it posts at DEBUG, the target's token in it: redacted.
    assert b"HTTP Post to" in log and MARKER.encode() in log
    assert found_in(log, values) == []
    if backend == "embedded":
        assert "bus.sqlite3" in open_files
    assert {name: found for name, found in open_files.items() if found} == {}
    closed_files = leaks_in(tmp_path, values)
    assert {name: found for name, found in closed_files.items() if found} == {}


def leaks_in(folder: Path, values: dict[str, str]) -> dict[str, list[str]]:
    """Each file under `folder` (by name) and the secrets found in it."""
    return {p.name: found_in(p.read_bytes(), values) for p in folder.rglob("*") if p.is_file()}


def wait_for(condition: object, timeout: float = 60.0) -> None:
    import time

    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


# ---------------------------------------------------------------- the redaction itself

REDACTION = Redaction(["known-secret-0815"], ["token"])


def test_credentials_are_replaced_and_everything_else_kept() -> None:
    envelope = (
        b'<s:Envelope xmlns:s="urn:s"><s:Header><w:Security xmlns:w="urn:w"><w:UsernameToken>'
        b'<w:Username>jtyst</w:Username><w:Password Type="PasswordText">an-unknown-one'
        b"</w:Password><w:Nonce>bm9uY2U=</w:Nonce></w:UsernameToken></w:Security></s:Header>"
        b"<s:Body><Upload><token><![CDATA[wrong-but-still-secret]]></token><tokenType>a"
        b"</tokenType><xmlDoc>&lt;case&gt;known-secret-0815&lt;/case&gt;</xmlDoc></Upload>"
        b"</s:Body></s:Envelope>"
    )
    redacted = REDACTION.payload(envelope)
    assert b"an-unknown-one" not in redacted and b"bm9uY2U=" not in redacted
    assert b"wrong-but-still-secret" not in redacted and b"known-secret-0815" not in redacted
    assert b'<w:Password Type="PasswordText">***</w:Password>' in redacted
    # The twin: what is not a credential stays byte for byte.
    assert b"<w:Username>jtyst</w:Username>" in redacted
    assert b"<tokenType>a</tokenType>" in redacted
    assert redacted.replace(b"***", b"") == envelope.replace(b"an-unknown-one", b"").replace(
        b"bm9uY2U=", b""
    ).replace(b"<![CDATA[wrong-but-still-secret]]>", b"").replace(b"known-secret-0815", b"")


def test_a_broken_envelope_and_json_are_redacted_too() -> None:
    broken = b"<Envelope><Body><token>abc-def-123</token><xmlDoc>&bad; <unclosed"
    assert REDACTION.payload(broken) == b"<Envelope><Body><token>***</token><xmlDoc>&bad; <unclosed"
    body = b'{"appKey": "jczl", "sign": "9f\\"x", "requestTime": "20260101", "events": [1]}'
    assert REDACTION.payload(body) == (
        b'{"appKey": "jczl", "sign": "***", "requestTime": "20260101", "events": [1]}'
    )


def test_known_secrets_are_found_in_their_travelling_forms_and_short_ones_left() -> None:
    secret = "known-secret-0815"
    text = (
        f"raw {secret} b64 {base64.b64encode(secret.encode()).decode()} url {quote(secret + '/?')}"
    )
    assert "known" not in REDACTION.text(text)
    short = Redaction(["abc"])  # shorter than MIN_SECRET_CHARS: would blank unrelated text
    assert short.text("abcdef abc") == "abcdef abc"


def test_redaction_of_a_configuration_knows_its_secrets_and_credential_fields(
    tmp_path: Path,
) -> None:
    path = tmp_path / "systems.yaml"
    path.write_text(SYSTEMS.replace("{WSDL}", "x.wsdl"), encoding="utf-8")
    config = load_systems(path)
    environ = {variable: f"value-of-{name}-42" for name, variable in SECRET_ENV.items()}
    redaction = Redaction.of(config.systems, environ)
    for value in environ.values():
        assert redaction.text(f"says {value}.") == "says ***."
    assert redaction.payload(b"<token>other</token>") == b"<token>***</token>"
