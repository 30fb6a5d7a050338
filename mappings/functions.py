"""The named functions of a field's pipe, each with documented, validated options.

A function is registered under a name with a pydantic options model; every option has a
description, so `jghub mappings functions` prints the documentation from the same objects the
loader validates against. A function is built once per use in a mapping into a plain callable
(a "step"); options are checked, patterns compiled and tables looked up at build time, so a
mistake is reported when the mapping is loaded.

Conventions every step follows:
- A step never sees None: an absent value passes through the rest of the pipe untouched.
- Applied to a list, a step works on each item (dropping items that become absent), except the
  functions that work on a whole list (`split`, `join`, `first`), which say so.
- A step refuses a value by raising ValueProblem with a rule and a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from mappings.dateformats import (
    EPOCH_NAMES,
    NAMED_FORMATS,
    DatePattern,
    compile_pattern,
    from_epoch,
    to_epoch,
)
from mappings.errors import ValueProblem
from mappings.lookup_tables import CodeTable
from mappings.units import MoneyUnit, UnitNotExact, UnitUnknown, unit_table
from standard.errors import quoted
from standard.types import (
    AmountNotExact,
    NumberOutOfBounds,
    bounded_number,
    check_number_bounds,
    wan_yuan_to_yuan,
    yuan_to_wan_yuan,
)

Step = Callable[[Any], Any]
"""A built function: value → value. A function that reads the record builds a RecordStep."""
Direction = Literal["inbound", "outbound"]


class FunctionOptions(BaseModel):
    """Base of every function's options: unknown options are an error, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


@dataclass(frozen=True)
class BuildContext:
    """What a function may consult when it is built: the system's code tables and, for a
    function that reads the record too (`amount`'s unit), a compiler of the mapping's paths."""

    tables: Mapping[str, CodeTable]
    system: str
    read_path: Callable[[str, str], Callable[[Any], Any]] | None = None
    """(path, option naming it) → a reader of the record context; OptionProblem if it does
    not compile. None where the caller has no record (a function built on its own)."""


@dataclass(frozen=True)
class RecordStep:
    """A step that also reads the record it works on: `apply(value, record context)`.

    The compiler passes the context of the rule being evaluated (the record, or the item of an
    `each`), so an option may name a path beside the value, as `amount`'s `unit_path` does.
    """

    apply: Callable[[Any, Any], Any]

    def bind(self, record: Any) -> Step:
        """This step for the values of one record (or item)."""
        apply = self.apply
        return lambda value: apply(value, record)


class OptionProblem(ValueError):
    """A function's options are valid on their own but cannot be used (e.g. no such table)."""

    def __init__(self, message: str, option: str | None = None) -> None:
        self.option = option
        super().__init__(message)


OptionsT = TypeVar("OptionsT", bound=FunctionOptions)


@dataclass(frozen=True)
class MappingFunction:
    """A registered function: its name, documentation, options model and builder."""

    name: str
    doc: str
    options: type[FunctionOptions]
    primary: str | None
    whole_list: bool
    examples: tuple[str, ...]
    builder: Callable[[Any, BuildContext], Step | RecordStep]

    @property
    def summary(self) -> str:
        """The first line of the documentation."""
        return self.doc.strip().splitlines()[0]

    def parse_options(self, raw: Any) -> FunctionOptions:
        """Options from a mapping file: a mapping, a bare value for the primary option, or None.

        Raises pydantic's ValidationError (located by the caller) or OptionProblem.
        """
        if raw is None:
            return self.options()
        if isinstance(raw, dict):
            return self.options.model_validate(raw)
        if self.primary is None:
            raise OptionProblem(
                f"function '{self.name}' takes options as a mapping "
                f"(its options: {', '.join(self.options.model_fields) or 'none'})"
            )
        return self.options.model_validate({self.primary: raw})

    def build(self, options: FunctionOptions, context: BuildContext) -> Step | RecordStep:
        """The step that applies this function with `options`."""
        return self.builder(options, context)


FUNCTIONS: dict[str, MappingFunction] = {}


Builder = Callable[[OptionsT, BuildContext], Step | RecordStep]


