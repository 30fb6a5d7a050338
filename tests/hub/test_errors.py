"""One error format per kind of channel (README "Errors"), over a real uvicorn server.

JSON channels and the hub's own APIs answer RFC 9457 problem documents; XML push channels their
<Refusal> or their system's receipt, in the request's charset; SOAP channels SOAP faults in the
request's SOAP version (zeep as the client); the console keeps its HTML pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from hub_harness import (
    COMPLAINT_TOKEN,
    ECO_KEY,
    THROTTLED_KEY,
    RunningHub,
    running_hub,
    sample,
)
from lxml import etree, html
from operator_accounts import OPERATOR, READER, write_operators
from soap_harness import SoapHub
from zeep.exceptions import Fault

from adapters.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPES

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
AGRI = "/systems/agri-penalty/rest/case_records"
THROTTLED = "/systems/throttled-platform/rest/event_report"
ECO_XML = "/systems/eco-env-penalty/xml/case_batch"
ECO_XML_JSON = "/systems/eco-env-penalty/xml/task_feedback"  # an XML channel answering JSON
COMPLAINT = "/ingest/complaint-platform/complaint_push"
HOUSING = "/ingest/housing-penalty/publication_batch"
PUBLIC = {"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/redoc"}
"""Routes anyone may read: they answer without a credential."""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    folder = tmp_path_factory.mktemp("errors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JGHUB_OPERATORS_FILE", str(write_operators(folder)))
        with running_hub(folder, "embedded", monkeypatch=patch) as running:
            yield running


def problem(response: httpx.Response, status: int, name: str) -> dict[str, Any]:
    """The problem document `response` carries, checked: its status, type and members."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE, response.text
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:jghub:problem:{name}", body
    assert body["title"] == PROBLEM_TYPES[name].title
    assert body["status"] == status
    assert body["instance"] == response.request.url.path
    assert isinstance(body["detail"], str) and len(body["detail"]) > 10
    return body


# -- JSON channels ----------------------------------------------------------------------------


def test_a_rest_channel_refuses_with_problem_documents(hub: RunningHub) -> None:
    records = sample("agri-penalty", "case_records", "valid-records")
    json_type = {"Content-Type": "application/json"}
    anonymous = problem(
        hub.client.post(AGRI, content=records, headers=json_type), 401, "unauthenticated"
    )
    assert "no credential" in anonymous["detail"]
    foreign = hub.client.post(AGRI, content=records, headers={**json_type, "X-Api-Key": ECO_KEY})
    assert "not for this channel" in problem(foreign, 403, "forbidden")["detail"]
    keyed = {**json_type, "X-Api-Key": THROTTLED_KEY}
    large = problem(
        hub.client.post(THROTTLED, content=b"{" + b" " * 4096 + b"}", headers=keyed),
        413,
        "payload-too-large",
    )
    assert "2048" in large["detail"]
    broken = hub.client.post(
        AGRI,
        content=records[:-30],
        headers={**json_type, "Authorization": "Bearer agri-key-for-tests"},
    )
    unreadable = problem(broken, 400, "payload-unreadable")
    (error,) = unreadable["errors"]
    assert error["rule"] == "malformed" and error["line"] >= 1 and "line" in error["where"]
    assert unreadable["quarantine_id"] and unreadable["receipt_id"]
    assert "case_records" in unreadable["detail"] and "malformed" in unreadable["detail"]
    wrong_method = problem(hub.client.get(AGRI), 405, "method-not-allowed")
    assert wrong_method["detail"] == f"{AGRI} does not take GET; it takes POST"


def test_the_rate_limit_is_a_problem_with_retry_after(hub: RunningHub) -> None:
    keyed = {"Content-Type": "application/json", "X-Api-Key": THROTTLED_KEY}
    answers = [hub.client.post(THROTTLED, content=b"{}", headers=keyed) for _ in range(5)]
    limited = [answer for answer in answers if answer.status_code == 429]
    assert limited, [answer.status_code for answer in answers]
    body = problem(limited[0], 429, "rate-limited")
    assert body["retry_after"] == int(limited[0].headers["Retry-After"]) >= 1


def test_an_xml_channel_answering_json_refuses_with_problem_documents(hub: RunningHub) -> None:
    problem(hub.client.post(ECO_XML_JSON, content=b"<x/>"), 401, "unauthenticated")


