"""The fast path of translation gives exactly what the straightforward path gives.

`Envelope.wrap` and `Envelope.wrap_delete` derive the idempotency key and event id before the
model validates the event (``derive=True``, what the engine uses); ``derive=False`` leaves them to
the model's own derivation, the straightforward path kept as the reference. An XML field is read
by its path's cheapest reader with its pipe fused to the read (a leading `trim` done as it reads,
no list handling); the reference reads it with the compiled XPath and runs the pipe step by step
(`_combine`). Date patterns whose fields come in datetime()'s order skip the dictionary of
fields; the reference builds dates from it. Both run on every shipped sample of every system and
on generated records and attributes, valid and invalid, and their envelopes (every attribute) and
errors (every field, messages included, in order) must be equal; the envelopes' JSON bytes too.
An event the engine assembled is built without the model's validation when every attribute
certainly passes it (`_valid_as_built`); the reference validates every one. Code checks' fast
paths (`normalise_code`, `_weighted_sum`) are compared with their former code.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings import compiler
from mappings.compiler import CompiledPipe
from mappings.dateformats import DatePattern, build_date, build_datetime
from mappings.errors import PayloadRejected
from mappings.inbound import InboundTranslation
from mappings.paths import XmlPath, xpath_value
from mappings.system import SYSTEMS_ROOT, load_system
from standard import checks
from standard.checks import CREDIT_CODE_ALPHABET, DIGITS, ORG_CODE_ALPHABET
from standard.datasets import PenaltyCase, PenaltyStage
from standard.envelope import Envelope
from standard.errors import EnvelopeInvalid
from standard.types import SHANGHAI, normalise_code

READ_AT = datetime(2026, 3, 2, 10, 0, tzinfo=SHANGHAI)
PENALTY = SYSTEMS_ROOT / "eco-env-penalty"


def _read_by_xpath(
    path: XmlPath, pipe: CompiledPipe | None, default: Any, source_text: str | None
) -> Any:
    """The reference of `_read_xml`: the compiled XPath's value, then the pipe step by step."""
    return compiler._combine(
        lambda record: xpath_value(path.evaluate(record.element)), pipe, default, source_text
    )


@contextmanager
def straightforward() -> Iterator[None]:
    """Within: the engine wraps records by the reference path (``derive=False``), dates are built
    from their dictionary of fields, and mappings loaded read XML fields by the reference."""
    wrap, wrap_delete = Envelope.wrap, Envelope.wrap_delete
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Envelope, "wrap", functools.partial(wrap, derive=False))
        patch.setattr(Envelope, "wrap_delete", functools.partial(wrap_delete, derive=False))
        patch.setattr(compiler, "_read_xml", _read_by_xpath)
        patch.setattr(
            DatePattern, "parse_date", lambda self, value: _fields(build_date, self, value)
        )
        patch.setattr(
            DatePattern,
            "parse_datetime",
            lambda self, value, zone: _fields(lambda f: build_datetime(f, zone), self, value),
        )
        yield


def _fields(build: Any, pattern: DatePattern, value: str) -> Any:
    fields = pattern.parse_fields(value)
    return None if fields is None else build(fields)


@functools.cache
def _reference(system: str, message_type: str) -> InboundTranslation:
    with straightforward():
        return load_system(SYSTEMS_ROOT / system).inbound[message_type]


def outcome(translation: InboundTranslation, payload: bytes) -> Any:
    """Everything a translation gives, as comparable data: envelopes, errors, keys read."""
    try:
        result = translation.translate(payload, read_at=READ_AT)
    except PayloadRejected as rejected:
        return {"rejected": rejected.to_dict()}
    return {
        "envelopes": [(type(e), e.model_dump(), e.to_json()) for e in result.envelopes],
        "errors": [error.to_dict() for error in result.errors],
        "read": result.read,
    }


def both_paths(system: str, message_type: str, payload: bytes) -> tuple[Any, Any]:
    fast = outcome(load_system(SYSTEMS_ROOT / system).inbound[message_type], payload)
    reference_translation = _reference(system, message_type)
    with straightforward():
        reference = outcome(reference_translation, payload)
    return fast, reference


def _inbound_samples() -> list[tuple[str, str, Path]]:
    found = []
    for folder in sorted(p for p in SYSTEMS_ROOT.iterdir() if (p / "system.yaml").is_file()):
        system = load_system(folder)
        for message_type in system.inbound:
            samples = folder / "samples" / message_type
            if samples.is_dir():
                found += [(folder.name, message_type, s) for s in sorted(samples.iterdir())]
    return found


