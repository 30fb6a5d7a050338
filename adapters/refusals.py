"""A translated record ingress refuses after translation: rejected like one the mapping refused.

The sender's authorisation (`adapters.authorisation`), the cross-checks (`adapters.crosschecks`)
and the penalty-case stages (`adapters.stages`) each judge translated envelopes and refuse some;
their refusals name the record the same way, so they are built in one place.
"""

from __future__ import annotations

from typing import Any, Self

from mappings import TranslationError
from standard.envelope import Envelope


class RecordRefusal(TranslationError):
    """A rule of the hub (not of the mapping) found a translated record wrong: rejected."""

    @classmethod
    def of(
        cls,
        sender: str,
        message_type: str,
        index: int,
        envelope: Envelope,
        *,
        field: str | None,
        rule: str,
        value: Any,
        message: str,
    ) -> Self:
        """The refusal of `envelope`, record `index` (0-based) of `sender`'s payload, located by
        its lineage (the record's XPath or JMESPath) or, without one, by its 1-based number."""
        return cls(
            system=sender,
            message_type=message_type,
            record_index=index,
            location=envelope.lineagelocation or f"record {index + 1}",
            line=None,
            field=field,
            rule=rule,
            value=value,
            message=message,
        )
