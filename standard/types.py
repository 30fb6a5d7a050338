"""Annotated field types of the standard: codes, money in 元 and 万元, and Shanghai-time timestamps.

Every code type first normalises what arrives (Unicode NFKC, so full-width ``９１３３…`` becomes
``9133…``; surrounding whitespace removed; letters upper-cased) and then checks the value with
``standard.checks``. A failed check becomes a pydantic error of type ``code_check`` whose context
carries the check's ``rule`` and ``message``; ``standard.datasets.validate`` turns it into a
``Violation``.

Money
    ``Yuan`` is an amount in 元: a ``Decimal`` ≥ 0 with at most 2 decimal places (分). On input a
    JSON string or number is accepted; the canonical form is quantised to 2 places and serialised
    to JSON as a *string* (``"2000.00"``), because JSON numbers pass through binary floating point
    in most consumers and lose cents. ``WanYuan`` is an amount in 万元 (10,000 元), as the 双公示
    standard requires: at most 6 decimal places (so exactly 分), serialised as ``"0.200000"``.
    Units are never guessed: ``wan_yuan_to_yuan`` and ``yuan_to_wan_yuan`` convert explicitly and
    refuse a conversion that is not exact.

Numbers
    A number a sender writes is read only within ``NUMBER_BOUNDS``: at most 40 significant
    digits, its first digit no higher than 10^40 and its last no finer than 10^-40, and at most
    100 characters as written. ``8000e999999999`` (13 bytes) would otherwise be a billion digits
    once written out; money and codes never come near the bounds. ``bounded_number`` reads text
    within them, ``check_number_bounds`` checks a number already read; both raise
    ``NumberOutOfBounds`` before any arithmetic.

Time
    ``ShanghaiDateTime`` is always timezone-aware. A naive value (``2026-03-01 10:00:00``) is taken
    as Asia/Shanghai wall time; an aware one is converted to Asia/Shanghai. JSON carries ISO 8601
    with the offset: ``2026-03-01T10:00:00+08:00``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

from standard.checks import (
    CheckFailure,
    check_credit_code,
    check_id_number,
    check_industry,
    check_org_code,
)
from standard.errors import StandardError, quoted, render_value
from standard.fields import SearchKey

SHANGHAI = ZoneInfo("Asia/Shanghai")
CREDIT_CODE_PATTERN = r"^[0-9A-HJ-NPQRTUWXY]{18}$"
ID_NUMBER_PATTERN = r"^[0-9]{17}[0-9X]$"


def normalise_code(value: object) -> object:
    """NFKC (full-width → ASCII), strip whitespace, upper-case; non-strings pass unchanged."""
    if isinstance(value, str):
        # NFKC leaves ASCII as it is, and most codes arrive in ASCII.
        text = value if value.isascii() else unicodedata.normalize("NFKC", value)
        return text.strip().upper()
    return value


def _code_error(failure: CheckFailure) -> PydanticCustomError:
    return PydanticCustomError(
        "code_check",
        "{message}",
        {
            "rule": failure.rule,
            "message": failure.message,
            "kind": failure.kind,
            "position": failure.position,
        },
    )


def _checked(check: Callable[[str], object]) -> Callable[[str], str]:
    def run(value: str) -> str:
        try:
            check(value)
        except CheckFailure as failure:
            raise _code_error(failure) from failure
        return value

    return run


def _format_error(rule: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("code_check", "{message}", {"rule": rule, "message": message})


CreditCode = Annotated[
    str,
    BeforeValidator(normalise_code),
    AfterValidator(_checked(check_credit_code)),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": CREDIT_CODE_PATTERN,
            "x-check": "GB 32100-2015 unified social credit code with check character",
        }
    ),
    SearchKey("credit_code"),
]
"""统一社会信用代码: 18 characters, GB 32100-2015, check character verified; it identifies an
organisation in every record that names it (a search key)."""

OrgCode = Annotated[
    str,
    BeforeValidator(normalise_code),
    AfterValidator(_checked(check_org_code)),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9A-Z]{8}[0-9X]$",
            "x-check": "GB 11714 organisation code, 9 characters without hyphen",
        }
    ),
]
"""组织机构代码: 9 characters without the printed hyphen, GB 11714 check character verified."""

IdNumber = Annotated[
    str,
    BeforeValidator(normalise_code),
    AfterValidator(_checked(check_id_number)),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": ID_NUMBER_PATTERN,
            "x-check": "GB 11643-1999 resident ID number (ISO 7064 MOD 11-2, birth date exists)",
        }
    ),
]
"""公民身份号码: 18 characters, GB 11643-1999, check character and birth date verified."""


def _six_digits(value: str) -> str:
    if len(value) != 6 or not value.isascii() or not value.isdigit():
        raise _format_error(
            "GB/T 2260 region code format",
            f"region code {quoted(value)} must be 6 digits (province, prefecture, county)",
        )
    return value


RegionCode = Annotated[
    str,
    BeforeValidator(normalise_code),
    AfterValidator(_six_digits),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]{6}$",
            "x-check": "GB/T 2260 administrative division, valid on the record's date",
        }
    ),
]
"""行政区划代码: 6 digits. Whether the code is in force is a dataset rule ('region in force'),
because codes change over time and only the record knows its date (see ``region_in_force``)."""

IndustryCode = Annotated[
    str,
    BeforeValidator(normalise_code),
    AfterValidator(_checked(check_industry)),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([A-T]|[A-T]?[0-9]{2,4})$",
            "x-check": "GB/T 4754-2017 industry classification",
        }
    ),
]
"""国民经济行业分类: section letter A-T and/or 2-4 digits (``C``, ``13``, ``C1311``)."""


def _catalogue_code(value: str) -> str:
    if len(value) != 14 or not value.isascii() or not value.isdigit():
        raise _format_error(
            "catalogue code format",
            f"supervision catalogue code {quoted(value)} must be exactly 14 digits",
        )
    return value


CatalogueCode = Annotated[
    str,
    BeforeValidator(normalise_code),
    AfterValidator(_catalogue_code),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]{14}$"}),
]
"""监管事项目录编码: exactly 14 digits."""

INSPECTION_LIST_CODE_MIN = 19
INSPECTION_LIST_CODE_MAX = 50


def _inspection_list_code(value: str) -> str:
    size = len(value)
    if not INSPECTION_LIST_CODE_MIN <= size <= INSPECTION_LIST_CODE_MAX:
        raise _format_error(
            "inspection list code length",
            f"inspection list code {quoted(value)} has {size} characters; it must have "
            f"{INSPECTION_LIST_CODE_MIN} to {INSPECTION_LIST_CODE_MAX}",
        )
    try:
        check_credit_code(value[:18])
    except CheckFailure as failure:
        raise _format_error(
            "inspection list code organ",
            f"characters 1-18 of inspection list code {quoted(value)} must be the implementing "
            f"organ's credit code: {failure.message}",
        ) from failure
    if value[18] not in "12345":
        raise _format_error(
            "inspection list code kind digit",
            f"character 19 of inspection list code {quoted(value)} is {value[18]!r}; it must be a "
            f"digit 1-5",
        )
    tail = value[19:]
    if tail and not (tail.isascii() and tail.isdigit()):
        raise _format_error(
            "inspection list code sequence",
            f"characters 20 on of inspection list code {quoted(value)} must be digits, "
            f"got {quoted(tail)}",
        )
    return value


InspectionListCode = Annotated[
    str,
    BeforeValidator(normalise_code),
    AfterValidator(_inspection_list_code),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9A-HJ-NPQRTUWXY]{18}[1-5][0-9]{0,31}$",
            "minLength": INSPECTION_LIST_CODE_MIN,
            "maxLength": INSPECTION_LIST_CODE_MAX,
        }
    ),
]
"""检查实施清单编码: the implementing organ's 18-character credit code (check character verified),
a digit 1-5, then digits; 19 to 50 characters in all.

