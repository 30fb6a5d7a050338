"""The errors of the mapping engine: one small hierarchy to catch by meaning."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from standard.errors import EXCERPT_CHARS, render_value


class MappingEngineError(Exception):
    """Base of every error the mapping engine raises or reports."""


class MappingError(MappingEngineError, ValueError):
    """A mapping file, code table or system folder is wrong; raised when it is loaded.

    Attributes: `file` (path), `line` and `column` (1-based, or None), `field` (the canonical field
    or mapping key concerned, or None), `reason` (what is wrong and what to do).
    """

    def __init__(
        self,
        reason: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = Path(file) if file is not None else None
        self.line = line
        self.column = column
        self.field = field
        super().__init__(self._text())

    def _text(self) -> str:
        where = str(self.file) if self.file is not None else "<mapping>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        subject = f" field '{self.field}':" if self.field else ""
        return f"{where}:{subject} {self.reason}"


class UnknownMessageType(MappingEngineError, LookupError):
    """A system was asked to translate or render a message type it has no mapping for."""

    def __init__(self, system: str, message_type: str, direction: str, known: list[str]) -> None:
        self.system = system
        self.message_type = message_type
        self.direction = direction
        self.known = known
        listed = ", ".join(known) or "none"
        super().__init__(
            f"system '{system}' has no {direction} mapping for message type '{message_type}' "
            f"(it has: {listed})"
        )


class PayloadRejected(MappingEngineError, ValueError):
    """A payload cannot be read at all (encoding, syntax, limits, forbidden markup).

    No record of it is translated. Attributes: `system`, `message_type`, `reason`, and where
    known `offset` (byte offset in the payload), `line` and `column` (1-based).
    """

    kind = "payload-rejected"

    def __init__(
        self,
        reason: str,
        *,
        system: str | None = None,
        message_type: str | None = None,
        offset: int | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.reason = reason
        self.system = system
        self.message_type = message_type
        self.offset = offset
        self.line = line
        self.column = column
        super().__init__(reason)

    def __str__(self) -> str:
        where = []
        if self.system:
            where.append(f"system {self.system}")
        if self.message_type:
            where.append(f"message type {self.message_type}")
        if self.offset is not None:
            where.append(f"byte offset {self.offset}")
        if self.line is not None:
            where.append(f"line {self.line}" + (f" column {self.column}" if self.column else ""))
        prefix = f"{', '.join(where)}: " if where else ""
        return f"{prefix}{self.kind}: {self.reason}"

    def in_context(self, system: str, message_type: str) -> PayloadRejected:
        """This error with the system and message type filled in (the parsers do not know them)."""
        self.system = system
        self.message_type = message_type
        return self

    def to_dict(self) -> dict[str, Any]:
        """The error as plain data (for answers to a pushing system and for expected files)."""
        return {
            "kind": self.kind,
            "reason": self.reason,
            "offset": self.offset,
            "line": self.line,
            "column": self.column,
        }


class PayloadTooLarge(PayloadRejected):
    """The payload has more bytes than the system's limit allows."""

    kind = "too-large"


class PayloadTooManyRecords(PayloadRejected):
    """The payload holds more records than its channel takes in one payload.

    Counted before any record is translated. Attributes `records` (how many it holds) and
    `limit` (the most the channel takes).
    """

    kind = "too-many-records"

    def __init__(self, records: int, limit: int) -> None:
        super().__init__(
            f"the payload holds {records} records, more than the {limit} its channel takes in "
            f"one payload; send them in payloads of at most {limit} records"
        )
        self.records = records
        self.limit = limit


class PayloadTooDeep(PayloadRejected):
    """The payload nests elements, objects or arrays deeper than the limit allows."""

    kind = "too-deep"


class EncodingMismatch(PayloadRejected):
    """The bytes do not match the encoding that the BOM, declaration or charset names."""

    kind = "encoding"


class ForbiddenMarkup(PayloadRejected):
    """The XML carries a DOCTYPE, DTD or entity declaration; these are refused outright."""

    kind = "forbidden-markup"