def function(
    name: str,
    options: type[OptionsT],
    *,
    primary: str | None = None,
    whole_list: bool = False,
    examples: tuple[str, ...] = (),
) -> Callable[[Builder[OptionsT]], Builder[OptionsT]]:
    """Register a function builder under `name`; its docstring is the function's documentation."""

    def register(builder: Builder[OptionsT]) -> Builder[OptionsT]:
        if name in FUNCTIONS:
            raise ValueError(f"mapping function '{name}' is registered twice")
        if primary is not None and primary not in options.model_fields:
            raise ValueError(f"mapping function '{name}': primary option '{primary}' is unknown")
        FUNCTIONS[name] = MappingFunction(
            name=name,
            doc=builder.__doc__ or name,
            options=options,
            primary=primary,
            whole_list=whole_list,
            examples=examples,
            builder=builder,
        )
        return builder

    return register


def _text(value: Any, rule: str) -> str:
    # Numbers and booleans from JSON or from a canonical record read as the text JSON writes.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    raise ValueProblem(rule, f"expected text, got {type(value).__name__} {quoted(value)}", value)


# --------------------------------------------------------------------------- text


class NoOptions(FunctionOptions):
    """This function has no options."""


class TrimOptions(FunctionOptions):
    characters: str | None = Field(
        default=None,
        description=(
            "Characters to strip from both ends. Default: all Unicode whitespace, which includes "
            "the ideographic space U+3000 and the no-break space U+00A0."
        ),
    )


@function("trim", TrimOptions, primary="characters", examples=("trim", "{trim: '*'}"))
def _trim(options: TrimOptions, context: BuildContext) -> Step:
    """Strip whitespace (or the given characters) from both ends; an empty result is absent.

    Non-text values (numbers from JSON) pass unchanged.
    """
    characters = options.characters

    def step(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        stripped = value.strip(characters)
        return stripped or None

    return step


class HalfwidthOptions(FunctionOptions):
    space: bool = Field(
        default=True,
        description="Also turn the ideographic (full-width) space U+3000 into a plain space.",
    )


_FULLWIDTH_ASCII = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}


@function("halfwidth", HalfwidthOptions, examples=("halfwidth",))
def _halfwidth(options: HalfwidthOptions, context: BuildContext) -> Step:
    """Turn full-width ASCII forms into ASCII: `９１３３ＡＢ` becomes `9133AB`.

    Exactly the block U+FF01-U+FF5E (full-width ！ to ～) maps to U+0021-U+007E, and with
    `space` the ideographic space U+3000 to U+0020. Nothing else changes: unlike NFKC, Chinese
    punctuation such as 、。「」, circled digits ①, the full-width signs ￥￠ (U+FFE0-U+FFE6) and
    half-width katakana are kept as written.
    """
    table = dict(_FULLWIDTH_ASCII)
    if options.space:
        table[0x3000] = 0x20

    def step(value: Any) -> Any:
        if not isinstance(value, str) or value.isascii():  # ASCII text has nothing to turn
            return value
        return value.translate(table)

    return step


