"""The one inbound path: translate a payload, quarantine what is rejected, publish with confirms.

Every inbound adapter and poller hands its payloads to `Ingress.accept`:

    result = ingress.accept("grassroots-platform", "event_report", body, charset="utf-8")
    result.records   # one answer per record: accepted (with its message id) or rejected

1. The system's mapping translates the payload into envelopes and per-record errors; the
   records a cross-check set to reject finds wrong join those errors (`adapters.crosschecks`).
2. A payload that cannot be read at all (encoding, syntax, entity bombs, limits) goes to the
   quarantine (`monitor.quarantine`, in the hub's store; without one, the bus's quarantine
   queue) with its reason; the answer carries the reason and the quarantine id. A payload
   holding more records than its channel takes (`max_records`, counted before any is
   translated) is quarantined the same way and refused whole: TooManyRecords (HTTP 413).
3. The accepted envelopes are published in one `publish_many` (confirms pipelined), in binary
   mode of the CloudEvents AMQP binding, under `routing_key(envelope, system_id)`; every
   envelope of one call shares a correlation id (the receipt id). Concurrent calls share the
   broker's one publisher: their messages go out together and each call waits only for the
   confirms of its own (tests/adapters/test_ingress.py shows it), so single-record pushes are
   group-committed rather than paying a confirm round trip one after the other.
4. Records the mapping rejected, and records no route wanted, are quarantined with their
   reasons (the whole payload once, so a fixed mapping or route can release it). Whether the
   quarantine has room is asked before anything is published: when it has none the payload is
   refused whole, IngressQuarantineFull (HTTP 503), since the hub would accept records of a
   payload whose rejected rest it could not keep (a record no route takes is known only from
   the broker's answer, after publishing: that payload is kept even past the limit). On the
   bus's quarantine (a hub without a store) the headers carry counts and bounded excerpts
   (`rejected_count`, `rejected_records` as ranges such as "0-29999"), never one entry per
   record: headers travel in one AMQP frame.
5. A record is answered "accepted" only once the broker confirmed it; one the broker did not
   confirm is answered "failed" (send it again; targets drop duplicates by idempotency key).

Releasing a quarantined payload runs it through the same path again (`accept(..., again=entry)`,
see `adapters.release`): with the current mappings, under its first receipt id, the records
published before (when it was kept, or by an earlier release) answered as repeats, and nothing
kept anew: the release settles the entry it came from.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field
from sqlalchemy import Connection

from adapters.authorisation import Authorisation, WarningAddressees
from adapters.backpressure import BackPressure
from adapters.crosschecks import rule_refusals
from adapters.errors import (
    AdapterConfigError,
    IngressOverloaded,
    IngressQuarantineFull,
    IngressUnavailable,
    TooManyRecords,
)
from adapters.redaction import Redaction
from adapters.repeats import AcceptedChanges
from adapters.routing import Directory, Unaddressable, routing_key
from adapters.stages import CaseStages, stage_refusals
from bus import Broker, BrokerUnavailable, Outgoing, PublishFailed, PublishFailure
from bus.message import HeaderValue, clipped
from mappings import (
    PayloadRejected,
    PayloadTooManyRecords,
    RecordKeys,
    SystemMappings,
    Translation,
    TranslationError,
)
from monitor.errors import QuarantineFull
from monitor.quality import RuleOutcome
from monitor.quarantine import (
    MAX_PROBLEMS_KEPT,
    Problem,
    Quarantine,
    QuarantineEntry,
    Rejection,
    new_quarantine_id,
    summary,
)
from reference.rulebook import CrossChecks
from standard.envelope import Envelope
from store import Store

log = logging.getLogger("adapters.ingress")

REJECTED_EXCERPT_CHARS = 500
"""Characters of the rejected records' ranges kept in the bus quarantine's `rejected_records`."""
REFUSAL_PROBLEMS_SHOWN = 3
"""Problems a refusal for a full quarantine names (the sender learns what it would reject)."""


class IngressObserver(Protocol):
    """What watches the inbound path: `monitor.observer.Observer` (metrics, journal, quality).

    `received` returns a token for the payload (with `headers` to carry on its messages) that the
    other calls take back. Pollers report each poll through `polled`, and what becomes of their
    lease (taken, taken_over, lost, released) through `poller_lease`.
    """

    def received(self, system: str, message_type: str, *, receipt: str, size: int) -> Any: ...

    def refused(
        self, seen: Any, *, kind: str, reason: str, quarantine_id: str | None = None
    ) -> None: ...

    def translated(
        self,
        seen: Any,
        *,
        seconds: float,
        envelopes: Sequence[Envelope],
        errors: Sequence[TranslationError],
        read: Mapping[int, RecordKeys] | None = None,
        quarantine_id: str | None = None,
        rules: RuleOutcome | None = None,
    ) -> None: ...

    def published(
        self,
        seen: Any,
        *,
        seconds: float,
        outgoing: Sequence[Outgoing],
        failures: Sequence[PublishFailure] = (),
        error: BaseException | None = None,
    ) -> None: ...

    def held_back(
        self, seen: Any, *, outgoing: Sequence[Outgoing], target: str, reason: str
    ) -> None: ...

    def quarantine_full(
        self, seen: Any, *, system: str, outgoing: Sequence[Outgoing] = (), reason: str
    ) -> None: ...

    def polled(self, source: str, *, ok: bool, lag_seconds: float | None = None) -> None: ...

    def poller_lease(self, source: str, *, holder: str, change: str) -> None: ...

    def repeated(self, seen: Any, *, envelopes: Sequence[Envelope]) -> None: ...

    def unmatched(self, seen: Any, *, envelopes: Sequence[Envelope]) -> None: ...

    def durable(self) -> None: ...

    def alongside(self, store: Store, work: Callable[[Connection], None], what: str) -> bool: ...


class RecordAnswer(BaseModel):
    """What became of one record of a payload."""

    index: int = Field(description="0-based position of the record in the payload.")
    status: Literal["accepted", "rejected", "failed"] = Field(
        description=(
            "accepted: the broker confirmed it; rejected: it breaks the standard or the mapping "
            "(see errors; sending it again unchanged will not help); failed: the bus did not "
            "confirm it, send it again."
        )
    )
    message_id: str | None = Field(
        default=None, description="Id of the message on the bus (the envelope's id), if accepted."
    )
    repeat: bool = Field(
        default=False,
        description=(
            "True: the same change was accepted before (same idempotency key, so the same "
            "message id); it was not published again."
        ),
    )
    dataset: str | None = Field(default=None, description="The canonical dataset of the record.")
    subject: str | None = Field(default=None, description="The record's key value.")
    routing_key: str | None = Field(
        default=None,
        description=(
            "dataset.region.source[.addressee], as published; a record addressed to several "
            "systems is published once per addressee, its keys joined by commas."
        ),
    )
    errors: list[dict[str, Any]] = Field(
        default_factory=list,
        description=(
            "Why it was rejected or failed: per problem the field, rule, source location, the "
            "offending value and a message (the mapping's TranslationError as data)."
        ),
    )


class PayloadProblem(BaseModel):
    """Why a payload could not be read at all."""

    kind: str = Field(description="too-large, too-deep, encoding, forbidden-markup, malformed...")
    reason: str = Field(description="What is wrong, in words.")
    offset: int | None = Field(default=None, description="Byte offset in the payload, if known.")
    line: int | None = Field(default=None, description="1-based line, if known.")
    column: int | None = Field(default=None, description="1-based column, if known.")


class IngressResult(BaseModel):
    """The answer to one pushed or pulled payload."""

    system: str = Field(description="The system that sent it.")
    message_type: str = Field(description="Its message type.")
    receipt_id: str = Field(
        description="Id of this exchange; the correlation id of every envelope published from it."
    )
    accepted: int = Field(description="Records the broker confirmed.")
    rejected: int = Field(description="Records refused for their content.")
    failed: int = Field(default=0, description="Records the bus did not confirm: send them again.")
    records: list[RecordAnswer] = Field(
        default_factory=list, description="One answer per record, in payload order."
    )
    payload_error: PayloadProblem | None = Field(
        default=None, description="Set when the payload could not be read at all (no records)."
    )
    quarantine_id: str | None = Field(
        default=None, description="Where the payload is kept when something in it was refused."
    )

    @property
    def complete(self) -> bool:
        """True when every record was settled for good (accepted or rejected, none failed)."""
        return self.failed == 0 and self.payload_error is None


class Ingress:
    """Translates, quarantines and publishes inbound payloads; thread-safe (the broker is).

    Parameters:
      broker: an open broker whose topology is declared; None until the hub has connected
        (`attach` it then): meanwhile `accept` answers IngressUnavailable.
      mappings: the compiled mappings of each system, by system id (not by mapping folder: two
        systems may share one folder).
      observer: told of every payload's steps (metrics, journal, data quality); None: nobody.
      directory: which system serves which department, for addressed records
        (`adapters.routing`); None: no system serves any, so an addressed record is rejected.
      backpressure: refuses payloads for targets above their high-water mark before anything
        is published (IngressOverloaded); None: no limit. It reads queue counts from the broker
        this Ingress is attached to.
      accepted: the changes published before (`adapters.repeats`): a record whose idempotency
        key it holds is answered accepted, counted as a repeat and not published again; None:
        every record is published.
      redaction: takes the credentials out of what is quarantined and journalled
        (`adapters.redaction`); default: the credential fields by name only (the hub passes
        `Redaction.of(systems)`, which knows the configured secrets too).
      warnings: the system each published warning was routed to (`adapters.authorisation`):
        feedback on a warning from another system is rejected; None: feedback is held only to
        the department it names.
      cases: each penalty case's last stage (`adapters.stages`): a record moving its case
        along no legal transition is rejected, naming both stages; None: not checked.
      checks: the cross-checks against the reference lists (`adapters.crosschecks`): a record
        a rule set to reject finds wrong is rejected, naming the rule; warnings are journalled
        and counted; None: not checked.
      quarantine: where rejected payloads are kept (`monitor.quarantine`, in the hub's store,
        bounded: a payload it has no room for is refused with IngressQuarantineFull); None:
        the bus's quarantine queue, unbounded, as before the store.

    Every record is checked against the departments its sender serves before anything is
    published (`adapters.authorisation`): one in another department's name is rejected like
    an invalid record, the rule named.
    """

    def __init__(
        self,
        broker: Broker | None,
        mappings: Mapping[str, SystemMappings],
        *,
        observer: IngressObserver | None = None,
        directory: Directory | None = None,
        backpressure: BackPressure | None = None,
        accepted: AcceptedChanges | None = None,
        redaction: Redaction | None = None,
        warnings: WarningAddressees | None = None,
        cases: CaseStages | None = None,
        checks: CrossChecks | None = None,
        quarantine: Quarantine | None = None,
    ) -> None:
        self._broker = broker
        self.quarantine = quarantine
        self.redaction = redaction or Redaction()
        self.accepted = accepted
        self.mappings = dict(mappings)
        self.observer = observer
        self.directory = directory or Directory([])
        self.authorisation = Authorisation(self.directory, warnings)
        self.cases = cases
        self.checks = checks
        self.backpressure = backpressure
        if backpressure is not None:
            backpressure.attach(broker)

    def attach(self, broker: Broker | None) -> None:
        """Use `broker` from now on (None: the bus is gone; accept answers IngressUnavailable)."""
        self._broker = broker
        if self.backpressure is not None:
            self.backpressure.attach(broker)

    @property
    def broker(self) -> Broker:
        """The broker in use; IngressUnavailable while there is none."""
        broker = self._broker
        if broker is None:
            raise IngressUnavailable(
                "the hub is not connected to the bus yet; nothing was accepted, send it again later"
            )
        return broker

    def accept(
        self,
        system_id: str,
        message_type: str,
        payload: bytes,
        *,
        charset: str | None = None,
        max_records: int | None = None,
        again: QuarantineEntry | None = None,
        mapping: SystemMappings | None = None,
    ) -> IngressResult:
        """Take one payload of `message_type` from `system_id`; answer per record.

        `max_records`: the most records the payload may hold (the channel's `max_records`);
        None: no limit (pollers, bounded by their page size). `again`: the quarantine entry
        this payload is released from (`adapters.release`): its receipt id is used again, the
        records of it published before are answered as repeats, and nothing is kept anew (the
        answer names the entry when something still fails). The answer is returned only once
        the payload's journal entries are written (`IngressObserver.durable`): what a sender was
        told is in the journal. `mapping`: the system's mappings to translate with instead of
        those ingress was built with (a release re-reads them from disk, `adapters.release`).

        Raises:
          AdapterConfigError: the system or message type is not configured (a hub bug or
            configuration error, never the sender's fault).
          TooManyRecords: the payload holds more than `max_records` records; it was kept in
            the quarantine and nothing of it was translated or published.
          IngressUnavailable: the broker could not be reached; nothing was accepted.
          IngressOverloaded: back-pressure, a target the records would reach is above its
            high-water mark; nothing was published (see adapters.backpressure).
          IngressQuarantineFull: the quarantine has no room for what would be rejected of the
            payload; nothing was published or kept.
        """
        try:
            sent = _Sent(system_id, message_type, payload, charset, again, mapping)
            return self._accept(sent, max_records)
        finally:
            if self.observer is not None:
                self.observer.durable()

    def _accept(self, sent: _Sent, max_records: int | None) -> IngressResult:
        system_id, message_type, payload = sent.system, sent.message_type, sent.payload
        mapping = sent.mapping or self.mappings.get(system_id)
        if mapping is None:
            raise AdapterConfigError(
                f"ingress knows no system {system_id!r} (known: {', '.join(self.mappings)})"
            )
        if message_type not in mapping.inbound:
            raise AdapterConfigError(
                f"system {system_id!r} has no inbound message type {message_type!r} "
                f"(mapped: {', '.join(sorted(mapping.inbound))})"
            )
        broker = self.broker
        receipt = sent.receipt
        observer = self.observer
        seen = None
        if observer is not None:
            seen = observer.received(system_id, message_type, receipt=receipt, size=len(payload))
        started = time.perf_counter()
        try:
            translation = mapping.translate(
                message_type, payload, charset=sent.charset, max_records=max_records
            )
        except PayloadRejected as rejected:
            problem = PayloadProblem.model_validate(rejected.to_dict())
            why = self.redaction.text(str(rejected))
            whole = Problem.of(None, {**problem.model_dump(), "message": why})
            quarantine_id = self._keep(
                sent, seen, kind=rejected.kind, problems=[whole], reason=why, limited=True
            )
            if observer is not None:
                observer.refused(seen, kind=rejected.kind, reason=why, quarantine_id=quarantine_id)
            if isinstance(rejected, PayloadTooManyRecords):
                raise TooManyRecords(
                    f"{system_id} {message_type}: {rejected.reason}; nothing of it was "
                    f"accepted (kept as {quarantine_id})",
                    records=rejected.records,
                    max_records=rejected.limit,
                    receipt_id=receipt,
                    quarantine_id=quarantine_id,
                    system=system_id,
                ) from None
            return IngressResult(
                system=system_id,
                message_type=message_type,
                receipt_id=receipt,
                accepted=0,
                rejected=0,
                payload_error=problem,
                quarantine_id=quarantine_id,
            )

        translation, unmatched = self._authorised(system_id, message_type, translation)
        earlier = self._earlier(translation.envelopes) | _released_before(translation, sent.again)
        translation, checked = self._cross_checked(system_id, message_type, translation, earlier)
        translation = self._moved(system_id, message_type, translation, earlier)
        # The id the rejected records will be kept under, known before they are journalled so
        # their entries name it (the bus's quarantine names its own ids only when it keeps).
        planned = self._planned_id(sent)
        if observer is not None:
            observer.translated(
                seen,
                seconds=time.perf_counter() - started,
                envelopes=translation.envelopes,
                errors=translation.errors,
                read=translation.read,
                quarantine_id=planned if translation.errors else None,
                rules=checked,
            )
        extra_headers = seen.headers if seen is not None else None
        errors_by_record: dict[int, list[TranslationError]] = {}
        for error in translation.errors:
            errors_by_record.setdefault(error.record_index, []).append(error)
        count = len(translation.envelopes) + len(errors_by_record)
        answers: list[RecordAnswer] = []
        outgoing: list[Outgoing] = []
        published_answers: list[RecordAnswer] = []  # the answer of each outgoing message
        unaddressed: list[str] = []
        unaddressed_out: list[tuple[Outgoing, str]] = []  # for the observer: never published
        repeats: list[Envelope] = []
        envelopes = iter(translation.envelopes)
        # The mapping yields one envelope per good record, in payload order: the gaps are the
        # records that have errors.
        for index in range(count):
            problems = errors_by_record.get(index)
            if problems is not None:
                answers.append(
                    RecordAnswer(
                        index=index,
                        status="rejected",
                        errors=[problem.to_dict() for problem in problems],
                    )
                )
                continue
            envelope = next(envelopes)
            if envelope.idempotencykey in earlier:
                answers.append(_repeat(index, envelope))
                repeats.append(envelope)
                continue
            # The lineage names the configured system that sent it (its mapping folder may
            # be another's): the centre tells who answers a task by it.
            envelope = envelope.model_copy(
                update={
                    "correlationid": envelope.correlationid or receipt,
                    "lineagesystem": system_id,
                }
            )
            try:
                keys = self.directory.routing_keys(envelope, system_id)
            except Unaddressable as error:
                answers.append(_unaddressed(index, envelope, str(error)))
                unaddressed.append(f"record {index + 1}: {error}")
                plain = outgoing_message(envelope, routing_key(envelope, system_id), extra_headers)
                unaddressed_out.append((plain, str(error)))
                continue
            answer = RecordAnswer(
                index=index,
                status="accepted",
                message_id=envelope.id,
                dataset=envelope.spec.name,
                subject=envelope.subject,
                routing_key=",".join(keys),
            )
            answers.append(answer)
            for key in keys:
                published_answers.append(answer)
                outgoing.append(outgoing_message(envelope, key, extra_headers))

        if (translation.errors or unaddressed) and sent.again is None:
            self._make_room(sent, answers, outgoing, seen)
        if self.backpressure is not None:
            self._hold_back_if_full(outgoing, seen)
        unroutable: list[str] = unaddressed
        if outgoing:
            try:
                failed = self._publish_observed(broker, outgoing, seen)
            except BrokerUnavailable as error:
                raise IngressUnavailable(
                    f"the bus cannot be reached; nothing of this {message_type} payload from "
                    f"{system_id} was accepted, send it again later ({error})"
                ) from error
            if failed is not None:
                for failure in failed.failures:
                    answer = published_answers[failure.index]
                    answer.message_id = None
                    if failure.unroutable:
                        answer.status = "rejected"
                        answer.errors = [_unroutable(failure.routing_key, failure.reason)]
                        unroutable.append(
                            f"record {answer.index + 1}: routing key {failure.routing_key}: "
                            f"{failure.reason}"
                        )
                    else:
                        answer.status = "failed"
                        answer.errors = [{"kind": "not-confirmed", "reason": failure.reason}]
                log.warning("ingress %s %s: %s", system_id, message_type, failed)
            confirmed = _confirmed(translation.envelopes, published_answers)
            self._remember(confirmed)
            self.authorisation.routed(confirmed)
            if self.cases is not None:
                self.cases.published(confirmed)
        if unmatched:
            self._flag_unmatched(system_id, unmatched, seen)
        if repeats and observer is not None:
            observer.repeated(seen, envelopes=repeats)

        if unaddressed_out and observer is not None:
            # Journalled and counted like a record no route takes: what is missing is a
            # department in the configuration, not anything the sender can fix by resending.
            observer.published(
                seen,
                seconds=0.0,
                outgoing=[message for message, _ in unaddressed_out],
                failures=[
                    PublishFailure(i, m.message_id or "", m.routing_key, why, unroutable=True)
                    for i, (m, why) in enumerate(unaddressed_out)
                ],
            )
        kept: str | None = None
        if translation.errors or unroutable:
            # Room was made before publishing: what was published must be kept with the rest.
            kept = self._keep(
                sent,
                seen,
                quarantine_id=planned,
                kind="records-rejected",
                problems=record_problems(answers),
                rejected=[a.index for a in answers if a.status == "rejected"],
                published={a.index: a.message_id for a in answers if a.status == "accepted"},
                limited=False,
            )
        return IngressResult(
            system=system_id,
            message_type=message_type,
            receipt_id=receipt,
            accepted=sum(a.status == "accepted" for a in answers),
            rejected=sum(a.status == "rejected" for a in answers),
            failed=sum(a.status == "failed" for a in answers),
            records=answers,
            quarantine_id=kept,
        )

    def publish_derived(
        self,
        system_id: str,
        cause: str,
        envelopes: Sequence[Envelope],
        *,
        addressee: str | None = None,
    ) -> list[str]:
        """Publish records a system inside the hub derived (the collaboration centre's tasks and
        results) and return their routing keys once the broker confirmed every one.

        They are addressed like pushed records (or to `addressee` when given), carry no payload
        of their own, and are counted and journalled as a payload of message type `cause` from
        `system_id`, so the books of derived messages add up like any others.

        Raises:
          NotAuthorised: a record acts for a department `system_id` does not serve (nothing
            was published; `adapters.authorisation`).
          Unaddressable: a record names a department no system serves (nothing was published).
          PublishFailed: the broker did not confirm some, or no route took them.
          IngressUnavailable: the bus cannot be reached.
        """
        self.authorisation.check(system_id, envelopes)
        outgoing_keys = [
            (envelope, key)
            for envelope in envelopes
            for key in (
                [routing_key(envelope, system_id, addressee)]
                if addressee
                else self.directory.routing_keys(envelope, system_id)
            )
        ]
        observer = self.observer
        seen = None
        if observer is not None:
            seen = observer.received(system_id, cause, receipt=uuid.uuid4().hex, size=0)
            observer.translated(seen, seconds=0.0, envelopes=envelopes, errors=())
        extra = seen.headers if seen is not None else None
        outgoing = [outgoing_message(envelope, key, extra) for envelope, key in outgoing_keys]
        try:
            failed = self._publish_observed(self.broker, outgoing, seen)
        except BrokerUnavailable as error:
            raise IngressUnavailable(f"the bus cannot be reached ({error})") from error
        if failed is not None:
            raise failed
        self.authorisation.routed(envelopes)
        return [message.routing_key for message in outgoing]

    def _authorised(
        self, system_id: str, message_type: str, translation: Translation
    ) -> tuple[Translation, list[Envelope]]:
        """`translation` with the records `system_id` may not send moved to its errors (the
        sender must serve the department each acts for: `adapters.authorisation`), and the
        warning feedback among the rest that matches no warning the hub routed."""
        records = _indexed(translation)
        checked = self.authorisation.refusals(system_id, message_type, records)
        return _refused(translation, records, checked.refused), checked.unmatched

    def _moved(
        self, system_id: str, message_type: str, translation: Translation, earlier: set[str]
    ) -> Translation:
        """`translation` with the penalty-case records that move their case along no legal
        transition moved to its errors (`adapters.stages`); the others' stages are recorded.
        Repeats (`earlier`) are not asked: they were accepted before."""
        if self.cases is None:
            return translation
        records = _indexed(translation)
        refusals = stage_refusals(self.cases, system_id, message_type, _fresh(records, earlier))
        return _refused(translation, records, refusals)

    def _cross_checked(
        self, system_id: str, message_type: str, translation: Translation, earlier: set[str]
    ) -> tuple[Translation, RuleOutcome | None]:
        """`translation` with the records a rejecting cross-check finds wrong moved to its
        errors (`adapters.crosschecks`), and what the checks said of the rest. Repeats
        (`earlier`) are not asked: they were judged when first accepted."""
        if self.checks is None:
            return translation, None
        records = _indexed(translation)
        fresh = _fresh(records, earlier)
        refusals, outcome = rule_refusals(self.checks, system_id, message_type, fresh)
        return _refused(translation, records, refusals), outcome

    def _flag_unmatched(self, system_id: str, unmatched: Sequence[Envelope], seen: Any) -> None:
        """Warning feedback on warnings the hub never routed: rejected and quarantined with the
        rest of the refusals, and flagged here (logged and counted) so that an operator can
        match it by hand."""
        for envelope in unmatched:
            log.warning(
                "%s sent risk feedback %s on warning %s, which the hub never routed: rejected "
                "and quarantined, counted as unmatched",
                system_id, envelope.subject, envelope.data.get("warning_id"),
            )  # fmt: skip
        if self.observer is not None:
            self.observer.unmatched(seen, envelopes=unmatched)

    def _publish_observed(
        self, broker: Broker, outgoing: Sequence[Outgoing], seen: Any
    ) -> PublishFailed | None:
        """`broker.publish_many(outgoing)`, told to the observer whatever happens.

        Returns the broker's PublishFailed (some messages not confirmed or not routed) or None;
        raises BrokerUnavailable, once observed, when the bus cannot be reached.
        """
        if self.observer is not None:
            # Write-ahead: the records' `received` entries are stored before the broker can
            # take them, so a message a worker delivers always has its arrival journalled,
            # even when this process dies between the broker's confirm and its `published`
            # entry (`jghub journal verify` then says "unconfirmed", not "missing").
            self.observer.durable()
        started = time.perf_counter()
        failed: PublishFailed | None = None
        try:
            broker.publish_many(outgoing)
        except PublishFailed as error:
            failed = error
        except BrokerUnavailable as error:
            if self.observer is not None:
                self.observer.published(
                    seen, seconds=time.perf_counter() - started, outgoing=outgoing, error=error
                )
            raise
        if self.observer is not None:
            self.observer.published(
                seen,
                seconds=time.perf_counter() - started,
                outgoing=outgoing,
                failures=failed.failures if failed is not None else (),
            )
        return failed

    def _earlier(self, envelopes: Sequence[Envelope]) -> set[str]:
        """The idempotency keys of `envelopes` published before (none without a store)."""
        if self.accepted is None or not envelopes:
            return set()
        return self.accepted.already([envelope.idempotencykey for envelope in envelopes])

    def _remember(self, confirmed: Sequence[Envelope]) -> None:
        """Remember the keys of the records the broker confirmed: in the journal's next batch,
        which the payload's `published` entries wait for before the answer (one commit, shared
        by concurrent payloads), when the journal is on the same store; else at once."""
        if self.accepted is None or not confirmed:
            return
        keys = [envelope.idempotencykey for envelope in confirmed]
        if self.observer is not None:
            try:
                store, write = self.accepted.remembering(keys)
            except NotImplementedError:
                pass
            else:
                if self.observer.alongside(store, write, "remembering accepted changes"):
                    return
        self.accepted.remember(keys)

    def _hold_back_if_full(self, outgoing: Sequence[Outgoing], seen: Any) -> None:
        assert self.backpressure is not None
        try:
            self.backpressure.check(message.routing_key for message in outgoing)
        except IngressOverloaded as overloaded:
            if self.observer is not None:
                self.observer.held_back(
                    seen, outgoing=outgoing, target=overloaded.target, reason=str(overloaded)
                )
            raise

    def _make_room(
        self,
        sent: _Sent,
        answers: Sequence[RecordAnswer],
        outgoing: Sequence[Outgoing],
        seen: Any,
    ) -> None:
        """Make sure the quarantine can keep the payload before any of it is published; else
        refuse it whole (IngressQuarantineFull), naming what it would reject."""
        if self.quarantine is None:
            return
        try:
            self.quarantine.make_room(len(sent.payload), sent.system)
        except QuarantineFull as full:
            problems = record_problems(answers)
            raise self._refused_for_room(sent, seen, full, problems, outgoing) from None

    def _planned_id(self, sent: _Sent) -> str | None:
        """The quarantine id what is rejected of `sent` will be kept under: the entry it is
        released from, a new id when the store keeps the quarantine, None (not known yet) when
        the bus does."""
        if sent.again is not None:
            return sent.again.id
        return None if self.quarantine is None else new_quarantine_id()

    def _keep(
        self,
        sent: _Sent,
        seen: Any,
        *,
        quarantine_id: str | None = None,
        kind: str,
        problems: Sequence[Problem],
        rejected: Sequence[int] = (),
        published: Mapping[int, str | None] | None = None,
        reason: str | None = None,
        limited: bool,
    ) -> str:
        """Keep the payload with its problems; return its quarantine id (when it is being
        released, the id of the entry it comes from: the release settles that one).

        `quarantine_id`: the id to keep it under (`_planned_id`; None: a new one).
        `limited`: refuse (IngressQuarantineFull) when the quarantine has no room; otherwise
        room was made before the payload's records were published, and it is kept anyway.
        """
        if sent.again is not None:
            return sent.again.id
        why = self.redaction.text(reason or summary(problems, len(rejected)))
        if self.quarantine is None:
            return self._keep_on_bus(sent, why, kind=kind, rejected=rejected)
        rejection = Rejection(
            system=sent.system,
            message_type=sent.message_type,
            receipt=sent.receipt,
            kind=kind,
            problems=problems,
            rejected=len(rejected),
            payload=self.redaction.payload(sent.payload),
            content_type=self._content_type(sent),
            charset=sent.charset,
            reason=why,
            published={i: m for i, m in (published or {}).items() if m},
        )
        try:
            return self.quarantine.keep(
                rejection, beyond_limit=not limited, quarantine_id=quarantine_id
            )
        except QuarantineFull as full:
            raise self._refused_for_room(sent, seen, full, problems, ()) from None

    def _refused_for_room(
        self,
        sent: _Sent,
        seen: Any,
        full: QuarantineFull,
        problems: Sequence[Problem],
        outgoing: Sequence[Outgoing],
    ) -> IngressQuarantineFull:
        """The refusal of a payload the quarantine has no room for (counted, logged, and its
        messages journalled as not published), naming what the hub would reject of it."""
        shown = "; ".join(map(str, problems[:REFUSAL_PROBLEMS_SHOWN]))
        if len(problems) > REFUSAL_PROBLEMS_SHOWN:
            shown += f"; and {len(problems) - REFUSAL_PROBLEMS_SHOWN} more"
        log.warning("ingress %s %s: %s", sent.system, sent.message_type, full)
        if self.observer is not None:
            self.observer.quarantine_full(
                seen, system=sent.system, outgoing=outgoing, reason=str(full)
            )
        return IngressQuarantineFull(
            f"the hub cannot keep what it would reject of this {sent.message_type} payload "
            f"from {sent.system} ({self.redaction.text(shown)}): {full}; so nothing of it was "
            "accepted. Correct what is rejected and send it again, or send it again later"
        )

    def keep_refused(
        self, system_id: str, payload: bytes, *, kind: str, reason: str, content_type: str
    ) -> str:
        """Keep what a system sent that never became a payload of a message type (a refused
        SOAP envelope), credentials redacted, to be read and discarded; its quarantine id.

        Raises QuarantineFull (counted and logged) when the quarantine has no room: the sender
        is refused anyway, with the reason; IngressUnavailable when the bus does not keep it.
        """
        why = self.redaction.text(reason)
        kept = self.redaction.payload(payload)
        if self.quarantine is None:
            headers: dict[str, HeaderValue] = {"system": system_id, "kind": kind}
            headers["content_type"] = content_type[:200]
            return self._on_bus(kept, why, system_id, headers, what=f"{kind} request")
        rejection = Rejection(
            system=system_id,
            message_type=None,
            receipt=None,
            kind=kind,
            problems=[Problem(record=None, rule=kind, message=why)],
            payload=kept,
            content_type=content_type,
        )
        try:
            return self.quarantine.keep(rejection)
        except QuarantineFull as full:
            log.warning("%s %s not kept: %s", system_id, kind, full)
            if self.observer is not None:
                self.observer.quarantine_full(None, system=system_id, reason=str(full))
            raise

    def _content_type(self, sent: _Sent) -> str:
        """The kept payload's media type, from its mapping's format and the declared charset."""
        syntax = self.mappings[sent.system].inbound_mapping(sent.message_type).mapping.format
        media = "application/json" if syntax == "json" else "application/xml"
        return f"{media}; charset={sent.charset}" if sent.charset else media

    def _keep_on_bus(self, sent: _Sent, reason: str, *, kind: str, rejected: Sequence[int]) -> str:
        """Keep the payload in the bus's quarantine queue (a hub without a store)."""
        headers: dict[str, HeaderValue] = {
            "system": sent.system,
            "message_type": sent.message_type,
            "receipt_id": sent.receipt,
            "kind": kind,
        }
        if sent.charset:
            headers["charset"] = sent.charset
        if rejected:
            headers["rejected_count"] = len(rejected)
            headers["rejected_records"] = clipped(_ranges(rejected), REJECTED_EXCERPT_CHARS)
        payload = self.redaction.payload(sent.payload)
        what = f"{sent.message_type} payload"
        return self._on_bus(payload, reason, sent.system, headers, what=what)

    def _on_bus(
        self,
        payload: bytes,
        reason: str,
        system_id: str,
        headers: dict[str, HeaderValue],
        *,
        what: str,
    ) -> str:
        try:
            return self.broker.quarantine(payload, reason, source=system_id, headers=headers)
        except (BrokerUnavailable, PublishFailed) as error:
            raise IngressUnavailable(
                f"the bus did not keep the refused {what} from {system_id}, so nothing of it "
                f"was accepted; send it again later ({error})"
            ) from error


@dataclass(frozen=True)
class _Sent:
    """One payload on its way through `Ingress.accept`.

    Attributes: the sending system, its message type, the bytes, the transport's charset, and
    `again`, the quarantine entry it is released from (None for a payload just received);
    `receipt`, the id of the exchange: the entry's first one when it is released again;
    `mapping`, the system's mappings to use instead of ingress's own (None: its own).
    """

    system: str
    message_type: str
    payload: bytes
    charset: str | None
    again: QuarantineEntry | None
    mapping: SystemMappings | None = None
    receipt: str = field(init=False)

    def __post_init__(self) -> None:
        first = self.again.receipt if self.again is not None else None
        object.__setattr__(self, "receipt", first or uuid.uuid4().hex)


def outgoing_message(
    envelope: Envelope, key: str, extra: Mapping[str, HeaderValue] | None = None
) -> Outgoing:
    """`envelope` as the message published under `key` (binary mode of the CloudEvents AMQP
    binding), with `extra` headers."""
    properties, body = envelope.to_amqp()
    headers: dict[str, HeaderValue] = {
        name: value if isinstance(value, str | int | float | bool) else json.dumps(value)
        for name, value in properties["headers"].items()
    }
    if extra:
        headers.update(extra)
    return Outgoing(
        routing_key=key,
        body=body,
        headers=headers,
        message_id=envelope.id,
        idempotency_key=envelope.idempotencykey,
        content_type=properties["content_type"],
    )


def _indexed(translation: Translation) -> list[tuple[int, Envelope]]:
    """The envelopes of `translation` with their payload index (the gaps are its errors)."""
    rejected = {error.record_index for error in translation.errors}
    positions = (index for index in itertools.count() if index not in rejected)
    return list(zip(positions, translation.envelopes, strict=False))


def _refused(
    translation: Translation,
    records: Sequence[tuple[int, Envelope]],
    refusals: Sequence[TranslationError],
) -> Translation:
    """`translation` with the records of `refusals` moved from its envelopes to its errors."""
    if not refusals:
        return translation
    refused = {error.record_index for error in refusals}
    for error in refusals:
        log.warning("ingress refused a record: %s", error)
    return Translation(
        envelopes=[envelope for index, envelope in records if index not in refused],
        errors=sorted([*translation.errors, *refusals], key=lambda e: e.record_index),
        read={
            **translation.read,
            **{index: RecordKeys.of(envelope) for index, envelope in records if index in refused},
        },
    )


def _fresh(
    records: Sequence[tuple[int, Envelope]], earlier: set[str]
) -> list[tuple[int, Envelope]]:
    """Those of `records` not published before (their idempotency key not in `earlier`)."""
    return [(index, env) for index, env in records if env.idempotencykey not in earlier]


def _confirmed(envelopes: Sequence[Envelope], answers: Sequence[RecordAnswer]) -> list[Envelope]:
    """Those of `envelopes` the broker confirmed (every copy of an addressed record: its answer
    says accepted only when all were)."""
    accepted = {a.message_id for a in answers if a.status == "accepted" and a.message_id}
    return [envelope for envelope in envelopes if envelope.id in accepted]


def _repeat(index: int, envelope: Envelope) -> RecordAnswer:
    """The answer to a record accepted before: accepted, its message id, not published again."""
    return RecordAnswer(
        index=index,
        status="accepted",
        message_id=envelope.id,
        repeat=True,
        dataset=envelope.spec.name,
        subject=envelope.subject,
    )


def _unaddressed(index: int, envelope: Envelope, reason: str) -> RecordAnswer:
    return RecordAnswer(
        index=index,
        status="rejected",
        dataset=envelope.spec.name,
        subject=envelope.subject,
        errors=[{"kind": "unaddressable", "rule": "address", "message": reason}],
    )


def _unroutable(key: str, reason: str) -> dict[str, Any]:
    return {
        "kind": "unroutable",
        "rule": "route",
        "routing_key": key,
        "message": f"no system's routes take {key}; the record is kept in the quarantine "
        "until a route is added",
        "reason": reason,
    }


def record_problems(
    answers: Sequence[RecordAnswer], statuses: Collection[str] = ("rejected",)
) -> list[Problem]:
    """The problems of the records answered with one of `statuses`, as many as the quarantine
    keeps (of 30,000 rejected records, the first hundred)."""
    found = (
        Problem.of(answer.index, error)
        for answer in answers
        if answer.status in statuses
        for error in answer.errors
    )
    return list(itertools.islice(found, MAX_PROBLEMS_KEPT))


def _released_before(translation: Translation, again: QuarantineEntry | None) -> set[str]:
    """The idempotency keys of the records of `again` published before (when it was kept, or
    by an earlier release)."""
    if again is None or not again.published_records:
        return set()
    return {
        envelope.idempotencykey
        for index, envelope in _indexed(translation)
        if index in again.published_records
    }


def _ranges(indexes: Sequence[int]) -> str:
    """Ascending record indexes as ranges: [0, 1, 2, 5, 7, 8] -> "0-2,5,7-8"."""
    spans: list[str] = []
    start = previous = indexes[0]
    for index in (*indexes[1:], None):
        if index is not None and index == previous + 1:
            previous = index
            continue
        spans.append(str(start) if start == previous else f"{start}-{previous}")
        if index is not None:
            start = previous = index
    return ",".join(spans)
