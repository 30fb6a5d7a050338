"""XML over HTTP push over a real uvicorn server, on the embedded bus and on RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hub_harness import (
    BACKENDS,
    COMPLAINT_TOKEN,
    ECO_KEY,
    HOUSING_PASSWORD,
    HOUSING_USER,
    THROTTLED_KEY,
    RunningHub,
    republishing_hub,
    sample,
)
from lxml import etree

from adapters.ingress import IngressResult, PayloadProblem
from adapters.protocols.http_push import RefusalBody
from adapters.protocols.xml_push import Receipt
from hub.simulators.landscape import LANDSCAPE_FILE
from standard.envelope import Envelope

PUSH = "/systems/eco-env-penalty/xml/case_batch"
FEEDBACK = "/systems/eco-env-penalty/xml/task_feedback"
CASES = ("eco-env-penalty", "case_batch")


@pytest.fixture(scope="module", params=BACKENDS)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    # The tests here push the shipped samples again and again; each push must be published.
    with republishing_hub(request, tmp_path_factory) as running:
        yield running


def post(
    hub: RunningHub, body: bytes, *, key: str = ECO_KEY, charset: str | None = None
) -> etree._Element:
    content_type = "application/xml" + (f"; charset={charset}" if charset else "")
    response = hub.client.post(
        PUSH, content=body, headers={"X-Api-Key": key, "Content-Type": content_type}
    )
    assert response.headers["content-type"].startswith("application/xml")
    root = etree.fromstring(response.content)
    root.set("http-status", str(response.status_code))
    return root


def test_a_gb2312_batch_is_answered_in_xml_and_consumable(hub: RunningHub) -> None:
    answer = post(hub, sample(*CASES, "valid-batch"))
    assert answer.get("http-status") == "200"
    assert answer.findtext("accepted") == "3" and answer.findtext("rejected") == "0"
    records = answer.findall("records/record")
    assert [r.get("status") for r in records] == ["accepted"] * 3
    ids = {r.findtext("message_id") for r in records}
    messages = hub.drain("grassroots-platform", 3)
    assert {m.id for m in messages} == ids
    names = set()
    for message in messages:
        envelope = Envelope.from_amqp(
            {"content_type": message.content_type, "headers": message.headers}, message.body
        )
        names.add(envelope.data.get("party", {}).get("name") if envelope.data else None)
    # GB2312-declared bytes arrive as the right characters (decoded as GB18030).
    assert any(name and any("\u4e00" <= ch <= "\u9fff" for ch in name) for name in names)


def test_the_transport_charset_is_used_when_the_document_names_none(hub: RunningHub) -> None:
    answer = post(hub, sample(*CASES, "valid-charset-from-transport"), charset="gbk")
    assert answer.get("http-status") == "200", etree.tostring(answer)
    assert answer.findtext("accepted") == "1"
    assert len(hub.drain("grassroots-platform", 1)) == 1


def test_rejected_records_carry_field_rule_and_line(hub: RunningHub) -> None:
    answer = post(hub, sample(*CASES, "invalid-records"))
    assert answer.get("http-status") == "200"
    rejected = [r for r in answer.findall("records/record") if r.get("status") == "rejected"]
    assert len(rejected) == 3
    first = rejected[0].find("error")
    assert first is not None
    assert first.findtext("field") and first.findtext("rule") and first.findtext("line")
    assert (first.findtext("location") or "").startswith("(/cf:AJPC/cf:AJ)[")
    quarantine_id = answer.findtext("quarantine_id")
    assert any(q.id == quarantine_id for q in hub.quarantined())
    assert len(hub.drain("grassroots-platform", 1)) == 1


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("invalid-entity-bomb", "forbidden-markup"),
        ("invalid-external-entity", "forbidden-markup"),
        ("invalid-truncated", "malformed"),
        ("invalid-encoding", "encoding"),
        ("invalid-wrong-message", "no-records"),
    ],
)
def test_hostile_or_broken_documents_are_400_and_kept(
    hub: RunningHub, name: str, kind: str
) -> None:
    depth = hub.depth("grassroots-platform")
    answer = post(hub, sample(*CASES, name))
    assert answer.get("http-status") == "400"
    assert answer.findtext("payload_error/kind") == kind
    assert answer.findtext("accepted") == "0"
    assert any(q.id == answer.findtext("quarantine_id") for q in hub.quarantined())
    assert hub.depth("grassroots-platform") == depth


def test_a_wrong_key_is_401_in_xml_and_nothing_is_published(hub: RunningHub) -> None:
    # The channel answers XML (its default): a refusal before the payload is read is XML too,
    # since a system that reads only XML cannot read a JSON refusal.
    depth = hub.depth("grassroots-platform")
    refusal = post(hub, sample(*CASES, "valid-batch"), key="guessed")
    assert refusal.tag == "Refusal"
    assert (refusal.get("http-status"), refusal.findtext("status")) == ("401", "401")
    assert refusal.findtext("error") == "unauthenticated"
    assert refusal.findtext("reason") == "the X-Api-Key header matches no configured system's key"
    assert hub.depth("grassroots-platform") == depth


def test_another_systems_key_is_403_in_xml(hub: RunningHub) -> None:
    depth = hub.depth("grassroots-platform")
    refusal = post(hub, sample(*CASES, "valid-batch"), key=THROTTLED_KEY)
    assert (refusal.tag, refusal.get("http-status")) == ("Refusal", "403")
    assert refusal.findtext("error") == "forbidden"
    assert "not for this channel" in (refusal.findtext("reason") or "")
    assert hub.depth("grassroots-platform") == depth


def test_a_channel_answering_json(hub: RunningHub) -> None:
    # task_feedback has answer: json; collaboration tasks have no route here, so they are
    # rejected as unroutable and kept.
    response = hub.client.post(
        FEEDBACK,
        content=sample("eco-env-penalty", "task_feedback", "valid-feedback"),
        headers={"X-Api-Key": ECO_KEY, "Content-Type": "text/xml"},
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["rejected"] == 2
    assert {r["errors"][0]["kind"] for r in answer["records"]} == {"unroutable"}


def test_a_system_token_header_and_its_own_receipt(hub: RunningHub) -> None:
    push = "/ingest/complaint-platform/complaint_push"
    body = sample("complaint-platform", "complaint_push", "valid-complaints")
    headers = {"X-Tsjb-Token": COMPLAINT_TOKEN, "Content-Type": "application/xml"}
    response = hub.client.post(push, content=body, headers=headers)
    assert response.status_code == 200, response.text
    ack = etree.fromstring(response.content)
    assert ack.tag == "ack"
    items = ack.findall("item")
    assert [(i.get("seq"), i.get("accepted")) for i in items] == [
        (str(n), "true") for n in range(1, 6)
    ]
    messages = hub.drain("eco-env-penalty", 5)
    assert {m.id for m in messages} == {i.get("id") for i in items}
    wrong = hub.client.post(push, content=body, headers={**headers, "X-Tsjb-Token": "guess"})
    assert wrong.status_code == 401
    refusal = etree.fromstring(wrong.content)  # in the platform's own receipt format
    assert (refusal.tag, refusal.find("item")) == ("ack", None)
    assert refusal.xpath("string(error/@kind)") == "unauthenticated"
    assert "X-Tsjb-Token header matches no configured system" in refusal.findtext("error", "")
    invalid = sample("complaint-platform", "complaint_push", "invalid-complaints")
    refused = etree.fromstring(hub.client.post(push, content=invalid, headers=headers).content)
    assert {i.get("accepted") for i in refused.findall("item")} == {"false"}
    assert all(i.get("id") == "" for i in refused.findall("item"))


def test_basic_authentication_and_a_gbk_receipt(hub: RunningHub) -> None:
    push = "/ingest/housing-penalty/publication_batch"
    headers = {"Content-Type": "text/xml; charset=GBK"}
    valid = sample("housing-penalty", "publication_batch", "valid-batch")
    response = hub.client.post(
        push, content=valid, headers=headers, auth=(HOUSING_USER, HOUSING_PASSWORD)
    )
    assert response.status_code == 200, response.text
    assert response.content.startswith(b"<?xml version='1.0' encoding='GBK'?>")
    result = etree.fromstring(response.content)
    assert (result.tag, result.get("PCZT"), result.get("CGS")) == ("RESULT", "0", "4")
    assert [(r.get("XH"), r.get("ZT"), r.get("MSG")) for r in result.findall("ROW")] == [
        (str(n), "0", "") for n in range(1, 5)
    ]
    assert len(hub.drain("grassroots-platform", 4)) == 4
    invalid = sample("housing-penalty", "publication_batch", "invalid-records")
    answer = hub.client.post(
        push, content=invalid, headers=headers, auth=(HOUSING_USER, HOUSING_PASSWORD)
    )
    rows = etree.fromstring(answer.content).findall("ROW")
    assert {r.get("ZT") for r in rows} == {"1"}
    # The first problem, in words the department can act on (field and message, in Chinese).
    assert all(r.get("MSG") for r in rows)
    for user, password in ((HOUSING_USER, "wrong"), ("someone", HOUSING_PASSWORD)):
        refused = hub.client.post(push, content=valid, headers=headers, auth=(user, password))
        assert refused.status_code == 401
        assert refused.content.startswith(b"<?xml version='1.0' encoding='GBK'?>")
        refusal = etree.fromstring(refused.content)
        assert (refusal.tag, refusal.get("PCZT"), refusal.findall("ROW")) == ("RESULT", "1", [])
        assert refusal.xpath("string(error/@kind)") == "unauthenticated"
        assert "Basic user name and password match no" in refusal.findtext("error", "")


RECEIPT_CHANNELS = {
    "complaint-platform": (
        "/ingest/complaint-platform/complaint_push",
        {"X-Tsjb-Token": COMPLAINT_TOKEN},
        None,
        "ack",
    ),
    "housing-penalty": (
        "/ingest/housing-penalty/publication_batch",
        {},
        (HOUSING_USER, HOUSING_PASSWORD),
        "RESULT",
    ),
}
WHOLE_PAYLOAD_REFUSALS = {
    "entity bomb": (sample(*CASES, "invalid-entity-bomb"), "forbidden-markup", "DOCTYPE"),
    "external entity": (sample(*CASES, "invalid-external-entity"), "forbidden-markup", "DOCTYPE"),
    "wrong encoding": (
        sample("complaint-platform", "complaint_push", "invalid-declared-utf16"),
        "encoding",
        "UTF-16",
    ),
    "empty body": (b"", "malformed", "empty"),
}


@pytest.mark.parametrize("system", sorted(RECEIPT_CHANNELS))
@pytest.mark.parametrize("refusal", sorted(WHOLE_PAYLOAD_REFUSALS))
def test_a_receipt_says_why_a_whole_payload_was_refused(
    hub: RunningHub, system: str, refusal: str
) -> None:
    path, headers, auth, root = RECEIPT_CHANNELS[system]
    body, kind, named = WHOLE_PAYLOAD_REFUSALS[refusal]
    kept = len([q for q in hub.quarantined() if q.system == system])
    response = hub.client.post(
        path, content=body, headers={**headers, "Content-Type": "application/xml"}, auth=auth
    )
    assert response.status_code == 400, response.text
    receipt = etree.fromstring(response.content)
    assert receipt.tag == root
    error = receipt.find("error")
    assert error is not None, f"a bare receipt: {response.content!r}"
    assert error.get("kind") == kind
    reason = error.text or ""
    assert named in reason and len(reason) > len(named) + 10, reason
    assert len([q for q in hub.quarantined() if q.system == system]) == kept + 1


SHIPPED = [
    Path(__file__).resolve().parents[3] / "config" / "systems.yaml",
    LANDSCAPE_FILE,
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_every_shipped_receipt_format_says_why(path: Path) -> None:
    # Receipts are configuration: whatever a shipped one looks like, a refusal says why in it.
    receipts = [
        Receipt.model_validate(channel["options"]["receipt"])
        for system in yaml.safe_load(path.read_text(encoding="utf-8"))["systems"]
        for channel in system.get("inbound", [])
        if channel["adapter"] == "xml_push" and "receipt" in channel.get("options", {})
    ]
    assert receipts, f"no receipt format in {path}"
    problem = PayloadProblem(kind="encoding", reason="bytes 3-4 are not GBK", offset=3)
    refused = IngressResult(
        system="s", message_type="m", receipt_id="r", accepted=0, rejected=0, payload_error=problem
    )
    refusal = RefusalBody(error="unauthenticated", status=401, reason="wrong key")
    for receipt in receipts:
        for document, kind, reason in (
            (receipt.render(refused), "encoding", "bytes 3-4 are not GBK"),
            (receipt.render_refusal(refusal), "unauthenticated", "wrong key"),
        ):
            said = etree.tostring(etree.fromstring(document), encoding="unicode")
            assert kind in said and reason in said, (receipt, said)