@function("upper", NoOptions, examples=("upper",))
def _upper(options: NoOptions, context: BuildContext) -> Step:
    """Upper-case text (credit codes arrive in lower case from some forms)."""

    def step(value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    return step


@function("lower", NoOptions, examples=("lower",))
def _lower(options: NoOptions, context: BuildContext) -> Step:
    """Lower-case text."""

    def step(value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    return step


def _compile_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"not a valid regular expression: {error}") from None


def _regex(pattern: str) -> str:
    _compile_regex(pattern)
    return pattern


# An option holding a Python regular expression, refused when it does not compile.
RegexPattern = Annotated[str, AfterValidator(_regex)]


class ReplaceOptions(FunctionOptions):
    pattern: RegexPattern = Field(description="A Python regular expression to find.")
    replacement: str = Field(
        default="",
        alias="with",
        description="What to put instead (written `with`); `\\1` refers to a group.",
    )


@function("replace", ReplaceOptions, examples=("{replace: {pattern: '[-\\s]', with: ''}}",))
def _replace(options: ReplaceOptions, context: BuildContext) -> Step:
    """Replace every match of a regular expression; an empty result is absent."""
    regex = re.compile(options.pattern)
    replacement = options.replacement

    def step(value: Any) -> Any:
        return regex.sub(replacement, _text(value, "replace")) or None

    return step


class ExtractOptions(FunctionOptions):
    pattern: RegexPattern = Field(description="A Python regular expression searched in the value.")
    group: int | str = Field(
        default=0, description="Which group to keep: a number (0 = whole match) or a name."
    )


@function("extract", ExtractOptions, primary="pattern", examples=("{extract: '\\d{6}'}",))
def _extract(options: ExtractOptions, context: BuildContext) -> Step:
    """Keep the part of the text that a regular expression matches; no match is an error."""
    regex = re.compile(options.pattern)
    group = options.group
    if isinstance(group, int) and group > regex.groups:
        raise OptionProblem(f"the pattern has {regex.groups} groups, not {group}", "group")
    if isinstance(group, str) and group not in regex.groupindex:
        raise OptionProblem(f"the pattern has no group named '{group}'", "group")
    rule = f"extract {options.pattern!r}"

    def step(value: Any) -> Any:
        text = _text(value, rule)
        match = regex.search(text)
        if match is None:
            raise ValueProblem(rule, f"{quoted(text)} does not contain a match", value)
        return match.group(group) or None

    return step


class SubstringOptions(FunctionOptions):
    start: int = Field(default=0, ge=0, description="First character kept, counting from 0.")
    length: int | None = Field(
        default=None, ge=1, description="How many characters to keep; default: to the end."
    )


@function("substring", SubstringOptions, examples=("{substring: {start: 2, length: 6}}",))
def _substring(options: SubstringOptions, context: BuildContext) -> Step:
    """Keep part of the text by position (e.g. the region code inside a credit code).

    Text shorter than `start + length` is an error, not a silently shorter value.
    """
    start = options.start
    end = None if options.length is None else start + options.length
    rule = f"substring {start}:{'' if end is None else end}"

    def step(value: Any) -> Any:
        text = _text(value, rule)
        if len(text) < (end if end is not None else start):
            raise ValueProblem(rule, f"{quoted(text)} has only {len(text)} characters", value)
        return text[start:end] or None

    return step


# --------------------------------------------------------------------------- lists


class SplitOptions(FunctionOptions):
    separator: str = Field(
        default=",",
        min_length=1,
        description="The text between items; with `regex`, a regular expression.",
    )
    regex: bool = Field(default=False, description="Read `separator` as a regular expression.")


@function("split", SplitOptions, primary="separator", whole_list=True, examples=("{split: '、'}",))
def _split(options: SplitOptions, context: BuildContext) -> Step:
    """Split text into a list of items, each trimmed; empty items are dropped.

    Works on the whole value: a list of texts is split item by item into one flat list.
    """
    try:
        pattern = re.compile(options.separator if options.regex else re.escape(options.separator))
    except re.error as error:
        raise OptionProblem(f"not a valid regular expression: {error}", "separator") from None

    def items(value: Any) -> list[str]:
        return [item for part in pattern.split(_text(value, "split")) if (item := part.strip())]

    def step(value: Any) -> Any:
        if isinstance(value, list):
            return [item for part in value for item in items(part)]
        return items(value)

    return step


class JoinOptions(FunctionOptions):
    separator: str = Field(default=",", description="The text put between items.")


@function("join", JoinOptions, primary="separator", whole_list=True, examples=("{join: ';'}",))
def _join(options: JoinOptions, context: BuildContext) -> Step:
    """Join a list into one text; a single value passes unchanged. Works on the whole list."""
    separator = options.separator

    def step(value: Any) -> Any:
        if isinstance(value, list):
            return separator.join(_text(item, "join") for item in value) or None
        return value

    return step


@function("first", NoOptions, whole_list=True, examples=("first",))
def _first(options: NoOptions, context: BuildContext) -> Step:
    """The first item of a list (absent when the list is empty); a single value passes unchanged."""

    def step(value: Any) -> Any:
        if isinstance(value, list):
            return value[0] if value else None
        return value

    return step


class RowsOptions(FunctionOptions):
    separator: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Split each text column at this text first (items trimmed; an empty item stays in "
            "its place as an absent value). Default: the columns are lists already."
        ),
    )


