"""Date and time patterns as department systems write them (`yyyyMMdd`, `yyyy-MM-dd HH:mm:ss`).

Pattern letters follow Java's DateTimeFormatter, which the department systems' own code uses:
`yyyy` year, `MM`/`M` month, `dd`/`d` day, `HH`/`H` hour 0-23, `mm`/`m` minute, `ss`/`s` second,
`SSS` milliseconds. A doubled letter is exactly two digits, a single one one or two digits. Any
other ASCII letter is an error unless quoted (`yyyy-MM-dd'T'HH:mm:ss`); every other character,
such as `-`, `:`, a space or 年月日, stands for itself. Besides patterns, three names are
accepted: `epoch_millis` and `epoch_seconds` (an instant, as an integer) and `iso8601` (Python's
`datetime.fromisoformat`, which reads ISO 8601 with or without an offset).

A pattern is compiled once into a regular expression; parsing is a match plus integer conversion.
A value without an offset is local time in the mapping's time zone (Asia/Shanghai by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

EPOCH_NAMES = ("epoch_millis", "epoch_seconds")
NAMED_FORMATS = (*EPOCH_NAMES, "iso8601")

# Letter run → (field, regex, width for formatting: 0 = no padding).
_FIELDS: dict[str, tuple[str, str, int]] = {
    "yyyy": ("year", r"\d{4}", 4),
    "MM": ("month", r"\d{2}", 2),
    "M": ("month", r"\d{1,2}", 0),
    "dd": ("day", r"\d{2}", 2),
    "d": ("day", r"\d{1,2}", 0),
    "HH": ("hour", r"\d{2}", 2),
    "H": ("hour", r"\d{1,2}", 0),
    "mm": ("minute", r"\d{2}", 2),
    "m": ("minute", r"\d{1,2}", 0),
    "ss": ("second", r"\d{2}", 2),
    "s": ("second", r"\d{1,2}", 0),
    "SSS": ("millisecond", r"\d{3}", 3),
}
_TIME_FIELDS = frozenset({"hour", "minute", "second", "millisecond"})
# The order of datetime()'s arguments: a pattern whose fields come in it needs no dictionary.
_DATETIME_ORDER = ("year", "month", "day", "hour", "minute", "second")
_TOKENS = re.compile(r"'([^']*)'|([A-Za-z])\2*|([^A-Za-z']+)")


class PatternInvalid(ValueError):
    """A date/time pattern in a mapping cannot be used; the message says why."""


@dataclass(frozen=True)
class DatePattern:
    """A compiled date/time pattern: parses text into fields and formats values back."""

    text: str
    regex: re.Pattern[str]
    parts: tuple[tuple[str, str | None, int], ...]  # (literal or "", field or None, width)
    fields: frozenset[str]
    in_order: bool = False
    """The fields are year, month, day and then perhaps hour, minute, second, in that order
    (`yyyyMMdd`, `yyyy-MM-dd HH:mm:ss`): their numbers are datetime()'s arguments as they come."""

    @property
    def has_time(self) -> bool:
        """Whether the pattern carries a time of day."""
        return bool(self.fields & _TIME_FIELDS)

    def parse_fields(self, value: str) -> dict[str, int] | None:
        """The pattern's fields in `value`, or None when `value` does not have its shape."""
        match = self.regex.fullmatch(value)
        if match is None:
            return None
        return _numbers(match)

    def parse_date(self, value: str) -> date | None:
        """`build_date` of the fields in `value`, None when `value` does not have the shape;
        raises ValueError for a day that does not exist. Called once per date and record."""
        match = self.regex.fullmatch(value)
        if match is None:
            return None
        if self.in_order:
            return date(*map(int, match.groups()[:3]))
        return build_date(_numbers(match))

    def parse_datetime(self, value: str, zone: tzinfo) -> datetime | None:
        """`build_datetime` of the fields in `value`, None when `value` does not have the shape;
        raises ValueError for a time that does not exist. Called once per time and record."""
        match = self.regex.fullmatch(value)
        if match is None:
            return None
        if self.in_order:
            numbers = map(int, match.groups())  # three to six: tzinfo is not among them
            return datetime(*numbers, tzinfo=zone)  # type: ignore[misc, arg-type]
        return build_datetime(_numbers(match), zone)

    def format(self, value: date) -> str:
        """Write `value` (a date, or a datetime already in the wanted time zone) in the pattern."""
        out: list[str] = []
        for literal, field, width in self.parts:
            if field is None:
                out.append(literal)
                continue
            if field == "millisecond":
                number = value.microsecond // 1000 if isinstance(value, datetime) else 0
            else:
                number = getattr(value, field, 0)
            out.append(str(number).zfill(width) if width else str(number))
        return "".join(out)


