"""Check algorithms of the standard's codes: credit, organisation, ID number, region, industry.

Every check is strict on what it is given: it does not trim, fold case or convert full-width
characters (mappings normalise before they check), but its message names the offending character
and hints at the cause. A failed check raises :class:`CheckFailure`, a ``ValueError``, so a
pydantic validator that calls a check turns it into an ordinary validation error.

Decisions (the README's section on the standard gives the reasoning):

* An organisation code is checked in its stored form, 9 characters without the hyphen of the
  printed form ``XXXXXXXX-X``; the hyphenated form is rejected with a hint.
* A credit code's positions 9-17 (its organisation code) must pass GB 11714, its positions 3-8
  must be digits, and positions 1-2 must be a registration authority and kind GB 32100-2015
  defines (table ``standard/codetables/credit_code_kinds.csv``).
* Industry codes are checked against the sections and divisions of GB/T 4754-2017; groups and
  classes (3 and 4 digits) are checked structurally: their division must exist.
"""

from __future__ import annotations

import datetime
import functools
import operator
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from standard import codetables
from standard.codetables import IndustryDivision, IndustryLevel, IndustrySection, Region

__all__ = [
    "CREDIT_CODE_ALPHABET",
    "CheckFailure",
    "CheckKind",
    "Industry",
    "Region",
    "check_credit_code",
    "check_id_number",
    "check_industry",
    "check_org_code",
    "check_region",
    "credit_code_check_char",
    "id_number_birth_date",
    "id_number_check_char",
    "org_code_check_char",
]

CheckKind = Literal["credit-code", "org-code", "id-number", "region", "industry"]

CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ORG_CODE_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
ID_NUMBER_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
# Σ mod 11 = 0, 1, ..., 10 maps to these check characters (ISO 7064 MOD 11-2).
ID_NUMBER_CHECK_CHARS = "10X98765432"
DIGITS = "0123456789"

_LABELS: dict[str, str] = {
    "credit-code": "unified social credit code",
    "org-code": "organisation code",
    "id-number": "resident ID number",
    "region": "region code",
    "industry": "industry code",
}
_SHOWN_MAX = 40


def _shown(value: str) -> str:
    """The value as a message shows it: plain when printable, quoted when not, cut when huge."""
    cut = value if len(value) <= _SHOWN_MAX else value[:_SHOWN_MAX]
    text = cut if cut and cut.isprintable() and not any(c.isspace() for c in cut) else repr(cut)
    return text if cut is value else f"{text}… ({len(value)} characters)"


class CheckFailure(ValueError):
    """A code failed its check.

    Attributes:
        kind: which code: 'credit-code', 'org-code', 'id-number', 'region' or 'industry'.
        value: the value exactly as given.
        rule: short name of the rule that failed, e.g. 'GB 32100-2015 check character'.
        position: 1-based position of the offending character, or None when no single one is.
        reason: what is wrong, e.g. "check character is 'A', expected 'E'".
        message: the full sentence: "<code label> <value>: <reason> (<rule>)".
    """

    def __init__(
        self, kind: CheckKind, value: str, rule: str, reason: str, position: int | None = None
    ) -> None:
        self.kind: CheckKind = kind
        self.value = value
        self.rule = rule
        self.reason = reason
        self.position = position
        self.message = f"{_LABELS[kind]} {_shown(value)}: {reason} ({rule})"
        super().__init__(self.message)

    def __reduce__(
        self,
    ) -> tuple[type[CheckFailure], tuple[CheckKind, str, str, str, int | None]]:
        return (type(self), (self.kind, self.value, self.rule, self.reason, self.position))


def _character_problem(char: str, position: int, alphabet: str, described: str) -> str:
    if "\uff01" <= char <= "\uff5e":
        half = chr(ord(char) - 0xFEE0)
        return (
            f"full-width character '{char}' at position {position} (half-width '{half}'); "
            "normalise full-width characters before checking"
        )
    if char.isspace():
        return f"whitespace {char!r} at position {position}; trim the value before checking"
    if char.upper() in alphabet and char != char.upper():
        return f"lower-case '{char}' at position {position}; codes are upper case"
    shown = char if char.isprintable() else repr(char)
    return f"character '{shown}' at position {position} is not in the code alphabet {described}"


