"""Bounded work for hostile values (issue #13, item 2a): absurd numbers refused as they are read,
errors that quote a value quote a short excerpt, and a journal entry the file refuses for good is
refused loudly instead of blocking every later entry."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hub_harness import AGRI_KEY, ECO_KEY, RunningHub, running_hub, sample
from lxml import etree
from sqlalchemy import Connection

from mappings import MalformedPayload, NumberOutOfBoundsPayload, PayloadLimits
from mappings.payloads import parse_json, parse_xml
from monitor.journal import DETAIL_CHARS, REASON_CHARS, Journal, Step
from monitor.metrics import HUB_REGISTRY
from standard.errors import EXCERPT_CHARS, quoted, render_value
from standard.types import (
    MAX_NUMBER_DIGITS,
    MAX_NUMBER_EXPONENT,
    NumberOutOfBounds,
    bounded_number,
)

AGRI_PUSH = "/systems/agri-penalty/rest/case_records"
ECO_PUSH = "/systems/eco-env-penalty/xml/case_batch"
AGRI_HEADERS = {"content-type": "application/json", "Authorization": f"Bearer {AGRI_KEY}"}
ECO_HEADERS = {"X-Api-Key": ECO_KEY, "Content-Type": "application/xml"}
# Far below what a 1,000,000,003-character error would be; what any legitimate answer fits in.
SHORT = 1000


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    with running_hub(
        tmp_path_factory.mktemp("bounded"), "embedded", settings_overrides={"repeat_window_s": 0}
    ) as running:
        yield running


def _agri_records_with_fine(fine: str) -> bytes:
    """The shipped valid agri-penalty records, the first one's fine written as the JSON `fine`."""
    text = sample("agri-penalty", "case_records", "valid-records").decode("utf-8")
    written = text.replace('"fineAmount": "8000"', f'"fineAmount": {fine}', 1)
    assert written != text
    return written.encode("utf-8")


