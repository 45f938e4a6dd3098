"""`kron fmt` and `kron convert`: one canonical way to write a job file."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import tomli_w
import yaml

from kron.config.discovery import SETTINGS_NAMES, is_job_file
from kron.config.documents import read_document
from kron.config.schema import load_schema
from kron.model.errors import SpecError, UsageError
from kron.model.settings import DEFAULT_MAX_FILE_SIZE


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


def dump(data: Mapping[str, Any], to: str) -> str:
    """Write a job mapping as TOML or YAML."""
    if to == "toml":
        return tomli_w.dumps(data, multiline_strings=True)
    return yaml.safe_dump(
        dict(data), sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )


def _comment_lines(text: str, *, yaml_syntax: bool) -> list[int]:
    """Line numbers (1-based) holding a comment, outside strings (a small scanner, not a parser)."""
    lines = []
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
            elif ch in "\"'":
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1] in " \t" or not yaml_syntax):
                lines.append(number)
                break
            i += 1
    return lines


def _header(text: str) -> tuple[str, int]:
    """The leading block of comment and blank lines, and how many lines it spans."""
    kept = []
    for line in text.splitlines():
        if line.strip().startswith("#") or not line.strip():
            kept.append(line)
        else:
            break
    while kept and not kept[-1].strip():
        kept.pop()
    return ("\n".join(kept) + "\n\n" if kept else ""), len(kept)


def canonical_text(path: Path, to: str | None = None) -> tuple[str, list[int]]:
    """The canonical text of a file (in `to` format or its own), and the comment lines it loses."""
    doc = read_document(path, max_size=DEFAULT_MAX_FILE_SIZE)
    is_yaml = doc.is_yaml
    schema = load_schema("kron" if path.name in SETTINGS_NAMES else "job")
    body = dump(_ordered(doc.data, schema), to or ("yaml" if is_yaml else "toml"))
    header, header_lines = _header(doc.text)
    lost = [n for n in _comment_lines(doc.text, yaml_syntax=is_yaml) if n > header_lines]
    return header + body, lost


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
    paths: Iterable[Path], *, check: bool, force: bool, out: TextIO, err: TextIO
) -> int:
    """Rewrite (or with `check`, list) files whose text is not canonical; exit code."""
    bad = 0
    for path in _files(paths):
        try:
            text, lost = canonical_text(path)
        except SpecError as exc:
            for problem in exc.problems:
                print(problem, file=err)
            bad += 1
            continue
        current = path.read_text(encoding="utf-8")
        if text == current:
            continue
        if lost and not force:
            where = ", ".join(map(str, lost[:5]))
            print(
                f"{path}: left alone: comments on lines {where} would be lost "
                "(kron fmt keeps the leading comment block only; --force rewrites anyway)",
                file=err,
            )
            continue
        if check:
            print(f"{path}: not in canonical form", file=out)
            bad += 1
            continue
        _replace(path, text)
        print(f"{path}: formatted", file=out)
    return 1 if bad else 0


def _replace(path: Path, text: str) -> None:
    """Write atomically, keeping the file's mode (the daemon may read it at any moment)."""
    tmp = path.with_name(f".{path.name}.kron-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)


def convert_file(path: Path, *, to: str, stdout: bool, out: TextIO, err: TextIO) -> int:
    """Write a job file in the other format; the old file goes so the job id stays unique."""
    if not path.is_file():
        raise UsageError(f"kron convert: no such file: {path}")
    suffix = ".toml" if to == "toml" else ".yaml"
    if path.suffix == suffix or (to == "yaml" and path.suffix == ".yml"):
        raise UsageError(f"kron convert: {path} is already {to.upper()}")
    text, lost = canonical_text(path, to)
    if stdout:
        out.write(text)
        return 0
    target = path.with_suffix(suffix)
    if target.exists():
        raise UsageError(f"kron convert: {target} already exists")
    target.write_text(text, encoding="utf-8")
    os.chmod(target, path.stat().st_mode & 0o7777)
    path.unlink()
    print(f"{path} -> {target}", file=out)
    if lost:
        print(
            f"note: comments on lines {', '.join(map(str, lost))} were not carried over", file=err
        )
    return 0
