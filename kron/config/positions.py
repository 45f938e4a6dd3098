"""Where a field is written in a file's text: line and column, for the problems that name it.

The parsed data keeps no positions (tomllib none at all), so they are read from the text once
per file, on its first problem, and every later problem of the file is a lookup: a file with
a thousand bad list items is not parsed a thousand times.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["Places", "TomlPlaces", "YamlPlaces"]


class Places:
    """Positions of the fields of one file's text."""

    def locate(self, pointer: Sequence[str | int]) -> tuple[int | None, int | None]:
        raise NotImplementedError


class YamlPlaces(Places):
    """The YAML node tree, composed once; each table's keys indexed when first asked."""

    def __init__(self, text: str) -> None:
        import yaml

        try:
            # The C composer where there is one: the text is composed once per file with errors.
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            self.root: Any = yaml.compose(text, Loader=loader)
        except (yaml.YAMLError, ValueError, RecursionError):
            self.root = None
        self.tables: dict[int, dict[str, tuple[Any, Any]]] = {}

    def _keys(self, node: Any) -> dict[str, tuple[Any, Any]]:
        keys = self.tables.get(id(node))
        if keys is None:
            keys = {}
            for key_node, value_node in node.value:
                keys.setdefault(str(key_node.value), (key_node, value_node))
            self.tables[id(node)] = keys
        return keys

    def locate(self, pointer: Sequence[str | int]) -> tuple[int | None, int | None]:
        import yaml

        node = self.root
        if node is None:
            return None, None
        mark = node.start_mark
        for part in pointer:
            if isinstance(node, yaml.MappingNode):
                found = self._keys(node).get(str(part))
                if found is None:
                    break
                mark, node = found[0].start_mark, found[1]
            elif isinstance(node, yaml.SequenceNode) and str(part).isdigit():
                index = int(part)
                if index >= len(node.value):
                    break
                node = node.value[index]
                mark = node.start_mark
            else:
                break
        return mark.line + 1, mark.column + 1


_TOML_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_TOML_KEY = re.compile(
    r"""^(\s*)((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)
_TOML_INLINE_KEY = re.compile(r"""[{,]\s*([A-Za-z0-9_-]+|"[^"]*")\s*=""")


def _split_key(dotted: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", dotted)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


class TomlPlaces(Places):
    """Best-effort lines of keys: tomllib keeps no positions, so headers and keys are read by
    hand, once per file."""

    def __init__(self, text: str) -> None:
        self.found = _toml_keys(text)

    def locate(self, pointer: Sequence[str | int]) -> tuple[int | None, int | None]:
        parts = [str(p) for p in pointer]
        for end in range(len(parts), 0, -1):
            hit = self.found.get(tuple(parts[:end]))
            if hit:
                return hit
        return None, None


def _toml_keys(text: str) -> dict[tuple[str, ...], tuple[int, int]]:
    found: dict[tuple[str, ...], tuple[int, int]] = {}
    table: list[str] = []
    array_counts: dict[tuple[str, ...], int] = {}
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        header = _TOML_HEADER.match(line)
        if header:
            names = _split_key(header.group(2))
            if header.group(1) == "[[":
                index = array_counts.get(tuple(names), 0)
                array_counts[tuple(names)] = index + 1
                table = [*names, str(index)]
            else:
                table = names
            found.setdefault(tuple(table), (number, line.index("[") + 1))
            continue
        key = _TOML_KEY.match(line)
        if not key:
            continue
        full = (*table, *_split_key(key.group(2)))
        found.setdefault(full, (number, len(key.group(1)) + 1))
        rest = line[key.end() :]
        for inline in _TOML_INLINE_KEY.finditer(rest):
            name = inline.group(1).strip('"')
            found.setdefault((*full, name), (number, key.end() + inline.start(1) + 1))
        for quote in ('"""', "'''"):
            if rest.count(quote) == 1:
                in_multiline = quote
    return found
