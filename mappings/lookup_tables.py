"""A system's lookup tables, for the mapping function `lookup`: its own codes beside the
standard's, as CSV or YAML files.

A table lives in `mappings/systems/<system>/tables/<name>.csv` (or `.yaml`). CSV has a header
row with the columns `source` (the system's code) and `standard` (the standard's code); other
columns, such as `label`, document the row and are ignored. YAML has an `entries` mapping from
source code to standard code and an optional `description`. Codes are text: `01` stays `01`.

A source code appears once. Several source codes may share a standard code; rendering in reverse
then writes the first of them, which the file's order makes explicit.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mappings.errors import MappingError
from mappings.yamlsource import load_yaml

TABLE_SUFFIXES = (".csv", ".yaml", ".yml")


@dataclass(frozen=True)
class CodeTable:
    """Source code → standard code, and the first source code of each standard code."""

    name: str
    path: Path | None
    forward: Mapping[str, str]
    reverse: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def inline(cls, name: str, entries: Mapping[str, str]) -> CodeTable:
        """A table written inside a mapping file."""
        return cls(name, None, dict(entries), _reverse(entries))


def load_tables(folder: Path) -> dict[str, CodeTable]:
    """Every table in `folder` (none if it does not exist), by file name without suffix."""
    tables: dict[str, CodeTable] = {}
    if not folder.is_dir():
        return tables
    for path in sorted(folder.iterdir()):
        if path.suffix not in TABLE_SUFFIXES:
            continue
        if path.stem in tables:
            raise MappingError(
                f"table '{path.stem}' is defined twice (also in {tables[path.stem].path})",
                file=path,
            )
        loader = _load_csv if path.suffix == ".csv" else _load_yaml
        tables[path.stem] = loader(path)
    return tables


def _load_csv(path: Path) -> CodeTable:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise MappingError(f"cannot read the table as UTF-8: {error}", file=path) from None
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    if "source" not in columns or "standard" not in columns:
        raise MappingError(
            f"the header row must name the columns 'source' and 'standard' (it has: "
            f"{', '.join(columns) or 'nothing'})",
            file=path,
            line=1,
        )
    entries: dict[str, str] = {}
    lines: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        source = (row.get("source") or "").strip()
        standard = (row.get("standard") or "").strip()
        if not source or not standard:
            raise MappingError(
                "a row needs both a source and a standard code", file=path, line=line
            )
        if source in entries:
            raise MappingError(
                f"source code '{source}' is listed twice (first on line {lines[source]})",
                file=path,
                line=line,
            )
        entries[source] = standard
        lines[source] = line
    if not entries:
        raise MappingError("the table has no rows", file=path)
    return CodeTable(path.stem, path, entries, _reverse(entries))


def _load_yaml(path: Path) -> CodeTable:
    document = load_yaml(path)
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise document.error("a YAML table is a mapping with an 'entries' mapping", ())
    unknown = set(data) - {"entries", "description"}
    if unknown:
        key = sorted(unknown)[0]
        raise document.error(f"unknown key '{key}' (a table has entries and description)", (key,))
    entries: dict[str, str] = {}
    for source, standard in data["entries"].items():
        if source is None or standard is None or isinstance(standard, dict | list):
            raise document.error(
                f"entry '{source}' must map a code to a code", ("entries", str(source))
            )
        # YAML reads 01 as the number 1 and yes as True: a code is text, so it must be quoted.
        if not isinstance(source, str) or not isinstance(standard, str):
            raise document.error(
                f"entry {source!r}: {standard!r} is not text; quote codes in YAML ('01', 'Y', "
                "'yes'), which otherwise reads them as numbers or booleans",
                ("entries", str(source)),
            )
        entries[source] = standard
    if not entries:
        raise document.error("the table has no entries", ("entries",))
    return CodeTable(path.stem, path, entries, _reverse(entries))


def _reverse(entries: Mapping[str, str]) -> dict[str, str]:
    reverse: dict[str, str] = {}
    for source, standard in entries.items():
        reverse.setdefault(standard, source)
    return reverse
