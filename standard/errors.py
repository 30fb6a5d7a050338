"""What goes wrong against the unified standard: violations, invalid records, illegal stage moves.

One small hierarchy, caught by meaning::

    StandardError (ValueError)
    ├── RecordInvalid            a record breaks one or more rules; holds the Violations
    │   └── EnvelopeInvalid      the envelope around a record is malformed
    ├── IllegalStageTransition   a penalty case may not move from one stage to the other
    ├── UnknownDataset           no dataset (or CloudEvents type) of that name
    └── UnknownDictionary        no code dictionary of that name

The check algorithms' ``CheckFailure`` (``standard.checks``) is a plain ``ValueError`` raised by the
single-value checks; inside a record it becomes a ``Violation``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any


class StandardError(ValueError):
    """Something does not meet the unified data standard."""


EXCERPT_CHARS = 80
"""Most characters of a value that an error quotes; a longer value is cut and its length said."""

# A Decimal written out without exponent has about this many characters at most before the hub
# writes it in scientific notation instead (8000e999999999 would otherwise be a billion digits).
_PLAIN_DECIMAL_DIGITS = 60


def render_value(value: object, *, limit: int | None = EXCERPT_CHARS) -> str:
    """A value as it appears in an error message: dates in ISO 8601, strings as themselves,
    cut to `limit` characters (see `quoted`; None: not cut, for a caller that quotes it)."""
    text = _plain_text(value)
    return text if limit is None else _cut(text, limit)


def quoted(value: object, *, limit: int = EXCERPT_CHARS) -> str:
    """A value quoted in an error, as `{value!r}` would, but bounded: at most `limit` characters
    of it, then `… (N characters)`.

    Every error that quotes a value a sender chose goes through this (or `render_value`): a 1 MB
    value must not become a 1 MB error, answer, log line and journal entry.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value)} characters)"
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return _cut(_plain_text(value), limit)
    return _cut(repr(value), limit)


def _plain_text(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        if value.is_finite() and abs(value.adjusted()) > _PLAIN_DECIMAL_DIGITS:
            return str(value)  # scientific notation: a few characters, not a billion digits
        return format(value, "f")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 4 * _PLAIN_DECIMAL_DIGITS:
            # str() of a huge int is slow, and refused past Python's 4300-digit limit.
            return f"an integer of {value.bit_length()} bits"
        return str(value)
    return repr(value)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


@dataclass(frozen=True)
class Violation:
    """One broken rule in one record: which dataset, which field, which rule, which value.

    ``field`` is the dotted path inside the record (``party.certificate_code``,
    ``inspectors[1].certificate_number``); ``field_zh`` is the same path in the standard's Chinese
    field names. ``message`` says what is wrong with ``value`` in plain words.
    """

    dataset: str
    field: str
    field_zh: str
    rule: str
    value: Any
    message: str

    def __str__(self) -> str:
        where = f"{self.dataset}.{self.field}" if self.field else self.dataset
        zh = f" ({self.field_zh})" if self.field_zh else ""
        return f"{where}{zh}: rule '{self.rule}'; {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for answers to pushing systems and the quarantine."""
        data = asdict(self)
        data["value"] = None if self.value is None else render_value(self.value)
        return data


class RecordInvalid(StandardError):
    """A record breaks the standard; ``violations`` lists every broken rule, one per field."""

    def __init__(self, dataset: str, violations: Iterable[Violation]) -> None:
        self.dataset = dataset
        self.violations: tuple[Violation, ...] = tuple(violations)
        super().__init__(self._render())

    def _render(self) -> str:
        count = len(self.violations)
        head = f"{self.dataset}: {count} violation{'s' if count != 1 else ''} of the standard"
        return "\n".join([head, *(str(v) for v in self.violations)])

    def __str__(self) -> str:
        return self._render()

    def __reduce__(self) -> tuple[type[RecordInvalid], tuple[str, tuple[Violation, ...]]]:
        return (type(self), (self.dataset, self.violations))

    def fields(self) -> list[str]:
        """The field paths that broke a rule, in order."""
        return [v.field for v in self.violations]

    def rules(self) -> list[str]:
        """The rules that were broken, in order."""
        return [v.rule for v in self.violations]


class EnvelopeInvalid(RecordInvalid):
    """The envelope (CloudEvents attributes and extensions) around a record is malformed."""


class IllegalStageTransition(StandardError):
    """A penalty case may not move between two stages (names both, in Chinese and English)."""

    def __init__(self, current: Any, target: Any, allowed: Sequence[Any] = ()) -> None:
        self.current = current
        self.target = target
        self.allowed = tuple(allowed)
        targets = ", ".join(f"{s.zh} {s.value}" for s in self.allowed) or "none (final stage)"
        super().__init__(
            f"penalty case may not move from {current.zh} ({current.value}) to "
            f"{target.zh} ({target.value}); from {current.zh} it may move to: {targets}"
        )

    def __reduce__(self) -> tuple[type[IllegalStageTransition], tuple[Any, Any, tuple[Any, ...]]]:
        return (type(self), (self.current, self.target, self.allowed))


class UnknownDataset(StandardError, LookupError):
    """No dataset or CloudEvents type of that name in the standard."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        super().__init__(f"unknown dataset or type {name!r}; known: {', '.join(self.known)}")

    def __reduce__(self) -> tuple[type[UnknownDataset], tuple[str, tuple[str, ...]]]:
        return (type(self), (self.name, self.known))


class UnknownDictionary(StandardError, LookupError):
    """No code dictionary of that name under ``standard/dictionaries/``."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        super().__init__(f"unknown code dictionary {name!r}; known: {', '.join(self.known)}")

    def __reduce__(self) -> tuple[type[UnknownDictionary], tuple[str, tuple[str, ...]]]:
        return (type(self), (self.name, self.known))