def _numbers(match: re.Match[str]) -> dict[str, int]:
    return {name: int(text) for name, text in match.groupdict().items()}


def compile_pattern(text: str) -> DatePattern:
    """Compile a Java-style pattern; raise PatternInvalid naming the offending letter."""
    if not text:
        raise PatternInvalid("the pattern is empty")
    regex: list[str] = []
    parts: list[tuple[str, str | None, int]] = []
    seen: set[str] = set()
    position = 0
    for match in _TOKENS.finditer(text):
        if match.start() != position:
            break
        position = match.end()
        quoted, letters, literal = match.group(1), match.group(0), match.group(3)
        if quoted is not None or literal is not None:
            chunk = quoted if quoted is not None else literal
            if quoted == "":
                chunk = "'"  # '' is a quote character, as in Java
            regex.append(re.escape(chunk))
            parts.append((chunk, None, 0))
            continue
        spec = _FIELDS.get(letters)
        if spec is None:
            raise PatternInvalid(
                f"'{letters}' is not a supported pattern letter run (use yyyy, MM, M, dd, d, HH, "
                f"H, mm, m, ss, s, SSS; quote literal letters as in 'T')"
            )
        field, digits, width = spec
        if field in seen:
            raise PatternInvalid(f"the pattern has the {field} twice")
        seen.add(field)
        regex.append(f"(?P<{field}>{digits})")
        parts.append(("", field, width))
    if position != len(text):
        raise PatternInvalid(f"unbalanced quote at position {position + 1}")
    missing = [name for name in ("year", "month", "day") if name not in seen]
    if missing:
        raise PatternInvalid(f"the pattern has no {', '.join(missing)}")
    order = tuple(field for _, field, _ in parts if field is not None)
    in_order = order == _DATETIME_ORDER[: len(order)]
    return DatePattern(text, re.compile("".join(regex)), tuple(parts), frozenset(seen), in_order)


def build_date(fields: dict[str, int]) -> date:
    """A date from parsed fields; raises ValueError (e.g. 'day is out of range for month')."""
    return date(fields["year"], fields["month"], fields["day"])


def build_datetime(fields: dict[str, int], zone: tzinfo) -> datetime:
    """An aware datetime from parsed fields read as local time in `zone`."""
    return datetime(
        fields["year"],
        fields["month"],
        fields["day"],
        fields.get("hour", 0),
        fields.get("minute", 0),
        fields.get("second", 0),
        fields.get("millisecond", 0) * 1000,
        tzinfo=zone,
    )


def from_epoch(value: int, unit: str, zone: tzinfo) -> datetime:
    """The instant `value` (milliseconds or seconds since 1970-01-01 UTC) in `zone`, exactly."""
    if unit == "epoch_millis":
        seconds, millis = divmod(value, 1000)
        instant = datetime.fromtimestamp(seconds, UTC) + timedelta(milliseconds=millis)
    else:
        instant = datetime.fromtimestamp(value, UTC)
    return instant.astimezone(zone)


def to_epoch(value: datetime, unit: str) -> int:
    """Milliseconds or seconds since 1970-01-01 UTC of an aware datetime, exactly."""
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    if unit == "epoch_millis":
        return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return delta.days * 86400 + delta.seconds