SAMPLES = _inbound_samples()


def test_the_samples_cover_every_system_with_envelopes_and_errors() -> None:
    systems = {system for system, _, _ in SAMPLES}
    assert len(systems) >= 14, systems
    outcomes = [
        outcome(load_system(SYSTEMS_ROOT / s).inbound[t], p.read_bytes()) for s, t, p in SAMPLES
    ]
    assert sum(len(o.get("envelopes", ())) for o in outcomes) >= 50
    assert sum(len(o.get("errors", ())) for o in outcomes) >= 10
    assert any(o.get("rejected") for o in outcomes)


@pytest.mark.parametrize(("system", "message_type", "sample"), SAMPLES, ids=str)
def test_every_shipped_sample_translates_the_same_both_ways(
    system: str, message_type: str, sample: Path
) -> None:
    fast, reference = both_paths(system, message_type, sample.read_bytes())
    assert fast == reference


# --------------------------------------------------------------------------- generated records

_RECORD = (PENALTY / "samples/case_batch/valid-batch.xml").read_bytes().decode("gb18030").partition(
    '  <cf:AJ CZLX="U"'
)[0] + "</cf:AJPC>\n"
_XML_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="<>&"),
    max_size=70,
)


def _one_of(*values: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(values), _XML_TEXT)


# Each replaced text of the one-record sample: kept, a value close to the rules, or any text.
_CHANGES: dict[str, st.SearchStrategy[str | None]] = {
    'CZLX="I"': _one_of('CZLX="I"', 'CZLX="U"', 'CZLX="d"', 'CZLX=" u "', 'CZLX="X"').map(
        lambda v: v if v.startswith("CZLX=") else f'CZLX="{v}"'
    ),
    "STHJT-20260302-000001": _one_of("STHJT-20260302-000001", "", " ", "A" * 129),
    "2026030200001": _one_of("2026030200001", "2026023000001", "20260302", ""),
    "HZSTHJ-2026-0012": _one_of("HZSTHJ-2026-0012", "", "K" * 129, " HZ-1 "),
    "<cf:AJZT>04</cf:AJZT>": st.sampled_from(["01", "02", "03", "04", "05", "06", "07", ""]).map(
        lambda v: f"<cf:AJZT>{v}</cf:AJZT>"
    ),
    "2026-03-02 09:15:00": _one_of(
        "2026-03-02 09:15:00", "2026-02-30 09:15:00", "2026-03-02", "1999-12-31 23:59:59"
    ),
    "<cf:LASJ>20260108</cf:LASJ>": _one_of("20260108", "20260301", "20251231", "2026-01-08").map(
        lambda v: f"<cf:LASJ>{v}</cf:LASJ>"
    ),
    "<cf:FKJE>25</cf:FKJE>": _one_of("25", "0", "-1", "0.0000001", "1e9", "abc").map(
        lambda v: f"<cf:FKJE>{v}</cf:FKJE>"
    ),
    "９１３３０１０６ＭＡ２Ｈ３Ｋ７Ｑ４Ｑ": _one_of(
        "91330106MA2H3K7Q4Q", "91330106MA2H3K7Q4X", "330106199001011234"
    ),
    "<cf:XZQH>330106</cf:XZQH>": _one_of("330106", "330199", "33010", "990000").map(
        lambda v: f"<cf:XZQH>{v}</cf:XZQH>"
    ),
}


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """The one-record sample with some of its texts replaced, or left out (the change time)."""
    text = _RECORD
    for original, strategy in _CHANGES.items():
        if draw(st.booleans()):
            text = text.replace(original, draw(strategy) or "")
    if draw(st.booleans()):
        text = text.replace("    <cf:GXSJ>2026-03-02 09:15:00</cf:GXSJ>\n", "")
    return text.encode("gb18030", errors="replace")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=records())
def test_generated_records_translate_the_same_both_ways(payload: bytes) -> None:
    fast, reference = both_paths(PENALTY.name, "case_batch", payload)
    assert fast == reference


# --------------------------------------------------------------------------- generated attributes

