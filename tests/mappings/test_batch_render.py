"""A mapping's `batch` section: records wrapped into one request, and the target's answer read
back record by record; the simulated department takes such a batch and answers per record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import yaml
from lxml import etree

from hub.simulators.server import LoopbackServer, free_port
from hub.simulators.targets import FailurePlan, SimulatedTarget
from hub.systems import parse_systems
from mappings import (
    SYSTEMS_ROOT,
    BatchAnswerError,
    MappingError,
    SystemMappings,
    load_all,
    load_system,
)
from standard.envelope import Envelope

MAPPINGS = load_all()
ECO = MAPPINGS["eco-env-penalty"]
NATIONAL = MAPPINGS["national"]


def cases() -> list[Envelope]:
    """The eco-env sample batch's penalty cases, as canonical envelopes."""
    payload = (SYSTEMS_ROOT / "eco-env-penalty/samples/case_batch/valid-batch.xml").read_bytes()
    envelopes = ECO.translate("case_batch", payload).envelopes
    assert len(envelopes) >= 2
    return list(envelopes)


def warnings() -> list[Envelope]:
    """The national sample's risk warnings, as canonical envelopes."""
    payload = (SYSTEMS_ROOT / "national/samples/risk_warning/valid-warnings.json").read_bytes()
    envelopes = NATIONAL.translate("risk_warning", payload).envelopes
    assert len(envelopes) >= 2
    return list(envelopes)


def batch_of(mappings: SystemMappings, message_type: str, envelopes: list[Envelope]) -> bytes:
    rendering = mappings.outbound_mapping(message_type)
    parts = [rendering.render_part(envelope) for envelope in envelopes]
    keys = [f"key-{n}" for n in range(len(envelopes))]
    return rendering.render_batch(parts, keys, "batch-1")


def test_a_json_batch_carries_each_record_as_rendered_alone_with_its_key() -> None:
    envelopes = cases()
    body = json.loads(batch_of(NATIONAL, "penalty_record", envelopes))
    assert body["batchNo"] == "batch-1" and body["count"] == len(envelopes)
    for n, (record, envelope) in enumerate(zip(body["data"], envelopes, strict=True)):
        alone = json.loads(NATIONAL.render("penalty_record", envelope))
        assert record == {"hubKey": f"key-{n}", **alone}


def test_an_xml_batch_puts_each_records_elements_under_one_document_element() -> None:
    envelopes = warnings()
    body = batch_of(ECO, "warning_push", envelopes)
    assert body.startswith(b"<?xml")
    root = etree.fromstring(body)
    assert root.tag == "{http://sthjt.zj.gov.cn/schema/fxyj/1.0}YJXF"
    assert [child.get("hubKey") for child in root] == [f"key-{n}" for n in range(len(envelopes))]
    for child, envelope in zip(root, envelopes, strict=True):
        (alone,) = etree.fromstring(ECO.render("warning_push", envelope))
        child.attrib.pop("hubKey")
        assert etree.tostring(child, method="c14n") == etree.tostring(alone, method="c14n")


def test_the_simulated_department_takes_an_xml_batch_and_answers_each_record() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/sthjt/warning"
    config = parse_systems(
        yaml.safe_load(
            f"""
            systems:
              - id: eco-env-penalty
                name_zh: 省生态环境厅环境行政处罚系统
                auth: {{scheme: api_key, key_env: JGHUB_TEST_UNUSED}}
                outbound:
                  adapter: rest_sender
                  render: {{risk_warning: warning_push}}
                  batch: {{max_records: 10, max_wait_ms: 100}}
                  options: {{url: "{url}", batch_url: "{url}/batch"}}
                routes: ["risk_warning.#"]
            """
        )
    )
    config.bind_mappings(MAPPINGS)  # a batch section for each rendered type: accepted
    envelopes = warnings()
    refused = envelopes[1].subject
    target = SimulatedTarget(config.system("eco-env-penalty"))
    target.set_plan(FailurePlan(refuse_containing=f">{refused}<"))
    with LoopbackServer(target.app, port=port, name="eco-env"):
        answer = httpx.post(
            f"{url}/batch",
            content=batch_of(ECO, "warning_push", envelopes),
            headers={"Content-Type": "application/xml; charset=utf-8"},
        )
    assert answer.status_code == 200
    results = ECO.outbound_mapping("warning_push").read_results(answer.content, len(envelopes))
    assert [r is not None and r.taken for r in results] == [e.subject != refused for e in envelopes]
    assert (
        results[1] is not None and "'422'" in results[1].reason and "refused" in results[1].reason
    )
    assert sorted(i.idempotency_key or "" for i in target.log.items()) == [
        f"key-{n}" for n in range(len(envelopes))
    ]


def test_a_partial_answer_names_only_some_records() -> None:
    rendering = NATIONAL.outbound_mapping("penalty_record")
    answer = json.dumps(
        {
            "code": "0",
            "results": [{"index": 2, "code": "0"}, {"index": 0, "code": "9", "message": "重复"}],
        }
    ).encode()
    first, second, third = rendering.read_results(answer, 3)
    assert first is not None and not first.taken and "重复" in first.reason
    assert second is None
    assert third is not None and third.taken


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"<html>busy</html>", "cannot be parsed"),
        (b'{"code": "0"}', "selects no list of results"),
        (b'{"code": "0", "results": [{"index": 5, "code": "0"}]}', "names record 5"),
        (b'{"code": "0", "results": [{"index": "x", "code": "0"}]}', "not a position"),
    ],
)
def test_an_answer_that_cannot_be_read_says_why(answer: bytes, said: str) -> None:
    rendering = NATIONAL.outbound_mapping("penalty_record")
    with pytest.raises(BatchAnswerError) as failed:
        rendering.read_results(answer, 3)
    assert said in str(failed.value) and "penalty_record batch.results" in str(failed.value)


def test_a_batch_path_that_does_not_compile_is_refused_with_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "eco-env-penalty"
    shutil.copytree(SYSTEMS_ROOT / "eco-env-penalty", folder)
    mapping = folder / "warning_push.yaml"
    text = mapping.read_text(encoding="utf-8").replace("each: /Results/Result", "each: '/Results['")
    mapping.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as refused:
        load_system(folder)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "/Results[" in t)
    assert f"{mapping}:{line}" in str(refused.value) and "XPath" in str(refused.value)
