"""The code tables load, hold what the standard says, and reject broken files with file and line."""

from __future__ import annotations

import datetime
import threading
import time

import pytest

from standard import codetables
from standard.codetables import (
    CodeTableError,
    load_credit_code_kinds,
    load_industries,
    load_regions,
)

REGION_HEADER = "code,name,level,parent,valid_from,valid_to,replaced_by,known_until,source\n"
ZHEJIANG = "330000,浙江省,province,,2013-01-01,,,2020-12-31,\n"
HANGZHOU = "330100,杭州市,prefecture,330000,2013-01-01,,,,\n"


def test_packaged_tables_load_once() -> None:
    assert codetables.regions() is codetables.regions()
    assert codetables.industries() is codetables.industries()
    assert codetables.credit_code_kinds() is codetables.credit_code_kinds()
    assert codetables.regions().horizon == datetime.date(1980, 1, 1)
    # Every province but Hong Kong, Macau and Taiwan (twice: 710000, and 830000 of permits).
    coverage = codetables.regions().county_coverage
    assert len(coverage) == 31 and {"310000", "330000", "650000"} <= coverage
    assert not coverage & {"710000", "810000", "820000", "830000"}


def test_each_province_says_how_far_it_is_known() -> None:
    table = codetables.regions()
    assert table.versions("330000")[-1].known_until == datetime.date(2021, 4, 9)
    assert table.versions("310000")[-1].known_until == datetime.date(2020, 12, 31)
    assert table.versions("810000")[-1].known_until is None


def test_every_region_row_names_its_source() -> None:
    for region in codetables.regions().all():
        assert region.source, region.code


def test_lists_rows_say_which_lists_hold_them() -> None:
    table = codetables.regions()
    (county,) = table.versions("310230")  # 崇明县: in the 1982 to 2015 lists
    assert (county.first_list, county.last_list) == (1982, 2015)
    assert (county.valid_from, county.valid_to) == (
        datetime.date(1982, 1, 1),
        datetime.date(2016, 12, 31),
    )
    assert "MCA year-end lists" in county.source and "lenient" in county.source
    (district,) = table.versions("310151")
    assert district.valid_from == datetime.date(2016, 1, 1) and district.valid_to is None
    # 湘潭 and 邵阳 swapped codes in the 1982 and 1983 lists: renames meet day to day.
    names = [(r.name, r.valid_from.year, r.valid_to) for r in table.versions("430300")]
    assert names == [
        ("湘潭市", 1980, datetime.date(1981, 12, 31)),
        ("邵阳市", 1982, datetime.date(1983, 12, 31)),
        ("湘潭市", 1984, None),
    ]


def test_every_abolished_zhejiang_code_names_its_successors() -> None:
    table = codetables.regions()
    # The rows with exact dates, from notices (regions_curated.csv), not from the year-end lists.
    abolished = [r for r in table.all() if r.valid_to is not None and not r.mca_lists[5:]]
    assert {r.code for r in abolished} == {
        "330103",
        "330104",
        "330183",
        "330185",
        "330204",
        "330283",
        "330322",
        "330621",
        "330682",
        "331021",
    }
    for region in abolished:
        assert region.replaced_by, region.code
        assert region.valid_to is not None
        day_after = region.valid_to + datetime.timedelta(days=1)
        for successor in region.replaced_by:
            assert table.on(successor, day_after) is not None, (region.code, successor)


def test_credit_code_kinds_table() -> None:
    table = codetables.credit_code_kinds()
    assert table.authorities["9"] == "工商"
    assert [k.kind for k in table.kinds_of("9")] == ["1", "2", "3"]
    assert [k.kind for k in table.kinds_of("Y")] == ["1"]
    assert set(table.authorities) == set("123456789ANY")


