"""How fast the mapping engine translates, against a hand-written lxml + pydantic translation.

Run: ``.venv/bin/python bench/mapping.py [--quick]``. Both translations take the same payload of
the eco-env-penalty system (one penalty case in the department's namespaced, GB2312-declared
XML) and produce the same envelopes: hardened parsing, GB18030 decoding, 万元 → 元, dates, code
tables, validation against the standard's model and the CloudEvents envelope. The hand-written
one is what an engineer would write for this one department without the engine, with fast
slicing for dates; the ratio ``engine_vs_handwritten`` (records/s of the engine over records/s
of the hand-written code, measured in the same run) is the figure that compares across machines.
The ``bare`` reference is the least a translation of that record can cost: lxml parses it and
``findtext`` reads the same fields into a plain pydantic model of text fields, with no code
tables, checks, dates or envelope; ``engine_vs_bare`` is the engine's rate over bare's.
Then a batch of 10,000 records is translated, with its peak memory (tracemalloc for Python
objects, ru_maxrss for the whole process, libxml2 included), and the same for JSON events of the
grassroots platform. Last, what a record's JSON costs after translation, on the records of every
shipped sample: its body written (``Envelope.to_amqp``) and read back (``from_amqp``), a
journal entry's detail and hash, by ``standard.json_text`` (orjson where its bytes are the
standard library's) against the standard library calls it replaced (the reference), in the same
rounds; ``record_json_vs_stdlib`` is the time of a record's (its body out and in, two entries)
over the reference's. The last line is one JSON
object with every figure.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from lxml import etree
from pydantic import BaseModel

# bench/bus.py would shadow the `bus` package (monitor.journal imports it) when this file runs as
# a script from bench/.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from mappings.samples import sample_envelopes  # noqa: E402
from mappings.system import SYSTEMS_ROOT, load_all, load_system  # noqa: E402
from monitor.journal import entry_hash  # noqa: E402
from standard import json_text  # noqa: E402
from standard.datasets import PenaltyCase  # noqa: E402
from standard.envelope import Envelope  # noqa: E402
from standard.types import SHANGHAI, wan_yuan_to_yuan  # noqa: E402

PENALTY = SYSTEMS_ROOT / "eco-env-penalty"
CF = "{http://sthjt.zj.gov.cn/schema/xzcf/2.1}"
DSR = "{http://sthjt.zj.gov.cn/schema/dsr/1.0}"

_STAGES = {"01": "lead_registered", "02": "investigation", "03": "notice", "04": "decision",
           "05": "execution", "06": "archived"}  # fmt: skip
_SOURCES = {"JCFX": "1", "TSJB": "2", "BMYS": "3", "SJJB": "4", "XJBQ": "5", "MTPG": "6",
            "ZDJD": "7", "JCJC": "8", "QT": "9"}  # fmt: skip
_KINDS = {"JG": "01", "TBPP": "02", "FK": "03", "MSWFSD": "04", "MSFFCW": "05", "ZKXKZ": "06",
          "JDZZDJ": "07", "DXXKZ": "08", "XZSCJY": "09", "ZLTCZY": "10", "ZLGB": "11",
          "XZCY": "12", "XZJL": "13", "QT": "99"}  # fmt: skip
_CATEGORIES = {"FR": "1", "FFRZZ": "1", "ZRR": "2", "GTGSH": "3"}
_CERTIFICATES = {"TYSHXYDM": "001", "ZZJGDM": "002", "SFZ": "111", "HZ": "414", "QT": "990"}
_CLOSING = {"ZXWB": "1", "BYCF": "2", "YSSF": "3", "ZJZX": "4", "BYLA": "5", "CXLA": "6"}
_EXECUTION = {"ZJLX": "1", "SQFYQZZX": "2", "XZJGQZZX": "3", "DCSJ": "4", "QT": "9"}
_RESULTS = {"QBLX": "1", "BFLX": "2", "WLX": "3", "ZJZX": "4"}
_YES_NO = {"是": True, "否": False, "1": True, "0": False, "Y": True, "N": False}
_OPERATIONS = {"I": "insert", "U": "update", "D": "delete"}
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

_PARSER = etree.XMLParser(
    encoding="utf-8", resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)


# --------------------------------------------------------------------------- hand-written


def _text(element: Any, path: str) -> str | None:
    value = element.findtext(path)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _day(text: str | None) -> date | None:
    return date(int(text[:4]), int(text[4:6]), int(text[6:8])) if text else None


def _midnight(text: str | None) -> datetime | None:
    return (
        datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), tzinfo=SHANGHAI) if text else None
    )


def _wan_yuan(text: str | None) -> Decimal | None:
    return wan_yuan_to_yuan(Decimal(text.replace(",", ""))) if text else None


def _flag(text: str | None) -> bool | None:
    return _YES_NO[text] if text else None


def handwritten(payload: bytes) -> list[Envelope]:
    """The eco-env-penalty batch translated by hand: lxml, dictionaries, pydantic, envelope."""
    if len(payload) > 32 * 1024 * 1024 or b"<!DOCTYPE" in payload[:4096]:
        raise ValueError("refused")
    import hashlib

    digest = hashlib.sha256(payload).hexdigest()
    root = etree.fromstring(payload.decode("gb18030").encode("utf-8"), _PARSER)
    batch_no = root.get("PCH")
    sent = root.get("FSSJ")
    report_time = datetime.strptime(sent, "%Y%m%d%H%M%S").replace(tzinfo=SHANGHAI) if sent else None
    envelopes = []
    for index, case in enumerate(root.iterfind(f"{CF}AJ")):
        operation = _OPERATIONS[(case.get("CZLX") or "").strip().upper()]
        changed = _text(case, f"{CF}GXSJ")
        time_ = datetime.strptime(changed, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
        key = _text(case, f"{CF}AJBH")
        location = f"(/cf:AJPC/cf:AJ)[{index + 1}]"
        common = dict(source="330000/sthjt", time=time_, id=case.get("JLID"), batchno=batch_no,
                      lineagedigest=digest, lineagesystem="eco-env-penalty",
                      lineagelocation=location)  # fmt: skip
        if operation == "delete":
            envelopes.append(Envelope.wrap_delete("penalty_case", key or "", **common))
            continue
        party = case.find(f"{DSR}DSR")
        code = _text(party, f"{DSR}ZJHM") if party is not None else None
        fsh = case.find(f"{CF}FZSH")
        jttl = case.find(f"{CF}JTTL")
        closing = case.find(f"{CF}JA")
        data = {
            "penalty_id": key,
            "catalogue_code": _text(case, f"{CF}SXBM"),
            "name": _text(case, f"{CF}AJMC"),
            "stage": _STAGES[_text(case, f"{CF}AJZT") or ""],
            "case_source": _SOURCES[_text(case, f"{CF}AJLY") or ""],
            "implementing_organ": _text(case, f"{CF}ZFJG"),
            "implementing_organ_code": _text(case, f"{CF}ZFJGDM"),
            "supervised_object": _text(case, f"{CF}JGDX"),
            "inspection_id": _text(case, f"{CF}JCBH"),
            "party": {
                "name": _text(party, f"{DSR}MC"),
                "category": _CATEGORIES[_text(party, f"{DSR}LB") or ""],
                "certificate_type": _CERTIFICATES[_text(party, f"{DSR}ZJLX") or ""],
                "certificate_code": code.translate(_FULL_WIDTH).upper() if code else None,
                "legal_representative": _text(party, f"{DSR}FDDBR"),
                "registered_address": _text(party, f"{DSR}ZCDZ"),
            },
            "region_code": _text(case, f"{CF}XZQH"),
            "lead_time": _midnight(_text(case, f"{CF}AYDJRQ")),
            "illegal_facts": _text(case, f"{CF}WFSS"),
            "legal_basis": _text(case, f"{CF}CFYJ"),
            "procedure": {"JY": "1", "YB": "2"}.get(_text(case, f"{CF}CFCX") or ""),
            "hearing_held": _flag(_text(case, f"{CF}SFTZ")) or False,
            "criminal": _flag(_text(case, f"{CF}SFSX")) or False,
            "major_case": _flag(_text(case, f"{CF}SFZDAJ")),
            "filing_time": _midnight(_text(case, f"{CF}LASJ")),
            "legal_review": _flag(fsh.get("SF")) if fsh is not None else None,
            "legal_review_date": _day(_text(fsh, f"{CF}RQ")) if fsh is not None else None,
            "legal_review_opinion": _text(fsh, f"{CF}YJ") if fsh is not None else None,
            "collective_discussion": _flag(jttl.get("SF")) if jttl is not None else None,
            "collective_discussion_date": _day(_text(jttl, f"{CF}RQ"))
            if jttl is not None
            else None,
            "collective_discussion_conclusion": _text(jttl, f"{CF}JL")
            if jttl is not None
            else None,
            "decision_number": _text(case, f"{CF}CFJDSWH"),
            "decision_date": _day(_text(case, f"{CF}CFJDRQ")),
            "penalty_kinds": [_KINDS[k.text.strip()] for k in case.iterfind(f"{CF}CFZL/{CF}ZL")]
            or None,
            "penalty_result": _text(case, f"{CF}CFJG"),
            "fine_amount": _wan_yuan(_text(case, f"{CF}FKJE")),
            "confiscated_amount": _wan_yuan(_text(case, f"{CF}MSJE")),
            "report_time": report_time,
            "reporter": _text(case, f"{CF}TBR"),
        }
        if closing is not None:
            data |= {
                "closing_mode": _CLOSING.get(_text(closing, f"{CF}JAFS") or ""),
                "execution_mode": _EXECUTION.get(_text(closing, f"{CF}ZXFS") or ""),
                "execution_result": _RESULTS.get(_text(closing, f"{CF}ZXJG") or ""),
                "fine_paid": _wan_yuan(_text(closing, f"{CF}SJFK")),
                "closing_date": _day(_text(closing, f"{CF}JARQ")),
            }
        record = PenaltyCase.model_validate({k: v for k, v in data.items() if v is not None})
        envelopes.append(Envelope.wrap(record, operation=operation, **common))
    return envelopes


# --------------------------------------------------------------------------- bare


class BareParty(BaseModel):
    """The party's fields as the payload writes them: text, unchecked."""

    name: str | None = None
    category: str | None = None
    certificate_type: str | None = None
    certificate_code: str | None = None
    legal_representative: str | None = None
    registered_address: str | None = None


