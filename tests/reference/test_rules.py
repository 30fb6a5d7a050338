"""The cross-checks on the shipped samples: each rule accepts the good record and finds the bad
one, naming the field path, the value, the rule and the day; a list never fed judges nothing."""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import cache
from pathlib import Path

import pytest

from mappings.system import SYSTEMS_ROOT, SystemMappings, load_system
from reference.lists import CatalogueEntry, InMemoryLists, ObjectEntry, OfficerEntry
from reference.rulebook import CrossChecks, Rulebook, RulesFileError
from reference.rules import RULES, record_day
from standard.envelope import Envelope

UPDATED = datetime.fromisoformat("2026-03-01T10:00:00+08:00")


@cache
def _system(name: str) -> SystemMappings:
    return load_system(SYSTEMS_ROOT / name)


def translated(system: str, message_type: str, name: str, *, edit: dict | None = None) -> list:
    """The envelopes of a shipped sample (JSON samples: `edit` sets keys of its first item)."""
    payload = (SYSTEMS_ROOT / system / "samples" / message_type / name).read_bytes()
    if edit is not None:
        page = json.loads(payload)
        page["items"][0].update(edit)
        payload = json.dumps(page, ensure_ascii=False).encode()
    translation = _system(system).translate(message_type, payload)
    assert not translation.errors, translation.errors
    return [e for e in translation.envelopes if e.operation.value != "delete"]


def officer(number: str, *, status: str = "1", until: str = "2030-12-31") -> OfficerEntry:
    return OfficerEntry(
        certificate_number=number,
        officer_id=f"o-{number}",
        name="楼建平",
        agency="义乌市人力资源和社会保障局",
        status=status,
        certificate_issued=date(2020, 1, 1),
        certificate_valid_until=date.fromisoformat(until),
        updated_time=UPDATED,
    )


def item(code: str, *, status: str = "1", since: str = "2020-01-01", until: str | None = None):
    return CatalogueEntry(
        code=code,
        name="劳动保障监察",
        status=status,
        valid_from=date.fromisoformat(since),
        valid_until=date.fromisoformat(until) if until else None,
        updated_time=UPDATED,
    )


def thing(code: str, *, in_draw: bool = True) -> ObjectEntry:
    return ObjectEntry(
        object_id=f"obj-{code}",
        certificate_code=code,
        name="平阳宏达劳务派遣有限公司",
        region_code="330326",
        in_random_draw=in_draw,
        updated_time=UPDATED,
    )


def officers_of(envelopes: list[Envelope]) -> dict[str, OfficerEntry]:
    return {
        i["certificate_number"]: officer(i["certificate_number"])
        for e in envelopes
        for i in e.data["inspectors"]
    }


def judge(rule: str, envelope: Envelope, lists: InMemoryLists) -> list[tuple[str, object, str]]:
    found = RULES[rule].judge(envelope.spec.name, envelope.data, lists)
    return [(f.field, f.value, f.message) for f in found]


INSPECTIONS = ("hrss-penalty", "inspection_feed", "valid-page.json")


def test_inspector_certificates_valid_on_the_inspection_day_pass() -> None:
    envelopes = translated(*INSPECTIONS)
    lists = InMemoryLists(officers=officers_of(envelopes))
    assert [judge("inspector-certificate-valid", e, lists) for e in envelopes] == [[], [], []]


def test_an_unknown_certificate_is_found_with_its_field_path() -> None:
    good = translated(*INSPECTIONS)
    lists = InMemoryLists(officers=officers_of(good))
    inspectors = [{"name": "楼建平", "cert_no": "ZJ33078210008"}, {"name": "金敏", "cert_no": "X"}]
    (first, *_) = translated(*INSPECTIONS, edit={"inspectors": inspectors})
    ((path, value, message),) = judge("inspector-certificate-valid", first, lists)
    assert (path, value) == ("inspectors[1].certificate_number", "X")
    assert message == ("inspector-certificate-valid: certificate X is not in the officer list")


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (officer("ZJ33078210017", until="2026-03-25"), "valid 2020-01-01 to 2026-03-25"),
        (officer("ZJ33078210017", status="3"), "status 3"),
    ],
)
def test_a_certificate_expired_or_cancelled_on_the_inspection_day_is_found(
    entry: OfficerEntry, why: str
) -> None:
    (first, *_) = translated(*INSPECTIONS)
    lists = InMemoryLists(officers={**officers_of([first]), entry.certificate_number: entry})
    ((path, value, message),) = judge("inspector-certificate-valid", first, lists)
    assert (path, value) == ("inspectors[1].certificate_number", "ZJ33078210017")
    assert "not valid on 2026-03-26 (inspection_time)" in message and why in message


def test_catalogue_item_in_force_on_the_inspection_day() -> None:
    (first, *_) = translated(*INSPECTIONS)
    code = first.data["catalogue_code"]
    in_force = InMemoryLists(catalogue={code: item(code)})
    assert judge("catalogue-item-in-force", first, in_force) == []
    repealed = InMemoryLists(catalogue={code: item(code, status="3", until="2026-02-28")})
    ((path, value, message),) = judge("catalogue-item-in-force", first, repealed)
    assert (path, value) == ("catalogue_code", code)
    assert "not in force on 2026-03-26 (inspection_time)" in message
    assert "status 3, valid 2020-01-01 to 2026-02-28" in message
    unknown = InMemoryLists(catalogue={"33000000000000": item("33000000000000")})
    assert "is not in the catalogue" in judge("catalogue-item-in-force", first, unknown)[0][2]


