"""`kron fmt`: keys in the schema's order, and everything else as people wrote it.

Comments, quoting, block scalars and arrays on one line stay as they are: tomlkit and
ruamel.yaml rewrite a file in its own style (`tomlfmt`, `yamlfmt`), and only whole entries
move, each with the comment lines above it. Those libraries are imported by `kron fmt` and
`kron convert` alone, never by the daemon (`kron new` writes with tomli-w and PyYAML).

A file is rewritten only when the result reads back as the same data, with the same comments,
and atomically; a file that does not parse is reported with its line and left alone.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from kron.config.discovery import SETTINGS_NAMES, is_job_file
from kron.config.documents import Document, fingerprint, parse_document, read_document
from kron.config.schema import load_schema
from kron.model.errors import Problem, SpecError, UsageError
from kron.model.settings import DEFAULT_MAX_FILE_SIZE

__all__ = [
    "canonical_data",
    "check_rewrite",
    "comment_lines",
    "comments",
    "directive_line",
    "dump",
    "format_paths",
    "formatted",
    "in_order",
    "kind_of",
    "replace_file",
    "same_data",
    "with_directive",
]

# In YAML a quote opens a string only where a value starts: `it's` is plain text.
_VALUE_STARTS = ("", ":", "-", "[", "{", ",")
SCHEMA_FILES = {"job": "job.schema.json", "kron": "kron.schema.json"}


def _ordered(data: Any, schema: Mapping[str, Any] | None) -> Any:
    """Order keys as the schema lists them, `x-` keys last; free-form maps keep their order."""
    if isinstance(data, list):
        item_schema = schema.get("items") if schema else None
        return [_ordered(v, item_schema) for v in data]
    if not isinstance(data, dict):
        return data
    props: Mapping[str, Any] = (schema or {}).get("properties", {})
    if not props:
        return dict(data)
    rank = {key: index for index, key in enumerate(props)}
    keys = sorted(data, key=lambda k: (k.startswith("x-"), rank.get(k, len(rank)), k))
    return {k: _ordered(data[k], props.get(k)) for k in keys}


def canonical_data(data: Mapping[str, Any], kind: str = "job") -> Any:
    """A job's (or kron.toml's) table with its keys in the schema's order, as `kron fmt` writes."""
    return _ordered(data, load_schema(kind))


def in_order(data: Any, schema: Mapping[str, Any] | None) -> bool:
    """Whether every table of `data` already has its keys in the schema's order."""
    if isinstance(data, list):
        item_schema = schema.get("items") if schema else None
        return all(in_order(v, item_schema) for v in data)
    if not isinstance(data, dict):
        return True
    props: Mapping[str, Any] = (schema or {}).get("properties", {})
    if props and list(data) != list(_ordered(data, schema)):
        return False
    return all(in_order(v, props.get(k)) for k, v in data.items())


def dump(data: Mapping[str, Any], to: str) -> str:
    """Write a job mapping as TOML or YAML (what `kron new` writes)."""
    if to == "toml":
        import tomli_w

        return tomli_w.dumps(data, multiline_strings=True)
    import yaml

    # No width: PyYAML would fold a long shell line over several lines.
    return yaml.safe_dump(
        dict(data), sort_keys=False, allow_unicode=True, default_flow_style=False, width=1 << 20
    )


def kind_of(path: Path) -> str:
    """`kron` for a kron.toml, else `job`: the schema a file follows."""
    return "kron" if path.name in SETTINGS_NAMES else "job"


def comment_lines(text: str, *, yaml_syntax: bool) -> list[tuple[int, str]]:
    """The comments of a file with their line numbers (1-based), outside strings: a small
    scanner, not a parser (it takes a `#` line of a YAML block scalar for a comment)."""
    found = []
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        i = 0
        quote: str | None = None
        while i < len(line):
            if in_multiline:
                end = line.find(in_multiline, i)
                if end < 0:
                    break
                i = end + 3
                in_multiline = None
                continue
            ch = line[i]
            if quote:
                if ch == "\\" and quote == '"':
                    i += 2
                    continue
                if ch == quote:
                    quote = None
            elif not yaml_syntax and line.startswith(('"""', "'''"), i):
                in_multiline = line[i : i + 3]
                i += 3
                continue
            elif ch in "\"'" and (not yaml_syntax or line[:i].rstrip()[-1:] in _VALUE_STARTS):
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1] in " \t" or not yaml_syntax):
                found.append((number, line[i:].rstrip()))
                break
            i += 1
    return found


def comments(text: str, *, yaml_syntax: bool) -> list[str]:
    """The comments of a file, in order (see `comment_lines`)."""
    return [comment for _, comment in comment_lines(text, yaml_syntax=yaml_syntax)]