def _require_alphabet(
    kind: CheckKind, value: str, alphabet: str, described: str, rule: str, note: str = ""
) -> None:
    if _only(alphabet).fullmatch(value):
        return
    for index, char in enumerate(value):
        if char not in alphabet:
            reason = _character_problem(char, index + 1, alphabet, described)
            if note and char.isascii() and char.isalpha() and char.upper() == char:
                reason += f" ({note})"
            raise CheckFailure(kind, value, rule, reason, index + 1)


def _require_length(kind: CheckKind, value: str, length: int, rule: str, hint: str = "") -> None:
    if len(value) != length:
        reason = f"length {len(value)}, expected {length}" + (f"; {hint}" if hint else "")
        raise CheckFailure(kind, value, rule, reason)


@functools.cache
def _only(alphabet: str) -> re.Pattern[str]:
    """A pattern matching strings made only of ``alphabet``: the fast path of the scan."""
    return re.compile(f"[{re.escape(alphabet)}]*")


@functools.cache
def _values(alphabet: str) -> dict[str, int]:
    return {char: value for value, char in enumerate(alphabet)}


def _weighted_sum(text: str, alphabet: str, weights: tuple[int, ...]) -> int:
    # map over the text, not a generator of pairs: every code of every record is summed here.
    if len(text) != len(weights):
        raise ValueError(f"{len(text)} characters to weigh with {len(weights)} weights")
    return sum(map(operator.mul, map(_values(alphabet).__getitem__, text), weights))


# -- unified social credit code (GB 32100-2015) -------------------------------------------------

_CREDIT_RULE = "GB 32100-2015"
_CREDIT_DESCRIBED = "0-9 A-H J-N P-R T U W-Y"


def credit_code_check_char(first17: str) -> str:
    """The GB 32100-2015 check character of a credit code's first 17 characters."""
    _require_alphabet(
        "credit-code", first17, CREDIT_CODE_ALPHABET, _CREDIT_DESCRIBED, f"{_CREDIT_RULE} alphabet"
    )
    _require_length("credit-code", first17, 17, "check character input")
    return _credit_check_char(first17)


def _credit_check_char(first17: str) -> str:
    total = _weighted_sum(first17, CREDIT_CODE_ALPHABET, CREDIT_CODE_WEIGHTS)
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def check_credit_code(value: str) -> str:
    """Return ``value`` when it is a valid unified social credit code, else raise CheckFailure.

    Rules, in the order they are tried: the code alphabet (no I, O, S, V, Z); length 18;
    positions 3-8 (registration region) are digits; the check character (position 18);
    the registration authority (position 1) and kind (position 2); the organisation code in
    positions 9-17 passes GB 11714.
    """
    kind: CheckKind = "credit-code"
    _require_alphabet(
        kind,
        value,
        CREDIT_CODE_ALPHABET,
        _CREDIT_DESCRIBED,
        f"{_CREDIT_RULE} alphabet",
        note="GB 32100-2015 does not use I, O, S, V, Z",
    )
    _require_length(kind, value, 18, f"{_CREDIT_RULE} length")
    for index in range(2, 8):
        if value[index] not in DIGITS:
            raise CheckFailure(
                kind,
                value,
                f"{_CREDIT_RULE} registration region",
                f"character '{value[index]}' at position {index + 1}: positions 3-8 hold the "
                "registration region code and must be digits",
                index + 1,
            )
    expected = _credit_check_char(value[:17])
    if value[17] != expected:
        raise CheckFailure(
            kind,
            value,
            f"{_CREDIT_RULE} check character",
            f"check character is '{value[17]}', expected '{expected}'",
            18,
        )
    table = codetables.credit_code_kinds()
    authority, organisation_kind = value[0], value[1]
    if authority not in table.authorities:
        defined = ", ".join(sorted(table.authorities))
        raise CheckFailure(
            kind,
            value,
            f"{_CREDIT_RULE} registration authority",
            f"registration authority '{authority}' at position 1 is not defined "
            f"(defined: {defined})",
            1,
        )
    if (authority, organisation_kind) not in table.kinds:
        defined = ", ".join(f"{k.kind} {k.kind_name}" for k in table.kinds_of(authority))
        raise CheckFailure(
            kind,
            value,
            f"{_CREDIT_RULE} organisation kind",
            f"kind '{organisation_kind}' at position 2 is not defined for registration "
            f"authority {authority} ({table.authorities[authority]}); defined: {defined}",
            2,
        )
    org_part = value[8:17]
    org_expected = _org_check_char(org_part[:8])
    if org_part[8] != org_expected:
        raise CheckFailure(
            kind,
            value,
            "GB 11714-1997 check character",
            f"organisation code part {org_part} (positions 9-17) fails its GB 11714 check: "
            f"check character is '{org_part[8]}', expected '{org_expected}'",
            17,
        )
    return value


