"""Keys that landed in a free-form table by mistake.

In TOML a key belongs to the last `[table]` opened before it: appending `metrics = "..."` at
the end of a kron.toml that ends with `[defaults.tags]` makes it a tag, and nothing refuses a
tag named `metrics`. A key of a free-form table (tags, env, headers) that is also the name of a
field of the file is reported as a warning.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from kron.config.schema import load_schema

__all__ = ["misplaced_keys"]

Path_ = tuple[str, ...]  # a free-form table's place in a file; "*" stands for any list index


@functools.cache
def _free_form(name: str) -> tuple[Path_, ...]:
    """Where the schema `name` has tables of arbitrary keys."""
    found: list[Path_] = []

    def walk(node: Any, at: Path_) -> None:
        if not isinstance(node, dict):
            return
        if node.get("type") == "object" and "properties" not in node:
            found.append(at)
        for key, sub in node.get("properties", {}).items():
            walk(sub, (*at, key))
        if isinstance(node.get("items"), dict):
            walk(node["items"], (*at, "*"))
        for sub in node.get("oneOf", []) + node.get("anyOf", []):
            walk(sub, at)

    walk(load_schema(name), ())
    return tuple(found)


@functools.cache
def _fields(name: str) -> frozenset[str]:
    return frozenset(load_schema(name).get("properties", {}))


def misplaced_keys(name: str, data: Mapping[str, Any]) -> list[tuple[list[str | int], str]]:
    """(pointer, message) for every key of a free-form table named like a field of the file.

    Args:
        name: the file's schema, `job` or `kron` (kron.toml's [defaults] holds job fields).
        data: the parsed file.
    """
    tables = [table for table in _free_form(name) if table]
    if name == "kron":
        # [defaults] holds job fields: it is checked against the job schema's tables instead.
        tables = [table for table in tables if table != ("defaults",)]
        tables += [("defaults", *table) for table in _free_form("job") if table]
    found: list[tuple[list[str | int], str]] = []
    for table in tables:
        for pointer, value in _tables_at(data, table):
            for key in value:
                what = _what(name, key)
                if what is not None:
                    found.append(([*pointer, key], _message(key, pointer, what)))
    return found


def _what(name: str, key: str) -> str | None:
    """What a key names in a file of schema `name`, if it names a field."""
    if key in _fields(name):
        return "kron.toml setting" if name == "kron" else "job field"
    if name == "kron" and key in _fields("job"):
        return "job field (a default)"
    return None


def _tables_at(data: Any, table: Path_) -> Iterator[tuple[list[str | int], Mapping[str, Any]]]:
    """The tables at `table` in `data` (several where it passes through a list)."""
    if not table:
        if isinstance(data, Mapping):
            yield [], data
        return
    head, rest = table[0], table[1:]
    if head == "*":
        for index, item in enumerate(data if isinstance(data, list) else ()):
            for pointer, value in _tables_at(item, rest):
                yield [index, *pointer], value
    elif isinstance(data, Mapping) and head in data:
        for pointer, value in _tables_at(data[head], rest):
            yield [head, *pointer], value


def _message(key: str, pointer: list[str | int], what: str) -> str:
    shown = ".".join(str(part) for part in pointer)
    where = (
        f"up under [defaults], above [{shown}]"
        if what.endswith("(a default)")
        else "above the first [table] header"
    )
    return (
        f"`{key}` is an entry of [{shown}] here, not the {what} of that name: a TOML key "
        f"belongs to the last [table] header above it; if you meant the {what}, move the line "
        f"{where}"
    )
