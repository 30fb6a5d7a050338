"""Releasing a quarantined payload after a fix: translated again through the one inbound path,
what passes now published with confirms and journalled, what still fails held with new reasons.

    release = QuarantineRelease(ingress, quarantine, observer=observer, max_records=limits)
    done = release.release("5c0f…", why="mapping fixed: fines in 元 now converted", by="ops-li")
    done.published, done.rejected, done.entry.state      # 3, 0, State.RELEASED

A release claims the entry (`Quarantine.claim`: an entry released or discarded before, or being
released by someone else right now, is refused with NotHeld and nothing happens), hands its
payload to `Ingress.accept(..., again=entry)` — the mappings, authorisation, penalty-case stages,
routing, back-pressure, publisher confirms and journal of any pushed payload, under the receipt
id the sender was first answered with — and settles the entry: released when every record went
out, or held with the reasons that remain. Records published before — when the payload came,
or by an earlier release — are not published again: each record goes out once. The act is
journalled (`released`) under the quarantine id with who, why and what came of it, so
`jghub trace ID` shows the refusal and every release.

A release translates with the system's mapping **as it is on disk when the release runs**
(`reload`, given by the hub: it loads the folder with the checks `serve` makes when it starts),
so "release after a mapping fix" needs no restart. The answer says which version was used (its
digest and modification time) and whether the process still translates new pushes with an older
one. A mapping on disk that does not load refuses the release (MappingNotLoadable), naming the
folder, its version and the error: nothing is published, the entry stays held.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from adapters.errors import AdapterConfigError, IngressUnavailable, TooManyRecords
from adapters.ingress import Ingress, IngressResult, RecordAnswer, record_problems
from mappings import MappingVersion, SystemMappings
from monitor.dead_letters import check_why
from monitor.errors import NotHeld, ReleaseNotNow
from monitor.journal import Step
from monitor.observer import Observer
from monitor.quarantine import Problem, Quarantine, QuarantineEntry, Released


@dataclass(frozen=True)
class MappingOnDisk:
    """A system's mappings as a release re-read them, and which versions are in play.

    Attributes:
      mappings: the system's compiled mappings, loaded from disk now and checked as at start.
      version: the version of the folder they were loaded from.
      serving: the version the process translates new payloads with (None: unknown).
    """

    mappings: SystemMappings
    version: MappingVersion
    serving: MappingVersion | None


MappingReload = Callable[[str], MappingOnDisk]
"""Loads a system's mapping from disk by system id; raises MappingNotLoadable when it does not
load (the hub's `hub.mapping_reload.DiskMappings`)."""


class QuarantineRelease:
    """Releases held payloads (see the module docstring); a `monitor.quarantine.Releaser`.

    Parameters:
      ingress: the inbound path, attached to a broker.
      quarantine: where the entries are (the one `ingress` keeps in).
      observer: journals each release (who, why, what came of it); None: not journalled.
      max_records: the most records each (system, message type) channel takes in one payload,
        applied again on release (`ChannelConfig.max_records`); a pair not named: no limit.
      reload: re-reads the system's mapping from disk for each release (None: translate with
        the mappings `ingress` holds).
    """

    def __init__(
        self,
        ingress: Ingress,
        quarantine: Quarantine,
        *,
        observer: Observer | None = None,
        max_records: Mapping[tuple[str, str], int | None] | None = None,
        reload: MappingReload | None = None,
    ) -> None:
        self.ingress = ingress
        self.quarantine = quarantine
        self.observer = observer
        self.max_records = dict(max_records or {})
        self.reload = reload

    def release(self, quarantine_id: str, *, why: str, by: str) -> Released:
        """Release the held entry `quarantine_id` on behalf of `by`, saying `why`.

        Raises InvalidRequest (no reason), NotInQuarantine, NotHeld (released or discarded
        before, being released now, nothing to translate, or its system no longer takes its
        message type), MappingNotLoadable (the system's mapping on disk does not load), or
        ReleaseNotNow when the bus cannot take the records now (unreachable, back-pressure):
        then nothing was published and the entry stays held as it was.
        """
        reason = check_why(
            why,
            act="a release",
            meaning="what was fixed so that the payload may go now",
            example="mapping fixed: fines in 元 converted to 万元",
        )
        entry = self.quarantine.claim(quarantine_id)
        try:
            on_disk = self.reload(entry.system) if self.reload is not None else None
            result = self._translated_again(entry, on_disk)
        except IngressUnavailable as error:
            self.quarantine.unclaim(quarantine_id)
            raise ReleaseNotNow(
                f"{quarantine_id} was not released, nothing of it was published: {error}",
                retry_after=error.retry_after,
            ) from error
        except BaseException:
            self.quarantine.unclaim(quarantine_id)
            raise
        return self._settled(entry, result, on_disk, reason=reason, by=by)

    def _translated_again(
        self, entry: QuarantineEntry, on_disk: MappingOnDisk | None
    ) -> IngressResult | TooManyRecords:
        assert entry.message_type is not None and entry.payload is not None  # claim checked
        try:
            return self.ingress.accept(
                entry.system,
                entry.message_type,
                entry.payload,
                charset=entry.charset,
                max_records=self.max_records.get((entry.system, entry.message_type)),
                again=entry,
                mapping=on_disk.mappings if on_disk is not None else None,
            )
        except TooManyRecords as refused:
            return refused
        except AdapterConfigError as error:
            raise NotHeld(
                f"{entry.id} cannot be translated now: {error}; configure the channel again, "
                "or discard the entry"
            ) from error

    def _settled(
        self,
        entry: QuarantineEntry,
        result: IngressResult | TooManyRecords,
        on_disk: MappingOnDisk | None,
        *,
        reason: str,
        by: str,
    ) -> Released:
        answers: list[RecordAnswer] = []
        if isinstance(result, TooManyRecords):
            problems = [Problem(record=None, rule=result.kind, message=result.reason)]
        elif result.payload_error is not None:
            problems = [Problem.of(None, result.payload_error.model_dump())]
        else:
            answers = result.records
            problems = record_problems(answers, statuses=("rejected", "failed"))
        accepted = [a for a in answers if a.status == "accepted" and a.message_id]
        settled = self.quarantine.settle_release(
            entry.id,
            by=by,
            why=reason,
            published={a.index: a.message_id for a in accepted if a.message_id},
            problems=problems,
            rejected=sum(a.status == "rejected" for a in answers),
        )
        done = Released(
            entry=settled,
            published=sum(not a.repeat for a in accepted),
            repeated=sum(a.repeat for a in accepted),
            rejected=sum(a.status == "rejected" for a in answers),
            failed=sum(a.status == "failed" for a in answers),
            mapping=on_disk.version if on_disk is not None else None,
            serving=on_disk.serving if on_disk is not None else None,
        )
        used = {} if done.mapping is None else {"mapping": done.mapping.digest}
        if self.observer is not None:
            self.observer.quarantine_act(
                Step.RELEASED,
                quarantine_id=entry.id,
                system=entry.system,
                receipt=entry.receipt,
                reason=reason,
                by=by,
                detail={
                    "state": settled.state.value,
                    "published": done.published,
                    "repeated": done.repeated,
                    "rejected": done.rejected,
                    "failed": done.failed,
                    **used,
                },
            )
            self.observer.durable()
        return done
