"""The cross-checks at the hub's door: an inspection pushed with an officer's certificate "X" is
refused once the officer list is loaded (rule set to reject) and let through with a warning
where the rules file says warn; the journal, the metrics, the quality report and the
database's figures tell the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hub_harness import RunningHub, running_hub
from prometheus_client.parser import text_string_to_metric_families
from reference_changes import change
from rich.console import Console

from hub.app import runtime_of
from mappings import SYSTEMS_ROOT
from monitor.console_tables import quality_table
from monitor.journal import Step
from monitor.journal_figures import quality_figures
from monitor.quality import quality_report
from reference.rulebook import CrossChecks
from reference.stored import StoreLists

KEY = "hrss-key-for-tests"
COUNTY_KEY = "hrss-county-key-for-tests"
RULE = "inspector-certificate-valid"
SYSTEMS = """\
systems:
  - id: hrss-penalty
    name_zh: 省人力资源和社会保障厅劳动保障监察系统
    auth: {scheme: api_key, key_env: JGHUB_TEST_KEY_HRSS}
    inbound:
      - {adapter: rest_push, message_type: inspection_feed}
  - id: hrss-county
    name_zh: 县人力社保局劳动保障监察系统
    mapping: hrss-penalty
    auth: {scheme: api_key, key_env: JGHUB_TEST_KEY_HRSS_COUNTY}
    inbound:
      - {adapter: rest_push, message_type: inspection_feed}
  - id: national
    name_zh: 国家"互联网+监管"系统
    auth: {scheme: api_key, key_env: JGHUB_TEST_KEY_NATIONAL}
    outbound: {adapter: outbox, render: {inspection: cloudevent}}
    routes: ["inspection.#"]
"""
# hrss-county's findings of the certificate rule only warn.
RULES = f"rules:\n  {RULE}: reject\nsystems:\n  hrss-county:\n    {RULE}: warn\n"


def page_with_certificate_x() -> bytes:
    """The shipped inspection page, its first inspection's second officer holding "X"."""
    path = SYSTEMS_ROOT / "hrss-penalty" / "samples" / "inspection_feed" / "valid-page.json"
    page = json.loads(path.read_bytes())
    page["items"][0]["inspectors"][1]["cert_no"] = "X"
    return json.dumps(page, ensure_ascii=False).encode()


def feed_officers(hub: RunningHub) -> None:
    """Load the officer list with every certificate of the page but "X", as the lists' feed
    does: each officer a change applied to the store's lists the hub's checks read."""
    checks = runtime_of(hub.app).ingress.checks
    assert isinstance(checks, CrossChecks) and isinstance(checks.lists, StoreLists)
    numbers = ["ZJ33078210008", "ZJ33078210022", "ZJ33032610021", "ZJ33032610035",
               "ZJ33030010052", "ZJ33030010064"]  # fmt: skip
    for number in numbers:
        officer = change(
            "enforcement_officer",
            "2026-03-01T08:00:00+08:00",
            certificate_number=number,
            officer_id=f"o-{number}",
            certificate_issued="2020-01-01",
            certificate_valid_until="2030-12-31",
        )
        assert checks.lists.apply(officer) == "applied"


def findings_counted(hub: RunningHub) -> dict[tuple[str, str, str], float]:
    text = hub.client.get("/metrics").text
    return {
        (s.labels["system"], s.labels["rule"], s.labels["disposition"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "jghub_rule_findings"
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_certificate_x_is_refused_when_the_officers_are_loaded_and_warned_where_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JGHUB_TEST_KEY_HRSS", KEY)
    monkeypatch.setenv("JGHUB_TEST_KEY_HRSS_COUNTY", COUNTY_KEY)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    payload = page_with_certificate_x()
    since = datetime.now(UTC) - timedelta(minutes=1)
    with running_hub(
        tmp_path / "hub",
        "embedded",
        systems_text=SYSTEMS,
        monkeypatch=monkeypatch,
        settings_overrides={"rules_file": rules},
    ) as hub:
        headers = {"X-Api-Key": KEY, "Content-Type": "application/json"}
        # Before the officer list is fed, nothing is judged against it: accepted.
        before = hub.client.post(
            "/systems/hrss-penalty/rest/inspection_feed", content=payload, headers=headers
        )
        assert before.status_code == 200, before.text
        assert [r["status"] for r in before.json()["records"]][:1] == ["accepted"]

        feed_officers(hub)
        changed = payload.replace(b'"updated_at": 1775729100', b'"updated_at": 1775729101')
        assert changed != payload  # a new change of the record, not a repeat of the first
        refused = hub.client.post(
            "/systems/hrss-penalty/rest/inspection_feed", content=changed, headers=headers
        )
        body = refused.json()
        first = body["records"][0]
        assert first["status"] == "rejected", body
        (error,) = first["errors"]
        assert error["rule"] == RULE
        assert error["field"] == "inspectors[1].certificate_number" and error["value"] == "X"
        assert "certificate X is not in the officer list" in error["message"]
        assert body["quarantine_id"]
        assert hub.kept(body["quarantine_id"]).problems[0].rule == RULE

        warned = hub.client.post(
            "/systems/hrss-county/rest/inspection_feed",
            content=changed,
            headers={**headers, "X-Api-Key": COUNTY_KEY},
        )
        assert warned.json()["records"][0]["status"] == "accepted", warned.text

        counted = findings_counted(hub)
        assert counted[("hrss-penalty", RULE, "reject")] == 1
        assert counted[("hrss-county", RULE, "warn")] == 1
        # Every series the configuration names started at 0 (none of these warned).
        assert counted[("hrss-penalty", "random-inspection-has-plan", "warn")] == 0
        assert counted[("hrss-county", RULE, "unchecked")] == 0
        # The catalogue was never fed: every inspection accepted is "not checked" for it.
        assert counted[("hrss-penalty", "catalogue-item-in-force", "unchecked")] >= 3

        journal = runtime_of(hub.app).journal
        assert journal.flush(timeout=None)
        (entry,) = [
            e for e in journal.entries(since=since, steps=(Step.RECEIVED,), system="hrss-county")
            if e.detail.get("warnings")
        ]  # fmt: skip
        assert entry.detail["warnings"] == [RULE]
        assert entry.detail["findings"][0]["field"] == "inspectors[1].certificate_number"
        report = {q.system: q for q in quality_report(journal, since=since)}
        assert report["hrss-county"].warnings == {RULE: 1}
        assert report["hrss-penalty"].rejections[RULE] == 1
        assert report["hrss-penalty"].unchecked["catalogue-item-in-force"] >= 3
        figures = {q.system: q for q in quality_figures(journal, since=since)}
        for system, expected in report.items():
            found = figures[system]
            assert (found.warnings, found.unchecked, found.rejections, found.accepted) == (
                expected.warnings, expected.unchecked, expected.rejections, expected.accepted
            )  # fmt: skip
        # As `jghub quality` and the console's overview print them.
        shown = Console(record=True, width=600)
        shown.print(quality_table(list(figures.values()), title="quality"))
        text = shown.export_text()
        assert f"{RULE} ×1" in text and "catalogue-item-in-force ×" in text