@function(
    "rows",
    RowsOptions,
    primary="separator",
    whole_list=True,
    examples=(
        "{fields: {name: JCRY, certificate_number: ZFZH}, pipe: [{rows: ','}]}",
        "{rows: ','}",
    ),
)
def _rows(options: RowsOptions, context: BuildContext) -> Step:
    """Turn parallel columns into a list of objects: `{name: 'A,B', code: '1,2'}` → two rows.

    For systems that send a list as several texts in step, such as 检查人员 `张三,李四` beside
    执法证号 `3301001,3301002`. The value is an object (a `fields` rule, or a JMESPath
    multiselect hash) of columns; row i holds the i-th item of every column. Columns of
    different lengths are an error, never truncated; an absent column leaves its key out.
    """
    splitter = re.compile(re.escape(options.separator)) if options.separator is not None else None

    def column(name: str, value: Any) -> list[Any]:
        if isinstance(value, list):
            return value
        if splitter is None:
            return [value]
        return [part.strip() or None for part in splitter.split(_text(value, "rows"))]

    def step(value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueProblem(
                "rows", f"expected an object of columns, got {type(value).__name__}", value
            )
        columns = {name: column(name, item) for name, item in value.items() if item is not None}
        if not columns:
            return None
        lengths = {len(items) for items in columns.values()}
        if len(lengths) > 1:
            counts = ", ".join(f"{name} {len(items)}" for name, items in columns.items())
            raise ValueProblem(
                "rows", f"the columns have different numbers of items ({counts})", value
            )
        return [
            {name: items[index] for name, items in columns.items() if items[index] is not None}
            for index in range(lengths.pop())
        ] or None

    return step


# --------------------------------------------------------------------------- numbers


class DecimalOptions(FunctionOptions):
    grouping: str | None = Field(
        default=None,
        description="A digit-grouping character to remove first, e.g. ',' in '12,500.00'.",
    )


_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def _to_decimal(value: Any, rule: str, grouping: str | None = None) -> Decimal:
    # Bounded before any arithmetic: XML text or a JSON string of 5,000 digits is refused here,
    # as a JSON number of them is when the payload is parsed.
    try:
        if isinstance(value, Decimal | int) and not isinstance(value, bool):
            check_number_bounds(value)
            return Decimal(value)
        text = _text(value, rule).strip()
        if grouping:
            text = text.replace(grouping, "")
        if not _DECIMAL_TEXT.fullmatch(text):
            raise ValueProblem(rule, f"{quoted(value)} is not a decimal number", value)
        return bounded_number(text)
    except NumberOutOfBounds as error:
        raise ValueProblem(rule, str(error), value) from None


@function("decimal", DecimalOptions, examples=("decimal", "{decimal: {grouping: ','}}"))
def _decimal(options: DecimalOptions, context: BuildContext) -> Step:
    """Read an exact decimal number (`12500.50`); never through binary floating point.

    Accepts digits with an optional sign and fraction; exponents, NaN and Infinity are refused.
    JSON numbers are already exact decimals when they arrive.
    """
    grouping = options.grouping

    def step(value: Any) -> Any:
        return _to_decimal(value, "decimal", grouping)

    return step


@function("integer", NoOptions, examples=("integer",))
def _integer(options: NoOptions, context: BuildContext) -> Step:
    """Read a whole number; a fraction other than zeros is an error."""

    def step(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = _to_decimal(value, "integer")
        if number != number.to_integral_value():
            raise ValueProblem("integer", f"{quoted(value)} is not a whole number", value)
        return int(number)

    return step


def _exact(convert: Callable[[Decimal], Decimal], value: Any, rule: str) -> Decimal:
    amount = _to_decimal(value, rule)
    try:
        return convert(amount)
    except AmountNotExact as error:
        raise ValueProblem(rule, str(error), value) from None


@function("wan_yuan", NoOptions, examples=("wan_yuan",))
def _wan_yuan(options: NoOptions, context: BuildContext) -> Step:
    """Convert an amount in 万元 (10,000 yuan) to yuan, exactly (`1.25` → `12500`).

    Text is read as an exact decimal first. Use it only where the source system documents 万元:
    units are converted, never guessed.
    """

    def step(value: Any) -> Any:
        return _exact(wan_yuan_to_yuan, value, "wan_yuan")

    return step


@function("to_wan_yuan", NoOptions, examples=("to_wan_yuan",))
def _to_wan_yuan(options: NoOptions, context: BuildContext) -> Step:
    """Convert an amount in yuan to 万元, exactly (`12500` → `1.25`); for rendering."""

    def step(value: Any) -> Any:
        return _exact(yuan_to_wan_yuan, value, "to_wan_yuan")

    return step


def _known_unit(spelling: str) -> str:
    try:
        unit_table().unit(spelling)
    except UnitUnknown as error:
        raise ValueError(str(error)) from None
    return spelling


class AmountOptions(FunctionOptions):
    unit: str | None = Field(
        default=None,
        description=(
            "The unit the system sends amounts in (元, 万元, 千元, 百万元, 亿元, 分 or a spelling "
            "of one in mappings/units.yaml). With `unit_path`: the unit when that path gives none."
        ),
    )
    unit_path: str | None = Field(
        default=None,
        description=(
            "A path (relative to the record, or to the item of an `each`, like the field's own "
            "path) giving the unit with each amount, e.g. `cf:FKJE/@dw`."
        ),
    )
    into: str = Field(
        default="元",
        description=(
            "The unit to give: 元 for the standard's amounts (罚款金额 …), 万元 for 双公示's "
            "(`fine_wan_yuan` …); checked against the target field when the mapping is loaded."
        ),
    )

    @field_validator("unit", "into")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        return None if value is None else _known_unit(value)


@function(
    "amount",
    AmountOptions,
    primary="unit",
    examples=(
        "{amount: 万元}",
        "{amount: {unit: 元, into: 万元}}",
        "{path: cf:FKJE, pipe: [trim, {amount: {unit_path: cf:FKJE/@dw}}]}",
    ),
)
def _amount(options: AmountOptions, context: BuildContext) -> Step | RecordStep:
    """Read an exact amount of money in its unit and convert it into 元 (or 万元), exactly.

    The unit is a constant (`{amount: 万元}`) or read with each amount from a path
    (`{amount: {unit_path: '@dw'}}`), and must be in the unit table (mappings/units.yaml:
    元, 万元, 千元, 百万元, 亿元, 分 and their spellings). An unknown or missing unit is an error
    naming it and the path it was read from; so is an amount that is not a whole number of 分.
    Text is read as an exact decimal first, never through binary floating point.
    """
    table = unit_table()
    into = table.unit(options.into).name
    fixed = table.unit(options.unit) if options.unit is not None else None
    rule = "amount"

    def convert(value: Any, unit: MoneyUnit) -> Decimal:
        amount = _to_decimal(value, rule)
        try:
            return table.convert(amount, unit, into)
        except UnitNotExact as error:
            raise ValueProblem(rule, str(error), value) from None

    if options.unit_path is None:
        if fixed is None:
            raise OptionProblem("give `unit` (a constant unit) or `unit_path` (where it is sent)")
        unit = fixed

        def step(value: Any) -> Any:
            return convert(value, unit)

        return step
    if context.read_path is None:
        raise OptionProblem("`unit_path` needs a record to read; use it in a mapping", "unit_path")
    path = options.unit_path
    read_unit = context.read_path(path, "unit_path")

    def with_unit(value: Any, record: Any) -> Any:
        spelling = read_unit(record)
        if spelling is None or (isinstance(spelling, str) and not spelling.strip()):
            if fixed is None:
                problem = ValueProblem(
                    "amount unit", f"no unit at {path} for the amount {quoted(value)}", value
                )
                problem.source_path = path
                raise problem
            return convert(value, fixed)
        try:
            unit = table.unit(_text(spelling, "amount unit"))
        except UnitUnknown as error:
            problem = ValueProblem("amount unit", f"{error} (read from {path})", spelling)
            problem.source_path = path
            raise problem from None
        return convert(value, unit)

    return RecordStep(with_unit)


class TextOptions(FunctionOptions):
    places: int | None = Field(
        default=None,
        ge=0,
        le=12,
        description=(
            "For numbers: write exactly this many decimal places; a value that would need "
            "rounding is an error. Default: as many as the number has."
        ),
    )


@function("text", TextOptions, primary="places", examples=("text", "{text: 2}"))
def _as_text(options: TextOptions, context: BuildContext) -> Step:
    """Write a value as text: numbers without exponent, booleans as true/false, dates in ISO 8601.

    Needed where a JSON source sends a number for a field the standard holds as text (an id).
    """
    places = options.places
    quantum = Decimal(1).scaleb(-places) if places is not None else None

    def step(value: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | Decimal):
            number = Decimal(value)
            if quantum is not None:
                fixed = number.quantize(quantum)
                if fixed != number:
                    raise ValueProblem(
                        f"text {places}", f"{number} has more than {places} decimal places", value
                    )
                number = fixed
            return format(number, "f")
        if isinstance(value, date):
            return value.isoformat()
        raise ValueProblem("text", f"cannot write {type(value).__name__} as text", value)

    return step


# --------------------------------------------------------------------------- dates and times


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone '{name}' (use an IANA name such as Asia/Shanghai)"
        ) from None


def _zone_name(name: str) -> str:
    _zone(name)
    return name


# An option naming an IANA time zone, refused when the zone database does not know it.
TimeZoneName = Annotated[str, AfterValidator(_zone_name)]


class DateOptions(FunctionOptions):
    format: str | list[str] = Field(
        description=(
            "The pattern (or patterns, tried in order) the text has, e.g. `yyyyMMdd`, "
            "`yyyy-MM-dd`, `yyyy年M月d日`. Letters as in Java: yyyy MM M dd d; quote other "
            "letters."
        )
    )

    @field_validator("format")
    @classmethod
    def _patterns_compile(cls, value: str | list[str]) -> str | list[str]:
        for text in [value] if isinstance(value, str) else value:
            pattern = compile_pattern(text)
            if pattern.has_time:
                raise ValueError(f"'{text}' has a time of day; use the datetime function")
        if isinstance(value, list) and not value:
            raise ValueError("give at least one pattern")
        return value


def _patterns(value: str | list[str]) -> tuple[DatePattern, ...]:
    return tuple(compile_pattern(text) for text in ([value] if isinstance(value, str) else value))


def _shown(value: str | list[str]) -> str:
    return " | ".join([value] if isinstance(value, str) else value)


@function("date", DateOptions, primary="format", examples=("{date: yyyyMMdd}",))
def _date(options: DateOptions, context: BuildContext) -> Step:
    """Read a calendar date with an explicit pattern: `20260301` with `yyyyMMdd`.

    A value that does not have the pattern's shape, or names a day that does not exist
    (`20260230`), is an error naming the pattern. Dates already parsed pass unchanged.
    """
    patterns = _patterns(options.format)
    rule = f"date '{_shown(options.format)}'"

    def step(value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        text = _text(value, rule)
        for pattern in patterns:
            try:
                day = pattern.parse_date(text)
            except ValueError as error:
                raise ValueProblem(
                    rule, f"{quoted(text)} is not a real date: {error}", value
                ) from None
            if day is not None:
                return day
        raise ValueProblem(
            rule, f"{quoted(text)} does not have the form {_shown(options.format)}", value
        )

    return step


class DatetimeOptions(FunctionOptions):
    format: str | list[str] = Field(
        description=(
            "The pattern (or patterns, tried in order), e.g. `yyyy-MM-dd HH:mm:ss`, "
            "`yyyyMMddHHmmss`; or `epoch_millis`, `epoch_seconds` (an integer instant) or "
            "`iso8601`."
        )
    )
    timezone: TimeZoneName = Field(
        default="Asia/Shanghai",
        description="IANA time zone of values written without an offset (naive local times).",
    )

    @field_validator("format")
    @classmethod
    def _patterns_compile(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise ValueError("give at least one pattern")
        for text in texts:
            if text not in NAMED_FORMATS:
                compile_pattern(text)
        return value


_EPOCH_TEXT = re.compile(r"-?\d{1,16}")


@function(
    "datetime",
    DatetimeOptions,
    primary="format",
    examples=("{datetime: 'yyyy-MM-dd HH:mm:ss'}", "{datetime: epoch_millis}"),
)
def _datetime(options: DatetimeOptions, context: BuildContext) -> Step:
    """Read a date and time with an explicit pattern, giving a time-zone-aware value.

    A value without an offset is local time in `timezone` (Asia/Shanghai unless told); an
    epoch value is an instant and is shown in that zone. Out-of-range fields (`25:00`) are errors.
    """
    zone = _zone(options.timezone)
    texts = [options.format] if isinstance(options.format, str) else list(options.format)
    rule = f"datetime '{_shown(options.format)}'"
    readers: list[Callable[[Any], datetime | None]] = []
    for text in texts:
        readers.append(_datetime_reader(text, zone, rule))

    def step(value: Any) -> Any:
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=zone)
        for read in readers:
            result = read(value)
            if result is not None:
                return result
        raise ValueProblem(
            rule, f"{quoted(value)} does not have the form {_shown(options.format)}", value
        )

    return step


def _datetime_reader(text: str, zone: tzinfo, rule: str) -> Callable[[Any], datetime | None]:
    if text in EPOCH_NAMES:

        def read_epoch(value: Any) -> datetime | None:
            if isinstance(value, bool):
                return None
            if isinstance(value, str):
                value = value.strip()
                if not _EPOCH_TEXT.fullmatch(value):
                    return None
                value = int(value)
            if not isinstance(value, int):
                return None
            try:
                return from_epoch(value, text, zone)
            except (OverflowError, OSError, ValueError) as error:
                raise ValueProblem(rule, f"{value} is out of range: {error}", value) from None

        return read_epoch
    if text == "iso8601":

        def read_iso(value: Any) -> datetime | None:
            if not isinstance(value, str):
                return None
            try:
                parsed = datetime.fromisoformat(value.strip())
            except ValueError:
                return None
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)

        return read_iso
    pattern = compile_pattern(text)

    def read_pattern(value: Any) -> datetime | None:
        if not isinstance(value, str):
            return None
        try:
            return pattern.parse_datetime(value, zone)
        except ValueError as error:
            raise ValueProblem(
                rule, f"{quoted(value)} is not a real time: {error}", value
            ) from None

    return read_pattern


class FormatDatetimeOptions(FunctionOptions):
    format: str = Field(
        description=(
            "The pattern to write, e.g. `yyyyMMdd` or `yyyy-MM-dd HH:mm:ss`; or `epoch_millis`, "
            "`epoch_seconds` (an integer) or `iso8601`."
        )
    )
    timezone: TimeZoneName = Field(
        default="Asia/Shanghai",
        description="IANA time zone in which an aware date-time is written.",
    )

    @field_validator("format")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        if value not in NAMED_FORMATS:
            compile_pattern(value)
        return value


@function(
    "format_datetime",
    FormatDatetimeOptions,
    primary="format",
    examples=("{format_datetime: yyyyMMdd}", "{format_datetime: epoch_millis}"),
)
def _format_datetime(options: FormatDatetimeOptions, context: BuildContext) -> Step:
    """Write a date or date-time with a pattern, for rendering to a target system.

    An aware date-time is first moved to `timezone`; a date is written as is (a time part in
    the pattern is then 00:00:00). Text in ISO 8601 is read first.
    """
    zone = _zone(options.timezone)
    text = options.format
    rule = f"format_datetime '{text}'"
    pattern = None if text in NAMED_FORMATS else compile_pattern(text)

    def step(value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = (
                    datetime.fromisoformat(value)
                    if "T" in value or " " in value
                    else date.fromisoformat(value)
                )
            except ValueError:
                raise ValueProblem(
                    rule, f"{quoted(value)} is not an ISO 8601 date or time", value
                ) from None
        if isinstance(value, datetime):
            value = value.replace(tzinfo=zone) if value.tzinfo is None else value.astimezone(zone)
        elif isinstance(value, date):
            if text in EPOCH_NAMES:
                value = datetime(value.year, value.month, value.day, tzinfo=zone)
        else:
            raise ValueProblem(rule, f"expected a date or date-time, got {quoted(value)}", value)
        if pattern is not None:
            return pattern.format(value)
        if text == "iso8601":
            return value.isoformat()
        assert isinstance(value, datetime)
        return to_epoch(value, text)

    return step


class DayOptions(FunctionOptions):
    timezone: TimeZoneName = Field(
        default="Asia/Shanghai",
        description="IANA time zone whose calendar gives the day of an aware date-time.",
    )


@function("day", DayOptions, examples=("{path: cfjdrq, pipe: [{datetime: epoch_millis}, day]}",))
def _day(options: DayOptions, context: BuildContext) -> Step:
    """The calendar day of a date-time, for systems that send dates as instants (epoch values).

    The instant is moved to `timezone` first, so `1772294400000` (2026-03-01 00:00 in Shanghai,
    still 2026-02-28 in UTC) is 2026-03-01. A date passes unchanged; anything else is an error:
    read text with `date` or `datetime` first.
    """
    zone = _zone(options.timezone)

    def step(value: Any) -> Any:
        if isinstance(value, datetime):
            return (value if value.tzinfo is None else value.astimezone(zone)).date()
        if isinstance(value, date):
            return value
        raise ValueProblem(
            "day",
            f"expected a date-time (read it with datetime first), got {quoted(value)}",
            value,
        )

    return step


# --------------------------------------------------------------------------- codes


class LookupOptions(FunctionOptions):
    table: str | None = Field(
        default=None,
        description="Name of a code table in the system's `tables/` folder (file name, no suffix).",
    )
    values: dict[str, str] | None = Field(
        default=None,
        description="A small table written in place: source code → standard code.",
    )
    reverse: bool = Field(
        default=False,
        description="Look up a standard code and give the source code (for rendering).",
    )
    default: str | None = Field(
        default=None,
        description="Code to give for a value the table does not have; default: it is an error.",
    )

    @field_validator("values", mode="before")
    @classmethod
    def _codes_are_text(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for source, standard in values.items():
                if not isinstance(source, str) or not isinstance(standard, str):
                    raise ValueError(
                        f"entry {source!r}: {standard!r} is not text; quote codes in YAML ('01', "
                        "'Y', 'yes'), which otherwise reads them as numbers or booleans"
                    )
        return values


@function(
    "lookup",
    LookupOptions,
    primary="table",
    examples=(
        "{lookup: penalty_kind}",
        "{lookup: {values: {I: insert, U: update, D: delete}}}",
        "{lookup: {table: penalty_kind, reverse: true}}",
    ),
)
def _lookup(options: LookupOptions, context: BuildContext) -> Step:
    """Translate a code through a code table: the system's code to the standard's, or back.

    The table is a file in the system's `tables/` folder or written in place with `values`;
    exactly one of them. A code the table does not have is an error naming the table.
    """
    if (options.table is None) == (options.values is None):
        raise OptionProblem("give exactly one of 'table' and 'values'")
    if options.table is not None:
        table = context.tables.get(options.table)
        if table is None:
            known = ", ".join(sorted(context.tables)) or "none"
            raise OptionProblem(
                f"system '{context.system}' has no code table '{options.table}' "
                f"(tables/{options.table}.csv or .yaml; it has: {known})",
                "table",
            )
    else:
        assert options.values is not None
        table = CodeTable.inline("values", options.values)
    codes = table.reverse if options.reverse else table.forward
    fallback = options.default
    name = f"table '{table.name}'" if options.table else "the listed values"
    rule = f"lookup {table.name}" + (" reverse" if options.reverse else "")

    def step(value: Any) -> Any:
        key = value if isinstance(value, str) else _text(value, rule)
        found = codes.get(key)
        if found is not None:
            return found
        if fallback is not None:
            return fallback
        sample = ", ".join(list(codes)[:8]) + (", ..." if len(codes) > 8 else "")
        raise ValueProblem(rule, f"code {quoted(key)} is not in {name} (it has {sample})", value)

    return step


class BooleanOptions(FunctionOptions):
    true: list[str] = Field(
        default=["1", "true", "True", "TRUE", "Y", "y", "是"],
        description="Texts that mean yes.",
    )
    false: list[str] = Field(
        default=["0", "false", "False", "FALSE", "N", "n", "否"],
        description="Texts that mean no.",
    )


@function(
    "boolean", BooleanOptions, examples=("boolean", "{boolean: {'true': ['有'], 'false': ['无']}}")
)
def _boolean(options: BooleanOptions, context: BuildContext) -> Step:
    """Read a yes/no flag (是否听证, 是否涉刑); a text in neither list is an error."""
    overlap = set(options.true) & set(options.false)
    if overlap:
        raise OptionProblem(f"{sorted(overlap)} listed as both true and false")
    truth = {text: True for text in options.true} | {text: False for text in options.false}

    def step(value: Any) -> Any:
        if isinstance(value, bool):
            return value
        text = _text(value, "boolean")
        found = truth.get(text)
        if found is None:
            raise ValueProblem(
                "boolean",
                f"{quoted(text)} is neither yes ({', '.join(options.true)}) nor no "
                f"({', '.join(options.false)})",
                value,
            )
        return found

    return step
