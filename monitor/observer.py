"""Every step a message takes, counted in Prometheus, written to the journal, scored for quality.

The hub wires one `Observer` into the two places messages pass:

    observer = Observer(topology, journal)

    # adapters/ingress.py, once per payload
    seen = observer.received(system, message_type, receipt=receipt, size=len(payload))
    observer.translated(seen, seconds=..., envelopes=..., errors=...)   # or .refused(seen, ...)
    outgoing = Outgoing(..., headers={**headers, **seen.headers})      # carries the receive time
    observer.published(seen, seconds=..., outgoing=..., failures=...)

    # hub/worker.py, once per target
    broker.consume(target, observer.watch(target, handle), stop=stop)

    # adapters/breaker.py, pollers
    CircuitBreaker(target, on_change=observer.breaker_changed)
    observer.polled(source, ok=True, lag_seconds=...)

`watch` wraps the worker's handler so that whatever it settles — ack, retry, dead letter — is
counted and journalled after the broker took it, without the worker calling anything else. An
observer never breaks the path it watches: its own failures are logged, not raised.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec

from sqlalchemy import Connection

from bus import Delivery, Handler, Message, Outgoing, PublishFailure, Topology
from bus.broker import run_handler
from bus.message import DeadLetter, HeaderValue
from mappings import RecordKeys, TranslationError
from monitor import metrics, quality
from monitor.journal import Journal, Step
from standard.envelope import AMQP_PREFIX, Envelope
from store import Store

log = logging.getLogger("monitor.observer")

RECEIVED_AT_HEADER = "jghub-received-at"
"""Header carrying when the hub received the record (ISO 8601 UTC): the start of end to end."""

CORRELATION_HEADER = f"{AMQP_PREFIX}correlationid"
MAX_ERRORS_KEPT = 20

DEAD_LETTER_LOG_INTERVAL_S = 60.0
"""Shortest time between two log lines about one target's dead letters."""

P = ParamSpec("P")


@dataclass(frozen=True)
class Reception:
    """One payload as the observer saw it arrive; hand it to the later calls for that payload.

    Attributes:
      system: the sending system.
      message_type: the payload's message type.
      receipt: the ingress receipt id (the correlation id of its envelopes).
      at: when it arrived (UTC).
      started: monotonic clock at arrival.
    """

    system: str
    message_type: str
    receipt: str
    at: datetime
    started: float = field(default_factory=time.perf_counter)

    @property
    def headers(self) -> dict[str, HeaderValue]:
        """Headers to add to every message published from this payload (the receive time)."""
        return {RECEIVED_AT_HEADER: self.at.isoformat()}


def received_at(message: Message) -> datetime:
    """When the hub received `message`'s record: its receive-time header, else its publish time."""
    value = message.headers.get(RECEIVED_AT_HEADER)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return message.published_at
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return message.published_at


def _parts(routing_key: str) -> tuple[str, str | None]:
    """(dataset, source system) from a routing key "dataset.region.source"."""
    words = routing_key.split(".")
    return words[0], (words[2] if len(words) >= 3 else None)


def _guarded(action: Callable[P, None]) -> Callable[P, None]:
    """An observer's step never breaks the path it watches: its failure is logged."""

    @functools.wraps(action)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            action(*args, **kwargs)
        except Exception:
            log.exception("observer %s failed; the message moves on unobserved", action.__name__)

    return run


