"""Check algorithms: worked examples, generated valid codes, every single-character change."""

from __future__ import annotations

import datetime
import pickle

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from standard import codetables
from standard.checks import (
    CREDIT_CODE_ALPHABET,
    ORG_CODE_ALPHABET,
    CheckFailure,
    check_credit_code,
    check_id_number,
    check_industry,
    check_org_code,
    check_region,
    credit_code_check_char,
    id_number_birth_date,
    id_number_check_char,
    org_code_check_char,
)

# Written out again from DOMAIN.md, not imported: the tests must not share the code's constants.
CREDIT_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]
ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
ID_ALPHABET = "0123456789X"
TODAY = datetime.date.today()


def _fails(check: object, value: str) -> CheckFailure:
    assert callable(check)
    with pytest.raises(CheckFailure) as caught:
        check(value)
    return caught.value


# -- generators ---------------------------------------------------------------------------------


@st.composite
def org_codes(draw: st.DrawFn, alphabet: str = ORG_CODE_ALPHABET) -> str:
    body = draw(st.text(alphabet=alphabet, min_size=8, max_size=8))
    return body + org_code_check_char(body)


@st.composite
def credit_codes(draw: st.DrawFn) -> str:
    kinds = sorted(codetables.credit_code_kinds().kinds)
    authority, kind = draw(st.sampled_from(kinds))
    region = draw(st.text(alphabet="0123456789", min_size=6, max_size=6))
    # The organisation code inside a credit code uses the credit code's alphabet (no I O S V Z).
    org = draw(org_codes(alphabet=CREDIT_CODE_ALPHABET))
    first17 = authority + kind + region + org
    return first17 + credit_code_check_char(first17)


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    region = draw(st.text(alphabet="0123456789", min_size=6, max_size=6))
    born = draw(st.dates(min_value=datetime.date(1900, 1, 1), max_value=TODAY))
    sequence = draw(st.text(alphabet="0123456789", min_size=3, max_size=3))
    first17 = f"{region}{born:%Y%m%d}{sequence}"
    return first17 + id_number_check_char(first17)


# -- worked examples (DOMAIN.md) ----------------------------------------------------------------


def test_credit_code_worked_example() -> None:
    code = "91330000755918469E"
    total = sum(
        CREDIT_CODE_ALPHABET.index(c) * w for c, w in zip(code[:17], CREDIT_WEIGHTS, strict=True)
    )
    assert total == 1319
    assert total % 31 == 17
    assert credit_code_check_char(code[:17]) == "E"
    assert check_credit_code(code) == code


def test_org_code_worked_example() -> None:
    total = sum(
        ORG_CODE_ALPHABET.index(c) * w for c, w in zip("75591846", ORG_WEIGHTS, strict=True)
    )
    assert 11 - total % 11 == 9
    assert org_code_check_char("75591846") == "9"
    assert check_org_code("755918469") == "755918469"


def test_id_number_worked_example() -> None:
    number = "11010519491231002X"
    total = sum(int(c) * w for c, w in zip(number[:17], ID_WEIGHTS, strict=True))
    assert total == 167
    assert total % 11 == 2
    assert id_number_check_char(number[:17]) == "X"
    assert check_id_number(number) == number
    assert id_number_birth_date(number) == datetime.date(1949, 12, 31)


def test_org_code_check_char_maps_ten_to_x_and_eleven_to_zero() -> None:
    # Σ ≡ 1 (mod 11) gives 10 → X; Σ ≡ 0 gives 11 → 0. Bodies found by the rule itself.
    def body_with_remainder(remainder: int) -> str:
        for n in range(100_000_000):
            body = f"{n:08d}"
            if sum(int(c) * w for c, w in zip(body, ORG_WEIGHTS, strict=True)) % 11 == remainder:
                return body
        raise AssertionError("unreachable")

    assert org_code_check_char(body_with_remainder(1)) == "X"
    assert org_code_check_char(body_with_remainder(0)) == "0"
    assert org_code_check_char("00000000") == "0"


# -- messages say exactly why -------------------------------------------------------------------


