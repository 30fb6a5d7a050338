"""The systems configuration: which external systems are connected, how, and what they receive.

One YAML file (`config/systems.yaml` by default, `JGHUB_SYSTEMS_FILE` to change it):

    systems:
      - id: grassroots-platform
        name_zh: 基层治理四平台
        auth: {scheme: signed_app_key, key_env: JGHUB_SECRET_GRASSROOTS, app_key: jczl-hub-01}
        inbound:
          - {adapter: rest_push, message_type: event_report}
        outbound:
          adapter: rest_sender
          render: {grassroots_event: event_feedback}
          options: {url: "https://jczl.example/api/feedback"}
        routes: ["grassroots_event.#"]

Validated when loaded: every problem is reported with file, line and field, including a channel
option the adapter's Options model refuses and (with `bind_mappings`) a message type the
system's mapping folder does not have, or whose mapping reads another syntax (XML, JSON) than
the channel's adapter hands over (`Adapter.payload_format`). The entry models are the room
`systems` (the adapters, the centre and the hub are handed them); this loader checks each
channel's and sender's options against its adapter's Options model through the adapter
registry (`OPTIONS_CHECK`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from adapters import egress
from adapters.registry import adapter_class, adapters, validate_options
from adapters.routing import ADDRESSED
from bus import Target, Topology, queue_word
from bus.broker import HANDLER_STAGE
from bus.routing import topics_overlap
from mappings import MappingError, SystemMappings
from mappings.yamlsource import YamlFile, load_yaml
from monitor.metrics import ChannelSeries, KnownSeries, TargetSeries
from reference.rulebook import Rulebook
from systems import CLOUDEVENT, OPTIONS_CHECK, SystemConfig

__all__ = [
    "ConfigProblem",
    "SystemsConfig",
    "SystemsConfigError",
    "load_systems",
    "parse_systems",
]


@dataclass(frozen=True)
class ConfigProblem:
    """One problem of the systems file: where it is and what is wrong."""

    file: Path
    line: int | None
    column: int | None
    field: str
    reason: str
    rule: str = ""
    """A short name of the rule broken (e.g. payload-format), for `jghub systems check`."""

    def __str__(self) -> str:
        where = str(self.file)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        subject = f" {self.field}:" if self.field else ""
        return f"{where}:{subject} {self.reason}"


class SystemsConfigError(ValueError):
    """The systems configuration is wrong; `problems` lists each with file, line and field."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        count = len(problems)
        heading = f"{count} problem{'s' if count != 1 else ''} in the systems configuration"
        super().__init__(heading + ":\n" + "\n".join(f"  {problem}" for problem in problems))