class DeadLetterLog:
    """Tells the log that a target dead-letters messages, and why, without a line per message.

    A refused batch, or a target down past its last retry tier, dead-letters messages by the
    thousand; each one is journalled, counted in `jghub_dead_lettered_total` and kept with its
    history for `jghub dead list`, so the log only needs to say that it happens. A target's
    first dead letter is logged at WARNING at once; those in the next `interval_s` are logged
    at DEBUG only, and their number joins the next WARNING for that target.

    Parameters:
      interval_s: shortest time between two WARNING lines about one target (default
        DEAD_LETTER_LOG_INTERVAL_S, a minute).
    """

    def __init__(self, interval_s: float = DEAD_LETTER_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last_logged: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def note(self, target: str, message_id: str, *, stage: str, cause: str, reason: str) -> None:
        """`message_id` went to `target`'s dead letters at `stage`, for `cause`, saying `reason`."""
        now = time.monotonic()
        with self._lock:
            last = self._last_logged.get(target)
            if last is not None and now - last < self.interval_s:
                self._held[target] = self._held.get(target, 0) + 1
                held = None
            else:
                self._last_logged[target] = now
                held = self._held.pop(target, 0)
        line = "dead letter %s for %s (%s, %s): %s%s"
        if held is None:
            log.debug(line, message_id, target, stage, cause, reason, "")
            return
        more = f"; {held} more since the last such line" if held else ""
        log.warning(line, message_id, target, stage, cause, reason, more)


class Observer:
    """Counts, journals and scores every step of a message (see the module docstring).

    Parameters:
      topology: the declared topology; `watch` needs it to tell which retry tier a failure
        goes to (or that the tiers are used up).
      journal: where steps are written; None counts metrics only.
      dead_letter_log: how dead letters reach the log (a WARNING per target per minute).
    """

    def __init__(
        self,
        topology: Topology | None = None,
        journal: Journal | None = None,
        *,
        dead_letter_log: DeadLetterLog | None = None,
    ) -> None:
        self.topology = topology
        self.journal = journal
        self.dead_letter_log = dead_letter_log or DeadLetterLog()

    def _record(self, step: Step, **fields: Any) -> None:
        if self.journal is not None:
            self.journal.record(step, **fields)

    def durable(self) -> None:
        """Return once every step recorded so far is written (the journal's group commit).

        Called before a step is acknowledged to anyone: before an HTTP answer goes out, before
        the broker hears a message's ack, retry or dead letter. Concurrent callers share one
        commit. A journal that cannot write within its timeout is logged and counted
        (`jghub_journal_entries_total{outcome="late"}`); the step goes on, because the message
        itself is safe on the bus and holding it would stall every sender.
        """
        journal = self.journal
        if journal is None:
            return
        try:
            written = journal.flush(timeout=journal.options.durable_timeout_s)
        except Exception:
            log.exception("journal flush failed")
            written = False
        if not written:
            metrics.JOURNAL_ENTRIES.labels("late").inc()
            log.error(
                "journal %s: entries not written within %.0fs; acknowledging anyway",
                journal.where,
                journal.options.durable_timeout_s,
            )

    def alongside(self, store: Store, work: Callable[[Connection], None], what: str) -> bool:
        """Commit `work` with the journal's next batch when the journal writes to `store` (the
        next `durable` returns once it is committed); True if so, False when the caller must
        commit it itself (no journal, or the journal on a store of its own)."""
        journal = self.journal
        if journal is None or journal.store is not store:
            return False
        journal.alongside(work, what)
        return True

    # -- in ---------------------------------------------------------------------------------------

    def received(self, system: str, message_type: str, *, receipt: str, size: int) -> Reception:
        """A payload arrived (pushed or polled); returns its Reception for the later calls."""
        reception = Reception(system, message_type, receipt, datetime.now(UTC))
        try:
            metrics.PAYLOADS_RECEIVED.labels(system, message_type).inc()
        except Exception:
            log.exception("observer received failed")
        return reception

    @_guarded
    def refused(
        self, seen: Reception, *, kind: str, reason: str, quarantine_id: str | None = None
    ) -> None:
        """The payload could not be read at all (`kind`: the PayloadRejected kind)."""
        label = metrics.bounded("jghub_payloads_refused", "reason", kind)
        metrics.PAYLOADS_REFUSED.labels(seen.system, seen.message_type, label).inc()
        metrics.TRANSLATION_SECONDS.labels(seen.system, seen.message_type).observe(
            time.perf_counter() - seen.started
        )
        self._record(
            Step.REJECTED,
            receipt=seen.receipt,
            system=seen.system,
            reason=f"{kind}: {reason}",
            detail={
                "message_type": seen.message_type,
                "payload": True,
                "kind": kind,
                "quarantine_id": quarantine_id,
            },
            at=seen.at,
        )

    @_guarded
    def translated(
        self,
        seen: Reception,
        *,
        seconds: float,
        envelopes: Sequence[Envelope],
        errors: Sequence[TranslationError],
        read: Mapping[int, RecordKeys] | None = None,
        quarantine_id: str | None = None,
        rules: quality.RuleOutcome | None = None,
    ) -> None:
        """The payload was translated: good records became `envelopes`, bad ones `errors`.

        A bad record's entry names the quarantine id it is kept under and what could be read of
        it (`read`, by record index: its key as `subject`, its credit codes and links), so a
        search finds the refusal by the id its sender was told or by its case number at once.
        `rules`: what the cross-checks said (a good record's entry carries its warnings and the
        rules that could not judge it; the records they rejected are among `errors`)."""
        system, message_type = seen.system, seen.message_type
        metrics.TRANSLATION_SECONDS.labels(system, message_type).observe(seconds)
        if envelopes:
            metrics.RECORDS_ACCEPTED.labels(system, message_type).inc(len(envelopes))
        # Per dataset, a payload's delays go to one child and its optional fields are counted
        # once (a label lookup takes a lock and a dictionary: three a record were a tenth of
        # this call).
        delays: dict[str, Any] = {}
        optional_fields: dict[str, list[int]] = {}
        for envelope in envelopes:
            dataset = envelope.spec.name
            delay = quality.delay_seconds(envelope, seen.at)
            observed = delays.get(dataset)
            if observed is None:
                observed = delays[dataset] = metrics.RECORD_DELAY_SECONDS.labels(system, dataset)
            observed.observe(delay)
            detail: dict[str, Any] = {
                "message_type": message_type,
                "subject": envelope.subject,
                "operation": envelope.operation.value,
                "time": envelope.time.isoformat(),
                "delay_s": round(delay, 3),
            }
            detail.update(_named(envelope))
            assumed = sorted(envelope.assumed())
            if assumed:
                detail["assumed"] = assumed
                for name in assumed:
                    metrics.ASSUMED_VALUES.labels(system, dataset, name).inc()
            counted = quality.completeness(envelope)
            if counted is not None:
                filled, optional = counted
                sums = optional_fields.setdefault(dataset, [0, 0])
                sums[0] += optional
                sums[1] += filled
                detail.update(filled=filled, optional=optional)
            if rules is not None:
                detail.update(_checked(system, envelope.id, rules))
            self._record(
                Step.RECEIVED,
                message_id=envelope.id,
                receipt=seen.receipt,
                system=system,
                dataset=dataset,
                detail=detail,
                at=seen.at,
            )
        for dataset, (optional, filled) in optional_fields.items():
            metrics.OPTIONAL_FIELDS.labels(system, dataset).inc(optional)
            metrics.OPTIONAL_FIELDS_FILLED.labels(system, dataset).inc(filled)
        for rule, count in (rules.rejected if rules is not None else {}).items():
            metrics.RULE_RECORDS.labels(system, rule, "reject").inc(count)
        by_record: dict[int, list[TranslationError]] = {}
        for error in errors:
            by_record.setdefault(error.record_index, []).append(error)
        for index, problems in sorted(by_record.items()):
            rule = problems[0].rule
            label = metrics.bounded("jghub_records_rejected", "reason", rule)
            metrics.RECORDS_REJECTED.labels(system, message_type, label).inc()
            keys = (read or {}).get(index)
            self._record(
                Step.REJECTED,
                receipt=seen.receipt,
                system=system,
                reason=str(problems[0]),
                dataset=keys.dataset if keys is not None else None,
                detail={
                    "message_type": message_type,
                    "index": index,
                    "rule": rule,
                    "rules": sorted({p.rule for p in problems}),
                    "errors": [p.to_dict() for p in problems[:MAX_ERRORS_KEPT]],
                    **_rejected_keys(keys, quarantine_id),
                },
                at=seen.at,
            )

    @_guarded
    def published(
        self,
        seen: Reception,
        *,
        seconds: float,
        outgoing: Sequence[Outgoing],
        failures: Sequence[PublishFailure] = (),
        error: BaseException | None = None,
    ) -> None:
        """`outgoing` was handed to the broker: all confirmed except `failures` (or none, with
        `error`, when the broker could not be reached)."""
        system = seen.system
        metrics.PUBLISH_CONFIRM_SECONDS.labels(system).observe(seconds)
        # When the messages went to the broker: a worker may deliver one before its confirm is
        # back, and the trace orders steps by time.
        sent_at = datetime.now(UTC) - timedelta(seconds=seconds)
        failed: dict[int, PublishFailure] = {f.index: f for f in failures}
        for index, message in enumerate(outgoing):
            dataset, _ = _parts(message.routing_key)
            failure = failed.get(index)
            if error is None and failure is None:
                metrics.PUBLISHED.labels(system, dataset).inc()
                self._record(
                    Step.PUBLISHED,
                    message_id=message.message_id,
                    receipt=seen.receipt,
                    system=system,
                    dataset=dataset,
                    detail=_keyed({"routing_key": message.routing_key}, message),
                    at=sent_at,
                )
                continue
            # No route is the hub's configuration, not the sender's data: it does not count
            # against the system's accuracy, only as a publish failure.
            if failure is not None and failure.unroutable:
                reason_label, reason = "unroutable", failure.reason
            elif failure is not None:
                reason_label, reason = "not_confirmed", failure.reason
            else:
                reason_label, reason = "unavailable", str(error)
            metrics.PUBLISH_FAILURES.labels(system, reason_label).inc()
            self._not_published(seen, message, rule=reason_label, reason=reason, at=sent_at)

    @_guarded
    def held_back(
        self, seen: Reception, *, outgoing: Sequence[Outgoing], target: str, reason: str
    ) -> None:
        """Back-pressure refused the payload before publishing: `target` is above its mark.

        Counted once per payload; each of its messages, journalled as received, ends with a
        not_published entry saying why, so its trace does not stop without a reason.
        """
        metrics.BACKPRESSURE_REFUSED.labels(seen.system, target).inc()
        for message in outgoing:
            self._not_published(
                seen, message, rule="backpressure", reason=reason, at=seen.at, target=target
            )

    @_guarded
    def quarantine_full(
        self,
        seen: Reception | None,
        *,
        system: str,
        outgoing: Sequence[Outgoing] = (),
        reason: str,
    ) -> None:
        """The quarantine could not keep what the hub would reject of a payload of `system`, so
        it was refused whole before anything was published: counted, and each of its messages,
        journalled as received, ends with a not_published entry saying why. `seen` is None for
        what never became a payload of a message type (a refused SOAP envelope)."""
        metrics.QUARANTINE_REFUSED.labels(system).inc()
        if seen is None:
            return
        for message in outgoing:
            self._not_published(seen, message, rule="quarantine-full", reason=reason, at=seen.at)

    def _not_published(
        self,
        seen: Reception,
        message: Outgoing,
        *,
        rule: str,
        reason: str,
        at: datetime,
        target: str | None = None,
    ) -> None:
        self._record(
            Step.NOT_PUBLISHED,
            message_id=message.message_id,
            receipt=seen.receipt,
            system=seen.system,
            dataset=_parts(message.routing_key)[0],
            target=target,
            reason=reason,
            detail=_keyed({"routing_key": message.routing_key, "rule": rule}, message),
            at=at,
        )

    # -- out --------------------------------------------------------------------------------------

    def watch(self, target: str, handler: Handler) -> Handler:
        """`handler` for `broker.consume(target, ...)`, with every settle observed."""
        if self.topology is None:
            raise ValueError("Observer.watch needs the topology to tell retry tiers apart")
        self.topology.target(target)  # TopologyError now rather than at the first failure

        def observed(delivery: Delivery) -> None:
            run_handler(handler, _WatchedDelivery(delivery, self))

        return observed

    @_guarded
    def delivered(self, target: str, message: Message, *, seconds: float) -> None:
        """`message` reached `target` (the worker acknowledged it after `seconds` of work)."""
        dataset, source = _parts(message.routing_key)
        metrics.DELIVERED.labels(target, dataset).inc()
        metrics.DELIVERY_SECONDS.labels(target).observe(seconds)
        end_to_end = max(0.0, (datetime.now(UTC) - received_at(message)).total_seconds())
        metrics.END_TO_END_SECONDS.labels(target, dataset).observe(end_to_end)
        self._record(
            Step.DELIVERED,
            message_id=message.id,
            receipt=_receipt(message.headers),
            system=source,
            target=target,
            dataset=dataset,
            attempt=message.attempts + 1,
            detail=_keyed(
                {
                    "seconds": round(seconds, 6),
                    "end_to_end_s": round(end_to_end, 3),
                    "redelivered": message.redelivered,
                },
                message,
            ),
        )

    @_guarded
    def delivery_failed(
        self,
        target: str,
        message: Message,
        *,
        seconds: float,
        stage: str,
        reason: str,
        permanent: bool,
    ) -> None:
        """A delivery of `message` to `target` failed and was settled as retry or dead letter.

        `message` is the message as it was handed over (before this failure): its attempts say
        which tier the bus parks it in, or that the tiers are used up.
        """
        dataset, source = _parts(message.routing_key)
        attempt = message.attempts + 1
        kind = "permanent" if permanent else "transient"
        metrics.DELIVERY_FAILURES.labels(target, dataset, kind).inc()
        metrics.DELIVERY_SECONDS.labels(target).observe(seconds)
        tier = None
        if not permanent and self.topology is not None:
            tier = self.topology.target(target).retry_tier(attempt)
        stage_label = metrics.bounded("jghub_dead_lettered", "stage", stage)
        common: dict[str, Any] = {
            "message_id": message.id,
            "receipt": _receipt(message.headers),
            "system": source,
            "target": target,
            "dataset": dataset,
            "reason": reason,
            "attempt": attempt,
        }
        if tier is not None:
            metrics.RETRIED.labels(target, str(tier)).inc()
            self._record(
                Step.RETRIED, **common, detail=_keyed({"stage": stage, "tier": tier}, message)
            )
            return
        cause = "permanent" if permanent else "retries_exhausted"
        metrics.DEAD_LETTERED.labels(target, stage_label, cause).inc()
        self._record(
            Step.DEAD_LETTERED, **common, detail=_keyed({"stage": stage, "cause": cause}, message)
        )
        self.dead_letter_log.note(target, message.id, stage=stage, cause=cause, reason=reason)

    @_guarded
    def replayed(self, dead: DeadLetter, *, why: str, by: str, at: datetime | None = None) -> None:
        """An operator moved `dead` back to its target queue at `at` (default now), saying `why`.

        Pass the time the move started: a worker may take the message before the move returns.
        """
        metrics.REPLAYED.labels(dead.target).inc()
        self._record_operator_act(
            Step.REPLAYED,
            dead,
            reason=why,
            detail={"by": by, "dead_reason": dead.reason, "dead_at": dead.dead_at.isoformat()},
            at=at,
        )

    @_guarded
    def body_read(self, dead: DeadLetter, *, by: str, via: str) -> None:
        """Operator `by` read the payload body of `dead` (`via`: "http", "console" or "cli")."""
        self._record_operator_act(
            Step.OPERATOR_READ,
            dead,
            reason=f"payload body read by {by}",
            detail={"by": by, "via": via, "what": "dead letter"},
        )

    @_guarded
    def quarantine_act(
        self,
        step: Step,
        *,
        quarantine_id: str,
        system: str | None,
        receipt: str | None,
        reason: str,
        by: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Operator `by` read (operator_read), released or discarded the quarantined payload
        `quarantine_id`; `reason` says why (a release's or a discard's reason)."""
        self._record(
            step,
            receipt=receipt,
            system=system,
            reason=reason,
            detail={**(detail or {}), "quarantine_id": quarantine_id, "by": by},
        )

    def _record_operator_act(
        self,
        step: Step,
        dead: DeadLetter,
        *,
        reason: str,
        detail: dict[str, Any],
        at: datetime | None = None,
    ) -> None:
        message = dead.message
        dataset, source = _parts(message.routing_key)
        self._record(
            step,
            message_id=message.id,
            receipt=_receipt(message.headers),
            system=source,
            target=dead.target,
            dataset=dataset,
            reason=reason,
            attempt=message.attempts,
            detail=_keyed(dict(detail), message),
            at=at,
        )

    # -- moving parts -----------------------------------------------------------------------------

    @_guarded
    def breaker_changed(self, target: str, old: object, new: object) -> None:
        """A target's circuit breaker changed state (closed, half-open, open)."""
        level = metrics.BREAKER_LEVELS.get(str(new).lower().replace("_", "-"))
        if level is None:
            log.warning("unknown breaker state %r of target %s", new, target)
            return
        metrics.BREAKER_STATE.labels(target).set(level)

    @_guarded
    def repeated(self, seen: Reception, *, envelopes: Sequence[Envelope]) -> None:
        """Records of the payload were published before (the same changes): not published again."""
        metrics.DUPLICATES.labels(seen.system).inc(len(envelopes))

    @_guarded
    def unmatched(self, seen: Reception, *, envelopes: Sequence[Envelope]) -> None:
        """Risk feedback of the payload names warnings the hub never routed: published, flagged."""
        metrics.UNMATCHED_FEEDBACK.labels(seen.system).inc(len(envelopes))

    @_guarded
    def polled(self, source: str, *, ok: bool, lag_seconds: float | None = None) -> None:
        """A poller of `source` polled; `lag_seconds`: how long ago it last read the source to
        its end (None when it never did)."""
        metrics.POLLS.labels(source, "ok" if ok else "failed").inc()
        if ok:
            metrics.POLLER_LAST_SUCCESS.labels(source).set(time.time())
        if lag_seconds is not None:
            metrics.POLLER_LAG_SECONDS.labels(source).set(max(0.0, lag_seconds))

    @_guarded
    def poller_lease(self, source: str, *, holder: str, change: str) -> None:
        """The lease of the poller of `source` changed hands: `change` is taken, taken_over,
        lost or released; `holder` names this worker."""
        held = change in ("taken", "taken_over")
        metrics.POLLER_LEASE_HELD.labels(source, holder).set(1 if held else 0)
        metrics.POLLER_LEASE_CHANGES.labels(source, change).inc()


def _receipt(headers: Mapping[str, HeaderValue]) -> str | None:
    value = headers.get(CORRELATION_HEADER)
    return value if isinstance(value, str) else None


def _named(envelope: Envelope) -> dict[str, dict[str, str]]:
    """What the record names besides itself, for its `received` entry: the credit codes of the
    organisations in it and the keys of the records it links to, by field path, as the standard
    declares them. The journal indexes them (monitor.journal_keys), so a search by a credit code
    or a linked record's key finds the record; the later steps of its message are found by its
    message id."""
    found = envelope.spec.references(envelope.data)
    named: dict[str, dict[str, str]] = {}
    if found.credit_codes:
        named["credit_codes"] = found.credit_codes
    if found.links:
        named["links"] = found.links
    return named


def _checked(system: str, message_id: str, rules: quality.RuleOutcome) -> dict[str, Any]:
    """What the cross-checks said of an accepted record, for its `received` entry (counted as
    they are journalled): the rules that warned (`warnings`, with their `findings`, as many as
    MAX_ERRORS_KEPT) and those that could not judge it (`unchecked`)."""
    found: dict[str, Any] = {}
    findings = rules.warnings.get(message_id) or ()
    if findings:
        found["warnings"] = sorted({str(finding["rule"]) for finding in findings})
        found["findings"] = [dict(finding) for finding in findings[:MAX_ERRORS_KEPT]]
    unchecked = rules.unchecked.get(message_id) or ()
    if unchecked:
        found["unchecked"] = sorted(unchecked)
    for name, disposition in (("warnings", "warn"), ("unchecked", "unchecked")):
        for rule in found.get(name, ()):
            metrics.RULE_RECORDS.labels(system, rule, disposition).inc()
    return found


def _rejected_keys(keys: RecordKeys | None, quarantine_id: str | None) -> dict[str, Any]:
    """What a rejected record's entry names besides its problems: the quarantine id it is kept
    under and, as far as they could be read, its key (`subject`), credit codes and links."""
    named: dict[str, Any] = {}
    if quarantine_id is not None:
        named["quarantine_id"] = quarantine_id
    if keys is None:
        return named
    if keys.key is not None:
        named["subject"] = keys.key
    if keys.credit_codes:
        named["credit_codes"] = keys.credit_codes
    if keys.links:
        named["links"] = keys.links
    return named


def _keyed(detail: dict[str, Any], message: Message | Outgoing) -> dict[str, Any]:
    """`detail` with the record's business key (its CloudEvents subject: a case number, a
    complaint or task id, a credit code) when the message carries one: the journal indexes it,
    so `jghub trace KEY` finds every step of that record."""
    subject = message.headers.get(f"{AMQP_PREFIX}subject")
    if isinstance(subject, str) and subject:
        detail["subject"] = subject
    return detail


class _WatchedDelivery(Delivery):
    """A delivery whose settles are observed once the real delivery took them."""

    def __init__(self, inner: Delivery, observer: Observer) -> None:
        super().__init__(inner.message, inner.target)
        self.hand = inner.hand  # read only: the inner delivery leaves it when settled
        self._inner = inner
        self._observer = observer
        self._started = time.perf_counter()

    def _elapsed(self) -> float:
        return time.perf_counter() - self._started

    # Each settle is journalled, and the entry written, before the broker hears of it: a worker
    # killed in between leaves a journalled step the broker redelivers (the target drops the
    # repeat by its key), never an acknowledged step the journal lacks.

    def _ack(self) -> None:
        self._observer.delivered(self.target, self.message, seconds=self._elapsed())
        self._observer.durable()
        self._inner.ack()

    def _retry(self, reason: str, stage: str) -> None:
        self._failed(reason, stage, permanent=False)
        self._observer.durable()
        self._inner.retry(reason, stage)

    def _dead_letter(self, reason: str, stage: str) -> None:
        self._failed(reason, stage, permanent=True)
        self._observer.durable()
        self._inner.dead_letter(reason, stage)

    def _failed(self, reason: str, stage: str, *, permanent: bool) -> None:
        self._observer.delivery_failed(
            self.target,
            self.message,
            seconds=self._elapsed(),
            stage=stage,
            reason=reason,
            permanent=permanent,
        )

    def _requeue(self) -> None:
        self._inner.requeue()

    def _postpone(self, reason: str, stage: str) -> None:
        # Not a delivery attempt, so neither counted nor journalled: a long outage would write
        # an entry per message per tier delay. The breaker's state gauge shows the wait.
        self._inner.postpone(reason, stage)
