"""YAML files that remember where each value was written, so errors can name file, line and column.

PyYAML composes a node graph in which every node carries its start mark; the data is constructed
from that graph with the safe constructor, and a location path (as pydantic reports it, e.g.
`("fields", "fine_amount", "pipe", 2)`) is resolved back to a node to find its line. This keeps
PyYAML, the reference implementation already chosen for code tables, rather than adding
ruamel.yaml, whose round-trip types would otherwise leak into the validated models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mappings.errors import MappingError

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlFile:
    """A parsed YAML file: its data and the node graph that knows where each value is."""

    path: Path
    data: Any
    root: yaml.Node | None

    def position(self, location: Sequence[str | int]) -> tuple[int | None, int | None]:
        """1-based (line, column) of the deepest node on `location` that exists in the file.

        Parts of the location that are not in the file (pydantic's union tags, for instance)
        are skipped; within a mapping the position is that of the key, which is where an
        engineer looks.
        """
        node = self.root
        if node is None:
            return None, None
        mark = node.start_mark
        for part in location:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                        node, mark = value, key.start_mark
                        break
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                node = node.value[part]
                mark = node.start_mark
        return mark.line + 1, mark.column + 1

    def error(
        self, reason: str, location: Sequence[str | int], *, field: str | None = None
    ) -> MappingError:
        """A MappingError for the value at `location` in this file."""
        line, column = self.position(location)
        return MappingError(reason, file=self.path, line=line, column=column, field=field)

    def validation_error(
        self, error: ValidationError, *, prefix: Location = (), field: str | None = None
    ) -> MappingError:
        """The first problem of a pydantic ValidationError, placed in this file."""
        first = error.errors(include_url=False)[0]
        location = (*prefix, *first["loc"])
        shown = ".".join(str(part) for part in location if _in_file(part))
        reason = f"{shown}: {first['msg']}" if shown else first["msg"]
        more = error.error_count() - 1
        if more:
            reason += f" (and {more} more problem{'s' if more > 1 else ''})"
        return self.error(reason, location, field=field)


def _in_file(part: str | int) -> bool:
    # pydantic adds tags such as "function-before[...]" or "str" for union members.
    return isinstance(part, int) or ("[" not in part and part not in {"str", "dict", "list"})


# The safe loader (plain YAML types only, no Python objects), on libyaml's parser where PyYAML
# was built with it (its wheels are): the same nodes, marks and constructor, about three times
# faster than the pure-Python scanner, which every hub start (serve, the worker, each test's
# app) pays once for each mapping file.
_Loader: type[yaml.CSafeLoader | yaml.SafeLoader] = (
    yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
)


def load_yaml(path: Path) -> YamlFile:
    """Read `path`; a YAML syntax error or a duplicate key is a MappingError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MappingError(f"cannot read the file: {error.strerror}", file=path) from None
    except UnicodeDecodeError as error:
        raise MappingError(
            f"not UTF-8: byte offset {error.start} cannot be decoded; save the file as UTF-8",
            file=path,
        ) from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path) -> YamlFile:
    """Parse YAML text that came from `path` (the path is only used in error messages)."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            _refuse_duplicate_keys(root, path)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        reason = " ".join(part for part in (error.context, error.problem) if part)
        raise MappingError(
            f"not valid YAML: {reason}",
            file=path,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as error:
        raise MappingError(f"not valid YAML: {error}", file=path) from None
    finally:
        loader.dispose()
    return YamlFile(path, data, root)


def _refuse_duplicate_keys(root: yaml.Node, path: Path) -> None:
    # PyYAML keeps the last of two equal keys silently; in a mapping that hides a mistake.
    stack = [root]
    seen_nodes: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[str, yaml.Node] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in keys and key.tag != "tag:yaml.org,2002:merge":
                        first = keys[key.value].start_mark.line + 1
                        raise MappingError(
                            f"key '{key.value}' is written twice (first on line {first})",
                            file=path,
                            line=key.start_mark.line + 1,
                            column=key.start_mark.column + 1,
                        )
                    keys[key.value] = key
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
