"""Which cross-checks reject, which warn, which are off: the rules file, and the judging by it.

The file (`config/rules.yaml`; another with JGHUB_RULES_FILE) gives each rule of
`reference.rules.RULES` a disposition, and may give a system its own:

    rules:
      catalogue-item-in-force: reject
      random-inspection-has-plan: warn
    systems:                                  # per sending system, over the rules above
      hrss-penalty:
        inspector-certificate-valid: warn

A rule the file does not name keeps its default. An unknown rule name or disposition, or
anything but those two sections, is refused when the file is loaded (RulesFileError lists every
problem with file:line:column); `jghub systems check` reports them with the systems file's and
names a system the systems file does not have.

`CrossChecks` judges a record of a system with the rules its dataset and the system's
dispositions select: a rule whose lists were never fed says "not checked" instead of judging.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from mappings import MappingError
from mappings.yamlsource import YamlFile, load_yaml
from reference.lists import LIST_DATASETS, ListName, ReferenceLists
from reference.rules import DISPOSITIONS, RULES, Disposition, Rule, RuleFinding, record_day
from standard.envelope import Envelope, Operation

SECTIONS = ("rules", "systems")
"""The sections a rules file may have."""


class RulesFileError(ValueError):
    """The rules file cannot be used; `problems` lists each with file, line and field (as the
    mapping files' problems are told: `MappingError`)."""

    def __init__(self, problems: Sequence[MappingError]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        heading = f"{count} problem{'s' if count != 1 else ''} in the rules file"
        super().__init__(heading + ":\n" + "\n".join(f"  {p}" for p in self.problems))


@dataclass(frozen=True)
class Rulebook:
    """Each rule's disposition, and the systems' own (see the module docstring).

    Attributes: `dispositions`, by rule name (every rule: the defaults filled in);
    `overrides`, by system id then rule name; `file`, where they were read (None: defaults);
    `override_lines`, the line of each system's overrides in it.
    """

    dispositions: Mapping[str, Disposition] = field(
        default_factory=lambda: {name: rule.default for name, rule in RULES.items()}
    )
    overrides: Mapping[str, Mapping[str, Disposition]] = field(default_factory=dict)
    file: Path | None = None
    override_lines: Mapping[str, int | None] = field(default_factory=dict)

    def disposition(self, system: str, rule: str) -> Disposition:
        """What `rule`'s findings do to a record of `system`."""
        own = self.overrides.get(system, {})
        return own.get(rule, self.dispositions[rule])

    def series(self, channels: Iterable[tuple[str, str]]) -> list[tuple[str, str, str]]:
        """(system, rule, disposition) of each rule that judges the records of `channels`
        ((system, dataset) pairs), with "unchecked" for a rule needing a list: the series of
        `jghub_rule_findings_total` a hub with these channels may count."""
        found: dict[tuple[str, str, str], None] = {}
        for system, dataset in channels:
            for rule in RULES.values():
                disposition = self.disposition(system, rule.name)
                if dataset not in rule.datasets or disposition == "off":
                    continue
                found[(system, rule.name, disposition)] = None
                if rule.needs:
                    found[(system, rule.name, "unchecked")] = None
        return list(found)

    @classmethod
    def load(cls, path: Path | None) -> Rulebook:
        """The rulebook of the file at `path`; the defaults when None. RulesFileError lists
        every problem with its line (a file that cannot be read is one)."""
        if path is None:
            return cls()
        try:
            document = load_yaml(path)
        except MappingError as error:
            raise RulesFileError([error]) from None
        return _parse(document)


def _parse(document: YamlFile) -> Rulebook:
    problems: list[MappingError] = []

    def problem(reason: str, *location: str) -> None:
        problems.append(document.error(reason, location, field=".".join(location) or None))

    def table(value: Any, *location: str) -> dict[str, Disposition]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            problem("must map rule names to reject, warn or off", *location)
            return {}
        found: dict[str, Disposition] = {}
        for name, written in value.items():
            # YAML 1.1 reads an unquoted `off` as false: taken for what was written.
            disposition = "off" if written is False else written
            if name not in RULES:
                problem(f"no rule is named {name!r} (rules: {', '.join(RULES)})", *location, name)
            elif disposition not in DISPOSITIONS:
                problem(
                    f"disposition {disposition!r} is none of {', '.join(DISPOSITIONS)}",
                    *location,
                    name,
                )
            else:
                found[name] = cast(Disposition, disposition)
        return found

    data = document.data if document.data is not None else {}
    if not isinstance(data, dict):
        problem(f"must be a mapping with the sections {' and '.join(SECTIONS)}")
        raise RulesFileError(problems)
    for section in data:
        if section not in SECTIONS:
            problem(f"unknown section (sections: {', '.join(SECTIONS)})", str(section))
    dispositions = {name: rule.default for name, rule in RULES.items()}
    dispositions.update(table(data.get("rules"), "rules"))
    systems = data.get("systems") or {}
    overrides: dict[str, dict[str, Disposition]] = {}
    lines: dict[str, int | None] = {}
    if not isinstance(systems, dict):
        problem("must map system ids to their rules' dispositions", "systems")
    else:
        for system, own in systems.items():
            overrides[str(system)] = table(own, "systems", str(system))
            lines[str(system)] = document.position(("systems", str(system)))[0]
    if problems:
        raise RulesFileError(problems)
    return Rulebook(dispositions, overrides, document.path, lines)


@dataclass(frozen=True)
class Verdict:
    """What the cross-checks said of one record: the findings that reject it, those that warn,
    and the rules that could not judge it (a list they need was never fed)."""

    rejections: tuple[RuleFinding, ...] = ()
    warnings: tuple[RuleFinding, ...] = ()
    unchecked: tuple[str, ...] = ()


CLEAN = Verdict()


class CrossChecks:
    """The rules of a rulebook applied with the reference lists; thread-safe (reads only).

    Parameters:
      rulebook: each rule's disposition, per system.
      lists: the reference lists the rules read (`reference.lists`); a list never fed makes
        the rules needing it say "not checked".
    """

    def __init__(self, rulebook: Rulebook, lists: ReferenceLists) -> None:
        self.rulebook = rulebook
        self.lists = lists
        self._chosen: dict[tuple[str, str], tuple[tuple[Rule, Disposition], ...]] = {}

    def judge(self, system: str, envelope: Envelope) -> Verdict:
        """The verdict on one record of `system` (a delete, carrying only its key, is clean)."""
        (verdict,) = self.verdicts(system, [envelope])
        return verdict

    def verdicts(self, system: str, envelopes: Sequence[Envelope]) -> list[Verdict]:
        """The verdict on each of `envelopes`, records of `system` (one payload's): which lists
        were fed is asked once for all of them."""
        fed = {name for name in LIST_DATASETS if self.lists.loaded(name)}
        return [self._verdict(system, envelope, fed) for envelope in envelopes]

    def _verdict(self, system: str, envelope: Envelope, fed: Set[ListName]) -> Verdict:
        if envelope.operation is Operation.DELETE:
            return CLEAN
        dataset = envelope.spec.name
        chosen = self._rules(system, dataset)
        if not chosen:
            return CLEAN
        rejections: list[RuleFinding] = []
        warnings: list[RuleFinding] = []
        unchecked: list[str] = []
        data = envelope.data
        day = record_day(dataset, data)  # read once for every rule
        for rule, disposition in chosen:
            if not all(name in fed for name in rule.needs):
                unchecked.append(rule.name)
                continue
            found = rule.judge(dataset, data, self.lists, day=day)
            (rejections if disposition == "reject" else warnings).extend(found)
        if not (rejections or warnings or unchecked):
            return CLEAN
        return Verdict(tuple(rejections), tuple(warnings), tuple(unchecked))

    def _rules(self, system: str, dataset: str) -> tuple[tuple[Rule, Disposition], ...]:
        """The rules that apply to `dataset` and are not off for `system`, with their
        dispositions; chosen once per pair (the hot path asks for every record)."""
        key = (system, dataset)
        chosen = self._chosen.get(key)
        if chosen is None:
            chosen = self._chosen[key] = tuple(
                (rule, disposition)
                for rule in RULES.values()
                if dataset in rule.datasets
                and (disposition := self.rulebook.disposition(system, rule.name)) != "off"
            )
        return chosen
