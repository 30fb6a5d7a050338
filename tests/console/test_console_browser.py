"""The console in a real browser: the machine's Chromium, driven by Playwright, clicks through
every page of a real `jghub serve` and `jghub worker` on the embedded bus, replays what died
while the target was down, and sees it delivered once the target is back.

The hub is tests/support/fault_pipeline.py's: eco-env-penalty pushes XML case batches, national
receives them at a loopback sink that answers 503 (with a hostile body) while it is down. The
centre's ledger, in the same store, gets a warning and a task of ledger_support's. Screenshots
of every page are kept in tests/artefacts/console/ (git-ignored) for a person to look at.

Chromium is Debian's (/usr/bin/chromium, installed by .ci/run); Playwright never downloads a
browser here. Without it the test skips saying why, and fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from broker_support import skip_or_fail
from fault_pipeline import ECO_KEY, Pipeline, case_batch
from ledger_support import ECO, Clock, ledger_of, task, warning
from monitor_support import outgoing
from operator_accounts import OPERATOR, READER, write_operators
from serve_process import REPOSITORY

from hub.settings import HubSettings
from mappings import SYSTEMS_ROOT
from monitor.journal import Journal, JournalOptions
from monitor.observer import Observer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = Path(os.environ.get("JGHUB_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTEFACTS = REPOSITORY / "tests" / "artefacts" / "console"
HOSTILE_ANSWER = b"<script>alert('down')</script> national gateway down"
WHY = "national gateway back <script>alert('why')</script>"
TARGET = "national"
RELEASE_WHY = "retried after the department's mapping review"
DISCARD_WHY = "the department resent it whole <script>alert('why')</script>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        skip_or_fail(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        skip_or_fail(f"playwright cannot be imported ({error}): pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def line(tmp_path: Path) -> Iterator[Pipeline]:
    settings = {
        "JGHUB_OPERATORS_FILE": str(write_operators(tmp_path)),
        "JGHUB_JOURNAL__FLUSH_INTERVAL_S": "0.05",
    }
    with Pipeline(
        tmp_path, tiers=[0.2], in_process_attempts=1, settings=settings, bus_kind="embedded"
    ) as running:
        running.sink.down_body = HOSTILE_ANSWER
        running.sink.failing_until = time.monotonic() + 3600  # down until the test says
        running.start_worker()
        yield running


def shot(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def wait_for(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def cells(page: Page, table: str, first: str) -> list[str]:
    """The cells of the row of table `table` whose first cell is `first`."""
    row = page.locator(f"table#{table} tbody tr", has=page.locator("td", has_text=first)).first
    return [text.strip() for text in row.locator("td").all_inner_texts()]


def watched_page(context: BrowserContext) -> tuple[Page, list[str]]:
    """A page of `context`, and the messages of every dialog a script on it opens (dismissed):
    no script of a sender or an operator may ever run, so the list must stay empty."""
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return page, dialogs


def fill_the_centre(line: Pipeline) -> None:
    """A warning and a task, both overdue, for the market and the environment bureau, recorded
    in the hub's own ledger (the store serve and worker use) and journalled as national's
    messages, received and published, as the hub journals what it takes in."""
    settings = HubSettings(data_dir=line.folder / "var", systems_file=line.folder / "systems.yaml")
    store = settings.store()
    try:
        ledger = ledger_of(store, Clock(datetime.now(UTC)))
        overdue = warning("YJ-2026-0042", level="A", issued=datetime.now(UTC) - timedelta(days=40))
        envelopes = (overdue, task("1", task_id="RW-2026-0007", assignees=[ECO]))
        for envelope in envelopes:
            ledger.record(ledger.steps_published("national", envelope))
        with Journal(store, JournalOptions(flush_interval_s=0.01)) as journal:
            observer = Observer(journal=journal)
            for envelope in envelopes:
                seen = observer.received("national", "push", receipt=envelope.id, size=1)
                observer.translated(seen, seconds=0.001, envelopes=[envelope], errors=[])
                message = outgoing(envelope, "national")
                observer.published(seen, seconds=0.0, outgoing=[message])
    finally:
        store.close()


def test_console_in_chromium_from_a_dead_letter_to_its_delivery(
    browser: Browser, line: Pipeline
) -> None:
    pushed = line.push(0, 2)
    assert pushed.status_code == 200 and pushed.json()["accepted"] == 2, pushed.text
    broker = line.broker()
    wait_for(lambda: len(broker.dead_letters(TARGET)) == 2)
    fill_the_centre(line)

    context = browser.new_context(
        base_url=line.base, http_credentials={"username": OPERATOR[0], "password": OPERATOR[1]}
    )
    page, dialogs = watched_page(context)

    # The overview: what came in from eco-env-penalty, what died for national.
    page.goto("/console")
    assert page.title() == "Overview · jghub console"
    assert cells(page, "systems", "eco-env-penalty")[1:3] == ["2", "2"]
    national = cells(page, "systems", "national")
    assert national[5:8] == ["0", "2", "2"]  # delivered, retried, dead-lettered (the journal)
    assert national[10] == "2"  # dead now (the bus)
    shot(page, "1-overview-target-down")

    # Dead letters, by the link in the overview; the hostile answer shown as text.
    page.get_by_role("link", name="2", exact=True).first.click()
    page.wait_for_url("**/console/dead-letters?target=national")
    reasons = page.locator("table#dead-letters td.reason").all_inner_texts()
    assert len(reasons) == 2
    assert all("<script>alert('down')</script>" in reason for reason in reasons)
    shot(page, "2-dead-letters")

    # Filter by reason and age: the filters are in the address, to paste into a ticket.
    page.fill("input[name=reason]", "HTTP 503")
    page.fill("input[name=older_than]", "1s")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**reason=HTTP+503**")
    assert "older_than=1s" in page.url and "target=national" in page.url
    assert page.locator("table#dead-letters tbody tr").count() == 2

    # One dead letter's history and body (an operator's read, journalled).
    first = page.locator("table#dead-letters tbody tr a").first
    message_id = first.inner_text()
    first.click()
    page.wait_for_url(f"**/console/dead-letters/{message_id}")
    history = page.locator("table.history tbody tr").all_inner_texts()
    assert len(history) == 2 and all("HTTP 503" in row for row in history)
    assert "F-0000000000" in page.locator("pre.body").inner_text() or "F-0000000001" in (
        page.locator("pre.body").inner_text()
    )
    shot(page, "3-dead-letter-history")

    # The target is back; replay both from the list, with a reason.
    line.sink.failing_until = 0.0
    page.go_back()
    for box in page.locator("table#dead-letters input[type=checkbox]").all():
        box.check()
    page.fill("input[name=why]", WHY)
    page.get_by_role("button", name="Replay").click()
    page.wait_for_url("**/console/dead-letters/replay")
    assert page.locator("#outcome").inner_text() == f"Replayed 2 of 2 asked by ops-li: {WHY}"
    shot(page, "4-replayed")
    wait_for(lambda: line.sink.unique == 2)

    # Delivered, as the overview tells it from the journal.
    def delivered() -> bool:
        page.goto("/console?since=1h")
        return cells(page, "systems", "national")[5] == "2"

    wait_for(delivered, timeout=20)
    national = cells(page, "systems", "national")
    assert (national[8], national[10]) == ("2", "0")  # replayed 2, dead now 0
    assert national[12] == "closed"  # the worker's breaker, through the pooled metrics
    shot(page, "5-overview-delivered")

    # The centre: the overdue warning, filtered, then its timeline.
    page.get_by_role("link", name="Centre").click()
    assert page.locator("table#items tbody tr").count() == 2
    page.check("input[name=overdue]")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**overdue=true**")
    assert page.locator("table#items tbody tr").count() == 2
    page.select_option("select[name=kind]", "task")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**kind=task**")
    assert page.locator("table#items tbody tr").count() == 1
    assert page.locator("table#scorecard").is_visible()
    shot(page, "6-centre-overdue")
    page.get_by_role("link", name="RW-2026-0007").click()
    page.wait_for_url("**/console/centre/items/RW-2026-0007")
    assert "dispatched" in page.locator("table#timeline").inner_text()
    assert ECO["name"] in page.locator("table#rows").inner_text()
    shot(page, "7-centre-item")

    # The message's timeline by search: its dead-lettered step links to its dead letter page.
    page.get_by_role("link", name="Search").click()
    page.fill("input[name=q]", message_id)
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/console/search?q=**")
    timeline = page.locator("table#timeline tbody tr")
    steps = timeline.locator("td:nth-child(5)").all_inner_texts()
    assert steps[0] == "received" and {"dead_lettered", "replayed", "delivered"} <= set(steps)
    links = timeline.get_by_role("link", name="dead letter")
    hrefs = {links.nth(n).get_attribute("href") for n in range(links.count())}
    assert f"/console/dead-letters/{message_id}" in hrefs
    shot(page, "7b-search-delivered")
    assert dialogs == []  # no script of a sender or an operator ever ran
    context.close()


def test_console_in_chromium_a_reader_gets_no_replay_button(
    browser: Browser, line: Pipeline
) -> None:
    pushed = line.push(0, 1)
    assert pushed.status_code == 200, pushed.text
    broker = line.broker()
    wait_for(lambda: len(broker.dead_letters(TARGET)) == 1)
    context = browser.new_context(
        base_url=line.base, http_credentials={"username": READER[0], "password": READER[1]}
    )
    page = context.new_page()
    page.goto("/console/dead-letters")
    assert page.locator("table#dead-letters tbody tr").count() == 1
    assert page.get_by_role("button", name="Replay").count() == 0
    assert page.locator("header .who").inner_text() == "ops-wang · reader"
    shot(page, "8-reader-dead-letters")
    (dead,) = broker.dead_letters(TARGET)
    posted = context.request.post(
        "/console/dead-letters/replay",
        form={"id": dead.message.id, "why": "the reader tries anyway", "token": "x"},
    )
    assert posted.status == 403
    assert len(broker.dead_letters(TARGET)) == 1
    context.close()


def broken_batch() -> bytes:
    """A case batch cut short (its last line opens a tag it never closes), with a script in it
    that a page must show as text."""
    whole = case_batch(0, 1)
    return whole.replace(b"</cf:AJPC>", b"<script>alert('payload')</script>\n<cf:oops")


def test_console_in_chromium_quarantine_release_discard_and_search(
    browser: Browser, line: Pipeline
) -> None:
    assert line.client is not None
    pushed = line.client.post(
        "/systems/eco-env-penalty/xml/case_batch",
        content=broken_batch(),
        headers={"X-Api-Key": ECO_KEY, "Content-Type": "application/xml"},
    )
    assert pushed.status_code == 400, pushed.text
    entry = pushed.json()["quarantine_id"]
    context = browser.new_context(
        base_url=line.base, http_credentials={"username": OPERATOR[0], "password": OPERATOR[1]}
    )
    page, dialogs = watched_page(context)

    # The list, from the navigation, filtered to what is held.
    page.goto("/console")
    page.get_by_role("link", name="Quarantine").click()
    page.wait_for_url("**/console/quarantine")
    page.select_option("select[name=state]", "held")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**state=held**")
    assert cells(page, "quarantine", entry)[2] == "eco-env-penalty"
    shot(page, "9-quarantine-held")

    # The entry: its reason, the line it names marked, the script shown as text.
    page.get_by_role("link", name=entry).click()
    page.wait_for_url(f"**/console/quarantine/{entry}")
    (reason,) = page.locator("table#reasons tbody tr").all_inner_texts()
    assert "malformed" in reason
    marked = page.locator("table#payload tr.named").all_inner_texts()
    assert len(marked) == 1 and "cf:oops" in marked[0], reason
    assert "<script>alert('payload')</script>" in page.locator("table#payload").inner_text()
    shot(page, "10-quarantine-entry")

    # Released as it is: it still does not parse, so nothing goes out and it stays held.
    page.fill("form#release input[name=why]", RELEASE_WHY)
    page.get_by_role("button", name="Release: translate again and publish").click()
    page.wait_for_url(f"**/console/quarantine/{entry}/release")
    assert page.locator("#outcome").inner_text().startswith("Released by ops-li: 0 record(s)")
    assert page.locator("#state").inner_text() == "held"
    shot(page, "11-quarantine-release-still-held")

    # Discarded with a reason: the payload is dropped, who and why stay.
    page.goto(f"/console/quarantine/{entry}")
    page.fill("form#discard input[name=why]", DISCARD_WHY)
    page.get_by_role("button", name="Discard").click()
    page.wait_for_url(f"**/console/quarantine/{entry}/discard")
    assert page.locator("#state").inner_text() == "discarded"
    assert page.locator("#why").inner_text() == DISCARD_WHY
    assert not line.kept(entry).payload_kept
    shot(page, "12-quarantine-discarded")

    # Search by its id: the reads, the release and the discard, each linked back to the entry.
    page.get_by_role("link", name="Search").click()
    page.fill("input[name=q]", entry)
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/console/search?q=**")

    def journalled() -> bool:
        page.reload()
        steps = page.locator("table#timeline tbody tr td:nth-child(5)").all_inner_texts()
        return "discarded" in steps

    wait_for(journalled, timeout=20)
    steps = page.locator("table#timeline tbody tr td:nth-child(5)").all_inner_texts()
    assert {"operator_read", "released", "discarded"} <= set(steps)
    assert page.locator("#no-records").count() == 1  # a refused payload became no record
    shot(page, "13-search-quarantine")
    page.get_by_role("link", name="quarantine entry").last.click()
    page.wait_for_url(f"**/console/quarantine/{entry}")
    assert page.locator("#state").inner_text() == "discarded"
    assert page.locator("#payload-note").inner_text() == "the payload is no longer kept"
    assert dialogs == []
    context.close()


NEW_SOURCE = "WXYG"
"""A case source the department started sending before its mapping knew it (satellite imagery)."""


@pytest.fixture
def fixable_line(tmp_path: Path) -> Iterator[Pipeline]:
    """The pipeline with a copy of the mappings (a test fixes one on disk) and national up."""
    mappings = tmp_path / "mappings"
    shutil.copytree(SYSTEMS_ROOT, mappings)
    settings = {
        "JGHUB_OPERATORS_FILE": str(write_operators(tmp_path)),
        "JGHUB_JOURNAL__FLUSH_INTERVAL_S": "0.05",
        "JGHUB_MAPPINGS_ROOT": str(mappings),
    }
    with Pipeline(tmp_path, tiers=[0.2], settings=settings, bus_kind="embedded") as running:
        running.start_worker()
        yield running


def test_console_in_chromium_release_after_a_mapping_fix_on_disk(
    browser: Browser, fixable_line: Pipeline
) -> None:
    line = fixable_line
    assert line.client is not None
    batch = case_batch(0, 2).decode("gb18030")
    first, rest = batch.split("</cf:AJ>", 1)
    unknown = first.replace("<cf:AJLY>JCJC</cf:AJLY>", f"<cf:AJLY>{NEW_SOURCE}</cf:AJLY>")
    assert unknown != first
    pushed = line.client.post(
        "/systems/eco-env-penalty/xml/case_batch",
        content=(unknown + "</cf:AJ>" + rest).encode("gb18030"),
        headers={"X-Api-Key": ECO_KEY, "Content-Type": "application/xml"},
    )
    assert pushed.status_code == 200, pushed.text
    answer = pushed.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 1), answer
    entry, case_number = answer["quarantine_id"], "F-0000000000"
    wait_for(lambda: line.sink.unique == 1)  # the good record went out

    # The department's new code is added to the mapping's table on disk; serve is not restarted.
    table = Path(line.env["JGHUB_MAPPINGS_ROOT"]) / "eco-env-penalty" / "tables" / "case_source.csv"
    table.write_text(
        table.read_text(encoding="utf-8") + f"{NEW_SOURCE},8,卫星遥感监测发现\n", encoding="utf-8"
    )

    context = browser.new_context(
        base_url=line.base, http_credentials={"username": OPERATOR[0], "password": OPERATOR[1]}
    )
    page, dialogs = watched_page(context)
    page.goto(f"/console/quarantine/{entry}")
    (reason,) = page.locator("table#reasons tbody tr").all_inner_texts()
    assert "case_source" in reason and NEW_SOURCE in reason
    shot(page, "14-quarantine-unknown-code")
    page.fill("form#release input[name=why]", f"case_source table: code {NEW_SOURCE} added")
    page.get_by_role("button", name="Release: translate again and publish").click()
    page.wait_for_url(f"**/console/quarantine/{entry}/release")
    outcome = page.locator("#outcome").inner_text()
    assert outcome.startswith("Released by ops-li: 1 record(s) published, 1 published before,")
    assert page.locator("#state").inner_text() == "released"
    used = page.locator("#mapping").inner_text()
    assert "translated with the mapping eco-env-penalty on disk, version" in used
    assert "restart it to apply the fix" in used  # serve still pushes with what it started with
    shot(page, "15-quarantine-released-after-fix")
    wait_for(lambda: line.sink.unique == 2)  # and national received it

    # Search by the case number: the refusal, then the message it became, delivered.
    page.get_by_role("link", name="Search").click()
    page.fill("input[name=q]", case_number)
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/console/search?q=**")

    def delivered() -> bool:
        page.reload()
        steps = page.locator("table#timeline tbody tr td:nth-child(5)").all_inner_texts()
        return "delivered" in steps

    wait_for(delivered, timeout=20)
    # (The other record of the batch names the same inspection, so the search reaches it too.)
    rows = page.locator("table#timeline tbody tr", has=page.locator("td", has_text=case_number))
    steps = rows.locator("td:nth-child(5)").all_inner_texts()
    assert steps == ["rejected", "received", "published", "delivered"], steps
    assert cells(page, "records", case_number)[2] == "searched"
    shot(page, "16-search-released-record")
    assert dialogs == []
    context.close()


def test_console_in_chromium_search_links_to_the_centres_items(
    browser: Browser, line: Pipeline
) -> None:
    fill_the_centre(line)
    context = browser.new_context(
        base_url=line.base, http_credentials={"username": READER[0], "password": READER[1]}
    )
    page, dialogs = watched_page(context)
    for item, kind in (("RW-2026-0007", "collaboration_task"), ("YJ-2026-0042", "risk_warning")):
        page.goto("/console/search")
        page.fill("input[name=q]", item)
        page.get_by_role("button", name="Search").click()
        page.wait_for_url("**/console/search?q=**")
        assert cells(page, "records", item)[0] == kind
        link = page.locator("table#records").get_by_role("link", name=item, exact=True)
        assert link.get_attribute("href") == f"/console/centre/items/{item}"
        steps = page.locator("table#timeline").get_by_role("link", name="centre item")
        assert steps.count() >= 2  # received and published, each linked to the item
        shot(page, f"17-search-centre-{kind}")
        link.click()
        page.wait_for_url(f"**/console/centre/items/{item}")
        assert item in page.locator("h1").inner_text()
        assert page.locator("table#rows tbody tr").count() >= 1
        shot(page, f"18-centre-item-from-search-{kind}")
    assert dialogs == []
    context.close()