_RECORDS = [
    e.record()
    for e in load_system(PENALTY)
    .inbound["case_batch"]
    .translate((PENALTY / "samples/case_batch/valid-batch.xml").read_bytes())
    .envelopes
    if e.operation != "delete"
]
_TIMES = st.one_of(
    st.datetimes(timezones=st.sampled_from([None, UTC, SHANGHAI, timezone(timedelta(hours=-5))])),
    st.sampled_from(["2026-03-02T09:15:00+08:00", "not a time", 12]),
)
_ATTRIBUTES = st.fixed_dictionaries(
    {
        "source": _one_of("330000/sthjt", "", " 330000/x ", "s" * 201),
        "time": _TIMES,
        "operation": _one_of("insert", "update", "delete", "I", " u ", "D", "upsert"),
    },
    optional={
        "id": st.one_of(st.none(), _one_of("event-1", "", "i" * 129)),
        "correlationid": st.one_of(st.none(), _one_of("c-1", "c" * 129)),
        "lineagedigest": st.one_of(st.none(), _one_of("a" * 64, "A" * 64, "zz")),
        "lineagesystem": st.one_of(st.none(), _one_of("eco-env-penalty", "x" * 101)),
        "lineagelocation": st.one_of(st.none(), _XML_TEXT),
        "batchno": st.one_of(st.none(), _one_of("2026030200001", "2026023000001", "123")),
        "time_from_source": st.booleans(),
        "lineageassumed": st.one_of(st.none(), _one_of('{"name": "why"}', "[]", "{", '{"a": 1}')),
    },
)


def _wrapped(record: Any, attributes: dict[str, Any], *, derive: bool) -> Any:
    try:
        envelope = Envelope.wrap(record, derive=derive, **attributes)
    except EnvelopeInvalid as invalid:
        return ("invalid", invalid.violations)
    except ValueError as error:  # an operation that is none: the same refusal both ways
        return ("refused", str(error))
    return ("envelope", envelope.model_dump(), envelope.to_json(), envelope.model_fields_set)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(_RECORDS) - 1), attributes=_ATTRIBUTES)
def test_generated_attributes_wrap_the_same_both_ways(index: int, attributes: Any) -> None:
    record = _RECORDS[index]
    fast = _wrapped(record, attributes, derive=True)
    assert fast == _wrapped(record, attributes, derive=False)


@settings(max_examples=100, deadline=None)
@given(key=_one_of("HZ-1", "K" * 129), attributes=_ATTRIBUTES)
def test_generated_deletes_wrap_the_same_both_ways(key: str, attributes: Any) -> None:
    del attributes["operation"]
    attributes.pop("lineageassumed", None)

    def wrapped(derive: bool) -> Any:
        try:
            envelope = Envelope.wrap_delete("penalty_case", key, derive=derive, **attributes)
        except EnvelopeInvalid as invalid:
            return invalid.violations
        return (envelope.model_dump(), envelope.to_json(), envelope.model_fields_set)

    assert wrapped(True) == wrapped(False)


def test_the_stage_order_is_the_stages_declaration_order() -> None:
    """`PenaltyStage.order` reads a table; it must be the position the rules compare by."""
    assert [stage.order for stage in PenaltyStage] == list(range(len(PenaltyStage)))
    assert PenaltyCase.rules()[0].name == "mandatory at stage"


# --------------------------------------------------------------------------- code checks


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(st.text(max_size=30), st.text("0123456789ABCXabcx ９Ａ\u3000", max_size=20)))
def test_codes_normalise_as_nfkc_did(value: str) -> None:
    """`normalise_code` skips NFKC for ASCII text; the reference normalises every text."""
    assert normalise_code(value) == unicodedata.normalize("NFKC", value).strip().upper()


@settings(max_examples=500, deadline=None)
@given(
    alphabet=st.sampled_from([CREDIT_CODE_ALPHABET, ORG_CODE_ALPHABET, DIGITS]),
    data=st.data(),
)
def test_check_sums_weigh_as_before(alphabet: str, data: st.DataObject) -> None:
    """`_weighted_sum` maps over the text; the reference zips characters and weights."""
    weights = tuple(data.draw(st.lists(st.integers(1, 31), min_size=1, max_size=18)))
    text = data.draw(st.text(alphabet, min_size=len(weights), max_size=len(weights)))
    values = {char: value for value, char in enumerate(alphabet)}
    expected = sum(values[char] * weight for char, weight in zip(text, weights, strict=True))
    assert checks._weighted_sum(text, alphabet, weights) == expected
    with pytest.raises(ValueError):
        checks._weighted_sum(text + alphabet[0], alphabet, weights)