DOMAIN fixes only the first 19 characters; the rest of the structure is not public. 50 is the
length limit the national behaviour specification gives its other 编号 fields, so a longer value
is a mistake, while any realistic suffix (a 14-digit catalogue code and a sequence) fits."""

PartyCertificateCode = Annotated[
    str,
    BeforeValidator(normalise_code),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 20}),
]
"""行政相对人证件号码 (≤ 20 characters): a credit code, organisation code or ID number depending on
the certificate type, checked by the cross-field rule 'certificate code matches type'."""


# Certificate types (dictionary certificate_type) whose codes have a check algorithm.
CERTIFICATE_CHECKS: dict[str, Callable[[str], object]] = {
    "001": check_credit_code,
    "002": check_org_code,
    "111": check_id_number,
}


def certificate_code_problem(certificate_type: str, code: str) -> str | None:
    """Why ``code`` is not a valid code for ``certificate_type``, or None when it is."""
    if len(code) > 20:
        return f"certificate code {quoted(code)} has {len(code)} characters; at most 20 allowed"
    check = CERTIFICATE_CHECKS.get(certificate_type)
    if check is None:
        return None
    try:
        check(code)
    except CheckFailure as failure:
        return failure.message
    return None


# --- numbers -----------------------------------------------------------------------------------

MAX_NUMBER_DIGITS = 40
"""Most significant digits of a number the hub reads (an amount in 元 needs under 20)."""
MAX_NUMBER_EXPONENT = 40
"""A number's first digit is at most 10^this, its last digit at least 10^-this."""
MAX_NUMBER_CHARACTERS = 100
"""Most characters of a number as written (sign, digits, point, exponent), checked first."""
NUMBER_BOUNDS = (
    f"at most {MAX_NUMBER_DIGITS} significant digits, from 10^-{MAX_NUMBER_EXPONENT} to "
    f"10^{MAX_NUMBER_EXPONENT}, written in at most {MAX_NUMBER_CHARACTERS} characters"
)


