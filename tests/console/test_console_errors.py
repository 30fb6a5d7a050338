"""The console's errors are pages in its layout, saying what failed and what to do, with the
status kept: the store gone (its PostgreSQL database dropped under a running hub), an unknown
quarantine id or dead letter, a reader trying an operator's action, an unknown page. The API's
routes keep their own answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hub_harness import RunningHub, running_hub
from lxml import html
from operator_accounts import OPERATOR, READER, write_operators
from store_support import create_database, drop_database, fresh_store_url, require_postgresql

from store import Store


def error_page(answer: httpx.Response, status: int) -> html.HtmlElement:
    """The error page `answer` is: HTML in the console's layout, with `status`."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html"), answer.text
    assert answer.headers["cache-control"] == "no-store"
    document = html.fromstring(answer.text)
    assert document.xpath("//header/nav/a[@href='/console/quarantine']")  # the layout
    assert document.xpath("string(//h1)").startswith(str(status))
    assert document.get_element_by_id("why").text_content().strip()
    assert document.get_element_by_id("todo").text_content().strip()
    return document


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningHub]:
    monkeypatch.setenv("JGHUB_OPERATORS_FILE", str(write_operators(tmp_path)))
    with running_hub(tmp_path, "embedded", monkeypatch=monkeypatch) as running:
        yield running


@pytest.mark.postgresql
def test_console_pages_answer_an_html_503_while_the_store_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_postgresql()
    monkeypatch.setenv("JGHUB_OPERATORS_FILE", str(write_operators(tmp_path)))
    with fresh_store_url("postgresql", tmp_path) as url:
        overrides = {"database_url": url, "database_migrate": True}
        with running_hub(tmp_path, "embedded", settings_overrides=overrides) as hub:
            assert hub.client.get("/console/quarantine", auth=READER).status_code == 200
            drop_database(url)
            for path in (
                "/console/quarantine",
                "/console/quarantine/some-id",
                "/console/centre",
                "/console/centre/items/XT-1",
                "/console/search?q=TS330782202604080156",
                "/console",
            ):
                answer = hub.client.get(path, auth=READER)
                document = error_page(answer, 503)
                assert answer.headers["retry-after"] == "5", path
                why = document.get_element_by_id("why").text_content()
                assert "does not answer" in why, (path, why)
                assert "Nothing was changed" in document.get_element_by_id("todo").text_content()
                assert "postgresql" not in answer.text  # the database's address stays inside
            # The API's own routes keep their JSON answer.
            api = hub.client.get("/quarantine", auth=READER)
            assert api.status_code == 503 and "html" not in api.headers["content-type"]
            create_database(url)
            Store(url).upgrade()
            assert hub.client.get("/console/quarantine", auth=READER).status_code == 200


def test_console_unknown_ids_and_pages_answer_an_html_404(hub: RunningHub) -> None:
    for path, named in (
        ("/console/quarantine/never-given", "never-given"),
        ("/console/dead-letters/no-such-letter", "no-such-letter"),
        ("/console/centre/items/XT-NONE", "XT-NONE"),
        ("/console/no-such-page", "/console/no-such-page"),
    ):
        document = error_page(hub.client.get(path, auth=READER), 404)
        assert named in document.get_element_by_id("why").text_content(), path
    # The style sheet is still served beside the catch-all.
    assert hub.client.get("/console/static/console.css").status_code == 200


def test_console_a_reader_trying_an_operators_action_gets_an_html_403(hub: RunningHub) -> None:
    form = {"why": "the reader tries anyway", "token": "x", "id": "any"}
    for path in (
        "/console/quarantine/any/release",
        "/console/quarantine/any/discard",
        "/console/dead-letters/replay",
    ):
        document = error_page(hub.client.post(path, data=form, auth=READER), 403)
        why = document.get_element_by_id("why").text_content()
        assert "this needs the role operator" in why, (path, why)
        assert "operator role" in document.get_element_by_id("todo").text_content()
    # An operator without the form's token is refused as a page too.
    error_page(hub.client.post("/console/quarantine/any/release", data=form, auth=OPERATOR), 403)
    # No account: 401, the browser asked to sign in.
    anonymous = hub.client.get("/console/quarantine")
    error_page(anonymous, 401)
    assert anonymous.headers["www-authenticate"] == 'Basic realm="jghub operators"'
    # A query that does not parse.
    error_page(hub.client.get("/console/quarantine?limit=0", auth=READER), 400)