# --- numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fine", "why"),
    [
        ("8000e999999999", "10^1000000002"),
        ("9" * 5000, "5000 characters"),
        ("1." + "5" * 5000, "5002 characters"),
        ("1" * (MAX_NUMBER_DIGITS + 1), f"{MAX_NUMBER_DIGITS + 1} significant digits"),
        ("1e-41", "10^-41"),
    ],
    ids=["exponent", "5000-digit-integer", "5000-digit-fraction", "41-digits", "tiny"],
)
def test_an_absurd_json_number_is_refused_whole_with_a_short_error_and_kept(
    hub: RunningHub, fine: str, why: str
) -> None:
    payload = _agri_records_with_fine(fine)
    response = hub.client.post(AGRI_PUSH, content=payload, headers=AGRI_HEADERS)
    assert response.status_code == 400, response.text[:SHORT]
    assert len(response.content) < 2 * SHORT
    assert response.headers["content-type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    assert error["rule"] == "number-out-of-bounds"
    assert why in error["message"] and "number bounds" in error["message"]
    assert len(error["message"]) < SHORT
    # Where: the line of "fineAmount" in the sample.
    line = payload[: payload.index(b'"fineAmount"')].count(b"\n") + 1
    assert error["line"] == line and error["column"] > 1
    quarantine_id = response.json()["quarantine_id"]
    (kept,) = [q for q in hub.quarantined() if q.id == quarantine_id]
    assert kept.payload == payload


@pytest.mark.parametrize("fine", ["8000", "8000.00", "8e3", "1" * (MAX_NUMBER_DIGITS - 2) + ".00"])
def test_an_ordinary_json_number_is_read_exactly(hub: RunningHub, fine: str) -> None:
    response = hub.client.post(
        AGRI_PUSH, content=_agri_records_with_fine(fine), headers=AGRI_HEADERS
    )
    assert response.status_code == 200, response.text[:SHORT]
    answer = response.json()
    first = answer["records"][0]
    if len(fine) > 20:
        # Read (not refused as malformed), then refused by the standard as no amount in 元.
        assert first["status"] == "rejected"
        assert all(len(json.dumps(e)) < SHORT for e in first["errors"])
    else:
        assert first["status"] == "accepted", first


def test_an_absurd_number_in_xml_text_rejects_its_record_with_a_short_error(
    hub: RunningHub,
) -> None:
    batch = sample("eco-env-penalty", "case_batch", "valid-batch")
    hostile = batch.replace(b"<cf:FKJE>25</cf:FKJE>", b"<cf:FKJE>" + b"9" * 5000 + b"</cf:FKJE>")
    assert hostile != batch
    response = hub.client.post(ECO_PUSH, content=hostile, headers=ECO_HEADERS)
    assert response.status_code == 200
    assert len(response.content) < 4 * SHORT + len(
        hub.client.post(ECO_PUSH, content=batch, headers=ECO_HEADERS).content
    )
    answer = etree.fromstring(response.content)
    statuses = [r.get("status") for r in answer.findall("records/record")]
    assert statuses == ["rejected", "accepted", "accepted"]
    error = answer.find("records/record/error")
    assert error is not None
    assert error.findtext("field") == "fine_amount"
    assert "number bounds" in (error.findtext("message") or "")
    assert len(etree.tostring(error)) < 2 * SHORT


def test_the_bounds_are_at_the_documented_edges() -> None:
    edge = "9" * MAX_NUMBER_DIGITS
    assert bounded_number(edge) == Decimal(edge)
    assert bounded_number(f"1e{MAX_NUMBER_EXPONENT}") == Decimal(10) ** MAX_NUMBER_EXPONENT
    assert bounded_number(f"1e-{MAX_NUMBER_EXPONENT}") == Decimal(f"1e-{MAX_NUMBER_EXPONENT}")
    for beyond in (edge + "9", f"1e{MAX_NUMBER_EXPONENT + 1}", f"1e-{MAX_NUMBER_EXPONENT + 1}"):
        with pytest.raises(NumberOutOfBounds):
            bounded_number(beyond)
    # Python refuses int() of more than sys.get_int_max_str_digits() digits (4300 by default)
    # with a ValueError of its own; the hub's bound is far inside it, so that never happens.
    assert sys.get_int_max_str_digits() > MAX_NUMBER_DIGITS


def test_the_json_parser_names_where_the_absurd_number_is() -> None:
    payload = b'{"a": "8000e999999999",\n "b": [1, 8000e999999999]}'
    with pytest.raises(NumberOutOfBoundsPayload) as refused:
        parse_json(payload, PayloadLimits())
    # The number, not the string holding the same characters on line 1.
    assert (refused.value.line, refused.value.column) == (2, 11)
    assert refused.value.offset == payload.rindex(b"8000e")


# --- errors quote excerpts -----------------------------------------------------------------------


def test_an_error_about_a_1_mb_value_is_short(hub: RunningHub) -> None:
    big = "x" * 1_000_000
    text = sample("agri-penalty", "case_records", "valid-records").decode("utf-8")
    written = text.replace('"clueDate": "20260108"', f'"clueDate": "{big}"', 1)
    assert written != text
    response = hub.client.post(AGRI_PUSH, content=written.encode(), headers=AGRI_HEADERS)
    assert response.status_code == 200
    assert len(response.content) < 10 * SHORT
    (problem,) = [e for e in response.json()["records"][0]["errors"] if e["field"] == "lead_time"]
    assert len(problem["message"]) < SHORT and "(1000000 characters)" in problem["message"]
    assert len(problem["value"]) < SHORT


def test_payload_errors_quote_names_from_the_document_in_part() -> None:
    with pytest.raises(MalformedPayload) as xml:
        parse_xml(b"<" + b"a" * 40_000 + b"></b>", PayloadLimits())
    assert len(str(xml.value)) < SHORT and "characters)" in str(xml.value)
    with pytest.raises(MalformedPayload) as twice:
        parse_json(b'{"' + b"k" * 100_000 + b'": 1, "' + b"k" * 100_000 + b'": 2}', PayloadLimits())
    assert len(str(twice.value)) < SHORT and "(100000 characters)" in str(twice.value)
    # An ordinary name is quoted whole.
    with pytest.raises(MalformedPayload, match="the name 'fkje' appears twice"):
        parse_json(b'{"fkje": 100, "fkje": 10000}', PayloadLimits())
    with pytest.raises(MalformedPayload, match="Opening and ending tag mismatch: a line 1 and b"):
        parse_xml(b"<a></b>", PayloadLimits())


def test_the_excerpt_is_the_value_itself_when_short_and_cut_when_long() -> None:
    assert quoted("330106") == repr("330106")
    assert render_value("330106") == "330106"
    long = "y" * 5000
    assert quoted(long) == repr("y" * EXCERPT_CHARS) + "… (5000 characters)"
    assert render_value(long) == "y" * EXCERPT_CHARS + "… (5000 characters)"
    # A number is written out only while that is short: never a billion digits.
    assert len(render_value(Decimal("8000e999999999"))) < 40
    assert render_value(Decimal("12.50")) == "12.50"
    assert len(quoted(10**5000)) < 40


# --- the journal refuses what the store refuses for good ----------------------------------------


class _SmallLimitJournal(Journal):
    """A journal whose SQLite refuses values over 4,000 bytes, as a build with a small
    SQLITE_MAX_LENGTH does: the way to reach "string or blob too big" without writing 1 GB."""

    def _connect(self) -> Connection:
        db = super()._connect()  # the writer's own connection, out of the pool
        raw = db.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        raw.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 4000)
        return db


