"""The centre's working-day calendar: holidays and make-up days of the State Council's notices,
a clear error past the years it covers, and extra years from a file."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from centre.workdays import CalendarFileError, CalendarNotCovered, WorkingCalendar

CALENDAR = WorkingCalendar()


def test_deadline_days_of_the_2026_spring_festival() -> None:
    # 2026 notice: 15–23 February off (Sun–Mon), Saturday 14 and Saturday 28 February worked.
    assert CALENDAR.is_working_day(date(2026, 2, 14))  # a Saturday, worked (调休)
    assert not CALENDAR.is_working_day(date(2026, 2, 16))  # a Monday, holiday
    assert CALENDAR.is_working_day(date(2026, 2, 13))
    # Seven working days after Thursday 12 February: 13, 14 (Sat, worked), then 24, 25, 26, 27
    # and Saturday 28 (worked).
    assert CALENDAR.add_working_days(date(2026, 2, 12), 7) == date(2026, 2, 28)
    assert CALENDAR.working_days_between(date(2026, 2, 12), date(2026, 2, 24)) == 3


def test_deadline_days_of_the_2026_national_day() -> None:
    # 2026 notice: 1–7 October off, Sunday 20 September and Saturday 10 October worked.
    assert CALENDAR.is_working_day(date(2026, 9, 20))
    assert not CALENDAR.is_working_day(date(2026, 10, 5))
    assert CALENDAR.is_working_day(date(2026, 10, 10))
    # A penalty decided on Tuesday 29 September: the working days after it are 30 September,
    # then 8, 9, 10 (a Saturday, worked), 12, 13 and 14 October: the 7th is 14 October.
    assert CALENDAR.add_working_days(date(2026, 9, 29), 6) == date(2026, 10, 13)
    assert CALENDAR.add_working_days(date(2026, 9, 29), 7) == date(2026, 10, 14)
    assert CALENDAR.working_days_between(date(2026, 9, 29), date(2026, 10, 14)) == 7
    # Published on the 8th working day: late by one.
    assert CALENDAR.working_days_between(date(2026, 9, 29), date(2026, 10, 15)) == 8


def test_zero_days_and_ordinary_weeks() -> None:
    assert CALENDAR.add_working_days(date(2026, 3, 6), 0) == date(2026, 3, 6)
    assert CALENDAR.add_working_days(date(2026, 3, 6), 1) == date(2026, 3, 9)  # Fri → Mon
    assert CALENDAR.working_days_between(date(2026, 3, 9), date(2026, 3, 6)) == 0
    with pytest.raises(ValueError, match="working days to add must be"):
        CALENDAR.add_working_days(date(2026, 3, 6), -1)


def test_a_deadline_past_the_years_covered_is_refused_saying_which_year_and_how() -> None:
    first, last = CALENDAR.package_years
    assert first <= 2004 and last >= 2026
    beyond = date(last + 1, 1, 4)
    with pytest.raises(CalendarNotCovered) as refused:
        CALENDAR.is_working_day(beyond)
    message = str(refused.value)
    assert f"no holidays for {last + 1}" in message and f"{first}–{last}" in message
    assert "JGHUB_CALENDAR_FILE" in message
    # A deadline that runs into the uncovered year is refused too, not guessed.
    with pytest.raises(CalendarNotCovered):
        CALENDAR.add_working_days(date(last, 12, 28), 7)


def test_extra_years_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "calendar.yaml"
    path.write_text(
        "2027:\n"
        "  holidays: [2027-01-01, 2027-02-08, 2027-02-09, 2027-02-10]\n"
        "  workdays: [2027-02-06]\n",
        encoding="utf-8",
    )
    calendar = WorkingCalendar.load(path)
    assert calendar.covers(2027) and "2027 (extra years file)" in calendar.describe()
    assert not calendar.is_working_day(date(2027, 1, 1))  # a Friday off
    assert calendar.is_working_day(date(2027, 2, 6))  # a Saturday worked
    assert not calendar.is_working_day(date(2027, 2, 7))  # an ordinary Sunday
    assert calendar.add_working_days(date(2027, 2, 5), 2) == date(2027, 2, 11)
    assert calendar.add_working_days(date(2026, 12, 30), 2) == date(2027, 1, 4)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[2027]", "expected a mapping of years"),
        ("twenty: {holidays: []}", "'twenty' is not a year"),
        ("2027: {holiday: [2027-01-01]}", "year 2027 must have only `holidays` and `workdays`"),
        ("2027: {holidays: [2026-01-01]}", "2026-01-01 is not a date of 2027"),
        ("2027: {holidays: [soon]}", "'soon' is not a date of 2027"),
        ("2027: {workdays: [2027-01-04]}", "2027-01-04 is a weekday"),
        ("2027: {holidays: 2027-01-01}", "holidays must be a list of dates"),
        ("2027: [", "cannot read the working-day calendar file"),
    ],
)
def test_a_bad_calendar_file_is_refused_naming_the_year_and_rule(
    tmp_path: Path, text: str, said: str
) -> None:
    path = tmp_path / "calendar.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CalendarFileError, match=r"calendar\.yaml") as refused:
        WorkingCalendar.load(path)
    assert said in str(refused.value)