def test_a_valid_minimal_region_table() -> None:
    table = load_regions(REGION_HEADER + ZHEJIANG + HANGZHOU, "t.csv")
    assert table.on("330100", datetime.date(2020, 1, 1)) is not None
    assert table.horizon == datetime.date(2013, 1, 1)
    assert table.county_coverage == frozenset({"330000"})


@pytest.mark.parametrize(
    ("rows", "line", "problem"),
    [
        ("3300,浙江省,province,,2013-01-01,,,\n", 2, "code: String should match pattern"),
        (ZHEJIANG + "330100,杭州市,county,330000,2013-01-01,,,\n", 3, "is a prefecture code"),
        (ZHEJIANG + "330100,杭州市,prefecture,330000,2013-13-01,,,\n", 3, "valid_from"),
        (ZHEJIANG + "330100,杭州市,prefecture,330000,2020-01-01,2019-01-01,,\n", 3, "before"),
        (ZHEJIANG + "330102,上城区,county,330100,2013-01-01,,,\n", 3, "parent 330100 is not"),
        (ZHEJIANG + HANGZHOU + HANGZHOU, 4, "overlapping validity periods"),
        (ZHEJIANG + "330100,杭州市,prefecture,330000,2013-01-01,,,,,extra\n", 3, "more cells"),
        (
            ZHEJIANG + HANGZHOU + "330103,下城区,county,330100,2013-01-01,,330105,,\n",
            4,
            "successor 330105 is not listed",
        ),
        (
            "330000,浙江省,province,,2013-01-01,,,,\n" + HANGZHOU,
            3,
            "province 330000 is not listed with a known_until",
        ),
        (
            ZHEJIANG + "330100,杭州市,prefecture,330000,2013-01-01,,,2020-12-31,\n",
            3,
            "provinces only",
        ),
    ],
)
def test_broken_region_tables_name_file_line_and_problem(
    rows: str, line: int, problem: str
) -> None:
    with pytest.raises(CodeTableError) as caught:
        load_regions(REGION_HEADER + rows, "regions.csv")
    assert caught.value.file == "regions.csv"
    assert caught.value.line == line
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"code table regions.csv, line {line}: ")


def test_broken_industry_tables() -> None:
    header = "code,level,section,name\n"
    good = "A,section,A,农、林、牧、渔业\n01,division,A,农业\n"
    assert sorted(load_industries(header + good, "i.csv").divisions) == ["01"]
    with pytest.raises(CodeTableError, match="line 3: division 01 before its section"):
        load_industries(header + "B,section,B,采矿业\n01,division,A,农业\n", "i.csv")
    with pytest.raises(CodeTableError, match="not contiguous"):
        load_industries(
            header + good + "B,section,B,采矿业\n02,division,B,x\n03,division,A,y\n", "i.csv"
        )
    with pytest.raises(CodeTableError, match="line 2: level must be section or division"):
        load_industries(header + "A,sector,A,x\n", "i.csv")


def test_broken_credit_code_kind_tables() -> None:
    header = "authority,authority_name,kind,kind_name\n"
    with pytest.raises(CodeTableError, match="line 3: authority 9 kind 1 listed twice"):
        load_credit_code_kinds(header + "9,工商,1,企业\n9,工商,1,企业\n", "k.csv")
    with pytest.raises(CodeTableError, match="line 2: authority"):
        load_credit_code_kinds(header + "99,工商,1,企业\n", "k.csv")


def test_threads_racing_to_the_first_read_of_a_table_read_it_once() -> None:
    """Eight delivery threads reaching a worker's first record at once: one reads the table,
    the others wait for it and get the same object (functools.cache had each read its own)."""
    started = threading.Barrier(8)
    reads: list[int] = []

    def load() -> object:
        reads.append(1)
        time.sleep(0.05)  # long enough for every racer to arrive while the first reads
        return object()

    table = codetables._read_once(load)
    got: list[object] = []

    def racer() -> None:
        started.wait()
        got.append(table())

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reads) == 1
    assert len(got) == 8 and all(one is got[0] for one in got)
    assert table() is got[0]