def same_data(a: Any, b: Any) -> bool:
    """Equal values of equal types (`1`, `1.0` and `true` differ in a job file)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_data(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_data(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def directive_line(path: Path, location: str, *, yaml_syntax: bool) -> str:
    """The editor's schema line for `path`: Taplo's `#:schema` in TOML, the YAML language
    server's modeline in YAML. `location` is the folder (or URL) `kron schema --write` filled;
    a folder is written relative to the file, as both tools read it."""
    name = SCHEMA_FILES[kind_of(path)]
    if "://" in location:
        ref = location.rstrip("/") + "/" + name
    else:
        relative = os.path.relpath(Path(location).absolute() / name, path.absolute().parent)
        ref = Path(relative).as_posix()
        if not ref.startswith("../"):
            ref = "./" + ref  # as Taplo's docs write a path relative to the file
    return f"# yaml-language-server: $schema={ref}" if yaml_syntax else f"#:schema {ref}"


def with_directive(text: str, line: str, *, yaml_syntax: bool) -> str:
    """`text` with `line` as its schema directive: in place of the one in its leading comment
    block, else as its first line."""
    from kron.config import tomlfmt, yamlfmt

    is_directive = yamlfmt.is_directive if yaml_syntax else tomlfmt.is_directive
    lines = text.splitlines(keepends=True)
    for index, current in enumerate(lines):
        stripped = current.strip()
        if stripped and not stripped.startswith("#"):
            break
        if is_directive(stripped):
            lines[index] = line + "\n"
            return "".join(lines)
    return line + "\n" + text


@dataclass(frozen=True, kw_only=True, slots=True)
class Formatted:
    """A file's text as `kron fmt` writes it, beside what it read."""

    doc: Document
    text: str

    @property
    def changed(self) -> bool:
        return self.text != self.doc.text


def formatted(path: Path, *, directive: str | None = None) -> Formatted:
    """The canonical text of one file; SpecError (with the file and line) when it cannot be
    read, or cannot be rewritten without changing its data or losing a comment."""
    doc = read_document(path, max_size=DEFAULT_MAX_FILE_SIZE)
    schema = load_schema(kind_of(path))
    try:
        if not doc.is_yaml:
            from kron.config import tomlfmt

            text = tomlfmt.arrange(doc.text, schema)
        elif in_order(doc.data, schema):
            text = doc.text  # a YAML file is rewritten only when a key must move
        else:
            from kron.config import yamlfmt

            text = yamlfmt.arrange(doc.text, schema)
    except Exception as exc:  # the style-keeping parsers refuse what the loader accepted
        raise _refused(path, f"cannot be rewritten in its own style ({exc})") from None
    if not text.endswith("\n"):
        text += "\n"
    check_rewrite(doc, text)
    if directive is not None:
        text = with_directive(
            text, directive_line(path, directive, yaml_syntax=doc.is_yaml), yaml_syntax=doc.is_yaml
        )
    return Formatted(doc=doc, text=text)


def check_rewrite(doc: Document, text: str) -> None:
    """Refuse a rewrite that reads back as other data, or lost or added a comment."""
    try:
        again = parse_document(doc.path, text.encode("utf-8"), max_size=1 << 30)
    except SpecError as exc:
        reason = exc.problems[0].message if exc.problems else "unreadable"
        raise _refused(doc.path, f"the rewritten text would not load ({reason})") from None
    if not same_data(again.data, doc.data):
        raise _refused(doc.path, "the rewritten text would hold other values")
    yaml_syntax = doc.is_yaml
    before = sorted(comments(doc.text, yaml_syntax=yaml_syntax))
    if sorted(comments(text, yaml_syntax=yaml_syntax)) != before:
        raise _refused(doc.path, "a comment would move out of reach or be lost")


def _refused(path: Path, why: str) -> SpecError:
    return SpecError([Problem(path=str(path), message=f"kron fmt: left alone: {why}")])


def _files(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(Path(root) / n for n in sorted(names) if is_job_file(n))
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"kron fmt: no such file or folder: {path}")
    return found


def format_paths(
    paths: Iterable[Path], *, check: bool, directive: str | None, out: TextIO, err: TextIO
) -> int:
    """Rewrite (or with `check`, list) files whose text is not canonical; exit code.

    Args:
        paths: files and folders (job files found below a folder, as the daemon finds them).
        check: change nothing; list the files that would change.
        directive: put the editor's schema line at the top, for the schema files in this
            folder or at this URL.
        out: where the changed files are listed.
        err: where problems go.
    """
    bad = 0
    for path in _files(paths):
        try:
            result = formatted(path, directive=directive)
        except SpecError as exc:
            for problem in exc.problems:
                print(problem, file=err)
            bad += 1
            continue
        if not result.changed:
            continue
        if check:
            print(f"{path}: not in canonical form", file=out)
            bad += 1
            continue
        try:
            replace_file(path, result.text, expected=result.doc.fingerprint)
        except SpecError as exc:
            for problem in exc.problems:
                print(problem, file=err)
            bad += 1
            continue
        print(f"{path}: formatted", file=out)
    return 1 if bad else 0


def replace_file(
    path: Path, text: str, *, expected: bytes | None = None, mode: int | None = None
) -> None:
    """Write `text` over `path` atomically, keeping its mode (the daemon may read it at any
    moment, and a crash must leave the old file or the new one, never half of one).

    `expected` is the fingerprint (`documents.fingerprint`) of the file the text was made
    from: a file changed since is left alone. The temporary file is hidden, so never read as a job.
    """
    target = path.resolve()  # a symlink stays a symlink; its target is rewritten
    try:
        st = target.stat()
    except OSError as exc:
        raise SpecError([Problem(path=str(path), message=f"cannot read: {exc.strerror}")]) from None
    if expected is not None and fingerprint(st) != expected:
        message = "kron fmt: left alone: the file changed while it was being formatted"
        raise SpecError([Problem(path=str(path), message=message)])
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".kron-tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, (st.st_mode if mode is None else mode) & 0o7777)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        message = f"cannot write: {exc.strerror or exc}; the file is unchanged"
        raise SpecError([Problem(path=str(path), message=message)]) from None
