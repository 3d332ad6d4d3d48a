"""Read a topology file's YAML into plain data, within bounds, or raise `TopologyError`.

PyYAML's `SafeLoader` builds only plain values, but it trusts its input in other ways: it
lets a repeated key silently win, expands aliases without limit (a "billion laughs" file
of a few hundred bytes stands for more values than memory holds), recurses once per level
of nesting, and lets `ValueError`, `KeyError` or `AttributeError` escape for values its
tags cannot hold (`!!bool maybe`, an integer of 5000 digits). `read_yaml_file` adds the
bounds of `fl_crb.topology.limits`: the file's size, its encoding, the values it expands
to, its aliases, its depth and the length of its numbers; and it admits only the tags a
topology needs (strings, numbers, booleans, null, lists and mappings). Every problem is a
`TopologyError` naming the file and, where PyYAML knows it, the line and column.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from fl_crb.topology.limits import (
    MAX_FILE_BYTES,
    MAX_NUMBER_CHARS,
    MAX_YAML_ALIASES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
)
from fl_crb.topology.model import TopologyError
from fl_crb.topology.units import shown

_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {f"{_TAG}{kind}" for kind in ("null", "bool", "int", "float", "str", "seq", "map")}
"""Tags a topology file's values may carry; dates, sets, binary and the like are refused."""
_NUMBER_TAGS = {f"{_TAG}int", f"{_TAG}float"}


def read_yaml_file(source: Path) -> object:
    """The YAML document in the file at `source`, as plain data."""
    origin = str(source)
    data = _read_bytes(source, origin)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise TopologyError(
            origin,
            "",
            f"byte {error.start} (line {line}) is {data[error.start : error.end]!r}, which is "
            "not UTF-8; expected a UTF-8 text file: save it as UTF-8",
        ) from None
    try:
        return _construct(text, origin)
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        raise TopologyError(
            origin,
            "",
            f"line {line}: character #x{error.character:04x} at offset {error.position} is "
            "not allowed in YAML; expected printable text",
        ) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(p for p in (error.context, error.problem) if p)
        raise TopologyError(origin, "", f"{where}invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise TopologyError(origin, "", f"invalid YAML: {error}") from None


def _construct(text: str, origin: str) -> object:
    """The single document in `text`, built by a `_BoundedLoader`."""
    loader = _BoundedLoader(text, origin)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_bytes(source: Path, origin: str) -> bytes:
    """The file's bytes, refusing a file over `MAX_FILE_BYTES` without reading it all."""
    try:
        with source.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise TopologyError(origin, "", f"cannot read the file: {error.strerror}") from error
    except ValueError as error:  # a path with a NUL byte
        raise TopologyError(origin, "", f"cannot read the file: {error}") from error
    if len(data) > MAX_FILE_BYTES:
        raise TopologyError(
            origin,
            "",
            f"holds more than {MAX_FILE_BYTES} bytes (1 MiB); a topology file is a few kB: "
            "check that the path names a topology file",
        )
    return data


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader within the bounds of `fl_crb.topology.limits` that rejects duplicate
    keys and values its tags cannot hold."""

    def __init__(self, text: str, origin: str) -> None:
        super().__init__(text)
        self._origin = origin
        self._depth = 0
        """Collections open around the node being composed."""
        self._nodes = 0
        """Values composed so far, each alias counted as the values it stands for."""
        self._aliases = 0
        """Aliases composed so far."""
        self._anchored_nodes: dict[int, int] = {}
        """Expanded value count of each anchored node (by id) once it is complete."""

    def _refuse(self, event: yaml.Event, problem: str) -> TopologyError:
        mark = event.start_mark
        return TopologyError(
            self._origin, "", f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
        )

    def _count(self, nodes: int, event: yaml.Event) -> None:
        self._nodes += nodes
        if self._nodes > MAX_YAML_NODES:
            raise self._refuse(
                event,
                f"the document expands to more than {MAX_YAML_NODES} values (aliases "
                "`*name` count as the value they repeat); expected a topology of at most "
                "that size: write fewer aliases, or write the values out",
            )

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        """Compose as PyYAML does, counting values, aliases and depth against the limits."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is reported by PyYAML
                nodes = self._anchored_nodes.get(id(target))
                if nodes is None:
                    raise self._refuse(
                        event,
                        f"alias *{event.anchor} stands inside the value &{event.anchor} "
                        "names; expected no value to contain itself",
                    )
                self._aliases += 1
                if self._aliases > MAX_YAML_ALIASES:
                    raise self._refuse(
                        event,
                        f"more than {MAX_YAML_ALIASES} aliases (`*name`); expected at most "
                        f"{MAX_YAML_ALIASES}, one per host at the most",
                    )
                self._count(nodes, event)
            return super().compose_node(parent, index)
        if self._depth >= MAX_YAML_DEPTH:
            raise self._refuse(
                event,
                f"values nest more than {MAX_YAML_DEPTH} deep; expected a topology, which "
                "nests 6 deep (terminals.overrides.t1.workload.size.min)",
            )
        self._count(1, event)
        nodes_before = self._nodes - 1
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if event.anchor is not None:
            self._anchored_nodes[id(node)] = self._nodes - nodes_before
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Construct as PyYAML does, for the plain tags only; a value its tag cannot hold
        (`!!int abc`, `!!bool maybe`) is a `ConstructorError` at the value."""
        if node.tag not in _PLAIN_TAGS:
            raise ConstructorError(
                None,
                None,
                f"found {shown(node.value) if isinstance(node, yaml.ScalarNode) else 'a value'}"
                f" tagged {node.tag.replace(_TAG, '!!')}, which topology files do not use; "
                "expected strings, numbers, booleans, lists and mappings (quote a string "
                "that reads as a date)",
                node.start_mark,
            )
        is_number = node.tag in _NUMBER_TAGS and isinstance(node, yaml.ScalarNode)
        if is_number and len(node.value) > MAX_NUMBER_CHARS:
            raise ConstructorError(
                None,
                None,
                f"found a number of {len(node.value)} characters; expected at most "
                f"{MAX_NUMBER_CHARS} (write large numbers with an exponent)",
                node.start_mark,
            )
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, IndexError, OverflowError):  # int(), float(), bool table
            kind = node.tag.replace(_TAG, "")
            raise ConstructorError(
                None,
                None,
                f"cannot read {shown(node.value)} as a {kind}; expected a {kind} or a quoted "
                "string",
                node.start_mark,
            ) from None

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        """A mapping, refusing duplicate keys, which PyYAML would silently let win."""
        if not isinstance(node, yaml.MappingNode):
            raise ConstructorError(
                None, None, f"expected a mapping, but found {node.id}", node.start_mark
            )
        seen: set[object] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != f"{_TAG}merge":
                key = self.construct_object(key_node)
                if not isinstance(key, Hashable):
                    continue  # PyYAML reports the unhashable key
                if key in seen:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {shown(key)}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)
