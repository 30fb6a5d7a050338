"""The base of every dataset: model settings, named cross-field rules, and violation reports.

A dataset is a pydantic model deriving ``StandardRecord``. Its cross-field rules are methods
decorated with ``@cross_field_rule(name, why)`` that yield ``Breach``es; every rule runs once the
fields are valid one by one, and all breaches are raised together as one pydantic
``ValidationError`` (error type ``jghub_rule``) located at the offending field, so nested records
report ``party.certificate_code`` like any field error. ``violations_from`` translates any pydantic
``ValidationError`` into ``Violation``s (dataset, field in English and Chinese, rule, value,
message) using the error types and their context, never the message text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from standard.checks import CheckFailure, check_region
from standard.errors import Violation, quoted, render_value
from standard.fields import path_parts, zh_path
from standard.types import certificate_code_problem

RULE_ERROR = "jghub_rule"


@dataclass(frozen=True)
class Breach:
    """One breach of a cross-field rule, reported on ``field`` (a name or dotted path)."""

    field: str
    value: Any
    message: str


@dataclass(frozen=True)
class Rule:
    """A named cross-field rule: ``name`` is what violations cite, ``why`` its reason or law."""

    name: str
    why: str
    check: Callable[[Any], Iterable[Breach]]


RuleMethod = TypeVar("RuleMethod", bound=Callable[..., Iterable[Breach]])


def cross_field_rule(name: str, why: str) -> Callable[[RuleMethod], RuleMethod]:
    """Mark a method as a cross-field rule of its dataset (see the module docstring)."""

    def mark(method: RuleMethod) -> RuleMethod:
        method.__jghub_rule__ = Rule(name, why, method)  # type: ignore[attr-defined]
        return method

    return mark


class StandardRecord(BaseModel):
    """Base of every dataset and sub-record of the standard.

    Records are values: frozen (change one with ``model_copy(update=...)`` and validate again),
    unknown fields forbidden, surrounding whitespace of strings removed, and an empty string is not
    a value (send null or leave the field out).
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        str_strip_whitespace=True,
        str_min_length=1,
    )

    __rules__: ClassVar[tuple[Rule, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        found: dict[str, Rule] = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                rule = getattr(attribute, "__jghub_rule__", None)
                if isinstance(rule, Rule):
                    found[rule.check.__name__] = rule
        cls.__rules__ = tuple(found.values())

    @classmethod
    def rules(cls) -> tuple[Rule, ...]:
        """The dataset's cross-field rules, in declaration order (base classes first)."""
        return cls.__rules__

    @model_validator(mode="after")
    def _apply_cross_field_rules(self) -> Self:
        breaches = [(rule.name, b) for rule in type(self).__rules__ for b in rule.check(self)]
        if breaches:
            raise rule_errors(type(self).__name__, breaches)
        return self


def rule_errors(title: str, breaches: Iterable[tuple[str, Breach]]) -> ValidationError:
    """A pydantic ValidationError holding named-rule breaches (error type ``jghub_rule``)."""
    errors = [
        InitErrorDetails(
            type=PydanticCustomError(RULE_ERROR, "{message}", {"rule": name, "message": b.message}),
            loc=path_parts(b.field),
            input=b.value,
        )
        for name, b in breaches
    ]
    return ValidationError.from_exception_data(title, errors)


# --- rule helpers shared by the datasets --------------------------------------------------------


def day_of(value: date | datetime) -> date:
    """The calendar day of a date or an (already Shanghai) datetime."""
    return value.date() if isinstance(value, datetime) else value


def not_before(
    later_field: str, later: date | datetime | None, earlier_field: str, earlier: Any
) -> Iterator[Breach]:
    """A breach when ``later`` falls on a day before ``earlier`` (same day allowed)."""
    if later is None or earlier is None:
        return
    # day_of inline: every record's date rules pass here.
    later_day = later.date() if isinstance(later, datetime) else later
    earlier_day = earlier.date() if isinstance(earlier, datetime) else earlier
    if later_day < earlier_day:
        yield Breach(
            later_field,
            later,
            f"value {render_value(later)} is before {earlier_field} {render_value(earlier)}",
        )


def not_earlier(
    later_field: str, later: datetime | None, earlier_field: str, earlier: datetime | None
) -> Iterator[Breach]:
    """A breach when timestamp ``later`` is earlier than ``earlier`` (equal allowed)."""
    if later is None or earlier is None:
        return
    if later < earlier:
        yield Breach(
            later_field,
            later,
            f"value {render_value(later)} is before {earlier_field} {render_value(earlier)}",
        )


def strictly_after(
    later_field: str, later: datetime | None, earlier_field: str, earlier: datetime | None
) -> Iterator[Breach]:
    """A breach when ``later`` is not strictly after ``earlier`` (both timestamps)."""
    if later is None or earlier is None:
        return
    if later <= earlier:
        yield Breach(
            later_field,
            later,
            f"value {render_value(later)} is not after {earlier_field} {render_value(earlier)}",
        )


def certificate_breaches(
    type_field: str, certificate_type: str | None, code_field: str, code: str | None
) -> Iterator[Breach]:
    """Breaches of 'certificate code matches type': a code must pass its type's check."""
    if certificate_type is None and code is None:
        return
    if certificate_type is None:
        yield Breach(type_field, None, f"{code_field} is given, so the certificate type is needed")
        return
    if code is None:
        yield Breach(code_field, None, f"{type_field} {certificate_type} is given without a code")
        return
    problem = certificate_code_problem(certificate_type, code)
    if problem is not None:
        yield Breach(code_field, code, f"does not match {type_field} {certificate_type}: {problem}")


def region_breaches(field: str, code: str | None, on: date | datetime | None) -> Iterator[Breach]:
    """Breaches of 'region in force': the GB/T 2260 code must be valid on the record's date."""
    if code is None:
        return
    day = day_of(on) if on is not None else None
    try:
        check_region(code, day)
    except CheckFailure as failure:
        yield Breach(field, code, failure.message)


# --- translating pydantic errors into violations -------------------------------------------------


def _describe(error: Any) -> tuple[str, str]:
    """(rule, message) for one pydantic error, from its type and context."""
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    shown = render_value(value)
    said = quoted(render_value(value, limit=None))
    if kind in (RULE_ERROR, "code_check"):
        return str(ctx["rule"]), str(ctx["message"])
    if kind == "missing":
        return "mandatory", "the field is missing"
    if kind == "extra_forbidden":
        return "known field", "the dataset has no such field"
    if kind == "dictionary":
        return f"dictionary {ctx['dictionary']}", error["msg"]
    if kind == "string_too_long":
        limit = ctx["max_length"]
        return f"max length {limit}", f"value has {len(value)} characters; at most {limit} allowed"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "not empty", "value is an empty string; leave the field out or send null"
        return f"min length {ctx['min_length']}", f"value {said} is too short"
    if kind == "too_short":
        return f"at least {ctx['min_length']}", f"list has {ctx['actual_length']} items"
    if kind == "too_long":
        return f"at most {ctx['max_length']}", f"list has {ctx['actual_length']} items"
    if kind == "amount":
        return "amount", error["msg"]
    if kind.startswith(("date", "datetime", "timezone")):
        return "date format", f"value {said}: {error['msg']}"
    if kind.startswith("decimal"):
        return "amount", f"value {said}: {error['msg']}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return "range", f"value {shown}: {error['msg']}"
    if kind in ("enum", "literal_error"):
        return "allowed values", f"value {said}: {error['msg']}"
    return kind.replace("_", " "), f"value {said}: {error['msg']}"


def violations_from(
    dataset: str, model: type[BaseModel], error: ValidationError
) -> list[Violation]:
    """Every error of a pydantic ValidationError as a Violation of ``dataset``."""
    found: list[Violation] = []
    for item in error.errors(include_url=False):
        field, field_zh = zh_path(model, item["loc"])
        rule, message = _describe(item)
        value = None if item["type"] == "missing" else item.get("input")
        ctx = item.get("ctx") or {}
        if item["type"] == "value_error" and isinstance(ctx.get("error"), CheckFailure):
            failure = ctx["error"]
            rule, message = failure.rule, failure.message
        found.append(Violation(dataset, field, field_zh, rule, value, message))
    return found