def test_credit_code_wrong_check_character_message() -> None:
    failure = _fails(check_credit_code, "91330000755918469A")
    assert failure.message == (
        "unified social credit code 91330000755918469A: check character is 'A', expected 'E' "
        "(GB 32100-2015 check character)"
    )
    assert (failure.kind, failure.rule, failure.position) == (
        "credit-code",
        "GB 32100-2015 check character",
        18,
    )
    assert failure.value == "91330000755918469A"
    assert isinstance(failure, ValueError)


@pytest.mark.parametrize("letter", list("IOSVZ"))
def test_credit_code_letters_outside_the_alphabet(letter: str) -> None:
    value = "9133" + letter + "000755918469E"
    failure = _fails(check_credit_code, value)
    assert failure.position == 5
    assert f"character '{letter}' at position 5 is not in the code alphabet" in failure.message
    assert "0-9 A-H J-N P-R T U W-Y" in failure.message


def test_full_width_digit_gets_a_hint() -> None:
    failure = _fails(check_credit_code, "９1330000755918469E")
    assert "full-width character '９' at position 1" in failure.message
    assert "half-width '9'" in failure.message
    assert failure.position == 1
    assert (
        "full-width character 'Ｘ' at position 18"
        in _fails(check_id_number, "11010519491231002Ｘ").message
    )


def test_lower_case_and_whitespace_get_hints() -> None:
    assert (
        "lower-case 'e' at position 18" in _fails(check_credit_code, "91330000755918469e").message
    )
    assert "lower-case 'x' at position 18" in _fails(check_id_number, "11010519491231002x").message
    failure = _fails(check_credit_code, "91330000755918469E ")
    assert "whitespace ' ' at position 19" in failure.message
    assert "'91330000755918469E '" in failure.message  # the value is quoted when it has spaces


@pytest.mark.parametrize(
    ("check", "value", "expected"),
    [
        (check_credit_code, "91330000755918469", "length 17, expected 18"),
        (check_credit_code, "", "length 0, expected 18"),
        (check_org_code, "7559184", "length 7, expected 9"),
        (check_id_number, "110105491231002", "length 15, expected 18; 15-digit"),
        (check_region, "33010", "length 5, expected 6"),
    ],
)
def test_length_messages(check: object, value: str, expected: str) -> None:
    failure = _fails(check, value)
    assert expected in failure.message
    assert failure.position is None


def test_credit_code_region_part_must_be_digits() -> None:
    first17 = "91A30000755918469"
    failure = _fails(check_credit_code, first17 + credit_code_check_char(first17))
    assert failure.rule == "GB 32100-2015 registration region"
    assert failure.position == 3


def test_credit_code_embedded_org_code_must_pass_gb_11714() -> None:
    first17 = "913300007559184680"[:17]  # org part 755918468: check should be 9
    value = first17 + credit_code_check_char(first17)
    failure = _fails(check_credit_code, value)
    assert failure.rule == "GB 11714-1997 check character"
    assert "organisation code part 755918468 (positions 9-17) fails its GB 11714 check" in (
        failure.message
    )
    assert failure.position == 17


def test_credit_code_registration_authority_and_kind() -> None:
    first17 = "B1330000755918469"
    failure = _fails(check_credit_code, first17 + credit_code_check_char(first17))
    assert failure.rule == "GB 32100-2015 registration authority"
    assert "registration authority 'B' at position 1 is not defined" in failure.message
    first17 = "94330000755918469"
    failure = _fails(check_credit_code, first17 + credit_code_check_char(first17))
    assert failure.rule == "GB 32100-2015 organisation kind"
    assert "kind '4' at position 2 is not defined for registration authority 9 (工商)" in (
        failure.message
    )
    assert "1 企业, 2 个体工商户, 3 农民专业合作社" in failure.message
    for authority, kind in [("1", "1"), ("5", "2"), ("9", "3"), ("Y", "1"), ("N", "2")]:
        first17 = authority + kind + "330000755918469"
        code = first17 + credit_code_check_char(first17)
        assert check_credit_code(code) == code


