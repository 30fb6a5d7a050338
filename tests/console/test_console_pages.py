"""The operators' console over HTTP: its pages behind the operator accounts, a reader who cannot
replay, the form token, hostile values shown as text, filters in the address, the same figures
as the API and `jghub quality`.

A real hub (uvicorn on a loopback port, tests/support/hub_harness.py) on the embedded bus, its
journal and ledger in the data folder; dead letters are made on that bus with the reasons a
test chooses, as a worker makes them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hub_harness import ECO_KEY, RunningHub, running_hub, sample, serving
from ledger_support import ECO, MARKET, task, warning
from lxml import html
from monitor_support import consume
from operator_accounts import OPERATOR, READER, write_operators
from prometheus_client import CollectorRegistry, Gauge
from quarantine_support import cases, copied_mappings, fix_case_source, push

from bus import Delivery, Outgoing
from console.csrf import CsrfRefused, FormTokens
from hub.app import create_app
from monitor.journal import Journal, Step
from monitor.metrics import scrape_registry
from monitor.operators import (
    Operator,
    OperatorAccount,
    OperatorAccounts,
    OperatorGate,
    Role,
    hash_secret,
)
from monitor.overview import breaker_states
from monitor.quality import quality_report
from monitor.quarantine import State
from standard.envelope import Envelope

TARGET = "grassroots-platform"  # eco-env-penalty's penalty cases go to the grassroots outbox
HOSTILE = '<script>alert("dead")</script>'
WHY = "target fixed its schema <b>really</b>"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningHub]:
    monkeypatch.setenv("JGHUB_OPERATORS_FILE", str(write_operators(tmp_path)))
    monkeypatch.setenv("JGHUB_JOURNAL__FLUSH_INTERVAL_S", "0.05")
    with running_hub(tmp_path, "embedded", monkeypatch=monkeypatch) as running:
        yield running


def dead_letters(hub: RunningHub, reasons: list[str]) -> list[str]:
    """One penalty case message per reason, dead-lettered for the grassroots target with it."""
    broker = hub.broker()
    ids = broker.publish_many(
        [Outgoing("penalty_case.330100.eco-env-penalty", f'{{"n": {n}}}'.encode())
         for n in range(len(reasons))]
    )  # fmt: skip
    by_id = dict(zip(ids, reasons, strict=True))

    def refuse(delivery: Delivery) -> None:
        delivery.dead_letter(by_id[delivery.message.id], "deliver")

    assert consume(broker, TARGET, refuse, len(ids)) == len(ids)
    return ids


def page(
    hub: RunningHub, path: str, auth: tuple[str, str] = READER, **params: str
) -> html.HtmlElement:
    answer = hub.client.get(path, params=params, auth=auth)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    return html.fromstring(answer.text)


def rows(document: html.HtmlElement, table: str) -> list[list[str]]:
    """The text of each cell of each body row of the table with id (or class) `table`."""
    return [
        [" ".join(cell.text_content().split()) for cell in row.xpath("./td")]
        for row in document.xpath(f"//table[@id='{table}' or @class='{table}']/tbody/tr")
    ]


def token_of(document: html.HtmlElement) -> str:
    (token,) = document.xpath("//input[@name='token']/@value")
    return str(token)


def test_console_pages_need_an_operator_account(hub: RunningHub) -> None:
    for path in ("/console", "/console/dead-letters", "/console/centre", "/console/dead-letters/x"):
        anonymous = hub.client.get(path)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["www-authenticate"] == 'Basic realm="jghub operators"'
        assert "HTTP Basic" in html.fromstring(anonymous.text).get_element_by_id("why").text
        assert hub.client.get(path, auth=(READER[0], "wrong secret")).status_code == 401
    # The style sheet is public and served by the hub itself.
    css = hub.client.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    # The API's errors stay JSON.
    assert hub.client.get("/dead-letters").json()["detail"].startswith("operator routes need")


def test_console_pages_say_they_run_no_script_and_are_not_cached(hub: RunningHub) -> None:
    answer = hub.client.get("/console", auth=READER)
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert "frame-ancestors 'none'" in policy and "form-action 'self'" in policy
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"
    # Every asset the page names is the hub's own.
    document = html.fromstring(answer.text)
    assets = document.xpath("//link/@href | //script/@src | //img/@src")
    assert assets == ["/console/static/console.css"]


def test_console_dead_letters_show_hostile_reasons_as_text(hub: RunningHub) -> None:
    (hostile, rtl) = dead_letters(hub, [HOSTILE, "HTTP 503 \u202eevil\u202c"])
    answer = hub.client.get("/console/dead-letters", auth=READER)
    assert HOSTILE not in answer.text  # never as markup
    assert "&lt;script&gt;alert(&#34;dead&#34;)&lt;/script&gt;" in answer.text
    document = html.fromstring(answer.text)
    assert not document.xpath("//script")
    reasons = {cells[0]: cells[-1] for cells in rows(document, "dead-letters")}
    assert reasons[hostile] == HOSTILE  # shown, as the text it is
    assert reasons[rtl] == "HTTP 503 \\u202eevil\\u202c"  # no reordering character reaches the page
    detail = page(hub, f"/console/dead-letters/{hostile}")
    assert not detail.xpath("//script")
    assert HOSTILE in [" ".join(dd.text_content().split()) for dd in detail.xpath("//dd")]


def test_console_dead_letters_filter_by_target_reason_and_age_in_the_address(
    hub: RunningHub,
) -> None:
    busy = dead_letters(hub, ["HTTP 503 from grassroots", "HTTP 503 from grassroots"])
    (refused,) = dead_letters(hub, ["HTTP 400: xm missing"])
    every = page(hub, "/console/dead-letters")
    assert {cells[0] for cells in rows(every, "dead-letters")} == {*busy, refused}
    # By system id, or by the name with '_' it had before, as the API takes them: named by its id.
    for spelt in ("grassroots-platform", "grassroots_platform"):
        by_reason = page(hub, "/console/dead-letters", target=spelt, reason="503")
        assert sorted(cells[0] for cells in rows(by_reason, "dead-letters")) == sorted(busy)
        assert {cells[1] for cells in rows(by_reason, "dead-letters")} == {TARGET}
        assert by_reason.xpath("//select[@name='target']/option[@selected]/@value") == [TARGET]
    assert by_reason.xpath("//input[@name='reason']/@value") == ["503"]
    assert rows(page(hub, "/console/dead-letters", older_than="1h"), "dead-letters") == []
    time.sleep(1.1)
    assert len(rows(page(hub, "/console/dead-letters", older_than="1s"), "dead-letters")) == 3
    # Blank fields (a form sent as it is) mean no filter.
    assert len(rows(page(hub, "/console/dead-letters", target="", reason=""), "dead-letters")) == 3
    bad_age = hub.client.get("/console/dead-letters", params={"older_than": "soon"}, auth=READER)
    assert bad_age.status_code == 400
    why = html.fromstring(bad_age.text).get_element_by_id("why").text_content()
    assert "'soon' is not a number followed by s, m, h, d or w" in why
    unknown = hub.client.get("/console/dead-letters", params={"target": "nowhere"}, auth=READER)
    assert unknown.status_code == 404 and "grassroots-platform" in unknown.text


def test_console_reader_sees_no_body_and_no_replay_and_is_refused_if_it_posts(
    hub: RunningHub,
) -> None:
    (dead,) = dead_letters(hub, ["HTTP 503 from grassroots"])
    listing = page(hub, "/console/dead-letters")
    assert not listing.xpath("//form[@method='post']") and not listing.xpath("//input[@name='id']")
    detail = page(hub, f"/console/dead-letters/{dead}")
    assert not detail.xpath("//pre[@class='body']") and not detail.xpath("//form[@method='post']")
    assert "shown to accounts with the operator role" in detail.text_content()
    posted = hub.client.post(
        "/console/dead-letters/replay",
        data={"id": dead, "why": "the reader tries anyway", "token": "anything"},
        auth=READER,
    )
    assert posted.status_code == 403
    assert "has the role reader; this needs the role operator" in posted.text
    assert [cells[0] for cells in rows(page(hub, "/console/dead-letters"), "dead-letters")] == [
        dead
    ]
    journal = hub.runtime.journal
    assert journal is not None
    assert [e.step for e in journal.trace(dead)] == []  # nothing read, nothing replayed


def test_console_replay_needs_the_form_token_of_the_account(hub: RunningHub) -> None:
    (dead,) = dead_letters(hub, ["HTTP 503 from grassroots"])
    token = token_of(page(hub, f"/console/dead-letters/{dead}", auth=OPERATOR))
    form = {"id": dead, "why": WHY, "target": TARGET}
    for forged, rule in (
        ({}, "the form carries no token"),
        ({"token": token[:-2] + ("AA" if token[-2:] != "AA" else "BB")}, "not issued to this"),
        ({"token": "a.b.c"}, "not issued to this account"),
    ):
        refused = hub.client.post(
            "/console/dead-letters/replay", data={**form, **forged}, auth=OPERATOR
        )
        assert refused.status_code == 403, forged
        assert rule in html.fromstring(refused.text).get_element_by_id("why").text_content()
    left = page(hub, "/console/dead-letters")
    assert [cells[0] for cells in rows(left, "dead-letters")] == [dead]


def test_console_replay_moves_what_was_ticked_and_journals_who_and_why(hub: RunningHub) -> None:
    first, second, kept = dead_letters(hub, ["HTTP 503 a", "HTTP 503 b", "HTTP 400 c"])
    listing = page(hub, "/console/dead-letters", auth=OPERATOR)
    ticks = listing.xpath("//input[@type='checkbox'][@name='id']/@value")
    assert sorted(ticks) == sorted([first, second, kept])
    short = hub.client.post(
        "/console/dead-letters/replay",
        data={"id": [first], "why": "no", "token": token_of(listing)},
        auth=OPERATOR,
    )
    assert short.status_code == 400 and "at least 5 characters" in short.text
    done = hub.client.post(
        "/console/dead-letters/replay",
        data={"id": [first, second], "why": WHY, "token": token_of(listing), "target": ""},
        auth=OPERATOR,
    )
    assert done.status_code == 200, done.text
    answer = html.fromstring(done.text)
    assert " ".join(answer.get_element_by_id("outcome").text_content().split()) == (
        f"Replayed 2 of 2 asked by ops-li: {WHY}"
    )
    assert "<b>really</b>" not in done.text and "&lt;b&gt;really&lt;/b&gt;" in done.text
    left = page(hub, "/console/dead-letters")
    assert [cells[0] for cells in rows(left, "dead-letters")] == [kept]
    journal = hub.runtime.journal
    assert journal is not None
    for message_id in (first, second):
        (replayed,) = [e for e in journal.trace(message_id) if e.step is Step.REPLAYED]
        assert (replayed.reason, replayed.detail["by"], replayed.target) == (WHY, "ops-li", TARGET)
    # Replaying again what moved already moves nothing, and says so.
    again = hub.client.post(
        "/console/dead-letters/replay",
        data={"id": [first], "why": WHY, "token": token_of(listing)},
        auth=OPERATOR,
    )
    assert (
        "Replayed 0 of 1" in html.fromstring(again.text).get_element_by_id("outcome").text_content()
    )


def test_console_operator_reads_a_body_and_the_read_is_journalled(hub: RunningHub) -> None:
    (dead,) = dead_letters(hub, ["HTTP 503 from grassroots"])
    detail = page(hub, f"/console/dead-letters/{dead}", auth=OPERATOR)
    (body,) = detail.xpath("//pre[@class='body']")
    assert body.text_content().strip() == '{"n": 0}'
    history = rows(detail, "history")
    assert history[-1][2:] == ["deliver", "yes", "HTTP 503 from grassroots"]
    journal = hub.runtime.journal
    assert journal is not None
    (read,) = journal.trace(dead)
    assert read.step is Step.OPERATOR_READ
    assert (read.detail["by"], read.detail["via"]) == ("ops-li", "console")
    missing = hub.client.get("/console/dead-letters/no-such-id", auth=OPERATOR)
    assert missing.status_code == 404
    why = html.fromstring(missing.text).get_element_by_id("why").text_content()
    assert why == "no dead letter 'no-such-id' (replayed already, or never dead)"


def test_console_overview_shows_the_figures_of_jghub_quality_and_the_bus(hub: RunningHub) -> None:
    since = datetime.now(UTC) - timedelta(minutes=5)
    dead_letters(hub, ["HTTP 503 from grassroots"])
    pushed = hub.client.post(
        "/systems/eco-env-penalty/xml/case_batch",
        content=sample("eco-env-penalty", "case_batch", "invalid-records"),
        headers={"X-Api-Key": ECO_KEY, "Content-Type": "application/xml; charset=gb2312"},
    )
    assert pushed.status_code == 200, pushed.text
    journal = hub.runtime.journal
    assert journal is not None
    # A delivery journalled before targets took their system's id names it with '_': it counts.
    journal.record(Step.DELIVERED, message_id="m-before", target="grassroots_platform")
    journal.record(Step.DELIVERED, message_id="m-after", target="grassroots-platform")
    record_assumed_values(journal)
    journal.flush()
    (expected,) = quality_report(journal, since=since, system="eco-env-penalty")
    (assumed,) = quality_report(journal, since=since, system="agri-penalty")
    document = page(hub, "/console", since="5m")
    systems = {cells[0]: cells[1:] for cells in rows(document, "systems")}
    assert list(systems) == [
        "grassroots-platform", "eco-env-penalty", "throttled-platform", "complaint-platform",
        "housing-penalty", "agri-penalty",
    ]  # fmt: skip
    received, accepted, rejected, refused = (int(n) for n in systems["eco-env-penalty"][:4])
    assert (accepted, rejected) == (expected.accepted, expected.rejected) == (1, 3)
    assert received == accepted + rejected + refused
    # What waits is the bus's: one message queued for grassroots (the accepted case), one dead.
    grassroots = systems["grassroots-platform"]
    assert grassroots[8:10] == ["1", "1"], grassroots
    assert grassroots[4] == "2", grassroots
    # As this process's metrics say (a worker of another test in this process may have run it).
    assert grassroots[11] == breaker_states(scrape_registry()).get(TARGET, "—")
    assert "receives nothing" in systems["throttled-platform"][4]
    quality = {cells[0]: cells for cells in rows(document, "quality")}
    assert quality["eco-env-penalty"][3] == "25.0%"
    assert "mandatory ×1" in quality["eco-env-penalty"][9]
    # Assumed (not sent), beside completeness: only the accepted records' fields, as `score`.
    assert quality["eco-env-penalty"][5] == ""
    assert (assumed.assumed_records, dict(assumed.assumed)) == (2, {"status": 2, "case_source": 1})
    (cell,) = document.xpath("//table[@id='quality']/tbody/tr[td[1]='agri-penalty']/td[6]")
    assert [tag.text for tag in cell.xpath("./span")] == ["status ×2", "case_source ×1"]
    assert cell.get("title") == "2 accepted records with values assumed"
    bad = hub.client.get("/console", params={"since": "yesterday"}, auth=READER)
    assert bad.status_code == 400 and "since:" in bad.text


def record_assumed_values(journal: Journal) -> None:
    """agri-penalty's records as the observer journals them when its mapping assumes fields: two
    accepted, one the hub refused afterwards (its assumed field is not counted)."""
    for n, assumed in enumerate((["status"], ["case_source", "status"], ["township"])):
        journal.record(
            Step.RECEIVED, message_id=f"m-assumed-{n}", receipt="r-assumed", system="agri-penalty",
            dataset="penalty_case", detail={"subject": f"K-{n}", "assumed": assumed},
        )  # fmt: skip
    journal.record(
        Step.NOT_PUBLISHED, message_id="m-assumed-2", receipt="r-assumed", system="agri-penalty",
        reason="no route", detail={"rule": "unroutable"},
    )  # fmt: skip


def test_console_centre_lists_rows_by_filter_with_the_scorecard(hub: RunningHub) -> None:
    ledger = hub.runtime.ledger
    assert ledger is not None
    recent = datetime.now(UTC) - timedelta(hours=2)
    long_ago = datetime.now(UTC) - timedelta(days=40)
    for envelope in (
        warning("YJ-OLD", level="A", issued=long_ago),
        warning("YJ-NEW", level="D", issued=recent),
        warning("YJ-ECO", level="D", issued=recent, department=ECO),
    ):
        ledger.record(ledger.steps_published("grassroots-platform", envelope))
    ledger.record(ledger.steps_published("grassroots-platform", task("1", task_id="RW-9")))
    every = page(hub, "/console/centre")
    items = {cells[1]: cells for cells in rows(every, "items")}
    assert set(items) == {"YJ-OLD", "YJ-NEW", "YJ-ECO", "RW-9"}
    assert "overdue" in items["YJ-OLD"][3] and "overdue" not in items["YJ-NEW"][3]
    overdue = page(hub, "/console/centre", overdue="true")
    assert [cells[1] for cells in rows(overdue, "items")] == ["RW-9", "YJ-OLD"]  # oldest first
    overdue = page(hub, "/console/centre", overdue="true", kind="warning")
    assert [cells[1] for cells in rows(overdue, "items")] == ["YJ-OLD"]
    assert overdue.xpath("//input[@name='overdue']/@checked")
    market = page(hub, "/console/centre", department=MARKET["name"], kind="warning")
    assert sorted(cells[1] for cells in rows(market, "items")) == ["YJ-NEW", "YJ-OLD"]
    card = rows(market, "scorecard")
    # The scorecard is the department's (both kinds), as `jghub quality --department` prints it.
    assert sorted((c[0], c[1], c[7]) for c in card) == [
        (MARKET["name"], "task", "1"),
        (MARKET["name"], "warning", "1"),
    ]
    bad = hub.client.get("/console/centre", params={"state": "lost"}, auth=READER)
    assert bad.status_code == 400
    assert "state 'lost' is not one of" in html.fromstring(bad.text).get_element_by_id("why").text
    item = page(hub, "/console/centre/items/YJ-OLD")
    assert [cells[0] for cells in rows(item, "rows")] == [MARKET["name"]]
    assert [cells[3] for cells in rows(item, "timeline")][:1] == ["dispatched"]
    missing = hub.client.get("/console/centre/items/nothing", auth=READER)
    assert missing.status_code == 404


def test_console_pages_keep_their_filters_in_links(hub: RunningHub) -> None:
    (dead,) = dead_letters(hub, ["HTTP 503 a/b"])
    listing = page(hub, "/console/dead-letters", reason="503")
    (link,) = listing.xpath("//table[@id='dead-letters']//a/@href")
    assert link == f"/console/dead-letters/{dead}"
    # Every page's address is enough to see it again: no state outside the URL and the account.
    again = httpx.get(f"{hub.base_url}/console/dead-letters?reason=503", auth=READER)
    assert re.findall(r'name="reason" value="([^"]*)"', again.text) == ["503"]


def test_console_overview_reads_each_breaker_as_the_workers_report_it() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("jghub_breaker_state", "as the hub's", ["target"], registry=registry)
    for target, level in (("national", 2), ("credit", 1), ("grassroots-platform", 0)):
        gauge.labels(target).set(level)
    assert breaker_states(registry) == {
        "national": "open",
        "credit": "half-open",
        "grassroots-platform": "closed",
    }


def test_console_form_tokens_are_tied_to_the_account_its_secret_and_their_age() -> None:
    def gate(**secrets: str) -> OperatorGate:
        accounts = [
            OperatorAccount(name=name, role=Role.OPERATOR, secret_hash=hash_secret(secret))
            for name, secret in secrets.items()
        ]
        return OperatorGate(OperatorAccounts(operators=accounts))

    both = gate(**{"ops-li": "li-secret-for-tests", "ops-zhao": "zhao-secret-for-tests"})
    li, zhao = Operator("ops-li", Role.OPERATOR), Operator("ops-zhao", Role.OPERATOR)
    tokens = FormTokens(both)
    issued = tokens.issue(li)
    tokens.check(li, issued)
    with pytest.raises(CsrfRefused, match="not issued to this account"):
        tokens.check(zhao, issued)
    # A new secret (a new hash in the accounts file) voids the tokens issued before.
    renewed = FormTokens(gate(**{"ops-li": "li-new-secret-for-tests"}))
    with pytest.raises(CsrfRefused, match="not issued to this account") as refused:
        renewed.check(li, issued)
    assert refused.value.status == 403
    stale = FormTokens(both, max_age_s=1)
    old = stale.issue(li)
    time.sleep(2.1)
    with pytest.raises(CsrfRefused, match="older than"):
        stale.check(li, old)


# -- the quarantine and search pages --------------------------------------------------------------

HOSTILE_PAYLOAD = (
    b'{"records": [\n  {"caseInfo": {"caseNo": "<script>alert(\\"q\\")</script>"}},\n  {oops\n'
)
"""A payload that does not parse (line 3), carrying a script a page must show as text."""
RELEASE_WHY = "mapping fixed: case source 10 maps to <b>其他</b>"


@pytest.fixture
def fixable_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningHub]:
    """A hub whose mapping folders are copies, so a test can deploy a fix on disk."""
    monkeypatch.setenv("JGHUB_OPERATORS_FILE", str(write_operators(tmp_path)))
    monkeypatch.setenv("JGHUB_JOURNAL__FLUSH_INTERVAL_S", "0.05")
    overrides = {"mappings_root": copied_mappings(tmp_path)}
    with running_hub(
        tmp_path, "embedded", monkeypatch=monkeypatch, settings_overrides=overrides
    ) as running:
        yield running


def quarantined(hub: RunningHub, payload: bytes) -> str:
    """Push `payload` as agri-penalty; the quarantine id its answer names."""
    answer = push(hub.client, payload)
    assert answer.json().get("quarantine_id"), answer.text
    return str(answer.json()["quarantine_id"])


def test_console_quarantine_shows_a_hostile_payload_as_text_with_its_line_marked(
    fixable_hub: RunningHub,
) -> None:
    hub = fixable_hub
    entry = quarantined(hub, HOSTILE_PAYLOAD)
    listing = page(hub, "/console/quarantine", system="agri-penalty", state="held")
    (row,) = rows(listing, "quarantine")
    assert row[0] == entry and row[2] == "agri-penalty" and row[7] == "held"
    assert rows(page(hub, "/console/quarantine", state="released"), "quarantine") == []
    assert rows(page(hub, "/console/quarantine", reason="no such reason"), "quarantine") == []

    answer = hub.client.get(f"/console/quarantine/{entry}", auth=READER)
    assert answer.status_code == 200, answer.text
    assert b"<script>alert" not in answer.content  # never as markup
    document = html.fromstring(answer.text)
    assert not document.xpath("//script")
    lines = rows(document, "payload")
    assert [number for number, _ in lines] == ["1", "2", "3", "4"][: len(lines)]
    assert '"<script>alert(\\"q\\")</script>"' in lines[1][1]  # shown, as the text it is
    (reason,) = rows(document, "reasons")
    assert reason[3] == "malformed" and reason[0].startswith("payload at byte")
    # The line the reason names is marked, and the reason links to it.
    assert document.xpath("//table[@id='payload']//tr[@class='named']/@id") == [f"L{reason[1]}"]
    assert document.xpath("//table[@id='reasons']//a/@href") == [f"#L{reason[1]}"]
    # A reader has no form to act with; the download gives the bytes as kept.
    assert not document.xpath("//form[@method='post']")
    (download,) = document.xpath("//a[@id='download']/@href")
    kept = hub.client.get(download, auth=READER)
    assert kept.content == HOSTILE_PAYLOAD
    assert kept.headers["content-type"].startswith("application/json")
    journal = hub.runtime.journal
    assert journal is not None
    reads = [e for e in journal.trace(entry) if e.step is Step.OPERATOR_READ]
    assert [(e.detail["by"], e.detail["via"]) for e in reads] == [
        ("ops-wang", "console"),
        ("ops-wang", "http"),
    ]
    missing = hub.client.get("/console/quarantine/never-given", auth=READER)
    assert missing.status_code == 404 and "never-given" in missing.text
    bad = hub.client.get("/console/quarantine", params={"older_than": "soon"}, auth=READER)
    assert bad.status_code == 400 and "older_than" in bad.text


def test_console_quarantine_refuses_a_reader_and_a_form_without_its_token(
    fixable_hub: RunningHub,
) -> None:
    hub = fixable_hub
    entry = quarantined(hub, cases()[0])
    form = {"why": "the department resent it", "token": "x"}
    for act in ("release", "discard"):
        posted = hub.client.post(f"/console/quarantine/{entry}/{act}", data=form, auth=READER)
        assert posted.status_code == 403, act
        forged = hub.client.post(f"/console/quarantine/{entry}/{act}", data=form, auth=OPERATOR)
        assert forged.status_code == 403 and "not issued to this account" in forged.text
    assert hub.kept(entry).state is State.HELD and hub.kept(entry).payload_kept

    shown = page(hub, f"/console/quarantine/{entry}", auth=OPERATOR)
    assert shown.xpath("//form/@id") == ["release", "discard"]
    short = {"why": "no", "token": token_of_form(shown, "discard")}
    refused = hub.client.post(f"/console/quarantine/{entry}/discard", data=short, auth=OPERATOR)
    assert refused.status_code == 400 and "a discard needs a reason" in refused.text
    why = {"why": "the department resent it <i>fixed</i>", "token": token_of_form(shown, "discard")}
    done = hub.client.post(f"/console/quarantine/{entry}/discard", data=why, auth=OPERATOR)
    assert done.status_code == 200, done.text
    outcome = html.fromstring(done.text)
    assert outcome.get_element_by_id("state").text_content() == "discarded"
    assert outcome.get_element_by_id("why").text_content() == why["why"]
    assert not hub.kept(entry).payload_kept
    again = hub.client.post(f"/console/quarantine/{entry}/discard", data=why, auth=OPERATOR)
    assert again.status_code == 409 and "was discarded by ops-li" in again.text
    # A discarded entry offers no form and no download.
    assert not page(hub, f"/console/quarantine/{entry}", auth=OPERATOR).xpath(
        "//form[@method='post'] | //a[@id='download']"
    )


def token_of_form(document: html.HtmlElement, form: str) -> str:
    (token,) = document.xpath(f"//form[@id='{form}']/input[@name='token']/@value")
    return str(token)


def test_console_quarantine_release_after_a_fix_publishes_once(fixable_hub: RunningHub) -> None:
    hub = fixable_hub
    payload, case_number = cases()
    entry = quarantined(hub, payload)
    assert len(hub.drain(TARGET, 4)) == 4
    (reason,) = rows(page(hub, f"/console/quarantine/{entry}"), "reasons")
    assert reason[0].startswith("record 3") and reason[2] == "case_source"

    # The fix is deployed and serve restarted: its mappings are those on disk now.
    fix_case_source(hub.settings.mappings_root)
    with serving(create_app(hub.settings)) as url, httpx.Client(base_url=url) as restarted:
        shown = restarted.get(f"/console/quarantine/{entry}", auth=OPERATOR)
        form = {"why": RELEASE_WHY, "token": token_of_form(html.fromstring(shown.text), "release")}
        done = restarted.post(f"/console/quarantine/{entry}/release", data=form, auth=OPERATOR)
        assert done.status_code == 200, done.text
        outcome = html.fromstring(done.text)
        assert outcome.get_element_by_id("outcome").text_content() == (
            "Released by ops-li: 1 record(s) published, 4 published before, "
            "0 still rejected, 0 not confirmed by the bus."
        )
        assert outcome.get_element_by_id("state").text_content() == "released"
        assert outcome.get_element_by_id("why").text_content() == RELEASE_WHY
        (message,) = hub.drain(TARGET, 1)
        again = restarted.post(f"/console/quarantine/{entry}/release", data=form, auth=OPERATOR)
        assert again.status_code == 409 and "was released by ops-li" in again.text
    time.sleep(0.5)
    assert hub.depth(TARGET) == 0  # published once
    properties = {"content_type": message.content_type, "headers": message.headers}
    assert Envelope.from_amqp(properties, message.body).subject == case_number
    journal = hub.runtime.journal
    assert journal is not None
    (released,) = [e for e in journal.trace(entry) if e.step is Step.RELEASED]
    assert (released.detail["by"], released.reason) == ("ops-li", RELEASE_WHY)


def test_console_search_shows_the_records_and_links_each_step(fixable_hub: RunningHub) -> None:
    hub = fixable_hub
    payload, _ = cases()
    answer = push(hub.client, payload).json()
    entry, receipt = answer["quarantine_id"], answer["receipt_id"]
    page(hub, f"/console/quarantine/{entry}")  # a read the journal keeps under the entry's id
    journal = hub.runtime.journal
    assert journal is not None
    journal.flush()

    by_receipt = page(hub, "/console/search", q=receipt)
    assert by_receipt.xpath("//input[@name='q']/@value") == [receipt]
    published = {cells[2] for cells in rows(by_receipt, "timeline") if cells[4] == "published"}
    assert len(published) == 4
    assert {cells[1] for cells in rows(by_receipt, "records")} >= published
    # A record the search did not start from is searched by its link.
    links = by_receipt.xpath("//table[@id='records']//a/@href")
    assert {f"/console/search?q={key}" for key in published} <= set(links)
    assert "rejected" in [cells[4] for cells in rows(by_receipt, "timeline")]

    by_entry = page(hub, "/console/search", q=entry)
    read = [cells for cells in rows(by_entry, "timeline") if cells[4] == "operator_read"]
    assert len(read) == 1 and read[0][-1] == "quarantine entry"
    # The refusal names the entry too (and the rejected record's case number): both link to it.
    assert [cells[4] for cells in rows(by_entry, "timeline")] == ["rejected", "operator_read"]
    assert (
        by_entry.xpath("//table[@id='timeline']//a/@href") == [f"/console/quarantine/{entry}"] * 2
    )

    nothing = page(hub, "/console/search", q="NO-SUCH-KEY")
    assert "no journal entry names 'NO-SUCH-KEY'" in nothing.get_element_by_id("note").text
    assert not nothing.xpath("//table")
    assert page(hub, "/console/search").xpath("//input[@name='q']/@value") == [""]