class NumberOutOfBounds(StandardError):
    """A number has absurdly many digits or an absurd exponent; it is refused before any
    arithmetic (rule `number bounds`). `text` is the number as written, or None."""

    rule = "number bounds"

    def __init__(self, message: str, text: str | None = None) -> None:
        self.text = text
        super().__init__(message)


def _out_of_bounds(shown: str, why: str, text: str | None) -> NumberOutOfBounds:
    return NumberOutOfBounds(
        f"the number {shown} is out of bounds: {why}; numbers have {NUMBER_BOUNDS} "
        f"(rule {NumberOutOfBounds.rule})",
        text,
    )


def check_number_bounds(number: Decimal | int, text: str | None = None) -> None:
    """Raise NumberOutOfBounds unless `number` is finite and within NUMBER_BOUNDS."""
    # Every amount of every record passes here: the number is written out for the message only
    # when there is one, and its digits are read once.
    if isinstance(number, int):
        if abs(number) >= 10 ** (MAX_NUMBER_EXPONENT + 1):
            why = f"it is {MAX_NUMBER_EXPONENT + 1} digits or longer"
            raise _out_of_bounds(_shown_number(number, text), why, text)
        return
    if not number.is_finite():
        raise _out_of_bounds(_shown_number(number, text), "it is not a finite number", text)
    parts = number.as_tuple()
    digits = len(parts.digits)
    if digits > MAX_NUMBER_DIGITS:
        raise _out_of_bounds(
            _shown_number(number, text), f"it has {digits} significant digits", text
        )
    if number and number.adjusted() > MAX_NUMBER_EXPONENT:
        why = f"its first digit stands for 10^{number.adjusted()}"
        raise _out_of_bounds(_shown_number(number, text), why, text)
    exponent = int(parts.exponent)
    if exponent < -MAX_NUMBER_EXPONENT:
        why = f"its last digit stands for 10^{exponent}"
        raise _out_of_bounds(_shown_number(number, text), why, text)


def _shown_number(number: Decimal | int, text: str | None) -> str:
    return quoted(text) if text is not None else render_value(number)


def bounded_number(text: str) -> Decimal:
    """`text`, a number as a sender wrote it (checked by the caller's own syntax), as an exact
    Decimal within NUMBER_BOUNDS; NumberOutOfBounds otherwise. The length is checked before
    Decimal reads it, so the work is bounded whatever the text."""
    if len(text) > MAX_NUMBER_CHARACTERS:
        raise _out_of_bounds(quoted(text), f"it is written in {len(text)} characters", text)
    number = Decimal(text)
    check_number_bounds(number, text)
    return number


# --- money -------------------------------------------------------------------------------------

FEN = Decimal("0.01")
MILLIONTH = Decimal("0.000001")