class BarePenaltyCase(BaseModel):
    """The fields `handwritten` reads, as the payload writes them: text, unchecked."""

    operation: str | None = None
    changed: str | None = None
    penalty_id: str | None = None
    catalogue_code: str | None = None
    name: str | None = None
    stage: str | None = None
    case_source: str | None = None
    implementing_organ: str | None = None
    implementing_organ_code: str | None = None
    supervised_object: str | None = None
    inspection_id: str | None = None
    party: BareParty | None = None
    region_code: str | None = None
    lead_time: str | None = None
    illegal_facts: str | None = None
    legal_basis: str | None = None
    procedure: str | None = None
    hearing_held: str | None = None
    criminal: str | None = None
    major_case: str | None = None
    filing_time: str | None = None
    legal_review: str | None = None
    legal_review_date: str | None = None
    legal_review_opinion: str | None = None
    collective_discussion: str | None = None
    collective_discussion_date: str | None = None
    collective_discussion_conclusion: str | None = None
    decision_number: str | None = None
    decision_date: str | None = None
    penalty_kinds: list[str] | None = None
    penalty_result: str | None = None
    fine_amount: str | None = None
    confiscated_amount: str | None = None
    reporter: str | None = None
    closing_mode: str | None = None
    execution_mode: str | None = None
    execution_result: str | None = None
    fine_paid: str | None = None
    closing_date: str | None = None