# -- organisation code (GB 11714-1997) ----------------------------------------------------------

_ORG_RULE = "GB 11714-1997"


def org_code_check_char(first8: str) -> str:
    """The GB 11714-1997 check character of an organisation code's first 8 characters."""
    _require_alphabet("org-code", first8, ORG_CODE_ALPHABET, "0-9 A-Z", f"{_ORG_RULE} alphabet")
    _require_length("org-code", first8, 8, "check character input")
    return _org_check_char(first8)


_ORG_CHECK_CHARS = {remainder: str(remainder) for remainder in range(1, 10)} | {10: "X", 11: "0"}


def _org_check_char(first8: str) -> str:
    remainder = 11 - _weighted_sum(first8, ORG_CODE_ALPHABET, ORG_CODE_WEIGHTS) % 11
    return _ORG_CHECK_CHARS[remainder]


def check_org_code(value: str) -> str:
    """Return ``value`` when it is a valid 9-character organisation code, else raise CheckFailure.

    The stored form has no hyphen: ``755918469``, not the printed ``75591846-9``. GB 11714's
    check detects every single substitution except between characters whose values differ by a
    multiple of 11 (e.g. '0' and 'B'): those are undetectable by the standard's design.
    """
    kind: CheckKind = "org-code"
    if len(value) == 10 and value[8] == "-":
        raise CheckFailure(
            kind,
            value,
            f"{_ORG_RULE} stored form",
            f"hyphen at position 9: the standard stores organisation codes as 9 characters "
            f"without the hyphen of the printed form (write {value[:8]}{value[9]})",
            9,
        )
    _require_alphabet(kind, value, ORG_CODE_ALPHABET, "0-9 A-Z", f"{_ORG_RULE} alphabet")
    _require_length(kind, value, 9, f"{_ORG_RULE} length")
    expected = _org_check_char(value[:8])
    if value[8] != expected:
        raise CheckFailure(
            kind,
            value,
            f"{_ORG_RULE} check character",
            f"check character is '{value[8]}', expected '{expected}'",
            9,
        )
    return value


# -- resident ID number (GB 11643-1999) ---------------------------------------------------------

_ID_RULE = "GB 11643-1999"


def id_number_check_char(first17: str) -> str:
    """The GB 11643-1999 (ISO 7064 MOD 11-2) check character of an ID number's first 17 digits."""
    _require_alphabet("id-number", first17, DIGITS, "0-9", f"{_ID_RULE} alphabet")
    _require_length("id-number", first17, 17, "check character input")
    return _id_check_char(first17)


def _id_check_char(first17: str) -> str:
    return ID_NUMBER_CHECK_CHARS[_weighted_sum(first17, DIGITS, ID_NUMBER_WEIGHTS) % 11]


def check_id_number(value: str, *, today: datetime.date | None = None) -> str:
    """Return ``value`` when it is a valid 18-character resident ID number, else raise CheckFailure.

    Rules, in order: digits and X only; length 18; X only in position 18; the birth date in
    positions 7-14 exists and is not after ``today`` (default: the current date); the check
    character (position 18).
    """
    kind: CheckKind = "id-number"
    _require_alphabet(kind, value, DIGITS + "X", "0-9 and X", f"{_ID_RULE} alphabet")
    hint = "15-digit first-generation numbers must be converted" if len(value) == 15 else ""
    _require_length(kind, value, 18, f"{_ID_RULE} length", hint)
    position_of_x = value.find("X")
    if 0 <= position_of_x < 17:
        raise CheckFailure(
            kind,
            value,
            f"{_ID_RULE} structure",
            f"'X' at position {position_of_x + 1}; X is only allowed as the check character "
            "(position 18)",
            position_of_x + 1,
        )
    if isinstance(today, datetime.datetime):
        today = today.date()
    _birth_date(value, today or datetime.date.today())
    expected = _id_check_char(value[:17])
    if value[17] != expected:
        raise CheckFailure(
            kind,
            value,
            f"{_ID_RULE} check character",
            f"check character is '{value[17]}', expected '{expected}'",
            18,
        )
    return value