class SystemsConfig(BaseModel):
    """Every connected system (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    systems: list[SystemConfig] = Field(
        default_factory=list, description="The connected external systems."
    )
    _source: YamlFile | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _unique(self) -> SystemsConfig:
        for label, values in (
            ("system ids", [s.id for s in self.systems]),
            ("queue names (ids with '-' read as '_')", [queue_word(s.id) for s in self.systems]),
            ("app keys", [s.auth.app_key for s in self.systems if s.auth.app_key]),
            ("basic user names", [s.auth.username for s in self.systems if s.auth.username]),
            (
                "client subjects",
                [s.auth.client_subject for s in self.systems if s.auth.client_subject],
            ),
            # A department served by two systems would make its addressed records ambiguous.
            ("department names", [d.name for s in self.systems for d in s.departments]),
            (
                "department credit codes",
                [d.credit_code for s in self.systems for d in s.departments if d.credit_code],
            ),
        ):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{label} must be unique; repeated: {', '.join(repeated)}")
        return self

    def system(self, system_id: str) -> SystemConfig:
        """The system called `system_id`; KeyError naming the known ones."""
        for system in self.systems:
            if system.id == system_id:
                return system
        known = ", ".join(s.id for s in self.systems) or "none"
        raise KeyError(f"no system {system_id!r} in the systems configuration (known: {known})")

    def max_records(self) -> dict[tuple[str, str], int]:
        """The most records each pushed channel takes in one payload, by (system, message type):
        what a release of a quarantined payload is held to again."""
        return {
            (system.id, channel.message_type): channel.max_records
            for system in self.systems
            for channel in system.inbound
        }

    def topology(self, namespace: str) -> Topology:
        """The bus topology: one target per system that receives messages, with its routes."""
        return Topology(
            namespace=namespace,
            targets=[
                Target(
                    name=s.id,
                    routes=list(s.routes),
                    retry_delays=list(s.retry.tiers),
                    **_batch_prefetch(s),
                )
                for s in self.systems
                if s.routes
            ],
        )

    def bind_mappings(self, mappings: Mapping[str, SystemMappings]) -> dict[str, SystemMappings]:
        """Each system's compiled mappings (by system id), from the loaded folders (by folder).

        An internal system (auth scheme internal) needs no folder: it renders nothing.

        Raises SystemsConfigError, with file and line, for a missing mapping folder, a channel
        whose message type the folder has no inbound mapping for or whose mapping reads another
        syntax than its adapter hands over (naming the mapping's file and line), or an outbound
        render entry
        whose message type is not an outbound mapping of that dataset.
        """
        bound: dict[str, SystemMappings] = {}
        problems: list[ConfigProblem] = []
        for position, system in enumerate(self.systems):
            at: tuple[str | int, ...] = ("systems", position)
            folder = mappings.get(system.mapping_id)
            if folder is None and system.auth.scheme == "internal" and system.mapping is None:
                continue  # inside the hub: it reads canonical events, no payloads of its own
            if folder is None:
                known = ", ".join(sorted(mappings)) or "none"
                problems.append(
                    self._problem(
                        (*at, "mapping" if system.mapping else "id"),
                        f"no mapping folder {system.mapping_id!r} (folders: {known})",
                        rule="mapping-folder",
                    )
                )
                continue
            bound[system.id] = folder
            for index, channel in enumerate(system.inbound):
                translation = folder.inbound.get(channel.message_type)
                if translation is None:
                    problems.append(
                        self._problem(
                            (*at, "inbound", index, "message_type"),
                            f"mapping folder {folder.id!r} has no inbound message type "
                            f"{channel.message_type!r} (inbound: "
                            f"{', '.join(sorted(folder.inbound)) or 'none'})",
                            rule="channel-message-type",
                        )
                    )
                    continue
                reads = adapter_class(channel.adapter).payload_format
                if reads is not None and reads != translation.mapping.format:
                    mapping = translation.document
                    problems.append(
                        self._problem(
                            (*at, "inbound", index, "adapter"),
                            f"adapter {channel.adapter} hands {reads.upper()} payloads to "
                            f"mapping {mapping.path}:{mapping.position(('format',))[0]} "
                            f"(message type {channel.message_type!r}), which reads "
                            f"{translation.mapping.format.upper()} (format: "
                            f"{translation.mapping.format}); use an adapter for "
                            f"{translation.mapping.format.upper()} or a mapping of format "
                            f"{reads}",
                            rule="payload-format",
                        )
                    )
            if system.outbound is not None and system.outbound.batch is not None:
                problems += self._batch_problems(at, system, folder)
            if system.outbound is not None:
                for dataset, message_type in system.outbound.render.items():
                    where = (*at, "outbound", "render", dataset)
                    if message_type == CLOUDEVENT:
                        continue
                    rendering = folder.outbound.get(message_type)
                    if rendering is None:
                        problems.append(
                            self._problem(
                                where,
                                f"mapping folder {folder.id!r} has no outbound message type "
                                f"{message_type!r} (outbound: "
                                f"{', '.join(sorted(folder.outbound)) or 'none'})",
                                rule="render-message-type",
                            )
                        )
                    elif rendering.dataset.name != dataset:
                        problems.append(
                            self._problem(
                                where,
                                f"outbound message type {message_type!r} renders dataset "
                                f"{rendering.dataset.name!r}, not {dataset!r}",
                                rule="render-dataset",
                            )
                        )
        if problems:
            raise SystemsConfigError(problems)
        return bound

    def _batch_problems(
        self, at: tuple[str | int, ...], system: SystemConfig, folder: SystemMappings
    ) -> list[ConfigProblem]:
        """Why `system`'s `outbound.batch` cannot work: a sender that carries no batches, or a
        rendered message type whose mapping does not say how to wrap a batch (with its line)."""
        outbound = system.outbound
        assert outbound is not None
        where = (*at, "outbound", "batch")
        if not getattr(adapter_class(outbound.adapter), "batches", False):
            return [
                self._problem(
                    where,
                    f"sender {outbound.adapter} cannot send batches (senders that can: "
                    f"{', '.join(_batching_senders()) or 'none'}); remove outbound.batch",
                    rule="batch-sender",
                )
            ]
        problems: list[ConfigProblem] = []
        for dataset, message_type in outbound.render.items():
            rendering = folder.outbound.get(message_type)
            if message_type == CLOUDEVENT or rendering is None or rendering.batches:
                continue  # events go one a request; an unknown type is reported below
            mapping = rendering.document
            problems.append(
                self._problem(
                    (*at, "outbound", "render", dataset),
                    f"outbound message type {message_type!r} cannot be sent in batches: mapping "
                    f"{mapping.path}:{mapping.position(('message_type',))[0]} has no `batch` "
                    "section (how records are wrapped and how the answer names each result); "
                    "add one or remove outbound.batch",
                    rule="batch-mapping",
                )
            )
        return problems

    def known_series(
        self,
        bound: Mapping[str, SystemMappings],
        *,
        breakers: Collection[str] = (),
        rulebook: Rulebook | None = None,
    ) -> KnownSeries:
        """The metric series this configuration names ahead of any event, for
        `monitor.metrics.start_at_zero`; `bound` is what `bind_mappings` returned, `breakers`
        the targets whose circuit breakers the calling process runs, `rulebook` the
        cross-checks' dispositions (None: their series start at their first event)."""
        channels = [
            ChannelSeries(system.id, channel.message_type, translation.dataset.name)
            for system in self.systems
            if system.id in bound
            for channel in system.inbound
            if (translation := bound[system.id].inbound.get(channel.message_type)) is not None
        ]
        sources = [
            f"{system.id}/{channel.message_type}"
            for system in self.systems
            for channel in system.inbound
            if adapter_class(channel.adapter).kind == "poller"
        ]
        return KnownSeries(
            channels=tuple(channels),
            systems=tuple(s.id for s in self.systems if s.auth.scheme != "internal"),
            targets=tuple(
                TargetSeries(s.id, _received_datasets(s), len(s.retry.tiers))
                for s in self.systems
                if s.routes
            ),
            sources=tuple(sources),
            dead_letter_stages=(*egress.STAGES, HANDLER_STAGE),
            breakers=tuple(breakers),
            rule_findings=tuple(
                rulebook.series((c.system, c.dataset) for c in channels) if rulebook else ()
            ),
        )

    def unrouted_channels(self, bound: Mapping[str, SystemMappings]) -> list[ConfigProblem]:
        """A misconfiguration for each inbound channel whose dataset no system's routes take.

        Such a channel accepts a batch and answers every record "no system's routes take it"
        (issue #15: housing-penalty's 双公示). The hub reports these in /ready (`misconfigured`)
        and its log rather than refusing the file: one department's missing route must not stop
        every other department's intake. `bound` is what `bind_mappings` returned.
        A channel publishes "dataset.<region>.<its id>", and addressed datasets (tasks,
        warnings) also "dataset.<region>.<its id>.<addressee>"; a route taking any such key
        is enough (a region-selective route is a choice, not a misconfiguration).
        """
        routes = [route for system in self.systems for route in system.routes]
        problems = []
        for position, system in enumerate(self.systems):
            folder = bound.get(system.id)
            if folder is None:
                continue
            for index, channel in enumerate(system.inbound):
                translation = folder.inbound.get(channel.message_type)
                if translation is None:
                    continue  # reported by bind_mappings
                dataset = translation.dataset.name
                keys = [f"{dataset}.*.{system.id}"]
                if dataset in ADDRESSED:
                    keys.append(f"{dataset}.*.{system.id}.*")
                if any(topics_overlap(route, key) for route in routes for key in keys):
                    continue
                problems.append(
                    self._problem(
                        ("systems", position, "inbound", index, "message_type"),
                        f"channel {channel.message_type!r} of system {system.id!r} accepts "
                        f"dataset {dataset!r}, which no system's routes take (its keys: "
                        f"{' or '.join(keys)}); add a route such as '{dataset}.#' to the "
                        "system that should receive it, or remove the channel",
                        rule="unrouted-channel",
                    )
                )
        return problems

    def check_routes(self) -> None:
        """Raise SystemsConfigError (file:line of each route) for routes selecting a dataset
        their system's outbound.render does not list: they could only feed the dead letters."""
        problems = self.route_problems()
        if problems:
            raise SystemsConfigError(problems)

    def route_problems(self) -> list[ConfigProblem]:
        """What `check_routes` refuses, as a list."""
        return [
            self._problem(("systems", position, "routes", index), reason, rule="route-unrendered")
            for position, system in enumerate(self.systems)
            for index, reason in system.unrendered_routes()
        ]

    def check_collaboration(self) -> None:
        """Raise SystemsConfigError (file:line of each) for a collaboration centre whose scenario
        table names a system that serves no department: its complaints could not be addressed."""
        problems = self.collaboration_problems()
        if problems:
            raise SystemsConfigError(problems)

    def collaboration_problems(self) -> list[ConfigProblem]:
        """What `check_collaboration` refuses, as a list."""
        serving = {s.id for s in self.systems if s.departments}
        problems = []
        for position, system in enumerate(self.systems):
            table = system.collaboration
            if table is None:
                continue
            problems += [
                self._problem(
                    ("systems", position, "collaboration", *where),
                    f"{target!r} is not a configured system with `departments`: its tasks "
                    "could not be addressed",
                    rule="collaboration-system",
                )
                for where, target in table.named_systems()
                if target not in serving
            ]
        return problems

    def _problem(
        self, location: tuple[str | int, ...], reason: str, *, rule: str = ""
    ) -> ConfigProblem:
        source = self._source
        line, column = source.position(location) if source is not None else (None, None)
        file = source.path if source is not None else Path("<systems>")
        return ConfigProblem(file, line, column, _shown(location), reason, rule)


def _batching_senders() -> list[str]:
    return sorted(name for name, cls in adapters().items() if getattr(cls, "batches", False))


def _batch_prefetch(system: SystemConfig) -> dict[str, int]:
    """A batching target's prefetch: the messages its worker holds (>= max_records), so a
    batch can fill; others keep the topology's default."""
    if system.outbound is None or system.outbound.batch is None:
        return {}
    return {"prefetch": system.outbound.batch.in_hand}


def _received_datasets(system: SystemConfig) -> tuple[str, ...]:
    """The datasets `system` receives by name: its routes' literal first words and its render
    table's entries (a wildcard route takes datasets nobody can list ahead)."""
    named = {route.split(".")[0] for route in system.routes} - {"*", "#"}
    if system.outbound is not None:
        named |= set(system.outbound.render)
    return tuple(sorted(named))


def load_systems(path: Path | str) -> SystemsConfig:
    """Read and validate the systems file; SystemsConfigError lists every problem with its line."""
    file = Path(path)
    try:
        document = load_yaml(file)
    except MappingError as error:
        raise SystemsConfigError(
            [ConfigProblem(file, error.line, error.column, "", error.reason, "yaml")]
        ) from None
    return parse_systems(document.data if document.data is not None else {}, document)


def parse_systems(data: Any, document: YamlFile | None = None) -> SystemsConfig:
    """Validate a systems document, the adapters' options included (through the registry).

    `document` is the YAML file `data` came from, for the lines of problems. Raises
    SystemsConfigError listing every problem.
    """
    file = document.path if document is not None else Path("<systems>")
    try:
        config = SystemsConfig.model_validate(data, context={OPTIONS_CHECK: validate_options})
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            location = tuple(item["loc"])
            line, column = document.position(location) if document is not None else (None, None)
            message = str(item["msg"]).removeprefix("Value error, ")
            if item["type"] not in ("missing", "model_type") and not isinstance(
                item["input"], dict | list
            ):
                message += f" (got {item['input']!r})"
            problems.append(
                ConfigProblem(
                    file, line, column, _shown(location), message, f"schema:{item['type']}"
                )
            )
        raise SystemsConfigError(problems) from None
    config._source = document
    # Both checks' problems at once: a user fixes them in one pass, not one check at a time.
    problems = config.route_problems() + config.collaboration_problems()
    if problems:
        raise SystemsConfigError(problems)
    return config


def _shown(location: tuple[str | int, ...]) -> str:
    shown = ""
    for part in location:
        if isinstance(part, int):
            shown += f"[{part}]"
        else:
            shown += f".{part}" if shown else part
    return shown