def _read(element: Any, fields: dict[str, str]) -> dict[str, str]:
    return {name: text for name, path in fields.items() if (text := element.findtext(path))}


_CASE_FIELDS = {"changed": f"{CF}GXSJ", "penalty_id": f"{CF}AJBH", "catalogue_code": f"{CF}SXBM",
                "name": f"{CF}AJMC", "stage": f"{CF}AJZT", "case_source": f"{CF}AJLY",
                "implementing_organ": f"{CF}ZFJG", "implementing_organ_code": f"{CF}ZFJGDM",
                "supervised_object": f"{CF}JGDX", "inspection_id": f"{CF}JCBH",
                "region_code": f"{CF}XZQH", "lead_time": f"{CF}AYDJRQ",
                "illegal_facts": f"{CF}WFSS", "legal_basis": f"{CF}CFYJ",
                "procedure": f"{CF}CFCX", "hearing_held": f"{CF}SFTZ", "criminal": f"{CF}SFSX",
                "major_case": f"{CF}SFZDAJ", "filing_time": f"{CF}LASJ",
                "legal_review_date": f"{CF}FZSH/{CF}RQ", "legal_review_opinion": f"{CF}FZSH/{CF}YJ",
                "collective_discussion_date": f"{CF}JTTL/{CF}RQ",
                "collective_discussion_conclusion": f"{CF}JTTL/{CF}JL",
                "decision_number": f"{CF}CFJDSWH", "decision_date": f"{CF}CFJDRQ",
                "penalty_result": f"{CF}CFJG", "fine_amount": f"{CF}FKJE",
                "confiscated_amount": f"{CF}MSJE", "reporter": f"{CF}TBR",
                "closing_mode": f"{CF}JA/{CF}JAFS", "execution_mode": f"{CF}JA/{CF}ZXFS",
                "execution_result": f"{CF}JA/{CF}ZXJG", "fine_paid": f"{CF}JA/{CF}SJFK",
                "closing_date": f"{CF}JA/{CF}JARQ"}  # fmt: skip
