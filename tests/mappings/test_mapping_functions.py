"""The pipe functions: exact conversions, clear refusals, options checked when built."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mappings.compiler import CompiledPipe
from mappings.errors import ValueProblem
from mappings.functions import FUNCTIONS, BuildContext, OptionProblem, Step
from mappings.lookup_tables import CodeTable

SHANGHAI = timezone(timedelta(hours=8))
TABLES = {"kind": CodeTable.inline("kind", {"FK": "03", "JG": "01", "FK2": "03"})}


def fn(name: str, options: Any = None) -> Step:
    function = FUNCTIONS[name]
    return function.build(function.parse_options(options), BuildContext(TABLES, "test"))


def test_every_function_and_option_is_documented() -> None:
    for function in FUNCTIONS.values():
        assert function.summary and not function.summary.startswith(function.name)
        for option, info in function.options.model_fields.items():
            assert info.description, f"{function.name}.{option} has no description"


def test_every_pipe_example_reads_as_yaml_and_builds() -> None:
    # The examples are what users copy into mapping files, so they must survive YAML.
    tables = {**TABLES, "penalty_kind": CodeTable.inline("penalty_kind", {"FK": "03"})}
    checked = 0
    for function in FUNCTIONS.values():
        for example in function.examples:
            item = yaml.safe_load(example)
            if isinstance(item, dict) and set(item) == {function.name}:
                options = function.parse_options(item[function.name])
            elif item == function.name:
                options = function.parse_options(None)
            else:
                continue  # a whole field rule showing the function in context
            function.build(options, BuildContext(tables, "test"))
            checked += 1
    assert checked >= len(FUNCTIONS)


# --------------------------------------------------------------------------- text


def test_halfwidth_changes_exactly_the_full_width_ascii_block() -> None:
    step = fn("halfwidth")
    for code in range(0xFF01, 0xFF5F):
        assert step(chr(code)) == chr(code - 0xFEE0) == unicodedata.normalize("NFKC", chr(code))
    assert step("\u3000") == " "
    kept = "、。「」①￥￠ｱ㈱中文"
    assert step(kept) == kept
    assert fn("halfwidth", {"space": False})("\u3000") == "\u3000"
    assert step("９１３３０１０６ＭＡ２Ｈ３Ｋ７Ｑ４Ｑ") == "91330106MA2H3K7Q4Q"


@given(st.text())
def test_halfwidth_leaves_everything_outside_the_block(text: str) -> None:
    result = fn("halfwidth")(text)
    assert len(result) == len(text)
    for before, after in zip(text, result, strict=True):
        if 0xFF01 <= ord(before) <= 0xFF5E:
            assert ord(after) == ord(before) - 0xFEE0
        elif before == "\u3000":
            assert after == " "
        else:
            assert after == before


def test_trim_strips_unicode_whitespace_and_empties_to_absent() -> None:
    step = fn("trim")
    assert step("\u3000 王海东\u00a0\n") == "王海东"
    assert step(" \u3000 ") is None
    assert step(42) == 42
    assert fn("trim", "*")("**x*") == "x"


def test_replace_extract_substring() -> None:
    assert fn("replace", {"pattern": r"[-\s]", "with": ""})("330-106 ") == "330106"
    assert fn("extract", r"\d{6}")("区划330106号") == "330106"
    with pytest.raises(ValueProblem, match="does not contain a match"):
        fn("extract", r"\d{6}")("无")
    assert fn("substring", {"start": 2, "length": 6})("91330106MA2H3K7Q4Q") == "330106"
    with pytest.raises(ValueProblem, match="has only 3 characters"):
        fn("substring", {"start": 2, "length": 6})("913")


def test_split_join_first() -> None:
    assert fn("split", "、")("罚款、 警告、") == ["罚款", "警告"]
    assert fn("split", {"separator": "[,;]", "regex": True})("a;b,c") == ["a", "b", "c"]
    assert fn("split", ",")(["a,b", "c"]) == ["a", "b", "c"]
    assert fn("join", ";")(["a", "b"]) == "a;b"
    assert fn("first")(["a", "b"]) == "a"
    assert fn("first")([]) is None


def test_a_pipe_maps_item_functions_over_lists_and_drops_absent_items() -> None:
    pipe = CompiledPipe(
        (
            (fn("split", ","), True),
            (fn("trim"), False),
            (fn("lookup", {"table": "kind"}), False),
        )
    )
    assert pipe("FK, JG,") == ["03", "01"]
    assert pipe(None) is None


# --------------------------------------------------------------------------- numbers


def test_decimal_is_exact_and_strict() -> None:
    step = fn("decimal", {"grouping": ","})
    assert step("12,500.50") == Decimal("12500.50")
    assert step(Decimal("0.1")) == Decimal("0.1")
    for bad in ("1e5", "abc", "1.2.3", ""):
        with pytest.raises(ValueProblem, match="not a decimal number"):
            step(bad)
    with pytest.raises(ValueProblem, match="not a finite number"):
        step(Decimal("NaN"))


def test_wan_yuan_converts_exactly_and_refuses_fractions_of_a_fen() -> None:
    step = fn("wan_yuan")
    assert step("25") == Decimal("250000.00")
    assert step("0.35") == Decimal("3500.00")
    assert step("12.345678") == Decimal("123456.78")
    with pytest.raises(ValueProblem) as caught:
        step("25.0000001")
    assert caught.value.rule == "wan_yuan" and "分" in caught.value.message
    assert fn("to_wan_yuan")(Decimal("3500.00")) == Decimal("0.350000")


@given(st.integers(min_value=0, max_value=10**13))
def test_yuan_and_wan_yuan_round_trip(fen: int) -> None:
    yuan = Decimal(fen).scaleb(-2)
    assert fn("wan_yuan")(fn("to_wan_yuan")(yuan)) == yuan


def test_integer_and_text() -> None:
    assert fn("integer")("0042") == 42
    with pytest.raises(ValueProblem, match="not a whole number"):
        fn("integer")("4.5")
    assert fn("text")(Decimal("1E+2")) == "100"
    assert fn("text")(True) == "true"
    assert fn("text", 2)(Decimal("3.5")) == "3.50"
    with pytest.raises(ValueProblem, match="more than 2 decimal places"):
        fn("text", 2)(Decimal("3.505"))


# --------------------------------------------------------------------------- dates


def test_date_patterns() -> None:
    assert fn("date", "yyyyMMdd")("20260301") == date(2026, 3, 1)
    assert fn("date", "yyyy年M月d日")("2026年3月1日") == date(2026, 3, 1)
    assert fn("date", ["yyyyMMdd", "yyyy-MM-dd"])("2026-03-01") == date(2026, 3, 1)
    with pytest.raises(ValueProblem) as caught:
        fn("date", "yyyyMMdd")("20260230")
    assert caught.value.rule == "date 'yyyyMMdd'" and "not a real date" in caught.value.message
    with pytest.raises(ValueProblem, match="does not have the form yyyyMMdd"):
        fn("date", "yyyyMMdd")("2026-03-01")


def test_datetime_patterns_are_shanghai_time() -> None:
    value = fn("datetime", "yyyy-MM-dd HH:mm:ss")("2026-03-01 10:00:00")
    assert value == datetime(2026, 3, 1, 10, tzinfo=SHANGHAI)
    assert value.utcoffset() == timedelta(hours=8)
    quoted = fn("datetime", "yyyy-MM-dd'T'HH:mm:ss.SSS")("2026-03-01T10:00:00.250")
    assert quoted == datetime(2026, 3, 1, 10, 0, 0, 250_000, tzinfo=SHANGHAI)
    with pytest.raises(ValueProblem, match="not a real time"):
        fn("datetime", "yyyyMMddHHmmss")("20260301250000")
    utc = fn("datetime", {"format": "yyyyMMddHHmmss", "timezone": "UTC"})("20260301020000")
    assert utc == datetime(2026, 3, 1, 10, tzinfo=SHANGHAI)


def test_epoch_milliseconds_are_exact_instants() -> None:
    step = fn("datetime", "epoch_millis")
    value = step(1772334000345)
    assert value == datetime(2026, 3, 1, 3, 0, 0, 345_000, tzinfo=UTC)
    assert value.utcoffset() == timedelta(hours=8)
    assert step("1772334000345") == value
    assert fn("datetime", "epoch_seconds")(1772334000) == value.replace(microsecond=0)
    for bad in ("昨天", 1.5, True):
        with pytest.raises(ValueProblem):
            step(bad)


def test_day_is_the_calendar_day_in_the_zone() -> None:
    midnight = fn("datetime", "epoch_millis")(1772294400000)  # 2026-02-28T16:00Z
    assert fn("day")(midnight) == date(2026, 3, 1)
    assert fn("day", {"timezone": "UTC"})(midnight) == date(2026, 2, 28)
    assert fn("day")(date(2026, 3, 1)) == date(2026, 3, 1)
    assert fn("day")(datetime(2026, 3, 1, 23, 59)) == date(2026, 3, 1)
    with pytest.raises(ValueProblem, match="read it with datetime first"):
        fn("day")(1772294400000)
    with pytest.raises(ValidationError):
        FUNCTIONS["day"].parse_options({"timezone": "Mars/Base"})


@given(st.dates(min_value=date(1971, 1, 1), max_value=date(2100, 12, 31)))
def test_day_inverts_writing_a_date_as_epoch_millis(day: date) -> None:
    millis = fn("format_datetime", "epoch_millis")(day)
    assert fn("day")(fn("datetime", "epoch_millis")(millis)) == day


@given(st.integers(min_value=-(10**12), max_value=4 * 10**12))
def test_epoch_milliseconds_round_trip(millis: int) -> None:
    assert fn("format_datetime", "epoch_millis")(fn("datetime", "epoch_millis")(millis)) == millis


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)))
def test_patterns_round_trip(moment: datetime) -> None:
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    pattern = "yyyy-MM-dd HH:mm:ss.SSS"
    text = fn("format_datetime", pattern)(moment.replace(tzinfo=SHANGHAI))
    assert fn("datetime", pattern)(text) == moment.replace(tzinfo=SHANGHAI)
    day = moment.date()
    assert fn("date", "yyyyMMdd")(fn("format_datetime", "yyyyMMdd")(day)) == day


def test_bad_patterns_are_refused_when_built() -> None:
    for bad in ("yyyyMMxx", "yyyy-MM", "yyyyMMdd'T", "YYYYMMdd", "yyyyyMMdd"):
        with pytest.raises(ValidationError):
            FUNCTIONS["datetime"].parse_options(bad)
    with pytest.raises(ValidationError, match="use the datetime function"):
        FUNCTIONS["date"].parse_options("yyyyMMddHHmmss")
    with pytest.raises(ValidationError, match="unknown time zone"):
        FUNCTIONS["datetime"].parse_options({"format": "yyyyMMdd", "timezone": "Mars/Olympus"})


# --------------------------------------------------------------------------- codes


def test_lookup_forward_reverse_default_and_unknown() -> None:
    assert fn("lookup", "kind")("FK") == "03"
    assert fn("lookup", {"table": "kind", "reverse": True})("03") == "FK"
    assert fn("lookup", {"values": {"I": "insert"}})("I") == "insert"
    assert fn("lookup", {"table": "kind", "default": "99"})("ZZ") == "99"
    with pytest.raises(ValueProblem) as caught:
        fn("lookup", "kind")("ZZ")
    assert caught.value.rule == "lookup kind"
    assert "'ZZ' is not in table 'kind'" in caught.value.message


def test_lookup_options_are_checked_when_built() -> None:
    with pytest.raises(OptionProblem, match="no code table 'nope'"):
        fn("lookup", "nope")
    with pytest.raises(OptionProblem, match="exactly one of"):
        fn("lookup", {"table": "kind", "values": {"a": "b"}})
    with pytest.raises(ValidationError, match="quote codes"):
        FUNCTIONS["lookup"].parse_options({"values": {1: "insert"}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        FUNCTIONS["lookup"].parse_options({"tabel": "kind"})


def test_boolean() -> None:
    assert fn("boolean")("是") is True
    assert fn("boolean")("N") is False
    assert fn("boolean", {"true": ["有"], "false": ["无"]})("无") is False
    with pytest.raises(ValueProblem, match="neither yes"):
        fn("boolean")("maybe")
    with pytest.raises(OptionProblem, match="both true and false"):
        fn("boolean", {"true": ["1"], "false": ["1"]})