class MalformedPayload(PayloadRejected):
    """The payload is not well-formed XML or JSON."""

    kind = "malformed"


class NumberOutOfBoundsPayload(MalformedPayload):
    """The payload holds a number with absurdly many digits or an absurd exponent (beyond the
    standard's NUMBER_BOUNDS); refused as it is read, before any arithmetic."""

    kind = "number-out-of-bounds"


class NoRecords(PayloadRejected):
    """The mapping's record path selects nothing in the payload (wrong message type or root)."""

    kind = "no-records"


class TranslationError(MappingEngineError, ValueError):
    """One record of a payload could not be translated; the other records are not affected.

    Attributes: `system`, `message_type`, `record_index` (0-based position among the payload's
    records), `location` (XPath of the record element with its index, or JMESPath of the JSON
    record), `line` (source line of the record or field element, XML only), `field` (canonical
    field, or None for the whole record), `field_zh`, `rule`, `value` (offending value),
    `source_path` (the mapping's path for that field), `message`.
    """

    def __init__(
        self,
        *,
        system: str,
        message_type: str,
        record_index: int,
        location: str,
        line: int | None,
        field: str | None,
        rule: str,
        message: str,
        value: Any = None,
        field_zh: str | None = None,
        source_path: str | None = None,
    ) -> None:
        self.system = system
        self.message_type = message_type
        self.record_index = record_index
        self.location = location
        self.line = line
        self.field = field
        self.field_zh = field_zh
        self.rule = rule
        self.value = value
        self.source_path = source_path
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        where = (
            f"{self.system} {self.message_type} record {self.record_index + 1} at {self.location}"
        )
        if self.source_path:
            where += f" / {self.source_path}"
        if self.line is not None:
            where += f" (line {self.line})"
        target = ""
        if self.field:
            target = f" {self.field}" + (f" ({self.field_zh})" if self.field_zh else "") + ":"
        return f"{where}:{target} rule '{self.rule}': {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The error as plain JSON-ready data."""
        return {
            "system": self.system,
            "message_type": self.message_type,
            "record_index": self.record_index,
            "location": self.location,
            "line": self.line,
            "field": self.field,
            "field_zh": self.field_zh,
            "rule": self.rule,
            "value": _plain(self.value),
            "source_path": self.source_path,
            "message": self.message,
        }


class RenderError(MappingEngineError, ValueError):
    """A canonical record cannot be rendered into a target system's format."""

    def __init__(
        self, reason: str, *, system: str, message_type: str, target: str | None = None
    ) -> None:
        self.reason = reason
        self.system = system
        self.message_type = message_type
        self.target = target
        at = f" at {target}" if target else ""
        super().__init__(f"{system} {message_type}{at}: {reason}")


class ValueProblem(MappingEngineError, ValueError):
    """A mapping function refused a value; the engine turns it into a TranslationError.

    `rule` names the function and its options (e.g. "date 'yyyyMMdd'"), `message` says why,
    `value` is the value refused. As the problem travels out of nested rules, the engine fills
    in `field_path` (e.g. `("inspectors", 1, "certificate_number")` below the top field) and
    `source_path` (the mapping's path whose value was refused).
    """

    def __init__(self, rule: str, message: str, value: Any = None) -> None:
        self.rule = rule
        self.message = message
        self.value = value
        self.field_path: tuple[str | int, ...] = ()
        self.source_path: str | None = None
        super().__init__(f"{rule}: {message}")


# Most items of a list or object an error's value shows; the value is evidence, not a copy.
_PLAIN_ITEMS = 20


def _plain(value: Any) -> Any:
    # Text and numbers as excerpts: a refused 1 MB value must not make a 1 MB answer.
    if value is None or isinstance(value, float | bool):
        return value
    if isinstance(value, str | int | Decimal | date):
        return value if isinstance(value, int) and abs(value) < 10**18 else render_value(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value[:_PLAIN_ITEMS]]
    if isinstance(value, dict):
        return {
            str(key)[:EXCERPT_CHARS]: _plain(item)
            for key, item in list(value.items())[:_PLAIN_ITEMS]
        }
    return render_value(str(value))