_PARTY_FIELDS = {"name": f"{DSR}MC", "category": f"{DSR}LB", "certificate_type": f"{DSR}ZJLX",
                 "certificate_code": f"{DSR}ZJHM", "legal_representative": f"{DSR}FDDBR",
                 "registered_address": f"{DSR}ZCDZ"}  # fmt: skip


def bare(payload: bytes) -> list[BarePenaltyCase]:
    """The same records read as plainly as lxml and pydantic allow: the least translation costs.

    The payload is decoded and parsed as `handwritten` does; each case's fields are read with
    findtext into a model of text fields. No code tables, dates, amounts, checks or envelope.
    """
    root = etree.fromstring(payload.decode("gb18030").encode("utf-8"), _PARSER)
    records = []
    for case in root.iterfind(f"{CF}AJ"):
        data: dict[str, Any] = _read(case, _CASE_FIELDS)
        data["operation"] = case.get("CZLX")
        party = case.find(f"{DSR}DSR")
        if party is not None:
            data["party"] = _read(party, _PARTY_FIELDS)
        for name, path in (("legal_review", f"{CF}FZSH"), ("collective_discussion", f"{CF}JTTL")):
            element = case.find(path)
            if element is not None:
                data[name] = element.get("SF")
        kinds = [kind.text for kind in case.iterfind(f"{CF}CFZL/{CF}ZL") if kind.text]
        if kinds:
            data["penalty_kinds"] = kinds
        records.append(BarePenaltyCase.model_validate(data))
    return records


# --------------------------------------------------------------------------- payloads


def _one_record_payload() -> bytes:
    text = (PENALTY / "samples/case_batch/valid-batch.xml").read_bytes().decode("gb18030")
    head, _, _ = text.partition('  <cf:AJ CZLX="U"')
    return (head + "</cf:AJPC>\n").encode("gb18030")


def _batch_payload(count: int) -> bytes:
    text = (PENALTY / "samples/case_batch/valid-batch.xml").read_bytes().decode("gb18030")
    start = text.index('  <cf:AJ CZLX="I"')
    end = text.index('  <cf:AJ CZLX="D"')
    cases = [text[start:end].split("  </cf:AJ>\n")[0], text[start:end].split("  </cf:AJ>\n")[1]]
    parts = [text[:start]]
    for number in range(count):
        case = cases[number % 2] + "  </cf:AJ>\n"
        case = case.replace("HZSTHJ-2026-0012", f"HZSTHJ-2026-{number:06d}")
        case = case.replace("NBSTHJ-2025-0187", f"NBSTHJ-2025-{number:06d}")
        parts.append(case.replace("STHJT-20260302-00000", f"STHJT-{number:08d}-"))
    parts.append("</cf:AJPC>\n")
    return "".join(parts).encode("gb18030")


def _events_payload(count: int) -> bytes:
    data = json.loads(
        (SYSTEMS_ROOT / "grassroots-platform/samples/event_report/valid-events.json").read_bytes()
    )
    first, second = data["data"]["events"][:2]
    data["data"]["events"] = [
        dict((first, second)[n % 2], eventId=f"SJ3301062026{n:08d}") for n in range(count)
    ]
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------- timing


