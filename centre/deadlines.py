"""Deadlines as data: how long a department has for a warning or a task (calendar or working days).

Read from a YAML file (`config/deadlines.yaml`; another with JGHUB_DEADLINES_FILE) and checked when
it is loaded: a mistake names the file, the field and the rule. Without a file the defaults below
apply (the examples of the domain brief):

    warning:                        # by risk level (dictionary risk_level: D high ... A low)
      by_level:
        D: {days: 1}                # red
        C: {days: 3}                # orange
        B: {days: 7}                # yellow
        A: {days: 15}               # blue
      default: {days: 15}
    task:
      by_scenario:                  # a task from a complaint: the complaint's scenario decides
        "01": {days: 7, count: working}
      by_type:                      # dictionary task_type
        "2": {days: 15, count: working}
      default: {days: 15}
    reminders:                      # how long before the due time the department is reminded
      warning: {hours: 12}          # (centre.notices), per kind, in hours or days
      default: {days: 1}

A task's rule is its complaint's scenario's when the ledger knows the complaint and the table has
the scenario, else its type's, else the default. `count: working` counts working days
(`centre.workdays`): the item is due at the end of the n-th working day after the day it was
dispatched (Asia/Shanghai); `count: calendar` (the default) adds n whole days to the dispatch time.

    rules = DeadlineRules.load(path_or_None)
    due = rules.due("warning", "D", dispatched, calendar)    # CalendarNotCovered past its years
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from centre.workdays import WorkingCalendar
from standard.types import SHANGHAI

DEFAULT_FILE = Path("config/deadlines.yaml")


class DeadlinesFileError(ValueError):
    """The deadlines file cannot be used; the message names the file, the field and the rule."""


class Deadline(BaseModel):
    """One rule: `days` days, counted as calendar or working days."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    days: PositiveInt = Field(description="How many days the department has.")
    count: Literal["calendar", "working"] = Field(
        "calendar", description="calendar: whole days; working: the official working days."
    )

    def due(self, dispatched: dt.datetime, calendar: WorkingCalendar) -> dt.datetime:
        """When an item dispatched at `dispatched` is due (CalendarNotCovered past its years)."""
        if self.count == "calendar":
            return dispatched + dt.timedelta(days=self.days)
        local = dispatched.astimezone(SHANGHAI).date()
        last = calendar.add_working_days(local, self.days)
        # Due at the end of that working day: the first instant of the next day, local time.
        return dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), SHANGHAI)

    def __str__(self) -> str:
        return f"{self.days} {self.count} day{'s' if self.days != 1 else ''}"


class WarningDeadlines(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by_level: dict[str, Deadline] = Field(
        default_factory=lambda: {
            "D": Deadline(days=1),
            "C": Deadline(days=3),
            "B": Deadline(days=7),
            "A": Deadline(days=15),
        },
        description="By risk level (risk_level: D red, C orange, B yellow, A blue).",
    )
    default: Deadline = Deadline(days=15)


class TaskDeadlines(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by_scenario: dict[str, Deadline] = Field(
        default_factory=dict, description="By the scenario of the complaint the task came from."
    )
    by_type: dict[str, Deadline] = Field(
        default_factory=lambda: {"2": Deadline(days=15, count="working")},
        description="By task type (task_type); complaints forwarded: 15 working days.",
    )
    default: Deadline = Deadline(days=15)


class LeadTime(BaseModel):
    """How long before an item is due its department is reminded: `hours` or `days`, one of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    hours: PositiveInt | None = Field(None, description="The lead time in hours.")
    days: PositiveInt | None = Field(None, description="The lead time in days (24 hours each).")

    @model_validator(mode="after")
    def _one_unit(self) -> LeadTime:
        if (self.hours is None) == (self.days is None):
            raise ValueError("give the lead time in hours or in days, one of them: {hours: 24}")
        return self

    @property
    def span(self) -> dt.timedelta:
        return dt.timedelta(hours=self.hours or 0, days=self.days or 0)

    def __str__(self) -> str:
        count, unit = (self.hours, "hour") if self.hours is not None else (self.days, "day")
        return f"{count} {unit}{'s' if count != 1 else ''}"


class Reminders(BaseModel):
    """When the centre reminds a department that an item is due soon (临期提醒): the lead time
    of each kind of item (warning, task), else the default."""

    model_config = ConfigDict(extra="forbid")
    warning: LeadTime | None = Field(
        default_factory=lambda: LeadTime(hours=12),
        description="Lead time of risk warnings (a red one has a day).",
    )
    task: LeadTime | None = Field(None, description="Lead time of collaboration tasks.")
    default: LeadTime = Field(
        default_factory=lambda: LeadTime(days=1), description="Lead time of the other kinds."
    )

    def lead(self, kind: str) -> LeadTime:
        """The lead time of items of `kind` ("warning" or "task")."""
        chosen = {"warning": self.warning, "task": self.task}.get(kind)
        return chosen or self.default

    def longest(self) -> dt.timedelta:
        """The longest lead time of any kind: how far ahead a scan looks."""
        return max(self.lead(kind).span for kind in ("warning", "task"))


class DeadlineRules(BaseModel):
    """The whole table (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    warning: WarningDeadlines = Field(default_factory=WarningDeadlines)
    task: TaskDeadlines = Field(default_factory=TaskDeadlines)
    reminders: Reminders = Field(default_factory=Reminders)

    @classmethod
    def load(cls, path: Path | None = None) -> DeadlineRules:
        """The rules of the YAML file at `path`; the defaults when None. DeadlinesFileError
        names the file, the field and the rule when it cannot be used."""
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise DeadlinesFileError(f"{path}: cannot be read: {error}") from None
        try:
            return cls.model_validate(data or {})
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
                for e in error.errors()
            )
            raise DeadlinesFileError(f"{path}: {problems}") from None

    def rule(
        self,
        kind: str,
        *,
        level: str | None = None,
        task_type: str | None = None,
        scenario: str | None = None,
    ) -> tuple[str, Deadline]:
        """The rule for an item and what chose it (e.g. "level D", "scenario 01", "default")."""
        if kind == "warning":
            if level is not None and level in self.warning.by_level:
                return f"level {level}", self.warning.by_level[level]
            return "default", self.warning.default
        if scenario is not None and scenario in self.task.by_scenario:
            return f"scenario {scenario}", self.task.by_scenario[scenario]
        if task_type is not None and task_type in self.task.by_type:
            return f"type {task_type}", self.task.by_type[task_type]
        return "default", self.task.default
