"""`kron convert`: a job file in the other format, keeping its comments and its layout.

The keys come out in the schema's order (as `kron fmt` writes them). Comment lines above a key
and a comment at the end of a key's line go along with the key; an array written on one line
stays on one line; a string of several lines becomes a block (`|` in YAML, `'''` or `\"\"\"` in
TOML); a long line is never folded. The result must read back as the same data.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kron.config.documents import Document, parse_document, read_document
from kron.config.fmt import canonical_data, comment_lines, kind_of, same_data
from kron.model.errors import Problem, SpecError, UsageError
from kron.model.settings import DEFAULT_MAX_FILE_SIZE

__all__ = ["convert_file", "converted"]

Pointer = tuple[str | int, ...]
LINE_WIDTH = 100  # an array that was not written on one line is kept on one if it fits


@dataclass(slots=True)
class _Notes:
    """What a file says besides its data: comments by key, and arrays written on one line.

    The writers take the comments they place out of `above` and `end_of_line`; what is left
    was not carried, and is named by its line.
    """

    header: list[str] = field(default_factory=list)
    above: dict[Pointer, list[tuple[int, str]]] = field(default_factory=dict)
    end_of_line: dict[Pointer, tuple[int, str]] = field(default_factory=dict)
    inline: dict[Pointer, bool] = field(default_factory=dict)
    lost: list[int] = field(default_factory=list)

    def take_above(self, pointer: Pointer) -> list[str]:
        return [text for _, text in self.above.pop(pointer, [])]

    def take_end_of_line(self, pointer: Pointer) -> str | None:
        found = self.end_of_line.pop(pointer, None)
        return found[1] if found else None

    def not_carried(self) -> list[int]:
        left = [n for lines in self.above.values() for n, _ in lines]
        left += [n for n, _ in self.end_of_line.values()]
        return sorted({*self.lost, *left})


def convert_file(path: Path, *, to: str, stdout: bool, out: TextIO, err: TextIO) -> int:
    """Write a job file in the other format; the old file goes so the job id stays unique."""
    if not path.is_file():
        raise UsageError(f"kron convert: no such file: {path}")
    suffix = ".toml" if to == "toml" else ".yaml"
    if path.suffix == suffix or (to == "yaml" and path.suffix == ".yml"):
        raise UsageError(f"kron convert: {path} is already {to.upper()}")
    target = path.with_suffix(suffix)
    text, lost = converted(path, to=to)
    if stdout:
        out.write(text)
    else:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise UsageError(f"kron convert: {target} already exists") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(target, path.stat().st_mode & 0o7777)
        path.unlink()
        print(f"{path} -> {target}", file=out)
    if lost:
        where = ", ".join(map(str, lost))
        print(f"note: comments on lines {where} were not carried over", file=err)
    return 0


def converted(path: Path, *, to: str) -> tuple[str, list[int]]:
    """The file's text in `to` format, and the lines of comments that could not be carried."""
    doc = read_document(path, max_size=DEFAULT_MAX_FILE_SIZE)
    data = canonical_data(doc.data, kind_of(path))
    notes = _notes(doc)
    try:
        text = _to_toml(data, notes) if to == "toml" else _to_yaml(data, notes)
    except (TypeError, ValueError) as exc:  # a YAML null has no TOML form, say
        message = f"cannot be written as {to}: {exc}"
        raise SpecError([Problem(path=str(path), message=message)]) from None
    target = path.with_suffix(".toml" if to == "toml" else ".yaml")
    try:
        again = parse_document(target, text.encode("utf-8"), max_size=1 << 30)
    except SpecError:
        again = None
    if again is None or not same_data(again.data, doc.data):
        message = f"cannot be written as {to} with the same values; nothing written"
        raise SpecError([Problem(path=str(path), message=message)])
    return text, notes.not_carried()


# Reading what the source says -------------------------------------------------------------


