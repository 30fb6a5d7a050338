"""`jghub systems check`: every load-time check of serve and worker, without starting anything.

`check_systems` loads the systems file and each mapping folder it names, binds them, builds
every adapter and mounts the push channels on a throwaway app (no port opened), and reads the
local WSDLs of the SOAP senders and pollers. It opens no broker, store or connection: a WSDL
given as a URL is reported as not fetched unless `fetch` is asked. Unlike the hub, which stops
at the first wrong step, it goes on wherever it can and lists every problem it found, each
with file, line and the rule broken.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI
from starlette.routing import BaseRoute

from adapters import registry
from adapters.base import AdapterContext, InboundAdapter
from adapters.errors import AdapterError
from adapters.ingress import Ingress
from adapters.replay_cache import StoredReplayCache
from adapters.security import Gatekeeper
from hub.systems import ConfigProblem, SystemsConfig, SystemsConfigError, load_systems
from mappings import MappingError, SystemMappings, load_system
from mappings.flows import flow_gaps
from mappings.system import SYSTEM_FILE
from mappings.yamlsource import load_yaml
from reference.rulebook import Rulebook, RulesFileError
from store import Store

__all__ = ["CheckReport", "Finding", "check_systems"]

Severity = Literal["problem", "note"]


@dataclass(frozen=True)
class Finding:
    """One thing `jghub systems check` found: where, which rule, what to do."""

    file: Path | None
    line: int | None
    column: int | None
    rule: str
    message: str
    severity: Severity = "problem"

    def __str__(self) -> str:
        where = str(self.file) if self.file is not None else "<systems>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        label = "" if self.severity == "problem" else f"{self.severity}: "
        return f"{where}: {label}[{self.rule}] {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.file) if self.file is not None else None,
            "line": self.line,
            "column": self.column,
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
        }


@dataclass
class CheckReport:
    """What a check found, and how much it looked at."""

    systems_file: Path
    findings: list[Finding] = field(default_factory=list)
    systems: int = 0
    mapping_folders: int = 0
    channels: int = 0

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "problem"]

    @property
    def clean(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        problems = len(self.problems)
        notes = len(self.findings) - problems
        verdict = "clean" if problems == 0 else f"{problems} problem{'s' if problems != 1 else ''}"
        return (
            f"{self.systems_file}: {verdict}, {notes} note{'s' if notes != 1 else ''} "
            f"({self.systems} systems, {self.mapping_folders} mapping folders, "
            f"{self.channels} channels checked)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.systems_file),
            "clean": self.clean,
            "problems": len(self.problems),
            "systems": self.systems,
            "mapping_folders": self.mapping_folders,
            "channels": self.channels,
            "findings": [f.to_dict() for f in self.findings],
            "summary": self.summary(),
        }


def check_systems(
    path: Path, mappings_root: Path, *, fetch: bool = False, rules_file: Path | None = None
) -> CheckReport:
    """Check the systems file at `path` against the mapping folders under `mappings_root`,
    and the cross-checks' rules file `rules_file` (None: not checked) against both.

    `fetch`: read the WSDLs given as URLs too (the only network the check may use).
    """
    report = CheckReport(path)
    rulebook = _rulebook(rules_file, report)
    try:
        config = load_systems(path)
    except SystemsConfigError as error:
        report.findings += [_from_config(problem) for problem in error.problems]
        return report  # without a valid file there is nothing to bind
    if rulebook is not None:
        report.findings += list(_unknown_rule_systems(rulebook, config))
    report.systems = len(config.systems)
    report.channels = sum(len(s.inbound) for s in config.systems)
    folders, failed = _load_folders(config, mappings_root, report)
    report.mapping_folders = len(folders)
    try:
        config.bind_mappings(folders)
    except SystemsConfigError as error:
        report.findings += [
            _from_config(problem)
            for problem in error.problems
            # A folder that did not load is reported once, at its own file and line.
            if not (
                problem.rule == "mapping-folder"
                and any(f"folder {name!r}" in problem.reason for name in failed)
            )
        ]
    bound = {s.id: folders[s.mapping_id] for s in config.systems if s.mapping_id in folders}
    report.findings += [_from_config(problem) for problem in config.unrouted_channels(bound)]
    report.findings += list(_flow_gaps(folders.values()))
    report.findings += list(_adapters(config, bound, fetch=fetch))
    return report


def _from_config(problem: ConfigProblem) -> Finding:
    subject = f"{problem.field}: " if problem.field else ""
    return Finding(
        problem.file,
        problem.line,
        problem.column,
        problem.rule or "config",
        subject + problem.reason,
    )


def _rulebook(path: Path | None, report: CheckReport) -> Rulebook | None:
    """The rulebook of `path`, as serve and worker load it; its problems go to `report`."""
    if path is None:
        return None
    try:
        return Rulebook.load(path)
    except RulesFileError as error:
        report.findings += [
            Finding(p.file, p.line, p.column, "rules-file", _mapping_reason(p))
            for p in error.problems
        ]
        return None


def _unknown_rule_systems(rulebook: Rulebook, config: SystemsConfig) -> Iterator[Finding]:
    """A note per system the rules file gives dispositions to that the systems file lacks
    (its dispositions judge nothing: a typo, or a system since removed)."""
    known = {system.id for system in config.systems}
    for system in sorted(set(rulebook.overrides) - known):
        yield Finding(
            rulebook.file,
            rulebook.override_lines.get(system),
            None,
            "rules-file",
            f"systems.{system}: the systems file has no system {system!r}; its dispositions "
            "apply to nothing",
            severity="note",
        )


def _load_folders(
    config: SystemsConfig, root: Path, report: CheckReport
) -> tuple[dict[str, SystemMappings], set[str]]:
    """Each mapping folder the systems name that exists (by folder name), and the names of
    those that did not load (each reported with its file and line)."""
    folders: dict[str, SystemMappings] = {}
    failed: set[str] = set()
    for name in sorted({s.mapping_id for s in config.systems}):
        folder = root / name
        if not (folder / SYSTEM_FILE).is_file():
            continue  # bind_mappings reports it (or it is an internal system's: none needed)
        try:
            folders[name] = load_system(folder)
        except MappingError as error:
            failed.add(name)
            report.findings.append(
                Finding(error.file, error.line, error.column, "mapping", _mapping_reason(error))
            )
    return folders, failed


def _mapping_reason(error: MappingError) -> str:
    return f"field '{error.field}': {error.reason}" if error.field else error.reason


def _flow_gaps(folders: Iterable[SystemMappings]) -> Iterator[Finding]:
    """A problem for each flow a folder's system.yaml declares whose mappings it lacks."""
    for folder in folders:
        gaps = flow_gaps(folder)
        if not gaps:
            continue
        document = load_yaml(folder.folder / SYSTEM_FILE)
        for index, reason in gaps:
            line, column = document.position(("flows", index))
            yield Finding(document.path, line, column, "flow-mappings", reason)