def test_a_penalty_case_is_judged_on_its_decision_day_else_its_filing() -> None:
    cases = translated("agri-penalty", "case_records", "valid-records.json")
    decided = cases[0]
    assert str(record_day("penalty_case", decided.data)) == "2026-02-13 (decision_date)"
    code = decided.data["catalogue_code"]
    # In force from the day after the decision: not in force when it was decided.
    lists = InMemoryLists(catalogue={code: item(code, since="2026-02-14")})
    ((_, _, message),) = judge("catalogue-item-in-force", decided, lists)
    assert "on 2026-02-13 (decision_date)" in message
    filed = {k: v for k, v in decided.data.items() if k != "decision_date"}
    assert str(record_day("penalty_case", filed)) == "2026-01-09 (filing_time)"


def test_a_random_inspection_names_its_plan() -> None:
    envelopes = translated(*INSPECTIONS)
    random = [e for e in envelopes if e.data["inspection_category"] == "1"]
    assert random and random[0].data["plan_id"]
    assert [judge("random-inspection-has-plan", e, InMemoryLists()) for e in envelopes] == [
        [],
        [],
        [],
    ]
    no_plan = random[0].model_copy(update={"data": {**random[0].data, "plan_id": None}})
    ((path, value, message),) = judge("random-inspection-has-plan", no_plan, InMemoryLists())
    assert (path, value) == ("plan_id", None)
    assert message.startswith("random-inspection-has-plan: a 双随机 inspection")
    assert "2026-04-09 (inspection_time)" in message


def test_a_party_outside_the_supervised_objects_or_the_draw_pool_is_found() -> None:
    envelopes = translated(*INSPECTIONS)
    (random,) = [e for e in envelopes if e.data["inspection_category"] == "1"]
    code = random.data["party"]["certificate_code"]
    listed = InMemoryLists(objects={code: thing(code)})
    assert judge("party-in-supervised-objects", random, listed) == []
    ((_, value, message),) = judge(
        "party-in-supervised-objects", random, InMemoryLists(objects={"x": thing("x")})
    )
    assert value == code and "is not in the supervised-object list" in message
    outside = InMemoryLists(objects={code: thing(code, in_draw=False)})
    ((_, _, message),) = judge("party-in-supervised-objects", random, outside)
    assert "not in the 双随机 draw pool" in message


def test_a_rule_whose_list_was_never_fed_does_not_judge() -> None:
    (first, *_) = translated(*INSPECTIONS)
    checks = CrossChecks(Rulebook(), InMemoryLists())
    verdict = checks.judge("hrss-penalty", first)
    assert verdict.rejections == () and verdict.warnings == ()
    assert set(verdict.unchecked) == {
        "catalogue-item-in-force", "inspector-certificate-valid", "party-in-supervised-objects"
    }  # fmt: skip


def test_the_rulebook_decides_reject_warn_or_off_per_system(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  inspector-certificate-valid: reject\n  party-in-supervised-objects: off\n"
        "systems:\n  hrss-penalty:\n    inspector-certificate-valid: warn\n",
        encoding="utf-8",
    )
    inspectors = [{"name": "楼建平", "cert_no": "ZJ33078210008"}, {"name": "金敏", "cert_no": "X"}]
    (first, *_) = translated(*INSPECTIONS, edit={"inspectors": inspectors})
    lists = InMemoryLists(officers={"ZJ33078210008": officer("ZJ33078210008")})
    checks = CrossChecks(Rulebook.load(rules), lists)
    refused = checks.judge("other-system", first)
    assert [f.rule for f in refused.rejections] == ["inspector-certificate-valid"]
    warned = checks.judge("hrss-penalty", first)
    assert warned.rejections == () and [f.field for f in warned.warnings] == [
        "inspectors[1].certificate_number"
    ]
    # off: not asked, so not "not checked" either.
    assert "party-in-supervised-objects" not in warned.unchecked


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("rules:\n  catalogue-item-in-force: reject\n  certificate-valid: warn\n", 3,
         "no rule is named 'certificate-valid'"),
        ("rules:\n  catalogue-item-in-force: refuse\n", 2,
         "disposition 'refuse' is none of reject, warn, off"),
        ("rules: {}\nsystem:\n  national: {}\n", 2, "unknown section"),
        ("systems:\n  national:\n    random-inspection-has-plan: maybe\n", 3,
         "disposition 'maybe'"),
        ("rules: [reject]\n", 1, "must map rule names"),
        ("rules:\n  a: [\n", None, "not valid YAML"),
    ],
)  # fmt: skip
def test_a_wrong_rules_file_is_refused_with_file_and_line(
    tmp_path: Path, text: str, line: int | None, expected: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text, encoding="utf-8")
    with pytest.raises(RulesFileError) as raised:
        Rulebook.load(rules)
    (problem,) = raised.value.problems
    assert expected in str(problem)
    if line is not None:
        assert problem.line == line and f"{rules}:{line}:" in str(raised.value)


def test_the_shipped_rules_file_names_every_rule_with_its_default() -> None:
    shipped = Rulebook.load(Path(__file__).resolve().parents[2] / "config" / "rules.yaml")
    assert dict(shipped.dispositions) == {name: rule.default for name, rule in RULES.items()}