def _rates(works: dict[str, Callable[[], int]], seconds: float) -> dict[str, float]:
    """Records per second of each `work` (which returns how many records it translated).

    Rounds of the works alternate, so a neighbour's load on the machine falls on all of them,
    and the best round of each counts: the least disturbed measure of what the code costs.
    """
    best = dict.fromkeys(works, 0.0)
    for work in works.values():
        work()
    deadline = time.perf_counter() + seconds * len(works)
    while time.perf_counter() < deadline:
        for name, work in works.items():
            started = time.perf_counter()
            records = 0
            for _ in range(20):
                records += work()
            best[name] = max(best[name], records / (time.perf_counter() - started))
    return best


def _maxrss_mib() -> float:
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / (1024 * 1024)


def _batch(translate: Callable[[bytes], Any], payload: bytes, count: int) -> dict[str, float]:
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    result = translate(payload)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(result.envelopes) == count and not result.errors, result.errors[:3]
    del result
    gc.collect()
    started = time.perf_counter()
    result = translate(payload)  # untraced, for the rate
    untraced = time.perf_counter() - started
    del result
    return {
        "records_per_s": round(count / untraced),
        "seconds": round(untraced, 3),
        "seconds_traced": round(elapsed, 3),
        "payload_mib": round(len(payload) / 2**20, 2),
        "tracemalloc_peak_mib": round(peak / 2**20, 1),
    }


_STDLIB_HASH = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _stdlib_entry_hash(prev_hash: str, row: tuple[Any, ...]) -> str:
    """The journal's entry hash as the standard library wrote its JSON (the reference)."""
    content = _STDLIB_HASH.encode(list(row))
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