class AmountNotExact(StandardError):
    """An amount cannot be represented exactly in the target unit or precision."""


def _as_decimal(value: object) -> object:
    # bool is an int subclass; True as an amount is a mapping bug, not 1 元.
    if isinstance(value, bool):
        raise PydanticCustomError("amount", "amount {value} is a boolean", {"value": value})
    if isinstance(value, float):
        # repr gives the shortest decimal that round-trips, i.e. what the sender wrote.
        return Decimal(repr(value))
    try:
        if isinstance(value, str):
            return bounded_number(value.strip()) if _NUMBER_TEXT.fullmatch(value) else value
        if isinstance(value, Decimal | int):
            check_number_bounds(value)
    except NumberOutOfBounds as error:
        raise PydanticCustomError("amount", "{reason}", {"reason": str(error)}) from None
    return value


# What pydantic would read as a Decimal: checked for bounds first (other text it refuses itself).
_NUMBER_TEXT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)


def _amount(quantum: Decimal, unit: str) -> Callable[[Decimal], Decimal]:
    places = -quantum.as_tuple().exponent  # type: ignore[operator]

    def check(value: Decimal) -> Decimal:
        if value < 0:
            raise PydanticCustomError(
                "amount", "amount {value} {unit} is negative", {"value": str(value), "unit": unit}
            )
        try:
            exact = value.quantize(quantum)
        except InvalidOperation:
            raise PydanticCustomError(
                "amount", "amount {value} {unit} is too large", {"value": str(value), "unit": unit}
            ) from None
        if exact != value:
            raise PydanticCustomError(
                "amount",
                "amount {value} {unit} has more than {places} decimal places",
                {"value": format(value, "f"), "unit": unit, "places": places},
            )
        return exact

    return check


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


Yuan = Annotated[
    Decimal,
    BeforeValidator(_as_decimal),
    AfterValidator(_amount(FEN, "元")),
    PlainSerializer(_decimal_text, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(0|[1-9][0-9]*)\.[0-9]{2}$",
            "x-unit": "元 (yuan)",
            "description": "Amount in 元, exactly 2 decimal places, as a string.",
        }
    ),
]

WanYuan = Annotated[
    Decimal,
    BeforeValidator(_as_decimal),
    AfterValidator(_amount(MILLIONTH, "万元")),
    PlainSerializer(_decimal_text, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(0|[1-9][0-9]*)\.[0-9]{6}$",
            "x-unit": "万元 (10,000 yuan)",
            "description": "Amount in 万元, exactly 6 decimal places (1 分), as a string.",
        }
    ),
]


def wan_yuan_to_yuan(amount: Decimal) -> Decimal:
    """万元 → 元, exactly: ``Decimal("0.2")`` → ``Decimal("2000.00")``.

    Raises AmountNotExact when the result is not a whole number of 分 (more than 6 decimal
    places in 万元).
    """
    yuan = amount.scaleb(4)
    exact = yuan.quantize(FEN)
    if exact != yuan:
        raise AmountNotExact(f"{_decimal_text(amount)} 万元 is not a whole number of 分")
    return exact


def yuan_to_wan_yuan(amount: Decimal) -> Decimal:
    """元 → 万元, exactly: ``Decimal("2000.00")`` → ``Decimal("0.200000")``.

    Raises AmountNotExact when the amount is not a whole number of 分 (more than 2 places).
    """
    if amount.quantize(FEN) != amount:
        raise AmountNotExact(f"{_decimal_text(amount)} 元 is not a whole number of 分")
    return amount.scaleb(-4).quantize(MILLIONTH)


# --- time --------------------------------------------------------------------------------------


def as_shanghai(value: datetime) -> datetime:
    """A naive datetime taken as Asia/Shanghai wall time; an aware one converted to it."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        return value.replace(tzinfo=SHANGHAI)
    return value.astimezone(SHANGHAI)


def _iso(value: datetime) -> str:
    return as_shanghai(value).isoformat()


ShanghaiDateTime = Annotated[
    datetime,
    AfterValidator(as_shanghai),
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?\+08:00$",
            "description": "ISO 8601 with the +08:00 offset; naive input is Asia/Shanghai time.",
        }
    ),
]
