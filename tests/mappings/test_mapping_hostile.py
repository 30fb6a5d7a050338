"""Hostile and broken payloads are refused with a clear reason and never reach a record."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from mappings.decoding import codec_of, encode_as_declared
from mappings.errors import (
    EncodingMismatch,
    ForbiddenMarkup,
    MalformedPayload,
    PayloadRejected,
    PayloadTooDeep,
    PayloadTooLarge,
    PayloadTooManyRecords,
)
from mappings.inbound import InboundTranslation
from mappings.payloads import PayloadLimits, parse_json, parse_xml
from mappings.system import SYSTEMS_ROOT, SystemMappings, load_all

NS = 'xmlns:cf="http://sthjt.zj.gov.cn/schema/xzcf/2.1"'
LIMITS = PayloadLimits()


def _batch(name: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<cf:AJPC {NS} PCH="2026030300001">'
        f'<cf:AJ CZLX="I" JLID="X"><cf:AJMC>{name}</cf:AJMC></cf:AJ></cf:AJPC>'
    ).encode()


def test_billion_laughs_is_refused_before_expansion(penalty_system: SystemMappings) -> None:
    entities = ['<!ENTITY l0 "lol">'] + [
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
    ]
    payload = (
        '<?xml version="1.0"?>\n<!DOCTYPE cf:AJPC [' + "".join(entities) + "]>\n"
    ).encode() + _batch("&l9;").split(b"\n", 1)[1]
    with pytest.raises(ForbiddenMarkup) as caught:
        penalty_system.translate("case_batch", payload)
    assert caught.value.line == 2
    assert caught.value.system == "eco-env-penalty"
    assert "DOCTYPE" in str(caught.value)


def test_quadratic_blowup_is_refused(penalty_system: SystemMappings) -> None:
    big = "x" * 50_000
    payload = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "{big}">]>'.encode()
        + _batch("&a;" * 5_000).split(b"\n", 1)[1]
    )
    with pytest.raises(ForbiddenMarkup):
        penalty_system.translate("case_batch", payload)


def test_external_entity_to_a_local_file_never_reads_it(
    penalty_system: SystemMappings, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-7f3a9c", encoding="utf-8")
    payload = (
        f'<?xml version="1.0"?><!DOCTYPE cf:AJPC [<!ENTITY s SYSTEM "{secret.as_uri()}">]>'
    ).encode() + _batch("&s;").split(b"\n", 1)[1]
    with pytest.raises(PayloadRejected) as caught:
        penalty_system.translate("case_batch", payload)
    assert "TOP-SECRET" not in str(caught.value)
    assert "TOP-SECRET" not in repr(caught.value.to_dict())


def test_an_undeclared_entity_without_doctype_is_malformed(penalty_system: SystemMappings) -> None:
    with pytest.raises(MalformedPayload) as caught:
        penalty_system.translate("case_batch", _batch("&passwd;"))
    assert "passwd" in str(caught.value)


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _CountingHandler.hits.append(self.path)
        body = b"<!ENTITY leaked 'FETCHED-FROM-NETWORK'>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def entity_server() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _CountingHandler)
    _CountingHandler.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_external_entity_to_a_url_fetches_nothing(
    penalty_system: SystemMappings, entity_server: str
) -> None:
    for declaration in (
        f'<!DOCTYPE cf:AJPC [<!ENTITY e SYSTEM "{entity_server}/entity">]>',
        f'<!DOCTYPE cf:AJPC SYSTEM "{entity_server}/dtd">',
        f'<!DOCTYPE cf:AJPC [<!ENTITY % p SYSTEM "{entity_server}/param"> %p;]>',
    ):
        payload = f'<?xml version="1.0"?>{declaration}'.encode() + _batch("&e;").split(b"\n", 1)[1]
        with pytest.raises(ForbiddenMarkup):
            penalty_system.translate("case_batch", payload)
    # Also through the parser directly, with the DOCTYPE hidden behind a comment and a PI.
    hidden = (
        f'<?xml version="1.0"?><!-- note --><?pi x?>\n<!DOCTYPE r SYSTEM "{entity_server}/x"><r/>'
    ).encode()
    with pytest.raises(ForbiddenMarkup):
        parse_xml(hidden, LIMITS)
    assert _CountingHandler.hits == []


def test_gbk_bytes_declared_utf8_name_the_byte_offset(penalty_system: SystemMappings) -> None:
    text = _batch("杭州恒远化工有限公司").decode()
    payload = text.encode("gbk")
    with pytest.raises(EncodingMismatch) as caught:
        penalty_system.translate("case_batch", payload)
    offset = payload.index("杭".encode("gbk"))
    assert caught.value.offset == offset
    assert f"offset {offset}" in str(caught.value)
    assert "GB18030" in str(caught.value)


def test_gb2312_declared_payload_decodes_as_gb18030() -> None:
    # 䶮 (U+4DAE) is outside GB2312 and GBK; only GB18030 encodes it.
    payload = '<?xml version="1.0" encoding="gb2312"?><r>刘䶮</r>'.encode("gb18030")
    assert parse_xml(payload, LIMITS).text == "刘䶮"


def test_declaration_wins_over_the_transport_charset() -> None:
    payload = '<?xml version="1.0" encoding="GBK"?><r>王</r>'.encode("gbk")
    assert parse_xml(payload, LIMITS, charset="utf-8").text == "王"


def test_transport_charset_applies_without_declaration() -> None:
    payload = "<r>王</r>".encode("gbk")
    assert parse_xml(payload, LIMITS, charset="GB2312").text == "王"
    with pytest.raises(EncodingMismatch):
        parse_xml(payload, LIMITS)


def test_byte_order_marks_win() -> None:
    for codec in ("utf-8-sig", "utf-16", "utf-32"):
        payload = '<?xml version="1.0" encoding="gbk"?><r>王</r>'.encode(codec)
        assert parse_xml(payload, LIMITS, charset="latin-1").text == "王", codec


def test_unknown_encoding_is_named() -> None:
    with pytest.raises(EncodingMismatch, match="unknown encoding 'klingon'"):
        parse_xml(b'<?xml version="1.0" encoding="klingon"?><r/>', LIMITS)


def test_charset_labels_name_their_codec_gb2312_and_gbk_as_gb18030() -> None:
    assert [codec_of(label) for label in ("GB2312", "gbk", " CP936 ", "GB18030")] == ["gb18030"] * 4
    assert codec_of("UTF8") == "utf-8"
    with pytest.raises(LookupError):
        codec_of("klingon")


def test_text_encoded_as_declared_decodes_back_to_itself() -> None:
    # 䶮 (U+4DAE) is outside GB2312: a gb2312 label is written as GB18030, which holds it.
    declared = '<?xml version="1.0" encoding="gb2312"?><r>刘䶮</r>'
    assert encode_as_declared(declared) == declared.encode("gb18030")
    for text in (
        declared,
        "<?xml version='1.0' encoding='GBK'?><r>王</r>",
        '<?xml version="1.0" encoding="latin-1"?><r>é</r>',
        '\ufeff<?xml version="1.0"?><r>王</r>',
        "<r>王</r>",
    ):
        parsed = parse_xml(encode_as_declared(text), LIMITS)
        assert parsed.text == text.rpartition("<r>")[2].removesuffix("</r>"), text
    assert encode_as_declared('\ufeff<?xml version="1.0"?><r/>')[:1] == b"<"
    indented = '\n  <?xml version="1.0" encoding="latin-1"?><r>é</r>'
    assert encode_as_declared(indented) == indented.encode("latin-1")


def test_text_declaring_what_cannot_be_written_is_utf8_for_the_decoder_to_name() -> None:
    for label in ("klingon", "UTF-16"):
        text = f'<?xml version="1.0" encoding="{label}"?><r>王</r>'
        assert encode_as_declared(text) == text.encode("utf-8")
        with pytest.raises(EncodingMismatch, match=label):
            parse_xml(encode_as_declared(text), LIMITS)


def test_text_its_declared_encoding_cannot_hold_names_the_label_and_character() -> None:
    with pytest.raises(UnicodeEncodeError) as caught:
        encode_as_declared('\ufeff<?xml version="1.0" encoding="ISO-8859-1"?><r>中</r>')
    error = caught.value
    assert error.encoding == "ISO-8859-1"
    assert error.object.startswith("<?xml")  # the mark is not part of the text encoded
    assert error.object[error.start] == "中"


def test_oversized_payload_is_refused_before_parsing() -> None:
    limits = PayloadLimits(max_bytes=1_000)
    with pytest.raises(PayloadTooLarge, match="1001 bytes"):
        parse_xml(b"<r>" + b"x" * 994 + b"</r>", limits)
    with pytest.raises(PayloadTooLarge):
        parse_json(b"[" + b"1," * 500 + b"1]", limits)


def test_deep_xml_is_refused_at_the_configured_depth() -> None:
    limits = PayloadLimits(max_depth=5)
    assert parse_xml(b"<a>" * 5 + b"</a>" * 5, limits).tag == "a"
    with pytest.raises(PayloadTooDeep):
        parse_xml(b"<a>" * 6 + b"</a>" * 6, limits)
    with pytest.raises(PayloadTooDeep):
        parse_xml(b"<a>" * 10_000 + b"</a>" * 10_000, limits)


def test_deep_json_is_refused_at_the_configured_depth() -> None:
    limits = PayloadLimits(max_depth=5)
    assert parse_json(b"[" * 5 + b"]" * 5, limits) == [[[[[]]]]]
    with pytest.raises(PayloadTooDeep):
        parse_json(b'{"a":' * 6 + b"1" + b"}" * 6, limits)
    with pytest.raises(PayloadTooDeep):
        parse_json(b"[" * 100_000 + b"]" * 100_000, limits)


def test_json_non_numbers_and_syntax_errors_are_malformed() -> None:
    for text in (b'{"a": NaN}', b'{"a": -Infinity}'):
        with pytest.raises(MalformedPayload, match="not a JSON number"):
            parse_json(text, LIMITS)
    with pytest.raises(MalformedPayload) as caught:
        parse_json(b'{"a": 1,\n "b": }', LIMITS)
    assert (caught.value.line, caught.value.column) == (2, 7)


def test_json_with_a_repeated_name_is_malformed_wherever_it_is() -> None:
    for text in (b'{"fkje": 100, "fkje": 10000}', b'{"data": [{"a": 1}, {"b": 2, "b": 2}]}'):
        with pytest.raises(MalformedPayload, match="appears twice in one object"):
            parse_json(text, LIMITS)
    # The same name in different objects is no repetition.
    assert parse_json(b'[{"a": 1}, {"a": 2}]', LIMITS) == [{"a": 1}, {"a": 2}]


def test_json_numbers_with_fractions_are_exact() -> None:
    from decimal import Decimal

    assert parse_json(b'{"fine": 0.1, "n": 3}', LIMITS) == {"fine": Decimal("0.1"), "n": 3}


def test_malformed_xml_names_line_and_column(penalty_system: SystemMappings) -> None:
    with pytest.raises(MalformedPayload) as caught:
        penalty_system.translate("case_batch", b"<a>\n<b></a>")
    assert caught.value.line == 2
    assert caught.value.message_type == "case_batch"


def test_the_parser_itself_resolves_no_entity(tmp_path: Path, entity_server: str) -> None:
    """Defence in depth: were a DOCTYPE to slip past the prolog check, nothing is expanded."""
    from lxml import etree

    from mappings.payloads import _xml_parser

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-7f3a9c", encoding="utf-8")
    payload = (
        f'<!DOCTYPE r [<!ENTITY s SYSTEM "{secret.as_uri()}">'
        f'<!ENTITY u SYSTEM "{entity_server}/u">]><r>&s;&u;</r>'
    ).encode()
    root = etree.fromstring(payload, _xml_parser())
    assert "TOP-SECRET" not in etree.tostring(root).decode()
    text = "".join(root.itertext())
    assert "TOP-SECRET" not in text and "FETCHED" not in text
    assert _CountingHandler.hits == []


@pytest.mark.parametrize(
    ("system", "message_type", "name"),
    [
        ("eco-env-penalty", "case_batch", "valid-batch"),  # XML, 3 records
        ("agri-penalty", "case_records", "valid-records"),  # JSON
    ],
)
def test_more_records_than_allowed_are_refused_before_any_is_translated(
    system: str, message_type: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mappings = load_all()[system]
    payload = next((SYSTEMS_ROOT / system / "samples" / message_type).glob(f"{name}.*"))
    body = payload.read_bytes()
    records = len(mappings.translate(message_type, body).envelopes)
    assert records >= 2

    def translated(*_: object) -> None:
        raise AssertionError("a record was translated")

    monkeypatch.setattr(InboundTranslation, "_translate_record", translated)
    with pytest.raises(PayloadTooManyRecords) as refused:
        mappings.translate(message_type, body, max_records=records - 1)
    error = refused.value
    assert (error.records, error.limit, error.kind) == (records, records - 1, "too-many-records")
    assert f"system {system}, message type {message_type}: too-many-records" in str(error)
    assert f"{records} records, more than the {records - 1}" in str(error)