def _record_json(seconds: float) -> dict[str, float]:
    """µs per record of the record's JSON by the standard library and by json_text."""
    envelopes = [e for system in load_all(SYSTEMS_ROOT).values() for e in sample_envelopes(system)]
    data = [envelope.data for envelope in envelopes]
    bodies = [json_text.compact(record) for record in data]
    # A `received` entry's detail: the record's key, its completeness, its named credit codes.
    detail = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str)
    details = [
        {"subject": e.subject, "filled": 9, "optional": 14,
         "credit_codes": {"credit_code": "91330106MA2KL7P366",
                          "authority_credit_code": "113301060025641254"}}
        for e in envelopes
    ]  # fmt: skip
    rows = [
        (n, "2026-12-07T21:00:00.000000+00:00", "received", e.id, f"r-{n}", "market-penalty",
         None, e.type, None, None, detail.encode(d))
        for n, (e, d) in enumerate(zip(envelopes, details, strict=True))
    ]  # fmt: skip
    assert all(json_text.spaced_sorted(d, str) == detail.encode(d) for d in details)
    for record, body in zip(data, bodies, strict=True):
        assert body == json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    assert all(entry_hash("0" * 64, r) == _stdlib_entry_hash("0" * 64, r) for r in rows)
    works: dict[str, Callable[[], int]] = {
        "dumps_stdlib": lambda: len(
            [json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() for r in data]
        ),
        "dumps_json_text": lambda: len([json_text.compact(r) for r in data]),
        "loads_stdlib": lambda: len([json.loads(b) for b in bodies]),
        "loads_json_text": lambda: len([json_text.loads(b) for b in bodies]),
        "hash_stdlib": lambda: len([_stdlib_entry_hash("0" * 64, r) for r in rows]),
        "hash_json_text": lambda: len([entry_hash("0" * 64, r) for r in rows]),
        "detail_stdlib": lambda: len([detail.encode(d) for d in details]),
        "detail_json_text": lambda: len([json_text.spaced_sorted(d, str) for d in details]),
    }
    rates = _rates(works, seconds / 2)
    micro = {name: 1e6 / rate for name, rate in rates.items()}
    # A record: its body written and read once, two journal entries (received, published).
    reference = micro["dumps_stdlib"] + micro["loads_stdlib"]
    reference += 2 * (micro["hash_stdlib"] + micro["detail_stdlib"])
    ours = micro["dumps_json_text"] + micro["loads_json_text"]
    ours += 2 * (micro["hash_json_text"] + micro["detail_json_text"])
    print(f"a record's JSON, {len(data)} records of the shipped samples (µs per record):")
    for step in ("dumps", "loads", "hash", "detail"):
        old, new = micro[f"{step}_stdlib"], micro[f"{step}_json_text"]
        print(f"  {step:6} standard library (reference) {old:6.2f}   json_text {new:6.2f}")
    saved = reference - ours
    print(
        f"  a record (body out and in, two entries): {reference:.2f} → {ours:.2f} µs ({saved:.2f})"
    )
    figures = {f"record_{name}_us": round(value, 3) for name, value in micro.items()}
    figures["record_json_saved_us"] = round(saved, 2)
    figures["record_json_vs_stdlib"] = round(ours / reference, 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Shorter timing rounds.")
    parser.add_argument("--records", type=int, default=10_000, help="Records in the batch.")
    options = parser.parse_args()
    seconds = 1.0 if options.quick else 4.0

    system = load_system(PENALTY)
    one = _one_record_payload()
    engine_result = system.translate("case_batch", one)
    hand_result = handwritten(one)
    assert not engine_result.errors and len(engine_result.envelopes) == 1
    assert engine_result.envelopes[0].data == hand_result[0].data, "translations differ"
    bare_result = bare(one)
    assert len(bare_result) == 1 and bare_result[0].penalty_id == engine_result.envelopes[0].subject

    rates = _rates(
        {
            "handwritten": lambda: len(handwritten(one)),
            "bare": lambda: len(bare(one)),
            "engine": lambda: len(system.translate("case_batch", one).envelopes),
        },
        seconds,
    )
    hand_rate, engine_rate = rates["handwritten"], rates["engine"]
    bare_rate = rates["bare"]
    ratio = engine_rate / hand_rate
    print(f"one record, bare lxml findtext + pydantic: {bare_rate:10.0f} records/s")
    print(f"one record, hand-written lxml + pydantic:  {hand_rate:10.0f} records/s")
    print(f"one record, mapping engine:                {engine_rate:10.0f} records/s")
    print(f"engine / hand-written:                     {ratio:10.2f}")
    print(f"engine / bare:                             {engine_rate / bare_rate:10.2f}")

    rss_before = _maxrss_mib()
    batch = _batch_payload(options.records)
    xml_batch = _batch(lambda p: system.translate("case_batch", p), batch, options.records)
    print(
        f"{options.records} records in one XML batch ({xml_batch['payload_mib']} MiB): "
        f"{xml_batch['records_per_s']} records/s, {xml_batch['seconds']} s, "
        f"tracemalloc peak {xml_batch['tracemalloc_peak_mib']} MiB"
    )
    del batch
    events = load_system(SYSTEMS_ROOT / "grassroots-platform")
    payload = _events_payload(options.records)
    json_batch = _batch(lambda p: events.translate("event_report", p), payload, options.records)
    print(
        f"{options.records} JSON events in one request ({json_batch['payload_mib']} MiB): "
        f"{json_batch['records_per_s']} records/s, "
        f"tracemalloc peak {json_batch['tracemalloc_peak_mib']} MiB"
    )
    rss_after = _maxrss_mib()
    print(f"process peak RSS: {rss_after:.1f} MiB (before the batches {rss_before:.1f} MiB)")
    record_json = _record_json(seconds)
    figures = {
        "handwritten_records_per_s": round(hand_rate),
        "engine_records_per_s": round(engine_rate),
        "engine_vs_handwritten": round(ratio, 3),
        "bare_records_per_s": round(bare_rate),
        "engine_vs_bare": round(engine_rate / bare_rate, 3),
        "batch_records": options.records,
        "xml_batch_records_per_s": xml_batch["records_per_s"],
        "xml_batch_seconds": xml_batch["seconds"],
        "xml_batch_payload_mib": xml_batch["payload_mib"],
        "xml_batch_tracemalloc_peak_mib": xml_batch["tracemalloc_peak_mib"],
        "json_batch_records_per_s": json_batch["records_per_s"],
        "json_batch_payload_mib": json_batch["payload_mib"],
        "json_batch_tracemalloc_peak_mib": json_batch["tracemalloc_peak_mib"],
        "peak_rss_mib": round(rss_after, 1),
        "peak_rss_before_batches_mib": round(rss_before, 1),
        **record_json,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
