"""`jghub standard`: export the unified standard's JSON Schemas and check codes."""

from __future__ import annotations

import datetime
import enum
from pathlib import Path
from typing import Annotated

import typer

from standard import checks, codetables
from standard.schema import write_schemas

app = typer.Typer(
    help="The unified data standard: JSON Schemas and code checks.", no_args_is_help=True
)


# -- jghub standard check ----------------------------------------------------------------------
# Self-contained: the `schema` command lives beside it in this file.


class CodeKind(enum.StrEnum):
    """The codes `jghub standard check` knows."""

    credit_code = "credit-code"
    org_code = "org-code"
    id_number = "id-number"
    region = "region"
    industry = "industry"


def _describe_credit_code(value: str) -> str:
    kind = codetables.credit_code_kinds().kinds[(value[0], value[1])]
    return (
        f"unified social credit code {value}: {kind.authority_name} / {kind.kind_name}, "
        f"registration region {value[2:8]}, organisation code {value[8:17]}"
    )


def _describe_id_number(value: str) -> str:
    born = checks.id_number_birth_date(value)
    sex = "male" if int(value[16]) % 2 else "female"
    return f"resident ID number {value}: born {born.isoformat()}, {sex}, region {value[:6]}"


def _describe_region(value: str, on: datetime.date | None) -> str:
    day = on or datetime.date.today()
    region = checks.check_region(value, on=day)
    province = codetables.regions().versions(f"{value[:2]}0000")[-1]
    known = province.known_until
    beyond = (
        f"; the table knows {province.name} to {known}" if known is not None and day > known else ""
    )
    return f"region {region.code} {_region_row(region, day)}{beyond}"


def _region_row(region: codetables.Region, day: datetime.date) -> str:
    """'<name> (<level> in <province> <prefecture>), valid from <start>[ to <end>]'."""
    table = codetables.regions()
    chain = []
    parent = region.parent
    while parent is not None:
        row = table.on(parent, day) or table.versions(parent)[-1]
        chain.append(row.name)
        parent = row.parent
    inside = f" in {' '.join(reversed(chain))}" if chain else ""
    since = f"{region.valid_from}" + (" or earlier" if region.valid_from == table.horizon else "")
    until = f" to {region.valid_to}" if region.valid_to else ""
    return f"{region.name} ({region.level}{inside}), valid from {since}{until}"


def _describe_lists(region: codetables.Region) -> str:
    if region.first_list is None:
        return "from a notice, to the day"
    first = f"first in MCA's {region.first_list} year-end list"
    if region.last_list is None:
        return f"{first}; its end from a notice, to the day"
    if region.valid_to is None:
        return f"{first}, still in the {region.last_list} list"
    return f"{first}, last in the {region.last_list} list"


def _describe_industry(value: str) -> str:
    industry = checks.check_industry(value)
    parts = [f"section {industry.section.code} {industry.section.name}"]
    if industry.division is not None:
        parts.append(f"division {industry.division.code} {industry.division.name}")
    if industry.industry_class is not None:
        parts.append(f"class {industry.industry_class}")
    elif industry.group is not None:
        parts.append(f"group {industry.group}")
    structural = " (groups and classes are checked structurally)" if industry.group else ""
    return f"industry {value} ({industry.level}): {', '.join(parts)}{structural}"


@app.command("check")
def check(
    kind: Annotated[CodeKind, typer.Argument(help="Which code to check.")],
    value: Annotated[str, typer.Argument(help="The value exactly as received (not normalised).")],
    on: Annotated[
        datetime.datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="For region: check validity on this date (YYYY-MM-DD); default today.",
        ),
    ] = None,
) -> None:
    """Check one code; print `valid: ...` (exit 0) or `invalid: <why>` (exit 1)."""
    if on is not None and kind is not CodeKind.region:
        raise typer.BadParameter("--on applies to region codes only", param_hint="--on")
    day = on.date() if on is not None else None
    try:
        if kind is CodeKind.credit_code:
            description = _describe_credit_code(checks.check_credit_code(value))
        elif kind is CodeKind.org_code:
            description = f"organisation code {checks.check_org_code(value)}"
        elif kind is CodeKind.id_number:
            description = _describe_id_number(value)
        elif kind is CodeKind.region:
            description = _describe_region(value, day)
        else:
            description = _describe_industry(value)
    except checks.CheckFailure as failure:
        typer.echo(f"invalid: {failure.message}")
        raise typer.Exit(1) from None
    typer.echo(f"valid: {description}")


# -- jghub standard region ---------------------------------------------------------------------


@app.command("region")
def region(
    code: Annotated[str, typer.Argument(help="Six-digit GB/T 2260 code, e.g. 310101.")],
) -> None:
    """Show every row the region table holds for CODE: its periods, the lists, the source."""
    table = codetables.regions()
    rows = table.versions(code)
    if not rows:
        try:
            checks.check_region(code)
        except checks.CheckFailure as failure:
            typer.echo(f"unknown: {failure.message}")
        raise typer.Exit(1)
    for row in rows:
        typer.echo(f"{row.code} {_region_row(row, row.valid_from)}")
        typer.echo(f"  dates: {_describe_lists(row)}")
        if row.replaced_by:
            typer.echo(f"  replaced by: {' '.join(row.replaced_by)}")
        typer.echo(f"  source: {row.source}")
    province = table.versions(f"{code[:2]}0000")[-1]
    if province.known_until is None:
        typer.echo(f"{province.name}: the table holds none of its prefectures or counties")
    else:
        typer.echo(f"{province.name}: prefectures and counties known to {province.known_until}")


# -- jghub standard schema ---------------------------------------------------------------------


@app.command("schema")
def schema(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            file_okay=False,
            help="Directory to write the schemas into (created when missing).",
        ),
    ] = Path("schemas"),
) -> None:
    """Write one JSON Schema per dataset (<name>.v1.schema.json) and one for the envelope."""
    for path in write_schemas(out):
        typer.echo(f"wrote {path}")
