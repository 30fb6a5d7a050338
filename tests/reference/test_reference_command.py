"""`jghub reference status` and `show` read the store's lists: counts, newest change, last fed,
late changes; one entry, deleted or held; exit 1 for a key the list never held, 2 for a store
that cannot be opened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reference_changes import change
from store_support import embedded_store
from typer.testing import CliRunner

from hub.cli import app
from reference.stored import StoreLists


def run(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["reference", *arguments])
    return result.exit_code, result.output


def test_status_and_show_read_the_lists(tmp_path: Path) -> None:
    lists = StoreLists(embedded_store(tmp_path))
    lists.apply(change("enforcement_officer", "2026-03-02T09:00:00+08:00"))
    lists.apply(change("enforcement_officer", "2026-03-01T09:00:00+08:00"))  # late
    lists.apply(change("supervision_item", "2026-03-01T09:00:00+08:00"))
    lists.apply(change("supervision_item", "2026-03-02T09:00:00+08:00", operation="delete"))
    code, output = run("status", "--json", "--data-dir", str(tmp_path))
    assert code == 0, output
    by_list = {row["list"]: row for row in json.loads(output)}
    assert by_list["officers"]["rows"] == 1 and by_list["officers"]["late_ignored"] == 1
    assert by_list["officers"]["newest"] == "2026-03-02 09:00:00+08:00"
    assert by_list["officers"]["fed_at"] != "-"
    assert by_list["catalogue"]["rows"] == 0 and by_list["objects"]["fed_at"] == "-"

    code, output = run("show", "officers", "浙A0601003182", "--json", "--data-dir", str(tmp_path))
    assert code == 0, output
    shown = json.loads(output)
    assert shown["record"]["officer_id"] == "ZF-330106-00318" and not shown["deleted"]
    code, output = run("show", "catalogue", "33060100100001", "--data-dir", str(tmp_path))
    assert code == 0 and "deleted" in output
    code, output = run("show", "objects", "91330106MA2CDN7P4X", "--data-dir", str(tmp_path))
    assert code == 1 and "no certificate code" in output


def test_a_store_that_cannot_be_opened_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JGHUB_DATABASE_URL", "mysql://nobody@127.0.0.1/none")
    code, output = run("status", "--data-dir", str(tmp_path))
    assert code == 2 and "cannot open the lists" in output
