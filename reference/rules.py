"""The cross-checks: named rules judging a record by the reference lists, not only its format.

Each rule has a kebab-case name, a one-line statement, the datasets it applies to, the lists it
needs (`reference.lists`) and a check that yields findings: the field path
(`inspectors[1].certificate_number`), the value and a message naming the rule and the day the
record was judged on. Whether a finding rejects the record or warns is not the rule's business
but the configuration's (`reference.rulebook`); `default` is the disposition when nobody says.

A check reads the canonical record as the envelope carries it (`Envelope.data`: dates as ISO
text) and is never asked about a delete, which carries only the key. It is asked only when
every list it needs was fed: a list never fed judges nothing (`ReferenceLists.loaded`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from reference.lists import ListName, ReferenceLists
from standard.types import SHANGHAI

Disposition = Literal["reject", "warn", "off"]
"""What a rule's findings do: reject the record, warn in the quality scorecard, or nothing."""
DISPOSITIONS: tuple[Disposition, ...] = ("reject", "warn", "off")

RANDOM_INSPECTION = "1"
"""Dictionary inspection_category: 双随机抽查, an inspection of objects drawn at random."""

RECORD_DAYS: dict[str, tuple[str, ...]] = {
    "inspection": ("inspection_time",),
    "penalty_case": ("decision_date", "filing_time", "lead_time"),
    "risk_warning": ("issued_time",),
}
"""The fields giving the day a record is judged on, the first present one winning: an
inspection's day, a case's decision (else its filing, else its registration), a warning's issue."""


@dataclass(frozen=True)
class RuleFinding:
    """What a rule found wrong in one record: the field path, its value, and why."""

    rule: str
    field: str
    value: Any
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data (answers, the journal)."""
        return {"rule": self.rule, "field": self.field, "value": self.value,
                "message": self.message}  # fmt: skip


@dataclass(frozen=True)
class Day:
    """The day a record is judged on, and the field that gave it (named in messages)."""

    day: date
    field: str

    def __str__(self) -> str:
        return f"{self.day.isoformat()} ({self.field})"


Check = Callable[[Mapping[str, Any], Day, ReferenceLists], Iterator[tuple[str, Any, str]]]
"""A rule's check: (record, its day, the lists) → (field path, value, message) per finding."""


@dataclass(frozen=True)
class Rule:
    """One named cross-check (see the module docstring)."""

    name: str
    statement: str
    datasets: tuple[str, ...]
    needs: tuple[ListName, ...]
    default: Disposition
    check: Check

    def judge(
        self,
        dataset: str,
        data: Mapping[str, Any],
        lists: ReferenceLists,
        *,
        day: Day | None = None,
    ) -> list[RuleFinding]:
        """The findings of this rule on one record of `dataset` (its lists are loaded);
        `day`: the record's day, when the caller read it already (`record_day`)."""
        day = day or record_day(dataset, data)
        return [
            RuleFinding(self.name, path, value, f"{self.name}: {message}")
            for path, value, message in self.check(data, day, lists)
        ]


def record_day(dataset: str, data: Mapping[str, Any]) -> Day:
    """The day `data` is judged on (RECORD_DAYS), in Asia/Shanghai; today for a dataset that
    names none (a check then judges the record as of its arrival)."""
    for name in RECORD_DAYS.get(dataset, ()):
        value = data.get(name)
        if isinstance(value, str) and value:
            return Day(_local_day(value), name)
    return Day(datetime.now(SHANGHAI).date(), "arrival")


def _local_day(text: str) -> date:
    """The Asia/Shanghai day of an ISO date or date-time (the standard writes both)."""
    if len(text) == 10:
        return date.fromisoformat(text)
    instant = datetime.fromisoformat(text)
    if instant.tzinfo is None:
        return instant.date()
    return instant.astimezone(SHANGHAI).date()


def _catalogue_item_in_force(
    data: Mapping[str, Any], day: Day, lists: ReferenceLists
) -> Iterator[tuple[str, Any, str]]:
    code = data.get("catalogue_code")
    if not code:
        return  # optional in risk warnings
    item = lists.catalogue_item(code)
    if item is None:
        yield "catalogue_code", code, f"catalogue item {code} is not in the catalogue"
    elif not item.in_force_on(day.day):
        until = item.valid_until.isoformat() if item.valid_until else "open"
        yield (
            "catalogue_code",
            code,
            f"catalogue item {code} ({item.name}) is not in force on {day}: status "
            f"{item.status}, valid {item.valid_from.isoformat()} to {until}",
        )


def _inspector_certificate_valid(
    data: Mapping[str, Any], day: Day, lists: ReferenceLists
) -> Iterator[tuple[str, Any, str]]:
    for index, inspector in enumerate(data.get("inspectors") or ()):
        number = inspector.get("certificate_number")
        path = f"inspectors[{index}].certificate_number"
        officer = lists.officer(number)
        if officer is None:
            yield path, number, f"certificate {number} is not in the officer list"
        elif not officer.valid_on(day.day):
            yield (
                path,
                number,
                f"certificate {number} of {officer.name} is not valid on {day}: status "
                f"{officer.status}, valid {officer.certificate_issued.isoformat()} to "
                f"{officer.certificate_valid_until.isoformat()}",
            )


def _random_inspection_has_plan(
    data: Mapping[str, Any], day: Day, lists: ReferenceLists
) -> Iterator[tuple[str, Any, str]]:
    if data.get("inspection_category") == RANDOM_INSPECTION and not data.get("plan_id"):
        yield (
            "plan_id",
            None,
            f"a 双随机 inspection (inspection_category 1) on {day} names no plan_id",
        )


def _party_in_supervised_objects(
    data: Mapping[str, Any], day: Day, lists: ReferenceLists
) -> Iterator[tuple[str, Any, str]]:
    code = (data.get("party") or {}).get("certificate_code")
    if not code:
        return
    found = lists.supervised_object(code)
    if found is None:
        yield (
            "party.certificate_code",
            code,
            f"party {code} is not in the supervised-object list (record of {day})",
        )
    elif data.get("inspection_category") == RANDOM_INSPECTION and not found.in_random_draw:
        yield (
            "party.certificate_code",
            code,
            f"party {code} ({found.name}) was inspected at random on {day} but is not in the "
            "双随机 draw pool",
        )


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            "catalogue-item-in-force",
            "The catalogue code names a supervision item in force on the record's own day.",
            ("inspection", "penalty_case", "risk_warning"),
            ("catalogue",),
            "reject",
            _catalogue_item_in_force,
        ),
        Rule(
            "inspector-certificate-valid",
            "Each inspector's enforcement certificate is held on duty and valid on the "
            "inspection day.",
            ("inspection",),
            ("officers",),
            "reject",
            _inspector_certificate_valid,
        ),
        Rule(
            "random-inspection-has-plan",
            "A 双随机 inspection (inspection_category 1) names the plan it was drawn by.",
            ("inspection",),
            (),
            "warn",
            _random_inspection_has_plan,
        ),
        Rule(
            "party-in-supervised-objects",
            "The party is in the supervised-object list (and, inspected at random, in the draw "
            "pool).",
            ("inspection", "penalty_case"),
            ("objects",),
            "warn",
            _party_in_supervised_objects,
        ),
    )
}
"""Every cross-check, by name."""
