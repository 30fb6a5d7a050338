"""Penalty-case stages at ingress: a record moving its case along no legal transition is refused.

The standard says which moves between a penalty case's stages are legal
(`standard.datasets.penalty_case.TRANSITIONS`); a single record cannot show a move, only the
stage it is in. `CaseStages` remembers each case's last stage (the centre keeps it on the
store: `centre.penalties`), and ingress asks it about every translated `penalty_case` record
before anything is published. It records the move and answers None, or answers the illegal
transition and records nothing; ingress turns that into a rejected record (quarantined with its
reason, answered to the sender per record, the field `stage` and the rule named), like a record
sent in another department's name (`adapters.authorisation`).

A record the hub has published before (a repeat, `adapters.repeats`) is not asked: it is
answered accepted as before, whatever stage the case has reached since.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from adapters.refusals import RecordRefusal
from standard.envelope import Envelope
from standard.errors import IllegalStageTransition

STAGE_RULE = "a penalty case moves only along the legal stage transitions"
"""The rule a record moving its case backwards or past a stage breaks, as answers name it."""
CASE_DATASET = "penalty_case"


class IllegalStageMove(RecordRefusal):
    """A penalty-case record would move its case along no legal transition: rejected."""


class CaseStages(ABC):
    """Each penalty case's last stage, moved only along legal transitions; shared by every
    process that takes records (`serve`, the pollers)."""

    @abstractmethod
    def move(
        self, sender: str, envelopes: Sequence[Envelope]
    ) -> list[IllegalStageTransition | None]:
        """Move the case of each of `envelopes` (penalty_case records of `sender`, in payload
        order) to the stage it names: for each, None when the move was legal and is recorded,
        or the illegal transition (nothing of that record is recorded)."""

    @abstractmethod
    def published(self, envelopes: Sequence[Envelope]) -> None:
        """`envelopes` were published (the broker confirmed them): the 双公示 records among
        them count as published for their decision, today."""


def stage_refusals(
    cases: CaseStages,
    sender: str,
    message_type: str,
    records: Sequence[tuple[int, Envelope]],
) -> list[IllegalStageMove]:
    """Ask `cases` about the penalty-case records among `records` (payload index, envelope);
    the refusals, one per illegal move."""
    asked = [(index, env) for index, env in records if env.spec.name == CASE_DATASET]
    if not asked:
        return []
    answers = cases.move(sender, [envelope for _, envelope in asked])
    return [
        IllegalStageMove.of(
            sender,
            message_type,
            index,
            envelope,
            field="stage",
            rule=STAGE_RULE,
            value=illegal.target.value,
            message=f"{CASE_DATASET} {envelope.subject}: {illegal}",
        )
        for (index, envelope), illegal in zip(asked, answers, strict=True)
        if illegal is not None
    ]