def _refused(reason: str) -> float:
    return HUB_REGISTRY.get_sample_value("jghub_journal_refused_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize(
    ("journal_kind", "bad", "reason"),
    [
        (_SmallLimitJournal, {"detail": {"evidence": "z" * 10_000}}, "too-big"),
        (Journal, {"attempt": 2**70}, "invalid-value"),
    ],
    ids=["string-or-blob-too-big", "integer-sqlite-cannot-hold"],
)
def test_an_entry_the_store_refuses_for_good_is_refused_alone_and_later_ones_are_written(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    journal_kind: type[Journal],
    bad: dict[str, object],
    reason: str,
) -> None:
    before = _refused(reason)
    path = tmp_path / "journal.sqlite3"
    with caplog.at_level(logging.ERROR, logger="monitor.journal"), journal_kind(path) as journal:
        journal.record(Step.RECEIVED, message_id="good-before", system="agri-penalty")
        journal.record(Step.RECEIVED, message_id="the-bad-one", system="agri-penalty", **bad)
        journal.record(Step.PUBLISHED, message_id="good-after", system="agri-penalty")
        # Written within the flush, not retried forever: flush returns True.
        assert journal.flush(timeout=30)
        journal.record(Step.DELIVERED, message_id="later", target="national")
        assert journal.flush(timeout=30)
    with Journal(path) as reader:
        assert [e.message_id for e in reader.entries()] == ["good-before", "good-after", "later"]
        assert reader.verify().ok
    assert _refused(reason) == before + 1
    (said,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert said.levelno == logging.ERROR
    assert "the-bad-one" in said.getMessage() and reason in said.getMessage()


def test_the_journal_keeps_an_excerpt_of_a_huge_reason_and_detail(tmp_path: Path) -> None:
    before = sum(_refused(reason) for reason in ("too-big", "invalid-value"))
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as journal:
        journal.record(
            Step.REJECTED,
            message_id="huge",
            reason="r" * 1_000_000,
            detail={"value": "d" * 1_000_000},
        )
        journal.record(Step.REJECTED, message_id="lone-surrogate-\ud800")
        assert journal.flush(timeout=30)
    with Journal(path) as reader:
        huge, surrogate = reader.entries()
    assert huge.reason is not None and len(huge.reason) < REASON_CHARS + 40
    assert huge.reason.endswith("(1000000 characters)")
    assert huge.detail["characters"] > DETAIL_CHARS and len(huge.detail["excerpt"]) == DETAIL_CHARS
    assert surrogate.message_id == "lone-surrogate-\\ud800"
    assert sum(_refused(reason) for reason in ("too-big", "invalid-value")) == before
