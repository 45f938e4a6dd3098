"""Read one TOML or YAML file into a plain mapping, safely, and find a field's line on demand."""

from __future__ import annotations

import functools
import os
import re
import stat
import struct
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from kron.config.positions import Places, TomlPlaces, YamlPlaces
from kron.model.errors import EXCERPT_CHARS, Problem, Severity, SpecError, excerpt, shorten

if TYPE_CHECKING:
    import yaml

JOB_SUFFIXES = (".toml", ".yaml", ".yml")
YAML_SUFFIXES = (".yaml", ".yml")
MAX_DEPTH = 32
MAX_NODES = 10_000
NUL_MESSAGE = "holds a NUL character (\\0), which no path, argument or name can hold"


@functools.cache
def _yaml_loader() -> type[Any]:
    """PyYAML and kron's loader, imported on the first YAML file (a TOML-only load never pays)."""
    import yaml

    class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        """Safe loader with YAML 1.2 booleans, dates left as strings, duplicate keys refused.

        PyYAML follows YAML 1.1, where `on:` (the key of every notify entry) is the boolean
        true and `2026-12-01` is a date object; job files mean neither.
        """

        yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {
            first: [
                (tag, regexp)
                for tag, regexp in resolvers
                if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
            ]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }

        def construct_mapping(
            self, node: yaml.MappingNode, deep: bool = False
        ) -> dict[Hashable, Any]:
            seen: set[str] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, str):
                    # TOML keys are strings, and so are the schema's: `1:` or `? [a, b]` is not
                    # a field, and a number as an `env` name would only fail at fire time.
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"a key must be a string, not {_yaml_kind(key)}; write it in quotes",
                        key_node.start_mark,
                    )
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {excerpt(key)}", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

        def construct_refused(self, node: yaml.Node) -> Any:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(
                None, None, f"the tag {tag} is not allowed in job files", node.start_mark
            )

    # Standard YAML types that JSON (and so the schema, TOML and the records) has no word for:
    # bytes, sets, ordered pairs, dates. A job file writes strings, numbers, lists and tables.
    for tag in ("binary", "set", "omap", "pairs", "timestamp"):
        _YamlLoader.add_constructor(f"tag:yaml.org,2002:{tag}", _YamlLoader.construct_refused)

    for first in "tTfF":
        _YamlLoader.yaml_implicit_resolvers.setdefault(first, []).append(
            ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"))
        )
    return _YamlLoader


def _yaml_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return f"the number {excerpt(value)}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed file: its data and its text, kept to locate fields when reporting errors."""

    path: Path
    data: dict[str, Any]
    text: str
    fingerprint: bytes | None = None  # of the file read: see `fingerprint`
    # Where each field is written, read from the text once, on the first problem: a file with
    # a thousand errors is parsed for positions once, not a thousand times.
    _places: Places | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def is_yaml(self) -> bool:
        return str(self.path).endswith(YAML_SUFFIXES)

    def locate(self, pointer: Sequence[str | int]) -> tuple[int | None, int | None]:
        """Return (line, column), 1-based, of the deepest part of `pointer` the file shows."""
        places = self._places
        if places is None:
            places = YamlPlaces(self.text) if self.is_yaml else TomlPlaces(self.text)
            object.__setattr__(self, "_places", places)
        return places.locate(pointer)

    def problem(
        self, pointer: Sequence[str | int], message: str, severity: Severity = Severity.ERROR
    ) -> Problem:
        """A problem with the field at `pointer` (`[]`: the whole file), with its line."""
        line, column = self.locate(pointer)
        return Problem(
            path=str(self.path),
            pointer="/" + "/".join(_shown_key(part) for part in pointer),
            message=message,
            line=line,
            column=column,
            severity=severity,
        )


def _shown_key(part: str | int) -> str:
    """A key as a message names it: control characters escaped (a key can hold an escape
    sequence for the terminal that shows the log), and cut short."""
    text = str(part)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return shorten(text, EXCERPT_CHARS)