def test_org_code_printed_form_with_hyphen_is_rejected_with_the_stored_form() -> None:
    failure = _fails(check_org_code, "75591846-9")
    assert "write 755918469" in failure.message
    assert failure.position == 9


def test_id_number_birth_date_rules() -> None:
    first17 = "11010519490231002"
    failure = _fails(check_id_number, first17 + id_number_check_char(first17))
    assert "birth date 19490231 (positions 7-14) does not exist" in failure.message
    assert failure.rule == "GB 11643-1999 birth date"
    tomorrow = TODAY + datetime.timedelta(days=1)
    first17 = f"110105{tomorrow:%Y%m%d}002"
    failure = _fails(check_id_number, first17 + id_number_check_char(first17))
    assert "is in the future" in failure.message
    # The day of birth itself is fine.
    first17 = f"110105{TODAY:%Y%m%d}002"
    assert check_id_number(first17 + id_number_check_char(first17))
    failure = _fails(check_id_number, "1101051949X231002X")
    assert failure.rule == "GB 11643-1999 structure"
    assert failure.position == 11


def test_huge_values_are_cut_in_messages() -> None:
    failure = _fails(check_credit_code, "9" * 1_000_000)
    assert len(failure.message) < 200
    assert "(1000000 characters)" in failure.message
    assert failure.value == "9" * 1_000_000


def test_check_failure_survives_pickling() -> None:
    failure = _fails(check_credit_code, "91330000755918469A")
    copy = pickle.loads(pickle.dumps(failure))
    assert (copy.kind, copy.value, copy.rule, copy.position, copy.message) == (
        failure.kind,
        failure.value,
        failure.rule,
        failure.position,
        failure.message,
    )


def test_check_char_helpers_reject_bad_input() -> None:
    with pytest.raises(CheckFailure):
        credit_code_check_char("9133000075591846")
    with pytest.raises(CheckFailure):
        org_code_check_char("7559184I"[:7])
    with pytest.raises(CheckFailure):
        id_number_check_char("1101051949123100X")


# -- properties: valid codes pass, every single-character change fails --------------------------


@given(credit_codes())
@example("91330000755918469E")
@settings(max_examples=60)
def test_generated_credit_codes_pass_and_every_single_change_fails(code: str) -> None:
    assert check_credit_code(code) == code
    for index in range(18):
        for char in CREDIT_CODE_ALPHABET:
            if char != code[index]:
                # Weights are all coprime with 31, so the weighted sum always moves.
                changed = code[:index] + char + code[index + 1 :]
                with pytest.raises(CheckFailure):
                    check_credit_code(changed)
        with pytest.raises(CheckFailure):
            check_credit_code(code[:index] + code[index + 1 :])
    for index in range(19):
        with pytest.raises(CheckFailure, match="length 19, expected 18"):
            check_credit_code(code[:index] + "0" + code[index:])


@given(credit_codes(), st.integers(0, 17), st.characters())
def test_credit_code_substitution_by_any_character_fails(code: str, index: int, char: str) -> None:
    assume(char != code[index])
    with pytest.raises(CheckFailure):
        check_credit_code(code[:index] + char + code[index + 1 :])


@given(org_codes())
@example("755918469")
@settings(max_examples=60)
def test_generated_org_codes_pass_and_single_changes_fail_except_gb_11714_blind_spots(
    code: str,
) -> None:
    assert check_org_code(code) == code
    for index in range(9):
        for char in ORG_CODE_ALPHABET:
            if char == code[index]:
                continue
            changed = code[:index] + char + code[index + 1 :]
            delta = ORG_CODE_ALPHABET.index(char) - ORG_CODE_ALPHABET.index(code[index])
            # GB 11714 works modulo 11 over values 0-35: a body substitution whose values differ
            # by a multiple of 11 ('0'↔'B', '1'↔'C', ...) keeps the check character. That is the
            # standard's design, so the check must let it through and catch everything else.
            if index < 8 and delta % 11 == 0:
                assert check_org_code(changed) == changed
            else:
                with pytest.raises(CheckFailure):
                    check_org_code(changed)
        with pytest.raises(CheckFailure):
            check_org_code(code[:index] + code[index + 1 :])
        with pytest.raises(CheckFailure):
            check_org_code(code[:index] + "0" + code[index:])


