"""A department's case batch the quarantine keeps, and the mapping fix that lets it go.

agri-penalty pushes five valid cases, one with a case-source code (10) its mapping does not know
yet: four are published, that one is rejected and its payload quarantined. `fix_case_source`
adds the code to the mapping table on disk, so a hub started after it (or `jghub quarantine
release`) translates the record. The hub's mapping folders must be copies (`copied_mappings`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
from hub_harness import AGRI_KEY, sample

from mappings import SYSTEMS_ROOT

PUSH = "/systems/agri-penalty/rest/case_records"
AGRI = {"Content-Type": "application/json", "Authorization": f"Bearer {AGRI_KEY}"}
FOLDERS = ("grassroots-platform", "eco-env-penalty", "complaint-platform", "housing-penalty",
           "agri-penalty")  # fmt: skip
FIX = "10,9,其他（新增来源）\n"
"""The mapping fix: the department's new case-source code 10, mapped to the standard's 9."""


def copied_mappings(tmp_path: Path) -> Path:
    """A copy of the test systems' mapping folders, for a test to fix on disk."""
    root = tmp_path / "mappings"
    for folder in FOLDERS:
        shutil.copytree(SYSTEMS_ROOT / folder, root / folder)
    return root


def cases(unknown_source_at: int | None = 2) -> tuple[bytes, str | None]:
    """The department's five valid cases, one of them with a case source its mapping does not
    know yet (code 10); the payload and that case's number."""
    document = json.loads(sample("agri-penalty", "case_records", "valid-records"))
    if unknown_source_at is None:
        return json.dumps(document, ensure_ascii=False).encode(), None
    case = document["records"][unknown_source_at]["caseInfo"]
    case["caseSource"] = "10"
    return json.dumps(document, ensure_ascii=False).encode(), case["caseNo"].strip()


def push(client: httpx.Client, payload: bytes) -> httpx.Response:
    """agri-penalty pushes `payload` to the hub `client` talks to."""
    return client.post(PUSH, content=payload, headers=AGRI)


def fix_case_source(mappings_root: Path) -> None:
    """Deploy the mapping fix (FIX) in the copied mappings under `mappings_root`."""
    table = mappings_root / "agri-penalty" / "tables" / "case_source.csv"
    table.write_text(table.read_text(encoding="utf-8") + FIX, encoding="utf-8")