def _adapters(
    config: SystemsConfig, bound: dict[str, SystemMappings], *, fetch: bool
) -> Iterator[Finding]:
    """What building the adapters finds: push channels mounted on a throwaway app (their
    WSDLs, operations and paths), and the WSDLs of SOAP senders and pollers."""
    app = FastAPI()
    # Pollers keep their cursors and leases on the store and refuse to be built without one,
    # and a gatekeeper holding signing systems' secrets (set in the environment of a host that
    # runs the hub) wants a replay cache: an in-memory SQLite store, never connected to
    # (building an adapter reads nothing).
    store = Store("sqlite://")
    gatekeeper = Gatekeeper(
        config.systems,
        default_max_body_bytes=1,
        require_secrets=False,
        replays=StoredReplayCache(store),
    )
    ingress = Ingress(None, bound)
    try:
        yield from _built(config, app, gatekeeper, ingress, store, fetch=fetch)
    finally:
        store.close()


def _built(
    config: SystemsConfig,
    app: FastAPI,
    gatekeeper: Gatekeeper,
    ingress: Ingress,
    store: Store,
    *,
    fetch: bool,
) -> Iterator[Finding]:
    owners: dict[tuple[str, str], str] = {}
    for position, system in enumerate(config.systems):
        context = AdapterContext(
            system=system, data_dir=Path("."), gatekeeper=gatekeeper, store=store
        )
        for index, channel in enumerate(system.inbound):
            at: tuple[str | int, ...] = ("systems", position, "inbound", index)
            try:
                adapter = registry.create(
                    channel.adapter, channel.options, dataclasses.replace(context, channel=channel)
                )
                if isinstance(adapter, InboundAdapter):
                    before = len(app.routes)
                    adapter.mount(app, system, channel, ingress)
                    yield from _shadowed(config, app.routes[before:], owners, at)
                else:
                    yield from _wsdl(config, adapter, at, fetch=fetch)
            except AdapterError as error:  # each refusal is a finding; the check goes on
                yield _at(config, at, "adapter", f"{channel.adapter}: {error}")
        if system.outbound is not None:
            at = ("systems", position, "outbound")
            try:
                sender = registry.create(system.outbound.adapter, system.outbound.options, context)
                yield from _wsdl(config, sender, at, fetch=fetch)
            except AdapterError as error:
                yield _at(config, at, "adapter", f"{system.outbound.adapter}: {error}")


def _shadowed(
    config: SystemsConfig,
    routes: Sequence[BaseRoute],
    owners: dict[tuple[str, str], str],
    at: tuple[str | int, ...],
) -> Iterator[Finding]:
    """A problem for each of `routes` (just mounted) on a path and method an earlier channel
    has, in `owners`: Starlette would serve only the first (`hub.app` refuses it at start)."""
    for route in routes:
        name = str(getattr(route, "name", ""))
        for method in sorted(getattr(route, "methods", None) or ()):
            key = (str(getattr(route, "path", "")), method)
            owner = owners.setdefault(key, name)
            if owner != name:
                yield _at(
                    config,
                    at,
                    "route-shadowed",
                    f"{method} {key[0]} is configured twice ({owner} and {name}); give one of "
                    "the channels another `path` option",
                )


def _wsdl(
    config: SystemsConfig, adapter: Any, at: tuple[str | int, ...], *, fetch: bool
) -> Iterator[Finding]:
    """Read the WSDL a SOAP sender or poller names: a local file always, a URL when fetching."""
    bind = getattr(adapter, "bind_wsdl", None)
    wsdl = getattr(adapter.options, "wsdl", None)
    if bind is None or not isinstance(wsdl, str):
        return
    if wsdl.startswith(("http://", "https://")) and not fetch:
        yield _at(
            config,
            (*at, "options", "wsdl"),
            "wsdl-not-fetched",
            f"WSDL {wsdl} not fetched (a URL; check with --fetch where it is reachable)",
            severity="note",
        )
        return
    try:
        bind()
    except AdapterError as error:  # DeliveryError, SourceUnavailable, AdapterConfigError
        yield _at(config, (*at, "options", "wsdl"), "wsdl", f"{adapter.name}: {error}")


def _at(
    config: SystemsConfig,
    location: tuple[str | int, ...],
    rule: str,
    reason: str,
    *,
    severity: Severity = "problem",
) -> Finding:
    problem = config._problem(location, reason, rule=rule)
    return dataclasses.replace(_from_config(problem), severity=severity)