@given(id_numbers())
@example("11010519491231002X")
@settings(max_examples=60)
def test_generated_id_numbers_pass_and_every_single_change_fails(number: str) -> None:
    assert check_id_number(number) == number
    for index in range(18):
        for char in ID_ALPHABET:
            if char != number[index]:
                changed = number[:index] + char + number[index + 1 :]
                with pytest.raises(CheckFailure):
                    check_id_number(changed)
        with pytest.raises(CheckFailure):
            check_id_number(number[:index] + number[index + 1 :])
    for index in range(19):
        with pytest.raises(CheckFailure):
            check_id_number(number[:index] + "1" + number[index:])


@given(id_numbers())
@example("11010519491231002X")
def test_id_number_with_another_real_birth_date_fails_on_its_check_character(number: str) -> None:
    real_dates = 0
    for index in range(6, 14):
        for digit in "0123456789":
            changed = number[:index] + digit + number[index + 1 :]
            if digit == number[index] or not _is_past_date(changed[6:14]):
                continue
            real_dates += 1
            failure = _fails(check_id_number, changed)
            # The date itself is real, so only the check character can catch it, and it must.
            assert failure.rule == "GB 11643-1999 check character"
            assert failure.position == 18
    assert real_dates > 0  # at least the last digit of the day can always move


def _is_past_date(digits: str) -> bool:
    try:
        return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:])) <= TODAY
    except ValueError:
        return False


# -- regions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("330000", "浙江省"),
        ("330100", "杭州市"),
        ("330200", "宁波市"),
        ("330300", "温州市"),
        ("330400", "嘉兴市"),
        ("330500", "湖州市"),
        ("330600", "绍兴市"),
        ("330700", "金华市"),
        ("330800", "衢州市"),
        ("330900", "舟山市"),
        ("331000", "台州市"),
        ("331100", "丽水市"),
    ],
)
def test_zhejiang_and_its_prefectures(code: str, name: str) -> None:
    region = check_region(code)
    assert region.name == name
    assert region.level == ("province" if code == "330000" else "prefecture")


def test_hangzhou_2021_both_ways() -> None:
    before, on = datetime.date(2021, 4, 8), datetime.date(2021, 4, 9)
    assert check_region("330103", on=before).name == "下城区"
    assert check_region("330104", on=before).name == "江干区"
    failure = _fails(lambda v: check_region(v, on=on), "330103")
    assert failure.message.startswith("region code 330103: 下城区 was abolished on 2021-04-09")
    assert "to 2021-04-08" in failure.message
    assert "replaced by 330105 拱墅区" in failure.message
    assert failure.rule == "GB/T 2260 validity"
    assert check_region("330113", on=on).name == "临平区"
    assert check_region("330114", on=on).name == "钱塘区"
    failure = _fails(lambda v: check_region(v, on=before), "330113")
    assert "not yet valid on 2021-04-08: 临平区 was created on 2021-04-09" in failure.message
    # 余杭区 was redrawn, not abolished: the code is valid throughout.
    assert check_region("330110", on=before).name == check_region("330110", on=on).name == "余杭区"


@pytest.mark.parametrize(
    ("old", "new", "first_day"),
    [
        ("330183", "330111", datetime.date(2014, 12, 13)),  # 富阳
        ("330185", "330112", datetime.date(2017, 8, 11)),  # 临安
        ("330621", "330603", datetime.date(2013, 10, 31)),  # 绍兴县 → 柯桥区
        ("330682", "330604", datetime.date(2013, 10, 31)),  # 上虞
        ("330322", "330305", datetime.date(2015, 7, 23)),  # 洞头
        ("330283", "330213", datetime.date(2016, 9, 28)),  # 奉化
        ("331021", "331083", datetime.date(2017, 4, 11)),  # 玉环
    ],
)
def test_replaced_codes_both_ways(old: str, new: str, first_day: datetime.date) -> None:
    last_day = first_day - datetime.timedelta(days=1)
    assert check_region(old, on=last_day).code == old
    assert check_region(new, on=first_day).code == new
    old_failure = _fails(lambda v: check_region(v, on=first_day), old)
    assert f"abolished on {first_day}" in old_failure.message
    assert new in old_failure.message  # names its successor
    assert "not yet valid" in _fails(lambda v: check_region(v, on=last_day), new).message


