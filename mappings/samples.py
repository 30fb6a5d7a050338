"""Config unit tests of a system folder: each sample through its mapping, compared with expected/.

    samples/<message type>/<case>.<ext>      a payload (inbound) or a record (outbound, JSON)
    expected/<message type>/<case>.json      inbound: what the payload gives
    expected/<message type>/<case>.<xml|json>  outbound: the rendered payload

An inbound expectation is JSON: `envelopes` (each in CloudEvents structured form) and `errors`
(each with record_index, location, line, field, rule, value, source_path), or `rejected`
(kind, offset, line, column) for a payload that cannot be read. It may also hold `input`, with
the `charset` the transport would declare. Volatile attributes are left out of the
comparison: the lineage digest, and the time when the mapping has no `time` (it is when the hub
read the payload). Event ids and idempotency keys are compared: they say what the change is,
never when it was read, so a target drops a repeat by them. Messages are left out too, so a
reworded message does not fail a mapping; the rule, field and location are what is compared.

Outbound output is compared in canonical form (XML C14N 2.0 with insignificant whitespace
removed, JSON parsed), shown pretty-printed in the diff.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from mappings.coverage import ignore_problems, unread_fields
from mappings.errors import MappingEngineError, PayloadRejected
from mappings.inbound import InboundTranslation, Translation
from mappings.outbound import OutboundRendering
from mappings.system import SystemMappings
from standard.envelope import Envelope

_ERROR_KEYS = ("record_index", "location", "line", "field", "rule", "value", "source_path")
_REJECTED_KEYS = ("kind", "offset", "line", "column")


@dataclass(frozen=True)
class SampleOutcome:
    """The result of one sample: passed, or why not (a diff or a problem)."""

    system: str
    direction: str
    message_type: str
    sample: Path
    expected: Path
    passed: bool
    diff: str = ""
    problem: str = ""
    updated: bool = False


def run_samples(system: SystemMappings, *, update: bool = False) -> list[SampleOutcome]:
    """Every sample of `system` through its mapping; with `update`, write the expected files."""
    outcomes: list[SampleOutcome] = []
    samples_root = system.folder / "samples"
    if not samples_root.is_dir():
        return outcomes
    for type_folder in sorted(path for path in samples_root.iterdir() if path.is_dir()):
        message_type = type_folder.name
        for sample in sorted(path for path in type_folder.iterdir() if path.is_file()):
            if message_type in system.inbound:
                outcomes.append(
                    _inbound(system, system.inbound[message_type], sample, update=update)
                )
            elif message_type in system.outbound:
                outcomes.append(
                    _outbound(system, system.outbound[message_type], sample, update=update)
                )
            else:
                outcomes.append(
                    SampleOutcome(
                        system.id,
                        "?",
                        message_type,
                        sample,
                        sample,
                        passed=False,
                        problem=f"no mapping has message type '{message_type}' (the folder name)",
                    )
                )
    return outcomes


def sample_envelopes(system: SystemMappings) -> list[Envelope]:
    """The envelopes `system`'s inbound samples translate to (a refused payload gives none), each
    read in the charset its expected file names."""
    found: list[Envelope] = []
    for message_type, translation in system.inbound.items():
        for sample in sorted((system.folder / "samples" / message_type).glob("*")):
            expected = system.folder / "expected" / message_type / f"{sample.stem}.json"
            given = json.loads(expected.read_bytes()) if expected.is_file() else {}
            charset = (given.get("input") or {}).get("charset")
            try:
                found += translation.translate(sample.read_bytes(), charset=charset).envelopes
            except PayloadRejected:
                continue
    return found


def unread_source_fields(system: SystemMappings) -> dict[str, list[str]]:
    """Per inbound message type, the source fields present in its samples that nothing reads."""
    report: dict[str, list[str]] = {}
    for message_type, translation in system.inbound.items():
        folder = system.folder / "samples" / message_type
        payloads = [path.read_bytes() for path in sorted(folder.glob("*")) if path.is_file()]
        report[message_type] = unread_fields(translation, payloads)
    return report


def ignore_warnings(system: SystemMappings) -> dict[str, list[str]]:
    """Per inbound message type, its `ignore:` entries that its samples belie: an ignored field
    no sample contains, or one a rule reads."""
    report: dict[str, list[str]] = {}
    for message_type, translation in system.inbound.items():
        if not translation.mapping.ignore:
            continue
        folder = system.folder / "samples" / message_type
        payloads = [path.read_bytes() for path in sorted(folder.glob("*")) if path.is_file()]
        report[message_type] = ignore_problems(translation, payloads)
    return report


# --------------------------------------------------------------------------- inbound


def inbound_result(translation: InboundTranslation, payload: bytes, charset: str | None) -> Any:
    """A payload's translation in the comparable form of an expected file."""
    try:
        result = translation.translate(payload, charset=charset)
    except PayloadRejected as rejected:
        full = rejected.to_dict()
        return {"rejected": {key: full[key] for key in _REJECTED_KEYS}}
    return translation_as_data(translation, result)


