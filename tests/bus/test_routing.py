"""AMQP topic matching as the embedded broker does it, against RabbitMQ's documented examples."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.routing import RoutingTable, check_pattern, check_routing_key, topic_matches

# The examples of RabbitMQ's topic tutorial, and edge cases of '#' taking zero words.
CASES = [
    ("*.orange.*", "quick.orange.rabbit", True),
    ("*.*.rabbit", "quick.orange.rabbit", True),
    ("*.orange.*", "lazy.orange.elephant", True),
    ("lazy.#", "lazy.orange.elephant", True),
    ("*.orange.*", "quick.brown.fox", False),
    ("lazy.#", "lazy.brown.fox", True),
    ("*.*.rabbit", "lazy.pink.rabbit", True),
    ("lazy.#", "lazy.pink.rabbit", True),
    ("*.orange.*", "quick.orange.male.rabbit", False),
    ("*.*.rabbit", "quick.orange.male.rabbit", False),
    ("lazy.#", "lazy.orange.male.rabbit", True),
    ("*.orange.*", "orange", False),
    ("lazy.#", "lazy", True),
    ("#", "anything.at.all", True),
    ("#.#", "a", True),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.x.y", False),
    ("#.b", "b", True),
    ("*.#.*", "a", False),
    ("*.#.*", "a.b", True),
    ("penalty_case.#", "penalty_case.330100.dept_scjg", True),
    ("complaint.*.complaint_platform", "complaint.330100.complaint_platform", True),
    ("complaint.*.complaint_platform", "complaint.330100.other", False),
    ("exact.key", "exact.key", True),
    ("exact.key", "exact.keys", False),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), CASES)
def test_documented_topic_examples(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def _reference(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    """The AMQP rule written as its definition (recursive), independent of the matcher's DP."""
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_reference(rest, key[i:]) for i in range(len(key) + 1))
    return bool(key) and head in ("*", key[0]) and _reference(rest, key[1:])


@given(
    st.lists(st.sampled_from(["a", "b", "*", "#"]), min_size=1, max_size=6),
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=7),
)
def test_agrees_with_the_definition(pattern: list[str], key: list[str]) -> None:
    expected = _reference(tuple(pattern), tuple(key))
    assert topic_matches(".".join(pattern), ".".join(key)) is expected


def test_routing_table_lists_every_matching_target_once() -> None:
    table = RoutingTable(
        {"national": ["penalty_case.#", "#.dept_scjg"], "hangzhou": ["*.330100.*"], "x": ["z"]}
    )
    assert table.targets_for("penalty_case.330100.dept_scjg") == ("hangzhou", "national")
    assert table.targets_for("inspection.330200.dept_scjg") == ("national",)
    assert table.targets_for("complaint.330200.other") == ()
    assert table.targets_for("penalty_case.330100.dept_scjg") == ("hangzhou", "national")


@pytest.mark.parametrize(
    ("pattern", "complaint"),
    [
        ("", "must not be empty"),
        ("pen*.#", "'pen*' at position 1 mixes a wildcard"),
        ("a.b#", "'b#' at position 2"),
        ("a..b", "empty word at position 2"),
        ("x" * 256, "longer than 255 bytes"),
    ],
)
def test_bad_patterns_are_refused_with_the_reason(pattern: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        check_pattern(pattern)


@pytest.mark.parametrize(
    ("key", "complaint"),
    [("", "must not be empty"), ("a.*.b", "contains a wildcard"), ("k" * 300, "longer than")],
)
def test_bad_routing_keys_are_refused_with_the_reason(key: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        check_routing_key(key)