def read_document(
    path: Path, *, max_size: int, vet: Callable[[os.stat_result], None] | None = None
) -> Document:
    """Read and parse one file; raise SpecError naming the file, line and column.

    `vet` judges the file from the stat of the open file before a byte is read, and raises
    SpecError to refuse it (kron's trust check); when the file cannot be opened it gets the
    stat of the path, if there is one.
    """
    shown = str(path)
    try:
        # O_NONBLOCK: a FIFO named like a job file must not hang the loader until a writer comes.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if vet is not None:
            _vet_path(path, vet)
        raise _fail(shown, f"cannot read: {exc.strerror or exc}") from None
    try:
        try:
            st = os.fstat(fd)
            if vet is not None:
                vet(st)
            if not stat.S_ISREG(st.st_mode):
                raise _fail(shown, "not a regular file; a job file is a plain text file")
            if st.st_size > max_size:
                raise _fail(shown, f"file is {st.st_size} bytes, over the {max_size}-byte limit")
            # Read what fstat announced, plus one byte to notice a file that grew meanwhile:
            # a buffered read of max_size would allocate a megabyte per file.
            raw = _read_up_to(fd, min(st.st_size, max_size) + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _fail(shown, f"cannot read: {exc.strerror or exc}") from None
    return parse_document(path, raw, max_size=max_size, fingerprint=fingerprint(st))


_FINGERPRINT = struct.Struct("=QQqqqQQQ")


def fingerprint(st: os.stat_result) -> bytes:
    """What a file is, packed: device, inode, size, modified and changed times, owner, group
    and mode.

    Any change that matters to kron changes it: an edit or a replacement (size, times, inode),
    a chmod or a chown (the change time, mode and owner), even with the modified time put back.
    64 bytes: a tuple of these ints would take three times the memory a job keeps.
    """
    return _FINGERPRINT.pack(
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_uid,
        st.st_gid,
        st.st_mode,
    )


def parse_document(
    path: Path, raw: bytes, *, max_size: int, fingerprint: bytes | None = None
) -> Document:
    """Parse the bytes of a file named `path` (read, or a draft not yet written), with every
    check read_document makes of a file's content."""
    shown = str(path)
    if len(raw) > max_size:
        raise _fail(shown, f"file is over the {max_size}-byte limit")
    if b"\x00" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\x00")) + 1
        raise _fail(shown, "binary data (NUL byte); a job file is UTF-8 text", line=line)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _fail(shown, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", line=line) from None
    if not text.strip():
        raise _fail(shown, "empty file; a job file holds one table of fields")
    is_yaml = shown.endswith(YAML_SUFFIXES)
    data = _parse_yaml(shown, text) if is_yaml else _parse_toml(shown, text)
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise _fail(shown, f"the file holds {kind}; a job file holds one table of fields", line=1)
    if is_yaml:  # TOML has no aliases, and its parser refuses deep nesting itself
        _check_shape(shown, data)
    return Document(path, data, text, fingerprint)


def _vet_path(path: Path, vet: Callable[[os.stat_result], None]) -> None:
    """Let `vet` judge a file that cannot be opened (mode 000, say) by its stat alone."""
    try:
        st = os.stat(path)
    except OSError:
        return
    vet(st)


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks = []
    while limit > 0:
        chunk = os.read(fd, limit)
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)


def _fail(path: str, message: str, line: int | None = None, column: int | None = None) -> SpecError:
    return SpecError([Problem(path=path, message=message, line=line, column=column)])


@functools.cache
def _toml() -> ModuleType:
    """The TOML parser, imported on the first TOML file read: a daemon reads its files in
    forked workers or from its cache at start, and needs no parser until one changes."""
    try:  # the compiled parser of the same project as tomllib, same errors, ~3x faster
        import tomli
    except ImportError:  # pragma: no cover
        import tomllib

        return tomllib
    return tomli


def _parse_toml(path: str, text: str) -> Any:
    tomllib = _toml()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts "(at line L, column C)" at the end of its message.
        msg = str(exc)
        match = re.search(r"\(at line (\d+), column (\d+)\)$", msg)
        if match:
            msg = msg[: match.start()].rstrip()
            raise _fail(path, f"TOML: {msg}", int(match.group(1)), int(match.group(2))) from None
        if msg.endswith("(at end of document)"):
            raise _fail(path, f"TOML: {msg}", text.count("\n") + 1, 1) from None
        raise _fail(path, f"TOML: {msg}") from None
    except RecursionError:
        raise _fail(path, f"nesting deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # a number of 5,000 digits is more than int() converts
        raise _unreadable_value(path, "TOML", text, exc) from None


_LONG_NUMBER = re.compile(r"\d{4000,}")


def _unreadable_value(path: str, syntax: str, text: str, exc: Exception) -> SpecError:
    """A value the parser raised on without a position: a number longer than Python's int()
    reads (4,300 digits), in practice; its line is found in the text."""
    long_number = _LONG_NUMBER.search(text)
    if long_number is None:
        return _fail(path, f"{syntax}: a value cannot be read: {shorten(str(exc), 100)}")
    line = text.count("\n", 0, long_number.start()) + 1
    column = long_number.start() - text.rfind("\n", 0, long_number.start())
    return _fail(path, f"{syntax}: a number of over 4000 digits cannot be read", line, column)


def _parse_yaml(path: str, text: str) -> Any:
    import yaml

    try:
        documents = list(yaml.load_all(text, Loader=_yaml_loader()))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = shorten(exc.problem or "syntax error", 200)  # it may quote an anchor's name
        if "exceeded maximum nesting depth" in problem:
            # PyYAML 6.0.3+ stops deep nesting itself; say what the TOML reader says.
            raise _fail(path, f"nesting deeper than {MAX_DEPTH} levels") from None
        if "could not determine a constructor" in problem:
            problem = f"{problem}; YAML tags are not allowed in job files"
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        raise _fail(path, f"YAML: {problem}", line, column) from None
    except yaml.YAMLError as exc:
        raise _fail(path, f"YAML: {shorten(str(exc), 200)}") from None
    except RecursionError:
        raise _fail(path, f"nesting deeper than {MAX_DEPTH} levels") from None
    except (ValueError, OverflowError) as exc:  # a number of 5,000 digits, say
        raise _unreadable_value(path, "YAML", text, exc) from None
    if len(documents) != 1:
        raise _fail(path, f"{len(documents)} YAML documents; one job per file", line=1)
    return documents[0]


def _check_shape(path: str, data: Any) -> None:
    """Refuse alias bombs and deep nesting before anything walks the data."""
    sizes: dict[int, int] = {}

    def size(value: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise _fail(path, f"nesting deeper than {MAX_DEPTH} levels")
        if not isinstance(value, dict | list):
            return 1
        known = sizes.get(id(value))
        if known is not None:  # a YAML alias: shared, counted as often as it expands
            return known
        children = value.values() if isinstance(value, dict) else value
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_NODES:
                raise _fail(path, f"expands to over {MAX_NODES} values (YAML alias bomb?)")
        sizes[id(value)] = total
        return total

    size(data, 0)


def nul_pointers(data: Any) -> list[list[str | int]]:
    """Where `data` holds a string (or a key) with a NUL character, in document order."""
    found: list[list[str | int]] = []

    def walk(value: Any, at: list[str | int]) -> None:
        if isinstance(value, str):
            if "\0" in value:
                found.append(at)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and "\0" in key:
                    found.append([*at, key])
                else:
                    walk(item, [*at, key])
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, [*at, index])

    walk(data, [])
    return found
