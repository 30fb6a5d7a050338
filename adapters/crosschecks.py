"""The cross-checks at ingress: a record a rejecting rule finds wrong is refused, a warning noted.

Ingress asks `reference.rulebook.CrossChecks` about every translated record it has not
published before (a repeat was judged when it was first accepted), after the sender's
authorisation and before the penalty-case stages are recorded (a refused record moves no case).
A finding of a rule set to `reject` becomes a rejected record exactly like one that breaks the
standard: answered rejected with the rule, the field path, the value and the message, kept in
the quarantine, journalled and counted under its rule. Findings of a rule set to `warn`, and
the rules that could not judge a record (a list never fed), go to the observer with the records
it accepts (`monitor.quality.RuleOutcome`): journalled with each record and counted per rule.

The warnings stay in the hub: they are not carried to the targets on the envelope. They judge
the sender's record against the hub's lists as they stood when it arrived, which a target
holding its own (or newer) lists has no use for; and the event the targets receive stays the
record the sender sent. An operator reads them in the record's journal entry (`jghub trace`),
the quality report and the metrics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from adapters.refusals import RecordRefusal
from mappings import TranslationError
from monitor.quality import RuleOutcome
from reference.rulebook import CrossChecks
from standard.envelope import Envelope


class RuleRefusal(RecordRefusal):
    """A cross-check set to reject found the record wrong: rejected."""


def rule_refusals(
    checks: CrossChecks,
    sender: str,
    message_type: str,
    records: Sequence[tuple[int, Envelope]],
) -> tuple[list[TranslationError], RuleOutcome]:
    """Ask `checks` about `records` (payload index, envelope) of `sender`: the refusals, one
    per rejecting finding, and what the observer is told of the rest."""
    refusals: list[TranslationError] = []
    warnings: dict[str, list[dict[str, object]]] = {}
    unchecked: dict[str, tuple[str, ...]] = {}
    rejected: Counter[str] = Counter()
    verdicts = checks.verdicts(sender, [envelope for _, envelope in records])
    for (index, envelope), verdict in zip(records, verdicts, strict=True):
        if verdict.rejections:
            rejected.update({finding.rule for finding in verdict.rejections})
            refusals += [
                RuleRefusal.of(
                    sender,
                    message_type,
                    index,
                    envelope,
                    field=finding.field,
                    rule=finding.rule,
                    value=finding.value,
                    message=finding.message,
                )
                for finding in verdict.rejections
            ]
            continue
        if verdict.warnings:
            warnings[envelope.id] = [finding.to_dict() for finding in verdict.warnings]
        if verdict.unchecked:
            unchecked[envelope.id] = verdict.unchecked
    return refusals, RuleOutcome(warnings, unchecked, dict(rejected))
