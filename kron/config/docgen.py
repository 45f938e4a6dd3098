"""Render the job file reference from the JSON Schema, for the README (a test keeps them equal).

Run `python -m kron.config.docgen` to rewrite the README section in place.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kron.config.schema import load_schema

BEGIN = "<!-- BEGIN JOB REFERENCE"
END = "<!-- END JOB REFERENCE -->"


def _type(node: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    if "$ref" in node:
        return str(schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]["title"]).lower()
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "oneOf" in node:
        return " or ".join(_type(option, schema) for option in node["oneOf"])
    kind = node.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        return f"list of {_type(node.get('items', {}), schema)}"
    if kind == "object" and "properties" not in node:
        return "table"
    return str(kind)


def _rows(
    props: Mapping[str, Any], schema: Mapping[str, Any], prefix: str = ""
) -> Iterator[tuple[str, str, str, str]]:
    for name, node in props.items():
        default = node.get("default")
        shown = "" if default is None else f"`{json.dumps(default)}`"
        description = " ".join(str(node.get("description", "")).split()).replace("|", "\\|")
        yield f"`{prefix}{name}`", _type(node, schema), shown, description
        if node.get("type") == "object" and "properties" in node:
            yield from _rows(node["properties"], schema, f"{prefix}{name}.")
        items = node.get("items", {})
        if node.get("type") == "array" and isinstance(items, dict) and "properties" in items:
            yield from _rows(items["properties"], schema, f"{prefix}{name}[].")


def render() -> str:
    """The reference section's body: one table for job files, one for kron.toml."""
    out = []
    for name, title in (("job", "Job files"), ("kron", "`kron.toml`")):
        schema = load_schema(name)
        out += [f"### {title}", "", str(schema["description"]), ""]
        out += ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
        out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in _rows(schema["properties"], schema)]
        out.append("")
    return "\n".join(out)


def replace_section(text: str) -> str:
    """Return README text with the reference section regenerated."""
    pattern = re.compile(re.escape(BEGIN) + r".*?-->\n.*?" + re.escape(END), re.S)
    match = pattern.search(text)
    if match is None:
        raise ValueError("README has no job reference markers")
    head = text[match.start() : text.index("-->", match.start()) + 3]
    return text[: match.start()] + head + "\n\n" + render() + "\n" + END + text[match.end() :]


def main() -> int:
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    readme.write_text(replace_section(readme.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