def _pointers(value: Any, prefix: Pointer = ()) -> Iterator[Pointer]:
    """Every key and item of `value`, parents first."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _pointers(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from _pointers(child, (*prefix, index))


def _notes(doc: Document) -> _Notes:
    notes = _Notes()
    lines = doc.text.splitlines()
    at_line: dict[int, list[Pointer]] = {}
    for each in _pointers(doc.data):  # parents first
        where, _ = doc.locate(each)
        # A key the locator cannot place falls back to its parent's line: not its own.
        if where is not None and (isinstance(each[-1], int) or str(each[-1]) in lines[where - 1]):
            at_line.setdefault(where, []).append(each)
    found = dict(comment_lines(doc.text, yaml_syntax=doc.is_yaml))
    inside = _block_scalar_lines(doc.text) if doc.is_yaml else set()
    pending: list[tuple[int, str]] = []
    in_header = True
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if number in inside:
            continue
        if stripped.startswith("#") and number in found:
            pending.append((number, stripped))
            continue
        if not stripped:
            if in_header and not (pending or notes.header):
                continue  # blank lines at the top of the file
            if in_header:
                notes.header.extend([*(text for _, text in pending), ""])
            else:
                notes.lost.extend(n for n, _ in pending)
            pending = []
            continue
        in_header = False
        here = at_line.get(number, [])
        if pending:
            if here:
                notes.above[here[0]] = pending
            else:
                notes.lost.extend(n for n, _ in pending)
        if number in found:
            # The comment ending a line is about the innermost key that line holds.
            keys = [p for p in here if isinstance(p[-1], str)]
            if keys:
                notes.end_of_line[keys[-1]] = (number, found[number])
            else:
                notes.lost.append(number)
        pending = []
    if in_header:
        notes.header.extend(text for _, text in pending)
    else:
        notes.lost.extend(n for n, _ in pending)
    while notes.header and not notes.header[-1]:
        notes.header.pop()
    notes.inline = _inline_arrays(doc)
    return notes


def _block_scalar_lines(text: str) -> set[int]:
    """Lines (1-based) inside YAML block scalars, whose `#` is text, not a comment."""
    import yaml

    lines: set[int] = set()
    nodes = [yaml.compose(text, Loader=yaml.SafeLoader)]
    while nodes:
        node = nodes.pop()
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            lines.update(range(node.start_mark.line + 2, node.end_mark.line + 1))
        elif isinstance(node, yaml.MappingNode):
            nodes.extend(part for pair in node.value for part in pair)
        elif isinstance(node, yaml.SequenceNode):
            nodes.extend(node.value)
    return lines


def _inline_arrays(doc: Document) -> dict[Pointer, bool]:
    """Which arrays were written on one line."""
    found: dict[Pointer, bool] = {}
    if doc.is_yaml:
        from ruamel.yaml import YAML
        from ruamel.yaml.comments import CommentedSeq

        def walk_yaml(value: Any, pointer: Pointer) -> None:
            if isinstance(value, CommentedSeq):
                found[pointer] = bool(value.fa.flow_style())
            if isinstance(value, dict):
                for key, child in value.items():
                    walk_yaml(child, (*pointer, str(key)))
            elif isinstance(value, list):
                for index, child in enumerate(value):
                    walk_yaml(child, (*pointer, index))

        walk_yaml(YAML().load(doc.text), ())
    else:
        import tomlkit
        from tomlkit.items import Array

        def walk_toml(value: Any, pointer: Pointer) -> None:
            if isinstance(value, Array):
                found[pointer] = "\n" not in value.as_string()
            if isinstance(value, dict):
                for key, child in value.items():
                    walk_toml(child, (*pointer, str(key)))
            elif isinstance(value, list):
                for index, child in enumerate(value):
                    walk_toml(child, (*pointer, index))

        walk_toml(tomlkit.parse(doc.text), ())
    return found


def _fits_one_line(key: str, items: list[Any], notes: _Notes, pointer: Pointer) -> bool:
    if any(isinstance(item, dict | list) for item in items):
        return False
    if pointer in notes.inline:
        return notes.inline[pointer]
    width = len(key) + 5 + sum(len(json.dumps(item, ensure_ascii=False)) + 2 for item in items)
    return width <= LINE_WIDTH


# Writing TOML ------------------------------------------------------------------------------


def _to_toml(data: Mapping[str, Any], notes: _Notes) -> str:
    import tomlkit

    document = tomlkit.document()
    for line in [*notes.header, ""] if notes.header else []:
        text = _directive_for(line, yaml_syntax=False)
        document.add(_toml_comment(text) if text else tomlkit.nl())
    _fill_toml(document, data, (), notes)
    return tomlkit.dumps(document)


def _directive_for(line: str, *, yaml_syntax: bool) -> str:
    """An editor's schema line, in the other format's form (Taplo's, the YAML server's)."""
    from kron.config import tomlfmt, yamlfmt

    if yaml_syntax and tomlfmt.is_directive(line):
        ref = line.split(None, 1)[1].strip()
        return f"# yaml-language-server: $schema={ref}"
    if not yaml_syntax and yamlfmt.is_directive(line):
        return "#:schema " + line.split("$schema=", 1)[1].strip()
    return line


def _toml_comment(text: str) -> Any:
    from tomlkit.items import Comment, Trivia

    return Comment(Trivia(comment=text))


def _fill_toml(container: Any, data: Mapping[str, Any], pointer: Pointer, notes: _Notes) -> None:
    import tomlkit

    def is_section(value: Any) -> bool:
        return isinstance(value, dict) or (
            isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
        )

    # TOML: plain keys first, then [tables] and [[arrays of tables]], each after a blank line
    # and right below the comment lines about it (as `kron fmt` writes them).
    for key in sorted(data, key=lambda k: is_section(data[k])):
        value, here = data[key], (*pointer, key)
        above = notes.take_above(here)
        if is_section(value):
            if len(container):
                container.add(tomlkit.nl())
            if isinstance(value, list):
                above += notes.take_above((*here, 0))  # above the first [[...]]
        for line in above:
            container.add(_toml_comment(line))
        if isinstance(value, dict):
            item: Any = tomlkit.table()
            _fill_toml(item, value, here, notes)
        elif is_section(value):
            item = tomlkit.aot()
            tables: list[Any] = []
            for index, element in enumerate(value):
                table = tomlkit.table()
                if index:  # what stood above this [[...]] ends the table before it
                    tables[-1].add(tomlkit.nl())
                    for line in notes.take_above((*here, index)):
                        tables[-1].add(_toml_comment(line))
                _fill_toml(table, element, (*here, index), notes)
                tables.append(table)
            for table in tables:
                item.append(table)
        else:
            item = _toml_value(key, value, here, notes)
        comment = notes.take_end_of_line(here)
        if comment is not None:
            item.comment(comment)
        container.add(key, item)
        # tomlkit puts a blank line of its own before a new header: ours is already there.
        for table in item.body if isinstance(item, tomlkit.items.AoT) else [item]:
            if isinstance(table, tomlkit.items.Table):
                table.trivia.indent = ""


def _toml_value(key: str, value: Any, pointer: Pointer, notes: _Notes) -> Any:
    import tomlkit

    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        array = tomlkit.array()
        for index, element in enumerate(value):
            array.append(_toml_value(key, element, (*pointer, index), notes))
        if not _fits_one_line(key, value, notes, pointer):
            array.multiline(True)
        return array
    if isinstance(value, dict):
        inline = tomlkit.inline_table()
        for name, element in value.items():
            inline[name] = _toml_value(name, element, (*pointer, name), notes)
        return inline
    if value is None:
        raise ValueError(f"{'.'.join(map(str, pointer))} is null, which TOML cannot hold")
    return tomlkit.item(value)


def _toml_string(text: str) -> Any:
    """A TOML string in the style a person would write: a shell line with double quotes or
    backslashes in single quotes (taken literally), several lines as a block."""
    import tomlkit

    plain = all(ch in "\n\t" or ch >= " " for ch in text) and "\x7f" not in text
    if "\n" in text:
        literal = plain and "'''" not in text and not text.endswith("'")
        return tomlkit.string(text, literal=literal, multiline=True)
    literal = plain and "'" not in text and ('"' in text or "\\" in text)
    return tomlkit.string(text, literal=literal)


# Writing YAML ------------------------------------------------------------------------------


def _to_yaml(data: Mapping[str, Any], notes: _Notes) -> str:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    root = _yaml_value("", data, (), notes, indent=0)
    if notes.header:
        lines = [_directive_for(line, yaml_syntax=True) for line in [*notes.header, ""]]
        root.ca.comment = [None, [CommentToken(line + "\n", CommentMark(0)) for line in lines]]
    yaml = YAML()
    yaml.width = 1 << 20  # never fold a long line
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    yaml.dump(root, out)
    return out.getvalue()


def _yaml_value(key: str, value: Any, pointer: Pointer, notes: _Notes, *, indent: int) -> Any:
    """A value for ruamel.yaml; `indent` is the column its keys (or dashes) start at."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.scalarstring import LiteralScalarString
    from ruamel.yaml.tokens import CommentToken

    def tokens(lines: list[str]) -> list[CommentToken]:
        return [CommentToken(line + "\n", CommentMark(indent)) for line in lines]

    if isinstance(value, dict):
        mapping = CommentedMap()
        for name, child in value.items():
            here = (*pointer, name)
            mapping[name] = _yaml_value(name, child, here, notes, indent=indent + 2)
            above = notes.take_above(here)
            if above:
                mapping.ca.items.setdefault(name, [None, None, None, None])[1] = tokens(above)
            comment = notes.take_end_of_line(here)
            if comment is not None:
                mapping.yaml_add_eol_comment(comment, name)
        return mapping
    if isinstance(value, list):
        sequence = CommentedSeq(
            _yaml_value(key, child, (*pointer, index), notes, indent=indent + 2)
            for index, child in enumerate(value)
        )
        if _fits_one_line(key, value, notes, pointer):
            sequence.fa.set_flow_style()
        else:
            for index in range(len(value)):
                above = notes.take_above((*pointer, index))
                if above:
                    sequence.ca.items.setdefault(index, [None, None, None, None])[1] = tokens(above)
        return sequence
    if isinstance(value, str) and "\n" in value and value == value.rstrip(" \t"):
        return LiteralScalarString(value)
    return value