def _birth_date(value: str, today: datetime.date) -> datetime.date:
    digits = value[6:14]
    try:
        born = datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise CheckFailure(
            "id-number",
            value,
            f"{_ID_RULE} birth date",
            f"birth date {digits} (positions 7-14) does not exist",
            7,
        ) from None
    if born > today:
        raise CheckFailure(
            "id-number",
            value,
            f"{_ID_RULE} birth date",
            f"birth date {born.isoformat()} (positions 7-14) is in the future",
            7,
        )
    return born


def id_number_birth_date(value: str) -> datetime.date:
    """The birth date of a valid ID number (raises CheckFailure when the number is not valid)."""
    check_id_number(value)
    return datetime.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))


# -- administrative division (GB/T 2260) --------------------------------------------------------

_REGION_RULE = "GB/T 2260"


def _period(region: Region, horizon: datetime.date) -> str:
    start = f"{region.valid_from} or earlier" if region.valid_from == horizon else region.valid_from
    end = region.valid_to.isoformat() if region.valid_to else "now"
    return f"valid from {start} to {end}"


def check_region(value: str, on: datetime.date | None = None) -> Region:
    """The region ``value`` denotes on the date ``on`` (default: today), else raise CheckFailure.

    ``on`` may be a datetime (e.g. an inspection time); its calendar date is used. A row from the
    MCA year-end lists knows only years (see ``standard.codetables``): its refusals say which
    lists hold the code, and a code the table does not know on a day after its province's
    ``known_until`` is refused as outside what the table knows, not as wrong.
    """
    kind: CheckKind = "region"
    # A datetime is a date subclass but does not compare with one: reduce it to its date.
    if isinstance(on, datetime.datetime):
        on = on.date()
    day = on or datetime.date.today()
    _require_alphabet(kind, value, DIGITS, "0-9", f"{_REGION_RULE} alphabet")
    _require_length(kind, value, 6, f"{_REGION_RULE} length")
    table = codetables.regions()
    versions = table.versions(value)
    if not versions:
        raise _unknown_region(table, value, day)
    found = table.on(value, day)
    if found is not None:
        return found
    first = versions[0]
    if day < first.valid_from:
        if first.valid_from == table.horizon:
            raise CheckFailure(
                kind,
                value,
                "code table horizon",
                f"{day} is before the code table's horizon: it records no history before "
                f"{table.horizon} (its source begins with MCA's {table.horizon.year} "
                "year-end list)",
            )
        raise CheckFailure(kind, value, f"{_REGION_RULE} validity", _not_yet(first, day))
    ended = [r for r in versions if r.valid_to is not None and r.valid_to < day][-1]
    assert ended.valid_to is not None  # the filter above guarantees it; this informs mypy
    successors = [
        f"{code} {table.versions(code)[-1].name}"
        for code in ended.replaced_by
        if table.versions(code)
    ]
    replaced = f"; replaced by {', '.join(successors)}" if successors else ""
    if ended.last_list is not None:
        year = ended.last_list + 1
        reason = (
            f"{ended.name} is listed in MCA's {ended.last_list} year-end list, not in {year}'s: "
            f"{_period(ended, table.horizon)} at the latest, so it is not valid on {day}"
        )
    else:
        abolished = ended.valid_to + datetime.timedelta(days=1)
        reason = (
            f"{ended.name} was abolished on {abolished} ({_period(ended, table.horizon)}), "
            f"so it is not valid on {day}"
        )
    raise CheckFailure(kind, value, f"{_REGION_RULE} validity", reason + replaced)


def _not_yet(first: Region, day: datetime.date) -> str:
    if first.first_list is not None:
        return (
            f"not yet valid on {day}: {first.name} is first listed in MCA's {first.first_list} "
            f"year-end list, not in {first.first_list - 1}'s, so it is valid from "
            f"{first.valid_from} at the earliest"
        )
    return f"not yet valid on {day}: {first.name} was created on {first.valid_from}"


