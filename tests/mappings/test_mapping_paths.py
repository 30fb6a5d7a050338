"""Paths: the fast roads give what the compiled XPath or JMESPath gives, on any document."""

from __future__ import annotations

from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from mappings.paths import (
    PathInvalid,
    RecordElement,
    compile_jmespath,
    compile_xpath,
    value_at,
    xpath_value,
)

NS = {"p": "urn:p", "q": "urn:q"}
TAGS = ["{urn:p}A", "{urn:p}B", "{urn:q}A", "A", "B"]
XPATHS = [
    "p:A", "p:B", "q:A", "A", "p:A/p:B", "p:A/q:A/A", "@x", "@p:y", "B/A", "p:A/@x",
    "p:A/A/@p:y", "B/@x",
]  # fmt: skip


@st.composite
def documents(draw: st.DrawFn) -> etree._Element:
    root = etree.Element("{urn:p}R", nsmap={"p": "urn:p", "q": "urn:q"})
    stack = [(root, 0)]
    for _ in range(draw(st.integers(0, 25))):
        parent, depth = draw(st.sampled_from(stack))
        child = etree.SubElement(parent, draw(st.sampled_from(TAGS)))
        child.text = draw(st.sampled_from([None, "", "v", " 王 ", "0"]))
        child.tail = draw(st.sampled_from([None, "t"]))
        if draw(st.booleans()):
            child.set("x", draw(st.sampled_from(["", "1", "甲"])))
        if draw(st.booleans()):
            child.set("{urn:p}y", "2")
        if draw(st.booleans()):
            child.append(etree.Comment("c"))
        if depth < 4:
            stack.append((child, depth + 1))
    if draw(st.booleans()):
        root.set("x", "r")
    return root


@settings(max_examples=300, deadline=None)
@given(documents())
def test_fast_xml_paths_equal_xpath(root: etree._Element) -> None:
    for text in XPATHS:
        path = compile_xpath(text, NS)
        general = etree.XPath(f"string(({text})[1])", namespaces=NS)(root) or None
        assert path.value(RecordElement(root)) == general, text
        assert xpath_value(path.evaluate(root)) == general, text


JSON_PATHS = ["a", "a.b", "a.b.c", "b", "c.a"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fast_json_paths_equal_jmespath(data: Any) -> None:
    for text in JSON_PATHS:
        expected = jmespath.search(text, data)
        assert compile_jmespath(text).value(data) == (None if expected == "" else expected)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_dotted_paths_walked_without_jmespath_find_what_jmespath_finds(data: Any) -> None:
    for text in JSON_PATHS:
        assert value_at(data, text) == jmespath.search(text, data), text


def test_general_xpath_values() -> None:
    root = etree.fromstring(b'<r xmlns:p="urn:p"><p:A>1</p:A><p:A>2</p:A><B>x<C>y</C>z</B></r>')
    record = RecordElement(root)
    assert compile_xpath("count(p:A)", NS).value(record) == 2
    assert compile_xpath("p:A = '2'", NS).value(record) is True
    assert compile_xpath("concat(p:A, '-', B/C)", NS).value(record) == "1-y"
    assert compile_xpath("B", NS).value(record) == "xyz"
    assert compile_xpath("p:A[2]", NS).value(record) == "2"
    assert compile_xpath("/r/p:A", NS).value(RecordElement(root[2])) == "1"


def test_bad_paths_are_refused_with_the_reason() -> None:
    with pytest.raises(PathInvalid, match="XPath syntax error"):
        compile_xpath("p:A[", NS)
    with pytest.raises(PathInvalid, match="Undefined namespace prefix"):
        compile_xpath("z:A", NS)
    with pytest.raises(PathInvalid, match="Unregistered function"):
        compile_xpath("nofunc(p:A)", NS)
    with pytest.raises(PathInvalid, match=r"position 3: .*\(found the end\)"):
        compile_jmespath("a.[")


def test_root_paths_read_the_whole_json_payload() -> None:
    from mappings.paths import PAYLOAD_ROOT

    path = compile_jmespath("$.batchNo")
    token = PAYLOAD_ROOT.set({"batchNo": "2026030200017", "data": {}})
    try:
        assert path.value({"eventId": "x"}) == "2026030200017"
    finally:
        PAYLOAD_ROOT.reset(token)