def test_region_accepts_a_datetime_as_the_day() -> None:
    moment = datetime.datetime(2021, 4, 9, 0, 0, 1)
    assert check_region("330113", on=moment).name == "临平区"
    assert "abolished" in _fails(lambda v: check_region(v, on=moment), "330103").message


def test_every_table_row_is_valid_exactly_in_its_period() -> None:
    # Outside its period a code is refused, or (renamed between two lists) is its other row.
    table = codetables.regions()
    for region in table.all():
        assert check_region(region.code, on=region.valid_from) == region
        if region.valid_to is not None:
            assert check_region(region.code, on=region.valid_to) == region
            _refused_or_other_row(region, region.valid_to + datetime.timedelta(days=1))
        if region.valid_from > table.horizon:
            _refused_or_other_row(region, region.valid_from - datetime.timedelta(days=1))


def _refused_or_other_row(region: codetables.Region, day: datetime.date) -> None:
    try:
        other = check_region(region.code, on=day)
    except CheckFailure:
        return
    assert other != region and other.code == region.code


def test_zhejiang_has_its_90_current_county_level_divisions() -> None:
    counties = [
        r
        for r in codetables.regions().all()
        if r.code[:2] == "33" and r.level == "county" and r.valid_to is None
    ]
    assert len(counties) == 90
    assert {r.code for r in counties} >= {"330113", "330114", "330383", "331083"}


def test_every_province_has_its_counties_from_the_year_end_lists() -> None:
    # Issue #17 item 6: a joint task with a Shanghai department (310101) was refused.
    assert check_region("310101", on=datetime.date(2026, 4, 3)).name == "黄浦区"
    assert check_region("110105").name == "朝阳区"
    assert check_region("650102").name == "天山区"
    assert check_region("110105").parent == "110000"  # 市辖区 is a grouping, not a division


def test_year_end_list_rows_are_lenient_and_say_so() -> None:
    # 崇明县 310230 is in MCA's 2015 year-end list, not 2016's; 崇明区 310151 first in 2016's.
    assert check_region("310230", on=datetime.date(2016, 12, 31)).name == "崇明县"
    assert check_region("310151", on=datetime.date(2016, 1, 1)).name == "崇明区"
    failure = _fails(lambda v: check_region(v, on=datetime.date(2017, 1, 1)), "310230")
    assert failure.rule == "GB/T 2260 validity"
    assert "崇明县 is listed in MCA's 2015 year-end list, not in 2016's" in failure.message
    assert "to 2016-12-31 at the latest, so it is not valid on 2017-01-01" in failure.message
    failure = _fails(lambda v: check_region(v, on=datetime.date(2015, 12, 31)), "310151")
    assert "崇明区 is first listed in MCA's 2016 year-end list, not in 2015's" in failure.message