def translation_as_data(translation: InboundTranslation, result: Translation) -> dict[str, Any]:
    """Envelopes and errors as plain data, volatile attributes left out."""
    volatile = {"lineagedigest"}
    if translation.mapping.envelope.time is None:
        volatile.add("time")
    envelopes = []
    for envelope in result.envelopes:
        data = json.loads(envelope.to_json())
        envelopes.append({key: value for key, value in data.items() if key not in volatile})
    errors = []
    for error in result.errors:
        full = error.to_dict()
        errors.append({key: full[key] for key in _ERROR_KEYS})
    return {"envelopes": envelopes, "errors": errors}


def _inbound(
    system: SystemMappings, translation: InboundTranslation, sample: Path, *, update: bool
) -> SampleOutcome:
    expected_path = system.folder / "expected" / translation.message_type / f"{sample.stem}.json"
    expected: dict[str, Any] | None = None
    if expected_path.is_file():
        try:
            expected = json.loads(expected_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            return _failed(system, "inbound", translation, sample, expected_path, f"{error}")
    charset = ((expected or {}).get("input") or {}).get("charset")
    try:
        actual = inbound_result(translation, sample.read_bytes(), charset)
    except MappingEngineError as error:
        return _failed(system, "inbound", translation, sample, expected_path, str(error))
    if expected is not None and "input" in expected:
        actual = {"input": expected["input"], **actual}
    if update:
        expected_path.parent.mkdir(parents=True, exist_ok=True)
        expected_path.write_text(_pretty(actual) + "\n", encoding="utf-8")
        return SampleOutcome(
            system.id,
            "inbound",
            translation.message_type,
            sample,
            expected_path,
            True,
            updated=True,
        )
    if expected is None:
        return _failed(
            system,
            "inbound",
            translation,
            sample,
            expected_path,
            "no expected file; run with --update to write it from the current result",
        )
    return _compare(
        system, "inbound", translation.message_type, sample, expected_path,
        _pretty(expected), _pretty(actual),
    )  # fmt: skip


# --------------------------------------------------------------------------- outbound


def _outbound(
    system: SystemMappings, rendering: OutboundRendering, sample: Path, *, update: bool
) -> SampleOutcome:
    suffix = ".xml" if rendering.mapping.format == "xml" else ".json"
    expected_path = system.folder / "expected" / rendering.message_type / f"{sample.stem}{suffix}"
    try:
        given = json.loads(sample.read_text(encoding="utf-8"))
        source: Any = Envelope.from_json(sample.read_bytes()) if "specversion" in given else given
        output = rendering.render(source)
    except (MappingEngineError, ValueError) as error:
        return _failed(system, "outbound", rendering, sample, expected_path, str(error))
    if update:
        expected_path.parent.mkdir(parents=True, exist_ok=True)
        expected_path.write_bytes(output)
        return SampleOutcome(
            system.id, "outbound", rendering.message_type, sample, expected_path, True, updated=True
        )
    if not expected_path.is_file():
        return _failed(
            system, "outbound", rendering, sample, expected_path,
            "no expected file; run with --update to write it from the current result",
        )  # fmt: skip
    try:
        expected_text = _canonical(expected_path.read_bytes(), rendering.mapping.format)
    except (ValueError, etree.XMLSyntaxError) as error:
        return _failed(system, "outbound", rendering, sample, expected_path, f"{error}")
    actual_text = _canonical(output, rendering.mapping.format)
    return _compare(
        system, "outbound", rendering.message_type, sample, expected_path,
        expected_text, actual_text,
    )  # fmt: skip


def _canonical(data: bytes, syntax: str) -> str:
    if syntax == "json":
        return _pretty(json.loads(data))
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    canonical = etree.canonicalize(etree.fromstring(data, parser), strip_text=True)
    tree = etree.fromstring(canonical.encode("utf-8"), parser)
    return str(etree.tostring(tree, pretty_print=True, encoding="unicode"))


# --------------------------------------------------------------------------- shared


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def _compare(
    system: SystemMappings,
    direction: str,
    message_type: str,
    sample: Path,
    expected_path: Path,
    expected: str,
    actual: str,
) -> SampleOutcome:
    if expected == actual:
        return SampleOutcome(system.id, direction, message_type, sample, expected_path, True)
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=f"expected/{message_type}/{expected_path.name}",
            tofile=f"actual ({sample.name})",
        )
    )
    return SampleOutcome(
        system.id, direction, message_type, sample, expected_path, False, diff=diff
    )


def _failed(
    system: SystemMappings,
    direction: str,
    mapping: InboundTranslation | OutboundRendering,
    sample: Path,
    expected_path: Path,
    problem: str,
) -> SampleOutcome:
    return SampleOutcome(
        system.id, direction, mapping.message_type, sample, expected_path, False, problem=problem
    )
