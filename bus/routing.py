"""AMQP topic routing: which binding patterns match a routing key (`*` one word, `#` zero or more).

The embedded broker routes with this; RabbitMQ routes itself. Both apply the same validation rule
to patterns (`check_pattern`), which the topology calls when it is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

MAX_KEY_BYTES = 255  # AMQP short string: routing keys and binding keys longer than this are refused


def check_pattern(pattern: str) -> str:
    """Return `pattern` if it is a usable binding pattern, else raise ValueError saying why.

    Words are separated by dots; `*` and `#` are wildcards only as whole words (RabbitMQ would
    treat `pen*` as the literal word "pen*", which is never what a configuration means).
    """
    if not pattern:
        raise ValueError("a route pattern must not be empty")
    if len(pattern.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"route pattern {pattern!r} is longer than {MAX_KEY_BYTES} bytes")
    for position, word in enumerate(pattern.split("."), start=1):
        if word in ("*", "#"):
            continue
        if not word:
            raise ValueError(f"route pattern {pattern!r} has an empty word at position {position}")
        if "*" in word or "#" in word:
            raise ValueError(
                f"route pattern {pattern!r}: word {word!r} at position {position} mixes a "
                "wildcard with text; '*' and '#' must stand alone between dots"
            )
    return pattern


def check_routing_key(routing_key: str) -> str:
    """Return `routing_key` if it can be published, else raise ValueError saying why."""
    if not routing_key:
        raise ValueError("the routing key must not be empty")
    if len(routing_key.encode()) > MAX_KEY_BYTES:
        raise ValueError(
            f"routing key {routing_key[:60]!r}... is longer than {MAX_KEY_BYTES} bytes"
        )
    if "*" in routing_key or "#" in routing_key:
        raise ValueError(
            f"routing key {routing_key!r} contains a wildcard ('*' or '#'); "
            "wildcards belong in route patterns, not in keys"
        )
    return routing_key


def topic_matches(pattern: str, routing_key: str) -> bool:
    """True when the AMQP topic `pattern` matches `routing_key`."""
    return _matches(tuple(pattern.split(".")), tuple(routing_key.split(".")))


@lru_cache(maxsize=4096)
def _matches(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    # reachable[j]: the pattern words seen so far can consume exactly the first j key words.
    reachable = [True] + [False] * len(key)
    for word in pattern:
        if word == "#":
            # '#' takes zero or more words: once a prefix is reachable, every longer one is.
            for j in range(1, len(key) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            for j in range(len(key), 0, -1):
                reachable[j] = reachable[j - 1] and (word == "*" or word == key[j - 1])
            reachable[0] = False
    return reachable[len(key)]


def topics_overlap(pattern: str, other: str) -> bool:
    """True when some routing key matches both topic patterns (each may hold `*` and `#`).

    The load-time question "could any key this channel publishes reach that route?" is this
    one: a channel's keys are themselves a pattern (its dataset and source fixed, the region
    any word).
    """
    return _overlap(tuple(pattern.split(".")), tuple(other.split(".")))


@lru_cache(maxsize=4096)
def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    if not a or not b:
        # What is left of the other side must be able to match no word at all.
        return all(word == "#" for word in a + b)
    if a[0] == "#":
        # Either '#' matches nothing here, or it swallows the other side's first word.
        return _overlap(a[1:], b) or _overlap(a, b[1:])
    if b[0] == "#":
        return _overlap(a, b[1:]) or _overlap(a[1:], b)
    if a[0] == "*" or b[0] == "*" or a[0] == b[0]:
        return _overlap(a[1:], b[1:])
    return False


class RoutingTable:
    """Binding patterns per target, with the answer for each routing key cached.

    Routing keys repeat a lot (dataset x region x source), so the cache makes routing one dict
    lookup in the steady state.
    """

    def __init__(self, bindings: Mapping[str, Iterable[str]]) -> None:
        self._bindings = {target: tuple(patterns) for target, patterns in bindings.items()}
        self._cache: dict[str, tuple[str, ...]] = {}

    def targets_for(self, routing_key: str) -> tuple[str, ...]:
        """The targets (sorted by name) with at least one pattern matching `routing_key`."""
        found = self._cache.get(routing_key)
        if found is None:
            found = tuple(
                sorted(
                    target
                    for target, patterns in self._bindings.items()
                    if any(topic_matches(p, routing_key) for p in patterns)
                )
            )
            if len(self._cache) > 65_536:
                self._cache.clear()
            self._cache[routing_key] = found
        return found