def test_unknown_routes_and_bad_parameters_are_problems(hub: RunningHub) -> None:
    nowhere = problem(hub.client.get("/nowhere"), 404, "not-found")
    assert (
        nowhere["detail"] == "no route answers GET /nowhere; the hub's routes are listed at /docs"
    )
    problem(hub.client.delete("/health"), 405, "method-not-allowed")
    pull = hub.client.get(
        "/systems/eco-env-penalty/outbox", params={"limit": "0"}, headers={"X-Api-Key": ECO_KEY}
    )
    invalid = problem(pull, 422, "validation-failed")
    (error,) = invalid["errors"]
    assert (error["where"], error["rule"]) == ("query.limit", "greater_than_equal")
    assert "query.limit" in invalid["detail"]


def test_the_operators_apis_refuse_with_problem_documents(hub: RunningHub) -> None:
    anonymous = hub.client.get("/dead-letters")
    assert "HTTP Basic" in problem(anonymous, 401, "unauthenticated")["detail"]
    assert anonymous.headers["www-authenticate"] == 'Basic realm="jghub operators"'
    replay = hub.client.post("/dead-letters/replay", json={"why": "try again"}, auth=READER)
    assert "role reader" in problem(replay, 403, "forbidden")["detail"]
    missing = hub.client.get("/quarantine/q-nothing", auth=READER)
    problem(missing, 404, "not-found")
    problem(hub.client.get("/dead-letters/nothing-here", auth=OPERATOR), 404, "not-found")
    bad_age = hub.client.get("/quarantine", params={"older_than": "soon"}, auth=READER)
    assert "older_than" in problem(bad_age, 400, "bad-request")["detail"]
    state = hub.client.get("/centre/items", params={"state": "lost"}, auth=READER)
    problem(state, 422, "validation-failed")
    limit = hub.client.get("/search", params={"q": "x", "limit": "many"}, auth=READER)
    assert problem(limit, 422, "validation-failed")["errors"][0]["where"] == "query.limit"
    trace = hub.client.get("/messages/nothing", headers={"X-Api-Key": ECO_KEY})
    problem(trace, 404, "not-found")


def test_every_json_route_refuses_an_unauthenticated_request_with_a_problem(
    hub: RunningHub,
) -> None:
    own_format = {ECO_XML, COMPLAINT, HOUSING}
    walked = []
    # FastAPI keeps an included router as one entry of app.routes; its contexts are its routes.
    for context in iter_route_contexts(hub.app.routes):
        route = context.original_route
        # The console's pages, the SOAP calls, /metrics and the docs' pages are not in the
        # OpenAPI document: every JSON route is.
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        if context.path in PUBLIC | own_format:
            continue
        path = str(context.path).replace("{", "").replace("}", "").replace(":path", "")
        for method in sorted(context.methods or ()):
            answer = hub.client.request(method, path, content=b"{}")
            problem(answer, 401, "unauthenticated")
            walked.append(f"{method} {context.path}")
    # Every kind of JSON route was walked: channels, outboxes, traces, the operators' APIs.
    print(
        [
            (type(r).__name__, getattr(r, "path", ""), getattr(r, "include_in_schema", None))
            for r in hub.app.routes
        ]
    )
    assert {"POST " + AGRI, "GET /systems/eco-env-penalty/outbox", "GET /dead-letters"} <= set(
        walked
    )
    assert {"GET /messages/{message_id:path}", "GET /centre/scorecard", "GET /search"} <= set(
        walked
    )
    assert "POST /quarantine/{quarantine_id}/release" in walked


# -- XML channels ------------------------------------------------------------------------------


def test_an_xml_channel_refuses_with_its_refusal_in_the_requests_charset(hub: RunningHub) -> None:
    document = sample("eco-env-penalty", "case_batch", "valid-batch")
    anonymous = hub.client.post(
        ECO_XML, content=document, headers={"Content-Type": "application/xml; charset=gbk"}
    )
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/xml"
    assert anonymous.content.startswith(b"<?xml version='1.0' encoding='GB18030'?>")
    refusal = etree.fromstring(anonymous.content)
    assert refusal.tag == "Refusal"
    assert (refusal.findtext("error"), refusal.findtext("status")) == ("unauthenticated", "401")
    assert "X-Api-Key" in (refusal.findtext("reason") or "")
    wrong_method = hub.client.get(ECO_XML)
    assert wrong_method.status_code == 405
    assert etree.fromstring(wrong_method.content).findtext("error") == "method-not-allowed"
    # No charset named: UTF-8.
    plain = hub.client.post(ECO_XML, content=document, headers={"X-Api-Key": THROTTLED_KEY})
    assert plain.status_code == 403 and b"encoding='UTF-8'" in plain.content[:60]