def _unknown_region(table: codetables.RegionTable, value: str, day: datetime.date) -> CheckFailure:
    """Why a code the table does not hold is refused: no such province, no counties, or too new."""
    kind: CheckKind = "region"
    code = f"{value[:2]}0000"
    rows = table.versions(code)
    if not rows:
        return CheckFailure(
            kind,
            value,
            f"{_REGION_RULE} code table",
            f"{value[:2]} (positions 1-2) is not a province code",
            1,
        )
    province = rows[-1]
    if province.known_until is None:
        return CheckFailure(
            kind,
            value,
            "code table coverage",
            f"the code table holds no prefectures or counties of {code} {province.name}: "
            "the MCA year-end lists it is built from give none",
        )
    if day > province.known_until:
        return CheckFailure(
            kind,
            value,
            "code table coverage",
            f"not in the code table, which knows {code} {province.name}'s prefectures and counties "
            f"up to {province.known_until}; a code created after that is not in its sources, so "
            f"the table cannot vouch for it on {day}",
        )
    return CheckFailure(
        kind,
        value,
        f"{_REGION_RULE} code table",
        f"not in the GB/T 2260 code table, which knows {code} {province.name}'s prefectures and "
        f"counties up to {province.known_until}",
    )


# -- industry (GB/T 4754-2017) ------------------------------------------------------------------

_INDUSTRY_RULE = "GB/T 4754-2017"
_LEVEL_BY_DIGITS: dict[int, IndustryLevel] = {0: "section", 2: "division", 3: "group", 4: "class"}


class Industry(BaseModel):
    """An industry code checked against GB/T 4754-2017, resolved to its section and division."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(description="The code as given, e.g. 'C1311', '1311' or 'C'.")
    level: IndustryLevel = Field(description="section, division, group (3 digits) or class (4).")
    section: IndustrySection = Field(description="The section (门类) the code lies in.")
    division: IndustryDivision | None = Field(default=None, description="大类, when given.")
    group: str | None = Field(default=None, description="中类 (3 digits), checked structurally.")
    industry_class: str | None = Field(
        default=None, description="小类 (4 digits), checked structurally."
    )

    @property
    def name(self) -> str:
        """The most specific name the table knows: the division's, else the section's."""
        return self.division.name if self.division else self.section.name


def check_industry(value: str) -> Industry:
    """The industry ``value`` denotes, else raise CheckFailure.

    Accepted forms: a section letter (``C``); a division, group or class (``13``, ``131``,
    ``1311``); or a section letter followed by one of them (``C1311``), whose letter must be the
    division's section.
    """
    kind: CheckKind = "industry"
    if not value:
        raise CheckFailure(kind, value, f"{_INDUSTRY_RULE} structure", "empty")
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    first, rest = value[0], value[1:]
    if first not in letters + DIGITS:
        reason = _character_problem(first, 1, letters + DIGITS, "A-T followed by digits, or digits")
        raise CheckFailure(kind, value, f"{_INDUSTRY_RULE} structure", reason, 1)
    for index, char in enumerate(rest, start=2):
        if char not in DIGITS:
            reason = _character_problem(char, index, DIGITS, "0-9 after the first position")
            raise CheckFailure(kind, value, f"{_INDUSTRY_RULE} structure", reason, index)
    table = codetables.industries()
    letter, digits = (first, rest) if first in letters else (None, value)
    if letter is not None and letter not in table.sections:
        raise CheckFailure(
            kind,
            value,
            f"{_INDUSTRY_RULE} sections",
            f"section '{letter}' does not exist (sections {min(table.sections)}-"
            f"{max(table.sections)})",
            1,
        )
    level = _LEVEL_BY_DIGITS.get(len(digits))
    if level is None:
        raise CheckFailure(
            kind,
            value,
            f"{_INDUSTRY_RULE} structure",
            f"{len(digits)} digits, expected 2 (division), 3 (group) or 4 (class)",
        )
    if letter is not None and level == "section":
        return Industry(code=value, level=level, section=table.sections[letter])
    division = table.divisions.get(digits[:2])
    digits_at = 2 if letter else 1
    if division is None:
        raise CheckFailure(
            kind,
            value,
            f"{_INDUSTRY_RULE} divisions",
            f"division {digits[:2]} does not exist (divisions {min(table.divisions)}-"
            f"{max(table.divisions)})",
            digits_at,
        )
    section = table.sections[division.section]
    if letter is not None and letter != division.section:
        given = table.sections[letter]
        raise CheckFailure(
            kind,
            value,
            f"{_INDUSTRY_RULE} section ranges",
            f"division {division.code} is not in section {letter} ({given.division_range}); "
            f"it belongs to section {section.code} {section.name}",
            digits_at,
        )
    return Industry(
        code=value,
        level=level,
        section=section,
        division=division,
        group=digits[:3] if len(digits) >= 3 else None,
        industry_class=digits if len(digits) == 4 else None,
    )
