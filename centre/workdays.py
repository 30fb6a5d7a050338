"""Working days: the State Council's yearly holiday notice, make-up working days (调休) included.

Legal and administrative deadlines count working days: a complaint is accepted or refused within 7
working days of its receipt, a penalty decision is published (双公示) within 7 working days of the
decision. A working day is a weekday that is not a public holiday, or a weekend day the notice
makes a working day (2026: Saturday 14 February before the Spring Festival, Saturday 10 October
after National Day).

The days come from `chinese-calendar`, which carries each year's notice from 2004 on; a year it
does not carry (the notice for the next year is published each November or December, the package
some weeks later) can be given in a YAML file until the package has it:

    2027:
      holidays: [2027-01-01, 2027-02-05, ...]   # days off (weekend days in a range are fine)
      workdays: [2027-02-13, ...]               # weekend days worked

A day of a year neither covers is never guessed: CalendarNotCovered says which year is missing
and how to add it.

    calendar = WorkingCalendar.load(path_or_None)
    calendar.add_working_days(date(2026, 9, 29), 7)          # 2026-10-14: the 7th working day after
    calendar.working_days_between(decided, published)       # working days in (decided, published]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chinese_calendar
import yaml
from chinese_calendar import constants

MAX_WORKING_DAYS = 3660
"""The most working days one deadline may count (about 14 years): a bound on the loop, not a
legal rule."""


class CalendarNotCovered(ValueError):
    """A day of a year the working-day calendar does not know; the message says how to add it."""


class CalendarFileError(ValueError):
    """The extra years' file cannot be read; the message names the file, the year and the rule."""


@dataclass(frozen=True)
class YearDays:
    """One year's notice: the weekdays off and the weekend days worked."""

    holidays: frozenset[dt.date] = field(default_factory=frozenset)
    workdays: frozenset[dt.date] = field(default_factory=frozenset)


def _package_years() -> tuple[int, int]:
    days = [*constants.holidays, *constants.workdays]
    return min(days).year, max(days).year


class WorkingCalendar:
    """Which days are working days, for the years `chinese-calendar` carries plus `extra` ones.

    Parameters:
      extra: years the package does not carry (or corrects), each as its notice's days.
    """

    def __init__(self, extra: Mapping[int, YearDays] | None = None) -> None:
        self.extra = dict(extra or {})
        self.package_years = _package_years()

    @classmethod
    def load(cls, path: Path | None = None) -> WorkingCalendar:
        """The calendar, with the extra years of the YAML file at `path` when given."""
        if path is None:
            return cls()
        return cls(read_extra_years(Path(path)))

    def covers(self, year: int) -> bool:
        first, last = self.package_years
        return first <= year <= last or year in self.extra

    def describe(self) -> str:
        """The years covered, in words (for errors, /ready and the CLI)."""
        first, last = self.package_years
        text = f"{first}–{last} (chinese-calendar {_version()})"
        if self.extra:
            text += f" and {', '.join(str(year) for year in sorted(self.extra))} (extra years file)"
        return text

    def is_working_day(self, day: dt.date) -> bool:
        """Whether `day` is a working day; CalendarNotCovered for a year not covered."""
        notice = self.extra.get(day.year)
        if notice is not None:
            if day in notice.workdays:
                return True
            return day.weekday() < 5 and day not in notice.holidays
        if not self.covers(day.year):
            raise CalendarNotCovered(
                f"the working-day calendar has no holidays for {day.year} (it covers "
                f"{self.describe()}): {day.isoformat()} cannot be counted. Upgrade "
                f"chinese-calendar once it carries {day.year}, or add the year's State Council "
                "notice to the extra years file (JGHUB_CALENDAR_FILE: holidays and make-up "
                "working days)"
            )
        return bool(chinese_calendar.is_workday(day))

    def add_working_days(self, start: dt.date, days: int) -> dt.date:
        """The `days`-th working day after `start` (`start` itself never counts); `start` when
        `days` is 0."""
        if days < 0 or days > MAX_WORKING_DAYS:
            raise ValueError(f"working days to add must be 0..{MAX_WORKING_DAYS}, got {days}")
        day, counted = start, 0
        while counted < days:
            day += dt.timedelta(days=1)
            counted += self.is_working_day(day)
        return day

    def working_days_between(self, start: dt.date, end: dt.date) -> int:
        """The working days after `start` up to and including `end` (0 when `end` <= `start`)."""
        if (end - start).days > MAX_WORKING_DAYS * 2:
            raise ValueError(f"{start} to {end} is longer than a working-day count may span")
        count, day = 0, start
        while day < end:
            day += dt.timedelta(days=1)
            count += self.is_working_day(day)
        return count


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("chinese-calendar")
    except metadata.PackageNotFoundError:  # pragma: no cover - installed with the hub
        return "unknown version"


def read_extra_years(path: Path) -> dict[int, YearDays]:
    """Read the extra years' YAML file (see the module docstring); CalendarFileError naming the
    file, the year and what is wrong."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise CalendarFileError(
            f"cannot read the working-day calendar file {path}: {error}"
        ) from error
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise CalendarFileError(
            f"{path}: expected a mapping of years to {{holidays: [...], workdays: [...]}}, "
            f"got {type(document).__name__}"
        )
    return {_year(path, key): _notice(path, key, value) for key, value in document.items()}


def _year(path: Path, key: Any) -> int:
    if isinstance(key, bool) or not isinstance(key, int) or not 1949 < key < 2200:
        raise CalendarFileError(f"{path}: {key!r} is not a year (a number such as 2027)")
    return key


def _notice(path: Path, year: Any, value: Any) -> YearDays:
    if not isinstance(value, dict) or set(value) - {"holidays", "workdays"}:
        raise CalendarFileError(
            f"{path}: year {year} must have only `holidays` and `workdays`, lists of dates"
        )
    return YearDays(
        holidays=frozenset(_days(path, year, "holidays", value.get("holidays"))),
        workdays=frozenset(_days(path, year, "workdays", value.get("workdays"))),
    )


def _days(path: Path, year: int, name: str, values: Any) -> Iterable[dt.date]:
    if values is None:
        return []
    if not isinstance(values, list):
        raise CalendarFileError(f"{path}: year {year} {name} must be a list of dates")
    days = []
    for value in values:
        day = value if isinstance(value, dt.date) else None
        if isinstance(value, str):
            try:
                day = dt.date.fromisoformat(value)
            except ValueError:
                day = None
        if day is None or isinstance(day, dt.datetime) or day.year != year:
            shown = value.isoformat() if isinstance(value, dt.date) else repr(value)
            raise CalendarFileError(
                f"{path}: year {year} {name}: {shown} is not a date of {year} (YYYY-MM-DD)"
            )
        if name == "workdays" and day.weekday() < 5:
            raise CalendarFileError(
                f"{path}: year {year} workdays: {day} is a weekday; list weekend days worked only"
            )
        days.append(day)
    return days
