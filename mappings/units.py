"""Units of money: the table of what a department may send (元, 万元, 千元 …) and exact conversion.

The table is data, `mappings/units.yaml`: each unit with its worth in 元 and the spellings that
name it. Conversion is Decimal arithmetic, never binary floating point, and refuses an amount
that is not a whole number of 分, the standard's smallest money (2 places in 元, 6 in 万元).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from functools import cache
from pathlib import Path

from mappings.errors import MappingError
from mappings.yamlsource import load_yaml
from standard.types import FEN

UNITS_FILE = Path(__file__).with_name("units.yaml")
STANDARD_UNITS = ("元", "万元")
"""The standard's units of money: 元 (`Yuan`, most amounts) and 万元 (`WanYuan`, 双公示)."""

_FULLWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


class UnitUnknown(ValueError):
    """A spelling the unit table does not have."""


class UnitNotExact(ValueError):
    """An amount that is not a whole number of 分, so no unit holds it exactly."""


@dataclass(frozen=True)
class MoneyUnit:
    """One unit: its name (元, 万元 …), its worth in 元 and the spellings that name it."""

    name: str
    yuan: Decimal
    spellings: tuple[str, ...]


@dataclass(frozen=True)
class UnitTable:
    """Every unit by name, and every normalised spelling to its unit."""

    units: Mapping[str, MoneyUnit]
    spellings: Mapping[str, MoneyUnit]

    def unit(self, spelling: str) -> MoneyUnit:
        """The unit `spelling` names; UnitUnknown naming it and the known spellings if none."""
        found = self.spellings.get(normalise(spelling))
        if found is None:
            known = ", ".join(name for unit in self.units.values() for name in unit.spellings)
            raise UnitUnknown(f"unit {spelling!r} is not in the unit table ({known})")
        return found

    def convert(self, amount: Decimal, unit: MoneyUnit, into: str) -> Decimal:
        """`amount` in `unit` expressed in the unit named `into`, exactly.

        The amount must be a whole number of 分 (the standard's smallest money); the result
        has exactly the places a whole number of 分 needs in `into`: 2 in 元, 6 in 万元. Anything
        finer is UnitNotExact, never rounded.
        """
        target = self.unit(into)
        exact_context = Context(prec=200, traps=[InvalidOperation, Inexact, Overflow])
        try:
            yuan = exact_context.multiply(amount, unit.yuan)
            in_fen = yuan.quantize(FEN, context=Context(prec=200))
            if in_fen != yuan:
                raise UnitNotExact(
                    f"{format(amount, 'f')} {unit.name} is {format(yuan.normalize(), 'f')} 元, "
                    "not a whole number of 分"
                )
            converted = exact_context.divide(in_fen, target.yuan)
            return converted.quantize(FEN / target.yuan, context=exact_context)
        except (InvalidOperation, Inexact, Overflow):
            raise UnitNotExact(
                f"{format(amount, 'f')} {unit.name} cannot be converted to {target.name} exactly"
            ) from None


def normalise(spelling: str) -> str:
    """How a spelling is compared: trimmed, full-width forms as ASCII, Latin letters lower-case."""
    return spelling.translate(_FULLWIDTH).strip().lower()


@cache
def unit_table(path: Path = UNITS_FILE) -> UnitTable:
    """The unit table in `path` (default: mappings/units.yaml), checked; MappingError if broken."""
    document = load_yaml(path)
    raw = document.data.get("units") if isinstance(document.data, dict) else None
    if not isinstance(raw, dict) or not raw:
        raise document.error("the unit table needs a `units` mapping", ())
    units: dict[str, MoneyUnit] = {}
    spellings: dict[str, MoneyUnit] = {}
    for name, entry in raw.items():
        where = ("units", name)
        if not isinstance(entry, dict) or not isinstance(entry.get("spellings"), list):
            raise document.error(f"unit {name!r} needs `yuan` and a list of `spellings`", where)
        try:
            worth = Decimal(str(entry.get("yuan")))
        except InvalidOperation:
            worth = Decimal(0)
        if not worth.is_finite() or worth <= 0:
            raise document.error(
                f"unit {name!r}: `yuan` must be a positive decimal number written as text, "
                f"not {entry.get('yuan')!r}",
                (*where, "yuan"),
            )
        unit = MoneyUnit(str(name), worth, tuple(str(text) for text in entry["spellings"]))
        units[unit.name] = unit
        for index, text in enumerate((unit.name, *unit.spellings)):
            key = normalise(text)
            other = spellings.get(key)
            if other is not None and other.name != unit.name:
                raise document.error(
                    f"spelling {text!r} names both {other.name} and {unit.name}",
                    (*where, "spellings", index - 1) if index else where,
                )
            spellings[key] = unit
    missing = [name for name in STANDARD_UNITS if name not in units]
    if missing:
        raise MappingError(
            f"the unit table lacks the standard's unit(s) {', '.join(missing)}", file=path
        )
    return UnitTable(units, spellings)