def test_region_outside_coverage_horizon_and_table() -> None:
    for code in ("810101", "820101", "710101", "830101"):
        failure = _fails(check_region, code)
        assert failure.rule == "code table coverage"
        assert "holds no prefectures or counties of" in failure.message
    assert check_region("810000").name == "香港特别行政区"
    assert "is not a province code" in _fails(check_region, "990101").message
    # An unknown code on a day the table knows its province is wrong; later, it may be new.
    failure = _fails(lambda v: check_region(v, on=datetime.date(2020, 6, 1)), "310199")
    assert failure.rule == "GB/T 2260 code table"
    assert "not in the GB/T 2260 code table" in failure.message
    failure = _fails(lambda v: check_region(v, on=datetime.date(2021, 6, 1)), "310199")
    assert failure.rule == "code table coverage"
    assert "knows 310000 上海市's prefectures and counties up to 2020-12-31" in failure.message
    assert "cannot vouch for it on 2021-06-01" in failure.message
    failure = _fails(lambda v: check_region(v, on=datetime.date(2021, 4, 9)), "330199")
    assert failure.rule == "GB/T 2260 code table"
    failure = _fails(lambda v: check_region(v, on=datetime.date(1979, 12, 31)), "330102")
    assert failure.rule == "code table horizon"
    assert "records no history before 1980-01-01" in failure.message
    assert "MCA's 1980 year-end list" in failure.message
    assert "full-width character '３'" in _fails(check_region, "３30100").message


# -- industries ---------------------------------------------------------------------------------

# GB/T 4754-2017 section ranges written out independently of industries.csv.
SECTION_RANGES = {
    "A": (1, 5),
    "B": (6, 12),
    "C": (13, 43),
    "D": (44, 46),
    "E": (47, 50),
    "F": (51, 52),
    "G": (53, 60),
    "H": (61, 62),
    "I": (63, 65),
    "J": (66, 69),
    "K": (70, 70),
    "L": (71, 72),
    "M": (73, 75),
    "N": (76, 79),
    "O": (80, 82),
    "P": (83, 83),
    "Q": (84, 85),
    "R": (86, 90),
    "S": (91, 96),
    "T": (97, 97),
}


def _section_of(division: int) -> str | None:
    return next((s for s, (lo, hi) in SECTION_RANGES.items() if lo <= division <= hi), None)


def test_industry_worked_example_c_13_131_1311() -> None:
    for code, level in [("C", "section"), ("13", "division"), ("131", "group"), ("1311", "class")]:
        industry = check_industry(code)
        assert industry.level == level
        assert industry.section.code == "C"
        assert industry.section.name == "制造业"
    assert check_industry("1311").division is not None
    assert check_industry("C1311").name == "农副食品加工业"
    assert check_industry("C1311").group == "131"
    assert check_industry("C1311").industry_class == "1311"


def test_industry_table_matches_the_standard_ranges() -> None:
    table = codetables.industries()
    assert sorted(table.sections) == sorted(SECTION_RANGES)
    for letter, (lo, hi) in SECTION_RANGES.items():
        section = table.sections[letter]
        assert (int(section.first_division), int(section.last_division)) == (lo, hi)
    assert sorted(table.divisions) == [f"{n:02d}" for n in range(1, 98)]


def test_industry_wrong_section_message() -> None:
    failure = _fails(check_industry, "A13")
    assert "division 13 is not in section A (01-05); it belongs to section C 制造业" in (
        failure.message
    )
    assert failure.rule == "GB/T 4754-2017 section ranges"
    assert "division 99 does not exist (divisions 01-97)" in _fails(check_industry, "C99").message
    assert "section 'U' does not exist (sections A-T)" in _fails(check_industry, "U").message
    assert "5 digits, expected 2 (division), 3 (group) or 4 (class)" in (
        _fails(check_industry, "C13111").message
    )
    assert "lower-case 'c' at position 1" in _fails(check_industry, "c1311").message
    assert "empty" in _fails(check_industry, "").message


@given(
    st.one_of(st.none(), st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ")),
    st.text(alphabet="0123456789", max_size=5),
)
def test_industry_structure_both_ways(letter: str | None, digits: str) -> None:
    value = (letter or "") + digits
    assume(value)
    if len(digits) == 0:
        expected_valid = letter in SECTION_RANGES
    elif len(digits) not in (2, 3, 4) or (letter is not None and letter not in SECTION_RANGES):
        expected_valid = False
    else:
        section = _section_of(int(digits[:2]))
        expected_valid = section is not None and letter in (None, section)
    if expected_valid:
        industry = check_industry(value)
        assert industry.code == value
        if digits:
            assert industry.section.code == _section_of(int(digits[:2]))
    else:
        with pytest.raises(CheckFailure):
            check_industry(value)