def test_xml_channels_with_a_receipt_refuse_in_it(hub: RunningHub) -> None:
    refused = hub.client.post(COMPLAINT, content=b"<x/>", headers={"X-Tsjb-Token": "wrong"})
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/xml; charset=UTF-8"
    ack = etree.fromstring(refused.content)
    (error,) = ack.findall("error")
    assert ack.tag == "ack" and error.get("kind") == "unauthenticated"
    housing = hub.client.post(HOUSING, content=b"<x/>", auth=("zjt-cf", "wrong"))
    assert housing.status_code == 401
    assert housing.headers["content-type"] == "application/xml; charset=GBK"
    assert etree.fromstring(housing.content).tag == "RESULT"
    assert hub.client.get(COMPLAINT).headers["content-type"].startswith("application/xml")
    assert COMPLAINT_TOKEN not in refused.text


# -- the console and the OpenAPI document -------------------------------------------------------


def test_the_console_keeps_its_html_error_pages(hub: RunningHub) -> None:
    anonymous = hub.client.get("/console/dead-letters")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("text/html")
    assert "HTTP Basic" in html.fromstring(anonymous.text).get_element_by_id("why").text
    assert anonymous.headers["www-authenticate"] == 'Basic realm="jghub operators"'
    unknown = hub.client.get("/console/no-such-page", auth=READER)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("text/html")
    invalid = hub.client.get("/console/dead-letters", params={"limit": "many"}, auth=READER)
    assert invalid.status_code == 400 and invalid.headers["content-type"].startswith("text/html")


def test_the_openapi_document_declares_the_problem_responses(hub: RunningHub) -> None:
    document = hub.client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail", "instance"}
    assert "HTTPValidationError" not in schemas
    ref = {"schema": {"$ref": "#/components/schemas/Problem"}}
    push = document["paths"][AGRI]["post"]["responses"]
    for status in ("400", "401", "403", "413", "429", "4XX", "5XX"):
        assert push[status]["content"][PROBLEM_MEDIA_TYPE] == ref, status
    listing = document["paths"]["/dead-letters"]["get"]["responses"]
    assert listing["422"]["content"] == {PROBLEM_MEDIA_TYPE: ref}
    assert listing["404"]["content"] == {PROBLEM_MEDIA_TYPE: ref}
    xml = document["paths"][ECO_XML]["post"]["responses"]
    assert set(xml["401"]["content"]) == {"application/xml"} and "4XX" not in xml
    ready = document["paths"]["/ready"]["get"]["responses"]["503"]["content"]
    assert set(ready) == {"application/json"}  # /ready's report is an answer, not a problem


# -- SOAP channels -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def soap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoapHub]:
    with SoapHub.start("embedded", tmp_path_factory.mktemp("soap-errors")) as running:
        yield running


def _fault(response: httpx.Response, version: str) -> tuple[str, str]:
    root = etree.fromstring(response.content)
    assert root.tag == f"{{{version}}}Envelope", response.text
    if version == SOAP11:
        return root.findtext(".//faultcode") or "", root.findtext(".//faultstring") or ""
    code = root.findtext(f".//{{{SOAP12}}}Code/{{{SOAP12}}}Value") or ""
    subcode = root.findtext(f".//{{{SOAP12}}}Subcode/{{{SOAP12}}}Value") or ""
    return f"{code}/{subcode}", root.findtext(f".//{{{SOAP12}}}Reason/{{{SOAP12}}}Text") or ""


def test_soap_refusals_are_faults_in_the_requests_version(soap: SoapHub) -> None:
    client = soap.zeep_client("eco-env-penalty", api_key="not-the-key")
    with pytest.raises(Fault) as raised:
        client.service.ReceiveCaseBatch(batch=b"<x/>")
    assert raised.value.code == "soap:Client.Authentication"
    url = soap.endpoint("eco-env-penalty")
    anonymous = httpx.post(url, content=b"<x/>", headers={"Content-Type": "text/xml"})
    assert anonymous.status_code == 500 and anonymous.headers["content-type"].startswith("text/xml")
    assert _fault(anonymous, SOAP11)[0] == "soap:Client.Authentication"
    keyed = {"X-Api-Key": soap.keys["eco-env-penalty"]}
    media = httpx.post(url, content=b"{}", headers={**keyed, "Content-Type": "application/json"})
    assert media.status_code == 415
    assert _fault(media, SOAP11)[0] == "soap:Client.UnsupportedMediaType"
    for content_type, version, code in (
        ("text/xml; charset=utf-8", SOAP11, "soap:Client.MethodNotAllowed"),
        ("application/soap+xml; charset=utf-8", SOAP12, "soap:Sender/jg:MethodNotAllowed"),
    ):
        put = httpx.put(url, content=b"<x/>", headers={"Content-Type": content_type})
        assert put.status_code == 405 and put.headers["allow"] == "GET, POST"
        assert put.headers["content-type"].startswith(content_type.split(";")[0])
        found, reason = _fault(put, version)
        assert found == code and reason.endswith("does not take PUT; it takes GET, POST")
